//! TCP segments (RFC 9293): ports, sequence and acknowledgment numbers, data offset, the flags
//! byte, window, checksum (over the IPv4 pseudo-header), urgent pointer and options.
//!
//! Two ways to read the options: [`OptionIter`] parses them the RFC way (stopping at the first
//! malformed one), and [`find_option_kinds`] walks them exactly like the kernel's
//! `tcp_find_option` (what `-p tcp --tcp-option N` sees), malformed lengths and all.

use super::{be16, be32, checksum, put16, put32, Error, IpProtocol, Result};
use crate::packet::TcpOptionKinds;
use std::net::Ipv4Addr;

/// Bits of the flags byte (offset 13), ECN bits included.
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;
}

/// Option kinds.
pub mod kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMP: u8 = 8;
}

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ: usize = 4;
    pub const ACK: usize = 8;
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
    pub const URGENT: usize = 18;
    pub const OPTIONS: usize = 20;
}

/// Length of the fixed header (data offset 5).
pub const HEADER_LEN: usize = field::OPTIONS;
/// Longest header (data offset 15: 40 bytes of options).
pub const MAX_HEADER_LEN: usize = 60;

/// A view of a TCP segment (the whole IP payload: the checksum covers all of it).
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

    /// `Truncated` if the buffer cannot hold 20 bytes, `Malformed` if the data offset is below 5,
    /// `Truncated` if the buffer cannot hold the options the data offset announces.
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

    pub fn seq_number(&self) -> u32 {
        be32(self.data(), field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        be32(self.data(), field::ACK)
    }

    /// The raw data offset (header length in 32-bit words).
    pub fn data_offset(&self) -> u8 {
        self.data()[field::DATA_OFFSET] >> 4
    }

    /// Header length in bytes (`data_offset * 4`).
    pub fn header_len(&self) -> usize {
        usize::from(self.data_offset()) * 4
    }

    /// The (historic) ECN nonce bit, the low bit of byte 12.
    pub fn ns(&self) -> bool {
        self.data()[field::DATA_OFFSET] & 1 != 0
    }

    /// The whole flags byte (offset 13), see [`flags`].
    pub fn flags(&self) -> u8 {
        self.data()[field::FLAGS]
    }

    pub fn fin(&self) -> bool {
        self.flags() & flags::FIN != 0
    }
    pub fn syn(&self) -> bool {
        self.flags() & flags::SYN != 0
    }
    pub fn rst(&self) -> bool {
        self.flags() & flags::RST != 0
    }
    pub fn psh(&self) -> bool {
        self.flags() & flags::PSH != 0
    }
    pub fn ack(&self) -> bool {
        self.flags() & flags::ACK != 0
    }
    pub fn urg(&self) -> bool {
        self.flags() & flags::URG != 0
    }
    pub fn ece(&self) -> bool {
        self.flags() & flags::ECE != 0
    }
    pub fn cwr(&self) -> bool {
        self.flags() & flags::CWR != 0
    }

    pub fn window_len(&self) -> u16 {
        be16(self.data(), field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        be16(self.data(), field::CHECKSUM)
    }

    pub fn urgent_at(&self) -> u16 {
        be16(self.data(), field::URGENT)
    }

    /// The options area (`header_len - 20` bytes).
    pub fn options(&self) -> &[u8] {
        &self.data()[field::OPTIONS..self.header_len()]
    }

    /// RFC-style iterator over the options area (never reads past it).
    pub fn options_iter(&self) -> OptionIter<'_> {
        OptionIter::new(self.options())
    }

    /// Option kinds as the kernel's `tcp_find_option` walks them.
    pub fn option_kinds(&self) -> TcpOptionKinds {
        find_option_kinds(self.options())
    }

    /// True when the checksum over the pseudo-header and the whole buffer verifies.
    pub fn verify_checksum(&self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> bool {
        segment_checksum(self.data(), src_addr, dst_addr) == 0xffff
    }
}

/// Sum of the pseudo-header and `segment` (0xffff when a stored checksum verifies).
fn segment_checksum(segment: &[u8], src_addr: Ipv4Addr, dst_addr: Ipv4Addr) -> u16 {
    // A segment longer than u32::MAX cannot exist in an IPv4 datagram; saturate rather than wrap.
    let len = u32::try_from(segment.len()).unwrap_or(u32::MAX);
    checksum::combine(&[
        checksum::pseudo_header(src_addr, dst_addr, IpProtocol::TCP, len),
        checksum::data(segment),
    ])
}

impl<'a, T: AsRef<[u8]> + ?Sized> Packet<&'a T> {
    /// Bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
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

    pub fn set_seq_number(&mut self, seq: u32) {
        put32(self.data_mut(), field::SEQ, seq);
    }

    pub fn set_ack_number(&mut self, ack: u32) {
        put32(self.data_mut(), field::ACK, ack);
    }

    /// Sets the data offset from a header length in bytes (rounded down to a multiple of 4;
    /// at most 60). Clears the reserved bits and NS.
    pub fn set_header_len(&mut self, len: usize) {
        self.data_mut()[field::DATA_OFFSET] = ((len.min(MAX_HEADER_LEN) / 4) as u8) << 4;
    }

    pub fn set_flags(&mut self, flags: u8) {
        self.data_mut()[field::FLAGS] = flags;
    }

    pub fn set_window_len(&mut self, window: u16) {
        put16(self.data_mut(), field::WINDOW, window);
    }

    pub fn set_checksum(&mut self, value: u16) {
        put16(self.data_mut(), field::CHECKSUM, value);
    }

    pub fn set_urgent_at(&mut self, urgent: u16) {
        put16(self.data_mut(), field::URGENT, urgent);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.data_mut()[field::OPTIONS..end]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let start = self.header_len();
        &mut self.data_mut()[start..]
    }

    /// Computes and stores the checksum over the pseudo-header and the whole buffer.
    pub fn fill_checksum(&mut self, src_addr: Ipv4Addr, dst_addr: Ipv4Addr) {
        self.set_checksum(0);
        let sum = !segment_checksum(self.data(), src_addr, dst_addr);
        self.set_checksum(sum);
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Packet<T> {
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// Which option kinds `tcp_find_option` (`net/netfilter/xt_tcpudp.c`) would find in `options`.
///
/// The kernel walks `i = 0; while i < optlen { if op[i] == wanted: found; if op[i] < 2 { i += 1 }
/// else { i += op[i+1] ? op[i+1] : 1 } }`, so every byte the walk lands on counts as a kind, even
/// inside a malformed option, and a length byte of 0 advances by one. When the length byte would
/// be past the options area the kernel reads one byte beyond it; here that byte is taken as 0
/// (advance by one), which ends the walk either way, and nothing past `options` is read.
pub fn find_option_kinds(options: &[u8]) -> TcpOptionKinds {
    let mut kinds = TcpOptionKinds::default();
    let mut i = 0usize;
    while let Some(&kind) = options.get(i) {
        kinds.insert(kind);
        i += if kind < 2 {
            1
        } else {
            match options.get(i + 1) {
                Some(&0) | None => 1,
                Some(&len) => usize::from(len),
            }
        };
    }
    kinds
}

/// One TCP option.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpOption<'a> {
    /// Kind 0: the end of the list (the iterator stops after it).
    EndOfList,
    /// Kind 1.
    NoOperation,
    /// Kind 2, length 4.
    MaxSegmentSize(u16),
    /// Kind 3, length 3.
    WindowScale(u8),
    /// Kind 4, length 2.
    SackPermitted,
    /// Kind 5: 1 to 4 (left, right) edges, 8 bytes each (raw).
    SackRange(&'a [u8]),
    /// Kind 8, length 10.
    Timestamp { tsval: u32, tsecr: u32 },
    /// Any other kind, with its data (after kind and length).
    Unknown { kind: u8, data: &'a [u8] },
}

impl TcpOption<'_> {
    pub fn kind(&self) -> u8 {
        match self {
            TcpOption::EndOfList => kind::END_OF_LIST,
            TcpOption::NoOperation => kind::NOP,
            TcpOption::MaxSegmentSize(_) => kind::MSS,
            TcpOption::WindowScale(_) => kind::WINDOW_SCALE,
            TcpOption::SackPermitted => kind::SACK_PERMITTED,
            TcpOption::SackRange(_) => kind::SACK,
            TcpOption::Timestamp { .. } => kind::TIMESTAMP,
            TcpOption::Unknown { kind, .. } => *kind,
        }
    }

    /// Bytes `emit` writes.
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(d) | TcpOption::Unknown { data: d, .. } => 2 + d.len(),
            TcpOption::Timestamp { .. } => 10,
        }
    }

    /// Writes the option at the start of `buffer` and returns its length. Panics if `buffer` is
    /// shorter than [`TcpOption::buffer_len`] or if the data of a SACK/unknown option is longer
    /// than 253 bytes.
    pub fn emit(&self, buffer: &mut [u8]) -> usize {
        let len = self.buffer_len();
        let out = &mut buffer[..len];
        out[0] = self.kind();
        if len > 1 {
            out[1] = u8::try_from(len).expect("TCP option longer than 255 bytes");
        }
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::SackPermitted => {}
            TcpOption::MaxSegmentSize(mss) => put16(out, 2, *mss),
            TcpOption::WindowScale(shift) => out[2] = *shift,
            TcpOption::SackRange(d) | TcpOption::Unknown { data: d, .. } => {
                out[2..].copy_from_slice(d)
            }
            TcpOption::Timestamp { tsval, tsecr } => {
                put32(out, 2, *tsval);
                put32(out, 6, *tsecr);
            }
        }
        len
    }
}

/// RFC-style iterator over an options area: yields each option, stops after
/// [`TcpOption::EndOfList`] or after yielding one error (`Truncated` when a length byte or the
/// option's data is missing, `Malformed` when a length is below 2 or wrong for a known kind).
/// It only ever reads inside the slice it was given.
#[derive(Clone, Debug)]
pub struct OptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> OptionIter<'a> {
    pub fn new(options: &'a [u8]) -> OptionIter<'a> {
        OptionIter { rest: options }
    }

    fn parse_one(&mut self) -> Result<TcpOption<'a>> {
        let rest = self.rest;
        let (&kind, after_kind) = rest.split_first().ok_or(Error::Truncated)?;
        match kind {
            kind::END_OF_LIST => {
                self.rest = &[];
                return Ok(TcpOption::EndOfList);
            }
            kind::NOP => {
                self.rest = after_kind;
                return Ok(TcpOption::NoOperation);
            }
            _ => {}
        }
        let len = usize::from(*after_kind.first().ok_or(Error::Truncated)?);
        if len < 2 {
            return Err(Error::Malformed);
        }
        let data = rest.get(2..len).ok_or(Error::Truncated)?;
        self.rest = rest.get(len..).unwrap_or(&[]);
        let option = match (kind, data.len()) {
            (kind::MSS, 2) => TcpOption::MaxSegmentSize(be16(data, 0)),
            (kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (kind::SACK, n) if n > 0 && n % 8 == 0 => TcpOption::SackRange(data),
            (kind::TIMESTAMP, 8) => TcpOption::Timestamp {
                tsval: be32(data, 0),
                tsecr: be32(data, 4),
            },
            (
                kind::MSS
                | kind::WINDOW_SCALE
                | kind::SACK_PERMITTED
                | kind::SACK
                | kind::TIMESTAMP,
                _,
            ) => return Err(Error::Malformed),
            (kind, _) => TcpOption::Unknown { kind, data },
        };
        Ok(option)
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.parse_one();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

impl core::iter::FusedIterator for OptionIter<'_> {}

/// A parsed TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Repr<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq_number: u32,
    pub ack_number: u32,
    /// The flags byte, see [`flags`].
    pub flags: u8,
    pub window_len: u16,
    pub urgent_at: u16,
    /// Options bytes; `emit` pads them with zeros (end of option list) to a multiple of 4.
    pub options: &'a [u8],
    pub payload: &'a [u8],
}

impl<'a> Repr<'a> {
    /// Checks lengths and the checksum (`Checksum`) against the given pseudo-header addresses.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) -> Result<Repr<'a>> {
        packet.check_len()?;
        if !packet.verify_checksum(src_addr, dst_addr) {
            return Err(Error::Checksum);
        }
        let data: &'a [u8] = packet.buffer.as_ref();
        let header_len = packet.header_len();
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            seq_number: packet.seq_number(),
            ack_number: packet.ack_number(),
            flags: packet.flags(),
            window_len: packet.window_len(),
            urgent_at: packet.urgent_at(),
            options: &data[field::OPTIONS..header_len],
            payload: &data[header_len..],
        })
    }

    /// Header length `emit` writes: 20 plus the options rounded up to a multiple of 4.
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.len().div_ceil(4) * 4
    }

    /// Header plus payload.
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Writes the segment (header, options, payload) and its checksum over the first
    /// [`Repr::buffer_len`] bytes. Panics if the options exceed 40 bytes or the buffer is shorter
    /// than `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        packet: &mut Packet<T>,
        src_addr: Ipv4Addr,
        dst_addr: Ipv4Addr,
    ) {
        let header_len = self.header_len();
        assert!(
            header_len <= MAX_HEADER_LEN,
            "TCP options longer than 40 bytes"
        );
        let total = self.buffer_len();
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_seq_number(self.seq_number);
        packet.set_ack_number(self.ack_number);
        packet.set_header_len(header_len);
        packet.set_flags(self.flags);
        packet.set_window_len(self.window_len);
        packet.set_urgent_at(self.urgent_at);
        packet.set_checksum(0);
        let data = packet.data_mut();
        let opts = &mut data[field::OPTIONS..header_len];
        opts.fill(0);
        opts[..self.options.len()].copy_from_slice(self.options);
        data[header_len..total].copy_from_slice(self.payload);
        let sum = !segment_checksum(&data[..total], src_addr, dst_addr);
        packet.set_checksum(sum);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const SRC: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 1);
    pub(crate) const DST: Ipv4Addr = Ipv4Addr::new(192, 168, 122, 99);

    /// A Linux SYN (40-byte header: MSS, SACK permitted, timestamps, NOP, window scale),
    /// checksum computed for SRC -> DST.
    pub(crate) fn syn() -> Vec<u8> {
        let mut v = vec![
            0xb4, 0x2e, 0x00, 0x16, // 46126 -> 22
            0x5d, 0x4f, 0x1e, 0x7a, // seq
            0x00, 0x00, 0x00, 0x00, // ack
            0xa0, 0x02, 0xfa, 0xf0, // doff 10, SYN, window 64240
            0x00, 0x00, 0x00, 0x00, // checksum, urgent
            0x02, 0x04, 0x05, 0xb4, // MSS 1460
            0x04, 0x02, // SACK permitted
            0x08, 0x0a, 0x9a, 0x3b, 0x4c, 0x11, 0x00, 0x00, 0x00, 0x00, // timestamps
            0x01, // NOP
            0x03, 0x03, 0x07, // window scale 7
        ];
        Packet::new_unchecked(&mut v[..]).fill_checksum(SRC, DST);
        v
    }

    #[test]
    fn fields() {
        let v = syn();
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port()), (46126, 22));
        assert_eq!(p.seq_number(), 0x5d4f1e7a);
        assert_eq!(p.ack_number(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.flags(), flags::SYN);
        assert!(
            p.syn()
                && !p.ack()
                && !p.fin()
                && !p.rst()
                && !p.psh()
                && !p.urg()
                && !p.ece()
                && !p.cwr()
        );
        assert!(!p.ns());
        assert_eq!(p.window_len(), 64240);
        assert_eq!(p.urgent_at(), 0);
        assert_eq!(p.options().len(), 20);
        assert!(p.payload().is_empty());
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(DST, Ipv4Addr::new(1, 2, 3, 4)));
        let opts: Vec<_> = p.options_iter().collect::<Result<_>>().unwrap();
        assert_eq!(
            opts,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamp {
                    tsval: 0x9a3b4c11,
                    tsecr: 0
                },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
        let kinds = p.option_kinds();
        for k in [1, 2, 3, 4, 8] {
            assert!(kinds.contains(k), "kind {k}");
        }
        assert!(!kinds.contains(0) && !kinds.contains(5));
    }

    #[test]
    fn round_trip() {
        let v = syn();
        let p = Packet::new_checked(&v[..]).unwrap();
        let repr = Repr::parse(&p, SRC, DST).unwrap();
        assert_eq!(repr.buffer_len(), 40);
        let mut out = vec![0xffu8; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]), SRC, DST);
        assert_eq!(out, v);
        // With a payload and unpadded options.
        let repr2 = Repr {
            options: &[2, 4, 1, 0, 1],
            payload: b"hello",
            flags: flags::ACK | flags::PSH,
            ..repr
        };
        let mut out = vec![0u8; repr2.buffer_len()];
        repr2.emit(&mut Packet::new_unchecked(&mut out[..]), SRC, DST);
        let p = Packet::new_checked(&out[..]).unwrap();
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.payload(), b"hello");
        let back = Repr::parse(&p, SRC, DST).unwrap();
        assert_eq!(
            back,
            Repr {
                options: &[2, 4, 1, 0, 1, 0, 0, 0],
                ..repr2
            }
        );
    }

    #[test]
    fn checksum_detects_corruption() {
        let mut v = syn();
        v.extend_from_slice(b"x");
        let p = Packet::new_checked(&v[..]).unwrap();
        assert_eq!(Repr::parse(&p, SRC, DST), Err(Error::Checksum));
        let mut p = Packet::new_unchecked(&mut v[..]);
        p.fill_checksum(SRC, DST);
        assert!(p.verify_checksum(SRC, DST));
    }

    #[test]
    fn every_truncation() {
        let v = syn();
        for len in 0..v.len() {
            let r = Packet::new_checked(&v[..len]);
            assert_eq!(r.err(), Some(Error::Truncated), "len {len}");
        }
        let mut bad = v.clone();
        bad[12] = 0x40;
        assert_eq!(Packet::new_checked(&bad[..]).err(), Some(Error::Malformed));
        let mut bad = v;
        bad[12] = 0xf0;
        assert_eq!(Packet::new_checked(&bad[..]).err(), Some(Error::Truncated));
    }

    #[test]
    fn option_iter_errors() {
        fn collect(o: &[u8]) -> Vec<Result<TcpOption<'_>>> {
            OptionIter::new(o).collect()
        }
        assert_eq!(collect(&[]), []);
        assert_eq!(
            collect(&[1, 0, 2, 4]),
            [Ok(TcpOption::NoOperation), Ok(TcpOption::EndOfList)]
        );
        assert_eq!(collect(&[2]), [Err(Error::Truncated)]);
        assert_eq!(collect(&[2, 4, 5]), [Err(Error::Truncated)]);
        assert_eq!(collect(&[2, 1, 5, 5]), [Err(Error::Malformed)]);
        assert_eq!(collect(&[2, 3, 5, 5]), [Err(Error::Malformed)]);
        assert_eq!(
            collect(&[1, 5, 2, 1]),
            [Ok(TcpOption::NoOperation), Err(Error::Malformed)]
        );
        assert_eq!(
            collect(&[5, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
            [Ok(TcpOption::SackRange(&[0, 0, 0, 1, 0, 0, 0, 2]))]
        );
        assert_eq!(
            collect(&[99, 3, 7, 1]),
            [
                Ok(TcpOption::Unknown {
                    kind: 99,
                    data: &[7]
                }),
                Ok(TcpOption::NoOperation)
            ]
        );
    }

    #[test]
    fn option_emit() {
        let opts = [
            TcpOption::MaxSegmentSize(1460),
            TcpOption::SackPermitted,
            TcpOption::Timestamp { tsval: 1, tsecr: 2 },
            TcpOption::NoOperation,
            TcpOption::WindowScale(7),
            TcpOption::SackRange(&[0, 0, 0, 1, 0, 0, 0, 2]),
            TcpOption::Unknown {
                kind: 30,
                data: &[1, 2],
            },
            TcpOption::EndOfList,
        ];
        let mut buf = [0u8; 64];
        let mut n = 0;
        for o in &opts {
            n += o.emit(&mut buf[n..]);
        }
        let back: Vec<_> = OptionIter::new(&buf[..n]).collect::<Result<_>>().unwrap();
        assert_eq!(back, opts);
    }

    #[test]
    fn kernel_walk() {
        // A length byte of 0 advances by one, landing on the 0 itself (END_OF_LIST kind).
        let k = find_option_kinds(&[30, 0, 7]);
        assert!(k.contains(30) && k.contains(0) && k.contains(7));
        // A length byte jumping over bytes hides them.
        let k = find_option_kinds(&[30, 3, 8, 9]);
        assert!(k.contains(30) && !k.contains(3) && !k.contains(8) && k.contains(9));
        // A kind in the last byte: its length byte is missing, taken as 0.
        let k = find_option_kinds(&[1, 1, 1, 254]);
        assert!(k.contains(1) && k.contains(254));
        // END_OF_LIST does not stop the kernel walk.
        let k = find_option_kinds(&[0, 19, 2, 0]);
        assert!(k.contains(0) && k.contains(19) && !k.contains(2));
        // A length past the end stops the walk.
        let k = find_option_kinds(&[40, 200, 5, 5]);
        assert!(k.contains(40) && !k.contains(5));
        assert_eq!(find_option_kinds(&[]), TcpOptionKinds::default());
    }
}
