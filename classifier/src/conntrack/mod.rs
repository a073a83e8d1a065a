//! Connection tracking (DESIGN.md §5): one [`Tracker`] per worker, pure (no I/O, no threads,
//! time passed in), reproducing netfilter's `nf_conntrack` packet for packet.
//!
//! - [`table`]: the bounded, keyed hash table of connections, its unconfirmed → confirmed
//!   lifecycle, early drop and the timer wheel that ages it.
//! - [`track`]: the per-packet step of `nf_conntrack_in` (tuple, lookup or new entry, ctinfo,
//!   protocol handler); [`tcp`], [`udp`], [`icmp`], [`sctp`], [`generic`] (and GRE) are the
//!   protocol trackers, ported from their `nf_conntrack_proto_*.c`.
//! - [`config`]: `nf_conntrack_max`, the TCP switches and every timeout, netfilter's defaults.
//!
//! A packet's journey: [`Tracker::track`] after the raw table (PREROUTING for arriving packets,
//! OUTPUT for the box's own), [`Tracker::info`] gives the facts `-m state` / `-m conntrack` match
//! on, and after the hooks [`Tracker::confirm`] (the packet left, or was delivered: INPUT or
//! POSTROUTING accepted it) or [`Tracker::abort`] (it was dropped) settle a new connection.

pub mod config;
pub mod conn;
pub mod connlimit;
pub mod expect;
pub mod generic;
pub mod helper;
pub mod icmp;
pub mod list;
pub mod sctp;
pub mod seqadj;
pub mod table;
pub mod tcp;
pub mod track;
pub mod tuple;
pub mod udp;

pub use config::{CtConfig, TimeoutError, Timeouts};
pub use conn::{status, Conn, ProtoState};
pub use expect::{ExpectError, Expectations, Pending};
pub use table::{Clash, ConnId, Dir, Table, TableStats};
pub use track::{CtKind, Outcome, TrackStats};
pub use tuple::Tuple;

use crate::model::ct_state;
use crate::packet::{CtInfo, CtTemplate, Headers};
use crate::wire::{checksum, IpProtocol};
use std::net::Ipv4Addr;

/// One worker's connection tracker.
pub struct Tracker {
    pub table: Table,
    pub expect: Expectations,
    pub cfg: CtConfig,
    pub stats: TrackStats,
    /// Helper data of helped connections (`nfct_help_data`), by connection slot: at most one
    /// entry per slot, so bounded by the table; a slot's entry is reset when a new connection
    /// there first meets its helper.
    helper_state: hashbrown::HashMap<ConnId, helper::HelperState, foldhash::fast::FixedState>,
    /// Sequence adjustments of connections whose status has `SEQ_ADJUST` (`nfct_seqadj`), by
    /// slot: bounded by the table like `helper_state`; an entry counts only while its slot's
    /// connection has the bit (a new connection in the slot starts from zero when it gets it).
    pub(crate) seqadj: hashbrown::HashMap<ConnId, seqadj::SeqAdjs, foldhash::fast::FixedState>,
    /// NAT's random draws (`get_random_u16`'s role).
    pub(crate) nat_rng: u64,
    /// The share of the tuple space NAT may choose from (several workers).
    pub(crate) nat_owner: crate::nat::Owner,
}

/// What the helper made of a packet about to be confirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HelpOutcome {
    /// No helper, or it let the packet through (possibly announcing a connection, possibly
    /// rewriting it in place at the same length).
    Accept,
    /// Let through, rewritten by a NAT helper to this IPv4 total length.
    Resized(u16),
    /// `NF_DROP`: a malformed command, an expectation that could not be made, a rewrite that
    /// did not fit, or a sequence adjustment that failed.
    Drop,
}

impl Tracker {
    /// A tracker with an empty table whose hash is keyed by `seed` and whose clock starts at
    /// `now_ns`.
    pub fn new(cfg: CtConfig, seed: u64, now_ns: u64) -> Tracker {
        Tracker {
            table: Table::new(cfg.max, seed, now_ns),
            expect: Expectations::default(),
            helper_state: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(
                seed,
            )),
            seqadj: hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(
                seed ^ 1,
            )),
            cfg,
            stats: TrackStats::default(),
            nat_rng: seed | 1,
            nat_owner: crate::nat::Owner::ALONE,
        }
    }

    /// Moves the clock (call once per batch, before tracking it).
    pub fn set_clock(&mut self, now_ns: u64) {
        self.table.reap_dying();
        self.table.set_clock(now_ns);
    }

    /// Tracks one packet: `ip` is the datagram from its IPv4 header (at least `h.ihl_bytes`
    /// long, up to its total length); `arriving` for packets from outside (PREROUTING).
    /// Returns the outcome and the facts rules match on (`Busy` and `Drop` never reach a rule).
    pub fn track(&mut self, h: &Headers, ip: &[u8], arriving: bool) -> (Outcome, CtInfo) {
        self.track_with(h, ip, arriving, &CtTemplate::default())
    }

    /// [`Self::track`] with the raw table's CT template: a connection this packet creates gets
    /// the template's helper.
    pub fn track_with(
        &mut self,
        h: &Headers,
        ip: &[u8],
        arriving: bool,
        template: &CtTemplate,
    ) -> (Outcome, CtInfo) {
        let from = usize::from(h.ihl_bytes).min(ip.len());
        let to = usize::from(h.ip_len).clamp(from, ip.len());
        let p = track::Pkt {
            h,
            l4: &ip[from..to],
            arriving,
        };
        let mut kill = false;
        let mut follow = None;
        let cx = track::Ctx {
            table: &mut self.table,
            expect: &mut self.expect,
            cfg: &self.cfg,
            stats: &mut self.stats,
            seqadj: &self.seqadj,
            follow: &mut follow,
        };
        let o = track::track(cx, &p, template.helper, &mut kill);
        if let (
            Some((new, master, nat)),
            Outcome::Conn {
                id, created: true, ..
            },
        ) = (follow, o)
        {
            if id == new {
                self.follow_master(new, master, nat);
            }
        }
        let mut info = self.info(&o);
        if let (true, Outcome::Conn { id, dir, kind, .. }) = (kill, o) {
            // Gone from the table now, but this packet keeps it (its NAT binding applies).
            self.table.kill_later(id);
            info.conn = None;
            return (Outcome::Ended { id, dir, kind }, info);
        }
        (o, info)
    }

    /// Brings the connections of a batch into cache before it is tracked packet by packet
    /// (see [`Table::warm`]): `ip` of each packet as for [`Self::track`].
    pub fn warm<'a>(&self, packets: impl IntoIterator<Item = (&'a Headers, &'a [u8])>) {
        let mut acc = 0u16;
        for (h, ip) in packets {
            let from = usize::from(h.ihl_bytes).min(ip.len());
            if let Some(t) = track::packet_tuple(h, &ip[from..]) {
                acc ^= self.table.warm(&t);
            }
        }
        std::hint::black_box(acc);
    }

    /// The facts rules match on for a packet with this outcome.
    pub fn info(&self, o: &Outcome) -> CtInfo {
        match *o {
            Outcome::Conn { id, dir, kind, .. } => {
                let c = self.table.get(id);
                let mut state = match kind {
                    CtKind::New => ct_state::NEW,
                    CtKind::Established => ct_state::ESTABLISHED,
                    CtKind::Related => ct_state::RELATED,
                };
                if c.status & status::SRC_NAT != 0 {
                    state |= ct_state::SNAT;
                }
                if c.status & status::DST_NAT != 0 {
                    state |= ct_state::DNAT;
                }
                let tup = |t: &Tuple| (t.src, t.dst, t.sport, t.dport);
                CtInfo {
                    state,
                    status: u32::from(c.status & 0x7fff),
                    orig: tup(c.orig()),
                    reply: tup(c.reply()),
                    l4proto: c.l4proto(),
                    expires: self.table.remaining_ms(id) / 1000,
                    reply_dir: dir == Dir::Reply,
                    conn: Some(id),
                    mark: c.mark,
                    master_helper: c.master_helper,
                }
            }
            _ => CtInfo::invalid(),
        }
    }

    /// `nf_confirm` for a packet that survived the hooks (before [`Self::confirm`]): the
    /// connection's helper reads the payload and may announce an expected connection (on a
    /// NATed connection rewriting the announcement: [`crate::nat::helper`]), then a connection
    /// with sequence adjustment has the segment's numbers moved ([`seqadj`]). `ip` runs from
    /// the IPv4 header to the end of the frame's buffer (room to grow); `h.ip_len` bytes of it
    /// are the datagram.
    pub fn help(&mut self, h: &Headers, ip: &mut [u8], o: &Outcome) -> HelpOutcome {
        let Outcome::Conn { id, dir, kind, .. } = *o else {
            return HelpOutcome::Accept;
        };
        // Neither sees ICMP errors in the reply direction (`IP_CT_RELATED_REPLY`).
        if kind == CtKind::Related && dir == Dir::Reply {
            return HelpOutcome::Accept;
        }
        let mut ip_len = usize::from(h.ip_len).min(ip.len());
        let mut out = HelpOutcome::Accept;
        if let Some(helper) = self.table.get(id).helper {
            out = self.run_helper(helper, h, ip, ip_len, o);
            match out {
                HelpOutcome::Drop => return out,
                HelpOutcome::Resized(n) => ip_len = usize::from(n),
                HelpOutcome::Accept => {}
            }
        }
        // The kernel would adjust any protocol's packet here (an ICMP error of the original
        // direction included, read as TCP); only TCP segments are.
        if self.table.get(id).status & status::SEQ_ADJUST != 0 && h.proto == IpProtocol::TCP.0 {
            let adj = self.seqadj.get(&id).copied().unwrap_or_default();
            let from = usize::from(h.ihl_bytes).min(ip_len);
            if !seqadj::adjust(&adj, dir, &mut ip[from..ip_len]) {
                return HelpOutcome::Drop;
            }
        }
        out
    }

    /// `helper->help()` of `nf_confirm`, and what the tracker does with its verdict.
    fn run_helper(
        &mut self,
        helper: helper::HelperKind,
        h: &Headers,
        ip: &mut [u8],
        ip_len: usize,
        o: &Outcome,
    ) -> HelpOutcome {
        let Outcome::Conn {
            id,
            dir,
            kind,
            created,
        } = *o
        else {
            return HelpOutcome::Accept;
        };
        let from = usize::from(h.ihl_bytes).min(ip_len);
        let tuples = self.table.get(id).tuple;
        let st = self
            .helper_state
            .entry(id)
            .or_insert_with(|| helper::HelperState::new(helper));
        if created {
            *st = helper::HelperState::new(helper);
        }
        let pkt = helper::HelperPacket {
            tuples: &tuples,
            dir,
            established: kind == CtKind::Established,
            l4: &ip[from..ip_len],
        };
        let verdict = helper::help(helper, st, &self.cfg.helper, &pkt);
        let nated = self.is_nated(id);
        let mut e = match verdict {
            helper::Verdict::Accept => return HelpOutcome::Accept,
            helper::Verdict::Drop(_) => return HelpOutcome::Drop,
            helper::Verdict::Announce(e, m) if nated => {
                return self.nat_ftp(id, dir, e, &m, ip, ip_len);
            }
            helper::Verdict::Announce(e, _) | helper::Verdict::Expect(e) => e,
        };
        if nated && helper == helper::HelperKind::Tftp {
            // `nf_nat_tftp`: the answer is to reach the client's original port.
            e.nat = Some(helper::ExpectNat {
                dir: Dir::Reply,
                saved_port: tuples[0].sport,
            });
        }
        match self.expect.add(&self.table, e, id) {
            Ok(()) => HelpOutcome::Accept,
            Err(_) => HelpOutcome::Drop,
        }
    }

    /// The packet with outcome `o` survived the hooks: a connection it made is confirmed.
    /// [`Clash`] when its tuple is taken: the connection is gone and the packet must be dropped.
    pub fn confirm(&mut self, o: &Outcome) -> Result<(), Clash> {
        match *o {
            Outcome::Conn {
                id, created: true, ..
            } => {
                let r = self.table.confirm(id);
                if r.is_err() {
                    self.helper_state.remove(&id);
                }
                r
            }
            _ => Ok(()),
        }
    }

    /// The packet with outcome `o` was dropped: a connection it made goes with it.
    pub fn abort(&mut self, o: &Outcome) {
        if let Outcome::Conn {
            id, created: true, ..
        } = *o
        {
            self.table.abort(id);
        }
    }

    /// Ages the table, looking at no more than `budget` entries.
    pub fn age(&mut self, budget: usize) -> usize {
        let n = self.table.age(budget);
        self.expect.age(&self.table);
        n
    }
}

/// Whether a TCP or UDP checksum verifies over `l4[..len]` with a pseudo-header counting the
/// whole transport length (`nf_ip_checksum` / `nf_ip_checksum_partial`).
pub(crate) fn l4_checksum_ok(h: &Headers, l4: &[u8], len: usize) -> bool {
    let covered = &l4[..len.min(l4.len())];
    let pseudo = checksum::pseudo_header(
        Ipv4Addr::from(h.src),
        Ipv4Addr::from(h.dst),
        IpProtocol(h.proto),
        l4.len() as u32,
    );
    checksum::combine(&[pseudo, checksum::data(covered)]) == 0xffff
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
pub(crate) mod tests;
