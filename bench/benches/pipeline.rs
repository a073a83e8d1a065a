//! The whole pipeline on the in-memory backend (no kernel, no copies but the injection), one
//! core, routed mode (DESIGN.md §9) with the `forward --masquerade` ruleset, side by side in one
//! run:
//!
//! - `pipeline_routed/stateless`: the baseline, routing only (no table): parse, FIB, TTL and
//!   MAC rewrite, transmit; 1K UDP flows in 64-frame bursts.
//! - `pipeline_routed/masquerade_established`: the stateful head (`--ctstate
//!   RELATED,ESTABLISHED -j ACCEPT`, `INVALID -j DROP`) and `-t nat -A POSTROUTING -o f1 -j
//!   MASQUERADE`, the same 1K flows once their connections exist: tracking, the hooks, the
//!   source rewrite with its checksums.
//! - `pipeline_routed/masquerade_new`: the same ruleset, every packet a new connection (100K
//!   distinct flows, each source address to its own destination port, into an empty table):
//!   what a new connection costs end to end (lookup miss, the nat table, the bindings, the
//!   port check, confirmation), in new connections per second.
//!
//! Run: `cargo bench -p bench --bench pipeline`.

use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::packet::IfName;
use classifier::wire::{build, ipv4, EtherType, IpProtocol};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use dataplane::mem::MemIo;
use dataplane::pipeline::{Pipeline, Port, Sinks, Topology, BATCH};
use dataplane::route::{IfAddr, RoutedPort, Router};
use dataplane::stats::StatsShard;
use dataplane::xsk::XdpDesc;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

const F0_MAC: [u8; 6] = [2, 0x70, 0x77, 0xbe, 0, 0x10];
const F1_MAC: [u8; 6] = [2, 0x70, 0x77, 0xbe, 0, 0x11];
const SENDER_MAC: [u8; 6] = [2, 0x70, 0x77, 0xbe, 0, 1];
const SINK_MAC: [u8; 6] = [2, 0x70, 0x77, 0xbe, 0, 2];
const SINK: Ipv4Addr = Ipv4Addr::new(10, 11, 0, 2);

const MASQUERADE: &str =
    "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o f1 -j MASQUERADE\nCOMMIT\n*filter\n\
:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A FORWARD -m conntrack --ctstate INVALID -j DROP\nCOMMIT\n";

fn pipeline(rules: &str, ct_max: u32) -> Pipeline {
    let mut rs = classifier::Ruleset::new();
    control::restore::restore(rules, &Default::default(), &mut rs).expect("rules");
    let compiled = Arc::new(CompiledRuleset::compile(&rs, 0, &TreeParams::default()));
    let ports = vec![
        RoutedPort {
            mac: F0_MAC,
            addrs: vec![IfAddr::new([10, 10, 0, 1], 16)],
            mtu: 1500,
        },
        RoutedPort {
            mac: F1_MAC,
            addrs: vec![IfAddr::new([10, 11, 0, 1], 24)],
            mtu: 1500,
        },
    ];
    let router = Router::build(ports, &[], &[(u32::from(SINK), SINK_MAC)]).expect("router");
    let topo = Arc::new(Topology {
        ports: ["f0", "f1"]
            .iter()
            .enumerate()
            .map(|(i, n)| Port {
                name: IfName::new(n).expect("name"),
                peer: i,
            })
            .collect(),
        local_mac: None,
        router: Some(Arc::new(router)),
        router_updates: None,
    });
    let ct = classifier::conntrack::CtConfig {
        max: ct_max,
        ..Default::default()
    };
    Pipeline::new(compiled, topo, Arc::default(), Sinks::none(), None).with_conntrack(ct)
}

/// Flow `i`'s UDP datagram as f0 receives it: source 10.10.x.y (65536 flows per address,
/// each address to its own destination port), to the sink.
fn datagram(i: u32) -> Vec<u8> {
    let src = Ipv4Addr::from(u32::from_be_bytes([10, 10, 0, 2]) + (i >> 16));
    let (sport, dport) = (10000u16.wrapping_add(i as u16), 9 + (i >> 16) as u16);
    let udp = build::udp(src, SINK, sport, dport, &[0; 18]);
    let ip = build::ipv4(ipv4::Repr::new(src, SINK, IpProtocol::UDP, 0, 64), &udp);
    build::ethernet(F0_MAC, SENDER_MAC, EtherType::IPV4, &ip, 60)
}

/// Sends `frames` in on f0 in bursts of [`BATCH`].
fn run(p: &mut Pipeline, io: &mut MemIo, frames: &[Vec<u8>], now: &mut u64) {
    let mut descs = [XdpDesc::default(); BATCH];
    for chunk in frames.chunks(BATCH) {
        for (d, f) in descs.iter_mut().zip(chunk) {
            *d = io.inject(f).expect("a free frame");
        }
        *now += 10_000;
        p.rx_burst(io, 0, &descs[..chunk.len()], *now);
    }
}

fn bench_pipeline(c: &mut Criterion) {
    let mut g = c.benchmark_group("pipeline_routed");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let flows: Vec<Vec<u8>> = (0..1024).map(datagram).collect();
    g.throughput(Throughput::Elements(flows.len() as u64));
    let empty =
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    for (name, rules) in [("stateless", empty), ("masquerade_established", MASQUERADE)] {
        let mut p = pipeline(rules, 262_144);
        let mut io = MemIo::new(1024, 2048, 2, false);
        let mut now = 1_000_000_000;
        run(&mut p, &mut io, &flows, &mut now);
        g.bench_function(name, |b| b.iter(|| run(&mut p, &mut io, &flows, &mut now)));
        let stats: &StatsShard = p.stats();
        assert!(
            stats.get(dataplane::stats::Counter::RoutedForwarded) > 0,
            "{name}: nothing forwarded"
        );
    }
    const NEW: u32 = 100_000;
    let fresh: Vec<Vec<u8>> = (0..NEW).map(datagram).collect();
    g.throughput(Throughput::Elements(u64::from(NEW)));
    g.bench_function("masquerade_new", |b| {
        b.iter_batched_ref(
            || {
                (
                    pipeline(MASQUERADE, 2 * NEW),
                    MemIo::new(1024, 2048, 2, false),
                )
            },
            |(p, io)| {
                let mut now = 1_000_000_000;
                run(p, io, &fresh, &mut now);
                assert_eq!(p.tracker().map_or(0, |t| t.table.len()), NEW as usize);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, bench_pipeline);
criterion_main!(benches);
