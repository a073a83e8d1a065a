//! `pollwall bench-classify --rules FILE [--format iptables|classbench] [--trace FILE]
//! [--chain C]`: lets an operator measure their own ruleset. Compiles it, runs the trace (or
//! packets sampled from the rules' own boxes) through the batch API on one core, checks first
//! matches against the trace's expected rules (or, for sampled packets, against the reference
//! evaluator), and prints one JSON object: rules, build_ms, memory_bytes, lookups_per_sec,
//! mismatches.
//!
//! Tuning knobs for experiments (environment): `POLLWALL_BINTH`, `POLLWALL_SPFAC`,
//! `POLLWALL_CUTBITS`, `POLLWALL_REPL`, `POLLWALL_MAXMEM` override the tree parameters,
//! `POLLWALL_TUNE=0` turns the per-chain tuning off, `POLLWALL_BENCH_VERBOSE=1` prints tree
//! statistics on stderr.

use crate::restore::{restore, RestoreOptions};
use classifier::classbench::{self, trace};
use classifier::compile::{CompiledRuleset, FirstHit, TreeParams};
use classifier::eval::RefEvaluator;
use classifier::packet::{Headers, IfName, PacketMeta};
use classifier::{Hook, Ruleset, TableKind};
use std::time::Instant;

struct Args {
    rules: String,
    classbench: bool,
    trace: Option<String>,
    chain: String,
}

fn looks_like_classbench(path: &str) -> bool {
    std::fs::read_to_string(path)
        .map(|t| t.trim_start().starts_with('@'))
        .unwrap_or(false)
}

fn meta_for(h: &Headers) -> PacketMeta {
    PacketMeta::arriving(h, IfName::NONE, IfName::NONE, 0)
}

/// Entry point; returns the exit code.
/// `pollwall bench-classify` (the command line is `crate::commands`'); returns the exit code.
pub(crate) fn run_cmd(b: crate::commands::BenchArgs) -> i32 {
    use crate::commands::RulesFormat;
    let classbench = match b.format {
        None => !b.rules.ends_with(".rules") && looks_like_classbench(&b.rules),
        Some(f) => f == RulesFormat::Classbench,
    };
    let a = Args {
        rules: b.rules,
        classbench,
        trace: b.trace,
        chain: b.chain,
    };
    match run(a) {
        Ok(json) => {
            println!("{json}");
            0
        }
        Err(e) => {
            eprintln!("pollwall bench-classify: {e}");
            1
        }
    }
}

/// Pins the measuring thread to one core (the last one): "one core" means one core, and a thread
/// that migrates pays cold caches on every move (runs here varied by 30% unpinned, 3% pinned).
pub fn pin_to_one_core() -> Option<usize> {
    let core = core_affinity::get_core_ids()?.into_iter().last()?;
    core_affinity::set_for_current(core).then_some(core.id)
}

fn run(a: Args) -> Result<String, String> {
    pin_to_one_core();
    let text =
        std::fs::read_to_string(&a.rules).map_err(|e| format!("cannot read {}: {e}", a.rules))?;
    let (rs, positions): (Ruleset, bool) = if a.classbench {
        let rules = classbench::parse_rules(&text).map_err(|e| format!("{}: {e}", a.rules))?;
        (trace::to_ruleset(&rules, &a.chain), true)
    } else {
        let mut rs = Ruleset::new();
        restore(&text, &RestoreOptions::default(), &mut rs)
            .map_err(|e| format!("{}: {}", a.rules, e.render("iptables-restore").trim_end()))?;
        (rs, false)
    };
    let hook = Hook::from_name(&a.chain)
        .filter(|h| {
            rs.table(TableKind::Filter)
                .is_some_and(|t| t.chain(h.name()).is_some())
        })
        .ok_or_else(|| {
            format!(
                "--chain {} is not a built-in chain of the filter table",
                a.chain
            )
        })?;
    let table = rs.table(TableKind::Filter).expect("checked above");
    let nrules: usize = table.chains.iter().map(|c| c.rules.len()).sum();

    let t0 = Instant::now();
    let mut params = TreeParams::default();
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok());
    if let Some(v) = env("POLLWALL_BINTH") {
        params.binth = v as usize;
    }
    if let Some(v) = env("POLLWALL_SPFAC") {
        params.spfac = v;
    }
    if let Some(v) = env("POLLWALL_CUTBITS") {
        params.max_cut_bits = v as u32;
    }
    if let Some(v) = env("POLLWALL_REPL") {
        params.max_replication = v as usize;
    }
    if let Some(v) = env("POLLWALL_MAXMEM") {
        params.max_chain_bytes = v as usize;
    }
    if let Some(v) = env("POLLWALL_TUNE") {
        params.tune = v != 0.0;
    }
    let compiled = CompiledRuleset::compile(&rs, 0, &params);
    let build_ms = t0.elapsed().as_secs_f64() * 1e3;
    if std::env::var_os("POLLWALL_BENCH_VERBOSE").is_some() {
        for (nodes, entries, longest, leaves, rules) in compiled.tree_stats() {
            eprintln!("tree: {nodes} nodes, {leaves} leaves, {entries} leaf entries, longest leaf {longest}, chain of {rules} rules");
        }
    }

    // The packets: the trace, or points sampled from the rules' boxes.
    let (headers, expected): (Vec<Headers>, Vec<Option<(u32, bool)>>) = match &a.trace {
        Some(path) => {
            let t =
                std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
            let tr = trace::parse_trace(&t).map_err(|e| format!("{path}: {e}"))?;
            (
                tr.iter().map(|x| x.headers()).collect(),
                tr.iter()
                    .map(|x| Some((x.expect, x.expect_exact)))
                    .collect(),
            )
        }
        None => {
            let hs = crate::sample::sample_packets(
                table.chain(hook.name()).expect("hook chain"),
                100_000.max(nrules * 10),
            );
            let n = hs.len();
            (hs, vec![None; n])
        }
    };
    if headers.is_empty() {
        return Err("no packets to classify".into());
    }
    let pkts: Vec<(Headers, PacketMeta)> = headers.iter().map(|h| (*h, meta_for(h))).collect();

    // Correctness: trace expectations with the compiled classifier; sampled packets against the
    // reference evaluator (on a prefix, since the reference is a linear walk).
    let mut st = compiled.new_state();
    let mut mismatches = 0u64;
    let mut reference = RefEvaluator::new(&rs, 0);
    for (i, (h, m)) in pkts.iter().enumerate() {
        match expected[i] {
            Some((want, exact)) if positions => {
                let mut first = FirstHit::default();
                compiled.classify(hook, h, m, &mut st, &mut first);
                let got = first.0.map_or(0, |id| id.0 as u32);
                if (exact && got != want) || (!exact && (got == 0 || got > want)) {
                    mismatches += 1;
                }
            }
            _ if i < 20_000 => {
                let mut got = classifier::eval::Trace {
                    mark: m.mark,
                    ..Default::default()
                };
                let (v, mark) = compiled.classify(hook, h, m, &mut st, &mut got);
                got.verdict = Some(v);
                got.mark = mark;
                if got != reference.eval_hook(hook, h, m) {
                    mismatches += 1;
                }
            }
            _ => {}
        }
    }

    // Speed: the batch API over the packets; five rounds of at least 0.3 s each, the best one
    // reported (the least disturbed by the other core and frequency changes).
    let hdrs: Vec<Headers> = pkts.iter().map(|p| p.0).collect();
    let metas: Vec<PacketMeta> = pkts.iter().map(|p| p.1).collect();
    let mut verdicts = vec![
        (
            classifier::eval::Verdict::Accept,
            classifier::packet::Effects::default()
        );
        64
    ];
    let mut st = compiled.new_state();
    let (mut done, mut secs) = (0u64, f64::MAX);
    for _ in 0..5 {
        let mut n = 0u64;
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < 0.3 {
            for (h, m) in hdrs.chunks(64).zip(metas.chunks(64)) {
                compiled.classify_batch(hook, h, m, &mut st, &mut verdicts[..h.len()]);
            }
            n += pkts.len() as u64;
        }
        let s = t0.elapsed().as_secs_f64();
        if done == 0 || n as f64 / s > done as f64 / secs {
            (done, secs) = (n, s);
        }
    }
    std::hint::black_box(&verdicts);
    let lps = done as f64 / secs;
    Ok(format!(
        "{{\"rules\": {nrules}, \"build_ms\": {build_ms:.3}, \"memory_bytes\": {}, \"lookups_per_sec\": {:.0}, \"mismatches\": {mismatches}}}",
        compiled.memory_bytes(),
        lps
    ))
}
