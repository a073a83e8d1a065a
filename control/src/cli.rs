//! The multi-call front end: `pollwall iptables|iptables-save|iptables-restore ARGS`, or the
//! same names as the program name (a link called `iptables` pointing at `pollwall`), as
//! xtables-multi does. [`run`] is the in-process entry point the tests use.

use crate::error::{exit, CmdError, CmdResult};
use crate::exec::execute;
use crate::grammar::save::save_table;
use crate::grammar::{parse_command, ParseMode};
use crate::restore::{restore, RestoreOptions};
use crate::store::{RulesFile, RulesetStore, Wait};
use classifier::TableKind;
use std::io::{Read, Write};
use std::time::Duration;

/// What one invocation printed and its exit code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunOutput {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
}

/// The process entry point of the `pollwall` binary.
pub fn main() -> i32 {
    let argv: Vec<String> = std::env::args().collect();
    let prog = argv
        .first()
        .map(|a| a.rsplit('/').next().unwrap_or(a).to_string())
        .unwrap_or_else(|| "pollwall".into());
    let (tool, args) = if is_tool(&prog) {
        (prog, argv[1..].to_vec())
    } else {
        match argv.get(1) {
            Some(sub) if is_tool(sub) => (sub.clone(), argv[2..].to_vec()),
            // pollwall's own subcommands, help and version: clap.
            _ => return crate::commands::main(&argv),
        }
    };
    let store = RulesFile::from_env();
    let store = store
        .as_ref()
        .map(|s| s as &dyn RulesetStore)
        .map_err(Clone::clone);
    let out = run(&tool, &args, &mut std::io::stdin().lock(), store);
    let _ = std::io::stdout().write_all(out.stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    out.code
}

fn is_tool(name: &str) -> bool {
    matches!(name, "iptables" | "iptables-save" | "iptables-restore")
}

/// Runs one tool invocation against `store` (or the error explaining why there is none).
pub fn run(
    tool: &str,
    args: &[String],
    stdin: &mut dyn Read,
    store: Result<&dyn RulesetStore, CmdError>,
) -> RunOutput {
    let res = match tool {
        "iptables" => run_iptables(args, store),
        "iptables-save" => run_save(args, store).map(|o| (o, String::new())),
        _ => run_restore(args, stdin, store),
    };
    match res {
        Ok((stdout, stderr)) => RunOutput {
            stdout,
            stderr,
            code: 0,
        },
        // -h and -V end parsing early but succeed.
        Err(e) if e.code == 0 => RunOutput {
            stdout: e.msg,
            stderr: String::new(),
            code: 0,
        },
        Err(e) => RunOutput {
            stdout: e.stdout.clone(),
            stderr: e.render(tool),
            code: e.code,
        },
    }
}

fn wait_of(w: Option<Option<u32>>) -> Wait {
    match w {
        Some(Some(secs)) => Wait(Some(Duration::from_secs(u64::from(secs)))),
        _ => Wait(None),
    }
}

fn run_iptables(
    args: &[String],
    store: Result<&dyn RulesetStore, CmdError>,
) -> CmdResult<(String, String)> {
    let cmd = parse_command(args, ParseMode::Command)?;
    let store = store?;
    let mut failed = None;
    let out = store
        .transact(wait_of(cmd.wait), &mut |rs| {
            let existed = rs.table(cmd.table).is_some();
            match execute(&cmd, rs) {
                Ok(out) => Ok((out.stdout, out.modified)),
                // iptables opened the table (`iptc_init`) before the command failed: the
                // kernel registered it, and iptables-save lists it from then on. Nothing else
                // of the command stays.
                Err(e) if !existed => {
                    rs.set_table(classifier::Table::new(cmd.table));
                    failed = Some(e);
                    Ok((String::new(), true))
                }
                Err(e) => Err(e),
            }
        })
        .map_err(|e| e.with_notes(&cmd.notes))?;
    if let Some(e) = failed {
        return Err(e.with_notes(&cmd.notes));
    }
    Ok((out, cmd.notes.clone()))
}

/// `ctime`-style local time, as iptables-save prints it.
fn now_text() -> String {
    let mut buf = [0 as libc::c_char; 64];
    // SAFETY: time(NULL) has no preconditions; ctime_r writes at most 26 bytes into our 64-byte
    // buffer and returns either NULL or a pointer into it.
    unsafe {
        let t = libc::time(std::ptr::null_mut());
        if libc::ctime_r(&t, buf.as_mut_ptr()).is_null() {
            return String::new();
        }
        std::ffi::CStr::from_ptr(buf.as_ptr())
            .to_string_lossy()
            .trim_end()
            .to_string()
    }
}

fn run_save(args: &[String], store: Result<&dyn RulesetStore, CmdError>) -> CmdResult<String> {
    let mut counters = false;
    let mut table: Option<String> = None;
    let mut file: Option<String> = None;
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        match a {
            "-c" | "--counters" => counters = true,
            "-t" | "--table" => {
                i += 1;
                table = Some(
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| unknown_option("iptables-save", a))?,
                );
            }
            "-M" | "--modprobe" => i += 1,
            "-f" | "--file" => {
                i += 1;
                file = Some(
                    args.get(i)
                        .cloned()
                        .ok_or_else(|| unknown_option("iptables-save", a))?,
                );
            }
            "-h" | "--help" => {
                return Err(CmdError::plain(
                    0,
                    "Usage: iptables-save [-c] [-t table] [-M modprobe]\n".to_string(),
                ))
            }
            "-V" | "--version" => {
                return Err(CmdError::plain(
                    0,
                    format!("iptables-save {}\n", crate::error::VERSION),
                ))
            }
            _ if a.starts_with("--table=") => table = Some(a["--table=".len()..].to_string()),
            _ => return Err(unknown_option("iptables-save", a)),
        }
        i += 1;
    }
    let kind = match &table {
        Some(t) => Some(TableKind::from_name(t).ok_or_else(|| {
            CmdError::other("Cannot initialize: Table does not exist (do you need to insmod?)")
        })?),
        None => None,
    };
    let store = store?;
    store
        .transact(Wait::default(), &mut |rs| {
            let mut out = String::new();
            let mut modified = false;
            if let Some(k) = kind {
                if rs.table(k).is_none() {
                    rs.ensure_table(k);
                    modified = true;
                }
            }
            let now = now_text();
            for t in &rs.tables {
                if kind.is_some_and(|k| k != t.kind) {
                    continue;
                }
                out.push_str(&format!("# Generated by iptables-save v1.8.9 on {now}\n"));
                out.push_str(&save_table(t, counters));
                out.push_str(&format!("# Completed on {now}\n"));
            }
            Ok((out, modified))
        })
        .and_then(|out| match &file {
            // `-f FILE`: the dump goes to the file instead of stdout.
            Some(f) => std::fs::write(f, out.as_bytes())
                .map(|_| String::new())
                .map_err(|e| {
                    CmdError::plain(
                        exit::OTHER_PROBLEM,
                        format!("Failed to open file, error: {e}\n"),
                    )
                }),
            None => Ok(out),
        })
}

/// getopt's message for an option a tool does not know (it names the first bad letter).
fn unknown_option(prog: &str, a: &str) -> CmdError {
    let msg = if a.starts_with("--") {
        format!("{prog}: unrecognized option '{a}'\nTry `{prog} -h' for more information.\n")
    } else {
        let c = a.trim_start_matches('-').chars().next().unwrap_or('?');
        format!("{prog}: invalid option -- '{c}'\nTry `{prog} -h' for more information.\n")
    };
    CmdError::plain(exit::OTHER_PROBLEM, msg)
}

fn run_restore(
    args: &[String],
    stdin: &mut dyn Read,
    store: Result<&dyn RulesetStore, CmdError>,
) -> CmdResult<(String, String)> {
    let mut opts = RestoreOptions::default();
    let mut file: Option<String> = None;
    let mut wait = Wait::default();
    let mut notes = String::new();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].clone();
        let long =
            |name: &str| a.len() > 2 && a.starts_with("--") && name[2..].starts_with(&a[2..]);
        if a == "-c" || long("--counters") {
            opts.counters = true;
        } else if a == "-n" || long("--noflush") {
            opts.noflush = true;
        } else if a == "-t" || long("--test") {
            opts.test = true;
        } else if a == "-v" || long("--verbose") {
            opts.verbose = true;
        } else if a == "-T" || long("--table") {
            i += 1;
            opts.table = Some(
                args.get(i)
                    .cloned()
                    .ok_or_else(|| unknown_option("iptables-restore", &a))?,
            );
        } else if a == "-w" || long("--wait") {
            if let Some(v) = args
                .get(i + 1)
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
            {
                wait = Wait(Some(Duration::from_secs(v.parse().unwrap_or(0))));
                i += 1;
            }
        } else if a == "-W" || long("--wait-interval") {
            notes.push_str("Ignoring deprecated --wait-interval option.\n");
            if args
                .get(i + 1)
                .is_some_and(|v| v.bytes().all(|b| b.is_ascii_digit()))
            {
                i += 1;
            }
        } else if a == "-M" || long("--modprobe") {
            i += 1;
        } else if a == "-h" || long("--help") {
            return Err(CmdError::plain(
                0,
                "Usage: iptables-restore [-c] [-v] [-V] [-t] [-h] [-n] [-w secs] [-T table] [-M command] [file]\n"
                    .to_string(),
            ));
        } else if a == "-V" || long("--version") {
            return Err(CmdError::plain(
                0,
                format!("iptables-restore {}\n", crate::error::VERSION),
            ));
        } else if a.starts_with('-') && a.len() > 1 {
            return Err(unknown_option("iptables-restore", &a));
        } else {
            file = Some(a);
        }
        i += 1;
    }
    let input = match &file {
        Some(f) => std::fs::read_to_string(f).map_err(|e| {
            CmdError::plain(
                exit::OTHER_PROBLEM,
                format!("Can't open {f}: {}\n", io_reason(&e)),
            )
        })?,
        None => {
            let mut s = String::new();
            stdin
                .read_to_string(&mut s)
                .map_err(|e| CmdError::plain(1, format!("iptables-restore: {e}\n")))?;
            s
        }
    };
    let store = store?;
    // Tables committed before a failure stay applied, as with iptables: the transaction stores
    // what was committed and the error is reported afterwards.
    let mut failure: Option<CmdError> = None;
    let out = store.transact(wait, &mut |rs| {
        let before = rs.clone();
        match restore(&input, &opts, rs) {
            Ok(out) => Ok((out, *rs != before)),
            Err(e) => {
                failure = Some(e);
                Ok((String::new(), *rs != before))
            }
        }
    })?;
    if let Some(mut e) = failure {
        e.stdout = out;
        if !notes.is_empty() {
            e.msg = format!("{notes}{}", e.msg);
        }
        return Err(e);
    }
    Ok((out, notes))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "No such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "Permission denied".into(),
        _ => e.to_string(),
    }
}
