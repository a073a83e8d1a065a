//! From received bytes to the classifier's [`Headers`].
//!
//! [`parse_ethernet`] reads an Ethernet II frame (with up to two VLAN tags), [`parse_ipv4`] a bare
//! IPv4 datagram. Both apply the checks Linux's `ip_rcv_core` makes before netfilter sees a
//! packet, in the kernel's order, and reject with a [`DropReason`] the dataplane counts:
//!
//! 1. at least 20 bytes, else [`DropReason::Truncated`];
//! 2. version 4, else [`DropReason::BadVersion`]; IHL at least 5, else
//!    [`DropReason::BadHeaderLen`];
//! 3. at least `ihl * 4` bytes, else [`DropReason::Truncated`];
//! 4. a valid header checksum, else [`DropReason::BadChecksum`];
//! 5. total length not beyond the buffer, else [`DropReason::Truncated`] (the kernel counts this
//!    one as `InTruncatedPkts`), and not below `ihl * 4`, else [`DropReason::BadTotalLen`].
//!
//! Bytes past the total length (Ethernet padding) are ignored. The transport readout ([`L4`])
//! looks only at the bytes between the header and the total length, and only in a datagram whose
//! fragment offset is 0, reading exactly what the kernel's matches can read with
//! `skb_header_pointer` (see [`l4_readout`]).

use super::{ethernet, ipv4, tcp, vlan, EtherType};
use crate::packet::{Headers, TcpOptions, L4};
use core::fmt;

/// Why a frame never reaches the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DropReason {
    /// Shorter than a header it must hold (Ethernet, VLAN tag, IPv4 header or options), or than
    /// the IPv4 total length.
    Truncated,
    /// The ethertype (after any VLAN tags) is not IPv4, or there are more tags than we read.
    NotIpv4,
    /// IP version field is not 4.
    BadVersion,
    /// IHL below 5.
    BadHeaderLen,
    /// Total length below the header length.
    BadTotalLen,
    /// The IPv4 header checksum does not verify.
    BadChecksum,
}

impl DropReason {
    /// Every reason, in declaration order (for counter tables).
    pub const ALL: [DropReason; 6] = [
        DropReason::Truncated,
        DropReason::NotIpv4,
        DropReason::BadVersion,
        DropReason::BadHeaderLen,
        DropReason::BadTotalLen,
        DropReason::BadChecksum,
    ];

    /// A stable snake_case name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Truncated => "truncated",
            DropReason::NotIpv4 => "not_ipv4",
            DropReason::BadVersion => "bad_version",
            DropReason::BadHeaderLen => "bad_header_len",
            DropReason::BadTotalLen => "bad_total_len",
            DropReason::BadChecksum => "bad_checksum",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Most VLAN tags read: an outer 802.1Q or 802.1ad tag and an inner 802.1Q tag.
const MAX_TAGS: usize = 2;

/// Parses an Ethernet II frame carrying IPv4, optionally behind one 802.1Q tag or a QinQ pair
/// (outer 0x88a8 or 0x8100, inner 0x8100). `vlan` is the VID of the innermost tag whose VID is not
/// 0 (a VID of 0 only carries a priority: Linux handles such a frame as untagged); `l3_offset` is
/// where the IPv4 header starts.
pub fn parse_ethernet(frame: &[u8]) -> Result<Headers, DropReason> {
    let eth = ethernet::Packet::new_checked(frame).map_err(|_| DropReason::Truncated)?;
    let mut ethertype = eth.ethertype();
    let mut rest = eth.payload();
    let mut vlan = None;
    let mut tags = 0;
    while ethertype.is_vlan_tag() {
        // Only the outer tag may be an 802.1ad service tag; a third tag is not read.
        if tags == MAX_TAGS || (tags > 0 && ethertype == EtherType::QINQ) {
            return Err(DropReason::NotIpv4);
        }
        let tag = vlan::Packet::new_checked(rest).map_err(|_| DropReason::Truncated)?;
        if tag.vid() != 0 {
            vlan = Some(tag.vid());
        }
        ethertype = tag.ethertype();
        rest = tag.payload();
        tags += 1;
    }
    if ethertype != EtherType::IPV4 {
        return Err(DropReason::NotIpv4);
    }
    let mut headers = parse_ipv4(rest)?;
    headers.src_mac = Some(eth.src_addr().0);
    headers.dst_mac = Some(eth.dst_addr().0);
    headers.vlan = vlan;
    // At most 14 + 2 * 4 bytes.
    headers.l3_offset = (frame.len() - rest.len()) as u16;
    Ok(headers)
}

/// Parses a bare IPv4 datagram (`l3_offset` 0, no MACs, no VLAN).
pub fn parse_ipv4(packet: &[u8]) -> Result<Headers, DropReason> {
    if packet.len() < ipv4::HEADER_LEN {
        return Err(DropReason::Truncated);
    }
    // From here the fixed header is present, so the view's fixed-field accessors cannot panic.
    let ip = ipv4::Packet::new_unchecked(packet);
    if ip.version() != 4 {
        return Err(DropReason::BadVersion);
    }
    let header_len = ip.header_len();
    if header_len < ipv4::HEADER_LEN {
        return Err(DropReason::BadHeaderLen);
    }
    if packet.len() < header_len {
        return Err(DropReason::Truncated);
    }
    if !ip.verify_checksum() {
        return Err(DropReason::BadChecksum);
    }
    let total_len = usize::from(ip.total_len());
    if total_len > packet.len() {
        return Err(DropReason::Truncated);
    }
    if total_len < header_len {
        return Err(DropReason::BadTotalLen);
    }
    // All of ipv4::Packet::check_len holds now.
    let frag_off = ip.frag_offset();
    let proto = ip.protocol().0;
    let l4 = if frag_off == 0 {
        l4_readout(proto, ip.payload())
    } else {
        L4::None
    };
    Ok(Headers {
        src: u32::from(ip.src_addr()),
        dst: u32::from(ip.dst_addr()),
        proto,
        ip_len: ip.total_len(),
        frag_off,
        more_frags: ip.more_frags(),
        dont_frag: ip.dont_frag(),
        tos: ip.tos(),
        ttl: ip.ttl(),
        ip_id: ip.ident(),
        ihl_bytes: header_len as u8,
        l4,
        src_mac: None,
        dst_mac: None,
        vlan: None,
        l3_offset: 0,
    })
}

/// What the kernel's matches can read of a transport header, given the IP protocol and the
/// bytes from the end of the IPv4 header to the total length (of an unfragmented datagram or a
/// first fragment).
///
/// * TCP with 20 bytes: ports, the whole flags byte (ECE and CWR included) and the options as
///   `tcp_mt` sees them: `BadOffset` when `doff * 4 < 20`, `Truncated` when the announced options
///   are not all present, else the kinds [`tcp::find_option_kinds`] finds.
/// * UDP and ICMP with 8 bytes (the icmp match reads the whole `struct icmphdr`).
/// * SCTP, DCCP and UDP-Lite with 4 bytes (the ports).
/// * Any of these with fewer bytes: `Short` (ports 0 below 4 bytes).
/// * Any other protocol: `None`.
pub fn l4_readout(proto: u8, l4: &[u8]) -> L4 {
    let need = match ipv4::IpProtocol(proto) {
        ipv4::IpProtocol::TCP => tcp::HEADER_LEN,
        ipv4::IpProtocol::UDP | ipv4::IpProtocol::ICMP => 8,
        ipv4::IpProtocol::SCTP | ipv4::IpProtocol::DCCP | ipv4::IpProtocol::UDPLITE => 4,
        _ => return L4::None,
    };
    let (sport, dport) = match l4 {
        [a, b, c, d, ..] => (u16::from_be_bytes([*a, *b]), u16::from_be_bytes([*c, *d])),
        _ => (0, 0),
    };
    if l4.len() < need {
        // Below `need` (at most 20), so it fits.
        return L4::Short {
            hdr_len: l4.len() as u16,
            sport,
            dport,
        };
    }
    match ipv4::IpProtocol(proto) {
        ipv4::IpProtocol::TCP => {
            // At least 20 bytes: the fixed-field accessors cannot panic.
            let th = tcp::Packet::new_unchecked(l4);
            let header_len = th.header_len();
            let options = if header_len < tcp::HEADER_LEN {
                TcpOptions::BadOffset
            } else {
                match l4.get(tcp::HEADER_LEN..header_len) {
                    Some(opts) => TcpOptions::Kinds(tcp::find_option_kinds(opts)),
                    None => TcpOptions::Truncated,
                }
            };
            L4::Tcp {
                sport,
                dport,
                flags: th.flags(),
                options,
            }
        }
        ipv4::IpProtocol::UDP => L4::Udp { sport, dport },
        ipv4::IpProtocol::ICMP => L4::Icmp {
            icmp_type: l4[0],
            code: l4[1],
        },
        _ => L4::Ports { sport, dport },
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::packet::TcpOptionKinds;
    use crate::wire::tcp::tests::{syn, DST, SRC};
    use crate::wire::{icmp, udp, EthernetAddress, IpProtocol};

    pub(crate) const MAC_A: EthernetAddress = EthernetAddress([0x52, 0x54, 0, 0x12, 0x34, 0x56]);
    pub(crate) const MAC_B: EthernetAddress = EthernetAddress([0x52, 0x54, 0, 0xab, 0xcd, 0xef]);

    /// An IPv4 datagram SRC -> DST around `l4`, with optional IP options.
    pub(crate) fn ip_datagram(proto: IpProtocol, l4: &[u8], options: &[u8]) -> Vec<u8> {
        let repr = ipv4::Repr {
            ident: 0x4242,
            dont_frag: true,
            tos: 0x10,
            options,
            ..ipv4::Repr::new(SRC, DST, proto, l4.len(), 64)
        };
        let mut v = vec![0u8; repr.buffer_len()];
        let mut p = ipv4::Packet::new_unchecked(&mut v[..]);
        repr.emit(&mut p);
        p.payload_mut().copy_from_slice(l4);
        v
    }

    /// An Ethernet frame MAC_A -> MAC_B around `ip`, behind `tags` ((tpid, tci) pairs).
    pub(crate) fn frame(tags: &[(u16, u16)], ip: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; ethernet::HEADER_LEN + 4 * tags.len() + ip.len()];
        let first = tags.first().map_or(EtherType::IPV4, |t| EtherType(t.0));
        ethernet::Repr {
            src_addr: MAC_A,
            dst_addr: MAC_B,
            ethertype: first,
        }
        .emit(&mut ethernet::Packet::new_unchecked(&mut v[..]));
        let mut at = ethernet::HEADER_LEN;
        for (i, &(_, tci)) in tags.iter().enumerate() {
            let next = tags.get(i + 1).map_or(EtherType::IPV4, |t| EtherType(t.0));
            let mut tag = vlan::Packet::new_unchecked(&mut v[at..]);
            tag.set_tci(tci);
            tag.set_ethertype(next);
            at += 4;
        }
        v[at..].copy_from_slice(ip);
        v
    }

    fn refill(ip: &mut [u8]) {
        ipv4::Packet::new_unchecked(ip).fill_checksum();
    }

    fn syn_kinds() -> TcpOptionKinds {
        let mut k = TcpOptionKinds::default();
        for kind in [1, 2, 3, 4, 8] {
            k.insert(kind);
        }
        k
    }

    #[test]
    fn tcp_syn_over_ethernet() {
        let ip = ip_datagram(IpProtocol::TCP, &syn(), &[]);
        let f = frame(&[], &ip);
        let h = parse_ethernet(&f).unwrap();
        assert_eq!(h.src, u32::from(SRC));
        assert_eq!(h.dst, u32::from(DST));
        assert_eq!(h.proto, 6);
        assert_eq!(h.ip_len, 60);
        assert_eq!((h.frag_off, h.more_frags, h.dont_frag), (0, false, true));
        assert_eq!((h.tos, h.ttl, h.ip_id, h.ihl_bytes), (0x10, 64, 0x4242, 20));
        assert_eq!(
            h.l4,
            L4::Tcp {
                sport: 46126,
                dport: 22,
                flags: tcp::flags::SYN,
                options: TcpOptions::Kinds(syn_kinds())
            }
        );
        assert_eq!(h.src_mac, Some(MAC_A.0));
        assert_eq!(h.dst_mac, Some(MAC_B.0));
        assert_eq!((h.vlan, h.l3_offset), (None, 14));
        assert_eq!(h.ports(), Some((46126, 22)));
        // The same datagram on its own.
        let h2 = parse_ipv4(&ip).unwrap();
        assert_eq!(
            Headers {
                src_mac: h.src_mac,
                dst_mac: h.dst_mac,
                l3_offset: 14,
                ..h2
            },
            h
        );
        assert_eq!(
            (h2.src_mac, h2.dst_mac, h2.vlan, h2.l3_offset),
            (None, None, None, 0)
        );
    }

    #[test]
    fn every_truncation_of_the_frame_is_an_error() {
        let f = frame(&[], &ip_datagram(IpProtocol::TCP, &syn(), &[]));
        for cut in 0..f.len() {
            assert_eq!(
                parse_ethernet(&f[..cut]),
                Err(DropReason::Truncated),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn every_truncation_of_the_tcp_header() {
        // The IP total length says the datagram ends where the cut is: a consistent datagram whose
        // TCP header is partial.
        let ip = ip_datagram(IpProtocol::TCP, &syn(), &[]);
        for cut in 20..=ip.len() {
            let mut d = ip[..cut].to_vec();
            d[2..4].copy_from_slice(&(cut as u16).to_be_bytes());
            refill(&mut d);
            let h = parse_ipv4(&d).unwrap();
            let avail = cut - 20;
            let want = match avail {
                0..=3 => L4::Short {
                    hdr_len: avail as u16,
                    sport: 0,
                    dport: 0,
                },
                4..=19 => L4::Short {
                    hdr_len: avail as u16,
                    sport: 46126,
                    dport: 22,
                },
                20..=39 => L4::Tcp {
                    sport: 46126,
                    dport: 22,
                    flags: 2,
                    options: TcpOptions::Truncated,
                },
                _ => L4::Tcp {
                    sport: 46126,
                    dport: 22,
                    flags: 2,
                    options: TcpOptions::Kinds(syn_kinds()),
                },
            };
            assert_eq!(h.l4, want, "cut {cut}");
            assert_eq!(h.ports().is_some(), avail >= 4);
            // Also through an Ethernet frame, with the padding of a minimum-size frame.
            let mut f = frame(&[], &d);
            f.resize(f.len().max(60), 0);
            assert_eq!(parse_ethernet(&f).unwrap().l4, want, "cut {cut}");
        }
    }

    #[test]
    fn ip_checks_in_kernel_order() {
        let good = ip_datagram(IpProtocol::UDP, &[0, 1, 0, 2, 0, 8, 0, 0], &[]);
        assert!(parse_ipv4(&good).is_ok());
        for cut in 0..20 {
            assert_eq!(parse_ipv4(&good[..cut]), Err(DropReason::Truncated));
        }
        // Version (checked before the checksum, which is now wrong too).
        let mut d = good.clone();
        d[0] = 0x65;
        assert_eq!(parse_ipv4(&d), Err(DropReason::BadVersion));
        d[0] = 0x04;
        assert_eq!(parse_ipv4(&d), Err(DropReason::BadVersion));
        // IHL below 5.
        let mut d = good.clone();
        d[0] = 0x44;
        assert_eq!(parse_ipv4(&d), Err(DropReason::BadHeaderLen));
        // IHL beyond the buffer.
        let mut d = good.clone();
        d[0] = 0x4f;
        assert_eq!(parse_ipv4(&d), Err(DropReason::Truncated));
        // Bad checksum.
        let mut d = good.clone();
        d[8] = 1;
        assert_eq!(parse_ipv4(&d), Err(DropReason::BadChecksum));
        // Bad checksum beats a bad total length.
        d[3] = 200;
        assert_eq!(parse_ipv4(&d), Err(DropReason::BadChecksum));
        // Total length beyond the buffer.
        let mut d = good.clone();
        d[3] = 29;
        refill(&mut d);
        assert_eq!(parse_ipv4(&d), Err(DropReason::Truncated));
        // Total length below the header length.
        d[3] = 19;
        refill(&mut d);
        assert_eq!(parse_ipv4(&d), Err(DropReason::BadTotalLen));
        // Total length 20: no L4 bytes.
        d[3] = 20;
        refill(&mut d);
        assert_eq!(
            parse_ipv4(&d).unwrap().l4,
            L4::Short {
                hdr_len: 0,
                sport: 0,
                dport: 0
            }
        );
    }

    #[test]
    fn padding_is_ignored() {
        // 6 bytes of "UDP" then Ethernet padding: the padding must not complete the header.
        let ip = ip_datagram(IpProtocol::UDP, &[0x13, 0x88, 0x00, 0x35, 0x00, 0x06], &[]);
        let mut f = frame(&[], &ip);
        f.resize(60, 0xaa);
        let h = parse_ethernet(&f).unwrap();
        assert_eq!(h.ip_len, 26);
        assert_eq!(
            h.l4,
            L4::Short {
                hdr_len: 6,
                sport: 5000,
                dport: 53
            }
        );
        let mut padded = ip.clone();
        padded.extend_from_slice(&[0; 40]);
        assert_eq!(parse_ipv4(&padded).unwrap().ip_len, 26);
    }

    #[test]
    fn ip_options_shift_l4() {
        let ip = ip_datagram(
            IpProtocol::UDP,
            &[0x13, 0x88, 0x00, 0x35, 0x00, 0x08, 0, 0],
            &[0x94, 0x04, 0, 0, 1],
        );
        let h = parse_ipv4(&ip).unwrap();
        assert_eq!((h.ihl_bytes, h.ip_len), (28, 36));
        assert_eq!(
            h.l4,
            L4::Udp {
                sport: 5000,
                dport: 53
            }
        );
    }

    #[test]
    fn fragments() {
        let ip = ip_datagram(IpProtocol::TCP, &syn(), &[]);
        // First fragment (MF, offset 0): the header is read.
        let mut d = ip.clone();
        ipv4::Packet::new_unchecked(&mut d[..]).set_more_frags(true);
        refill(&mut d);
        let h = parse_ipv4(&d).unwrap();
        assert!(h.more_frags && h.frag_off == 0);
        assert!(matches!(h.l4, L4::Tcp { .. }));
        // Later fragments: nothing is read, whatever the bytes look like.
        for off in [1u16, 2, 185, 0x1fff] {
            let mut d = ip.clone();
            let mut p = ipv4::Packet::new_unchecked(&mut d[..]);
            p.set_frag_offset(off);
            p.set_dont_frag(false);
            refill(&mut d);
            let h = parse_ipv4(&d).unwrap();
            assert_eq!(
                (h.frag_off, h.more_frags, h.dont_frag, h.l4),
                (off, false, false, L4::None)
            );
            assert_eq!(h.ports(), None);
        }
    }

    #[test]
    fn vlan_tags() {
        let ip = ip_datagram(IpProtocol::UDP, &[0, 1, 0, 2, 0, 8, 0, 0], &[]);
        // One 802.1Q tag: pcp 3, vid 100.
        let h = parse_ethernet(&frame(&[(0x8100, 0x6064)], &ip)).unwrap();
        assert_eq!((h.vlan, h.l3_offset), (Some(100), 18));
        assert_eq!(h.l4, L4::Udp { sport: 1, dport: 2 });
        // QinQ: service tag 10, customer tag 200 (the innermost is reported).
        let h = parse_ethernet(&frame(&[(0x88a8, 10), (0x8100, 200)], &ip)).unwrap();
        assert_eq!((h.vlan, h.l3_offset), (Some(200), 22));
        // Double 802.1Q is accepted too.
        let h = parse_ethernet(&frame(&[(0x8100, 10), (0x8100, 200)], &ip)).unwrap();
        assert_eq!(h.vlan, Some(200));
        // A priority tag (VID 0) is untagged; under a service tag, the service VID stays.
        assert_eq!(
            parse_ethernet(&frame(&[(0x8100, 0xe000)], &ip))
                .unwrap()
                .vlan,
            None
        );
        assert_eq!(
            parse_ethernet(&frame(&[(0x88a8, 7), (0x8100, 0)], &ip))
                .unwrap()
                .vlan,
            Some(7)
        );
        // Three tags, or 802.1ad inside: not read.
        assert_eq!(
            parse_ethernet(&frame(&[(0x8100, 1), (0x8100, 2), (0x8100, 3)], &ip)),
            Err(DropReason::NotIpv4)
        );
        assert_eq!(
            parse_ethernet(&frame(&[(0x8100, 1), (0x88a8, 2)], &ip)),
            Err(DropReason::NotIpv4)
        );
        // A cut tag.
        let f = frame(&[(0x88a8, 10), (0x8100, 200)], &ip);
        for cut in 14..22 {
            assert_eq!(
                parse_ethernet(&f[..cut]),
                Err(DropReason::Truncated),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn not_ipv4() {
        let ip = ip_datagram(IpProtocol::UDP, &[0, 1, 0, 2, 0, 8, 0, 0], &[]);
        for et in [0x0806u16, 0x86dd, 0x0000, 0x05dc] {
            let mut f = frame(&[], &ip);
            f[12..14].copy_from_slice(&et.to_be_bytes());
            assert_eq!(parse_ethernet(&f), Err(DropReason::NotIpv4));
        }
        let mut f = frame(&[(0x8100, 5)], &ip);
        f[16..18].copy_from_slice(&0x86ddu16.to_be_bytes());
        assert_eq!(parse_ethernet(&f), Err(DropReason::NotIpv4));
    }

    #[test]
    fn l4_protocols() {
        let l4_of = |proto: u8, l4: &[u8]| {
            parse_ipv4(&ip_datagram(IpProtocol(proto), l4, &[]))
                .unwrap()
                .l4
        };
        let eight = [0x00, 0x35, 0x13, 0x88, 0x00, 0x08, 0x00, 0x00];
        assert_eq!(
            l4_of(17, &eight),
            L4::Udp {
                sport: 53,
                dport: 5000
            }
        );
        assert_eq!(
            l4_of(17, &eight[..7]),
            L4::Short {
                hdr_len: 7,
                sport: 53,
                dport: 5000
            }
        );
        assert_eq!(
            l4_of(17, &eight[..3]),
            L4::Short {
                hdr_len: 3,
                sport: 0,
                dport: 0
            }
        );
        for proto in [132, 33, 136] {
            assert_eq!(
                l4_of(proto, &eight[..4]),
                L4::Ports {
                    sport: 53,
                    dport: 5000
                }
            );
            assert_eq!(
                l4_of(proto, &eight[..3]),
                L4::Short {
                    hdr_len: 3,
                    sport: 0,
                    dport: 0
                }
            );
        }
        for proto in [0u8, 2, 4, 41, 47, 50, 51, 255] {
            assert_eq!(l4_of(proto, &eight), L4::None);
            assert_eq!(l4_of(proto, &[]), L4::None);
        }
        // ICMP: the whole 8-byte header is needed.
        let ping = {
            let r = icmp::Repr::echo_request(1, 2, &[]);
            let mut v = vec![0u8; r.buffer_len()];
            r.emit(&mut icmp::Packet::new_unchecked(&mut v[..]));
            v
        };
        assert_eq!(
            l4_of(1, &ping),
            L4::Icmp {
                icmp_type: 8,
                code: 0
            }
        );
        assert_eq!(
            l4_of(1, &ping[..7]),
            L4::Short {
                hdr_len: 7,
                sport: 0x0800,
                dport: u16::from_be_bytes([ping[2], ping[3]])
            }
        );
        assert_eq!(
            l4_of(1, &ping[..1]),
            L4::Short {
                hdr_len: 1,
                sport: 0,
                dport: 0
            }
        );
    }

    #[test]
    fn tcp_flags_and_offsets() {
        let mut seg = syn();
        seg[13] = 0xff; // every flag, ECE and CWR included
        let ip = ip_datagram(IpProtocol::TCP, &seg, &[]);
        match parse_ipv4(&ip).unwrap().l4 {
            L4::Tcp { flags, .. } => assert_eq!(flags, 0xff),
            other => panic!("{other:?}"),
        }
        // Data offsets below 5: BadOffset (ports and flags still read).
        for doff in 0..5u8 {
            let mut s = seg.clone();
            s[12] = doff << 4;
            let l4 = parse_ipv4(&ip_datagram(IpProtocol::TCP, &s, &[]))
                .unwrap()
                .l4;
            assert_eq!(
                l4,
                L4::Tcp {
                    sport: 46126,
                    dport: 22,
                    flags: 0xff,
                    options: TcpOptions::BadOffset
                }
            );
        }
        // Data offset 5: no options, an empty set (the option bytes are payload then).
        let mut s = seg.clone();
        s[12] = 0x50;
        let l4 = parse_ipv4(&ip_datagram(IpProtocol::TCP, &s, &[]))
            .unwrap()
            .l4;
        assert_eq!(
            l4,
            L4::Tcp {
                sport: 46126,
                dport: 22,
                flags: 0xff,
                options: TcpOptions::Kinds(Default::default())
            }
        );
        // Data offset 15 with only 40 bytes: Truncated.
        s[12] = 0xf0;
        let l4 = parse_ipv4(&ip_datagram(IpProtocol::TCP, &s, &[]))
            .unwrap()
            .l4;
        assert_eq!(
            l4,
            L4::Tcp {
                sport: 46126,
                dport: 22,
                flags: 0xff,
                options: TcpOptions::Truncated
            }
        );
        // The option walk stops at the options area: a kind in the payload is not seen, and the
        // last option byte's missing length is not read from the payload.
        let mut s = seg[..20].to_vec();
        s[12] = 0x60;
        s.extend_from_slice(&[1, 1, 1, 77, 99, 99, 99, 99]);
        let l4 = parse_ipv4(&ip_datagram(IpProtocol::TCP, &s, &[]))
            .unwrap()
            .l4;
        let L4::Tcp {
            options: TcpOptions::Kinds(k),
            ..
        } = l4
        else {
            panic!("{l4:?}")
        };
        assert!(k.contains(1) && k.contains(77) && !k.contains(99));
    }

    #[test]
    fn drop_reason_names() {
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        assert_eq!(DropReason::BadChecksum.to_string(), "bad_checksum");
    }

    #[test]
    fn reject_reply_round_trip() {
        // What the dataplane does for REJECT: quote the offending datagram in a port unreachable
        // and send it back; the reply parses, and its quote points back at the original.
        let orig = ip_datagram(
            IpProtocol::UDP,
            &{
                let r = udp::Repr {
                    src_port: 5000,
                    dst_port: 53,
                    payload: b"query",
                };
                let mut v = vec![0u8; r.buffer_len()];
                r.emit(&mut udp::Packet::new_unchecked(&mut v[..]), SRC, DST);
                v
            },
            &[],
        );
        let icmp_repr = icmp::Repr::dst_unreachable(icmp::unreachable::PORT, &orig);
        let ip_repr = ipv4::Repr::new(DST, SRC, IpProtocol::ICMP, icmp_repr.buffer_len(), 64);
        let mut reply = vec![0u8; ip_repr.buffer_len()];
        let mut ip = ipv4::Packet::new_unchecked(&mut reply[..]);
        ip_repr.emit(&mut ip);
        icmp_repr.emit(&mut icmp::Packet::new_unchecked(ip.payload_mut()));
        let h = parse_ipv4(&reply).unwrap();
        assert_eq!(
            h.l4,
            L4::Icmp {
                icmp_type: 3,
                code: 3
            }
        );
        let ip = ipv4::Packet::new_checked(&reply[..]).unwrap();
        let msg = icmp::Packet::new_checked(ip.payload()).unwrap();
        assert!(msg.verify_checksum());
        let q = msg.quoted().unwrap();
        assert_eq!(
            (q.src_addr(), q.dst_addr(), q.ports()),
            (SRC, DST, Some((5000, 53)))
        );
    }
}
