//! The save forms: one rule as `-A CHAIN ...` (used by `-S` and `iptables-save`), whole chains
//! as `-S` prints them, and whole tables in `iptables-save` format.

use super::ext;
use super::values::net_to_string;
use crate::names;
use classifier::{Chain, FragMatch, Match, Rule, Table, Target};

/// Everything after `-A CHAIN` (leading space included), as `print_rule4` prints it; with
/// `counters`, `-c P B` goes between the matches and the target, as `-S -v` prints it.
pub fn rule_spec(rule: &Rule, counters: bool) -> String {
    rule_spec_form(rule, counters, Form::Iptables)
}

/// Who reads a saved rule.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    /// The user: exactly what iptables prints.
    Iptables,
    /// pollwall's own rules file: also what iptables' printers drop but the kernel's table
    /// keeps (`-i +`), so that the next command sees the same ruleset.
    Store,
}

fn rule_spec_form(rule: &Rule, counters: bool, form: Form) -> String {
    let mut out = String::new();
    let shown = |i: &classifier::IfaceMatch| form == Form::Store || !i.matches_all();
    let inv = |out: &mut String, i: bool| {
        if i {
            out.push_str(" !");
        }
    };
    if let Some(s) = &rule.src {
        inv(&mut out, s.invert);
        out.push_str(&format!(" -s {}", net_to_string(&s.value)));
    }
    if let Some(d) = &rule.dst {
        inv(&mut out, d.invert);
        out.push_str(&format!(" -d {}", net_to_string(&d.value)));
    }
    // `print_iface` skips an interface whose mask is empty: `+` alone, inverted or not (the
    // saved rule then matches every interface, as the kernel's does after a restore).
    if let Some(i) = rule.in_iface.as_ref().filter(|i| shown(&i.value)) {
        inv(&mut out, i.invert);
        out.push_str(&format!(" -i {}", i.value));
    }
    if let Some(o) = rule.out_iface.as_ref().filter(|o| shown(&o.value)) {
        inv(&mut out, o.invert);
        out.push_str(&format!(" -o {}", o.value));
    }
    if let Some(p) = &rule.proto {
        if p.value != 0 || p.invert {
            inv(&mut out, p.invert);
            match names::protocol_name(p.value) {
                Some(n) => out.push_str(&format!(" -p {n}")),
                None => out.push_str(&format!(" -p {}", p.value)),
            }
        }
    }
    match rule.frag {
        Some(FragMatch::NonFirst) => out.push_str(" -f"),
        Some(FragMatch::FirstOrUnfragmented) => out.push_str(" ! -f"),
        None => {}
    }
    let proto = rule.proto.as_ref().map_or(0, |p| p.value);
    for m in &rule.matches {
        out.push_str(&format!(" -m {}", m.name()));
        ext::save_match(m, proto, &mut out);
    }
    if counters {
        out.push_str(&format!(
            " -c {} {}",
            rule.counters.packets, rule.counters.bytes
        ));
    }
    match &rule.target {
        Target::None => {}
        Target::Goto(c) => out.push_str(&format!(" -g {c}")),
        t => {
            out.push_str(&format!(" -j {}", t.name()));
            ext::save_target(t, &mut out);
        }
    }
    out
}

/// `-A CHAIN ...`, with `-c P B` after the chain name when `counters` is set (`-S -v`).
pub fn rule_line(chain: &str, rule: &Rule, counters: bool) -> String {
    format!("-A {chain}{}", rule_spec(rule, counters))
}

/// The `-P`/`-N` line of a chain for `-S`.
pub fn chain_header(chain: &Chain, counters: bool) -> String {
    if chain.is_builtin() {
        let c = if counters {
            format!(
                " -c {} {}",
                chain.policy_counters.packets, chain.policy_counters.bytes
            )
        } else {
            String::new()
        };
        format!("-P {} {}{c}", chain.name, chain.policy.name())
    } else {
        format!("-N {}", chain.name)
    }
}

/// One table in `iptables-save` format (without the comment lines).
pub fn save_table(table: &Table, counters: bool) -> String {
    save_table_form(table, counters, Form::Iptables)
}

/// [`save_table`] for pollwall's rules file, which keeps what the kernel's table keeps.
pub fn store_table(table: &Table) -> String {
    save_table_form(table, true, Form::Store)
}

fn save_table_form(table: &Table, counters: bool, form: Form) -> String {
    let mut out = format!("*{}\n", table.kind.name());
    for c in &table.chains {
        let pol = if c.is_builtin() { c.policy.name() } else { "-" };
        out.push_str(&format!(
            ":{} {} [{}:{}]\n",
            c.name, pol, c.policy_counters.packets, c.policy_counters.bytes
        ));
    }
    for c in &table.chains {
        for r in &c.rules {
            if counters {
                out.push_str(&format!("[{}:{}] ", r.counters.packets, r.counters.bytes));
            }
            out.push_str(&format!("-A {}{}", c.name, rule_spec_form(r, false, form)));
            out.push('\n');
        }
    }
    out.push_str("COMMIT\n");
    out
}

/// Whether any rule of the table uses `m` (used to decide what a table needs).
pub fn table_uses(table: &Table, f: impl Fn(&Match) -> bool) -> bool {
    table.rules().any(|r| r.matches.iter().any(&f))
}
