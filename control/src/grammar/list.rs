//! The `-L` listing: chain headers and rule lines with iptables' column widths, K/M/G/T number
//! rounding and match descriptions.

use super::ext;
use crate::names;
use classifier::{Chain, FragMatch, Ipv4Net, Rule, Table, Target};

/// The `-L` format flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct ListFormat {
    pub numeric: bool,
    pub verbose: bool,
    pub exact: bool,
    pub line_numbers: bool,
}

/// `xtables_print_num`: 5 columns with K/M/G/T rounding, or 8 with `-x`; `notable` drops padding.
pub fn print_num(out: &mut String, n: u64, f: &ListFormat, notable: bool) {
    if f.exact {
        if notable {
            out.push_str(&format!("{n} "));
        } else {
            out.push_str(&format!("{n:8} "));
        }
        return;
    }
    if n <= 99999 {
        if notable {
            out.push_str(&format!("{n} "));
        } else {
            out.push_str(&format!("{n:5} "));
        }
        return;
    }
    let mut v = n.wrapping_add(500) / 1000;
    let mut unit = 'K';
    for next in ['M', 'G', 'T'] {
        if v <= 9999 {
            break;
        }
        v = (v + 500) / 1000;
        unit = next;
    }
    if notable {
        out.push_str(&format!("{v}{unit} "));
    } else {
        out.push_str(&format!("{v:4}{unit} "));
    }
}

/// `Chain NAME (policy P N packets, M bytes)` or `(N references)`, then the column header.
pub fn chain_header(chain: &Chain, refs: usize, f: &ListFormat) -> String {
    let mut out = format!("Chain {}", chain.name);
    if chain.is_builtin() {
        out.push_str(&format!(" (policy {}", chain.policy.name()));
        if f.verbose {
            out.push(' ');
            print_num(&mut out, chain.policy_counters.packets, f, true);
            out.push_str("packets, ");
            print_num(&mut out, chain.policy_counters.bytes, f, true);
            out.push_str("bytes");
        }
        out.push_str(")\n");
    } else {
        out.push_str(&format!(" ({refs} references)\n"));
    }
    if f.line_numbers {
        out.push_str(&format!("{:<4} ", "num"));
    }
    if f.verbose {
        if f.exact {
            // iptables' header is %8s %10s although the values are %8llu %8llu.
            out.push_str(&format!("{:>8} {:>10} ", "pkts", "bytes"));
        } else {
            out.push_str(&format!("{:>5} {:>5} ", "pkts", "bytes"));
        }
    }
    out.push_str(&format!("{:<9} ", "target"));
    out.push_str(" prot ");
    out.push_str("opt");
    if f.verbose {
        out.push_str(&format!(" {:<6} ", "in"));
        out.push_str(&format!("{:<6} ", "out"));
    }
    out.push_str(&format!(" {:<19} ", "source"));
    out.push_str(&format!(" {:<19} ", "destination"));
    out.push('\n');
    out
}

fn addr_text(n: &Option<classifier::Inv<Ipv4Net>>, f: &ListFormat) -> String {
    let (net, inv) = match n {
        Some(n) => (n.value, n.invert),
        None => (Ipv4Net::ANY, false),
    };
    let _ = inv;
    let mut s = String::new();
    if net.is_any() {
        s.push_str(if f.numeric { "0.0.0.0/0" } else { "anywhere" });
    } else {
        s.push_str(&net.addr.to_string());
        match net.prefix_len() {
            Some(32) => {}
            Some(len) => s.push_str(&format!("/{len}")),
            None => s.push_str(&format!("/{}", net.mask)),
        }
    }
    s
}

fn iface_text(i: &Option<classifier::Inv<classifier::IfaceMatch>>, f: &ListFormat) -> String {
    match i {
        Some(i) => format!("{}{}", if i.invert { "!" } else { "" }, i.value),
        None => (if f.numeric { "*" } else { "any" }).to_string(),
    }
}

/// The `opt` column: `-f`, `!f` or `--`.
fn frag_text(rule: &Rule) -> &'static str {
    match rule.frag {
        Some(FragMatch::NonFirst) => "-f",
        Some(FragMatch::FirstOrUnfragmented) => "!f",
        None => "--",
    }
}

/// One rule line of `-L` (with its trailing newline).
pub fn rule_line(rule: &Rule, num: usize, f: &ListFormat) -> String {
    let mut out = String::new();
    if f.line_numbers {
        out.push_str(&format!("{num:<4} "));
    }
    if f.verbose {
        print_num(&mut out, rule.counters.packets, f, false);
        print_num(&mut out, rule.counters.bytes, f, false);
    }
    out.push_str(&format!("{:<9} ", rule.target.column_name()));
    let (proto, pinv) = rule
        .proto
        .as_ref()
        .map_or((0, false), |p| (p.value, p.invert));
    out.push(if pinv { '!' } else { ' ' });
    let pname = if f.numeric {
        names::xtables_protocol_name(proto)
    } else {
        names::protocol_name(proto)
    };
    match pname {
        Some(n) => out.push_str(&format!("{n:<4} ")),
        None => out.push_str(&format!("{proto:<4} ")),
    }
    let frag = frag_text(rule);
    out.push_str(&format!("{frag} "));
    if f.verbose {
        out.push_str(&format!(" {:<6} ", iface_text(&rule.in_iface, f)));
        out.push_str(&format!("{:<6} ", iface_text(&rule.out_iface, f)));
    }
    for a in [&rule.src, &rule.dst] {
        let inv = a.as_ref().is_some_and(|a| a.invert);
        out.push(if inv { '!' } else { ' ' });
        out.push_str(&format!("{:<19} ", addr_text(a, f)));
    }
    if matches!(rule.target, Target::Goto(_)) {
        out.push_str("[goto] ");
    }
    for m in &rule.matches {
        ext::list_match(m, proto, f.numeric, &mut out);
    }
    ext::list_target(&rule.target, f.numeric, &mut out);
    out.push('\n');
    out
}

/// A whole chain: header and rules (`rulenum` selects one rule and prints it alone).
pub fn list_chain(table: &Table, chain: &Chain, f: &ListFormat) -> String {
    let mut out = chain_header(chain, table.references(&chain.name), f);
    for (i, r) in chain.rules.iter().enumerate() {
        out.push_str(&rule_line(r, i + 1, f));
    }
    out
}

/// The one-line echo of a rule that `-v` prints for -A/-I/-D/-C/-R (`FMT_PRINT_RULE`).
pub fn rule_echo(rule: &Rule, f: &ListFormat) -> String {
    let (proto, pinv) = rule
        .proto
        .as_ref()
        .map_or((0, false), |p| (p.value, p.invert));
    let pname = names::protocol_name(proto).map_or_else(|| proto.to_string(), str::to_string);
    let frag = frag_text(rule);
    let addr = |n: &Option<classifier::Inv<Ipv4Net>>| {
        let inv = n.as_ref().is_some_and(|n| n.invert);
        format!("{}{}", if inv { "!" } else { "" }, addr_text(n, f))
    };
    let mut out = format!(
        "{} {}{} opt {} in {} out {}  {}  -> {}  ",
        rule.target.column_name(),
        if pinv { '!' } else { ' ' },
        pname,
        frag,
        iface_text(&rule.in_iface, f),
        iface_text(&rule.out_iface, f),
        addr(&rule.src),
        addr(&rule.dst)
    );
    if matches!(rule.target, Target::Goto(_)) {
        out.push_str("[goto] ");
    }
    for m in &rule.matches {
        ext::list_match(m, proto, true, &mut out);
    }
    ext::list_target(&rule.target, true, &mut out);
    out.push('\n');
    out
}
