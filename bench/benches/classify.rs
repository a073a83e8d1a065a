//! Classifier benchmarks: the compiled decision trees (batch API) side by side with the
//! reference linear walk, in one process, on ClassBench acl1/fw1/ipc1 at 1K and 10K (with their
//! traces) and the two `flags_6field_100k_target` sets (packets sampled from the rules, as they
//! have no trace). Throughput is reported as elements (lookups) per second on one core; the build
//! time and memory of each compiled set are printed on stderr before its group.
//!
//! Run: `cargo bench -p bench --bench classify` (ClassBench data must sit in `../shared/data`
//! beside the repository; without it the bench runs the synthetic 10K set only).

use classifier::classbench::{parse_rules, trace};
use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::eval::{RefEvaluator, Verdict};
use classifier::packet::{Headers, IfName, PacketMeta};
use classifier::{Hook, TableKind};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/classbench")
}

fn meta(h: &Headers) -> PacketMeta {
    PacketMeta::arriving(h, IfName::NONE, IfName::NONE, 0)
}

/// (name, rules text, packets).
fn sets() -> Vec<(String, String, Vec<Headers>)> {
    let dir = shared();
    let mut out = Vec::new();
    for name in [
        "acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K",
    ] {
        let rules = dir.join("wustl_5field").join(name);
        let tr = dir.join("wustl_5field").join(format!("{name}_trace"));
        let (Ok(r), Ok(t)) = (
            std::fs::read_to_string(&rules),
            std::fs::read_to_string(&tr),
        ) else {
            continue;
        };
        let hs = trace::parse_trace(&t)
            .expect("trace parses")
            .iter()
            .map(|h| h.headers())
            .collect();
        out.push((name.to_string(), r, hs));
    }
    for name in ["acl1_100k", "fw1_100k"] {
        let Ok(r) = std::fs::read_to_string(dir.join("flags_6field_100k_target").join(name)) else {
            continue;
        };
        let rules = parse_rules(&r).expect("rules parse");
        let rs = trace::to_ruleset(&rules, "FORWARD");
        let chain = rs
            .table(TableKind::Filter)
            .and_then(|t| t.chain("FORWARD"))
            .expect("chain");
        let hs = control::sample::sample_packets(chain, 100_000);
        out.push((format!("{name} (sampled)"), r, hs));
    }
    if out.is_empty() {
        eprintln!("classify bench: ../shared/data/classbench is absent; running the synthetic 10K set only");
        let text = bench::synthetic_classbench(bench::SYNTHETIC_RULES, 1);
        let rules = parse_rules(&text).expect("synthetic rules parse");
        let rs = trace::to_ruleset(&rules, "FORWARD");
        let chain = rs
            .table(TableKind::Filter)
            .and_then(|t| t.chain("FORWARD"))
            .expect("chain");
        out.push((
            "synthetic_10K (sampled)".into(),
            text,
            control::sample::sample_packets(chain, 100_000),
        ));
    }
    out
}

fn classify(c: &mut Criterion) {
    match control::bench_classify::pin_to_one_core() {
        Some(core) => eprintln!("classify bench: pinned to core {core}"),
        None => eprintln!("classify bench: could not pin to one core; figures will vary more"),
    }
    for (name, text, headers) in sets() {
        let rules = parse_rules(&text).expect("rules parse");
        let rs = trace::to_ruleset(&rules, "FORWARD");
        let t0 = Instant::now();
        let compiled = CompiledRuleset::compile(&rs, 0, &TreeParams::default());
        let build = t0.elapsed();
        eprintln!(
            "classify bench: {name}: {} rules, build {:.1} ms, memory {} bytes, {} packets",
            rules.len(),
            build.as_secs_f64() * 1e3,
            compiled.memory_bytes(),
            headers.len()
        );
        let metas: Vec<PacketMeta> = headers.iter().map(meta).collect();
        let mut g = c.benchmark_group(format!("classify/{name}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(2));
        g.throughput(Throughput::Elements(headers.len() as u64));
        let mut st = compiled.new_state();
        let mut out = vec![(Verdict::Accept, classifier::packet::Effects::default()); 64];
        g.bench_function("compiled_batch", |b| {
            b.iter(|| {
                for (h, m) in headers.chunks(64).zip(metas.chunks(64)) {
                    compiled.classify_batch(Hook::Forward, h, m, &mut st, &mut out[..h.len()]);
                }
                black_box(&out);
            })
        });
        // The linear walk visits every rule up to the match: a slice of the packets is enough.
        let n = if rules.len() > 20_000 { 256 } else { 2048 }.min(headers.len());
        g.throughput(Throughput::Elements(n as u64));
        let mut reference = RefEvaluator::new(&rs, 0);
        g.bench_function("reference_linear_walk", |b| {
            b.iter(|| {
                for (h, m) in headers[..n].iter().zip(&metas[..n]) {
                    black_box(reference.eval_hook(Hook::Forward, h, m));
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, classify);
criterion_main!(benches);
