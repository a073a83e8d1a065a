//! The pipeline with connection tracking, on the in-memory backend: a classic stateful ruleset
//! (policy DROP, RELATED/ESTABLISHED accepted, NEW only from the inside port) lets a connection
//! from inside through and refuses one from outside; a burst holding a flow's first packet and
//! the next one is cut so the second sees the confirmed connection; an ftp data connection
//! announced by a PASV reply is RELATED only through the raw table's helper; tagged ARP is
//! bridged; a frame larger than 2048 bytes is handed to the worker owning its flow.

use classifier::conntrack::list::listing;
use classifier::wire::{build, ipv4, tcp, IpProtocol};
use dataplane::mem::MemIo;
use dataplane::pipeline::{Pipeline, Sinks};
use dataplane::stats::{Counter, StatsShard};
use std::net::Ipv4Addr;
use std::sync::Arc;

const IN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const OUT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];
const INSIDE: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 9);
const FRAMES: u32 = 256;

const STATEFUL: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -i pw0 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";

struct Rig {
    io: MemIo,
    p: Pipeline,
    stats: Arc<StatsShard>,
    now: u64,
}

fn rig_sized(rules: &str, frame_size: u32) -> Rig {
    let (rules, topo) = crate::pipeline::compiled_bridge(rules);
    let stats = Arc::new(StatsShard::default());
    let p = Pipeline::new(rules, topo, Arc::clone(&stats), Sinks::none(), None)
        .with_conntrack(Default::default());
    Rig {
        io: MemIo::new(FRAMES, frame_size, 2, true),
        p,
        stats,
        now: 1_000_000_000,
    }
}

fn rig(rules: &str) -> Rig {
    rig_sized(rules, 2048)
}

impl Rig {
    fn rx(&mut self, port: usize, frames: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let descs: Vec<_> = frames.iter().map(|f| self.io.inject(f).unwrap()).collect();
        self.now += 1_000_000;
        self.p.rx_burst(&mut self.io, port, &descs, self.now);
        self.io.take_sent(1 - port)
    }

    fn conns(&self) -> Vec<String> {
        listing(self.p.tracker())
    }
}

/// A TCP segment between `from` and `to` as an Ethernet frame for the port it enters on.
fn seg(
    from: (Ipv4Addr, u16),
    to: (Ipv4Addr, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    data: &[u8],
) -> Vec<u8> {
    let syn = flags & 0x02 != 0;
    let t = build::tcp(
        &tcp::Repr {
            src_port: from.1,
            dst_port: to.1,
            seq_number: seq,
            ack_number: ack,
            flags,
            window_len: 64240,
            urgent_at: 0,
            options: if syn { &[2, 4, 5, 0xb4] } else { &[] },
            payload: data,
        },
        from.0,
        to.0,
    );
    let ip = build::ipv4(ipv4::Repr::new(from.0, to.0, IpProtocol::TCP, 0, 64), &t);
    let (dst, src) = if from.0 == INSIDE {
        (OUT_MAC, IN_MAC)
    } else {
        (IN_MAC, OUT_MAC)
    };
    build::ethernet(dst, src, classifier::wire::EtherType::IPV4, &ip, 60)
}

const S: u8 = 0x02;
const A: u8 = 0x10;
const PA: u8 = 0x18;

#[test]
fn inside_connects_outside_is_refused() {
    let mut r = rig(STATEFUL);
    let (c, s) = ((INSIDE, 40000), (OUTSIDE, 22));
    assert_eq!(r.rx(0, &[seg(c, s, S, 100, 0, &[])]).len(), 1, "SYN out");
    assert_eq!(
        r.rx(1, &[seg(s, c, S | A, 900, 101, &[])]).len(),
        1,
        "SYN/ACK back"
    );
    assert_eq!(r.rx(0, &[seg(c, s, A, 101, 901, &[])]).len(), 1, "ACK out");
    assert_eq!(r.rx(1, &[seg(s, c, PA, 901, 101, b"SSH-2.0\r\n")]).len(), 1);
    let conns = r.conns();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert!(
        conns[0].starts_with(
            "tcp      6 300 ESTABLISHED src=10.1.0.5 dst=10.2.0.9 sport=40000 dport=22"
        ),
        "the server's data is unacknowledged: 300 s ({conns:?})"
    );
    assert!(conns[0].contains("[ASSURED]"), "{conns:?}");
    // From outside: NEW is not accepted there, and no connection is left behind.
    let (o, i) = ((OUTSIDE, 50000), (INSIDE, 22));
    assert!(
        r.rx(1, &[seg(o, i, S, 7, 0, &[])]).is_empty(),
        "SYN in refused"
    );
    assert_eq!(r.conns().len(), 1, "the refused SYN left no connection");
    // A reply-looking segment from outside for no connection is NEW too (tcp_loose picks up
    // only ACKs, and this one is refused by the NEW rule's -i).
    assert!(r.rx(1, &[seg(o, i, A, 7, 7, &[])]).is_empty());
    assert_eq!(r.io.free_frames(), FRAMES as usize, "no frame leaked");
}

#[test]
fn a_burst_with_a_flows_first_packets_is_cut_so_each_sees_the_last() {
    let mut r = rig(STATEFUL);
    let (c, s) = ((INSIDE, 40001), (OUTSIDE, 80));
    r.rx(0, &[seg(c, s, S, 100, 0, &[])]);
    r.rx(1, &[seg(s, c, S | A, 500, 101, &[])]);
    // The ACK and data in one burst behind a new flow's SYN.
    let (c2, s2) = ((INSIDE, 40002), (OUTSIDE, 80));
    let out = r.rx(
        0,
        &[
            seg(c2, s2, S, 1, 0, &[]),
            seg(c2, s2, S, 1, 0, &[]),
            seg(c, s, A, 101, 501, &[]),
        ],
    );
    assert_eq!(out.len(), 3, "all three accepted");
    assert_eq!(
        r.stats.get(Counter::CtBatchSplits),
        1,
        "one cut, for the retransmitted SYN"
    );
    assert_eq!(r.conns().len(), 2, "{:?}", r.conns());
}

fn ftp_session(r: &mut Rig) -> (u16, Vec<Vec<u8>>) {
    let (c, s) = ((INSIDE, 40010), (OUTSIDE, 21));
    r.rx(0, &[seg(c, s, S, 1000, 0, &[])]);
    r.rx(1, &[seg(s, c, S | A, 5000, 1001, &[])]);
    r.rx(0, &[seg(c, s, A, 1001, 5001, &[])]);
    let banner = b"220 ready\r\n";
    r.rx(1, &[seg(s, c, PA, 5001, 1001, banner)]);
    let (mut cs, mut ss) = (1001u32, 5001 + banner.len() as u32);
    let pasv = b"PASV\r\n";
    r.rx(0, &[seg(c, s, PA, cs, ss, pasv)]);
    cs += pasv.len() as u32;
    let reply = b"227 Entering Passive Mode (10,2,0,9,117,48).\r\n";
    r.rx(1, &[seg(s, c, PA, ss, cs, reply)]);
    ss += reply.len() as u32;
    let _ = ss;
    let port = 117 * 256 + 48;
    let data_syn = seg((INSIDE, 40011), (OUTSIDE, port), S, 77, 0, &[]);
    let out = r.rx(0, &[data_syn]);
    (port, out)
}

#[test]
fn ftp_data_is_related_only_through_the_helper() {
    // NEW is allowed only to port 21: the data connection needs RELATED.
    let rules = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -i pw0 -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";
    let mut r = rig(rules);
    let (port, out) = ftp_session(&mut r);
    assert_eq!(out.len(), 1, "the data SYN passes as RELATED");
    let conns = r.conns();
    assert!(
        conns
            .iter()
            .any(|l| l.contains(&format!("dport={port} ")) && l.contains("SYN_SENT")),
        "{conns:?}"
    );
    assert!(
        conns.iter().any(|l| l.contains("helper=ftp use=2")),
        "{conns:?}"
    );

    let without = rules.replace("-A PREROUTING -p tcp --dport 21 -j CT --helper ftp\n", "");
    let mut r = rig(&without);
    let (_, out) = ftp_session(&mut r);
    assert!(
        out.is_empty(),
        "without the helper the data SYN is NEW and refused"
    );
}

#[test]
fn tagged_arp_is_bridged() {
    let mut r = rig(STATEFUL);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&IN_MAC);
    arp.extend_from_slice(&[0x81, 0x00, 0x00, 0x05, 0x08, 0x06]);
    arp.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(64, 0);
    assert_eq!(r.rx(0, std::slice::from_ref(&arp)), vec![arp]);
    assert_eq!(r.stats.get(Counter::NonIpForwarded), 1);
}

#[test]
fn frames_over_2048_bytes_are_handed_to_their_owner() {
    use dataplane::pipeline::{flow_owner, Handoff, Steering};
    let mut w1 = rig_sized("*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n", 4096);
    let (tx, mut rx) = rtrb::RingBuffer::<Handoff>::new(4);
    let key = 11;
    let big = (1000u16..)
        .map(|p| seg((INSIDE, p), (OUTSIDE, 80), PA, 1, 1, &[0x5a; 3000]))
        .find(|f| {
            flow_owner(
                &classifier::wire::headers::parse_ethernet(f).unwrap(),
                f,
                key,
                2,
            ) == 0
        })
        .unwrap();
    assert!(big.len() > 3000);
    w1.p = std::mem::replace(&mut w1.p, rig("*filter\nCOMMIT\n").p).with_steering(Steering {
        worker: 1,
        workers: 2,
        key,
        out: vec![Some(tx), None],
        ..Steering::single()
    });
    w1.rx(0, std::slice::from_ref(&big));
    let h = rx.pop().expect("handed off, not dropped as ring full");
    assert_eq!(&h.data[..usize::from(h.len)], &big[..]);
    assert_eq!(w1.stats.get(Counter::HandoffDropped), 0);
}
