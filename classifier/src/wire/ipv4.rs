//! IPv4 headers (RFC 791): the 20-byte fixed header, up to 40 bytes of options, and the payload
//! up to the total length (bytes after it, e.g. Ethernet padding, are not part of the datagram).
//!
//! [`Packet::new_checked`] validates only lengths (what every accessor relies on);
//! [`Repr::parse`] also checks the version and the header checksum.

use super::{be16, checksum, put16, Error, Result};
use core::fmt;
use std::net::Ipv4Addr;

/// An IP protocol number; the constants name the ones pollwall reads, any value is kept as is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const IGMP: IpProtocol = IpProtocol(2);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
    pub const DCCP: IpProtocol = IpProtocol(33);
    pub const GRE: IpProtocol = IpProtocol(47);
    pub const ESP: IpProtocol = IpProtocol(50);
    pub const AH: IpProtocol = IpProtocol(51);
    pub const SCTP: IpProtocol = IpProtocol(132);
    pub const UDPLITE: IpProtocol = IpProtocol(136);
}

impl fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
    pub const OPTIONS: usize = 20;
}

/// Length of the fixed header (IHL 5).
pub const HEADER_LEN: usize = field::OPTIONS;
/// Longest header (IHL 15: 40 bytes of options).
pub const MAX_HEADER_LEN: usize = 60;

/// Flag bits in the flags/fragment-offset word.
const FLAG_RESERVED: u16 = 0x8000;
const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it: accessors panic if the buffer is shorter than the
    /// header (or the header length field).
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`]: no accessor can panic afterwards.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks, in this order: the buffer holds the fixed header (`Truncated`), the header length
    /// is at least 20 (`Malformed`), the buffer holds the whole header (`Truncated`), the total
    /// length is at least the header length (`Malformed`), the buffer holds the total length
    /// (`Truncated`). Bytes past the total length are allowed (padding).
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len();
        if header_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < header_len {
            return Err(Error::Truncated);
        }
        let total_len = usize::from(self.total_len());
        if total_len < header_len {
            return Err(Error::Malformed);
        }
        if len < total_len {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn data(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        self.data()[field::VER_IHL] >> 4
    }

    /// The raw IHL field (header length in 32-bit words).
    pub fn ihl(&self) -> u8 {
        self.data()[field::VER_IHL] & 0x0f
    }

    /// Header length in bytes (`ihl * 4`).
    pub fn header_len(&self) -> usize {
        usize::from(self.ihl()) * 4
    }

    /// The whole type-of-service byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        self.data()[field::TOS]
    }

    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    pub fn total_len(&self) -> u16 {
        be16(self.data(), field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        be16(self.data(), field::IDENT)
    }

    fn flags_offset(&self) -> u16 {
        be16(self.data(), field::FLG_OFF)
    }

    /// The reserved ("evil") flag bit.
    pub fn reserved_flag(&self) -> bool {
        self.flags_offset() & FLAG_RESERVED != 0
    }

    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        self.flags_offset() & OFFSET_MASK
    }

    /// True for any fragment (first, middle or last) of a fragmented datagram.
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.data()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.data()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        be16(self.data(), field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        let d = &self.data()[field::SRC_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        let d = &self.data()[field::DST_ADDR];
        Ipv4Addr::new(d[0], d[1], d[2], d[3])
    }

    /// True when the header checksum (over `header_len` bytes, options included) verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(&self.data()[..self.header_len()]) == 0xffff
    }

    /// The options bytes (`header_len - 20` of them, padding included).
    pub fn options(&self) -> &[u8] {
        &self.data()[field::OPTIONS..self.header_len()]
    }

    /// The header bytes, options included.
    pub fn header(&self) -> &[u8] {
        &self.data()[..self.header_len()]
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// The payload: bytes from the end of the header to the total length, clamped to the
    /// buffer (so a header-only buffer, like an ICMP error's quoted header, gives an empty
    /// payload rather than a panic).
    pub fn payload(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        let start = self.header_len();
        let end = usize::from(self.total_len()).min(data.len());
        data.get(start..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.data_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the IHL from a length in bytes (rounded down to a multiple of 4; at most 60).
    pub fn set_header_len(&mut self, len: usize) {
        let ihl = (len.min(MAX_HEADER_LEN) / 4) as u8;
        let b = &mut self.data_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ihl;
    }

    pub fn set_tos(&mut self, tos: u8) {
        self.data_mut()[field::TOS] = tos;
    }

    pub fn set_dscp(&mut self, dscp: u8) {
        let tos = (self.tos() & 0x03) | (dscp << 2);
        self.set_tos(tos);
    }

    pub fn set_ecn(&mut self, ecn: u8) {
        let tos = (self.tos() & 0xfc) | (ecn & 0x03);
        self.set_tos(tos);
    }

    pub fn set_total_len(&mut self, len: u16) {
        put16(self.data_mut(), field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        put16(self.data_mut(), field::IDENT, ident);
    }

    fn set_flags_offset(&mut self, value: u16) {
        put16(self.data_mut(), field::FLG_OFF, value);
    }

    pub fn set_reserved_flag(&mut self, on: bool) {
        let v = (self.flags_offset() & !FLAG_RESERVED) | if on { FLAG_RESERVED } else { 0 };
        self.set_flags_offset(v);
    }

    pub fn set_dont_frag(&mut self, on: bool) {
        let v = (self.flags_offset() & !FLAG_DF) | if on { FLAG_DF } else { 0 };
        self.set_flags_offset(v);
    }

    pub fn set_more_frags(&mut self, on: bool) {
        let v = (self.flags_offset() & !FLAG_MF) | if on { FLAG_MF } else { 0 };
        self.set_flags_offset(v);
    }

    /// Sets the fragment offset in 8-byte units (13 bits; higher bits are ignored).
    pub fn set_frag_offset(&mut self, units: u16) {
        let v = (self.flags_offset() & !OFFSET_MASK) | (units & OFFSET_MASK);
        self.set_flags_offset(v);
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.data_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.data_mut()[field::PROTOCOL] = protocol.0;
    }

    pub fn set_checksum(&mut self, value: u16) {
        put16(self.data_mut(), field::CHECKSUM, value);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.data_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.data_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Computes and stores the header checksum (over `header_len` bytes).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = !checksum::data(self.header());
        self.set_checksum(sum);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.data_mut()[field::OPTIONS..end]
    }

    /// The payload (header end to total length, clamped to the buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        let end = usize::from(self.total_len());
        let data = self.data_mut();
        let end = end.min(data.len());
        if start > end {
            return &mut [];
        }
        &mut data[start..end]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed IPv4 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    /// Bytes after the header (total length minus header length).
    pub payload_len: usize,
    pub ttl: u8,
    pub tos: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// Fragment offset in 8-byte units.
    pub frag_offset: u16,
    /// Options bytes; `emit` pads them with zeros (end of option list) to a multiple of 4.
    pub options: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Checks lengths, version 4 (`Malformed`) and the header checksum (`Checksum`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::Malformed);
        }
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let data: &'a [u8] = packet.buffer.as_ref();
        let header_len = packet.header_len();
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            payload_len: usize::from(packet.total_len()) - header_len,
            ttl: packet.ttl(),
            tos: packet.tos(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            options: &data[field::OPTIONS..header_len],
        })
    }

    /// A plain header (no options, DF clear, not a fragment).
    pub fn new(
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
        protocol: IpProtocol,
        payload_len: usize,
        ttl: u8,
    ) -> Repr<'static> {
        Repr {
            src_addr,
            dst_addr,
            protocol,
            payload_len,
            ttl,
            tos: 0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
            options: &[],
        }
    }

    /// Header length `emit` writes: 20 plus the options rounded up to a multiple of 4.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len().div_ceil(4) * 4
    }

    /// Header plus payload: the total length.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload_len
    }

    /// Writes the header (and its checksum); the payload is left for the caller
    /// ([`Packet::payload_mut`]). Panics if the options exceed 40 bytes, if the total length
    /// exceeds 65535, or if the buffer is shorter than [`Repr::header_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let header_len = self.header_len();
        assert!(
            header_len <= MAX_HEADER_LEN,
            "IPv4 options longer than 40 bytes"
        );
        let total_len = u16::try_from(self.buffer_len()).expect("IPv4 total length over 65535");
        let data = packet.data_mut();
        data[field::VER_IHL] = 0x40 | (header_len / 4) as u8;
        packet.set_tos(self.tos);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        let mut fo = self.frag_offset & OFFSET_MASK;
        if self.dont_frag {
            fo |= FLAG_DF;
        }
        if self.more_frags {
            fo |= FLAG_MF;
        }
        packet.set_flags_offset(fo);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        let opts = packet.options_mut();
        opts.fill(0);
        opts[..self.options.len()].copy_from_slice(self.options);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 20-byte header (checksum left zero) + 4-byte payload.
    const HEADER: [u8; 24] = [
        0x45, 0x00, 0x00, 0x18, 0x00, 0x01, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x01,
        0x01, 0xc0, 0xa8, 0x01, 0x02, 0xaa, 0xbb, 0xcc, 0xdd,
    ];

    fn good() -> Vec<u8> {
        let mut v = HEADER.to_vec();
        Packet::new_unchecked(&mut v[..]).fill_checksum();
        v
    }

    #[test]
    fn fields() {
        let v = good();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 24);
        assert_eq!(p.ident(), 1);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert!(!p.is_fragment());
        assert_eq!(p.frag_offset(), 0);
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 168, 1, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 168, 1, 2));
        assert!(p.verify_checksum());
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &[0xaa, 0xbb, 0xcc, 0xdd]);
    }

    #[test]
    fn checksum_known_value() {
        // The classic example header from Wikipedia's IPv4 checksum article.
        let h = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8,
            0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7,
        ];
        let mut buf = h.to_vec();
        buf.resize(0x73, 0);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        let mut q = Packet::new_unchecked(buf.clone());
        q.fill_checksum();
        assert_eq!(q.checksum(), 0xb861);
        buf[10] ^= 1;
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(!p.verify_checksum());
        assert_eq!(Repr::parse(&p), Err(Error::Checksum));
    }

    #[test]
    fn check_len_order() {
        let v = good();
        for len in 0..20 {
            assert_eq!(
                Packet::new_checked(&v[..len]).err(),
                Some(Error::Truncated),
                "len {len}"
            );
        }
        // Header shorter than 20.
        let mut bad = v.clone();
        bad[0] = 0x44;
        assert_eq!(Packet::new_checked(&bad[..]).err(), Some(Error::Malformed));
        // IHL 6 but only 20 bytes.
        let mut bad = v.clone();
        bad[0] = 0x46;
        assert_eq!(
            Packet::new_checked(&bad[..20]).err(),
            Some(Error::Truncated)
        );
        // Total length < header length.
        let mut bad = v.clone();
        bad[3] = 19;
        assert_eq!(Packet::new_checked(&bad[..]).err(), Some(Error::Malformed));
        // Total length beyond the buffer.
        assert_eq!(Packet::new_checked(&v[..23]).err(), Some(Error::Truncated));
        // Padding after the total length is fine and not part of the payload.
        let mut padded = v.clone();
        padded.extend_from_slice(&[0; 10]);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload().len(), 4);
    }

    #[test]
    fn bad_version() {
        let mut v = good();
        v[0] = 0x65;
        Packet::new_unchecked(&mut v[..]).fill_checksum();
        assert_eq!(
            Repr::parse(&Packet::new_checked(&v[..]).unwrap()),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn round_trip_with_options() {
        // Router alert (4 bytes) + a NOP: padded to 8 bytes by emit.
        let opts = [0x94, 0x04, 0x00, 0x00, 0x01];
        let repr = Repr {
            src_addr: Ipv4Addr::new(10, 0, 0, 1),
            dst_addr: Ipv4Addr::new(10, 0, 0, 2),
            protocol: IpProtocol::TCP,
            payload_len: 3,
            ttl: 7,
            tos: 0xb8,
            ident: 0x1234,
            dont_frag: false,
            more_frags: true,
            frag_offset: 0x1fff,
            options: &opts,
        };
        assert_eq!(repr.header_len(), 28);
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(&[1, 2, 3]);
        let p = Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00, 0x01, 0, 0, 0]);
        assert_eq!((p.dscp(), p.ecn()), (0x2e, 0));
        assert_eq!(p.payload(), &[1, 2, 3]);
        let back = Repr::parse(&p).unwrap();
        assert_eq!(
            back,
            Repr {
                options: &[0x94, 0x04, 0x00, 0x00, 0x01, 0, 0, 0],
                ..repr
            }
        );
        // Parse -> emit -> identical bytes.
        let mut again = vec![0u8; back.buffer_len()];
        back.emit(&mut Packet::new_unchecked(&mut again[..]));
        again[28..].copy_from_slice(&[1, 2, 3]);
        assert_eq!(again, buf);
    }

    #[test]
    fn setters() {
        let mut v = good();
        let mut p = Packet::new_unchecked(&mut v[..]);
        p.set_more_frags(true);
        p.set_dont_frag(false);
        p.set_reserved_flag(true);
        p.set_frag_offset(0xffff);
        assert!(p.more_frags() && !p.dont_frag() && p.reserved_flag());
        assert_eq!(p.frag_offset(), 0x1fff);
        p.set_dscp(0x3f);
        p.set_ecn(2);
        assert_eq!(p.tos(), 0xfe);
        p.set_header_len(24);
        assert_eq!(p.ihl(), 6);
        p.set_version(4);
        assert_eq!(p.version(), 4);
        p.set_header_len(20);
        p.set_total_len(16);
        // A total length below the header length leaves an empty payload, never a panic.
        assert!(p.payload_mut().is_empty());
    }
}
