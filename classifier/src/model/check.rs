//! The checks the kernel applies when a table is replaced (`translate_table` and the
//! extensions' `checkentry`): loops reachable from a built-in chain, hook and table restrictions
//! of matches and targets, protocol requirements. A table that fails is refused whole.

use super::targets::RejectWith;
use super::{Hook, HookMask, Match, Rule, Table, TableKind, Target};
use std::fmt;

/// Longest user chain name iptables accepts (`XT_EXTENSION_MAXNAMELEN` - 1 - 1).
pub const MAX_CHAIN_NAME_LEN: usize = 28;

/// Why the kernel would refuse a table, with the errno it would return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckError {
    /// ELOOP: a chain is reachable from itself through jumps starting at a built-in chain.
    Loop { chain: String },
    /// EINVAL, with the text the kernel writes to its log.
    Invalid { detail: String },
    /// ENOENT: a jump to a chain that does not exist.
    NoChain { chain: String },
    /// ERANGE: a value the extension cannot represent (a limit whose burst overflows).
    Range { detail: String },
    /// ENOENT: a conntrack helper this kernel does not have for the rule's protocol.
    NoHelper { name: String },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::Loop { chain } => write!(f, "loop through chain {chain}"),
            CheckError::Invalid { detail } => f.write_str(detail),
            CheckError::NoChain { chain } => write!(f, "no chain {chain}"),
            CheckError::Range { detail } => f.write_str(detail),
            CheckError::NoHelper { name } => write!(f, "no conntrack helper {name}"),
        }
    }
}

impl std::error::Error for CheckError {}

/// For every chain of `table` (by index), the built-in hooks it is reachable from.
pub fn reachable_hooks(table: &Table) -> Result<Vec<HookMask>, CheckError> {
    let n = table.chains.len();
    let mut masks = vec![HookMask::NONE; n];
    for (i, chain) in table.chains.iter().enumerate() {
        if let Some(hook) = chain.hook {
            let mut on_stack = vec![false; n];
            visit(table, i, hook, &mut masks, &mut on_stack)?;
        }
    }
    Ok(masks)
}

fn visit(
    table: &Table,
    idx: usize,
    hook: Hook,
    masks: &mut [HookMask],
    on_stack: &mut [bool],
) -> Result<(), CheckError> {
    if on_stack[idx] {
        return Err(CheckError::Loop {
            chain: table.chains[idx].name.clone(),
        });
    }
    if masks[idx].contains(hook) {
        return Ok(());
    }
    masks[idx] = masks[idx].union(hook.bit());
    on_stack[idx] = true;
    for rule in walked(&table.chains[idx].rules) {
        if let Some(target) = rule.target.chain_ref() {
            let next = table
                .chain_index(target)
                .ok_or_else(|| CheckError::NoChain {
                    chain: target.to_string(),
                })?;
            visit(table, next, hook, masks, on_stack)?;
        }
    }
    on_stack[idx] = false;
    Ok(())
}

/// The rules of a chain that `mark_source_chains` walks: up to and including the first
/// unconditional absolute verdict (what follows it is reached from no hook).
fn walked(rules: &[Rule]) -> &[Rule] {
    match rules.iter().position(Rule::ends_walk) {
        Some(i) => &rules[..=i],
        None => rules,
    }
}

/// Checks a whole table as the kernel does on replace.
pub fn check_table(table: &Table) -> Result<(), CheckError> {
    for rule in table.rules() {
        if let Some(c) = rule.target.chain_ref() {
            if table.chain(c).is_none() {
                return Err(CheckError::NoChain {
                    chain: c.to_string(),
                });
            }
        }
    }
    let masks = reachable_hooks(table)?;
    for (chain, &mask) in table.chains.iter().zip(&masks) {
        let reached = walked(&chain.rules).len();
        for (i, rule) in chain.rules.iter().enumerate() {
            // Past the walk's end no hook reaches a rule: the kernel checks it against none.
            let mask = if i < reached { mask } else { HookMask::NONE };
            check_rule(table.kind, mask, rule)?;
        }
    }
    Ok(())
}

fn hook_names(mask: HookMask) -> String {
    Hook::ALL
        .iter()
        .filter(|h| mask.contains(**h))
        .map(|h| h.name())
        .collect::<Vec<_>>()
        .join("/")
}

/// Checks one rule that is reachable from the hooks in `mask` of `table`.
pub fn check_rule(table: TableKind, mask: HookMask, rule: &Rule) -> Result<(), CheckError> {
    let proto = rule.required_proto();
    for m in &rule.matches {
        if let Some(p) = m.required_proto() {
            if proto != p {
                return Err(CheckError::Invalid {
                    detail: format!("{} match: only valid for protocol {}", m.name(), p),
                });
            }
        }
        if let Some(allowed) = m.allowed_hooks() {
            if !mask.within(allowed) {
                return Err(CheckError::Invalid {
                    detail: format!(
                        "{} match: used from hooks {}, but only valid from {}",
                        m.name(),
                        hook_names(mask),
                        hook_names(allowed)
                    ),
                });
            }
        }
        if let Match::Limit(l) = m {
            if l.burst == 0 || user2credits(l.avg.wrapping_mul(l.burst)) < user2credits(l.avg) {
                return Err(CheckError::Range {
                    detail: format!("Overflow, try lower: {}/{}", l.avg, l.burst),
                });
            }
        }
    }
    let (only_table, hooks) = rule.target.restriction();
    if let Some(t) = only_table {
        if t != table {
            return Err(CheckError::Invalid {
                detail: format!(
                    "{} target: only valid in {} table, not {}",
                    rule.target.name(),
                    t,
                    table
                ),
            });
        }
    }
    if let Some(allowed) = hooks {
        if !mask.within(allowed) {
            return Err(CheckError::Invalid {
                detail: format!(
                    "{} target: used from hooks {}, but only usable from {}",
                    rule.target.name(),
                    hook_names(mask),
                    hook_names(allowed)
                ),
            });
        }
    }
    match &rule.target {
        Target::Reject(RejectWith::TcpReset) if proto != 6 => Err(CheckError::Invalid {
            detail: "REJECT target: TCP_RESET invalid for non-tcp".into(),
        }),
        Target::Connmark(c) if c.shift_bits >= 32 => Err(CheckError::Invalid {
            detail: "CONNMARK: shift of 32 bits or more".into(),
        }),
        Target::Ct(c) => check_ct(c, proto),
        Target::Reject(RejectWith::EchoReply) => Err(CheckError::Invalid {
            detail: "REJECT target: ECHOREPLY no longer supported.".into(),
        }),
        Target::Redirect(r) | Target::Masquerade(r) | Target::Snat(r) | Target::Dnat(r)
            if r.flags & super::targets::nat_flags::PROTO_SPECIFIED != 0
                && !matches!(proto, 6 | 17 | 33 | 132 | 136) =>
        {
            Err(CheckError::Invalid {
                detail: format!("{}: ports need a protocol", rule.target.name()),
            })
        }
        _ => Ok(()),
    }
}

/// `xt_ct_tg_check`: without `--notrack`, the helper must exist for the rule's protocol and a
/// timeout policy must exist (pollwall has no `nfct timeout` objects, so none does).
fn check_ct(c: &super::CtTarget, proto: u8) -> Result<(), CheckError> {
    if c.notrack() {
        return Ok(());
    }
    if !c.helper.is_empty()
        && crate::conntrack::helper::HelperKind::find(&c.helper, proto).is_none()
    {
        return Err(CheckError::NoHelper {
            name: c.helper.clone(),
        });
    }
    if !c.timeout.is_empty() {
        return Err(CheckError::Invalid {
            detail: format!("CT: timeout policy {} not found", c.timeout),
        });
    }
    Ok(())
}

/// The kernel's `HZ` on the distributions pollwall targets; the limit arithmetic depends on it.
pub const HZ: u32 = 250;
/// `CREDITS_PER_JIFFY` of `xt_limit`: the largest power of two below `0xFFFFFFFF / (HZ*86400)`.
pub const CREDITS_PER_JIFFY: u32 = {
    let max = u32::MAX / (HZ * 60 * 60 * 24);
    let mut p = 1u32;
    while p * 2 <= max {
        p *= 2;
    }
    p
};

/// `xt_limit`'s `user2credits`: a user interval (1/10000 s) in credits, dividing first when the
/// product would overflow.
pub fn user2credits(user: u32) -> u32 {
    if user > u32::MAX / (HZ * CREDITS_PER_JIFFY) {
        // u32 arithmetic that wraps, as the kernel's does.
        (user / 10000).wrapping_mul(HZ * CREDITS_PER_JIFFY)
    } else {
        user * HZ * CREDITS_PER_JIFFY / 10000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Inv, LimitMatch, MacMatch, OwnerMatch, Rule, Table, TableKind};

    fn jump(to: &str) -> Rule {
        Rule {
            target: Target::Jump(to.into()),
            ..Default::default()
        }
    }

    fn table_with_chains(names: &[&str]) -> Table {
        let mut t = Table::new(TableKind::Filter);
        for n in names {
            t.add_user_chain(n);
        }
        t
    }

    #[test]
    fn loops_are_refused_only_when_reachable_from_a_builtin_chain() {
        let mut t = table_with_chains(&["a", "b"]);
        t.chain_mut("a").unwrap().rules.push(jump("b"));
        t.chain_mut("b").unwrap().rules.push(jump("a"));
        assert_eq!(
            check_table(&t),
            Ok(()),
            "an unreachable loop is accepted, as the kernel does"
        );
        t.chain_mut("INPUT").unwrap().rules.push(jump("a"));
        assert!(matches!(check_table(&t), Err(CheckError::Loop { .. })));
    }

    #[test]
    fn diamond_jumps_are_not_loops() {
        let mut t = table_with_chains(&["a", "b", "c"]);
        t.chain_mut("INPUT")
            .unwrap()
            .rules
            .extend([jump("a"), jump("b")]);
        t.chain_mut("a").unwrap().rules.push(jump("c"));
        t.chain_mut("b").unwrap().rules.push(jump("c"));
        assert_eq!(check_table(&t), Ok(()));
        let masks = reachable_hooks(&t).unwrap();
        let c = t.chain_index("c").unwrap();
        assert!(masks[c].contains(Hook::Input) && !masks[c].contains(Hook::Output));
    }

    #[test]
    fn hook_restrictions_follow_reachability() {
        let mut t = table_with_chains(&["u"]);
        let owner = Rule {
            matches: vec![Match::Owner(OwnerMatch {
                socket_exists: Some(false),
                ..Default::default()
            })],
            ..Default::default()
        };
        t.chain_mut("u").unwrap().rules.push(owner);
        assert_eq!(
            check_table(&t),
            Ok(()),
            "unreachable: no hook to check against"
        );
        t.chain_mut("OUTPUT").unwrap().rules.push(jump("u"));
        assert_eq!(check_table(&t), Ok(()));
        t.chain_mut("INPUT").unwrap().rules.push(jump("u"));
        assert!(
            matches!(check_table(&t), Err(CheckError::Invalid { .. })),
            "owner is not valid from INPUT"
        );

        let mut t = Table::new(TableKind::Filter);
        let mac = Rule {
            matches: vec![Match::Mac(MacMatch {
                addr: [0; 6],
                invert: false,
            })],
            ..Default::default()
        };
        t.chain_mut("OUTPUT").unwrap().rules.push(mac);
        assert!(
            check_table(&t).is_err(),
            "no source MAC on locally generated packets"
        );
    }

    #[test]
    fn targets_keep_to_their_tables_and_protocols() {
        let mut t = Table::new(TableKind::Filter);
        t.chain_mut("INPUT").unwrap().rules.push(Rule {
            target: Target::Reject(RejectWith::TcpReset),
            ..Default::default()
        });
        assert!(check_table(&t).is_err(), "tcp-reset needs -p tcp");
        t.chain_mut("INPUT").unwrap().rules[0].proto = Some(Inv::new(6, false));
        assert_eq!(check_table(&t), Ok(()));
        t.chain_mut("INPUT").unwrap().rules[0].proto = Some(Inv::new(6, true));
        assert!(check_table(&t).is_err(), "! -p tcp is not tcp");

        let mut nat = Table::new(TableKind::Nat);
        nat.chain_mut("PREROUTING").unwrap().rules.push(Rule {
            target: Target::Masquerade(Default::default()),
            ..Default::default()
        });
        assert!(check_table(&nat).is_err(), "MASQUERADE only in POSTROUTING");
        let mut filter = Table::new(TableKind::Filter);
        filter.chain_mut("FORWARD").unwrap().rules.push(Rule {
            target: Target::Masquerade(Default::default()),
            ..Default::default()
        });
        assert!(check_table(&filter).is_err(), "MASQUERADE only in nat");
    }

    #[test]
    fn limit_overflow_is_a_range_error() {
        let day = LimitMatch::SCALE * 86400;
        let rule = |burst| Rule {
            matches: vec![Match::Limit(LimitMatch { avg: day, burst })],
            ..Default::default()
        };
        let mut t = Table::new(TableKind::Filter);
        t.chain_mut("INPUT").unwrap().rules.push(rule(1));
        assert_eq!(check_table(&t), Ok(()));
        t.chain_mut("INPUT").unwrap().rules.push(rule(2));
        assert!(matches!(check_table(&t), Err(CheckError::Range { .. })));
        t.chain_mut("INPUT").unwrap().rules[1] = rule(0);
        assert!(matches!(check_table(&t), Err(CheckError::Range { .. })));
        assert_eq!(CREDITS_PER_JIFFY, 128);
    }
}
