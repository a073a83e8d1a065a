//! Executing a parsed [`Command`] against a [`Ruleset`]: what libiptc and the kernel do for
//! `iptables`, with their error messages. The function works on a copy that the caller commits
//! only on success, so a failed command changes nothing.

use crate::error::{CmdError, CmdResult};
use crate::grammar::list::{self, ListFormat};
use crate::grammar::save;
use crate::grammar::{Command, Op};
use classifier::{check, Chain, CheckError, Policy, Rule, Ruleset, Table, Target};

/// What a successful command produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub stdout: String,
    /// True when the ruleset changed and must be committed.
    pub modified: bool,
}

const NO_CHAIN: &str = "No chain/target/match by that name";

/// Maps the kernel's refusal of a table to libiptc's message.
pub fn check_error(e: &CheckError) -> CmdError {
    match e {
        CheckError::Loop { .. } => CmdError::iptc("Too many levels of symbolic links"),
        CheckError::Invalid { .. } => {
            CmdError::iptc("Invalid argument. Run `dmesg' for more information")
        }
        CheckError::NoChain { .. } | CheckError::NoHelper { .. } => CmdError::iptc(NO_CHAIN),
        CheckError::Range { .. } => CmdError::iptc("Numerical result out of range"),
    }
}

/// libiptc's `iptcc_map_target` refuses a jump or goto to a built-in chain (EINVAL).
fn refuse_builtin_jump(table: &Table, rule: &Rule) -> CmdResult<()> {
    match &rule.target {
        Target::Jump(c) | Target::Goto(c) if table.chain(c).is_some_and(|c| c.is_builtin()) => Err(
            CmdError::iptc("Invalid argument. Run `dmesg' for more information"),
        ),
        _ => Ok(()),
    }
}

/// Validates a table as the kernel does on commit.
pub fn commit_check(table: &Table) -> CmdResult<()> {
    check::check_table(table).map_err(|e| check_error(&e))
}

fn chain_mut<'a>(table: &'a mut Table, name: &str) -> CmdResult<&'a mut Chain> {
    table
        .chain_mut(name)
        .ok_or_else(|| CmdError::iptc(NO_CHAIN))
}

/// The "not found" message of `-D`/`-C` by spec: libiptc reports a missing extension target or
/// chain differently from a missing rule with a standard verdict.
fn not_found(rule: &Rule) -> CmdError {
    match rule.target {
        Target::None | Target::Accept | Target::Drop | Target::Return | Target::Queue => {
            CmdError::iptc("Bad rule (does a matching rule exist in that chain?)")
        }
        _ => CmdError::iptc(NO_CHAIN),
    }
}

/// `-v` echo of a rule being added, deleted or checked (`print_firewall_line` with FMT_NOTABLE).
fn verbose_echo(rule: &Rule) -> String {
    let f = ListFormat {
        numeric: true,
        verbose: true,
        exact: false,
        line_numbers: false,
    };
    list::rule_echo(rule, &f)
}

/// Runs `cmd` against `rs`. On error `rs` may be partly changed: callers pass a copy.
pub fn execute(cmd: &Command, rs: &mut Ruleset) -> CmdResult<Outcome> {
    let mut out = Outcome::default();
    match execute_into(cmd, rs, &mut out) {
        Ok(()) => Ok(out),
        Err(mut e) => {
            // What the command printed before failing (-v echoes, -X -v) still shows.
            if e.stdout.is_empty() {
                e.stdout = out.stdout;
            }
            Err(e)
        }
    }
}

fn execute_into(cmd: &Command, rs: &mut Ruleset, out: &mut Outcome) -> CmdResult<()> {
    let chain_name = cmd.chain.clone().unwrap_or_default();
    let fmt = ListFormat {
        numeric: cmd.numeric,
        verbose: cmd.verbose,
        exact: cmd.exact,
        line_numbers: cmd.line_numbers,
    };
    // Reading commands still instantiate the table, as the kernel module load does.
    if rs.table(cmd.table).is_none() {
        rs.ensure_table(cmd.table);
        out.modified = true;
    }
    // do_command4: a -j/-g name that is neither an extension nor a chain of the table.
    if let Some(rule) = cmd.rules.first() {
        let table = rs.ensure_table(cmd.table);
        match &rule.target {
            Target::Jump(c) if table.chain(c).is_none() => {
                return Err(CmdError::param(format!(
                    "Couldn't load target `{c}':No such file or directory\n"
                )))
            }
            Target::Goto(c) if table.chain(c).is_none() => {
                return Err(CmdError::param(format!("goto '{c}' is not a chain")))
            }
            _ => {}
        }
    }
    match &cmd.op {
        Op::Append | Op::Insert(_) => {
            let mut rules = cmd.rules.clone();
            for r in rules.iter_mut() {
                rs.assign_id(r);
            }
            let table = rs.ensure_table(cmd.table);
            let chain = chain_mut(table, &chain_name)?;
            // -I puts every rule of a comma list at the same position (so they end up reversed,
            // as with iptables); -A appends them in order.
            let at = match cmd.op {
                Op::Insert(n) if n as usize > chain.rules.len() + 1 => {
                    return Err(CmdError::iptc("Index of insertion too big"))
                }
                Op::Insert(n) => Some(n as usize - 1),
                _ => None,
            };
            for r in rules {
                if cmd.verbose {
                    out.stdout.push_str(&verbose_echo(&r));
                }
                refuse_builtin_jump(table, &r)?;
                let chain = chain_mut(table, &chain_name)?;
                match at {
                    Some(i) => chain.rules.insert(i, r),
                    None => chain.rules.push(r),
                }
            }
            if !cmd.defer_check {
                commit_check(table)?;
            }
            out.modified = true;
        }
        Op::Replace(n) => {
            let mut r = cmd.rules[0].clone();
            rs.assign_id(&mut r);
            let table = rs.ensure_table(cmd.table);
            let chain = chain_mut(table, &chain_name)?;
            let n = *n as usize;
            if n > chain.rules.len() {
                return Err(CmdError::iptc("Index of replacement too big"));
            }
            if cmd.verbose {
                out.stdout.push_str(&verbose_echo(&r));
            }
            refuse_builtin_jump(table, &r)?;
            table
                .chain_mut(&chain_name)
                .ok_or_else(|| CmdError::iptc(NO_CHAIN))?
                .rules[n - 1] = r;
            if !cmd.defer_check {
                commit_check(table)?;
            }
            out.modified = true;
        }
        Op::Delete | Op::Check => {
            let table = rs.ensure_table(cmd.table);
            if table.chain(&chain_name).is_none() {
                // ENOENT from TC_DELETE_ENTRY / TC_CHECK_ENTRY (iptc_strerror's own text).
                return Err(CmdError::iptc(
                    "Bad rule (does a matching rule exist in that chain?)",
                ));
            }
            for r in &cmd.rules {
                if cmd.verbose {
                    out.stdout.push_str(&verbose_echo(r));
                }
                refuse_builtin_jump(table, r)?;
                let chain = table
                    .chain_mut(&chain_name)
                    .ok_or_else(|| CmdError::iptc(NO_CHAIN))?;
                let Some(pos) = chain.rules.iter().position(|x| x.same_spec(r)) else {
                    return Err(not_found(r));
                };
                if cmd.op == Op::Delete {
                    chain.rules.remove(pos);
                }
            }
            out.modified |= cmd.op == Op::Delete;
        }
        Op::DeleteNum(n) => {
            let table = rs.ensure_table(cmd.table);
            let chain = chain_mut(table, &chain_name)?;
            let n = *n as usize;
            if n > chain.rules.len() {
                return Err(CmdError::iptc("Index of deletion too big"));
            }
            chain.rules.remove(n - 1);
            out.modified = true;
        }
        Op::List { zero, rulenum } => {
            let table = rs.ensure_table(cmd.table);
            out.stdout = list_table(table, cmd.chain.as_deref(), *rulenum, &fmt)?;
            if *zero {
                out.stdout
                    .push_str(&zero_chains(table, cmd.chain.as_deref(), cmd.verbose)?);
                out.modified = true;
            }
        }
        Op::ListRules { rulenum, zero } => {
            let table = rs.ensure_table(cmd.table);
            out.stdout = list_rules(table, cmd.chain.as_deref(), *rulenum, cmd.verbose)?;
            if *zero {
                out.stdout
                    .push_str(&zero_chains(table, cmd.chain.as_deref(), cmd.verbose)?);
                out.modified = true;
            }
        }
        Op::Flush => {
            let table = rs.ensure_table(cmd.table);
            let names: Vec<String> = match &cmd.chain {
                Some(c) => vec![chain_mut(table, c)?.name.clone()],
                None => table.chains.iter().map(|c| c.name.clone()).collect(),
            };
            for n in names {
                if cmd.verbose {
                    out.stdout.push_str(&format!("Flushing chain `{n}'\n"));
                }
                chain_mut(table, &n)?.rules.clear();
            }
            out.modified = true;
        }
        Op::Zero { rulenum } => {
            let table = rs.ensure_table(cmd.table);
            match rulenum {
                Some(n) => {
                    let chain = chain_mut(table, &chain_name)?;
                    // libiptc ignores a rule number past the end.
                    if let Some(r) = chain.rules.get_mut(*n as usize - 1) {
                        r.counters = Default::default();
                    }
                }
                None => {
                    out.stdout
                        .push_str(&zero_chains(table, cmd.chain.as_deref(), cmd.verbose)?)
                }
            }
            out.modified = true;
        }
        Op::NewChain => {
            let table = rs.ensure_table(cmd.table);
            if table.chain(&chain_name).is_some() {
                return Err(CmdError::iptc("Chain already exists"));
            }
            table.add_user_chain(&chain_name);
            out.modified = true;
        }
        Op::DeleteChain => {
            let table = rs.ensure_table(cmd.table);
            let names: Vec<String> = match &cmd.chain {
                Some(c) => vec![c.clone()],
                None => table
                    .chains
                    .iter()
                    .filter(|c| !c.is_builtin())
                    .map(|c| c.name.clone())
                    .collect(),
            };
            let mut last_err = None;
            for n in names {
                if cmd.verbose {
                    out.stdout.push_str(&format!("Deleting chain `{n}'\n"));
                }
                if let Err(e) = delete_chain(table, &n) {
                    last_err = Some(e);
                }
            }
            if let Some(mut e) = last_err {
                e.stdout = std::mem::take(&mut out.stdout);
                return Err(e);
            }
            out.modified = true;
        }
        Op::Rename(new) => {
            let table = rs.ensure_table(cmd.table);
            // `iptc_rename_chain`: the new name first (a chain, or a standard verdict).
            let verdict = ["DROP", "ACCEPT", "QUEUE", "RETURN"].contains(&new.as_str());
            if verdict || table.chain(new).is_some() {
                return Err(CmdError::iptc("File exists"));
            }
            match table.chain(&chain_name) {
                Some(c) if !c.is_builtin() => {}
                _ => return Err(CmdError::iptc(NO_CHAIN)),
            }
            chain_mut(table, &chain_name)?.name = new.clone();
            for r in table.rules_mut() {
                match &mut r.target {
                    Target::Jump(c) | Target::Goto(c) if *c == chain_name => *c = new.clone(),
                    _ => {}
                }
            }
            table.sort_user_chains();
            out.modified = true;
        }
        Op::Policy(p) => {
            let table = rs.ensure_table(cmd.table);
            let Some(chain) = table.chain_mut(&chain_name).filter(|c| c.is_builtin()) else {
                return Err(CmdError::iptc("Bad built-in chain name"));
            };
            chain.policy = match p.as_str() {
                "ACCEPT" => Policy::Accept,
                "DROP" => Policy::Drop,
                _ => {
                    return Err(CmdError::iptc(
                        "Bad policy name. Run `dmesg' for more information",
                    ))
                }
            };
            if let Some(c) = cmd.counters {
                chain.policy_counters = c;
            }
            out.modified = true;
        }
    }
    Ok(())
}

fn delete_chain(table: &mut Table, name: &str) -> CmdResult<()> {
    let Some(idx) = table.chain_index(name) else {
        return Err(CmdError::iptc(NO_CHAIN));
    };
    if table.chains[idx].is_builtin() {
        return Err(CmdError::iptc(
            "Invalid argument. Run `dmesg' for more information",
        ));
    }
    if table.references(name) > 0 {
        return Err(CmdError::iptc("Too many links"));
    }
    if !table.chains[idx].rules.is_empty() {
        return Err(CmdError::iptc("Directory not empty"));
    }
    table.chains.remove(idx);
    Ok(())
}

fn zero_chains(table: &mut Table, chain: Option<&str>, verbose: bool) -> CmdResult<String> {
    let mut msgs = String::new();
    let names: Vec<String> = match chain {
        Some(c) => vec![chain_mut(table, c)?.name.clone()],
        None => table.chains.iter().map(|c| c.name.clone()).collect(),
    };
    for n in names {
        if verbose {
            msgs.push_str(&format!("Zeroing chain `{n}'\n"));
        }
        let c = chain_mut(table, &n)?;
        c.policy_counters = Default::default();
        for r in c.rules.iter_mut() {
            r.counters = Default::default();
        }
    }
    Ok(msgs)
}

/// `-L [chain [rulenum]]`.
pub fn list_table(
    table: &Table,
    chain: Option<&str>,
    rulenum: Option<u32>,
    f: &ListFormat,
) -> CmdResult<String> {
    let mut out = String::new();
    match chain {
        Some(name) => {
            let c = table.chain(name).ok_or_else(|| CmdError::iptc(NO_CHAIN))?;
            match rulenum {
                Some(n) => {
                    if let Some(r) = c.rules.get(n as usize - 1) {
                        out.push_str(&list::rule_line(r, n as usize, f));
                    }
                }
                None => out.push_str(&list::list_chain(table, c, f)),
            }
        }
        None => {
            for (i, c) in table.chains.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                out.push_str(&list::list_chain(table, c, f));
            }
        }
    }
    Ok(out)
}

/// `-S [chain [rulenum]]`.
pub fn list_rules(
    table: &Table,
    chain: Option<&str>,
    rulenum: Option<u32>,
    counters: bool,
) -> CmdResult<String> {
    let mut out = String::new();
    let chains: Vec<&Chain> = match chain {
        Some(name) => vec![table.chain(name).ok_or_else(|| CmdError::iptc(NO_CHAIN))?],
        None => table.chains.iter().collect(),
    };
    if let Some(n) = rulenum {
        let c = chains[0];
        if let Some(r) = c.rules.get(n as usize - 1) {
            out.push_str(&save::rule_line(&c.name, r, counters));
            out.push('\n');
        }
        return Ok(out);
    }
    for c in &chains {
        out.push_str(&save::chain_header(c, counters));
        out.push('\n');
    }
    for c in &chains {
        for r in &c.rules {
            out.push_str(&save::rule_line(&c.name, r, counters));
            out.push('\n');
        }
    }
    Ok(out)
}
