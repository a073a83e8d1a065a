//! NAT in connection tracking (DESIGN.md §5), as netfilter's `nf_nat` does it.
//!
//! - **Binding** ([`Tracker::nat_setup`], `nf_nat_setup_info`): on a connection's first packet
//!   the nat table's SNAT, DNAT, MASQUERADE or REDIRECT (or, when no rule of the hook's nat
//!   chain took it, the null binding of `nf_nat_alloc_null_binding`) picks the tuple the
//!   packet will have after translation ([`choose`]: `get_unique_tuple`); its inverse becomes
//!   the connection's reply tuple, so replies are found, and the status gets `SRC_NAT` /
//!   `DST_NAT` when something changed, and `SRC_NAT_DONE` / `DST_NAT_DONE` in any case.
//! - **Translation** ([`manip`], `nf_nat_packet` and `nf_nat_icmp_reply_translation`): every
//!   packet of the connection, in both directions, at the hook of each manip (destination at
//!   PREROUTING and OUTPUT, source at POSTROUTING and INPUT), has its addresses and ports made
//!   to look like the inverse of the other direction's tuple, with incremental checksums
//!   ([`csum`], RFC 1624 the kernel's way); an ICMP error about the connection has the
//!   datagram it quotes translated back too.
//!
//! The dataplane decides when (which hook, which rule's range) and rewrites its frames with
//! these functions; this module keeps the binding in the tracker's table.

pub mod choose;
pub mod csum;
pub mod helper;
#[cfg(test)]
mod helper_tests;
pub mod manip;
#[cfg(test)]
mod tests;

use crate::conntrack::conn::status;
use crate::conntrack::table::ConnId;
use crate::conntrack::tuple::Tuple;
use crate::conntrack::Tracker;
use crate::model::NatRange;

/// Range flags (`NF_NAT_RANGE_*`).
pub mod range_flags {
    pub use crate::model::nat_flags::*;
    /// `NF_NAT_RANGE_PROTO_RANDOM_ALL`.
    pub const PROTO_RANDOM_ALL: u32 = PROTO_RANDOM | PROTO_RANDOM_FULLY;
}

/// Which end of the packet a manip changes (`enum nf_nat_manip_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Manip {
    Src,
    Dst,
}

impl Manip {
    /// The manip of a hook (`HOOK2MANIP`): source at POSTROUTING and INPUT.
    pub fn of_hook(hook: crate::Hook) -> Manip {
        match hook {
            crate::Hook::Postrouting | crate::Hook::Input => Manip::Src,
            _ => Manip::Dst,
        }
    }

    fn nat_bit(self) -> u16 {
        match self {
            Manip::Src => status::SRC_NAT,
            Manip::Dst => status::DST_NAT,
        }
    }

    fn done_bit(self) -> u16 {
        match self {
            Manip::Src => status::SRC_NAT_DONE,
            Manip::Dst => status::DST_NAT_DONE,
        }
    }
}

/// A NAT range in host order (`nf_nat_range2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Range {
    pub flags: u32,
    pub min_addr: u32,
    pub max_addr: u32,
    pub min_port: u16,
    pub max_port: u16,
    pub base_port: u16,
}

impl Range {
    /// A target's range as the rule gives it.
    pub fn of(r: &NatRange) -> Range {
        let addr = |a: Option<std::net::Ipv4Addr>| a.map_or(0, u32::from);
        Range {
            flags: r.flags,
            min_addr: addr(r.min_addr),
            max_addr: addr(r.max_addr.or(r.min_addr)),
            min_port: r.min_port,
            max_port: r.max_port,
            base_port: r.base_port,
        }
    }

    /// The range onto one address, keeping the rule's ports and flags (MASQUERADE's and
    /// REDIRECT's, with the interface's address).
    pub fn onto(r: &NatRange, addr: u32) -> Range {
        Range {
            flags: r.flags | range_flags::MAP_IPS,
            min_addr: addr,
            max_addr: addr,
            ..Range::of(r)
        }
    }
}

/// The nat table's decision for a connection's first packet: its target and range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatAction {
    Snat(Range),
    Dnat(Range),
    /// The range's ports and flags; the address is the egress port's.
    Masquerade(Range),
    /// The range's ports and flags; the address is the ingress port's (127.0.0.1 in OUTPUT).
    Redirect(Range),
}

impl NatAction {
    /// The action of a NAT target (None for any other target).
    pub fn of(t: &crate::model::Target) -> Option<NatAction> {
        use crate::model::Target;
        Some(match t {
            Target::Snat(r) => NatAction::Snat(Range::of(r)),
            Target::Dnat(r) => NatAction::Dnat(Range::of(r)),
            Target::Masquerade(r) => NatAction::Masquerade(Range::of(r)),
            Target::Redirect(r) => NatAction::Redirect(Range::of(r)),
            _ => return None,
        })
    }
}

impl Range {
    /// `range` moved onto one address (MASQUERADE's and REDIRECT's), its ports and flags kept.
    pub fn onto_range(range: &Range, addr: u32) -> Range {
        Range {
            flags: range.flags | range_flags::MAP_IPS,
            min_addr: addr,
            max_addr: addr,
            ..*range
        }
    }
}

/// Which worker owns a connection's replies: the dataplane steers every packet by a symmetric
/// keyed hash ([`flow_hash`]) and NAT must only pick tuples whose replies hash to the worker
/// that picks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    pub key: u64,
    pub workers: u16,
    pub me: u16,
}

impl Default for Owner {
    fn default() -> Owner {
        Owner::ALONE
    }
}

impl Owner {
    /// One worker: it owns everything.
    pub const ALONE: Owner = Owner {
        key: 0,
        workers: 1,
        me: 0,
    };

    /// Whether a packet with tuple `t` is steered to this worker.
    #[inline]
    pub fn owns(&self, t: &Tuple) -> bool {
        if self.workers <= 1 {
            return true;
        }
        tuple_hash(t, self.key) % u64::from(self.workers) == u64::from(self.me)
    }
}

/// The steering hash of a tuple: what the dataplane steers a packet with this tuple by.
#[inline]
pub fn tuple_hash(t: &Tuple, key: u64) -> u64 {
    flow_hash(t.src, t.dst, tuple_ports(t), t.proto, key)
}

/// The ports the steering hash reads of a tuple: the ports, or an ICMP query's id twice (a
/// request and its reply carry the same id, so NAT's choice of id picks the reply's worker).
#[inline]
pub fn tuple_ports(t: &Tuple) -> Option<(u16, u16)> {
    if t.has_ports() {
        Some((t.sport, t.dport))
    } else if t.proto == crate::conntrack::tuple::proto::ICMP
        && crate::conntrack::tuple::icmp_reply_type(t.icmp_type()).is_some()
    {
        Some((t.sport, t.sport))
    } else {
        None
    }
}

/// The steering hash: symmetric in the two ends (addresses, and ports when the packet has
/// them), keyed.
#[inline]
pub fn flow_hash(src: u32, dst: u32, ports: Option<(u16, u16)>, proto: u8, key: u64) -> u64 {
    let (a, b) = (src.min(dst), src.max(dst));
    let ports = ports.map_or(0, |(s, d)| {
        let (x, y) = (s.min(d), s.max(d));
        u64::from(x) << 16 | u64::from(y)
    });
    let mut x = (u64::from(a) << 32 | u64::from(b)) ^ key;
    x = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= ports << 8 | u64::from(proto);
    x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^ (x >> 32)
}

/// The tracker's generator (xorshift64*), for the kernel's `get_random_u16` draws.
pub(crate) fn next_random(state: &mut u64) -> u64 {
    let mut x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// What setting a binding up did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// The binding is in place (maybe the identity).
    Done,
    /// This manip was set up already, or the connection is confirmed: nothing changes.
    Already,
}

impl Tracker {
    /// `nf_nat_setup_info`: binds unconfirmed connection `id` for `manip` within `range`.
    ///
    /// With several workers a source manip only picks tuples whose reply hashes to this
    /// worker ([`Owner`]); a destination manip (whose ports the rule fixes) and the null
    /// bindings choose as the kernel does, and the dataplane claims the replies of the
    /// connections whose reply then hashes elsewhere.
    pub fn nat_setup(&mut self, id: ConnId, range: &Range, manip: Manip) -> Setup {
        let owner = match manip {
            Manip::Src => self.nat_owner,
            Manip::Dst => Owner::ALONE,
        };
        self.setup_for(id, range, manip, owner)
    }

    fn setup_for(&mut self, id: ConnId, range: &Range, manip: Manip, owner: Owner) -> Setup {
        let c = *self.table.get(id);
        if c.status & status::CONFIRMED != 0 || c.status & manip.done_bit() != 0 {
            return Setup::Already;
        }
        // What we have looks like the inverse of the reply (earlier manips included).
        let Some(curr) = c.tuple[1].invert() else {
            return Setup::Already;
        };
        let new = choose::Chooser {
            table: &mut self.table,
            id,
            rng: &mut self.nat_rng,
            owner,
        }
        .unique_tuple(&curr, range, manip);
        if new != curr {
            if let Some(reply) = new.invert() {
                self.table.alter_reply(id, reply);
                self.table.get_mut(id).status |= manip.nat_bit();
            }
        }
        self.table.get_mut(id).status |= manip.done_bit();
        if manip == Manip::Src {
            self.table.bysource_add(id);
        }
        Setup::Done
    }

    /// `nf_nat_alloc_null_binding`: no rule bound the connection at this hook; its address
    /// stays but a clashing tuple still gets a free port.
    pub fn nat_null_binding(&mut self, id: ConnId, manip: Manip) -> Setup {
        let reply = self.table.get(id).tuple[1];
        let addr = match manip {
            Manip::Src => reply.dst,
            Manip::Dst => reply.src,
        };
        let range = Range {
            flags: range_flags::MAP_IPS,
            min_addr: addr,
            max_addr: addr,
            ..Range::default()
        };
        self.setup_for(id, &range, manip, Owner::ALONE)
    }

    /// Steers NAT's choices to this worker's share of the tuple space.
    pub fn set_nat_owner(&mut self, owner: Owner) {
        self.nat_owner = owner;
    }

    /// Which tuples this tracker's worker owns (see [`Owner`]).
    pub fn nat_owner(&self) -> Owner {
        self.nat_owner
    }
}
