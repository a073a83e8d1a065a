//! The tuple choice of `nf_nat_core.c` (`get_unique_tuple` and what it calls), step for step:
//!
//! 1. Source manips without `--random*`: keep the tuple when it is in the range and its reply
//!    is free; else reuse the mapping another connection from the same source got
//!    (`find_appropriate_src`) when that is in the range and free.
//! 2. The address: the range's only one, or one picked by `jhash2` of the source (and
//!    destination, without `--persistent`) over the range (`find_best_ips_proto`).
//! 3. Keep the port when it is in the range and the tuple is free (or the range is one port);
//!    else search the range from an offset (random for source manips and `--random*`, 0 for
//!    destination manips), `min(range, 128)` attempts, then halving rounds from new random
//!    offsets (`nf_nat_l4proto_unique_tuple`). The last 32 attempts of a TCP SYN may evict a
//!    TIME_WAIT connection whose sequence numbers the new one has passed
//!    (`nf_nat_used_tuple_harder`).
//!
//! Where the kernel draws `get_random_u16()` this draws from the tracker's generator, so only
//! those choices can differ from the kernel's. With several workers a tuple also counts as
//! taken when its reply would be steered to another worker ([`Owner`]): the port space is
//! partitioned by the steering hash, so every reply reaches the connection's owner.

use super::{range_flags as rf, Manip, Owner, Range};
use crate::conntrack::conn::{status, ProtoState};
use crate::conntrack::table::{ConnId, Dir, Table};
use crate::conntrack::tcp::TcpState;
use crate::conntrack::tuple::{proto, Tuple};

const MAX_ATTEMPTS: u32 = 128;
const HARDER_THRESH: u32 = MAX_ATTEMPTS / 4;

/// What the choice works on.
pub(crate) struct Chooser<'a> {
    pub table: &'a mut Table,
    pub id: ConnId,
    pub rng: &'a mut u64,
    pub owner: Owner,
}

/// `jhash2` (Bob Jenkins' lookup3 on 32-bit words), as `linux/jhash.h` computes it.
pub fn jhash2(k: &[u32], initval: u32) -> u32 {
    let mut a = 0xdead_beefu32
        .wrapping_add((k.len() as u32) << 2)
        .wrapping_add(initval);
    let (mut b, mut c) = (a, a);
    let mut k = k;
    while k.len() > 3 {
        a = a.wrapping_add(k[0]);
        b = b.wrapping_add(k[1]);
        c = c.wrapping_add(k[2]);
        mix(&mut a, &mut b, &mut c);
        k = &k[3..];
    }
    match k.len() {
        0 => return c,
        3 => {
            c = c.wrapping_add(k[2]);
            b = b.wrapping_add(k[1]);
            a = a.wrapping_add(k[0]);
        }
        2 => {
            b = b.wrapping_add(k[1]);
            a = a.wrapping_add(k[0]);
        }
        _ => a = a.wrapping_add(k[0]),
    }
    final_mix(&mut a, &mut b, &mut c);
    c
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c) ^ c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c) ^ c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a) ^ a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b) ^ b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn final_mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(14));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(11));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(25));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(16));
    *a = (*a ^ *c).wrapping_sub(c.rotate_left(4));
    *b = (*b ^ *a).wrapping_sub(a.rotate_left(14));
    *c = (*c ^ *b).wrapping_sub(b.rotate_left(24));
}

/// `reciprocal_scale`: `val` scaled into `0..ep_ro`.
fn reciprocal_scale(val: u32, ep_ro: u32) -> u32 {
    ((u64::from(val) * u64::from(ep_ro)) >> 32) as u32
}

/// A network-order address as the kernel's little-endian word loads see it.
fn raw_word(addr: u32) -> u32 {
    u32::from_le_bytes(addr.to_be_bytes())
}

/// Whether the protocol's part of `t` (the source's, or the destination's for `Dst`) is in
/// `min..=max` (`l4proto_in_range`).
fn l4_in_range(t: &Tuple, manip: Manip, min: u16, max: u16) -> bool {
    match t.proto {
        proto::ICMP => (min..=max).contains(&t.sport),
        proto::GRE | proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => {
            let port = if manip == Manip::Src {
                t.sport
            } else {
                t.dport
            };
            (min..=max).contains(&port)
        }
        _ => true,
    }
}

/// `nf_in_range`: would mapping the source onto `t` meet the range?
fn in_range(t: &Tuple, r: &Range) -> bool {
    if r.flags & rf::MAP_IPS != 0 && !(r.min_addr..=r.max_addr).contains(&t.src) {
        return false;
    }
    if r.flags & rf::PROTO_SPECIFIED == 0 {
        return true;
    }
    l4_in_range(t, Manip::Src, r.min_port, r.max_port)
}

/// `nf_nat_allow_clash`: protocols whose clashing new entries may merge at confirmation.
fn allow_clash(p: u8) -> bool {
    !matches!(p, proto::TCP | proto::ICMP | proto::SCTP)
}

impl Chooser<'_> {
    fn random_u16(&mut self) -> u16 {
        super::next_random(self.rng) as u16
    }

    /// `nf_nat_used_tuple`: is the reply `t` would have taken (or steered elsewhere)?
    fn used(&mut self, t: &Tuple) -> bool {
        let Some(reply) = t.invert() else {
            return true;
        };
        !self.owner.owns(&reply) || self.table.tuple_taken(&reply, self.id)
    }

    fn uses_nat(&self, id: ConnId) -> bool {
        self.table.get(id).status & (status::SRC_NAT | status::DST_NAT | status::SEQ_ADJUST) != 0
    }

    /// `nf_nat_used_tuple_new`: [`Self::used`] for the unaltered tuple, except that a clash
    /// with the same flow seen from the other side (neither subject to NAT) is left to
    /// confirmation.
    fn used_new(&mut self, t: &Tuple) -> bool {
        if !self.used(t) {
            return false;
        }
        if !allow_clash(t.proto) || self.uses_nat(self.id) {
            return true;
        }
        let found = self.table.find_confirmed(t).or_else(|| {
            let r = t.invert()?;
            self.table.find_confirmed(&r)
        });
        let Some((other, _)) = found else {
            return false;
        };
        if self.uses_nat(other) {
            return true;
        }
        self.table.get(other).tuple[0] != self.table.get(self.id).tuple[1]
    }

    /// `nf_nat_used_tuple_harder`: [`Self::used`], but in the last attempts of a TCP SYN a
    /// TIME_WAIT (or later) source-NATed connection holding the reply is evicted when this
    /// connection's sequence numbers have passed it.
    fn used_harder(&mut self, t: &Tuple, attempts_left: u32) -> bool {
        let syn_sent = matches!(self.table.get(self.id).proto,
            ProtoState::Tcp(c) if c.state == TcpState::SynSent);
        if attempts_left > HARDER_THRESH || t.proto != proto::TCP || !syn_sent {
            return self.used(t);
        }
        let Some(reply) = t.invert() else {
            return true;
        };
        if !self.owner.owns(&reply) {
            return true;
        }
        let Some((other, dir)) = self.table.find_confirmed(&reply) else {
            return false;
        };
        if dir == Dir::Original {
            return true;
        }
        let old = *self.table.get(other);
        let may_kill = matches!(old.proto, ProtoState::Tcp(c) if c.state >= TcpState::TimeWait)
            && old.status & (status::FIXED_TIMEOUT | status::DYING) == 0
            && old.status & status::SRC_NAT != 0;
        let advanced = match (old.proto, self.table.get(self.id).proto) {
            (ProtoState::Tcp(o), ProtoState::Tcp(n)) => {
                n.seen[0].td_end.wrapping_sub(o.seen[0].td_end) as i32 > 0
            }
            _ => false,
        };
        if !may_kill || !advanced {
            return true;
        }
        self.table.kill(other);
        false
    }

    /// `find_appropriate_src`: the mapping of another connection from `orig`'s source, when
    /// it meets the range.
    fn appropriate_src(&self, orig: &Tuple, r: &Range) -> Option<Tuple> {
        self.table.same_source(orig).find_map(|id| {
            let c = self.table.get(id);
            let mut result = c.tuple[1].invert()?;
            result.dst = orig.dst;
            result.dport = orig.dport;
            in_range(&result, r).then_some(result)
        })
    }

    /// `get_unique_tuple`: the tuple `orig` (the connection as it stands) becomes.
    pub fn unique_tuple(&mut self, orig: &Tuple, r: &Range, manip: Manip) -> Tuple {
        if manip == Manip::Src && r.flags & rf::PROTO_RANDOM_ALL == 0 {
            if in_range(orig, r) {
                if !self.used_new(orig) {
                    return *orig;
                }
            } else if let Some(t) = self.appropriate_src(orig, r) {
                if !self.used(&t) {
                    return t;
                }
            }
        }
        let mut t = *orig;
        best_ips(&mut t, r, manip);
        if r.flags & rf::PROTO_RANDOM_ALL == 0 {
            if r.flags & rf::PROTO_SPECIFIED != 0 {
                if r.flags & rf::PROTO_OFFSET == 0
                    && l4_in_range(&t, manip, r.min_port, r.max_port)
                    && (r.min_port == r.max_port || !self.used(&t))
                {
                    return t;
                }
            } else if !self.used(&t) {
                return t;
            }
        }
        self.l4_unique(&mut t, r, manip);
        t
    }

    /// `nf_nat_l4proto_unique_tuple`: the port (or ICMP id) searched for a free tuple.
    fn l4_unique(&mut self, t: &mut Tuple, r: &Range, manip: Manip) {
        let specified = r.flags & rf::PROTO_SPECIFIED != 0;
        let (use_src, min, size) = match t.proto {
            proto::ICMP => {
                if specified {
                    let size = u32::from(r.max_port.wrapping_sub(r.min_port)) + 1;
                    (true, u32::from(r.min_port), size)
                } else {
                    (true, 0, 65536)
                }
            }
            // GRE keys change only for PPTP, which has no helper here.
            proto::GRE => return,
            proto::UDP | proto::UDPLITE | proto::TCP | proto::SCTP => {
                let src = manip == Manip::Src;
                if specified {
                    let (lo, hi) = (r.min_port.min(r.max_port), r.min_port.max(r.max_port));
                    (src, u32::from(lo), u32::from(hi - lo) + 1)
                } else if !src {
                    // A destination rewrite cannot change the port.
                    return;
                } else {
                    let port = t.sport;
                    if port < 512 {
                        (src, 1, 511)
                    } else if port < 1024 {
                        (src, 600, 1023 - 600 + 1)
                    } else {
                        (src, 1024, 65535 - 1024 + 1)
                    }
                }
            }
            _ => return,
        };
        let key = |t: &Tuple| if use_src { t.sport } else { t.dport };
        let mut off: u16 = if r.flags & rf::PROTO_OFFSET != 0 {
            key(t).wrapping_sub(r.base_port)
        } else if r.flags & rf::PROTO_RANDOM_ALL != 0 || manip != Manip::Dst {
            self.random_u16()
        } else {
            0
        };
        let mut attempts = size.min(MAX_ATTEMPTS);
        loop {
            for i in 0..attempts {
                let port = (min + u32::from(off) % size) as u16;
                if use_src {
                    t.sport = port;
                } else {
                    t.dport = port;
                }
                if !self.used_harder(t, attempts - i) {
                    return;
                }
                off = off.wrapping_add(1);
            }
            if attempts >= size || attempts < 16 {
                return;
            }
            attempts /= 2;
            off = self.random_u16();
        }
    }
}

/// `find_best_ips_proto`: the address of a range of several, by hash of the tuple.
fn best_ips(t: &mut Tuple, r: &Range, manip: Manip) {
    if r.flags & rf::MAP_IPS == 0 {
        return;
    }
    let pick = if r.min_addr == r.max_addr {
        r.min_addr
    } else {
        // `jhash2` over the 16-byte address union (an IPv4 address and three zero words),
        // seeded with the destination unless persistent (zone 0).
        let init = if r.flags & rf::PERSISTENT != 0 {
            0
        } else {
            raw_word(t.dst)
        };
        let j = jhash2(&[raw_word(t.src), 0, 0, 0], init);
        let dist = r.max_addr.wrapping_sub(r.min_addr).wrapping_add(1);
        r.min_addr.wrapping_add(reciprocal_scale(j, dist))
    };
    if manip == Manip::Src {
        t.src = pick;
    } else {
        t.dst = pick;
    }
}
