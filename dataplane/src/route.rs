//! The routing decision: its own step between PREROUTING and the FORWARD/INPUT hooks, as in
//! netfilter. Bridge mode (today) decides by the destination MAC: the box's own (the TAP's) means
//! INPUT, anything else is FORWARD out of the paired port, unchanged. A routed mode will decide
//! here by an LPM lookup of the destination address (egress port and next hop), and rewrite the
//! MACs and decrement the TTL after POSTROUTING accepts; nothing else in the pipeline changes.

use crate::pipeline::Topology;
use classifier::packet::Headers;

/// Where a packet goes after PREROUTING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through FORWARD and POSTROUTING, out of port `egress`.
    Forward { egress: usize },
    /// To the box itself: INPUT, then the TAP.
    Local,
}

/// Bridge mode's decision for a frame received on `ingress` with destination MAC `dst_mac`.
#[inline]
pub fn decide(topo: &Topology, ingress: usize, dst_mac: &[u8], _h: &Headers) -> Route {
    if topo.local_mac.is_some_and(|m| dst_mac == m) {
        Route::Local
    } else {
        Route::Forward {
            egress: topo.ports.get(ingress).map_or(ingress, |p| p.peer),
        }
    }
}
