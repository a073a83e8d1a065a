//! The NAT targets: `SNAT`, `DNAT`, `MASQUERADE`, `REDIRECT`.

use super::{opt, OptSpec, ParseCtx, TargetExt};
use crate::error::{CmdError, CmdResult};
use crate::grammar::values::{parse_ipv4, parse_uint, port_or_service};
use classifier::model::nat_flags as f;
use classifier::{NatRange, Target};

const SNAT_OPTS: &[OptSpec] = &[
    opt("to-source", true, false, 0),
    opt("random", false, false, 1),
    opt("random-fully", false, false, 2),
    opt("persistent", false, false, 3),
];
const DNAT_OPTS: &[OptSpec] = &[
    opt("to-destination", true, false, 0),
    opt("random", false, false, 1),
    opt("random-fully", false, false, 2),
    opt("persistent", false, false, 3),
];
const PORTS_OPTS: &[OptSpec] = &[
    opt("to-ports", true, false, 0),
    opt("random", false, false, 1),
    opt("random-fully", false, false, 2),
];
const REDIRECT_OPTS: &[OptSpec] = &[
    opt("to-ports", true, false, 0),
    opt("random", false, false, 1),
];

pub static SNAT: TargetExt = TargetExt {
    name: "SNAT",
    opts: SNAT_OPTS,
    init: || Target::Snat(NatRange::default()),
    parse: parse_nat,
    finish: finish_to,
};
pub static DNAT: TargetExt = TargetExt {
    name: "DNAT",
    opts: DNAT_OPTS,
    init: || Target::Dnat(NatRange::default()),
    parse: parse_nat,
    finish: finish_to,
};
pub static MASQUERADE: TargetExt = TargetExt {
    name: "MASQUERADE",
    opts: PORTS_OPTS,
    init: || Target::Masquerade(NatRange::default()),
    parse: parse_nat,
    finish: |_, _, _| Ok(()),
};
pub static REDIRECT: TargetExt = TargetExt {
    name: "REDIRECT",
    opts: REDIRECT_OPTS,
    init: || Target::Redirect(NatRange::default()),
    parse: parse_nat,
    finish: |_, _, _| Ok(()),
};

fn finish_to(t: &mut Target, seen: u32, _: &ParseCtx) -> CmdResult<()> {
    if seen & 1 == 0 {
        let (name, opt) = match t {
            Target::Snat(_) => ("SNAT", "to-source"),
            _ => ("DNAT", "to-destination"),
        };
        return Err(CmdError::param(format!(
            "{name}: option \"--{opt}\" must be specified\n"
        )));
    }
    Ok(())
}

fn ports_allowed(ctx: &ParseCtx) -> bool {
    matches!(&ctx.proto, Some(p) if !p.invert && matches!(p.value, 6 | 17 | 33 | 132 | 136))
}

/// `lo[-hi][/base]`: a single port may be a service name; a range is numeric.
fn parse_ports(s: &str, r: &mut NatRange, allow_base: bool) -> CmdResult<()> {
    let bad = || CmdError::param(format!("Port \"{s}\" not valid\n"));
    let (range, base) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    };
    let (lo, hi) = match port_or_service(range, None) {
        Some(p) => (p, p),
        None => {
            let (a, b) = range.split_once('-').ok_or_else(bad)?;
            let lo = parse_uint(a, 0, 65535).ok_or_else(bad)? as u16;
            let hi = parse_uint(b, 0, 65535).ok_or_else(bad)? as u16;
            if lo > hi {
                return Err(bad());
            }
            (lo, hi)
        }
    };
    r.flags |= f::PROTO_SPECIFIED;
    (r.min_port, r.max_port) = (lo, hi);
    if let Some(b) = base {
        if !allow_base {
            return Err(bad());
        }
        let base = port_or_service(b, None)
            .filter(|&p| p > 0)
            .ok_or_else(bad)?;
        r.flags |= f::PROTO_OFFSET;
        r.base_port = base;
    }
    Ok(())
}

fn parse_to(arg: &str, r: &mut NatRange, ctx: &ParseCtx) -> CmdResult<()> {
    let (addrs, ports) = match arg.split_once(':') {
        Some((a, p)) => (a, Some(p)),
        None => (arg, None),
    };
    if !addrs.is_empty() {
        let bad = || CmdError::param(format!("Bad IP address \"{addrs}\"\n"));
        let (a, b) = match addrs.split_once('-') {
            Some((a, b)) => (
                parse_ipv4(a).ok_or_else(bad)?,
                parse_ipv4(b).ok_or_else(bad)?,
            ),
            None => {
                let a = parse_ipv4(addrs).ok_or_else(bad)?;
                (a, a)
            }
        };
        r.flags |= f::MAP_IPS;
        (r.min_addr, r.max_addr) = (Some(a), Some(b));
    }
    if let Some(p) = ports {
        if !ports_allowed(ctx) {
            return Err(CmdError::param(
                "Need TCP, UDP, SCTP or DCCP with port specification",
            ));
        }
        parse_ports(p, r, true)?;
    }
    Ok(())
}

fn parse_nat(
    t: &mut Target,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    _: bool,
    ctx: &ParseCtx,
) -> CmdResult<()> {
    let name = t.name().to_string();
    let (Target::Snat(r) | Target::Dnat(r) | Target::Masquerade(r) | Target::Redirect(r)) = t
    else {
        unreachable!("NAT parser on a NAT target")
    };
    super::once(&name, *seen, spec)?;
    match spec.id {
        0 if matches!(name.as_str(), "SNAT" | "DNAT") => parse_to(arg, r, ctx)?,
        0 => {
            if !ports_allowed(ctx) {
                return Err(CmdError::param(
                    "Need TCP, UDP, SCTP or DCCP with port specification",
                ));
            }
            parse_ports(arg, r, false)?;
        }
        1 => r.flags |= f::PROTO_RANDOM,
        2 => r.flags |= f::PROTO_RANDOM_FULLY,
        _ => r.flags |= f::PERSISTENT,
    }
    Ok(())
}

fn ports_text(r: &NatRange) -> String {
    let mut s = r.min_port.to_string();
    if r.max_port != r.min_port {
        s.push_str(&format!("-{}", r.max_port));
    }
    if r.flags & f::PROTO_OFFSET != 0 {
        s.push_str(&format!("/{}", r.base_port));
    }
    s
}

fn range_text(r: &NatRange) -> String {
    let mut s = String::new();
    if r.flags & f::MAP_IPS != 0 {
        if let (Some(a), Some(b)) = (r.min_addr, r.max_addr) {
            s.push_str(&a.to_string());
            if a != b {
                s.push_str(&format!("-{b}"));
            }
        }
    }
    if r.flags & f::PROTO_SPECIFIED != 0 {
        s.push(':');
        s.push_str(&ports_text(r));
    }
    s
}

fn flags_text(r: &NatRange, save: bool) -> String {
    let mut s = String::new();
    for (bit, name) in [
        (f::PROTO_RANDOM, "random"),
        (f::PROTO_RANDOM_FULLY, "random-fully"),
        (f::PERSISTENT, "persistent"),
    ] {
        if r.flags & bit != 0 {
            s.push_str(if save { " --" } else { " " });
            s.push_str(name);
        }
    }
    s
}

pub fn save(t: &Target, out: &mut String) {
    match t {
        Target::Snat(r) | Target::Dnat(r) => {
            let opt = if matches!(t, Target::Snat(_)) {
                "to-source"
            } else {
                "to-destination"
            };
            out.push_str(&format!(" --{opt} {}", range_text(r)));
            out.push_str(&flags_text(r, true));
        }
        Target::Masquerade(r) | Target::Redirect(r) => {
            if r.flags & f::PROTO_SPECIFIED != 0 {
                out.push_str(&format!(" --to-ports {}", ports_text(r)));
            }
            out.push_str(&flags_text(r, true));
        }
        _ => {}
    }
}

pub fn list(t: &Target, out: &mut String) {
    match t {
        Target::Snat(r) | Target::Dnat(r) => {
            out.push_str(&format!(" to:{}", range_text(r)));
            out.push_str(&flags_text(r, false));
        }
        Target::Masquerade(r) => {
            if r.flags & f::PROTO_SPECIFIED != 0 {
                out.push_str(&format!(" masq ports: {}", ports_text(r)));
            }
            out.push_str(&flags_text(r, false));
        }
        Target::Redirect(r) => {
            if r.flags & f::PROTO_SPECIFIED != 0 {
                out.push_str(&format!(" redir ports {}", ports_text(r)));
            }
            out.push_str(&flags_text(r, false));
        }
        _ => {}
    }
}
