//! Generation side of the kernel differential test: random stateless rulesets (as
//! iptables-restore text) and crafted Ethernet/IPv4 frames aimed at their rules.

use super::*;

pub(super) fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(super) fn ip_str(a: u32) -> String {
    std::net::Ipv4Addr::from(a).to_string()
}

// ---------------------------------------------------------------------------------------------
// Deterministic randomness.

pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    /// SplitMix64.
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub(super) fn range(&mut self, lo: u64, hi_incl: u64) -> u64 {
        lo + self.below(hi_incl - lo + 1)
    }
    /// True with probability `pct` percent.
    pub(super) fn pct(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    pub(super) fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    pub(super) fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// A unicast address the kernel forwards: not 0/8, 127/8, 224/3, nor the topology's 10.200/16.
pub(super) fn forwardable(a: u32) -> bool {
    let first = a >> 24;
    first != 0 && first != 127 && first < 224 && (a & TOPO_MASK) != TOPO_NET
}

pub(super) fn random_addr(rng: &mut Rng) -> u32 {
    loop {
        let a = rng.next() as u32;
        if forwardable(a) {
            return a;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The random ruleset.

/// Interface names for `-i`/`-o`: the real ones, wildcards, and names that exist nowhere in fw.
pub(super) const IFACES: &[&str] = &[
    "pwf0", "pwf1", "pw+", "pwf+", "pwf0+", "pwa0", "nosuch0", "eth+", "pwf",
];

pub(super) const TCP_FLAG_NAMES: &[&str] = &["FIN", "SYN", "RST", "PSH", "ACK", "URG"];

/// `--icmp-type` arguments and a (type, code) that matches each (255: any type).
pub(super) const ICMP_TYPES: &[(&str, u8, u8)] = &[
    ("any", 255, 0),
    ("echo-reply", 0, 0),
    ("echo-request", 8, 0),
    ("destination-unreachable", 3, 7),
    ("network-unreachable", 3, 0),
    ("host-unreachable", 3, 1),
    ("port-unreachable", 3, 3),
    ("fragmentation-needed", 3, 4),
    ("redirect", 5, 1),
    ("time-exceeded", 11, 0),
    ("ttl-zero-during-transit", 11, 0),
    ("ttl-zero-during-reassembly", 11, 1),
    ("parameter-problem", 12, 0),
    ("timestamp-request", 13, 0),
    ("0", 0, 0),
    ("3", 3, 1),
    ("3/3", 3, 3),
    ("3/13", 3, 13),
    ("5/1", 5, 1),
    ("8", 8, 0),
    ("8/0", 8, 0),
    ("11/1", 11, 1),
    ("13", 13, 0),
    ("42", 42, 0),
];

/// What a packet needs to satisfy a rule's positive (non-negated) criteria; frames aimed at a
/// rule draw their fields from here, so that rules deep in a ruleset get hit too.
#[derive(Clone, Debug, Default)]
pub(super) struct Aim {
    src: Option<(u32, u32)>,
    dst: Option<(u32, u32)>,
    src_range: Option<(u32, u32)>,
    dst_range: Option<(u32, u32)>,
    proto: Option<u8>,
    sport: Option<(u16, u16)>,
    dport: Option<(u16, u16)>,
    /// (flag mask, flags wanted).
    tcp_flags: Option<(u8, u8)>,
    tcp_option: Option<u8>,
    /// (type, code).
    icmp: Option<(u8, u8)>,
    /// `-f`: a non-first fragment; `! -f`: not one.
    fragment: Option<bool>,
}

/// A generated ruleset and the values packets should be drawn from to hit and miss it.
pub(super) struct Ruleset {
    pub(super) text: String,
    /// (address, mask) of every `-s`/`-d` (possibly a non-contiguous mask).
    nets: Vec<(u32, u32)>,
    /// Addresses at and around `-m iprange` bounds.
    range_addrs: Vec<u32>,
    /// Ports at and around every port and range bound used.
    ports: Vec<u16>,
    /// One per rule.
    aims: Vec<Aim>,
}

pub(super) struct RuleGen<'r> {
    rng: &'r mut Rng,
    nets: Vec<(u32, u32)>,
    range_addrs: Vec<u32>,
    ports: Vec<u16>,
}

pub(super) fn tcp_flag_bits(names: &str) -> u8 {
    names.split(',').fold(0, |acc, n| {
        acc | match n {
            "FIN" => 0x01,
            "SYN" => 0x02,
            "RST" => 0x04,
            "PSH" => 0x08,
            "ACK" => 0x10,
            "URG" => 0x20,
            "ALL" => 0x3f,
            _ => 0,
        }
    })
}

impl RuleGen<'_> {
    fn inverted(&mut self, pct: u64) -> bool {
        self.rng.pct(pct)
    }

    fn bang(inv: bool) -> &'static str {
        if inv {
            "! "
        } else {
            ""
        }
    }

    fn net(&mut self) -> ((u32, u32), String) {
        // Reuse a net now and then so that several rules overlap.
        let (addr, mask) = if !self.nets.is_empty() && self.rng.pct(30) {
            *self.rng.pick(&self.nets)
        } else {
            let addr = random_addr(self.rng);
            let mask = if self.rng.pct(12) {
                *self.rng.pick(&[
                    0xff00_ff00u32,
                    0xffff_00ff,
                    0xff00_00ff,
                    0x00ff_ff00,
                    0xffff_ff0f,
                ])
            } else {
                let len = *self
                    .rng
                    .pick(&[8u32, 12, 16, 20, 24, 24, 26, 28, 30, 32, 32]);
                u32::MAX << (32 - len)
            };
            self.nets.push((addr, mask));
            (addr, mask)
        };
        let text = if mask.count_ones() == 32 - mask.trailing_zeros() {
            format!("{}/{}", ip_str(addr), mask.count_ones())
        } else {
            format!("{}/{}", ip_str(addr), ip_str(mask))
        };
        ((addr, mask), text)
    }

    fn port(&mut self) -> u16 {
        let p = if !self.ports.is_empty() && self.rng.pct(30) {
            *self.rng.pick(&self.ports)
        } else if self.rng.pct(50) {
            *self
                .rng
                .pick(&[20u16, 22, 53, 67, 80, 123, 443, 1024, 8080, 65535])
        } else {
            self.rng.range(1, 65535) as u16
        };
        self.ports
            .extend([p, p.saturating_add(1), p.saturating_sub(1)]);
        p
    }

    /// A port or a `lo:hi` range (lo < hi).
    fn port_spec(&mut self) -> ((u16, u16), String) {
        let a = self.port();
        if self.rng.pct(40) {
            let b = self.port();
            // (multiport rejects `20:20`.)
            if a != b {
                let (lo, hi) = (a.min(b), a.max(b));
                return ((lo, hi), format!("{lo}:{hi}"));
            }
        }
        ((a, a), a.to_string())
    }

    fn tcp_flags(&mut self, aim: &mut Aim) -> String {
        let mask: Vec<&str> = TCP_FLAG_NAMES
            .iter()
            .copied()
            .filter(|_| self.rng.pct(40))
            .collect();
        let mask = if mask.is_empty() {
            vec!["SYN", "ACK"]
        } else {
            mask
        };
        let comp: Vec<&str> = mask.iter().copied().filter(|_| self.rng.pct(50)).collect();
        let (m, c) = match self.rng.below(8) {
            0 => ("ALL".to_string(), "NONE".to_string()),
            1 => ("ALL".to_string(), "FIN,PSH,URG".to_string()),
            2 => ("SYN,ACK".to_string(), "SYN".to_string()),
            _ => (
                mask.join(","),
                if comp.is_empty() {
                    "NONE".to_string()
                } else {
                    comp.join(",")
                },
            ),
        };
        let inv = self.inverted(25);
        if !inv {
            aim.tcp_flags = Some((tcp_flag_bits(&m), tcp_flag_bits(&c)));
        }
        format!("{}--tcp-flags {m} {c}", Self::bang(inv))
    }

    fn multiport(&mut self, aim: &mut Aim) -> String {
        let n = self.rng.range(1, 5);
        let specs: Vec<((u16, u16), String)> = (0..n).map(|_| self.port_spec()).collect();
        let which = *self.rng.pick(&["--sports", "--dports", "--ports"]);
        let inv = self.inverted(25);
        if !inv {
            let (range, _) = *self.rng.pick(&specs);
            match which {
                "--sports" => aim.sport = Some(range),
                "--dports" => aim.dport = Some(range),
                _ if self.rng.pct(50) => aim.sport = Some(range),
                _ => aim.dport = Some(range),
            }
        }
        let list: Vec<&str> = specs.iter().map(|(_, s)| s.as_str()).collect();
        format!("-m multiport {}{which} {}", Self::bang(inv), list.join(","))
    }

    fn iprange(&mut self, aim: &mut Aim) -> String {
        let mut parts = Vec::new();
        for dir in ["--src-range", "--dst-range"] {
            if self.rng.pct(60) || (dir == "--dst-range" && parts.is_empty()) {
                let a = if !self.nets.is_empty() && self.rng.pct(50) {
                    let (n, m) = *self.rng.pick(&self.nets);
                    n & m
                } else {
                    random_addr(self.rng)
                };
                let width = 1 << self.rng.range(0, 20);
                let b = a.saturating_add(self.rng.below(width) as u32);
                for x in [a, b] {
                    self.range_addrs
                        .extend([x.wrapping_sub(1), x, x.wrapping_add(1)]);
                }
                let inv = self.inverted(25);
                if !inv {
                    if dir == "--src-range" {
                        aim.src_range = Some((a, b));
                    } else {
                        aim.dst_range = Some((a, b));
                    }
                }
                parts.push(format!(
                    "{}{dir} {}-{}",
                    Self::bang(inv),
                    ip_str(a),
                    ip_str(b)
                ));
            }
        }
        format!("-m iprange {}", parts.join(" "))
    }

    /// One rule in `chain` (`users` are the user chains it may jump to: created after it).
    fn rule(&mut self, chain: &str, users: &[String], index: usize) -> (String, Aim) {
        let mut aim = Aim::default();
        let mut r = format!("-A {chain}");
        // Most rules look at an address, so that few of them catch everything.
        let (mut want_s, mut want_d) = (self.rng.pct(45), self.rng.pct(45));
        if !want_s && !want_d && self.rng.pct(70) {
            want_s = self.rng.pct(50);
            want_d = !want_s;
        }
        // A rule with a negated address matches nearly everything: usually it just counts.
        let mut broad = false;
        if want_s {
            let (net, text) = self.net();
            let inv = self.inverted(20);
            broad |= inv;
            if !inv {
                aim.src = Some(net);
            }
            let _ = write!(r, " {}-s {text}", Self::bang(inv));
        }
        if want_d {
            let (net, text) = self.net();
            let inv = self.inverted(20);
            broad |= inv;
            if !inv {
                aim.dst = Some(net);
            }
            let _ = write!(r, " {}-d {text}", Self::bang(inv));
        }
        broad |= !want_s && !want_d;
        if self.rng.pct(15) {
            let i = *self.rng.pick(IFACES);
            let inv = self.inverted(25);
            let _ = write!(r, " {}-i {i}", Self::bang(inv));
        }
        if self.rng.pct(15) {
            let o = *self.rng.pick(IFACES);
            let inv = self.inverted(25);
            let _ = write!(r, " {}-o {o}", Self::bang(inv));
        }
        let proto = match self.rng.below(20) {
            0..=5 => "tcp",
            6..=9 => "udp",
            10..=12 => "icmp",
            13 => "47",
            14 => "all",
            _ => "",
        };
        let proto_inv = !proto.is_empty() && proto != "all" && self.rng.pct(12);
        if !proto.is_empty() {
            let _ = write!(r, " {}-p {proto}", Self::bang(proto_inv));
            if !proto_inv {
                aim.proto = match proto {
                    "tcp" => Some(6),
                    "udp" => Some(17),
                    "icmp" => Some(1),
                    "47" => Some(47),
                    _ => None,
                };
            }
        }
        if self.rng.pct(10) {
            let inv = self.inverted(50);
            aim.fragment = Some(!inv);
            let _ = write!(r, " {}-f", Self::bang(inv));
        }
        if !proto_inv {
            match proto {
                "tcp" if self.rng.pct(70) => {
                    r.push_str(" -m tcp");
                    let mut any = false;
                    if self.rng.pct(40) {
                        let (range, s) = self.port_spec();
                        let inv = self.inverted(20);
                        if !inv {
                            aim.sport = Some(range);
                        }
                        let _ = write!(r, " {}--sport {s}", Self::bang(inv));
                        any = true;
                    }
                    if self.rng.pct(50) {
                        let (range, s) = self.port_spec();
                        let inv = self.inverted(20);
                        if !inv {
                            aim.dport = Some(range);
                        }
                        let _ = write!(r, " {}--dport {s}", Self::bang(inv));
                        any = true;
                    }
                    if self.rng.pct(20) {
                        let inv = self.inverted(40);
                        if !inv {
                            aim.tcp_flags = Some((0x17, 0x02));
                        }
                        let _ = write!(r, " {}--syn", Self::bang(inv));
                        any = true;
                    } else if self.rng.pct(30) {
                        let f = self.tcp_flags(&mut aim);
                        let _ = write!(r, " {f}");
                        any = true;
                    }
                    if self.rng.pct(12) || !any {
                        let k = *self.rng.pick(&[1u8, 2, 3, 4, 8, 30]);
                        let inv = self.inverted(25);
                        if !inv {
                            aim.tcp_option = Some(k);
                        }
                        let _ = write!(r, " {}--tcp-option {k}", Self::bang(inv));
                    }
                }
                "udp" if self.rng.pct(70) => {
                    r.push_str(" -m udp");
                    let both = self.rng.pct(30);
                    let (want_sport, want_dport) = if both {
                        (true, true)
                    } else {
                        let s = self.rng.pct(50);
                        (s, !s)
                    };
                    if want_sport {
                        let (range, s) = self.port_spec();
                        let inv = self.inverted(20);
                        if !inv {
                            aim.sport = Some(range);
                        }
                        let _ = write!(r, " {}--sport {s}", Self::bang(inv));
                    }
                    if want_dport {
                        let (range, s) = self.port_spec();
                        let inv = self.inverted(20);
                        if !inv {
                            aim.dport = Some(range);
                        }
                        let _ = write!(r, " {}--dport {s}", Self::bang(inv));
                    }
                }
                "icmp" if self.rng.pct(75) => {
                    let (name, t, c) = *self.rng.pick(ICMP_TYPES);
                    let inv = self.inverted(20);
                    if !inv && t != 255 {
                        aim.icmp = Some((t, c));
                    }
                    let _ = write!(r, " -m icmp {}--icmp-type {name}", Self::bang(inv));
                }
                _ => {}
            }
            if matches!(proto, "tcp" | "udp") && self.rng.pct(25) {
                let m = self.multiport(&mut aim);
                let _ = write!(r, " {m}");
            }
        }
        if self.rng.pct(12) {
            let m = self.iprange(&mut aim);
            let _ = write!(r, " {m}");
        }
        if self.rng.pct(8) {
            let m = *self.rng.pick(&["0", "0x0/0xff", "0x1/0x1", "0x5"]);
            let inv = self.inverted(40);
            let _ = write!(r, " -m mark {}--mark {m}", Self::bang(inv));
        }
        if self.rng.pct(8) {
            let _ = write!(r, " -m comment --comment \"rule {index} of {chain}\"");
        }
        let target = match self.rng.below(20) {
            // A rule with no criteria, or only broad ones, usually just counts.
            0..=15 if r == format!("-A {chain}") => String::new(),
            _ if broad && self.rng.pct(75) => String::new(),
            0..=6 => " -j ACCEPT".to_string(),
            7..=12 => " -j DROP".to_string(),
            13 => " -j RETURN".to_string(),
            14..=15 => String::new(),
            16..=18 if !users.is_empty() => format!(" -j {}", self.rng.pick(users)),
            19 if !users.is_empty() => format!(" -g {}", self.rng.pick(users)),
            _ => " -j ACCEPT".to_string(),
        };
        r.push_str(&target);
        (r, aim)
    }
}

pub(super) fn gen_ruleset(rng: &mut Rng) -> Ruleset {
    let n_users = rng.below(4) as usize;
    let users: Vec<String> = (0..n_users).map(|i| format!("pwc{i}")).collect();
    let n_rules = rng.range(5, 40) as usize;
    let policy = if rng.pct(50) { "ACCEPT" } else { "DROP" };
    let mut g = RuleGen {
        rng,
        nets: Vec::new(),
        range_addrs: Vec::new(),
        ports: Vec::new(),
    };
    let mut text =
        format!("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD {policy} [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    for u in &users {
        let _ = writeln!(text, ":{u} - [0:0]");
    }
    // Chain 0 is FORWARD; chain k >= 1 is users[k-1] and jumps only to users[k..].
    let chains = n_users + 1;
    let mut aims = Vec::new();
    for i in 0..n_rules {
        // About half of the rules in FORWARD, and every user chain gets a jump into it.
        let c = if i < n_users || g.rng.pct(50) {
            0
        } else {
            g.rng.below(chains as u64) as usize
        };
        let (name, callable) = if c == 0 {
            ("FORWARD", &users[..])
        } else {
            (users[c - 1].as_str(), &users[c..])
        };
        let (mut rule, aim) = g.rule(name, callable, i);
        if i < n_users && !rule.ends_with(&format!(" -j pwc{i}")) {
            // Make sure every user chain is reachable (with -j, so that it returns).
            if let Some(j) = rule.rfind(" -j ").or_else(|| rule.rfind(" -g ")) {
                rule.truncate(j);
            }
            let _ = write!(rule, " -j pwc{i}");
        }
        text.push_str(&rule);
        text.push('\n');
        aims.push(aim);
    }
    text.push_str("COMMIT\n");
    let RuleGen {
        nets,
        range_addrs,
        ports,
        ..
    } = g;
    Ruleset {
        text,
        nets,
        range_addrs,
        ports,
        aims,
    }
}

// ---------------------------------------------------------------------------------------------
// Frames. A tiny private builder (to be replaced by `classifier::wire` emit APIs).

pub(crate) mod frame {
    /// Internet checksum over `data` with an initial partial sum.
    pub fn checksum(init: u32, data: &[u8]) -> u16 {
        let mut sum = init;
        for c in data.chunks(2) {
            let w = if c.len() == 2 {
                u16::from_be_bytes([c[0], c[1]])
            } else {
                u16::from(c[0]) << 8
            };
            sum += u32::from(w);
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    fn pseudo(src: u32, dst: u32, proto: u8, len: usize) -> u32 {
        (src >> 16) + (src & 0xffff) + (dst >> 16) + (dst & 0xffff) + u32::from(proto) + len as u32
    }

    pub struct Ipv4 {
        pub src: u32,
        pub dst: u32,
        pub proto: u8,
        pub id: u16,
        pub tos: u8,
        pub df: bool,
        pub mf: bool,
        /// In 8-byte units.
        pub frag_off: u16,
        /// IP options (a multiple of 4 bytes).
        pub options: Vec<u8>,
    }

    /// An Ethernet frame holding the datagram `ip` with payload `l4`, padded to 60 bytes.
    pub fn ethernet(dst_mac: [u8; 6], src_mac: [u8; 6], ip: &Ipv4, l4: &[u8]) -> Vec<u8> {
        assert_eq!(ip.options.len() % 4, 0);
        let ihl = 20 + ip.options.len();
        let total = ihl + l4.len();
        let mut f = Vec::with_capacity(14 + total.max(46));
        f.extend_from_slice(&dst_mac);
        f.extend_from_slice(&src_mac);
        f.extend_from_slice(&0x0800u16.to_be_bytes());
        let h = f.len();
        f.push(0x40 | (ihl / 4) as u8);
        f.push(ip.tos);
        f.extend_from_slice(&(total as u16).to_be_bytes());
        f.extend_from_slice(&ip.id.to_be_bytes());
        let flags = (u16::from(ip.df) << 14) | (u16::from(ip.mf) << 13) | (ip.frag_off & 0x1fff);
        f.extend_from_slice(&flags.to_be_bytes());
        f.push(64);
        f.push(ip.proto);
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(&ip.src.to_be_bytes());
        f.extend_from_slice(&ip.dst.to_be_bytes());
        f.extend_from_slice(&ip.options);
        let c = checksum(0, &f[h..h + ihl]);
        f[h + 10..h + 12].copy_from_slice(&c.to_be_bytes());
        f.extend_from_slice(l4);
        if f.len() < 60 {
            f.resize(60, 0);
        }
        f
    }

    /// A TCP segment (header, options padded to 4 bytes, payload) with its checksum;
    /// `doff` overrides the data offset field (for malformed headers).
    #[allow(clippy::too_many_arguments)]
    pub fn tcp(
        src: u32,
        dst: u32,
        sport: u16,
        dport: u16,
        flags: u8,
        options: &[u8],
        doff: Option<u8>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut opts = options.to_vec();
        while opts.len() & 3 != 0 {
            opts.push(0);
        }
        let mut t = Vec::new();
        t.extend_from_slice(&sport.to_be_bytes());
        t.extend_from_slice(&dport.to_be_bytes());
        t.extend_from_slice(&0x1234_5678u32.to_be_bytes());
        t.extend_from_slice(&(if flags & 0x10 != 0 { 0x0bad_cafeu32 } else { 0 }).to_be_bytes());
        let d = doff.unwrap_or(((20 + opts.len()) / 4) as u8);
        t.push(d << 4);
        t.push(flags);
        t.extend_from_slice(&64240u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]);
        t.extend_from_slice(&opts);
        t.extend_from_slice(payload);
        let c = checksum(pseudo(src, dst, 6, t.len()), &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    pub fn udp(src: u32, dst: u32, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = Vec::new();
        u.extend_from_slice(&sport.to_be_bytes());
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let c = match checksum(pseudo(src, dst, 17, u.len()), &u) {
            0 => 0xffff,
            c => c,
        };
        u[6..8].copy_from_slice(&c.to_be_bytes());
        u
    }

    pub fn icmp(icmp_type: u8, code: u8, payload: &[u8]) -> Vec<u8> {
        let mut m = vec![icmp_type, code, 0, 0, 0x12, 0x34, 0, 1];
        m.extend_from_slice(payload);
        let c = checksum(0, &m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    }
}

/// One crafted frame and a one-line description for failure reports.
pub(super) struct Crafted {
    pub(super) frame: Vec<u8>,
    pub(super) ip_len: u64,
    pub(super) what: String,
}

pub(super) fn pick_addr(rng: &mut Rng, rs: &Ruleset) -> u32 {
    for _ in 0..32 {
        let a = match rng.below(10) {
            0..=5 if !rs.nets.is_empty() => {
                let (n, m) = *rng.pick(&rs.nets);
                // Inside the net, at its edges, or just outside it.
                match rng.below(6) {
                    0 => n & m,
                    1 => (n & m) | !m,
                    2 => ((n & m) | !m).wrapping_add(1),
                    _ => (n & m) | (rng.next() as u32 & !m),
                }
            }
            6..=7 if !rs.range_addrs.is_empty() => *rng.pick(&rs.range_addrs),
            _ => random_addr(rng),
        };
        if forwardable(a) {
            return a;
        }
    }
    random_addr(rng)
}

pub(super) fn pick_port(rng: &mut Rng, rs: &Ruleset) -> u16 {
    if !rs.ports.is_empty() && rng.pct(65) {
        *rng.pick(&rs.ports)
    } else {
        rng.below(65536) as u16
    }
}

pub(super) fn tcp_options(rng: &mut Rng) -> Vec<u8> {
    match rng.below(6) {
        0 => vec![2, 4, 0x05, 0xb4], // MSS
        1 => vec![
            2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ], // MSS SACKOK TS NOP WS
        2 => vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], // NOP NOP TS
        3 => vec![30, 0, 2, 4, 1, 0], // zero-length kind: walked byte by byte
        4 => vec![3, 3, 7, 0],       // WS EOL
        _ => {
            let n = rng.range(1, 12) as usize;
            rng.bytes(n)
        }
    }
}

pub(super) const TCP_FLAGS: &[u8] = &[
    0x02, 0x12, 0x10, 0x11, 0x04, 0x14, 0x18, 0x00, 0x3f, 0x29, 0x03, 0x01, 0x22, 0x06,
];

pub(super) const ICMP_TC: &[(u8, u8)] = &[
    (0, 0),
    (3, 0),
    (3, 1),
    (3, 3),
    (3, 4),
    (3, 13),
    (4, 0),
    (5, 1),
    (8, 0),
    (8, 1),
    (11, 0),
    (11, 1),
    (12, 0),
    (13, 0),
    (14, 0),
    (42, 0),
    (255, 3),
];

/// An address inside `net` (random host bits), inside `range`, or else from the pools.
pub(super) fn aimed_addr(
    rng: &mut Rng,
    rs: &Ruleset,
    net: Option<(u32, u32)>,
    range: Option<(u32, u32)>,
) -> u32 {
    for _ in 0..8 {
        let a = match (net, range) {
            // Both: try the range (the net may or may not contain it).
            (_, Some((lo, hi))) if rng.pct(50) || net.is_none() => {
                lo.wrapping_add(rng.below(u64::from(hi - lo) + 1) as u32)
            }
            (Some((n, m)), _) => (n & m) | (rng.next() as u32 & !m),
            _ => break,
        };
        if forwardable(a) {
            return a;
        }
    }
    pick_addr(rng, rs)
}

pub(super) fn aimed_port(rng: &mut Rng, rs: &Ruleset, want: Option<(u16, u16)>) -> u16 {
    match want {
        Some((lo, hi)) => match rng.below(4) {
            0 => lo,
            1 => hi,
            _ => lo + rng.below(u64::from(hi - lo) + 1) as u16,
        },
        None => pick_port(rng, rs),
    }
}

/// One frame; with `aim`, one that satisfies the positive criteria of a rule.
pub(super) fn gen_frame(rng: &mut Rng, rs: &Ruleset, aim: Option<&Aim>) -> Crafted {
    let none = Aim::default();
    let aim = aim.unwrap_or(&none);
    let src = aimed_addr(rng, rs, aim.src, aim.src_range);
    let dst = aimed_addr(rng, rs, aim.dst, aim.dst_range);
    let mut ip = frame::Ipv4 {
        src,
        dst,
        proto: 0,
        id: rng.next() as u16,
        tos: *rng.pick(&[0u8, 0, 0x10, 0xb8]),
        df: rng.pct(30),
        mf: false,
        frag_off: 0,
        options: if rng.pct(5) {
            vec![1, 1, 1, 0]
        } else {
            Vec::new()
        },
    };
    let kind = match aim.proto {
        Some(6) => 0,
        Some(17) => 35,
        Some(1) => 57,
        Some(47) => 78,
        _ => rng.below(100),
    };
    let payload_len = *rng.pick(&[0usize, 0, 1, 8, 17, 40, 100]);
    let payload = rng.bytes(payload_len);
    let mut what;
    let mut l4 = match kind {
        0..=34 => {
            ip.proto = 6;
            let sp = aimed_port(rng, rs, aim.sport);
            let dp = aimed_port(rng, rs, aim.dport);
            let flags = match aim.tcp_flags {
                Some((mask, comp)) => comp | (rng.next() as u8 & !mask & 0x3f),
                None => *rng.pick(TCP_FLAGS),
            };
            let opts = match aim.tcp_option {
                Some(k) => {
                    let mut o = tcp_options(rng);
                    o.extend_from_slice(&[k, 2]);
                    o
                }
                None if rng.pct(30) => tcp_options(rng),
                None => Vec::new(),
            };
            let doff = if rng.pct(3) {
                Some(rng.range(0, 4) as u8)
            } else {
                None
            };
            what = format!("tcp {sp}->{dp} flags 0x{flags:02x} opts {opts:?} doff {doff:?}");
            frame::tcp(src, dst, sp, dp, flags, &opts, doff, &payload)
        }
        35..=56 => {
            ip.proto = 17;
            let sp = aimed_port(rng, rs, aim.sport);
            let dp = aimed_port(rng, rs, aim.dport);
            what = format!("udp {sp}->{dp}");
            frame::udp(src, dst, sp, dp, &payload)
        }
        57..=77 => {
            ip.proto = 1;
            let (t, c) = match aim.icmp {
                Some(tc) => tc,
                None if rng.pct(85) => *rng.pick(ICMP_TC),
                None => (rng.next() as u8, rng.next() as u8),
            };
            what = format!("icmp type {t} code {c}");
            frame::icmp(t, c, &payload)
        }
        78..=89 => {
            ip.proto = 47;
            what = "gre".to_string();
            let mut g = vec![0, 0, 0x08, 0x00];
            g.extend_from_slice(&payload);
            g
        }
        _ => {
            ip.proto = *rng.pick(&[50u8, 132, 33, 4, 103]);
            what = format!("proto {}", ip.proto);
            payload.clone()
        }
    };
    let shape = match aim.fragment {
        Some(true) => 8,
        Some(false) if rng.pct(50) => 99,
        _ => rng.below(100),
    };
    match shape {
        // A first fragment: MF set, offset 0; sometimes cut inside the transport header.
        0..=7 => {
            ip.mf = true;
            ip.df = false;
            if rng.pct(40) {
                let cut = rng.range(1, 8).min(l4.len() as u64) as usize;
                l4.truncate(cut);
            }
            what = format!("{what}, first fragment ({} bytes)", l4.len());
        }
        // A non-first fragment: any payload at offset >= 1 (offset 1 is tcp_mt's "evil" case).
        8..=17 => {
            ip.df = false;
            ip.mf = rng.pct(50);
            ip.frag_off = if rng.pct(25) {
                1
            } else {
                rng.range(2, 180) as u16
            };
            let n = rng.range(1, 6) as usize * 8;
            l4 = rng.bytes(n);
            what = format!("{what}, fragment at offset {} mf {}", ip.frag_off, ip.mf);
        }
        // An unfragmented datagram whose transport header is cut short.
        18..=21 => {
            let cut = rng.range(0, 7).min(l4.len() as u64) as usize;
            l4.truncate(cut);
            what = format!("{what}, transport cut to {cut} bytes");
        }
        _ => {}
    }
    let frame = frame::ethernet(MAC_FW_IN, MAC_A, &ip, &l4);
    let ip_len = (20 + ip.options.len() + l4.len()) as u64;
    let what = format!("{} -> {} {what}, ip_len {ip_len}", ip_str(src), ip_str(dst));
    Crafted {
        frame,
        ip_len,
        what,
    }
}

/// 150-300 frames: about half aimed at a random rule, the rest drawn from the pools.
pub(super) fn gen_frames(rng: &mut Rng, rs: &Ruleset) -> Vec<Crafted> {
    let n = rng.range(150, 300);
    (0..n)
        .map(|_| {
            let aim = if !rs.aims.is_empty() && rng.pct(50) {
                Some(rng.pick(&rs.aims).clone())
            } else {
                None
            };
            gen_frame(rng, rs, aim.as_ref())
        })
        .collect()
}
