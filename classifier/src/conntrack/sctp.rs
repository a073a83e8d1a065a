//! SCTP tracking, ported from Linux 6.12's `nf_conntrack_proto_sctp.c`:
//!
//! - `sctp_error`: a datagram shorter than the 12-byte common header is INVALID; an arriving one
//!   (PREROUTING) with `nf_conntrack_checksum` on must carry a good CRC32c (computed here by a
//!   table-driven [`crc32c`], the kernel's `sctp_compute_cksum`: the header's checksum field
//!   taken as zero, the result stored little-endian).
//! - `do_basic_checks`: the chunk walk (`for_each_sctp_chunk`: a chunk header needs 4 bytes,
//!   lengths round up to 4, a trailing partial header ends the walk); a zero-length chunk, a
//!   COOKIE_ECHO or COOKIE_ACK that is not the first chunk, an INIT, INIT_ACK or
//!   SHUTDOWN_COMPLETE that is not the only chunk, or a datagram without chunks is INVALID.
//! - `sctp_new` for an entry this packet creates: ABORT, SHUTDOWN_COMPLETE and COOKIE_ACK never
//!   start one (out of the blue, RFC 4960 §8.4); every chunk must be valid from NONE in the
//!   original direction (so DATA, SACK, ... alone start nothing); an INIT needs vtag 0 and
//!   gives the reply direction's tag, a HEARTBEAT gives the original's (the mid-stream pickup:
//!   HEARTBEAT_SENT, then the reply's HEARTBEAT_ACK makes it ESTABLISHED), an OOTB
//!   SHUTDOWN_ACK gives the reply's.
//! - The verification tag (§8.5): packets without INIT, SHUTDOWN_COMPLETE, COOKIE_ECHO, ABORT,
//!   SHUTDOWN_ACK, HEARTBEAT or HEARTBEAT_ACK must carry their direction's tag; per chunk, INIT
//!   needs 0, ABORT and SHUTDOWN_COMPLETE their direction's tag (the peer's with the T bit),
//!   COOKIE_ECHO its direction's; COOKIE_ACK clears both `init` marks; HEARTBEAT and
//!   HEARTBEAT_ACK learn a missing tag, and a HEARTBEAT with a changed tag (a restarted peer)
//!   is let through without state change or refresh (`SCTP_FLAG_HEARTBEAT_VTAG_FAILED`) until
//!   the other side's HEARTBEAT_ACK with a changed tag confirms the new association.
//! - The state table `sctp_conntracks[2][11][9]` ([`new_state`], `sctp_new_state`: chunks
//!   outside it — DATA, SACK, ... — keep the state), INIT/INIT_ACK noting the initiate tag for
//!   the other direction with the `init[]` collision rules, ASSURED on reaching ESTABLISHED,
//!   the per-state timeout of the last chunk's state, and the INIT retransmission on a CLOSED
//!   connection that does not renew the timeout.
//!
//! Where the kernel returns `-NF_ACCEPT` the packet gets no connection ([`L4Verdict::Invalid`]:
//! INVALID to the ruleset, a new entry is freed); changes made to the entry before that point
//! stay, as they do in the kernel. The 6.x state set has no HEARTBEAT_ACKED (the enum keeps its
//! number, 9, unused).

use super::conn::{status, Conn, ProtoState};
use super::table::Dir;
use super::track::{L4Verdict, Pkt};
use super::CtConfig;

/// SCTP connection states (`enum sctp_conntrack`, the same values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum SctpState {
    #[default]
    None = 0,
    Closed = 1,
    CookieWait = 2,
    CookieEchoed = 3,
    Established = 4,
    ShutdownSent = 5,
    ShutdownRecd = 6,
    ShutdownAckSent = 7,
    HeartbeatSent = 8,
}

impl SctpState {
    pub const COUNT: usize = 9;
    pub const ALL: [SctpState; 9] = [
        SctpState::None,
        SctpState::Closed,
        SctpState::CookieWait,
        SctpState::CookieEchoed,
        SctpState::Established,
        SctpState::ShutdownSent,
        SctpState::ShutdownRecd,
        SctpState::ShutdownAckSent,
        SctpState::HeartbeatSent,
    ];

    /// The name `/proc/net/nf_conntrack` (`sctp_conntrack_names`) and `conntrack -L`
    /// (libnetfilter_conntrack's `sctp_states`) print.
    pub fn name(self) -> &'static str {
        match self {
            SctpState::None => "NONE",
            SctpState::Closed => "CLOSED",
            SctpState::CookieWait => "COOKIE_WAIT",
            SctpState::CookieEchoed => "COOKIE_ECHOED",
            SctpState::Established => "ESTABLISHED",
            SctpState::ShutdownSent => "SHUTDOWN_SENT",
            SctpState::ShutdownRecd => "SHUTDOWN_RECD",
            SctpState::ShutdownAckSent => "SHUTDOWN_ACK_SENT",
            SctpState::HeartbeatSent => "HEARTBEAT_SENT",
        }
    }

    /// The state's part of its `nf_conntrack_sctp_timeout_*` sysctl (NONE has none: the kernel
    /// fills its slot with CLOSED's default).
    pub fn sysctl_name(self) -> Option<&'static str> {
        Some(match self {
            SctpState::None => return None,
            SctpState::Closed => "closed",
            SctpState::CookieWait => "cookie_wait",
            SctpState::CookieEchoed => "cookie_echoed",
            SctpState::Established => "established",
            SctpState::ShutdownSent => "shutdown_sent",
            SctpState::ShutdownRecd => "shutdown_recd",
            SctpState::ShutdownAckSent => "shutdown_ack_sent",
            SctpState::HeartbeatSent => "heartbeat_sent",
        })
    }
}

/// Default timeouts (ms) per state (`sctp_timeouts`). The NONE slot holds CLOSED's default, as
/// `nf_conntrack_sctp_init_net` sets it (no sysctl reaches it).
pub fn default_timeouts() -> [u32; SctpState::COUNT] {
    let s = 1000;
    [
        10 * s,  // NONE (= CLOSED's default)
        10 * s,  // CLOSED
        3 * s,   // COOKIE_WAIT
        3 * s,   // COOKIE_ECHOED
        210 * s, // ESTABLISHED
        3 * s,   // SHUTDOWN_SENT
        3 * s,   // SHUTDOWN_RECD
        3 * s,   // SHUTDOWN_ACK_SENT
        30 * s,  // HEARTBEAT_SENT
    ]
}

/// Per-connection SCTP state (`struct ip_ct_sctp`). Tags are kept as read big-endian from the
/// wire (only compared, and tested against 0).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SctpConn {
    pub state: SctpState,
    /// The direction (0 original, 1 reply) of the HEARTBEAT whose tag check failed.
    pub last_dir: u8,
    /// `SCTP_FLAG_HEARTBEAT_VTAG_FAILED`.
    pub flags: u8,
    /// Whether an INIT was seen from each direction (cleared by COOKIE_ACK).
    pub init: [bool; 2],
    /// The verification tag each direction's packets carry.
    pub vtag: [u32; 2],
}

/// Chunk types (`SCTP_CID_*`).
pub mod cid {
    pub const DATA: u8 = 0;
    pub const INIT: u8 = 1;
    pub const INIT_ACK: u8 = 2;
    pub const SACK: u8 = 3;
    pub const HEARTBEAT: u8 = 4;
    pub const HEARTBEAT_ACK: u8 = 5;
    pub const ABORT: u8 = 6;
    pub const SHUTDOWN: u8 = 7;
    pub const SHUTDOWN_ACK: u8 = 8;
    pub const ERROR: u8 = 9;
    pub const COOKIE_ECHO: u8 = 10;
    pub const COOKIE_ACK: u8 = 11;
    pub const ECN_ECNE: u8 = 12;
    pub const ECN_CWR: u8 = 13;
    pub const SHUTDOWN_COMPLETE: u8 = 14;
}

/// `SCTP_CHUNK_FLAG_T`: the tag is the peer's (ABORT, SHUTDOWN_COMPLETE).
const CHUNK_FLAG_T: u8 = 0x01;
/// `SCTP_FLAG_HEARTBEAT_VTAG_FAILED`.
const FLAG_HEARTBEAT_VTAG_FAILED: u8 = 1;
/// `sizeof(struct sctphdr)`: ports, verification tag, checksum.
const SCTPHDR_LEN: usize = 12;
/// `sizeof(struct sctp_chunkhdr)`: type, flags, length.
const CHUNKHDR_LEN: usize = 4;
/// `sizeof(struct sctp_inithdr)`: initiate tag, a_rwnd, streams, initial TSN.
const INITHDR_LEN: usize = 16;

/// `sctp_can_early_drop`: connections shutting down may be dropped under pressure (the
/// kernel's gc worker asks this of ASSURED connections too).
pub fn can_early_drop(s: &SctpConn) -> bool {
    matches!(
        s.state,
        SctpState::ShutdownSent | SctpState::ShutdownRecd | SctpState::ShutdownAckSent
    )
}

// The state table (`sctp_conntracks`), with the kernel's short names; `sIV` (SCTP_CONNTRACK_MAX)
// is None.
#[allow(non_upper_case_globals, dead_code)]
mod short {
    use super::SctpState;
    pub const sNO: Option<SctpState> = Some(SctpState::None);
    pub const sCL: Option<SctpState> = Some(SctpState::Closed);
    pub const sCW: Option<SctpState> = Some(SctpState::CookieWait);
    pub const sCE: Option<SctpState> = Some(SctpState::CookieEchoed);
    pub const sES: Option<SctpState> = Some(SctpState::Established);
    pub const sSS: Option<SctpState> = Some(SctpState::ShutdownSent);
    pub const sSR: Option<SctpState> = Some(SctpState::ShutdownRecd);
    pub const sSA: Option<SctpState> = Some(SctpState::ShutdownAckSent);
    pub const sHS: Option<SctpState> = Some(SctpState::HeartbeatSent);
    pub const sIV: Option<SctpState> = None;
}
use short::*;

/// `sctp_conntracks[dir][row][state]`, transcribed from Linux 6.12.
#[rustfmt::skip]
static SCTP_CONNTRACKS: [[[Option<SctpState>; SctpState::COUNT]; 11]; 2] = [
    [
/*	ORIGINAL	*/
/*                  sNO, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS */
/* init         */ [sCL, sCL, sCW, sCE, sES, sCL, sCL, sSA, sCW],
/* init_ack     */ [sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sCL],
/* abort        */ [sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL],
/* shutdown     */ [sCL, sCL, sCW, sCE, sSS, sSS, sSR, sSA, sCL],
/* shutdown_ack */ [sSA, sCL, sCW, sCE, sES, sSA, sSA, sSA, sSA],
/* error        */ [sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sCL],/* Can't have Stale cookie*/
/* cookie_echo  */ [sCL, sCL, sCE, sCE, sES, sSS, sSR, sSA, sCL],/* 5.2.4 - Big TODO */
/* cookie_ack   */ [sCL, sCL, sCW, sES, sES, sSS, sSR, sSA, sCL],/* Can't come in orig dir */
/* shutdown_comp*/ [sCL, sCL, sCW, sCE, sES, sSS, sSR, sCL, sCL],
/* heartbeat    */ [sHS, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS],
/* heartbeat_ack*/ [sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS],
    ],
    [
/*	REPLY	*/
/*                  sNO, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS */
/* init         */ [sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sIV],/* INIT in sCL Big TODO */
/* init_ack     */ [sIV, sCW, sCW, sCE, sES, sSS, sSR, sSA, sIV],
/* abort        */ [sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sIV],
/* shutdown     */ [sIV, sCL, sCW, sCE, sSR, sSS, sSR, sSA, sIV],
/* shutdown_ack */ [sIV, sCL, sCW, sCE, sES, sSA, sSA, sSA, sIV],
/* error        */ [sIV, sCL, sCW, sCL, sES, sSS, sSR, sSA, sIV],
/* cookie_echo  */ [sIV, sCL, sCE, sCE, sES, sSS, sSR, sSA, sIV],/* Can't come in reply dir */
/* cookie_ack   */ [sIV, sCL, sCW, sES, sES, sSS, sSR, sSA, sIV],
/* shutdown_comp*/ [sIV, sCL, sCW, sCE, sES, sSS, sSR, sCL, sIV],
/* heartbeat    */ [sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS],
/* heartbeat_ack*/ [sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sES],
    ],
];

/// The table row of a chunk type (`sctp_new_state`'s switch), None for chunks that do not
/// change the state.
fn row_of(chunk_type: u8) -> Option<usize> {
    Some(match chunk_type {
        cid::INIT => 0,
        cid::INIT_ACK => 1,
        cid::ABORT => 2,
        cid::SHUTDOWN => 3,
        cid::SHUTDOWN_ACK => 4,
        cid::ERROR => 5,
        cid::COOKIE_ECHO => 6,
        cid::COOKIE_ACK => 7,
        cid::SHUTDOWN_COMPLETE => 8,
        cid::HEARTBEAT => 9,
        cid::HEARTBEAT_ACK => 10,
        _ => return None,
    })
}

/// `sctp_new_state`: the state a chunk of `chunk_type` leads to from `cur` in `dir`; None is
/// `sIV` (invalid). Chunks outside the table (DATA, SACK, ...) keep the state.
pub fn new_state(dir: Dir, cur: SctpState, chunk_type: u8) -> Option<SctpState> {
    match row_of(chunk_type) {
        Some(row) => SCTP_CONNTRACKS[dir.index()][row][cur as usize],
        None => Some(cur),
    }
}

/// One chunk header as `for_each_sctp_chunk` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunk {
    /// Offset of the chunk header in the SCTP datagram.
    off: usize,
    ty: u8,
    flags: u8,
    len: u16,
}

/// `for_each_sctp_chunk`: from the end of the common header while a whole chunk header fits,
/// stepping by the chunk length rounded up to 4. A zero-length chunk is yielded and ends the
/// walk (the kernel's callers reject it before stepping on).
fn chunks(l4: &[u8]) -> impl Iterator<Item = Chunk> + '_ {
    let mut off = SCTPHDR_LEN;
    core::iter::from_fn(move || {
        if off >= l4.len() || l4.len() - off < CHUNKHDR_LEN {
            return None;
        }
        let c = Chunk {
            off,
            ty: l4[off],
            flags: l4[off + 1],
            len: u16::from_be_bytes([l4[off + 2], l4[off + 3]]),
        };
        off = if c.len == 0 {
            l4.len()
        } else {
            off + ((usize::from(c.len) + 3) & !3)
        };
        Some(c)
    })
}

/// The set of chunk types a datagram carries (`map` in `nf_conntrack_sctp_packet`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct ChunkMap([u64; 4]);

impl ChunkMap {
    fn set(&mut self, t: u8) {
        self.0[usize::from(t >> 6)] |= 1u64 << (t & 63);
    }
    fn has(&self, t: u8) -> bool {
        self.0[usize::from(t >> 6)] & (1u64 << (t & 63)) != 0
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The initiate tag of the INIT or INIT_ACK chunk at `off`, when the whole `sctp_inithdr` is in
/// the datagram (`skb_header_pointer`: bounded by the datagram, not by the chunk's length).
fn init_tag(l4: &[u8], off: usize) -> Option<u32> {
    let at = off + CHUNKHDR_LEN;
    if l4.len() < at + INITHDR_LEN {
        return None;
    }
    Some(be32(l4, at))
}

/// The CRC32c (Castagnoli, reflected 0x82F63B78) table.
static CRC32C_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC32c of `data` (initial value and final xor all ones).
pub fn crc32c(data: &[u8]) -> u32 {
    !crc32c_update(!0, data)
}

/// `sctp_compute_cksum`: the CRC32c of an SCTP datagram (at least its 12-byte header) with its
/// checksum field taken as zero. The wire carries it little-endian: `l4[8..12]` is
/// `to_le_bytes()` of this.
pub fn checksum(l4: &[u8]) -> u32 {
    let mut crc = crc32c_update(!0, &l4[..8]);
    crc = crc32c_update(crc, &[0; 4]);
    !crc32c_update(crc, &l4[SCTPHDR_LEN..])
}

/// `sctp_error`: whether the datagram is too short for the common header or, arriving with
/// `checksum` on, fails its CRC32c.
fn sctp_error(p: &Pkt<'_>, cfg: &CtConfig) -> bool {
    let l4 = p.l4;
    if l4.len() < SCTPHDR_LEN {
        return true;
    }
    p.arriving && cfg.checksum && l4[8..12] != checksum(l4).to_le_bytes()
}

/// `do_basic_checks`: true when the chunks are malformed (see the module doc), filling `map`
/// with the types seen up to there.
fn do_basic_checks(l4: &[u8], map: &mut ChunkMap) -> bool {
    let mut flag = false;
    let mut count = 0u32;
    for ch in chunks(l4) {
        if matches!(ch.ty, cid::INIT | cid::INIT_ACK | cid::SHUTDOWN_COMPLETE) {
            flag = true;
        }
        // Cookie Ack/Echo chunks not the first OR Init / Init Ack / Shutdown compl chunks not
        // the only chunks OR zero-length.
        if ((ch.ty == cid::COOKIE_ACK || ch.ty == cid::COOKIE_ECHO || flag) && count != 0)
            || ch.len == 0
        {
            return true;
        }
        map.set(ch.ty);
        count += 1;
    }
    count == 0
}

/// `sctp_new`: resets the entry and checks that the datagram may start a connection, noting
/// the tags it gives; false to delete the entry.
fn sctp_new(s: &mut SctpConn, l4: &[u8], sh_vtag: u32) -> bool {
    *s = SctpConn::default();
    let (orig, reply) = (Dir::Original.index(), Dir::Reply.index());
    for ch in chunks(l4) {
        match new_state(Dir::Original, SctpState::None, ch.ty) {
            None | Some(SctpState::None) => return false,
            Some(_) => {}
        }
        match ch.ty {
            cid::INIT => {
                // Sec 8.5.1 (A)
                if sh_vtag != 0 {
                    return false;
                }
                let Some(tag) = init_tag(l4, ch.off) else {
                    return false;
                };
                s.vtag[reply] = tag;
            }
            cid::HEARTBEAT => s.vtag[orig] = sh_vtag,
            // An OOTB SHUTDOWN_ACK expects a SHUTDOWN_COMPLETE back, otherwise an ABORT
            // (Sec 8.4 (5) and (8)).
            cid::SHUTDOWN_ACK => s.vtag[reply] = sh_vtag,
            _ => {}
        }
        s.state = SctpState::None;
    }
    true
}

/// Why the chunk loop stopped early (`goto out_unlock`).
struct Bad;

/// The chunk loop of `nf_conntrack_sctp_packet` (under `ct->lock`): per-chunk tag checks and
/// learning, the state table, INIT/INIT_ACK tags. Returns the last chunk's new state and
/// whether to accept without refreshing the timeout; sets `*assured` as soon as a chunk moves
/// the connection into ESTABLISHED (the kernel sets the bit there, before a later chunk may
/// still fail).
fn walk(
    s: &mut SctpConn,
    dir: Dir,
    l4: &[u8],
    map: &ChunkMap,
    confirmed: bool,
    assured: &mut bool,
) -> Result<(SctpState, bool), Bad> {
    let sh_vtag = be32(l4, 4);
    let d = dir.index();
    let o = dir.other().index();
    let mut new = SctpState::None;
    let mut ignore = false;
    for ch in chunks(l4) {
        // Special cases of Verification tag check (Sec 8.5.1).
        match ch.ty {
            cid::INIT
                // (A) vtag MUST be zero
                if sh_vtag != 0 => {
                    return Err(Bad);
                }
            cid::ABORT | cid::SHUTDOWN_COMPLETE => {
                // (B), (C): own vtag if T is unset, the peer's if T is set
                let want = if ch.flags & CHUNK_FLAG_T != 0 {
                    s.vtag[o]
                } else {
                    s.vtag[d]
                };
                if sh_vtag != want {
                    return Err(Bad);
                }
            }
            cid::COOKIE_ECHO
                // (D) vtag must be same as init_vtag as found in INIT_ACK
                if sh_vtag != s.vtag[d] => {
                    return Err(Bad);
                }
            cid::COOKIE_ACK => {
                s.init = [false; 2];
            }
            cid::HEARTBEAT => {
                if s.vtag[d] == 0 {
                    s.vtag[d] = sh_vtag;
                } else if sh_vtag != s.vtag[d] {
                    if map.has(cid::DATA) || ignore {
                        return Err(Bad);
                    }
                    s.flags |= FLAG_HEARTBEAT_VTAG_FAILED;
                    s.last_dir = d as u8;
                    ignore = true;
                    continue;
                } else if s.flags & FLAG_HEARTBEAT_VTAG_FAILED != 0 {
                    s.flags &= !FLAG_HEARTBEAT_VTAG_FAILED;
                }
            }
            cid::HEARTBEAT_ACK => {
                if s.vtag[d] == 0 {
                    s.vtag[d] = sh_vtag;
                } else if sh_vtag != s.vtag[d] {
                    if map.has(cid::DATA) || ignore {
                        return Err(Bad);
                    }
                    if s.flags & FLAG_HEARTBEAT_VTAG_FAILED == 0 || s.last_dir == d as u8 {
                        return Err(Bad);
                    }
                    s.flags &= !FLAG_HEARTBEAT_VTAG_FAILED;
                    s.vtag[d] = sh_vtag;
                    s.vtag[o] = 0;
                } else if s.flags & FLAG_HEARTBEAT_VTAG_FAILED != 0 {
                    s.flags &= !FLAG_HEARTBEAT_VTAG_FAILED;
                }
            }
            _ => {}
        }

        let old = s.state;
        new = new_state(dir, old, ch.ty).ok_or(Bad)?;

        // If it is an INIT or an INIT ACK note down the vtag.
        if ch.ty == cid::INIT {
            let tag = init_tag(l4, ch.off).ok_or(Bad)?;
            // Do not record INIT matching peer vtag (stale or retransmitted INIT).
            if old == SctpState::None || s.vtag[o] != tag {
                if s.init[d] && s.init[o] {
                    s.init[o] = false;
                }
                s.init[d] = true;
            }
            s.vtag[o] = tag;
            // Don't renew the timeout on an INIT retransmit, so port reuse by a client or a
            // NAT middlebox cannot keep the entry alive indefinitely.
            if new == SctpState::Closed && old == SctpState::Closed && confirmed {
                ignore = true;
            }
        } else if ch.ty == cid::INIT_ACK {
            let tag = init_tag(l4, ch.off).ok_or(Bad)?;
            let vtag = s.vtag[o];
            if !s.init[o] && vtag != 0 && vtag != tag {
                return Err(Bad);
            }
            // collision
            if s.init[d] && s.init[o] && vtag != tag {
                return Err(Bad);
            }
            s.vtag[o] = tag;
        }

        s.state = new;
        if old != new && new == SctpState::Established {
            *assured = true;
        }
    }
    Ok((new, ignore))
}

/// `nf_conntrack_sctp_packet`. A connection the packet creates (not CONFIRMED, state NONE, made
/// by the caller as `init_conntrack` does) first goes through `sctp_new`.
pub fn packet(c: &mut Conn, dir: Dir, p: &Pkt<'_>, cfg: &CtConfig) -> L4Verdict {
    if sctp_error(p, cfg) {
        return L4Verdict::Invalid;
    }
    let l4 = p.l4;
    let sh_vtag = be32(l4, 4);
    let mut map = ChunkMap::default();
    if do_basic_checks(l4, &mut map) {
        return L4Verdict::Invalid;
    }
    let confirmed = c.status & status::CONFIRMED != 0;
    let Conn {
        status: st,
        proto: ProtoState::Sctp(s),
        ..
    } = c
    else {
        return L4Verdict::Invalid;
    };
    if !confirmed {
        // If an OOTB packet has any of these chunks discard (Sec 8.4).
        if map.has(cid::ABORT) || map.has(cid::SHUTDOWN_COMPLETE) || map.has(cid::COOKIE_ACK) {
            return L4Verdict::Invalid;
        }
        if !sctp_new(s, l4, sh_vtag) {
            return L4Verdict::Invalid;
        }
    }

    // Check the verification tag (Sec 8.5).
    let exempt = [
        cid::INIT,
        cid::SHUTDOWN_COMPLETE,
        cid::COOKIE_ECHO,
        cid::ABORT,
        cid::SHUTDOWN_ACK,
        cid::HEARTBEAT,
        cid::HEARTBEAT_ACK,
    ];
    if !exempt.iter().any(|&t| map.has(t)) && sh_vtag != s.vtag[dir.index()] {
        return L4Verdict::Invalid;
    }

    let mut assured = false;
    let r = walk(s, dir, l4, &map, confirmed, &mut assured);
    if assured {
        *st |= status::ASSURED;
    }
    match r {
        Err(Bad) => L4Verdict::Invalid,
        // Allow, but do not refresh the timeout.
        Ok((_, true)) => L4Verdict::Accept(None),
        Ok((new, false)) => L4Verdict::Accept(Some(cfg.timeouts.sctp[new as usize])),
    }
}

#[cfg(test)]
#[path = "sctp_tests.rs"]
mod tests;
