//! The tracking step for one packet, in the order of `nf_conntrack_in`:
//!
//! 1. A non-first fragment has no transport header: no connection (INVALID). (Reassembly, when
//!    it runs, means only whole datagrams get here.)
//! 2. ICMP first goes through `icmp_error`: a short or (at PREROUTING) badly checksummed message
//!    or a type above 18 is INVALID; an error message whose quoted datagram belongs to a tracked
//!    connection is RELATED to it (reply direction when the quote is of a reply), else INVALID;
//!    queries go on.
//! 3. The tuple (`nf_ct_get_tuple`: 4 bytes of ports for TCP, UDP, UDP-Lite and SCTP, 8 bytes of
//!    header for ICMP) and its lookup. Not found: a new entry, unconfirmed, allocated (with early
//!    drop) *before* the protocol decides whether the packet may start a connection, as
//!    `init_conntrack` does. A tuple without an inverse (ICMP non-queries) gets no entry.
//! 4. ctinfo: the reply direction is ESTABLISHED (reply); the original direction is ESTABLISHED
//!    once a reply was seen, RELATED for an expected connection, else NEW.
//! 5. The protocol's packet handler (state machine, window, timeouts, ASSURED). When it calls
//!    the packet invalid the packet leaves with no connection (a new entry is freed); when it
//!    asks for a repeat (a SYN reopening a closed TCP connection) the old entry is killed and
//!    the packet is tracked afresh.
//! 6. A reply marks the connection SEEN_REPLY.

use super::conn::{status, ProtoState};
use super::expect::Expectations;
use super::helper::{ExpectNat, HelperKind};
use super::table::{ConnId, Dir, Found, Table, TableFull};
use super::tuple::{icmp_is_error, proto, Tuple};
use super::{generic, icmp, sctp, tcp, udp, CtConfig};
use crate::packet::Headers;

/// A packet's relation to its connection (`enum ip_conntrack_info` without the reply bit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtKind {
    New,
    Established,
    Related,
}

/// What tracking made of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No connection: the ruleset sees INVALID.
    Invalid,
    /// The packet belongs to connection `id`; `created` when this packet made it (unconfirmed
    /// until [`super::Tracker::confirm`]).
    Conn {
        id: ConnId,
        dir: Dir,
        kind: CtKind,
        created: bool,
    },
    /// The packet belonged to connection `id`, which ended with it (a TCP reset before any
    /// reply): its facts were taken and it is out of the table, but its entry stays readable
    /// (its NAT binding) until the next batch ([`super::Table::kill_later`]).
    Ended { id: ConnId, dir: Dir, kind: CtKind },
    /// Drop the packet: the table is full and nothing could be evicted.
    Drop,
    /// An earlier packet, not yet through the hooks, made the connection this packet belongs
    /// to: finish that one, then track this one again.
    Busy,
}

/// What a protocol handler decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4Verdict {
    /// Tracked; the connection's timeout becomes the one given (ms), or stays (None).
    Accept(Option<u32>),
    /// Tracked, and the connection ends now (a TCP reset before any reply): the packet keeps
    /// what it learnt, the table forgets the connection.
    AcceptKill,
    /// The packet is invalid for this connection (`-NF_ACCEPT`).
    Invalid,
    /// The old connection is over: kill it and track the packet as a new one (`-NF_REPEAT`).
    Repeat,
}

/// One packet as the handlers see it.
pub struct Pkt<'a> {
    pub h: &'a Headers,
    /// The transport header and payload (up to the IP total length).
    pub l4: &'a [u8],
    /// Whether the packet arrived from outside (PREROUTING: checksums are verified there).
    pub arriving: bool,
}

/// Per-outcome counters (`conntrack -S`'s `invalid`, `found`, `new`, `drop`, ...).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrackStats {
    pub invalid: u64,
    pub found: u64,
    pub new: u64,
    pub related: u64,
}

/// The tuple of an arriving packet, or None when the header is too short to give one.
pub fn packet_tuple(h: &Headers, l4: &[u8]) -> Option<Tuple> {
    let mut t = Tuple {
        src: h.src,
        dst: h.dst,
        sport: 0,
        dport: 0,
        proto: h.proto,
    };
    l4_tuple(&mut t, l4)?;
    Some(t)
}

/// Fills the protocol part of `t` from the transport header (`nf_ct_get_tuple`).
pub(crate) fn l4_tuple(t: &mut Tuple, l4: &[u8]) -> Option<()> {
    let be16 = |at: usize| Some(u16::from_be_bytes([*l4.get(at)?, *l4.get(at + 1)?]));
    match t.proto {
        proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => {
            t.sport = be16(0)?;
            t.dport = be16(2)?;
        }
        proto::ICMP => {
            if l4.len() < 8 {
                return None;
            }
            t.dport = u16::from(l4[0]) << 8 | u16::from(l4[1]);
            t.sport = be16(4)?;
        }
        proto::GRE => return generic::gre_tuple(t, l4),
        _ => {}
    }
    Some(())
}

/// The tracking step of `super::Tracker::track`; `kill` is set when the connection ends with
/// this packet (the caller reads its facts first).
/// The state a tracking step works on: the table, the expectations, the settings, counters.
pub(crate) struct Ctx<'a> {
    pub table: &'a mut Table,
    pub expect: &'a mut Expectations,
    pub cfg: &'a CtConfig,
    pub stats: &'a mut TrackStats,
    /// The sequence adjustments of connections that have them (`tcp_in_window` reads them).
    pub seqadj: &'a SeqAdjMap,
    /// Set when a new connection fulfils an expectation that asks it to follow its master's
    /// NAT: (the connection, its master, what to follow). The tracker binds it.
    pub follow: &'a mut Option<(ConnId, ConnId, ExpectNat)>,
}

/// The tracker's sequence adjustments, by connection slot.
pub(crate) type SeqAdjMap =
    hashbrown::HashMap<ConnId, super::seqadj::SeqAdjs, foldhash::fast::FixedState>;

pub(crate) fn track(
    cx: Ctx<'_>,
    p: &Pkt<'_>,
    template_helper: Option<HelperKind>,
    kill: &mut bool,
) -> Outcome {
    let Ctx {
        table,
        expect,
        cfg,
        stats,
        seqadj,
        follow,
    } = cx;
    let h = p.h;
    if h.frag_off != 0 {
        stats.invalid += 1;
        return Outcome::Invalid;
    }
    if h.proto == proto::ICMP {
        match icmp::error(table, cfg, p) {
            icmp::ErrorCheck::Query => {}
            icmp::ErrorCheck::Invalid => {
                stats.invalid += 1;
                return Outcome::Invalid;
            }
            icmp::ErrorCheck::Related(f) => {
                stats.related += 1;
                return related(f);
            }
            icmp::ErrorCheck::Busy => return Outcome::Busy,
        }
    }
    let Some(tuple) = packet_tuple(h, p.l4) else {
        stats.invalid += 1;
        return Outcome::Invalid;
    };
    // At most one repeat: the repeated packet finds no connection and makes a new one.
    for _ in 0..2 {
        let (id, dir, created) = match table.lookup(&tuple) {
            Some(Found {
                unconfirmed: true, ..
            }) => return Outcome::Busy,
            Some(f) => {
                stats.found += 1;
                (f.id, f.dir, false)
            }
            None => {
                let Some(reply) = tuple.invert() else {
                    stats.invalid += 1;
                    return Outcome::Invalid;
                };
                match table.alloc(tuple, reply, initial_state(tuple.proto), 0) {
                    Ok(id) => {
                        init_conntrack(table, expect, id, &tuple, template_helper, follow);
                        (id, Dir::Original, true)
                    }
                    Err(TableFull) => return Outcome::Drop,
                }
            }
        };
        let st = table.get(id).status;
        let kind = if dir == Dir::Reply || st & status::SEEN_REPLY != 0 {
            CtKind::Established
        } else if st & status::EXPECTED != 0 {
            CtKind::Related
        } else {
            CtKind::New
        };
        let adj = if st & status::SEQ_ADJUST != 0 {
            seqadj.get(&id)
        } else {
            None
        };
        let verdict = handle(table, cfg, id, dir, p, adj);
        match verdict {
            L4Verdict::Accept(timeout) => {
                if let Some(t) = timeout {
                    table.refresh(id, t);
                }
                let c = table.get_mut(id);
                if dir == Dir::Reply {
                    c.status |= status::SEEN_REPLY;
                }
                if created {
                    stats.new += 1;
                }
                return Outcome::Conn {
                    id,
                    dir,
                    kind,
                    created,
                };
            }
            L4Verdict::Invalid => {
                if created {
                    table.abort(id);
                }
                stats.invalid += 1;
                return Outcome::Invalid;
            }
            L4Verdict::AcceptKill => {
                // The core still marks the (dying) connection as replied to: rules see it.
                if dir == Dir::Reply {
                    table.get_mut(id).status |= status::SEEN_REPLY;
                }
                *kill = true;
                return Outcome::Conn {
                    id,
                    dir,
                    kind,
                    created,
                };
            }
            L4Verdict::Repeat => table.kill(id),
        }
    }
    stats.invalid += 1;
    Outcome::Invalid
}

/// The rest of `init_conntrack` for a new entry: an expectation it fulfils makes it EXPECTED
/// (RELATED to the ruleset), with its master's helper and mark; otherwise the raw table's
/// template helper, if any, becomes its helper.
fn init_conntrack(
    table: &mut Table,
    expect: &mut Expectations,
    id: ConnId,
    tuple: &Tuple,
    template_helper: Option<HelperKind>,
    follow: &mut Option<(ConnId, ConnId, ExpectNat)>,
) {
    if let Some(e) = expect.take(table, tuple) {
        if let Some(nat) = e.exp.nat {
            *follow = Some((id, e.master, nat));
        }
        let mark = table.get(e.master).mark;
        let c = table.get_mut(id);
        c.status |= status::EXPECTED;
        c.master_helper = Some(e.exp.helper);
        c.master = e.master;
        c.mark = mark;
    } else if template_helper.is_some() {
        let c = table.get_mut(id);
        c.helper = template_helper;
        c.status |= status::HELPER;
    }
}

fn related(f: Found) -> Outcome {
    Outcome::Conn {
        id: f.id,
        dir: f.dir,
        kind: CtKind::Related,
        created: false,
    }
}

fn initial_state(p: u8) -> ProtoState {
    match p {
        proto::TCP => ProtoState::Tcp(tcp::TcpConn::default()),
        proto::UDP | proto::UDPLITE => ProtoState::Udp { stream_ts: 0 },
        proto::SCTP => ProtoState::Sctp(sctp::SctpConn::default()),
        proto::GRE => ProtoState::Gre,
        _ => ProtoState::None,
    }
}

fn handle(
    table: &mut Table,
    cfg: &CtConfig,
    id: ConnId,
    dir: Dir,
    p: &Pkt<'_>,
    adj: Option<&super::seqadj::SeqAdjs>,
) -> L4Verdict {
    let now = table.now_ms();
    let c = table.get_mut(id);
    match c.l4proto() {
        proto::TCP => tcp::packet(c, dir, p, cfg, now, adj),
        proto::UDP => udp::packet(c, p, cfg, now, false),
        proto::UDPLITE => udp::packet(c, p, cfg, now, true),
        proto::ICMP => icmp::packet(c, cfg),
        proto::SCTP => sctp::packet(c, dir, p, cfg),
        proto::GRE => generic::gre_packet(c, cfg),
        _ => L4Verdict::Accept(Some(cfg.timeouts.generic)),
    }
}

/// Whether an ICMP type is an error for `icmp_error` (re-exported for the dataplane).
pub fn is_icmp_error(t: u8) -> bool {
    icmp_is_error(t)
}
