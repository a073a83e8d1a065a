//! Unit tests of the SCTP tracker, through a [`Tracker`] on a virtual clock. Expected states,
//! tags and verdicts are those of Linux 6.12's `nf_conntrack_proto_sctp.c`.

use super::*;
use crate::conntrack::track::packet_tuple;
use crate::conntrack::{Outcome, Tracker};
use crate::model::ct_state;
use crate::packet::CtInfo;
use crate::wire::{build, ipv4, IpProtocol};
use std::net::Ipv4Addr;

const A: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const MS: u64 = 1_000_000;

const NEW: u32 = ct_state::NEW;
const EST: u32 = ct_state::ESTABLISHED;
const INV: u32 = ct_state::INVALID;

/// The client's (A's) and the server's (B's) initiate tags.
const CT: u32 = 0x1111_1111;
const ST: u32 = 0x2222_2222;

/// One chunk: header, body, padding to 4.
fn ch(ty: u8, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![ty, flags];
    v.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    v.extend_from_slice(body);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

/// An INIT or INIT_ACK body (`sctp_inithdr`) with initiate tag `tag`.
fn init_body(tag: u32) -> Vec<u8> {
    let mut v = tag.to_be_bytes().to_vec();
    v.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    v.extend_from_slice(&10u16.to_be_bytes()); // outbound streams
    v.extend_from_slice(&10u16.to_be_bytes()); // inbound streams
    v.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
    v
}

fn init(tag: u32) -> Vec<u8> {
    ch(cid::INIT, 0, &init_body(tag))
}
fn init_ack(tag: u32) -> Vec<u8> {
    let mut b = init_body(tag);
    b.extend_from_slice(&[0, 7, 0, 8, 0xc0, 0x0c, 0x1e, 0x00]); // state cookie parameter
    ch(cid::INIT_ACK, 0, &b)
}
fn data(b: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]; // TSN, stream, ssn, ppid
    v.extend_from_slice(b);
    ch(cid::DATA, 0x03, &v)
}
fn heartbeat(ty: u8) -> Vec<u8> {
    ch(ty, 0, &[0, 1, 0, 8, 0xde, 0xad, 0xbe, 0xef])
}
fn bare(ty: u8) -> Vec<u8> {
    ch(ty, 0, &[])
}

/// The SCTP datagram's bytes (common header with a good CRC32c, then the chunks).
fn sctp_l4(sp: u16, dp: u16, vtag: u32, cs: &[Vec<u8>]) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sp.to_be_bytes());
    l4.extend_from_slice(&dp.to_be_bytes());
    l4.extend_from_slice(&vtag.to_be_bytes());
    l4.extend_from_slice(&[0; 4]);
    for c in cs {
        l4.extend_from_slice(c);
    }
    let crc = checksum(&l4);
    l4[8..12].copy_from_slice(&crc.to_le_bytes());
    l4
}

fn ip(src: Ipv4Addr, dst: Ipv4Addr, l4: &[u8]) -> Vec<u8> {
    build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::SCTP, 0, 64), l4)
}

/// A → B (original direction), port 5000 → 80.
fn ab(vtag: u32, cs: &[Vec<u8>]) -> Vec<u8> {
    ip(A, B, &sctp_l4(5000, 80, vtag, cs))
}
/// B → A (reply direction).
fn ba(vtag: u32, cs: &[Vec<u8>]) -> Vec<u8> {
    ip(B, A, &sctp_l4(80, 5000, vtag, cs))
}

struct Rig {
    tr: Tracker,
}

impl Rig {
    fn new() -> Rig {
        Rig::with(CtConfig::default())
    }
    fn with(cfg: CtConfig) -> Rig {
        Rig {
            tr: Tracker::new(cfg, 0x5c7b, 0),
        }
    }
    fn at(&mut self, ms: u64) {
        self.tr.set_clock(ms * MS);
    }
    /// Tracks (as arriving or not) and, unless invalid, confirms.
    fn send_as(&mut self, ip: &[u8], arriving: bool) -> (Outcome, CtInfo) {
        let h = crate::wire::parse_ipv4(ip).expect("valid datagram");
        let (o, info) = self.tr.track(&h, ip, arriving);
        self.tr.confirm(&o).expect("no clash in these tests");
        (o, info)
    }
    fn send(&mut self, ip: &[u8]) -> (Outcome, CtInfo) {
        self.send_as(ip, true)
    }
    fn state(&mut self, ip: &[u8]) -> u32 {
        self.send(ip).1.state
    }
    fn conn(&mut self, ip: &[u8]) -> &Conn {
        let h = crate::wire::parse_ipv4(ip).unwrap();
        let t = packet_tuple(&h, &ip[usize::from(h.ihl_bytes)..]).unwrap();
        let f = self.tr.table.lookup(&t).expect("tracked");
        self.tr.table.get(f.id)
    }
    fn sctp(&mut self, ip: &[u8]) -> SctpConn {
        match self.conn(ip).proto {
            ProtoState::Sctp(s) => s,
            _ => panic!("not sctp"),
        }
    }
    /// The connection's time left (ms), through a packet of it.
    fn left(&mut self, ip: &[u8]) -> u32 {
        let h = crate::wire::parse_ipv4(ip).unwrap();
        let t = packet_tuple(&h, &ip[usize::from(h.ihl_bytes)..]).unwrap();
        let f = self.tr.table.lookup(&t).expect("tracked");
        self.tr.table.remaining_ms(f.id)
    }
    /// INIT, INIT_ACK, COOKIE_ECHO, COOKIE_ACK with tags CT and ST.
    fn handshake(&mut self) {
        assert_eq!(self.state(&ab(0, &[init(CT)])), NEW);
        assert_eq!(self.state(&ba(CT, &[init_ack(ST)])), EST);
        assert_eq!(
            self.state(&ab(ST, &[ch(cid::COOKIE_ECHO, 0, b"cookie!!")])),
            EST
        );
        assert_eq!(self.state(&ba(CT, &[bare(cid::COOKIE_ACK)])), EST);
    }
}

#[test]
fn four_way_handshake_data_and_shutdown() {
    let mut r = Rig::new();
    let first = ab(0, &[init(CT)]);
    let (o, info) = r.send(&first);
    assert_eq!(info.state, NEW);
    assert!(matches!(o, Outcome::Conn { created: true, .. }));
    let s = r.sctp(&first);
    assert_eq!(s.state, SctpState::Closed);
    assert_eq!(s.vtag, [0, CT]);
    assert_eq!(s.init, [true, false]);
    assert_eq!(r.left(&first), 10_000);

    assert_eq!(r.state(&ba(CT, &[init_ack(ST)])), EST);
    let s = r.sctp(&first);
    assert_eq!(s.state, SctpState::CookieWait);
    assert_eq!(s.vtag, [ST, CT]);
    assert_eq!(r.left(&first), 3_000);
    assert!(r.conn(&first).has(status::SEEN_REPLY));

    assert_eq!(
        r.state(&ab(ST, &[ch(cid::COOKIE_ECHO, 0, b"cookie!!")])),
        EST
    );
    assert_eq!(r.sctp(&first).state, SctpState::CookieEchoed);
    assert_eq!(r.left(&first), 3_000);
    assert!(!r.conn(&first).has(status::ASSURED));

    assert_eq!(r.state(&ba(CT, &[bare(cid::COOKIE_ACK)])), EST);
    let s = r.sctp(&first);
    assert_eq!(s.state, SctpState::Established);
    assert_eq!(s.init, [false, false]);
    assert!(r.conn(&first).has(status::ASSURED));
    assert_eq!(r.left(&first), 210_000);

    // DATA and SACK keep the state and refresh the timeout.
    r.at(5_000);
    assert_eq!(r.state(&ab(ST, &[data(b"hello")])), EST);
    assert_eq!(r.left(&first), 210_000);
    assert_eq!(r.state(&ba(CT, &[ch(cid::SACK, 0, &[0; 12])])), EST);
    assert_eq!(r.sctp(&first).state, SctpState::Established);

    // SHUTDOWN, SHUTDOWN_ACK, SHUTDOWN_COMPLETE.
    assert_eq!(
        r.state(&ab(ST, &[ch(cid::SHUTDOWN, 0, &[0, 0, 0, 1])])),
        EST
    );
    assert_eq!(r.sctp(&first).state, SctpState::ShutdownSent);
    assert_eq!(r.left(&first), 3_000);
    assert_eq!(r.state(&ba(CT, &[bare(cid::SHUTDOWN_ACK)])), EST);
    assert_eq!(r.sctp(&first).state, SctpState::ShutdownAckSent);
    assert_eq!(r.left(&first), 3_000);
    assert_eq!(r.state(&ab(ST, &[bare(cid::SHUTDOWN_COMPLETE)])), EST);
    assert_eq!(r.sctp(&first).state, SctpState::Closed);
    assert_eq!(r.left(&first), 10_000);
    assert!(can_early_drop(&SctpConn {
        state: SctpState::ShutdownAckSent,
        ..SctpConn::default()
    }));
    assert!(!can_early_drop(&r.sctp(&first)));

    // A new INIT on the CLOSED entry is let through without renewing the timeout...
    r.at(9_000);
    assert_eq!(r.state(&ab(0, &[init(0x3333_3333)])), EST);
    assert_eq!(r.left(&first), 6_000);
    let s = r.sctp(&first);
    assert_eq!(s.state, SctpState::Closed);
    assert_eq!(s.vtag[1], 0x3333_3333);
    // ... and its INIT_ACK reopens the association.
    assert_eq!(r.state(&ba(0x3333_3333, &[init_ack(0x4444_4444)])), EST);
    let s = r.sctp(&first);
    assert_eq!(s.state, SctpState::CookieWait);
    assert_eq!(s.vtag, [0x4444_4444, 0x3333_3333]);
    assert_eq!(r.left(&first), 3_000);
}

#[test]
fn wrong_verification_tags_are_invalid() {
    let mut r = Rig::new();
    r.handshake();
    let probe = ab(ST, &[data(b"x")]);
    // DATA with the other direction's tag, or a made-up one.
    assert_eq!(r.state(&ab(CT, &[data(b"x")])), INV);
    assert_eq!(r.state(&ba(ST, &[data(b"x")])), INV);
    assert_eq!(r.state(&ab(0xdead_beef, &[bare(cid::SHUTDOWN)])), INV);
    // COOKIE_ECHO must carry its direction's tag; an INIT must carry 0.
    assert_eq!(r.state(&ab(CT, &[ch(cid::COOKIE_ECHO, 0, b"cook")])), INV);
    assert_eq!(r.state(&ab(ST, &[init(CT)])), INV);
    // A SHUTDOWN_COMPLETE with the T bit carries the peer's tag.
    assert_eq!(r.state(&ab(CT, &[bare(cid::SHUTDOWN_COMPLETE)])), INV);
    assert_eq!(r.sctp(&probe).state, SctpState::Established);
    assert_eq!(r.state(&ab(CT, &[ch(cid::SHUTDOWN_COMPLETE, 1, &[])])), EST);
}

#[test]
fn abort_with_and_without_the_t_bit() {
    let mut r = Rig::new();
    r.handshake();
    let probe = ab(ST, &[data(b"x")]);
    // Own tag without T, the peer's with T; anything else is INVALID.
    assert_eq!(r.state(&ba(ST, &[bare(cid::ABORT)])), INV);
    assert_eq!(r.state(&ba(CT, &[ch(cid::ABORT, 1, &[])])), INV);
    assert_eq!(r.sctp(&probe).state, SctpState::Established);
    assert_eq!(r.state(&ba(CT, &[bare(cid::ABORT)])), EST);
    assert_eq!(r.sctp(&probe).state, SctpState::Closed);
    assert_eq!(r.left(&probe), 10_000);

    let mut t = Rig::new();
    t.handshake();
    assert_eq!(t.state(&ba(ST, &[ch(cid::ABORT, 1, &[])])), EST);
    assert_eq!(t.sctp(&probe).state, SctpState::Closed);
}

#[test]
fn what_may_not_start_a_connection() {
    let mut r = Rig::new();
    for cs in [
        vec![bare(cid::ABORT)],
        vec![bare(cid::SHUTDOWN_COMPLETE)],
        vec![bare(cid::COOKIE_ACK)],
        vec![data(b"x")],
        vec![ch(cid::SACK, 0, &[0; 12])],
        vec![heartbeat(cid::HEARTBEAT), data(b"x")],
    ] {
        assert_eq!(r.state(&ab(0, &cs)), INV, "{cs:?}");
    }
    // An INIT with a non-zero tag, or cut before the end of its header.
    assert_eq!(r.state(&ab(7, &[init(CT)])), INV);
    let mut cut = sctp_l4(5000, 80, 0, &[init(CT)]);
    cut.truncate(12 + 4 + 8);
    cut[14..16].copy_from_slice(&12u16.to_be_bytes());
    let crc = checksum(&cut);
    cut[8..12].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(r.state(&ip(A, B, &cut)), INV);
    assert!(r.tr.table.is_empty());
    // An OOTB SHUTDOWN_ACK does: SHUTDOWN_ACK_SENT, the reply's tag noted.
    let sa = ab(0x55, &[bare(cid::SHUTDOWN_ACK)]);
    assert_eq!(r.state(&sa), NEW);
    let s = r.sctp(&sa);
    assert_eq!(s.state, SctpState::ShutdownAckSent);
    assert_eq!(s.vtag, [0, 0x55]);
    assert_eq!(r.left(&sa), 3_000);
}

#[test]
fn chunk_bundling_rules() {
    let mut r = Rig::new();
    // INIT, INIT_ACK and SHUTDOWN_COMPLETE must be alone; COOKIE_ECHO / COOKIE_ACK first.
    assert_eq!(r.state(&ab(0, &[init(CT), data(b"x")])), INV);
    assert_eq!(r.state(&ab(0, &[data(b"x"), init(CT)])), INV);
    assert!(r.tr.table.is_empty());
    assert_eq!(r.state(&ab(0, &[init(CT)])), NEW);
    assert_eq!(r.state(&ba(CT, &[init_ack(ST), data(b"x")])), INV);
    assert_eq!(r.state(&ba(CT, &[init_ack(ST)])), EST);
    let probe = ab(ST, &[data(b"x")]);
    assert_eq!(
        r.state(&ab(ST, &[data(b"x"), ch(cid::COOKIE_ECHO, 0, b"ck")])),
        INV
    );
    assert_eq!(r.sctp(&probe).state, SctpState::CookieWait);
    assert_eq!(
        r.state(&ab(ST, &[ch(cid::COOKIE_ECHO, 0, b"ck"), data(b"x")])),
        EST
    );
    assert_eq!(r.sctp(&probe).state, SctpState::CookieEchoed);
    assert_eq!(r.state(&ba(CT, &[bare(cid::COOKIE_ACK), data(b"y")])), EST);
    assert_eq!(r.sctp(&probe).state, SctpState::Established);
    assert_eq!(
        r.state(&ab(ST, &[data(b"x"), bare(cid::SHUTDOWN_COMPLETE)])),
        INV
    );
    // A zero-length chunk, no chunk at all, a datagram shorter than the common header.
    let mut zero = sctp_l4(5000, 80, ST, &[data(b"x"), bare(cid::SACK)]);
    let at = zero.len() - 4;
    zero[at + 2..at + 4].copy_from_slice(&[0, 0]);
    let crc = checksum(&zero);
    zero[8..12].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(r.state(&ip(A, B, &zero)), INV);
    assert_eq!(r.state(&ab(ST, &[])), INV);
    assert_eq!(r.state(&ip(A, B, &[0x13, 0x88, 0, 80, 0, 0, 0, 0])), INV);
    // A trailing partial chunk header is not a chunk.
    let mut tail = sctp_l4(5000, 80, ST, &[data(b"x")]);
    tail.extend_from_slice(&[9, 9]);
    let crc = checksum(&tail);
    tail[8..12].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(r.state(&ip(A, B, &tail)), EST);
}

#[test]
fn checksum_is_verified_on_arrival_only() {
    let good = ab(0, &[init(CT)]);
    let mut bad = good.clone();
    bad[20 + 8] ^= 0x5a;
    let mut r = Rig::new();
    assert_eq!(r.state(&bad), INV);
    assert!(r.tr.table.is_empty());
    assert_eq!(r.send_as(&bad, false).1.state, NEW);
    let mut off = Rig::with(CtConfig {
        checksum: false,
        ..CtConfig::default()
    });
    assert_eq!(off.state(&bad), NEW);
    let mut ok = Rig::new();
    assert_eq!(ok.state(&good), NEW);
}

#[test]
fn crc32c_known_answers() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
    // RFC 3720 B.4 (the bytes on the wire are the little-endian value: aa 36 91 8a).
    assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
    let inc: Vec<u8> = (0u8..32).collect();
    assert_eq!(crc32c(&inc), 0x46DD_794E);
    // checksum() takes the checksum field as zero.
    let mut l4 = sctp_l4(1, 2, 3, &[init(4)]);
    let c = checksum(&l4);
    l4[8..12].copy_from_slice(&[0; 4]);
    assert_eq!(crc32c(&l4), c);
}

#[test]
fn heartbeat_picks_up_an_unknown_association() {
    let mut r = Rig::new();
    let hb = ab(0x3333, &[heartbeat(cid::HEARTBEAT)]);
    assert_eq!(r.state(&hb), NEW);
    let s = r.sctp(&hb);
    assert_eq!(s.state, SctpState::HeartbeatSent);
    assert_eq!(s.vtag, [0x3333, 0]);
    assert_eq!(r.left(&hb), 30_000);
    assert!(!r.conn(&hb).has(status::ASSURED));
    // The reply's HEARTBEAT_ACK teaches its tag and establishes.
    assert_eq!(r.state(&ba(0x4444, &[heartbeat(cid::HEARTBEAT_ACK)])), EST);
    let s = r.sctp(&hb);
    assert_eq!(s.state, SctpState::Established);
    assert_eq!(s.vtag, [0x3333, 0x4444]);
    assert!(r.conn(&hb).has(status::ASSURED));
    assert_eq!(r.left(&hb), 210_000);
    assert_eq!(r.state(&ab(0x3333, &[data(b"x")])), EST);
    assert_eq!(r.state(&ba(0x4444, &[data(b"y")])), EST);
    assert_eq!(r.state(&ba(0x3333, &[data(b"y")])), INV);
    // An INIT in the reply direction of a HEARTBEAT_SENT entry is invalid (sIV).
    let mut q = Rig::new();
    q.send(&hb);
    assert_eq!(q.state(&ba(0, &[init(5)])), INV);
}

#[test]
fn heartbeat_with_a_changed_tag_waits_for_the_other_side() {
    let mut r = Rig::new();
    r.handshake();
    let probe = ab(ST, &[data(b"x")]);
    // Without a failed HEARTBEAT first, a HEARTBEAT_ACK with another tag is invalid.
    assert_eq!(r.state(&ba(0x8888, &[heartbeat(cid::HEARTBEAT_ACK)])), INV);
    // A restarted peer's HEARTBEAT: let through, not refreshing, state unchanged.
    r.at(1_000);
    assert_eq!(r.state(&ab(0x9999, &[heartbeat(cid::HEARTBEAT)])), EST);
    assert_eq!(r.left(&probe), 209_000);
    let s = r.sctp(&probe);
    assert_eq!(s.flags, FLAG_HEARTBEAT_VTAG_FAILED);
    assert_eq!(s.last_dir, 0);
    assert_eq!(s.vtag, [ST, CT]);
    // Bundled with DATA it is invalid.
    assert_eq!(
        r.state(&ab(0x9999, &[heartbeat(cid::HEARTBEAT), data(b"x")])),
        INV
    );
    // A HEARTBEAT_ACK with a changed tag from the same side does not confirm it.
    assert_eq!(r.state(&ab(0x7777, &[heartbeat(cid::HEARTBEAT_ACK)])), INV);
    // The other side's does: its tag is taken, the first side's forgotten.
    assert_eq!(r.state(&ba(0x8888, &[heartbeat(cid::HEARTBEAT_ACK)])), EST);
    let s = r.sctp(&probe);
    assert_eq!(s.flags, 0);
    assert_eq!(s.vtag, [0, 0x8888]);
    assert_eq!(s.state, SctpState::Established);
    assert_eq!(r.left(&probe), 210_000);
    // DATA needs the forgotten tag learnt again (by a HEARTBEAT).
    assert_eq!(r.state(&ab(0x9999, &[data(b"x")])), INV);
    assert_eq!(r.state(&ab(0x9999, &[heartbeat(cid::HEARTBEAT)])), EST);
    assert_eq!(r.sctp(&probe).vtag, [0x9999, 0x8888]);
    assert_eq!(r.state(&ab(0x9999, &[data(b"x")])), EST);
}

#[test]
fn init_collision() {
    let mut r = Rig::new();
    let probe = ab(0, &[init(CT)]);
    assert_eq!(r.state(&probe), NEW);
    // B's own INIT crosses: CLOSED stays CLOSED, not refreshed, both INITs noted.
    r.at(2_000);
    assert_eq!(r.state(&ba(0, &[init(ST)])), EST);
    let s = r.sctp(&probe);
    assert_eq!(s.init, [true, true]);
    assert_eq!(s.vtag, [ST, CT]);
    assert_eq!(r.left(&probe), 8_000);
    // An INIT_ACK changing the tag during the collision is invalid.
    assert_eq!(r.state(&ab(ST, &[init_ack(0x7777)])), INV);
    // Each side answers with the tag it announced.
    assert_eq!(r.state(&ab(ST, &[init_ack(CT)])), EST);
    assert_eq!(r.sctp(&probe).state, SctpState::Closed);
    assert_eq!(r.state(&ba(CT, &[init_ack(ST)])), EST);
    assert_eq!(r.sctp(&probe).state, SctpState::CookieWait);
    assert_eq!(r.state(&ab(ST, &[ch(cid::COOKIE_ECHO, 0, b"ck")])), EST);
    assert_eq!(r.state(&ba(CT, &[bare(cid::COOKIE_ACK)])), EST);
    let s = r.sctp(&probe);
    assert_eq!(s.state, SctpState::Established);
    assert_eq!(s.init, [false, false]);
    assert!(r.conn(&probe).has(status::ASSURED));
}

/// `sctp_conntracks` exactly as Linux 6.12 writes it (both directions, rows in `sctp_new_state`
/// order), parsed and compared cell by cell with [`new_state`].
const KERNEL_TABLE: &str = "
/* init         */ {sCL, sCL, sCW, sCE, sES, sCL, sCL, sSA, sCW},
/* init_ack     */ {sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sCL},
/* abort        */ {sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL},
/* shutdown     */ {sCL, sCL, sCW, sCE, sSS, sSS, sSR, sSA, sCL},
/* shutdown_ack */ {sSA, sCL, sCW, sCE, sES, sSA, sSA, sSA, sSA},
/* error        */ {sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sCL},/* Can't have Stale cookie*/
/* cookie_echo  */ {sCL, sCL, sCE, sCE, sES, sSS, sSR, sSA, sCL},/* 5.2.4 - Big TODO */
/* cookie_ack   */ {sCL, sCL, sCW, sES, sES, sSS, sSR, sSA, sCL},/* Can't come in orig dir */
/* shutdown_comp*/ {sCL, sCL, sCW, sCE, sES, sSS, sSR, sCL, sCL},
/* heartbeat    */ {sHS, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS},
/* heartbeat_ack*/ {sCL, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS},
/* init         */ {sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sIV},/* INIT in sCL Big TODO */
/* init_ack     */ {sIV, sCW, sCW, sCE, sES, sSS, sSR, sSA, sIV},
/* abort        */ {sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sIV},
/* shutdown     */ {sIV, sCL, sCW, sCE, sSR, sSS, sSR, sSA, sIV},
/* shutdown_ack */ {sIV, sCL, sCW, sCE, sES, sSA, sSA, sSA, sIV},
/* error        */ {sIV, sCL, sCW, sCL, sES, sSS, sSR, sSA, sIV},
/* cookie_echo  */ {sIV, sCL, sCE, sCE, sES, sSS, sSR, sSA, sIV},/* Can't come in reply dir */
/* cookie_ack   */ {sIV, sCL, sCW, sES, sES, sSS, sSR, sSA, sIV},
/* shutdown_comp*/ {sIV, sCL, sCW, sCE, sES, sSS, sSR, sCL, sIV},
/* heartbeat    */ {sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sHS},
/* heartbeat_ack*/ {sIV, sCL, sCW, sCE, sES, sSS, sSR, sSA, sES},
";

fn short_name(n: &str) -> Option<SctpState> {
    match n {
        "sNO" => Some(SctpState::None),
        "sCL" => Some(SctpState::Closed),
        "sCW" => Some(SctpState::CookieWait),
        "sCE" => Some(SctpState::CookieEchoed),
        "sES" => Some(SctpState::Established),
        "sSS" => Some(SctpState::ShutdownSent),
        "sSR" => Some(SctpState::ShutdownRecd),
        "sSA" => Some(SctpState::ShutdownAckSent),
        "sHS" => Some(SctpState::HeartbeatSent),
        "sIV" => None,
        _ => panic!("unknown state {n}"),
    }
}

#[test]
fn state_table_matches_the_kernel_cell_by_cell() {
    let rows = [
        ("init", cid::INIT),
        ("init_ack", cid::INIT_ACK),
        ("abort", cid::ABORT),
        ("shutdown", cid::SHUTDOWN),
        ("shutdown_ack", cid::SHUTDOWN_ACK),
        ("error", cid::ERROR),
        ("cookie_echo", cid::COOKIE_ECHO),
        ("cookie_ack", cid::COOKIE_ACK),
        ("shutdown_comp", cid::SHUTDOWN_COMPLETE),
        ("heartbeat", cid::HEARTBEAT),
        ("heartbeat_ack", cid::HEARTBEAT_ACK),
    ];
    let lines: Vec<&str> = KERNEL_TABLE.lines().filter(|l| l.contains('{')).collect();
    assert_eq!(lines.len(), 22);
    for (i, line) in lines.iter().enumerate() {
        let dir = if i < 11 { Dir::Original } else { Dir::Reply };
        let (label, ty) = rows[i % 11];
        let got_label = line[2..line.find("*/").unwrap()].trim();
        assert_eq!(got_label, label);
        let cells = &line[line.find('{').unwrap() + 1..line.find('}').unwrap()];
        let cells: Vec<Option<SctpState>> =
            cells.split(',').map(|c| short_name(c.trim())).collect();
        assert_eq!(cells.len(), SctpState::COUNT);
        for (col, want) in cells.into_iter().enumerate() {
            let cur = SctpState::ALL[col];
            assert_eq!(new_state(dir, cur, ty), want, "{dir:?} {label} {cur:?}");
        }
    }
    // Cells read off the source, and chunks outside the table.
    assert_eq!(
        new_state(Dir::Original, SctpState::None, cid::HEARTBEAT),
        Some(SctpState::HeartbeatSent)
    );
    assert_eq!(
        new_state(Dir::Reply, SctpState::HeartbeatSent, cid::HEARTBEAT_ACK),
        Some(SctpState::Established)
    );
    assert_eq!(new_state(Dir::Reply, SctpState::None, cid::INIT), None);
    assert_eq!(
        new_state(Dir::Reply, SctpState::HeartbeatSent, cid::ABORT),
        None
    );
    assert_eq!(
        new_state(Dir::Original, SctpState::ShutdownSent, cid::INIT),
        Some(SctpState::Closed)
    );
    assert_eq!(
        new_state(Dir::Original, SctpState::None, cid::SHUTDOWN_ACK),
        Some(SctpState::ShutdownAckSent)
    );
    assert_eq!(
        new_state(Dir::Reply, SctpState::Established, cid::SHUTDOWN),
        Some(SctpState::ShutdownRecd)
    );
    assert_eq!(
        new_state(Dir::Reply, SctpState::CookieEchoed, cid::ERROR),
        Some(SctpState::Closed)
    );
    assert_eq!(
        new_state(Dir::Reply, SctpState::Closed, cid::INIT_ACK),
        Some(SctpState::CookieWait)
    );
    assert_eq!(
        new_state(
            Dir::Original,
            SctpState::ShutdownAckSent,
            cid::SHUTDOWN_COMPLETE
        ),
        Some(SctpState::Closed)
    );
    for ty in [
        cid::DATA,
        cid::SACK,
        cid::ECN_ECNE,
        cid::ECN_CWR,
        0x0f,
        0x40,
        0x80,
        0xc0,
        0xff,
    ] {
        for st in SctpState::ALL {
            assert_eq!(new_state(Dir::Original, st, ty), Some(st));
            assert_eq!(new_state(Dir::Reply, st, ty), Some(st));
        }
    }
}

#[test]
fn chunk_walk_and_basic_checks() {
    // Lengths round up to 4; a length below 4 still steps 4.
    let mut l4 = sctp_l4(1, 2, 3, &[]);
    l4.extend_from_slice(&[cid::DATA, 0, 0, 5, 1, 0, 0, 0]);
    l4.extend_from_slice(&[cid::SACK, 0, 0, 1]);
    l4.extend_from_slice(&[cid::HEARTBEAT, 0, 0, 4, 0xaa]);
    let seen: Vec<(usize, u8)> = chunks(&l4).map(|c| (c.off, c.ty)).collect();
    assert_eq!(
        seen,
        vec![(12, cid::DATA), (20, cid::SACK), (24, cid::HEARTBEAT)]
    );
    let mut map = ChunkMap::default();
    assert!(!do_basic_checks(&l4, &mut map));
    assert!(map.has(cid::DATA) && map.has(cid::SACK) && map.has(cid::HEARTBEAT));
    assert!(!map.has(cid::INIT));
    let mut m = ChunkMap::default();
    m.set(0xff);
    m.set(0x40);
    assert!(m.has(0xff) && m.has(0x40) && !m.has(0x3f));
}

#[test]
fn names_timeouts_and_size() {
    let names: Vec<&str> = SctpState::ALL.iter().map(|s| s.name()).collect();
    assert_eq!(
        names,
        [
            "NONE",
            "CLOSED",
            "COOKIE_WAIT",
            "COOKIE_ECHOED",
            "ESTABLISHED",
            "SHUTDOWN_SENT",
            "SHUTDOWN_RECD",
            "SHUTDOWN_ACK_SENT",
            "HEARTBEAT_SENT",
        ]
    );
    assert_eq!(
        default_timeouts(),
        [10_000, 10_000, 3_000, 3_000, 210_000, 3_000, 3_000, 3_000, 30_000]
    );
    let mut t = crate::conntrack::Timeouts::default();
    t.set("sctp_timeout_established", 100).unwrap();
    assert_eq!(t.sctp[SctpState::Established as usize], 100_000);
    t.set("sctp_timeout_heartbeat_sent", 5).unwrap();
    assert_eq!(t.sctp[SctpState::HeartbeatSent as usize], 5_000);
    assert!(t.set("sctp_timeout_heartbeat_acked", 5).is_err());
    assert!(core::mem::size_of::<SctpConn>() <= 20);
    assert!(core::mem::size_of::<Conn>() <= 124);
}
