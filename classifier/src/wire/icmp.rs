//! ICMP messages (RFC 792): type, code, checksum (over the whole message), the 4-byte rest of
//! header, and the data. Error messages (types 3, 4, 5, 11, 12) quote the offending datagram's
//! IPv4 header and at least the first 8 bytes of its payload; [`Packet::quoted`] gives a
//! bounds-checked view of that quote.

use super::{be16, checksum, ipv4, put16, Error, Result};
use core::fmt;
use std::net::Ipv4Addr;

/// An ICMP message type; the constants name the common ones, any value is kept as is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Message(pub u8);

impl Message {
    pub const ECHO_REPLY: Message = Message(0);
    pub const DST_UNREACHABLE: Message = Message(3);
    pub const SOURCE_QUENCH: Message = Message(4);
    pub const REDIRECT: Message = Message(5);
    pub const ECHO_REQUEST: Message = Message(8);
    pub const ROUTER_ADVERT: Message = Message(9);
    pub const ROUTER_SOLICIT: Message = Message(10);
    pub const TIME_EXCEEDED: Message = Message(11);
    pub const PARAM_PROBLEM: Message = Message(12);
    pub const TIMESTAMP: Message = Message(13);
    pub const TIMESTAMP_REPLY: Message = Message(14);

    /// Error messages, which quote the offending datagram (what the kernel's
    /// `icmp_is_err` calls an error).
    pub fn is_error(self) -> bool {
        matches!(self.0, 3 | 4 | 5 | 11 | 12)
    }
}

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Codes of [`Message::DST_UNREACHABLE`] (the ones REJECT sends among them).
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const SOURCE_ROUTE_FAILED: u8 = 5;
    pub const NET_UNKNOWN: u8 = 6;
    pub const HOST_UNKNOWN: u8 = 7;
    pub const NET_PROHIBITED: u8 = 9;
    pub const HOST_PROHIBITED: u8 = 10;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// Linux quotes at most this many bytes of the offending datagram in an error it sends
/// (576 - 20 - 8: the reply fits in the minimum IPv4 MTU).
pub const MAX_QUOTE_LEN: usize = 548;

mod field {
    use core::ops::Range;
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const REST: Range<usize> = 4..8;
    pub const DATA: usize = 8;
}

/// Length of the header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = field::DATA;

/// Bytes of the quoted datagram's payload an error message must carry (RFC 792).
pub const QUOTED_PAYLOAD_LEN: usize = 8;

/// A view of an ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it: accessors panic if it is shorter than 8 bytes.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`]: no accessor can panic afterwards.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` when the buffer cannot hold the 8-byte header.
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn data_all(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> Message {
        Message(self.data_all()[field::TYPE])
    }

    pub fn msg_code(&self) -> u8 {
        self.data_all()[field::CODE]
    }

    pub fn checksum(&self) -> u16 {
        be16(self.data_all(), field::CHECKSUM)
    }

    /// Bytes 4..8, whose meaning depends on the type.
    pub fn rest_of_header(&self) -> [u8; 4] {
        let mut r = [0u8; 4];
        r.copy_from_slice(&self.data_all()[field::REST]);
        r
    }

    /// Echo request/reply identifier (bytes 4..6).
    pub fn echo_ident(&self) -> u16 {
        be16(self.data_all(), 4)
    }

    /// Echo request/reply sequence number (bytes 6..8).
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.data_all(), 6)
    }

    /// Next-hop MTU of a "fragmentation needed" message (bytes 6..8).
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.data_all(), 6)
    }

    /// Pointer of a parameter problem message (byte 4).
    pub fn pointer(&self) -> u8 {
        self.data_all()[4]
    }

    /// Gateway of a redirect message (bytes 4..8).
    pub fn gateway(&self) -> Ipv4Addr {
        let r = self.rest_of_header();
        Ipv4Addr::new(r[0], r[1], r[2], r[3])
    }

    /// True when the checksum over the whole buffer verifies.
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.data_all()) == 0xffff
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Bytes after the 8-byte header.
    pub fn data(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::DATA..]
    }

    /// The quoted datagram of an error message: `Unsupported` for a type that is not an error,
    /// `Truncated` when the data cannot hold a 20-byte header or the header its IHL announces,
    /// `Malformed` when the quoted version is not 4 or its IHL is below 5.
    pub fn quoted(&self) -> Result<Quoted<'a>> {
        if !self.msg_type().is_error() {
            return Err(Error::Unsupported);
        }
        Quoted::parse(self.data())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn data_all_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_msg_type(&mut self, msg_type: Message) {
        self.data_all_mut()[field::TYPE] = msg_type.0;
    }

    pub fn set_msg_code(&mut self, code: u8) {
        self.data_all_mut()[field::CODE] = code;
    }

    pub fn set_checksum(&mut self, value: u16) {
        put16(self.data_all_mut(), field::CHECKSUM, value);
    }

    pub fn set_rest_of_header(&mut self, rest: [u8; 4]) {
        self.data_all_mut()[field::REST].copy_from_slice(&rest);
    }

    pub fn set_echo_ident(&mut self, ident: u16) {
        put16(self.data_all_mut(), 4, ident);
    }

    pub fn set_echo_seq_no(&mut self, seq: u16) {
        put16(self.data_all_mut(), 6, seq);
    }

    pub fn set_next_hop_mtu(&mut self, mtu: u16) {
        put16(self.data_all_mut(), 6, mtu);
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.data_all_mut()[field::DATA..]
    }

    /// Computes and stores the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = !checksum::data(self.data_all());
        self.set_checksum(sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// The datagram an ICMP error quotes: its IPv4 header (options included) and up to the first
/// 8 bytes of its payload. Every accessor is bounds-checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quoted<'a> {
    header: &'a [u8],
    payload: &'a [u8],
}

impl<'a> Quoted<'a> {
    /// Reads a quote from an error message's data (see [`Packet::quoted`]).
    pub fn parse(data: &'a [u8]) -> Result<Quoted<'a>> {
        let first = *data.first().ok_or(Error::Truncated)?;
        if data.len() < ipv4::HEADER_LEN {
            return Err(Error::Truncated);
        }
        if first >> 4 != 4 {
            return Err(Error::Malformed);
        }
        let header_len = usize::from(first & 0x0f) * 4;
        if header_len < ipv4::HEADER_LEN {
            return Err(Error::Malformed);
        }
        let header = data.get(..header_len).ok_or(Error::Truncated)?;
        let rest = data.get(header_len..).unwrap_or(&[]);
        // The quoted datagram's payload ends at its total length (when the quote is whole) and
        // only its first 8 bytes are promised.
        let total_len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let payload_len = rest
            .len()
            .min(QUOTED_PAYLOAD_LEN)
            .min(total_len.saturating_sub(header_len));
        Ok(Quoted {
            header,
            payload: &rest[..payload_len],
        })
    }

    /// The quoted IPv4 header as a view over exactly its `ihl * 4` bytes: every accessor works
    /// (its `payload()` is empty, its `total_len()` is the original datagram's).
    pub fn header(&self) -> ipv4::Packet<&'a [u8]> {
        ipv4::Packet::new_unchecked(self.header)
    }

    /// Up to 8 bytes of the quoted datagram's payload (fewer when the datagram or the quote was
    /// shorter).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        self.header().src_addr()
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        self.header().dst_addr()
    }

    pub fn protocol(&self) -> ipv4::IpProtocol {
        self.header().protocol()
    }

    /// The first two 16-bit words of the quoted payload (ports for TCP, UDP, SCTP, DCCP,
    /// UDP-Lite), when present.
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.payload {
            [a, b, c, d, ..] => Some((u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d]))),
            _ => None,
        }
    }
}

/// A parsed ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    pub msg_type: Message,
    pub code: u8,
    /// Bytes 4..8 (echo id and sequence, next-hop MTU, pointer, gateway, or zero).
    pub rest: [u8; 4],
    pub data: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Checks the length and the checksum (`Checksum`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            msg_type: packet.msg_type(),
            code: packet.msg_code(),
            rest: packet.rest_of_header(),
            data: packet.data(),
        })
    }

    pub fn echo_request(ident: u16, seq_no: u16, data: &'a [u8]) -> Repr<'a> {
        Repr {
            msg_type: Message::ECHO_REQUEST,
            code: 0,
            rest: echo_rest(ident, seq_no),
            data,
        }
    }

    pub fn echo_reply(ident: u16, seq_no: u16, data: &'a [u8]) -> Repr<'a> {
        Repr {
            msg_type: Message::ECHO_REPLY,
            code: 0,
            rest: echo_rest(ident, seq_no),
            data,
        }
    }

    /// A destination unreachable error (`code` from [`unreachable`]) quoting `original` (the
    /// offending datagram from its IPv4 header on, cut to [`MAX_QUOTE_LEN`] by the caller as
    /// it sees fit).
    pub fn dst_unreachable(code: u8, original: &'a [u8]) -> Repr<'a> {
        Repr {
            msg_type: Message::DST_UNREACHABLE,
            code,
            rest: [0; 4],
            data: original,
        }
    }

    /// Header plus data.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.data.len()
    }

    /// Writes the message and its checksum over the first [`Repr::buffer_len`] bytes. Panics if
    /// the buffer is shorter than that.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let len = self.buffer_len();
        let buf = &mut packet.data_all_mut()[..len];
        buf[field::TYPE] = self.msg_type.0;
        buf[field::CODE] = self.code;
        buf[field::CHECKSUM..field::CHECKSUM + 2].fill(0);
        buf[field::REST].copy_from_slice(&self.rest);
        buf[field::DATA..].copy_from_slice(self.data);
        let sum = !checksum::data(buf);
        put16(buf, field::CHECKSUM, sum);
    }
}

fn echo_rest(ident: u16, seq_no: u16) -> [u8; 4] {
    let [a, b] = ident.to_be_bytes();
    let [c, d] = seq_no.to_be_bytes();
    [a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::IpProtocol;

    fn ping() -> Vec<u8> {
        let repr = Repr::echo_request(0x1234, 7, b"abcdefgh");
        let mut v = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut v[..]));
        v
    }

    #[test]
    fn echo_round_trip() {
        let v = ping();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(p.msg_type(), Message::ECHO_REQUEST);
        assert_eq!(
            (p.msg_code(), p.echo_ident(), p.echo_seq_no()),
            (0, 0x1234, 7)
        );
        assert!(p.verify_checksum());
        assert_eq!(p.data(), b"abcdefgh");
        assert_eq!(p.quoted(), Err(Error::Unsupported));
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(repr, Repr::echo_request(0x1234, 7, b"abcdefgh"));
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, v);
        // fill_checksum agrees with emit.
        let mut q = Packet::new_unchecked(out);
        let stored = q.checksum();
        q.fill_checksum();
        assert_eq!(q.checksum(), stored);
    }

    #[test]
    fn checksum_and_truncation() {
        let mut v = ping();
        v[9] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&v[..]).unwrap()),
            Err(Error::Checksum)
        );
        for len in 0..HEADER_LEN {
            assert_eq!(Packet::new_checked(&v[..len]).err(), Some(Error::Truncated));
        }
    }

    fn offending() -> Vec<u8> {
        // A UDP datagram 10.0.0.1:5000 -> 10.0.0.2:53 with 4 bytes of payload, IP options (NOP x4).
        let opts = [1, 1, 1, 1];
        let ip = ipv4::Repr {
            options: &opts,
            ..ipv4::Repr::new(
                Ipv4Addr::new(10, 0, 0, 1),
                Ipv4Addr::new(10, 0, 0, 2),
                IpProtocol::UDP,
                12,
                64,
            )
        };
        let mut v = vec![0u8; ip.buffer_len()];
        let mut p = ipv4::Packet::new_unchecked(&mut v[..]);
        ip.emit(&mut p);
        p.payload_mut()
            .copy_from_slice(&[0x13, 0x88, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4]);
        v
    }

    #[test]
    fn quoted_header() {
        let orig = offending();
        let repr = Repr::dst_unreachable(unreachable::PORT, &orig);
        let mut v = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut v[..]));
        let p = Packet::new_checked(&v[..]).unwrap();
        assert!(p.msg_type().is_error());
        let q = p.quoted().unwrap();
        assert_eq!(q.header().header_len(), 24);
        assert_eq!(q.header().options(), &[1, 1, 1, 1]);
        assert!(q.header().verify_checksum());
        assert!(q.header().payload().is_empty());
        assert_eq!(q.header().total_len(), 36);
        assert_eq!(q.src_addr(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(q.dst_addr(), Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(q.protocol(), IpProtocol::UDP);
        assert_eq!(q.payload().len(), 8);
        assert_eq!(q.ports(), Some((5000, 53)));

        // Every cut of the quote: an error or a shorter payload, never a panic.
        for cut in 0..orig.len() {
            let r = Quoted::parse(&orig[..cut]);
            match cut {
                0..=23 => assert_eq!(r, Err(Error::Truncated), "cut {cut}"),
                _ => assert_eq!(r.unwrap().payload().len(), (cut - 24).min(8)),
            }
        }
        let mut bad = orig.clone();
        bad[0] = 0x65;
        assert_eq!(Quoted::parse(&bad), Err(Error::Malformed));
        bad[0] = 0x44;
        assert_eq!(Quoted::parse(&bad), Err(Error::Malformed));
        // A quoted datagram whose payload is shorter than 8 bytes.
        let mut short = orig;
        short[3] = 26;
        assert_eq!(Quoted::parse(&short).unwrap().payload(), &[0x13, 0x88]);
        assert_eq!(Quoted::parse(&short).unwrap().ports(), None);
    }

    #[test]
    fn rest_accessors() {
        let mut v = [0u8; 8];
        let mut p = Packet::new_unchecked(&mut v[..]);
        p.set_msg_type(Message::DST_UNREACHABLE);
        p.set_msg_code(unreachable::FRAG_NEEDED);
        p.set_next_hop_mtu(1400);
        assert_eq!(p.next_hop_mtu(), 1400);
        p.set_rest_of_header([192, 0, 2, 1]);
        assert_eq!(p.gateway(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.pointer(), 192);
        p.set_echo_ident(1);
        p.set_echo_seq_no(2);
        assert_eq!(p.rest_of_header(), [0, 1, 0, 2]);
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert!(p.data_mut().is_empty());
    }
}
