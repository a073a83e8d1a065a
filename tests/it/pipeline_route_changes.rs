//! Routed mode whose tables change under a running pipeline (what `routes = "kernel"`'s mirror
//! does through [`SharedRouter`]), on the in-memory backend: a new route is taken at the next
//! batch; a masqueraded connection dies when its port loses the address it was masqueraded to
//! (`masq_inet_event`), and when a route change makes its packets leave by another port
//! (`nf_nat_oif_changed`: the packet is dropped); static neighbours follow the new tables.
//! And the egress MTU: a datagram over it without DF leaves in fragments (`ip_do_fragment`'s
//! slow path, after its MASQUERADE), one with DF is refused with fragmentation needed, and that
//! error is RELATED to the connection of the datagram it is about (`nf_ct_attach`), its quote
//! translated back as the kernel does (checked against the kernel by hand: see the test).

use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::conntrack::list::listing;
use classifier::packet::IfName;
use classifier::wire::{build, ipv4, tcp, IpProtocol};
use classifier::Ruleset;
use control::restore::{restore, RestoreOptions};
use dataplane::mem::MemIo;
use dataplane::pipeline::{Pipeline, Port, Sinks, Topology};
use dataplane::route::shared::SharedRouter;
use dataplane::route::{IfAddr, RoutedPort, Router, StaticRoute};
use dataplane::stats::{Counter, StatsShard};
use std::net::Ipv4Addr;
use std::sync::Arc;

const LAN_MAC: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x0a];
const UP_MAC: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x0b];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 2];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x0b, 2];
const LAN_GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 0xfe];
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 255, 1, 2);
const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);

const RULES: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o outb -j MASQUERADE\nCOMMIT\n";

/// The tables: `uplink` is outb's address; 10.9.0.0/16 via the uplink's gateway, or via a
/// gateway on the LAN when `via_lan`.
pub(crate) fn router(uplink: [u8; 4], via_lan: bool) -> Router {
    let ports = vec![
        RoutedPort {
            mac: LAN_MAC,
            addrs: vec![IfAddr::new([10, 255, 1, 1], 24)],
            mtu: 1500,
        },
        RoutedPort {
            mac: UP_MAC,
            addrs: vec![IfAddr::new(uplink, 24)],
            mtu: 1500,
        },
    ];
    let via = if via_lan {
        [10, 255, 1, 254]
    } else {
        [10, 255, 2, 2]
    };
    let routes = [StaticRoute {
        to: IfAddr::new([10, 9, 0, 0], 16),
        via: Some(u32::from_be_bytes(via)),
        port: None,
    }];
    let neighbors = [
        (u32::from(CLIENT), CLIENT_MAC),
        (u32::from_be_bytes([10, 255, 2, 2]), GW_MAC),
        (u32::from_be_bytes([10, 255, 1, 254]), LAN_GW_MAC),
    ];
    Router::build(ports, &routes, &neighbors).unwrap()
}

struct Rig {
    io: MemIo,
    p: Pipeline,
    stats: Arc<StatsShard>,
    shared: Arc<SharedRouter>,
    now: u64,
}

fn rig() -> Rig {
    rig_with(router([10, 255, 2, 1], false))
}

fn rig_with(first: Router) -> Rig {
    rig_rules(RULES, first)
}

fn rig_rules(rules: &str, first: Router) -> Rig {
    let mut rs = Ruleset::new();
    restore(rules, &RestoreOptions::default(), &mut rs).unwrap();
    let rules = Arc::new(CompiledRuleset::compile(&rs, 0, &TreeParams::default()));
    let first = Arc::new(first);
    let shared = Arc::new(SharedRouter::new(Arc::clone(&first)));
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
        router: Some(first),
        router_updates: Some(Arc::clone(&shared)),
    });
    let stats = Arc::new(StatsShard::default());
    let p = Pipeline::new(rules, topo, Arc::clone(&stats), Sinks::none(), None)
        .with_conntrack(Default::default());
    Rig {
        io: MemIo::new(256, 2048, 2, true),
        p,
        stats,
        shared,
        now: 1_000_000_000,
    }
}

/// A TCP segment from the client to the remote host's :80, as the LAN port receives it.
fn from_client(flags: u8) -> Vec<u8> {
    let t = build::tcp(
        &tcp::Repr {
            src_port: 40000,
            dst_port: 80,
            seq_number: 100,
            ack_number: u32::from(flags & 0x10 != 0) * 101,
            flags,
            window_len: 512,
            urgent_at: 0,
            options: &[],
            payload: &[],
        },
        CLIENT,
        REMOTE,
    );
    let ip = build::ipv4(ipv4::Repr::new(CLIENT, REMOTE, IpProtocol::TCP, 0, 64), &t);
    build::ethernet(
        LAN_MAC,
        CLIENT_MAC,
        classifier::wire::EtherType::IPV4,
        &ip,
        60,
    )
}

impl Rig {
    /// Sends `frame` in on the LAN port; what left by each port.
    fn send(&mut self, frame: &[u8]) -> [Vec<Vec<u8>>; 2] {
        let d = self.io.inject(frame).unwrap();
        self.now += 1_000_000;
        self.p.rx_burst(&mut self.io, 0, &[d], self.now);
        [self.io.take_sent(0), self.io.take_sent(1)]
    }
}

fn source(frame: &[u8]) -> Ipv4Addr {
    Ipv4Addr::new(frame[26], frame[27], frame[28], frame[29])
}

#[test]
fn a_masqueraded_connection_dies_with_its_address() {
    let mut r = rig();
    let [_, up] = r.send(&from_client(0x02));
    assert_eq!(up.len(), 1);
    assert_eq!(source(&up[0]), Ipv4Addr::new(10, 255, 2, 1));
    assert_eq!(&up[0][..6], &GW_MAC);
    assert_eq!(listing(r.p.tracker()).len(), 1);
    // The uplink's address changes (a DHCP lease renewed to another address).
    r.shared.publish(router([10, 255, 2, 7], false));
    let [_, up] = r.send(&from_client(0x10));
    assert_eq!(r.stats.get(Counter::NatAddressGone), 1);
    // The old connection is gone; the ACK (loose tracking) starts one masqueraded to the new
    // address.
    assert_eq!(up.len(), 1);
    assert_eq!(source(&up[0]), Ipv4Addr::new(10, 255, 2, 7));
    let conns = listing(r.p.tracker());
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert!(conns[0].contains("dst=10.255.2.7"), "{conns:?}");
}

#[test]
fn a_masqueraded_connection_whose_route_moves_is_killed_and_its_packet_dropped() {
    let mut r = rig();
    let [_, up] = r.send(&from_client(0x02));
    assert_eq!(up.len(), 1);
    r.shared.publish(router([10, 255, 2, 1], true));
    // The SYN again (a retransmission: NEW, its source manip already set up).
    let [lan, up] = r.send(&from_client(0x02));
    assert!(lan.is_empty() && up.is_empty(), "the packet is dropped");
    assert_eq!(r.stats.get(Counter::NatOifChanged), 1);
    assert_eq!(r.stats.get(Counter::NatAddressGone), 0);
    assert!(listing(r.p.tracker()).is_empty());
    // The next one makes a new connection that leaves by the LAN port, unmasqueraded (the
    // MASQUERADE rule is for outb), to the LAN gateway's MAC.
    let [lan, _] = r.send(&from_client(0x02));
    assert_eq!(lan.len(), 1);
    assert_eq!(source(&lan[0]), CLIENT);
    assert_eq!(&lan[0][..6], &LAN_GW_MAC);
}

/// A UDP datagram of `len` IP bytes from the client to the remote host.
fn big_datagram(len: usize, df: bool) -> Vec<u8> {
    let udp = build::udp(CLIENT, REMOTE, 5000, 53, &vec![0x5a; len - 28]);
    let repr = ipv4::Repr {
        dont_frag: df,
        ..ipv4::Repr::new(CLIENT, REMOTE, IpProtocol::UDP, 0, 64)
    };
    let ip = build::ipv4(repr, &udp);
    build::ethernet(
        LAN_MAC,
        CLIENT_MAC,
        classifier::wire::EtherType::IPV4,
        &ip,
        60,
    )
}

#[test]
fn over_the_egress_mtu_a_datagram_is_fragmented_or_refused_with_df() {
    let mut uplink_1400 = router([10, 255, 2, 1], false);
    uplink_1400.ports[1].mtu = 1400;
    let mut r = rig_with(uplink_1400);
    let [_, up] = r.send(&big_datagram(1500, false));
    // (1400 - 20) rounded down to 8 bytes of data, then the rest: 1376 + 104.
    assert_eq!(up.len(), 2, "two fragments");
    let ip = |f: &Vec<u8>| f[14..].to_vec();
    let (a, b) = (ip(&up[0]), ip(&up[1]));
    assert_eq!(u16::from_be_bytes([a[2], a[3]]), 1396);
    assert_eq!(u16::from_be_bytes([a[6], a[7]]), 0x2000, "MF, offset 0");
    assert_eq!(u16::from_be_bytes([b[2], b[3]]), 124);
    assert_eq!(
        u16::from_be_bytes([b[6], b[7]]),
        1376 / 8,
        "offset 172, last"
    );
    for f in [&a, &b] {
        assert_eq!(
            &f[12..16],
            &[10, 255, 2, 1],
            "masqueraded before fragmenting"
        );
        assert_eq!(f[8], 63, "TTL decremented");
        assert_eq!(
            classifier::wire::checksum::data(&f[..20]),
            0xffff,
            "header checksum"
        );
        assert_eq!(&f[4..6], &a[4..6], "one IP id");
    }
    assert_eq!(&up[0][..6], &GW_MAC);
    assert_eq!(&up[1][..6], &GW_MAC);
    // The UDP header rides in the first fragment, rewritten by MASQUERADE with a checksum
    // over the whole datagram: checked on the reassembled payload.
    let mut whole = a[..20].to_vec();
    whole.extend_from_slice(&a[20..]);
    whole.extend_from_slice(&b[20..]);
    whole[2..4].copy_from_slice(&1500u16.to_be_bytes());
    whole[6..8].copy_from_slice(&[0, 0]);
    let udp = &whole[20..];
    let pseudo = classifier::wire::checksum::pseudo_header(
        Ipv4Addr::new(10, 255, 2, 1),
        REMOTE,
        IpProtocol::UDP,
        udp.len() as u32,
    );
    assert_eq!(
        classifier::wire::checksum::combine(&[pseudo, classifier::wire::checksum::data(udp)]),
        0xffff,
        "UDP checksum of the reassembled datagram"
    );
    assert_eq!(r.stats.get(Counter::RouteFragmented), 2);

    let [lan, up] = r.send(&big_datagram(1500, true));
    assert!(up.is_empty());
    assert_eq!(lan.len(), 1, "fragmentation needed back to the client");
    let icmp = &lan[0][34..];
    assert_eq!((icmp[0], icmp[1]), (3, 4));
    assert_eq!(u16::from_be_bytes([icmp[6], icmp[7]]), 1400);
    assert_eq!(r.stats.get(Counter::RouteFragNeeded), 1);
}

#[test]
fn the_boxs_icmp_error_is_related_to_its_packets_connection_and_untranslated_back() {
    // What the kernel (6.18, iptables-legacy) does with this ruleset, a DF datagram of 1450
    // bytes to the port forward and a LAN MTU of 1400: the DNAT rule 1, nat OUTPUT and
    // POSTROUTING 0 (the nat table never sees the error), OUTPUT's RELATED 1, INVALID 0,
    // DNAT 1; the error
    // from the uplink address quoting the datagram as the client sent it (10.255.2.1:8080).
    let rules = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -p udp -m udp --dport 8080 -j DNAT --to-destination 10.255.1.2:9\n\
-A OUTPUT\n-A POSTROUTING\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
:OUTPUT ACCEPT [0:0]\n-A OUTPUT -m conntrack --ctstate RELATED\n\
-A OUTPUT -m conntrack --ctstate INVALID\n-A OUTPUT -m conntrack --ctstate DNAT\nCOMMIT\n";
    let mut lan_1400 = router([10, 255, 2, 1], false);
    lan_1400.ports[0].mtu = 1400;
    let mut r = rig_rules(rules, lan_1400);
    let udp = build::udp(
        REMOTE,
        Ipv4Addr::new(10, 255, 2, 1),
        40000,
        8080,
        &[0x78; 1422],
    );
    let repr = ipv4::Repr {
        dont_frag: true,
        ..ipv4::Repr::new(REMOTE, Ipv4Addr::new(10, 255, 2, 1), IpProtocol::UDP, 0, 64)
    };
    let ip = build::ipv4(repr, &udp);
    let frame = build::ethernet(UP_MAC, GW_MAC, classifier::wire::EtherType::IPV4, &ip, 60);
    let d = r.io.inject(&frame).unwrap();
    r.now += 1_000_000;
    r.p.rx_burst(&mut r.io, 1, &[d], r.now);
    let (lan, up) = (r.io.take_sent(0), r.io.take_sent(1));
    assert!(lan.is_empty());
    assert_eq!(
        up.len(),
        1,
        "fragmentation needed back to the remote client"
    );
    let e = &up[0][14..];
    assert_eq!(&e[12..16], &[10, 255, 2, 1], "from the uplink address");
    assert_eq!(&e[16..20], &REMOTE.octets());
    assert_eq!((e[20], e[21]), (3, 4));
    assert_eq!(u16::from_be_bytes([e[26], e[27]]), 1400);
    let inner = &e[28..];
    assert_eq!(&inner[16..20], &[10, 255, 2, 1], "the quote's DNAT undone");
    assert_eq!(u16::from_be_bytes([inner[22], inner[23]]), 8080);
    // Rules by id: the filter table's (RELATED, INVALID, DNAT), then the nat table's (the
    // DNAT, OUTPUT's and POSTROUTING's counting rules).
    let counts: Vec<u64> =
        r.p.state()
            .counters
            .rules
            .iter()
            .map(|c| c.packets)
            .collect();
    assert_eq!(counts, vec![1, 0, 1, 1, 0, 0]);
    // The datagram's connection (never confirmed: its packet was dropped) is gone.
    assert!(listing(r.p.tracker()).is_empty());
}
