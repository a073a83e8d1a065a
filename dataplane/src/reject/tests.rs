//! Tests of [`super::build_reject`]: originals crafted with the classifier's wire emitters, replies
//! parsed back with its views, every field checked; the no-reply cases; a fuzz harness.

use super::*;
use classifier::wire::ethernet::EthernetAddress;
use classifier::wire::{icmp, ipv4, tcp, udp};

const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
const SERVER_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

const ICMP_TYPES: [(RejectWith, u8); 7] = [
    (RejectWith::NetUnreachable, 0),
    (RejectWith::HostUnreachable, 1),
    (RejectWith::ProtoUnreachable, 2),
    (RejectWith::PortUnreachable, 3),
    (RejectWith::NetProhibited, 9),
    (RejectWith::HostProhibited, 10),
    (RejectWith::AdminProhibited, 13),
];

/// IP header fields of a crafted original.
#[derive(Clone, Copy)]
struct Ip {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    tos: u8,
    more_frags: bool,
    frag_offset: u16,
}

const IP: Ip = Ip {
    src: CLIENT,
    dst: SERVER,
    tos: 0x10,
    more_frags: false,
    frag_offset: 0,
};

fn ip_datagram(ip: Ip, proto: IpProtocol, l4: &[u8]) -> Vec<u8> {
    let repr = ipv4::Repr {
        tos: ip.tos,
        ident: 0x4321,
        dont_frag: !ip.more_frags && ip.frag_offset == 0,
        more_frags: ip.more_frags,
        frag_offset: ip.frag_offset,
        ..ipv4::Repr::new(ip.src, ip.dst, proto, l4.len(), 64)
    };
    let mut v = vec![0u8; repr.buffer_len()];
    let mut p = ipv4::Packet::new_unchecked(&mut v[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(l4);
    v
}

/// An Ethernet frame client -> server with VLAN tags `(tpid, tci)`, padded to `min_len`.
fn frame(tags: &[(u16, u16)], ip: &[u8], min_len: usize) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&SERVER_MAC.0);
    v.extend_from_slice(&CLIENT_MAC.0);
    for &(tpid, tci) in tags {
        v.extend_from_slice(&tpid.to_be_bytes());
        v.extend_from_slice(&tci.to_be_bytes());
    }
    v.extend_from_slice(&0x0800u16.to_be_bytes());
    v.extend_from_slice(ip);
    if v.len() < min_len {
        v.resize(min_len, 0);
    }
    v
}

fn tcp_segment(ip: Ip, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let repr = tcp::Repr {
        src_port: 40000,
        dst_port: 7,
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: 64240,
        urgent_at: 0,
        options: &[0x02, 0x04, 0x05, 0xb4],
        payload,
    };
    let mut v = vec![0u8; repr.buffer_len()];
    repr.emit(&mut tcp::Packet::new_unchecked(&mut v[..]), ip.src, ip.dst);
    v
}

fn udp_datagram(ip: Ip, payload: &[u8]) -> Vec<u8> {
    let repr = udp::Repr {
        src_port: 5000,
        dst_port: 53,
        payload,
    };
    let mut v = vec![0u8; repr.buffer_len()];
    repr.emit(&mut udp::Packet::new_unchecked(&mut v[..]), ip.src, ip.dst);
    v
}

fn icmp_message(repr: icmp::Repr<'_>) -> Vec<u8> {
    let mut v = vec![0u8; repr.buffer_len()];
    repr.emit(&mut icmp::Packet::new_unchecked(&mut v[..]));
    v
}

fn syn_frame() -> Vec<u8> {
    let seg = tcp_segment(IP, tcp::flags::SYN, 0x5d4f_1e7a, 0, &[]);
    frame(&[], &ip_datagram(IP, IpProtocol::TCP, &seg), 60)
}

fn udp_frame(payload: &[u8]) -> Vec<u8> {
    frame(
        &[],
        &ip_datagram(IP, IpProtocol::UDP, &udp_datagram(IP, payload)),
        60,
    )
}

fn ping_frame() -> Vec<u8> {
    let msg = icmp_message(icmp::Repr::echo_request(0x1234, 7, b"abcdefgh"));
    frame(&[], &ip_datagram(IP, IpProtocol::ICMP, &msg), 60)
}

fn reject(frame: &[u8], with: RejectWith) -> Result<Vec<u8>, NoReply> {
    let mut out = [0u8; MAX_REPLY_LEN];
    let n = build_reject(frame, with, None, 0xbeef, &mut out)?;
    Ok(out[..n].to_vec())
}

/// Checks the Ethernet header of `reply` against `orig` and returns the IP header offset.
fn check_l2(orig: &[u8], reply: &[u8], tags: usize) -> usize {
    let l3 = 14 + 4 * tags;
    let e = ethernet::Packet::new_checked(reply).unwrap();
    assert_eq!(e.dst_addr(), CLIENT_MAC);
    assert_eq!(e.src_addr(), SERVER_MAC);
    assert_eq!(reply[12..l3], orig[12..l3], "ethertype and tags kept");
    l3
}

/// Checks every field of an ICMP error built for `orig` (whose IP datagram is `orig_ip`).
fn check_icmp_reply(orig: &[u8], orig_ip: &[u8], reply: &[u8], code: u8, src: Ipv4Addr) {
    let l3 = check_l2(orig, reply, tags_of(orig));
    let ip = ipv4::Packet::new_checked(&reply[l3..]).unwrap();
    let r = ipv4::Repr::parse(&ip).expect("valid IP header checksum");
    assert_eq!((ip.version(), ip.header_len()), (4, 20));
    assert_eq!(usize::from(ip.total_len()), reply.len() - l3);
    assert_eq!(r.tos, (orig_ip[1] & 0x1e) | 0xc0);
    assert_eq!((r.ttl, r.ident), (64, 0xbeef));
    assert!(!r.dont_frag && !r.more_frags && r.frag_offset == 0 && !ip.reserved_flag());
    assert_eq!(r.protocol, IpProtocol::ICMP);
    assert_eq!((r.src_addr, r.dst_addr), (src, CLIENT));
    let msg = icmp::Packet::new_checked(ip.payload()).unwrap();
    assert!(msg.verify_checksum());
    assert_eq!(msg.msg_type(), icmp::Message::DST_UNREACHABLE);
    assert_eq!(msg.msg_code(), code);
    assert_eq!(msg.rest_of_header(), [0; 4]);
    let want = &orig_ip[..orig_ip.len().min(548)];
    assert_eq!(
        msg.data(),
        want,
        "quote = the original datagram, cut to 548"
    );
}

/// Number of VLAN tags of a frame built by [`frame`].
fn tags_of(f: &[u8]) -> usize {
    let mut n = 0;
    while matches!(
        f.get(12 + 4 * n..14 + 4 * n),
        Some([0x81, 0x00] | [0x88, 0xa8])
    ) {
        n += 1;
    }
    n
}

fn ip_of(f: &[u8]) -> &[u8] {
    let ip = &f[14 + 4 * tags_of(f)..];
    let len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    &ip[..len]
}

#[test]
fn icmp_errors_for_each_type_and_original() {
    let originals = [syn_frame(), udp_frame(b"query"), ping_frame()];
    for (with, code) in ICMP_TYPES {
        assert_eq!(unreach_code(with), Some(code));
        for orig in &originals {
            let reply = reject(orig, with).unwrap_or_else(|e| panic!("{with:?}: {e}"));
            assert_eq!(reply.len(), 14 + 20 + 8 + ip_of(orig).len());
            check_icmp_reply(orig, ip_of(orig), &reply, code, SERVER);
        }
    }
    assert_eq!(unreach_code(RejectWith::TcpReset), None);
}

#[test]
fn quote_is_cut_at_548_and_padding_is_excluded() {
    // 1000 bytes of UDP payload: the quote stops at 548 bytes of the datagram.
    let big = udp_frame(&[0x5a; 1000]);
    let reply = reject(&big, RejectWith::PortUnreachable).unwrap();
    assert_eq!(reply.len(), 14 + 20 + 8 + 548);
    check_icmp_reply(&big, ip_of(&big), &reply, 3, SERVER);
    // Exactly 548 and 549 bytes of datagram.
    for payload in [548 - 28, 549 - 28] {
        let f = udp_frame(&vec![7; payload]);
        let reply = reject(&f, RejectWith::PortUnreachable).unwrap();
        assert_eq!(reply.len(), 14 + 28 + 548);
        check_icmp_reply(&f, ip_of(&f), &reply, 3, SERVER);
    }
    // A 33-byte datagram in a 60-byte frame: 27 bytes of padding, which are not quoted.
    let small = udp_frame(b"q");
    assert_eq!((small.len(), ip_of(&small).len()), (60, 29));
    let mut padded = small.clone();
    padded[50..].fill(0xee);
    let reply = reject(&padded, RejectWith::PortUnreachable).unwrap();
    assert_eq!(reply.len(), 14 + 28 + 29);
    check_icmp_reply(&padded, ip_of(&padded), &reply, 3, SERVER);
}

#[test]
fn tos_source_address_and_vlan_tags() {
    // TOS keeps only the TOS bits and gets precedence 6 (internet control).
    let ip = Ip { tos: 0xff, ..IP };
    let f = frame(
        &[],
        &ip_datagram(ip, IpProtocol::UDP, &udp_datagram(ip, b"x")),
        0,
    );
    let reply = reject(&f, RejectWith::HostProhibited).unwrap();
    assert_eq!(reply[14 + 1], 0xde);
    // An explicit source address (a routed packet).
    let mut out = [0u8; MAX_REPLY_LEN];
    let router = Ipv4Addr::new(192, 0, 2, 1);
    let n = build_reject(&f, RejectWith::NetUnreachable, Some(router), 1, &mut out).unwrap();
    assert_eq!(
        ipv4::Packet::new_checked(&out[14..n]).unwrap().src_addr(),
        router
    );
    // One 802.1Q tag and a QinQ pair are copied into the reply.
    for tags in [&[(0x8100, 0x6064)][..], &[(0x88a8, 10), (0x8100, 200)][..]] {
        let ipd = ip_datagram(IP, IpProtocol::UDP, &udp_datagram(IP, b"tagged"));
        let f = frame(tags, &ipd, 64);
        let reply = reject(&f, RejectWith::PortUnreachable).unwrap();
        assert_eq!(reply.len(), 14 + 4 * tags.len() + 28 + ipd.len());
        check_icmp_reply(&f, &ipd, &reply, 3, SERVER);
        let rst = syn_frame();
        let f = frame(tags, ip_of(&rst), 0);
        let reply = reject(&f, RejectWith::TcpReset).unwrap();
        assert_eq!(reply.len(), 14 + 4 * tags.len() + 40);
        check_l2(&f, &reply, tags.len());
    }
}

/// Checks a reset built for a segment with `flags`, `seq`, `ack` and `payload`; returns the reply
/// TCP (seq, ack, flags).
fn check_rst(ip: Ip, flags: u8, seq: u32, ack: u32, payload: &[u8]) -> (u32, u32, u8) {
    let seg = tcp_segment(ip, flags, seq, ack, payload);
    let orig = frame(&[], &ip_datagram(ip, IpProtocol::TCP, &seg), 60);
    let reply = reject(&orig, RejectWith::TcpReset).unwrap();
    assert_eq!(reply.len(), 14 + 40);
    let l3 = check_l2(&orig, &reply, 0);
    let p = ipv4::Packet::new_checked(&reply[l3..]).unwrap();
    let r = ipv4::Repr::parse(&p).expect("valid IP header checksum");
    assert_eq!(
        (p.header_len(), p.total_len(), r.tos, r.ident),
        (20, 40, 0, 0)
    );
    assert!(r.dont_frag && !r.more_frags && r.frag_offset == 0);
    assert_eq!((r.ttl, r.protocol), (64, IpProtocol::TCP));
    assert_eq!((r.src_addr, r.dst_addr), (ip.dst, ip.src));
    let t = tcp::Packet::new_checked(p.payload()).unwrap();
    let tr = tcp::Repr::parse(&t, r.src_addr, r.dst_addr).expect("valid TCP checksum");
    assert_eq!((tr.src_port, tr.dst_port), (7, 40000));
    assert_eq!((t.header_len(), tr.window_len, tr.urgent_at), (20, 0, 0));
    assert!(tr.options.is_empty() && tr.payload.is_empty());
    assert_eq!(p.as_ref()[12 + 20] & 0x0f, 0, "reserved bits clear");
    (tr.seq_number, tr.ack_number, tr.flags)
}

#[test]
fn tcp_reset_sequence_arithmetic() {
    use tcp::flags::*;
    const RST_ACK: u8 = RST | ACK;
    // SYN: ack = seq + 1.
    assert_eq!(check_rst(IP, SYN, 1000, 0, &[]), (0, 1001, RST_ACK));
    // ACK present: seq = their ack, no ACK flag, ack 0 (whatever the payload).
    assert_eq!(
        check_rst(IP, ACK | PSH, 5000, 777_777, &[1; 100]),
        (777_777, 0, RST)
    );
    assert_eq!(check_rst(IP, ACK | FIN, 5, 6, &[]), (6, 0, RST));
    // No ACK: seq + SYN + FIN + payload length.
    assert_eq!(check_rst(IP, PSH, 5000, 9, &[1; 100]), (0, 5100, RST_ACK));
    assert_eq!(check_rst(IP, FIN, 5000, 0, &[1; 10]), (0, 5011, RST_ACK));
    assert_eq!(
        check_rst(IP, SYN | FIN, 5000, 0, &[1; 3]),
        (0, 5005, RST_ACK)
    );
    assert_eq!(check_rst(IP, 0, 42, 0, &[]), (0, 42, RST_ACK));
    // Wrapping.
    assert_eq!(check_rst(IP, SYN, u32::MAX, 0, &[]), (0, 0, RST_ACK));
    // A first fragment (MF, offset 0) of a TCP segment: its checksum only verifies if the
    // fragment is the whole segment, which it is here.
    let frag = Ip {
        more_frags: true,
        ..IP
    };
    assert_eq!(check_rst(frag, SYN, 1, 0, &[]), (0, 2, RST_ACK));
}

#[test]
fn tcp_reset_uses_the_raw_data_offset() {
    // A data offset of 15 in a 24-byte segment: the kernel's unsigned arithmetic wraps.
    let mut seg = tcp_segment(IP, 0, 100, 0, &[]);
    seg[12] = 0xf0;
    let mut t = tcp::Packet::new_unchecked(&mut seg[..]);
    t.fill_checksum(CLIENT, SERVER);
    let f = frame(&[], &ip_datagram(IP, IpProtocol::TCP, &seg), 0);
    let reply = reject(&f, RejectWith::TcpReset).unwrap();
    let t = tcp::Packet::new_checked(&reply[34..]).unwrap();
    assert_eq!(t.ack_number(), 100u32.wrapping_add(24).wrapping_sub(60));
}

#[test]
fn no_reply_cases() {
    use RejectWith::*;
    let both = [PortUnreachable, TcpReset];
    // Non-first fragments.
    for off in [1u16, 185, 0x1fff] {
        let ip = Ip {
            frag_offset: off,
            ..IP
        };
        let seg = tcp_segment(ip, tcp::flags::SYN, 1, 0, &[]);
        let f = frame(&[], &ip_datagram(ip, IpProtocol::TCP, &seg), 0);
        for with in both {
            assert_eq!(reject(&f, with), Err(NoReply::NotFirstFragment));
        }
    }
    // Link-layer broadcast and multicast.
    for mac in [[0xff; 6], [0x01, 0x00, 0x5e, 0, 0, 1]] {
        let mut f = syn_frame();
        f[..6].copy_from_slice(&mac);
        for with in both {
            assert_eq!(reject(&f, with), Err(NoReply::LinkBroadcast));
        }
    }
    // Broadcast and multicast destinations.
    for dst in [Ipv4Addr::BROADCAST, Ipv4Addr::new(224, 0, 0, 1)] {
        let ip = Ip { dst, ..IP };
        let seg = tcp_segment(ip, tcp::flags::SYN, 1, 0, &[]);
        let f = frame(&[], &ip_datagram(ip, IpProtocol::TCP, &seg), 0);
        for with in both {
            assert_eq!(reject(&f, with), Err(NoReply::DestBroadcastOrMulticast));
        }
    }
    // Martians.
    for (src, dst) in [
        (Ipv4Addr::new(127, 0, 0, 1), SERVER),
        (Ipv4Addr::new(0, 0, 0, 0), SERVER),
        (Ipv4Addr::new(224, 1, 1, 1), SERVER),
        (Ipv4Addr::BROADCAST, SERVER),
        (CLIENT, Ipv4Addr::new(0, 1, 2, 3)),
        (CLIENT, Ipv4Addr::new(127, 0, 0, 1)),
    ] {
        let ip = Ip { src, dst, ..IP };
        let seg = tcp_segment(ip, tcp::flags::SYN, 1, 0, &[]);
        let f = frame(&[], &ip_datagram(ip, IpProtocol::TCP, &seg), 0);
        for with in both {
            assert_eq!(reject(&f, with), Err(NoReply::Martian), "{src} {dst}");
        }
    }
    // Bad checksums: TCP, UDP, ICMP.
    for mut f in [syn_frame(), udp_frame(b"query"), ping_frame()] {
        let last = 14 + ip_of(&f).len() - 1;
        f[last] ^= 0x01;
        assert_eq!(reject(&f, PortUnreachable), Err(NoReply::BadChecksum));
        if f[23] == 6 {
            assert_eq!(reject(&f, TcpReset), Err(NoReply::BadChecksum));
        }
    }
    // ICMP errors (and unknown types) get no error; echo replies and requests do.
    for t in [3u8, 4, 5, 11, 12, 19, 200] {
        let msg = icmp_message(icmp::Repr {
            msg_type: icmp::Message(t),
            code: 0,
            rest: [0; 4],
            data: &[0x45; 28],
        });
        let f = frame(&[], &ip_datagram(IP, IpProtocol::ICMP, &msg), 0);
        assert_eq!(reject(&f, HostUnreachable), Err(NoReply::IcmpError), "{t}");
    }
    for t in [0u8, 8, 13, 18] {
        let msg = icmp_message(icmp::Repr {
            msg_type: icmp::Message(t),
            code: 0,
            rest: [0; 4],
            data: b"data",
        });
        let f = frame(&[], &ip_datagram(IP, IpProtocol::ICMP, &msg), 0);
        assert!(reject(&f, HostUnreachable).is_ok(), "{t}");
    }
    // An ICMP datagram without payload: no type to read.
    let f = frame(&[], &ip_datagram(IP, IpProtocol::ICMP, &[]), 60);
    assert_eq!(reject(&f, HostUnreachable), Err(NoReply::IcmpError));
    // tcp-reset needs an intact TCP header without RST.
    assert_eq!(reject(&udp_frame(b"x"), TcpReset), Err(NoReply::NotTcp));
    let seg = tcp_segment(IP, tcp::flags::SYN, 1, 0, &[]);
    let f = frame(&[], &ip_datagram(IP, IpProtocol::TCP, &seg[..19]), 60);
    assert_eq!(reject(&f, TcpReset), Err(NoReply::TcpTooShort));
    for flags in [tcp::flags::RST, tcp::flags::RST | tcp::flags::ACK] {
        let seg = tcp_segment(IP, flags, 1, 0, &[]);
        let f = frame(&[], &ip_datagram(IP, IpProtocol::TCP, &seg), 0);
        assert_eq!(reject(&f, TcpReset), Err(NoReply::RstSet));
    }
    // icmp-echo-reply is refused by the kernel.
    assert_eq!(
        reject(&syn_frame(), EchoReply),
        Err(NoReply::EchoReplyRefused)
    );
    // Frames that are not (whole) IPv4.
    let f = syn_frame();
    assert_eq!(reject(&f[..13], PortUnreachable), Err(NoReply::Truncated));
    assert_eq!(
        reject(&f[..14 + 19], PortUnreachable),
        Err(NoReply::Truncated)
    );
    let short = &f[..14 + ip_of(&f).len() - 1];
    assert_eq!(reject(short, PortUnreachable), Err(NoReply::Truncated));
    let mut g = f.clone();
    g[12] = 0x86;
    assert_eq!(reject(&g, PortUnreachable), Err(NoReply::NotIpv4));
    let mut g = f.clone();
    g[14] = 0x65;
    assert_eq!(reject(&g, TcpReset), Err(NoReply::NotIpv4));
    let mut g = f.clone();
    g[14] = 0x44;
    assert_eq!(reject(&g, TcpReset), Err(NoReply::Malformed));
    // Three tags are not read.
    let g = frame(&[(0x8100, 1), (0x8100, 2), (0x8100, 3)], ip_of(&f), 0);
    assert_eq!(reject(&g, PortUnreachable), Err(NoReply::NotIpv4));
    // A buffer one byte short.
    for (orig, with, len) in [
        (syn_frame(), TcpReset, 54),
        (ping_frame(), PortUnreachable, 78),
    ] {
        let mut out = vec![0u8; len];
        assert_eq!(build_reject(&orig, with, None, 0, &mut out), Ok(len));
        assert_eq!(
            build_reject(&orig, with, None, 0, &mut out[..len - 1]),
            Err(NoReply::OutTooSmall)
        );
    }
}

#[test]
fn which_checksums_are_verified() {
    use RejectWith::PortUnreachable;
    // UDP without checksum: no check, even with a changed payload.
    let mut f = udp_frame(b"query");
    f[14 + 20 + 6..14 + 20 + 8].fill(0);
    f[14 + 20 + 8] ^= 0xff;
    assert!(reject(&f, PortUnreachable).is_ok());
    // Protocols without a 16-bit checksum over the payload are not checked.
    for proto in [47u8, 50, 51, 132, 136] {
        let f = frame(&[], &ip_datagram(IP, IpProtocol(proto), b"random bytes"), 0);
        assert!(reject(&f, PortUnreachable).is_ok(), "{proto}");
    }
    // Any other protocol is: random bytes fail...
    let f = frame(&[], &ip_datagram(IP, IpProtocol(253), b"random bytes"), 0);
    assert_eq!(reject(&f, PortUnreachable), Err(NoReply::BadChecksum));
    // ...but an empty or all-zero payload sums to zero, and the valid IP header's 0xffff makes
    // the total verify (what nf_ip_checksum computes over skb->data).
    for payload in [&[][..], &[0u8; 6][..]] {
        let f = frame(&[], &ip_datagram(IP, IpProtocol(253), payload), 60);
        assert!(reject(&f, PortUnreachable).is_ok());
    }
    // A payload that sums to 0xffff (its own "checksum") verifies too.
    let f = frame(&[], &ip_datagram(IP, IpProtocol(253), &[0xff, 0xff]), 60);
    assert!(reject(&f, PortUnreachable).is_ok());
    // UDP checksums cover the whole IP payload: bytes past the UDP length break them.
    let ip = ip_datagram(IP, IpProtocol::UDP, &udp_datagram(IP, b"abc"));
    let mut longer = ip.clone();
    longer.extend_from_slice(&[1, 2]);
    let mut p = ipv4::Packet::new_unchecked(&mut longer[..]);
    p.set_total_len(ip.len() as u16 + 2);
    p.fill_checksum();
    let f = frame(&[], &longer, 0);
    assert_eq!(reject(&f, PortUnreachable), Err(NoReply::BadChecksum));
}

#[test]
fn no_reply_names_are_unique() {
    let names: std::collections::HashSet<_> = NoReply::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(names.len(), NoReply::ALL.len());
    assert_eq!(NoReply::BadChecksum.to_string(), "bad_checksum");
}

/// Runs every `--reject-with` over `bytes` with an output buffer of `out_len` bytes; a reply must
/// fit the buffer and parse.
fn exercise(bytes: &[u8], out_len: usize) {
    let mut out = vec![0u8; out_len];
    for (with, _, _) in RejectWith::ALL {
        if let Ok(n) = build_reject(bytes, with, None, 0, &mut out) {
            assert!(n <= out_len && n <= MAX_REPLY_LEN);
            let h = classifier::wire::parse_ethernet(&out[..n]).expect("reply parses");
            assert_eq!(usize::from(h.l3_offset) + usize::from(h.ip_len), n);
        }
    }
}

#[test]
fn fuzz_random_bytes_never_panic() {
    bolero::check!()
        .with_type::<(u16, Vec<u8>)>()
        .for_each(|(out_len, bytes)| exercise(bytes, usize::from(*out_len) % 700));
}

/// Random bytes rarely get past the Ethernet and IP checks: put them behind valid headers.
#[test]
fn fuzz_random_payload_behind_valid_headers() {
    bolero::check!()
        .with_type::<(u8, u8, u16, Vec<u8>)>()
        .for_each(|(proto, tags, frag, payload)| {
            let ip = Ip {
                frag_offset: frag & 0x1fff & if frag & 0x8000 != 0 { 0x1fff } else { 0 },
                ..IP
            };
            let tags: &[(u16, u16)] = match tags % 3 {
                0 => &[],
                1 => &[(0x8100, 5)],
                _ => &[(0x88a8, 5), (0x8100, 6)],
            };
            let mut l4 = payload.clone();
            l4.truncate(1400);
            let datagram = ip_datagram(ip, IpProtocol(*proto), &l4);
            let f = frame(tags, &datagram, 60);
            exercise(&f, MAX_REPLY_LEN);
            // With a correct transport checksum, every eligible packet gets its ICMP error.
            if matches!(*proto, 6 | 17) && l4.len() >= 8 && ip.frag_offset == 0 {
                let mut fixed = datagram.clone();
                let at = if *proto == 6 { 16 } else { 6 };
                if *proto == 6 && l4.len() < 20 {
                    return;
                }
                let pseudo =
                    checksum::pseudo_header(CLIENT, SERVER, IpProtocol(*proto), l4.len() as u32);
                fixed[20 + at..20 + at + 2].fill(0);
                let sum = !checksum::combine(&[pseudo, checksum::data(&fixed[20..])]);
                fixed[20 + at..20 + at + 2].copy_from_slice(&sum.to_be_bytes());
                let f = frame(tags, &fixed, 60);
                let reply = reject(&f, RejectWith::PortUnreachable).expect("reply");
                check_icmp_reply(&f, &fixed, &reply, 3, SERVER);
            }
        });
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// The replies Linux 6.18 sent for the same frames (`kernel-6.18.txt`), byte for byte: an ICMP
/// error is built with the kernel's IP ID (random there) and must then equal the kernel's reply
/// exactly; a reset must equal it except for the TCP checksum, which the kernel left to checksum
/// offload (the field holds the folded pseudo-header sum) and pollwall completes.
#[test]
fn matches_the_replies_of_linux_6_18() {
    let mut compared = 0;
    for line in include_str!("kernel-6.18.txt").lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [name, with, orig, kernel] = f[..] else {
            panic!("bad line {line}")
        };
        let with = RejectWith::ALL
            .iter()
            .find(|(_, n, _)| *n == with)
            .map(|(w, _, _)| *w)
            .unwrap();
        let orig = unhex(orig);
        let mut out = [0u8; MAX_REPLY_LEN];
        if name == "rej_syn_bcast_mac" {
            // Documented difference: the kernel answers a reset from its own MAC even to a
            // group-addressed frame; pollwall, which answers from the original destination MAC,
            // does not.
            assert_ne!(kernel, "-");
            assert_eq!(
                build_reject(&orig, with, None, 0, &mut out),
                Err(NoReply::LinkBroadcast)
            );
            continue;
        }
        if kernel == "-" {
            let r = build_reject(&orig, with, None, 0, &mut out);
            assert!(r.is_err(), "{name}: the kernel sent nothing, we sent {r:?}");
            continue;
        }
        let kernel = unhex(kernel);
        let ip_id = u16::from_be_bytes([kernel[18], kernel[19]]);
        let n = build_reject(&orig, with, None, ip_id, &mut out)
            .unwrap_or_else(|e| panic!("{name}: the kernel replied, we did not: {e}"));
        let mut ours = out[..n].to_vec();
        if with == RejectWith::TcpReset {
            let t = tcp::Packet::new_checked(&ours[34..]).unwrap();
            assert!(t.verify_checksum(SERVER, CLIENT), "{name}");
            let partial = checksum::pseudo_header(SERVER, CLIENT, IpProtocol::TCP, 20);
            ours[34 + 16..34 + 18].copy_from_slice(&partial.to_be_bytes());
        }
        assert_eq!(hex(&ours), hex(&kernel), "{name}");
        compared += 1;
    }
    assert_eq!(compared, 15);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
