//! Connection tracking settings: the table bound, the TCP tracker's switches and every
//! protocol state's timeout, with netfilter's defaults (the `net.netfilter.nf_conntrack_*`
//! sysctls of Linux 6.x).

use super::tcp::TcpState;

/// Timeouts in milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Per TCP state, indexed by [`TcpState`] (`nf_conntrack_tcp_timeout_*`).
    pub tcp: [u32; TcpState::COUNT],
    /// `nf_conntrack_tcp_timeout_max_retrans`: after `tcp_max_retrans` retransmissions.
    pub tcp_max_retrans: u32,
    /// `nf_conntrack_tcp_timeout_unacknowledged`: while data stays unacknowledged.
    pub tcp_unacknowledged: u32,
    pub udp: u32,
    pub udp_stream: u32,
    pub icmp: u32,
    pub generic: u32,
    pub gre: u32,
    pub gre_stream: u32,
    /// Per SCTP state, indexed by [`super::sctp::SctpState`].
    pub sctp: [u32; super::sctp::SctpState::COUNT],
}

const S: u32 = 1000;

impl Default for Timeouts {
    fn default() -> Timeouts {
        use TcpState::*;
        let mut tcp = [0u32; TcpState::COUNT];
        for (st, secs) in [
            (None, 0),
            (SynSent, 120),
            (SynRecv, 60),
            (Established, 432_000),
            (FinWait, 120),
            (CloseWait, 60),
            (LastAck, 30),
            (TimeWait, 120),
            (Close, 10),
            (SynSent2, 120),
        ] {
            tcp[st as usize] = secs * S;
        }
        Timeouts {
            tcp,
            tcp_max_retrans: 300 * S,
            tcp_unacknowledged: 300 * S,
            udp: 30 * S,
            udp_stream: 120 * S,
            icmp: 30 * S,
            generic: 600 * S,
            gre: 30 * S,
            gre_stream: 180 * S,
            sctp: super::sctp::default_timeouts(),
        }
    }
}

impl Timeouts {
    /// Sets a timeout by its sysctl name without the `nf_conntrack_` prefix
    /// (`tcp_timeout_established`, `udp_timeout_stream`, `icmp_timeout`, ...), in seconds.
    pub fn set(&mut self, name: &str, secs: u32) -> Result<(), TimeoutError> {
        let ms = secs
            .checked_mul(S)
            .filter(|&ms| ms <= super::table::MAX_TIMEOUT_MS)
            .ok_or(TimeoutError::TooLong(secs))?;
        let slot = self.slot(name).ok_or(TimeoutError::Unknown)?;
        *slot = ms;
        Ok(())
    }

    fn slot(&mut self, name: &str) -> Option<&mut u32> {
        if let Some(state) = name.strip_prefix("tcp_timeout_") {
            return match state {
                "max_retrans" => Some(&mut self.tcp_max_retrans),
                "unacknowledged" => Some(&mut self.tcp_unacknowledged),
                _ => TcpState::ALL
                    .iter()
                    .find(|s| s.sysctl_name() == Some(state))
                    .map(|s| &mut self.tcp[*s as usize]),
            };
        }
        if let Some(state) = name.strip_prefix("sctp_timeout_") {
            return super::sctp::SctpState::ALL
                .iter()
                .find(|s| s.sysctl_name() == Some(state))
                .map(|s| &mut self.sctp[*s as usize]);
        }
        match name {
            "udp_timeout" => Some(&mut self.udp),
            "udp_timeout_stream" => Some(&mut self.udp_stream),
            "icmp_timeout" => Some(&mut self.icmp),
            "generic_timeout" => Some(&mut self.generic),
            "gre_timeout" => Some(&mut self.gre),
            "gre_timeout_stream" => Some(&mut self.gre_stream),
            _ => None,
        }
    }

    /// Every timeout's name, for error messages and documentation.
    pub fn names() -> Vec<String> {
        let mut v: Vec<String> = TcpState::ALL
            .iter()
            .filter_map(|s| s.sysctl_name())
            .map(|s| format!("tcp_timeout_{s}"))
            .collect();
        v.push("tcp_timeout_max_retrans".into());
        v.push("tcp_timeout_unacknowledged".into());
        v.extend(
            super::sctp::SctpState::ALL
                .iter()
                .filter_map(|s| s.sysctl_name())
                .map(|s| format!("sctp_timeout_{s}")),
        );
        for n in [
            "udp_timeout",
            "udp_timeout_stream",
            "icmp_timeout",
            "generic_timeout",
            "gre_timeout",
            "gre_timeout_stream",
        ] {
            v.push(n.into());
        }
        v
    }
}

/// A timeout that cannot be set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeoutError {
    /// No timeout has that name.
    Unknown,
    /// Longer than the table clock can hold (about 24 days).
    TooLong(u32),
}

impl core::fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TimeoutError::Unknown => write!(f, "unknown timeout"),
            TimeoutError::TooLong(s) => write!(
                f,
                "{s} s is longer than the longest timeout ({} s)",
                super::table::MAX_TIMEOUT_MS / S
            ),
        }
    }
}

/// Connection tracking settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CtConfig {
    /// `nf_conntrack_max`: entries per table.
    pub max: u32,
    /// `nf_conntrack_tcp_loose`: pick up established connections mid-stream.
    pub tcp_loose: bool,
    /// `nf_conntrack_tcp_be_liberal`: only RSTs outside the window are INVALID.
    pub tcp_be_liberal: bool,
    /// `nf_conntrack_tcp_max_retrans`.
    pub tcp_max_retrans: u8,
    /// `nf_conntrack_tcp_ignore_invalid_rst`.
    pub tcp_ignore_invalid_rst: bool,
    /// `nf_conntrack_checksum`: verify L4 checksums of arriving packets (PREROUTING).
    pub checksum: bool,
    pub timeouts: Timeouts,
    /// The helpers' module parameters (`nf_conntrack_ftp loose=`).
    pub helper: super::helper::HelperConfig,
}

impl Default for CtConfig {
    fn default() -> CtConfig {
        CtConfig {
            max: 262_144,
            tcp_loose: true,
            tcp_be_liberal: false,
            tcp_max_retrans: 3,
            tcp_ignore_invalid_rst: false,
            checksum: true,
            timeouts: Timeouts::default(),
            helper: super::helper::HelperConfig::default(),
        }
    }
}
