//! `classbench2iptables [--chain CHAIN] [--target TARGET] INPUT [OUTPUT]`: converts a
//! ClassBench 5-field rule file (the `flags_6field` variants too; their flags field is ignored)
//! into an `iptables-restore` file for the `filter` table, one `-A CHAIN ... -j TARGET` per
//! rule in priority order. The chain defaults to `FORWARD` and the target to `ACCEPT`; a
//! built-in chain gets policy `DROP`. INPUT `-` reads standard input; without OUTPUT the
//! result goes to standard output.
//!
//! Rules that iptables cannot express exactly (port ranges with a wildcard protocol or a
//! protocol without ports) are written without their ports and summarised on stderr; the exit
//! code stays 0. Bad input or arguments print `classbench2iptables: ...` (with the input line
//! number for bad rules) and exit 1. See [`tools::classbench`] for the mapping.

use std::io::{Read, Write};
use std::process::ExitCode;
use tools::classbench::{convert, Options};

const PROG: &str = "classbench2iptables";

const USAGE: &str = "\
usage: classbench2iptables [--chain CHAIN] [--target TARGET] INPUT [OUTPUT]
  INPUT            ClassBench rule file (`-' for standard input)
  OUTPUT           where to write the iptables-restore file (default: standard output)
  --chain CHAIN    chain the rules are appended to (default FORWARD; a built-in chain
                   gets policy DROP, another name is declared as a user chain)
  --target TARGET  -j target of every rule (default ACCEPT)
  -h, --help       show this help";

struct Args {
    opts: Options,
    input: String,
    output: Option<String>,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(argv: &[String]) -> Result<Parsed, String> {
    let mut opts = Options::default();
    let mut files = Vec::new();
    let mut i = 0;
    let mut options_done = false;
    while i < argv.len() {
        let a = argv[i].as_str();
        let mut value = |name: &str| -> Result<String, String> {
            i += 1;
            argv.get(i)
                .cloned()
                .ok_or_else(|| format!("option {name} needs a value"))
        };
        if options_done || a == "-" || !a.starts_with('-') {
            files.push(a.to_string());
        } else if a == "--" {
            options_done = true;
        } else if a == "-h" || a == "--help" {
            return Ok(Parsed::Help);
        } else if a == "--chain" {
            opts.chain = value(a)?;
        } else if a == "--target" {
            opts.target = value(a)?;
        } else if let Some(v) = a.strip_prefix("--chain=") {
            opts.chain = v.to_string();
        } else if let Some(v) = a.strip_prefix("--target=") {
            opts.target = v.to_string();
        } else {
            return Err(format!("unknown option `{a}'"));
        }
        i += 1;
    }
    opts.validate()?;
    let mut files = files.into_iter();
    let input = files.next().ok_or("missing INPUT file")?;
    let output = files.next();
    if let Some(extra) = files.next() {
        return Err(format!("unexpected argument `{extra}'"));
    }
    Ok(Parsed::Run(Args {
        opts,
        input,
        output,
    }))
}

fn read_input(path: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let res = if path == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes))
    };
    res.map_err(|e| format!("cannot read {path}: {e}"))?;
    String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = good.iter().filter(|&&b| b == b'\n').count() + 1;
        format!("{path}: line {line}: not valid UTF-8 text (is this a ClassBench rule file?)")
    })
}

fn write_output(path: Option<&str>, text: &str) -> Result<(), String> {
    match path {
        None | Some("-") => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes())
                .and_then(|()| out.flush())
                .map_err(|e| match e.kind() {
                    // The reader went away (`| head`): stop quietly, as a SIGPIPE would.
                    std::io::ErrorKind::BrokenPipe => String::new(),
                    _ => format!("cannot write to standard output: {e}"),
                })
        }
        Some(p) => std::fs::write(p, text).map_err(|e| format!("cannot write {p}: {e}")),
    }
}

fn run(argv: &[String]) -> Result<(), String> {
    let args = match parse_args(argv).map_err(|e| format!("{e}\n{USAGE}"))? {
        Parsed::Help => return write_output(None, &format!("{USAGE}\n")),
        Parsed::Run(a) => a,
    };
    let text = read_input(&args.input)?;
    let conv = convert(&text, &args.opts).map_err(|e| format!("{}: {e}", args.input))?;
    if conv.rules == 0 {
        return Err(format!("{}: no rules found", args.input));
    }
    write_output(args.output.as_deref(), &conv.text)?;
    if let Some(w) = conv.warning() {
        let _ = write!(std::io::stderr(), "{PROG}: warning: {w}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let argv: Result<Vec<String>, _> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument {a:?} is not valid UTF-8"))
        })
        .collect();
    match argv.and_then(|argv| run(&argv)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An empty message is a quiet stop (broken pipe). A failing stderr is ignored:
            // there is nowhere left to report it.
            if !e.is_empty() {
                let _ = writeln!(std::io::stderr(), "{PROG}: {e}");
            }
            ExitCode::from(1)
        }
    }
}
