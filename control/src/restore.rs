//! `iptables-restore`: reads the save format and applies each table at its `COMMIT`, whole or
//! not at all (tables committed earlier in the same input stay applied, as with iptables).
//! Also used to load pollwall's own rules file, which is in the same format.

use crate::error::{exit, CmdError, CmdResult, ErrorShape};
use crate::exec::{commit_check, execute};
use crate::grammar::{parse_command_in, ParseMode};
use classifier::{Counters, Policy, Ruleset, Table, TableKind, MAX_CHAIN_NAME_LEN};

/// `iptables-restore` options.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub counters: bool,
    pub noflush: bool,
    pub test: bool,
    pub verbose: bool,
    /// `-T NAME`: restore only this table.
    pub table: Option<String>,
    /// Loading pollwall's own rules file: accept chain names that `-E` allows but
    /// `iptables-restore` refuses (29 characters).
    pub from_store: bool,
}

/// Splits a rule line into arguments as iptables-restore does: whitespace separates, double
/// quotes group (a backslash inside quotes escapes the next character).
pub fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut cur = String::new();
    let mut in_quote = false;
    let mut escaped = false;
    let mut have = false;
    for c in line.chars() {
        if in_quote {
            if escaped {
                cur.push(c);
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            } else {
                cur.push(c);
            }
            continue;
        }
        match c {
            '"' => {
                in_quote = true;
                have = true;
            }
            ' ' | '\t' | '\n' => {
                if have || !cur.is_empty() {
                    args.push(std::mem::take(&mut cur));
                    have = false;
                }
            }
            _ => cur.push(c),
        }
    }
    if have || !cur.is_empty() {
        args.push(cur);
    }
    args
}

/// True when `line` ends inside a double-quoted argument (as `split_args` reads it).
fn open_quote(line: &str) -> bool {
    let mut in_quote = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
        } else if c == '"' {
            in_quote = true;
        }
    }
    in_quote
}

/// A parse-level error at line `n`: the message, then "Error occurred at line: N" and the hint.
fn line_error(e: &CmdError, n: usize) -> CmdError {
    let prog = "iptables-restore";
    let body = match e.shape {
        ErrorShape::Plain => {
            let first = e.msg.lines().next().unwrap_or("");
            format!("{first}\n")
        }
        _ => format!("{prog} {}: {}\n", crate::error::VERSION, e.msg),
    };
    CmdError::plain(
        exit::PARAMETER_PROBLEM,
        format!("{body}Error occurred at line: {n}\nTry `{prog} -h' or '{prog} --help' for more information.\n"),
    )
}

fn failed(n: usize) -> CmdError {
    CmdError::plain(
        exit::OTHER_PROBLEM,
        format!("iptables-restore: line {n} failed\n"),
    )
}

fn param_at(msg: String, n: usize) -> CmdError {
    line_error(&CmdError::param(msg), n)
}

/// Parses `[packets:bytes]`.
fn parse_bracket_counters(s: &str) -> Option<Counters> {
    let inner = s.strip_prefix('[')?;
    let inner = inner.strip_suffix(']').unwrap_or(inner);
    let (p, b) = inner.split_once(':')?;
    Some(Counters {
        packets: p.parse().ok()?,
        bytes: b.parse().ok()?,
    })
}

struct Open {
    kind: TableKind,
    table: Table,
}

/// Applies a restore input to `rs`. Returns what `-v` prints.
pub fn restore(input: &str, opts: &RestoreOptions, rs: &mut Ruleset) -> CmdResult<String> {
    let mut open: Option<Open> = None;
    let mut stdout = String::new();
    let mut last_line = 0;
    let mut lines = input.split_inclusive('\n').enumerate().peekable();
    while let Some((idx, first)) = lines.next() {
        let n = idx + 1;
        // pollwall's own rules file may hold a quoted argument with a newline inside (iptables
        // accepts one from an unterminated quote): there, a line continues until its quote closes.
        let mut joined = first.to_string();
        while opts.from_store && open_quote(&joined) {
            match lines.next() {
                Some((_, more)) => joined.push_str(more),
                None => break,
            }
        }
        let raw = joined.as_str();
        last_line = n;
        let line = raw.trim_end_matches('\n');
        let trimmed = line.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(name) = trimmed.strip_prefix('*') {
            if open.is_some() {
                // Inside a table the line is a command line: getopt stops at its first word.
                let word = trimmed.split_whitespace().next().unwrap_or("*");
                return Err(line_error(
                    &CmdError::plain(2, format!("Bad argument `{word}'")),
                    n,
                ));
            }
            // `strtok(buffer + 1, " \t\n")`: the first word after the star.
            let Some(name) = name.split([' ', '\t', '\n']).find(|w| !w.is_empty()) else {
                return Err(param_at(
                    format!("iptables-restore: line {n} table name invalid"),
                    n,
                ));
            };
            let kind = TableKind::from_name(name).ok_or_else(|| {
                param_at(
                    format!("iptables-restore: unable to initialize table '{name}'"),
                    n,
                )
            })?;
            // `create_handle` (iptc_init) registers the table in the kernel at this line, so a
            // table whose lines fail later is still listed by iptables-save, empty.
            let selected = opts.table.as_deref().is_none_or(|t| t == kind.name());
            if selected && rs.table(kind).is_none() {
                rs.set_table(Table::new(kind));
            }
            let table = if opts.noflush {
                rs.table(kind).cloned().unwrap_or_else(|| Table::new(kind))
            } else {
                let mut t = rs.table(kind).cloned().unwrap_or_else(|| Table::new(kind));
                t.chains.retain(|c| c.is_builtin());
                for c in t.chains.iter_mut() {
                    c.rules.clear();
                }
                t
            };
            if opts.verbose {
                stdout.push_str(&format!("Flushing chain `{name}'\n").replace("chain", "table"));
            }
            open = Some(Open { kind, table });
            continue;
        }
        if trimmed.trim_end() == "COMMIT" {
            let Some(o) = open.take() else {
                return Err(failed(n));
            };
            commit_check(&o.table).map_err(|_| failed(n))?;
            let skip = opts.table.as_deref().is_some_and(|t| t != o.kind.name());
            if !opts.test && !skip {
                rs.set_table(o.table);
            }
            continue;
        }
        let Some(o) = open.as_mut() else {
            return Err(failed(n));
        };
        if let Some(decl) = trimmed.strip_prefix(':') {
            chain_line(decl, n, opts, &mut o.table)?;
            continue;
        }
        // A rule line, optionally prefixed by [packets:bytes].
        let mut text = trimmed;
        let mut prefix_counters = None;
        if text.starts_with('[') {
            let end = text
                .find(']')
                .ok_or_else(|| param_at(format!("Bad line {n}: need ]"), n))?;
            let c = &text[..=end];
            if opts.counters {
                let (p, _) = c[1..end]
                    .split_once(':')
                    .ok_or_else(|| param_at(format!("Bad line {n}: need ]"), n))?;
                if p.parse::<u64>().is_err() {
                    return Err(param_at("-c packet counter not numeric".into(), n));
                }
                prefix_counters = Some(
                    parse_bracket_counters(c)
                        .ok_or_else(|| param_at("-c byte counter not numeric".into(), n))?,
                );
            }
            text = &text[end + 1..];
        }
        // The raw line keeps its newline: an unterminated quote swallows it, as in iptables.
        let args = split_args(&raw[line.len() - text.len()..]);
        let cmd = parse_command_in(
            &args,
            if opts.from_store {
                ParseMode::Store
            } else {
                ParseMode::Restore
            },
            o.kind.name(),
        )
        .map_err(|e| line_error(&e, n))?;
        let mut cmd = cmd;
        cmd.table = o.kind;
        cmd.defer_check = true;
        if let Some(c) = prefix_counters {
            for r in cmd.rules.iter_mut() {
                r.counters = c;
            }
        }
        let mut scratch = Ruleset {
            // The open table moves into the scratch ruleset and back (a cheap placeholder).
            tables: vec![std::mem::replace(
                &mut o.table,
                Table {
                    kind: o.kind,
                    chains: Vec::new(),
                },
            )],
            next_rule_id: rs.next_rule_id,
        };
        let res = execute(&cmd, &mut scratch);
        rs.next_rule_id = scratch.next_rule_id;
        o.table = scratch
            .tables
            .pop()
            .expect("the scratch ruleset holds the open table");
        match res {
            Ok(out) => stdout.push_str(&out.stdout),
            Err(e) if e.shape == ErrorShape::Libiptc => return Err(failed(n)),
            Err(e) => return Err(line_error(&e, n)),
        }
    }
    if open.is_some() {
        return Err(CmdError::plain(
            exit::OTHER_PROBLEM,
            format!(
                "iptables-restore: COMMIT expected at line {}\n",
                last_line + 1
            ),
        ));
    }
    Ok(stdout)
}

/// `:CHAIN POLICY [packets:bytes]`.
fn chain_line(decl: &str, n: usize, opts: &RestoreOptions, table: &mut Table) -> CmdResult<()> {
    let mut words = decl.split_whitespace();
    let name = words.next().unwrap_or("");
    if name.len() > MAX_CHAIN_NAME_LEN + usize::from(opts.from_store) {
        return Err(param_at(
            format!("Invalid chain name `{name}' ({MAX_CHAIN_NAME_LEN} chars max)"),
            n,
        ));
    }
    let Some(policy) = words.next() else {
        return Err(param_at(
            format!("iptables-restore: line {n} policy invalid"),
            n,
        ));
    };
    let counters_text = words.next();
    let builtin = table.chain(name).is_some_and(|c| c.is_builtin());
    if !builtin {
        if policy != "-" {
            return Err(CmdError {
                code: exit::OTHER_PROBLEM,
                shape: ErrorShape::Banner,
                msg: format!(
                    "Can't set policy `{policy}' on `{name}' line {n}: Bad built-in chain name"
                ),
                stdout: String::new(),
                notes: String::new(),
            });
        }
        match table.chain_mut(name) {
            Some(c) if opts.noflush => c.rules.clear(),
            Some(_) => {
                return Err(param_at(
                    format!("error creating chain '{name}':File exists"),
                    n,
                ))
            }
            None => table.add_user_chain(name),
        }
        return Ok(());
    }
    let chain = table.chain_mut(name).expect("checked above");
    // A `-` policy leaves the chain alone, counters too; otherwise the policy is set, with the
    // line's counters under -c (read first, as iptables-restore does). Without -c libiptc
    // zeroes them; pollwall keeps them (policy counters stay exact across changes: the
    // `policy` deviation of tests/it/golden.rs).
    if policy == "-" {
        return Ok(());
    }
    let counters = if opts.counters {
        Some(
            counters_text
                .filter(|t| t.starts_with('['))
                .and_then(parse_bracket_counters)
                .ok_or_else(|| {
                    param_at(format!("invalid policy counters for chain '{name}'"), n)
                })?,
        )
    } else {
        None
    };
    chain.policy = match policy {
        "ACCEPT" => Policy::Accept,
        "DROP" => Policy::Drop,
        _ => {
            return Err(CmdError::other(format!(
                "Can't set policy `{policy}' on `{name}' line {n}: Bad policy name"
            )))
        }
    };
    if let Some(c) = counters {
        chain.policy_counters = c;
    }
    Ok(())
}
