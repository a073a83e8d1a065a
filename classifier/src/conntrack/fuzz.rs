//! Fuzz harness for the tracker (bolero): random packet sequences between a handful of hosts
//! and ports (TCP with any flags, sequence and acknowledgement numbers near each other, UDP,
//! ICMP queries and errors quoting earlier packets, SCTP, GRE, ftp and tftp payloads with
//! helpers attached, truncated and corrupted datagrams), with the clock moving, each new
//! connection confirmed or dropped at random, the table aged and connlimit counting along.
//! Nothing may panic, and every table stays within its bound.
//!
//! Under `cargo test` it runs random inputs for bolero's default time (about a second).

use super::connlimit::ConnLimits;
use super::expect::EXPECT_MAX;
use super::{CtConfig, Outcome, Tracker};
use crate::packet::{CtTemplate, Headers};
use crate::wire::headers::parse_ipv4;
use crate::wire::{build, ipv4, tcp, IpProtocol};
use std::net::Ipv4Addr;

const MAX: u32 = 48;

/// One step of a sequence, decoded from fuzzer bytes.
#[derive(Debug, bolero::TypeGenerator)]
struct Step {
    kind: u8,
    hosts: u8,
    ports: u8,
    flags: u8,
    seq: u16,
    ack: u16,
    payload: u8,
    arriving: bool,
    keep: bool,
    advance_ms: u16,
    cut: u8,
    flip: u8,
}

fn host(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, i >> 2 & 1, 1 + (i & 3))
}

const FTP_LINES: [&[u8]; 6] = [
    b"220 hi\r\n",
    b"PORT 10,0,0,1,4,1\r\n",
    b"227 Entering Passive Mode (10,0,0,2,19,137)\r\n",
    b"EPRT |1|10.0.0.1|2000|\r\n",
    b"229 Entering Extended Passive Mode (|||6446|)\r\n",
    b"PORT 99999999999,1,\r\n",
];

fn datagram(s: &Step, last: &[Vec<u8>]) -> Vec<u8> {
    let (src, dst) = (host(s.hosts), host(s.hosts >> 4));
    let (sp, dp) = (
        [21u16, 69, 80, 1024, 5000][usize::from(s.ports % 5)],
        [21u16, 69, 80, 1024, 5000][usize::from(s.ports / 5 % 5)],
    );
    let payload: &[u8] = FTP_LINES[usize::from(s.payload % 6)];
    let payload = &payload[..usize::from(s.payload / 6 % 4) * payload.len() / 3];
    let (proto, l4) = match s.kind % 7 {
        0 | 1 => {
            let seq = 1000 + u32::from(s.seq);
            let ack = 1000 + u32::from(s.ack);
            let repr = tcp::Repr {
                src_port: sp,
                dst_port: dp,
                seq_number: seq,
                ack_number: ack,
                flags: s.flags,
                window_len: 1000,
                urgent_at: 0,
                options: if s.flags & 2 != 0 {
                    &[2, 4, 5, 0xb4, 1, 3, 3, 7]
                } else {
                    &[]
                },
                payload,
            };
            (IpProtocol::TCP, build::tcp(&repr, src, dst))
        }
        2 => (
            IpProtocol::UDP,
            build::udp(src, dst, sp, dp, b"\x00\x01f\x00octet\x00"),
        ),
        3 => {
            // An echo, or an error quoting an earlier datagram.
            let mut m = if s.flags & 1 == 0 {
                vec![8 * (s.flags >> 1 & 1), 0, 0, 0, 0, s.ports, 0, 1]
            } else {
                vec![3, s.flags >> 4, 0, 0, 0, 0, 0, 0]
            };
            if let Some(q) = last.get(usize::from(s.seq) % last.len().max(1)) {
                m.extend_from_slice(&q[..q.len().min(usize::from(s.payload))]);
            }
            let c = !crate::wire::checksum::data(&m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            (IpProtocol::ICMP, m)
        }
        4 => {
            let mut v = vec![0u8; 12];
            v[..2].copy_from_slice(&sp.to_be_bytes());
            v[2..4].copy_from_slice(&dp.to_be_bytes());
            v[4..6].copy_from_slice(&s.seq.to_be_bytes());
            v.extend_from_slice(&[s.flags % 16, 0, 0, 4 + s.payload % 24]);
            v.resize(12 + 4 + usize::from(s.payload % 24), 0);
            (IpProtocol(132), v)
        }
        5 => (
            IpProtocol(47),
            vec![0x20, 0, 0x88, 0x0b, 0, 8, 0, 1, 0, 0, 0, s.flags],
        ),
        _ => (IpProtocol(s.flags), payload.to_vec()),
    };
    let mut ip = build::ipv4(ipv4::Repr::new(src, dst, proto, 0, 64), &l4);
    // Truncate or corrupt at times (the header checksum then fails and parsing refuses).
    if s.cut > 200 {
        let n = ip.len() - usize::from(s.cut - 200).min(ip.len() - 20);
        ip.truncate(n);
    }
    if s.flip > 230 {
        let i = usize::from(s.flip) % ip.len();
        ip[i] ^= s.flags | 1;
    }
    ip
}

fn run(steps: &[Step]) {
    let cfg = CtConfig {
        max: MAX,
        ..CtConfig::default()
    };
    let mut tr = Tracker::new(cfg, 7, 0);
    let mut groups = ConnLimits::new(MAX as usize, 3);
    let mut now = 1_000_000_000u64;
    let mut last: Vec<Vec<u8>> = Vec::new();
    for s in steps {
        now += u64::from(s.advance_ms) * 1_000_000;
        tr.set_clock(now);
        let ip = datagram(s, &last);
        let Ok(h): Result<Headers, _> = parse_ipv4(&ip) else {
            continue;
        };
        let template = CtTemplate {
            helper: match h.proto {
                6 => Some(super::helper::HelperKind::Ftp),
                17 => Some(super::helper::HelperKind::Tftp),
                _ => None,
            },
            ..CtTemplate::default()
        };
        let (o, info) = tr.track_with(&h, &ip, s.arriving, &template);
        if let Outcome::Conn { .. } = o {
            let meta = crate::packet::PacketMeta {
                ct: info,
                ..crate::packet::PacketMeta::default()
            };
            let m = crate::model::ConnlimitMatch {
                limit: 1,
                mask: u32::MAX << (s.ports % 32),
                upto: false,
                daddr: s.keep,
            };
            super::connlimit::count_packet(&mut groups, 0, &m, &h, &meta, Some(&tr.table));
            if s.keep {
                let mut room = ip.clone();
                room.resize(ip.len() + 64, 0);
                let _ = tr.help(&h, &mut room, &o);
                let _ = tr.confirm(&o);
            } else {
                tr.abort(&o);
            }
        }
        tr.age(8);
        assert!(tr.table.len() <= MAX as usize, "{} > {MAX}", tr.table.len());
        assert!(tr.expect.len() <= EXPECT_MAX);
        assert!(groups.len() <= MAX as usize);
        let _ = tr.table.iter().count();
        if last.len() == 8 {
            last.remove(0);
        }
        last.push(ip);
    }
    let _ = super::list::listing([&tr]);
}

#[test]
fn random_packet_sequences() {
    bolero::check!()
        .with_type::<Vec<Step>>()
        .for_each(|steps| run(steps));
}
