//! Forwarding-table benchmarks, one core, side by side with baselines in the same run:
//!
//! - `fib/dir24_8_batch/N`: [`Fib::lookup_batch`] over a batch of 1024 addresses (what the
//!   routed pipeline does per burst), N random prefixes.
//! - `fib/dir24_8/N`: [`Fib::lookup`] one address at a time.
//! - `fib/btreemap/N`: the usual map baseline: one `BTreeMap` from network to next hop per
//!   prefix length present, probed from the longest length down.
//! - `fib/linear/N` (10K only): every route checked ([`lookup_linear`], the reference the
//!   unit tests compare with).
//!
//! Prefixes follow a routing table's shape (most /24, many /16-/23, a few shorter and longer
//! than /24); addresses are half inside a random route and half uniformly random, a pool of
//! 64K of them taken a batch at a time in turn (so the table's lines are not all cached).
//! Every method's answers on the whole pool are checked equal before timing.
//!
//! Run: `cargo bench -p bench --bench fib` (`POLLWALL_BENCH_FIB_SIZES=10000` picks the table
//! sizes; the default is 10K and 1M).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dataplane::route::fib::{lookup_linear, mask, Fib, Prefix};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

const BATCH: usize = 1024;
const POOL: usize = 64 * BATCH;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn prefixes(n: usize, rng: &mut Rng) -> Vec<Prefix> {
    (0..n)
        .map(|i| {
            let len = match rng.next() % 100 {
                0..=59 => 24,
                60..=89 => 16 + (rng.next() % 8) as u8,
                90..=94 => 8 + (rng.next() % 8) as u8,
                _ => 25 + (rng.next() % 8) as u8,
            };
            Prefix {
                addr: rng.next() as u32 & mask(len),
                len,
                hop: 1 + (i as u32 % 255),
            }
        })
        .collect()
}

fn addresses(routes: &[Prefix], rng: &mut Rng) -> Vec<u32> {
    (0..POOL)
        .map(|i| {
            let r = rng.next();
            if i % 2 == 0 {
                let p = routes[(r % routes.len() as u64) as usize];
                p.network() | (rng.next() as u32 & !mask(p.len))
            } else {
                r as u32
            }
        })
        .collect()
}

/// One map per prefix length, longest first.
struct MapFib {
    by_len: Vec<(u8, BTreeMap<u32, u32>)>,
}

impl MapFib {
    fn build(routes: &[Prefix]) -> MapFib {
        let mut m: BTreeMap<u8, BTreeMap<u32, u32>> = BTreeMap::new();
        for r in routes {
            m.entry(r.len).or_default().insert(r.network(), r.hop);
        }
        MapFib {
            by_len: m.into_iter().rev().collect(),
        }
    }

    fn lookup(&self, addr: u32) -> u32 {
        for (len, map) in &self.by_len {
            if let Some(&h) = map.get(&(addr & mask(*len))) {
                return h;
            }
        }
        0
    }
}

fn sizes() -> Vec<usize> {
    std::env::var("POLLWALL_BENCH_FIB_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 1_000_000])
}

fn bench_fib(c: &mut Criterion) {
    let mut g = c.benchmark_group("fib");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20)
        .throughput(Throughput::Elements(BATCH as u64));
    for n in sizes() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
        let routes = prefixes(n, &mut rng);
        let fib = Fib::build(&routes).expect("valid routes");
        let map = MapFib::build(&routes);
        let pool = addresses(&routes, &mut rng);
        let mut hops = vec![0u32; POOL];
        fib.lookup_batch(&pool, &mut hops);
        let linear_too = n <= 10_000;
        for (i, (a, h)) in pool.iter().zip(&hops).enumerate() {
            assert_eq!(*h, map.lookup(*a), "DIR-24-8 and the maps agree on {a:#x}");
            if linear_too && i < 4 * BATCH {
                assert_eq!(*h, lookup_linear(&routes, *a));
            }
        }
        eprintln!(
            "fib: {n} routes, {} second-level groups, {} of {POOL} addresses routed",
            fib.groups(),
            hops.iter().filter(|h| **h != 0).count()
        );
        let batches: Vec<&[u32]> = pool.chunks(BATCH).collect();
        let mut turn = 0usize;
        let mut next = move || {
            turn = (turn + 1) % batches.len();
            batches[turn]
        };
        let mut out = vec![0u32; BATCH];
        g.bench_function(format!("dir24_8_batch/{n}"), |b| {
            b.iter(|| {
                fib.lookup_batch(black_box(next()), &mut out);
                black_box(&out);
            })
        });
        g.bench_function(format!("dir24_8/{n}"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for &a in black_box(next()) {
                    acc = acc.wrapping_add(fib.lookup(a));
                }
                acc
            })
        });
        g.bench_function(format!("btreemap/{n}"), |b| {
            b.iter(|| {
                let mut acc = 0u32;
                for &a in black_box(next()) {
                    acc = acc.wrapping_add(map.lookup(a));
                }
                acc
            })
        });
        if n <= 10_000 {
            g.bench_function(format!("linear/{n}"), |b| {
                b.iter(|| {
                    let mut acc = 0u32;
                    for &a in black_box(next()) {
                        acc = acc.wrapping_add(lookup_linear(&routes, a));
                    }
                    acc
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench_fib);
criterion_main!(benches);
