//! Unit tests of the ftp and tftp helpers. The expected results are what `nf_conntrack_ftp.c`
//! and `nf_conntrack_tftp.c` of Linux 6.12 compute for the same bytes, quirks included (a bare
//! LF after `PORT` numbers is a partial match, `h2 = 257` carries into `h1`, digits wrap).

use super::ftp::{
    self as ftpmod, Cmd, Found, FtpMatch, FtpState, FtpType, FtpVerdict, Scan, NF_CT_FTP_SEQ_PICKUP,
};
use super::tftp::{self as tftpmod, TftpVerdict};
use super::{
    help, DropReason, Expectation, HelperConfig, HelperKind, HelperPacket, HelperState, Verdict,
    FTP_EXPECT_POLICY, TFTP_EXPECT_POLICY,
};
use crate::conntrack::table::Dir;
use crate::conntrack::tuple::{proto, Tuple};
use std::net::Ipv4Addr;

const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
const SEQ: u32 = 1000;

fn a(ip: Ipv4Addr) -> u32 {
    u32::from(ip)
}

/// The control connection CLIENT:40000 → SERVER:21.
fn ctrl() -> [Tuple; 2] {
    let orig = Tuple {
        src: a(CLIENT),
        dst: a(SERVER),
        sport: 40000,
        dport: 21,
        proto: proto::TCP,
    };
    [orig, orig.invert().unwrap()]
}

/// A TCP segment (20-byte header) with sequence number `seq` carrying `payload`.
fn seg(seq: u32, payload: &[u8]) -> Vec<u8> {
    seg_doff(seq, 5, payload)
}

fn seg_doff(seq: u32, doff: u8, payload: &[u8]) -> Vec<u8> {
    let mut s = vec![0u8; 20];
    s[0..2].copy_from_slice(&40000u16.to_be_bytes());
    s[2..4].copy_from_slice(&21u16.to_be_bytes());
    s[4..8].copy_from_slice(&seq.to_be_bytes());
    s[12] = doff << 4;
    s[13] = 0x18; // PSH ACK
    s[14..16].copy_from_slice(&65535u16.to_be_bytes());
    s.extend_from_slice(payload);
    s
}

/// A state where both directions read a line starting at `seq`.
fn at(seq: u32) -> FtpState {
    FtpState {
        seq_aft_nl: [[seq, 0], [seq, 0]],
        seq_aft_nl_num: [1, 1],
        flags: [0, 0],
    }
}

fn run_with(loose: bool, dir: Dir, payload: &[u8]) -> FtpVerdict {
    let mut st = at(SEQ);
    ftpmod::help(&mut st, loose, &ctrl(), dir, true, &seg(SEQ, payload))
}

fn run(dir: Dir, payload: &[u8]) -> FtpVerdict {
    run_with(false, dir, payload)
}

fn expect(v: FtpVerdict) -> (Expectation, FtpMatch) {
    match v {
        FtpVerdict::Expect(e, m) => (e, m),
        other => panic!("expected an expectation, got {other:?}"),
    }
}

fn ftp_exp(src: Ipv4Addr, dst: Ipv4Addr, dport: u16, dir: Dir) -> Expectation {
    Expectation {
        helper: HelperKind::Ftp,
        class: 0,
        flags: 0,
        proto: proto::TCP,
        src: Some(a(src)),
        sport: None,
        dst: a(dst),
        dport,
        announced_in: dir,
        nat: None,
    }
}

// ---------------------------------------------------------------------------------------------
// The four commands and replies.

#[test]
fn port_expects_the_server_to_connect_back_to_the_client() {
    let (e, m) = expect(run(Dir::Original, b"PORT 10,1,1,1,4,1\r\n"));
    assert_eq!(
        m,
        FtpMatch {
            kind: FtpType::Port,
            addr: a(CLIENT),
            port: 1025,
            matchoff: 5,
            matchlen: 12,
        }
    );
    assert_eq!(e, ftp_exp(SERVER, CLIENT, 1025, Dir::Original));
    assert_eq!(e.timeout_s(), 300);
    assert_eq!(e.max_expected(), 1);
}

#[test]
fn eprt_with_ipv4_expects_the_server_to_connect_back() {
    let (e, m) = expect(run(Dir::Original, b"EPRT |1|10.1.1.1|2000|\r\n"));
    assert_eq!(
        m,
        FtpMatch {
            kind: FtpType::Eprt,
            addr: a(CLIENT),
            port: 2000,
            matchoff: 5,
            matchlen: 17,
        }
    );
    assert_eq!(e, ftp_exp(SERVER, CLIENT, 2000, Dir::Original));
    // Any printable non-digit delimiter; leading zeros are fine.
    let (e, m) = expect(run(Dir::Original, b"EPRT !1!010.001.001.001!65000!\r\n"));
    assert_eq!((m.addr, m.port), (a(CLIENT), 65000));
    assert_eq!(e.dport, 65000);
}

#[test]
fn pasv_reply_expects_the_client_to_connect_to_the_server() {
    let p = b"227 Entering Passive Mode (10,1,1,2,19,137).\r\n";
    let (e, m) = expect(run(Dir::Reply, p));
    assert_eq!(
        m,
        FtpMatch {
            kind: FtpType::Pasv,
            addr: a(SERVER),
            port: 5001,
            matchoff: 27,
            matchlen: 15,
        }
    );
    assert_eq!(e, ftp_exp(CLIENT, SERVER, 5001, Dir::Reply));
    // Without parentheses (RFC 1123: scan for the first digit), any terminator.
    let (e, m) = expect(run(
        Dir::Reply,
        b"227 Entering Passive Mode 10,1,1,2,19,137\r\n",
    ));
    assert_eq!((m.matchoff, m.matchlen, e.dport), (26, 15, 5001));
    let (_, m) = expect(run(Dir::Reply, b"227 =10,1,1,2,19,137x"));
    assert_eq!((m.matchoff, m.port), (5, 5001));
    let (_, m) = expect(run(Dir::Reply, b"227 (10,1,1,2,19,137\0"));
    assert_eq!(m.port, 5001);
}

#[test]
fn epsv_reply_expects_the_client_to_connect_to_the_server_address() {
    let p = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
    let (e, m) = expect(run(Dir::Reply, p));
    assert_eq!(
        m,
        FtpMatch {
            kind: FtpType::Epsv,
            addr: a(SERVER),
            port: 6446,
            matchoff: 36,
            matchlen: 8,
        }
    );
    assert_eq!(e, ftp_exp(CLIENT, SERVER, 6446, Dir::Reply));
    // The closing parenthesis is not needed; other delimiters are fine.
    let (e, _) = expect(run(Dir::Reply, b"229 (|||6446|"));
    assert_eq!(e.dport, 6446);
    let (e, _) = expect(run(Dir::Reply, b"229 x (!!!21!)\r\n"));
    assert_eq!(e.dport, 21);
}

#[test]
fn patterns_are_case_insensitive() {
    for p in [
        &b"port 10,1,1,1,4,1\r\n"[..],
        b"PoRt 10,1,1,1,4,1\r\n",
        b"eprt |1|10.1.1.1|1025|\r\n",
        b"ePrT |1|10.1.1.1|1025|\r\n",
    ] {
        let (e, _) = expect(run(Dir::Original, p));
        assert_eq!(e, ftp_exp(SERVER, CLIENT, 1025, Dir::Original), "{p:?}");
    }
    // Only at the very start: a prefix is part of the pattern.
    let (e, _) = expect(run(Dir::Original, b"PORTAL 10,1,1,1,4,1\r\n"));
    assert_eq!(e.dport, 1025);
}

#[test]
fn commands_only_count_in_their_own_direction() {
    assert_eq!(
        run(Dir::Reply, b"PORT 10,1,1,1,4,1\r\n"),
        FtpVerdict::Accept
    );
    assert_eq!(
        run(Dir::Reply, b"EPRT |1|10.1.1.1|2000|\r\n"),
        FtpVerdict::Accept
    );
    assert_eq!(
        run(
            Dir::Original,
            b"227 Entering Passive Mode (10,1,1,2,19,137)\r\n"
        ),
        FtpVerdict::Accept
    );
    assert_eq!(
        run(Dir::Original, b"229 (|||6446|)\r\n"),
        FtpVerdict::Accept
    );
}

// ---------------------------------------------------------------------------------------------
// Addresses other than the sender's.

#[test]
fn another_address_is_not_recorded_unless_loose() {
    let p = b"PORT 10,9,9,9,4,1\r\n";
    let m = FtpMatch {
        kind: FtpType::Port,
        addr: a(Ipv4Addr::new(10, 9, 9, 9)),
        port: 1025,
        matchoff: 5,
        matchlen: 12,
    };
    assert_eq!(run(Dir::Original, p), FtpVerdict::NotRecorded(m));
    let (e, m2) = expect(run_with(true, Dir::Original, p));
    assert_eq!(m2, m);
    assert_eq!(
        e,
        ftp_exp(SERVER, Ipv4Addr::new(10, 9, 9, 9), 1025, Dir::Original)
    );

    let p = b"227 Entering Passive Mode (192,168,0,5,19,137)\r\n";
    assert!(matches!(run(Dir::Reply, p), FtpVerdict::NotRecorded(_)));
    let (e, _) = expect(run_with(true, Dir::Reply, p));
    assert_eq!(
        e,
        ftp_exp(CLIENT, Ipv4Addr::new(192, 168, 0, 5), 5001, Dir::Reply)
    );

    // A line not recorded still moves the newline tracking on.
    let mut st = at(SEQ);
    let p = b"PORT 10,9,9,9,4,1\r\n";
    let v = ftpmod::help(&mut st, false, &ctrl(), Dir::Original, true, &seg(SEQ, p));
    assert!(matches!(v, FtpVerdict::NotRecorded(_)));
    assert_eq!(st.seq_aft_nl[0], [SEQ, SEQ + p.len() as u32]);
    assert_eq!(st.seq_aft_nl_num[0], 2);
}

// ---------------------------------------------------------------------------------------------
// Numbers.

#[test]
fn numbers_are_combined_without_range_checks_and_wrap() {
    // 4294967306 = 2^32 + 10: wraps to 10.
    let (e, m) = expect(run(Dir::Original, b"PORT 4294967306,1,1,1,4,1\r\n"));
    assert_eq!((m.addr, m.port, m.matchlen), (a(CLIENT), 1025, 20));
    assert_eq!(e.dst, a(CLIENT));
    // h2 = 257 carries into h1: 11.1.1.1.
    assert_eq!(
        run(Dir::Original, b"PORT 10,257,1,1,4,1\r\n"),
        FtpVerdict::NotRecorded(FtpMatch {
            kind: FtpType::Port,
            addr: a(Ipv4Addr::new(11, 1, 1, 1)),
            port: 1025,
            matchoff: 5,
            matchlen: 14,
        })
    );
    // p1 = 256: (256 << 8 | 1) cut to 16 bits is 1; p2 = 65536: 1024.
    let (e, _) = expect(run(Dir::Original, b"PORT 10,1,1,1,256,1\r\n"));
    assert_eq!(e.dport, 1);
    let (e, _) = expect(run(Dir::Original, b"PORT 10,1,1,1,4,65536\r\n"));
    assert_eq!(e.dport, 1024);
    // p2 = 2^32 + 1 wraps to 1.
    let (e, _) = expect(run(Dir::Original, b"PORT 10,1,1,1,4,4294967297\r\n"));
    assert_eq!(e.dport, 1025);
    // Empty numbers are zeros.
    assert_eq!(
        run(Dir::Original, b"PORT ,,,,,\r\n"),
        FtpVerdict::NotRecorded(FtpMatch {
            kind: FtpType::Port,
            addr: 0,
            port: 0,
            matchoff: 5,
            matchlen: 5,
        })
    );
    // A port of 0 from PORT is expected as it is.
    let (e, _) = expect(run(Dir::Original, b"PORT 10,1,1,1,0,0\r\n"));
    assert_eq!(e.dport, 0);
    // EPRT and 229 ports wrap in 16 bits.
    let (e, _) = expect(run(Dir::Original, b"EPRT |1|10.1.1.1|65537|\r\n"));
    assert_eq!(e.dport, 1);
    let (e, _) = expect(run(Dir::Reply, b"229 (|||71982|)\r\n"));
    assert_eq!(e.dport, 6446); // 71982 - 65536
}

#[test]
fn parsers_directly() {
    let mut arr = [0u32; 6];
    assert_eq!(
        ftpmod::try_number(b"1,2,3,4,5,6\r", &mut arr, b',', b'\r'),
        11
    );
    assert_eq!(arr, [1, 2, 3, 4, 5, 6]);
    assert_eq!(ftpmod::try_number(b"1,2,3,4,5,6", &mut arr, b',', b'\r'), 0);
    assert_eq!(ftpmod::try_number(b"1,2,3,4,5,6,", &mut arr, b',', 0), 0);
    assert_eq!(ftpmod::try_number(b"1,2,3,4,5,6)", &mut arr, b',', 0), 11);
    assert_eq!(ftpmod::try_number(b"", &mut arr, b',', 0), 0);

    let mut cmd = Cmd::default();
    let mut off = 0;
    assert_eq!(
        ftpmod::try_rfc959(b"192,168,1,1,5,6\r", &mut cmd, b'\r', &mut off),
        15
    );
    assert_eq!(
        cmd,
        Cmd {
            addr: a(Ipv4Addr::new(192, 168, 1, 1)),
            port: 5 * 256 + 6
        }
    );

    let mut cmd = Cmd::default();
    let mut off = 4;
    assert_eq!(
        ftpmod::try_rfc1123(b"ok (1,2,3,4,0,80)", &mut cmd, 0, &mut off),
        12
    );
    assert_eq!(off, 8);
    assert_eq!(
        cmd,
        Cmd {
            addr: a(Ipv4Addr::new(1, 2, 3, 4)),
            port: 80
        }
    );
    assert_eq!(ftpmod::try_rfc1123(b"no digits", &mut cmd, 0, &mut off), 0);

    let mut port = 7;
    assert_eq!(ftpmod::get_port(b"|80|", 1, b'|', &mut port), 4);
    assert_eq!(port, 80);
    let mut port = 7;
    assert_eq!(ftpmod::get_port(b"|0|", 1, b'|', &mut port), 0);
    assert_eq!(ftpmod::get_port(b"||", 1, b'|', &mut port), 0);
    assert_eq!(ftpmod::get_port(b"|80", 1, b'|', &mut port), 0);
    assert_eq!(ftpmod::get_port(b"|8x0|", 1, b'|', &mut port), 0);
    assert_eq!(ftpmod::get_port(b"|80|", 99, b'|', &mut port), 0);
    assert_eq!(port, 7);

    let mut cmd = Cmd { addr: 5, port: 0 };
    assert_eq!(
        ftpmod::try_epsv_response(b"|||6446|", &mut cmd, b')', &mut off),
        8
    );
    assert_eq!(
        cmd,
        Cmd {
            addr: 5,
            port: 6446
        }
    );
    assert_eq!(
        ftpmod::try_eprt(b"|2|::1|2000|", &mut cmd, b'\r', &mut off),
        0
    );
    assert_eq!(ftpmod::try_eprt(b"|1|", &mut cmd, b'\r', &mut off), 0);
    assert_eq!(
        ftpmod::try_eprt(b" 1 1.2.3.4 5 ", &mut cmd, b'\r', &mut off),
        0
    );
    assert_eq!(
        ftpmod::try_eprt(b"\x801\x801.2.3.4\x805\x80", &mut cmd, b'\r', &mut off),
        0
    );
}

#[test]
fn find_pattern_results() {
    fn f(d: &[u8], cmd: &mut Cmd) -> Found {
        ftpmod::find_pattern(d, b"PORT", b' ', b'\r', cmd, ftpmod::try_rfc959)
    }
    let mut cmd = Cmd::default();
    assert_eq!(f(b"", &mut cmd), Found::Partial);
    assert_eq!(f(b"pO", &mut cmd), Found::Partial);
    assert_eq!(f(b"PORT", &mut cmd), Found::Partial);
    assert_eq!(f(b"PX", &mut cmd), Found::No);
    assert_eq!(f(b"P\0", &mut cmd), Found::No);
    assert_eq!(f(b"PORT ", &mut cmd), Found::Partial);
    assert_eq!(f(b"PORT1,2,3,4,5,6\r", &mut cmd), Found::Partial);
    assert_eq!(
        f(b"PORT 1,2,3,4,5,6\r", &mut cmd),
        Found::Match { off: 5, len: 11 }
    );
    assert_eq!(
        f(b"PORTX 1,2,3,4,5,6\r", &mut cmd),
        Found::Match { off: 6, len: 11 }
    );
}

// ---------------------------------------------------------------------------------------------
// Partial matches are dropped; no match is accepted.

#[test]
fn partial_matches_drop_the_packet() {
    use crate::conntrack::helper::ftp::FtpType::{Eprt, Epsv, Pasv, Port};
    use crate::conntrack::table::Dir::{Original as O, Reply as R};
    let cases: &[(Dir, &[u8], FtpType)] = &[
        (O, b"P", Port),
        (O, b"po", Port),
        (O, b"PORT", Port),
        (O, b"PORT\r\n", Port),                // no space to skip to
        (O, b"PORT 10,1,1,1,4\r\n", Port),     // five numbers
        (O, b"PORT 10,1,1,1,4,1,7\r\n", Port), // seven
        (O, b"PORT 10,1,1,1,4,1\n", Port),     // LF without CR
        (O, b"PORT 10,1,1,1,4,1", Port),       // no terminator
        (O, b"PORT 10,1,1,1,4,1x\r\n", Port),  // wrong terminator
        (O, b"PORT 10 1 1 1 4 1\r\n", Port),   // no commas
        (O, b"PORT  10,1,1,1,4,1\r\n", Port),  // two spaces
        (O, b"PORT 10,1,1,1,4,1 \r\n", Port),  // space before CR
        (O, b"E", Eprt),
        (O, b"EPR", Eprt),
        (O, b"EPRT |2|::1|2000|\r\n", Eprt), // IPv6 on an IPv4 connection
        (O, b"EPRT |1|10.1.1.1|2000\r\n", Eprt), // no closing delimiter
        (O, b"EPRT |1|10.1.1.1|65536|\r\n", Eprt), // port wraps to 0
        (O, b"EPRT |1|10.1.1.1|0|\r\n", Eprt), // port 0
        (O, b"EPRT 1|1|10.1.1.1|2000|\r\n", Eprt), // digit delimiter
        (O, b"EPRT |1!10.1.1.1|2000|\r\n", Eprt), // delimiters differ
        (O, b"EPRT |1|10.1.1|2000|\r\n", Eprt), // three numbers
        (O, b"EPRT |1|10.1.1.1.5|2000|\r\n", Eprt), // five numbers
        (O, b"EPRT |1|", Eprt),              // too short
        (O, b"EPRT |3|10.1.1.1|2000|\r\n", Eprt), // unknown protocol
        (R, b"2", Pasv),
        (R, b"22", Pasv),
        (R, b"227", Pasv),
        (R, b"227 ", Pasv),
        (R, b"227 Entering Passive Mode\r\n", Pasv), // no digit
        (R, b"227 (10,1,1,2,19,137", Pasv),          // runs out after the sixth number
        (R, b"227 (10,1,1,2,19)\r\n", Pasv),         // five numbers
        (R, b"227 Mode 2 (10,1,1,2,19,137)\r\n", Pasv), // the first digit is not the address
        (R, b"229", Epsv),
        (R, b"229 ", Epsv),
        (R, b"229 Entering Extended Passive Mode\r\n", Epsv), // no '('
        (R, b"229 (", Epsv),                                  // '(' is the last byte
        (R, b"229 (|||0|)\r\n", Epsv),
        (R, b"229 (||6446|)\r\n", Epsv),
        (R, b"229 (|||6446)\r\n", Epsv),
        (R, b"229 (1116446|)\r\n", Epsv),
        (R, b"229 ( ||6446|)\r\n", Epsv),
    ];
    for &(dir, p, t) in cases {
        let mut st = at(SEQ);
        let v = ftpmod::help(&mut st, false, &ctrl(), dir, true, &seg(SEQ, p));
        assert_eq!(
            v,
            FtpVerdict::Partial(t),
            "{:?}",
            String::from_utf8_lossy(p)
        );
        assert!(v.drops());
        // A dropped packet leaves the newline tracking as it was.
        assert_eq!(st, at(SEQ), "{:?}", String::from_utf8_lossy(p));
    }
}

#[test]
fn other_lines_are_accepted() {
    use crate::conntrack::table::Dir::{Original as O, Reply as R};
    let cases: &[(Dir, &[u8])] = &[
        (O, b"USER anonymous\r\n"),
        (O, b"PASV\r\n"),
        (O, b"EPSV\r\n"),
        (O, b"NOOP"),
        (O, b"\r\n"),
        (O, b"\n"),
        (O, b"\0"),
        (O, b"P\0RT 10,1,1,1,4,1\r\n"),
        (O, b"XPORT 10,1,1,1,4,1\r\n"),
        (O, b" PORT 10,1,1,1,4,1\r\n"),
        (O, b"USER x\r\nPORT 10,1,1,1,4,1\r\n"), // only the segment's start is read
        (R, b"220 ready\r\n"),
        (R, b"226 Transfer complete\r\n"),
        (R, b"2270 x\r\n"),
        (R, b"200 PORT command successful\r\n"),
        (R, b"228 (10,1,1,2,19,137)\r\n"),
        (R, b"3"),
    ];
    for &(dir, p) in cases {
        let v = run(dir, p);
        assert_eq!(v, FtpVerdict::Accept, "{:?}", String::from_utf8_lossy(p));
        assert!(!v.drops());
    }
}

#[test]
fn nothing_is_read_before_traffic_went_both_ways_or_without_payload() {
    let t = ctrl();
    let p = b"PORT 10,1,1,1,4,1\r\n";
    let mut st = at(SEQ);
    assert_eq!(
        ftpmod::help(&mut st, false, &t, Dir::Original, false, &seg(SEQ, p)),
        FtpVerdict::Accept
    );
    assert_eq!(st, at(SEQ));
    // No payload, a truncated header, a data offset past the end.
    for s in [
        seg(SEQ, b""),
        seg(SEQ, p)[..19].to_vec(),
        seg_doff(SEQ, 15, b"PORT 10,1,1,1,4,1\r\n"),
        seg_doff(SEQ, 6, b"\r\n\0\0"),
    ] {
        assert_eq!(
            ftpmod::help(&mut st, false, &t, Dir::Original, true, &s),
            FtpVerdict::Accept
        );
        assert_eq!(st, at(SEQ));
    }
    // Options: the payload starts after them.
    let mut s = seg_doff(SEQ, 6, &[1, 1, 1, 1]);
    s.extend_from_slice(p);
    let (e, _) = expect(ftpmod::help(&mut st, false, &t, Dir::Original, true, &s));
    assert_eq!(e.dport, 1025);
}

// ---------------------------------------------------------------------------------------------
// Newline tracking.

#[test]
fn only_segments_right_after_a_seen_newline_are_read() {
    let t = ctrl();
    let mut st = FtpState::default();
    // The banner and the first command are not read: no newline was seen before them.
    let banner = b"220 ready\r\n";
    let v = ftpmod::help(&mut st, false, &t, Dir::Reply, true, &seg(5000, banner));
    assert_eq!(v, FtpVerdict::Accept);
    assert_eq!((st.seq_aft_nl[1], st.seq_aft_nl_num[1]), ([5011, 0], 1));
    let port = b"PORT 10,1,1,1,4,1\r\n";
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(100, port));
    assert_eq!(v, FtpVerdict::Accept);
    let next = 100 + port.len() as u32;
    assert_eq!((st.seq_aft_nl[0], st.seq_aft_nl_num[0]), ([next, 0], 1));
    // The next line is.
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(next, port));
    assert_eq!(expect(v).0, ftp_exp(SERVER, CLIENT, 1025, Dir::Original));
    let after = next + port.len() as u32;
    assert_eq!(st.seq_aft_nl[0], [next, after]);
    // A segment elsewhere is not read, but its end is remembered (replacing the older).
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(9000, port));
    assert_eq!(v, FtpVerdict::Accept);
    assert_eq!(st.seq_aft_nl[0], [9000 + port.len() as u32, after]);
    // A segment not ending in a newline is read but not remembered.
    let v = ftpmod::help(
        &mut st,
        false,
        &t,
        Dir::Original,
        true,
        &seg(after, b"NOOP"),
    );
    assert_eq!(v, FtpVerdict::Accept);
    assert_eq!(st.seq_aft_nl[0], [9000 + port.len() as u32, after]);
    // The position replaced is forgotten: a retransmission there is not read.
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(next, port));
    assert_eq!(v, FtpVerdict::Accept);
    // The one kept still is.
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(after, port));
    assert!(matches!(v, FtpVerdict::Expect(..)));
    // The reply direction kept its own.
    assert_eq!((st.seq_aft_nl[1], st.seq_aft_nl_num[1]), ([5011, 0], 1));
}

#[test]
fn a_command_split_across_segments_is_dropped_until_sent_whole() {
    let t = ctrl();
    let mut st = at(SEQ);
    let first = b"PORT 10,1,1,";
    let rest = b"1,4,1\r\n";
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(SEQ, first));
    assert_eq!(v, FtpVerdict::Partial(FtpType::Port));
    assert_eq!(st, at(SEQ));
    // The rest does not start after a newline: accepted, its end remembered.
    let s2 = SEQ + first.len() as u32;
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(s2, rest));
    assert_eq!(v, FtpVerdict::Accept);
    let end = s2 + rest.len() as u32;
    assert_eq!((st.seq_aft_nl[0], st.seq_aft_nl_num[0]), ([SEQ, end], 2));
    // The whole line retransmitted is read.
    let whole = b"PORT 10,1,1,1,4,1\r\n";
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(SEQ, whole));
    assert_eq!(expect(v).0.dport, 1025);
    assert_eq!(st.seq_aft_nl[0], [SEQ, end]);
}

#[test]
fn update_nl_seq_keeps_the_two_newest() {
    let mut st = FtpState::default();
    st.update_nl_seq(10, Dir::Original);
    st.update_nl_seq(20, Dir::Original);
    assert_eq!((st.seq_aft_nl[0], st.seq_aft_nl_num[0]), ([10, 20], 2));
    st.update_nl_seq(20, Dir::Original);
    assert_eq!(st.seq_aft_nl[0], [10, 20]);
    st.update_nl_seq(30, Dir::Original); // replaces the older, 10
    assert_eq!(st.seq_aft_nl[0], [30, 20]);
    st.update_nl_seq(5, Dir::Original); // before both: ignored
    assert_eq!(st.seq_aft_nl[0], [30, 20]);
    st.update_nl_seq(25, Dir::Original); // after the older, 20
    assert_eq!(st.seq_aft_nl[0], [30, 25]);
    assert_eq!(st.seq_aft_nl_num[0], 2);
    assert_eq!((st.seq_aft_nl[1], st.seq_aft_nl_num[1]), ([0, 0], 0));
    assert!(st.find_nl_seq(25, Dir::Original) && !st.find_nl_seq(25, Dir::Reply));
    // Sequence numbers compare modulo 2^32.
    let mut st = FtpState {
        seq_aft_nl: [[0, 0], [0xFFFF_FFF0, 0xFFFF_FFF8]],
        seq_aft_nl_num: [0, 2],
        flags: [0, 0],
    };
    st.update_nl_seq(0x10, Dir::Reply);
    assert_eq!(st.seq_aft_nl[1], [0x10, 0xFFFF_FFF8]);
    st.update_nl_seq(0xFFFF_FFF9, Dir::Reply);
    assert_eq!(st.seq_aft_nl[1], [0x10, 0xFFFF_FFF9]);
    // An unset slot is not a valid position, even when 0.
    assert!(!FtpState::default().find_nl_seq(0, Dir::Original));
    // A corrupt count does not index out of bounds.
    let st = FtpState {
        seq_aft_nl: [[1, 2], [3, 4]],
        seq_aft_nl_num: [200, 200],
        flags: [0, 0],
    };
    assert!(st.find_nl_seq(2, Dir::Original) && !st.find_nl_seq(5, Dir::Original));
}

#[test]
fn pickup_reads_the_next_segment_whatever_its_sequence() {
    let t = ctrl();
    let mut st = FtpState::picked_up();
    assert_eq!(st.flags, [NF_CT_FTP_SEQ_PICKUP; 2]);
    let port = b"PORT 10,1,1,1,4,1\r\n";
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(777, port));
    assert_eq!(expect(v).0.dport, 1025);
    assert_eq!(st.flags, [0, NF_CT_FTP_SEQ_PICKUP]);
    assert_eq!(st.seq_aft_nl[0][0], 777 + port.len() as u32);
    // Once only.
    let v = ftpmod::help(&mut st, false, &t, Dir::Original, true, &seg(5555, port));
    assert_eq!(v, FtpVerdict::Accept);
    // The flag is used up even by a partial match.
    let v = ftpmod::help(&mut st, false, &t, Dir::Reply, true, &seg(1, b"227"));
    assert_eq!(v, FtpVerdict::Partial(FtpType::Pasv));
    assert_eq!(st.flags, [0, 0]);
}

// ---------------------------------------------------------------------------------------------
// Hostile input.

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        // xorshift64
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn check_invariants(v: &FtpVerdict, st: &FtpState, payload_len: usize) {
    assert!(st.seq_aft_nl_num[0] <= 2 && st.seq_aft_nl_num[1] <= 2);
    if let FtpVerdict::Expect(_, m) | FtpVerdict::NotRecorded(m) = v {
        assert!(m.matchlen > 0);
        assert!(m.matchoff + m.matchlen <= payload_len);
    }
    if let FtpVerdict::Expect(e, _) = v {
        assert_eq!(
            (e.proto, e.sport, e.class, e.flags),
            (proto::TCP, None, 0, 0)
        );
        assert!(e.src.is_some());
    }
}

#[test]
fn random_payloads_never_panic() {
    let t = ctrl();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let heads: [&[u8]; 9] = [
        b"PORT ",
        b"EPRT ",
        b"227 ",
        b"229 (",
        b"port ",
        b"EPRT |1|",
        b"229 (|||",
        b"",
        b"2",
    ];
    let alphabet = b"0123456789,.|()!\r\n \0\xff";
    let mut st = FtpState::default();
    let mut seq = [1u32, 1u32];
    for round in 0..20_000 {
        let dir = if rng.next_u64() & 1 == 0 {
            Dir::Original
        } else {
            Dir::Reply
        };
        let mut p: Vec<u8> = Vec::new();
        if !rng.next_u64().is_multiple_of(4) {
            p.extend_from_slice(heads[rng.below(heads.len())]);
        }
        let n = if round % 997 == 0 {
            70_000
        } else {
            rng.below(200)
        };
        let raw = rng.next_u64().is_multiple_of(3);
        for _ in 0..n {
            let b = if raw {
                rng.next_u64() as u8
            } else {
                alphabet[rng.below(alphabet.len())]
            };
            p.push(b);
        }
        if rng.next_u64().is_multiple_of(3) {
            p.extend_from_slice(b"\r\n");
        }
        // Mostly at a remembered position, sometimes anywhere.
        let s = if rng.next_u64().is_multiple_of(4) {
            rng.next_u64() as u32
        } else {
            seq[dir.index()]
        };
        let doff = if rng.next_u64().is_multiple_of(50) {
            (rng.next_u64() % 16) as u8
        } else {
            5
        };
        let pkt = seg_doff(s, doff, &p);
        let cut = if rng.next_u64().is_multiple_of(50) {
            rng.below(pkt.len() + 1)
        } else {
            pkt.len()
        };
        let loose = rng.next_u64() & 1 == 0;
        let v = ftpmod::help(&mut st, loose, &t, dir, true, &pkt[..cut]);
        check_invariants(&v, &st, cut.saturating_sub(usize::from(doff) * 4));
        if p.last() == Some(&b'\n') {
            seq[dir.index()] = s.wrapping_add(p.len() as u32);
        }
        // The scanner alone, on raw bytes.
        let _ = ftpmod::scan(dir, &p, a(CLIENT));
    }
}

#[test]
fn very_long_lines_are_partial_not_a_panic() {
    let mut long_digits = b"PORT ".to_vec();
    long_digits.extend(std::iter::repeat_n(b'1', 70_000));
    long_digits.extend_from_slice(b"\r\n");
    assert_eq!(
        run(Dir::Original, &long_digits),
        FtpVerdict::Partial(FtpType::Port)
    );

    let mut no_space = b"PORT".to_vec();
    no_space.extend(std::iter::repeat_n(b'x', 70_000));
    assert_eq!(
        run(Dir::Original, &no_space),
        FtpVerdict::Partial(FtpType::Port)
    );

    let mut no_digit = b"227 ".to_vec();
    no_digit.extend(std::iter::repeat_n(b'x', 70_000));
    assert_eq!(
        run(Dir::Reply, &no_digit),
        FtpVerdict::Partial(FtpType::Pasv)
    );

    let mut commas = b"227 ".to_vec();
    for _ in 0..35_000 {
        commas.extend_from_slice(b"1,");
    }
    assert_eq!(run(Dir::Reply, &commas), FtpVerdict::Partial(FtpType::Pasv));

    let mut no_paren = b"229 ".to_vec();
    no_paren.extend(std::iter::repeat_n(b'a', 70_000));
    assert_eq!(
        run(Dir::Reply, &no_paren),
        FtpVerdict::Partial(FtpType::Epsv)
    );

    let mut long_port = b"EPRT |1|10.1.1.1|".to_vec();
    long_port.extend(std::iter::repeat_n(b'9', 70_000));
    long_port.push(b'|');
    // 70000 nines in wrapping u16 arithmetic: some port, never a panic.
    let v = run(Dir::Original, &long_port);
    assert!(matches!(
        v,
        FtpVerdict::Expect(..) | FtpVerdict::Partial(FtpType::Eprt)
    ));

    // NULs everywhere.
    assert_eq!(run(Dir::Original, &[0u8; 1000]), FtpVerdict::Accept);
    assert_eq!(run(Dir::Reply, &[0u8; 1000]), FtpVerdict::Accept);
    assert_eq!(
        run(Dir::Original, b"PORT\0"),
        FtpVerdict::Partial(FtpType::Port)
    );
}

// ---------------------------------------------------------------------------------------------
// tftp.

const TC: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const TS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn tftp_conn() -> [Tuple; 2] {
    let orig = Tuple {
        src: a(TC),
        dst: a(TS),
        sport: 1234,
        dport: 69,
        proto: proto::UDP,
    };
    [orig, orig.invert().unwrap()]
}

fn udp(payload: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(8 + payload.len());
    d.extend_from_slice(&1234u16.to_be_bytes());
    d.extend_from_slice(&69u16.to_be_bytes());
    d.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    d.extend_from_slice(&[0, 0]);
    d.extend_from_slice(payload);
    d
}

fn tftp_exp(dir: Dir) -> Expectation {
    Expectation {
        helper: HelperKind::Tftp,
        class: 0,
        flags: 0,
        proto: proto::UDP,
        src: Some(a(TS)),
        sport: None,
        dst: a(TC),
        dport: 1234,
        announced_in: dir,
        nat: None,
    }
}

#[test]
fn tftp_read_and_write_requests_expect_the_server_from_any_port() {
    let t = tftp_conn();
    let rrq = udp(b"\x00\x01boot.img\x00octet\x00");
    assert_eq!(
        tftpmod::help(&t, Dir::Original, &rrq),
        TftpVerdict::Expect(tftp_exp(Dir::Original))
    );
    let wrq = udp(b"\x00\x02up.bin\x00netascii\x00");
    assert_eq!(
        tftpmod::help(&t, Dir::Original, &wrq),
        TftpVerdict::Expect(tftp_exp(Dir::Original))
    );
    // The opcode alone is enough, and the direction is not checked.
    assert_eq!(
        tftpmod::help(&t, Dir::Reply, &udp(&[0, 1])),
        TftpVerdict::Expect(tftp_exp(Dir::Reply))
    );
    let e = tftp_exp(Dir::Original);
    assert_eq!((e.timeout_s(), e.max_expected()), (300, 1));
    // The server's answer from a port of its own is the expected connection.
    let answer = Tuple {
        src: a(TS),
        dst: a(TC),
        sport: 50_000,
        dport: 1234,
        proto: proto::UDP,
    };
    assert!(e.matches(&answer));
    assert!(!e.matches(&Tuple {
        dport: 1235,
        ..answer
    }));
    assert!(!e.matches(&Tuple {
        src: a(TC),
        ..answer
    }));
    assert!(!e.matches(&Tuple {
        proto: proto::TCP,
        ..answer
    }));
}

#[test]
fn tftp_other_opcodes_and_short_datagrams_are_accepted() {
    let t = tftp_conn();
    for op in [0u16, 3, 4, 5, 6, 0x0100, 0x0201, 0xFFFF] {
        let mut p = op.to_be_bytes().to_vec();
        p.extend_from_slice(b"\x00\x01payload");
        assert_eq!(
            tftpmod::help(&t, Dir::Original, &udp(&p)),
            TftpVerdict::Accept,
            "{op}"
        );
    }
    for d in [
        &[0u8; 0][..],
        &[0u8; 7][..],
        &udp(b"")[..],
        &udp(b"\x00")[..],
    ] {
        assert_eq!(tftpmod::help(&t, Dir::Original, d), TftpVerdict::Accept);
    }
    assert_eq!(tftpmod::opcode(&udp(b"\x00\x05")), Some(5));
    assert_eq!(tftpmod::opcode(&udp(b"\x00")), None);
}

// ---------------------------------------------------------------------------------------------
// Expectations, kinds, dispatch.

#[test]
fn expectation_matching_and_clashes() {
    let e = ftp_exp(SERVER, CLIENT, 1025, Dir::Original);
    let data = Tuple {
        src: a(SERVER),
        dst: a(CLIENT),
        sport: 20,
        dport: 1025,
        proto: proto::TCP,
    };
    assert!(e.matches(&data));
    assert!(e.matches(&Tuple {
        sport: 33_333,
        ..data
    }));
    assert!(!e.matches(&Tuple {
        src: a(CLIENT),
        ..data
    }));
    assert!(!e.matches(&Tuple {
        dst: a(SERVER),
        ..data
    }));
    assert!(!e.matches(&Tuple {
        dport: 1026,
        ..data
    }));
    assert!(!e.matches(&Tuple {
        proto: proto::UDP,
        ..data
    }));

    let any_src = Expectation { src: None, ..e };
    assert!(any_src.matches(&Tuple {
        src: a(Ipv4Addr::new(1, 2, 3, 4)),
        ..data
    }));
    assert!(
        e.same(&e)
            && e.same(&Expectation {
                announced_in: Dir::Reply,
                nat: None,
                ..e
            })
    );
    assert!(!e.same(&any_src) && e.clashes(&any_src) && any_src.clashes(&e));
    let other_src = Expectation {
        src: Some(a(CLIENT)),
        ..e
    };
    assert!(!e.clashes(&other_src) && !e.same(&other_src));
    let exact_sport = Expectation {
        sport: Some(20),
        ..e
    };
    assert!(e.clashes(&exact_sport) && !e.same(&exact_sport));
    assert!(!exact_sport.matches(&Tuple { sport: 21, ..data }));
    assert!(!e.clashes(&Expectation { dport: 1026, ..e }));
    assert!(!e.clashes(&Expectation {
        proto: proto::UDP,
        ..e
    }));
    // src Some(0) is not the wildcard.
    let zero = Expectation { src: Some(0), ..e };
    assert!(!zero.same(&any_src) && !zero.matches(&data));
}

#[test]
fn helper_kinds() {
    assert_eq!(HelperKind::Ftp.name(), "ftp");
    assert_eq!(HelperKind::Tftp.name(), "tftp");
    assert_eq!(HelperKind::from_name("ftp"), Some(HelperKind::Ftp));
    assert_eq!(HelperKind::from_name("tftp"), Some(HelperKind::Tftp));
    assert_eq!(HelperKind::from_name("FTP"), None);
    assert_eq!(HelperKind::from_name("ft"), None);
    assert_eq!(HelperKind::from_name(""), None);
    assert_eq!(HelperKind::find("ftp", proto::TCP), Some(HelperKind::Ftp));
    assert_eq!(HelperKind::find("ftp", proto::UDP), None);
    assert_eq!(HelperKind::find("tftp", proto::UDP), Some(HelperKind::Tftp));
    assert_eq!(HelperKind::find("tftp", proto::TCP), None);
    assert_eq!(HelperKind::find("sip", proto::UDP), None);
    assert_eq!(HelperKind::Ftp.default_port(), 21);
    assert_eq!(HelperKind::Tftp.default_port(), 69);
    assert_eq!(FTP_EXPECT_POLICY.max_expected, 1);
    assert_eq!(FTP_EXPECT_POLICY.timeout_s, 300);
    assert_eq!(TFTP_EXPECT_POLICY.max_expected, 1);
    assert_eq!(TFTP_EXPECT_POLICY.timeout_s, 300);
    assert_eq!(
        HelperState::new(HelperKind::Ftp),
        HelperState::Ftp(FtpState::default())
    );
    assert_eq!(HelperState::new(HelperKind::Tftp), HelperState::None);
    assert_eq!(std::mem::size_of::<FtpState>(), 20);
    assert_eq!(FtpType::Port.pattern(), "PORT");
    assert_eq!(FtpType::Epsv.pattern(), "229 ");
    assert_eq!(FtpType::Pasv as u8, 1);
    assert_eq!(FtpType::Eprt as u8, 2);
}

#[test]
fn dispatch_runs_the_connection_s_helper() {
    let cfg = HelperConfig::default();
    let t = ctrl();
    // A fresh ftp state: the first line is not read, the second is.
    let mut state = HelperState::None;
    let port = b"PORT 10,1,1,1,4,1\r\n";
    let s1 = seg(SEQ, port);
    let p = HelperPacket {
        tuples: &t,
        dir: Dir::Original,
        established: true,
        l4: &s1,
    };
    assert_eq!(help(HelperKind::Ftp, &mut state, &cfg, &p), Verdict::Accept);
    assert!(matches!(state, HelperState::Ftp(_)));
    let s2 = seg(SEQ + port.len() as u32, port);
    let p = HelperPacket { l4: &s2, ..p };
    assert_eq!(
        help(HelperKind::Ftp, &mut state, &cfg, &p).without_match(),
        Verdict::Expect(ftp_exp(SERVER, CLIENT, 1025, Dir::Original))
    );
    let s3 = seg(SEQ + 2 * port.len() as u32, b"PORT");
    let p = HelperPacket { l4: &s3, ..p };
    assert_eq!(
        help(HelperKind::Ftp, &mut state, &cfg, &p),
        Verdict::Drop(DropReason::FtpPartial(FtpType::Port))
    );
    // Not recorded is accepted.
    let s4 = seg(SEQ + 2 * port.len() as u32, b"PORT 10,9,9,9,4,1\r\n");
    let p = HelperPacket { l4: &s4, ..p };
    assert_eq!(help(HelperKind::Ftp, &mut state, &cfg, &p), Verdict::Accept);
    let loose = HelperConfig { ftp_loose: true };
    let s5 = seg(SEQ + 2 * port.len() as u32 + 19, b"PORT 10,9,9,9,4,1\r\n");
    let p = HelperPacket { l4: &s5, ..p };
    assert_eq!(
        help(HelperKind::Ftp, &mut state, &loose, &p).without_match(),
        Verdict::Expect(ftp_exp(
            SERVER,
            Ipv4Addr::new(10, 9, 9, 9),
            1025,
            Dir::Original
        ))
    );

    let tt = tftp_conn();
    let rrq = udp(b"\x00\x01f\x00octet\x00");
    let p = HelperPacket {
        tuples: &tt,
        dir: Dir::Original,
        established: false,
        l4: &rrq,
    };
    let mut tstate = HelperState::None;
    assert_eq!(
        help(HelperKind::Tftp, &mut tstate, &cfg, &p),
        Verdict::Expect(tftp_exp(Dir::Original))
    );
    assert_eq!(tstate, HelperState::None);
}

#[test]
fn scan_reports_the_first_deciding_pattern() {
    assert_eq!(
        ftpmod::scan(Dir::Original, b"PASV\r\n", a(CLIENT)),
        Scan::No
    );
    assert_eq!(
        ftpmod::scan(Dir::Original, b"PORT x", a(CLIENT)),
        Scan::Partial(FtpType::Port)
    );
    // PORT's partial result stops the search before EPRT.
    assert_eq!(
        ftpmod::scan(Dir::Original, b"P", a(CLIENT)),
        Scan::Partial(FtpType::Port)
    );
    assert_eq!(
        ftpmod::scan(Dir::Original, b"E", a(CLIENT)),
        Scan::Partial(FtpType::Eprt)
    );
    // EPSV keeps the sender's address.
    assert_eq!(
        ftpmod::scan(Dir::Reply, b"229 (|||1|)", 77),
        Scan::Match(FtpMatch {
            kind: FtpType::Epsv,
            addr: 77,
            port: 1,
            matchoff: 5,
            matchlen: 5,
        })
    );
}
