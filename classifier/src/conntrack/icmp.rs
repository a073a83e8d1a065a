//! ICMP (`nf_conntrack_proto_icmp.c`): queries are connections keyed by their id (a reply
//! without its request is INVALID, 30 s timeout); error messages are not connections of their
//! own but RELATED to the connection of the datagram they quote (`icmp_error` and
//! `nf_conntrack_inet_error`).

use super::conn::Conn;
use super::table::{Found, Table};
use super::track::{l4_tuple, L4Verdict, Pkt};
use super::tuple::{icmp_is_error, icmp_is_request, Tuple};
use super::CtConfig;

/// `NR_ICMP_TYPES`: the highest type the tracker accepts.
const NR_ICMP_TYPES: u8 = 18;

/// What `icmp_error` made of an ICMP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCheck {
    /// Not an error message: tracked as a query.
    Query,
    Invalid,
    /// An error about this connection.
    Related(Found),
    /// An error about a connection an earlier, unfinished packet made.
    Busy,
}

/// `nf_conntrack_icmpv4_error`.
pub fn error(table: &mut Table, cfg: &CtConfig, p: &Pkt<'_>) -> ErrorCheck {
    let l4 = p.l4;
    if l4.len() < 8 {
        return ErrorCheck::Invalid;
    }
    if p.arriving && cfg.checksum && !icmp_checksum_ok(l4) {
        return ErrorCheck::Invalid;
    }
    let icmp_type = l4[0];
    if icmp_type > NR_ICMP_TYPES {
        return ErrorCheck::Invalid;
    }
    if !icmp_is_error(icmp_type) {
        return ErrorCheck::Query;
    }
    inet_error(table, &l4[8..], p.h.dst)
}

fn icmp_checksum_ok(l4: &[u8]) -> bool {
    crate::wire::checksum::data(l4) == 0xffff
}

/// `nf_conntrack_inet_error`: the quoted datagram's tuple, inverted, looked up; the outer
/// destination must be the destination of the direction found.
fn inet_error(table: &mut Table, quote: &[u8], outer_dst: u32) -> ErrorCheck {
    let Some(inner) = quoted_tuple(quote) else {
        return ErrorCheck::Invalid;
    };
    let Some(wanted) = inner.invert() else {
        return ErrorCheck::Invalid;
    };
    let Some(found) = table.lookup(&wanted) else {
        return ErrorCheck::Invalid;
    };
    if found.unconfirmed {
        return ErrorCheck::Busy;
    }
    let c = table.get(found.id);
    if c.tuple[found.dir.index()].dst != outer_dst {
        return ErrorCheck::Invalid;
    }
    ErrorCheck::Related(found)
}

/// The tuple of a quoted datagram (`nf_ct_get_tuplepr`): as `ipv4_get_l4proto`, neither the
/// version nor a minimal IHL is checked, a non-first fragment has none, and the header the
/// IHL announces must lie within the message.
pub fn quoted_tuple(quote: &[u8]) -> Option<Tuple> {
    if quote.len() < 20 {
        return None;
    }
    let frag_off = u16::from_be_bytes([quote[6], quote[7]]) & 0x1fff;
    if frag_off != 0 {
        return None;
    }
    let dataoff = usize::from(quote[0] & 0x0f) * 4;
    if dataoff > quote.len() {
        return None;
    }
    let be32 =
        |at: usize| u32::from_be_bytes([quote[at], quote[at + 1], quote[at + 2], quote[at + 3]]);
    let mut t = Tuple {
        src: be32(12),
        dst: be32(16),
        sport: 0,
        dport: 0,
        proto: quote[9],
    };
    l4_tuple(&mut t, &quote[dataoff..])?;
    Some(t)
}

/// `nf_conntrack_icmp_packet`: only a request may have made the connection.
pub fn packet(c: &mut Conn, cfg: &CtConfig) -> L4Verdict {
    if !icmp_is_request(c.tuple[0].icmp_type()) {
        return L4Verdict::Invalid;
    }
    L4Verdict::Accept(Some(cfg.timeouts.icmp))
}

/// Whether `t` is an ICMP type the tracker treats as an error (for callers outside).
pub fn is_error_type(t: u8) -> bool {
    icmp_is_error(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_tuples_follow_the_kernels_reads() {
        let mut q = [0u8; 28];
        q[0] = 0x45;
        q[9] = 17;
        q[12..16].copy_from_slice(&[10, 0, 0, 1]);
        q[16..20].copy_from_slice(&[10, 0, 0, 2]);
        q[20..24].copy_from_slice(&[0x30, 0x39, 0, 53]);
        let t = quoted_tuple(&q).unwrap();
        assert_eq!(
            (t.src, t.dst, t.sport, t.dport, t.proto),
            (0x0a00_0001, 0x0a00_0002, 12345, 53, 17)
        );
        // Ports cut off: no tuple.
        assert_eq!(quoted_tuple(&q[..22]), None);
        // A later fragment: none.
        let mut f = q;
        f[7] = 1;
        assert_eq!(quoted_tuple(&f), None);
        // An IHL beyond the quote: none; IHL 0 reads the ports from the header itself.
        let mut big = q;
        big[0] = 0x4f;
        assert_eq!(quoted_tuple(&big), None);
        let mut zero = q;
        zero[0] = 0x40;
        assert_eq!(quoted_tuple(&zero).unwrap().sport, 0x4000);
    }
}
