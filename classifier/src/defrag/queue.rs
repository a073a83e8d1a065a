//! Fragment storage for the reassembly queues: a slab of fragment records, a slab of fixed-size
//! data blocks, and per queue the kernel's "runs" structure from `inet_fragment.c`.
//!
//! **Runs** (`inet_frag_queue_insert`, Linux 6.12): a queue's fragments form *runs*, maximal
//! chains of fragments that arrived in order at the tail of the queue, each adjacent to the one
//! before (`fragrun_append_to_last`). A fragment that starts a new run at the tail
//! (`fragrun_create`) or lands in a gap before the tail (the binary search) is the head of a new
//! run; runs made in a gap are never extended or merged. The kernel keeps run heads in an
//! rbtree; duplicate/overlap decisions compare the new fragment with whole *runs*
//! (`[head offset, head offset + frag_run_len)`), so the run structure is observable: after
//! `[0,16)` and `[16,32)` arrived in order, `[8,24)` is a duplicate, while after `[16,32)` then
//! `[0,16)` it is an overlap. This module reproduces that exactly.
//!
//! Run heads live in a treap keyed by offset (random priorities from the queue store's PRNG;
//! only insertion is needed: a queue is only ever emptied as a whole). Because runs are disjoint
//! intervals, which node a search meets first does not depend on the tree's shape, so the
//! treap gives the same answers as the kernel's rbtree. Runs are also kept on a sorted list
//! (`next_run`), and the fragments of a run on `next_frag` (the kernel's `FRAG_CB(skb)->next_frag`),
//! which gives the in-order walk reassembly needs.
//!
//! **Data**: each fragment's payload is copied into a chain of [`BLOCK`]-byte blocks taken from
//! a free list; nothing is allocated after construction.

/// "No index".
pub(super) const NIL: u32 = u32::MAX;
/// Bytes per data block.
pub(super) const BLOCK: usize = 128;

/// One stored fragment. Fields after `next_frag` are meaningful only for run heads.
#[derive(Clone, Copy, Debug)]
pub(super) struct Frag {
    /// Payload offset in the datagram (`FRAG_CB(skb)->ip_defrag_offset`).
    pub(super) offset: u32,
    /// Payload bytes stored (`skb->len` after the header pull and the trim).
    pub(super) len: u32,
    /// Bytes charged to the memory accounting for this fragment (its "truesize").
    pub(super) charge: u32,
    first_block: u32,
    /// Next fragment of the same run (free list link when free).
    next_frag: u32,
    /// Sum of the lengths of the run's fragments (`frag_run_len`), run heads only.
    run_len: u32,
    /// Last fragment of the run, run heads only.
    run_tail: u32,
    /// Next run in offset order, run heads only.
    next_run: u32,
    left: u32,
    right: u32,
    parent: u32,
    prio: u32,
}

const FRAG_FREE: Frag = Frag {
    offset: 0,
    len: 0,
    charge: 0,
    first_block: NIL,
    next_frag: NIL,
    run_len: 0,
    run_tail: NIL,
    next_run: NIL,
    left: NIL,
    right: NIL,
    parent: NIL,
    prio: 0,
};

/// A queue's fragments (`rb_fragments`, `fragments_tail`, `last_run_head`).
#[derive(Clone, Copy, Debug)]
pub(super) struct RunSet {
    root: u32,
    first_run: u32,
    /// The fragment with the highest end (`fragments_tail`); NIL when the queue is empty.
    tail: u32,
    /// Head of the run `tail` belongs to, always the last run.
    last_run_head: u32,
}

impl RunSet {
    pub(super) const EMPTY: RunSet = RunSet {
        root: NIL,
        first_run: NIL,
        tail: NIL,
        last_run_head: NIL,
    };

    /// No fragment held (`fragments_tail == NULL`).
    pub(super) fn is_empty(&self) -> bool {
        self.tail == NIL
    }

    /// The fragment with the lowest offset (the head of the first run), or NIL.
    pub(super) fn first(&self) -> u32 {
        self.first_run
    }
}

/// Why [`FragStore::insert`] did not store a fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InsertError {
    /// `IPFRAG_DUP`: the fragment lies inside one existing run; drop it, keep the queue.
    Dup,
    /// `IPFRAG_OVERLAP`: it overlaps what is held otherwise; the queue must be discarded.
    Overlap,
    /// The pools are exhausted (cannot happen within the sizing `Defrag` derives).
    NoSpace,
}

/// Where a fragment goes.
enum Place {
    /// The queue is empty.
    First,
    /// Right after the tail fragment: extends the last run.
    Append,
    /// After the tail with a gap: a new run at the end.
    NewRun,
    /// In a gap before the tail: a new single-fragment run under `parent`, after run `pred`.
    Tree { parent: u32, left: bool, pred: u32 },
}

/// The fragment and data pools shared by all queues of one [`super::Defrag`].
pub(super) struct FragStore {
    frags: Vec<Frag>,
    free_frag: u32,
    frags_free: usize,
    data: Vec<u8>,
    block_next: Vec<u32>,
    free_block: u32,
    blocks_free: usize,
    rng: u64,
}

impl FragStore {
    /// Pools for `max_frags` fragments and `max_blocks` data blocks.
    pub(super) fn new(max_frags: usize, max_blocks: usize, seed: u64) -> FragStore {
        let max_frags = max_frags.clamp(1, (NIL - 1) as usize);
        let max_blocks = max_blocks.clamp(1, (NIL - 1) as usize);
        let mut frags = vec![FRAG_FREE; max_frags];
        for (i, f) in frags.iter_mut().enumerate() {
            f.next_frag = if i + 1 < max_frags {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        let mut block_next = vec![NIL; max_blocks];
        for (i, b) in block_next.iter_mut().enumerate() {
            *b = if i + 1 < max_blocks {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        let rng = seed ^ 0x9e37_79b9_7f4a_7c15;
        FragStore {
            frags,
            free_frag: 0,
            frags_free: max_frags,
            data: vec![0u8; max_blocks * BLOCK],
            block_next,
            free_block: 0,
            blocks_free: max_blocks,
            rng: if rng == 0 { 0x2545_f491_4f6c_dd1d } else { rng },
        }
    }

    /// Fragment records available.
    #[cfg(test)]
    pub(super) fn frags_free(&self) -> usize {
        self.frags_free
    }

    /// Data blocks available.
    #[cfg(test)]
    pub(super) fn blocks_free(&self) -> usize {
        self.blocks_free
    }

    /// Capacity of the pools: (fragment records, data blocks).
    #[cfg(test)]
    pub(super) fn capacity(&self) -> (usize, usize) {
        (self.frags.len(), self.block_next.len())
    }

    /// Bytes the pools hold.
    pub(super) fn pool_bytes(&self) -> usize {
        self.frags.len() * core::mem::size_of::<Frag>()
            + self.data.len()
            + self.block_next.len() * 4
    }

    pub(super) fn frag(&self, i: u32) -> &Frag {
        &self.frags[i as usize]
    }

    fn next_prio(&mut self) -> u32 {
        // xorshift64
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 32) as u32
    }

    /// `inet_frag_queue_insert`: decides where `[offset, offset + payload.len())` goes and, if it
    /// is neither a duplicate nor an overlap, stores it. `payload` must not be empty.
    pub(super) fn insert(
        &mut self,
        rs: &mut RunSet,
        offset: u32,
        payload: &[u8],
        charge: u32,
    ) -> Result<(), InsertError> {
        let len = payload.len() as u32;
        let end = offset.saturating_add(len);
        let place = self.place(rs, offset, end)?;
        let idx = self.alloc(payload)?;
        {
            let f = &mut self.frags[idx as usize];
            f.offset = offset;
            f.len = len;
            f.charge = charge;
            f.next_frag = NIL;
            f.run_len = len;
            f.run_tail = idx;
            f.next_run = NIL;
            f.left = NIL;
            f.right = NIL;
            f.parent = NIL;
            f.prio = 0;
        }
        match place {
            Place::First => {
                self.frags[idx as usize].prio = self.next_prio();
                rs.root = idx;
                rs.first_run = idx;
                rs.tail = idx;
                rs.last_run_head = idx;
            }
            Place::Append => {
                // fragrun_append_to_last
                let lh = rs.last_run_head as usize;
                self.frags[lh].run_len += len;
                self.frags[lh].run_tail = idx;
                self.frags[rs.tail as usize].next_frag = idx;
                rs.tail = idx;
            }
            Place::NewRun => {
                // fragrun_create: linked as the right child of the last run head, the greatest
                // node, which therefore has no right child (walk down defensively anyway).
                let lh = rs.last_run_head;
                self.frags[lh as usize].next_run = idx;
                let mut p = lh;
                while self.frags[p as usize].right != NIL {
                    p = self.frags[p as usize].right;
                }
                self.frags[idx as usize].prio = self.next_prio();
                self.frags[idx as usize].parent = p;
                self.frags[p as usize].right = idx;
                self.bubble_up(rs, idx);
                rs.tail = idx;
                rs.last_run_head = idx;
            }
            Place::Tree { parent, left, pred } => {
                self.frags[idx as usize].prio = self.next_prio();
                self.frags[idx as usize].parent = parent;
                if parent == NIL {
                    rs.root = idx;
                } else if left {
                    self.frags[parent as usize].left = idx;
                } else {
                    self.frags[parent as usize].right = idx;
                }
                if pred == NIL {
                    self.frags[idx as usize].next_run = rs.first_run;
                    rs.first_run = idx;
                } else {
                    let after = self.frags[pred as usize].next_run;
                    self.frags[idx as usize].next_run = after;
                    self.frags[pred as usize].next_run = idx;
                }
                self.bubble_up(rs, idx);
            }
        }
        Ok(())
    }

    /// The placement decision of `inet_frag_queue_insert`, without side effects.
    fn place(&self, rs: &RunSet, offset: u32, end: u32) -> Result<Place, InsertError> {
        if rs.tail == NIL {
            return Ok(Place::First);
        }
        let t = &self.frags[rs.tail as usize];
        let tail_end = t.offset + t.len;
        if tail_end < end {
            // The common case: the fragment goes to the end.
            if offset < tail_end {
                return Err(InsertError::Overlap);
            }
            return Ok(if offset == tail_end {
                Place::Append
            } else {
                Place::NewRun
            });
        }
        // Binary search over the runs: the fragment can become the first, never the last.
        let mut n = rs.root;
        let mut parent = NIL;
        let mut left = false;
        let mut pred = NIL;
        while n != NIL {
            let f = &self.frags[n as usize];
            let run_end = f.offset + f.run_len;
            if end <= f.offset {
                parent = n;
                left = true;
                n = f.left;
            } else if offset >= run_end {
                parent = n;
                left = false;
                pred = n;
                n = f.right;
            } else if offset >= f.offset && end <= run_end {
                return Err(InsertError::Dup);
            } else {
                return Err(InsertError::Overlap);
            }
        }
        Ok(Place::Tree { parent, left, pred })
    }

    /// Rotates `x` up while its priority beats its parent's (treap insertion).
    fn bubble_up(&mut self, rs: &mut RunSet, x: u32) {
        loop {
            let p = self.frags[x as usize].parent;
            if p == NIL || self.frags[x as usize].prio <= self.frags[p as usize].prio {
                break;
            }
            if self.frags[p as usize].left == x {
                self.rotate_right(rs, p);
            } else {
                self.rotate_left(rs, p);
            }
        }
    }

    /// `p`'s left child takes its place.
    fn rotate_right(&mut self, rs: &mut RunSet, p: u32) {
        let x = self.frags[p as usize].left;
        let b = self.frags[x as usize].right;
        self.frags[p as usize].left = b;
        if b != NIL {
            self.frags[b as usize].parent = p;
        }
        self.take_place(rs, p, x);
        self.frags[x as usize].right = p;
    }

    /// `p`'s right child takes its place.
    fn rotate_left(&mut self, rs: &mut RunSet, p: u32) {
        let x = self.frags[p as usize].right;
        let b = self.frags[x as usize].left;
        self.frags[p as usize].right = b;
        if b != NIL {
            self.frags[b as usize].parent = p;
        }
        self.take_place(rs, p, x);
        self.frags[x as usize].left = p;
    }

    /// A rotation's common part: `x` takes `p`'s place under `p`'s parent (or as the root),
    /// and becomes `p`'s parent.
    fn take_place(&mut self, rs: &mut RunSet, p: u32, x: u32) {
        let g = self.frags[p as usize].parent;
        self.frags[x as usize].parent = g;
        if g == NIL {
            rs.root = x;
        } else if self.frags[g as usize].left == p {
            self.frags[g as usize].left = x;
        } else {
            self.frags[g as usize].right = x;
        }
        self.frags[p as usize].parent = x;
    }

    /// Takes a record and enough blocks for `payload`, copying it in.
    fn alloc(&mut self, payload: &[u8]) -> Result<u32, InsertError> {
        let nblocks = payload.len().div_ceil(BLOCK);
        if self.free_frag == NIL || nblocks > self.blocks_free {
            return Err(InsertError::NoSpace);
        }
        let idx = self.free_frag;
        self.free_frag = self.frags[idx as usize].next_frag;
        self.frags_free -= 1;
        let mut first = NIL;
        let mut prev = NIL;
        for chunk in payload.chunks(BLOCK) {
            let b = self.free_block;
            self.free_block = self.block_next[b as usize];
            self.blocks_free -= 1;
            self.block_next[b as usize] = NIL;
            let start = b as usize * BLOCK;
            self.data[start..start + chunk.len()].copy_from_slice(chunk);
            if prev == NIL {
                first = b;
            } else {
                self.block_next[prev as usize] = b;
            }
            prev = b;
        }
        self.frags[idx as usize].first_block = first;
        Ok(idx)
    }

    /// Returns a record and its blocks to the pools.
    fn release(&mut self, idx: u32) {
        let mut b = self.frags[idx as usize].first_block;
        while b != NIL {
            let nb = self.block_next[b as usize];
            self.block_next[b as usize] = self.free_block;
            self.free_block = b;
            self.blocks_free += 1;
            b = nb;
        }
        self.frags[idx as usize] = FRAG_FREE;
        self.frags[idx as usize].next_frag = self.free_frag;
        self.free_frag = idx;
        self.frags_free += 1;
    }

    /// Frees every fragment of `rs` (`inet_frag_rbtree_purge`) and empties it; returns the sum
    /// of their charges.
    pub(super) fn flush(&mut self, rs: &mut RunSet) -> u64 {
        let mut sum = 0u64;
        let mut r = rs.first_run;
        while r != NIL {
            let next_run = self.frags[r as usize].next_run;
            let mut f = r;
            while f != NIL {
                let nf = self.frags[f as usize].next_frag;
                sum += u64::from(self.frags[f as usize].charge);
                self.release(f);
                f = nf;
            }
            r = next_run;
        }
        *rs = RunSet::EMPTY;
        sum
    }

    /// Calls `f(index, fragment)` for every fragment of `rs` in offset order (the order of the
    /// reassembled skb's frag_list).
    pub(super) fn in_order(&self, rs: &RunSet, mut f: impl FnMut(u32, &Frag)) {
        let mut r = rs.first_run;
        while r != NIL {
            let mut x = r;
            while x != NIL {
                let fr = &self.frags[x as usize];
                f(x, fr);
                x = fr.next_frag;
            }
            r = self.frags[r as usize].next_run;
        }
    }

    /// Copies the first `dst.len()` bytes (at most the fragment's length) of fragment `idx`'s
    /// payload into `dst`.
    pub(super) fn copy_data(&self, idx: u32, dst: &mut [u8]) {
        let f = &self.frags[idx as usize];
        let mut left = (f.len as usize).min(dst.len());
        let mut b = f.first_block;
        let mut at = 0usize;
        while left > 0 && b != NIL {
            let n = left.min(BLOCK);
            let s = b as usize * BLOCK;
            dst[at..at + n].copy_from_slice(&self.data[s..s + n]);
            at += n;
            left -= n;
            b = self.block_next[b as usize];
        }
    }

    /// Test support: checks the structure of `rs` (sorted disjoint runs, run lengths, BST and
    /// heap order of the treap, tail and last run) and returns (fragments, sum of charges).
    #[cfg(test)]
    pub(super) fn check(&self, rs: &RunSet) -> (u32, u64) {
        let mut count = 0u32;
        let mut charge = 0u64;
        let mut prev_end: Option<u32> = None;
        let mut last_run = NIL;
        let mut heads = Vec::new();
        let mut r = rs.first_run;
        while r != NIL {
            let h = &self.frags[r as usize];
            if let Some(pe) = prev_end {
                assert!(h.offset >= pe, "runs overlap or are unsorted");
            }
            let mut x = r;
            let mut at = h.offset;
            let mut run_len = 0;
            let mut tail = NIL;
            while x != NIL {
                let f = &self.frags[x as usize];
                assert_eq!(f.offset, at, "run not contiguous");
                at += f.len;
                run_len += f.len;
                count += 1;
                charge += u64::from(f.charge);
                tail = x;
                x = f.next_frag;
            }
            assert_eq!(run_len, h.run_len, "run_len");
            assert_eq!(tail, h.run_tail, "run_tail");
            prev_end = Some(at);
            last_run = r;
            heads.push(r);
            r = h.next_run;
        }
        assert_eq!(last_run, rs.last_run_head, "last_run_head");
        if last_run != NIL {
            assert_eq!(self.frags[last_run as usize].run_tail, rs.tail, "tail");
        } else {
            assert_eq!(rs.tail, NIL);
            assert_eq!(rs.root, NIL);
        }
        // In-order walk of the treap must give the run list.
        let mut walk = Vec::new();
        let mut stack = Vec::new();
        let mut n = rs.root;
        if n != NIL {
            assert_eq!(self.frags[n as usize].parent, NIL, "root parent");
        }
        while n != NIL || !stack.is_empty() {
            while n != NIL {
                let f = &self.frags[n as usize];
                for c in [f.left, f.right] {
                    if c != NIL {
                        assert_eq!(self.frags[c as usize].parent, n, "parent link");
                        assert!(self.frags[c as usize].prio <= f.prio, "heap order");
                    }
                }
                stack.push(n);
                n = f.left;
            }
            let x = stack.pop().unwrap();
            walk.push(x);
            n = self.frags[x as usize].right;
        }
        assert_eq!(walk, heads, "treap order");
        (count, charge)
    }
}
