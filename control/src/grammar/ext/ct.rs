//! The connection-tracking matches: `state` and `conntrack`.

use super::{must_specify, once, opt, MatchExt, OptSpec, ParseCtx};
use crate::error::{CmdError, CmdResult};
use crate::grammar::values::{
    net_to_string, parse_net_unmasked, parse_port_range_rc, parse_protocol, parse_uint,
};
use classifier::model::{ct_state, ct_status};
use classifier::{ConntrackMatch, CtDir, Inv, Ipv4Net, Match, PortRange, StateMatch};

const STATE_OPTS: &[OptSpec] = &[opt("state", true, true, 0)];

pub static STATE: MatchExt = MatchExt {
    name: "state",
    opts: STATE_OPTS,
    init: || {
        Match::State(StateMatch {
            states: 0,
            invert: false,
        })
    },
    parse: parse_state,
    finish: |_, seen, _| {
        if seen == 0 {
            Err(must_specify("state", "state"))
        } else {
            Ok(())
        }
    },
};

/// A comma-separated list of names as `conntrack_ps_states` / `state_parse_states` read it: a
/// token names the first of `allowed` it is a case-insensitive prefix of (`strncasecmp` over
/// the token's length), an empty token is refused, and the message quotes the rest of the list
/// from the bad token on. `empty_last`: the message for an empty last token, when it has one
/// of its own (`--state`).
fn parse_states(
    arg: &str,
    allowed: &[(&str, u32)],
    what: &str,
    empty_last: Option<&str>,
) -> CmdResult<u32> {
    let bad = |rest: &str| CmdError::param(format!("Bad {what} \"{rest}\""));
    let one = |tok: &str| {
        allowed
            .iter()
            .find(|(n, _)| {
                tok.len() <= n.len()
                    && n.as_bytes()[..tok.len()].eq_ignore_ascii_case(tok.as_bytes())
            })
            .map(|(_, b)| *b)
    };
    let mut v = 0;
    let mut rest = arg;
    while let Some(i) = rest.find(',') {
        let tok = &rest[..i];
        if tok.is_empty() {
            return Err(bad(rest));
        }
        v |= one(tok).ok_or_else(|| bad(rest))?;
        rest = &rest[i + 1..];
    }
    if rest.is_empty() {
        return Err(empty_last.map_or_else(|| bad(rest), |m| CmdError::param(m.to_string())));
    }
    Ok(v | one(rest).ok_or_else(|| bad(rest))?)
}

/// `conntrack_ps_state`'s order (the prefix of a name picks the first that fits).
const CTSTATES: [(&str, u32); 7] = [
    ("INVALID", ct_state::INVALID),
    ("NEW", ct_state::NEW),
    ("ESTABLISHED", ct_state::ESTABLISHED),
    ("RELATED", ct_state::RELATED),
    ("UNTRACKED", ct_state::UNTRACKED),
    ("SNAT", ct_state::SNAT),
    ("DNAT", ct_state::DNAT),
];

/// `conntrack_ps_status`'s order; NONE adds no bit.
const CTSTATUS: [(&str, u32); 5] = [
    ("NONE", ct_status::NONE),
    ("EXPECTED", ct_status::EXPECTED),
    ("SEEN_REPLY", ct_status::SEEN_REPLY),
    ("ASSURED", ct_status::ASSURED),
    ("CONFIRMED", ct_status::CONFIRMED),
];

fn parse_state(
    m: &mut Match,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    inv: bool,
    _: &ParseCtx,
) -> CmdResult<()> {
    let Match::State(s) = m else {
        unreachable!("state parser on a state match")
    };
    once("state", *seen, spec)?;
    s.states = parse_states(
        arg,
        &CTSTATES[..5],
        "state",
        Some("\"--state\" requires a list of states with no spaces, e.g. ESTABLISHED,RELATED"),
    )?;
    s.invert = inv;
    Ok(())
}

const CONNTRACK_OPTS: &[OptSpec] = &[
    opt("ctstate", true, true, 0),
    opt("ctproto", true, true, 1),
    opt("ctorigsrc", true, true, 2),
    opt("ctorigdst", true, true, 3),
    opt("ctreplsrc", true, true, 4),
    opt("ctrepldst", true, true, 5),
    opt("ctorigsrcport", true, true, 6),
    opt("ctorigdstport", true, true, 7),
    opt("ctreplsrcport", true, true, 8),
    opt("ctrepldstport", true, true, 9),
    opt("ctstatus", true, true, 10),
    opt("ctexpire", true, true, 11),
    opt("ctdir", true, false, 12),
];

pub static CONNTRACK: MatchExt = MatchExt {
    name: "conntrack",
    opts: CONNTRACK_OPTS,
    init: || Match::Conntrack(ConntrackMatch::default()),
    parse: parse_conntrack,
    finish: |_, seen, _| {
        if seen == 0 {
            Err(CmdError::param(
                "conntrack: At least one option is required",
            ))
        } else {
            Ok(())
        }
    },
};

fn parse_conntrack(
    m: &mut Match,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    inv: bool,
    _: &ParseCtx,
) -> CmdResult<()> {
    let Match::Conntrack(c) = m else {
        unreachable!("conntrack parser on a conntrack match")
    };
    once("conntrack", *seen, spec)?;
    let net = |a: &str| -> CmdResult<Option<Inv<Ipv4Net>>> {
        Ok(Some(Inv::new(parse_net_unmasked(a)?, inv)))
    };
    let port = |a: &str| -> CmdResult<Option<Inv<PortRange>>> {
        let r = parse_port_range_rc(a)?;
        Ok(Some(Inv::new(r, inv)))
    };
    match spec.id {
        0 => {
            c.state = Some(Inv::new(
                parse_states(arg, &CTSTATES, "ctstate", None)?,
                inv,
            ))
        }
        1 => {
            let p = parse_protocol(arg)?;
            if p == 0 {
                return Err(CmdError::param(
                    "conntrack: rule would never match protocol",
                ));
            }
            c.proto = Some(Inv::new(p, inv));
        }
        2 => c.orig_src = net(arg)?,
        3 => c.orig_dst = net(arg)?,
        4 => c.repl_src = net(arg)?,
        5 => c.repl_dst = net(arg)?,
        6 => c.orig_src_port = port(arg)?,
        7 => c.orig_dst_port = port(arg)?,
        8 => c.repl_src_port = port(arg)?,
        9 => c.repl_dst_port = port(arg)?,
        10 => {
            let v = parse_states(arg, &CTSTATUS, "ctstatus", None)?;
            c.status = Some(Inv::new(v, inv));
        }
        11 => {
            let bad = || {
                CmdError::param(format!(
                    "conntrack: bad value for option \"--ctexpire\": \"{arg}\""
                ))
            };
            let max = u64::from(u32::MAX);
            let (lo, hi) = match arg.split_once(':') {
                Some((a, b)) => (
                    parse_uint(a, 0, max).ok_or_else(bad)?,
                    parse_uint(b, 0, max).ok_or_else(bad)?,
                ),
                None => {
                    let v = parse_uint(arg, 0, max).ok_or_else(bad)?;
                    (v, v)
                }
            };
            if lo > hi {
                return Err(bad());
            }
            c.expire = Some(Inv::new((lo as u32, hi as u32), inv));
        }
        _ => {
            c.dir = Some(match arg.to_ascii_uppercase().as_str() {
                "ORIGINAL" => CtDir::Original,
                "REPLY" => CtDir::Reply,
                _ => return Err(CmdError::param(format!("Unknown --ctdir value \"{arg}\""))),
            })
        }
    }
    Ok(())
}

fn state_names(bits: u32, table: &[(&str, u32)]) -> String {
    table
        .iter()
        .filter(|(_, b)| bits & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

fn status_names(bits: u32) -> String {
    if bits == 0 {
        "NONE".into()
    } else {
        state_names(bits, &ct_status::NAMES)
    }
}

fn addr(n: &Ipv4Net) -> String {
    if u32::from(n.mask) == u32::MAX {
        n.addr.to_string()
    } else {
        net_to_string(n)
    }
}

fn range(r: &PortRange) -> String {
    if r.lo == r.hi {
        r.lo.to_string()
    } else {
        format!("{}:{}", r.lo, r.hi)
    }
}

/// Prints conntrack's items with `pfx` before each name (`--ct` for save, `ct` for list).
fn dump(c: &ConntrackMatch, pfx: &str, out: &mut String) {
    let mut item = |inv: bool, name: &str, val: String| {
        if inv {
            out.push_str(" !");
        }
        out.push_str(&format!(" {pfx}{name} {val}"));
    };
    if let Some(s) = &c.state {
        item(s.invert, "state", state_names(s.value, &ct_state::NAMES));
    }
    if let Some(p) = &c.proto {
        item(p.invert, "proto", p.value.to_string());
    }
    for (name, v) in [
        ("origsrc", &c.orig_src),
        ("origdst", &c.orig_dst),
        ("replsrc", &c.repl_src),
        ("repldst", &c.repl_dst),
    ] {
        if let Some(n) = v {
            item(n.invert, name, addr(&n.value));
        }
    }
    for (name, v) in [
        ("origsrcport", &c.orig_src_port),
        ("origdstport", &c.orig_dst_port),
        ("replsrcport", &c.repl_src_port),
        ("repldstport", &c.repl_dst_port),
    ] {
        if let Some(r) = v {
            item(r.invert, name, range(&r.value));
        }
    }
    if let Some(s) = &c.status {
        item(s.invert, "status", status_names(s.value));
    }
    if let Some(e) = &c.expire {
        let (lo, hi) = e.value;
        item(
            e.invert,
            "expire",
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}:{hi}")
            },
        );
    }
    if let Some(d) = &c.dir {
        item(
            false,
            "dir",
            if *d == CtDir::Original {
                "ORIGINAL".into()
            } else {
                "REPLY".into()
            },
        );
    }
}

pub fn save(m: &Match, out: &mut String) {
    match m {
        Match::State(s) => {
            if s.invert {
                out.push_str(" !");
            }
            out.push_str(" --state ");
            out.push_str(&state_names(s.states, &ct_state::NAMES));
        }
        Match::Conntrack(c) => dump(c, "--ct", out),
        _ => {}
    }
}

pub fn list(m: &Match, _numeric: bool, out: &mut String) {
    match m {
        Match::State(s) => {
            out.push_str(if s.invert { " ! state " } else { " state " });
            out.push_str(&state_names(s.states, &ct_state::NAMES));
        }
        Match::Conntrack(c) => dump(c, "ct", out),
        _ => {}
    }
}
