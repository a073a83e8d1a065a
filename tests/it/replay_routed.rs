//! `pollwall replay` in routed mode with NAT (DESIGN.md §9): a LAN port and an uplink with
//! static neighbours, MASQUERADE on the uplink and a DNAT port forward. The frames that leave
//! must be routed (TTL, MACs of the egress port and the next hop), translated with valid
//! checksums, and the connection table must hold the translated tuples.

use classifier::wire::{build, ipv4, tcp, EtherType, IpProtocol};
use dataplane::pcapng::{read_capture, PcapNgOut};
use std::net::Ipv4Addr;
use std::process::Command;

const INA: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x0a];
const OUTB: [u8; 6] = [2, 0, 0, 0, 0xf0, 0x0b];
const CLIENT_MAC: [u8; 6] = [2, 0, 0, 0, 0x0a, 2];
const GW_MAC: [u8; 6] = [2, 0, 0, 0, 0x0b, 2];

const CONFIG: &str = r#"rules = "rules"

[[port]]
name = "ina"
mac = "02:00:00:00:f0:0a"
address = ["10.255.1.1/24"]

[[port]]
name = "outb"
mac = "02:00:00:00:f0:0b"
address = ["10.255.2.1/24"]

[[route]]
to = "10.9.0.0/16"
via = "10.255.2.2"

[[neighbor]]
ip = "10.255.1.2"
mac = "02:00:00:00:0a:02"

[[neighbor]]
ip = "10.255.2.2"
mac = "02:00:00:00:0b:02"
"#;

const RULES: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
:POSTROUTING ACCEPT [0:0]\n\
-A PREROUTING -i outb -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.255.1.2:80\n\
-A POSTROUTING -o outb -j MASQUERADE\nCOMMIT\n\
*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A FORWARD -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";

fn ip(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

fn segment(from: Ipv4Addr, to: Ipv4Addr, sp: u16, dp: u16, flags: u8, ttl: u8) -> Vec<u8> {
    let t = build::tcp(
        &tcp::Repr {
            src_port: sp,
            dst_port: dp,
            seq_number: 100,
            ack_number: u32::from(flags & 0x10 != 0) * 101,
            flags,
            window_len: 1000,
            urgent_at: 0,
            options: &[],
            payload: &[],
        },
        from,
        to,
    );
    build::ipv4(ipv4::Repr::new(from, to, IpProtocol::TCP, 0, ttl), &t)
}

fn frame(dst: [u8; 6], src: [u8; 6], datagram: &[u8]) -> Vec<u8> {
    build::ethernet(dst, src, EtherType::IPV4, datagram, 60)
}

fn checksums_ok(d: &[u8]) -> bool {
    use classifier::nat::csum;
    let hl = usize::from(d[0] & 15) * 4;
    let len = usize::from(u16::from_be_bytes([d[2], d[3]]));
    let l4 = &d[hl..len];
    let word = |at: usize| u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
    csum::sum_from_scratch(&d[..hl]) == 0
        && match d[9] {
            6 => csum::l4_from_scratch(word(12), word(16), 6, l4) == 0,
            1 => csum::sum_from_scratch(l4) == 0,
            _ => true,
        }
}

#[test]
fn masquerade_dnat_and_time_exceeded_through_routed_replay() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("rules"), RULES).unwrap();
    std::fs::write(dir.path().join("fw.toml"), CONFIG).unwrap();
    let (client, server, uplink) = (ip([10, 255, 1, 2]), ip([10, 9, 0, 1]), ip([10, 255, 2, 1]));
    let frames = [
        (
            0u32,
            frame(
                INA,
                CLIENT_MAC,
                &segment(client, server, 4000, 80, 0x02, 64),
            ),
        ),
        (
            1,
            frame(OUTB, GW_MAC, &segment(server, uplink, 80, 4000, 0x12, 50)),
        ),
        (
            0,
            frame(INA, CLIENT_MAC, &segment(client, server, 4001, 80, 0x02, 1)),
        ),
        (
            1,
            frame(OUTB, GW_MAC, &segment(server, uplink, 5555, 8080, 0x02, 50)),
        ),
        // Addressed to another MAC: not routed.
        (
            0,
            frame(
                [2, 0, 0, 0, 0, 0x77],
                CLIENT_MAC,
                &segment(client, server, 4002, 80, 0x02, 64),
            ),
        ),
    ];
    let mut w = PcapNgOut::new(Vec::new(), &["ina", "outb"]).unwrap();
    for (k, (port, f)) in frames.iter().enumerate() {
        w.write(*port, 1_000_000 * (k as u64 + 1), f).unwrap();
    }
    std::fs::write(dir.path().join("in.pcapng"), w.into_inner()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pollwall-under-test"))
        .args(["replay", "--config"])
        .arg(dir.path().join("fw.toml"))
        .arg("--out")
        .arg(dir.path().join("out.pcapng"))
        .arg("--conntrack")
        .arg(dir.path().join("ct.txt"))
        .arg(dir.path().join("in.pcapng"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let sent = read_capture(&std::fs::read(dir.path().join("out.pcapng")).unwrap()).unwrap();
    let summary: Vec<(String, Vec<u8>)> = sent
        .iter()
        .map(|f| (f.iface.clone().unwrap_or_default(), f.data.clone()))
        .collect();
    assert_eq!(summary.len(), 4, "{stderr}\n{summary:02x?}");
    for (_, f) in &summary {
        assert!(checksums_ok(&f[14..]), "{f:02x?}");
    }
    let h = |f: &[u8]| classifier::wire::headers::parse_ethernet(f).unwrap();
    // 1: the SYN leaves by the uplink, masqueraded, to the gateway's MAC, TTL 63.
    let (port, f) = &summary[0];
    let s = h(f);
    assert_eq!(port, "outb");
    assert_eq!((&f[..6], &f[6..12]), (&GW_MAC[..], &OUTB[..]));
    assert_eq!(
        (s.src, s.dst, s.ports(), s.ttl),
        (uplink.into(), server.into(), Some((4000, 80)), 63)
    );
    // 2: the SYN-ACK comes back to the client, de-masqueraded.
    let (port, f) = &summary[1];
    let s = h(f);
    assert_eq!(port, "ina");
    assert_eq!((&f[..6], &f[6..12]), (&CLIENT_MAC[..], &INA[..]));
    assert_eq!(
        (s.src, s.dst, s.ports(), s.ttl),
        (server.into(), client.into(), Some((80, 4000)), 49)
    );
    // 3: TTL 1: time exceeded from the LAN port's address, quoting the packet.
    let (port, f) = &summary[2];
    let s = h(f);
    assert_eq!(port, "ina");
    assert_eq!(
        (s.src, s.dst, s.proto),
        (u32::from(ip([10, 255, 1, 1])), client.into(), 1)
    );
    assert_eq!(f[34], 11, "ICMP time exceeded");
    // 4: the port forward reaches the LAN server.
    let (port, f) = &summary[3];
    let s = h(f);
    assert_eq!(port, "ina");
    assert_eq!(
        (s.src, s.dst, s.ports()),
        (server.into(), client.into(), Some((5555, 80)))
    );
    let ct = std::fs::read_to_string(dir.path().join("ct.txt")).unwrap();
    assert!(
        ct.contains("src=10.255.1.2 dst=10.9.0.1 sport=4000 dport=80 src=10.9.0.1 dst=10.255.2.1 sport=80 dport=4000"),
        "{ct}"
    );
    assert!(
        ct.contains("src=10.9.0.1 dst=10.255.2.1 sport=5555 dport=8080 [UNREPLIED] src=10.255.1.2 dst=10.9.0.1 sport=80 dport=5555"),
        "{ct}"
    );
    assert!(stderr.contains("route_not_for_us"), "{stderr}");
}
