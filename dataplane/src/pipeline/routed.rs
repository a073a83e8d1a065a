//! Routed mode's steps in the pipeline (DESIGN.md §1, §9), as `ip_rcv` / `ip_forward` /
//! `ip_finish_output2` order them:
//!
//! - **Arrival**: ARP is answered for the box's addresses and teaches the neighbour cache; an
//!   IPv4 frame addressed to another MAC is dropped before any hook (`PACKET_OTHERHOST`).
//! - **After PREROUTING** (and its DNAT): the FIB lookup of the destination. The box's own
//!   and broadcast addresses go to INPUT; no route sends ICMP net unreachable; a forwarded
//!   packet with TTL ≤ 1 gets ICMP time exceeded, a DF one over the egress MTU ICMP
//!   fragmentation needed, and the others have their TTL decremented (the kernel's
//!   `ip_decrease_ttl` checksum arithmetic) before FORWARD.
//! - **Leaving** (after POSTROUTING): the next hop is resolved (the neighbour cache; frames
//!   wait in its bounded queue while ARP runs) and the MACs rewritten: the egress port's as
//!   source, the neighbour's as destination.
//!
//! ICMP errors the routing step sends are local packets: they go through OUTPUT and
//! POSTROUTING like the box's own traffic, from the address of the port facing the sender.

use super::{Group, Pipeline};
use crate::io::FrameIo;
use crate::reject::build_icmp_error;
use crate::route::arp::{self, Arp};
use crate::route::neigh::{Action, Heard, Resolved};
use crate::route::{Hop, Router};
use crate::stats::Counter;
use crate::xsk::XdpDesc;
use classifier::conntrack::{CtKind, Outcome};
use classifier::defrag::refrag::ip_exceeds_mtu;
use classifier::packet::{IfName, PacketMeta};
use classifier::wire::headers::parse_ethernet;
use classifier::wire::{icmp, ipv4};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// `ip_decrease_ttl`'s checksum update, on the little-endian loads the kernel does.
fn decrease_ttl(ip: &mut [u8]) {
    let check = u16::from_be_bytes([ip[10], ip[11]]).swap_bytes();
    let mut c = u32::from(check) + 0x0001;
    c += u32::from(c >= 0xffff);
    ip[10..12].copy_from_slice(&(c as u16).swap_bytes().to_be_bytes());
    ip[8] = ip[8].wrapping_sub(1);
}

impl Pipeline {
    fn router(&self) -> Option<Arc<Router>> {
        self.router.clone()
    }

    /// The routing decision of packet `i` of PREROUTING (routed mode), which its hook
    /// accepted: on to INPUT or FORWARD, or an ICMP error and a drop.
    pub(super) fn route_routed<I: FrameIo>(&mut self, io: &mut I, i: usize, mark: Option<u32>) {
        let Some(rt) = self.router() else {
            return;
        };
        let gb = &self.groups[Group::Pre as usize];
        let (h, d, to_us) = (gb.h[i], gb.d[i], gb.route[i] == crate::route::Route::Local);
        let attach = related_to(gb.ct[i]);
        let hop = rt.lookup(h.dst);
        let drop = |p: &mut Pipeline, io: &mut I, c: Counter| {
            p.stats.add(c, 1);
            p.settle_after_local(i);
            io.free(d.addr);
        };
        match hop {
            // INPUT runs whether or not a TAP takes the packet afterwards (as the kernel's
            // INPUT runs before the socket lookup).
            Hop::Local | Hop::Broadcast => self.pass(Group::Pre, i, Group::Input, mark),
            Hop::Unreachable => {
                let kind = icmp::Repr::dst_unreachable(0, &[]);
                self.icmp_error_for(io, &rt, d, kind, attach);
                drop(self, io, Counter::RouteUnreachable);
            }
            Hop::Forward { .. } if !to_us => drop(self, io, Counter::RouteNotForUs),
            Hop::Forward { port, gateway } => {
                let mtu = rt.ports.get(usize::from(port)).map_or(1500, |p| p.mtu);
                if h.ttl <= 1 {
                    let kind = icmp::Repr {
                        msg_type: icmp::Message::TIME_EXCEEDED,
                        code: 0,
                        rest: [0; 4],
                        data: &[],
                    };
                    self.icmp_error_for(io, &rt, d, kind, attach);
                    return drop(self, io, Counter::RouteTtlExceeded);
                }
                let meta = self.frag_meta(Group::Pre, i);
                let len = usize::from(h.ip_len);
                if ip_exceeds_mtu(len, h.dont_frag, &meta, u32::from(mtu)) {
                    let mut kind = icmp::Repr::dst_unreachable(4, &[]);
                    kind.rest[2..4].copy_from_slice(&mtu.to_be_bytes());
                    self.icmp_error_for(io, &rt, d, kind, attach);
                    return drop(self, io, Counter::RouteFragNeeded);
                }
                let l3 = usize::from(h.l3_offset);
                if let Some(ip) = io
                    .frame_mut(d.addr, d.len)
                    .and_then(|f| f.get_mut(l3..l3 + 20))
                {
                    decrease_ttl(ip);
                }
                let name = self
                    .topo
                    .ports
                    .get(usize::from(port))
                    .map_or(IfName::NONE, |p| p.name);
                let gb = &mut self.groups[Group::Pre as usize];
                gb.h[i].ttl -= 1;
                gb.egress[i] = port;
                gb.hop[i] = if gateway == 0 { h.dst } else { gateway };
                gb.m[i].out_iface = name;
                self.pass(Group::Pre, i, Group::Forward, mark);
            }
        }
    }

    /// Sends the ICMP error `kind` about frame `d` to its sender, as a local packet carrying
    /// `attach` (the offending packet's connection, RELATED: `nf_ct_attach`) when it had one.
    fn icmp_error_for<I: FrameIo>(
        &mut self,
        io: &mut I,
        rt: &Router,
        d: XdpDesc,
        kind: icmp::Repr<'_>,
        attach: Option<Outcome>,
    ) {
        let Some(sender) = io.frame(d.addr, d.len).and_then(|f| parse_ethernet(f).ok()) else {
            return;
        };
        let (port, toward) = match rt.lookup(sender.src) {
            Hop::Forward { port, gateway } => (
                usize::from(port),
                if gateway == 0 { sender.src } else { gateway },
            ),
            _ => return,
        };
        let Some(src) = rt.select_addr(port, toward) else {
            return;
        };
        // `icmpv4_mask_allow`: fragmentation needed is never limited (PMTU discovery).
        let pmtu = kind.msg_type == icmp::Message::DST_UNREACHABLE && kind.code == 4;
        if !pmtu
            && !self
                .icmp
                .allow(Ipv4Addr::from(sender.src), sender_now(&sender, self))
        {
            self.stats.add(Counter::RejectRateLimited, 1);
            return;
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        let ip_id = self.ip_id;
        let built = io.build_from(d.addr, d.len, |orig, out| {
            build_icmp_error(orig, kind, Ipv4Addr::from(src), ip_id, out).ok()
        });
        match built {
            Ok(Some(reply)) => {
                self.stats.add(Counter::IcmpErrorSent, 1);
                self.send_local(io, reply, port as u8, toward, attach);
            }
            Ok(None) => self.stats.add(Counter::RejectSuppressed, 1),
            Err(_) => self.stats.add(Counter::RejectNoFrame, 1),
        }
    }

    /// Routed mode without a TAP: answers an ICMP echo request INPUT accepted for one of the
    /// box's unicast addresses, as `icmp_echo` does (the request's TOS and payload, TTL 64, no
    /// DF), rewriting the frame in place and sending it through OUTPUT. False (the caller
    /// frees `d`) for anything else: options, a reassembled datagram, a broadcast.
    pub(super) fn answer_echo<I: FrameIo>(&mut self, io: &mut I, d: XdpDesc) -> bool {
        let Some(rt) = self.router() else {
            return false;
        };
        let Some(h) = io.frame(d.addr, d.len).and_then(|f| parse_ethernet(f).ok()) else {
            return false;
        };
        let is_request = matches!(
            h.l4,
            classifier::packet::L4::Icmp {
                icmp_type: 8,
                code: 0
            }
        );
        let whole = h.frag_off == 0 && !h.more_frags && h.ihl_bytes == 20;
        if !is_request || !whole || rt.lookup(h.dst) != Hop::Local {
            return false;
        }
        let (port, toward) = match rt.lookup(h.src) {
            Hop::Forward { port, gateway } => (port, if gateway == 0 { h.src } else { gateway }),
            _ => return false,
        };
        let mtu = rt.ports.get(usize::from(port)).map_or(1500, |p| p.mtu);
        if h.ip_len > mtu {
            return false;
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        let (l3, len) = (usize::from(h.l3_offset), usize::from(h.ip_len));
        let Some(ip) = io
            .frame_mut(d.addr, d.len)
            .and_then(|f| f.get_mut(l3..l3 + len))
        else {
            return false;
        };
        if icmp::Packet::new_checked(&ip[20..]).is_err() {
            return false;
        }
        if let Ok(mut p) = ipv4::Packet::new_checked(&mut *ip) {
            p.set_ident(self.ip_id);
            p.set_reserved_flag(false);
            p.set_dont_frag(false);
            p.set_more_frags(false);
            p.set_frag_offset(0);
            p.set_ttl(64);
            p.set_src_addr(Ipv4Addr::from(h.dst));
            p.set_dst_addr(Ipv4Addr::from(h.src));
            p.fill_checksum();
        }
        if let Ok(mut m) = icmp::Packet::new_checked(&mut ip[20..]) {
            m.set_msg_type(icmp::Message::ECHO_REPLY);
            m.fill_checksum();
        }
        self.stats.add(Counter::EchoReplied, 1);
        self.send_local(io, d, port, toward, None);
        true
    }

    /// A packet the box itself sends out of `port` toward next hop `hop`: into OUTPUT, with
    /// the connection it is `attach`ed to (tracking then keeps it).
    pub(super) fn send_local<I: FrameIo>(
        &mut self,
        io: &mut I,
        d: XdpDesc,
        port: u8,
        hop: u32,
        attach: Option<Outcome>,
    ) {
        let Some(Ok(h)) = io.frame(d.addr, d.len).map(parse_ethernet) else {
            io.free(d.addr);
            return;
        };
        let g = self.entry_group(Group::RawOut);
        if self.groups[g as usize].n == super::BATCH {
            self.stats.add(Counter::TxNoFrame, 1);
            io.free(d.addr);
            return;
        }
        let out = self
            .topo
            .ports
            .get(usize::from(port))
            .map_or(IfName::NONE, |p| p.name);
        let m = PacketMeta::arriving(&h, IfName::NONE, out, self.clock_ns);
        let gb = &mut self.groups[g as usize];
        gb.hop[gb.n] = hop;
        gb.push(h, m, d, port, port);
        if let Some(o) = attach {
            gb.ct[gb.n - 1] = o;
        }
        self.local_pending = true;
    }

    /// Settles packet `i` of PREROUTING, which is dropped after an ICMP error about it was
    /// made: a connection it made stays until the local packets have run (the error is attached
    /// to it, as the kernel's skb holds its reference), then goes.
    fn settle_after_local(&mut self, i: usize) {
        if let Outcome::Conn {
            created: created @ true,
            id,
            ..
        } = &mut self.groups[Group::Pre as usize].ct[i]
        {
            *created = false;
            self.doomed.push(*id);
            return;
        }
        self.settle(Group::Pre, i, false);
    }

    /// Sends packet `i` of `g` out of `egress` in routed mode: its next hop resolved, its MACs
    /// rewritten. False when the packet waits for ARP (or was dropped): the caller is done.
    pub(super) fn resolve_out<I: FrameIo>(
        &mut self,
        io: &mut I,
        g: Group,
        i: usize,
        egress: usize,
    ) -> bool {
        let Some(rt) = self.router() else {
            return true;
        };
        let gb = &self.groups[g as usize];
        let (d, hop, tag) = (gb.d[i], gb.hop[i], gb.frag[i]);
        if hop == 0 {
            // The host's own frame (its stack resolved the next hop).
            return true;
        }
        let now = self.clock_ns / 1_000_000;
        let mut acts = std::mem::take(&mut self.neigh_acts);
        let r = self
            .neigh
            .resolve(egress as u8, hop, now, &mut |a| acts.push(a));
        let go = match r {
            Resolved::Mac(mac) => {
                rewrite_macs(io, d, mac, rt.ports[egress].mac);
                true
            }
            Resolved::Pending(e) if self.needs_fragments(g, i, egress) => {
                // Fragmented first, as `ip_finish_output` does before `neigh_output`: each
                // fragment waits for the neighbour.
                let mut pieces = std::mem::take(&mut self.pieces);
                self.cut(io, g, i, self.egress_mtu(egress), &mut pieces);
                self.stats.add(Counter::NeighQueued, pieces.len() as u64);
                for fd in pieces.drain(..) {
                    self.neigh.enqueue(e, fd, &mut |a| acts.push(a));
                }
                self.pieces = pieces;
                false
            }
            Resolved::Pending(e) if tag == 0 => {
                self.stats.add(Counter::NeighQueued, 1);
                self.neigh.enqueue(e, d, &mut |a| acts.push(a));
                false
            }
            Resolved::Pending(_) | Resolved::NoEntry => {
                self.stats.add(Counter::NeighDropped, 1);
                io.free(d.addr);
                false
            }
        };
        self.neigh_acts = acts;
        self.run_neigh_actions(io, &rt);
        go
    }

    /// Carries out what the neighbour cache asked for.
    pub(super) fn run_neigh_actions<I: FrameIo>(&mut self, io: &mut I, rt: &Router) {
        let acts = std::mem::take(&mut self.neigh_acts);
        for a in acts.iter().copied() {
            match a {
                Action::Solicit { port, ip, to } => self.solicit(io, rt, port, ip, to),
                Action::Send { port, mac, frame } => {
                    if let Some(p) = rt.ports.get(usize::from(port)) {
                        rewrite_macs(io, frame, mac, p.mac);
                        self.stats.add(Counter::RoutedForwarded, 1);
                        io.tx(usize::from(port), frame);
                    } else {
                        io.free(frame.addr);
                    }
                }
                Action::Drop { frame, failed } => {
                    self.stats.add(Counter::NeighDropped, 1);
                    if failed {
                        let kind = icmp::Repr::dst_unreachable(1, &[]);
                        self.icmp_error_for(io, rt, frame, kind, None);
                    }
                    io.free(frame.addr);
                }
            }
        }
        let mut acts = acts;
        acts.clear();
        self.neigh_acts = acts;
    }

    /// An ARP request for `ip` out of `port` (broadcast, or unicast to `to`).
    fn solicit<I: FrameIo>(
        &mut self,
        io: &mut I,
        rt: &Router,
        port: u8,
        ip: u32,
        to: Option<[u8; 6]>,
    ) {
        let Some(p) = rt.ports.get(usize::from(port)) else {
            return;
        };
        let Some(src) = rt.select_addr(usize::from(port), ip) else {
            return;
        };
        let msg = Arp {
            op: arp::REQUEST,
            sender_mac: p.mac,
            sender_ip: src,
            target_mac: to.unwrap_or([0; 6]),
            target_ip: ip,
        };
        let mac = p.mac;
        if let Ok(Some(f)) = io.alloc_frame(|out| msg.emit(to.unwrap_or([0xff; 6]), mac, out)) {
            self.stats.add(Counter::ArpRequested, 1);
            io.tx(usize::from(port), f);
        }
    }

    /// An ARP frame arriving on `port` in routed mode: answered when it asks for one of the
    /// box's addresses (`arp_ignore` 0: any of them, on any port) by the worker that received
    /// it (`receiver`; the others get a copy to learn from) unless the port has a TAP twin
    /// (then the twin gets it and the host answers), learnt from.
    pub(super) fn arp_in<I: FrameIo>(
        &mut self,
        io: &mut I,
        port: usize,
        d: XdpDesc,
        receiver: bool,
    ) {
        let Some(rt) = self.router() else {
            io.free(d.addr);
            return;
        };
        if receiver {
            self.stats.add(Counter::ArpIn, 1);
        }
        // With TAP twins the host answers (its twin has the port's MAC and addresses).
        let answer = receiver && self.twins.is_empty();
        if let (true, Some(twin), Some(f)) =
            (receiver, self.twins.get(port), io.frame(d.addr, d.len))
        {
            if twin.write(f).is_err() {
                self.stats.add(Counter::TapErrors, 1);
            }
        }
        let msg = io.frame(d.addr, d.len).and_then(Arp::parse);
        io.free(d.addr);
        let (Some(msg), Some(p)) = (msg, rt.ports.get(port)) else {
            return;
        };
        let for_us = rt.is_local(msg.target_ip);
        let now = self.clock_ns / 1_000_000;
        if msg.sender_ip != 0 && !rt.is_local(msg.sender_ip) {
            let heard = Heard {
                port: port as u8,
                ip: msg.sender_ip,
                mac: msg.sender_mac,
                solicited: msg.op == arp::REPLY && for_us,
                create: msg.op == arp::REQUEST && for_us,
            };
            let mut acts = std::mem::take(&mut self.neigh_acts);
            self.neigh.learn(heard, now, &mut |a| acts.push(a));
            self.neigh_acts = acts;
            self.run_neigh_actions(io, &rt);
        }
        if msg.op == arp::REQUEST && for_us && answer {
            let reply = Arp {
                op: arp::REPLY,
                sender_mac: p.mac,
                sender_ip: msg.target_ip,
                target_mac: msg.sender_mac,
                target_ip: msg.sender_ip,
            };
            let mac = p.mac;
            if let Ok(Some(f)) = io.alloc_frame(|out| reply.emit(msg.sender_mac, mac, out)) {
                self.stats.add(Counter::ArpReplied, 1);
                io.tx(port, f);
            }
        }
    }

    /// Runs the neighbour timers (retransmissions, ageing, failures).
    pub(super) fn neigh_tick<I: FrameIo>(&mut self, io: &mut I, now_ns: u64) {
        // Checked before the router is cloned: idle workers call this on every poll.
        if now_ns < self.neigh_next_tick || self.router.is_none() {
            return;
        }
        let Some(rt) = self.router() else {
            return;
        };
        self.neigh_next_tick = now_ns + 10_000_000;
        let mut acts = std::mem::take(&mut self.neigh_acts);
        self.neigh.tick(now_ns / 1_000_000, &mut |a| acts.push(a));
        self.neigh_acts = acts;
        self.run_neigh_actions(io, &rt);
    }
}

/// What a locally made ICMP error about a packet of outcome `o` carries: its connection,
/// RELATED, in the other direction (`nf_ct_attach`: RELATED_REPLY for an original packet).
fn related_to(o: Outcome) -> Option<Outcome> {
    match o {
        Outcome::Conn { id, dir, .. } => Some(Outcome::Conn {
            id,
            dir: dir.other(),
            kind: CtKind::Related,
            created: false,
        }),
        _ => None,
    }
}

fn sender_now(_h: &classifier::packet::Headers, p: &Pipeline) -> u64 {
    p.clock_ns
}

/// The Ethernet addresses of a frame leaving: to `dst` from `src`.
fn rewrite_macs<I: FrameIo>(io: &mut I, d: XdpDesc, dst: [u8; 6], src: [u8; 6]) {
    if let Some(f) = io.frame_mut(d.addr, d.len).and_then(|f| f.get_mut(..12)) {
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
    }
}
