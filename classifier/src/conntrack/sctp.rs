//! SCTP (`nf_conntrack_proto_sctp.c`). Placeholder state set, completed below.

use super::conn::Conn;
use super::table::Dir;
use super::track::{L4Verdict, Pkt};
use super::CtConfig;

/// SCTP connection states (`enum sctp_conntrack`).
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

/// Default timeouts (ms) per state.
pub fn default_timeouts() -> [u32; SctpState::COUNT] {
    let s = 1000;
    [
        0,
        10 * s,
        3 * s,
        3 * s,
        210 * s,
        3 * s,
        3 * s,
        3 * s,
        30 * s,
    ]
}

/// Per-connection SCTP state (`struct ip_ct_sctp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SctpConn {
    pub state: SctpState,
    pub last_dir: u8,
    pub flags: [u8; 2],
    pub vtag: [u32; 2],
    pub init: [u32; 2],
}

/// `nf_conntrack_sctp_packet`.
pub fn packet(_c: &mut Conn, _dir: Dir, _p: &Pkt<'_>, cfg: &CtConfig) -> L4Verdict {
    L4Verdict::Accept(Some(cfg.timeouts.generic))
}
