//! Port clashes between clients, for the routed NAT kernel differential
//! ([`super::routed_nat`]): several A-side clients use the same source port toward one B-side
//! server, and a source NAT rule for that server maps them onto a range of two ports.
//!
//! The kernel picks a moved port from a random offset (`nf_nat_l4proto_unique_tuple`), so a
//! clash is only deterministic when at most one port of the range is free. With a two-port
//! range and every client's port inside it, that always holds: a client's own port is kept
//! when free; when it is taken the other one is the only candidate; when both are taken the
//! new connection's reply tuple stays taken and confirmation drops its packet
//! (`insert_failed`). The generator follows the same rules to address the server's answers
//! (and its ICMP errors' quotes) to the translated port; where its guess is wrong (a first
//! packet another rule dropped) both sides still see the same frames and must still agree.

use super::gen::Rng;
use super::nat_gen::FW_B;
use super::stateful_gen::{icmp_step, udp_step, Side, Step, Tcp, K, P, S};
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// The server port whose flows the clash rule translates.
pub const CLASH_PORT: u16 = 7777;

/// A source NAT onto two ports for flows to [`CLASH_PORT`].
pub struct ClashNat {
    pub rule: String,
    proto: u8,
    addr: Ipv4Addr,
    lo: u16,
}

/// Maybe a clash rule: MASQUERADE `--to-ports` or SNAT to `addr:lo-hi`, for tcp or udp.
pub fn clash_nat(rng: &mut Rng) -> Option<ClashNat> {
    if !rng.pct(50) {
        return None;
    }
    let (proto, name) = if rng.pct(50) { (17, "udp") } else { (6, "tcp") };
    // Away from the other conversations' ports (20000-40000 and the services).
    let lo = 50_000 + rng.below(10_000) as u16;
    let (target, addr) = if rng.pct(50) {
        (format!("MASQUERADE --to-ports {lo}-{}", lo + 1), FW_B)
    } else {
        let a = Ipv4Addr::new(10, 200, 2, 9);
        (format!("SNAT --to-source {a}:{lo}-{}", lo + 1), a)
    };
    Some(ClashNat {
        rule: format!(
            "-A POSTROUTING -o pwsf1 -p {name} -m {name} --dport {CLASH_PORT} -j {target}\n"
        ),
        proto,
        addr,
        lo,
    })
}

/// Two or three clients, each with a port of the range, talking to one server: one
/// conversation each (not yet translated; see [`translate`]).
pub fn clash_conversations(rng: &mut Rng, c: &ClashNat) -> Vec<Vec<Step>> {
    let server = Ipv4Addr::new(10, 2, rng.range(0, 3) as u8, rng.range(1, 20) as u8);
    let n = rng.range(2, 4) as u8;
    let first = rng.range(1, 10) as u8;
    (0..n)
        .map(|k| {
            let client = Ipv4Addr::new(10, 1, rng.range(0, 3) as u8, first + 7 * k);
            let port = c.lo + rng.below(2) as u16;
            if c.proto == 17 {
                udp_flow(rng, client, server, port)
            } else {
                tcp_flow(rng, client, server, port)
            }
        })
        .collect()
}

fn udp_flow(rng: &mut Rng, client: Ipv4Addr, server: Ipv4Addr, port: u16) -> Vec<Step> {
    let mut v = vec![udp_step(Side::A, client, server, port, CLASH_PORT)];
    if rng.pct(25) {
        let mut msg = vec![3, 3, 0, 0, 0, 0, 0, 0];
        msg.extend_from_slice(&v[0].ip[..28]);
        v.push(icmp_step(Side::B, server, client, msg));
        return v;
    }
    if rng.pct(75) {
        v.push(udp_step(Side::B, server, client, CLASH_PORT, port));
    }
    if rng.pct(50) {
        v.push(udp_step(Side::A, client, server, port, CLASH_PORT));
    }
    v
}

/// A handshake and some data; never closed (a TIME_WAIT entry may be evicted by a clash, and
/// which one would depend on the random offset).
fn tcp_flow(rng: &mut Rng, client: Ipv4Addr, server: Ipv4Addr, port: u16) -> Vec<Step> {
    let (ci, si) = (rng.next() as u32, rng.next() as u32);
    let t = Tcp {
        c: client,
        s: server,
        cp: port,
        sp: CLASH_PORT,
        cseq: ci,
        sseq: si,
        client_side: Side::A,
        wscale: false,
        sack: false,
    };
    let (cs, ss) = (ci.wrapping_add(1), si.wrapping_add(1));
    let mut v = vec![t.seg(true, S, ci, 0, 0, true)];
    if rng.pct(20) {
        v.push(t.seg(true, S, ci, 0, 0, true)); // a retransmitted SYN
    }
    v.push(t.seg(false, S | K, si, cs, 0, true));
    v.push(t.seg(true, K, cs, ss, 0, false));
    if rng.pct(70) {
        let n = rng.range(1, 120) as usize;
        v.push(t.seg(true, K | P, cs, ss, n, false));
        v.push(t.seg(false, K, ss, cs.wrapping_add(n as u32), 0, false));
    }
    v
}

fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

fn be32(d: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be_bytes(d[at..at + 4].try_into().unwrap()))
}

/// The translations the kernel makes, in frame order: each client's flow keeps its port when
/// free, else takes the range's other port, else is dropped (no entry).
struct Allocator<'a> {
    c: &'a ClashNat,
    map: HashMap<(Ipv4Addr, u16), u16>,
}

impl Allocator<'_> {
    fn opened(&mut self, client: Ipv4Addr, port: u16) {
        if self.map.contains_key(&(client, port)) {
            return;
        }
        let taken = |p: u16| self.map.values().any(|&q| q == p);
        let candidates = [port, self.c.lo + (self.c.lo + 1 - port)];
        if let Some(&p) = candidates.iter().find(|&&p| !taken(p)) {
            self.map.insert((client, port), p);
        }
    }
}

/// Readdresses the server's answers to the clash flows (in their final order) to the
/// translated address and port, ICMP errors' quotes included.
pub fn translate(steps: &mut [Step], c: &ClashNat) {
    let mut alloc = Allocator {
        c,
        map: HashMap::new(),
    };
    for s in steps.iter_mut() {
        let d = &s.ip;
        let hl = usize::from(d[0] & 15) * 4;
        if d.len() < hl + 8 {
            continue;
        }
        let ours = |d: &[u8], hl: usize| d[9] == c.proto && d.len() >= hl + 4;
        match s.side {
            Side::A if ours(d, hl) && be16(d, hl + 2) == CLASH_PORT => {
                alloc.opened(be32(d, 12), be16(d, hl));
            }
            Side::B if ours(d, hl) && be16(d, hl) == CLASH_PORT => {
                if let Some(&p) = alloc.map.get(&(be32(d, 16), be16(d, hl + 2))) {
                    s.ip = super::nat_gen::readdress_ports(d, None, Some((c.addr, p)));
                    s.what = format!("{} (to {}:{p})", s.what, c.addr);
                }
            }
            Side::B if d[9] == 1 && d[hl] == 3 && d.len() >= hl + 28 => {
                let q = hl + 8;
                let qhl = usize::from(d[q] & 15) * 4;
                if !ours(&d[q..], qhl) || be16(d, q + qhl + 2) != CLASH_PORT {
                    continue;
                }
                if let Some(&p) = alloc.map.get(&(be32(d, q + 12), be16(d, q + qhl))) {
                    s.ip = super::nat_gen::error_to(d, (c.addr, p));
                    s.what = format!("{} (to {}:{p})", s.what, c.addr);
                }
            }
            _ => {}
        }
    }
}
