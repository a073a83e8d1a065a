//! `pollwall replay`: counters in iptables-save -c form, and `--verdicts` lines, for a small
//! capture of raw IPv4 packets made here (one malformed).

use dataplane::pcap::{LinkType, PcapWriter};
use std::process::Command;

/// An IPv4/UDP packet (UDP checksum 0, IP header checksum filled in).
fn udp_packet(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let total = 20 + 8 + 4;
    let mut p = vec![0x45, 0, 0, total as u8, 0, 1, 0, 0, 64, 17, 0, 0];
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    let mut sum: u32 = p
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let ck = !(sum as u16);
    p[10..12].copy_from_slice(&ck.to_be_bytes());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&12u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 1, 2, 3, 4]);
    p
}

#[test]
fn replay_counts_and_verdicts() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::write(
        &rules,
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n:dns - [0:0]\n\
         -A FORWARD -i pwin -p udp -m udp --dport 53 -j dns\n-A FORWARD -s 10.0.0.0/8 -j LOG\n\
         -A dns -s 10.0.0.1 -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let cap = dir.path().join("c.pcap");
    let mut w = PcapWriter::new(std::fs::File::create(&cap).unwrap(), LinkType::IPV4).unwrap();
    w.write_frame(1, &udp_packet([10, 0, 0, 1], [1, 1, 1, 1], 1000, 53))
        .unwrap();
    w.write_frame(2, &udp_packet([10, 0, 0, 2], [1, 1, 1, 1], 1000, 53))
        .unwrap();
    w.write_frame(3, &udp_packet([192, 168, 0, 2], [1, 1, 1, 1], 1000, 80))
        .unwrap();
    let mut bad = udp_packet([10, 0, 0, 1], [1, 1, 1, 1], 1, 2);
    bad[10] ^= 0xff; // broken header checksum: dropped before any table
    w.write_frame(4, &bad).unwrap();
    w.flush().unwrap();
    drop(w);
    let exe = env!("CARGO_BIN_EXE_pollwall-under-test");
    let args = [
        "replay",
        "--rules",
        rules.to_str().unwrap(),
        "--hook",
        "FORWARD",
        "--in-iface",
        "pwin",
    ];
    let out = Command::new(exe).args(args).arg(&cap).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(":FORWARD DROP [2:64]\n"), "{text}");
    assert!(
        text.contains("[2:64] -A FORWARD -i pwin -p udp -m udp --dport 53 -j dns\n"),
        "{text}"
    );
    assert!(
        text.contains("[1:32] -A FORWARD -s 10.0.0.0/8 -j LOG\n"),
        "{text}"
    );
    assert!(
        text.contains("[1:32] -A dns -s 10.0.0.1/32 -j ACCEPT\n"),
        "{text}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("1 frames dropped before any table: bad_checksum")
            || String::from_utf8_lossy(&out.stderr).contains("1 frames dropped before any table")
    );
    let out = Command::new(exe)
        .args(args)
        .arg("--verdicts")
        .arg(&cap)
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = v.lines().collect();
    assert_eq!(lines.len(), 4, "{v}");
    assert_eq!(lines[0], "1 ACCEPT filter/FORWARD/1,filter/dns/1");
    assert_eq!(
        lines[1],
        "2 DROP filter/FORWARD/1,filter/FORWARD/2,filter/FORWARD/policy"
    );
    assert_eq!(lines[2], "3 DROP filter/FORWARD/policy");
    assert!(lines[3].starts_with("4 DROP(malformed:"), "{v}");
}

/// An Ethernet capture goes through the dataplane's pipeline (the pcap backend): counters of
/// PREROUTING, FORWARD and POSTROUTING, a 9,000-byte jumbo frame, ARP bridged without a table.
#[test]
fn ethernet_capture_through_the_pipeline() {
    use crate::kernel_diff::gen::frame;
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::write(
        &rules,
        "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n\
         -A PREROUTING -p udp -j ACCEPT\n-A POSTROUTING -o pwout -j ACCEPT\nCOMMIT\n\
         *filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -i pwin -o pwout -p udp --dport 53 -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let ip = frame::Ipv4 {
        src: 0x0a00_0001,
        dst: 0x0a00_0002,
        proto: 17,
        id: 1,
        tos: 0,
        df: true,
        mf: false,
        frag_off: 0,
        options: vec![],
    };
    let (dmac, smac) = ([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1]);
    let small = frame::ethernet(dmac, smac, &ip, &frame::udp(ip.src, ip.dst, 1000, 53, b"q"));
    let jumbo = frame::ethernet(
        dmac,
        smac,
        &ip,
        &frame::udp(ip.src, ip.dst, 1000, 53, &[7; 8958]),
    );
    assert_eq!(jumbo.len(), 14 + 8986);
    let other = frame::ethernet(dmac, smac, &ip, &frame::udp(ip.src, ip.dst, 1000, 80, b"x"));
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&smac);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.resize(60, 0);
    let cap = dir.path().join("e.pcap");
    let mut w = PcapWriter::new(std::fs::File::create(&cap).unwrap(), LinkType::ETHERNET).unwrap();
    for (t, f) in [&small, &jumbo, &other, &arp].iter().enumerate() {
        w.write_frame(t as u64 + 1, f).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let out = Command::new(env!("CARGO_BIN_EXE_pollwall-under-test"))
        .args([
            "replay",
            "--rules",
            rules.to_str().unwrap(),
            "--in-iface",
            "pwin",
        ])
        .args(["--out-iface", "pwout", cap.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Byte counters count the IP datagram (frame minus 14).
    let small_ip = 20 + 8 + 1; // IP header, UDP header, one byte (the frame is padded to 60)
    let want_pre = format!(
        "[3:{}] -A PREROUTING -p udp -j ACCEPT",
        small_ip + 8986 + 29
    );
    assert!(text.contains(&want_pre), "{text}");
    let want_fwd = format!("[2:{}] -A FORWARD -i pwin -o pwout", small_ip + 8986);
    assert!(text.contains(&want_fwd), "{text}");
    let want_post = format!("[2:{}] -A POSTROUTING -o pwout -j ACCEPT", small_ip + 8986);
    assert!(text.contains(&want_post), "{text}");
    // mangle FORWARD runs before filter FORWARD's DROP: all three pass it.
    assert!(
        text.contains(&format!(":FORWARD ACCEPT [3:{}]", 2 * small_ip + 8986)),
        "{text}"
    );
    assert!(text.contains(":FORWARD DROP [1:29]"), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 ARP frames bridged"));
}

/// `--config --verdicts`: one line per frame with its fate and the state tracking gave it.
#[test]
fn replay_config_verdicts_show_ctstate() {
    use classifier::wire::{build, ipv4, tcp, EtherType, IpProtocol};
    use dataplane::pcapng::PcapNgOut;
    use std::net::Ipv4Addr;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules"),
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n\
         -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
         -A FORWARD -i pw0 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("fw.toml"),
        "rules = \"rules\"\n\n[[bridge]]\nports = [\"pw0\", \"pw1\"]\n",
    )
    .unwrap();
    let (c, s) = (Ipv4Addr::new(10, 1, 0, 1), Ipv4Addr::new(10, 2, 0, 1));
    let seg = |from: Ipv4Addr, to: Ipv4Addr, sp: u16, dp: u16, flags: u8, seq: u32, ack: u32| {
        let t = build::tcp(
            &tcp::Repr {
                src_port: sp,
                dst_port: dp,
                seq_number: seq,
                ack_number: ack,
                flags,
                window_len: 1000,
                urgent_at: 0,
                options: &[],
                payload: &[],
            },
            from,
            to,
        );
        let ip = build::ipv4(ipv4::Repr::new(from, to, IpProtocol::TCP, 0, 64), &t);
        build::ethernet(
            [2, 0, 0, 0, 0, 2],
            [2, 0, 0, 0, 0, 1],
            EtherType::IPV4,
            &ip,
            60,
        )
    };
    let frames = [
        (0u32, seg(c, s, 4000, 80, 0x02, 100, 0)),
        (1, seg(s, c, 80, 4000, 0x12, 900, 101)),
        (0, seg(c, s, 4000, 80, 0x10, 101, 901)),
        (1, seg(s, c, 22, 5000, 0x02, 7, 0)),
        (0, seg(c, s, 4000, 80, 0x02 | 0x01, 101, 901)),
    ];
    let mut w = PcapNgOut::new(Vec::new(), &["pw0", "pw1"]).unwrap();
    for (k, (port, f)) in frames.iter().enumerate() {
        w.write(*port, 1_000_000 * (k as u64 + 1), f).unwrap();
    }
    std::fs::write(dir.path().join("in.pcapng"), w.into_inner()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pollwall-under-test"))
        .args(["replay", "--config"])
        .arg(dir.path().join("fw.toml"))
        .arg("--verdicts")
        .arg(dir.path().join("in.pcapng"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1 ACCEPT ctstate=NEW\n2 ACCEPT ctstate=ESTABLISHED\n3 ACCEPT ctstate=ESTABLISHED\n\
         4 DROP ctstate=NEW\n5 DROP ctstate=INVALID\n",
        "a SYN from outside is NEW and refused; SYN+FIN is INVALID and meets the policy"
    );
}
