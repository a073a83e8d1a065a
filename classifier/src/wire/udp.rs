//! UDP datagrams (RFC 768): ports, length, checksum (over the IPv4 pseudo-header; 0 means none)
//! and the payload up to the UDP length.

use super::{be16, checksum, put16, Error, IpProtocol, Result};
use std::net::Ipv4Addr;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
    pub const PAYLOAD: usize = 8;
}

/// Length of the header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it: accessors panic if it is shorter than the header.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`]: no accessor can panic afterwards.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer cannot hold the header, `Malformed` if the length field is below
    /// 8, `Truncated` if the buffer is shorter than the length field. Bytes past the length field
    /// are allowed and ignored.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let field_len = usize::from(self.len());
        if field_len < HEADER_LEN {
            return Err(Error::Malformed);
        }
        if len < field_len {
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

    pub fn src_port(&self) -> u16 {
        be16(self.data(), field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        be16(self.data(), field::DST_PORT)
    }

    /// The length field (header plus payload).
    pub fn len(&self) -> u16 {
        be16(self.data(), field::LENGTH)
    }

    /// True when the length field says there is no payload.
    pub fn is_empty(&self) -> bool {
        usize::from(self.len()) <= HEADER_LEN
    }

    pub fn checksum(&self) -> u16 {
        be16(self.data(), field::CHECKSUM)
    }

    /// True when the checksum is absent (0) or verifies over the pseudo-header and the bytes up
    /// to the length field.
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        if self.checksum() == 0 {
            return true;
        }
        let data = self.data();
        let end = usize::from(self.len()).min(data.len());
        datagram_checksum(&data[..end], src_addr, dst_addr) == 0xffff
    }
}

fn datagram_checksum(datagram: &[u8], src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> u16 {
    let len = u32::try_from(datagram.len()).unwrap_or(u32::MAX);
    checksum::combine(&[
        checksum::pseudo_header(src_addr, dst_addr, IpProtocol::UDP, len),
        checksum::data(datagram),
    ])
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Bytes between the header and the length field (clamped to the buffer).
    pub fn payload(&self) -> &'a [u8] {
        let data = self.buffer.as_ref();
        let end = usize::from(self.len()).min(data.len());
        data.get(field::PAYLOAD..end).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn data_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_src_port(&mut self, port: u16) {
        put16(self.data_mut(), field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        put16(self.data_mut(), field::DST_PORT, port);
    }

    pub fn set_len(&mut self, len: u16) {
        put16(self.data_mut(), field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, value: u16) {
        put16(self.data_mut(), field::CHECKSUM, value);
    }

    /// Bytes between the header and the length field (clamped to the buffer).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = usize::from(self.len());
        let data = self.data_mut();
        let end = end.min(data.len());
        if end < field::PAYLOAD {
            return &mut [];
        }
        &mut data[field::PAYLOAD..end]
    }

    /// Computes and stores the checksum over the pseudo-header and the bytes up to the length
    /// field (a computed 0 is sent as 0xffff, as 0 means "no checksum").
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        self.set_checksum(0);
        let end = usize::from(self.len()).min(self.data().len());
        let sum = match !datagram_checksum(&self.data()[..end], src_addr, dst_addr) {
            0 => 0xffff,
            s => s,
        };
        self.set_checksum(sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Checks lengths and the checksum (`Checksum`; an absent checksum is accepted).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) -> Result<Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum(src_addr, dst_addr) {
            return Err(Error::Checksum);
        }
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload: packet.payload(),
        })
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Writes the datagram and its checksum. Panics if the buffer is shorter than
    /// [`Repr::buffer_len`] or the length exceeds 65535.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) {
        let len = u16::try_from(self.buffer_len()).expect("UDP length over 65535");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src_addr, dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 53);

    fn dns_query() -> Vec<u8> {
        let repr = Repr {
            src_port: 40000,
            dst_port: 53,
            payload: b"\x12\x34\x01\x00\x00\x01",
        };
        let mut v = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut v[..]), SRC, DST);
        v
    }

    #[test]
    fn round_trip() {
        let v = dns_query();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len()), (40000, 53, 14));
        assert!(!p.is_empty());
        assert!(p.verify_checksum(SRC, DST));
        assert_ne!(p.checksum(), 0);
        let repr = Repr::parse(&p, SRC, DST).unwrap();
        assert_eq!(repr.payload, b"\x12\x34\x01\x00\x00\x01");
        let mut out = vec![0u8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]), SRC, DST);
        assert_eq!(out, v);
    }

    #[test]
    fn checksum() {
        let mut v = dns_query();
        v[9] ^= 0x10;
        assert_eq!(
            Repr::parse(&Packet::new_checked(&v[..]).unwrap(), SRC, DST),
            Err(Error::Checksum)
        );
        // No checksum: accepted.
        v[6] = 0;
        v[7] = 0;
        assert!(Repr::parse(&Packet::new_checked(&v[..]).unwrap(), SRC, DST).is_ok());
    }

    #[test]
    fn lengths() {
        let v = dns_query();
        for len in 0..v.len() {
            assert_eq!(
                Packet::new_checked(&v[..len]).err(),
                Some(Error::Truncated),
                "len {len}"
            );
        }
        let mut bad = v.clone();
        bad[5] = 7;
        assert_eq!(Packet::new_checked(&bad[..]).err(), Some(Error::Malformed));
        // Trailing bytes beyond the UDP length are not payload and not checksummed.
        let mut padded = v.clone();
        padded.extend_from_slice(&[0xee; 5]);
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(p.payload().len(), 6);
        assert!(p.verify_checksum(SRC, DST));
        // payload_mut never panics when the length field is below 8.
        let mut short = v;
        let mut p = Packet::new_unchecked(&mut short[..]);
        p.set_len(3);
        assert!(p.payload_mut().is_empty());
    }
}
