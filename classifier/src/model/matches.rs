//! Match extensions (`-m NAME ...`), each stored the way the kernel's `xt_*` structures store it,
//! so that rule comparison (`-D`/`-C` by spec) and printing behave as iptables does.

use super::{HookMask, Ipv4Net};
use std::net::Ipv4Addr;

/// An inclusive port range; `0:65535` is "any".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange {
        lo: 0,
        hi: u16::MAX,
    };
    pub fn single(p: u16) -> PortRange {
        PortRange { lo: p, hi: p }
    }
    pub fn is_any(&self) -> bool {
        *self == PortRange::ANY
    }
    pub fn contains(&self, p: u16) -> bool {
        self.lo <= p && p <= self.hi
    }
}

impl Default for PortRange {
    fn default() -> Self {
        PortRange::ANY
    }
}

/// TCP flag bits as iptables names them.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ALL: u8 = 0x3f;
    pub const NONE: u8 = 0;
    /// Names in the order iptables prints them.
    pub const NAMES: [(&str, u8); 6] = [
        ("FIN", FIN),
        ("SYN", SYN),
        ("RST", RST),
        ("PSH", PSH),
        ("ACK", ACK),
        ("URG", URG),
    ];
}

/// `-m tcp` (`xt_tcp`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpMatch {
    pub sport: PortRange,
    pub inv_sport: bool,
    pub dport: PortRange,
    pub inv_dport: bool,
    /// `--tcp-option N` (0 = none).
    pub option: u8,
    pub inv_option: bool,
    pub flags_mask: u8,
    pub flags_cmp: u8,
    pub inv_flags: bool,
}

/// `-m udp` (`xt_udp`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct UdpMatch {
    pub sport: PortRange,
    pub inv_sport: bool,
    pub dport: PortRange,
    pub inv_dport: bool,
}

/// `-m icmp` (`ipt_icmp`); type 0xff means "any".
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IcmpMatch {
    pub icmp_type: u8,
    pub code_min: u8,
    pub code_max: u8,
    pub invert: bool,
}

impl IcmpMatch {
    pub const ANY_TYPE: u8 = 0xff;
}

/// Which ports `-m multiport` compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MultiportKind {
    Source,
    Destination,
    Either,
}

/// `-m multiport` (`xt_multiport_v1`): up to 15 port slots, a range taking two.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MultiportMatch {
    pub kind: MultiportKind,
    pub ports: Vec<PortRange>,
    pub invert: bool,
}

impl MultiportMatch {
    pub const MAX_SLOTS: usize = 15;
}

/// `-m mac --mac-source`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MacMatch {
    pub addr: [u8; 6],
    pub invert: bool,
}

/// `-m limit` (`xt_rateinfo`): `avg` is the mean interval between packets in 1/10000 s.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LimitMatch {
    pub avg: u32,
    pub burst: u32,
}

impl LimitMatch {
    /// `XT_LIMIT_SCALE`: units of `avg` per second.
    pub const SCALE: u32 = 10000;
    pub const DEFAULT_BURST: u32 = 5;
    /// Default `--limit 3/hour`.
    pub const DEFAULT_AVG: u32 = Self::SCALE * 3600 / 3;
}

/// Connection states as bits (`XT_STATE_*` and the conntrack extras).
pub mod ct_state {
    pub const INVALID: u32 = 1 << 0;
    pub const ESTABLISHED: u32 = 1 << 1;
    pub const RELATED: u32 = 1 << 2;
    pub const NEW: u32 = 1 << 3;
    pub const UNTRACKED: u32 = 1 << 9;
    pub const SNAT: u32 = 1 << 10;
    pub const DNAT: u32 = 1 << 11;
    /// Names in the order iptables prints them.
    pub const NAMES: [(&str, u32); 7] = [
        ("INVALID", INVALID),
        ("NEW", NEW),
        ("RELATED", RELATED),
        ("ESTABLISHED", ESTABLISHED),
        ("UNTRACKED", UNTRACKED),
        ("SNAT", SNAT),
        ("DNAT", DNAT),
    ];
}

/// Connection status bits (`IPS_*`).
pub mod ct_status {
    pub const NONE: u32 = 0;
    pub const EXPECTED: u32 = 1 << 0;
    pub const SEEN_REPLY: u32 = 1 << 1;
    pub const ASSURED: u32 = 1 << 2;
    pub const CONFIRMED: u32 = 1 << 3;
    pub const NAMES: [(&str, u32); 4] = [
        ("EXPECTED", EXPECTED),
        ("SEEN_REPLY", SEEN_REPLY),
        ("ASSURED", ASSURED),
        ("CONFIRMED", CONFIRMED),
    ];
}

/// `-m state --state` (no other options).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StateMatch {
    pub states: u32,
    pub invert: bool,
}

/// Direction for `--ctdir`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtDir {
    Original,
    Reply,
}

/// `-m conntrack`: every option is optional and separately invertible, printed in this order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConntrackMatch {
    pub state: Option<super::Inv<u32>>,
    pub proto: Option<super::Inv<u8>>,
    pub orig_src: Option<super::Inv<Ipv4Net>>,
    pub orig_dst: Option<super::Inv<Ipv4Net>>,
    pub repl_src: Option<super::Inv<Ipv4Net>>,
    pub repl_dst: Option<super::Inv<Ipv4Net>>,
    pub orig_src_port: Option<super::Inv<PortRange>>,
    pub orig_dst_port: Option<super::Inv<PortRange>>,
    pub repl_src_port: Option<super::Inv<PortRange>>,
    pub repl_dst_port: Option<super::Inv<PortRange>>,
    pub status: Option<super::Inv<u32>>,
    pub expire: Option<super::Inv<(u32, u32)>>,
    pub dir: Option<CtDir>,
}

impl ConntrackMatch {
    pub fn is_empty(&self) -> bool {
        *self == ConntrackMatch::default()
    }
}

/// `-m owner` (`xt_owner_match_info`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OwnerMatch {
    pub uid: Option<super::Inv<(u32, u32)>>,
    pub gid: Option<super::Inv<(u32, u32)>>,
    pub socket_exists: Option<bool>,
    pub suppl_groups: bool,
}

/// `-m mark --mark value[/mask]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MarkMatch {
    pub value: u32,
    pub mask: u32,
    pub invert: bool,
}

/// `-m iprange`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct IprangeMatch {
    pub src: Option<super::Inv<(Ipv4Addr, Ipv4Addr)>>,
    pub dst: Option<super::Inv<(Ipv4Addr, Ipv4Addr)>>,
}

/// `-m helper --helper NAME`: the helper of the packet's connection (of its master, for an
/// expected connection).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HelperMatch {
    pub name: String,
    pub invert: bool,
}

/// `-m connmark --mark value[/mask]` (`xt_connmark_mtinfo1`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnmarkMatch {
    pub mark: u32,
    pub mask: u32,
    pub invert: bool,
}

/// `-m connlimit` (`xt_connlimit_info`, revision 1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnlimitMatch {
    pub limit: u32,
    /// The grouping mask (`--connlimit-mask`, as an address mask).
    pub mask: u32,
    /// `XT_CONNLIMIT_INVERT`: true for `--connlimit-upto` (match when count <= limit).
    pub upto: bool,
    /// Group by destination address (`--connlimit-daddr`).
    pub daddr: bool,
}

/// One match of a rule, in the order it was given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Match {
    Tcp(TcpMatch),
    Udp(UdpMatch),
    Icmp(IcmpMatch),
    Multiport(MultiportMatch),
    Mac(MacMatch),
    Limit(LimitMatch),
    State(StateMatch),
    Conntrack(ConntrackMatch),
    Owner(OwnerMatch),
    Mark(MarkMatch),
    Comment(String),
    Iprange(IprangeMatch),
    Helper(HelperMatch),
    Connmark(ConnmarkMatch),
    Connlimit(ConnlimitMatch),
}

impl Match {
    /// The extension's name as given to `-m`.
    pub fn name(&self) -> &'static str {
        match self {
            Match::Tcp(_) => "tcp",
            Match::Udp(_) => "udp",
            Match::Icmp(_) => "icmp",
            Match::Multiport(_) => "multiport",
            Match::Mac(_) => "mac",
            Match::Limit(_) => "limit",
            Match::State(_) => "state",
            Match::Conntrack(_) => "conntrack",
            Match::Owner(_) => "owner",
            Match::Mark(_) => "mark",
            Match::Comment(_) => "comment",
            Match::Iprange(_) => "iprange",
            Match::Helper(_) => "helper",
            Match::Connmark(_) => "connmark",
            Match::Connlimit(_) => "connlimit",
        }
    }

    /// Hooks the kernel allows this match in (None = all).
    pub fn allowed_hooks(&self) -> Option<HookMask> {
        use super::Hook::*;
        match self {
            Match::Owner(_) => Some(HookMask::of(&[Output, Postrouting])),
            Match::Mac(_) => Some(HookMask::of(&[Prerouting, Input, Forward])),
            _ => None,
        }
    }

    /// The protocol the kernel requires the rule to name with `-p` (and not inverted).
    pub fn required_proto(&self) -> Option<u8> {
        match self {
            Match::Tcp(_) => Some(6),
            Match::Udp(_) => Some(17),
            Match::Icmp(_) => Some(1),
            _ => None,
        }
    }
}
