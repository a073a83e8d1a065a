//! pollwall's own subcommands (`replay`, `bench-classify`, `daemon`, `demo`) on clap: real
//! help (`pollwall --help`, `pollwall help replay`, `pollwall replay --help`), `--version`,
//! suggestions for a mistyped name and exit code 2 for a usage error. The `iptables`,
//! `iptables-save` and `iptables-restore` tools are dispatched before this parser and keep their
//! own getopt-faithful grammar (`grammar/`), whose messages and exit codes are iptables' own.

use clap::{Args, Parser, Subcommand, ValueEnum};
use classifier::model::Hook;
use std::path::PathBuf;

/// The `pollwall` command line (all but the iptables tools).
#[derive(Debug, Parser)]
#[command(
    name = "pollwall",
    bin_name = "pollwall",
    version,
    about = "A Linux firewall with iptables semantics and a poll-mode dataplane",
    after_help = "The iptables tools: `pollwall iptables|iptables-save|iptables-restore ARGS`, or a \
                  link with one of those names pointing at pollwall; they speak iptables 1.8.9's \
                  command line (`pollwall iptables -h`).",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Runs a capture through the pipeline and prints the counters (and what it sent)
    Replay(ReplayArgs),
    /// Measures the classifier on a ruleset and a trace (JSON on stdout)
    BenchClassify(BenchArgs),
    /// Runs the dataplane on the ports of a configuration
    Daemon(DaemonArgs),
    /// Runs the demo: a NAT gateway in namespaces it makes (in memory without root)
    Demo,
}

/// `pollwall replay`: the routed or bridged pipeline of a configuration (DESIGN.md §9), or
/// one hook of a ruleset for a classic capture.
#[derive(Debug, Args)]
#[command(
    after_help = "Either --config (the daemon's configuration: every port, the capture's \
                        interfaces name them) or --rules with one hook (a classic capture)."
)]
pub struct ReplayArgs {
    /// The configuration (ports, routes, neighbours, conntrack, rules)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["rules", "hook", "in_iface", "out_iface"])]
    pub config: Option<PathBuf>,
    /// Writes every transmitted frame there (pcapng, on the interface it leaves by)
    #[arg(long, value_name = "OUT.pcapng", requires = "config")]
    pub out: Option<PathBuf>,
    /// Writes the final connection table there, as `conntrack -L` prints it
    #[arg(long, value_name = "FILE", requires = "config")]
    pub conntrack: Option<PathBuf>,
    /// Prints each frame's verdict (and its ctstate)
    #[arg(long)]
    pub verdicts: bool,
    /// The ruleset, in iptables-save format
    #[arg(long, value_name = "FILE", required_unless_present = "config")]
    pub rules: Option<PathBuf>,
    /// The hook the frames go through
    #[arg(long, value_name = "HOOK", value_parser = parse_hook)]
    pub hook: Option<Hook>,
    /// The interface the frames arrive on
    #[arg(long, value_name = "IF")]
    pub in_iface: Option<String>,
    /// The interface the frames leave by
    #[arg(long, value_name = "IF")]
    pub out_iface: Option<String>,
    /// The capture (pcap, or pcapng with --config)
    #[arg(value_name = "CAPTURE")]
    pub capture: PathBuf,
}

fn parse_hook(s: &str) -> Result<Hook, String> {
    Hook::from_name(&s.to_ascii_uppercase()).ok_or_else(|| {
        format!("unknown hook `{s}' (PREROUTING, INPUT, FORWARD, OUTPUT or POSTROUTING)")
    })
}

/// A rules file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RulesFormat {
    Iptables,
    Classbench,
}

/// `pollwall bench-classify`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The ruleset: iptables-save format or a ClassBench filter set
    #[arg(long, value_name = "FILE")]
    pub rules: String,
    /// The rules file's format (default: guessed from its first line)
    #[arg(long, value_enum)]
    pub format: Option<RulesFormat>,
    /// A ClassBench trace (default: headers drawn from the rules)
    #[arg(long, value_name = "FILE")]
    pub trace: Option<String>,
    /// The chain whose rules are measured
    #[arg(long, value_name = "C", default_value = "FORWARD")]
    pub chain: String,
}

/// `pollwall daemon`.
#[derive(Debug, Args)]
pub struct DaemonArgs {
    /// The configuration (TOML)
    #[arg(long, value_name = "FILE")]
    pub config: String,
    /// Checks the configuration and the rules and says what would run, touching no interface
    #[arg(long)]
    pub check: bool,
}

/// Parses `argv` (program name first) and runs the subcommand; returns the exit code.
pub fn main(argv: &[String]) -> i32 {
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    match cli.cmd {
        Cmd::Replay(a) => crate::replay::run_cmd(a),
        Cmd::BenchClassify(a) => crate::bench_classify::run_cmd(a),
        Cmd::Daemon(a) => crate::daemon::run_cmd(&a.config, a.check),
        Cmd::Demo => crate::demo::main(),
    }
}
