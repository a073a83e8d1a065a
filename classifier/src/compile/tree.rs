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
    /// Memory bound: leaf entries may total at most this many times the rule count (past it,
    /// nodes become leaves); keeps overlapping, wildcard-heavy sets from exploding.
    pub max_replication: usize,
    /// Try a few leaf sizes and budgets per chain and keep the cheapest (see `chain`).
    pub tune: bool,
    /// Memory a chain's trees may use when tuning picks among candidates.
    pub max_chain_bytes: usize,
}

impl Default for TreeParams {
    fn default() -> Self {
        TreeParams {
            binth: 8,
            spfac: 4.0,
            max_cut_bits: 8,
            max_depth: 24,
            max_replication: 8,
            tune: true,
            max_chain_bytes: 6 << 20,
        }
    }
}

const LEAF: u8 = 0xff;

/// Marks a batch lookup that left every region (no candidates).
const EMPTY_NODE: u32 = u32::MAX;

/// Asks the CPU to bring the line holding address `p` in (any address: a hint never faults).
#[inline(always)]
fn prefetch_ptr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache: it cannot fault or change program state,
    // whatever the address; SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p as *const i8);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Asks the CPU to bring `v`'s cache line in (no effect where there is no such instruction).
#[inline(always)]
pub(crate) fn prefetch<T>(v: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache: it cannot fault or change program state,
    // and the pointer comes from a live reference. SSE is part of the x86_64 baseline.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            v as *const T as *const i8,
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = v;
}

impl Node {
    const EMPTY_LEAF: Node = Node {
        dim: LEAF,
        shift: 0,
        _pad: 0,
        lo: 0,
        first: 0,
        len: 0,
    };
}

/// One node: an internal node (`dim`, `shift`, its `len` children at `nodes[first..]`) or a
/// leaf (rules `leaf_rules[first..first+len]`).
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

/// A leaf entry: the rule's box inline (no indirection while scanning), its position in the
/// chain and its flags. (A 32-byte packing with 16-bit port bounds measured slower: the five
/// 32-bit range checks here compile to a few vector compares.)
#[derive(Clone, Copy, Debug)]
#[repr(C, align(16))]
pub struct LeafEntry {
    rbox: RBox,
    pos: u32,
    flags: u32,
}

impl LeafEntry {
    /// The box decides the rule.
    pub const EXACT: u16 = 1;
    /// Checking the rule has a side effect (a `limit` match).
    pub const STATEFUL: u16 = 2;

    pub fn new(b: &RBox, pos: u32, flags: u16) -> LeafEntry {
        LeafEntry {
            rbox: *b,
            pos,
            flags: u32::from(flags),
        }
    }

    #[inline(always)]
    pub fn flags(&self) -> u16 {
        self.flags as u16
    }

    /// The rule's position in its chain.
    #[inline(always)]
    pub fn pos(&self) -> u32 {
        self.pos
    }

    /// The key lies in the rule's box.
    #[inline(always)]
    pub fn contains(&self, k: &Key) -> bool {
        self.rbox.contains(k)
    }
}

/// An immutable decision tree.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    /// The first rule position the tree holds (u32::MAX when empty).
    pub min_pos: u32,
    /// How many rules the tree was built over.
    pub rules: usize,
    nodes: Vec<Node>,
    leaf_rules: Vec<LeafEntry>,
}

/// Which rules stop the chain when they match (their followers in a covered leaf are unreachable).
pub trait RuleInfo {
    fn rbox(&self, rule: u32) -> &RBox;
    /// The rule's [`LeafEntry`] flags.
    fn flags(&self, rule: u32) -> u16;
    /// The box decides the rule (no leaf check) and a match ends the chain's walk.
    fn terminal_exact(&self, rule: u32) -> bool;
}

impl Tree {
    /// Builds a tree over `rules` (positions, ascending).
    pub fn build(rules: &[u32], info: &impl RuleInfo, p: &TreeParams) -> Tree {
        let mut t = Tree {
            min_pos: rules.iter().copied().min().unwrap_or(u32::MAX),
            rules: rules.len(),
            ..Tree::default()
        };
        let root = RBox {
            lo: [0; DIMS],
            hi: super::rbox::DIM_MAX,
        };
        t.nodes.push(Node::EMPTY_LEAF);
        // Breadth first, so that when the budget runs out it is the deepest refinements that are
        // given up, not whole subtrees. The budget bounds the rule lists of all nodes built
        // (internal and leaf), i.e. the build work and, with it, the replication and memory.
        let budget = (rules.len() * p.max_replication).max(1024);
        let mut committed = rules.len();
        let mut work =
            std::collections::VecDeque::from([(0u32, root, prune(rules, &root, info), 0u32)]);
        while let Some((id, region, rs, depth)) = work.pop_front() {
            // HyperCuts' region compaction: cut only the aligned block that holds the rules.
            let region = compact(&region, &rs, info);
            let cut = if rs.len() <= p.binth || committed > budget {
                None
            } else {
                choose_cut(&region, &rs, info, p, depth)
            };
            let Some((dim, bits)) = cut else {
                t.nodes[id as usize] = t.leaf(&rs, info);
                continue;
            };
            let shift = region_bits(&region, dim) - bits;
            let n = 1u32 << bits;
            // Children are contiguous, so a lookup finds one with a single load per level.
            let first = t.nodes.len() as u32;
            t.nodes[id as usize] = Node {
                dim: dim as u8,
                shift: shift as u8,
                _pad: 0,
                lo: region.lo[dim],
                first,
                len: n,
            };
            t.nodes.resize(t.nodes.len() + n as usize, Node::EMPTY_LEAF);
            // Consecutive children with the same small rule list share one leaf's entries.
            let mut prev: Option<(Vec<u32>, Node)> = None;
            let lists = split(&rs, &region, dim, shift, n, info);
            for (c, crs) in (0..n).zip(lists) {
                let mut sub = region;
                sub.lo[dim] = region.lo[dim] + (c << shift);
                sub.hi[dim] = sub.lo[dim] + ((1u64 << shift) - 1) as u32;
                committed += crs.len();
                let cid = (first + c) as usize;
                if crs.len() <= p.binth {
                    let node = match &prev {
                        Some((prs, node)) if *prs == crs => *node,
                        _ => t.leaf(&crs, info),
                    };
                    t.nodes[cid] = node;
                    prev = Some((crs, node));
                } else {
                    prev = None;
                    work.push_back((cid as u32, sub, crs, depth + 1));
                }
            }
        }
        t
    }

    /// Appends a leaf's entries; returns its node.
    fn leaf(&mut self, rs: &[u32], info: &impl RuleInfo) -> Node {
        let first = self.leaf_rules.len() as u32;
        self.leaf_rules.extend(
            rs.iter()
                .map(|&r| LeafEntry::new(info.rbox(r), r, info.flags(r))),
        );
        Node {
            dim: LEAF,
            shift: 0,
            _pad: 0,
            lo: 0,
            first,
            len: rs.len() as u32,
        }
    }

    /// The candidate rules for `key`, in rule order.
    #[inline]
    pub fn lookup(&self, key: &Key) -> &[LeafEntry] {
        let mut n = &self.nodes[0];
        while n.dim != LEAF {
            match self.step(n, key) {
                Some(c) => n = &self.nodes[c],
                None => return &[],
            }
        }
        self.leaf_entries(n)
    }

    /// The child of internal node `n` for `key` (None: outside the node's compacted region).
    #[inline(always)]
    fn step(&self, n: &Node, key: &Key) -> Option<usize> {
        let v = key.0[usize::from(n.dim)];
        let idx = v.wrapping_sub(n.lo) >> n.shift;
        (idx < n.len).then(|| (n.first + idx) as usize)
    }

    #[inline(always)]
    fn leaf_entries(&self, n: &Node) -> &[LeafEntry] {
        &self.leaf_rules[n.first as usize..(n.first + n.len) as usize]
    }

    /// One level of a batch lookup: every key not yet at a leaf moves to its child, which is
    /// prefetched, so the cache misses of the batch overlap (DPDK ACL's interleaving). `cur`
    /// starts at 0 (the root). Returns how many keys moved; [`Tree::finish_batch`] then gives
    /// each key's candidates.
    #[inline]
    pub fn step_batch(&self, keys: &[Key], cur: &mut [u32]) -> usize {
        let mut live = 0;
        for (c, k) in cur.iter_mut().zip(keys) {
            if *c == EMPTY_NODE {
                continue;
            }
            let node = &self.nodes[*c as usize];
            if node.dim == LEAF {
                continue;
            }
            match self.step(node, k) {
                Some(child) => {
                    *c = child as u32;
                    prefetch(&self.nodes[child]);
                    live += 1;
                }
                None => *c = EMPTY_NODE,
            }
        }
        live
    }

    /// The candidates where a batch lookup ended (first leaf lines prefetched).
    #[inline]
    pub fn finish_batch<'t>(&'t self, cur: &[u32], out: &mut [&'t [LeafEntry]]) {
        for (o, &c) in out.iter_mut().zip(cur) {
            *o = if c == EMPTY_NODE {
                &[]
            } else {
                self.leaf_entries(&self.nodes[c as usize])
            };
            if let Some(e) = o.first() {
                // A 48-byte entry may straddle two lines; its position field is in the last 8
                // bytes, so bring in the line after the first one too.
                prefetch(e);
                prefetch_ptr((e as *const LeafEntry as *const u8).wrapping_add(64));
            }
        }
    }

    /// Levels a lookup of `key` descends (for statistics).
    pub fn depth_of(&self, key: &Key) -> usize {
        let mut n = &self.nodes[0];
        let mut d = 0;
        while n.dim != LEAF {
            d += 1;
            match self.step(n, key) {
                Some(c) => n = &self.nodes[c],
                None => break,
            }
        }
        d
    }

    /// Bytes of memory the tree holds.
    pub fn memory_bytes(&self) -> usize {
        self.nodes.len() * std::mem::size_of::<Node>()
            + self.leaf_rules.len() * std::mem::size_of::<LeafEntry>()
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

/// The smallest aligned power-of-two block of `region`, per dimension, that holds every rule's
/// part of the region.
fn compact(region: &RBox, rs: &[u32], info: &impl RuleInfo) -> RBox {
    if rs.is_empty() {
        return *region;
    }
    let mut out = *region;
    for d in 0..DIMS {
        let (mut lo, mut hi) = (u32::MAX, 0u32);
        for &r in rs {
            let b = info.rbox(r);
            lo = lo.min(b.lo[d].max(region.lo[d]));
            hi = hi.max(b.hi[d].min(region.hi[d]));
        }
        if lo > hi {
            continue;
        }
        let bits = 32 - (lo ^ hi).leading_zeros();
        let mask = if bits == 32 {
            u32::MAX
        } else {
            (1u32 << bits) - 1
        };
        out.lo[d] = lo & !mask;
        out.hi[d] = out.lo[d] | mask;
    }
    out
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

/// The rule lists of the `n` children of `region` cut along `dim` into blocks of `2^shift`: what
/// [`prune`] would give for each child, in one pass over the rules (each rule goes to the
/// children its range along `dim` spans; a child takes no more rules after a terminal one that
/// covers it). `rules` all overlap `region`.
fn split(
    rules: &[u32],
    region: &RBox,
    dim: usize,
    shift: u32,
    n: u32,
    info: &impl RuleInfo,
) -> Vec<Vec<u32>> {
    let mut lists: Vec<Vec<u32>> = vec![Vec::new(); n as usize];
    let mut closed = vec![false; n as usize];
    let base = region.lo[dim];
    for &r in rules {
        let b = info.rbox(r);
        if !b.overlaps(region) {
            continue;
        }
        let lo = b.lo[dim].max(base);
        let hi = b.hi[dim].min(region.hi[dim]);
        let (c0, c1) = ((lo - base) >> shift, (hi - base) >> shift);
        // Covers the region in every other dimension (then it covers each child it spans fully).
        let terminal = info.terminal_exact(r)
            && (0..super::rbox::DIMS)
                .all(|d| d == dim || (b.lo[d] <= region.lo[d] && b.hi[d] >= region.hi[d]));
        for c in c0..=c1.min(n - 1) {
            let ci = c as usize;
            if closed[ci] {
                continue;
            }
            lists[ci].push(r);
            if terminal {
                let clo = base + (c << shift);
                let chi = clo + ((1u64 << shift) - 1) as u32;
                if b.lo[dim] <= clo && b.hi[dim] >= chi {
                    closed[ci] = true;
                }
            }
        }
    }
    lists
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
    let mut chosen_min = rs.len();
    for bits in 1..=p.max_cut_bits.min(avail).min(DIM_BITS[dim]) {
        let n = 1u64 << bits;
        let shift = avail - bits;
        let (total, max, min) = child_counts(region, rs, info, dim, shift, n);
        if chosen != 0 && (total as f64 + n as f64) > limit {
            break;
        }
        chosen = bits;
        chosen_max = max;
        chosen_min = min;
        if max <= p.binth {
            break;
        }
    }
    // A cut where every child keeps every rule separates nothing (it would recurse until the
    // depth limit): try another dimension, else make a leaf. A cut that leaves some child with
    // fewer rules is progress even when one child keeps them all (compaction then narrows it).
    if chosen == 0 || (chosen_max >= rs.len() && chosen_min >= rs.len()) {
        // Try the other dimensions with a single halving before giving up.
        for d in 0..DIMS {
            let bits = region_bits(region, d);
            if bits == 0 {
                continue;
            }
            let (_, max, min) = child_counts(region, rs, info, d, bits - 1, 2);
            if max < rs.len() || min < rs.len() {
                return Some((d, 1));
            }
        }
        return None;
    }
    Some((dim, chosen))
}

/// (sum over children of their rule counts, largest child, smallest child) for a cut.
fn child_counts(
    region: &RBox,
    rs: &[u32],
    info: &impl RuleInfo,
    dim: usize,
    shift: u32,
    n: u64,
) -> (usize, usize, usize) {
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
        counts.iter().copied().min().unwrap_or(0),
    )
}
