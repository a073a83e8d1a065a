//! `pw-gen`: the traffic generator (pktgen role) on `BPF_PROG_TEST_RUN` live frames.
//!
//! ```sh
//! pw-gen --dev IF [--flows N] [--size BYTES] [--pps RATE] [--duration SECS]
//!        [--src-mac MAC] [--dst-mac MAC] [--src IP] [--dst IP] [--dport PORT]
//! ```
//! Sends UDP frames out of IF (in the current network namespace) and prints one JSON object:
//! `{"sent": N, "seconds": S, "pps": R}`. Needs root.

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

fn parse(args: &[String]) -> Result<GenConfig, String> {
    let mut c = GenConfig::default();
    let mut i = 0;
    while i < args.len() {
        let v = args
            .get(i + 1)
            .ok_or_else(|| format!("{} needs a value", args[i]))?;
        let num = |v: &str| v.parse::<u64>().map_err(|_| format!("bad number `{v}'"));
        match args[i].as_str() {
            "--dev" => c.ifname = v.clone(),
            "--flows" => c.flows = num(v)? as u32,
            "--size" => c.size = num(v)? as usize,
            "--pps" => c.pps = num(v)?,
            "--duration" => {
                c.duration =
                    Duration::from_secs_f64(v.parse().map_err(|_| format!("bad duration `{v}'"))?)
            }
            "--src-mac" => c.src_mac = mac(v)?,
            "--dst-mac" => c.dst_mac = mac(v)?,
            "--src" => c.src_ip = v.parse().map_err(|_| format!("bad address `{v}'"))?,
            "--dst" => c.dst_ip = v.parse().map_err(|_| format!("bad address `{v}'"))?,
            "--dport" => c.dport = num(v)? as u16,
            o => return Err(format!("unknown option `{o}'")),
        }
        i += 2;
    }
    if c.ifname.is_empty() {
        return Err("--dev IF is required".into());
    }
    Ok(c)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pw-gen: {e}\nusage: pw-gen --dev IF [--flows N] [--size BYTES] [--pps RATE] [--duration SECS] [--src-mac MAC] [--dst-mac MAC] [--src IP] [--dst IP] [--dport PORT]");
            std::process::exit(2);
        }
    };
    match run(&cfg, &AtomicBool::new(false)) {
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
