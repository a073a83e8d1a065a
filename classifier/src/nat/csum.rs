//! Internet checksum arithmetic for NAT: the incremental updates of RFC 1624 done exactly as
//! the kernel's `csum_replace4` / `inet_proto_csum_replace2` / `csum_fold` do them (a 32-bit
//! one's-complement accumulator with end-around carry, folded to 16 bits), so that a
//! translated packet carries the checksum bytes the kernel would write, including its choice
//! between `0x0000` and `0xffff`. Values are taken in network order (the one's-complement sum
//! does not depend on byte order, RFC 1071 §2(B)).
//!
//! [`sum_from_scratch`] is the reference the tests compare the incremental updates against.

/// `csum_add`: 32-bit one's-complement addition.
#[inline]
pub fn add(a: u32, b: u32) -> u32 {
    let (s, carry) = a.overflowing_add(b);
    s.wrapping_add(u32::from(carry))
}

/// `csum_sub`.
#[inline]
pub fn sub(a: u32, b: u32) -> u32 {
    add(a, !b)
}

/// `csum_fold`: the complement of the 16-bit fold of a 32-bit accumulator.
#[inline]
pub fn fold(sum: u32) -> u16 {
    let s = sum.wrapping_add(sum.rotate_right(16));
    !((s >> 16) as u16)
}

/// `csum_replace4`: `check` after a 32-bit field changed from `from` to `to`.
#[inline]
pub fn replace4(check: u16, from: u32, to: u32) -> u16 {
    // `~csum_unfold(*sum)`: the complement of the widened value (its high half all ones).
    fold(add(sub(!u32::from(check), from), to))
}

/// `csum_replace2` / `inet_proto_csum_replace2` (no offload): a 16-bit field changed.
#[inline]
pub fn replace2(check: u16, from: u16, to: u16) -> u16 {
    // The kernel widens both to 32 bits (`(__force u32)from`): the same fold.
    replace4(check, u32::from(from), u32::from(to))
}

/// The one's-complement sum of `data` (16-bit big-endian words, an odd byte padded), added to
/// `initial`, before folding.
pub fn accumulate(initial: u32, data: &[u8]) -> u32 {
    let mut sum = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u64::from(u16::from_be_bytes([*b, 0]));
    }
    while sum >> 32 != 0 {
        sum = (sum & 0xffff_ffff) + (sum >> 32);
    }
    sum as u32
}

/// The checksum of `data` computed from scratch (the IP header's, or ICMP's: no pseudo-header).
pub fn sum_from_scratch(data: &[u8]) -> u16 {
    fold(accumulate(0, data))
}

/// The TCP/UDP checksum of segment `l4` (its checksum field included as it stands) from
/// scratch, over the IPv4 pseudo-header.
pub fn l4_from_scratch(src: u32, dst: u32, proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&src.to_be_bytes());
    pseudo[4..8].copy_from_slice(&dst.to_be_bytes());
    pseudo[9] = proto;
    pseudo[10..12].copy_from_slice(&(l4.len() as u16).to_be_bytes());
    fold(accumulate(accumulate(0, &pseudo), l4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_of_zero_and_ones() {
        assert_eq!(fold(0), 0xffff);
        assert_eq!(fold(0xffff), 0);
        assert_eq!(fold(0x0001_ffff), !1u16);
    }

    /// The kernel computes on little-endian loads of network-order bytes; this module on
    /// big-endian values. Both must store the same checksum bytes.
    #[test]
    fn byte_order_does_not_change_the_bytes() {
        let mut x = 0x2545_f4b1_9e37_79b9u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..100_000 {
            let r = next();
            let check = if r & 0xff == 0 { 0 } else { r as u16 };
            let from = (r >> 16) as u32;
            let to = if r & 0x100 == 0 { next() as u32 } else { from };
            let be = replace4(check, from, to);
            let le = replace4(check.swap_bytes(), from.swap_bytes(), to.swap_bytes()).swap_bytes();
            assert_eq!(be, le, "check {check:#x} {from:#x} -> {to:#x}");
        }
    }

    #[test]
    fn replace_matches_recomputation_on_a_header() {
        // A real IPv4 header (checksum filled), then its source address changed.
        let mut hdr = [
            0x45u8, 0, 0, 0x54, 0x12, 0x34, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        let c = sum_from_scratch(&hdr);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(sum_from_scratch(&hdr), 0);
        let old = u32::from_be_bytes([hdr[12], hdr[13], hdr[14], hdr[15]]);
        let new = 0xc0a8_0101u32;
        let inc = replace4(c, old, new);
        hdr[12..16].copy_from_slice(&new.to_be_bytes());
        hdr[10..12].copy_from_slice(&inc.to_be_bytes());
        assert_eq!(sum_from_scratch(&hdr), 0);
    }
}
