//! The compiler: a [`Ruleset`] becomes an immutable [`CompiledRuleset`] (DPDK `rte_acl` style:
//! build once, then `classify(&self, ...)` from any number of workers, each with its own
//! [`WorkerState`] for counters and limit buckets).
//!
//! Each chain of each table is compiled into decision trees ([`chain`], [`tree`]) over the rules'
//! boxes ([`rbox`]); the walk over chains (jumps, gotos, RETURN, policies, non-terminal targets)
//! is the reference evaluator's, with the trees finding the next matching rule. Packets that could
//! make a match "hotdrop" (truncated L4 headers, the evil TCP fragment at offset 1) take the
//! linear walk, so verdicts and counters are those of the reference evaluator for every packet.

pub mod chain;
mod counters;
pub mod rbox;
pub mod tree;

use crate::conntrack::CtConfig;
use crate::eval::limit::Bucket;
use crate::eval::{hook_tables, Hit, Stage, Trace, Verdict};
use crate::model::*;
use crate::packet::{CtTemplate, Effects, Headers, PacketMeta, TcpOptions, L4};
use chain::{CChain, CTarget, Found};
pub use counters::{CounterArray, CounterShard, SharedCounter};
use rbox::Key;
use tree::LeafEntry;
pub use tree::TreeParams;

/// Deepest jump nesting the walk follows (a loop-free table cannot exceed its chain count; this
/// bounds the walk's memory whatever the table).
const MAX_JUMP_DEPTH: usize = 64;

/// Receives what a traversal did, besides counting (tests record it; the dataplane ignores it).
pub trait Recorder {
    fn hit(&mut self, _hit: Hit) {}
    fn log(&mut self, _rule: RuleId) {}
    fn nat(&mut self, _rule: RuleId) {}
}

/// Records nothing.
pub struct NoRecord;
impl Recorder for NoRecord {}

// The two metadata reads of the walk, out of line: inlined, the compiler hoists them out of the
// table loop, and every packet then pulls its metadata's cache line in even when no nat table
// and no MARK target exist.
#[inline(never)]
fn nat_sees(meta: &PacketMeta, hook: Hook) -> bool {
    meta.ct.nat_sees(hook)
}

#[cold]
#[inline(never)]
fn apply_mark(mark: Option<u32>, meta: &PacketMeta, mask: u32, value: u32) -> u32 {
    (mark.unwrap_or(meta.mark) & !mask) ^ value
}

/// `connmark_tg_shift` on the walk's marks; a packet without a connection is left alone.
#[cold]
#[inline(never)]
fn apply_connmark(fx: &mut Effects, meta: &PacketMeta, t: &ConnmarkTarget) {
    if !meta.ct.has_conn() {
        return;
    }
    let (nf, ct) = t.apply(
        fx.mark.unwrap_or(meta.mark),
        fx.ctmark.unwrap_or(meta.ct.mark),
    );
    if t.mode == ConnmarkMode::Restore {
        fx.mark = Some(nf);
    } else {
        fx.ctmark = Some(ct);
    }
}

/// Receives the LOG hits of a batch, by packet index (the dataplane turns them into log records).
pub trait BatchRecorder {
    fn log(&mut self, packet: usize, rule: RuleId);
}

/// Ignores a batch's LOG hits.
pub struct NoBatchRecord;
impl BatchRecorder for NoBatchRecord {
    #[inline(always)]
    fn log(&mut self, _packet: usize, _rule: RuleId) {}
}

/// The per-packet view of a [`BatchRecorder`].
struct PacketRecorder<'a, B> {
    batch: &'a mut B,
    packet: usize,
}

impl<B: BatchRecorder> Recorder for PacketRecorder<'_, B> {
    #[inline(always)]
    fn log(&mut self, rule: RuleId) {
        self.batch.log(self.packet, rule);
    }
}

/// Records the first rule a packet hit (what a ClassBench trace's expected column names).
#[derive(Debug, Default)]
pub struct FirstHit(pub Option<RuleId>);

impl Recorder for FirstHit {
    fn hit(&mut self, hit: Hit) {
        if let (None, Hit::Rule(id)) = (self.0, hit) {
            self.0 = Some(id);
        }
    }
}

impl Recorder for Trace {
    fn hit(&mut self, hit: Hit) {
        self.hits.push(hit);
    }
    fn log(&mut self, rule: RuleId) {
        self.logs.push(rule);
    }
    fn nat(&mut self, rule: RuleId) {
        self.nat = Some(rule);
    }
}

/// One table compiled.
#[derive(Clone, Debug)]
struct CTable {
    kind: TableKind,
    chains: Vec<CChain>,
    /// Chain index of each hook's built-in chain.
    hook_chain: [Option<u32>; 5],
    /// Policy of each hook's chain and its counter slot.
    policy: [(Policy, u32); 5],
    /// Whether each chain is built-in.
    builtin: Vec<bool>,
}

/// An immutable compiled ruleset.
#[derive(Clone, Debug)]
pub struct CompiledRuleset {
    tables: Vec<CTable>,
    /// Per hook, in netfilter priority order: (table index, start chain) of each table that has
    /// the hook's chain (so a packet never searches for its tables).
    plan: [Vec<(u8, u32)>; 5],
    /// Per hook: how many of `plan`'s first entries are the raw table (0 or 1).
    raw_len: [u8; 5],
    /// Per hook and [`Stage`]: the (table, chain) when that part of the hook is one chain of
    /// ACCEPT/DROP rules.
    simple: [[Option<(u8, u32)>; 3]; 5],
    /// Rule id of each counter slot.
    pub rule_ids: Vec<RuleId>,
    /// (table, hook) of each policy counter slot.
    pub policy_slots: Vec<(TableKind, Hook)>,
    buckets_init: Vec<Bucket>,
    start_ns: u64,
    /// Whether anything in the ruleset needs connection tracking.
    conntrack: bool,
}

/// Per-worker mutable state: the counter shard (rules by slot, policies), limit buckets.
pub struct WorkerState {
    /// Shared with whoever sums counters while the worker runs.
    pub counters: std::sync::Arc<CounterShard>,
    pub buckets: Vec<Bucket>,
    /// Jump return points of the walk in progress (kept here so the walk never allocates).
    stack: Vec<(u32, u32)>,
    /// `-m connlimit` groups.
    pub connlimits: crate::conntrack::connlimit::ConnLimits,
    /// This worker's connection tracker, when the ruleset needs one (connlimit counts against
    /// its table).
    pub ct: Option<Box<crate::conntrack::Tracker>>,
}

impl std::fmt::Debug for WorkerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerState")
            .field("buckets", &self.buckets.len())
            .field("connlimit_tuples", &self.connlimits.len())
            .field("tracked", &self.ct.as_ref().map(|t| t.table.len()))
            .finish()
    }
}

impl WorkerState {
    /// How many connlimit tuples this state may hold (the connection table's size).
    pub fn connlimits_limit(&self) -> usize {
        self.ct
            .as_ref()
            .map_or(CtConfig::default().max, |t| t.cfg.max) as usize
    }

    /// The stateful matches' view of this state.
    #[inline]
    fn side(&mut self) -> chain::MatchSide<'_> {
        chain::MatchSide {
            buckets: &mut self.buckets,
            connlimits: &mut self.connlimits,
            table: self.ct.as_deref().map(|t| &t.table),
        }
    }
}

fn table_index(kind: TableKind) -> usize {
    match kind {
        TableKind::Raw => 0,
        TableKind::Mangle => 1,
        TableKind::Nat => 2,
        TableKind::Filter => 3,
    }
}

/// Whether `rs` needs connection tracking: a rule with a connection-tracking match or target
/// (each takes `nf_ct_netns_get`), or a nat table (loading `iptable_nat` makes the kernel track
/// connections).
pub fn uses_conntrack(rs: &Ruleset) -> bool {
    rs.tables.iter().any(|t| {
        t.kind == TableKind::Nat
            || t.chains.iter().flat_map(|c| &c.rules).any(|r| {
                matches!(r.target, Target::Connmark(_) | Target::Ct(_))
                    || r.matches.iter().any(|m| {
                        matches!(
                            m,
                            Match::State(_)
                                | Match::Conntrack(_)
                                | Match::Helper(_)
                                | Match::Connmark(_)
                                | Match::Connlimit(_)
                        )
                    })
            })
    })
}

/// Can a match hotdrop this packet? Then the linear walk decides it.
#[inline]
pub fn needs_slow_path(h: &Headers) -> bool {
    if h.frag_off == 1 && h.proto == 6 {
        return true;
    }
    if h.frag_off != 0 {
        return false;
    }
    match h.l4 {
        L4::Short { .. } => true,
        L4::Tcp { options, .. } => !matches!(options, TcpOptions::Kinds(_)),
        _ => false,
    }
}

impl CompiledRuleset {
    /// Compiles `rs`; limit buckets start full at `start_ns`.
    pub fn compile(rs: &Ruleset, start_ns: u64, params: &TreeParams) -> CompiledRuleset {
        let mut rule_ids = Vec::new();
        let mut policy_slots = Vec::new();
        let mut slots = chain::SlotCounts::default();
        let mut buckets_init = Vec::new();
        let mut tables = Vec::new();
        for t in &rs.tables {
            let index_of = |name: &str| t.chain_index(name).map(|i| i as u32);
            let mut chains = Vec::new();
            for c in &t.chains {
                let targets = c
                    .rules
                    .iter()
                    .map(|r| match &r.target {
                        Target::None
                        | Target::Log(_)
                        | Target::Mark(_)
                        | Target::Connmark(_)
                        | Target::Ct(_) => CTarget::Continue,
                        Target::Accept => CTarget::Accept,
                        Target::Drop => CTarget::Drop,
                        Target::Return => CTarget::Return,
                        Target::Jump(n) => index_of(n).map_or(CTarget::Continue, CTarget::Jump),
                        Target::Goto(n) => index_of(n).map_or(CTarget::Continue, CTarget::Goto),
                        _ => CTarget::Other,
                    })
                    .collect();
                let base = rule_ids.len() as u32;
                rule_ids.extend(c.rules.iter().map(|r| r.id));
                let cc = CChain::build(&c.rules, targets, base, &mut slots, params);
                for r in &c.rules {
                    for m in &r.matches {
                        if let Match::Limit(l) = m {
                            buckets_init.push(Bucket::new(l, start_ns));
                        }
                    }
                }
                debug_assert_eq!(
                    buckets_init.len() as u32,
                    slots.buckets,
                    "one bucket per limit match"
                );
                chains.push(cc);
            }
            let mut hook_chain = [None; 5];
            let mut policy = [(Policy::Accept, 0); 5];
            for (hi, hook) in Hook::ALL.iter().enumerate() {
                if let Some(ci) = index_of(hook.name()) {
                    hook_chain[hi] = Some(ci);
                    policy[hi] = (t.chains[ci as usize].policy, policy_slots.len() as u32);
                    policy_slots.push((t.kind, *hook));
                }
            }
            let builtin = t.chains.iter().map(Chain::is_builtin).collect();
            tables.push(CTable {
                kind: t.kind,
                chains,
                hook_chain,
                policy,
                builtin,
            });
        }
        tables.sort_by_key(|t| table_index(t.kind));
        let plan: [Vec<(u8, u32)>; 5] = Hook::ALL.map(|hook| {
            hook_tables(hook)
                .iter()
                .filter_map(|&k| {
                    let ti = tables.iter().position(|t| t.kind == k)?;
                    tables[ti].hook_chain[hook as usize].map(|c| (ti as u8, c))
                })
                .collect()
        });
        // Hooks whose whole traversal is one table's built-in chain of ACCEPT/DROP rules (the
        // shape of ACL-style rulesets): the batch path decides those without the general walk.
        let raw_len = Hook::ALL.map(|hook| {
            plan[hook as usize]
                .first()
                .filter(|(ti, _)| tables[usize::from(*ti)].kind == TableKind::Raw)
                .map_or(0, |_| 1)
        });
        let simple_of = |part: &[(u8, u32)]| match part {
            [(ti, c)] => {
                let t: &CTable = &tables[usize::from(*ti)];
                let ch = &t.chains[*c as usize];
                (t.kind != TableKind::Nat
                    && ch
                        .targets
                        .iter()
                        .all(|x| matches!(x, CTarget::Accept | CTarget::Drop)))
                .then_some((*ti, *c))
            }
            _ => None,
        };
        let simple = Hook::ALL.map(|hook| {
            let (p, r) = (&plan[hook as usize], usize::from(raw_len[hook as usize]));
            [simple_of(p), simple_of(&p[..r]), simple_of(&p[r..])]
        });
        CompiledRuleset {
            conntrack: uses_conntrack(rs),
            plan,
            raw_len,
            simple,
            tables,
            rule_ids,
            policy_slots,
            buckets_init,
            start_ns,
        }
    }

    /// Whether no table has a chain on `hook` (packets pass it untouched and uncounted, as a
    /// kernel hook with no table registered).
    pub fn hook_is_empty(&self, hook: Hook) -> bool {
        self.plan[hook as usize].is_empty()
    }

    /// Whether the ruleset needs connection tracking (a stateful match, or a nat table, which
    /// the kernel registers only together with conntrack).
    pub fn uses_conntrack(&self) -> bool {
        self.conntrack
    }

    /// Whether table `kind` has a chain on `hook`.
    pub fn hook_has_table(&self, hook: Hook, kind: TableKind) -> bool {
        self.plan[hook as usize]
            .iter()
            .any(|(ti, _)| self.tables[usize::from(*ti)].kind == kind)
    }

    /// Whether no table of `stage` has a chain on `hook`.
    pub fn stage_is_empty(&self, hook: Hook, stage: Stage) -> bool {
        self.stage_plan(hook, stage).is_empty()
    }

    /// The (table, start chain) entries of `hook` that `stage` runs.
    fn stage_plan(&self, hook: Hook, stage: Stage) -> &[(u8, u32)] {
        let (p, r) = (
            &self.plan[hook as usize],
            usize::from(self.raw_len[hook as usize]),
        );
        match stage {
            Stage::All => p,
            Stage::Raw => &p[..r],
            Stage::AfterRaw => &p[r..],
        }
    }

    /// A fresh per-worker state (zero counters, full buckets).
    pub fn new_state(&self) -> WorkerState {
        WorkerState {
            counters: std::sync::Arc::new(CounterShard {
                rules: CounterArray::new(self.rule_ids.len()),
                policy: CounterArray::new(self.policy_slots.len()),
            }),
            buckets: self.buckets_init.clone(),
            stack: Vec::with_capacity(MAX_JUMP_DEPTH),
            connlimits: crate::conntrack::connlimit::ConnLimits::new(
                crate::conntrack::CtConfig::default().max as usize,
                0,
            ),
            ct: None,
        }
    }

    pub fn start_ns(&self) -> u64 {
        self.start_ns
    }

    /// Bytes of memory the compiled structures hold (trees, rule tables).
    pub fn memory_bytes(&self) -> usize {
        self.tables
            .iter()
            .flat_map(|t| t.chains.iter())
            .map(CChain::memory_bytes)
            .sum()
    }

    /// Per tree of every chain: (nodes, leaf entries, longest leaf, leaves, rules in chain).
    pub fn tree_stats(&self) -> Vec<(usize, usize, usize, usize, usize)> {
        let mut v = Vec::new();
        for t in &self.tables {
            for c in &t.chains {
                for tr in &c.trees {
                    let (a, b, l, n) = tr.stats();
                    v.push((a, b, l, n, c.rules.len()));
                }
            }
        }
        v
    }

    /// The trees of a table's chain (for statistics and tuning).
    pub fn chain_trees(&self, kind: TableKind, chain: usize) -> &[tree::Tree] {
        self.table(kind).map_or(&[], |t| &t.chains[chain].trees)
    }

    fn table(&self, kind: TableKind) -> Option<&CTable> {
        self.tables.iter().find(|t| t.kind == kind)
    }

    /// Runs `hook`'s tables on one packet: counters go to `st`, details to `rec`.
    pub fn classify<R: Recorder>(
        &self,
        hook: Hook,
        h: &Headers,
        meta: &PacketMeta,
        st: &mut WorkerState,
        rec: &mut R,
    ) -> (Verdict, u32) {
        self.classify_stage(hook, Stage::All, h, meta, st, rec)
    }

    /// [`Self::classify`] over the tables of `stage` only.
    pub fn classify_stage<R: Recorder>(
        &self,
        hook: Hook,
        stage: Stage,
        h: &Headers,
        meta: &PacketMeta,
        st: &mut WorkerState,
        rec: &mut R,
    ) -> (Verdict, u32) {
        let (v, fx) = self.classify_pre(hook, stage, h, meta, st, rec, &Key::of(h), None);
        (v, fx.mark.unwrap_or(meta.mark))
    }

    /// `pre`: the candidates of the first table's hook chain, already looked up (batch path).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn classify_pre<R: Recorder>(
        &self,
        hook: Hook,
        stage: Stage,
        h: &Headers,
        meta: &PacketMeta,
        st: &mut WorkerState,
        rec: &mut R,
        key: &Key,
        pre: Option<(TableKind, &[Option<&[LeafEntry]>; chain::MAX_PARTS])>,
    ) -> (Verdict, Effects) {
        let fast = !needs_slow_path(h);
        // The marks are read from the metadata only when a rule needs them (set when a MARK or
        // CONNMARK target changes them).
        let mut fx = Effects::default();
        let hi = hook as usize;
        for &(ti, start) in self.stage_plan(hook, stage) {
            let t = &self.tables[usize::from(ti)];
            let kind = t.kind;
            // The nat table only sees the first packet of a connection.
            if kind == TableKind::Nat && !nat_sees(meta, hook) {
                continue;
            }
            let leaves = pre.filter(|(k, _)| *k == kind).map(|(_, l)| l);
            if let Some(v) =
                self.walk_table(t, hi, start, key, h, meta, &mut fx, st, rec, fast, leaves)
            {
                return (v, fx);
            }
        }
        (Verdict::Accept, fx)
    }

    /// Classifies a batch of packets on one hook: `out[i]` gets the verdict of packet i and its
    /// new mark when a MARK target changed it. Headers and metadata come as separate arrays (the
    /// fast path touches only the headers). The tree lookups of the first table run interleaved
    /// across the batch, with prefetching.
    pub fn classify_batch(
        &self,
        hook: Hook,
        headers: &[Headers],
        metas: &[PacketMeta],
        st: &mut WorkerState,
        out: &mut [(Verdict, Effects)],
    ) {
        self.classify_batch_rec(hook, headers, metas, st, out, &mut NoBatchRecord)
    }

    /// [`Self::classify_batch_stage`] over every table of the hook.
    pub fn classify_batch_rec<B: BatchRecorder>(
        &self,
        hook: Hook,
        headers: &[Headers],
        metas: &[PacketMeta],
        st: &mut WorkerState,
        out: &mut [(Verdict, Effects)],
        rec: &mut B,
    ) {
        self.classify_batch_stage(hook, Stage::All, headers, metas, st, out, rec)
    }

    /// [`Self::classify_batch`] over the tables of `stage`, handing every LOG hit to `rec` with
    /// the packet's index.
    #[allow(clippy::too_many_arguments)]
    pub fn classify_batch_stage<B: BatchRecorder>(
        &self,
        hook: Hook,
        stage: Stage,
        headers: &[Headers],
        metas: &[PacketMeta],
        st: &mut WorkerState,
        out: &mut [(Verdict, Effects)],
        rec: &mut B,
    ) {
        const B: usize = 32;
        // The first table whose hook chain every packet visits (nat depends on the packet).
        // The first table of the hook (nat depends on the packet, so it never comes first here).
        let first = self
            .stage_plan(hook, stage)
            .first()
            .map(|&(ti, c)| (&self.tables[usize::from(ti)], c))
            .filter(|(t, _)| t.kind != TableKind::Nat);
        let n_all = headers.len().min(metas.len()).min(out.len());
        let hi = hook as usize;
        let simple = self.simple[hi][stage as usize].map(|(ti, c)| {
            (
                &self.tables[usize::from(ti)],
                &self.tables[usize::from(ti)].chains[c as usize],
            )
        });
        for start in (0..n_all).step_by(B) {
            let n = B.min(n_all - start);
            let (hs, ms, os) = (
                &headers[start..start + n],
                &metas[start..start + n],
                &mut out[start..start + n],
            );
            // The next batch's headers stream in while this one is classified (the fast path
            // reads only their first cache line; metadata only when a rule needs it).
            for h in &headers[(start + B).min(n_all)..(start + 2 * B).min(n_all)] {
                tree::prefetch(h);
            }
            let mut keys = [Key::default(); B];
            for (k, h) in keys.iter_mut().zip(hs) {
                *k = Key::of(h);
            }
            // The trees of the first table's hook chain, interleaved across the batch.
            let mut leaves: [[&[LeafEntry]; B]; chain::MAX_PARTS] = [[&[]; B]; chain::MAX_PARTS];
            let trees = first.map_or(&[][..], |(t, c)| &t.chains[c as usize].trees[..]);
            let mask = first.map_or(0, |(t, c)| t.chains[c as usize].batch_mask);
            // All batched trees advance level by level together, so their misses overlap too.
            let mut cur = [[0u32; B]; chain::MAX_PARTS];
            loop {
                let mut live = 0;
                for (ti, tree) in trees.iter().enumerate() {
                    if mask & (1 << ti) != 0 {
                        live += tree.step_batch(&keys[..n], &mut cur[ti][..n]);
                    }
                }
                if live == 0 {
                    break;
                }
            }
            for (ti, (tree, l)) in trees.iter().zip(leaves.iter_mut()).enumerate() {
                if mask & (1 << ti) != 0 {
                    tree.finish_batch(&cur[ti][..n], &mut l[..n]);
                }
            }
            for i in 0..n {
                let mut mine: [Option<&[LeafEntry]>; chain::MAX_PARTS] = [None; chain::MAX_PARTS];
                for (ti, (m, l)) in mine.iter_mut().zip(&leaves).enumerate() {
                    if mask & (1 << ti) != 0 {
                        *m = Some(l[i]);
                    }
                }
                if let (Some((t, c)), true) = (simple, !needs_slow_path(&hs[i])) {
                    os[i] = (
                        self.decide_simple(t, c, hi, &hs[i], &ms[i], st, &keys[i], &mine),
                        Effects::default(),
                    );
                    continue;
                }
                let pre = first.map(|(t, _)| (t.kind, &mine));
                let mut prec = PacketRecorder {
                    batch: &mut *rec,
                    packet: start + i,
                };
                os[i] =
                    self.classify_pre(hook, stage, &hs[i], &ms[i], st, &mut prec, &keys[i], pre);
            }
        }
    }

    /// A hook that is one chain of ACCEPT/DROP rules: the first match (or the policy) decides.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn decide_simple(
        &self,
        t: &CTable,
        c: &CChain,
        hi: usize,
        h: &Headers,
        meta: &PacketMeta,
        st: &mut WorkerState,
        key: &Key,
        leaves: &[Option<&[LeafEntry]>; chain::MAX_PARTS],
    ) -> Verdict {
        let bytes = u64::from(h.ip_len);
        let fx = Effects::default();
        match c.next_match(0, key, h, meta, &fx, &mut st.side(), true, Some(leaves)) {
            Found::Rule(i) => {
                st.counters.rules.at(c.dense_base as usize + i).add(bytes);
                match c.targets[i] {
                    CTarget::Accept => Verdict::Accept,
                    _ => Verdict::Drop,
                }
            }
            Found::End => {
                let (pol, slot) = t.policy[hi];
                st.counters.policy.at(slot as usize).add(bytes);
                match pol {
                    Policy::Accept => Verdict::Accept,
                    Policy::Drop => Verdict::Drop,
                }
            }
            Found::HotDrop => Verdict::HotDrop,
        }
    }

    /// One table; None means ACCEPT (the next table runs).
    #[allow(clippy::too_many_arguments)]
    fn walk_table<R: Recorder>(
        &self,
        t: &CTable,
        hi: usize,
        start: u32,
        key: &Key,
        h: &Headers,
        meta: &PacketMeta,
        fx: &mut Effects,
        st: &mut WorkerState,
        rec: &mut R,
        fast: bool,
        pre: Option<&[Option<&[LeafEntry]>; chain::MAX_PARTS]>,
    ) -> Option<Verdict> {
        let hook = Hook::ALL[hi];
        let mut chain = start as usize;
        let mut pos = 0usize;
        // Jump return points; chains nest at most as deep as the chain count.
        st.stack.clear();
        let bytes = u64::from(h.ip_len);
        loop {
            let c = &t.chains[chain];
            // The precomputed candidates serve the start chain (same key, any position).
            let leaves = if chain == start as usize { pre } else { None };
            let found = c.next_match(pos, key, h, meta, fx, &mut st.side(), fast, leaves);
            let i = match found {
                Found::HotDrop => return Some(Verdict::HotDrop),
                Found::End => {
                    if !t.builtin[chain] {
                        if let Some((c, p)) = st.stack.pop() {
                            (chain, pos) = (c as usize, p as usize);
                            continue;
                        }
                    }
                    return self.policy(t, hi, hook, bytes, st, rec);
                }
                Found::Rule(i) => i,
            };
            st.counters.rules.at(c.dense_base as usize + i).add(bytes);
            let rule = &c.model[i];
            rec.hit(Hit::Rule(rule.id));
            pos = i + 1;
            match c.targets[i] {
                CTarget::Continue => match &rule.target {
                    Target::Log(_) => rec.log(rule.id),
                    Target::Mark(m) => fx.mark = Some(apply_mark(fx.mark, meta, m.mask, m.value)),
                    Target::Connmark(cm) => apply_connmark(fx, meta, cm),
                    Target::Ct(ct) if fx.ct.is_none() => {
                        fx.ct = Some(CtTemplate::of(ct, rule.required_proto()))
                    }
                    _ => {}
                },
                CTarget::Accept => return None,
                CTarget::Drop => return Some(Verdict::Drop),
                CTarget::Return => {
                    let Some((c, p)) = st.stack.pop() else {
                        return self.policy(t, hi, hook, bytes, st, rec);
                    };
                    (chain, pos) = (c as usize, p as usize);
                }
                CTarget::Jump(n) => {
                    if st.stack.len() == MAX_JUMP_DEPTH {
                        // Deeper than any loop-free table allows: treat as the kernel's stack
                        // overflow protection would, by dropping.
                        return Some(Verdict::Drop);
                    }
                    st.stack.push((chain as u32, pos as u32));
                    (chain, pos) = (n as usize, 0);
                }
                CTarget::Goto(n) => (chain, pos) = (n as usize, 0),
                CTarget::Other => match &rule.target {
                    Target::Reject(r) => return Some(Verdict::Reject(*r)),
                    Target::Queue => {
                        return Some(Verdict::Queue {
                            num: 0,
                            total: 1,
                            bypass: false,
                            cpu_fanout: false,
                        })
                    }
                    Target::Nfqueue(q) => {
                        return Some(Verdict::Queue {
                            num: q.queue_num,
                            total: q.queues_total,
                            bypass: q.bypass,
                            cpu_fanout: q.cpu_fanout,
                        })
                    }
                    t => {
                        fx.nat = crate::nat::NatAction::of(t);
                        rec.nat(rule.id);
                        return None;
                    }
                },
            }
        }
    }

    fn policy<R: Recorder>(
        &self,
        t: &CTable,
        hi: usize,
        hook: Hook,
        bytes: u64,
        st: &mut WorkerState,
        rec: &mut R,
    ) -> Option<Verdict> {
        let (pol, slot) = t.policy[hi];
        st.counters.policy.at(slot as usize).add(bytes);
        rec.hit(Hit::Policy(t.kind, hook));
        match pol {
            Policy::Accept => None,
            Policy::Drop => Some(Verdict::Drop),
        }
    }
}
