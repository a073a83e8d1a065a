//! ClassBench: on every wustl_5field trace, the first rule the compiled classifier hits is the
//! trace's expected rule (its last column, a 1-based line number). Skips when `../shared` is absent,
//! and always runs on a small rule set of its own.

use crate::common::shared_data;
use classifier::classbench::{parse_rules, trace};
use classifier::compile::{CompiledRuleset, FirstHit, TreeParams};
use classifier::packet::{IfName, PacketMeta};
use classifier::Hook;

/// (mismatches, headers) for a rule text and a trace text.
fn run(rules: &str, trace_text: &str) -> (usize, usize) {
    let rules = parse_rules(rules).expect("rules parse");
    let rs = trace::to_ruleset(&rules, "FORWARD");
    let compiled = CompiledRuleset::compile(&rs, 0, &TreeParams::default());
    let mut st = compiled.new_state();
    let headers = trace::parse_trace(trace_text).expect("trace parses");
    let mut bad = 0;
    for t in &headers {
        let h = t.headers();
        let meta = PacketMeta::arriving(&h, IfName::NONE, IfName::NONE, 0);
        let mut first = FirstHit::default();
        compiled.classify(Hook::Forward, &h, &meta, &mut st, &mut first);
        let got = first.0.map_or(0, |id| id.0 as u32);
        let ok = if t.expect_exact {
            got == t.expect
        } else {
            got != 0 && got <= t.expect
        };
        if !ok {
            if bad < 5 {
                eprintln!("header {t:?}: first match {got}, expected {}", t.expect);
            }
            bad += 1;
        }
    }
    // The batch path (interleaved lookups, the ACCEPT/DROP fast path) from a fresh state must
    // move exactly the counters the per-packet path moved.
    let (hs, ms): (Vec<_>, Vec<_>) = headers
        .iter()
        .map(|t| {
            let h = t.headers();
            let meta = PacketMeta::arriving(&h, IfName::NONE, IfName::NONE, 0);
            (h, meta)
        })
        .unzip();
    let mut batch = compiled.new_state();
    let mut out = vec![
        (
            classifier::eval::Verdict::Accept,
            classifier::packet::Effects::default()
        );
        hs.len()
    ];
    compiled.classify_batch(Hook::Forward, &hs, &ms, &mut batch, &mut out);
    let per_packet: Vec<_> = st.counters.rules.iter().collect();
    let batched: Vec<_> = batch.counters.rules.iter().collect();
    assert!(
        per_packet == batched,
        "batch and per-packet counters differ"
    );
    assert!(st.counters.policy.iter().eq(batch.counters.policy.iter()));
    (bad, headers.len())
}

#[test]
fn own_small_set_first_matches() {
    let rules = "@10.0.0.0/8 0.0.0.0/0 0 : 65535 22 : 22 0x06/0xFF\n\
                 @10.1.0.0/16 192.168.0.0/16 1024 : 65535 0 : 65535 0x11/0xFF\n\
                 @0.0.0.0/0 192.168.1.0/24 0 : 65535 0 : 65535 0x00/0x00\n\
                 @0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x01/0xFF\n";
    // src dst sport dport proto match (addresses as host-order integers)
    let trace = "167772161 1 5 22 6 1\n\
                 167837697 3232235777 2000 53 17 2\n\
                 167837697 3232235777 53 53 17 3\n\
                 1 3232235777 0 0 47 3\n\
                 1 2 0 0 1 4\n";
    assert_eq!(run(rules, trace), (0, 5));
}

#[test]
fn wustl_traces_first_match_is_the_expected_rule() {
    let Some(dir) = shared_data("classbench/wustl_5field") else {
        eprintln!("SKIPPED: ../shared/data/classbench is absent (a clone without shared data)");
        return;
    };
    let mut total = 0;
    for set in [
        "acl1_1K", "fw1_1K", "ipc1_1K", "acl1_10K", "fw1_10K", "ipc1_10K",
    ] {
        let rules = std::fs::read_to_string(dir.join(set)).expect("rule file");
        let tr = std::fs::read_to_string(dir.join(format!("{set}_trace"))).expect("trace file");
        let (bad, n) = run(&rules, &tr);
        eprintln!("{set}: {n} headers, {bad} mismatches");
        assert_eq!(bad, 0, "{set}: {bad} of {n} headers hit another first rule");
        total += n;
    }
    assert!(total > 300_000);
}

/// The 100k-rule sets (which take the largeness partitions): on packets sampled from the rules,
/// the compiled classifier gives the reference evaluator's verdict, counters and first hit.
#[test]
fn large_sets_agree_with_the_reference() {
    let Some(dir) = shared_data("classbench/flags_6field_100k_target") else {
        eprintln!("SKIPPED: ../shared/data/classbench/flags_6field_100k_target is absent");
        return;
    };
    for name in ["acl1_100k", "fw1_100k"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let rules = parse_rules(&text).expect("rules parse");
        let rs = trace::to_ruleset(&rules, "FORWARD");
        let compiled = CompiledRuleset::compile(&rs, 0, &TreeParams::default());
        let chain = rs.tables[0].chain("FORWARD").unwrap();
        let packets = control::sample::sample_packets(chain, 300);
        let mut st = compiled.new_state();
        let mut reference = classifier::eval::RefEvaluator::new(&rs, 0);
        for h in &packets {
            let meta = PacketMeta::arriving(h, IfName::NONE, IfName::NONE, 0);
            let mut got = classifier::eval::Trace::default();
            let (v, mark) = compiled.classify(Hook::Forward, h, &meta, &mut st, &mut got);
            got.verdict = Some(v);
            got.mark = mark;
            assert_eq!(
                got,
                reference.eval_hook(Hook::Forward, h, &meta),
                "{name}: {h:?}"
            );
        }
    }
}
