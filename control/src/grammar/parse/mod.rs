//! `do_parse`: one iptables command line → a [`Command`].
//!
//! getopt_long semantics are reproduced by hand: short option clusters (`-nvL`), attached or
//! separate arguments, `--long=value`, unique prefixes of long options (including the options of
//! extensions loaded so far, newest first), `!` inverting the next option, and the implicit load
//! of the protocol's match (`-p tcp --dport 22` → `-m tcp`).

mod base;

use super::ext::{self, MatchExt, OptSpec, ParseCtx, TargetExt};
use super::values;
use crate::error::{CmdError, CmdResult};
use base::base_option;
use classifier::{Counters, FragMatch, Inv, Match, Rule, TableKind, Target};

/// What the command does. Chain names are raw strings, checked when the command runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Append,
    Check,
    Delete,
    DeleteNum(u32),
    Insert(u32),
    Replace(u32),
    List { zero: bool, rulenum: Option<u32> },
    ListRules { rulenum: Option<u32>, zero: bool },
    Flush,
    Zero { rulenum: Option<u32> },
    NewChain,
    DeleteChain,
    Rename(String),
    Policy(String),
}

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub table: TableKind,
    pub table_name: String,
    pub op: Op,
    pub chain: Option<String>,
    /// The rule(s) of -A/-C/-D/-I/-R: one per (source, destination) pair of the comma lists.
    pub rules: Vec<Rule>,
    pub numeric: bool,
    pub verbose: bool,
    pub exact: bool,
    pub line_numbers: bool,
    pub counters: Option<Counters>,
    /// `-w [secs]`: None = not given, Some(None) = wait forever, Some(Some(s)) = at most s.
    pub wait: Option<Option<u32>>,
    /// Warnings iptables prints on stderr even when the command succeeds.
    pub notes: String,
    /// Inside iptables-restore: the kernel checks run at COMMIT, not after each rule.
    pub defer_check: bool,
}

/// Whether the line comes from the command line or from an `iptables-restore` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseMode {
    Command,
    Restore,
    /// Loading pollwall's rules file: as Restore, but accepts the 29-character chain names
    /// that `-E` can create.
    Store,
}

// Command bits, in the order of iptables' `commands_v_options` rows.
const CMD_INSERT: u16 = 1 << 0;
const CMD_DELETE: u16 = 1 << 1;
const CMD_DELETE_NUM: u16 = 1 << 2;
const CMD_REPLACE: u16 = 1 << 3;
const CMD_APPEND: u16 = 1 << 4;
const CMD_LIST: u16 = 1 << 5;
const CMD_FLUSH: u16 = 1 << 6;
const CMD_ZERO: u16 = 1 << 7;
const CMD_NEW_CHAIN: u16 = 1 << 8;
const CMD_DELETE_CHAIN: u16 = 1 << 9;
const CMD_SET_POLICY: u16 = 1 << 10;
const CMD_RENAME_CHAIN: u16 = 1 << 11;
const CMD_LIST_RULES: u16 = 1 << 12;
const CMD_ZERO_NUM: u16 = 1 << 13;
const CMD_CHECK: u16 = 1 << 14;
const CMD_CHARS: [char; 15] = [
    'I', 'D', 'D', 'R', 'A', 'L', 'F', 'Z', 'N', 'X', 'P', 'E', 'S', 'Z', 'C',
];

// Option bits, in the order of the columns.
const OPT_NUMERIC: u16 = 1 << 0;
const OPT_SOURCE: u16 = 1 << 1;
const OPT_DESTINATION: u16 = 1 << 2;
const OPT_PROTOCOL: u16 = 1 << 3;
const OPT_JUMP: u16 = 1 << 4;
const OPT_VERBOSE: u16 = 1 << 5;
const OPT_EXPANDED: u16 = 1 << 6;
const OPT_VIANAMEIN: u16 = 1 << 7;
const OPT_VIANAMEOUT: u16 = 1 << 8;
const OPT_LINENUMBERS: u16 = 1 << 9;
const OPT_COUNTERS: u16 = 1 << 10;
const OPT_FRAGMENT: u16 = 1 << 11;
const OPT_CHARS: [char; 12] = ['n', 's', 'd', 'p', 'j', 'v', 'x', 'i', 'o', '0', 'c', 'f'];
/// Which options may be inverted (`inverse_for_options`).
const OPT_INVERTIBLE: u16 =
    OPT_SOURCE | OPT_DESTINATION | OPT_PROTOCOL | OPT_VIANAMEIN | OPT_VIANAMEOUT | OPT_FRAGMENT;

/// `commands_v_options`: 'x' = illegal with this command.
const COMMANDS_V_OPTIONS: [&[u8; 12]; 15] = [
    b"x     x  x  ", // INSERT
    b"x     x  xx ", // DELETE
    b"xxxxx xxxxxx", // DELETE_NUM
    b"x     x  x  ", // REPLACE
    b"x     x  x  ", // APPEND
    b" xxxx  xx xx", // LIST
    b"xxxxx xxxxxx", // FLUSH
    b"xxxxx xxxxxx", // ZERO
    b"xxxxx xxxxxx", // NEW_CHAIN
    b"xxxxx xxxxxx", // DEL_CHAIN
    b"xxxxx xxxx x", // SET_POLICY
    b"xxxxx xxxxxx", // RENAME
    b"xxxxx xxxxxx", // LIST_RULES
    b"xxxxx xxxxxx", // ZERO_NUM
    b"x     x  xx ", // CHECK
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum HasArg {
    No,
    Required,
    Optional,
}

/// Base long options (`original_opts`), mapped to their short letter ('0' = --line-numbers).
const BASE_LONG: &[(&str, HasArg, char)] = &[
    ("append", HasArg::Required, 'A'),
    ("delete", HasArg::Required, 'D'),
    ("check", HasArg::Required, 'C'),
    ("insert", HasArg::Required, 'I'),
    ("replace", HasArg::Required, 'R'),
    ("list", HasArg::Optional, 'L'),
    ("list-rules", HasArg::Optional, 'S'),
    ("flush", HasArg::Optional, 'F'),
    ("zero", HasArg::Optional, 'Z'),
    ("new-chain", HasArg::Required, 'N'),
    ("delete-chain", HasArg::Optional, 'X'),
    ("rename-chain", HasArg::Required, 'E'),
    ("policy", HasArg::Required, 'P'),
    ("source", HasArg::Required, 's'),
    ("destination", HasArg::Required, 'd'),
    ("src", HasArg::Required, 's'),
    ("dst", HasArg::Required, 'd'),
    ("protocol", HasArg::Required, 'p'),
    ("in-interface", HasArg::Required, 'i'),
    ("jump", HasArg::Required, 'j'),
    ("table", HasArg::Required, 't'),
    ("match", HasArg::Required, 'm'),
    ("numeric", HasArg::No, 'n'),
    ("out-interface", HasArg::Required, 'o'),
    ("verbose", HasArg::No, 'v'),
    ("wait", HasArg::Optional, 'w'),
    ("wait-interval", HasArg::Optional, 'W'),
    ("exact", HasArg::No, 'x'),
    ("fragments", HasArg::No, 'f'),
    ("version", HasArg::No, 'V'),
    ("help", HasArg::Optional, 'h'),
    ("line-numbers", HasArg::No, '0'),
    ("modprobe", HasArg::Required, 'M'),
    ("set-counters", HasArg::Required, 'c'),
    ("goto", HasArg::Required, 'g'),
    ("ipv4", HasArg::No, '4'),
    ("ipv6", HasArg::No, '6'),
];

/// Short options and their argument kind.
fn short_arg(c: char) -> Option<HasArg> {
    Some(match c {
        'A' | 'C' | 'D' | 'R' | 'I' | 'N' | 'E' | 'P' | 'M' | 'o' | 'p' | 's' | 'd' | 'j' | 'i'
        | 't' | 'm' | 'c' | 'g' => HasArg::Required,
        'L' | 'S' | 'F' | 'Z' | 'X' | 'h' | 'w' | 'W' => HasArg::Optional,
        'V' | 'f' | 'v' | 'n' | 'x' | '4' | '6' => HasArg::No,
        _ => return None,
    })
}

/// A long option known at some point of the parse: name, argument kind, owner.
type LongOpt = (&'static str, HasArg, Owner);

/// Who owns a resolved option.
#[derive(Clone, Copy)]
enum Owner {
    Base(char),
    Match(usize, &'static OptSpec),
    Target(&'static OptSpec),
}

struct LoadedMatch {
    ext: &'static MatchExt,
    m: Match,
    seen: u32,
    /// Load order (higher = newer); newer extensions' options win.
    seq: usize,
}

struct LoadedTarget {
    ext: &'static TargetExt,
    t: Target,
    seen: u32,
    seq: usize,
}

struct State<'a> {
    args: &'a [String],
    pos: usize,
    mode: ParseMode,
    command: u16,
    options: u16,
    invert: bool,
    chain: Option<String>,
    rulenum: Option<u32>,
    newname: Option<String>,
    policy: Option<String>,
    table_name: String,
    table_set: bool,
    rule: Rule,
    src: Option<String>,
    dst: Option<String>,
    inv_src: bool,
    inv_dst: bool,
    matches: Vec<LoadedMatch>,
    target: Option<LoadedTarget>,
    jumpto: Option<String>,
    goto: bool,
    proto_used: bool,
    seq: usize,
    counters: Option<Counters>,
    wait: Option<Option<u32>>,
    wait_interval: bool,
    notes: String,
}

fn cmd_char(cmd: u16) -> char {
    CMD_CHARS[cmd.trailing_zeros() as usize]
}

impl<'a> State<'a> {
    /// The next argument if it is not an option and not `!` (iptables' optional trailing args).
    fn next_plain(&mut self) -> Option<String> {
        let a = self.args.get(self.pos)?;
        if a.starts_with('-') || a.starts_with('!') {
            return None;
        }
        self.pos += 1;
        Some(a.clone())
    }

    fn add_command(&mut self, newcmd: u16, others: u16) -> CmdResult<()> {
        if self.invert {
            return Err(CmdError::param("unexpected ! flag"));
        }
        if self.command & !others != 0 {
            return Err(CmdError::param(format!(
                "Cannot use -{} with -{}",
                cmd_char(newcmd),
                cmd_char(self.command & !others)
            )));
        }
        self.command |= newcmd;
        Ok(())
    }

    fn set_option(&mut self, opt: u16) -> CmdResult<()> {
        let ch = OPT_CHARS[opt.trailing_zeros() as usize];
        if self.options & opt != 0 {
            return Err(CmdError::param(format!("multiple -{ch} flags not allowed")));
        }
        self.options |= opt;
        if self.invert && OPT_INVERTIBLE & opt == 0 {
            return Err(CmdError::param(format!("cannot have ! before -{ch}")));
        }
        Ok(())
    }

    fn ctx(&self) -> ParseCtx {
        ParseCtx {
            proto: self.rule.proto.clone(),
            table: TableKind::from_name(&self.table_name),
        }
    }

    fn load_match(&mut self, ext: &'static MatchExt) {
        self.seq += 1;
        self.matches.push(LoadedMatch {
            ext,
            m: (ext.init)(),
            seen: 0,
            seq: self.seq,
        });
    }

    /// Every long option currently known, newest extension first after the base options.
    fn long_options(&self) -> Vec<LongOpt> {
        let mut v: Vec<LongOpt> = BASE_LONG
            .iter()
            .map(|(n, a, c)| (*n, *a, Owner::Base(*c)))
            .collect();
        let mut exts: Vec<(usize, Vec<LongOpt>)> = Vec::new();
        for (i, lm) in self.matches.iter().enumerate() {
            let opts = lm
                .ext
                .opts
                .iter()
                .map(|o| (o.name, arg_kind(o), Owner::Match(i, o)))
                .collect();
            exts.push((lm.seq, opts));
        }
        if let Some(t) = &self.target {
            let opts = t
                .ext
                .opts
                .iter()
                .map(|o| (o.name, arg_kind(o), Owner::Target(o)))
                .collect();
            exts.push((t.seq, opts));
        }
        exts.sort_by_key(|e| std::cmp::Reverse(e.0));
        for (_, opts) in exts {
            v.extend(opts);
        }
        v
    }

    fn same_owner(a: &Owner, b: &Owner) -> bool {
        match (a, b) {
            (Owner::Base(x), Owner::Base(y)) => x == y,
            (Owner::Match(i, o), Owner::Match(j, p)) => i == j && std::ptr::eq(*o, *p),
            (Owner::Target(o), Owner::Target(p)) => std::ptr::eq(*o, *p),
            _ => false,
        }
    }

    /// getopt_long's lookup: exact name first, then a unique prefix.
    fn resolve_long(&self, name: &str) -> Option<(HasArg, Owner)> {
        // Fast path, no allocation: base options come first in the table, so an exact base
        // name always wins.
        if let Some((_, a, c)) = BASE_LONG.iter().find(|(n, _, _)| *n == name) {
            return Some((*a, Owner::Base(*c)));
        }
        let all = self.long_options();
        if let Some((_, a, o)) = all.iter().find(|(n, _, _)| *n == name) {
            return Some((*a, *o));
        }
        let cands: Vec<_> = all.iter().filter(|(n, _, _)| n.starts_with(name)).collect();
        let first = cands.first()?;
        if cands
            .iter()
            .all(|c| Self::same_owner(&c.2, &first.2) && c.1 == first.1)
        {
            Some((first.1, first.2))
        } else {
            None
        }
    }
}

fn arg_kind(o: &OptSpec) -> HasArg {
    if o.has_arg {
        HasArg::Required
    } else {
        HasArg::No
    }
}

/// Parses one command line (`args` excludes the program name).
pub fn parse_command(args: &[String], mode: ParseMode) -> CmdResult<Command> {
    parse_command_in(args, mode, "filter")
}

/// [`parse_command`] of a line of table `table` (iptables-restore runs each rule line with
/// `-t TABLE` in front, so the table's own checks, nat's DROP refusal among them, apply).
pub fn parse_command_in(args: &[String], mode: ParseMode, table: &str) -> CmdResult<Command> {
    let mut st = State {
        args,
        pos: 0,
        mode,
        command: 0,
        options: 0,
        invert: false,
        chain: None,
        rulenum: None,
        newname: None,
        policy: None,
        table_name: table.to_string(),
        table_set: false,
        rule: Rule::default(),
        src: None,
        dst: None,
        inv_src: false,
        inv_dst: false,
        matches: Vec::new(),
        target: None,
        jumpto: None,
        goto: false,
        proto_used: false,
        seq: 0,
        counters: None,
        wait: None,
        wait_interval: false,
        notes: String::new(),
    };
    // What a parser printed on the way (iprange's reversed-range warning) shows before an
    // error too, as iptables' fprintf did.
    if let Err(e) = options(&mut st) {
        return Err(e.with_notes(&st.notes));
    }
    let notes = st.notes.clone();
    finish(st).map_err(|e| {
        if e.notes.is_empty() {
            e.with_notes(&notes)
        } else {
            e
        }
    })
}

/// The option loop of a command line.
fn options(st: &mut State) -> CmdResult<()> {
    let args = st.args;
    while st.pos < args.len() {
        let tok = args[st.pos].clone();
        st.pos += 1;
        if tok == "!" {
            if st.invert {
                return Err(CmdError::param("multiple consecutive ! not allowed"));
            }
            st.invert = true;
            continue;
        }
        if let Some(long) = tok.strip_prefix("--") {
            if long.is_empty() {
                // "--" ends option processing in getopt; iptables then rejects what follows.
                if st.pos < args.len() {
                    return Err(bad_argument(&args[st.pos]));
                }
                break;
            }
            let (name, inline) = match long.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (long, None),
            };
            let resolved = match st.resolve_long(name) {
                Some(r) => Some(r),
                None if try_load_proto(st) => st.resolve_long(name),
                None => None,
            };
            let Some((has_arg, owner)) = resolved else {
                return Err(CmdError::param(format!("unknown option \"{tok}\"")));
            };
            let arg = match has_arg {
                HasArg::No => {
                    if inline.is_some() {
                        return Err(CmdError::param(format!(
                            "option \"--{name}\" doesn't allow an argument"
                        )));
                    }
                    None
                }
                HasArg::Required => match inline {
                    Some(v) => Some(v),
                    None => {
                        let Some(v) = args.get(st.pos) else {
                            return Err(CmdError::param(format!(
                                "option \"{tok}\" requires an argument"
                            )));
                        };
                        st.pos += 1;
                        Some(v.clone())
                    }
                },
                HasArg::Optional => inline,
            };
            dispatch(st, owner, arg, &tok)?;
            continue;
        }
        if tok.len() > 1 && tok.starts_with('-') {
            let chars: Vec<char> = tok[1..].chars().collect();
            let mut i = 0;
            while i < chars.len() {
                let c = chars[i];
                i += 1;
                let Some(kind) = short_arg(c) else {
                    return Err(CmdError::param(format!("unknown option \"-{c}\"")));
                };
                let rest: String = chars[i..].iter().collect();
                let arg = match kind {
                    HasArg::No => None,
                    HasArg::Required => {
                        i = chars.len();
                        if !rest.is_empty() {
                            Some(rest)
                        } else if let Some(v) = args.get(st.pos) {
                            st.pos += 1;
                            Some(v.clone())
                        } else {
                            return Err(CmdError::param(format!(
                                "option \"-{c}\" requires an argument"
                            )));
                        }
                    }
                    HasArg::Optional => {
                        i = chars.len();
                        (!rest.is_empty()).then_some(rest)
                    }
                };
                dispatch(st, Owner::Base(c), arg, &tok)?;
            }
            continue;
        }
        return Err(bad_argument(&tok));
    }
    if st.invert {
        return Err(CmdError::param("nothing appropriate following !"));
    }
    Ok(())
}

fn bad_argument(tok: &str) -> CmdError {
    CmdError::plain(
        2,
        format!(
            "Bad argument `{tok}'\nTry `iptables -h' or 'iptables --help' for more information.\n"
        ),
    )
}

/// `load_proto`: `-p NAME` makes the NAME match available for options it knows.
fn try_load_proto(st: &mut State) -> bool {
    if st.proto_used {
        return false;
    }
    // 1.8.9 loads it for `! -p` too; the kernel then refuses the rule (EINVAL).
    let Some(p) = &st.rule.proto else {
        return false;
    };
    let Some(name) = crate::names::protocol_name(p.value) else {
        return false;
    };
    let Some(ext) = ext::find_match(name) else {
        return false;
    };
    st.proto_used = true;
    st.load_match(ext);
    true
}

fn parse_rulenum(s: &str) -> CmdResult<u32> {
    values::parse_uint(s, 1, i32::MAX as u64)
        .map(|v| v as u32)
        .ok_or_else(|| CmdError::param(format!("Invalid rule number `{s}'")))
}

fn dispatch(st: &mut State, owner: Owner, arg: Option<String>, tok: &str) -> CmdResult<()> {
    let invert = st.invert;
    match owner {
        Owner::Match(i, spec) => {
            if invert && !spec.invertible {
                let lm = &st.matches[i];
                return Err(CmdError::param(format!(
                    "{}: option \"--{}\" cannot be inverted.\n",
                    lm.ext.name, spec.name
                )));
            }
            let ctx = st.ctx();
            let mut arg = arg.unwrap_or_default();
            if spec.name == "tcp-flags" {
                // The one option that takes two arguments: mask and comparison.
                match st.next_plain() {
                    Some(cmp) => arg = format!("{arg}\u{0}{cmp}"),
                    None => return Err(CmdError::param("--tcp-flags requires two args.")),
                }
            }
            let lm = &mut st.matches[i];
            (lm.ext.parse)(&mut lm.m, &mut lm.seen, spec, &arg, invert, &ctx)?;
            lm.seen |= 1 << spec.id;
            if let classifier::Match::Iprange(r) = &lm.m {
                let range = if spec.name == "src-range" {
                    &r.src
                } else {
                    &r.dst
                };
                if let Some((lo, hi)) = range.as_ref().map(|x| x.value) {
                    if u32::from(lo) > u32::from(hi) {
                        st.notes.push_str(&format!(
                            "xt_iprange: range {lo}-{hi} is reversed and will never match\n"
                        ));
                    }
                }
            }
            st.invert = false;
            return Ok(());
        }
        Owner::Target(spec) => {
            let ctx = st.ctx();
            let lt = st
                .target
                .as_mut()
                .expect("target options only resolve when a target is loaded");
            if invert && !spec.invertible {
                return Err(CmdError::param(format!(
                    "{}: option \"--{}\" cannot be inverted.\n",
                    lt.ext.name, spec.name
                )));
            }
            (lt.ext.parse)(
                &mut lt.t,
                &mut lt.seen,
                spec,
                arg.as_deref().unwrap_or(""),
                invert,
                &ctx,
            )?;
            lt.seen |= 1 << spec.id;
            st.invert = false;
            return Ok(());
        }
        Owner::Base(c) => base_option(st, c, arg, tok)?,
    }
    st.invert = false;
    Ok(())
}

fn finish(mut st: State) -> CmdResult<Command> {
    let is_nat = st.table_name == "nat";
    if is_nat && (st.policy.as_deref() == Some("DROP") || st.jumpto.as_deref() == Some("DROP")) {
        return Err(CmdError::param(
            "\nThe \"nat\" table is not intended for filtering, the use of DROP is therefore inhibited.\n\n",
        ));
    }
    if st.wait_interval && st.wait.is_none() {
        let e = CmdError::param("--wait-interval only makes sense with --wait\n");
        return Err(e.with_notes(&st.notes));
    }
    let ctx = st.ctx();
    for lm in st.matches.iter_mut() {
        (lm.ext.finish)(&mut lm.m, lm.seen, &ctx)?;
    }
    if let Some(lt) = st.target.as_mut() {
        (lt.ext.finish)(&mut lt.t, lt.seen, &ctx)?;
    }
    if st.command == 0 {
        return Err(CmdError::param("no command specified"));
    }
    let srcs = match &st.src {
        Some(s) => values::parse_net_list(s)?,
        None => vec![classifier::Ipv4Net::ANY],
    };
    let dsts = match &st.dst {
        Some(s) => values::parse_net_list(s)?,
        None => vec![classifier::Ipv4Net::ANY],
    };
    if (srcs.len() > 1 || dsts.len() > 1) && (st.inv_src || st.inv_dst) {
        return Err(CmdError::param(
            "! not allowed with multiple source or destination IP addresses",
        ));
    }
    if st.command == CMD_REPLACE && (srcs.len() != 1 || dsts.len() != 1) {
        return Err(CmdError::param(
            "Replacement rule does not specify a unique address",
        ));
    }
    generic_opt_check(st.command, st.options)?;
    if let Some(chain) = &st.chain {
        if chain.len() > classifier::MAX_CHAIN_NAME_LEN + usize::from(st.mode == ParseMode::Store) {
            return Err(CmdError::param(format!(
                "chain name `{chain}' too long (must be under 29 chars)"
            )));
        }
    }
    let rule_cmd = CMD_APPEND | CMD_DELETE | CMD_CHECK | CMD_INSERT | CMD_REPLACE;
    if st.command & rule_cmd != 0 {
        let chain = st.chain.as_deref().unwrap_or("");
        if matches!(chain, "PREROUTING" | "INPUT") && st.options & OPT_VIANAMEOUT != 0 {
            return Err(CmdError::param(format!("Can't use -o with {chain}\n")));
        }
        if matches!(chain, "POSTROUTING" | "OUTPUT") && st.options & OPT_VIANAMEIN != 0 {
            return Err(CmdError::param(format!("Can't use -i with {chain}\n")));
        }
    }
    let table = match TableKind::from_name(&st.table_name) {
        Some(t) => t,
        None => {
            return Err(CmdError::version(format!(
            "can't initialize iptables table `{}': Table does not exist (do you need to insmod?)",
            st.table_name
        )))
        }
    };
    // The target: an extension, a standard verdict, or a user chain.
    let target = match (&st.target, &st.jumpto) {
        (Some(lt), _) => lt.t.clone(),
        (None, None) => Target::None,
        (None, Some(name)) => {
            let std = match name.as_str() {
                "ACCEPT" => Some(Target::Accept),
                "DROP" => Some(Target::Drop),
                "RETURN" => Some(Target::Return),
                "QUEUE" => Some(Target::Queue),
                "" => Some(Target::None),
                _ => None,
            };
            match std {
                Some(t) if !st.goto => t,
                _ if st.goto => Target::Goto(name.clone()),
                _ => Target::Jump(name.clone()),
            }
        }
    };
    let mut rules = Vec::new();
    if st.command & rule_cmd != 0 {
        st.rule.matches = std::mem::take(&mut st.matches)
            .into_iter()
            .map(|lm| lm.m)
            .collect();
        st.rule.target = target;
        if let Some(c) = st.counters {
            st.rule.counters = c;
        }
        let pairs = srcs.len() * dsts.len();
        for s in &srcs {
            for d in &dsts {
                let mut r = if rules.len() + 1 == pairs {
                    std::mem::take(&mut st.rule)
                } else {
                    st.rule.clone()
                };
                // 0.0.0.0/0 without `!` is stored as "no address", as the kernel entry does.
                if st.src.is_some() && (st.inv_src || !s.is_any()) {
                    r.src = Some(Inv::new(*s, st.inv_src));
                }
                if st.dst.is_some() && (st.inv_dst || !d.is_any()) {
                    r.dst = Some(Inv::new(*d, st.inv_dst));
                }
                rules.push(r);
            }
        }
    }
    let op = match st.command {
        CMD_APPEND => Op::Append,
        CMD_CHECK => Op::Check,
        CMD_DELETE => Op::Delete,
        CMD_DELETE_NUM => Op::DeleteNum(st.rulenum.unwrap_or(1)),
        CMD_INSERT => Op::Insert(st.rulenum.unwrap_or(1)),
        CMD_REPLACE => Op::Replace(st.rulenum.unwrap_or(1)),
        CMD_LIST => Op::List {
            zero: false,
            rulenum: st.rulenum,
        },
        c if c == CMD_LIST | CMD_ZERO || c == CMD_LIST | CMD_ZERO_NUM => Op::List {
            zero: true,
            rulenum: st.rulenum,
        },
        CMD_LIST_RULES => Op::ListRules {
            rulenum: st.rulenum,
            zero: false,
        },
        c if c & CMD_LIST_RULES != 0 => Op::ListRules {
            rulenum: st.rulenum,
            zero: true,
        },
        CMD_FLUSH => Op::Flush,
        CMD_ZERO | CMD_ZERO_NUM => Op::Zero {
            rulenum: st.rulenum,
        },
        CMD_NEW_CHAIN => Op::NewChain,
        CMD_DELETE_CHAIN => Op::DeleteChain,
        CMD_RENAME_CHAIN => Op::Rename(st.newname.clone().unwrap_or_default()),
        CMD_SET_POLICY => Op::Policy(st.policy.clone().unwrap_or_default()),
        _ => return Err(CmdError::param("no command specified")),
    };
    Ok(Command {
        table,
        table_name: st.table_name,
        op,
        chain: st.chain,
        rules,
        numeric: st.options & OPT_NUMERIC != 0,
        verbose: st.options & OPT_VERBOSE != 0,
        exact: st.options & OPT_EXPANDED != 0,
        line_numbers: st.options & OPT_LINENUMBERS != 0,
        counters: st.counters,
        wait: st.wait,
        notes: st.notes,
        defer_check: false,
    })
}

fn generic_opt_check(command: u16, options: u16) -> CmdResult<()> {
    for (i, ch) in OPT_CHARS.iter().enumerate() {
        if options & (1 << i) == 0 {
            continue;
        }
        let mut legal = 0i8;
        for (j, row) in COMMANDS_V_OPTIONS.iter().enumerate() {
            if command & (1 << j) == 0 {
                continue;
            }
            if row[i] != b'x' {
                legal = 1;
            } else if legal == 0 {
                legal = -1;
            }
        }
        if legal == -1 {
            let name = ch.to_string();
            return Err(CmdError::param(format!(
                "Illegal option `-{name}' with this command"
            )));
        }
    }
    Ok(())
}
