//! A HiCuts/HyperCuts-style decision tree over rule boxes.
//!
//! Each internal node cuts one dimension of its (power-of-two sized) region into 2^k equal parts,
//! so the child is found with a subtract and a shift. Leaves hold the positions of the rules whose
//! boxes overlap the leaf's region, in rule order, cut short after the first rule that covers the
//! whole region and ends the chain (nothing after it can be reached). The number of cuts per node
//! is bounded by a space factor (HiCuts' `spfac`), and a node whose cuts do not separate its rules
//! becomes a leaf, so replication stays bounded; wildcard-heavy rules go to separate trees
//! (EffiCuts-style partitions, chosen in [`super::chain`]).

use super::rbox::{Key, RBox, DIMS, DIM_BITS};

/// Tree build parameters.
#[derive(Clone, Copy, Debug)]
pub struct TreeParams {
    /// A node with at most this many rules is a leaf.
    pub binth: usize,
    /// Space factor: children's total rule count may grow to `spfac * n + 2^k`.
    pub spfac: f64,
    /// At most 2^max_cut_bits children per node.
    pub max_cut_bits: u32,
    /// Depth limit (a safety net against pathological sets).
    pub max_depth: u32,
}

impl Default for TreeParams {
    fn default() -> Self {
        TreeParams {
            binth: 8,
            spfac: 4.0,
            max_cut_bits: 8,
            max_depth: 24,
        }
    }
}

const LEAF: u8 = 0xff;

/// One node: an internal node (`dim`, `shift`, children at `first`) or a leaf (rules
/// `leaf_rules[first..first+len]`).
#[derive(Clone, Copy, Debug)]
#[repr(C)]
struct Node {
    dim: u8,
    shift: u8,
    _pad: u16,
    lo: u32,
    first: u32,
    len: u32,
}

/// An immutable decision tree.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    nodes: Vec<Node>,
    children: Vec<u32>,
    leaf_rules: Vec<u32>,
}

/// Which rules stop the chain when they match (their followers in a covered leaf are unreachable).
pub trait RuleInfo {
    fn rbox(&self, rule: u32) -> &RBox;
    /// The box decides the rule (no leaf check) and a match ends the chain's walk.
    fn terminal_exact(&self, rule: u32) -> bool;
}

impl Tree {
    /// Builds a tree over `rules` (positions, ascending).
    pub fn build(rules: &[u32], info: &impl RuleInfo, p: &TreeParams) -> Tree {
        let mut t = Tree::default();
        let root = RBox {
            lo: [0; DIMS],
            hi: super::rbox::DIM_MAX,
        };
        t.nodes.push(Node {
            dim: LEAF,
            shift: 0,
            _pad: 0,
            lo: 0,
            first: 0,
            len: 0,
        });
        let mut work = vec![(0u32, root, prune(rules, &root, info), 0u32)];
        while let Some((id, region, rs, depth)) = work.pop() {
            match choose_cut(&region, &rs, info, p, depth) {
                None => {
                    let first = t.leaf_rules.len() as u32;
                    t.leaf_rules.extend_from_slice(&rs);
                    t.nodes[id as usize] = Node {
                        dim: LEAF,
                        shift: 0,
                        _pad: 0,
                        lo: 0,
                        first,
                        len: rs.len() as u32,
                    };
                }
                Some((dim, bits)) => {
                    let width_bits = region_bits(&region, dim);
                    let shift = width_bits - bits;
                    let first = t.children.len() as u32;
                    let n = 1u32 << bits;
                    t.nodes[id as usize] = Node {
                        dim: dim as u8,
                        shift: shift as u8,
                        _pad: 0,
                        lo: region.lo[dim],
                        first,
                        len: n,
                    };
                    t.children.resize(t.children.len() + n as usize, 0);
                    // Identical children (same rule list) share one subtree.
                    let mut prev: Option<(Vec<u32>, u32)> = None;
                    for c in 0..n {
                        let mut sub = region;
                        sub.lo[dim] = region.lo[dim] + (c << shift);
                        sub.hi[dim] = sub.lo[dim] + ((1u64 << shift) - 1) as u32;
                        let crs = prune(&rs, &sub, info);
                        let child = match &prev {
                            Some((prs, pid)) if *prs == crs && crs.len() <= p.binth => *pid,
                            _ => {
                                let cid = t.nodes.len() as u32;
                                t.nodes.push(Node {
                                    dim: LEAF,
                                    shift: 0,
                                    _pad: 0,
                                    lo: 0,
                                    first: 0,
                                    len: 0,
                                });
                                work.push((cid, sub, crs.clone(), depth + 1));
                                prev = Some((crs, cid));
                                cid
                            }
                        };
                        t.children[(first + c) as usize] = child;
                    }
                }
            }
        }
        t
    }

    /// The candidate rules for `key`, in rule order.
    #[inline]
    pub fn lookup(&self, key: &Key) -> &[u32] {
        let mut n = &self.nodes[0];
        while n.dim != LEAF {
            let v = key.0[n.dim as usize];
            let idx = (v.wrapping_sub(n.lo) >> n.shift) as usize;
            let child = self.children[n.first as usize + idx];
            n = &self.nodes[child as usize];
        }
        &self.leaf_rules[n.first as usize..(n.first + n.len) as usize]
    }

    /// Bytes of memory the tree holds.
    pub fn memory_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + (self.children.len() + self.leaf_rules.len()) * 4
    }

    /// (nodes, leaf entries, longest leaf, leaves).
    pub fn stats(&self) -> (usize, usize, usize, usize) {
        let leaves: Vec<_> = self.nodes.iter().filter(|n| n.dim == LEAF).collect();
        let longest = leaves.iter().map(|n| n.len as usize).max().unwrap_or(0);
        (
            self.nodes.len(),
            self.leaf_rules.len(),
            longest,
            leaves.len(),
        )
    }
}

fn region_bits(r: &RBox, dim: usize) -> u32 {
    let w = u64::from(r.hi[dim] - r.lo[dim]) + 1;
    63 - w.leading_zeros()
}

/// Rules overlapping `region`, cut after the first terminal rule that covers it.
fn prune(rules: &[u32], region: &RBox, info: &impl RuleInfo) -> Vec<u32> {
    let mut out = Vec::new();
    for &r in rules {
        let b = info.rbox(r);
        if !b.overlaps(region) {
            continue;
        }
        out.push(r);
        if info.terminal_exact(r) && b.covers(region) {
            break;
        }
    }
    out
}

/// HiCuts' choice: the dimension whose rule boundaries are most distinct inside the region, and
/// the largest number of cuts within the space factor. None: make a leaf.
fn choose_cut(
    region: &RBox,
    rs: &[u32],
    info: &impl RuleInfo,
    p: &TreeParams,
    depth: u32,
) -> Option<(usize, u32)> {
    if rs.len() <= p.binth || depth >= p.max_depth {
        return None;
    }
    let mut best: Option<(usize, usize)> = None;
    for dim in 0..DIMS {
        if region_bits(region, dim) == 0 {
            continue;
        }
        let mut pts: Vec<(u32, u32)> = rs
            .iter()
            .map(|&r| {
                let b = info.rbox(r);
                (b.lo[dim].max(region.lo[dim]), b.hi[dim].min(region.hi[dim]))
            })
            .collect();
        pts.sort_unstable();
        pts.dedup();
        if pts.len() > 1 && best.is_none_or(|(_, n)| pts.len() > n) {
            best = Some((dim, pts.len()));
        }
    }
    let (dim, _) = best?;
    let avail = region_bits(region, dim);
    let limit = p.spfac * rs.len() as f64;
    let mut chosen = 0;
    let mut chosen_max = rs.len();
    for bits in 1..=p.max_cut_bits.min(avail).min(DIM_BITS[dim]) {
        let n = 1u64 << bits;
        let shift = avail - bits;
        let (total, max) = child_counts(region, rs, info, dim, shift, n);
        if chosen != 0 && (total as f64 + n as f64) > limit {
            break;
        }
        chosen = bits;
        chosen_max = max;
        if max <= p.binth {
            break;
        }
    }
    // A cut that separates nothing would recurse forever: make a leaf instead.
    if chosen == 0 || chosen_max >= rs.len() {
        // Try the other dimensions with a single halving before giving up.
        for d in 0..DIMS {
            let bits = region_bits(region, d);
            if bits == 0 {
                continue;
            }
            let (_, max) = child_counts(region, rs, info, d, bits - 1, 2);
            if max < rs.len() {
                return Some((d, 1));
            }
        }
        return None;
    }
    Some((dim, chosen))
}

/// (sum over children of their rule counts, largest child) for a cut.
fn child_counts(
    region: &RBox,
    rs: &[u32],
    info: &impl RuleInfo,
    dim: usize,
    shift: u32,
    n: u64,
) -> (usize, usize) {
    let mut counts = vec![0usize; n as usize];
    for &r in rs {
        let b = info.rbox(r);
        let lo = b.lo[dim].max(region.lo[dim]);
        let hi = b.hi[dim].min(region.hi[dim]);
        if lo > hi {
            continue;
        }
        let a = ((lo - region.lo[dim]) >> shift) as usize;
        let z = ((hi - region.lo[dim]) >> shift) as usize;
        for c in counts.iter_mut().take(z + 1).skip(a) {
            *c += 1;
        }
    }
    (
        counts.iter().sum(),
        counts.iter().copied().max().unwrap_or(0),
    )
}
