//! `pollwall daemon --config FILE [--check]`: loads the rules file, compiles it, starts the AF_XDP
//! dataplane (workers pinned to the configured cores), writes the LOG lines the workers' records
//! describe, and stops cleanly on SIGTERM or SIGINT: workers drain and account for every frame,
//! XDP programs are detached, and the final counters are printed as `iptables-save -c`.
//!
//! Output: start-up notes (modes, ring sizes), then `pollwall: ready` on stderr once every
//! program is attached; on SIGUSR1 the live counters (summed over the workers' shards while they
//! run) on stdout in `iptables-save -c` form, and the dataplane counters on stderr; at the end one `worker N: ...` accounting line per worker and the
//! dataplane counters on stderr, the ruleset with its counters on stdout. Exit code 0, or 1 when
//! start-up failed or a frame was lost.
//!
//! `--check` only parses the configuration and compiles the rules, and says what it would run.
//!
//! Bridge mode (`[[bridge]]`) or routed mode (`[[port]]`, `[[route]]`, `[[neighbor]]`; a port's
//! MAC and MTU default to its device's). Live rule updates and the control socket are the
//! daemon issue's; here the ruleset is fixed at start.

use crate::daemon_config::{self, DaemonConfig};
use crate::grammar::save::save_table;
use crate::logline::format_log_line;
use crate::logsink::LineSink;
use crate::restore::{restore, RestoreOptions};
use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::{LogTarget, RuleId, Ruleset, Target};
use dataplane::log::LogRecord;
use dataplane::stats::{self, StatsShard};
use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `pollwall daemon --config FILE [--check]` (the command line is `crate::commands`');
/// returns the exit code.
pub(crate) fn run_cmd(cfg: &str, check: bool) -> i32 {
    let r = if check { check_config(cfg) } else { run(cfg) };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pollwall daemon: {e}");
            1
        }
    }
}

/// `--check`: parses the configuration, loads and compiles the rules, and says what the daemon
/// would run, without touching any interface (like `nginx -t`).
fn check_config(config_path: &str) -> Result<i32, String> {
    let (cfg, rs) = load(config_path)?;
    let t0 = std::time::Instant::now();
    let compiled = CompiledRuleset::compile(&rs, 0, &TreeParams::default());
    let rules: usize = rs
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .map(|c| c.rules.len())
        .sum();
    let dp = &cfg.dataplane;
    let bridges: Vec<String> = match &dp.routed {
        Some(r) => vec![format!("none (routed ports {})", r.names.join(", "))],
        None => dp
            .bridges
            .iter()
            .map(|(a, b)| format!("{a}<->{b}"))
            .collect(),
    };
    println!(
        "{config_path}: ok: {rules} rules from {} compiled in {:.1} ms ({} bytes); bridges {}; {} worker(s); {} frames of {} B per worker",
        cfg.rules,
        t0.elapsed().as_secs_f64() * 1e3,
        compiled.memory_bytes(),
        bridges.join(", "),
        dp.cores.len().max(1),
        dp.frames_per_worker,
        dp.frame_size
    );
    Ok(0)
}

/// Loads and compiles `cfg.rules`.
pub fn load_rules(path: &str) -> Result<Ruleset, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let mut rs = Ruleset::new();
    restore(&text, &RestoreOptions::default(), &mut rs)
        .map_err(|e| format!("{path}:\n{}", e.render("iptables-restore").trim_end()))?;
    Ok(rs)
}

/// LOG options of every LOG rule, by rule id.
pub fn log_targets(rs: &Ruleset) -> HashMap<RuleId, LogTarget> {
    let mut m = HashMap::new();
    for t in &rs.tables {
        for c in &t.chains {
            for r in &c.rules {
                if let Target::Log(l) = &r.target {
                    m.insert(r.id, l.clone());
                }
            }
        }
    }
    m
}

/// Writes the lines of every record waiting in `rings` (each with its rule's log level).
pub fn drain_logs(
    rings: &mut [rtrb::Consumer<LogRecord>],
    targets: &HashMap<RuleId, LogTarget>,
    out: &mut dyn LineSink,
) {
    for ring in rings.iter_mut() {
        while let Ok(rec) = ring.pop() {
            if let Some(t) = targets.get(&rec.rule) {
                out.line(t.level, &format_log_line(&rec, t));
            }
        }
    }
    out.flush_lines();
}

/// The dataplane counters summed over workers, one `name value` per line (zeros left out).
pub fn stats_lines(shards: &[Arc<StatsShard>]) -> String {
    let refs: Vec<&StatsShard> = shards.iter().map(|s| s.as_ref()).collect();
    let mut s = String::new();
    for (c, v) in stats::sum(&refs) {
        if v != 0 {
            s.push_str(&format!("  {:<20} {v}\n", c.name()));
        }
    }
    s
}

/// What several workers cannot do yet: a helper's expectation (an ftp or tftp data
/// connection) lives on the worker tracking the control connection, while the data
/// connection's first packet is steered by its own hash.
fn cross_worker_warning(cfg: &DaemonConfig, rs: &Ruleset) -> Option<String> {
    let dp = &cfg.dataplane;
    if dp.cores.len() < 2 || !dp.steering {
        return None;
    }
    let helpers = rs
        .tables
        .iter()
        .flat_map(|t| &t.chains)
        .flat_map(|c| &c.rules)
        .filter(|r| matches!(&r.target, Target::Ct(c) if !c.helper.is_empty()))
        .count();
    (helpers > 0).then(|| {
        format!(
            "{helpers} CT --helper rule(s) with {} workers: an expected data connection whose \
             first packet hashes to another worker than its control connection's is not \
             RELATED there (about {}% of them); use one core for ftp/tftp helpers",
            dp.cores.len(),
            100 - 100 / dp.cores.len()
        )
    })
}

/// The configuration at `config_path` and the ruleset its `rules` file holds.
fn load(config_path: &str) -> Result<(DaemonConfig, Ruleset), String> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| format!("cannot read {config_path}: {e}"))?;
    let mut cfg = daemon_config::parse(&text).map_err(|e| format!("{config_path}: {e}"))?;
    if let Some(spec) = &cfg.routed {
        let spec = spec
            .with_devices()
            .map_err(|e| format!("{config_path}: {e}"))?;
        cfg.dataplane.routed = Some(
            spec.dataplane_ports()
                .map_err(|e| format!("{config_path}: {e}"))?,
        );
        cfg.routed = Some(spec);
    }
    let rs = load_rules(&cfg.rules)?;
    Ok((cfg, rs))
}

fn run(config_path: &str) -> Result<i32, String> {
    let (cfg, mut rs) = load(config_path)?;
    let targets = log_targets(&rs);
    let compiled = Arc::new(CompiledRuleset::compile(
        &rs,
        dataplane::worker::now_ns(),
        &TreeParams::default(),
    ));
    let mut log_out = crate::logsink::open(cfg.log_file.as_deref())?;
    let term = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, Arc::clone(&term))
            .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
    }
    let dump = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, Arc::clone(&dump))
        .map_err(|e| format!("cannot handle SIGUSR1: {e}"))?;
    let started = std::time::Instant::now();
    let mut running = dataplane::runtime::start(&cfg.dataplane, Arc::clone(&compiled))?;
    for n in &running.notes {
        eprintln!("pollwall: {n}");
    }
    if let Some(w) = cross_worker_warning(&cfg, &rs) {
        eprintln!("pollwall: warning: {w}");
    }
    eprintln!("pollwall: ready");
    while !term.load(Ordering::Relaxed) {
        drain_logs(&mut running.logs, &targets, log_out.as_mut());
        if dump.swap(false, Ordering::Relaxed) {
            // Live counters, summed over the workers' shards while they run.
            let mut live = rs.clone();
            let shards: Vec<_> = running.counters.iter().map(|c| c.as_ref()).collect();
            crate::counters::fold_shards(&mut live, &compiled, &shards);
            let mut out = format!(
                "# pollwall daemon: counters at +{:.3} s (SIGUSR1)\n",
                started.elapsed().as_secs_f64()
            );
            for t in &live.tables {
                out.push_str(&save_table(t, true));
            }
            print!("{out}");
            let _ = std::io::stdout().flush();
            eprint!(
                "pollwall: dataplane counters:\n{}",
                stats_lines(&running.stats)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!("pollwall: stopping");
    let mut logs = std::mem::take(&mut running.logs);
    let shards = running.stats.clone();
    let exits = running.stop();
    drain_logs(&mut logs, &targets, log_out.as_mut());
    let mut lost = 0;
    for e in &exits {
        let r = e.report;
        lost += r.lost;
        eprintln!(
            "pollwall: worker {}: rx {} frames; {}/{} frames accounted (free {}, in fill rings {}, in TX {}), lost {}",
            e.index,
            e.pipeline.stats().get(dataplane::stats::Counter::RxPackets),
            r.frames - r.lost,
            r.frames,
            r.free,
            r.in_fill,
            r.in_tx,
            r.lost
        );
    }
    for e in &exits {
        let k = e.kernel;
        eprintln!(
            "pollwall: worker {}: kernel drops: rx_dropped {} rx_ring_full {} fill_ring_empty {} tx_invalid {}",
            e.index, k.rx_dropped, k.rx_ring_full, k.rx_fill_ring_empty_descs, k.tx_invalid_descs
        );
    }
    eprint!("pollwall: dataplane counters:\n{}", stats_lines(&shards));
    let states: Vec<_> = exits.iter().map(|e| e.pipeline.state()).collect();
    crate::counters::fold(&mut rs, &compiled, &states);
    let mut out = String::new();
    for t in &rs.tables {
        out.push_str("# Generated by pollwall daemon\n");
        out.push_str(&save_table(t, true));
        out.push_str("# Completed\n");
    }
    print!("{out}");
    Ok(if lost == 0 { 0 } else { 1 })
}
