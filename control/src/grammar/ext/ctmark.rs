//! The connection-tracking extensions beyond `state`/`conntrack`: the `connmark`, `helper` and
//! `connlimit` matches, the `CONNMARK` target (revision 2) and the raw table's `CT` (revision 2)
//! with its `NOTRACK` alias. Option tables, messages and printed forms follow iptables 1.8.9's
//! `libxt_connmark.c`, `libxt_CONNMARK.c`, `libxt_helper.c`, `libxt_connlimit.c` and
//! `libxt_CT.c` byte for byte.

use super::{bad_value, exclusive, must_specify, once, opt, save_string};
use super::{MatchExt, OptSpec, TargetExt};
use crate::error::{CmdError, CmdResult};
use crate::grammar::values::{parse_ipv4, parse_mark_mask, parse_uint};
use classifier::model::ct_flags;
use classifier::{
    ConnlimitMatch, ConnmarkMatch, ConnmarkMode, ConnmarkTarget, CtTarget, HelperMatch, Match,
    Target,
};

const CONNMARK_MT_OPTS: &[OptSpec] = &[opt("mark", true, true, 0)];

pub static CONNMARK_MATCH: MatchExt = MatchExt {
    name: "connmark",
    opts: CONNMARK_MT_OPTS,
    init: || {
        Match::Connmark(ConnmarkMatch {
            mark: 0,
            mask: 0,
            invert: false,
        })
    },
    parse: |m, seen, spec, arg, inv, _| {
        let Match::Connmark(c) = m else {
            unreachable!("connmark parser on a connmark match")
        };
        once("connmark", *seen, spec)?;
        let (mark, mask) = parse_mark_mask(arg).ok_or_else(|| bad_value("connmark", spec))?;
        (c.mark, c.mask, c.invert) = (mark, mask.unwrap_or(u32::MAX), inv);
        Ok(())
    },
    finish: |_, seen, _| {
        if seen == 0 {
            Err(must_specify("connmark", "mark"))
        } else {
            Ok(())
        }
    },
};

/// CONNMARK option ids (`O_*` of libxt_CONNMARK.c).
mod cm {
    pub const SET_MARK: u8 = 0;
    pub const SAVE_MARK: u8 = 1;
    pub const RESTORE_MARK: u8 = 2;
    pub const AND_MARK: u8 = 3;
    pub const OR_MARK: u8 = 4;
    pub const XOR_MARK: u8 = 5;
    pub const LEFT_SHIFT: u8 = 6;
    pub const RIGHT_SHIFT: u8 = 7;
    pub const SET_XMARK: u8 = 8;
    pub const CTMASK: u8 = 9;
    pub const NFMASK: u8 = 10;
    pub const MASK: u8 = 11;
    /// `F_OP_ANY`.
    pub const OPS: [u8; 7] = [
        SET_XMARK,
        SET_MARK,
        AND_MARK,
        OR_MARK,
        XOR_MARK,
        SAVE_MARK,
        RESTORE_MARK,
    ];
}

const CONNMARK_TG_OPTS: &[OptSpec] = &[
    opt("set-xmark", true, false, cm::SET_XMARK),
    opt("set-mark", true, false, cm::SET_MARK),
    opt("and-mark", true, false, cm::AND_MARK),
    opt("or-mark", true, false, cm::OR_MARK),
    opt("xor-mark", true, false, cm::XOR_MARK),
    opt("save-mark", false, false, cm::SAVE_MARK),
    opt("restore-mark", false, false, cm::RESTORE_MARK),
    opt("left-shift-mark", true, false, cm::LEFT_SHIFT),
    opt("right-shift-mark", true, false, cm::RIGHT_SHIFT),
    opt("ctmask", true, false, cm::CTMASK),
    opt("nfmask", true, false, cm::NFMASK),
    opt("mask", true, false, cm::MASK),
];

/// x6's message for an integer option out of its range.
fn out_of_range(ext: &str, spec: &OptSpec, max: u64) -> CmdError {
    CmdError::param(format!(
        "{ext}: bad value for option \"--{}\", or out of range (0-{max}).\n",
        spec.name
    ))
}

fn connmark_u32(spec: &OptSpec, arg: &str) -> CmdResult<u32> {
    let max = u64::from(u32::MAX);
    parse_uint(arg, 0, max)
        .map(|v| v as u32)
        .ok_or_else(|| out_of_range("CONNMARK", spec, max))
}

/// The x6 `.excl` mask of a CONNMARK option: any two operations; `--mask` with `--ctmask` or
/// `--nfmask`.
fn connmark_excl(id: u8) -> u32 {
    let ops = cm::OPS.iter().fold(0, |m, &o| m | 1 << o);
    match id {
        cm::CTMASK | cm::NFMASK => 1 << cm::MASK,
        cm::MASK => 1 << cm::CTMASK | 1 << cm::NFMASK,
        cm::LEFT_SHIFT | cm::RIGHT_SHIFT => 0,
        _ => ops,
    }
}

/// `xtables_options_fcheck`'s exclusion part: the first seen option in table order against the
/// lowest-numbered seen option it excludes.
fn connmark_fcheck(seen: u32) -> CmdResult<()> {
    for entry in CONNMARK_TG_OPTS.iter().filter(|o| seen & (1 << o.id) != 0) {
        let clash = (0..32u8)
            .filter(|&i| i != entry.id && connmark_excl(entry.id) & (1 << i) != 0)
            .find(|&i| seen & (1 << i) != 0);
        if let Some(other) = clash.and_then(|i| CONNMARK_TG_OPTS.iter().find(|o| o.id == i)) {
            return Err(CmdError::param(format!(
                "CONNMARK: option \"--{}\" cannot be used together with \"--{}\".\n",
                entry.name, other.name
            )));
        }
    }
    if cm::OPS.iter().any(|&o| seen & (1 << o) != 0) {
        Ok(())
    } else {
        Err(CmdError::param("CONNMARK target: No operation specified"))
    }
}

fn parse_connmark_target(
    t: &mut ConnmarkTarget,
    seen: u32,
    spec: &OptSpec,
    arg: &str,
) -> CmdResult<()> {
    once("CONNMARK", seen, spec)?;
    let markmask = || parse_mark_mask(arg).ok_or_else(|| bad_value("CONNMARK", spec));
    match spec.id {
        cm::SET_XMARK => {
            let (v, m) = markmask()?;
            (t.mode, t.ctmark, t.ctmask) = (ConnmarkMode::Set, v, m.unwrap_or(u32::MAX));
        }
        cm::SET_MARK => {
            let (v, m) = markmask()?;
            (t.mode, t.ctmark, t.ctmask) = (ConnmarkMode::Set, v, v | m.unwrap_or(u32::MAX));
        }
        cm::AND_MARK => {
            let v = connmark_u32(spec, arg)?;
            (t.mode, t.ctmark, t.ctmask) = (ConnmarkMode::Set, 0, !v);
        }
        cm::OR_MARK => {
            let v = connmark_u32(spec, arg)?;
            (t.mode, t.ctmark, t.ctmask) = (ConnmarkMode::Set, v, v);
        }
        cm::XOR_MARK => {
            let v = connmark_u32(spec, arg)?;
            (t.mode, t.ctmark, t.ctmask) = (ConnmarkMode::Set, v, 0);
        }
        cm::SAVE_MARK => t.mode = ConnmarkMode::Save,
        cm::RESTORE_MARK => t.mode = ConnmarkMode::Restore,
        cm::CTMASK => t.ctmask = connmark_u32(spec, arg)?,
        cm::NFMASK => t.nfmask = connmark_u32(spec, arg)?,
        cm::MASK => {
            let v = connmark_u32(spec, arg)?;
            (t.ctmask, t.nfmask) = (v, v);
        }
        _ => {
            let bits = parse_uint(arg, 0, 32).ok_or_else(|| out_of_range("CONNMARK", spec, 32))?;
            (t.shift_right, t.shift_bits) = (spec.id == cm::RIGHT_SHIFT, bits as u8);
        }
    }
    Ok(())
}

pub static CONNMARK_TARGET: TargetExt = TargetExt {
    name: "CONNMARK",
    opts: CONNMARK_TG_OPTS,
    init: || {
        Target::Connmark(ConnmarkTarget {
            mode: ConnmarkMode::Set,
            ctmark: 0,
            ctmask: u32::MAX,
            nfmask: u32::MAX,
            shift_right: false,
            shift_bits: 0,
        })
    },
    parse: |t, seen, spec, arg, _, _| {
        let Target::Connmark(c) = t else {
            unreachable!("CONNMARK parser on a CONNMARK target")
        };
        parse_connmark_target(c, *seen, spec, arg)
    },
    finish: |_, seen, _| connmark_fcheck(seen),
};

const HELPER_OPTS: &[OptSpec] = &[opt("helper", true, true, 0)];

/// `xt_helper_info.name` is 30 bytes: longer names are cut to 29.
const HELPER_MATCH_NAME_MAX: usize = 29;
/// `xt_ct_target_info_v1.helper` is 16 bytes.
const CT_HELPER_NAME_MAX: usize = 15;
/// `xt_ct_target_info_v1.timeout` is 32 bytes.
const CT_TIMEOUT_NAME_MAX: usize = 31;

pub static HELPER: MatchExt = MatchExt {
    name: "helper",
    opts: HELPER_OPTS,
    init: || {
        Match::Helper(HelperMatch {
            name: String::new(),
            invert: false,
        })
    },
    parse: |m, seen, spec, arg, inv, _| {
        let Match::Helper(h) = m else {
            unreachable!("helper parser on a helper match")
        };
        once("helper", *seen, spec)?;
        h.name = super::misc::truncate(arg, HELPER_MATCH_NAME_MAX);
        h.invert = inv;
        Ok(())
    },
    finish: |_, seen, _| {
        if seen == 0 {
            Err(must_specify("helper", "helper"))
        } else {
            Ok(())
        }
    },
};

const CONNLIMIT_OPTS: &[OptSpec] = &[
    opt("connlimit-upto", true, true, 0),
    opt("connlimit-above", true, true, 1),
    opt("connlimit-mask", true, false, 2),
    opt("connlimit-saddr", false, false, 3),
    opt("connlimit-daddr", false, false, 4),
];

/// `xtopt_parse_plenmask`: a prefix length 0..=32, or a dotted mask (a non-contiguous one, as
/// `xtables_ipmask_to_cidr` fails on it, leaves every bit set).
fn parse_plenmask(spec: &OptSpec, arg: &str) -> CmdResult<u32> {
    if let Some(len) = parse_uint(arg, 0, 32) {
        return Ok(if len == 0 { 0 } else { u32::MAX << (32 - len) });
    }
    let Some(m) = parse_ipv4(arg).map(u32::from) else {
        return Err(CmdError::param(format!(
            "connlimit: bad value for option \"--{}\", neither a valid network mask nor valid CIDR (0-32).\n",
            spec.name
        )));
    };
    let contiguous = m.leading_ones() + m.trailing_zeros() == 32;
    Ok(if contiguous { m } else { u32::MAX })
}

pub static CONNLIMIT: MatchExt = MatchExt {
    name: "connlimit",
    opts: CONNLIMIT_OPTS,
    init: || {
        Match::Connlimit(ConnlimitMatch {
            limit: 0,
            mask: u32::MAX,
            upto: false,
            daddr: false,
        })
    },
    parse: |m, seen, spec, arg, inv, _| {
        let Match::Connlimit(c) = m else {
            unreachable!("connlimit parser on a connlimit match")
        };
        once("connlimit", *seen, spec)?;
        match spec.id {
            0 | 1 => {
                let max = u64::from(u32::MAX);
                c.limit = parse_uint(arg, 0, max)
                    .ok_or_else(|| out_of_range("connlimit", spec, max))?
                    as u32;
                // --connlimit-upto sets INVERT, unless itself inverted; --connlimit-above the
                // other way round.
                c.upto = (spec.id == 0) != inv;
            }
            2 => c.mask = parse_plenmask(spec, arg)?,
            3 => c.daddr = false,
            _ => c.daddr = true,
        }
        Ok(())
    },
    finish: |_, seen, _| {
        exclusive("connlimit", CONNLIMIT_OPTS, seen, &[0, 1])?;
        exclusive("connlimit", CONNLIMIT_OPTS, seen, &[3, 4])?;
        if seen & 0b11 == 0 {
            Err(CmdError::param(
                "You must specify \"--connlimit-above\" or \"--connlimit-upto\".",
            ))
        } else {
            Ok(())
        }
    },
};

const CT_OPTS: &[OptSpec] = &[
    opt("notrack", false, false, 0),
    opt("helper", true, false, 1),
    opt("timeout", true, false, 2),
    opt("ctevents", true, false, 3),
    opt("expevents", true, false, 4),
    opt("zone-orig", true, false, 6),
    opt("zone-reply", true, false, 7),
    opt("zone", true, false, 5),
];

/// `ct_event_tbl` (name, `IPCT_*` bit) in print order.
const CT_EVENTS: [(&str, u32); 10] = [
    ("new", 0),
    ("related", 1),
    ("destroy", 2),
    ("reply", 3),
    ("assured", 4),
    ("protoinfo", 5),
    ("helper", 6),
    ("mark", 7),
    ("natseqinfo", 8),
    ("secmark", 9),
];
const EXP_EVENTS: [(&str, u32); 1] = [("new", 0)];

fn parse_events(table: &[(&str, u32)], arg: &str) -> CmdResult<u32> {
    let mut mask = 0;
    for word in arg.split(',') {
        let Some((_, bit)) = table.iter().find(|(n, _)| *n == word) else {
            return Err(CmdError::param(format!("Unknown event type \"{word}\"")));
        };
        mask |= 1 << bit;
    }
    Ok(mask)
}

fn parse_zone(t: &mut CtTarget, id: u8, arg: &str) -> CmdResult<()> {
    match id {
        6 => t.flags |= ct_flags::ZONE_DIR_ORIG,
        7 => t.flags |= ct_flags::ZONE_DIR_REPL,
        _ => {}
    }
    t.zone = 0;
    if arg.eq_ignore_ascii_case("mark") {
        t.flags |= ct_flags::ZONE_MARK;
        return Ok(());
    }
    t.zone = parse_uint(arg, 0, u64::from(u16::MAX))
        .ok_or_else(|| CmdError::param(format!("Cannot parse {arg} as a zone ID")))?
        as u16;
    Ok(())
}

pub static CT: TargetExt = TargetExt {
    name: "CT",
    opts: CT_OPTS,
    init: || Target::Ct(CtTarget::default()),
    parse: |t, seen, spec, arg, _, _| {
        let Target::Ct(c) = t else {
            unreachable!("CT parser on a CT target")
        };
        once("CT", *seen, spec)?;
        match spec.id {
            0 => c.flags |= ct_flags::NOTRACK,
            1 => c.helper = super::misc::truncate(arg, CT_HELPER_NAME_MAX),
            2 => c.timeout = super::misc::truncate(arg, CT_TIMEOUT_NAME_MAX),
            3 => c.ct_events = parse_events(&CT_EVENTS, arg)?,
            4 => c.exp_events = parse_events(&EXP_EVENTS, arg)?,
            id => parse_zone(c, id, arg)?,
        }
        Ok(())
    },
    finish: |_, _, _| Ok(()),
};

pub static NOTRACK: TargetExt = TargetExt {
    name: "NOTRACK",
    opts: &[],
    init: || {
        Target::Ct(CtTarget {
            flags: ct_flags::NOTRACK | ct_flags::NOTRACK_ALIAS,
            ..CtTarget::default()
        })
    },
    parse: |_, _, _, _, _, _| unreachable!("NOTRACK has no options"),
    finish: |_, _, _| Ok(()),
};

fn events_text(table: &[(&str, u32)], mask: u32) -> String {
    let names: Vec<&str> = table
        .iter()
        .filter(|(_, b)| mask & (1 << b) != 0)
        .map(|(n, _)| *n)
        .collect();
    names.join(",")
}

/// `ct_print_v1`/`ct_save_v1` (`pfx` is `--` for save, empty for list).
fn ct_text(c: &CtTarget, pfx: &str, out: &mut String) {
    if c.notrack() {
        out.push_str(&format!(" {pfx}notrack"));
    }
    if !c.helper.is_empty() {
        out.push_str(&format!(" {pfx}helper {}", c.helper));
    }
    if !c.timeout.is_empty() {
        out.push_str(&format!(" {pfx}timeout {}", c.timeout));
    }
    if c.ct_events != 0 {
        out.push_str(&format!(
            " {pfx}ctevents {}",
            events_text(&CT_EVENTS, c.ct_events)
        ));
    }
    if c.exp_events != 0 {
        out.push_str(&format!(
            " {pfx}expevents {}",
            events_text(&EXP_EVENTS, c.exp_events)
        ));
    }
    if c.flags & ct_flags::ZONE_MARK != 0 || c.zone != 0 {
        out.push_str(&format!(" {pfx}zone"));
        let dirs = c.flags & (ct_flags::ZONE_DIR_ORIG | ct_flags::ZONE_DIR_REPL);
        if dirs == ct_flags::ZONE_DIR_ORIG {
            out.push_str("-orig");
        } else if dirs == ct_flags::ZONE_DIR_REPL {
            out.push_str("-reply");
        }
        if c.flags & ct_flags::ZONE_MARK != 0 {
            out.push_str(" mark");
        } else {
            out.push_str(&format!(" {}", c.zone));
        }
    }
}

/// `connmark_tg_save_v2`.
fn connmark_save(c: &ConnmarkTarget, out: &mut String) {
    match c.mode {
        ConnmarkMode::Set => {
            out.push_str(&format!(" --set-xmark 0x{:x}/0x{:x}", c.ctmark, c.ctmask))
        }
        ConnmarkMode::Save => out.push_str(&format!(
            " --save-mark --nfmask 0x{:x} --ctmask 0x{:x}",
            c.nfmask, c.ctmask
        )),
        ConnmarkMode::Restore => out.push_str(&format!(
            " --restore-mark --nfmask 0x{:x} --ctmask 0x{:x}",
            c.nfmask, c.ctmask
        )),
    }
    if c.shift_bits != 0 {
        out.push_str(&format!(" --{} {}", shift_name(c), c.shift_bits));
    }
}

fn shift_name(c: &ConnmarkTarget) -> &'static str {
    if c.shift_right {
        "right-shift-mark"
    } else {
        "left-shift-mark"
    }
}

/// `connmark_tg_print_v2`.
fn connmark_list(c: &ConnmarkTarget, out: &mut String) {
    let full = u32::MAX;
    let text = match c.mode {
        ConnmarkMode::Set if c.ctmark == 0 => format!(" CONNMARK and 0x{:x}", !c.ctmask),
        ConnmarkMode::Set if c.ctmark == c.ctmask => format!(" CONNMARK or 0x{:x}", c.ctmark),
        ConnmarkMode::Set if c.ctmask == 0 => format!(" CONNMARK xor 0x{:x}", c.ctmark),
        ConnmarkMode::Set if c.ctmask == full => format!(" CONNMARK set 0x{:x}", c.ctmark),
        ConnmarkMode::Set => format!(" CONNMARK xset 0x{:x}/0x{:x}", c.ctmark, c.ctmask),
        ConnmarkMode::Save if c.nfmask == full && c.ctmask == full => " CONNMARK save".into(),
        ConnmarkMode::Save if c.nfmask == c.ctmask => {
            format!(" CONNMARK save mask 0x{:x}", c.nfmask)
        }
        ConnmarkMode::Save => format!(
            " CONNMARK save nfmask 0x{:x} ctmask ~0x{:x}",
            c.nfmask, c.ctmask
        ),
        ConnmarkMode::Restore if c.ctmask == full && c.nfmask == full => " CONNMARK restore".into(),
        ConnmarkMode::Restore if c.ctmask == c.nfmask => {
            format!(" CONNMARK restore mask 0x{:x}", c.ctmask)
        }
        ConnmarkMode::Restore => format!(
            " CONNMARK restore ctmask 0x{:x} nfmask ~0x{:x}",
            c.ctmask, c.nfmask
        ),
    };
    out.push_str(&text);
    if c.shift_bits != 0 {
        out.push_str(&format!(" {} {}", shift_name(c), c.shift_bits));
    }
}

/// `xtables_print_mark_mask`: `0xV`, or `0xV/0xM` when the mask is not all ones.
fn mark_mask(mark: u32, mask: u32) -> String {
    if mask == u32::MAX {
        format!("0x{mark:x}")
    } else {
        format!("0x{mark:x}/0x{mask:x}")
    }
}

fn plen(mask: u32) -> u32 {
    // count_bits4: 32 minus the bit length of the inverted mask.
    32 - (32 - (!mask).leading_zeros())
}

pub fn save_match(m: &Match, out: &mut String) {
    match m {
        Match::Connmark(c) => {
            if c.invert {
                out.push_str(" !");
            }
            out.push_str(&format!(" --mark {}", mark_mask(c.mark, c.mask)));
        }
        Match::Helper(h) => {
            out.push_str(if h.invert { " ! --helper" } else { " --helper" });
            save_string(out, &h.name);
        }
        Match::Connlimit(c) => {
            let (opt, dir) = (
                if c.upto { "upto" } else { "above" },
                if c.daddr { "daddr" } else { "saddr" },
            );
            out.push_str(&format!(
                " --connlimit-{opt} {} --connlimit-mask {} --connlimit-{dir}",
                c.limit,
                plen(c.mask)
            ));
        }
        _ => {}
    }
}

pub fn list_match(m: &Match, out: &mut String) {
    match m {
        Match::Connmark(c) => {
            out.push_str(" connmark match ");
            if c.invert {
                out.push('!');
            }
            out.push_str(&format!(" {}", mark_mask(c.mark, c.mask)));
        }
        Match::Helper(h) => out.push_str(&format!(
            " helper match {}\"{}\"",
            if h.invert { "! " } else { "" },
            h.name
        )),
        Match::Connlimit(c) => out.push_str(&format!(
            " #conn {}/{} {} {}",
            if c.daddr { "dst" } else { "src" },
            plen(c.mask),
            if c.upto { "<=" } else { ">" },
            c.limit
        )),
        _ => {}
    }
}

pub fn save_target(t: &Target, out: &mut String) {
    match t {
        Target::Connmark(c) => connmark_save(c, out),
        Target::Ct(c) if !c.is_alias() => ct_text(c, "--", out),
        _ => {}
    }
}

pub fn list_target(t: &Target, out: &mut String) {
    match t {
        Target::Connmark(c) => connmark_list(c, out),
        Target::Ct(c) if c.is_alias() => out.push_str(" NOTRACK"),
        Target::Ct(c) => {
            out.push_str(" CT");
            ct_text(c, "", out);
        }
        _ => {}
    }
}
