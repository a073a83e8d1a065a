//! The kernel's `-j LOG` line for an IPv4 packet, from a [`LogRecord`].
//!
//! [`format_log_line`] follows `nf_log_ip_packet` in `net/netfilter/nf_log_syslog.c` (Linux 6.18:
//! `nf_log_dump_packet_common`, `dump_mac_header`, `dump_ipv4_packet`, `nf_log_dump_tcp_header`,
//! `nf_log_dump_udp_header`), field by field; `dataplane/NOTES.md` §6 lists the format. Every field
//! ends with one space, so the line ends with a space; the syslog level (a `KERN_SOH` prefix in the
//! kernel) and the trailing newline are not part of it.
//!
//! The kernel reads headers with `skb_header_pointer` from an skb that starts at the IP header and
//! is `tot_len` bytes long (`ip_rcv` trimmed the Ethernet padding); the `Skb` here does the same
//! over the record's captured bytes, so a header the datagram does not hold prints
//! `INCOMPLETE [n bytes]` or `TRUNCATED` exactly where the kernel's would. (The record keeps 256
//! bytes, more than the deepest header the kernel prints, 210 bytes into a frame.)
//!
//! VLAN tags: the kernel strips a tag into `skb->vlan_tci` on receive, so its MAC header is the
//! 14 bytes dst, src and the ethertype after the tag. pollwall prints the same: `MAC=` shows the
//! ethertype that follows the tags, and `--log-macdecode` prints `VPROTO=`/`VID=` of the outer
//! tag and `MACPROTO=` of what follows the tags. Not printed: `PHYSIN=`/`PHYSOUT=` (bridge
//! netfilter) and `UID=`/`GID=` (`--log-uid` only prints for local sockets, which the dataplane
//! never has).

use classifier::model::log_flags;
use classifier::LogTarget;
use dataplane::log::LogRecord;
use std::fmt::Write;
use std::net::Ipv4Addr;

/// `IP_CE`, `IP_DF`, `IP_MF`, `IP_OFFSET`.
const IP_CE: u16 = 0x8000;
const IP_DF: u16 = 0x4000;
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
/// `NR_ICMP_TYPES`.
const NR_ICMP_TYPES: u8 = 18;

/// The line the kernel's LOG target prints for the packet in `rec` under `log`'s prefix and
/// flags (without the syslog level and the newline).
pub fn format_log_line(rec: &LogRecord, log: &LogTarget) -> String {
    let mut m = String::with_capacity(256);
    let frame = rec.frame();
    // nf_log_dump_packet_common.
    let _ = write!(
        m,
        "{}IN={} OUT={} ",
        log.prefix,
        rec.in_iface.as_str(),
        rec.out_iface.as_str()
    );
    let l2 = L2::parse(frame);
    if !rec.in_iface.as_bytes().is_empty() {
        dump_mac_header(&mut m, log.flags, frame, &l2);
    }
    let wire_avail = usize::try_from(rec.wire_len)
        .unwrap_or(usize::MAX)
        .saturating_sub(l2.l3_offset);
    let data = frame.get(l2.l3_offset..).unwrap_or(&[]);
    let skb = Skb::new(data, wire_avail);
    dump_ipv4_packet(&mut m, log.flags, rec.mark, &skb, 0);
    m
}

/// Where the Ethernet header ends (after up to two VLAN tags, as `parse_ethernet` reads them).
struct L2 {
    /// Offset of the network header.
    l3_offset: usize,
    /// The ethertype after the tags.
    proto: u16,
    /// The outer tag: (TPID, VID).
    tag: Option<(u16, u16)>,
}

impl L2 {
    fn parse(frame: &[u8]) -> L2 {
        let be16 = |at: usize| {
            frame
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
        };
        let Some(mut proto) = be16(12) else {
            return L2 {
                l3_offset: frame.len(),
                proto: 0,
                tag: None,
            };
        };
        let mut at = 14;
        let mut tag = None;
        for n in 0..2 {
            let is_tag = proto == 0x8100 || (proto == 0x88a8 && n == 0);
            let (Some(tci), Some(next)) = (be16(at), be16(at + 2)) else {
                break;
            };
            if !is_tag {
                break;
            }
            tag.get_or_insert((proto, tci & 0x0fff));
            proto = next;
            at += 4;
        }
        L2 {
            l3_offset: at,
            proto,
            tag,
        }
    }
}

/// `dump_mac_header` for an Ethernet device.
fn dump_mac_header(m: &mut String, flags: u8, frame: &[u8], l2: &L2) {
    let (Some(dst), Some(src), true) = (frame.get(0..6), frame.get(6..12), frame.len() >= 14)
    else {
        // No MAC header: the kernel prints nothing with --log-macdecode, "MAC= " without.
        if flags & log_flags::MACDECODE == 0 {
            m.push_str("MAC= ");
        }
        return;
    };
    if flags & log_flags::MACDECODE != 0 {
        let _ = write!(m, "MACSRC={} MACDST={} ", Mac(src), Mac(dst));
        if let Some((tpid, vid)) = l2.tag {
            let _ = write!(m, "VPROTO={tpid:04x} VID={vid} ");
        }
        let _ = write!(m, "MACPROTO={:04x} ", l2.proto);
        return;
    }
    let _ = write!(m, "MAC={}:{}", Mac(dst), Mac(src));
    for b in l2.proto.to_be_bytes() {
        let _ = write!(m, ":{b:02x}");
    }
    m.push(' ');
}

/// `%pM`: lower-case hex bytes joined by colons.
struct Mac<'a>(&'a [u8]);

impl std::fmt::Display for Mac<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The part of an skb `skb_header_pointer` can read: `data` from the IP header on, `len` bytes
/// long (`skb->len`: the IP total length, as `ip_rcv` trimmed the skb to it).
struct Skb<'a> {
    data: &'a [u8],
    len: usize,
}

impl<'a> Skb<'a> {
    /// `wire_avail`: bytes of the frame from the IP header on (captured or not).
    fn new(data: &'a [u8], wire_avail: usize) -> Skb<'a> {
        // What ip_rcv leaves: the total length, when the header is sane and the frame holds it.
        let len = match data.get(..4) {
            Some(h) => {
                let tot = usize::from(u16::from_be_bytes([h[2], h[3]]));
                let ihl = usize::from(h[0] & 0x0f) * 4;
                if tot >= ihl && tot <= wire_avail {
                    tot
                } else {
                    wire_avail
                }
            }
            None => wire_avail,
        };
        Skb {
            data: &data[..data.len().min(len)],
            len,
        }
    }

    /// `skb_header_pointer(skb, off, n)`: None unless `off + n <= skb->len` (and, here, the bytes
    /// were captured).
    fn header(&self, off: usize, n: usize) -> Option<&'a [u8]> {
        let end = off.checked_add(n)?;
        if end > self.len {
            return None;
        }
        self.data.get(off..end)
    }

    /// `skb->len - off` in the kernel's unsigned int arithmetic.
    fn rest(&self, off: usize) -> u32 {
        (self.len as u32).wrapping_sub(off as u32)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `OPT (` + the bytes in upper-case hex + `) `.
fn dump_opts(m: &mut String, opts: &[u8]) {
    m.push_str("OPT (");
    for b in opts {
        let _ = write!(m, "{b:02X}");
    }
    m.push_str(") ");
}

/// `dump_ipv4_packet`; `iphoff` is 0 for the packet itself and the quote's offset for the
/// datagram inside an ICMP error (one level only).
fn dump_ipv4_packet(m: &mut String, flags: u8, mark: u32, skb: &Skb<'_>, iphoff: usize) {
    let Some(ih) = skb.header(iphoff, 20) else {
        m.push_str("TRUNCATED");
        return;
    };
    let src = Ipv4Addr::new(ih[12], ih[13], ih[14], ih[15]);
    let dst = Ipv4Addr::new(ih[16], ih[17], ih[18], ih[19]);
    let _ = write!(m, "SRC={src} DST={dst} ");
    let tos = ih[1];
    let _ = write!(
        m,
        "LEN={} TOS=0x{:02X} PREC=0x{:02X} TTL={} ID={} ",
        be16(ih, 2),
        tos & 0x1e,
        tos & 0xe0,
        ih[8],
        be16(ih, 4)
    );
    let frag_off = be16(ih, 6);
    for (bit, name) in [(IP_CE, "CE "), (IP_DF, "DF "), (IP_MF, "MF ")] {
        if frag_off & bit != 0 {
            m.push_str(name);
        }
    }
    let fragment = frag_off & IP_OFFSET;
    if fragment != 0 {
        let _ = write!(m, "FRAG:{fragment} ");
    }
    // The raw IHL, even below 5 (possible in a quoted datagram).
    let ihl = usize::from(ih[0] & 0x0f) * 4;
    if flags & log_flags::IPOPT != 0 && ihl > 20 {
        let Some(op) = skb.header(iphoff + 20, ihl - 20) else {
            m.push_str("TRUNCATED");
            return;
        };
        dump_opts(m, op);
    }
    let l4 = iphoff + ihl;
    let proto = ih[9];
    let fragment = fragment != 0;
    match proto {
        6 => {
            if dump_tcp_header(m, skb, fragment, l4, flags) {
                return;
            }
        }
        17 | 136 => {
            if dump_udp_header(m, skb, proto, fragment, l4) {
                return;
            }
        }
        1 => dump_icmp(m, flags, skb, fragment, iphoff, l4),
        51 => {
            // AH: like the kernel, nothing at all (not even PROTO=AH) for a later fragment.
            if !fragment {
                m.push_str("PROTO=AH ");
                match skb.header(l4, 12) {
                    None => {
                        let _ = write!(m, "INCOMPLETE [{} bytes] ", skb.rest(l4));
                    }
                    Some(ah) => {
                        let _ = write!(m, "SPI=0x{:x} ", be32(ah, 4));
                    }
                }
            }
        }
        50 => {
            m.push_str("PROTO=ESP ");
            if !fragment {
                match skb.header(l4, 8) {
                    None => {
                        let _ = write!(m, "INCOMPLETE [{} bytes] ", skb.rest(l4));
                    }
                    Some(esp) => {
                        let _ = write!(m, "SPI=0x{:x} ", be32(esp, 0));
                    }
                }
            }
        }
        _ => {
            let _ = write!(m, "PROTO={proto} ");
        }
    }
    if iphoff == 0 && mark != 0 {
        let _ = write!(m, "MARK=0x{mark:x} ");
    }
}

/// `nf_log_dump_tcp_header`; true when the line stops here.
fn dump_tcp_header(m: &mut String, skb: &Skb<'_>, fragment: bool, off: usize, flags: u8) -> bool {
    m.push_str("PROTO=TCP ");
    if fragment {
        return false;
    }
    let Some(th) = skb.header(off, 20) else {
        let _ = write!(m, "INCOMPLETE [{} bytes] ", skb.rest(off));
        return true;
    };
    let _ = write!(m, "SPT={} DPT={} ", be16(th, 0), be16(th, 2));
    if flags & log_flags::TCPSEQ != 0 {
        let _ = write!(m, "SEQ={} ACK={} ", be32(th, 4), be32(th, 8));
    }
    let _ = write!(m, "WINDOW={} ", be16(th, 14));
    // TCP_RESERVED_BITS is 0x0E000000 since the AE flag took the low bit of byte 12.
    let _ = write!(m, "RES=0x{:02x} ", (th[12] & 0x0e) << 2);
    if th[12] & 0x01 != 0 {
        m.push_str("AE ");
    }
    const NAMES: [(u8, &str); 8] = [
        (0x80, "CWR "),
        (0x40, "ECE "),
        (0x20, "URG "),
        (0x10, "ACK "),
        (0x08, "PSH "),
        (0x04, "RST "),
        (0x02, "SYN "),
        (0x01, "FIN "),
    ];
    for (bit, name) in NAMES {
        if th[13] & bit != 0 {
            m.push_str(name);
        }
    }
    let _ = write!(m, "URGP={} ", be16(th, 18));
    let doff = usize::from(th[12] >> 4) * 4;
    if flags & log_flags::TCPOPT != 0 && doff > 20 {
        let Some(op) = skb.header(off + 20, doff - 20) else {
            m.push_str("OPT (TRUNCATED)");
            return true;
        };
        dump_opts(m, op);
    }
    false
}

/// `nf_log_dump_udp_header` (UDP and UDP-Lite); true when the line stops here.
fn dump_udp_header(m: &mut String, skb: &Skb<'_>, proto: u8, fragment: bool, off: usize) -> bool {
    m.push_str(if proto == 17 {
        "PROTO=UDP "
    } else {
        "PROTO=UDPLITE "
    });
    if fragment {
        return false;
    }
    let Some(uh) = skb.header(off, 8) else {
        let _ = write!(m, "INCOMPLETE [{} bytes] ", skb.rest(off));
        return true;
    };
    let _ = write!(
        m,
        "SPT={} DPT={} LEN={} ",
        be16(uh, 0),
        be16(uh, 2),
        be16(uh, 4)
    );
    false
}

/// The ICMP case of `dump_ipv4_packet`.
fn dump_icmp(m: &mut String, flags: u8, skb: &Skb<'_>, fragment: bool, iphoff: usize, off: usize) {
    m.push_str("PROTO=ICMP ");
    if fragment {
        return;
    }
    let Some(ich) = skb.header(off, 8) else {
        let _ = write!(m, "INCOMPLETE [{} bytes] ", skb.rest(off));
        return;
    };
    let (icmp_type, code) = (ich[0], ich[1]);
    let _ = write!(m, "TYPE={icmp_type} CODE={code} ");
    // Bytes each type needs (`required_len`); 0 = no requirement.
    let required: u32 = match icmp_type {
        0 | 8 => 4,
        3 | 4 | 5 | 11 | 12 => 8 + 20,
        13 | 14 => 20,
        17 | 18 => 12,
        _ => 0,
    };
    if icmp_type <= NR_ICMP_TYPES && required != 0 && skb.rest(off) < required {
        let _ = write!(m, "INCOMPLETE [{} bytes] ", skb.rest(off));
        return;
    }
    match icmp_type {
        0 | 8 => {
            let _ = write!(m, "ID={} SEQ={} ", be16(ich, 4), be16(ich, 6));
        }
        12 => {
            let _ = write!(m, "PARAMETER={} ", ich[4]);
        }
        3 | 4 | 5 | 11 => {
            if icmp_type == 5 {
                let gw = Ipv4Addr::new(ich[4], ich[5], ich[6], ich[7]);
                let _ = write!(m, "GATEWAY={gw} ");
            }
            if iphoff == 0 {
                m.push('[');
                dump_ipv4_packet(m, flags, 0, skb, off + 8);
                m.push_str("] ");
            }
            if icmp_type == 3 && code == 4 {
                let _ = write!(m, "MTU={} ", be16(ich, 6));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests;
