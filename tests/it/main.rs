//! pollwall's integration tests, one binary (ripgrep style): CLI conformance against the
//! iptables oracle's transcripts and test vectors, round trips, and the real binary's behaviour.

mod binary;
mod classbench;
mod common;
mod differential;
mod e2e;
mod golden;
mod iptables_t;
mod kernel_diff;
mod netns;
mod pipeline;
mod pipeline_claims;
mod pipeline_route_changes;
mod pipeline_stateful;
mod replay;
mod replay_routed;
mod robustness;
mod roundtrip;
