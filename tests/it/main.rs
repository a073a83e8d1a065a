//! pollwall's integration tests, one binary (ripgrep style): CLI conformance against the
//! iptables oracle's transcripts and test vectors, round trips, and the real binary's behaviour.

mod binary;
mod common;
mod golden;
mod iptables_t;
mod robustness;
mod roundtrip;
