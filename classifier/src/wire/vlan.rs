//! IEEE 802.1Q / 802.1ad VLAN tags.
//!
//! A tag sits where the Ethernet payload would start, after an ethertype of 0x8100 (customer
//! tag) or 0x88a8 (QinQ service tag): 2 bytes of tag control information (priority code point,
//! drop eligible indicator, 12-bit VLAN id) and the 2-byte ethertype of what follows. This view
//! starts at the TCI, i.e. it wraps [`super::ethernet::Packet::payload`] (or the payload of an
//! outer tag).

use super::{be16, put16, Error, EtherType, Result};

mod field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// Length of one tag (TCI + inner ethertype).
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A view of one VLAN tag and what follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it: accessors panic if it is shorter than [`HEADER_LEN`].
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`]: no accessor can panic afterwards.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` when the buffer cannot hold the tag.
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

    /// The raw 16-bit tag control information.
    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI)
    }

    /// Priority code point (3 bits).
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator (formerly CFI).
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (12 bits; 0 means "priority tag only", 0xfff is reserved).
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// Ethertype of what follows the tag.
    pub fn ethertype(&self) -> EtherType {
        EtherType(be16(self.buffer.as_ref(), field::ETHERTYPE))
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Everything after the tag.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_tci(&mut self, tci: u16) {
        put16(self.buffer.as_mut(), field::TCI, tci);
    }

    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (u16::from(pcp & 7) << 13);
        self.set_tci(tci);
    }

    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | if dei { 0x1000 } else { 0 };
        self.set_tci(tci);
    }

    /// Sets the 12-bit VLAN id (higher bits of `vid` are ignored).
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, ethertype.0);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD..]
    }
}

/// A parsed VLAN tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr {
    pub pcp: u8,
    pub dei: bool,
    pub vid: u16,
    /// Ethertype of what follows the tag.
    pub ethertype: EtherType,
}

impl Repr {
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            pcp: packet.pcp(),
            dei: packet.dei(),
            vid: packet.vid(),
            ethertype: packet.ethertype(),
        })
    }

    /// Bytes `emit` writes (the tag only).
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the tag. Panics if the buffer is shorter than [`Repr::buffer_len`].
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_tci(
            (u16::from(self.pcp & 7) << 13)
                | if self.dei { 0x1000 } else { 0 }
                | (self.vid & 0x0fff),
        );
        packet.set_ethertype(self.ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tci_fields() {
        // pcp 5, dei 1, vid 0x123, then IPv4.
        let tag = [0xb1, 0x23, 0x08, 0x00, 0x45];
        let p = Packet::new_checked(&tag[..]).unwrap();
        assert_eq!(p.pcp(), 5);
        assert!(p.dei());
        assert_eq!(p.vid(), 0x123);
        assert_eq!(p.ethertype(), EtherType::IPV4);
        assert_eq!(p.payload(), &[0x45]);
        let repr = Repr::parse(&p).unwrap();
        let mut out = [0u8; 4];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, tag[..4]);
    }

    #[test]
    fn setters_keep_other_bits() {
        let mut buf = [0u8; 4];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_vid(0xfff);
        p.set_pcp(7);
        p.set_dei(true);
        assert_eq!(p.tci(), 0xffff);
        p.set_dei(false);
        p.set_vid(1);
        assert_eq!((p.pcp(), p.dei(), p.vid()), (7, false, 1));
    }

    #[test]
    fn truncated() {
        for len in 0..HEADER_LEN {
            assert_eq!(
                Packet::new_checked(&[0u8; 4][..len]).err(),
                Some(Error::Truncated)
            );
        }
    }
}
