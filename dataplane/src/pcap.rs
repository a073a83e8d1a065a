//! Classic libpcap capture files (the `.pcap` format of tcpdump, not pcapng).
//!
//! A file is a 24-byte global header followed by records, each a 16-byte record header and the
//! captured bytes:
//!
//! ```text
//! global: magic u32 | version_major u16 | version_minor u16 | thiszone i32 | sigfigs u32
//!         | snaplen u32 | linktype u32
//! record: ts_sec u32 | ts_frac u32 | incl_len u32 | orig_len u32 | incl_len bytes
//! ```
//!
//! The magic tells both the byte order of every later field (it reads as `0xd4c3b2a1` when
//! swapped) and the timestamp resolution: `0xa1b2c3d4` for microseconds, `0xa1b23c4d` for
//! nanoseconds. Timestamps are handed out in nanoseconds either way.
//!
//! The link type is reported to the caller as is ([`LinkType`]): pollwall replays
//! [`LinkType::ETHERNET`] (1) frames and raw IPv4 datagrams ([`LinkType::RAW`], 101, and
//! [`LinkType::IPV4`], 228).
//!
//! Reading is bounds-checked throughout: a truncated or hostile file yields a [`PcapError`], never
//! a panic, and no record buffer is larger than the file's snaplen capped at [`MAX_RECORD`]
//! (256 KiB), whatever the record header claims. Two readers share the parsing:
//! [`PcapReader`] over any [`Read`] (owned [`Frame`]s) and [`PcapSlice`] over a byte slice
//! (borrowed [`FrameRef`]s, no copy). [`PcapWriter`] writes little-endian files.

use std::fmt;
use std::io::{self, Read, Write};

/// The largest record accepted or written: 256 KiB (tcpdump's default snaplen).
pub const MAX_RECORD: u32 = 256 * 1024;

const MAGIC_MICROS: u32 = 0xa1b2_c3d4;
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
const GLOBAL_HEADER_LEN: usize = 24;
const RECORD_HEADER_LEN: usize = 16;

/// A libpcap link type (`LINKTYPE_*`), with the FCS bits of the header field masked off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinkType(pub u32);

impl LinkType {
    /// `LINKTYPE_ETHERNET`: Ethernet II frames (no FCS).
    pub const ETHERNET: LinkType = LinkType(1);
    /// `LINKTYPE_RAW`: raw IP datagrams (IPv4 or IPv6, told apart by the version nibble).
    pub const RAW: LinkType = LinkType(101);
    /// `LINKTYPE_IPV4`: raw IPv4 datagrams.
    pub const IPV4: LinkType = LinkType(228);

    /// Whether records start directly with an IP header (101 or 228).
    pub fn is_raw_ip(self) -> bool {
        self == LinkType::RAW || self == LinkType::IPV4
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinkType::ETHERNET => write!(f, "1 (Ethernet)"),
            LinkType::RAW => write!(f, "101 (raw IP)"),
            LinkType::IPV4 => write!(f, "228 (raw IPv4)"),
            LinkType(n) => write!(f, "{n}"),
        }
    }
}

/// Timestamp resolution of a file, from its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TsResolution {
    /// `0xa1b2c3d4`: the fraction field counts microseconds.
    Micros,
    /// `0xa1b23c4d`: the fraction field counts nanoseconds.
    Nanos,
}

/// Byte order of a file's header fields, from its magic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ByteOrder {
    Little,
    Big,
}

/// What went wrong reading a capture.
#[derive(Debug)]
pub enum PcapError {
    /// The underlying reader failed (other than by ending early).
    Io(io::Error),
    /// The file is shorter than the 24-byte global header.
    TruncatedHeader,
    /// The first four bytes are not a classic pcap magic in either byte order.
    BadMagic(u32),
    /// A version other than 2.x.
    UnsupportedVersion { major: u16, minor: u16 },
    /// The file ends inside record `index` (0-based), in its header or its data.
    TruncatedRecord { index: u64 },
    /// Record `index` claims more captured bytes than the snaplen (capped at [`MAX_RECORD`]).
    RecordTooLarge { index: u64, len: u32, cap: u32 },
    /// Record `index` says fewer bytes were on the wire than were captured.
    OrigLenBelowCaptured {
        index: u64,
        incl_len: u32,
        orig_len: u32,
    },
}

impl fmt::Display for PcapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcapError::Io(e) => write!(f, "pcap: read error: {e}"),
            PcapError::TruncatedHeader => write!(f, "pcap: file shorter than the global header"),
            PcapError::BadMagic(m) => write!(f, "pcap: bad magic 0x{m:08x} (not a classic pcap)"),
            PcapError::UnsupportedVersion { major, minor } => {
                write!(f, "pcap: unsupported version {major}.{minor}")
            }
            PcapError::TruncatedRecord { index } => write!(f, "pcap: record {index} is truncated"),
            PcapError::RecordTooLarge { index, len, cap } => {
                write!(
                    f,
                    "pcap: record {index} has {len} captured bytes (limit {cap})"
                )
            }
            PcapError::OrigLenBelowCaptured {
                index,
                incl_len,
                orig_len,
            } => write!(
                f,
                "pcap: record {index} has orig_len {orig_len} below its captured length {incl_len}"
            ),
        }
    }
}

impl std::error::Error for PcapError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PcapError::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// The decoded global header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub byte_order: ByteOrder,
    pub resolution: TsResolution,
    pub version: (u16, u16),
    /// The snaplen as written in the file (0 in some writers' files: no limit but [`MAX_RECORD`]).
    pub snaplen: u32,
    pub linktype: LinkType,
}

impl Header {
    fn parse(b: &[u8; GLOBAL_HEADER_LEN]) -> Result<Header, PcapError> {
        let magic_le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let (byte_order, resolution) = match (magic_le, magic_le.swap_bytes()) {
            (MAGIC_MICROS, _) => (ByteOrder::Little, TsResolution::Micros),
            (MAGIC_NANOS, _) => (ByteOrder::Little, TsResolution::Nanos),
            (_, MAGIC_MICROS) => (ByteOrder::Big, TsResolution::Micros),
            (_, MAGIC_NANOS) => (ByteOrder::Big, TsResolution::Nanos),
            _ => {
                return Err(PcapError::BadMagic(u32::from_be_bytes([
                    b[0], b[1], b[2], b[3],
                ])))
            }
        };
        let major = read_u16(byte_order, &b[4..6]);
        let minor = read_u16(byte_order, &b[6..8]);
        if major != 2 {
            return Err(PcapError::UnsupportedVersion { major, minor });
        }
        let snaplen = read_u32(byte_order, &b[16..20]);
        // The top bits carry the FCS length (LT_FCS_LENGTH); the link type is the low 26 bits.
        let linktype = LinkType(read_u32(byte_order, &b[20..24]) & 0x03ff_ffff);
        Ok(Header {
            byte_order,
            resolution,
            version: (major, minor),
            snaplen,
            linktype,
        })
    }

    /// The largest record this file may hold: its snaplen, capped at [`MAX_RECORD`].
    pub fn record_cap(&self) -> u32 {
        if self.snaplen == 0 {
            MAX_RECORD
        } else {
            self.snaplen.min(MAX_RECORD)
        }
    }

    /// Decodes a record header into (timestamp in ns, incl_len, orig_len), checking the lengths.
    fn record(
        &self,
        b: &[u8; RECORD_HEADER_LEN],
        index: u64,
    ) -> Result<(u64, u32, u32), PcapError> {
        let o = self.byte_order;
        let sec = u64::from(read_u32(o, &b[0..4]));
        let frac = u64::from(read_u32(o, &b[4..8]));
        let incl_len = read_u32(o, &b[8..12]);
        let orig_len = read_u32(o, &b[12..16]);
        let cap = self.record_cap();
        if incl_len > cap {
            return Err(PcapError::RecordTooLarge {
                index,
                len: incl_len,
                cap,
            });
        }
        if orig_len < incl_len {
            return Err(PcapError::OrigLenBelowCaptured {
                index,
                incl_len,
                orig_len,
            });
        }
        let frac_ns = match self.resolution {
            TsResolution::Micros => frac.saturating_mul(1000),
            TsResolution::Nanos => frac,
        };
        // u32 seconds * 1e9 + at most u32 * 1000 fits in a u64; saturate all the same.
        let ts_ns = sec.saturating_mul(1_000_000_000).saturating_add(frac_ns);
        Ok((ts_ns, incl_len, orig_len))
    }
}

fn read_u16(o: ByteOrder, b: &[u8]) -> u16 {
    let a = [b[0], b[1]];
    match o {
        ByteOrder::Little => u16::from_le_bytes(a),
        ByteOrder::Big => u16::from_be_bytes(a),
    }
}

fn read_u32(o: ByteOrder, b: &[u8]) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    match o {
        ByteOrder::Little => u32::from_le_bytes(a),
        ByteOrder::Big => u32::from_be_bytes(a),
    }
}

/// One captured frame, owning its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Capture time in nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    /// The captured bytes (`incl_len` of them).
    pub data: Vec<u8>,
    /// The frame's length on the wire (at least `data.len()`).
    pub orig_len: u32,
}

/// One captured frame, borrowing its bytes from the slice being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef<'a> {
    pub ts_ns: u64,
    pub data: &'a [u8],
    pub orig_len: u32,
}

impl FrameRef<'_> {
    pub fn to_owned(&self) -> Frame {
        Frame {
            ts_ns: self.ts_ns,
            data: self.data.to_vec(),
            orig_len: self.orig_len,
        }
    }
}

/// Fills `buf` from `r`; `Ok(n)` with `n < buf.len()` only at end of input.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Reads a capture from any [`Read`]: an iterator of owned [`Frame`]s.
///
/// After the first error the iterator ends.
#[derive(Debug)]
pub struct PcapReader<R> {
    r: R,
    header: Header,
    index: u64,
    done: bool,
}

impl<R: Read> PcapReader<R> {
    /// Reads and checks the global header.
    pub fn new(mut r: R) -> Result<Self, PcapError> {
        let mut b = [0u8; GLOBAL_HEADER_LEN];
        if read_full(&mut r, &mut b).map_err(PcapError::Io)? < GLOBAL_HEADER_LEN {
            return Err(PcapError::TruncatedHeader);
        }
        let header = Header::parse(&b)?;
        Ok(PcapReader {
            r,
            header,
            index: 0,
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn linktype(&self) -> LinkType {
        self.header.linktype
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, PcapError> {
        let index = self.index;
        let mut b = [0u8; RECORD_HEADER_LEN];
        match read_full(&mut self.r, &mut b).map_err(PcapError::Io)? {
            0 => return Ok(None),
            RECORD_HEADER_LEN => {}
            _ => return Err(PcapError::TruncatedRecord { index }),
        }
        let (ts_ns, incl_len, orig_len) = self.header.record(&b, index)?;
        // incl_len <= record_cap() <= MAX_RECORD: the allocation is bounded.
        let mut data = vec![0u8; incl_len as usize];
        if read_full(&mut self.r, &mut data).map_err(PcapError::Io)? < data.len() {
            return Err(PcapError::TruncatedRecord { index });
        }
        self.index += 1;
        Ok(Some(Frame {
            ts_ns,
            data,
            orig_len,
        }))
    }
}

impl<R: Read> Iterator for PcapReader<R> {
    type Item = Result<Frame, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_frame();
        if !matches!(item, Ok(Some(_))) {
            self.done = true;
        }
        item.transpose()
    }
}

/// Reads a capture held in memory: an iterator of borrowed [`FrameRef`]s.
///
/// After the first error the iterator ends.
#[derive(Debug)]
pub struct PcapSlice<'a> {
    rest: &'a [u8],
    header: Header,
    index: u64,
    done: bool,
}

impl<'a> PcapSlice<'a> {
    /// Checks the global header of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Result<Self, PcapError> {
        let (h, rest) = bytes
            .split_at_checked(GLOBAL_HEADER_LEN)
            .ok_or(PcapError::TruncatedHeader)?;
        let h: &[u8; GLOBAL_HEADER_LEN] = h.try_into().map_err(|_| PcapError::TruncatedHeader)?;
        let header = Header::parse(h)?;
        Ok(PcapSlice {
            rest,
            header,
            index: 0,
            done: false,
        })
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn linktype(&self) -> LinkType {
        self.header.linktype
    }

    fn next_frame(&mut self) -> Result<Option<FrameRef<'a>>, PcapError> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let index = self.index;
        let truncated = PcapError::TruncatedRecord { index };
        let Some((h, rest)) = self.rest.split_at_checked(RECORD_HEADER_LEN) else {
            return Err(truncated);
        };
        let h: &[u8; RECORD_HEADER_LEN] = h.try_into().map_err(|_| truncated)?;
        let (ts_ns, incl_len, orig_len) = self.header.record(h, index)?;
        let Some((data, rest)) = rest.split_at_checked(incl_len as usize) else {
            return Err(PcapError::TruncatedRecord { index });
        };
        self.rest = rest;
        self.index += 1;
        Ok(Some(FrameRef {
            ts_ns,
            data,
            orig_len,
        }))
    }
}

impl<'a> Iterator for PcapSlice<'a> {
    type Item = Result<FrameRef<'a>, PcapError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.next_frame();
        if !matches!(item, Ok(Some(_))) {
            self.done = true;
        }
        item.transpose()
    }
}

/// Writes a little-endian classic pcap file.
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    w: W,
    resolution: TsResolution,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the global header: nanosecond timestamps, snaplen [`MAX_RECORD`].
    pub fn new(w: W, linktype: LinkType) -> io::Result<Self> {
        Self::with_resolution(w, linktype, TsResolution::Nanos)
    }

    /// Writes the global header with the given timestamp resolution (microseconds round down).
    pub fn with_resolution(
        mut w: W,
        linktype: LinkType,
        resolution: TsResolution,
    ) -> io::Result<Self> {
        let magic = match resolution {
            TsResolution::Micros => MAGIC_MICROS,
            TsResolution::Nanos => MAGIC_NANOS,
        };
        let mut h = [0u8; GLOBAL_HEADER_LEN];
        h[0..4].copy_from_slice(&magic.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        // thiszone and sigfigs stay 0.
        h[16..20].copy_from_slice(&MAX_RECORD.to_le_bytes());
        h[20..24].copy_from_slice(&linktype.0.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapWriter { w, resolution })
    }

    /// Appends one record holding all of `data` (at most [`MAX_RECORD`] bytes).
    ///
    /// Seconds past `u32::MAX` (year 2106) are an error.
    pub fn write_frame(&mut self, ts_ns: u64, data: &[u8]) -> io::Result<()> {
        let len = u32::try_from(data.len())
            .ok()
            .filter(|&n| n <= MAX_RECORD)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "pcap: frame over 256 KiB")
            })?;
        let sec = u32::try_from(ts_ns / 1_000_000_000).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "pcap: timestamp past 2106")
        })?;
        let ns = (ts_ns % 1_000_000_000) as u32;
        let frac = match self.resolution {
            TsResolution::Micros => ns / 1000,
            TsResolution::Nanos => ns,
        };
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[0..4].copy_from_slice(&sec.to_le_bytes());
        h[4..8].copy_from_slice(&frac.to_le_bytes());
        h[8..12].copy_from_slice(&len.to_le_bytes());
        h[12..16].copy_from_slice(&len.to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Flushes and returns the underlying writer.
    pub fn into_inner(mut self) -> io::Result<W> {
        self.w.flush()?;
        Ok(self.w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames() -> Vec<(u64, Vec<u8>)> {
        vec![
            (1_700_000_000_123_456_789, vec![0xaa; 60]),
            (1_700_000_001_000_000_000, vec![]),
            (5, (0..=255u8).collect()),
        ]
    }

    fn write(linktype: LinkType, res: TsResolution) -> Vec<u8> {
        let mut w = PcapWriter::with_resolution(Vec::new(), linktype, res).unwrap();
        for (ts, d) in frames() {
            w.write_frame(ts, &d).unwrap();
        }
        w.into_inner().unwrap()
    }

    #[test]
    fn round_trip_nanos_both_readers() {
        let bytes = write(LinkType::ETHERNET, TsResolution::Nanos);
        let r = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.linktype(), LinkType::ETHERNET);
        assert_eq!(r.header().resolution, TsResolution::Nanos);
        let got: Vec<Frame> = r.collect::<Result<_, _>>().unwrap();
        let want: Vec<Frame> = frames()
            .into_iter()
            .map(|(ts_ns, data)| Frame {
                ts_ns,
                orig_len: data.len() as u32,
                data,
            })
            .collect();
        assert_eq!(got, want);
        let s = PcapSlice::new(&bytes).unwrap();
        let got2: Vec<Frame> = s
            .map(|f| f.map(|f| f.to_owned()))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got2, want);
    }

    #[test]
    fn round_trip_micros_truncates_to_microseconds() {
        let bytes = write(LinkType::IPV4, TsResolution::Micros);
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1]);
        let r = PcapReader::new(&bytes[..]).unwrap();
        assert_eq!(r.linktype(), LinkType::IPV4);
        assert!(r.linktype().is_raw_ip());
        let ts: Vec<u64> = r.map(|f| f.unwrap().ts_ns).collect();
        assert_eq!(
            ts,
            vec![1_700_000_000_123_456_000, 1_700_000_001_000_000_000, 0]
        );
    }

    /// A big-endian microsecond file, built by hand.
    #[test]
    fn big_endian_micros() {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC_MICROS.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&65535u32.to_be_bytes());
        b.extend_from_slice(&101u32.to_be_bytes());
        b.extend_from_slice(&3u32.to_be_bytes());
        b.extend_from_slice(&7u32.to_be_bytes());
        b.extend_from_slice(&4u32.to_be_bytes());
        b.extend_from_slice(&1500u32.to_be_bytes());
        b.extend_from_slice(&[0x45, 0, 0, 20]);
        let mut s = PcapSlice::new(&b).unwrap();
        assert_eq!(s.header().byte_order, ByteOrder::Big);
        assert_eq!(s.linktype(), LinkType::RAW);
        let f = s.next().unwrap().unwrap();
        assert_eq!(
            f,
            FrameRef {
                ts_ns: 3_000_007_000,
                data: &[0x45, 0, 0, 20],
                orig_len: 1500
            }
        );
        assert!(s.next().is_none());
    }

    #[test]
    fn big_endian_nanos_magic_and_fcs_bits() {
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC_NANOS.to_be_bytes());
        b.extend_from_slice(&2u16.to_be_bytes());
        b.extend_from_slice(&4u16.to_be_bytes());
        b.extend_from_slice(&[0; 8]);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&(1u32 | 0x1000_0000).to_be_bytes());
        let r = PcapReader::new(&b[..]).unwrap();
        assert_eq!(r.header().resolution, TsResolution::Nanos);
        assert_eq!(r.linktype(), LinkType::ETHERNET);
        assert_eq!(r.header().record_cap(), MAX_RECORD);
        assert_eq!(r.count(), 0);
    }

    /// Every strict prefix of a valid file is an error or a shorter list of frames, never a panic.
    #[test]
    fn every_truncation_is_an_error() {
        let bytes = write(LinkType::ETHERNET, TsResolution::Nanos);
        let boundaries = [24, 24 + 16 + 60, 24 + 16 + 60 + 16, bytes.len()];
        for cut in 0..bytes.len() {
            let short = &bytes[..cut];
            let from_read = PcapReader::new(short).map(|r| r.collect::<Vec<_>>());
            let from_slice = PcapSlice::new(short).map(|r| r.collect::<Vec<_>>());
            if cut < 24 {
                assert!(
                    matches!(from_read, Err(PcapError::TruncatedHeader)),
                    "cut {cut}"
                );
                assert!(
                    matches!(from_slice, Err(PcapError::TruncatedHeader)),
                    "cut {cut}"
                );
                continue;
            }
            let (a, b) = (from_read.unwrap(), from_slice.unwrap());
            assert_eq!(a.len(), b.len());
            let clean = boundaries.contains(&cut);
            assert_eq!(a.iter().all(|f| f.is_ok()), clean, "cut {cut}");
            assert_eq!(b.iter().all(|f| f.is_ok()), clean, "cut {cut}");
            if !clean {
                assert!(matches!(
                    a.last(),
                    Some(Err(PcapError::TruncatedRecord { .. }))
                ));
                assert!(matches!(
                    b.last(),
                    Some(Err(PcapError::TruncatedRecord { .. }))
                ));
            }
        }
    }

    #[test]
    fn hostile_lengths_are_rejected_without_allocating() {
        let mut bytes = write(LinkType::ETHERNET, TsResolution::Nanos);
        // First record's incl_len: 4 GiB - 1.
        bytes[24 + 8..24 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = PcapReader::new(&bytes[..])
            .unwrap()
            .next()
            .unwrap()
            .unwrap_err();
        assert!(matches!(
            e,
            PcapError::RecordTooLarge {
                index: 0,
                len: u32::MAX,
                cap: MAX_RECORD
            }
        ));
        let e = PcapSlice::new(&bytes).unwrap().next().unwrap().unwrap_err();
        assert!(matches!(e, PcapError::RecordTooLarge { .. }));

        // A small snaplen caps records below 256 KiB.
        let mut bytes = write(LinkType::ETHERNET, TsResolution::Nanos);
        bytes[16..20].copy_from_slice(&100u32.to_le_bytes());
        let got: Vec<_> = PcapReader::new(&bytes[..]).unwrap().collect();
        assert_eq!(got.len(), 3);
        assert!(got[0].is_ok() && got[1].is_ok());
        assert!(matches!(
            got[2],
            Err(PcapError::RecordTooLarge {
                index: 2,
                len: 256,
                cap: 100
            })
        ));

        // orig_len below incl_len.
        let mut bytes = write(LinkType::ETHERNET, TsResolution::Nanos);
        bytes[24 + 12..24 + 16].copy_from_slice(&10u32.to_le_bytes());
        let e = PcapSlice::new(&bytes).unwrap().next().unwrap().unwrap_err();
        assert!(matches!(
            e,
            PcapError::OrigLenBelowCaptured {
                incl_len: 60,
                orig_len: 10,
                ..
            }
        ));
    }

    #[test]
    fn bad_magic_and_version() {
        let mut bytes = write(LinkType::ETHERNET, TsResolution::Nanos);
        bytes[4..6].copy_from_slice(&3u16.to_le_bytes());
        assert!(matches!(
            PcapReader::new(&bytes[..]),
            Err(PcapError::UnsupportedVersion { major: 3, minor: 4 })
        ));
        let pcapng = [0x0a, 0x0d, 0x0d, 0x0a].repeat(8);
        assert!(matches!(
            PcapSlice::new(&pcapng),
            Err(PcapError::BadMagic(0x0a0d0d0a))
        ));
        assert!(PcapReader::new(&pcapng[..])
            .unwrap_err()
            .to_string()
            .contains("bad magic"));
    }

    #[test]
    fn writer_rejects_oversized_frames_and_far_timestamps() {
        let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET).unwrap();
        assert!(w.write_frame(0, &vec![0; MAX_RECORD as usize + 1]).is_err());
        assert!(w.write_frame(u64::MAX, &[1]).is_err());
        w.write_frame(0, &vec![0; MAX_RECORD as usize]).unwrap();
        let bytes = w.into_inner().unwrap();
        let f = PcapSlice::new(&bytes).unwrap().next().unwrap().unwrap();
        assert_eq!(f.data.len(), MAX_RECORD as usize);
    }

    /// Deterministic garbage (xorshift) after a valid header: never a panic.
    #[test]
    fn random_garbage_never_panics() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let header = write(LinkType::ETHERNET, TsResolution::Micros)[..24].to_vec();
        for _ in 0..2000 {
            let mut b = header.clone();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 300) as usize;
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Mostly small bytes so that some lengths are plausible.
                b.push(if x & 3 == 0 {
                    x as u8
                } else {
                    (x >> 8) as u8 & 0x3f
                });
            }
            let _ = PcapReader::new(&b[..]).unwrap().count();
            let _ = PcapSlice::new(&b).unwrap().count();
        }
    }
}
