//! Zero-copy views and parsed representations of the headers pollwall reads and writes.
//!
//! The layout follows the usual two-level pattern:
//!
//! * a **view** (`Packet<T: AsRef<[u8]>>`) wraps a byte buffer and reads or writes header fields
//!   in place. [`ethernet::Packet::new_checked`] and its siblings validate the buffer once, after
//!   which no accessor of that view can panic, whatever the bytes are;
//!   `new_unchecked` skips the check (for buffers the caller sized itself, e.g. before `emit`).
//! * a **representation** (`Repr`) is the parsed, validated content of a header:
//!   `Repr::parse(&packet)` checks it (version, lengths, checksum), `buffer_len()` says how many
//!   bytes `emit` writes, and `emit` writes it back (filling in checksums), which is how the
//!   dataplane builds REJECT replies and tests craft frames.
//!
//! [`headers`] turns a received frame into the classifier's [`crate::packet::Headers`],
//! applying the same checks as Linux's `ip_rcv` and reading exactly what the kernel's matches can.
//!
//! Nothing here indexes a slice it did not bounds-check first, and nothing uses `unsafe`.

use core::fmt;

pub mod build;
pub mod ethernet;
pub mod headers;
pub mod icmp;
pub mod ipv4;
pub mod tcp;
pub mod udp;
pub mod vlan;

#[cfg(test)]
mod fuzz;

pub use ethernet::{EtherType, EthernetAddress};
pub use headers::{parse_ethernet, parse_ipv4, DropReason};
pub use ipv4::IpProtocol;

/// Why a buffer could not be viewed or parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field says).
    Truncated,
    /// A field holds a value the format does not allow (wrong version, a length field smaller
    /// than the fixed header, a TCP option whose length overruns the options area...).
    Malformed,
    /// The checksum does not verify.
    Checksum,
    /// Well formed, but not something this module handles (e.g. the quoted datagram of an ICMP
    /// message that is not an error).
    Unsupported,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Checksum => "bad checksum",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}

/// Result of the wire views and representations.
pub type Result<T> = core::result::Result<T, Error>;

/// Reads a big-endian `u16` at `at`; the caller has checked the bounds.
#[inline]
fn be16(data: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([data[at], data[at + 1]])
}

/// Reads a big-endian `u32` at `at`; the caller has checked the bounds.
#[inline]
fn be32(data: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]])
}

/// Writes a big-endian `u16` at `at`.
#[inline]
fn put16(data: &mut [u8], at: usize, value: u16) {
    data[at..at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Writes a big-endian `u32` at `at`.
#[inline]
fn put32(data: &mut [u8], at: usize, value: u32) {
    data[at..at + 4].copy_from_slice(&value.to_be_bytes());
}

/// The Internet checksum (RFC 1071): one's complement sum of 16-bit big-endian words.
pub mod checksum {
    use super::IpProtocol;
    use std::net::Ipv4Addr;

    /// Folds a wide accumulator into a 16-bit one's complement sum (not yet complemented).
    #[inline]
    pub fn fold(mut sum: u64) -> u16 {
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// One's complement sum of `data` (an odd trailing byte is padded with zero).
    pub fn data(data: &[u8]) -> u16 {
        let mut sum = 0u64;
        let mut words = data.chunks_exact(2);
        for w in &mut words {
            sum += u64::from(u16::from_be_bytes([w[0], w[1]]));
        }
        if let [last] = words.remainder() {
            sum += u64::from(*last) << 8;
        }
        fold(sum)
    }

    /// One's complement sum of partial sums.
    pub fn combine(parts: &[u16]) -> u16 {
        fold(parts.iter().map(|&p| u64::from(p)).sum())
    }

    /// Sum of the IPv4 pseudo-header TCP and UDP checksums cover.
    pub fn pseudo_header(src: Ipv4Addr, dst: Ipv4Addr, proto: IpProtocol, length: u32) -> u16 {
        let s = u32::from(src);
        let d = u32::from(dst);
        let sum = u64::from(s >> 16)
            + u64::from(s & 0xffff)
            + u64::from(d >> 16)
            + u64::from(d & 0xffff)
            + u64::from(proto.0)
            + u64::from(length >> 16)
            + u64::from(length & 0xffff);
        fold(sum)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rfc1071_example() {
            // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2.
            assert_eq!(
                data(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
                0xddf2
            );
            // An odd byte is padded on the right.
            assert_eq!(data(&[0x12]), 0x1200);
            assert_eq!(combine(&[0xffff, 0x0001]), 0x0001);
            assert_eq!(data(&[]), 0);
        }
    }
}
