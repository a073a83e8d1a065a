//! Connection-tracking benchmarks, one core, side by side with a baseline in the same run:
//!
//! - `ct_established/{pollwall,std_hashmap}/N`: per packet, the tracking step of an established
//!   TCP flow (tuple, lookup, TCP state and window check, timer refresh) among N live
//!   connections (1K, 1M, 16M), packets from flows drawn uniformly at random. The baseline is
//!   a `std::collections::HashMap` (SipHash) from the 5-tuple to a 32-byte entry, looked up and
//!   updated (timestamp and counters) per packet: the table alone, without any protocol logic.
//! - `ct_new/pollwall`: new connections per second: a SYN tracked and confirmed, 100K distinct
//!   flows into an empty table. `ct_new/pollwall_masquerade`: the same with MASQUERADE's work
//!   (null destination binding, source binding onto one address with the port search, the
//!   SYN rewritten), the 100K flows from one source port toward four servers.
//! - `ct_syn_flood/pollwall`: a table at its limit (64K, half of it ASSURED established flows),
//!   SYNs from new flows (each must evict an unassured entry, as the kernel's early drop does)
//!   interleaved 1:1 with packets of the established flows; after the run every established
//!   flow must still be in the table (the count lost is printed).
//!
//! Bytes per connection (entry plus index share) are printed before the groups.
//!
//! Run: `cargo bench -p bench --bench conntrack` (`POLLWALL_BENCH_CT_SIZES=1000,1000000` picks
//! the table sizes; the default includes 16M, which needs about 3 GB of memory).

use classifier::conntrack::{CtConfig, Outcome, Table, Tracker};
use classifier::nat::{manip, Manip, Range};
use classifier::packet::Headers;
use classifier::wire::headers::parse_ipv4;
use classifier::wire::{build, ipv4, tcp, IpProtocol};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use std::collections::HashMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Duration;

const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 0, 1);
const BATCH: usize = 1024;

fn client(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

/// One TCP segment of flow `i` (client to server, or back), as (headers, datagram).
fn segment(i: u32, reply: bool, flags: u8, seq: u32, ack: u32) -> (Headers, Vec<u8>) {
    let (src, dst, sp, dp) = if reply {
        (SERVER, client(i), 80, 40000)
    } else {
        (client(i), SERVER, 40000, 80)
    };
    let t = build::tcp(
        &tcp::Repr {
            src_port: sp,
            dst_port: dp,
            seq_number: seq,
            ack_number: ack,
            flags,
            window_len: 65000,
            urgent_at: 0,
            options: if flags & 2 != 0 {
                &[2, 4, 5, 0xb4]
            } else {
                &[]
            },
            payload: &[],
        },
        src,
        dst,
    );
    let ip = build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::TCP, 0, 64), &t);
    (parse_ipv4(&ip).expect("valid segment"), ip)
}

/// A tracker holding `n` established flows (handshake tracked and confirmed).
fn established(n: u32, max: u32) -> Tracker {
    let cfg = CtConfig {
        max,
        ..CtConfig::default()
    };
    let mut tr = Tracker::new(cfg, 0x5eed, 0);
    tr.set_clock(1_000_000_000);
    for i in 0..n {
        let (h, ip) = segment(i, false, 0x02, 1000, 0);
        let (o, _) = tr.track(&h, &ip, true);
        let _ = tr.confirm(&o);
        let (h, ip) = segment(i, true, 0x12, 5000, 1001);
        tr.track(&h, &ip, true);
        let (h, ip) = segment(i, false, 0x10, 1001, 5001);
        tr.track(&h, &ip, true);
    }
    tr
}

/// A deterministic uniform sample of `k` flow numbers below `n`.
fn sample(n: u32, k: usize) -> Vec<u32> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..k)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % u64::from(n)) as u32
        })
        .collect()
}

/// The baseline's entry: what a minimal tracker would keep per flow.
#[derive(Default)]
#[allow(dead_code)] // state and flags are what a minimal tracker would keep, unread here
struct Entry {
    last_seen: u64,
    packets: u64,
    bytes: u64,
    state: u32,
    flags: u32,
}

type Key = (u32, u32, u16, u16, u8);

fn key(h: &Headers) -> Key {
    let (sp, dp) = h.ports().unwrap_or((0, 0));
    (h.src, h.dst, sp, dp, h.proto)
}

fn sizes() -> Vec<u32> {
    std::env::var("POLLWALL_BENCH_CT_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1_000, 1_000_000, 16_000_000])
}

fn bench_established(c: &mut Criterion) {
    eprintln!(
        "conntrack: {} bytes per connection (entry {} + index share), kernel: about 264",
        Table::bytes_per_connection(),
        std::mem::size_of::<classifier::conntrack::Conn>()
    );
    let mut g = c.benchmark_group("ct_established");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for n in sizes() {
        let flows = sample(n, 64 * 1024);
        // The next in-window ACK of each sampled flow (the same segment again is valid).
        let pkts: Vec<(Headers, Vec<u8>)> = flows
            .iter()
            .map(|&i| segment(i, false, 0x10, 1001, 5001))
            .collect();
        let started = std::time::Instant::now();
        let mut tr = established(n, n.max(1024));
        eprintln!(
            "conntrack: {n} flows established in {:.1?} ({} in the table)",
            started.elapsed(),
            tr.table.len()
        );
        let mut at = 0usize;
        let mut now = 1_000_000_000u64;
        g.bench_function(format!("pollwall/{n}"), |b| {
            b.iter(|| {
                now += 1_000;
                tr.set_clock(now);
                for _ in 0..BATCH {
                    let (h, ip) = &pkts[at];
                    at = (at + 1) & (pkts.len() - 1);
                    black_box(tr.track(h, ip, true));
                }
            })
        });
        g.bench_function(format!("pollwall_warmed/{n}"), |b| {
            b.iter(|| {
                now += 1_000;
                tr.set_clock(now);
                for chunk in 0..BATCH / 64 {
                    let base = (at + chunk * 64) & (pkts.len() - 1);
                    let batch = &pkts[base..base + 64];
                    tr.warm(batch.iter().map(|(h, ip)| (h, ip.as_slice())));
                    for (h, ip) in batch {
                        black_box(tr.track(h, ip, true));
                    }
                }
                at = (at + BATCH) & (pkts.len() - 1);
            })
        });
        drop(tr);
        let mut map: HashMap<Key, Entry> = HashMap::with_capacity(n as usize);
        for i in 0..n {
            let (h, _) = segment(i, false, 0x10, 1001, 5001);
            map.insert(key(&h), Entry::default());
        }
        g.bench_function(format!("std_hashmap/{n}"), |b| {
            b.iter(|| {
                now += 1_000;
                for _ in 0..BATCH {
                    let (h, _) = &pkts[at];
                    at = (at + 1) & (pkts.len() - 1);
                    let e = map.entry(key(h)).or_default();
                    e.last_seen = now;
                    e.packets += 1;
                    e.bytes += u64::from(h.ip_len);
                    black_box(e);
                }
            })
        });
    }
    g.finish();
}

fn bench_new(c: &mut Criterion) {
    const N: u32 = 100_000;
    let syns: Vec<(Headers, Vec<u8>)> = (0..N).map(|i| segment(i, false, 0x02, 7, 0)).collect();
    let mut g = c.benchmark_group("ct_new");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(u64::from(N)));
    g.bench_function("pollwall", |b| {
        b.iter_batched_ref(
            || empty_tracker(2 * N),
            |tr| {
                for (h, ip) in &syns {
                    let (o, _) = tr.track(h, ip, true);
                    let _ = tr.confirm(&o);
                }
                assert_eq!(tr.table.len(), N as usize);
            },
            BatchSize::PerIteration,
        )
    });
    // The same with MASQUERADE: every flow from source port 40000 toward one of four servers,
    // all behind one address, so all but four need the port search.
    let masq: Vec<(Headers, Vec<u8>)> = (0..N).map(masquerade_syn).collect();
    let onto = Range::onto_range(&Range::default(), u32::from(Ipv4Addr::new(198, 51, 100, 1)));
    g.bench_function("pollwall_masquerade", |b| {
        b.iter_batched_ref(
            || (empty_tracker(2 * N), masq.clone()),
            |(tr, pkts)| {
                for (h, ip) in pkts.iter_mut() {
                    let (o, _) = tr.track(h, ip, true);
                    let Outcome::Conn { id, dir, .. } = o else {
                        panic!("{o:?}")
                    };
                    tr.nat_null_binding(id, Manip::Dst);
                    tr.nat_setup(id, &onto, Manip::Src);
                    let conn = *tr.table.get(id);
                    let _ = manip::nat_packet(&conn, dir, Manip::Src, ip);
                    tr.confirm(&o).expect("a free port");
                }
                assert_eq!(tr.table.len(), N as usize);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// An empty tracker for `max` connections, its clock started.
fn empty_tracker(max: u32) -> Tracker {
    let cfg = CtConfig {
        max,
        ..CtConfig::default()
    };
    let mut tr = Tracker::new(cfg, 1, 0);
    tr.set_clock(1_000_000_000);
    tr
}

/// Flow `i`'s SYN for the MASQUERADE case: client `i`, source port 40000, server 1 to 4.
fn masquerade_syn(i: u32) -> (Headers, Vec<u8>) {
    let server = Ipv4Addr::new(192, 168, 0, 1 + (i % 4) as u8);
    let t = build::tcp(
        &tcp::Repr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 7,
            ack_number: 0,
            flags: 0x02,
            window_len: 65000,
            urgent_at: 0,
            options: &[2, 4, 5, 0xb4],
            payload: &[],
        },
        client(i),
        server,
    );
    let ip = build::ipv4(
        ipv4::Repr::new(client(i), server, IpProtocol::TCP, 0, 64),
        &t,
    );
    (parse_ipv4(&ip).expect("valid"), ip)
}

fn bench_syn_flood(c: &mut Criterion) {
    const MAX: u32 = 65_536;
    const LIVE: u32 = MAX / 2;
    let mut tr = established(LIVE, MAX);
    // Mark them ASSURED as the kernel does once the handshake completes (it did).
    let live: Vec<(Headers, Vec<u8>)> = sample(LIVE, 8192)
        .iter()
        .map(|&i| segment(i, false, 0x10, 1001, 5001))
        .collect();
    let flood: Vec<(Headers, Vec<u8>)> = (0..1u32 << 20)
        .map(|k| segment(LIVE + k, false, 0x02, 9, 0))
        .collect();
    let next_syn = LIVE;
    let mut now = 2_000_000_000u64;
    // Fill the rest of the table with the flood first.
    let mut k = 0usize;
    while (tr.table.len() as u32) < MAX {
        let (h, ip) = &flood[k];
        let (o, _) = tr.track(h, ip, true);
        let _ = tr.confirm(&o);
        k += 1;
    }
    let _ = next_syn;
    let mut g = c.benchmark_group("ct_syn_flood");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(2 * BATCH as u64));
    let mut at = 0usize;
    let mut dropped = 0u64;
    g.bench_function("pollwall", |b| {
        b.iter(|| {
            now += 1_000;
            tr.set_clock(now);
            for _ in 0..BATCH {
                let (h, ip) = &flood[k];
                k = (k + 1) & (flood.len() - 1);
                let (o, _) = tr.track(h, ip, true);
                if o == Outcome::Drop {
                    dropped += 1;
                }
                let _ = tr.confirm(&o);
                let (h, ip) = &live[at];
                at = (at + 1) % live.len();
                black_box(tr.track(h, ip, true));
            }
        })
    });
    g.finish();
    let lost = (0..LIVE)
        .filter(|&i| {
            let (h, _) = segment(i, false, 0x10, 1001, 5001);
            let t = classifier::conntrack::track::packet_tuple(&h, &[0x9c, 0x40, 0, 0x50])
                .expect("tuple");
            tr.table.peek(&t).is_none()
        })
        .count();
    eprintln!(
        "conntrack: SYN flood at the limit: {lost} of {LIVE} established flows lost, {dropped} SYNs dropped (table full)"
    );
}

criterion_group!(benches, bench_established, bench_new, bench_syn_flood);
criterion_main!(benches);
