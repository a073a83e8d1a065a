//! pollwall's poll-mode dataplane.
//!
//! This crate will hold the AF_XDP sockets, the packet I/O backends and the per-core workers
//! (see `../shared/DESIGN.md` §1 and §7). Until the dataplane issue lands it only re-exports the
//! classifier so that the layering control → dataplane → classifier is already in place.

pub use classifier;
pub mod pcap;
