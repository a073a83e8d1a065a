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

fn parse(args: &[String]) -> Result<(GenConfig, bool), String> {
    let mut c = GenConfig::default();
    let mut xsk = false;
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
            "--mode" => {
                xsk = match v.as_str() {
                    "live" => false,
                    "xsk" => true,
                    _ => return Err(format!("--mode is live or xsk, not `{v}'")),
                }
            }
            o => return Err(format!("unknown option `{o}'")),
        }
        i += 2;
    }
    if c.ifname.is_empty() {
        return Err("--dev IF is required".into());
    }
    Ok((c, xsk))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cfg, xsk) = match parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pw-gen: {e}\nusage: pw-gen --dev IF [--flows N] [--size BYTES] [--pps RATE] [--duration SECS] [--src-mac MAC] [--dst-mac MAC] [--src IP] [--dst IP] [--dport PORT] [--mode live|xsk]");
            std::process::exit(2);
        }
    };
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
