//! Rewriting a packet to its connection's binding (`nf_nat_proto.c`): `nf_nat_packet`,
//! `nf_nat_ipv4_manip_pkt` with each protocol's `*_manip_pkt`, and
//! `nf_nat_icmp_reply_translation`. All work on the IPv4 datagram in place (`ip` from its
//! header to its total length); every offset is checked, so a datagram too short for what a
//! manip must write is refused (the kernel's failed `skb_ensure_writable`, a drop).
//!
//! Checksums are updated incrementally as the kernel does (pseudo-header included for TCP,
//! UDP and UDP-Lite; a zero UDP checksum stays zero; an SCTP CRC32c is recomputed), except
//! the ICMP checksum of a translated error, which the kernel recomputes whole.

use super::{csum, Manip};
use crate::conntrack::conn::{status, Conn};
use crate::conntrack::table::Dir;
use crate::conntrack::tuple::{proto, Tuple};

/// A datagram too short (or malformed) for the rewrite its binding asks for: drop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManipFailed;

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn put16(b: &mut [u8], at: usize, v: u16) {
    b[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn put32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_be_bytes());
}

/// Whether the connection's status asks for `manip` on a packet travelling in `dir`.
pub fn applies(conn: &Conn, dir: Dir, manip: Manip) -> bool {
    let mut bit = manip.nat_bit();
    if dir == Dir::Reply {
        bit ^= status::SRC_NAT | status::DST_NAT;
    }
    conn.status & bit != 0
}

/// `nf_nat_packet`: the packet of `conn` travelling in `dir` gets `manip` when the binding
/// has one for it. Returns whether it changed anything.
pub fn nat_packet(conn: &Conn, dir: Dir, manip: Manip, ip: &mut [u8]) -> Result<bool, ManipFailed> {
    if !applies(conn, dir, manip) {
        return Ok(false);
    }
    let Some(target) = conn.tuple[1 - dir.index()].invert() else {
        return Err(ManipFailed);
    };
    manip_ipv4(ip, 0, &target, manip)?;
    Ok(true)
}

/// `nf_nat_ipv4_manip_pkt`: the header at `at` (and its transport header) made to carry
/// `target`'s source (or destination).
pub fn manip_ipv4(
    ip: &mut [u8],
    at: usize,
    target: &Tuple,
    manip: Manip,
) -> Result<(), ManipFailed> {
    let ihl = usize::from(ip.get(at).ok_or(ManipFailed)? & 0x0f) * 4;
    if ip.len() < at + 20 || ihl < 20 {
        return Err(ManipFailed);
    }
    let l4 = at + ihl;
    manip_l4(ip, at, l4, target, manip)?;
    let (field, new) = match manip {
        Manip::Src => (at + 12, target.src),
        Manip::Dst => (at + 16, target.dst),
    };
    let old = be32(ip, field).ok_or(ManipFailed)?;
    let check = be16(ip, at + 10).ok_or(ManipFailed)?;
    put16(ip, at + 10, csum::replace4(check, old, new));
    put32(ip, field, new);
    Ok(())
}

/// The address the pseudo-header loses and gains (`nf_csum_update`), read before the IP
/// header changes.
fn pseudo_change(ip: &[u8], at: usize, target: &Tuple, manip: Manip) -> Option<(u32, u32)> {
    Some(match manip {
        Manip::Src => (be32(ip, at + 12)?, target.src),
        Manip::Dst => (be32(ip, at + 16)?, target.dst),
    })
}

fn port_field(l4: usize, manip: Manip, target: &Tuple) -> (usize, u16) {
    match manip {
        Manip::Src => (l4, target.sport),
        Manip::Dst => (l4 + 2, target.dport),
    }
}

fn manip_l4(
    ip: &mut [u8],
    at: usize,
    l4: usize,
    target: &Tuple,
    manip: Manip,
) -> Result<(), ManipFailed> {
    let len = ip.len();
    match target.proto {
        proto::TCP => {
            // Inside an ICMP error only 8 bytes are sure: the checksum may be cut off.
            let hdr = if len >= l4 + 20 { 20 } else { 8 };
            if len < l4 + hdr {
                return Err(ManipFailed);
            }
            let (field, new) = port_field(l4, manip, target);
            let old = be16(ip, field).ok_or(ManipFailed)?;
            put16(ip, field, new);
            if hdr == 20 {
                let (oa, na) = pseudo_change(ip, at, target, manip).ok_or(ManipFailed)?;
                let c = be16(ip, l4 + 16).ok_or(ManipFailed)?;
                let c = csum::replace2(csum::replace4(c, oa, na), old, new);
                put16(ip, l4 + 16, c);
            }
        }
        proto::UDP | proto::UDPLITE => {
            if len < l4 + 8 {
                return Err(ManipFailed);
            }
            let (field, new) = port_field(l4, manip, target);
            let old = be16(ip, field).ok_or(ManipFailed)?;
            let c = be16(ip, l4 + 6).ok_or(ManipFailed)?;
            if c != 0 || target.proto == proto::UDPLITE {
                let (oa, na) = pseudo_change(ip, at, target, manip).ok_or(ManipFailed)?;
                let mut c = csum::replace2(csum::replace4(c, oa, na), old, new);
                if c == 0 {
                    c = 0xffff; // CSUM_MANGLED_0
                }
                put16(ip, l4 + 6, c);
            }
            put16(ip, field, new);
        }
        proto::SCTP => {
            let hdr = if len >= l4 + 12 { 12 } else { 8 };
            if len < l4 + hdr {
                return Err(ManipFailed);
            }
            let (field, new) = port_field(l4, manip, target);
            put16(ip, field, new);
            if hdr == 12 {
                let crc = crate::conntrack::sctp::checksum(&ip[l4..]);
                ip[l4 + 8..l4 + 12].copy_from_slice(&crc.to_le_bytes());
            }
        }
        proto::ICMP => {
            if len < l4 + 8 {
                return Err(ManipFailed);
            }
            // Only queries carry an id (type 0, 8, 13, 14, 15, 16, 17, 18).
            if matches!(ip[l4], 0 | 8 | 13..=18) {
                let old = be16(ip, l4 + 4).ok_or(ManipFailed)?;
                let c = be16(ip, l4 + 2).ok_or(ManipFailed)?;
                put16(ip, l4 + 2, csum::replace2(c, old, target.sport));
                put16(ip, l4 + 4, target.sport);
            }
        }
        proto::GRE => {
            if len < l4 + 8 {
                return Err(ManipFailed);
            }
            // Only the destination's key (the PPTP call id of version 1) is in the packet.
            if manip == Manip::Dst {
                match ip[l4 + 1] & 0x07 {
                    0 => {}
                    1 => put16(ip, l4 + 6, target.dport),
                    _ => return Err(ManipFailed),
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// `nf_nat_icmp_reply_translation`: an ICMP error RELATED to `conn`, travelling in `dir`, at
/// the hook of `manip`. The datagram it quotes is translated back (the other manip, toward the
/// other direction's tuple), its checksum recomputed, then the outer header gets `manip`.
/// Returns whether anything changed; an error too short, or with a bad checksum, fails.
pub fn icmp_reply_translation(
    conn: &Conn,
    dir: Dir,
    manip: Manip,
    ip: &mut [u8],
) -> Result<bool, ManipFailed> {
    let hdr = usize::from(ip.first().ok_or(ManipFailed)? & 0x0f) * 4;
    if ip.len() < hdr + 8 + 20 {
        return Err(ManipFailed);
    }
    if csum::sum_from_scratch(&ip[hdr..]) != 0 {
        return Err(ManipFailed);
    }
    const DONE: u16 = status::SRC_NAT_DONE | status::DST_NAT_DONE;
    if ip[hdr] == 5
        && (conn.status & DONE != DONE || conn.status & (status::SRC_NAT | status::DST_NAT) != 0)
    {
        // A redirect is translated only for connections without NAT.
        return Err(ManipFailed);
    }
    if !applies(conn, dir, manip) {
        return Ok(false);
    }
    let other = conn.tuple[1 - dir.index()];
    let inner_manip = match manip {
        Manip::Src => Manip::Dst,
        Manip::Dst => Manip::Src,
    };
    manip_ipv4(ip, hdr + 8, &other, inner_manip)?;
    put16(ip, hdr + 2, 0);
    let c = csum::sum_from_scratch(&ip[hdr..]);
    put16(ip, hdr + 2, c);
    let Some(mut target) = other.invert() else {
        return Err(ManipFailed);
    };
    target.proto = proto::ICMP;
    manip_ipv4(ip, 0, &target, manip)?;
    Ok(true)
}
