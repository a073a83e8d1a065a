//! pollwall's poll-mode dataplane.
//!
//! This crate will hold the AF_XDP sockets, the packet I/O backends and the per-core workers
//! (see `../shared/DESIGN.md` §1 and §7). So far it has the pieces that need no I/O: [`log`]
//! records, [`pcap`] files, [`reject`] (REJECT replies as the kernel builds them, and its ICMP
//! rate limits); it re-exports the classifier so that the layering control → dataplane →
//! classifier is in place.

pub use classifier;
pub mod log;
pub mod pcap;
pub mod reject;
