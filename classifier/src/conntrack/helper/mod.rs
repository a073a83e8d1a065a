//! Connection-tracking helpers: the pure per-packet logic of netfilter's `ftp` and `tftp`
//! helpers (`nf_conntrack_ftp.c`, `nf_conntrack_tftp.c` of Linux 6.12), which read a tracked
//! connection's payload and announce the connections it will make (*expectations*).
//!
//! - [`ftp`]: `help()` of `nf_conntrack_ftp.c`: `PORT` / `EPRT` from the client, `227` / `229`
//!   replies from the server, read only at the start of a segment that begins right after a
//!   newline seen before ([`FtpState`]).
//! - [`tftp`]: `tftp_help()`: a read or write request expects the server's answer from any port.
//!
//! Everything here is pure: no allocation, no I/O, no clock. The tracker owns the expectation
//! table and does with a [`Verdict`] what `nf_confirm` and `nf_conntrack_expect.c` do:
//!
//! - **When**: a connection has a helper only if the raw table's `-j CT --helper NAME` gave it
//!   one when it was created and no expectation matched it (`init_conntrack`: `if (!exp && tmpl)
//!   __nf_ct_try_assign_helper`; Linux 6.12 assigns no helper by port). Giving one sets the
//!   HELPER status bit (`nf_ct_helper_ext_add`) and a zeroed helper state
//!   ([`HelperState::new`]). The helper runs in `nf_confirm`, i.e. once per packet that survived
//!   the hooks (POSTROUTING or INPUT, after NAT), just before the connection is confirmed, for
//!   every ctinfo but `IP_CT_RELATED_REPLY` (ICMP errors: ftp ignores them, tftp reads garbage
//!   that is never a request). A verdict `Drop` drops the packet there (a new connection is then
//!   never confirmed).
//! - **Expect**: register the [`Expectation`] (`nf_ct_expect_related`) with its master (the
//!   helped connection), class [`NF_CT_EXPECT_CLASS_DEFAULT`], flags 0, expiring
//!   [`ExpectPolicy::timeout_s`] after now; if registering fails the packet is dropped
//!   ("cannot add expectation"), else accepted. See [`Expectation`] for the rules.

pub mod ftp;
pub mod tftp;

#[cfg(test)]
mod tests;

pub use ftp::{FtpMatch, FtpState, FtpType, FtpVerdict};
pub use tftp::TftpVerdict;

use super::table::Dir;
use super::tuple::{proto, Tuple};

/// `FTP_PORT`: the port the kernel registers the ftp helper for (`ports=` module parameter
/// unset). Linux 6.12 never assigns a helper by port; the number is informational.
pub const FTP_PORT: u16 = 21;
/// `TFTP_PORT`.
pub const TFTP_PORT: u16 = 69;

/// `NF_CT_EXPECT_CLASS_DEFAULT`: the only class ftp and tftp use.
pub const NF_CT_EXPECT_CLASS_DEFAULT: u8 = 0;

/// `NF_CT_EXPECT_*` flags (`nf_conntrack_common.h`); ftp and tftp set none (`nf_ct_expect_init`
/// clears them).
pub mod expect_flags {
    /// Not removed when a connection matches it.
    pub const PERMANENT: u8 = 0x1;
    /// Never matched (`nf_ct_find_expectation` skips it).
    pub const INACTIVE: u8 = 0x2;
    /// Made by a userspace helper.
    pub const USERSPACE: u8 = 0x4;
    /// Treated as expired (`nf_ct_unexpect_related`).
    pub const DEAD: u8 = 0x8;
}

/// `struct nf_conntrack_expect_policy` of a helper (one class).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExpectPolicy {
    /// Pending expectations a master may have in the class (0: no limit); registering one more
    /// evicts the master's oldest of the class.
    pub max_expected: u32,
    /// Seconds from creation until the expectation expires.
    pub timeout_s: u32,
}

/// `ftp_exp_policy`: `.max_expected = 1, .timeout = 5 * 60`.
pub const FTP_EXPECT_POLICY: ExpectPolicy = ExpectPolicy {
    max_expected: 1,
    timeout_s: 5 * 60,
};

/// `tftp_exp_policy`: `.max_expected = 1, .timeout = 5 * 60`.
pub const TFTP_EXPECT_POLICY: ExpectPolicy = ExpectPolicy {
    max_expected: 1,
    timeout_s: 5 * 60,
};

/// The helpers pollwall has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HelperKind {
    Ftp,
    Tftp,
}

impl HelperKind {
    pub const ALL: [HelperKind; 2] = [HelperKind::Ftp, HelperKind::Tftp];

    /// The helper's name (`HELPER_NAME`), as `-j CT --helper`, `-m helper` and `conntrack -L`
    /// spell it.
    pub const fn name(self) -> &'static str {
        match self {
            HelperKind::Ftp => "ftp",
            HelperKind::Tftp => "tftp",
        }
    }

    /// The helper with exactly this name (`strcmp`: case matters).
    pub fn from_name(name: &str) -> Option<HelperKind> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The layer-4 protocol the helper is registered for.
    pub const fn l4proto(self) -> u8 {
        match self {
            HelperKind::Ftp => proto::TCP,
            HelperKind::Tftp => proto::UDP,
        }
    }

    /// `nf_conntrack_helper_try_module_get(name, NFPROTO_IPV4, l4proto)`: the helper of this
    /// name registered for this protocol (what `xt_CT` requires of `--helper`).
    pub fn find(name: &str, l4proto: u8) -> Option<HelperKind> {
        Self::from_name(name).filter(|k| k.l4proto() == l4proto)
    }

    /// The port the kernel registers it for by default.
    pub const fn default_port(self) -> u16 {
        match self {
            HelperKind::Ftp => FTP_PORT,
            HelperKind::Tftp => TFTP_PORT,
        }
    }

    /// Its expectation policy (class 0, the only one).
    pub const fn policy(self) -> ExpectPolicy {
        match self {
            HelperKind::Ftp => FTP_EXPECT_POLICY,
            HelperKind::Tftp => TFTP_EXPECT_POLICY,
        }
    }
}

/// A connection a helper expects: what `nf_ct_expect_init` puts in `exp->tuple` and
/// `exp->mask`. Addresses and ports are as in [`Tuple`] (`u32::from(Ipv4Addr)`, host-order
/// ports); `None` is a wildcard (mask 0), `Some` an exact value (mask all ones). The
/// destination address, destination port and protocol are always exact.
///
/// What the tracker must do with it (`nf_conntrack_expect.c`):
///
/// - **Register** (`nf_ct_expect_related` → `__nf_ct_expect_check`), walking the expectations
///   with the same destination (the kernel's hash bucket, newest first), expired ones being
///   removed on the way:
///   - one of the same master that is [`Self::same`] (equal tuple and mask): if its class
///     differs, fail (`-EALREADY`); else remove it and stop walking (the new one replaces it,
///     with a fresh timeout);
///   - otherwise one (of any master, same zone) that [`Self::clashes`]: fail (`-EBUSY`).
///   - Then, if the master already has `policy.max_expected` pending expectations of the class:
///     drop its expired ones, and if still at the limit remove its oldest of the class
///     (`evict_oldest_expect`).
///   - Then, if the table holds `nf_conntrack_expect_max` expectations (default: 4 × the
///     expectation hash size, itself `nf_conntrack_buckets / 256`, at least 1): fail
///     (`-EMFILE`, "nf_conntrack: expectation table full").
///   - Else insert it: expiry = now + `policy.timeout_s` (seconds; `exp->timeout` is in jiffies,
///     expired once `(s32)(timeout - now) <= 0`), the master's count of the class + 1.
/// - **Match** (`init_conntrack` → `nf_ct_find_expectation`, only while any exist): a new
///   connection (no entry for its tuple) whose original tuple [`Self::matches`] a live,
///   non-INACTIVE expectation of its zone: the newest such decides, and only if its master is
///   confirmed and not dying (else the connection is simply new and the expectation stays,
///   no older one is tried). The expectation is then removed
///   (unless PERMANENT), right away, before the protocol tracker has looked at the packet (an
///   invalid or dropped packet still uses it up). The new connection gets status EXPECTED, its
///   master (`ct->master`, kept alive by it), the master's mark (`ct->mark`), no helper
///   (`exp->assign_helper` is NULL for ftp and tftp; a raw-table `--helper` is not applied to
///   an expected connection either); its packets are RELATED until it sees a reply, then
///   ESTABLISHED; `-m helper` matches it by its master's helper.
/// - **Expire / remove**: an expectation expired is never matched and is removed lazily (on any
///   walk above, and by the conntrack gc for masters with the HELPER bit). All the pending
///   expectations of a master go when the master is deleted or destroyed (timeout, early
///   drop, RST, an unconfirmed master dropped by the hooks: `nf_ct_remove_expectations`);
///   connections already made from them stay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Expectation {
    /// The master's helper (`exp->helper`): its policy sets the timeout and the limit.
    pub helper: HelperKind,
    /// `exp->class`: always [`NF_CT_EXPECT_CLASS_DEFAULT`] here.
    pub class: u8,
    /// `exp->flags` ([`expect_flags`]): always 0 here.
    pub flags: u8,
    /// `exp->tuple.dst.protonum`: TCP for ftp, UDP for tftp.
    pub proto: u8,
    /// Source address, exact (`Some`) or any.
    pub src: Option<u32>,
    /// Source port, exact or any (ftp and tftp: any).
    pub sport: Option<u16>,
    pub dst: u32,
    pub dport: u16,
    /// The direction of the master the announcing packet travelled (informational: the kernel
    /// leaves `exp->dir` 0 without NAT; NAT helpers would set it from this).
    pub announced_in: Dir,
    /// Set by the NAT helpers on a NATed master: the connection that fulfils it is bound to
    /// follow its master (`exp->expectfn = nf_nat_follow_master`).
    pub nat: Option<ExpectNat>,
}

/// What `nf_nat_follow_master` needs of an expectation: `exp->dir` (the master direction the
/// expected connection travels) and `exp->saved_proto` (the port it is to reach in the end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExpectNat {
    pub dir: Dir,
    pub saved_port: u16,
}

impl Expectation {
    /// `nf_ct_tuple_mask_cmp(tuple, &exp->tuple, &exp->mask)`: whether a new connection with
    /// original tuple `t` is this expected one (zone and netns aside).
    pub fn matches(&self, t: &Tuple) -> bool {
        t.proto == self.proto
            && t.dst == self.dst
            && t.dport == self.dport
            && self.src.is_none_or(|s| s == t.src)
            && self.sport.is_none_or(|p| p == t.sport)
    }

    /// `expect_matches` (tuple and mask part): the same expectation. Class, master and zone are
    /// the table's to compare.
    pub fn same(&self, o: &Expectation) -> bool {
        self.proto == o.proto
            && self.dst == o.dst
            && self.dport == o.dport
            && self.src == o.src
            && self.sport == o.sport
    }

    /// `expect_clash` (tuple part): some connection would match both (equal under the
    /// intersection of the masks). Zone is the table's to compare.
    pub fn clashes(&self, o: &Expectation) -> bool {
        fn both<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
        }
        self.proto == o.proto
            && self.dst == o.dst
            && self.dport == o.dport
            && both(self.src, o.src)
            && both(self.sport, o.sport)
    }

    /// Seconds from creation to expiry (the master's helper's policy).
    pub fn timeout_s(&self) -> u32 {
        self.helper.policy().timeout_s
    }

    /// The most pending expectations of this class the master may have.
    pub fn max_expected(&self) -> u32 {
        self.helper.policy().max_expected
    }
}

/// What a helped connection keeps for its helper (`nfct_help_data`, zeroed when the helper is
/// attached). 24 bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum HelperState {
    /// No helper, or one without data (tftp: `NF_CT_HELPER_BUILD_BUG_ON(0)`).
    #[default]
    None,
    /// `struct nf_ct_ftp_master`.
    Ftp(FtpState),
}

impl HelperState {
    /// The zeroed state a connection given helper `kind` starts with.
    pub fn new(kind: HelperKind) -> HelperState {
        match kind {
            HelperKind::Ftp => HelperState::Ftp(FtpState::default()),
            HelperKind::Tftp => HelperState::None,
        }
    }
}

/// The helpers' module parameters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HelperConfig {
    /// `nf_conntrack_ftp loose=` (default off): expect connections to an address a `PORT`,
    /// `EPRT` or `227` names even when it is not the sender's own.
    pub ftp_loose: bool,
}

/// One packet as a helper sees it.
#[derive(Clone, Copy, Debug)]
pub struct HelperPacket<'a> {
    /// The connection's tuples (`ct->tuplehash[IP_CT_DIR_*].tuple`): original, reply.
    pub tuples: &'a [Tuple; 2],
    /// The packet's direction.
    pub dir: Dir,
    /// ctinfo is `IP_CT_ESTABLISHED` or `IP_CT_ESTABLISHED_REPLY`: every reply-direction packet,
    /// and original-direction ones once the connection has seen a reply (not NEW, not RELATED).
    pub established: bool,
    /// The layer-4 header and payload, up to the IPv4 total length (`skb->len` from the
    /// transport header; for UDP the UDP length field is not consulted).
    pub l4: &'a [u8],
}

/// Why a helper drops a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// ftp: "partial matching of `PATTERN'" (see [`FtpType::pattern`]).
    FtpPartial(FtpType),
}

/// What the tracker does with a helped packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// `NF_ACCEPT`, nothing to expect.
    Accept,
    /// `NF_DROP`.
    Drop(DropReason),
    /// Register the expectation: `NF_ACCEPT` if that works, `NF_DROP` if not.
    Expect(Expectation),
    /// ftp's: the expectation and the numbers that announced it (what `nf_nat_ftp` rewrites
    /// on a NATed connection; otherwise as [`Verdict::Expect`]).
    Announce(Expectation, FtpMatch),
}

impl Verdict {
    /// The verdict with an ftp match forgotten ([`Verdict::Announce`] as [`Verdict::Expect`]).
    pub fn without_match(self) -> Verdict {
        match self {
            Verdict::Announce(e, _) => Verdict::Expect(e),
            v => v,
        }
    }
}

/// Runs helper `kind` on a packet of its connection (the `helper->help()` call of
/// `nf_confirm`). A state of the wrong kind is reset to the helper's zeroed one first.
pub fn help(
    kind: HelperKind,
    state: &mut HelperState,
    cfg: &HelperConfig,
    p: &HelperPacket<'_>,
) -> Verdict {
    match kind {
        HelperKind::Ftp => {
            if !matches!(state, HelperState::Ftp(_)) {
                *state = HelperState::Ftp(FtpState::default());
            }
            let HelperState::Ftp(st) = state else {
                return Verdict::Accept;
            };
            match ftp::help(st, cfg.ftp_loose, p.tuples, p.dir, p.established, p.l4) {
                FtpVerdict::Accept | FtpVerdict::NotRecorded(_) => Verdict::Accept,
                FtpVerdict::Partial(t) => Verdict::Drop(DropReason::FtpPartial(t)),
                FtpVerdict::Expect(e, m) => Verdict::Announce(e, m),
            }
        }
        HelperKind::Tftp => match tftp::help(p.tuples, p.dir, p.l4) {
            TftpVerdict::Accept => Verdict::Accept,
            TftpVerdict::Expect(e) => Verdict::Expect(e),
        },
    }
}
