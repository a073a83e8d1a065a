//! One chain compiled: its rules (boxes, leaf-check flags, resolved targets) and a few decision
//! trees over partitions of them, plus `next_match`, which finds the first rule at or after a
//! position that matches a packet, exactly as an in-order walk would.
//!
//! Partitions (EffiCuts/CutSplit idea): rules are grouped by which of source and destination are
//! specific (a /16 or longer), so a tree never has to replicate wildcard-heavy rules across the
//! cuts of the specific ones. Candidates from the trees are consumed in global rule order; a rule
//! whose check has a side effect (a `limit` match) is only checked once every earlier candidate of
//! every tree has been ruled out.

use super::rbox::{rule_box, CRule, Key, RBox, DST, SRC};
use super::tree::{LeafEntry, RuleInfo, Tree, TreeParams};
use crate::eval::limit::Bucket;
use crate::eval::matcher::{rule_matches, MatchEnv, RuleMatch};
use crate::model::{Match, Rule, Target};
use crate::packet::{Effects, Headers, PacketMeta};

/// Most partitions a chain uses (fixed so lookups need no allocation).
pub const MAX_PARTS: usize = 8;

/// A resolved target.
#[derive(Clone, Debug)]
pub enum CTarget {
    Continue,
    Accept,
    Drop,
    Return,
    Jump(u32),
    Goto(u32),
    /// Any other target: see the model rule.
    Other,
}

/// A compiled chain.
#[derive(Clone, Debug)]
pub struct CChain {
    /// Counter slot of the first rule (rule `i` counts into `dense_base + i`).
    pub dense_base: u32,
    pub rules: Vec<CRule>,
    pub model: Vec<Rule>,
    pub targets: Vec<CTarget>,
    /// Rules whose check has a side effect.
    pub stateful: Vec<bool>,
    pub trees: Vec<Tree>,
    /// Bit i: the batch path looks tree i up for every packet, interleaved (set for trees the
    /// sample lookups needed for most packets; the others are looked up per packet on demand).
    pub batch_mask: u8,
}

struct Info<'a> {
    rules: &'a [CRule],
    terminal: &'a [bool],
    stateful: &'a [bool],
}

impl RuleInfo for Info<'_> {
    fn rbox(&self, r: u32) -> &RBox {
        &self.rules[r as usize].rbox
    }
    fn flags(&self, r: u32) -> u16 {
        let r = r as usize;
        (if self.rules[r].exact {
            LeafEntry::EXACT
        } else {
            0
        }) | (if self.stateful[r] {
            LeafEntry::STATEFUL
        } else {
            0
        })
    }
    fn terminal_exact(&self, r: u32) -> bool {
        self.rules[r as usize].exact && self.terminal[r as usize]
    }
}

/// How many stateful slots of each kind the chains compiled so far used.
#[derive(Clone, Copy, Debug, Default)]
pub struct SlotCounts {
    pub buckets: u32,
    pub connlimits: u32,
}

/// The per-worker state a rule's stateful matches change: the limit buckets, the connlimit
/// groups, and the connection table connlimit counts against.
pub struct MatchSide<'a> {
    pub buckets: &'a mut [Bucket],
    pub connlimits: &'a mut crate::conntrack::connlimit::ConnLimits,
    pub table: Option<&'a crate::conntrack::Table>,
}

/// What `next_match` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Rule(usize),
    End,
    HotDrop,
}

fn partition_of(b: &RBox) -> usize {
    let specific = |d: usize| b.width(d) <= 1 << 16;
    usize::from(specific(SRC)) | usize::from(specific(DST)) << 1
}

impl CChain {
    /// `dense_base`: counter index of the first rule; `bucket_base`: first limit bucket index.
    pub fn build(
        model: &[Rule],
        targets: Vec<CTarget>,
        dense_base: u32,
        slots: &mut SlotCounts,
        params: &TreeParams,
    ) -> CChain {
        let mut rules = Vec::with_capacity(model.len());
        let mut stateful = Vec::with_capacity(model.len());
        for r in model.iter() {
            let (rbox, exact) = rule_box(r);
            let mut limit_slots = Vec::new();
            let mut connlimit_slots = Vec::new();
            for (mi, m) in r.matches.iter().enumerate() {
                if matches!(m, Match::Limit(_)) {
                    limit_slots.push((mi, slots.buckets));
                    slots.buckets += 1;
                }
                if matches!(m, Match::Connlimit(_)) {
                    connlimit_slots.push((mi, slots.connlimits));
                    slots.connlimits += 1;
                }
            }
            stateful.push(!limit_slots.is_empty() || !connlimit_slots.is_empty());
            rules.push(CRule {
                rbox,
                exact,
                limit_slots,
                connlimit_slots,
            });
        }
        let terminal: Vec<bool> = model
            .iter()
            .map(|r| {
                !matches!(
                    r.target,
                    Target::None
                        | Target::Jump(_)
                        | Target::Log(_)
                        | Target::Mark(_)
                        | Target::Connmark(_)
                        | Target::Ct(_)
                )
            })
            .collect();
        let mut parts: [Vec<u32>; 4] = Default::default();
        for (i, r) in rules.iter().enumerate() {
            parts[partition_of(&r.rbox)].push(i as u32);
        }
        // Small partitions join the wildcard one rather than cost a lookup of their own.
        let small = params.binth * 4;
        for p in 1..4 {
            if !parts[p].is_empty() && parts[p].len() <= small {
                let moved = std::mem::take(&mut parts[p]);
                parts[0].extend(moved);
            }
        }
        parts[0].sort_unstable();
        let info = Info {
            rules: &rules,
            terminal: &terminal,
            stateful: &stateful,
        };
        let trees = build_tuned(&parts, &info, params);
        let batch_mask = if rules.is_empty() {
            0
        } else {
            batch_mask(&trees, &sample_keys(&rules, 1024))
        };
        CChain {
            batch_mask,
            dense_base,
            rules,
            model: model.to_vec(),
            targets,
            stateful,
            trees,
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.trees.iter().map(Tree::memory_bytes).sum::<usize>()
            + self.rules.len() * (std::mem::size_of::<CRule>() + std::mem::size_of::<CTarget>())
    }

    /// The full check of rule `i` (IP part and matches in order), spending limit tokens.
    // Kept out of line: inlined, the compiler hoists the metadata loads it needs into the
    // walk, so every packet touched its metadata's cache line even when no rule reads it.
    #[inline(never)]
    pub fn check(
        &self,
        i: usize,
        h: &Headers,
        meta: &PacketMeta,
        fx: &Effects,
        side: &mut MatchSide<'_>,
    ) -> RuleMatch {
        let env = MatchEnv {
            mark: fx.mark.unwrap_or(meta.mark),
            ctmark: fx.ctmark.unwrap_or(meta.ct.mark),
            meta,
        };
        let rule = &self.rules[i];
        let MatchSide {
            buckets,
            connlimits,
            table,
        } = side;
        let slot_of = |slots: &[(usize, u32)], mi: usize| {
            slots
                .iter()
                .find(|(m, _)| *m == mi)
                .map(|(_, s)| *s as usize)
        };
        rule_matches(
            &self.model[i],
            h,
            &env,
            |mi, _| slot_of(&rule.limit_slots, mi).is_some_and(|b| buckets[b].take(meta.now_ns)),
            |mi, c| match slot_of(&rule.connlimit_slots, mi) {
                Some(slot) => {
                    crate::conntrack::connlimit::count_packet(connlimits, slot, c, h, meta, *table)
                }
                None => 0,
            },
        )
    }

    /// First matching rule at or after `from`, by the trees (`fast`) or by a linear walk.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub fn next_match(
        &self,
        from: usize,
        key: &Key,
        h: &Headers,
        meta: &PacketMeta,
        fx: &Effects,
        side: &mut MatchSide<'_>,
        fast: bool,
        pre: Option<&[Option<&[LeafEntry]>; MAX_PARTS]>,
    ) -> Found {
        if !fast {
            for i in from..self.rules.len() {
                match self.check(i, h, meta, fx, side) {
                    RuleMatch::Yes => return Found::Rule(i),
                    RuleMatch::HotDrop => return Found::HotDrop,
                    RuleMatch::No => {}
                }
            }
            return Found::End;
        }
        // Trees are ordered by their first rule: once a match is known, a tree whose rules all
        // come later cannot hold an earlier one, and is not even looked up.
        let mut leaves: [Option<&[LeafEntry]>; MAX_PARTS] =
            pre.copied().unwrap_or([None; MAX_PARTS]);
        let mut from = from;
        loop {
            let mut best = usize::MAX;
            let mut tentative = false;
            for (ti, tree) in self.trees.iter().enumerate() {
                if tree.min_pos as usize >= best {
                    continue;
                }
                let leaf = *leaves[ti].get_or_insert_with(|| tree.lookup(key));
                for e in leaf.iter() {
                    let c = e.pos() as usize;
                    if c < from {
                        continue;
                    }
                    if c >= best {
                        break;
                    }
                    if !e.contains(key) {
                        continue;
                    }
                    if e.flags() & LeafEntry::STATEFUL != 0 {
                        best = c;
                        tentative = true;
                        break;
                    }
                    if e.flags() & LeafEntry::EXACT != 0 {
                        best = c;
                        tentative = false;
                        break;
                    }
                    match self.check(c, h, meta, fx, side) {
                        RuleMatch::No => {}
                        RuleMatch::Yes => {
                            best = c;
                            tentative = false;
                            break;
                        }
                        RuleMatch::HotDrop => {
                            best = c;
                            tentative = true;
                            break;
                        }
                    }
                }
            }
            if best == usize::MAX {
                return Found::End;
            }
            if !tentative {
                return Found::Rule(best);
            }
            match self.check(best, h, meta, fx, side) {
                RuleMatch::Yes => return Found::Rule(best),
                RuleMatch::HotDrop => return Found::HotDrop,
                RuleMatch::No => from = best + 1,
            }
        }
    }
}

/// Builds the partitions' trees, ordered by their first rule. When `params.tune` is set, a few
/// leaf sizes and replication budgets are tried and the set of trees with the least estimated
/// lookup work on points sampled from the rules' own boxes (ClassBench's trace model) is kept,
/// among those within the memory budget. The estimate counts tree levels and leaf entries the
/// lookup would visit, so the choice is deterministic.
fn build_tuned(parts: &[Vec<u32>; 4], info: &Info, params: &TreeParams) -> Vec<Tree> {
    let parts: Vec<Vec<u32>> = parts.to_vec();
    let parts = &parts;
    // Trees already built, by (rules, leaf size, replication): the layouts share most of their
    // partitions, so each variant builds only the tree that differs.
    let mut built: Vec<(Vec<u32>, usize, usize, Tree)> = Vec::new();
    let mut build = |parts: &[Vec<u32>], p: &TreeParams| {
        let mut trees: Vec<Tree> = Vec::new();
        for x in parts.iter().filter(|x| !x.is_empty()) {
            let key = (p.binth, p.max_replication);
            let t = match built.iter().find(|(r, b, m, _)| r == x && (*b, *m) == key) {
                Some((.., t)) => t.clone(),
                None => {
                    let t = Tree::build(x, info, p);
                    built.push((x.clone(), key.0, key.1, t.clone()));
                    t
                }
            };
            trees.push(t);
        }
        trees.sort_by_key(|t| t.min_pos);
        trees
    };
    if !params.tune || info.rules.len() < 64 {
        return build(parts, params);
    }
    let samples = sample_keys(info.rules, 2048);
    let mut best: Option<(f64, usize, Vec<Tree>)> = None;
    // A candidate over the memory budget is taken only when it is no bigger than the best so
    // far (when every candidate is over it, the smaller and cheaper ones still win).
    let consider = |trees: Vec<Tree>, best: &mut Option<(f64, usize, Vec<Tree>)>| -> bool {
        let mem: usize = trees.iter().map(Tree::memory_bytes).sum();
        let cost = estimate_cost(&trees, &samples);
        if std::env::var_os("POLLWALL_TUNE_VERBOSE").is_some() {
            eprintln!("tune: {} trees, {mem} bytes, cost {cost:.2}", trees.len());
        }
        let better = match best {
            None => true,
            Some((c, m, _)) => cost < *c && (mem <= params.max_chain_bytes || mem <= *m),
        };
        if better {
            *best = Some((cost, mem, trees));
        }
        better
    };
    // Layouts: the four partitions as they are, or the rules specific in both addresses folded
    // into the source- or destination-specific tree (one tree less to visit per packet, when
    // those rules come early, at the price of some replication).
    let mut layout = parts.clone();
    consider(build(parts, params), &mut best);
    if !parts[3].is_empty() {
        for into in [1, 2] {
            if parts[into].is_empty() {
                continue;
            }
            let mut l = parts.clone();
            let moved = std::mem::take(&mut l[3]);
            l[into].extend(moved);
            l[into].sort_unstable();
            if consider(build(&l, params), &mut best) {
                layout = l;
            }
        }
    }
    // Large chains: EffiCuts' separation by largeness in each field, so that wide rules do not
    // replicate through the trees of narrow ones.
    if info.rules.len() >= EFFI_MIN_RULES {
        let l = largeness_parts(info.rules);
        if consider(build(&l, params), &mut best) {
            layout = l;
        }
    }
    // Smaller leaves with more replication, while that keeps paying.
    for (binth, repl) in [(2, 16), (1, 16)] {
        let p = TreeParams {
            binth,
            max_replication: repl,
            ..*params
        };
        if !consider(build(&layout, &p), &mut best) {
            break;
        }
    }
    best.map(|(.., t)| t).unwrap_or_default()
}

/// Chains from this size on also try the largeness partitions (below it the address
/// partitions did as well on the ClassBench 10K sets, where the estimate sometimes preferred
/// the largeness ones for a slower result).
const EFFI_MIN_RULES: usize = 20_000;

/// EffiCuts-style partitions: rules grouped by which of source, destination, source port and
/// destination port are "large" (wider than a /16, or than half the port range); a small group
/// joins a group that is large in more fields (its rules only replicate less there), until at
/// most [`MAX_PARTS`] groups of a useful size remain. Rule order is kept inside each group.
fn largeness_parts(rules: &[CRule]) -> Vec<Vec<u32>> {
    let cat = |b: &RBox| -> usize {
        usize::from(b.width(SRC) > 1 << 16)
            | usize::from(b.width(DST) > 1 << 16) << 1
            | usize::from(b.width(super::rbox::SPORT) > 1 << 15) << 2
            | usize::from(b.width(super::rbox::DPORT) > 1 << 15) << 3
    };
    let mut groups: Vec<Vec<u32>> = vec![Vec::new(); 16];
    for (i, r) in rules.iter().enumerate() {
        groups[cat(&r.rbox)].push(i as u32);
    }
    let min = (rules.len() / 64).max(64);
    loop {
        let live: Vec<usize> = (0..16).filter(|&c| !groups[c].is_empty()).collect();
        // The smallest group that is too small, or the smallest while there are too many.
        let victim = live
            .iter()
            .copied()
            .filter(|&c| c != 15)
            .min_by_key(|&c| groups[c].len())
            .filter(|&c| groups[c].len() < min || live.len() > MAX_PARTS);
        let Some(c) = victim else {
            break;
        };
        // Its nearest superset that exists (fewest extra large fields, then the biggest).
        let into = (0..16usize)
            .filter(|&d| d != c && d & c == c && !groups[d].is_empty())
            .min_by_key(|&d| ((d ^ c).count_ones(), usize::MAX - groups[d].len()))
            .unwrap_or(15);
        let moved = std::mem::take(&mut groups[c]);
        groups[into].extend(moved);
        groups[into].sort_unstable();
    }
    groups.into_iter().filter(|g| !g.is_empty()).collect()
}

/// Trees that the first-match lookup of most sample keys visits (always the first one).
fn batch_mask(trees: &[Tree], keys: &[Key]) -> u8 {
    let mut visits = [0usize; MAX_PARTS];
    for k in keys {
        let mut best = usize::MAX;
        for (ti, t) in trees.iter().enumerate() {
            if t.min_pos as usize >= best {
                continue;
            }
            visits[ti] += 1;
            if let Some(e) = t
                .lookup(k)
                .iter()
                .find(|e| e.pos() as usize >= best || e.contains(k))
            {
                if e.contains(k) && (e.pos() as usize) < best {
                    best = e.pos() as usize;
                }
            }
        }
    }
    let mut mask = 1u8;
    for (ti, v) in visits.iter().enumerate().take(trees.len()) {
        if *v * 2 > keys.len() {
            mask |= 1 << ti;
        }
    }
    mask
}

/// Points inside randomly chosen rules' boxes (a fixed xorshift sequence).
fn sample_keys(rules: &[CRule], n: usize) -> Vec<Key> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    (0..n)
        .map(|_| {
            let b = &rules[next() as usize % rules.len()].rbox;
            let mut k = Key::default();
            for d in 0..super::rbox::DIMS {
                let (lo, hi) = (b.lo[d], b.hi[d].max(b.lo[d]));
                k.0[d] = lo + (next() % (u64::from(hi - lo) + 1)) as u32;
            }
            k
        })
        .collect()
}

/// What visiting one more tree costs beyond its levels (its root, key loads, the batch step).
const TREE_VISIT_COST: usize = 4;

/// Average tree levels plus leaf entries a first-match lookup visits over `keys`.
fn estimate_cost(trees: &[Tree], keys: &[Key]) -> f64 {
    let mut work = 0usize;
    for k in keys {
        let mut best = usize::MAX;
        for t in trees {
            if t.min_pos as usize >= best {
                continue;
            }
            work += TREE_VISIT_COST + 2 * t.depth_of(k);
            for e in t.lookup(k) {
                work += 1;
                if e.pos() as usize >= best {
                    break;
                }
                if e.contains(k) {
                    best = e.pos() as usize;
                    break;
                }
            }
        }
    }
    work as f64 / keys.len().max(1) as f64
}
