//! Control-path benchmarks on a 10K-rule ruleset (ClassBench acl1_10K, or the synthetic
//! fallback of `bench::synthetic_classbench`; stderr says which), all in one criterion group
//! `restore` so the table shows where the time goes:
//!
//! * `restore_10k`: the whole `iptables-restore` command through `control::cli::run` into a
//!   fresh rules file in a fresh temp dir each iteration (lock, load of the missing file,
//!   parse, commit, serialise, write + fsync + rename + directory fsync).
//! * `append_one_to_10k`: one `iptables -A FORWARD ...` against a rules file that holds the
//!   10K ruleset. Only the `-A` is timed; after each one an untimed `-D` of the same rule puts
//!   the file back, so every iteration sees the same 10K-rule file.
//! * `parse_only_10k`: `control::restore::restore` on the same text into an empty in-memory
//!   ruleset, no file I/O: the parse-and-build floor both commands above pay at least once.
//!
//! Run with `cargo bench -p bench --bench restore` (about a minute on 2 cores).

use control::cli::{run, RunOutput};
use control::store::{RulesFile, RulesetStore};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode};
use std::path::Path;
use std::time::{Duration, Instant};

/// The 10K-rule `iptables-restore` input, made in memory by the ClassBench converter.
fn restore_text() -> String {
    let (classbench, source) = bench::classbench_input().unwrap_or_else(|e| {
        panic!("cannot read the ClassBench input: {e}");
    });
    let conv = tools::classbench::convert(&classbench, &tools::classbench::Options::default())
        .unwrap_or_else(|e| panic!("cannot convert the ClassBench input ({source}): {e}"));
    eprintln!(
        "restore benches: input is {source}: {} rules, {} bytes of iptables-restore text",
        conv.rules,
        conv.text.len()
    );
    if let Some(w) = conv.warning() {
        eprint!("restore benches: converter warning: {w}");
    }
    conv.text
}

fn cli(tool: &str, args: &[&str], stdin: &[u8], rules: &Path) -> RunOutput {
    let store = RulesFile::new(rules);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut input = stdin;
    run(tool, &args, &mut input, Ok(&store as &dyn RulesetStore))
}

fn check(out: &RunOutput, what: &str) {
    assert_eq!(out.code, 0, "{what} failed: {}", out.stderr);
}

const RULE: [&str; 9] = [
    "FORWARD",
    "-s",
    "10.1.2.3/32",
    "-p",
    "tcp",
    "--dport",
    "80",
    "-j",
    "ACCEPT",
];

fn with_command(cmd: &'static str) -> Vec<&'static str> {
    std::iter::once(cmd).chain(RULE).collect()
}

fn benches(c: &mut Criterion) {
    let text = restore_text();
    let append = with_command("-A");
    let delete = with_command("-D");

    let mut g = c.benchmark_group("restore");
    // Each iteration takes from tens of milliseconds to about a second: few flat samples keep
    // the whole run near a minute.
    g.sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8));

    g.bench_function("restore_10k", |b| {
        b.iter_batched(
            || tempfile::tempdir().expect("temp dir"),
            |dir| {
                let out = cli(
                    "iptables-restore",
                    &[],
                    text.as_bytes(),
                    &dir.path().join("rules"),
                );
                check(&out, "iptables-restore");
                // Returned so the directory is removed after the timed part.
                dir
            },
            BatchSize::PerIteration,
        )
    });

    let dir = tempfile::tempdir().expect("temp dir");
    let rules = dir.path().join("rules");
    check(
        &cli("iptables-restore", &[], text.as_bytes(), &rules),
        "initial iptables-restore",
    );
    g.bench_function("append_one_to_10k", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let out = cli("iptables", &append, b"", &rules);
                timed += start.elapsed();
                check(&out, "iptables -A");
                check(&cli("iptables", &delete, b"", &rules), "iptables -D");
            }
            timed
        })
    });

    g.bench_function("parse_only_10k", |b| {
        b.iter_batched(
            classifier::Ruleset::new,
            |mut rs| {
                control::restore::restore(
                    &text,
                    &control::restore::RestoreOptions::default(),
                    &mut rs,
                )
                .expect("restore parses");
                rs
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(restore, benches);
criterion_main!(restore);
