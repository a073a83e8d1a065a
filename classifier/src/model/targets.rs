//! Targets (`-j NAME ...` / `-g CHAIN`), stored as the kernel's target structures store them.

use super::{Hook, HookMask, TableKind};
use std::net::Ipv4Addr;

/// `--reject-with` types (`ipt_reject_with`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectWith {
    NetUnreachable,
    HostUnreachable,
    ProtoUnreachable,
    PortUnreachable,
    NetProhibited,
    HostProhibited,
    AdminProhibited,
    TcpReset,
    /// `icmp-echo-reply`: accepted by the grammar, refused by the kernel.
    EchoReply,
}

impl RejectWith {
    /// (canonical name, alias, type) in the order iptables documents them.
    pub const ALL: [(RejectWith, &'static str, &'static str); 9] = [
        (
            RejectWith::NetUnreachable,
            "icmp-net-unreachable",
            "net-unreach",
        ),
        (
            RejectWith::HostUnreachable,
            "icmp-host-unreachable",
            "host-unreach",
        ),
        (
            RejectWith::ProtoUnreachable,
            "icmp-proto-unreachable",
            "proto-unreach",
        ),
        (
            RejectWith::PortUnreachable,
            "icmp-port-unreachable",
            "port-unreach",
        ),
        (
            RejectWith::NetProhibited,
            "icmp-net-prohibited",
            "net-prohib",
        ),
        (
            RejectWith::HostProhibited,
            "icmp-host-prohibited",
            "host-prohib",
        ),
        (RejectWith::TcpReset, "tcp-reset", "tcp-rst"),
        (
            RejectWith::AdminProhibited,
            "icmp-admin-prohibited",
            "admin-prohib",
        ),
        (RejectWith::EchoReply, "icmp-echo-reply", "echoreply"),
    ];

    pub fn name(self) -> &'static str {
        RejectWith::ALL
            .iter()
            .find(|(r, _, _)| *r == self)
            .map(|(_, n, _)| *n)
            .unwrap_or("?")
    }
}

/// LOG flags (`IPT_LOG_*`).
pub mod log_flags {
    pub const TCPSEQ: u8 = 0x01;
    pub const TCPOPT: u8 = 0x02;
    pub const IPOPT: u8 = 0x04;
    pub const UID: u8 = 0x08;
    pub const MACDECODE: u8 = 0x20;
}

/// `-j LOG`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LogTarget {
    /// syslog level 0..=7 (default 4, warning).
    pub level: u8,
    pub flags: u8,
    /// At most 29 bytes.
    pub prefix: String,
}

impl LogTarget {
    pub const DEFAULT_LEVEL: u8 = 4;
    pub const MAX_PREFIX: usize = 29;
}

/// `-j MARK` (`xt_mark_tginfo2`): new = (old & !mask) ^ value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MarkTarget {
    pub value: u32,
    pub mask: u32,
}

/// NAT range flags (`NF_NAT_RANGE_*`).
pub mod nat_flags {
    pub const MAP_IPS: u32 = 1 << 0;
    pub const PROTO_SPECIFIED: u32 = 1 << 1;
    pub const PROTO_RANDOM: u32 = 1 << 2;
    pub const PERSISTENT: u32 = 1 << 3;
    pub const PROTO_RANDOM_FULLY: u32 = 1 << 4;
    pub const PROTO_OFFSET: u32 = 1 << 5;
}

/// A NAT range (`nf_nat_range2`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatRange {
    pub flags: u32,
    pub min_addr: Option<Ipv4Addr>,
    pub max_addr: Option<Ipv4Addr>,
    pub min_port: u16,
    pub max_port: u16,
    /// Base port of a shifted range (`:a-b/base`).
    pub base_port: u16,
}

/// `-j NFQUEUE` (`xt_NFQ_info_v3`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NfqueueTarget {
    pub queue_num: u16,
    /// Number of queues for `--queue-balance` (1 = no balancing).
    pub queues_total: u16,
    pub bypass: bool,
    pub cpu_fanout: bool,
}

/// CONNMARK modes (`XT_CONNMARK_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnmarkMode {
    /// ctmark = ((ctmark & !ctmask) ^ ctmark_value) shifted.
    Set,
    /// ctmark = (ctmark & !ctmask) ^ ((nfmark & nfmask) shifted).
    Save,
    /// nfmark = (nfmark & !nfmask) ^ ((ctmark & ctmask) shifted).
    Restore,
}

/// `-j CONNMARK` (`xt_connmark_tginfo2`, the revision this kernel and iptables 1.8.9 use).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConnmarkTarget {
    pub mode: ConnmarkMode,
    pub ctmark: u32,
    pub ctmask: u32,
    pub nfmask: u32,
    /// Right shift (true) or left shift (false), by `shift_bits` (< 32).
    pub shift_right: bool,
    pub shift_bits: u8,
}

impl ConnmarkTarget {
    fn shift(&self, v: u32) -> u32 {
        if self.shift_right {
            v >> self.shift_bits
        } else {
            v << self.shift_bits
        }
    }

    /// `connmark_tg_shift`: the new (nfmark, ctmark) from the old ones.
    pub fn apply(&self, nfmark: u32, ctmark: u32) -> (u32, u32) {
        match self.mode {
            ConnmarkMode::Set => (nfmark, self.shift((ctmark & !self.ctmask) ^ self.ctmark)),
            ConnmarkMode::Save => {
                let v = self.shift(nfmark & self.nfmask);
                (nfmark, (ctmark & !self.ctmask) ^ v)
            }
            ConnmarkMode::Restore => {
                let v = self.shift(ctmark & self.ctmask);
                ((nfmark & !self.nfmask) ^ v, ctmark)
            }
        }
    }
}

/// `XT_CT_*` flags of `-j CT`.
pub mod ct_flags {
    pub const NOTRACK: u16 = 1 << 0;
    pub const NOTRACK_ALIAS: u16 = 1 << 1;
    pub const ZONE_DIR_ORIG: u16 = 1 << 2;
    pub const ZONE_DIR_REPL: u16 = 1 << 3;
    pub const ZONE_MARK: u16 = 1 << 4;
}

/// `-j CT` and `-j NOTRACK` (`xt_ct_target_info_v1`, revision 2: NOTRACK is its alias).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTarget {
    pub flags: u16,
    /// Helper name (empty: none).
    pub helper: String,
    /// Timeout policy name (empty: none).
    pub timeout: String,
    pub ct_events: u32,
    pub exp_events: u32,
    pub zone: u16,
}

impl CtTarget {
    pub fn notrack(&self) -> bool {
        self.flags & ct_flags::NOTRACK != 0
    }
    pub fn is_alias(&self) -> bool {
        self.flags & ct_flags::NOTRACK_ALIAS != 0
    }
}

/// What happens to a packet when every match of a rule holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Target {
    /// No `-j`: only the counters move.
    #[default]
    None,
    Accept,
    Drop,
    Return,
    Queue,
    Jump(String),
    Goto(String),
    Reject(RejectWith),
    Log(LogTarget),
    Mark(MarkTarget),
    Snat(NatRange),
    Dnat(NatRange),
    Masquerade(NatRange),
    Redirect(NatRange),
    Nfqueue(NfqueueTarget),
    Connmark(ConnmarkTarget),
    Ct(CtTarget),
}

impl Target {
    /// The user chain this target jumps or goes to.
    pub fn chain_ref(&self) -> Option<&str> {
        match self {
            Target::Jump(c) | Target::Goto(c) => Some(c),
            _ => None,
        }
    }

    /// The name printed in `-L`'s target column (and after `-j`).
    pub fn name(&self) -> &str {
        match self {
            Target::None => "",
            Target::Accept => "ACCEPT",
            Target::Drop => "DROP",
            Target::Return => "RETURN",
            Target::Queue => "QUEUE",
            Target::Jump(c) | Target::Goto(c) => c,
            Target::Reject(_) => "REJECT",
            Target::Log(_) => "LOG",
            Target::Mark(_) => "MARK",
            Target::Snat(_) => "SNAT",
            Target::Dnat(_) => "DNAT",
            Target::Masquerade(_) => "MASQUERADE",
            Target::Redirect(_) => "REDIRECT",
            Target::Nfqueue(_) => "NFQUEUE",
            Target::Connmark(_) => "CONNMARK",
            Target::Ct(c) if c.is_alias() => "NOTRACK",
            Target::Ct(_) => "CT",
        }
    }

    /// The name in `-L`'s target column: the real extension's (`CT` for its `NOTRACK` alias).
    pub fn column_name(&self) -> &str {
        match self {
            Target::Ct(_) => "CT",
            _ => self.name(),
        }
    }

    /// The (table, hooks) the kernel restricts this target to.
    pub fn restriction(&self) -> (Option<TableKind>, Option<HookMask>) {
        use Hook::*;
        match self {
            Target::Reject(_) => (
                Some(TableKind::Filter),
                Some(HookMask::of(&[Input, Forward, Output])),
            ),
            Target::Snat(_) => (
                Some(TableKind::Nat),
                Some(HookMask::of(&[Postrouting, Input])),
            ),
            Target::Dnat(_) => (
                Some(TableKind::Nat),
                Some(HookMask::of(&[Prerouting, Output])),
            ),
            Target::Masquerade(_) => (Some(TableKind::Nat), Some(HookMask::of(&[Postrouting]))),
            Target::Ct(_) => (Some(TableKind::Raw), None),
            Target::Redirect(_) => (
                Some(TableKind::Nat),
                Some(HookMask::of(&[Prerouting, Output])),
            ),
            _ => (None, None),
        }
    }
}
