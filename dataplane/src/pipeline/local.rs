//! The box's own traffic in the pipeline: frames the exception path's TAP hands over (through
//! OUTPUT, out of the port behind which their destination was learnt), the box's copy of a
//! bridged broadcast (through INPUT), and the replies REJECT sends.

use super::{ethertype, Group, Pipeline, BATCH, ETH_P_ARP};
use crate::io::FrameIo;
use crate::reject::build_reject;
use crate::stats::Counter;
use crate::xsk::XdpDesc;
use classifier::conntrack::Outcome;
use classifier::model::RejectWith;
use classifier::packet::{IfName, PacketMeta};
use classifier::wire::headers::parse_ethernet;
use std::sync::Arc;

impl Pipeline {
    /// Handles frames the box's stack sent through the TAP (already in frames of `io`): they
    /// go through OUTPUT and leave by the port behind which their destination MAC was seen
    /// (every port when unknown).
    pub fn local_burst<I: FrameIo>(&mut self, io: &mut I, descs: &[XdpDesc], now_ns: u64) {
        self.refresh_router();
        let topo = Arc::clone(&self.topo);
        for d in descs {
            let Some(f) = io.frame(d.addr, d.len) else {
                io.free(d.addr);
                continue;
            };
            if f.len() < 14 {
                io.free(d.addr);
                continue;
            }
            self.stats.add(Counter::RxPackets, 1);
            self.stats.add(Counter::RxBytes, u64::from(d.len));
            let known = if f[0] & 1 == 0 {
                self.fdb.lookup(&f[..6])
            } else {
                None
            };
            // Egress ports: the learned one, or a copy per port (the first takes the original).
            let mut egress = [0u8; 8];
            let ne = match known {
                Some(p) => {
                    egress[0] = p;
                    1
                }
                None => {
                    let n = topo.ports.len().min(egress.len());
                    for (i, e) in egress[..n].iter_mut().enumerate() {
                        *e = i as u8;
                    }
                    n
                }
            };
            let arp = ethertype(f) == ETH_P_ARP;
            let parsed = if arp { None } else { Some(parse_ethernet(f)) };
            for (i, &ep) in egress[..ne].iter().enumerate() {
                let d = if i + 1 == ne {
                    *d
                } else {
                    match io.build_from(d.addr, d.len, |src, dst| {
                        let n = src.len().min(dst.len());
                        dst[..n].copy_from_slice(&src[..n]);
                        Some(n)
                    }) {
                        Ok(Some(c)) => c,
                        _ => {
                            self.stats.add(Counter::TxNoFrame, 1);
                            continue;
                        }
                    }
                };
                match parsed {
                    None => io.tx(usize::from(ep), d),
                    Some(Err(r)) => {
                        self.stats.add(Counter::of_drop(r), 1);
                        io.free(d.addr);
                    }
                    Some(Ok(h)) => {
                        let g = self.entry_group(Group::RawOut);
                        if self.groups[g as usize].n == BATCH {
                            self.run_group(io, g);
                            self.run_local(io);
                        }
                        let out = topo.ports[usize::from(ep)].name;
                        let m = PacketMeta::arriving(&h, IfName::NONE, out, now_ns);
                        let gb = &mut self.groups[g as usize];
                        // Routed mode: the host's Ethernet header is final (next hop 0).
                        gb.hop[gb.n] = 0;
                        gb.push(h, m, d, ep, ep);
                    }
                }
            }
        }
        if let Some(ct) = self.st.ct.as_mut() {
            ct.set_clock(now_ns);
        }
        self.run_group(io, Group::RawOut);
        self.run_local(io);
    }

    /// A copy of broadcast/multicast packet `i` of PREROUTING for the box itself (INPUT).
    pub(super) fn local_copy<I: FrameIo>(
        &mut self,
        io: &mut I,
        i: usize,
        d: XdpDesc,
        mark: Option<u32>,
    ) {
        if self.tap.is_none() {
            return;
        }
        let copy = io.build_from(d.addr, d.len, |src, dst| {
            let n = src.len().min(dst.len());
            dst[..n].copy_from_slice(&src[..n]);
            Some(n)
        });
        let Ok(Some(c)) = copy else {
            self.stats.add(Counter::TxNoFrame, 1);
            return;
        };
        self.pass(Group::Pre, i, Group::Input, mark);
        let gb = &mut self.groups[Group::Input as usize];
        gb.d[gb.n - 1] = c;
        // The forwarded copy settles a new connection; the box's copy only shares it.
        if let Outcome::Conn { created, .. } = &mut gb.ct[gb.n - 1] {
            *created = false;
        }
    }

    /// Builds and sends the reply of a REJECT: out of the ingress port (FORWARD, INPUT) or back
    /// into the TAP (OUTPUT: the box rejected its own packet).
    pub(super) fn reject<I: FrameIo>(&mut self, io: &mut I, g: Group, i: usize, with: RejectWith) {
        let gb = &self.groups[g as usize];
        let (d, port, now, src) = (
            gb.d[i],
            usize::from(gb.port[i]),
            gb.m[i].now_ns,
            gb.h[i].src,
        );
        if with != RejectWith::TcpReset && !self.icmp.allow(std::net::Ipv4Addr::from(src), now) {
            self.stats.add(Counter::RejectRateLimited, 1);
            return;
        }
        self.ip_id = self.ip_id.wrapping_add(1);
        let ip_id = self.ip_id;
        let mut why = None;
        let built = io.build_from(d.addr, d.len, |orig, out| {
            match build_reject(orig, with, None, ip_id, out) {
                Ok(n) => Some(n),
                Err(e) => {
                    why = Some(e);
                    None
                }
            }
        });
        match built {
            Ok(Some(reply)) => {
                self.stats.add(Counter::RejectSent, 1);
                if g == Group::Output {
                    if let (Some(tap), Some(f)) =
                        (self.local_sink(port), io.frame(reply.addr, reply.len))
                    {
                        let _ = tap.write(f);
                    }
                    io.free(reply.addr);
                } else {
                    io.tx(port, reply);
                }
            }
            Ok(None) => {
                let _ = why;
                self.stats.add(Counter::RejectSuppressed, 1);
            }
            Err(_) => self.stats.add(Counter::RejectNoFrame, 1),
        }
    }
}
