//! The connection tracking step of the pipeline (DESIGN.md §1, §5), in the flow's owner worker:
//! after the raw table of PREROUTING (arriving frames) or OUTPUT (the box's own), before the
//! rest of the hook, as netfilter orders them (raw -300, conntrack -200, mangle -150).
//!
//! **Sequential semantics in a batch.** The kernel handles one packet at a time: the packet
//! that makes a connection has confirmed it (or died) before the next packet of the flow is
//! looked up. Here a batch runs hook by hook, so when a packet finds a connection that an
//! earlier packet of the same batch made and has not yet confirmed ([`Outcome::Busy`]), the
//! earlier packets are run through the rest of their hooks first (a batch cut), then this one
//! is tracked again. Only a flow's first packets pay for it.
//!
//! **Settling.** A connection a packet made is confirmed when the packet leaves (POSTROUTING
//! accepted it) or is delivered (INPUT accepted it), and freed when the packet is dropped,
//! rejected or queued anywhere before that (`nf_conntrack_confirm` / the unconfirmed entry's
//! last reference going away).

use super::{Group, Pipeline};
use crate::io::FrameIo;
use crate::stats::Counter;
use classifier::conntrack::{HelpOutcome, Outcome};
use classifier::packet::{CtInfo, Effects};

/// Table entries aged per received burst (bounded work per batch).
pub(super) const AGE_BUDGET: usize = 64;

/// A random key for the connection table's hash (each worker its own).
pub(super) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0x63_74);
    h.finish()
}

/// Tables larger than this (beyond what stays in L2) have a group's connections looked up for
/// the whole group before it is tracked packet by packet: the lookups' cache misses then
/// overlap. Measured in `bench/benches/conntrack.rs` (`pollwall_warmed`): about 4× at 1M.
const WARM_ABOVE: usize = 16 * 1024;

impl Pipeline {
    /// Brings group `g`'s connections into cache (large tables only).
    pub(super) fn warm_connections<I: FrameIo>(&self, io: &I, g: Group) {
        let Some(ct) = self.st.ct.as_deref() else {
            return;
        };
        if ct.table.len() <= WARM_ABOVE {
            return;
        }
        let gb = &self.groups[g as usize];
        ct.warm((0..gb.n).filter_map(|i| {
            let f = io.frame(gb.d[i].addr, gb.d[i].len)?;
            Some((&gb.h[i], f.get(usize::from(gb.h[i].l3_offset)..)?))
        }));
    }

    /// Tracks packet `i` of a raw group (RawPre or RawOut) and moves it on to `to`: the rest of
    /// its hook. Without tracking it only moves.
    pub(super) fn track_step<I: FrameIo>(&mut self, io: &mut I, i: usize, fx: Effects, to: Group) {
        let mark = fx.mark;
        let from = if to == Group::Pre {
            Group::RawPre
        } else {
            Group::RawOut
        };
        if self.st.ct.is_none() {
            self.pass(from, i, to, mark);
            return;
        }
        let template = fx.ct.unwrap_or_default();
        if template.notrack {
            // -j CT --notrack / -j NOTRACK: the packet skips tracking, rules see UNTRACKED.
            self.pass(from, i, to, mark);
            let gb = &mut self.groups[to as usize];
            let k = gb.n - 1;
            gb.m[k].ct = CtInfo::untracked();
            gb.ct[k] = Outcome::Invalid;
            if let Some(t) = self.ct_trace.as_mut() {
                t.push(classifier::model::ct_state::UNTRACKED);
            }
            return;
        }
        let arriving = from == Group::RawPre;
        let (h, d, attached) = {
            let gb = &self.groups[from as usize];
            (gb.h[i], gb.d[i], gb.ct[i])
        };
        if let (false, Some(ct), Outcome::Conn { .. }) = (arriving, self.st.ct.as_ref(), attached) {
            // A local ICMP error attached to the connection of the packet it is about
            // (`nf_ct_attach`): conntrack takes that connection as it is. The nat table never
            // sees a RELATED ICMP error (`nf_nat_ipv4_fn` translates it and returns), even when
            // the connection's manips are not set up (its packet was dropped before them):
            // this packet's view says they are (no match reads those bits).
            let mut info = ct.info(&attached);
            info.status |= u32::from(
                classifier::conntrack::conn::status::SRC_NAT_DONE
                    | classifier::conntrack::conn::status::DST_NAT_DONE,
            );
            self.pass(from, i, to, mark);
            let gb = &mut self.groups[to as usize];
            gb.m[gb.n - 1].ct = info;
            if let Some(t) = self.ct_trace.as_mut() {
                t.push(info.state);
            }
            return;
        }
        // Busy twice in a row means the connection stays unconfirmed whatever runs first (one
        // a local ICMP error holds: see `routed.rs`): the packet is then INVALID, never a loop.
        for round in 0.. {
            let Some(ct) = self.st.ct.as_mut() else {
                return;
            };
            let ip = io
                .frame(d.addr, d.len)
                .and_then(|f| f.get(usize::from(h.l3_offset)..))
                .unwrap_or(&[]);
            let (o, info) = match ct.track_with(&h, ip, arriving, &template) {
                (Outcome::Busy, _) if round >= 2 => (Outcome::Invalid, CtInfo::invalid()),
                r => r,
            };
            match o {
                Outcome::Busy => {
                    // Finish the packets that went ahead (the one that made this connection is
                    // among them), then look again.
                    self.stats.add(Counter::CtBatchSplits, 1);
                    if arriving {
                        self.run_arriving(io);
                        // An ICMP error about that packet may hold its connection until the
                        // local packets have run.
                        self.run_local_pending(io);
                    } else {
                        self.run_local(io);
                    }
                }
                Outcome::Drop => {
                    self.stats.add(Counter::CtTableFull, 1);
                    io.free(d.addr);
                    return;
                }
                _ => {
                    if o == Outcome::Invalid {
                        self.stats.add(Counter::CtInvalid, 1);
                    }
                    self.pass(from, i, to, mark);
                    let gb = &mut self.groups[to as usize];
                    let k = gb.n - 1;
                    gb.m[k].ct = info;
                    gb.ct[k] = o;
                    if let Some(t) = self.ct_trace.as_mut() {
                        t.push(info.state);
                    }
                    return;
                }
            }
        }
    }

    /// Settles the connection packet `i` of group `g` made: confirmed when the packet
    /// `survived` the hooks, freed when it did not. False when confirmation failed (another
    /// connection holds its reply tuple): the packet must be dropped.
    pub(super) fn settle(&mut self, g: Group, i: usize, survived: bool) -> bool {
        let o = self.groups[g as usize].ct[i];
        let Some(ct) = self.st.ct.as_mut() else {
            return true;
        };
        let confirmed = if survived {
            ct.confirm(&o).is_ok()
        } else {
            ct.abort(&o);
            true
        };
        // Settled once: a packet that goes on (a copy) must not settle it again.
        if let Outcome::Conn { created, id, .. } = &mut self.groups[g as usize].ct[i] {
            let made = survived && confirmed && *created;
            *created = false;
            let id = *id;
            if made {
                self.claim_reply(id);
            }
        }
        confirmed
    }

    /// The last step before packet `i` of `g` leaves or is delivered: the connection's helper
    /// reads it (`nf_confirm`), then a connection it made is confirmed. False when the helper
    /// dropped it (the caller frees the frame).
    pub(super) fn confirm_out<I: FrameIo>(&mut self, io: &mut I, g: Group, i: usize) -> bool {
        let gb = &self.groups[g as usize];
        let (h, d, o) = (gb.h[i], gb.d[i], gb.ct[i]);
        if let (Some(ct), Outcome::Conn { .. }) = (self.st.ct.as_mut(), o) {
            let l3 = usize::from(h.l3_offset);
            let mut none = [0u8; 0];
            let ip = io
                .room_mut(d.addr)
                .and_then(|f| f.get_mut(l3..))
                .unwrap_or(&mut none);
            match ct.help(&h, ip, &o) {
                HelpOutcome::Accept => {}
                HelpOutcome::Resized(ip_len) => {
                    // A NAT helper rewrote the announcement: the frame ends with the datagram.
                    self.groups[g as usize].d[i].len = (l3 + usize::from(ip_len)) as u32;
                    self.reparse(io, g, i);
                }
                HelpOutcome::Drop => {
                    self.stats.add(Counter::CtHelperDrop, 1);
                    self.settle(g, i, false);
                    return false;
                }
            }
        }
        if !self.settle(g, i, true) {
            self.stats.add(Counter::CtInsertFailed, 1);
            return false;
        }
        true
    }

    /// A CONNMARK target set the connection's mark: the table and the packet's own view of it
    /// (later hooks match on it) take the new value.
    pub(super) fn save_ctmark(&mut self, g: Group, i: usize, ctmark: Option<u32>) {
        let (Some(ct), Some(v)) = (self.st.ct.as_mut(), ctmark) else {
            return;
        };
        let gb = &mut self.groups[g as usize];
        if let Outcome::Conn { id, .. } = gb.ct[i] {
            ct.table.get_mut(id).mark = v;
            gb.m[i].ct.mark = v;
        }
    }
}
