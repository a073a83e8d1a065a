//! The dataplane's batch pipeline on the in-memory backend: what each verdict does to a frame
//! (forwarded unchanged by the paired port, dropped, answered by REJECT out of the ingress port,
//! logged, queued), what never reaches a table (ARP, malformed frames), and that every frame
//! comes back to the free list.

use crate::kernel_diff::gen::frame;
use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::packet::IfName;
use classifier::Ruleset;
use control::restore::{restore, RestoreOptions};
use dataplane::mem::MemIo;
use dataplane::pipeline::{Pipeline, Port, Sinks, Topology};
use dataplane::stats::{Counter, StatsShard};
use std::sync::Arc;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const CLIENT: u32 = 0x0a09_0001;
const SERVER: u32 = 0x0a09_0002;
const FRAMES: u32 = 256;

fn ip(proto: u8) -> frame::Ipv4 {
    frame::Ipv4 {
        src: CLIENT,
        dst: SERVER,
        proto,
        id: 7,
        tos: 0,
        df: true,
        mf: false,
        frag_off: 0,
        options: vec![],
    }
}

fn tcp_syn(dport: u16) -> Vec<u8> {
    let t = frame::tcp(CLIENT, SERVER, 40000, dport, 0x02, &[], None, &[]);
    frame::ethernet(SERVER_MAC, CLIENT_MAC, &ip(6), &t)
}

fn udp(dport: u16) -> Vec<u8> {
    let u = frame::udp(CLIENT, SERVER, 40001, dport, b"hello");
    frame::ethernet(SERVER_MAC, CLIENT_MAC, &ip(17), &u)
}

struct Rig {
    io: MemIo,
    p: Pipeline,
    stats: Arc<StatsShard>,
    log_rx: rtrb::Consumer<dataplane::log::LogRecord>,
    rules: Arc<CompiledRuleset>,
}

/// `rules` compiled, and a bridge of ports pw0 and pw1.
pub(crate) fn compiled_bridge(rules: &str) -> (Arc<CompiledRuleset>, Arc<Topology>) {
    let mut rs = Ruleset::new();
    restore(rules, &RestoreOptions::default(), &mut rs).expect("rules load");
    let rules = Arc::new(CompiledRuleset::compile(&rs, 0, &TreeParams::default()));
    let topo = Arc::new(Topology {
        ports: vec![
            Port {
                name: IfName::new("pw0").unwrap(),
                peer: 1,
            },
            Port {
                name: IfName::new("pw1").unwrap(),
                peer: 0,
            },
        ],
        local_mac: None,
        router: None,
        router_updates: None,
    });
    (rules, topo)
}

fn rig(rules: &str) -> Rig {
    let (rules, topo) = compiled_bridge(rules);
    let stats = Arc::new(StatsShard::default());
    let (log_tx, log_rx) = rtrb::RingBuffer::new(16);
    let sinks = Sinks {
        log: Some(log_tx),
        ..Sinks::none()
    };
    let p = Pipeline::new(Arc::clone(&rules), topo, Arc::clone(&stats), sinks, None);
    Rig {
        io: MemIo::new(FRAMES, 2048, 2, true),
        p,
        stats,
        log_rx,
        rules,
    }
}

impl Rig {
    fn rx(&mut self, port: usize, frames: &[Vec<u8>]) {
        let descs: Vec<_> = frames.iter().map(|f| self.io.inject(f).unwrap()).collect();
        self.p.rx_burst(&mut self.io, port, &descs, 1_000_000);
    }
    fn rule_packets(&self) -> Vec<u64> {
        self.p
            .state()
            .counters
            .rules
            .iter()
            .map(|c| c.packets)
            .collect()
    }
}

#[test]
fn accepted_frames_leave_unchanged_by_the_paired_port() {
    let mut r =
        rig("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 22 -j ACCEPT\nCOMMIT\n");
    let frames = vec![tcp_syn(22), tcp_syn(80), udp(53)];
    r.rx(0, &frames);
    assert_eq!(
        r.io.take_sent(1),
        frames,
        "all three out of port 1, byte for byte"
    );
    assert!(r.io.take_sent(0).is_empty());
    assert_eq!(r.stats.get(Counter::Forwarded), 3);
    assert_eq!(r.stats.get(Counter::RxPackets), 3);
    assert_eq!(r.rule_packets(), vec![1]);
    assert_eq!(r.io.free_frames(), FRAMES as usize, "no frame leaked");
}

#[test]
fn dropped_frames_go_back_to_the_free_list() {
    let mut r = rig("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p udp -j ACCEPT\n-A FORWARD -p tcp --dport 9 -j DROP\nCOMMIT\n");
    r.rx(0, &[tcp_syn(9), tcp_syn(10), udp(53)]);
    assert_eq!(r.io.take_sent(1), vec![udp(53)]);
    assert_eq!(
        r.stats.get(Counter::DropRule),
        2,
        "one by the rule, one by the policy"
    );
    assert_eq!(r.rule_packets(), vec![1, 1]);
    assert_eq!(r.io.free_frames(), FRAMES as usize);
}

#[test]
fn reject_answers_out_of_the_ingress_port() {
    let mut r = rig("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\n-A FORWARD -p udp -j REJECT\nCOMMIT\n");
    r.rx(0, &[tcp_syn(80), udp(53)]);
    assert!(r.io.take_sent(1).is_empty(), "nothing forwarded");
    let replies = r.io.take_sent(0);
    assert_eq!(replies.len(), 2);
    let rst = &replies[0];
    assert_eq!(&rst[..6], &CLIENT_MAC, "to the sender");
    assert_eq!(
        &rst[6..12],
        &SERVER_MAC,
        "from the original destination MAC"
    );
    assert_eq!(rst[14 + 9], 6, "TCP");
    assert_eq!(rst[14 + 20 + 13] & 0x04, 0x04, "RST set");
    assert_eq!(
        &rst[14 + 12..14 + 16],
        &SERVER.to_be_bytes(),
        "from the original destination"
    );
    let icmp = &replies[1];
    assert_eq!(icmp[14 + 9], 1, "ICMP");
    assert_eq!((icmp[14 + 20], icmp[14 + 21]), (3, 3), "port unreachable");
    assert_eq!(r.stats.get(Counter::RejectSent), 2);
    assert_eq!(r.io.free_frames(), FRAMES as usize);
}

#[test]
fn no_reset_for_a_reset_and_it_is_counted() {
    let mut r = rig("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n");
    let t = frame::tcp(CLIENT, SERVER, 40000, 80, 0x04, &[], None, &[]);
    r.rx(0, &[frame::ethernet(SERVER_MAC, CLIENT_MAC, &ip(6), &t)]);
    assert!(r.io.take_sent(0).is_empty());
    assert_eq!(r.stats.get(Counter::RejectSuppressed), 1);
    assert_eq!(r.io.free_frames(), FRAMES as usize);
}

#[test]
fn log_hits_become_records_and_the_packet_goes_on() {
    let mut r = rig("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp -j LOG --log-prefix \"pw \"\n-A FORWARD -p tcp --dport 9 -j DROP\nCOMMIT\n");
    r.rx(0, &[tcp_syn(80), tcp_syn(9), udp(1)]);
    assert_eq!(r.io.take_sent(1), vec![tcp_syn(80), udp(1)]);
    let mut recs = Vec::new();
    while let Ok(rec) = r.log_rx.pop() {
        recs.push(rec);
    }
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].rule, r.rules.rule_ids[0]);
    assert_eq!(recs[0].frame(), &tcp_syn(80)[..]);
    assert_eq!(recs[0].in_iface.as_str(), "pw0");
    assert_eq!(recs[0].out_iface.as_str(), "pw1");
    assert_eq!(r.stats.get(Counter::LogRecords), 2);
}

#[test]
fn queue_without_consumer_drops_unless_bypass() {
    let mut r = rig("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp -j NFQUEUE --queue-num 3\n-A FORWARD -p udp -j NFQUEUE --queue-bypass\nCOMMIT\n");
    r.rx(0, &[tcp_syn(80), udp(53)]);
    assert_eq!(
        r.io.take_sent(1),
        vec![udp(53)],
        "bypass lets the UDP through"
    );
    assert_eq!(r.stats.get(Counter::QueueDropped), 1);
    assert_eq!(r.io.free_frames(), FRAMES as usize);
}

#[test]
fn arp_is_bridged_and_malformed_frames_are_counted() {
    let mut r = rig("*filter\n:FORWARD DROP [0:0]\nCOMMIT\n");
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT_MAC);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    let mut bad_csum = udp(53);
    bad_csum[14 + 10] ^= 0xff;
    let short = tcp_syn(80)[..20].to_vec();
    let mut ipv6 = udp(53);
    ipv6[12..14].copy_from_slice(&[0x86, 0xdd]);
    r.rx(0, &[arp.clone(), bad_csum, short, ipv6]);
    assert_eq!(r.io.take_sent(1), vec![arp]);
    assert_eq!(r.stats.get(Counter::DropBadChecksum), 1);
    assert_eq!(r.stats.get(Counter::DropTruncated), 1);
    assert_eq!(r.stats.get(Counter::DropNotIpv4), 1);
    assert_eq!(r.io.free_frames(), FRAMES as usize);
}

#[test]
fn hotdrop_counts_separately() {
    let mut r = rig(
        "*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --tcp-flags SYN SYN -j ACCEPT\nCOMMIT\n",
    );
    // A TCP datagram whose header is cut after 10 bytes: the tcp match cannot read it.
    let mut t = frame::tcp(CLIENT, SERVER, 1, 2, 0x02, &[], None, &[]);
    t.truncate(10);
    r.rx(0, &[frame::ethernet(SERVER_MAC, CLIENT_MAC, &ip(6), &t)]);
    assert_eq!(r.stats.get(Counter::DropHotdrop), 1);
    assert_eq!(r.io.free_frames(), FRAMES as usize);
}

#[test]
fn flow_owner_is_symmetric_and_spreads_flows() {
    use dataplane::pipeline::flow_owner;
    let mut counts = [0usize; 4];
    for i in 0..4000u32 {
        let a = frame::tcp(
            CLIENT + i,
            SERVER,
            1000 + i as u16,
            80,
            0x02,
            &[],
            None,
            &[],
        );
        let f = frame::ethernet(
            SERVER_MAC,
            CLIENT_MAC,
            &frame::Ipv4 {
                src: CLIENT + i,
                ..ip(6)
            },
            &a,
        );
        let fwd = classifier::wire::headers::parse_ethernet(&f).unwrap();
        let b = frame::tcp(
            SERVER,
            CLIENT + i,
            80,
            1000 + i as u16,
            0x12,
            &[],
            None,
            &[],
        );
        let g = frame::ethernet(
            CLIENT_MAC,
            SERVER_MAC,
            &frame::Ipv4 {
                src: SERVER,
                dst: CLIENT + i,
                ..ip(6)
            },
            &b,
        );
        let rev = classifier::wire::headers::parse_ethernet(&g).unwrap();
        for key in [0, 0x1234_5678_9abc_def0] {
            assert_eq!(
                flow_owner(&fwd, &f, key, 4),
                flow_owner(&rev, &g, key, 4),
                "flow {i}"
            );
        }
        counts[flow_owner(&fwd, &f, 42, 4)] += 1;
    }
    assert!(
        counts.iter().all(|&c| c > 800),
        "balanced enough: {counts:?}"
    );
}

#[test]
fn a_flow_received_by_another_worker_is_handed_to_its_owner() {
    use dataplane::pipeline::{flow_owner, Handoff, Steering};
    // Two workers; worker 1 receives a SYN whose flow belongs to worker 0.
    let mut w0 = rig("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n");
    let mut w1 = rig("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n");
    let key = 7;
    let (tx, mut rx) = rtrb::RingBuffer::<Handoff>::new(8);
    let (tx0, _rx0) = rtrb::RingBuffer::<Handoff>::new(8);
    let syn = (1000u16..)
        .map(tcp_syn)
        .find(|f| {
            flow_owner(
                &classifier::wire::headers::parse_ethernet(f).unwrap(),
                f,
                key,
                2,
            ) == 0
        })
        .unwrap();
    w1.p = std::mem::replace(&mut w1.p, rig("*filter\nCOMMIT\n").p).with_steering(Steering {
        worker: 1,
        workers: 2,
        key,
        out: vec![Some(tx), None],
        ..Steering::single()
    });
    w0.p = std::mem::replace(&mut w0.p, rig("*filter\nCOMMIT\n").p).with_steering(Steering {
        worker: 0,
        workers: 2,
        key,
        out: vec![None, Some(tx0)],
        ..Steering::single()
    });
    w1.rx(0, std::slice::from_ref(&syn));
    assert!(
        w1.io.take_sent(1).is_empty(),
        "not forwarded by the wrong worker"
    );
    assert_eq!(w1.io.free_frames(), FRAMES as usize);
    let h = rx.pop().expect("handed off");
    assert_eq!((h.port, &h.data[..usize::from(h.len)]), (0, &syn[..]));
    let d = w0.io.inject(&h.data[..usize::from(h.len)]).unwrap();
    w0.p.handoff_burst(&mut w0.io, 0, &[d], 1);
    assert_eq!(w0.io.take_sent(1), vec![syn], "the owner forwards it");
}

#[test]
fn prerouting_and_postrouting_run_around_forward() {
    // mangle PREROUTING drops UDP and marks TCP; filter FORWARD drops what is marked 5 to
    // port 9; mangle POSTROUTING drops TCP to port 22 after FORWARD accepted it.
    let mut r = rig("*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
        -A PREROUTING -p udp -j DROP\n\
        -A PREROUTING -p tcp -j MARK --set-mark 5\n\
        -A POSTROUTING -p tcp --dport 22 -j DROP\nCOMMIT\n\
        *filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p tcp --dport 9 -m mark --mark 5 -j DROP\nCOMMIT\n");
    r.rx(0, &[udp(53), tcp_syn(9), tcp_syn(22), tcp_syn(80)]);
    assert_eq!(r.io.take_sent(1), vec![tcp_syn(80)]);
    // Rule order in the dense slots: the tables as compiled; check by counts.
    let mut counts = r.rule_packets();
    counts.sort();
    assert_eq!(
        counts,
        vec![1, 1, 1, 3],
        "UDP drop 1, MARK 3, POSTROUTING drop 1, FORWARD drop 1"
    );
    assert_eq!(r.stats.get(Counter::DropRule), 3);
    assert_eq!(r.io.free_frames(), FRAMES as usize);
}

#[test]
fn bursts_longer_than_a_batch_are_all_handled() {
    let mut r = rig("*filter\n:FORWARD ACCEPT [0:0]\n-A FORWARD -p udp -j ACCEPT\nCOMMIT\n");
    let frames: Vec<Vec<u8>> = (0..200).map(|i| udp(1000 + i)).collect();
    r.rx(0, &frames);
    assert_eq!(r.io.take_sent(1), frames);
    assert_eq!(r.rule_packets(), vec![200]);
    assert_eq!(r.io.free_frames(), FRAMES as usize);
}

#[test]
fn a_reversed_udp_port_range_matches_nothing_and_its_inverse_everything() {
    // iptables 1.8.9 keeps `--dport 1034:1024` for udp as written; `udp_mt`'s
    // `(port >= min && port <= max) ^ invert` then never holds, inverted always.
    let mut r = rig("*filter\n:FORWARD ACCEPT [0:0]\n\
        -A FORWARD -p udp -m udp --dport 1034:1024\n\
        -A FORWARD -p udp -m udp ! --dport 1034:1024\n\
        -A FORWARD -m conntrack --ctorigdstport 2000:1000\nCOMMIT\n");
    r.rx(0, &[udp(1030), udp(1024), udp(53)]);
    assert_eq!(r.rule_packets(), vec![0, 3, 0]);
}
