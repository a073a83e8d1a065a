//! Match and target extensions: each has an option table, a parser that fills the model's
//! structure, a final check, and printers for the save form (`-S`) and the list form (`-L`).
//!
//! The registry ([`find_match`], [`find_target`]) mirrors libxtables: an unknown name is
//! "Couldn't load match/target". Printing dispatches on the model's enums in [`save_match`],
//! [`list_match`], [`save_target`] and [`list_target`].

mod ct;
mod ctmark;
pub mod misc;
mod nat;
mod ports;
mod targets;

use crate::error::{CmdError, CmdResult};
use classifier::{Inv, Match, TableKind, Target};

/// One option of an extension.
#[derive(Debug)]
pub struct OptSpec {
    pub name: &'static str,
    pub has_arg: bool,
    pub invertible: bool,
    /// Bit index in the extension's "seen" mask; aliases share an id.
    pub id: u8,
}

/// Shorthand for option tables.
pub const fn opt(name: &'static str, has_arg: bool, invertible: bool, id: u8) -> OptSpec {
    OptSpec {
        name,
        has_arg,
        invertible,
        id,
    }
}

/// What an extension may look at while parsing: the rule's protocol so far, the table.
#[derive(Clone, Debug)]
pub struct ParseCtx {
    pub proto: Option<Inv<u8>>,
    pub table: Option<TableKind>,
}

impl ParseCtx {
    /// The protocol name for service lookups (`tcp`, `udp`), when `-p` names one.
    pub fn proto_name(&self) -> Option<&'static str> {
        match &self.proto {
            Some(p) if !p.invert && p.value != 0 => crate::names::protocol_name(p.value),
            _ => None,
        }
    }
}

pub type ParseFn<T> = fn(&mut T, &mut u32, &OptSpec, &str, bool, &ParseCtx) -> CmdResult<()>;
pub type FinishFn<T> = fn(&mut T, u32, &ParseCtx) -> CmdResult<()>;

pub struct MatchExt {
    pub name: &'static str,
    pub opts: &'static [OptSpec],
    pub init: fn() -> Match,
    pub parse: ParseFn<Match>,
    pub finish: FinishFn<Match>,
}

pub struct TargetExt {
    pub name: &'static str,
    pub opts: &'static [OptSpec],
    pub init: fn() -> Target,
    pub parse: ParseFn<Target>,
    pub finish: FinishFn<Target>,
}

static MATCHES: &[&MatchExt] = &[
    &ports::TCP,
    &ports::UDP,
    &ports::ICMP,
    &ports::MULTIPORT,
    &misc::MAC,
    &misc::LIMIT,
    &ct::STATE,
    &ct::CONNTRACK,
    &misc::OWNER,
    &misc::MARK,
    &misc::COMMENT,
    &misc::IPRANGE,
    &ctmark::HELPER,
    &ctmark::CONNMARK_MATCH,
    &ctmark::CONNLIMIT,
];

static TARGETS: &[&TargetExt] = &[
    &targets::REJECT,
    &targets::LOG,
    &targets::MARK,
    &targets::NFQUEUE,
    &nat::SNAT,
    &nat::DNAT,
    &nat::MASQUERADE,
    &nat::REDIRECT,
    &ctmark::CONNMARK_TARGET,
    &ctmark::CT,
    &ctmark::NOTRACK,
];

pub fn find_match(name: &str) -> Option<&'static MatchExt> {
    MATCHES.iter().copied().find(|m| m.name == name)
}

pub fn find_target(name: &str) -> Option<&'static TargetExt> {
    TARGETS.iter().copied().find(|t| t.name == name)
}

/// x6-style "can only be used once" check.
pub fn once(ext: &str, seen: u32, spec: &OptSpec) -> CmdResult<()> {
    if seen & (1 << spec.id) != 0 {
        return Err(CmdError::param(format!(
            "{ext}: option \"--{}\" can only be used once.\n",
            spec.name
        )));
    }
    Ok(())
}

/// x6-style final check of mutually exclusive options: the first seen option (in table order)
/// that conflicts with another seen one is reported, with canonical names.
pub fn exclusive(ext: &str, opts: &[OptSpec], seen: u32, ids: &[u8]) -> CmdResult<()> {
    let canonical = |id: u8| opts.iter().find(|o| o.id == id).map_or("", |o| o.name);
    let present: Vec<u8> = ids
        .iter()
        .copied()
        .filter(|id| seen & (1 << id) != 0)
        .collect();
    if present.len() > 1 {
        return Err(CmdError::param(format!(
            "{ext}: option \"--{}\" cannot be used together with \"--{}\".\n",
            canonical(present[0]),
            canonical(present[1])
        )));
    }
    Ok(())
}

/// x6-style bad value message.
pub fn bad_value(ext: &str, spec: &OptSpec) -> CmdError {
    CmdError::param(format!(
        "{ext}: bad integer value for option \"--{}\", or out of range.\n",
        spec.name
    ))
}

/// x6-style "must be specified".
pub fn must_specify(ext: &str, opt: &str) -> CmdError {
    CmdError::param(format!("{ext}: option \"--{opt}\" must be specified\n"))
}

/// `xtables_save_string`: bare when only `[A-Za-z0-9_-]`, else double-quoted with `"\'` escaped.
pub fn save_string(out: &mut String, s: &str) {
    out.push(' ');
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        if matches!(c, '"' | '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

/// Appends the `-S` form of a match's options (after `-m NAME`).
pub fn save_match(m: &Match, rule_proto: u8, out: &mut String) {
    match m {
        Match::Tcp(_) | Match::Udp(_) | Match::Icmp(_) | Match::Multiport(_) => {
            ports::save(m, rule_proto, out)
        }
        Match::State(_) | Match::Conntrack(_) => ct::save(m, out),
        Match::Helper(_) | Match::Connmark(_) | Match::Connlimit(_) => ctmark::save_match(m, out),
        _ => misc::save(m, out),
    }
}

/// Appends the `-L` description of a match.
pub fn list_match(m: &Match, rule_proto: u8, numeric: bool, out: &mut String) {
    match m {
        Match::Tcp(_) | Match::Udp(_) | Match::Icmp(_) | Match::Multiport(_) => {
            ports::list(m, rule_proto, numeric, out)
        }
        Match::State(_) | Match::Conntrack(_) => ct::list(m, numeric, out),
        Match::Helper(_) | Match::Connmark(_) | Match::Connlimit(_) => ctmark::list_match(m, out),
        _ => misc::list(m, numeric, out),
    }
}

/// Appends the `-S` form of a target's options (after `-j NAME`).
pub fn save_target(t: &Target, out: &mut String) {
    match t {
        Target::Snat(_) | Target::Dnat(_) | Target::Masquerade(_) | Target::Redirect(_) => {
            nat::save(t, out)
        }
        Target::Connmark(_) | Target::Ct(_) => ctmark::save_target(t, out),
        _ => targets::save(t, out),
    }
}

/// Appends the `-L` description of a target.
pub fn list_target(t: &Target, numeric: bool, out: &mut String) {
    match t {
        Target::Snat(_) | Target::Dnat(_) | Target::Masquerade(_) | Target::Redirect(_) => {
            nat::list(t, out)
        }
        Target::Connmark(_) | Target::Ct(_) => ctmark::list_target(t, out),
        _ => targets::list(t, numeric, out),
    }
}
