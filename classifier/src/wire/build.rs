//! Whole frames from the `Repr`s, for the traffic generator, the demo and tests: an IPv4 datagram
//! around an L4 payload, TCP and UDP segments with their checksums, and the Ethernet header
//! (padded to a minimum length). Every header is written by its view's `emit`, so the bytes are
//! the ones the parsers read back.

use super::ethernet::{self, EtherType, EthernetAddress};
use super::ipv4;
use super::{tcp, udp};
use std::net::Ipv4Addr;

/// `l4` in an IPv4 datagram described by `ip` (its `payload_len` is set to `l4.len()`).
pub fn ipv4(ip: ipv4::Repr<'_>, l4: &[u8]) -> Vec<u8> {
    let repr = ipv4::Repr {
        payload_len: l4.len(),
        ..ip
    };
    let mut v = vec![0u8; repr.buffer_len()];
    let mut p = ipv4::Packet::new_unchecked(&mut v[..]);
    repr.emit(&mut p);
    p.payload_mut().copy_from_slice(l4);
    v
}

/// A UDP datagram with its checksum.
pub fn udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let repr = udp::Repr {
        src_port: sport,
        dst_port: dport,
        payload,
    };
    let mut v = vec![0u8; repr.buffer_len()];
    repr.emit(&mut udp::Packet::new_unchecked(&mut v[..]), src, dst);
    v
}

/// A TCP segment with its checksum.
pub fn tcp(repr: &tcp::Repr<'_>, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let mut v = vec![0u8; repr.buffer_len()];
    repr.emit(&mut tcp::Packet::new_unchecked(&mut v[..]), src, dst);
    v
}

/// An Ethernet II frame carrying `payload`, zero-padded to `min_len` bytes.
pub fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    ethertype: EtherType,
    payload: &[u8],
    min_len: usize,
) -> Vec<u8> {
    let mut v = vec![0u8; (ethernet::HEADER_LEN + payload.len()).max(min_len)];
    let repr = ethernet::Repr {
        src_addr: EthernetAddress(src),
        dst_addr: EthernetAddress(dst),
        ethertype,
    };
    repr.emit(&mut ethernet::Packet::new_unchecked(&mut v[..]));
    v[ethernet::HEADER_LEN..ethernet::HEADER_LEN + payload.len()].copy_from_slice(payload);
    v
}

/// An IPv4 datagram in an Ethernet frame padded to the 60-byte minimum.
pub fn ipv4_frame(dst: [u8; 6], src: [u8; 6], ip: ipv4::Repr<'_>, l4: &[u8]) -> Vec<u8> {
    ethernet(dst, src, EtherType::IPV4, &ipv4(ip, l4), 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::headers::parse_ethernet;
    use crate::wire::ipv4::IpProtocol;

    #[test]
    fn frames_parse_back() {
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
        let u = udp(s, d, 1234, 53, b"hi");
        let ip = ipv4::Repr {
            dont_frag: true,
            ..ipv4::Repr::new(s, d, IpProtocol::UDP, 0, 64)
        };
        let f = ipv4_frame([2, 0, 0, 0, 0, 2], [2, 0, 0, 0, 0, 1], ip, &u);
        assert_eq!(f.len(), 60, "padded");
        let h = parse_ethernet(&f).unwrap();
        assert_eq!(h.ports(), Some((1234, 53)));
        assert_eq!(usize::from(h.ip_len), 20 + 8 + 2);
        assert!(h.dont_frag);
        let ipp = ipv4::Packet::new_checked(&f[14..14 + 30]).unwrap();
        assert!(udp::Packet::new_checked(ipp.payload())
            .unwrap()
            .verify_checksum(s, d));
    }
}
