//! Random stateful rulesets and random scripted conversations for the stateful kernel
//! differential ([`super::stateful`]).
//!
//! Conversations run between clients in 10.1.0.0/16 (behind the firewall's port 0, side A) and
//! servers in 10.2.0.0/16 (behind port 1, side B), either side opening: TCP handshakes, data,
//! FIN and RST teardowns, refused connections, retransmissions, mid-stream pickups, invalid
//! flag combinations, out-of-window segments and acknowledgements, window scaling and SACK
//! options, UDP one-way and request/response, ICMP echo (and replies without a request), ICMP
//! errors quoting a tracked flow, and other protocols (GRE, 253). The steps of several
//! conversations are interleaved at random, each conversation keeping its own order.

use super::gen::Rng;
use classifier::wire::{build, ipv4, tcp, IpProtocol};
use std::net::Ipv4Addr;

/// Which side of the firewall a frame enters from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

/// One frame to inject, with what it is (for failure reports).
pub struct Step {
    pub side: Side,
    /// The IP datagram (the test wraps it in Ethernet for its side).
    pub ip: Vec<u8>,
    pub what: String,
}

pub(super) const F: u8 = 0x01;
pub(super) const S: u8 = 0x02;
pub(super) const R: u8 = 0x04;
pub(super) const P: u8 = 0x08;
pub(super) const K: u8 = 0x10;

pub(super) fn addr(rng: &mut Rng, net: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net, rng.range(0, 3) as u8, rng.range(1, 20) as u8)
}

/// A TCP endpoint pair and both sequence spaces.
pub(super) struct Tcp {
    pub c: Ipv4Addr,
    pub s: Ipv4Addr,
    pub cp: u16,
    pub sp: u16,
    pub cseq: u32,
    pub sseq: u32,
    pub client_side: Side,
    pub wscale: bool,
    pub sack: bool,
}

impl Tcp {
    pub(super) fn seg(
        &self,
        from_client: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        len: usize,
        syn: bool,
    ) -> Step {
        self.seg_with(from_client, flags, seq, ack, &vec![0x61u8; len], syn)
    }

    /// A segment carrying `payload`.
    pub(super) fn seg_with(
        &self,
        from_client: bool,
        flags: u8,
        seq: u32,
        ack: u32,
        payload: &[u8],
        syn: bool,
    ) -> Step {
        let len = payload.len();
        let (src, dst, sp, dp) = if from_client {
            (self.c, self.s, self.cp, self.sp)
        } else {
            (self.s, self.c, self.sp, self.cp)
        };
        let mut opts = Vec::new();
        if syn {
            opts.extend_from_slice(&[2, 4, 0x05, 0xb4]);
            if self.wscale {
                opts.extend_from_slice(&[1, 3, 3, 7]);
            }
            if self.sack {
                opts.extend_from_slice(&[1, 1, 4, 2]);
            }
        }
        let seg = build::tcp(
            &tcp::Repr {
                src_port: sp,
                dst_port: dp,
                seq_number: seq,
                ack_number: ack,
                flags,
                window_len: if syn { 64240 } else { 502 },
                urgent_at: 0,
                options: &opts,
                payload,
            },
            src,
            dst,
        );
        let ip = build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::TCP, 0, 64), &seg);
        let side = if from_client {
            self.client_side
        } else {
            other(self.client_side)
        };
        Step {
            side,
            ip,
            what: format!(
                "tcp {src}:{sp} > {dst}:{dp} flags {flags:#04x} seq {seq} ack {ack} len {len}"
            ),
        }
    }
}

pub(super) fn other(s: Side) -> Side {
    match s {
        Side::A => Side::B,
        Side::B => Side::A,
    }
}

/// Client and server addresses for a conversation opened from `client_side`.
pub(super) fn ends(rng: &mut Rng, client_side: Side) -> (Ipv4Addr, Ipv4Addr) {
    let (cn, sn) = match client_side {
        Side::A => (1, 2),
        Side::B => (2, 1),
    };
    (addr(rng, cn), addr(rng, sn))
}

pub(super) fn tcp_conversation(rng: &mut Rng, port: u16) -> Vec<Step> {
    let client_side = if rng.pct(75) { Side::A } else { Side::B };
    let (c, s) = ends(rng, client_side);
    let t = Tcp {
        c,
        s,
        cp: port,
        sp: [22, 80, 443, 8080][rng.below(4) as usize],
        cseq: rng.next() as u32,
        sseq: rng.next() as u32,
        client_side,
        wscale: rng.pct(50),
        sack: rng.pct(50),
    };
    let (ci, si) = (t.cseq, t.sseq);
    let mut v = Vec::new();
    let kind = rng.below(9);
    if kind == 0 {
        // Mid-stream pickup: data both ways without a handshake.
        v.push(t.seg(true, K | P, ci, si, 100, false));
        v.push(t.seg(false, K, si, ci.wrapping_add(100), 0, false));
        v.push(t.seg(true, K, ci.wrapping_add(100), si, 0, false));
        return v;
    }
    if kind == 1 {
        // An invalid flag combination, then maybe a SYN.
        let bad = [0, F, S | F, S | R, F | P | 0x20, 0x20][rng.below(6) as usize];
        v.push(t.seg(true, bad, ci, 0, 0, false));
        if rng.pct(50) {
            v.push(t.seg(true, S, ci, 0, 0, true));
        }
        return v;
    }
    v.push(t.seg(true, S, ci, 0, 0, true));
    if rng.pct(15) {
        v.push(t.seg(true, S, ci, 0, 0, true)); // retransmitted SYN
    }
    if kind == 2 {
        // Refused: RST/ACK answers the SYN.
        v.push(t.seg(false, R | K, 0, ci.wrapping_add(1), 0, false));
        return v;
    }
    if kind == 3 {
        // The client's ACK without the server's SYN/ACK (INVALID), then the answer.
        v.push(t.seg(true, K, ci.wrapping_add(1), si.wrapping_add(1), 0, false));
    }
    v.push(t.seg(false, S | K, si, ci.wrapping_add(1), 0, true));
    if kind == 4 {
        return v; // half open
    }
    let (mut cs, mut ss) = (ci.wrapping_add(1), si.wrapping_add(1));
    v.push(t.seg(true, K, cs, ss, 0, false));
    for _ in 0..rng.range(0, 3) {
        let n = rng.range(1, 300) as usize;
        v.push(t.seg(true, K | P, cs, ss, n, false));
        if rng.pct(15) {
            v.push(t.seg(true, K | P, cs, ss, n, false)); // retransmission
        }
        cs = cs.wrapping_add(n as u32);
        v.push(t.seg(false, K, ss, cs, 0, false));
        if rng.pct(40) {
            let m = rng.range(1, 300) as usize;
            v.push(t.seg(false, K | P, ss, cs, m, false));
            ss = ss.wrapping_add(m as u32);
            v.push(t.seg(true, K, cs, ss, 0, false));
        }
    }
    match kind {
        5 => {
            // Out of window: far above, or acknowledging data never sent.
            if rng.pct(50) {
                v.push(t.seg(true, K | P, cs.wrapping_add(50_000_000), ss, 10, false));
            } else {
                v.push(t.seg(true, K, cs, ss.wrapping_add(3_000_000), 0, false));
            }
            v.push(t.seg(true, K, cs, ss, 0, false));
        }
        6 => {
            // Reset by either side, exactly at the window edge or not.
            let from_client = rng.pct(50);
            let (seq, ack) = if from_client { (cs, ss) } else { (ss, cs) };
            let off = if rng.pct(70) {
                0
            } else {
                rng.range(1, 5000) as u32
            };
            v.push(t.seg(from_client, R | K, seq.wrapping_add(off), ack, 0, false));
            if rng.pct(30) {
                v.push(t.seg(true, K, cs, ss, 0, false));
            }
        }
        _ => {
            // FIN teardown, the client first.
            v.push(t.seg(true, F | K, cs, ss, 0, false));
            cs = cs.wrapping_add(1);
            if rng.pct(70) {
                v.push(t.seg(false, F | K, ss, cs, 0, false));
                ss = ss.wrapping_add(1);
                v.push(t.seg(true, K, cs, ss, 0, false));
                if rng.pct(30) {
                    // Reopen the closed connection.
                    v.push(t.seg(true, S, ci.wrapping_add(1_000_000), 0, 0, true));
                }
            } else {
                v.push(t.seg(false, K, ss, cs, 0, false));
            }
        }
    }
    v
}

pub(super) fn udp_step(side: Side, src: Ipv4Addr, dst: Ipv4Addr, sp: u16, dp: u16) -> Step {
    udp_payload_step(side, src, dst, sp, dp, b"pollwall")
}

/// A UDP datagram carrying `payload`.
pub(super) fn udp_payload_step(
    side: Side,
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sp: u16,
    dp: u16,
    payload: &[u8],
) -> Step {
    let seg = build::udp(src, dst, sp, dp, payload);
    Step {
        side,
        ip: build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::UDP, 0, 64), &seg),
        what: format!("udp {src}:{sp} > {dst}:{dp}"),
    }
}

pub(super) fn icmp_step(side: Side, src: Ipv4Addr, dst: Ipv4Addr, mut msg: Vec<u8>) -> Step {
    msg[2] = 0;
    msg[3] = 0;
    let c = !classifier::wire::checksum::data(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let what = format!("icmp {src} > {dst} type {} code {}", msg[0], msg[1]);
    Step {
        side,
        ip: build::ipv4(ipv4::Repr::new(src, dst, IpProtocol::ICMP, 0, 64), &msg),
        what,
    }
}

pub(super) fn udp_conversation(rng: &mut Rng, port: u16) -> Vec<Step> {
    let cs = if rng.pct(75) { Side::A } else { Side::B };
    let (c, s) = ends(rng, cs);
    let sp = [53, 123, 5353][rng.below(3) as usize];
    let mut v = vec![udp_step(cs, c, s, port, sp)];
    match rng.below(4) {
        0 => {}
        1 => v.push(udp_step(cs, c, s, port, sp)),
        2 => {
            // The server side answers with a port unreachable quoting the request.
            let q = &v[0].ip;
            let mut msg = vec![3, 3, 0, 0, 0, 0, 0, 0];
            msg.extend_from_slice(&q[..28]);
            v.push(icmp_step(other(cs), s, c, msg));
        }
        _ => {
            v.push(udp_step(other(cs), s, c, sp, port));
            v.push(udp_step(cs, c, s, port, sp));
        }
    }
    v
}

pub(super) fn icmp_conversation(rng: &mut Rng, id: u16) -> Vec<Step> {
    let cs = if rng.pct(75) { Side::A } else { Side::B };
    let (c, s) = ends(rng, cs);
    let echo = |t: u8| {
        let mut m = vec![t, 0, 0, 0];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&[0, 1, 0xaa, 0xbb]);
        m
    };
    match rng.below(3) {
        0 => vec![icmp_step(other(cs), s, c, echo(0))], // a reply without request
        1 => vec![icmp_step(cs, c, s, echo(8))],
        _ => vec![
            icmp_step(cs, c, s, echo(8)),
            icmp_step(other(cs), s, c, echo(0)),
        ],
    }
}

pub(super) fn other_protocol(rng: &mut Rng) -> Vec<Step> {
    let cs = if rng.pct(75) { Side::A } else { Side::B };
    let (c, s) = ends(rng, cs);
    let (proto, body): (u8, &[u8]) = if rng.pct(50) {
        (47, &[0, 0, 0x08, 0x00, 1, 2, 3, 4])
    } else {
        (253, b"experiment")
    };
    let step = |side, src, dst| Step {
        side,
        ip: build::ipv4(ipv4::Repr::new(src, dst, IpProtocol(proto), 0, 64), body),
        what: format!("proto {proto} {src} > {dst}"),
    };
    let mut v = vec![step(cs, c, s)];
    if rng.pct(60) {
        v.push(step(other(cs), s, c));
    }
    v
}

/// About `target` frames of interleaved conversations.
pub fn conversations(rng: &mut Rng, target: usize) -> Vec<Step> {
    let mut convs: Vec<std::collections::VecDeque<Step>> = Vec::new();
    let mut total = 0;
    let mut port = 20_000 + rng.below(20_000) as u16;
    while total < target {
        port = port.wrapping_add(1).max(1024);
        let c = match rng.below(14) {
            0..=4 => tcp_conversation(rng, port),
            5 | 6 => udp_conversation(rng, port),
            7 | 8 => icmp_conversation(rng, port),
            9 => super::stateful_apps::ftp_conversation(rng, port),
            10 => super::stateful_apps::tftp_conversation(rng, port),
            11 => super::stateful_apps::sctp_conversation(rng, port),
            12 => super::stateful_apps::fragmented_conversation(rng, port),
            _ => other_protocol(rng),
        };
        total += c.len();
        convs.push(c.into());
    }
    let mut out = Vec::with_capacity(total);
    // A few conversations live at once: pick among the oldest unfinished ones.
    while !convs.is_empty() {
        let window = convs.len().min(4);
        let i = rng.below(window as u64) as usize;
        if let Some(s) = convs[i].pop_front() {
            out.push(s);
        }
        if convs[i].is_empty() {
            convs.remove(i);
        }
    }
    out
}

/// A random stateful ruleset (iptables-restore text): raw-table helpers and NOTRACK, mangle
/// counting rules (both sides need them) and CONNMARK, and a filter FORWARD chain.
pub fn ruleset(rng: &mut Rng) -> String {
    let mut s = raw_table(rng);
    s.push_str("*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING\n");
    if rng.pct(40) {
        s.push_str("-A PREROUTING -j CONNMARK --restore-mark\n");
    }
    s.push_str("-A FORWARD\n");
    for _ in 0..rng.range(0, 2) {
        let m = ["", " -p tcp", " -p udp", " -m conntrack --ctstate NEW"][rng.below(4) as usize];
        let t = match rng.below(4) {
            0 => format!("CONNMARK --set-mark {}", rng.range(1, 4)),
            1 => format!("MARK --set-mark {}", rng.range(1, 4)),
            2 => "CONNMARK --save-mark".to_string(),
            _ => format!("CONNMARK --or-mark {:#x}", 1u32 << rng.below(4)),
        };
        s.push_str(&format!("-A FORWARD{m} -j {t}\n"));
    }
    s.push_str("COMMIT\n");
    let policy = if rng.pct(50) { "DROP" } else { "ACCEPT" };
    s.push_str(&format!(
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {policy} [0:0]\n:OUTPUT ACCEPT [0:0]\n:ct_check - [0:0]\n"
    ));
    let n = rng.range(3, 10);
    let mut used_chain = false;
    for _ in 0..n {
        let (m, jumpable) = match_text(rng);
        let target = match rng.below(6) {
            0 => "",
            1 | 2 => " -j ACCEPT",
            3 => " -j DROP",
            4 if jumpable => {
                used_chain = true;
                " -j ct_check"
            }
            _ => " -j ACCEPT",
        };
        s.push_str(&format!("-A FORWARD{m}{target}\n"));
    }
    for _ in 0..rng.range(1, 3) {
        let (m, _) = match_text(rng);
        let t = ["", " -j RETURN", " -j DROP", " -j ACCEPT"][rng.below(4) as usize];
        s.push_str(&format!("-A ct_check{m}{t}\n"));
    }
    let _ = used_chain;
    s.push_str("COMMIT\n");
    s
}

/// The raw table, always present (so a previous ruleset's raw rules go): ftp and tftp helpers
/// on their ports, sometimes an exemption from tracking.
fn raw_table(rng: &mut Rng) -> String {
    let mut s = String::from("*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    if rng.pct(70) {
        s.push_str("-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp\n");
    }
    if rng.pct(60) {
        s.push_str("-A PREROUTING -p udp -m udp --dport 69 -j CT --helper tftp\n");
    }
    if rng.pct(20) {
        let t = if rng.pct(50) {
            "NOTRACK"
        } else {
            "CT --notrack"
        };
        let m = [" -p udp -m udp --dport 53", " -p icmp", " -p 47"][rng.below(3) as usize];
        s.push_str(&format!("-A PREROUTING{m} -j {t}\n"));
    }
    s.push_str("COMMIT\n");
    s
}

fn states(rng: &mut Rng, names: &[&str]) -> String {
    let mut v: Vec<&str> = names.iter().copied().filter(|_| rng.pct(40)).collect();
    if v.is_empty() {
        v.push(names[rng.below(names.len() as u64) as usize]);
    }
    v.join(",")
}

/// One rule's matches; whether a jump suits it.
fn match_text(rng: &mut Rng) -> (String, bool) {
    const ST: [&str; 5] = ["INVALID", "NEW", "RELATED", "ESTABLISHED", "UNTRACKED"];
    const STATUS: [&str; 4] = ["EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED"];
    let inv = |rng: &mut Rng| if rng.pct(20) { " !" } else { "" };
    let mut m = String::new();
    if rng.pct(30) {
        let p = ["tcp", "udp", "icmp"][rng.below(3) as usize];
        m.push_str(&format!(" -p {p}"));
        if p == "tcp" && rng.pct(40) {
            m.push_str(" --tcp-flags SYN,RST,ACK SYN");
        }
    }
    if rng.pct(15) {
        m.push_str(&format!(" -i pwsf{}", rng.below(2)));
    }
    if rng.pct(10) {
        m.push_str(" -s 10.1.0.0/16");
    }
    if rng.pct(8) {
        m.push_str(&format!(
            " -m connmark{} --mark {}",
            inv(rng),
            rng.range(0, 4)
        ));
    }
    if rng.pct(6) {
        if !m.contains("-p ") && rng.pct(70) {
            m.push_str(" -p tcp --syn");
        }
        let (opt, n) = if rng.pct(70) {
            ("above", rng.range(0, 3))
        } else {
            ("upto", rng.range(0, 3))
        };
        m.push_str(&format!(" -m connlimit{} --connlimit-{opt} {n}", inv(rng)));
        // One group per rule (every address is in 10/8): with several, the kernel's
        // asynchronous tree gc walks groups at times no replay can know.
        m.push_str(" --connlimit-mask 8");
        if rng.pct(30) {
            m.push_str(" --connlimit-daddr");
        }
    }
    if rng.pct(8) {
        let h = ["ftp", "tftp", ""][rng.below(3) as usize];
        m.push_str(&format!(" -m helper{} --helper \"{h}\"", inv(rng)));
    }
    match rng.below(6) {
        0 => m.push_str(&format!(
            " -m state{} --state {}",
            inv(rng),
            states(rng, &ST)
        )),
        1 => {
            m.push_str(&format!(
                " -m conntrack{} --ctstate {}",
                inv(rng),
                states(rng, &ST)
            ));
            if rng.pct(30) {
                let d = if rng.pct(50) { "ORIGINAL" } else { "REPLY" };
                m.push_str(&format!(" --ctdir {d}"));
            }
        }
        2 => m.push_str(&format!(
            " -m conntrack{} --ctstatus {}",
            inv(rng),
            states(rng, &STATUS)
        )),
        3 => {
            let p = ["tcp", "udp", "icmp", "47"][rng.below(4) as usize];
            m.push_str(&format!(" -m conntrack{} --ctproto {p}", inv(rng)));
        }
        4 => {
            let net = if rng.pct(50) {
                "10.1.0.0/16"
            } else {
                "10.2.0.0/16"
            };
            let opt =
                ["--ctorigsrc", "--ctorigdst", "--ctreplsrc", "--ctrepldst"][rng.below(4) as usize];
            m.push_str(&format!(" -m conntrack{} {opt} {net}", inv(rng)));
        }
        _ => m.push_str(&format!(" -m state --state {}", states(rng, &ST[..4]))),
    }
    (m, true)
}
