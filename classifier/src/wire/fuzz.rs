//! Fuzz harnesses for the wire views (bolero).
//!
//! Under `cargo test` each harness runs random inputs for about a second (bolero's default; set
//! `BOLERO_RANDOM_ITERATIONS` or `BOLERO_RANDOM_TEST_TIME_MS` to change it); `cargo bolero test`
//! can drive the same targets with a coverage-guided engine.
//!
//! * `raw_bytes`: arbitrary bytes through every entry point: `parse_ethernet`, `parse_ipv4`, each
//!   `Packet::new_checked` followed by every accessor, and each `Repr::parse`; nothing may panic,
//!   the results must be self-consistent, and whatever parses must emit back to the same bytes.
//! * `mutated_frames`: a valid frame built from random fields (VLAN tags, IP options, protocol,
//!   TCP options, payload, fragment fields), checked against the fields it was built from, then
//!   cut and mutated and run through the raw harness again.

use super::headers::{l4_readout, parse_ethernet, parse_ipv4, tests::frame};
use super::{checksum, ethernet, icmp, ipv4, tcp, udp, vlan, IpProtocol};
use crate::packet::{TcpOptions, L4};
use std::net::Ipv4Addr;

const A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

/// Every view and parser over `bytes`; panics only on a broken invariant.
fn exercise(bytes: &[u8]) {
    if let Ok(h) = parse_ethernet(bytes) {
        assert!(usize::from(h.l3_offset) + usize::from(h.ip_len) <= bytes.len());
        assert!(h.src_mac.is_some() && h.dst_mac.is_some());
        let again = parse_ipv4(&bytes[usize::from(h.l3_offset)..]).unwrap();
        assert_eq!(again.l4, h.l4);
    }
    if let Ok(h) = parse_ipv4(bytes) {
        assert!(usize::from(h.ip_len) <= bytes.len());
        assert!(h.ihl_bytes >= 20 && u16::from(h.ihl_bytes) <= h.ip_len);
        let l4 = &bytes[usize::from(h.ihl_bytes)..usize::from(h.ip_len)];
        match h.l4 {
            L4::None => assert!(h.frag_off != 0 || !matches!(h.proto, 1 | 6 | 17 | 33 | 132 | 136)),
            L4::Tcp { .. } => assert!(h.proto == 6 && l4.len() >= 20),
            L4::Udp { .. } => assert!(h.proto == 17 && l4.len() >= 8),
            L4::Icmp { .. } => assert!(h.proto == 1 && l4.len() >= 8),
            L4::Ports { .. } => assert!(matches!(h.proto, 33 | 132 | 136) && l4.len() >= 4),
            L4::Short { hdr_len, .. } => assert_eq!(usize::from(hdr_len), l4.len()),
        }
        if h.frag_off == 0 {
            assert_eq!(l4_readout(h.proto, l4), h.l4);
        }
        // Whatever parse_ipv4 accepts, the IPv4 view and Repr accept.
        let p = ipv4::Packet::new_checked(bytes).unwrap();
        assert!(ipv4::Repr::parse(&p).is_ok());
    }
    for proto in [1u8, 6, 17, 33, 47, 132, 136] {
        let _ = l4_readout(proto, bytes);
    }

    if let Ok(p) = ethernet::Packet::new_checked(bytes) {
        let _ = (
            p.dst_addr(),
            p.src_addr(),
            p.ethertype(),
            p.payload(),
            p.header_len(),
        );
        let r = ethernet::Repr::parse(&p).unwrap();
        let mut out = bytes.to_vec();
        r.emit(&mut ethernet::Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    if let Ok(p) = vlan::Packet::new_checked(bytes) {
        let _ = (
            p.tci(),
            p.pcp(),
            p.dei(),
            p.vid(),
            p.ethertype(),
            p.payload(),
        );
        let r = vlan::Repr::parse(&p).unwrap();
        let mut out = bytes.to_vec();
        r.emit(&mut vlan::Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, bytes);
    }

    if let Ok(p) = ipv4::Packet::new_checked(bytes) {
        let _ = (
            p.version(),
            p.ihl(),
            p.tos(),
            p.dscp(),
            p.ecn(),
            p.ident(),
            p.reserved_flag(),
        );
        let _ = (
            p.dont_frag(),
            p.more_frags(),
            p.frag_offset(),
            p.is_fragment(),
            p.ttl(),
            p.protocol(),
        );
        let _ = (
            p.checksum(),
            p.src_addr(),
            p.dst_addr(),
            p.verify_checksum(),
            p.options(),
            p.header(),
        );
        assert_eq!(
            p.header_len() + p.payload().len(),
            usize::from(p.total_len())
        );
        if let Ok(r) = ipv4::Repr::parse(&p) {
            // Emit gives back the datagram (the reserved flag is not represented).
            let total = r.buffer_len();
            assert_eq!(total, usize::from(p.total_len()));
            let mut out = vec![0u8; total];
            let mut q = ipv4::Packet::new_unchecked(&mut out[..]);
            r.emit(&mut q);
            q.payload_mut().copy_from_slice(p.payload());
            // The stored checksum verified, but 0x0000 and 0xffff can both verify: compare
            // against a recomputed one.
            let mut want = bytes[..total].to_vec();
            let mut w = ipv4::Packet::new_unchecked(&mut want[..]);
            w.set_reserved_flag(false);
            w.fill_checksum();
            assert_eq!(out, want);
        }
    }

    if let Ok(p) = tcp::Packet::new_checked(bytes) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.seq_number(),
            p.ack_number(),
            p.ns(),
            p.flags(),
        );
        let _ = (
            p.fin(),
            p.syn(),
            p.rst(),
            p.psh(),
            p.ack(),
            p.urg(),
            p.ece(),
            p.cwr(),
        );
        let _ = (
            p.window_len(),
            p.checksum(),
            p.urgent_at(),
            p.payload(),
            p.option_kinds(),
        );
        let mut used = 0;
        for o in p.options_iter() {
            match o {
                Ok(o) => used += o.buffer_len(),
                Err(_) => break,
            }
        }
        assert!(used <= p.options().len());
        assert_eq!(p.header_len() + p.payload().len(), bytes.len());
        let _ = tcp::Repr::parse(&p, A, B);
        // With a valid checksum, the segment round-trips (emit clears the reserved bits and NS).
        let mut fixed = bytes.to_vec();
        tcp::Packet::new_unchecked(&mut fixed[..]).fill_checksum(A, B);
        let fp = tcp::Packet::new_checked(&fixed[..]).unwrap();
        let r = tcp::Repr::parse(&fp, A, B).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut tcp::Packet::new_unchecked(&mut out[..]), A, B);
        fixed[12] &= 0xf0;
        tcp::Packet::new_unchecked(&mut fixed[..]).fill_checksum(A, B);
        assert_eq!(out, fixed);
    }
    // The kernel walk never reads outside its slice, whatever it is given.
    let _ = tcp::find_option_kinds(bytes);
    for o in tcp::OptionIter::new(bytes) {
        if o.is_err() {
            break;
        }
    }

    if let Ok(p) = udp::Packet::new_checked(bytes) {
        let _ = (
            p.src_port(),
            p.dst_port(),
            p.len(),
            p.is_empty(),
            p.checksum(),
            p.verify_checksum(A, B),
        );
        assert_eq!(p.payload().len() + 8, usize::from(p.len()));
        let _ = udp::Repr::parse(&p, A, B);
        let mut fixed = bytes[..usize::from(p.len())].to_vec();
        udp::Packet::new_unchecked(&mut fixed[..]).fill_checksum(A, B);
        let r = udp::Repr::parse(&udp::Packet::new_checked(&fixed[..]).unwrap(), A, B).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut udp::Packet::new_unchecked(&mut out[..]), A, B);
        assert_eq!(out, fixed);
    }

    if let Ok(p) = icmp::Packet::new_checked(bytes) {
        let _ = (
            p.msg_type(),
            p.msg_code(),
            p.checksum(),
            p.rest_of_header(),
            p.echo_ident(),
            p.echo_seq_no(),
        );
        let _ = (
            p.next_hop_mtu(),
            p.pointer(),
            p.gateway(),
            p.verify_checksum(),
            p.data(),
        );
        if let Ok(q) = p.quoted() {
            let h = q.header();
            let _ = (
                h.version(),
                h.header_len(),
                h.total_len(),
                h.protocol(),
                h.options(),
                h.payload(),
            );
            let _ = (
                h.verify_checksum(),
                h.frag_offset(),
                q.src_addr(),
                q.dst_addr(),
                q.protocol(),
                q.ports(),
            );
            assert!(q.payload().len() <= icmp::QUOTED_PAYLOAD_LEN);
        }
        let mut fixed = bytes.to_vec();
        icmp::Packet::new_unchecked(&mut fixed[..]).fill_checksum();
        let r = icmp::Repr::parse(&icmp::Packet::new_checked(&fixed[..]).unwrap()).unwrap();
        let mut out = vec![0u8; r.buffer_len()];
        r.emit(&mut icmp::Packet::new_unchecked(&mut out[..]));
        assert_eq!(out, fixed);
    }
    let _ = icmp::Quoted::parse(bytes);
    let _ = checksum::data(bytes);
}

#[test]
fn raw_bytes() {
    bolero::check!()
        .with_max_len(256)
        .for_each(|bytes: &[u8]| exercise(bytes));
}

/// Raw bytes are rarely valid IPv4; prefix them with a valid header so the deeper paths run.
#[test]
fn raw_bytes_behind_valid_headers() {
    bolero::check!()
        .with_max_len(256)
        .with_type::<(u8, u8, Vec<u8>)>()
        .for_each(|(proto, ihl_words, rest)| {
            let ihl = 5 + usize::from(ihl_words % 11);
            let mut d = vec![0u8; ihl * 4];
            d.extend_from_slice(&rest[..rest.len().min(1500)]);
            let total = u16::try_from(d.len()).unwrap_or(u16::MAX);
            let mut p = ipv4::Packet::new_unchecked(&mut d[..]);
            p.set_version(4);
            p.set_header_len(ihl * 4);
            p.set_total_len(total);
            p.set_protocol(IpProtocol(*proto));
            p.fill_checksum();
            let h = parse_ipv4(&d).unwrap();
            assert_eq!(usize::from(h.ihl_bytes), ihl * 4);
            exercise(&d);
            exercise(&frame(&[], &d));
            exercise(&d[ihl * 4..]);
        });
}

/// Fields a frame is built from.
type FrameSpec = (
    (Option<(bool, u16)>, u8, u8, u8), // (tag: (qinq, vid), protocol selector, IP option words, tos)
    (u16, u16, u8, u8),                // (sport, dport, tcp flags, icmp type)
    (Vec<u8>, Vec<u8>),                // (tcp options, payload)
    (bool, u16),                       // (more fragments, fragment offset)
    (Option<u16>, Vec<(u16, u8)>),     // (cut, mutations (position, xor))
);

#[test]
fn mutated_frames() {
    bolero::check!().with_type::<FrameSpec>().for_each(
        |(
            (tag, sel, ip_words, tos),
            (sport, dport, tcp_flags, icmp_type),
            (tcp_opts, payload),
            (mf, off),
            (cut, muts),
        )| {
            let proto = [6u8, 17, 1, 132, 33, 136, 47][usize::from(*sel % 7)];
            let ip_opts: Vec<u8> = (0..usize::from(*ip_words % 11) * 4)
                .map(|i| if i % 4 == 3 { 0 } else { 1 })
                .collect();
            let tcp_opts = &tcp_opts[..tcp_opts.len().min(40)];
            let payload = &payload[..payload.len().min(64)];
            let l4: Vec<u8> = match proto {
                6 => {
                    let r = tcp::Repr {
                        src_port: *sport,
                        dst_port: *dport,
                        seq_number: 1,
                        ack_number: 2,
                        flags: *tcp_flags,
                        window_len: 3,
                        urgent_at: 0,
                        options: tcp_opts,
                        payload,
                    };
                    let mut v = vec![0u8; r.buffer_len()];
                    r.emit(&mut tcp::Packet::new_unchecked(&mut v[..]), A, B);
                    v
                }
                17 => {
                    let r = udp::Repr {
                        src_port: *sport,
                        dst_port: *dport,
                        payload,
                    };
                    let mut v = vec![0u8; r.buffer_len()];
                    r.emit(&mut udp::Packet::new_unchecked(&mut v[..]), A, B);
                    v
                }
                1 => {
                    let r = icmp::Repr {
                        msg_type: icmp::Message(*icmp_type),
                        code: 0,
                        rest: [0; 4],
                        data: payload,
                    };
                    let mut v = vec![0u8; r.buffer_len()];
                    r.emit(&mut icmp::Packet::new_unchecked(&mut v[..]));
                    v
                }
                _ => [&sport.to_be_bytes()[..], &dport.to_be_bytes()[..], payload].concat(),
            };
            let frag_offset = off & 0x1fff;
            let ip_repr = ipv4::Repr {
                tos: *tos,
                more_frags: *mf,
                frag_offset,
                options: &ip_opts,
                ..ipv4::Repr::new(A, B, IpProtocol(proto), l4.len(), 64)
            };
            let mut ip = vec![0u8; ip_repr.buffer_len()];
            let mut p = ipv4::Packet::new_unchecked(&mut ip[..]);
            ip_repr.emit(&mut p);
            p.payload_mut().copy_from_slice(&l4);
            let tags: Vec<(u16, u16)> = match tag {
                None => vec![],
                Some((false, vid)) => vec![(0x8100, *vid)],
                Some((true, vid)) => vec![(0x88a8, *vid), (0x8100, vid.wrapping_add(1))],
            };
            let mut f = frame(&tags, &ip);
            let l3 = f.len() - ip.len();
            if f.len() < 60 {
                f.resize(60, 0);
            }

            // The unmutated frame parses to the fields it was built from.
            let h = parse_ethernet(&f).unwrap();
            assert_eq!(
                (h.src, h.dst, h.proto, h.tos),
                (u32::from(A), u32::from(B), proto, *tos)
            );
            assert_eq!(
                (usize::from(h.ip_len), usize::from(h.l3_offset)),
                (ip.len(), l3)
            );
            assert_eq!(
                (h.more_frags, h.frag_off, usize::from(h.ihl_bytes)),
                (*mf, frag_offset, 20 + ip_opts.len())
            );
            // The innermost non-zero VID.
            assert_eq!(
                h.vlan,
                tags.iter().rev().map(|t| t.1 & 0xfff).find(|&v| v != 0)
            );
            let want = if frag_offset != 0 {
                L4::None
            } else {
                match proto {
                    6 => L4::Tcp {
                        sport: *sport,
                        dport: *dport,
                        flags: *tcp_flags,
                        options: TcpOptions::Kinds(tcp::find_option_kinds(&{
                            let mut o = tcp_opts.to_vec();
                            o.resize(tcp_opts.len().div_ceil(4) * 4, 0);
                            o
                        })),
                    },
                    17 => L4::Udp {
                        sport: *sport,
                        dport: *dport,
                    },
                    1 => L4::Icmp {
                        icmp_type: *icmp_type,
                        code: 0,
                    },
                    47 => L4::None,
                    _ => L4::Ports {
                        sport: *sport,
                        dport: *dport,
                    },
                }
            };
            assert_eq!(h.l4, want);

            // Then cut and mutate it.
            if let Some(cut) = cut {
                f.truncate(usize::from(*cut) % (f.len() + 1));
            }
            for (pos, xor) in muts {
                if !f.is_empty() {
                    let i = usize::from(*pos) % f.len();
                    f[i] ^= xor;
                }
            }
            exercise(&f);
            if let Some(ip) = f.get(l3..) {
                exercise(ip);
            }
        },
    );
}
