//! Application conversations for the stateful differential: ftp control sessions (PASV, EPSV,
//! PORT, EPRT, malformed and foreign-address commands) with their data connections, tftp
//! read/write requests answered from a new port, and SCTP associations (the four-way
//! handshake, data, shutdown or abort, wrong verification tags, a bad checksum).
//!
//! The helpers only act when the raw table gives the control connection one
//! (`-j CT --helper ftp|tftp`), which [`super::stateful_gen::ruleset`] does at random; without it
//! the data connections are simply NEW.

use super::gen::Rng;
use super::stateful_gen::{ends, other, udp_payload_step, Side, Step, Tcp, F, K, P, R, S};
use classifier::wire::{build, ipv4, IpProtocol};
use std::net::Ipv4Addr;

fn ftp_addr(a: Ipv4Addr) -> String {
    a.octets().map(|o| o.to_string()).join(",")
}

/// The command (client) or reply (server) that announces the data connection, and whether the
/// client opens it (passive) — None when the line announces nothing usable.
fn announcement(rng: &mut Rng, t: &Tcp, data_port: u16) -> (bool, String, Option<bool>) {
    let (hi, lo) = (data_port >> 8, data_port & 0xff);
    match rng.below(7) {
        0 => (
            false,
            format!(
                "227 Entering Passive Mode ({},{hi},{lo}).\r\n",
                ftp_addr(t.s)
            ),
            Some(true),
        ),
        1 => (
            false,
            format!("229 Entering Extended Passive Mode (|||{data_port}|)\r\n"),
            Some(true),
        ),
        2 => (
            true,
            format!("PORT {},{hi},{lo}\r\n", ftp_addr(t.c)),
            Some(false),
        ),
        3 => (
            true,
            format!("EPRT |1|{}|{data_port}|\r\n", t.c),
            Some(false),
        ),
        // Another host's address: no expectation (the helper is not loose).
        4 => (true, format!("PORT 10,9,9,9,{hi},{lo}\r\n"), None),
        // Malformed: the helper drops the segment.
        5 => (true, "PORT 10,1,2\r\n".to_string(), None),
        _ => (false, "227 Entering Passive Mode (\r\n".to_string(), None),
    }
}

/// An ftp control session and, when one was announced, its data connection.
pub fn ftp_conversation(rng: &mut Rng, port: u16) -> Vec<Step> {
    let client_side = if rng.pct(80) { Side::A } else { Side::B };
    let (c, s) = ends(rng, client_side);
    let t = Tcp {
        c,
        s,
        cp: port,
        sp: 21,
        cseq: rng.next() as u32,
        sseq: rng.next() as u32,
        client_side,
        wscale: false,
        sack: false,
    };
    let mut v = vec![t.seg(true, S, t.cseq, 0, 0, true)];
    v.push(t.seg(false, S | K, t.sseq, t.cseq.wrapping_add(1), 0, true));
    let (mut cs, mut ss) = (t.cseq.wrapping_add(1), t.sseq.wrapping_add(1));
    v.push(t.seg(true, K, cs, ss, 0, false));
    let mut say = |v: &mut Vec<Step>, from_client: bool, line: &[u8]| {
        let (seq, ack) = if from_client { (cs, ss) } else { (ss, cs) };
        v.push(t.seg_with(from_client, K | P, seq, ack, line, false));
        if from_client {
            cs = cs.wrapping_add(line.len() as u32);
        } else {
            ss = ss.wrapping_add(line.len() as u32);
        }
        let (seq, ack) = if from_client { (ss, cs) } else { (cs, ss) };
        v.push(t.seg(!from_client, K, seq, ack, 0, false));
    };
    say(&mut v, false, b"220 pollwall ftp\r\n");
    say(&mut v, true, b"USER anonymous\r\n");
    say(&mut v, false, b"331 ok\r\n");
    let data_port = 30_000 + rng.below(20_000) as u16;
    let (from_client, line, passive) = announcement(rng, &t, data_port);
    if from_client && rng.pct(50) {
        say(&mut v, true, b"TYPE I\r\n");
    }
    say(&mut v, from_client, line.as_bytes());
    if !from_client {
        say(&mut v, true, b"RETR f\r\n");
    } else {
        say(&mut v, false, b"200 ok\r\n");
    }
    // The data connection: announced, or tried anyway.
    let passive = passive.unwrap_or(rng.pct(50));
    let d = if passive {
        Tcp {
            c,
            s,
            cp: port.wrapping_add(1),
            sp: data_port,
            cseq: rng.next() as u32,
            sseq: rng.next() as u32,
            client_side,
            wscale: false,
            sack: false,
        }
    } else {
        Tcp {
            c: s,
            s: c,
            cp: 20,
            sp: data_port,
            cseq: rng.next() as u32,
            sseq: rng.next() as u32,
            client_side: other(client_side),
            wscale: false,
            sack: false,
        }
    };
    v.push(d.seg(true, S, d.cseq, 0, 0, true));
    v.push(d.seg(false, S | K, d.sseq, d.cseq.wrapping_add(1), 0, true));
    let (dc, ds) = (d.cseq.wrapping_add(1), d.sseq.wrapping_add(1));
    v.push(d.seg(true, K | P, dc, ds, 40, false));
    v.push(d.seg(false, K, ds, dc.wrapping_add(40), 0, false));
    if rng.pct(50) {
        v.push(d.seg(true, F | K, dc.wrapping_add(40), ds, 0, false));
    }
    if rng.pct(30) {
        v.push(t.seg(true, R | K, cs, ss, 0, false));
    }
    v
}

/// A tftp request and the server's answer from a port of its own.
pub fn tftp_conversation(rng: &mut Rng, port: u16) -> Vec<Step> {
    let cs = if rng.pct(80) { Side::A } else { Side::B };
    let (c, s) = ends(rng, cs);
    let op: u8 = match rng.below(5) {
        0..=1 => 1, // RRQ
        2 | 3 => 2, // WRQ
        _ => 5,     // ERROR: not a request
    };
    let mut req = vec![0, op];
    req.extend_from_slice(b"file\0octet\0");
    let mut v = vec![udp_payload_step(cs, c, s, port, 69, &req)];
    let tid = 40_000 + rng.below(20_000) as u16;
    let answer: &[u8] = if op == 1 {
        b"\0\x03\0\x01data"
    } else {
        b"\0\x04\0\0"
    };
    v.push(udp_payload_step(other(cs), s, c, tid, port, answer));
    if rng.pct(60) {
        v.push(udp_payload_step(cs, c, s, port, tid, b"\0\x04\0\x01"));
    }
    v
}

/// One SCTP packet with its chunks and CRC32c.
fn sctp_packet(
    side: Side,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    vtag: u32,
    chunks: &[Vec<u8>],
    bad_crc: bool,
) -> Step {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&ports.0.to_be_bytes());
    l4.extend_from_slice(&ports.1.to_be_bytes());
    l4.extend_from_slice(&vtag.to_be_bytes());
    l4.extend_from_slice(&[0; 4]);
    for c in chunks {
        l4.extend_from_slice(c);
    }
    let mut crc = classifier::conntrack::sctp::checksum(&l4);
    if bad_crc {
        crc ^= 1;
    }
    l4[8..12].copy_from_slice(&crc.to_le_bytes());
    let kinds: Vec<u8> = chunks.iter().map(|c| c[0]).collect();
    Step {
        side,
        ip: build::ipv4(ipv4::Repr::new(src, dst, IpProtocol(132), 0, 64), &l4),
        what: format!(
            "sctp {src}:{} > {dst}:{} vtag {vtag:#x} chunks {kinds:?}",
            ports.0, ports.1
        ),
    }
}

/// A chunk: type, flags, value (padded to 4 bytes).
fn chunk(kind: u8, flags: u8, value: &[u8]) -> Vec<u8> {
    let len = 4 + value.len();
    let mut c = vec![kind, flags];
    c.extend_from_slice(&(len as u16).to_be_bytes());
    c.extend_from_slice(value);
    while c.len() % 4 != 0 {
        c.push(0);
    }
    c
}

/// INIT / INIT_ACK value: initiate tag, a_rwnd, streams, initial TSN.
fn init_value(tag: u32, tsn: u32) -> Vec<u8> {
    let mut v = tag.to_be_bytes().to_vec();
    v.extend_from_slice(&65535u32.to_be_bytes());
    v.extend_from_slice(&[0, 10, 0, 10]);
    v.extend_from_slice(&tsn.to_be_bytes());
    v
}

/// An SCTP association: handshake, data, then shutdown or abort, with faults at random.
pub fn sctp_conversation(rng: &mut Rng, port: u16) -> Vec<Step> {
    let cs = if rng.pct(75) { Side::A } else { Side::B };
    let (c, s) = ends(rng, cs);
    let ports = (port, [9899u16, 36412, 2905][rng.below(3) as usize]);
    let back = (ports.1, ports.0);
    let (ctag, stag) = (rng.next() as u32 | 1, rng.next() as u32 | 1);
    let (ctsn, stsn) = (rng.next() as u32, rng.next() as u32);
    let to_s = |vtag, chunks: &[Vec<u8>]| sctp_packet(cs, c, s, ports, vtag, chunks, false);
    let to_c = |vtag, chunks: &[Vec<u8>]| sctp_packet(other(cs), s, c, back, vtag, chunks, false);
    let mut v = vec![to_s(0, &[chunk(1, 0, &init_value(ctag, ctsn))])];
    if rng.pct(15) {
        v.push(sctp_packet(
            cs,
            c,
            s,
            ports,
            0,
            &[chunk(1, 0, &init_value(ctag, ctsn))],
            true,
        ));
    }
    let mut ack_value = init_value(stag, stsn);
    ack_value.extend_from_slice(&chunk_param_cookie());
    v.push(to_c(ctag, &[chunk(2, 0, &ack_value)]));
    if rng.pct(10) {
        return v;
    }
    v.push(to_s(stag, &[chunk(10, 0, b"cookie-pollwall!")]));
    v.push(to_c(ctag, &[chunk(11, 0, &[])]));
    let mut data = ctsn.to_be_bytes().to_vec();
    data.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    data.extend_from_slice(b"hello");
    v.push(to_s(stag, &[chunk(0, 3, &data)]));
    let mut sack = ctsn.to_be_bytes().to_vec();
    sack.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    v.push(to_c(ctag, &[chunk(3, 0, &sack)]));
    match rng.below(5) {
        0 => v.push(to_s(stag, &[chunk(6, 0, &[])])), // ABORT
        1 => v.push(to_s(stag ^ 0x5a5a, &[chunk(0, 3, &data)])), // wrong vtag
        2 => v.push(to_c(ctag, &[chunk(4, 0, &[0; 8])])), // HEARTBEAT
        _ => {
            v.push(to_s(stag, &[chunk(7, 0, &ctsn.to_be_bytes())])); // SHUTDOWN
            v.push(to_c(ctag, &[chunk(8, 0, &[])])); // SHUTDOWN_ACK
            v.push(to_s(stag, &[chunk(14, 0, &[])])); // SHUTDOWN_COMPLETE
        }
    }
    v
}

/// The INIT_ACK's state cookie parameter (type 7).
fn chunk_param_cookie() -> Vec<u8> {
    let mut p = vec![0, 7, 0, 20];
    p.extend_from_slice(b"cookie-pollwall!");
    p
}

/// One fragment of `l4` (bytes `at..at + len` of it) as its own IPv4 datagram.
fn fragment(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    id: u16,
    l4: &[u8],
    at: usize,
    len: usize,
) -> Vec<u8> {
    let end = (at + len).min(l4.len());
    build::ipv4(
        ipv4::Repr {
            ident: id,
            more_frags: end < l4.len(),
            frag_offset: (at / 8) as u16,
            ..ipv4::Repr::new(src, dst, IpProtocol(proto), 0, 64)
        },
        &l4[at..end],
    )
}

/// A UDP query (or ICMP echo) sent in fragments (in order, reversed, with a duplicate, with
/// an overlap, or with one missing), then its answer whole.
pub fn fragmented_conversation(rng: &mut Rng, port: u16) -> Vec<Step> {
    let cs = if rng.pct(75) { Side::A } else { Side::B };
    let (c, s) = ends(rng, cs);
    let n = rng.range(200, 1400) as usize;
    let payload: Vec<u8> = (0..n).map(|i| (i * 13 % 251) as u8).collect();
    let (proto, l4, what) = if rng.pct(70) {
        (17u8, build::udp(c, s, port, 53, &payload), "udp")
    } else {
        let mut m = vec![8, 0, 0, 0];
        m.extend_from_slice(&port.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        m.extend_from_slice(&payload);
        let ck = !classifier::wire::checksum::data(&m);
        m[2..4].copy_from_slice(&ck.to_be_bytes());
        (1u8, m, "icmp")
    };
    let id = rng.next() as u16;
    let piece = 8 * rng.range(8, 60) as usize;
    let mut frags: Vec<Vec<u8>> = (0..l4.len())
        .step_by(piece)
        .map(|at| fragment(c, s, proto, id, &l4, at, piece))
        .collect();
    match rng.below(6) {
        0 => frags.reverse(),
        1 => {
            let k = rng.below(frags.len() as u64) as usize;
            let dup = frags[k].clone();
            frags.insert(k + 1, dup);
        }
        2 if l4.len() > piece + 16 => {
            // A fragment overlapping its neighbour: the kernel discards the datagram.
            frags.insert(1, fragment(c, s, proto, id, &l4, piece - 8, 16));
        }
        3 if frags.len() > 1 => {
            let k = rng.below(frags.len() as u64) as usize;
            frags.remove(k);
        }
        _ => {}
    }
    let total = frags.len();
    let mut v: Vec<Step> = frags
        .into_iter()
        .enumerate()
        .map(|(k, ip)| Step {
            side: cs,
            ip,
            what: format!("{what} fragment {k}/{total} id {id:#x} {c} > {s}"),
        })
        .collect();
    if proto == 17 {
        v.push(udp_payload_step(other(cs), s, c, 53, port, b"answer"));
    } else {
        let mut m = vec![0, 0, 0, 0];
        m.extend_from_slice(&port.to_be_bytes());
        m.extend_from_slice(&[0, 1]);
        let ck = !classifier::wire::checksum::data(&m);
        m[2..4].copy_from_slice(&ck.to_be_bytes());
        v.push(Step {
            side: other(cs),
            ip: build::ipv4(ipv4::Repr::new(s, c, IpProtocol::ICMP, 0, 64), &m),
            what: format!("icmp echo reply {s} > {c}"),
        });
    }
    v
}
