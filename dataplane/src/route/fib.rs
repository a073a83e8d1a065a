//! The forwarding table: longest-prefix match in DIR-24-8 form (Gupta, Lin, McKeown 1998; the
//! layout of DPDK's `rte_lpm`). A first table of 2^24 entries indexed by the top 24 bits of
//! the address holds either a next hop (routes of /24 and shorter, expanded) or the number of
//! a 256-entry second-level group for the last 8 bits (routes longer than /24). A lookup is one
//! or two dependent loads, whatever the number of routes; [`Fib::lookup_batch`] looks up a
//! whole batch, whose independent loads the core overlaps.
//!
//! Entries are `u32`: the top bit marks a group number, the rest is a next-hop index (0: no
//! route). The first level is 64 MiB of virtual memory, zero pages until a route covers them.
//! The table is built whole from a route list ([`Fib::build`]: routes sorted by length, each
//! overwriting the shorter ones it covers) and replaced whole when the routes change; it is
//! immutable while workers read it.

const EXT: u32 = 1 << 31;
const L1_BITS: u32 = 24;

/// A route: `prefix/len` goes to next hop `hop` (an index the caller gives meaning, ≥ 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: u32,
    pub len: u8,
    pub hop: u32,
}

impl Prefix {
    /// The prefix with its host bits cleared.
    pub fn network(&self) -> u32 {
        self.addr & mask(self.len)
    }
}

/// The netmask of a prefix length.
pub fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

/// Routes the table cannot hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FibError {
    #[error("prefix length {0} is longer than 32")]
    BadLength(u8),
    #[error("next hop index {0} is out of range (1..2^31)")]
    BadHop(u32),
}

/// An immutable DIR-24-8 table.
pub struct Fib {
    l1: Vec<u32>,
    l2: Vec<u32>,
    routes: usize,
}

impl Fib {
    /// The table of `routes` (a later route of the same prefix replaces an earlier one).
    pub fn build(routes: &[Prefix]) -> Result<Fib, FibError> {
        for r in routes {
            if r.len > 32 {
                return Err(FibError::BadLength(r.len));
            }
            if r.hop == 0 || r.hop >= EXT {
                return Err(FibError::BadHop(r.hop));
            }
        }
        let mut sorted: Vec<(usize, Prefix)> = routes.iter().copied().enumerate().collect();
        sorted.sort_by_key(|(i, r)| (r.len, *i));
        let mut fib = Fib {
            l1: vec![0; 1 << L1_BITS],
            l2: Vec::new(),
            routes: routes.len(),
        };
        for (_, r) in sorted {
            fib.insert(r);
        }
        Ok(fib)
    }

    fn insert(&mut self, r: Prefix) {
        let net = r.network();
        if r.len <= L1_BITS as u8 {
            let first = (net >> 8) as usize;
            let count = 1usize << (L1_BITS - u32::from(r.len));
            // Shorter routes only are in place (sorted by length): overwrite them all.
            self.l1[first..first + count].fill(r.hop);
            return;
        }
        let i = (net >> 8) as usize;
        let group = if self.l1[i] & EXT != 0 {
            (self.l1[i] & !EXT) as usize
        } else {
            let g = self.l2.len() / 256;
            let covering = self.l1[i];
            self.l2.extend(std::iter::repeat_n(covering, 256));
            self.l1[i] = EXT | g as u32;
            g
        };
        let first = group * 256 + (net & 0xff) as usize;
        let count = 1usize << (32 - u32::from(r.len));
        self.l2[first..first + count].fill(r.hop);
    }

    /// The next hop of the longest prefix holding `addr` (0: no route).
    #[inline]
    pub fn lookup(&self, addr: u32) -> u32 {
        let e = self.l1[(addr >> 8) as usize];
        if e & EXT == 0 {
            e
        } else {
            self.l2[((e & !EXT) as usize) << 8 | (addr & 0xff) as usize]
        }
    }

    /// [`Self::lookup`] of every address of `addrs` into `hops`, in one pass: the lookups
    /// of a batch are independent, so the core already overlaps their misses. (Two passes,
    /// every first-level load before the second-level ones, measured 25-35% slower:
    /// `cargo bench -p bench --bench fib`.)
    #[inline]
    pub fn lookup_batch(&self, addrs: &[u32], hops: &mut [u32]) {
        for (h, &a) in hops.iter_mut().zip(addrs) {
            *h = self.lookup(a);
        }
    }

    /// Routes the table was built from.
    pub fn len(&self) -> usize {
        self.routes
    }

    pub fn is_empty(&self) -> bool {
        self.routes == 0
    }

    /// Second-level groups in use (routes longer than /24 share one per /24).
    pub fn groups(&self) -> usize {
        self.l2.len() / 256
    }
}

impl std::fmt::Debug for Fib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fib")
            .field("routes", &self.routes)
            .field("groups", &self.groups())
            .finish()
    }
}

/// The reference: every route checked, the longest (then latest) holding `addr` wins.
pub fn lookup_linear(routes: &[Prefix], addr: u32) -> u32 {
    let mut best: Option<(u8, usize, u32)> = None;
    for (i, r) in routes.iter().enumerate() {
        if addr & mask(r.len) == r.network() && best.is_none_or(|(l, j, _)| (r.len, i) > (l, j)) {
            best = Some((r.len, i, r.hop));
        }
    }
    best.map_or(0, |(_, _, h)| h)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn agrees_with_the_linear_reference_on_random_tables() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for n in [1, 10, 100, 2000, 50] {
            let base = rng.next() as u32;
            let routes: Vec<Prefix> = (0..n)
                .map(|i| {
                    let x = rng.next();
                    // Clustered addresses so prefixes nest and overlap.
                    let addr = if x & 1 == 0 {
                        base ^ ((x >> 8) as u32 & 0x00ff_ffff)
                    } else {
                        (x >> 16) as u32
                    };
                    Prefix {
                        addr,
                        len: ((x >> 48) % 33) as u8,
                        hop: i as u32 + 1,
                    }
                })
                .collect();
            let fib = Fib::build(&routes).unwrap();
            let mut addrs = Vec::new();
            for _ in 0..4000 {
                let x = rng.next();
                let a = match x % 3 {
                    0 => base ^ ((x >> 8) as u32 & 0x00ff_ffff),
                    1 => routes[(x >> 8) as usize % n].addr ^ ((x >> 40) as u32 & 0x3ff),
                    _ => (x >> 16) as u32,
                };
                assert_eq!(fib.lookup(a), lookup_linear(&routes, a), "{a:#x} of {n}");
                addrs.push(a);
            }
            let mut hops = vec![0; addrs.len()];
            fib.lookup_batch(&addrs, &mut hops);
            for (a, h) in addrs.iter().zip(&hops) {
                assert_eq!(*h, fib.lookup(*a));
            }
        }
    }

    #[test]
    fn edges() {
        let r = |addr: u32, len, hop| Prefix { addr, len, hop };
        let fib = Fib::build(&[
            r(0, 0, 1),
            r(0x0a00_0000, 8, 2),
            r(0x0a01_0203, 32, 3),
            r(0x0a01_0200, 25, 4),
            r(0x0a00_0000, 8, 5),
        ])
        .unwrap();
        assert_eq!(fib.lookup(0x0b00_0000), 1);
        assert_eq!(fib.lookup(0x0a02_0000), 5, "the later duplicate wins");
        assert_eq!(fib.lookup(0x0a01_0203), 3);
        assert_eq!(fib.lookup(0x0a01_0204), 4);
        assert_eq!(fib.lookup(0x0a01_0280), 5);
        assert_eq!(fib.groups(), 1);
        assert_eq!(Fib::build(&[]).unwrap().lookup(1), 0);
        assert_eq!(
            Fib::build(&[r(0, 33, 1)]).unwrap_err(),
            FibError::BadLength(33)
        );
        assert_eq!(Fib::build(&[r(0, 3, 0)]).unwrap_err(), FibError::BadHop(0));
    }
}
