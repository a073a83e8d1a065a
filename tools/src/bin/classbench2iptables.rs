//! `classbench2iptables [--chain CHAIN] [--target TARGET] INPUT [OUTPUT]`: converts a
//! ClassBench 5-field rule file (the `flags_6field` variants too; their flags field is ignored)
//! into an `iptables-restore` file for the `filter` table, one `-A CHAIN ... -j TARGET` per
//! rule in priority order. The chain defaults to `FORWARD` and the target to `ACCEPT`; a
//! built-in chain gets policy `DROP`. INPUT `-` reads standard input; without OUTPUT the
//! result goes to standard output.
//!
//! Rules that iptables cannot express exactly (port ranges with a wildcard protocol or a
//! protocol without ports) are written without their ports and summarised on stderr; the exit
//! code stays 0. Bad input prints `classbench2iptables: ...` (with the input line number for bad
//! rules) and exits 1. See [`tools::classbench`] for the mapping.

use clap::Parser;
use std::io::{Read, Write};
use std::process::ExitCode;
use tools::classbench::{convert, Options};

const PROG: &str = "classbench2iptables";

/// Converts a ClassBench rule file into an iptables-restore file.
#[derive(Debug, Parser)]
#[command(name = PROG, version)]
struct Cli {
    /// Chain the rules are appended to (a built-in chain gets policy DROP, another name is
    /// declared as a user chain)
    #[arg(long, value_name = "CHAIN", default_value = "FORWARD")]
    chain: String,
    /// `-j` target of every rule
    #[arg(long, value_name = "TARGET", default_value = "ACCEPT")]
    target: String,
    /// ClassBench rule file (`-' for standard input)
    #[arg(value_name = "INPUT")]
    input: String,
    /// Where to write the iptables-restore file (default: standard output)
    #[arg(value_name = "OUTPUT")]
    output: Option<String>,
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

fn run(cli: Cli) -> Result<(), String> {
    let opts = Options {
        chain: cli.chain,
        target: cli.target,
    };
    opts.validate()?;
    let text = read_input(&cli.input)?;
    let conv = convert(&text, &opts).map_err(|e| format!("{}: {e}", cli.input))?;
    if conv.rules == 0 {
        return Err(format!("{}: no rules found", cli.input));
    }
    write_output(cli.output.as_deref(), &conv.text)?;
    if let Some(w) = conv.warning() {
        let _ = write!(std::io::stderr(), "{PROG}: warning: {w}");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
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
