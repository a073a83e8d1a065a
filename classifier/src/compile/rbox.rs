//! The part of a rule a decision tree can cut on: a box of ranges over the packet key (source,
//! destination, source port, destination port, protocol), plus what is left to check at a leaf.
//!
//! A box is sound when every packet the rule matches lies inside it. Fields are put in the box only
//! when the kernel checks them before anything with a side effect (a `limit` match spends a
//! token): the IP header fields always are; ports of a `tcp`/`udp` match only when no `limit`
//! comes first in the rule.

use crate::model::*;
use crate::packet::Headers;

/// Key dimensions.
pub const SRC: usize = 0;
pub const DST: usize = 1;
pub const SPORT: usize = 2;
pub const DPORT: usize = 3;
pub const PROTO: usize = 4;
pub const DIMS: usize = 5;

/// The widest value of each dimension. The protocol dimension is `proto << 1 | fragment`, so that
/// non-first fragments, which no L4 match accepts, fall outside the boxes of rules with one.
pub const DIM_MAX: [u32; DIMS] = [u32::MAX, u32::MAX, 0xffff, 0xffff, 0x1ff];
/// log2 of each dimension's size.
pub const DIM_BITS: [u32; DIMS] = [32, 32, 16, 16, 9];

/// The lookup key of a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Key(pub [u32; DIMS]);

impl Key {
    /// Ports are 0 for non-first fragments and protocols without ports; the protocol dimension
    /// carries the fragment bit, so rules with L4 matches never see those packets as candidates.
    #[inline]
    pub fn of(h: &Headers) -> Key {
        let frag = h.frag_off != 0;
        let (sp, dp) = if frag {
            (0, 0)
        } else {
            h.ports().unwrap_or((0, 0))
        };
        Key([
            h.src,
            h.dst,
            u32::from(sp),
            u32::from(dp),
            u32::from(h.proto) << 1 | u32::from(frag),
        ])
    }
}

/// A box: inclusive ranges per dimension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RBox {
    pub lo: [u32; DIMS],
    pub hi: [u32; DIMS],
}

impl RBox {
    pub const FULL: RBox = RBox {
        lo: [0; DIMS],
        hi: DIM_MAX,
    };

    #[inline]
    pub fn contains(&self, k: &Key) -> bool {
        let mut ok = true;
        for d in 0..DIMS {
            ok &= (k.0[d] >= self.lo[d]) & (k.0[d] <= self.hi[d]);
        }
        ok
    }

    /// True when the box covers the whole region `r`.
    pub fn covers(&self, r: &RBox) -> bool {
        (0..DIMS).all(|d| self.lo[d] <= r.lo[d] && self.hi[d] >= r.hi[d])
    }

    pub fn overlaps(&self, r: &RBox) -> bool {
        (0..DIMS).all(|d| self.lo[d] <= r.hi[d] && self.hi[d] >= r.lo[d])
    }

    /// Width of dimension `d` as a fraction of its full range (for partitioning).
    pub fn width(&self, d: usize) -> u64 {
        u64::from(self.hi[d] - self.lo[d]) + 1
    }
}

/// A rule as the compiled walk sees it.
#[derive(Clone, Debug)]
pub struct CRule {
    pub rbox: RBox,
    /// The box says everything: no leaf check beyond the box.
    pub exact: bool,
    /// Bucket index of each match (limit matches only), by match position.
    pub limit_slots: Vec<(usize, u32)>,
    /// Group-table slot of each connlimit match, by match position.
    pub connlimit_slots: Vec<(usize, u32)>,
}

fn prefix_range(n: &Ipv4Net) -> Option<(u32, u32)> {
    n.prefix_len().map(|_| {
        let a = u32::from(n.addr);
        (a, a | !u32::from(n.mask))
    })
}

/// Builds the box of a rule and whether the box alone decides it.
pub fn rule_box(rule: &Rule) -> (RBox, bool) {
    let mut b = RBox::FULL;
    let mut exact = rule.in_iface.is_none() && rule.out_iface.is_none();
    for (dim, addr) in [(SRC, &rule.src), (DST, &rule.dst)] {
        if let Some(a) = addr {
            match prefix_range(&a.value) {
                Some((lo, hi)) if !a.invert => (b.lo[dim], b.hi[dim]) = (lo, hi),
                _ => exact = false,
            }
        }
    }
    let proto = match &rule.proto {
        Some(p) if p.invert => {
            exact = false;
            None
        }
        Some(p) if p.value != 0 => Some(u32::from(p.value)),
        _ => None,
    };
    // An L4 match that the kernel reaches before any `limit`: non-first fragments never get past
    // it, so they can be left out of the box.
    let mut l4 = false;
    let mut limit_seen = false;
    for m in &rule.matches {
        match m {
            Match::Tcp(t) => {
                l4 |= !limit_seen;
                if t.flags_mask != 0 || t.inv_flags || t.option != 0 || t.inv_option {
                    exact = false;
                }
                port_dim(&mut b, &mut exact, limit_seen, SPORT, t.sport, t.inv_sport);
                port_dim(&mut b, &mut exact, limit_seen, DPORT, t.dport, t.inv_dport);
            }
            Match::Udp(u) => {
                l4 |= !limit_seen;
                port_dim(&mut b, &mut exact, limit_seen, SPORT, u.sport, u.inv_sport);
                port_dim(&mut b, &mut exact, limit_seen, DPORT, u.dport, u.inv_dport);
            }
            Match::Comment(_) => {}
            Match::Limit(_) => {
                limit_seen = true;
                exact = false;
            }
            Match::Icmp(_) | Match::Multiport(_) => {
                l4 |= !limit_seen;
                exact = false;
            }
            _ => exact = false,
        }
    }
    // The protocol dimension: `proto << 1 | non-first-fragment`.
    match (proto, rule.frag) {
        (Some(p), None) => (b.lo[PROTO], b.hi[PROTO]) = (p << 1, p << 1 | u32::from(!l4)),
        (Some(p), Some(FragMatch::FirstOrUnfragmented)) => {
            (b.lo[PROTO], b.hi[PROTO]) = (p << 1, p << 1)
        }
        (Some(p), Some(FragMatch::NonFirst)) => {
            (b.lo[PROTO], b.hi[PROTO]) = (p << 1 | 1, p << 1 | 1);
            if l4 {
                // An L4 match never accepts a non-first fragment.
                (b.lo[PROTO], b.hi[PROTO]) = (1, 0);
            }
        }
        (None, None) => {}
        (None, Some(_)) => exact = false,
    }
    (b, exact)
}

fn port_dim(b: &mut RBox, exact: &mut bool, limit_seen: bool, dim: usize, r: PortRange, inv: bool) {
    if r.is_any() {
        return;
    }
    if inv || limit_seen {
        *exact = false;
        return;
    }
    // A second tcp/udp match narrows further: intersect.
    b.lo[dim] = b.lo[dim].max(u32::from(r.lo));
    b.hi[dim] = b.hi[dim].min(u32::from(r.hi));
    if b.lo[dim] > b.hi[dim] {
        // Never matches: an empty box is represented by an inverted range.
        *exact = false;
    }
}
