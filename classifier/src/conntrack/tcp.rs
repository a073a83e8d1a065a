//! TCP tracking, ported from `nf_conntrack_proto_tcp.c` (Linux 6.12+): the flag filter, the
//! state table `tcp_conntracks`, `tcp_new`, the per-state cases of `nf_conntrack_tcp_packet`
//! (ignored packets, reopening, RST validation, simultaneous open, the challenge-ACK guard),
//! `tcp_in_window` with its four window conditions, option and SACK parsing, and the timeout
//! choice. Defaults: `tcp_loose` 1, `tcp_be_liberal` 0, `tcp_max_retrans` 3.
//!
//! Out-of-window packets are INVALID only where the kernel says so (sequence above the window,
//! ACK of unseen data); old retransmissions and overly delayed ACKs are *ignored*: tracked,
//! without a state change.

use super::conn::{status, Conn, ProtoState};
use super::seqadj::SeqAdjs;
use super::table::Dir;
use super::track::{L4Verdict, Pkt};
use super::{l4_checksum_ok, CtConfig};

/// TCP connection states (`enum tcp_conntrack`, the same values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TcpState {
    #[default]
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    SynSent2 = 9,
}

impl TcpState {
    pub const COUNT: usize = 10;
    pub const ALL: [TcpState; 10] = [
        TcpState::None,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::Established,
        TcpState::FinWait,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::SynSent2,
    ];

    /// The name `conntrack -L` and `/proc/net/nf_conntrack` print.
    pub fn name(self) -> &'static str {
        match self {
            TcpState::None => "NONE",
            TcpState::SynSent => "SYN_SENT",
            TcpState::SynRecv => "SYN_RECV",
            TcpState::Established => "ESTABLISHED",
            TcpState::FinWait => "FIN_WAIT",
            TcpState::CloseWait => "CLOSE_WAIT",
            TcpState::LastAck => "LAST_ACK",
            TcpState::TimeWait => "TIME_WAIT",
            TcpState::Close => "CLOSE",
            TcpState::SynSent2 => "SYN_SENT2",
        }
    }

    /// The state's part of its `nf_conntrack_tcp_timeout_*` sysctl name.
    pub fn sysctl_name(self) -> Option<&'static str> {
        Some(match self {
            TcpState::None => return None,
            TcpState::SynSent => "syn_sent",
            TcpState::SynRecv => "syn_recv",
            TcpState::Established => "established",
            TcpState::FinWait => "fin_wait",
            TcpState::CloseWait => "close_wait",
            TcpState::LastAck => "last_ack",
            TcpState::TimeWait => "time_wait",
            TcpState::Close => "close",
            TcpState::SynSent2 => "syn_sent2",
        })
    }
}

/// Per-direction flags (`IP_CT_TCP_FLAG_*`).
pub mod flag {
    pub const WINDOW_SCALE: u8 = 0x01;
    pub const SACK_PERM: u8 = 0x02;
    pub const CLOSE_INIT: u8 = 0x04;
    pub const BE_LIBERAL: u8 = 0x08;
    pub const DATA_UNACKNOWLEDGED: u8 = 0x10;
    pub const MAXACK_SET: u8 = 0x20;
    /// `last_flags` only: an RFC 5961 challenge ACK may follow.
    pub const EXP_CHALLENGE_ACK: u8 = 0x40;
    /// `last_flags` only: simultaneous open seen.
    pub const SIMULTANEOUS_OPEN: u8 = 0x80;
}

/// What one side of the connection has sent (`struct ip_ct_tcp_state`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpDir {
    /// Highest sequence end sent.
    pub td_end: u32,
    /// Right edge of the window the peer offered.
    pub td_maxend: u32,
    /// Largest (scaled) window; 0 while nothing was seen from this side.
    pub td_maxwin: u32,
    /// Highest ACK sent (valid with MAXACK_SET).
    pub td_maxack: u32,
    pub td_scale: u8,
    pub flags: u8,
}

/// A TCP connection's tracking state (`struct ip_ct_tcp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpConn {
    pub seen: [TcpDir; 2],
    pub state: TcpState,
    pub last_dir: u8,
    pub retrans: u8,
    pub last_index: u8,
    pub last_seq: u32,
    pub last_ack: u32,
    pub last_end: u32,
    pub last_win: u16,
    pub last_wscale: u8,
    pub last_flags: u8,
}

// Packet kinds (`enum tcp_bit_set`).
const SYN: u8 = 0;
const SYNACK: u8 = 1;
const FIN: u8 = 2;
const ACK: u8 = 3;
const RST: u8 = 4;
const NONE: u8 = 5;

// Table entries beyond the states.
const IV: u8 = 10;
const IG: u8 = 11;

const NO: u8 = 0;
const SS: u8 = 1;
const SR: u8 = 2;
const ES: u8 = 3;
const FW: u8 = 4;
const CW: u8 = 5;
const LA: u8 = 6;
const TW: u8 = 7;
const CL: u8 = 8;
const S2: u8 = 9;

/// `tcp_conntracks[dir][index][old state]`.
const TABLE: [[[u8; 10]; 6]; 2] = [
    [
        // original:  NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
        /* syn */
        [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        /* fin */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none */ [IV; 10],
    ],
    [
        // reply:     NO  SS  SR  ES  FW  CW  LA  TW  CL  S2
        /* syn */
        [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none */ [IV; 10],
    ],
];

const TH_FIN: u8 = 0x01;
const TH_SYN: u8 = 0x02;
const TH_RST: u8 = 0x04;
const TH_PSH: u8 = 0x08;
const TH_ACK: u8 = 0x10;
const TH_ECE: u8 = 0x40;
const TH_CWR: u8 = 0x80;

/// `MAXACKWINCONST`.
const MAX_ACK_WIN_CONST: u32 = 66000;
const MAX_WSCALE: u8 = 14;

/// The header fields the tracker reads.
struct Seg<'a> {
    seq: u32,
    ack_seq: u32,
    win: u16,
    flags: u8,
    /// The options area (`doff * 4 - 20` bytes).
    opts: &'a [u8],
    /// seq + payload + SYN + FIN (`segment_seq_plus_len`).
    end: u32,
}

impl Seg<'_> {
    fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
}

/// `tcp_valid_flags`, after masking ECE, CWR and PSH.
fn valid_flags(flags: u8) -> bool {
    matches!(
        flags & !(TH_ECE | TH_CWR | TH_PSH),
        0x02 | 0x22 | 0x12 | 0x04 | 0x14 | 0x11 | 0x31 | 0x10 | 0x30
    )
}

/// `get_conntrack_index`.
fn index_of(flags: u8) -> u8 {
    if flags & TH_RST != 0 {
        RST
    } else if flags & TH_SYN != 0 {
        if flags & TH_ACK != 0 {
            SYNACK
        } else {
            SYN
        }
    } else if flags & TH_FIN != 0 {
        FIN
    } else if flags & TH_ACK != 0 {
        ACK
    } else {
        NONE
    }
}

fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `tcp_error` and the header read: None when the packet is INVALID before any state.
fn segment<'a>(p: &Pkt<'a>, cfg: &CtConfig) -> Option<Seg<'a>> {
    let l4 = p.l4;
    if l4.len() < 20 {
        return None;
    }
    let doff = usize::from(l4[12] >> 4) * 4;
    if doff < 20 || l4.len() < doff {
        return None;
    }
    if p.arriving && cfg.checksum && !l4_checksum_ok(p.h, l4, l4.len()) {
        return None;
    }
    let flags = l4[13];
    if !valid_flags(flags) {
        return None;
    }
    let seq = be32(l4, 4);
    let payload = (l4.len() - doff) as u32;
    let end = seq
        .wrapping_add(payload)
        .wrapping_add(u32::from(flags & TH_SYN != 0))
        .wrapping_add(u32::from(flags & TH_FIN != 0));
    Some(Seg {
        seq,
        ack_seq: be32(l4, 8),
        win: u16::from_be_bytes([l4[14], l4[15]]),
        flags,
        opts: &l4[20..doff],
        end,
    })
}

/// Walks the options as the kernel does: `f(kind, body)` for each well-formed option until
/// `f` returns true, an EOL, or a malformed length.
fn walk_options(opts: &[u8], mut f: impl FnMut(u8, &[u8]) -> bool) {
    let mut i = 0;
    while i < opts.len() {
        let kind = opts[i];
        match kind {
            0 => return,
            1 => {
                i += 1;
                continue;
            }
            _ => {
                let left = opts.len() - i;
                if left < 2 {
                    return;
                }
                let size = usize::from(opts[i + 1]);
                if size < 2 || size > left {
                    return;
                }
                if f(kind, &opts[i + 2..i + size]) {
                    return;
                }
                i += size;
            }
        }
    }
}

/// `tcp_options`: window scale and SACK-permitted into `st` (nothing changes without options).
fn parse_options(opts: &[u8], st: &mut TcpDir) {
    if opts.is_empty() {
        return;
    }
    st.td_scale = 0;
    st.flags &= flag::BE_LIBERAL;
    walk_options(opts, |kind, body| {
        match (kind, body.len()) {
            (4, 0) => st.flags |= flag::SACK_PERM,
            (3, 1) => {
                st.td_scale = body[0].min(MAX_WSCALE);
                st.flags |= flag::WINDOW_SCALE;
            }
            _ => {}
        }
        false
    });
}

/// `tcp_sack`: raises `sack` to the highest right edge of the first valid SACK option.
fn parse_sack(opts: &[u8], sack: &mut u32) {
    if opts.is_empty() {
        return;
    }
    if opts.len() == 12 && be32(opts, 0) == 0x0101_080a {
        return;
    }
    walk_options(opts, |kind, body| {
        let size = body.len() + 2;
        if kind == 5 && size >= 10 && (size - 2) % 8 == 0 {
            for block in body.chunks_exact(8) {
                let right = be32(block, 4);
                if after(right, *sack) {
                    *sack = right;
                }
            }
            return true;
        }
        false
    });
}

/// `tcp_new`: may this packet make a connection?
fn tcp_new(t: &mut TcpConn, s: &Seg<'_>, index: u8, cfg: &CtConfig) -> bool {
    let new_state = TABLE[0][usize::from(index)][usize::from(NO)];
    if new_state >= IV {
        return false;
    }
    *t = TcpConn::default();
    let win = if s.win == 0 { 1 } else { u32::from(s.win) };
    if new_state == SS {
        let d = &mut t.seen[0];
        d.td_end = s.end;
        d.td_maxwin = win;
        d.td_maxend = s.end;
        parse_options(s.opts, d);
    } else if !cfg.tcp_loose {
        return false;
    } else {
        let d = &mut t.seen[0];
        d.td_end = s.end;
        d.td_maxwin = win;
        d.td_maxend = s.end.wrapping_add(win);
        t.seen[0].flags = flag::SACK_PERM | flag::BE_LIBERAL;
        t.seen[1].flags = flag::SACK_PERM | flag::BE_LIBERAL;
    }
    t.last_index = NONE;
    true
}

/// What `tcp_in_window` decided.
#[derive(PartialEq, Eq)]
enum Window {
    Accept,
    Invalid,
    Ignore,
}

/// `tcp_init_sender`.
fn init_sender(t: &mut TcpConn, dir: usize, s: &Seg<'_>) {
    let win = u32::from(s.win);
    let sender = &mut t.seen[dir];
    sender.td_end = s.end;
    sender.td_maxend = s.end;
    sender.td_maxwin = if win == 0 { 1 } else { win };
    parse_options(s.opts, sender);
    let both_scale = t.seen[dir].flags & flag::WINDOW_SCALE != 0
        && t.seen[1 - dir].flags & flag::WINDOW_SCALE != 0;
    if dir == 1 && !both_scale {
        t.seen[0].td_scale = 0;
        t.seen[1].td_scale = 0;
    }
}

fn max_ack_window(d: &TcpDir) -> u32 {
    d.td_maxwin.max(MAX_ACK_WIN_CONST)
}

/// `tcp_in_window`.
fn in_window(
    t: &mut TcpConn,
    dir: usize,
    index: u8,
    s: &Seg<'_>,
    cfg: &CtConfig,
    adj: Option<&SeqAdjs>,
) -> Window {
    let rdir = 1 - dir;
    let mut seq = s.seq;
    let mut ack = s.ack_seq;
    let mut sack = ack;
    let mut win = u32::from(s.win);
    let mut end = s.end;
    if t.seen[rdir].flags & flag::SACK_PERM != 0 {
        parse_sack(s.opts, &mut sack);
    }
    // NAT sequence mangling: the acknowledgement back into the receiver's own numbers.
    if let Some(a) = adj {
        let receiver_offset = a[rdir].offset(ack.wrapping_sub(1)) as u32;
        ack = ack.wrapping_sub(receiver_offset);
        sack = sack.wrapping_sub(receiver_offset);
    }
    if t.seen[dir].td_maxwin == 0 {
        if s.has(TH_SYN) {
            init_sender(t, dir, s);
            if !s.has(TH_ACK) {
                return Window::Accept;
            }
        } else {
            let scale = t.seen[dir].td_scale;
            let swin = win << scale;
            let sender = &mut t.seen[dir];
            sender.td_end = end;
            sender.td_maxwin = if swin == 0 { 1 } else { swin };
            sender.td_maxend = end.wrapping_add(sender.td_maxwin);
            let receiver = &mut t.seen[rdir];
            if receiver.td_maxwin == 0 {
                receiver.td_end = sack;
                receiver.td_maxend = sack;
            } else if sack == receiver.td_end.wrapping_add(1) {
                receiver.td_end = receiver.td_end.wrapping_add(1);
            }
        }
    } else if s.has(TH_SYN)
        && after(end, t.seen[dir].td_end)
        && matches!(t.state, TcpState::SynSent | TcpState::SynRecv)
    {
        init_sender(t, dir, s);
        if dir == 1 && !s.has(TH_ACK) {
            return Window::Accept;
        }
    }
    let rx_end = t.seen[rdir].td_end;
    if !s.has(TH_ACK) || (s.has(TH_RST) && ack == 0) {
        ack = rx_end;
        sack = rx_end;
    }
    if s.has(TH_RST) && seq == 0 && t.state == TcpState::SynSent {
        seq = t.seen[dir].td_end;
        end = seq;
    }
    let liberal = t.seen[dir].flags & flag::BE_LIBERAL != 0 || cfg.tcp_be_liberal;
    let fail = |w: Window| if liberal { Window::Accept } else { w };
    let (sender, receiver) = (t.seen[dir], t.seen[rdir]);
    // I: sequence not above the window.
    if !before(seq, sender.td_maxend.wrapping_add(1)) {
        let overshot = end.wrapping_sub(sender.td_maxend).wrapping_add(1);
        let ack_ok = after(
            sack,
            receiver
                .td_end
                .wrapping_sub(max_ack_window(&sender))
                .wrapping_sub(1),
        );
        let in_recv_win = receiver.td_maxwin != 0
            && after(
                end,
                sender
                    .td_end
                    .wrapping_sub(receiver.td_maxwin)
                    .wrapping_sub(1),
            );
        if in_recv_win
            && ack_ok
            && overshot <= receiver.td_maxwin
            && before(sack, receiver.td_end.wrapping_add(1))
        {
            t.seen[dir].td_end = end;
            t.seen[dir].flags |= flag::DATA_UNACKNOWLEDGED;
            return fail(Window::Ignore);
        }
        return fail(Window::Invalid);
    }
    // III: no ACK of data never seen.
    if !before(sack, receiver.td_end.wrapping_add(1)) {
        return fail(Window::Invalid);
    }
    // II: not entirely below the window (already acknowledged data).
    let in_recv_win = receiver.td_maxwin == 0
        || after(
            end,
            sender
                .td_end
                .wrapping_sub(receiver.td_maxwin)
                .wrapping_sub(1),
        );
    if !in_recv_win {
        return fail(Window::Ignore);
    }
    // IV: the ACK not overly delayed.
    if !after(
        sack,
        receiver
            .td_end
            .wrapping_sub(max_ack_window(&sender))
            .wrapping_sub(1),
    ) {
        return fail(Window::Ignore);
    }
    update_window(t, dir, index, s, seq, ack, sack, end, &mut win);
    Window::Accept
}

/// The updates of a packet that passed the window checks.
#[allow(clippy::too_many_arguments)]
fn update_window(
    t: &mut TcpConn,
    dir: usize,
    index: u8,
    s: &Seg<'_>,
    seq: u32,
    ack: u32,
    sack: u32,
    end: u32,
    win: &mut u32,
) {
    let rdir = 1 - dir;
    if !s.has(TH_SYN) {
        *win <<= t.seen[dir].td_scale;
    }
    let old_maxend = t.seen[dir].td_maxend;
    {
        let sender = &mut t.seen[dir];
        let swin = win.wrapping_add(sack.wrapping_sub(ack));
        if sender.td_maxwin < swin {
            sender.td_maxwin = swin;
        }
        if after(end, sender.td_end) {
            sender.td_end = end;
            sender.flags |= flag::DATA_UNACKNOWLEDGED;
        }
        if s.has(TH_ACK) {
            if sender.flags & flag::MAXACK_SET == 0 {
                sender.td_maxack = ack;
                sender.flags |= flag::MAXACK_SET;
            } else if after(ack, sender.td_maxack) {
                sender.td_maxack = ack;
            }
        }
    }
    {
        let receiver = &mut t.seen[rdir];
        if receiver.td_maxwin != 0 && after(end, old_maxend) {
            receiver.td_maxwin = receiver
                .td_maxwin
                .wrapping_add(end.wrapping_sub(old_maxend));
        }
        if after(sack.wrapping_add(*win), receiver.td_maxend.wrapping_sub(1)) {
            receiver.td_maxend = sack.wrapping_add(*win);
            if *win == 0 {
                receiver.td_maxend = receiver.td_maxend.wrapping_add(1);
            }
        }
        if ack == receiver.td_end {
            receiver.flags &= !flag::DATA_UNACKNOWLEDGED;
        }
    }
    if index == ACK {
        let same = usize::from(t.last_dir) == dir
            && t.last_seq == seq
            && t.last_ack == ack
            && t.last_end == end
            && t.last_win == s.win;
        if same {
            t.retrans = t.retrans.wrapping_add(1);
        } else {
            t.last_dir = dir as u8;
            t.last_seq = seq;
            t.last_ack = ack;
            t.last_end = end;
            t.last_win = s.win;
            t.retrans = 0;
        }
    }
}

/// What the per-state cases decided before the window check.
enum Step {
    /// Go on to the window check with this new state (and old state, after a resync).
    Window(u8, u8),
    /// Skip the window check (`goto in_window`) with this new state.
    InWindow(u8),
    Done(L4Verdict),
}

/// `nf_conntrack_tcp_packet`.
/// `adj`: the connection's sequence adjustments, if it has any (NAT helpers).
pub fn packet(
    c: &mut Conn,
    dir: Dir,
    p: &Pkt<'_>,
    cfg: &CtConfig,
    now: u32,
    adj: Option<&SeqAdjs>,
) -> L4Verdict {
    let Some(s) = segment(p, cfg) else {
        return L4Verdict::Invalid;
    };
    let Conn {
        proto,
        status: conn_status,
        expires,
        ..
    } = c;
    let st = *conn_status;
    let ProtoState::Tcp(t) = proto else {
        return L4Verdict::Invalid;
    };
    let index = index_of(s.flags);
    if st & status::CONFIRMED == 0 && !tcp_new(t, &s, index, cfg) {
        return L4Verdict::Invalid;
    }
    let d = dir.index();
    let old_state = t.state as u8;
    let new_state = TABLE[d][usize::from(index)][usize::from(old_state)];
    let (old_state, new_state) = match state_case(t, d, index, old_state, new_state, &s, st, cfg) {
        Step::Done(v) => return v,
        Step::InWindow(n) => (old_state, n),
        Step::Window(o, n) => match in_window(t, d, index, &s, cfg, adj) {
            Window::Accept => (o, n),
            Window::Ignore => return L4Verdict::Accept(None),
            Window::Invalid => {
                if let Some(e) = handle_invalid(t, d, index, st, *expires, now, cfg) {
                    *expires = e;
                }
                return L4Verdict::Invalid;
            }
        },
    };
    t.last_index = index;
    t.last_dir = d as u8;
    t.state = TcpState::ALL[usize::from(new_state)];
    if old_state != new_state && new_state == FW {
        t.seen[d].flags |= flag::CLOSE_INIT;
    }
    let mut timeout = choose_timeout(t, index, new_state, cfg);
    if st & status::SEEN_REPLY == 0 {
        if s.has(TH_RST) {
            return L4Verdict::AcceptKill;
        }
        if index == SYN && old_state == SS {
            return L4Verdict::Accept(None);
        }
        if new_state == ES {
            timeout = timeout.min(cfg.timeouts.tcp_unacknowledged);
        }
    } else if st & status::ASSURED == 0 && (old_state == SR || old_state == ES) && new_state == ES {
        *conn_status |= status::ASSURED;
    }
    if st & status::FIXED_TIMEOUT != 0 {
        return L4Verdict::Accept(None);
    }
    L4Verdict::Accept(Some(timeout))
}

/// The timeout a tracked packet leaves its connection with.
fn choose_timeout(t: &TcpConn, index: u8, new_state: u8, cfg: &CtConfig) -> u32 {
    let to = &cfg.timeouts;
    let state_to = to.tcp[usize::from(new_state)];
    if t.retrans >= cfg.tcp_max_retrans && state_to > to.tcp_max_retrans {
        to.tcp_max_retrans
    } else if (index == RST && new_state == ES
        || (t.seen[0].flags | t.seen[1].flags) & flag::DATA_UNACKNOWLEDGED != 0)
        && state_to > to.tcp_unacknowledged
    {
        to.tcp_unacknowledged
    } else if t.last_win == 0 && state_to > to.tcp_max_retrans {
        to.tcp_max_retrans
    } else {
        state_to
    }
}

/// The cases of the switch on the new state.
#[allow(clippy::too_many_arguments)]
fn state_case(
    t: &mut TcpConn,
    dir: usize,
    index: u8,
    old_state: u8,
    new_state: u8,
    s: &Seg<'_>,
    st: u16,
    cfg: &CtConfig,
) -> Step {
    match new_state {
        SS => {
            if old_state < TW {
                return Step::Window(old_state, new_state);
            }
            let closing = (t.seen[dir].flags | t.seen[1 - dir].flags) & flag::CLOSE_INIT != 0;
            if closing || (usize::from(t.last_dir) == dir && t.last_index == RST) {
                return Step::Done(L4Verdict::Repeat);
            }
            ignore(t, dir, index, old_state, s)
        }
        IG => ignore(t, dir, index, old_state, s),
        IV => Step::Done(L4Verdict::Invalid),
        TW => {
            if old_state == LA
                && index == ACK
                && usize::from(t.last_dir) != dir
                && t.last_index == SYN
                && t.last_flags & flag::EXP_CHALLENGE_ACK != 0
            {
                t.last_flags &= !flag::EXP_CHALLENGE_ACK;
                return Step::Done(L4Verdict::Accept(None));
            }
            Step::Window(old_state, new_state)
        }
        S2 => {
            t.last_flags |= flag::SIMULTANEOUS_OPEN;
            Step::Window(old_state, new_state)
        }
        SR => {
            if dir == 1 && index == ACK && t.last_flags & flag::SIMULTANEOUS_OPEN != 0 {
                return Step::Window(old_state, ES);
            }
            Step::Window(old_state, new_state)
        }
        CL => rst_case(t, dir, index, old_state, new_state, s, st, cfg),
        _ => Step::Window(old_state, new_state),
    }
}

/// `case TCP_CONNTRACK_IGNORE`: resynchronise on a SYN/ACK answering an ignored SYN, or record
/// the packet and let it pass without a state change.
fn ignore(t: &mut TcpConn, dir: usize, index: u8, old_state: u8, s: &Seg<'_>) -> Step {
    if index == SYNACK
        && t.last_index == SYN
        && usize::from(t.last_dir) != dir
        && s.ack_seq == t.last_end
    {
        let ld = usize::from(t.last_dir);
        let (last_end, last_win, last_wscale) = (t.last_end, t.last_win, t.last_wscale);
        t.last_flags &= !flag::EXP_CHALLENGE_ACK;
        let last_flags = t.last_flags;
        let l = &mut t.seen[ld];
        l.td_end = last_end;
        l.td_maxend = last_end;
        l.td_maxwin = if last_win == 0 {
            1
        } else {
            u32::from(last_win)
        };
        l.td_scale = last_wscale;
        l.flags = last_flags;
        let r = &mut t.seen[dir];
        let liberal = r.flags & flag::BE_LIBERAL;
        *r = TcpDir {
            flags: liberal,
            ..TcpDir::default()
        };
        return Step::Window(SS, SR);
    }
    t.last_index = index;
    t.last_dir = dir as u8;
    t.last_seq = s.seq;
    t.last_end = s.end;
    t.last_win = s.win;
    if index == SYN && dir == 0 {
        t.last_flags = 0;
        t.last_wscale = 0;
        let mut opts = TcpDir::default();
        parse_options(s.opts, &mut opts);
        if opts.flags & flag::WINDOW_SCALE != 0 {
            t.last_flags |= flag::WINDOW_SCALE;
            t.last_wscale = opts.td_scale;
        }
        if opts.flags & flag::SACK_PERM != 0 {
            t.last_flags |= flag::SACK_PERM;
        }
        if old_state == LA {
            t.last_flags |= flag::EXP_CHALLENGE_ACK;
        }
    }
    if old_state == SS && index == ACK && dir == 1 {
        t.last_ack = s.ack_seq;
    }
    Step::Done(L4Verdict::Accept(None))
}

/// `case TCP_CONNTRACK_CLOSE`: RST validation.
#[allow(clippy::too_many_arguments)]
fn rst_case(
    t: &mut TcpConn,
    dir: usize,
    index: u8,
    old_state: u8,
    mut new_state: u8,
    s: &Seg<'_>,
    st: u16,
    cfg: &CtConfig,
) -> Step {
    if index != RST {
        return Step::Window(old_state, new_state);
    }
    // tcp_can_early_drop: the connection is closing anyway.
    if matches!(old_state, FW | LA | TW | CL | CW) {
        return Step::InWindow(new_state);
    }
    let established = old_state == ES && st & status::ASSURED != 0;
    let peer = t.seen[1 - dir];
    if peer.flags & flag::MAXACK_SET != 0 && t.last_index != SYN {
        let seq = s.seq;
        if seq == 0 && !established {
            return Step::Window(old_state, new_state);
        }
        if before(seq, peer.td_maxack) && !cfg.tcp_ignore_invalid_rst {
            return Step::Done(L4Verdict::Invalid);
        }
        if !established || seq == peer.td_maxack {
            return Step::Window(old_state, new_state);
        }
        if t.last_index == ACK && usize::from(t.last_dir) == dir && seq == t.last_end {
            return Step::Window(old_state, new_state);
        }
        new_state = old_state;
    }
    let answers_ignored =
        (st & status::SEEN_REPLY != 0 && t.last_index == SYN && usize::from(t.last_dir) != dir)
            || (st & status::ASSURED == 0 && t.last_index == ACK);
    if answers_ignored && s.ack_seq == t.last_end {
        return Step::InWindow(new_state);
    }
    if old_state == SS && t.last_index == ACK && t.last_dir == 1 && s.seq == t.last_ack {
        return Step::InWindow(new_state);
    }
    Step::Window(old_state, new_state)
}

/// `nf_tcp_handle_invalid`: out-of-window FIN/RSTs from both sides of an assured connection
/// shorten its life to the UNACK timeout. Returns the new expiry when it does.
fn handle_invalid(
    t: &mut TcpConn,
    dir: usize,
    index: u8,
    st: u16,
    expires: u32,
    now: u32,
    cfg: &CtConfig,
) -> Option<u32> {
    if st & status::ASSURED == 0 || st & status::FIXED_TIMEOUT != 0 {
        return None;
    }
    if index != RST && index != FIN {
        return None;
    }
    if usize::from(t.last_dir) != dir && (t.last_index == FIN || t.last_index == RST) {
        let left = (expires.wrapping_sub(now) as i32).max(0) as u32;
        if left < 120_000 {
            return None;
        }
        let unack = cfg.timeouts.tcp_unacknowledged;
        return (left > unack).then(|| now.wrapping_add(unack));
    }
    t.last_index = index;
    t.last_dir = dir as u8;
    None
}

/// `nf_conntrack_tcp_set_closing` (REJECT --reject-with tcp-reset): the connection goes to
/// CLOSE with the CLOSE timeout. Returns the timeout to set, if any.
pub fn set_closing(c: &mut Conn, cfg: &CtConfig) -> Option<u32> {
    if c.status & status::CONFIRMED == 0 {
        return None;
    }
    let ProtoState::Tcp(t) = &mut c.proto else {
        return None;
    };
    let old = t.state;
    t.state = TcpState::Close;
    if old == TcpState::Close || c.status & status::FIXED_TIMEOUT != 0 {
        return None;
    }
    Some(cfg.timeouts.tcp[TcpState::Close as usize])
}

/// Whether the kernel lets early drop evict this connection even when ASSURED
/// (`tcp_can_early_drop`).
pub fn can_early_drop(t: &TcpConn) -> bool {
    matches!(
        t.state,
        TcpState::FinWait
            | TcpState::LastAck
            | TcpState::TimeWait
            | TcpState::Close
            | TcpState::CloseWait
    )
}
