//! Ethernet/IPv4/TCP/UDP frames for the in-memory run, built with valid checksums between the
//! demo's client (10.9.0.1) and server (10.9.0.2), and the few field readers the run uses to
//! say what came out of the pipeline.

pub const CLIENT: u32 = 0x0a09_0001;
pub const SERVER: u32 = 0x0a09_0002;
pub const CLIENT_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 1];
pub const SERVER_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 2];

pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH_ACK: u8 = 0x18;
pub const SYN_ACK: u8 = 0x12;

/// Internet checksum of `data` on top of the partial sum `init`.
fn checksum(init: u32, data: &[u8]) -> u16 {
    use classifier::wire::checksum as cs;
    !cs::combine(&[cs::fold(u64::from(init)), cs::data(data)])
}

fn pseudo(src: u32, dst: u32, proto: u8, len: usize) -> u32 {
    (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + u32::from(proto) + len as u32
}

/// An Ethernet frame carrying `l4` from `src` to `dst` (MACs of the client or server), padded to
/// the 60-byte minimum.
fn ethernet(src: u32, dst: u32, proto: u8, l4: &[u8]) -> Vec<u8> {
    let mac = |a| if a == CLIENT { CLIENT_MAC } else { SERVER_MAC };
    let mut f = Vec::with_capacity(64.max(34 + l4.len()));
    f.extend_from_slice(&mac(dst));
    f.extend_from_slice(&mac(src));
    f.extend_from_slice(&0x0800u16.to_be_bytes());
    let total = (20 + l4.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0x12, 0x34, 0x40, 0, 64, proto, 0, 0]);
    f.extend_from_slice(&src.to_be_bytes());
    f.extend_from_slice(&dst.to_be_bytes());
    let c = checksum(0, &f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(l4);
    if f.len() < 60 {
        f.resize(60, 0);
    }
    f
}

/// A TCP segment in a frame.
pub fn tcp(src: u32, dst: u32, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload.len());
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&0x1000_0000u32.to_be_bytes());
    let ack = if flags & 0x10 != 0 { 0x2000_0000u32 } else { 0 };
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags]);
    t.extend_from_slice(&64240u16.to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 0]);
    t.extend_from_slice(payload);
    let c = checksum(pseudo(src, dst, 6, t.len()), &t);
    t[16..18].copy_from_slice(&c.to_be_bytes());
    ethernet(src, dst, 6, &t)
}

/// A UDP datagram in a frame.
pub fn udp(src: u32, dst: u32, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    let c = match checksum(pseudo(src, dst, 17, u.len()), &u) {
        0 => 0xffff,
        c => c,
    };
    u[6..8].copy_from_slice(&c.to_be_bytes());
    ethernet(src, dst, 17, &u)
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
