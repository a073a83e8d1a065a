//! The protocol matches: `tcp`, `udp`, `icmp` and `multiport`.

use super::{opt, MatchExt, OptSpec, ParseCtx};
use crate::error::{CmdError, CmdResult};
use crate::grammar::values::{parse_port, parse_port_range, parse_port_range_rc, parse_uint};
use crate::names;
use classifier::model::tcp_flags;
use classifier::{IcmpMatch, Match, MultiportKind, MultiportMatch, PortRange, TcpMatch, UdpMatch};

const TCP_OPTS: &[OptSpec] = &[
    opt("source-port", true, true, 0),
    opt("sport", true, true, 0),
    opt("destination-port", true, true, 1),
    opt("dport", true, true, 1),
    opt("syn", false, true, 2),
    opt("tcp-flags", true, true, 2),
    opt("tcp-option", true, true, 3),
];

const UDP_OPTS: &[OptSpec] = &[
    opt("source-port", true, true, 0),
    opt("sport", true, true, 0),
    opt("destination-port", true, true, 1),
    opt("dport", true, true, 1),
];

pub static TCP: MatchExt = MatchExt {
    name: "tcp",
    opts: TCP_OPTS,
    init: || Match::Tcp(TcpMatch::default()),
    parse: parse_tcp,
    finish: |_, _, _| Ok(()),
};

pub static UDP: MatchExt = MatchExt {
    name: "udp",
    opts: UDP_OPTS,
    init: || Match::Udp(UdpMatch::default()),
    parse: parse_udp,
    finish: |_, _, _| Ok(()),
};

fn only_one(seen: u32, spec: &OptSpec, long: &str) -> CmdResult<()> {
    if seen & (1 << spec.id) != 0 {
        return Err(CmdError::param(format!("Only one `--{long}' allowed")));
    }
    Ok(())
}

fn parse_tcp_flags(s: &str) -> CmdResult<u8> {
    let mut v = 0u8;
    for name in s.split(',') {
        v |= match name.to_ascii_uppercase().as_str() {
            "ALL" => tcp_flags::ALL,
            "NONE" => tcp_flags::NONE,
            n => tcp_flags::NAMES
                .iter()
                .find(|(f, _)| *f == n)
                .map(|(_, b)| *b)
                .ok_or_else(|| CmdError::param(format!("Unknown TCP flag `{name}'")))?,
        };
    }
    Ok(v)
}

fn parse_tcp(
    m: &mut Match,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    inv: bool,
    _: &ParseCtx,
) -> CmdResult<()> {
    let Match::Tcp(t) = m else {
        unreachable!("tcp parser on a tcp match")
    };
    match spec.id {
        0 => {
            only_one(*seen, spec, "source-port")?;
            t.sport = parse_port_range(arg, Some("tcp"))?;
            t.inv_sport = inv;
        }
        1 => {
            only_one(*seen, spec, "destination-port")?;
            t.dport = parse_port_range(arg, Some("tcp"))?;
            t.inv_dport = inv;
        }
        2 => {
            if *seen & (1 << 2) != 0 {
                return Err(CmdError::param(
                    "Only one of `--syn' or `--tcp-flags'  allowed",
                ));
            }
            if spec.name == "syn" {
                t.flags_mask = tcp_flags::FIN | tcp_flags::SYN | tcp_flags::RST | tcp_flags::ACK;
                t.flags_cmp = tcp_flags::SYN;
            } else {
                // --tcp-flags takes two arguments: the mask (given) and the comparison (next).
                let (mask, cmp) = arg
                    .split_once('\u{0}')
                    .ok_or_else(|| CmdError::param("--tcp-flags requires two args."))?;
                t.flags_mask = parse_tcp_flags(mask)?;
                t.flags_cmp = parse_tcp_flags(cmp)?;
            }
            t.inv_flags = inv;
        }
        _ => {
            only_one(*seen, spec, "tcp-option")?;
            t.option = parse_uint(arg, 1, 255)
                .map(|v| v as u8)
                .ok_or_else(|| CmdError::param(format!("Bad TCP option `{arg}'")))?;
            t.inv_option = inv;
        }
    }
    Ok(())
}

fn parse_udp(
    m: &mut Match,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    inv: bool,
    _: &ParseCtx,
) -> CmdResult<()> {
    let Match::Udp(u) = m else {
        unreachable!("udp parser on a udp match")
    };
    if spec.id == 0 {
        only_one(*seen, spec, "source-port")?;
        u.sport = parse_port_range_rc(arg)?;
        u.inv_sport = inv;
    } else {
        only_one(*seen, spec, "destination-port")?;
        u.dport = parse_port_range_rc(arg)?;
        u.inv_dport = inv;
    }
    Ok(())
}

/// The icmp type names iptables knows: (name, type, code_min, code_max).
pub const ICMP_CODES: &[(&str, u8, u8, u8)] = &[
    ("any", 0xff, 0, 0xff),
    ("echo-reply", 0, 0, 0xff),
    ("destination-unreachable", 3, 0, 0xff),
    ("network-unreachable", 3, 0, 0),
    ("host-unreachable", 3, 1, 1),
    ("protocol-unreachable", 3, 2, 2),
    ("port-unreachable", 3, 3, 3),
    ("fragmentation-needed", 3, 4, 4),
    ("source-route-failed", 3, 5, 5),
    ("network-unknown", 3, 6, 6),
    ("host-unknown", 3, 7, 7),
    ("network-prohibited", 3, 9, 9),
    ("host-prohibited", 3, 10, 10),
    ("TOS-network-unreachable", 3, 11, 11),
    ("TOS-host-unreachable", 3, 12, 12),
    ("communication-prohibited", 3, 13, 13),
    ("host-precedence-violation", 3, 14, 14),
    ("precedence-cutoff", 3, 15, 15),
    ("source-quench", 4, 0, 0xff),
    ("redirect", 5, 0, 0xff),
    ("network-redirect", 5, 0, 0),
    ("host-redirect", 5, 1, 1),
    ("TOS-network-redirect", 5, 2, 2),
    ("TOS-host-redirect", 5, 3, 3),
    ("echo-request", 8, 0, 0xff),
    ("router-advertisement", 9, 0, 0xff),
    ("router-solicitation", 10, 0, 0xff),
    ("time-exceeded", 11, 0, 0xff),
    // An alias (printers take the first name of a type).
    ("ttl-exceeded", 11, 0, 0xff),
    ("ttl-zero-during-transit", 11, 0, 0),
    ("ttl-zero-during-reassembly", 11, 1, 1),
    ("parameter-problem", 12, 0, 0xff),
    ("ip-header-bad", 12, 0, 0),
    ("required-option-missing", 12, 1, 1),
    ("timestamp-request", 13, 0, 0xff),
    ("timestamp-reply", 14, 0, 0xff),
    ("address-mask-request", 17, 0, 0xff),
    ("address-mask-reply", 18, 0, 0xff),
];

const ICMP_OPTS: &[OptSpec] = &[opt("icmp-type", true, true, 0)];

pub static ICMP: MatchExt = MatchExt {
    name: "icmp",
    opts: ICMP_OPTS,
    init: || {
        Match::Icmp(IcmpMatch {
            icmp_type: IcmpMatch::ANY_TYPE,
            code_min: 0,
            code_max: 0xff,
            invert: false,
        })
    },
    parse: parse_icmp,
    finish: |_, seen, _| {
        if seen == 0 {
            Err(super::must_specify("icmp", "icmp-type"))
        } else {
            Ok(())
        }
    },
};

fn parse_icmp(
    m: &mut Match,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    inv: bool,
    _: &ParseCtx,
) -> CmdResult<()> {
    let Match::Icmp(i) = m else {
        unreachable!("icmp parser on an icmp match")
    };
    super::once("icmp", *seen, spec)?;
    let mut found: Option<usize> = None;
    for (idx, (name, ..)) in ICMP_CODES.iter().enumerate() {
        if name.len() >= arg.len() && name[..arg.len()].eq_ignore_ascii_case(arg) && !arg.is_empty()
        {
            if let Some(prev) = found {
                return Err(CmdError::param(format!(
                    "Ambiguous ICMP type `{arg}': `{}' or `{name}'?",
                    ICMP_CODES[prev].0
                )));
            }
            found = Some(idx);
        }
    }
    if let Some(idx) = found {
        let (_, t, lo, hi) = ICMP_CODES[idx];
        (i.icmp_type, i.code_min, i.code_max) = (t, lo, hi);
    } else if !arg.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(CmdError::param(format!("Unknown ICMP type `{arg}'")));
    } else {
        let (t, c) = match arg.split_once('/') {
            Some((t, c)) => (t, Some(c)),
            None => (arg, None),
        };
        i.icmp_type = parse_uint(t, 0, 255)
            .ok_or_else(|| CmdError::param(format!("Invalid ICMP type `{t}'\n")))?
            as u8;
        match c {
            Some(c) => {
                let code = parse_uint(c, 0, 255)
                    .ok_or_else(|| CmdError::param(format!("Invalid ICMP code `{c}'\n")))?
                    as u8;
                (i.code_min, i.code_max) = (code, code);
            }
            None => (i.code_min, i.code_max) = (0, 0xff),
        }
    }
    i.invert = inv;
    Ok(())
}

const MULTIPORT_OPTS: &[OptSpec] = &[
    opt("source-ports", true, true, 0),
    opt("sports", true, true, 0),
    opt("destination-ports", true, true, 1),
    opt("dports", true, true, 1),
    opt("ports", true, true, 2),
];

pub static MULTIPORT: MatchExt = MatchExt {
    name: "multiport",
    opts: MULTIPORT_OPTS,
    init: || {
        Match::Multiport(MultiportMatch {
            kind: MultiportKind::Either,
            ports: Vec::new(),
            invert: false,
        })
    },
    parse: parse_multiport,
    finish: finish_multiport,
};

fn parse_multiport(
    m: &mut Match,
    _seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    inv: bool,
    ctx: &ParseCtx,
) -> CmdResult<()> {
    let Match::Multiport(mp) = m else {
        unreachable!("multiport parser on a multiport match")
    };
    let proto = check_multiport_proto(ctx)?;
    mp.ports.clear();
    mp.kind = match spec.id {
        0 => MultiportKind::Source,
        1 => MultiportKind::Destination,
        _ => MultiportKind::Either,
    };
    let mut slots = 0;
    for part in arg.split(',') {
        let range = match part.split_once(':') {
            Some((a, b)) => {
                let lo = parse_port(a, Some(proto))?;
                let hi = parse_port(b, Some(proto))?;
                // `parse_multi_ports_v1`: a range must grow (`80:80` is refused too).
                if lo >= hi {
                    return Err(CmdError::param("invalid portrange specified"));
                }
                slots += 2;
                PortRange { lo, hi }
            }
            None => {
                slots += 1;
                PortRange::single(parse_port(part, Some(proto))?)
            }
        };
        if slots > MultiportMatch::MAX_SLOTS {
            return Err(CmdError::param("too many ports specified"));
        }
        mp.ports.push(range);
    }
    mp.invert = inv;
    Ok(())
}

/// libxt_multiport's `check_proto`.
fn check_multiport_proto(ctx: &ParseCtx) -> CmdResult<&'static str> {
    let only = || CmdError::param("multiport only works with TCP, UDP, UDPLITE, SCTP and DCCP");
    match &ctx.proto {
        Some(p) if p.invert => Err(only()),
        Some(p) if matches!(p.value, 6 | 17 | 136 | 132 | 33) => {
            Ok(names::protocol_name(p.value).unwrap_or("tcp"))
        }
        Some(p) if p.value != 0 => Err(only()),
        _ => Err(CmdError::param(
            "multiport needs `-p tcp', `-p udp', `-p udplite', `-p sctp' or `-p dccp'",
        )),
    }
}

fn finish_multiport(_: &mut Match, seen: u32, _: &ParseCtx) -> CmdResult<()> {
    if seen == 0 {
        return Err(CmdError::param("multiport expection an option"));
    }
    super::exclusive("multiport", MULTIPORT_OPTS, seen, &[0, 1, 2])
}

fn save_ports(out: &mut String, name: &str, r: PortRange, inv: bool) {
    if r.is_any() {
        return;
    }
    if inv {
        out.push_str(" !");
    }
    if r.lo != r.hi {
        out.push_str(&format!(" --{name} {}:{}", r.lo, r.hi));
    } else {
        out.push_str(&format!(" --{name} {}", r.lo));
    }
}

fn flag_names(flags: u8) -> String {
    if flags == 0 {
        return "NONE".into();
    }
    tcp_flags::NAMES
        .iter()
        .filter(|(_, b)| flags & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

pub fn save(m: &Match, rule_proto: u8, out: &mut String) {
    match m {
        Match::Tcp(t) => {
            save_ports(out, "sport", t.sport, t.inv_sport);
            save_ports(out, "dport", t.dport, t.inv_dport);
            if t.option != 0 || t.inv_option {
                out.push_str(if t.inv_option {
                    " ! --tcp-option "
                } else {
                    " --tcp-option "
                });
                out.push_str(&t.option.to_string());
            }
            if t.flags_mask != 0 || t.inv_flags {
                out.push_str(if t.inv_flags {
                    " ! --tcp-flags "
                } else {
                    " --tcp-flags "
                });
                out.push_str(&format!(
                    "{} {}",
                    flag_names(t.flags_mask),
                    flag_names(t.flags_cmp)
                ));
            }
        }
        Match::Udp(u) => {
            save_ports(out, "sport", u.sport, u.inv_sport);
            save_ports(out, "dport", u.dport, u.inv_dport);
        }
        Match::Icmp(i) => {
            if i.invert {
                out.push_str(" !");
            }
            if i.icmp_type == IcmpMatch::ANY_TYPE {
                out.push_str(" --icmp-type any");
            } else {
                out.push_str(&format!(" --icmp-type {}", i.icmp_type));
                if i.code_min != 0 || i.code_max != 0xff {
                    out.push_str(&format!("/{}", i.code_min));
                }
            }
        }
        Match::Multiport(mp) => {
            let _ = rule_proto;
            if mp.invert {
                out.push_str(" !");
            }
            out.push_str(match mp.kind {
                MultiportKind::Source => " --sports ",
                MultiportKind::Destination => " --dports ",
                MultiportKind::Either => " --ports ",
            });
            let list: Vec<String> = mp
                .ports
                .iter()
                .map(|r| {
                    if r.lo == r.hi {
                        r.lo.to_string()
                    } else {
                        format!("{}:{}", r.lo, r.hi)
                    }
                })
                .collect();
            out.push_str(&list.join(","));
        }
        _ => {}
    }
}

fn port_text(port: u16, proto: &str, numeric: bool) -> String {
    if !numeric {
        if let Some(name) = names::service_name(port, proto) {
            return name.to_string();
        }
    }
    port.to_string()
}

fn list_ports(out: &mut String, name: &str, r: PortRange, inv: bool, proto: &str, numeric: bool) {
    if r.is_any() && !inv {
        return;
    }
    let i = if inv { "!" } else { "" };
    if r.lo == r.hi {
        out.push_str(&format!(" {name}:{i}{}", port_text(r.lo, proto, numeric)));
    } else {
        out.push_str(&format!(
            " {name}s:{i}{}:{}",
            port_text(r.lo, proto, numeric),
            port_text(r.hi, proto, numeric)
        ));
    }
}

pub fn list(m: &Match, rule_proto: u8, numeric: bool, out: &mut String) {
    match m {
        Match::Tcp(t) => {
            out.push_str(" tcp");
            list_ports(out, "spt", t.sport, t.inv_sport, "tcp", numeric);
            list_ports(out, "dpt", t.dport, t.inv_dport, "tcp", numeric);
            if t.option != 0 || t.inv_option {
                out.push_str(&format!(
                    " option={}{}",
                    if t.inv_option { "!" } else { "" },
                    t.option
                ));
            }
            if t.flags_mask != 0 || t.inv_flags {
                out.push_str(" flags:");
                if t.inv_flags {
                    out.push('!');
                }
                if numeric {
                    out.push_str(&format!("0x{:02X}/0x{:02X}", t.flags_mask, t.flags_cmp));
                } else {
                    out.push_str(&format!(
                        "{}/{}",
                        flag_names(t.flags_mask),
                        flag_names(t.flags_cmp)
                    ));
                }
            }
        }
        Match::Udp(u) => {
            out.push_str(" udp");
            list_ports(out, "spt", u.sport, u.inv_sport, "udp", numeric);
            list_ports(out, "dpt", u.dport, u.inv_dport, "udp", numeric);
        }
        Match::Icmp(i) => {
            out.push_str(" icmp");
            if !numeric {
                if let Some((name, ..)) = ICMP_CODES.iter().find(|(_, t, lo, hi)| {
                    *t == i.icmp_type && *lo == i.code_min && *hi == i.code_max
                }) {
                    out.push_str(&format!(" {}{name}", if i.invert { "!" } else { "" }));
                    return;
                }
            }
            if i.invert {
                out.push_str(" !");
            }
            out.push_str(&format!("type {}", i.icmp_type));
            if i.code_min == i.code_max {
                out.push_str(&format!(" code {}", i.code_min));
            } else if i.code_min != 0 || i.code_max != 0xff {
                out.push_str(&format!(" codes {}-{}", i.code_min, i.code_max));
            }
        }
        Match::Multiport(mp) => {
            let proto = names::protocol_name(rule_proto).unwrap_or("tcp");
            out.push_str(match mp.kind {
                MultiportKind::Source => " multiport sports ",
                MultiportKind::Destination => " multiport dports ",
                MultiportKind::Either => " multiport ports ",
            });
            if mp.invert {
                out.push_str(" !");
            }
            let list: Vec<String> = mp
                .ports
                .iter()
                .map(|r| {
                    if r.lo == r.hi {
                        port_text(r.lo, proto, numeric)
                    } else {
                        format!(
                            "{}:{}",
                            port_text(r.lo, proto, numeric),
                            port_text(r.hi, proto, numeric)
                        )
                    }
                })
                .collect();
            out.push_str(&list.join(","));
        }
        _ => {}
    }
}
