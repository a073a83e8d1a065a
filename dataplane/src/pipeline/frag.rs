//! Defragmentation in front of tracking (`nf_defrag_ipv4`, PREROUTING priority -400, before the
//! raw table), whenever the ruleset tracks connections: fragments are held by the worker's
//! [`Defrag`] (bounded by `ipfrag_high_thresh`, aged by `ipfrag_time`), a completed datagram
//! continues through the hooks as one frame (so `-f` never matches and rules see the whole
//! transport header), and when it leaves it is cut again along the fragment boundaries it
//! arrived with, as `ip_do_fragment`'s fast path does for a reassembled skb.
//!
//! A reassembled datagram must fit one UMEM frame (`frame_size`): a larger one is dropped and
//! counted (`defrag_too_big_for_frame`). Fragments are steered by their addresses only (every
//! fragment of a datagram reaches one worker); with several workers the reassembled datagram
//! is tracked by the worker that reassembled it.

use super::{Group, Pipeline};
use crate::io::FrameIo;
use crate::stats::Counter;
use crate::xsk::XdpDesc;
use classifier::defrag::refrag::{output_action, OutputAction};
use classifier::defrag::{user, DropReason, FragMeta, Fragmenter, Offer};
use classifier::packet::Headers;
use classifier::wire::headers::parse_ethernet;

/// Fragment layouts of the reassembled datagrams in flight (a packet lives one batch: a ring
/// of twice the groups' room never reuses a slot still in use).
pub(super) struct Layouts {
    slots: Vec<(Vec<u16>, FragMeta)>,
    next: usize,
    pub(super) fragmenter: Fragmenter,
    /// Scratch for the datagram being cut (the frame it sits in stays borrowed otherwise).
    scratch: Vec<u8>,
}

const SLOTS: usize = 2 * super::BATCH * super::GROUPS;

impl Layouts {
    pub(super) fn new() -> Layouts {
        Layouts {
            slots: (0..SLOTS)
                .map(|_| (Vec::new(), FragMeta::default()))
                .collect(),
            next: 0,
            fragmenter: Fragmenter::new(),
            scratch: Vec::with_capacity(65535),
        }
    }

    /// Keeps a layout; returns its tag (never 0).
    fn keep(&mut self, sizes: &[u16], meta: FragMeta) -> u16 {
        let i = self.next;
        self.next = (self.next + 1) % SLOTS;
        let (v, m) = &mut self.slots[i];
        v.clear();
        v.extend_from_slice(sizes);
        *m = meta;
        (i + 1) as u16
    }
}

fn drop_counter(r: DropReason) -> Counter {
    match r {
        DropReason::MemLimit | DropReason::NoBuffer => Counter::DefragMemLimit,
        DropReason::Duplicate => Counter::DefragDuplicate,
        DropReason::Overlap => Counter::DefragOverlap,
        _ => Counter::DefragFailed,
    }
}

/// What reassembly made of an arriving frame.
pub(super) enum Arrival {
    /// Not a fragment, or no reassembly: go on with the frame as it is.
    Whole,
    /// Held or dropped (the frame was freed).
    Gone,
    /// The datagram is complete: this frame (a new one) and its headers replace it.
    Complete(XdpDesc, Headers, u16),
}

impl Pipeline {
    /// Offers an arriving fragment to reassembly.
    pub(super) fn reassemble<I: FrameIo>(
        &mut self,
        io: &mut I,
        d: XdpDesc,
        h: &Headers,
        port: usize,
        now_ns: u64,
    ) -> Arrival {
        if h.frag_off == 0 && !h.more_frags {
            return Arrival::Whole;
        }
        let (Some(df), Some(_)) = (self.defrag.as_mut(), self.st.ct.as_ref()) else {
            return Arrival::Whole;
        };
        let l3 = usize::from(h.l3_offset);
        let Some(f) = io.frame(d.addr, d.len) else {
            io.free(d.addr);
            return Arrival::Gone;
        };
        let ip = &f[l3..(l3 + usize::from(h.ip_len)).min(f.len())];
        let offer = df.offer(ip, user::CONNTRACK_IN, port as u32, now_ns / 1_000_000);
        let done = match offer {
            Offer::NotFragment => return Arrival::Whole,
            Offer::Held => {
                self.stats.add(Counter::DefragHeld, 1);
                None
            }
            Offer::Dropped(r) => {
                self.stats.add(drop_counter(r), 1);
                None
            }
            Offer::Reassembled(r) => {
                let tag = self.layouts.keep(r.fragments, r.meta);
                self.layouts.scratch.clear();
                self.layouts.scratch.extend_from_slice(&f[..l3]);
                self.layouts.scratch.extend_from_slice(r.datagram);
                Some(tag)
            }
        };
        let Some(tag) = done else {
            io.free(d.addr);
            return Arrival::Gone;
        };
        let whole = &self.layouts.scratch;
        let built = io.build_from(d.addr, d.len, |_, dst| {
            let n = whole.len();
            (n <= dst.len()).then(|| {
                dst[..n].copy_from_slice(whole);
                n
            })
        });
        io.free(d.addr);
        let nd = match built {
            Ok(Some(nd)) => nd,
            Ok(None) => {
                self.stats.add(Counter::DefragTooBigForFrame, 1);
                return Arrival::Gone;
            }
            Err(_) => {
                self.stats.add(Counter::TxNoFrame, 1);
                return Arrival::Gone;
            }
        };
        let parsed = io.frame(nd.addr, nd.len).map(parse_ethernet);
        match parsed {
            Some(Ok(nh)) => {
                self.stats.add(Counter::DefragReassembled, 1);
                Arrival::Complete(nd, nh, tag)
            }
            _ => {
                self.stats.add(Counter::DefragFailed, 1);
                io.free(nd.addr);
                Arrival::Gone
            }
        }
    }

    /// The reassembly facts of packet `i` of `g` (default for a datagram that arrived whole).
    pub(super) fn frag_meta(&self, g: Group, i: usize) -> FragMeta {
        match self.groups[g as usize].frag[i] {
            0 => FragMeta::default(),
            tag => self.layouts.slots[usize::from(tag) - 1].1,
        }
    }

    /// The MTU packets leave `egress` with: the routed port's, else no limit (a bridge does
    /// not fragment).
    pub(super) fn egress_mtu(&self, egress: usize) -> u32 {
        self.router
            .as_ref()
            .and_then(|rt| rt.ports.get(egress))
            .map_or(u32::from(u16::MAX), |p| u32::from(p.mtu))
    }

    /// Whether packet `i` of `g` leaves `egress` in fragments (its DF refusals were made at
    /// routing).
    pub(super) fn needs_fragments(&self, g: Group, i: usize, egress: usize) -> bool {
        let h = self.groups[g as usize].h[i];
        let meta = self.frag_meta(g, i);
        output_action(
            usize::from(h.ip_len),
            h.dont_frag,
            &meta,
            self.egress_mtu(egress),
        ) == OutputAction::Fragment
    }

    /// Sends packet `i` of `g` out of `egress` as `__ip_finish_output` does: as it is when it
    /// fits and was not reassembled, else fragmented for the egress MTU (along the boundaries
    /// it arrived with when they fit: `ip_do_fragment`'s fast path). A DF datagram that does not
    /// fit (a local one: forwarded ones were refused at routing) is dropped.
    pub(super) fn send_out<I: FrameIo>(&mut self, io: &mut I, g: Group, i: usize, egress: usize) {
        let gb = &self.groups[g as usize];
        let (d, h) = (gb.d[i], gb.h[i]);
        let meta = self.frag_meta(g, i);
        let mtu = self.egress_mtu(egress);
        match output_action(usize::from(h.ip_len), h.dont_frag, &meta, mtu) {
            OutputAction::Send => io.tx(egress, d),
            OutputAction::FragNeeded { .. } => {
                self.stats.add(Counter::RouteFragNeeded, 1);
                io.free(d.addr);
            }
            OutputAction::Fragment => {
                let mut pieces = std::mem::take(&mut self.pieces);
                self.cut(io, g, i, mtu, &mut pieces);
                for fd in pieces.drain(..) {
                    io.tx(egress, fd);
                }
                self.pieces = pieces;
            }
        }
    }

    /// Cuts packet `i` of `g` into fragments for `mtu`, each in a frame of its own (their
    /// Ethernet header the packet's), into `pieces`; frees the packet's frame.
    pub(super) fn cut<I: FrameIo>(
        &mut self,
        io: &mut I,
        g: Group,
        i: usize,
        mtu: u32,
        pieces: &mut Vec<XdpDesc>,
    ) {
        let gb = &self.groups[g as usize];
        let (d, tag, l3) = (gb.d[i], gb.frag[i], usize::from(gb.h[i].l3_offset));
        let meta = self.frag_meta(g, i);
        let Some(f) = io.frame(d.addr, d.len) else {
            io.free(d.addr);
            return;
        };
        let scratch = &mut self.layouts.scratch;
        scratch.clear();
        scratch.extend_from_slice(f);
        let layout = (tag != 0).then(|| self.layouts.slots[usize::from(tag) - 1].0.as_slice());
        let (eth, datagram) = scratch.split_at(l3);
        let mut lost = 0u64;
        let res = self
            .layouts
            .fragmenter
            .fragment(datagram, &meta, mtu, layout, |frag| {
                // The source frame is only a valid donor for `build_from`.
                let built = io.build_from(d.addr, d.len, |_, dst| {
                    let n = eth.len() + frag.len();
                    (n <= dst.len()).then(|| {
                        dst[..eth.len()].copy_from_slice(eth);
                        dst[eth.len()..n].copy_from_slice(frag);
                        n
                    })
                });
                match built {
                    Ok(Some(fd)) => pieces.push(fd),
                    _ => lost += 1,
                }
            });
        io.free(d.addr);
        if res.is_err() {
            lost += 1;
        }
        let made = pieces.len() as u64;
        self.stats.add(
            if tag != 0 {
                Counter::DefragRefragmented
            } else {
                Counter::RouteFragmented
            },
            made,
        );
        if lost > 0 {
            self.stats.add(Counter::TxNoFrame, lost);
        }
    }

    /// Ages the reassembly queues (per batch, bounded).
    pub(super) fn age_fragments(&mut self, now_ns: u64) {
        if let Some(df) = self.defrag.as_mut() {
            let mut expired = 0u64;
            df.expire(now_ns / 1_000_000, super::track::AGE_BUDGET, |_| {
                expired += 1
            });
            while df.pop_expired().is_some() {
                expired += 1;
            }
            if expired > 0 {
                self.stats.add(Counter::DefragTimeout, expired);
            }
        }
    }
}
