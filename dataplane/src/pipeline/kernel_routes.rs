//! Routed mode with `routes = "kernel"` (DESIGN.md §9, VPP linux-cp's model): each routed port
//! has a TAP twin in the host carrying its MAC, and the host's stack is the control plane.
//!
//! - The box's traffic of port `i` (INPUT-accepted frames and every ARP frame) is written to
//!   twin `i`, so the host answers ARP and pings and runs its daemons there; what the host
//!   sends out of twin `i` goes through OUTPUT and POSTROUTING and leaves by port `i` with the
//!   Ethernet header the host gave it (the host resolved its own next hop).
//! - Forwarding stays here: the rtnetlink mirror (`route::mirror`) publishes a new
//!   [`Router`] whenever the twins' addresses, routes or permanent neighbours change, and each
//!   worker takes it at its next batch ([`Pipeline::refresh_router`]). On the change the worker
//!   moves its static neighbours to the new set and, as `masq_inet_event` does, kills the
//!   masqueraded connections whose address went away.

use super::{Group, Pipeline};
use crate::io::FrameIo;
use crate::route::Router;
use crate::stats::Counter;
use crate::steer::FROM_TWIN;
use crate::tap::Tap;
use crate::xsk::XdpDesc;
use classifier::conntrack::conn::NO_PORT;
use classifier::conntrack::table::Dir;
use classifier::packet::{IfName, PacketMeta};
use classifier::wire::headers::parse_ethernet;
use std::sync::Arc;

impl Pipeline {
    /// Gives this worker port `i`'s TAP twin at `twins[i]` (`routes = "kernel"`).
    pub fn with_twins(mut self, twins: Vec<Arc<Tap>>) -> Pipeline {
        self.twins = twins;
        self
    }

    /// Where the box's frames of `port` go: its twin, else the exception path's TAP.
    pub(super) fn local_sink(&self, port: usize) -> Option<&Arc<Tap>> {
        if self.twins.is_empty() {
            self.tap.as_ref()
        } else {
            self.twins.get(port)
        }
    }

    /// Takes the router the control side published last, when it changed since this worker's
    /// last batch (one atomic load otherwise).
    pub(super) fn refresh_router(&mut self) {
        let Some(shared) = &self.topo.router_updates else {
            return;
        };
        let generation = shared.generation();
        if generation == self.router_gen {
            return;
        }
        self.router_gen = generation;
        let new = shared.current();
        if let Some(old) = self.router.replace(Arc::clone(&new)) {
            self.router_changed(&old, &new);
        }
    }

    fn router_changed(&mut self, old: &Router, new: &Router) {
        for &(port, ip, _) in &old.neighbors {
            if !new.neighbors.iter().any(|n| n.0 == port && n.1 == ip) {
                self.neigh.remove_static(port, ip);
            }
        }
        for &(port, ip, mac) in &new.neighbors {
            self.neigh.add_static(port, ip, mac);
        }
        for (pi, p) in old.ports.iter().enumerate() {
            for a in &p.addrs {
                let kept = new
                    .ports
                    .get(pi)
                    .is_some_and(|q| q.addrs.iter().any(|b| b.addr == a.addr));
                if !kept {
                    self.forget_masquerade(pi as u8, a.addr);
                }
            }
        }
    }

    /// `masq_inet_event`: the connections masqueraded behind `port` to `addr` die with it.
    fn forget_masquerade(&mut self, port: u8, addr: u32) {
        let Some(ct) = self.st.ct.as_mut() else {
            return;
        };
        let doomed: Vec<_> = ct
            .table
            .iter()
            .filter(|(_, c)| c.masq_port == port && c.tuple[Dir::Reply.index()].dst == addr)
            .map(|(id, _)| id)
            .collect();
        for id in doomed {
            ct.table.kill(id);
            self.stats.add(Counter::NatAddressGone, 1);
        }
    }

    /// `nf_nat_oif_changed`: a masqueraded connection's packet of the original direction
    /// leaving by another port than the one it is masqueraded behind (the route changed) kills
    /// the connection, and the packet is dropped. True when that happened to packet `i`.
    pub(super) fn masquerade_moved(&mut self, g: Group, i: usize, id: u32, dir: Dir) -> bool {
        let egress = self.groups[g as usize].egress[i];
        let Some(ct) = self.st.ct.as_mut() else {
            return false;
        };
        let masq = ct.table.get(id).masq_port;
        if g != Group::Post || dir != Dir::Original || masq == NO_PORT || masq == egress {
            return false;
        }
        ct.table.kill_later(id);
        self.stats.add(Counter::NatOifChanged, 1);
        true
    }

    /// Frames the host sent out of port `port`'s twin: ARP leaves as it is, IPv4 goes to the
    /// worker owning its flow (which tracks the replies), through OUTPUT and POSTROUTING, and
    /// keeps the host's Ethernet header.
    pub fn twin_burst<I: FrameIo>(
        &mut self,
        io: &mut I,
        port: usize,
        descs: &[XdpDesc],
        now_ns: u64,
    ) {
        self.twin_frames(io, port, descs, now_ns, true)
    }

    /// Twin frames another worker steered here (they are not steered again).
    pub fn twin_handoff_burst<I: FrameIo>(
        &mut self,
        io: &mut I,
        port: usize,
        descs: &[XdpDesc],
        now_ns: u64,
    ) {
        self.stats.add(Counter::HandoffIn, descs.len() as u64);
        self.twin_frames(io, port, descs, now_ns, false)
    }

    fn twin_frames<I: FrameIo>(
        &mut self,
        io: &mut I,
        port: usize,
        descs: &[XdpDesc],
        now_ns: u64,
        steer: bool,
    ) {
        self.refresh_router();
        if steer && self.steering.workers > 1 {
            self.take_claims();
        }
        self.clock_ns = now_ns;
        let out = self.topo.ports.get(port).map_or(IfName::NONE, |p| p.name);
        for d in descs {
            let Some(f) = io.frame(d.addr, d.len).filter(|f| f.len() >= 14) else {
                io.free(d.addr);
                continue;
            };
            if steer {
                self.stats.add(Counter::RxPackets, 1);
                self.stats.add(Counter::RxBytes, u64::from(d.len));
            }
            if super::ethertype(f) != super::ETH_P_IP {
                self.stats.add(Counter::NonIpForwarded, 1);
                io.tx(port, *d);
                continue;
            }
            let h = match parse_ethernet(f) {
                Ok(h) => h,
                Err(r) => {
                    self.stats.add(Counter::of_drop(r), 1);
                    io.free(d.addr);
                    continue;
                }
            };
            if steer && self.steering.workers > 1 {
                let owner = crate::steer::flow_owner_claimed(
                    &h,
                    f,
                    self.steering.key,
                    self.steering.workers,
                    Some(&self.claims),
                );
                if owner != self.steering.worker {
                    let sent = self.hand_off(owner, port | usize::from(FROM_TWIN), f);
                    self.stats.add(
                        if sent {
                            Counter::HandoffOut
                        } else {
                            Counter::HandoffDropped
                        },
                        1,
                    );
                    io.free(d.addr);
                    continue;
                }
            }
            let g = self.entry_group(Group::RawOut);
            if self.groups[g as usize].n == super::BATCH {
                self.run_group(io, g);
                self.run_local(io);
            }
            let m = PacketMeta::arriving(&h, IfName::NONE, out, now_ns);
            let gb = &mut self.groups[g as usize];
            // Next hop 0: the frame's Ethernet header is final.
            gb.hop[gb.n] = 0;
            gb.push(h, m, *d, port as u8, port as u8);
        }
        if let Some(ct) = self.st.ct.as_mut() {
            ct.set_clock(now_ns);
        }
        self.run_group(io, Group::RawOut);
        self.run_local(io);
    }
}
