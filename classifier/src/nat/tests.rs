//! NAT unit tests: incremental checksums against recomputation on random packets, and the
//! tuple choice's cases (keep, clash, same-source reuse, null binding, ICMP errors, worker
//! partition). The live kernel differential in `tests/it` checks the translations against
//! netfilter itself.

use super::manip::{icmp_reply_translation, manip_ipv4, nat_packet};
use super::*;
use crate::conntrack::table::Dir;
use crate::conntrack::{CtConfig, Outcome};
use crate::wire::{build, ipv4, tcp as wtcp, IpProtocol};
use std::net::Ipv4Addr;

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const S: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const S2: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 81);
const N: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const L: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 9);

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        next_random(&mut self.0)
    }
}

fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let seg = build::tcp(
        &wtcp::Repr {
            src_port: sp,
            dst_port: dp,
            seq_number: 1000,
            ack_number: 0,
            flags,
            window_len: 65535,
            urgent_at: 0,
            options: &[],
            payload,
        },
        src,
        dst,
    );
    build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::TCP, 0, 64), &seg)
}

fn udp(src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16, payload: &[u8]) -> Vec<u8> {
    let seg = build::udp(src, dst, sp, dp, payload);
    build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::UDP, 0, 64), &seg)
}

fn icmp(src: Ipv4Addr, dst: Ipv4Addr, body: &[u8]) -> Vec<u8> {
    let mut m = body.to_vec();
    m[2..4].fill(0);
    let c = csum::sum_from_scratch(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::ICMP, 0, 64), &m)
}

/// The datagram's IP and transport checksums hold (a zero UDP checksum counts as none).
fn checksums_hold(ip: &[u8]) -> bool {
    let hl = usize::from(ip[0] & 0x0f) * 4;
    let (src, dst) = (
        u32::from_be_bytes(ip[12..16].try_into().unwrap()),
        u32::from_be_bytes(ip[16..20].try_into().unwrap()),
    );
    let l4 = &ip[hl..];
    csum::sum_from_scratch(&ip[..hl]) == 0
        && match ip[9] {
            6 => csum::l4_from_scratch(src, dst, 6, l4) == 0,
            17 => l4[6..8] == [0, 0] || csum::l4_from_scratch(src, dst, 17, l4) == 0,
            1 => csum::sum_from_scratch(l4) == 0,
            _ => true,
        }
}

#[test]
fn incremental_checksums_match_recomputation_on_random_packets() {
    let mut r = Rng(0x1234_5678_9abc_def1);
    for case in 0..20_000 {
        let x = r.next();
        let ip4 = |v: u64| Ipv4Addr::from(v as u32);
        let (src, dst) = (ip4(r.next()), ip4(r.next()));
        let (sp, dp) = (x as u16, (x >> 16) as u16);
        let payload = vec![(x >> 40) as u8; (x >> 48) as usize % 40];
        let mut p = match case % 4 {
            0 => tcp(src, dst, sp, dp, 0x12, &payload),
            1 => udp(src, dst, sp, dp, &payload),
            2 => {
                let mut u = udp(src, dst, sp, dp, &payload);
                u[26..28].fill(0); // no UDP checksum
                u
            }
            _ => icmp(src, dst, &[8, 0, 0, 0, (x >> 8) as u8, x as u8, 0, 1]),
        };
        let y = r.next();
        let target = Tuple {
            src: y as u32,
            dst: (y >> 32) as u32,
            sport: r.next() as u16,
            dport: r.next() as u16,
            proto: p[9],
        };
        let manip = if y & 1 == 0 { Manip::Src } else { Manip::Dst };
        manip_ipv4(&mut p, 0, &target, manip).unwrap();
        assert!(checksums_hold(&p), "case {case}: {p:02x?}");
        let h = crate::wire::parse_ipv4(&p).unwrap();
        match manip {
            Manip::Src => assert_eq!(h.src, target.src),
            Manip::Dst => assert_eq!(h.dst, target.dst),
        }
        if case % 4 == 2 {
            assert_eq!(p[26..28], [0, 0], "a missing UDP checksum stays missing");
        }
    }
}

struct Rig {
    tr: Tracker,
}

impl Rig {
    fn new() -> Rig {
        Rig {
            tr: Tracker::new(CtConfig::default(), 0x5eed, 0),
        }
    }

    /// Tracks a new connection's first packet; its id (unconfirmed).
    fn new_conn(&mut self, ip: &[u8]) -> ConnId {
        let h = crate::wire::parse_ipv4(ip).unwrap();
        match self.tr.track(&h, ip, true).0 {
            Outcome::Conn {
                id, created: true, ..
            } => id,
            o => panic!("not new: {o:?}"),
        }
    }

    fn confirm(&mut self, id: ConnId) {
        self.tr.table.confirm(id).expect("no clash in these tests");
    }

    /// SNAT (or DNAT) a new connection at `range`, then the other manip's null binding, then
    /// confirm: the reply tuple.
    fn bind(&mut self, ip: &[u8], range: Range, manip: Manip) -> Tuple {
        let id = self.new_conn(ip);
        let other = if manip == Manip::Src {
            Manip::Dst
        } else {
            Manip::Src
        };
        assert_eq!(self.tr.nat_null_binding(id, other), Setup::Done);
        assert_eq!(self.tr.nat_setup(id, &range, manip), Setup::Done);
        self.confirm(id);
        self.tr.table.get(id).tuple[1]
    }
}

fn onto(a: Ipv4Addr) -> Range {
    Range {
        flags: range_flags::MAP_IPS,
        min_addr: a.into(),
        max_addr: a.into(),
        ..Range::default()
    }
}

fn ports(mut r: Range, lo: u16, hi: u16) -> Range {
    r.flags |= range_flags::PROTO_SPECIFIED;
    r.min_port = lo;
    r.max_port = hi;
    r
}

#[test]
fn snat_keeps_a_free_port_and_moves_a_clashing_one_within_its_class() {
    let mut r = Rig::new();
    let first = r.bind(&tcp(A, S, 1000, 80, 0x02, &[]), onto(N), Manip::Src);
    assert_eq!((first.dst, first.dport), (N.into(), 1000));
    let second = r.bind(&tcp(B, S, 1000, 80, 0x02, &[]), onto(N), Manip::Src);
    assert_eq!(second.dst, u32::from(N));
    assert_ne!(second.dport, 1000);
    assert!((600..=1023).contains(&second.dport), "{}", second.dport);
    let high = r.bind(&tcp(A, S, 40000, 80, 0x02, &[]), onto(N), Manip::Src);
    let high2 = r.bind(&tcp(B, S, 40000, 80, 0x02, &[]), onto(N), Manip::Src);
    assert_eq!(high.dport, 40000);
    assert!(high2.dport >= 1024 && high2.dport != 40000);
}

#[test]
fn the_same_source_keeps_its_mapping_toward_another_destination() {
    let mut r = Rig::new();
    r.bind(&udp(A, S, 5000, 53, b"q"), onto(N), Manip::Src);
    let moved = r.bind(&udp(B, S, 5000, 53, b"q"), onto(N), Manip::Src);
    assert_ne!(moved.dport, 5000);
    let again = r.bind(&udp(B, S2, 5000, 53, b"q"), onto(N), Manip::Src);
    assert_eq!(
        again.dport, moved.dport,
        "find_appropriate_src reuses B's mapping"
    );
}

#[test]
fn dnat_to_an_address_and_port_and_the_null_binding_that_resolves_a_clash() {
    let mut r = Rig::new();
    // A reaches L:80 directly, then through the forward N:8080 -> L:80 from the same port.
    let direct = r.bind(&tcp(A, L, 1000, 80, 0x02, &[]), onto(A), Manip::Src);
    assert_eq!(
        (direct.src, direct.sport, direct.dport),
        (L.into(), 80, 1000)
    );
    let syn = tcp(A, N, 1000, 8080, 0x02, &[]);
    let id = r.new_conn(&syn);
    assert_eq!(
        r.tr.nat_setup(id, &ports(onto(L), 80, 80), Manip::Dst),
        Setup::Done
    );
    let c = *r.tr.table.get(id);
    assert!(c.has(status::DST_NAT | status::DST_NAT_DONE));
    assert_eq!((c.tuple[1].src, c.tuple[1].sport), (L.into(), 80));
    // The reply L:80 -> A:1000 is the direct connection's: POSTROUTING's null binding moves
    // the source port.
    assert_eq!(r.tr.nat_null_binding(id, Manip::Src), Setup::Done);
    let c = *r.tr.table.get(id);
    assert!(c.has(status::SRC_NAT | status::SRC_NAT_DONE));
    assert_eq!(c.tuple[1].dst, u32::from(A));
    assert!((600..=1023).contains(&c.tuple[1].dport) && c.tuple[1].dport != 1000);
    assert_eq!(r.tr.nat_setup(id, &onto(N), Manip::Src), Setup::Already);
}

#[test]
fn packets_are_rewritten_both_ways_and_icmp_errors_translated_back() {
    let mut r = Rig::new();
    let mut out = tcp(A, S, 1000, 80, 0x02, b"");
    let id = r.new_conn(&out);
    r.tr.nat_null_binding(id, Manip::Dst);
    r.tr.nat_setup(id, &ports(onto(N), 2000, 2000), Manip::Src);
    r.confirm(id);
    let c = *r.tr.table.get(id);
    // Original direction: POSTROUTING rewrites the source.
    assert_eq!(
        nat_packet(&c, Dir::Original, Manip::Dst, &mut out),
        Ok(false)
    );
    assert_eq!(
        nat_packet(&c, Dir::Original, Manip::Src, &mut out),
        Ok(true)
    );
    let h = crate::wire::parse_ipv4(&out).unwrap();
    assert_eq!((h.src, h.ports()), (N.into(), Some((2000, 80))));
    assert!(checksums_hold(&out));
    // The reply: PREROUTING rewrites the destination back.
    let mut back = tcp(S, N, 80, 2000, 0x12, b"");
    assert_eq!(nat_packet(&c, Dir::Reply, Manip::Dst, &mut back), Ok(true));
    let h = crate::wire::parse_ipv4(&back).unwrap();
    assert_eq!((h.dst, h.ports()), (A.into(), Some((80, 1000))));
    assert!(checksums_hold(&back));
    // A router's "fragmentation needed" about the translated packet, quoting all of it.
    let mut body = vec![3, 4, 0, 0, 0, 0, 0x05, 0xdc];
    body.extend_from_slice(&out);
    let mut err = icmp(Ipv4Addr::new(203, 0, 113, 1), N, &body);
    assert_eq!(
        icmp_reply_translation(&c, Dir::Reply, Manip::Dst, &mut err),
        Ok(true)
    );
    assert!(checksums_hold(&err));
    let h = crate::wire::parse_ipv4(&err).unwrap();
    assert_eq!(h.dst, u32::from(A));
    let inner = &err[28..];
    let ih = crate::wire::parse_ipv4(inner).unwrap();
    assert_eq!(
        (ih.src, ih.dst, ih.ports()),
        (A.into(), S.into(), Some((1000, 80)))
    );
    assert_eq!(
        inner,
        &tcp(A, S, 1000, 80, 0x02, b"")[..],
        "the quote is the original packet"
    );
    // A bad ICMP checksum is refused.
    err[22] ^= 1;
    assert!(icmp_reply_translation(&c, Dir::Reply, Manip::Dst, &mut err).is_err());
}

#[test]
fn icmp_queries_get_a_free_id() {
    let mut r = Rig::new();
    let ping = |src| icmp(src, S, &[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
    let a = r.bind(&ping(A), onto(N), Manip::Src);
    let b = r.bind(&ping(B), onto(N), Manip::Src);
    assert_eq!(a.sport, 0x1234);
    assert_ne!(b.sport, 0x1234);
}

#[test]
fn random_fully_and_persistent_ranges() {
    let mut r = Rig::new();
    let mut range = ports(onto(N), 20000, 20099);
    range.flags |= range_flags::PROTO_RANDOM_FULLY;
    for sp in 0..50u16 {
        let t = r.bind(&udp(A, S, 20000 + sp, 53, b""), range, Manip::Src);
        assert!((20000..=20099).contains(&t.dport));
    }
    // Over an address range the choice is a hash of the source (and destination unless
    // persistent): stable for a source, whatever its port.
    let pool = Range {
        flags: range_flags::MAP_IPS | range_flags::PERSISTENT,
        min_addr: u32::from(N),
        max_addr: u32::from(N) + 15,
        ..Range::default()
    };
    let x = r.bind(&udp(B, S, 1, 53, b""), pool, Manip::Src).dst;
    let y = r.bind(&udp(B, S2, 2, 53, b""), pool, Manip::Src).dst;
    assert_eq!(x, y);
    assert!((pool.min_addr..=pool.max_addr).contains(&x));
}

#[test]
fn with_several_workers_replies_hash_to_the_choosing_worker() {
    let mut r = Rig::new();
    let owner = Owner {
        key: 0xfeed,
        workers: 4,
        me: 2,
    };
    r.tr.set_nat_owner(owner);
    for i in 0..200u16 {
        let t = r.bind(&tcp(A, S, 3000 + i, 80, 0x02, &[]), onto(N), Manip::Src);
        assert!(owner.owns(&t), "{t:?}");
        assert!(t.dport >= 1024);
    }
}

#[test]
fn jhash2_matches_the_kernels() {
    // Values printed by linux/jhash.h's jhash2 compiled as C (on a little-endian machine; the
    // first is the address word 10.1.0.2 seeded with 192.0.2.80, as find_best_ips_proto
    // hashes them).
    assert_eq!(
        choose::jhash2(&[0x0200_010a, 0, 0, 0], 0x5002_00c0),
        0xe213_6a53
    );
    assert_eq!(choose::jhash2(&[1, 2, 3], 7), 0xfbd6_12ad);
    assert_eq!(choose::jhash2(&[0xdead_beef, 5], 0), 0xc065_72d0);
    assert_eq!(choose::jhash2(&[], 0), 0xdead_beef);
}

/// A GRE datagram without keys (version 0): NAT cannot move it to another "port".
fn gre(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    build::ipv4(
        ipv4::Repr::new(src, dst, IpProtocol(47), 0, 64),
        &[0, 0, 8, 0, 1, 2, 3, 4],
    )
}

#[test]
fn a_taken_reply_tuple_fails_confirmation_and_frees_the_connection() {
    let mut r = Rig::new();
    let first = r.bind(&gre(A, S), onto(N), Manip::Src);
    assert_eq!(first.dst, u32::from(N));
    let id = r.new_conn(&gre(B, S));
    assert_eq!(r.tr.nat_null_binding(id, Manip::Dst), Setup::Done);
    assert_eq!(r.tr.nat_setup(id, &onto(N), Manip::Src), Setup::Done);
    assert_eq!(
        r.tr.table.get(id).tuple[1],
        first,
        "no other tuple to choose"
    );
    let before = r.tr.table.len();
    assert_eq!(r.tr.table.confirm(id), Err(crate::conntrack::Clash));
    assert_eq!(r.tr.table.len(), before - 1, "the loser is freed");
    assert_eq!(r.tr.table.stats.insert_failed, 1);
    // The winner is untouched and still found by its reply.
    let reply = gre(S, N);
    let h = crate::wire::parse_ipv4(&reply).unwrap();
    assert!(matches!(
        r.tr.track(&h, &reply, true).0,
        Outcome::Conn {
            dir: Dir::Reply,
            created: false,
            ..
        }
    ));
}
