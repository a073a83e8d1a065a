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
use crate::packet::{Headers, PacketMeta};

/// Most partitions a chain uses (fixed so lookups need no allocation).
pub const MAX_PARTS: usize = 4;

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
    fn flags(&self, r: u32) -> u32 {
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

/// What `next_match` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    Rule(usize),
    End,
    HotDrop,
}

fn partition_of(b: &RBox) -> usize {
    let bits: u32 = std::env::var("POLLWALL_PART_BITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let specific = |d: usize| b.width(d) <= 1u64 << bits;
    usize::from(specific(SRC)) | usize::from(specific(DST)) << 1
}

impl CChain {
    /// `dense_base`: counter index of the first rule; `bucket_base`: first limit bucket index.
    pub fn build(
        model: &[Rule],
        targets: Vec<CTarget>,
        dense_base: u32,
        bucket_base: &mut u32,
        params: &TreeParams,
    ) -> CChain {
        let mut rules = Vec::with_capacity(model.len());
        let mut stateful = Vec::with_capacity(model.len());
        for (i, r) in model.iter().enumerate() {
            let (rbox, exact) = rule_box(r);
            let mut limit_slots = Vec::new();
            for (mi, m) in r.matches.iter().enumerate() {
                if matches!(m, Match::Limit(_)) {
                    limit_slots.push((mi, *bucket_base));
                    *bucket_base += 1;
                }
            }
            stateful.push(!limit_slots.is_empty());
            rules.push(CRule {
                rbox,
                exact,
                dense: dense_base + i as u32,
                limit_slots,
            });
        }
        let terminal: Vec<bool> = model
            .iter()
            .map(|r| {
                !matches!(
                    r.target,
                    Target::None | Target::Jump(_) | Target::Log(_) | Target::Mark(_)
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
        let mut trees: Vec<Tree> = parts
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| Tree::build(p, &info, params))
            .collect();
        // Order: by POLLWALL_TREE_ORDER (tuning), default the largest partition first.
        if std::env::var("POLLWALL_TREE_ORDER").as_deref() == Ok("minpos") {
            trees.sort_by_key(|t| t.min_pos);
        } else {
            trees.sort_by_key(|t| std::cmp::Reverse(t.rules));
        }
        CChain {
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
    #[inline]
    pub fn check(
        &self,
        i: usize,
        h: &Headers,
        meta: &PacketMeta,
        mark: u32,
        buckets: &mut [Bucket],
    ) -> RuleMatch {
        let env = MatchEnv { mark, meta };
        let slots = &self.rules[i].limit_slots;
        rule_matches(&self.model[i], h, &env, |mi, _| {
            slots
                .iter()
                .find(|(m, _)| *m == mi)
                .is_some_and(|(_, b)| buckets[*b as usize].take(meta.now_ns))
        })
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
        mark: u32,
        buckets: &mut [Bucket],
        fast: bool,
        pre: Option<&[Option<&[LeafEntry]>; MAX_PARTS]>,
    ) -> Found {
        if !fast {
            for i in from..self.rules.len() {
                match self.check(i, h, meta, mark, buckets) {
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
                    let c = e.pos as usize;
                    if c < from {
                        continue;
                    }
                    if c >= best {
                        break;
                    }
                    if !e.rbox.contains(key) {
                        continue;
                    }
                    if e.flags & LeafEntry::STATEFUL != 0 {
                        best = c;
                        tentative = true;
                        break;
                    }
                    if e.flags & LeafEntry::EXACT != 0 {
                        best = c;
                        tentative = false;
                        break;
                    }
                    match self.check(c, h, meta, mark, buckets) {
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
            match self.check(best, h, meta, mark, buckets) {
                RuleMatch::Yes => return Found::Rule(best),
                RuleMatch::HotDrop => return Found::HotDrop,
                RuleMatch::No => from = best + 1,
            }
        }
    }
}
