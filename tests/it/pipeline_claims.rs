//! Destination NAT with two workers on the in-memory backend: a port forward whose DNAT makes
//! the reply hash to the other worker is claimed at confirmation, so the reply that worker
//! receives is handed to the owner, which reverses the DNAT; a connection whose reply hashes
//! home sends no claim; when the connection expires its release reaches the other worker,
//! which then keeps such frames.

use crate::pipeline_route_changes::router;
use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::packet::IfName;
use classifier::wire::headers::parse_ethernet;
use classifier::wire::{build, ipv4, tcp, IpProtocol};
use control::restore::{restore, RestoreOptions};
use dataplane::mem::MemIo;
use dataplane::pipeline::{flow_owner, Handoff, Pipeline, Port, Sinks, Steering, Topology};
use dataplane::stats::{Counter, StatsShard};
use dataplane::steer::Claim;
use std::net::Ipv4Addr;
use std::sync::Arc;

const RULES: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
:POSTROUTING ACCEPT [0:0]\n\
-A PREROUTING -i outb -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.255.1.2:80\n\
COMMIT\n";
const KEY: u64 = 0x5eed;
const UP_MAC: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x0b];
const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x0a];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x0b, 2];
const SERVER_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 2];
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(10, 255, 2, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 2);

struct Worker {
    p: Pipeline,
    io: MemIo,
    stats: Arc<StatsShard>,
    handoffs: rtrb::Consumer<Handoff>,
}

/// Workers 0 and 1 with their handoff and claim rings.
fn workers() -> [Worker; 2] {
    let mut rs = classifier::Ruleset::new();
    restore(RULES, &RestoreOptions::default(), &mut rs).unwrap();
    let rules = Arc::new(CompiledRuleset::compile(&rs, 0, &TreeParams::default()));
    let topo = Arc::new(Topology {
        ports: ["ina", "outb"]
            .iter()
            .enumerate()
            .map(|(i, n)| Port {
                name: IfName::new(n).unwrap(),
                peer: i,
            })
            .collect(),
        local_mac: None,
        router: Some(Arc::new(router([10, 255, 2, 1], false))),
        router_updates: None,
    });
    let (h01, h0in) = rtrb::RingBuffer::<Handoff>::new(8);
    let (h10, h1in) = rtrb::RingBuffer::<Handoff>::new(8);
    let (c01, c0in) = rtrb::RingBuffer::<Claim>::new(64);
    let (c10, c1in) = rtrb::RingBuffer::<Claim>::new(64);
    let make = |w: usize, out, claims_out, claims_in, handoffs| {
        let stats = Arc::new(StatsShard::default());
        let p = Pipeline::new(
            Arc::clone(&rules),
            Arc::clone(&topo),
            Arc::clone(&stats),
            Sinks::none(),
            None,
        )
        .with_conntrack(Default::default())
        .with_steering(Steering {
            worker: w,
            workers: 2,
            key: KEY,
            out,
            claims_out,
            claims_in: vec![claims_in],
        });
        Worker {
            p,
            io: MemIo::new(64, 2048, 2, true),
            stats,
            handoffs,
        }
    };
    [
        make(0, vec![None, Some(h10)], vec![None, Some(c10)], c0in, h0in),
        make(1, vec![Some(h01), None], vec![Some(c01), None], c1in, h1in),
    ]
}

fn segment(
    from: (Ipv4Addr, u16),
    to: (Ipv4Addr, u16),
    flags: u8,
    macs: ([u8; 6], [u8; 6]),
) -> Vec<u8> {
    let t = build::tcp(
        &tcp::Repr {
            src_port: from.1,
            dst_port: to.1,
            seq_number: 1000,
            ack_number: u32::from(flags & 0x10 != 0) * 1001,
            flags,
            window_len: 512,
            urgent_at: 0,
            options: &[],
            payload: &[],
        },
        from.0,
        to.0,
    );
    let ip = build::ipv4(ipv4::Repr::new(from.0, to.0, IpProtocol::TCP, 0, 64), &t);
    build::ethernet(macs.0, macs.1, classifier::wire::EtherType::IPV4, &ip, 60)
}

/// The remote client's SYN to the port forward, as the uplink receives it.
fn syn(port: u16) -> Vec<u8> {
    segment((REMOTE, port), (PUBLIC, 8080), 0x02, (UP_MAC, GW_MAC))
}

/// The LAN server's SYN-ACK to it, as the LAN port receives it.
fn syn_ack(port: u16) -> Vec<u8> {
    segment((SERVER, 80), (REMOTE, port), 0x12, (LAN_MAC, SERVER_MAC))
}

fn owner(f: &[u8]) -> usize {
    flow_owner(&parse_ethernet(f).unwrap(), f, KEY, 2)
}

impl Worker {
    fn rx(&mut self, port: usize, f: &[u8], now: u64) {
        let d = self.io.inject(f).unwrap();
        self.p.rx_burst(&mut self.io, port, &[d], now);
    }

    /// Takes what other workers handed here.
    fn take_handoffs(&mut self, now: u64) {
        while let Ok(h) = self.handoffs.pop() {
            let d = self.io.inject(&h.data[..usize::from(h.len)]).unwrap();
            self.p
                .handoff_burst(&mut self.io, usize::from(h.port), &[d], now);
        }
    }
}

fn src(f: &[u8]) -> (Ipv4Addr, u16) {
    (
        Ipv4Addr::new(f[26], f[27], f[28], f[29]),
        u16::from_be_bytes([f[34], f[35]]),
    )
}

#[test]
fn a_port_forward_whose_reply_hashes_elsewhere_is_claimed_by_its_owner() {
    let [mut w0, mut w1] = workers();
    // A client port whose flow is worker 0's while the DNAT'd reply hashes to worker 1.
    let port = (1024u16..)
        .find(|&p| owner(&syn(p)) == 0 && owner(&syn_ack(p)) == 1)
        .unwrap();
    let mut now = 1_000_000_000;
    w0.rx(1, &syn(port), now);
    let out = w0.io.take_sent(0);
    assert_eq!(out.len(), 1, "forwarded to the LAN server");
    assert_eq!(w0.stats.get(Counter::ClaimSent), 1);
    // The server's SYN-ACK arrives at worker 1: handed to worker 0, which reverses the DNAT.
    now += 1_000_000;
    w1.rx(0, &syn_ack(port), now);
    assert!(w1.io.take_sent(1).is_empty(), "not worker 1's to forward");
    assert_eq!(w1.stats.get(Counter::HandoffOut), 1);
    w0.take_handoffs(now);
    let back = w0.io.take_sent(1);
    assert_eq!(back.len(), 1);
    assert_eq!(src(&back[0]), (PUBLIC, 8080));

    // A connection whose reply hashes home needs no claim.
    let home = (1024u16..)
        .find(|&p| owner(&syn(p)) == 0 && owner(&syn_ack(p)) == 0)
        .unwrap();
    w0.rx(1, &syn(home), now);
    assert_eq!(w0.stats.get(Counter::ClaimSent), 1);

    // Both expire (SYN_RECV's 60 s, the SYN_SENT of the second 120 s); the release reaches
    // worker 1, which then keeps frames of that flow.
    now += 200_000_000_000;
    for _ in 0..4 {
        w0.rx(1, &syn(1), now);
        now += 1_000_000;
    }
    w1.rx(0, &syn_ack(port), now);
    assert_eq!(w1.stats.get(Counter::HandoffOut), 1, "released: no handoff");
}
