//! The smaller matches: `mac`, `limit`, `owner`, `mark`, `comment`, `iprange`.

use super::{bad_value, must_specify, once, opt, save_string, MatchExt, OptSpec, ParseCtx};
use crate::error::{CmdError, CmdResult};
use crate::grammar::values::{parse_ipv4, parse_mac, parse_mark_mask, parse_uint};
use classifier::{Inv, IprangeMatch, LimitMatch, MacMatch, MarkMatch, Match, OwnerMatch};

const MAC_OPTS: &[OptSpec] = &[opt("mac-source", true, true, 0)];

pub static MAC: MatchExt = MatchExt {
    name: "mac",
    opts: MAC_OPTS,
    init: || {
        Match::Mac(MacMatch {
            addr: [0; 6],
            invert: false,
        })
    },
    parse: |m, seen, spec, arg, inv, _| {
        let Match::Mac(mm) = m else {
            unreachable!("mac parser on a mac match")
        };
        once("mac", *seen, spec)?;
        mm.addr =
            parse_mac(arg).ok_or_else(|| CmdError::param("Invalid MAC address specified."))?;
        mm.invert = inv;
        Ok(())
    },
    finish: |_, seen, _| {
        if seen == 0 {
            Err(must_specify("mac", "mac-source"))
        } else {
            Ok(())
        }
    },
};

const LIMIT_OPTS: &[OptSpec] = &[
    opt("limit", true, false, 0),
    opt("limit-burst", true, false, 1),
];

pub static LIMIT: MatchExt = MatchExt {
    name: "limit",
    opts: LIMIT_OPTS,
    init: || {
        Match::Limit(LimitMatch {
            avg: LimitMatch::DEFAULT_AVG,
            burst: LimitMatch::DEFAULT_BURST,
        })
    },
    parse: parse_limit,
    finish: |_, _, _| Ok(()),
};

/// `parse_rate`: `N[/second|minute|hour|day]` (unit prefixes accepted) → `avg`.
pub fn parse_rate(s: &str) -> CmdResult<u32> {
    let bad = || CmdError::param(format!("bad rate \"{s}\"'"));
    let (num, mult): (&str, u64) = match s.split_once('/') {
        None => (s, 1),
        Some((n, unit)) => {
            let u = unit.to_ascii_lowercase();
            let is = |full: &str| !u.is_empty() && full.starts_with(u.as_str());
            let mult = if is("second") {
                1
            } else if is("minute") {
                60
            } else if is("hour") {
                3600
            } else if is("day") {
                86400
            } else {
                return Err(bad());
            };
            (n, mult)
        }
    };
    // atoi: leading digits.
    let digits: String = num.chars().take_while(|c| c.is_ascii_digit()).collect();
    let r: u64 = digits.parse().map_err(|_| bad())?;
    if r == 0 {
        return Err(bad());
    }
    let avg = u64::from(LimitMatch::SCALE) * mult / r;
    if avg == 0 {
        return Err(CmdError::param(format!("Rate too fast \"{s}\"\n")));
    }
    u32::try_from(avg).map_err(|_| bad())
}

fn parse_limit(
    m: &mut Match,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    _: bool,
    _: &ParseCtx,
) -> CmdResult<()> {
    let Match::Limit(l) = m else {
        unreachable!("limit parser on a limit match")
    };
    once("limit", *seen, spec)?;
    if spec.id == 0 {
        l.avg = parse_rate(arg)?;
    } else {
        l.burst = parse_uint(arg, 0, 10000).ok_or_else(|| bad_value("limit", spec))? as u32;
    }
    Ok(())
}

/// `print_rate`: the largest unit that represents `avg` without losing much.
pub fn rate_text(avg: u32) -> String {
    let scale = u64::from(LimitMatch::SCALE);
    let rates = [
        ("day", scale * 86400),
        ("hour", scale * 3600),
        ("min", scale * 60),
        ("sec", scale),
    ];
    if avg == 0 {
        return "inf".into();
    }
    let period = u64::from(avg);
    let mut i = 1;
    while i < rates.len() {
        let mult = rates[i].1;
        if period > mult || mult / period < mult % period {
            break;
        }
        i += 1;
    }
    format!("{}/{}", rates[i - 1].1 / period, rates[i - 1].0)
}

const OWNER_OPTS: &[OptSpec] = &[
    opt("uid-owner", true, true, 0),
    opt("gid-owner", true, true, 1),
    opt("socket-exists", false, true, 2),
    opt("suppl-groups", false, false, 3),
];

pub static OWNER: MatchExt = MatchExt {
    name: "owner",
    opts: OWNER_OPTS,
    init: || Match::Owner(OwnerMatch::default()),
    parse: parse_owner,
    finish: |_, seen, _| {
        if seen == 0 {
            Err(CmdError::param(
                "owner: At least one of --uid-owner, --gid-owner or --socket-exists is required",
            ))
        } else {
            Ok(())
        }
    },
};

/// Looks a name up in a colon-separated database (`/etc/passwd`, `/etc/group`).
fn db_lookup(path: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[0] == name)
            .then(|| f[2].parse().ok())
            .flatten()
    })
}

/// The name of an id in `/etc/passwd` or `/etc/group`.
pub fn db_name(path: &str, id: u32) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 2 && f[2].parse::<u32>().ok() == Some(id)).then(|| f[0].to_string())
    })
}

fn parse_id_range(arg: &str, db: &str, what: &str) -> CmdResult<(u32, u32)> {
    if let Some(id) = db_lookup(db, arg) {
        return Ok((id, id));
    }
    let max = u64::from(u32::MAX) - 1;
    let bad = || CmdError::param(format!("owner: Bad {what} \"{arg}\""));
    match arg.split_once('-') {
        Some((a, b)) => {
            let lo = parse_uint(a, 0, max).ok_or_else(bad)? as u32;
            let hi = parse_uint(b, 0, max).ok_or_else(bad)? as u32;
            Ok((lo, hi))
        }
        None => {
            let v = parse_uint(arg, 0, max).ok_or_else(bad)? as u32;
            Ok((v, v))
        }
    }
}

fn parse_owner(
    m: &mut Match,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    inv: bool,
    _: &ParseCtx,
) -> CmdResult<()> {
    let Match::Owner(o) = m else {
        unreachable!("owner parser on an owner match")
    };
    once("owner", *seen, spec)?;
    match spec.id {
        0 => o.uid = Some(Inv::new(parse_id_range(arg, "/etc/passwd", "user")?, inv)),
        1 => o.gid = Some(Inv::new(parse_id_range(arg, "/etc/group", "group")?, inv)),
        2 => o.socket_exists = Some(inv),
        _ => {
            if o.gid.is_none() {
                return Err(CmdError::param(
                    "owner: --suppl-groups only works together with --gid-owner",
                ));
            }
            o.suppl_groups = true;
        }
    }
    Ok(())
}

const MARK_OPTS: &[OptSpec] = &[opt("mark", true, true, 0)];

pub static MARK: MatchExt = MatchExt {
    name: "mark",
    opts: MARK_OPTS,
    init: || {
        Match::Mark(MarkMatch {
            value: 0,
            mask: u32::MAX,
            invert: false,
        })
    },
    parse: |m, seen, spec, arg, inv, _| {
        let Match::Mark(mm) = m else {
            unreachable!("mark parser on a mark match")
        };
        once("mark", *seen, spec)?;
        let (v, mask) = parse_mark_mask(arg).ok_or_else(|| bad_value("mark", spec))?;
        (mm.value, mm.mask, mm.invert) = (v, mask.unwrap_or(u32::MAX), inv);
        Ok(())
    },
    finish: |_, seen, _| {
        if seen == 0 {
            Err(must_specify("mark", "mark"))
        } else {
            Ok(())
        }
    },
};

const COMMENT_OPTS: &[OptSpec] = &[opt("comment", true, false, 0)];

/// `XT_MAX_COMMENT_LEN` - 1.
const MAX_COMMENT: usize = 255;

pub static COMMENT: MatchExt = MatchExt {
    name: "comment",
    opts: COMMENT_OPTS,
    init: || Match::Comment(String::new()),
    parse: |m, seen, spec, arg, _, _| {
        let Match::Comment(c) = m else {
            unreachable!("comment parser on a comment match")
        };
        once("comment", *seen, spec)?;
        // The kernel structure holds 255 bytes: iptables silently cuts longer comments.
        *c = truncate(arg, MAX_COMMENT);
        Ok(())
    },
    finish: |_, seen, _| {
        if seen == 0 {
            Err(must_specify("comment", "comment"))
        } else {
            Ok(())
        }
    },
};

const IPRANGE_OPTS: &[OptSpec] = &[
    opt("src-range", true, true, 0),
    opt("dst-range", true, true, 1),
];

pub static IPRANGE: MatchExt = MatchExt {
    name: "iprange",
    opts: IPRANGE_OPTS,
    init: || Match::Iprange(IprangeMatch::default()),
    parse: |m, seen, spec, arg, inv, _| {
        let Match::Iprange(r) = m else {
            unreachable!("iprange parser on an iprange match")
        };
        once("iprange", *seen, spec)?;
        let bad = || CmdError::param(format!("iprange: bad IP address \"{arg}\""));
        let (a, b) = match arg.split_once('-') {
            Some((a, b)) => (
                parse_ipv4(a).ok_or_else(bad)?,
                parse_ipv4(b).ok_or_else(bad)?,
            ),
            None => {
                let a = parse_ipv4(arg).ok_or_else(bad)?;
                (a, a)
            }
        };
        let v = Some(Inv::new((a, b), inv));
        if spec.id == 0 {
            r.src = v;
        } else {
            r.dst = v;
        }
        Ok(())
    },
    finish: |_, seen, _| {
        if seen == 0 {
            Err(CmdError::param(
                "iprange match: You must specify `--src-range' or `--dst-range'",
            ))
        } else {
            Ok(())
        }
    },
};

fn mark_text(value: u32, mask: u32) -> String {
    if mask != u32::MAX {
        format!("0x{value:x}/0x{mask:x}")
    } else {
        format!("0x{value:x}")
    }
}

fn mac_text(a: &[u8; 6]) -> String {
    a.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn id_range(r: (u32, u32)) -> String {
    if r.0 == r.1 {
        r.0.to_string()
    } else {
        format!("{}-{}", r.0, r.1)
    }
}

pub fn save(m: &Match, out: &mut String) {
    let inv = |out: &mut String, i: bool| {
        if i {
            out.push_str(" !");
        }
    };
    match m {
        Match::Mac(mm) => {
            inv(out, mm.invert);
            out.push_str(&format!(" --mac-source {}", mac_text(&mm.addr)));
        }
        Match::Limit(l) => {
            out.push_str(&format!(" --limit {}", rate_text(l.avg)));
            if l.burst != LimitMatch::DEFAULT_BURST {
                out.push_str(&format!(" --limit-burst {}", l.burst));
            }
        }
        Match::Owner(o) => {
            if let Some(i) = o.socket_exists {
                inv(out, i);
                out.push_str(" --socket-exists");
            }
            if let Some(u) = &o.uid {
                inv(out, u.invert);
                out.push_str(&format!(" --uid-owner {}", id_range(u.value)));
            }
            if let Some(g) = &o.gid {
                inv(out, g.invert);
                out.push_str(&format!(" --gid-owner {}", id_range(g.value)));
            }
            if o.suppl_groups {
                out.push_str(" --suppl-groups");
            }
        }
        Match::Mark(mm) => {
            inv(out, mm.invert);
            out.push_str(&format!(" --mark {}", mark_text(mm.value, mm.mask)));
        }
        Match::Comment(c) => {
            out.push_str(" --comment");
            save_string(out, c);
        }
        Match::Iprange(r) => {
            for (name, v) in [("src", &r.src), ("dst", &r.dst)] {
                if let Some(v) = v {
                    inv(out, v.invert);
                    out.push_str(&format!(" --{name}-range {}-{}", v.value.0, v.value.1));
                }
            }
        }
        _ => {}
    }
}

pub fn list(m: &Match, numeric: bool, out: &mut String) {
    match m {
        Match::Mac(mm) => {
            out.push_str(" MAC");
            if mm.invert {
                out.push_str(" !");
            }
            out.push_str(&format!(" {}", mac_text(&mm.addr)));
        }
        Match::Limit(l) => out.push_str(&format!(
            " limit: avg {} burst {}",
            rate_text(l.avg),
            l.burst
        )),
        Match::Owner(o) => {
            if let Some(i) = o.socket_exists {
                out.push_str(if i {
                    " ! owner socket exists"
                } else {
                    " owner socket exists"
                });
            }
            let ids = |out: &mut String, label: &str, v: &Inv<(u32, u32)>, db: &str| {
                out.push_str(if v.invert { " !" } else { "" });
                out.push_str(&format!(" {label}"));
                if v.value.0 != v.value.1 {
                    out.push_str(&format!(" {}-{}", v.value.0, v.value.1));
                } else if numeric {
                    out.push_str(&format!(" {}", v.value.0));
                } else {
                    let name = db_name(db, v.value.0).unwrap_or_else(|| v.value.0.to_string());
                    out.push_str(&format!(" {name}"));
                }
            };
            if let Some(u) = &o.uid {
                ids(out, "owner UID match", u, "/etc/passwd");
            }
            if let Some(g) = &o.gid {
                ids(out, "owner GID match", g, "/etc/group");
            }
            if o.suppl_groups {
                out.push_str(" incl. suppl. groups");
            }
        }
        Match::Mark(mm) => {
            out.push_str(" mark match");
            if mm.invert {
                out.push_str(" !");
            }
            out.push_str(&format!(" {}", mark_text(mm.value, mm.mask)));
        }
        Match::Comment(c) => out.push_str(&format!(" /* {c} */")),
        Match::Iprange(r) => {
            for (label, v) in [("source", &r.src), ("destination", &r.dst)] {
                if let Some(v) = v {
                    out.push_str(&format!(" {label} IP range"));
                    if v.invert {
                        out.push_str(" !");
                    }
                    out.push_str(&format!(" {}-{}", v.value.0, v.value.1));
                }
            }
        }
        _ => {}
    }
}

/// Cuts `s` to at most `max` bytes (on a character boundary), as iptables' fixed buffers do.
pub fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}
