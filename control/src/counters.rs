//! Folding the per-worker counter shards of a compiled ruleset back into the rule model, where
//! `iptables -L -v` and `iptables-save -c` read them: each rule's and policy's counters become
//! the sum over the workers' shards (the starting counters are replaced).

use classifier::compile::{CompiledRuleset, CounterShard, WorkerState};
use classifier::{Counters, RuleId, Ruleset};
use std::collections::HashMap;

/// Sets every rule and policy counter of `rs` to the sum over `states`, which must come from
/// `compiled` (compiled from `rs`).
pub fn fold(rs: &mut Ruleset, compiled: &CompiledRuleset, states: &[&WorkerState]) {
    let shards: Vec<&CounterShard> = states.iter().map(|s| s.counters.as_ref()).collect();
    fold_shards(rs, compiled, &shards)
}

/// As [`fold`], from the workers' counter shards (readable while the workers run).
pub fn fold_shards(rs: &mut Ruleset, compiled: &CompiledRuleset, states: &[&CounterShard]) {
    let mut place: HashMap<RuleId, (usize, usize, usize)> = HashMap::new();
    for (ti, t) in rs.tables.iter_mut().enumerate() {
        for (ci, c) in t.chains.iter_mut().enumerate() {
            c.policy_counters = Counters::default();
            for (ri, r) in c.rules.iter_mut().enumerate() {
                r.counters = Counters::default();
                place.insert(r.id, (ti, ci, ri));
            }
        }
    }
    let add = |a: &mut Counters, b: &Counters| {
        a.packets += b.packets;
        a.bytes += b.bytes;
    };
    for (slot, id) in compiled.rule_ids.iter().enumerate() {
        let Some(&(ti, ci, ri)) = place.get(id) else {
            continue;
        };
        let r = &mut rs.tables[ti].chains[ci].rules[ri];
        for st in states {
            if let Some(c) = st.rules.get(slot) {
                add(&mut r.counters, &c);
            }
        }
    }
    for (slot, (kind, hook)) in compiled.policy_slots.iter().enumerate() {
        if let Some(c) = rs.table_mut(*kind).and_then(|t| t.chain_mut(hook.name())) {
            for st in states {
                if let Some(p) = st.policy.get(slot) {
                    add(&mut c.policy_counters, &p);
                }
            }
        }
    }
}
