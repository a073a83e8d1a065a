//! `pw-gen`: the traffic generator (pktgen role) on `BPF_PROG_TEST_RUN` live frames.
//!
//! ```sh
//! pw-gen --dev IF [--flows N] [--size BYTES] [--pps RATE] [--duration SECS]
//!        [--src-mac MAC] [--dst-mac MAC] [--src IP] [--dst IP] [--dport PORT] [--mode live|xsk]
//! ```
//! `--mode live` (default): `BPF_PROG_TEST_RUN` live frames (5-8 Mpps; the receiving veth end
//! needs an XDP program). `--mode xsk`: an AF_XDP socket's TX ring (copy mode, ordinary skbs).
//! Sends UDP frames out of IF (in the current network namespace) and prints one JSON object:
//! `{"sent": N, "seconds": S, "pps": R}`. Needs root.

use clap::{Parser, ValueEnum};
use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::time::Duration;
use tools::gen::{run, GenConfig};

fn mac(s: &str) -> Result<[u8; 6], String> {
    let v: Vec<u8> = s
        .split(':')
        .map(|x| u8::from_str_radix(x, 16))
        .collect::<Result<_, _>>()
        .map_err(|_| format!("bad MAC address `{s}'"))?;
    v.try_into().map_err(|_| format!("bad MAC address `{s}'"))
}

fn seconds(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("bad duration `{s}'"))
}

/// How frames are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// `BPF_PROG_TEST_RUN` live frames (the receiving veth end needs an XDP program)
    Live,
    /// An AF_XDP socket's TX ring (copy mode, ordinary skbs)
    Xsk,
}

/// Sends UDP frames out of an interface and prints `{"sent": N, "seconds": S, "pps": R}`.
#[derive(Debug, Parser)]
#[command(name = "pw-gen", version)]
struct Cli {
    /// The interface (in the current network namespace)
    #[arg(long, value_name = "IF")]
    dev: String,
    /// Flows: source ports from 10000, then source addresses
    #[arg(long, default_value_t = GenConfig::default().flows)]
    flows: u32,
    /// Frame size in bytes without FCS (at least 42)
    #[arg(long, value_name = "BYTES", default_value_t = GenConfig::default().size)]
    size: usize,
    /// Packets per second (0: as fast as possible)
    #[arg(long, value_name = "RATE", default_value_t = 0)]
    pps: u64,
    /// How long to send
    #[arg(long, value_name = "SECS", value_parser = seconds, default_value = "2")]
    duration: Duration,
    #[arg(long, value_name = "MAC", value_parser = mac)]
    src_mac: Option<[u8; 6]>,
    #[arg(long, value_name = "MAC", value_parser = mac)]
    dst_mac: Option<[u8; 6]>,
    #[arg(long = "src", value_name = "IP")]
    src_ip: Option<Ipv4Addr>,
    #[arg(long = "dst", value_name = "IP")]
    dst_ip: Option<Ipv4Addr>,
    #[arg(long, value_name = "PORT")]
    dport: Option<u16>,
    #[arg(long, value_enum, default_value_t = Mode::Live)]
    mode: Mode,
}

fn main() {
    let cli = Cli::parse();
    let d = GenConfig::default();
    let cfg = GenConfig {
        ifname: cli.dev,
        flows: cli.flows,
        size: cli.size,
        pps: cli.pps,
        duration: cli.duration,
        src_mac: cli.src_mac.unwrap_or(d.src_mac),
        dst_mac: cli.dst_mac.unwrap_or(d.dst_mac),
        src_ip: cli.src_ip.unwrap_or(d.src_ip),
        dst_ip: cli.dst_ip.unwrap_or(d.dst_ip),
        dport: cli.dport.unwrap_or(d.dport),
        ..d
    };
    let xsk = cli.mode == Mode::Xsk;
    let stop = AtomicBool::new(false);
    let r = if xsk {
        tools::gen::run_xsk(&cfg, &stop)
    } else {
        run(&cfg, &stop)
    };
    match r {
        Ok(r) => println!(
            "{{\"sent\": {}, \"seconds\": {:.3}, \"pps\": {:.0}}}",
            r.sent,
            r.elapsed.as_secs_f64(),
            r.pps()
        ),
        Err(e) => {
            eprintln!("pw-gen: {e}");
            std::process::exit(1);
        }
    }
}
