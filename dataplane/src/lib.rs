//! pollwall's poll-mode dataplane (DESIGN.md §1, §7): AF_XDP sockets on our own ring layer
//! ([`xsk`]), the XDP redirect program loaded with raw `bpf()` ([`bpf`]), per-core workers
//! ([`worker`], started by [`runtime`]) running the batch [`pipeline`] over a packet I/O backend
//! ([`io::FrameIo`]: AF_XDP in [`afxdp`], in-memory in [`mem`], pcap replay in [`pcap_io`]), the exception path's [`tap`],
//! REJECT replies ([`reject`]), LOG records ([`log`]), per-worker counters ([`stats`]) and pcap
//! files ([`pcap`]). It re-exports the classifier, keeping the layering control → dataplane →
//! classifier.

pub use classifier;
pub mod afpacket;
pub mod afxdp;
pub mod bpf;
pub mod fdb;
pub mod frames;
pub mod io;
pub mod log;
pub mod mem;
pub mod netdev;
pub mod pcap;
pub mod pcap_io;
pub mod pcapng;
pub mod pipeline;
pub mod queue;
pub mod reject;
pub mod route;
pub mod runtime;
pub mod stats;
pub mod steer;
pub mod tap;
pub mod worker;
pub mod xsk;
