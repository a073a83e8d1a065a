//! The routing decision: its own step between PREROUTING and the FORWARD/INPUT hooks, as in
//! netfilter. Bridge mode (today) decides by the destination MAC: the box's own (the TAP's) means
//! INPUT, anything else is FORWARD out of the paired port, unchanged. A routed mode will decide
//! here by an LPM lookup of the destination address (egress port and next hop), and rewrite the
//! MACs and decrement the TTL after POSTROUTING accepts; nothing else in the pipeline changes.

pub mod arp;
pub mod fib;
pub mod neigh;

use crate::pipeline::Topology;

/// Where a packet goes after PREROUTING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through FORWARD and POSTROUTING, out of port `egress`.
    Forward { egress: usize },
    /// To the box itself: INPUT, then the TAP.
    Local,
    /// A broadcast or multicast frame: FORWARD out of `egress`, and a copy through INPUT to
    /// the box (what a bridge with a local port does).
    Both { egress: usize },
}

/// Bridge mode's decision for a frame received on `ingress` with destination MAC `dst_mac`
/// (ARP frames take it too, before any hook). A routed mode will also read the destination
/// address here.
#[inline]
pub fn decide(topo: &Topology, ingress: usize, dst_mac: &[u8]) -> Route {
    let egress = topo.ports.get(ingress).map_or(ingress, |p| p.peer);
    match topo.local_mac {
        Some(m) if dst_mac == m => Route::Local,
        Some(_) if dst_mac.first().is_some_and(|b| b & 1 != 0) => Route::Both { egress },
        _ => Route::Forward { egress },
    }
}
