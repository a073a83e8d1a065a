//! Unit tests of connection tracking (table, protocols), on a virtual clock. The expected
//! states are netfilter's (`nf_conntrack_proto_tcp.c`'s table and `tcp_in_window`); the live
//! kernel differential in `tests/it` checks the same behaviour against the real thing.

use super::tcp::TcpState;
use super::*;
use crate::model::ct_state;
use crate::wire::{build, ipv4, tcp as wtcp, IpProtocol};
use std::net::Ipv4Addr;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MS: u64 = 1_000_000;

const F: u8 = 0x01;
const S: u8 = 0x02;
const R: u8 = 0x04;
const K: u8 = 0x10;

/// A TCP datagram from `src:sp` to `dst:dp`.
fn tcp_pkt(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sp: u16,
    dp: u16,
    flags: u8,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    tcp_data(src, dst, sp, dp, flags, seq, ack, &[])
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn tcp_data(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sp: u16,
    dp: u16,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    let seg = build::tcp(
        &wtcp::Repr {
            src_port: sp,
            dst_port: dp,
            seq_number: seq,
            ack_number: ack,
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

fn udp_pkt(src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16) -> Vec<u8> {
    let seg = build::udp(src, dst, sp, dp, b"hello");
    build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::UDP, 0, 64), &seg)
}

fn icmp_pkt(src: Ipv4Addr, dst: Ipv4Addr, icmp: &[u8]) -> Vec<u8> {
    let mut m = icmp.to_vec();
    m[2] = 0;
    m[3] = 0;
    let c = !crate::wire::checksum::data(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::ICMP, 0, 64), &m)
}

fn echo(t: u8, id: u16) -> Vec<u8> {
    let mut m = vec![t, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0, 1]);
    m
}

struct Rig {
    tr: Tracker,
    now_ns: u64,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(CtConfig::default())
    }
    fn with(cfg: CtConfig) -> Rig {
        Rig {
            tr: Tracker::new(cfg, 0x5eed, 0),
            now_ns: 0,
        }
    }
    fn at(&mut self, ms: u64) {
        self.now_ns = ms * MS;
        self.tr.set_clock(self.now_ns);
    }
    /// Tracks and, unless dropped, confirms (the packet survived the hooks).
    fn send(&mut self, ip: &[u8]) -> (Outcome, CtInfo) {
        let h = crate::wire::parse_ipv4(ip).expect("valid datagram");
        let (o, info) = self.tr.track(&h, ip, true);
        self.tr.confirm(&o).expect("no clash in these tests");
        (o, info)
    }
    fn state(&mut self, ip: &[u8]) -> u32 {
        self.send(ip).1.state
    }
    fn conn(&mut self, ip: &[u8]) -> &Conn {
        let h = crate::wire::parse_ipv4(ip).unwrap();
        let l4 = &ip[usize::from(h.ihl_bytes)..];
        let t = track::packet_tuple(&h, l4).unwrap();
        let f = self.tr.table.lookup(&t).expect("tracked");
        self.tr.table.get(f.id)
    }
    fn tcp_state(&mut self, ip: &[u8]) -> TcpState {
        match self.conn(ip).proto {
            ProtoState::Tcp(t) => t.state,
            _ => panic!("not tcp"),
        }
    }
}

const NEW: u32 = ct_state::NEW;
const EST: u32 = ct_state::ESTABLISHED;
const INV: u32 = ct_state::INVALID;
const REL: u32 = ct_state::RELATED;

#[test]
fn three_way_handshake_data_and_fin_teardown() {
    let mut r = Rig::new();
    let syn = tcp_pkt(A, B, 1000, 80, S, 100, 0);
    assert_eq!(r.state(&syn), NEW);
    assert_eq!(r.tcp_state(&syn), TcpState::SynSent);
    assert_eq!(r.state(&tcp_pkt(B, A, 80, 1000, S | K, 500, 101)), EST);
    assert_eq!(r.tcp_state(&syn), TcpState::SynRecv);
    assert!(r.conn(&syn).has(status::SEEN_REPLY));
    assert!(!r.conn(&syn).has(status::ASSURED));
    assert_eq!(r.state(&tcp_pkt(A, B, 1000, 80, K, 101, 501)), EST);
    assert_eq!(r.tcp_state(&syn), TcpState::Established);
    assert!(r.conn(&syn).has(status::ASSURED));
    let d = tcp_data(A, B, 1000, 80, K | 0x08, 101, 501, b"GET /");
    assert_eq!(r.state(&d), EST);
    assert_eq!(r.state(&tcp_pkt(B, A, 80, 1000, K, 501, 106)), EST);
    // Established, all acknowledged: the 5-day timeout.
    let id = r
        .send(&tcp_pkt(A, B, 1000, 80, K, 106, 501))
        .1
        .conn
        .unwrap();
    assert_eq!(r.tr.table.remaining_ms(id), 432_000_000);
    assert_eq!(r.state(&tcp_pkt(A, B, 1000, 80, F | K, 106, 501)), EST);
    assert_eq!(r.tcp_state(&syn), TcpState::FinWait);
    assert_eq!(r.state(&tcp_pkt(B, A, 80, 1000, F | K, 501, 107)), EST);
    assert_eq!(r.tcp_state(&syn), TcpState::LastAck);
    assert_eq!(r.state(&tcp_pkt(A, B, 1000, 80, K, 107, 502)), EST);
    assert_eq!(r.tcp_state(&syn), TcpState::TimeWait);
    assert_eq!(r.tr.table.remaining_ms(id), 120_000);
    // A new SYN on the closed connection reopens it (kill, then tracked afresh).
    let (o, info) = r.send(&tcp_pkt(A, B, 1000, 80, S, 9000, 0));
    assert_eq!(info.state, NEW);
    assert!(matches!(o, Outcome::Conn { created: true, .. }));
    assert_eq!(r.tcp_state(&syn), TcpState::SynSent);
}

#[test]
fn lone_ack_is_picked_up_but_syn_then_same_direction_ack_is_invalid() {
    let mut r = Rig::new();
    // tcp_loose: a mid-stream ACK makes an ESTABLISHED connection, NEW to the rules.
    let ack = tcp_pkt(A, B, 2000, 22, K, 5000, 7000);
    assert_eq!(r.state(&ack), NEW);
    assert_eq!(r.tcp_state(&ack), TcpState::Established);
    // Until a reply, the timeout is capped to the unacknowledged one.
    let id = r.send(&ack).1.conn.unwrap();
    assert_eq!(r.tr.table.remaining_ms(id), 300_000);
    // SYN, then an ACK from the same side: [orig][ack][SYN_SENT] is invalid.
    let syn = tcp_pkt(A, B, 2001, 22, S, 1, 0);
    assert_eq!(r.state(&syn), NEW);
    assert_eq!(r.state(&tcp_pkt(A, B, 2001, 22, K, 2, 1)), INV);
    assert_eq!(r.tcp_state(&syn), TcpState::SynSent);
    // Without tcp_loose the lone ACK makes nothing.
    let mut strict = Rig::with(CtConfig {
        tcp_loose: false,
        ..CtConfig::default()
    });
    assert_eq!(strict.state(&ack), INV);
    assert!(strict.tr.table.is_empty());
}

#[test]
fn invalid_flag_combinations_and_new_without_syn() {
    let mut r = Rig::new();
    for flags in [0, F, S | F, S | R, F | 0x08 | 0x20, 0x20] {
        assert_eq!(
            r.state(&tcp_pkt(A, B, 3000, 80, flags, 1, 0)),
            INV,
            "{flags:#x}"
        );
    }
    // SYN/ACK, FIN/ACK and RST never start a connection.
    for flags in [S | K, F | K, R, R | K] {
        assert_eq!(
            r.state(&tcp_pkt(A, B, 3001, 80, flags, 1, 1)),
            INV,
            "{flags:#x}"
        );
    }
    assert!(r.tr.table.is_empty());
    // A bad checksum is INVALID when arriving.
    let mut bad = tcp_pkt(A, B, 3002, 80, S, 1, 0);
    bad[37] ^= 0xff;
    assert_eq!(r.state(&bad), INV);
}

#[test]
fn rst_before_any_reply_removes_the_connection() {
    let mut r = Rig::new();
    r.send(&tcp_pkt(A, B, 4000, 81, S, 10, 0));
    let (o, info) = r.send(&tcp_pkt(B, A, 81, 4000, R | K, 0, 11));
    assert!(matches!(o, Outcome::Ended { .. }), "{o:?}");
    assert_eq!(info.state, EST);
    assert!(info.reply_dir);
    assert!(r.tr.table.iter().next().is_none(), "listed no more");
    let syn = tcp_pkt(A, B, 4000, 81, S, 10, 0);
    let h = crate::wire::parse_ipv4(&syn).unwrap();
    let t = track::packet_tuple(&h, &syn[20..]).unwrap();
    assert!(r.tr.table.lookup(&t).is_none(), "found no more");
    r.tr.set_clock(1);
    assert!(r.tr.table.is_empty(), "freed at the next batch");
}

#[test]
fn out_of_window_data_is_invalid_and_old_retransmissions_ignored() {
    let mut r = Rig::new();
    r.send(&tcp_pkt(A, B, 5000, 80, S, 100, 0));
    r.send(&tcp_pkt(B, A, 80, 5000, S | K, 500, 101));
    r.send(&tcp_pkt(A, B, 5000, 80, K, 101, 501));
    // Far above the receiver's window: INVALID.
    let far = tcp_data(A, B, 5000, 80, K, 101 + 10_000_000, 501, b"x");
    assert_eq!(r.state(&far), INV);
    // ACK of data B never sent: INVALID.
    assert_eq!(
        r.state(&tcp_pkt(A, B, 5000, 80, K, 101, 501 + 100_000)),
        INV
    );
    // Data, acknowledged; then the same data again: below the window's left edge is ignored
    // (tracked, ESTABLISHED), not INVALID.
    let big = vec![0u8; 1000];
    assert_eq!(r.state(&tcp_data(A, B, 5000, 80, K, 101, 501, &big)), EST);
    assert_eq!(r.state(&tcp_pkt(B, A, 80, 5000, K, 501, 1101)), EST);
    assert_eq!(
        r.tcp_state(&tcp_pkt(A, B, 5000, 80, K, 0, 0)),
        TcpState::Established
    );
    // be_liberal accepts what the window refuses.
    let mut lib = Rig::with(CtConfig {
        tcp_be_liberal: true,
        ..CtConfig::default()
    });
    lib.send(&tcp_pkt(A, B, 5000, 80, S, 100, 0));
    lib.send(&tcp_pkt(B, A, 80, 5000, S | K, 500, 101));
    lib.send(&tcp_pkt(A, B, 5000, 80, K, 101, 501));
    assert_eq!(lib.state(&far), EST);
}

#[test]
fn simultaneous_open_goes_through_syn_sent2() {
    let mut r = Rig::new();
    let syn = tcp_pkt(A, B, 6000, 6001, S, 100, 0);
    r.send(&syn);
    assert_eq!(r.state(&tcp_pkt(B, A, 6001, 6000, S, 900, 0)), EST);
    assert_eq!(r.tcp_state(&syn), TcpState::SynSent2);
    r.send(&tcp_pkt(A, B, 6000, 6001, S | K, 100, 901));
    assert_eq!(r.tcp_state(&syn), TcpState::SynRecv);
    r.send(&tcp_pkt(B, A, 6001, 6000, K, 901, 101));
    assert_eq!(r.tcp_state(&syn), TcpState::Established);
}

#[test]
fn udp_becomes_a_stream_only_after_two_seconds_with_a_reply() {
    let mut r = Rig::new();
    let q = udp_pkt(A, B, 5353, 53);
    let a = udp_pkt(B, A, 53, 5353);
    r.at(0);
    assert_eq!(r.state(&q), NEW);
    assert_eq!(r.state(&q), NEW);
    assert_eq!(r.state(&a), EST);
    assert!(r.conn(&q).has(status::SEEN_REPLY));
    r.at(1000);
    let id = r.send(&q).1.conn.unwrap();
    assert_eq!(r.tr.table.remaining_ms(id), 30_000);
    assert!(!r.conn(&q).has(status::ASSURED));
    r.at(2001);
    r.send(&a);
    assert!(r.conn(&q).has(status::ASSURED));
    assert_eq!(r.tr.table.remaining_ms(id), 120_000);
    // A truncated datagram (UDP length beyond the IP payload) is INVALID.
    let mut t = udp_pkt(A, B, 7, 7);
    t[24..26].copy_from_slice(&200u16.to_be_bytes());
    assert_eq!(r.state(&t), INV);
}

#[test]
fn icmp_queries_replies_and_errors() {
    let mut r = Rig::new();
    // A reply without its request is INVALID and leaves nothing.
    assert_eq!(r.state(&icmp_pkt(B, A, &echo(0, 7))), INV);
    assert!(r.tr.table.is_empty());
    assert_eq!(r.state(&icmp_pkt(A, B, &echo(8, 7))), NEW);
    assert_eq!(r.state(&icmp_pkt(B, A, &echo(0, 7))), EST);
    // A port unreachable quoting a tracked UDP flow is RELATED (reply direction).
    let q = udp_pkt(A, B, 4444, 53);
    r.send(&q);
    let mut err = vec![3, 3, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&q[..28]);
    let (_, info) = r.send(&icmp_pkt(B, A, &err));
    assert_eq!(info.state, REL);
    assert!(info.reply_dir);
    // The same error sent to another host than the flow's: INVALID.
    assert_eq!(r.state(&icmp_pkt(B, Ipv4Addr::new(10, 9, 9, 9), &err)), INV);
    // An error about nothing tracked: INVALID; type 19 or beyond: INVALID.
    let other = udp_pkt(A, B, 4445, 53);
    let mut e2 = vec![3, 3, 0, 0, 0, 0, 0, 0];
    e2.extend_from_slice(&other[..28]);
    assert_eq!(r.state(&icmp_pkt(B, A, &e2)), INV);
    assert_eq!(r.state(&icmp_pkt(A, B, &echo(40, 1))), INV);
    // A type without a reply (router advertisement) gets no connection.
    assert_eq!(r.state(&icmp_pkt(A, B, &echo(9, 1))), INV);
}

#[test]
fn other_protocols_are_tracked_by_addresses() {
    let mut r = Rig::new();
    let p = build::ipv4(ipv4::Repr::new(A, B, IpProtocol(253), 0, 64), b"abcd");
    let back = build::ipv4(ipv4::Repr::new(B, A, IpProtocol(253), 0, 64), b"abcd");
    assert_eq!(r.state(&p), NEW);
    let id = r.send(&back).1.conn.unwrap();
    assert_eq!(r.tr.table.remaining_ms(id), 600_000);
    // GRE: assured once both directions were seen.
    let g = build::ipv4(ipv4::Repr::new(A, B, IpProtocol(47), 0, 64), &[0, 0, 8, 0]);
    let gb = build::ipv4(ipv4::Repr::new(B, A, IpProtocol(47), 0, 64), &[0, 0, 8, 0]);
    r.send(&g);
    r.send(&gb);
    let id = r.send(&g).1.conn.unwrap();
    assert!(r.tr.table.get(id).has(status::ASSURED));
    assert_eq!(r.tr.table.remaining_ms(id), 180_000);
}

#[test]
fn unconfirmed_connections_die_with_their_packet_and_report_busy() {
    let mut r = Rig::new();
    let syn = tcp_pkt(A, B, 8000, 80, S, 1, 0);
    let h = crate::wire::parse_ipv4(&syn).unwrap();
    let (o, _) = r.tr.track(&h, &syn, true);
    // The same flow again before the first packet settled: Busy.
    assert_eq!(r.tr.track(&h, &syn, true).0, Outcome::Busy);
    // Unconfirmed: not listed, expiry 0 (the kernel's nf_ct_expires quirk).
    assert_eq!(r.tr.table.iter().count(), 0);
    r.tr.abort(&o);
    assert!(r.tr.table.is_empty());
    assert_eq!(r.tr.table.stats.aborted, 1);
}

#[test]
fn timeouts_expire_on_the_virtual_clock_and_ageing_is_bounded() {
    let mut r = Rig::new();
    r.at(0);
    for p in 0..100u16 {
        r.send(&udp_pkt(A, B, 10_000 + p, 53));
    }
    assert_eq!(r.tr.table.len(), 100);
    r.at(29_000);
    assert_eq!(r.tr.age(1000), 0);
    r.at(32_000);
    // Bounded: at most 10 looked at per call.
    let first = r.tr.age(10);
    assert!(first <= 10 && first > 0, "{first}");
    let mut freed = first;
    for _ in 0..20 {
        freed += r.tr.age(10);
    }
    assert_eq!(freed, 100);
    assert!(r.tr.table.is_empty());
    // A refreshed entry survives its first due slot.
    r.at(40_000);
    let q = udp_pkt(A, B, 1, 53);
    r.send(&q);
    r.at(60_000);
    r.send(&q);
    r.at(75_000);
    r.tr.age(1000);
    assert_eq!(r.tr.table.len(), 1);
    r.at(91_000);
    r.tr.age(1000);
    assert!(r.tr.table.is_empty());
    // An expired entry is gone on lookup even before ageing reaches it.
    r.at(100_000);
    r.send(&q);
    r.at(131_000);
    assert_eq!(r.state(&q), NEW);
}

#[test]
fn a_full_table_evicts_unassured_entries_else_drops() {
    let mut r = Rig::with(CtConfig {
        max: 8,
        ..CtConfig::default()
    });
    for p in 0..8u16 {
        r.send(&udp_pkt(A, B, 100 + p, 53));
    }
    // Full of unassured entries: a new one evicts one of them.
    assert_eq!(r.state(&udp_pkt(A, B, 999, 53)), NEW);
    assert_eq!(r.tr.table.len(), 8);
    assert_eq!(r.tr.table.stats.early_drop, 1);
    // Full of assured TCP connections: the new packet is dropped.
    let mut t = Rig::with(CtConfig {
        max: 4,
        ..CtConfig::default()
    });
    for p in 0..4u16 {
        t.send(&tcp_pkt(A, B, 100 + p, 80, S, 1, 0));
        t.send(&tcp_pkt(B, A, 80, 100 + p, S | K, 9, 2));
        t.send(&tcp_pkt(A, B, 100 + p, 80, K, 2, 10));
    }
    let (o, _) = t.send(&tcp_pkt(A, B, 5000, 80, S, 1, 0));
    assert_eq!(o, Outcome::Drop);
    assert_eq!(t.tr.table.stats.dropped_full, 1);
    assert_eq!(t.tr.table.len(), 4);
}

#[test]
fn entries_stay_compact() {
    let per = Table::bytes_per_connection();
    assert!(per <= 136, "{per} bytes per connection");
    eprintln!("Conn is {} bytes", core::mem::size_of::<Conn>());
    assert!(core::mem::size_of::<Conn>() <= 124);
}
