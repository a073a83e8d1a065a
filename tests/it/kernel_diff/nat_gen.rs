//! Random NAT rulesets and the conversations that go with them, for the routed NAT kernel
//! differential ([`super::routed_nat`]).
//!
//! A ruleset is a random stateful one ([`super::stateful_gen::ruleset`]) plus a nat table:
//! maybe a source NAT of what leaves by the B port (MASQUERADE, SNAT to one address, SNAT to
//! an address range with or without `--persistent`, sometimes only for some clients) and maybe
//! DNAT port forwards from the B side to servers on the A side (one port, a port change, an
//! address range).
//!
//! Conversations are the stateful ones, made consistent with the plan: the B side answers a
//! source-NATed client at its translated address (the port is kept: each conversation has its
//! own), ICMP errors from the B side quote the translated datagram, and forwarded services
//! are reached at the firewall's B address and answered by their real server. Clients that
//! clash on their source port come from [`super::nat_clash`], ftp sessions through
//! NAT (the helper rewriting announcements) from [`super::nat_ftp`].

use super::gen::Rng;
use super::nat_clash::{clash_conversations, clash_nat, translate, ClashNat};
use super::stateful_gen::{
    icmp_conversation, other_protocol, tcp_conversation, udp_conversation, udp_step, Side, Step,
    Tcp, F, K, P, S,
};
use std::net::Ipv4Addr;

/// fw's address on the B port (MASQUERADE's source, the port forwards' destination).
pub const FW_B: Ipv4Addr = Ipv4Addr::new(10, 200, 2, 1);

/// The source NAT of flows the A side opens toward B.
pub struct SourceNat {
    pub rule: String,
    /// Clients the rule applies to (third octet), None for all.
    only_net: Option<u8>,
    pool: (u32, u32),
    persistent: bool,
}

impl SourceNat {
    /// The address a client's flow to `server` is translated to, if the rule applies to it
    /// (`find_best_ips_proto`'s hash over a pool).
    pub fn address(&self, client: Ipv4Addr, server: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.only_net.is_some_and(|n| client.octets()[2] != n) {
            return None;
        }
        let (lo, hi) = self.pool;
        if lo == hi {
            return Some(Ipv4Addr::from(lo));
        }
        let raw = |a: Ipv4Addr| u32::from_le_bytes(a.octets());
        let init = if self.persistent { 0 } else { raw(server) };
        let j = classifier::nat::choose::jhash2(&[raw(client), 0, 0, 0], init);
        let off = ((u64::from(j) * u64::from(hi - lo + 1)) >> 32) as u32;
        Some(Ipv4Addr::from(lo + off))
    }
}

/// A port forward: B-side clients reach `(FW_B, vport)`, served by `real:rport`.
pub struct Forward {
    pub udp: bool,
    pub vport: u16,
    pub real: Ipv4Addr,
    pub rport: u16,
    pub rule: String,
}

/// What a ruleset's nat table does.
pub struct NatPlan {
    pub snat: Option<SourceNat>,
    pub forwards: Vec<Forward>,
    /// Clients clashing on their source port ([`super::nat_clash`]).
    pub clash: Option<ClashNat>,
    /// The raw table gives port 21 the ftp helper.
    pub ftp_helper: bool,
    /// Port 21 of fw's B address is forwarded to [`super::nat_ftp::FTP_SERVER`].
    pub ftp_forward: bool,
}

fn source_nat(rng: &mut Rng) -> Option<SourceNat> {
    let only_net = rng.pct(25).then(|| rng.below(3) as u8);
    let m = only_net.map_or(String::new(), |n| format!(" -s 10.1.{n}.0/24"));
    let base = u32::from(Ipv4Addr::new(10, 200, 2, 0));
    let (target, pool, persistent) = match rng.below(5) {
        0 => return None,
        1 => ("MASQUERADE".to_string(), (base + 1, base + 1), false),
        2 => (
            "SNAT --to-source 10.200.2.9".to_string(),
            (base + 9, base + 9),
            false,
        ),
        3 => (
            "SNAT --to-source 10.200.2.20-10.200.2.27".to_string(),
            (base + 20, base + 27),
            false,
        ),
        _ => (
            "SNAT --to-source 10.200.2.30-10.200.2.33 --persistent".to_string(),
            (base + 30, base + 33),
            true,
        ),
    };
    Some(SourceNat {
        rule: format!("-A POSTROUTING -o pwsf1{m} -j {target}\n"),
        only_net,
        pool,
        persistent,
    })
}

fn forwards(rng: &mut Rng) -> Vec<Forward> {
    let mut v = Vec::new();
    if rng.pct(60) {
        v.push(Forward {
            udp: false,
            vport: 8080,
            real: Ipv4Addr::new(10, 1, 0, 5),
            rport: 80,
            rule: "-A PREROUTING -d 10.200.2.1/32 -i pwsf1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.5:80\n".into(),
        });
    }
    if rng.pct(40) {
        v.push(Forward {
            udp: true,
            vport: 5353,
            real: Ipv4Addr::new(10, 1, 0, 6),
            rport: 5353,
            rule: "-A PREROUTING -d 10.200.2.1/32 -i pwsf1 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.1.0.6\n".into(),
        });
    }
    v
}

/// A random NAT ruleset: the stateful one with a nat table; its plan. What came later to the
/// generator draws from `later` and then `newer` so that older seeds keep making the same
/// rulesets.
pub fn ruleset(rng: &mut Rng, later: &mut Rng, newer: &mut Rng) -> (String, NatPlan) {
    let mut text = super::stateful_gen::ruleset(rng);
    // ftp through NAT wants the helper more often than the stateful rulesets give it.
    let raw = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n";
    if !text.contains("--helper ftp") && newer.pct(60) {
        let with = format!("{raw}-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp\n");
        text = text.replacen(raw, &with, 1);
    }
    let plan = NatPlan {
        snat: source_nat(rng),
        forwards: forwards(rng),
        clash: clash_nat(later),
        ftp_helper: text.contains("--helper ftp"),
        ftp_forward: newer.pct(50),
    };
    // fw's own stack stays out of it: what reaches INPUT (a packet for fw's address that NAT
    // did not take, being INVALID or untracked) is counted and dropped on both sides, so the
    // kernel's stack never answers it with a reset or an unreachable no replay could make.
    // Counting rules on the bindings' virtual states: DNAT is set in PREROUTING, before
    // FORWARD sees the first packet; SNAT in POSTROUTING, after it (no randomness drawn, so
    // kept seeds keep their rulesets).
    text = text.replacen(
        ":ct_check - [0:0]\n",
        ":ct_check - [0:0]\n-A INPUT -j DROP\n-A FORWARD -m conntrack --ctstate DNAT\n-A FORWARD -m conntrack --ctstate SNAT\n",
        1,
    );
    if plan.snat.is_some() || plan.clash.is_some() {
        // Replies go to the translated address, which is fw's own for MASQUERADE: the
        // connection must exist, or they would reach fw's stack (whose answers no replay
        // has). So what the A side opens toward B is tracked and let through.
        text = text
            .lines()
            .filter(|l| !l.contains("NOTRACK") && !l.contains("--notrack"))
            .map(|l| {
                let mut l = l.to_string();
                l.push('\n');
                if l == ":ct_check - [0:0]\n" {
                    l.push_str(
                        "-A FORWARD -i pwsf0 -o pwsf1 -m conntrack --ctstate NEW -j ACCEPT\n",
                    );
                }
                l
            })
            .collect();
    }
    text.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n");
    // A counting rule in each chain: the nat table sees only first packets.
    text.push_str("-A PREROUTING\n-A POSTROUTING\n-A POSTROUTING -m conntrack --ctstate DNAT\n");
    for f in &plan.forwards {
        text.push_str(&f.rule);
    }
    if plan.ftp_forward {
        text.push_str(super::nat_ftp::FTP_FORWARD_RULE);
    }
    if let Some(c) = &plan.clash {
        text.push_str(&c.rule);
    }
    if let Some(s) = &plan.snat {
        text.push_str(&s.rule);
    }
    text.push_str("COMMIT\n");
    (text, plan)
}

/// `ip` with its source or destination replaced and every checksum recomputed.
fn readdress(ip: &[u8], src: Option<Ipv4Addr>, dst: Option<Ipv4Addr>) -> Vec<u8> {
    let keep = |a: Option<Ipv4Addr>, at: usize| a.map(|a| (a, port_at(ip, at)));
    readdress_ports(ip, keep(src, 0), keep(dst, 2))
}

/// The TCP or UDP port at `off` in the transport header (0 for other protocols).
fn port_at(ip: &[u8], off: usize) -> u16 {
    let at = usize::from(ip[0] & 15) * 4 + off;
    match ip[9] {
        6 | 17 if ip.len() >= at + 2 => u16::from_be_bytes([ip[at], ip[at + 1]]),
        _ => 0,
    }
}

/// `ip` with its source or destination address and port replaced (ports only for TCP and
/// UDP) and every checksum recomputed.
pub fn readdress_ports(
    ip: &[u8],
    src: Option<(Ipv4Addr, u16)>,
    dst: Option<(Ipv4Addr, u16)>,
) -> Vec<u8> {
    let mut d = ip.to_vec();
    let hl = usize::from(d[0] & 15) * 4;
    let ports = matches!(d[9], 6 | 17) && d.len() >= hl + 4;
    for (end, at, off) in [(src, 12, 0), (dst, 16, 2)] {
        if let Some((a, p)) = end {
            d[at..at + 4].copy_from_slice(&a.octets());
            if ports {
                d[hl + off..hl + off + 2].copy_from_slice(&p.to_be_bytes());
            }
        }
    }
    fix_checksums(&mut d);
    d
}

/// An ICMP error about a source-NATed flow as its server sends it: to the translated
/// client `to`, quoting the datagram it received (from `to`).
pub fn error_to(ip: &[u8], to: (Ipv4Addr, u16)) -> Vec<u8> {
    let hl = usize::from(ip[0] & 15) * 4;
    let inner = readdress_ports(&ip[hl + 8..], Some(to), None);
    let mut m = ip[hl..hl + 8].to_vec();
    m.extend_from_slice(&inner);
    m[2..4].fill(0);
    let c = classifier::nat::csum::sum_from_scratch(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    let mut d = ip[..hl].to_vec();
    d.extend_from_slice(&m);
    readdress(&d, None, Some(to.0))
}

fn fix_checksums(d: &mut [u8]) {
    use classifier::nat::csum;
    let hl = usize::from(d[0] & 15) * 4;
    d[10..12].fill(0);
    let c = csum::sum_from_scratch(&d[..hl]);
    d[10..12].copy_from_slice(&c.to_be_bytes());
    let frag = u16::from_be_bytes([d[6], d[7]]) & 0x3fff != 0;
    let word = |d: &[u8], at: usize| u32::from_be_bytes(d[at..at + 4].try_into().unwrap());
    let (src, dst) = (word(d, 12), word(d, 16));
    let len = usize::from(u16::from_be_bytes([d[2], d[3]])).min(d.len());
    let at = match d[9] {
        6 if !frag && len >= hl + 20 => hl + 16,
        17 if !frag && len >= hl + 8 && d[hl + 6..hl + 8] != [0, 0] => hl + 6,
        _ => return,
    };
    d[at..at + 2].fill(0);
    let mut c = csum::l4_from_scratch(src, dst, d[9], &d[hl..len]);
    if c == 0 && d[9] == 17 {
        c = 0xffff;
    }
    d[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

fn be32(d: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from_be_bytes(d[at..at + 4].try_into().unwrap()))
}

/// Makes an A-opened conversation's B-side frames what B sees under source NAT: addressed to
/// the translated client, ICMP errors quoting the translated datagram.
fn translate_replies(steps: &mut [Step], plan: &NatPlan) {
    let Some(snat) = &plan.snat else {
        return;
    };
    let Some(first) = steps.first() else {
        return;
    };
    if first.side != Side::A || first.ip.len() < 20 {
        return;
    }
    let (client, server) = (be32(&first.ip, 12), be32(&first.ip, 16));
    let Some(nat) = snat.address(client, server) else {
        return;
    };
    for s in steps.iter_mut().filter(|s| s.side == Side::B) {
        if be32(&s.ip, 16) != client {
            continue;
        }
        let hl = usize::from(s.ip[0] & 15) * 4;
        if s.ip[9] == 1 && matches!(s.ip[hl], 3 | 11) && s.ip.len() >= hl + 28 {
            // An ICMP error: the quoted datagram is what B received.
            let q = &s.ip[hl + 8..];
            s.ip = error_to(&s.ip, (nat, port_at(q, 0)));
        } else {
            s.ip = readdress(&s.ip, None, Some(nat));
        }
        s.what = format!("{} (to {nat})", s.what);
    }
}

/// A conversation through a port forward, opened from B.
fn forwarded(rng: &mut Rng, f: &Forward, port: u16) -> Vec<Step> {
    let client = Ipv4Addr::new(10, 2, rng.range(0, 2) as u8, rng.range(1, 20) as u8);
    if f.udp {
        let mut v = vec![udp_step(Side::B, client, FW_B, port, f.vport)];
        if rng.pct(70) {
            v.push(udp_step(Side::A, f.real, client, f.rport, port));
        }
        if rng.pct(30) {
            // The server refuses: port unreachable quoting what it got.
            let got = udp_step(Side::B, client, f.real, port, f.rport).ip;
            let mut msg = vec![3, 3, 0, 0, 0, 0, 0, 0];
            msg.extend_from_slice(&got[..28]);
            v.push(super::stateful_gen::icmp_step(Side::A, f.real, client, msg));
        }
        return v;
    }
    let (ci, si) = (rng.next() as u32, rng.next() as u32);
    let to_fw = Tcp {
        c: client,
        s: FW_B,
        cp: port,
        sp: f.vport,
        cseq: ci,
        sseq: si,
        client_side: Side::B,
        wscale: false,
        sack: false,
    };
    let from_server = Tcp {
        s: f.real,
        sp: f.rport,
        ..to_fw
    };
    let mut v = vec![to_fw.seg(true, S, ci, 0, 0, true)];
    v.push(from_server.seg(false, S | K, si, ci.wrapping_add(1), 0, true));
    let (mut cs, ss) = (ci.wrapping_add(1), si.wrapping_add(1));
    v.push(to_fw.seg(true, K, cs, ss, 0, false));
    if rng.pct(70) {
        let n = rng.range(1, 200) as usize;
        v.push(to_fw.seg(true, K | P, cs, ss, n, false));
        cs = cs.wrapping_add(n as u32);
        v.push(from_server.seg(false, K, ss, cs, 0, false));
    }
    if rng.pct(50) {
        v.push(to_fw.seg(true, F | K, cs, ss, 0, false));
        v.push(from_server.seg(false, F | K, ss, cs.wrapping_add(1), 0, false));
    }
    v
}

/// About `target` frames of interleaved conversations that fit `plan` (the clashing clients'
/// drawn from `later`, the ftp sessions from `newer`, as in [`ruleset`]).
pub fn conversations(
    rng: &mut Rng,
    later: &mut Rng,
    newer: &mut Rng,
    plan: &NatPlan,
    target: usize,
) -> Vec<Step> {
    let mut convs: Vec<std::collections::VecDeque<Step>> = Vec::new();
    let mut total = 0;
    let mut port = 20_000 + rng.below(20_000) as u16;
    while total < target {
        port = port.wrapping_add(1).max(1024);
        let mut c = match rng.below(12) {
            0..=4 => tcp_conversation(rng, port),
            5 | 6 => udp_conversation(rng, port),
            7 | 8 => icmp_conversation(rng, port),
            9 => super::stateful_apps::sctp_conversation(rng, port),
            10 if !plan.forwards.is_empty() => {
                let f = &plan.forwards[rng.below(plan.forwards.len() as u64) as usize];
                forwarded(rng, f, port)
            }
            _ => other_protocol(rng),
        };
        translate_replies(&mut c, plan);
        total += c.len();
        convs.push(c.into());
    }
    let mut out = Vec::with_capacity(total);
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
    if let Some(c) = &plan.clash {
        for conv in clash_conversations(later, c) {
            out = merge(later, out, conv);
        }
        translate(&mut out, c);
    }
    // Control ports 40300.., data ports 40500..: apart from every other conversation's.
    for k in 0..newer.range(2, 5) as u16 {
        let (cp, dp) = (40_300 + k, 40_500 + k * 2 + newer.below(1000) as u16 * 4);
        if let Some(conv) = super::nat_ftp::ftp_through_nat(newer, plan, cp, dp) {
            out = merge(newer, out, conv);
        }
    }
    if newer.pct(60) {
        if let Some(conv) = super::nat_ftp::tftp_through_nat(newer, plan, 40_400) {
            out = merge(newer, out, conv);
        }
    }
    out
}

/// The box's own ICMP errors: a copy of one or two UDP datagrams, sent right after their
/// original with TTL 1, so fw answers "time exceeded" about a packet of a (translated)
/// connection: the error is RELATED to it and its quote translated back (`nf_ct_attach`,
/// `nf_nat_icmp_reply_translation`). Drawn from their own stream so that older seeds keep
/// their other frames.
pub fn expiring_copies(rng: &mut Rng, steps: Vec<Step>) -> Vec<Step> {
    let udp: Vec<usize> = (0..steps.len())
        .filter(|&i| steps[i].ip.get(9) == Some(&17) && steps[i].ip.len() >= 28)
        .collect();
    if udp.is_empty() {
        return steps;
    }
    let mut chosen: Vec<usize> = (0..rng.range(1, 3))
        .map(|_| udp[rng.below(udp.len() as u64) as usize])
        .collect();
    chosen.sort_unstable();
    chosen.dedup();
    let mut out = Vec::with_capacity(steps.len() + chosen.len());
    for (i, s) in steps.into_iter().enumerate() {
        let copy = chosen.contains(&i).then(|| {
            let mut ip = s.ip.clone();
            ip[8] = 1;
            ip[10..12].copy_from_slice(&[0, 0]);
            let c = !classifier::wire::checksum::data(&ip[..usize::from(ip[0] & 15) * 4]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
            Step {
                side: s.side,
                ip,
                what: format!("{} again with TTL 1", s.what),
            }
        });
        out.push(s);
        out.extend(copy);
    }
    out
}

/// `b`'s steps spread at random places among `a`'s, both orders kept.
fn merge(rng: &mut Rng, a: Vec<Step>, b: Vec<Step>) -> Vec<Step> {
    let total = a.len() + b.len();
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    let mut out = Vec::with_capacity(total);
    while a.peek().is_some() || b.peek().is_some() {
        let left = a.len() + b.len();
        let take_b =
            b.peek().is_some() && (a.peek().is_none() || rng.below(left as u64) < b.len() as u64);
        out.extend(if take_b { b.next() } else { a.next() });
    }
    out
}
