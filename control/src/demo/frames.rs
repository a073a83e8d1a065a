//! Ethernet/IPv4/TCP/UDP frames for the in-memory run, built with valid checksums between the
//! demo's client (10.9.0.1) and server (10.9.0.2), and the few field readers the run uses to
//! say what came out of the pipeline.

use classifier::wire::{build, ipv4, tcp};

pub const CLIENT: u32 = 0x0a09_0001;
pub const SERVER: u32 = 0x0a09_0002;
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 1];
pub const SERVER_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 2];

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH_ACK: u8 = 0x18;
pub const SYN_ACK: u8 = 0x12;

/// An Ethernet frame carrying `l4` from `src` to `dst` (MACs of the client or server), padded to
/// the 60-byte minimum.
fn ethernet(src: u32, dst: u32, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mac = |a| if a == CLIENT { CLIENT_MAC } else { SERVER_MAC };
    let ip = ipv4::Repr {
        ident: 0x1234,
        dont_frag: true,
        ..ipv4::Repr::new(src.into(), dst.into(), ipv4::IpProtocol(proto), 0, 64)
    };
    build::ipv4_frame(mac(dst), mac(src), ip, l4)
}

/// A TCP segment in a frame (fixed sequence numbers: for single segments).
pub fn tcp(src: u32, dst: u32, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let ack = if flags & tcp::flags::ACK != 0 {
        0x2000_0000
    } else {
        0
    };
    tcp_seq(src, dst, (sport, dport), flags, (0x1000_0000, ack), payload)
}

/// A TCP segment with the given (seq, ack), as a connection's segments need them.
pub fn tcp_seq(
    src: u32,
    dst: u32,
    (sport, dport): (u16, u16),
    flags: u8,
    (seq, ack): (u32, u32),
    payload: &[u8],
) -> Vec<u8> {
    let repr = tcp::Repr {
        src_port: sport,
        dst_port: dport,
        seq_number: seq,
        ack_number: ack,
        flags,
        window_len: 64240,
        urgent_at: 0,
        options: &[],
        payload,
    };
    ethernet(src, dst, 6, &build::tcp(&repr, src.into(), dst.into()))
}

/// A UDP datagram in a frame.
pub fn udp(src: u32, dst: u32, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let l4 = build::udp(src.into(), dst.into(), sport, dport, payload);
    ethernet(src, dst, 17, &l4)
}

/// The IPv4 protocol of a frame (None when too short or not IPv4).
pub fn proto(f: &[u8]) -> Option<u8> {
    (f.len() >= 34 && f[12..14] == [8, 0]).then(|| f[23])
}

/// The IPv4 source address.
pub fn src_ip(f: &[u8]) -> Option<u32> {
    f.get(26..30)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// TCP flags of a TCP frame (no IP options).
pub fn tcp_flags(f: &[u8]) -> Option<u8> {
    (proto(f) == Some(6)).then(|| f.get(47).copied()).flatten()
}

/// ICMP type and code of an ICMP frame (no IP options).
pub fn icmp_type_code(f: &[u8]) -> Option<(u8, u8)> {
    (proto(f) == Some(1) && f.len() >= 36).then(|| (f[34], f[35]))
}

/// `a.b.c.d`.
pub fn dotted(a: u32) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}
