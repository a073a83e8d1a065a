//! One worker's connection table: a slab of [`Conn`] entries, a `hashbrown` index from each
//! direction's [`Tuple`] to its entry, and a timer wheel that ages entries, all allocated when
//! the table is made (a packet never allocates).
//!
//! - **Index**: a `HashTable<u32>` holding `entry << 1 | direction` for both tuples of every
//!   connection (4 bytes a slot), hashed with foldhash under a random seed the caller gives
//!   (packets choose the keys, so the hash must be keyed). A probe compares the tuple stored in
//!   the slab entry, so the index holds no copy of it.
//! - **Lifetime** follows `nf_conntrack_core.c`: an entry is allocated and indexed when a packet
//!   is first seen but stays *unconfirmed* (no timer, status without CONFIRMED) until the packet
//!   survives the hooks ([`Table::confirm`]); a packet that dies takes its entry with it
//!   ([`Table::abort`]). A lookup that finds an unconfirmed entry reports it, so the caller can
//!   finish the packet that made it first (the kernel's sequential order).
//! - **Bound**: at most `max` entries, unconfirmed ones included (`nf_conntrack_max`). When full,
//!   [`Table::alloc`] scans a few entries from a hashed position and evicts the first one that is
//!   not ASSURED (expired ones first), as `early_drop` does; if none is found the new packet is
//!   dropped and counted.
//! - **Ageing**: entry expiry times are milliseconds on a 32-bit wrapping clock (timeouts are at
//!   most 2^31 ms, about 24 days; netfilter's longest default is 5 days). A refresh only stores
//!   the new expiry; the wheel (4096 slots of 1.024 s) finds an entry again when its old slot
//!   comes due and either frees it or moves it to the slot of its new expiry, so a long-lived
//!   flow is revisited once per wheel turn (70 min) whatever its packet rate. [`Table::age`] does a
//!   bounded amount of that work per call; a lookup treats an expired entry as gone even before
//!   the wheel reaches it (as `nf_ct_is_expired` does).

use super::conn::{status, Conn, ProtoState};
use super::tuple::Tuple;
use core::hash::{BuildHasher, Hasher};
use hashbrown::HashTable;

mod nat;

/// A connection's entry number in its table.
pub type ConnId = u32;

/// Direction of a packet relative to its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }
    pub fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Found {
    pub id: ConnId,
    pub dir: Dir,
    /// Not yet confirmed: made by a packet still on its way through the hooks.
    pub unconfirmed: bool,
}

/// The table is full and nothing could be evicted ("nf_conntrack: table full, dropping packet").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableFull;

/// A connection could not be confirmed: another one holds its reply tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clash;

/// Event counters of one table (`conntrack -S`'s fields where they exist).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableStats {
    /// Connections confirmed (`insert`).
    pub inserted: u64,
    /// New packets dropped because the table was full (`drop`).
    pub dropped_full: u64,
    /// Entries evicted to make room (`early_drop`).
    pub early_drop: u64,
    /// Entries freed by their timeout.
    pub expired: u64,
    /// Unconfirmed entries freed with their packet.
    pub aborted: u64,
    /// Confirmations refused because another connection holds one of the tuples
    /// (`insert_failed`; their packets are dropped).
    pub insert_failed: u64,
    /// Removals of CLAIMED connections that found [`Table::take_released`]'s buffer full.
    pub releases_lost: u64,
}

/// Most removals of CLAIMED connections kept between two [`Table::take_released`] calls.
pub const RELEASED_MAX: usize = 4096;

const NIL: u32 = u32::MAX;
/// `prev` of the first entry of a wheel slot: this bit plus the slot number.
const HEAD: u32 = 1 << 31;
const WHEEL_BITS: u32 = 12;
const WHEEL_SLOTS: usize = 1 << WHEEL_BITS;
/// A wheel tick is 2^10 ms.
const TICK_SHIFT: u32 = 10;
/// Entries looked at per early-drop attempt.
const EVICTION_SCAN: usize = 32;
/// Longest timeout the wrapping clock can represent.
pub const MAX_TIMEOUT_MS: u32 = 1 << 31;

/// One worker's connections.
pub struct Table {
    slab: Vec<Conn>,
    /// Head of the free list (linked through `next`), NIL when every allocated slot is in use.
    free: u32,
    index: HashTable<u32>,
    /// Connections with a source manip, by original source (see [`nat`]).
    bysource: HashTable<u32>,
    /// Killed while their packet is in flight (see [`Table::kill_later`]).
    dying: Vec<u32>,
    /// Reply tuples of CLAIMED connections removed since the last [`Table::take_released`].
    released: Vec<Tuple>,
    hasher: foldhash::fast::FixedState,
    wheel: Box<[u32; WHEEL_SLOTS]>,
    /// The next tick the wheel has not processed yet.
    wheel_tick: u32,
    /// Entries taken off a due slot but not yet looked at (bounded ageing work).
    reaping: u32,
    count: u32,
    max: u32,
    origin_ns: u64,
    now_ms: u32,
    pub stats: TableStats,
}

#[inline]
fn tick_of(ms: u32) -> u32 {
    ms >> TICK_SHIFT
}

/// Whether wrapping time `a` is at or after `b`.
#[inline]
pub fn ms_reached(now: u32, deadline: u32) -> bool {
    now.wrapping_sub(deadline) as i32 >= 0
}

impl Table {
    /// A table for at most `max` connections, hashing under `seed`, whose clock starts at
    /// `now_ns` (any monotonic origin, the one later calls use).
    pub fn new(max: u32, seed: u64, now_ns: u64) -> Table {
        let max = max.clamp(1, HEAD - 1);
        Table {
            slab: Vec::with_capacity(max as usize),
            free: NIL,
            index: HashTable::with_capacity(2 * max as usize),
            bysource: HashTable::with_capacity(max as usize),
            dying: Vec::with_capacity(256),
            released: Vec::with_capacity(RELEASED_MAX),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            wheel: Box::new([NIL; WHEEL_SLOTS]),
            wheel_tick: 0,
            reaping: NIL,
            count: 0,
            max,
            origin_ns: now_ns,
            now_ms: 0,
            stats: TableStats::default(),
        }
    }

    /// Moves the table's clock to `now_ns` and returns it in table milliseconds.
    #[inline]
    pub fn set_clock(&mut self, now_ns: u64) -> u32 {
        self.now_ms = (now_ns.saturating_sub(self.origin_ns) / 1_000_000) as u32;
        self.now_ms
    }

    /// The table clock (ms, wrapping) as of the last [`Table::set_clock`].
    pub fn now_ms(&self) -> u32 {
        self.now_ms
    }

    /// Entries in use (unconfirmed ones included).
    pub fn len(&self) -> usize {
        self.count as usize
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn max(&self) -> usize {
        self.max as usize
    }

    /// Bytes the table holds per connection slot (entry, two index slots with their control
    /// bytes at hashbrown's 7/8 load, wheel share).
    pub fn bytes_per_connection() -> usize {
        core::mem::size_of::<Conn>() + 2 * (4 + 1) * 8 / 7
    }

    #[inline]
    fn hash(&self, t: &Tuple) -> u64 {
        let (a, b) = t.words();
        let mut h = self.hasher.build_hasher();
        h.write_u64(a);
        h.write_u64(b);
        h.finish()
    }

    pub fn get(&self, id: ConnId) -> &Conn {
        &self.slab[id as usize]
    }

    pub fn get_mut(&mut self, id: ConnId) -> &mut Conn {
        &mut self.slab[id as usize]
    }

    /// Finds the connection `t` belongs to; an expired one is freed and not found.
    #[inline]
    pub fn lookup(&mut self, t: &Tuple) -> Option<Found> {
        let hash = self.hash(t);
        let slab = &self.slab;
        let v = *self.index.find(hash, |&v| {
            slab[(v >> 1) as usize].tuple[(v & 1) as usize] == *t
        })?;
        let id = v >> 1;
        let c = &self.slab[id as usize];
        let unconfirmed = c.status & status::CONFIRMED == 0;
        if !unconfirmed && ms_reached(self.now_ms, c.expires) {
            self.remove(id);
            self.stats.expired += 1;
            return None;
        }
        Some(Found {
            id,
            dir: if v & 1 == 0 {
                Dir::Original
            } else {
                Dir::Reply
            },
            unconfirmed,
        })
    }

    /// The confirmed, unexpired connection whose original or reply tuple is `t`, without
    /// touching the table (`nf_conntrack_find_get`, which sees only confirmed entries).
    pub fn peek(&self, t: &Tuple) -> Option<&Conn> {
        let hash = self.hash(t);
        let slab = &self.slab;
        let v = *self.index.find(hash, |&v| {
            slab[(v >> 1) as usize].tuple[(v & 1) as usize] == *t
        })?;
        let c = &self.slab[(v >> 1) as usize];
        let live = c.status & status::CONFIRMED != 0 && !ms_reached(self.now_ms, c.expires);
        live.then_some(c)
    }

    /// Looks `t` up without acting on it, so that its index group and entry are in cache when
    /// the packet is tracked: done for a whole batch first, the lookups' cache misses overlap
    /// (each is independent of the others), where one packet at a time they queue.
    #[inline]
    pub fn warm(&self, t: &Tuple) -> u16 {
        let hash = self.hash(t);
        let slab = &self.slab;
        self.index
            .find(hash, |&v| {
                slab[(v >> 1) as usize].tuple[(v & 1) as usize] == *t
            })
            .map_or(0, |&v| slab[(v >> 1) as usize].status)
    }

    /// Prefetches the index group `t` hashes to (batch lookups issue these first).
    #[inline]
    pub fn hash_of(&self, t: &Tuple) -> u64 {
        self.hash(t)
    }

    /// Allocates an unconfirmed connection with these tuples (both indexed), evicting an entry
    /// that is not ASSURED when the table is full. `timeout_ms` is the timeout its confirmation
    /// will start.
    pub fn alloc(
        &mut self,
        orig: Tuple,
        reply: Tuple,
        proto: ProtoState,
        timeout_ms: u32,
    ) -> Result<ConnId, TableFull> {
        if self.count >= self.max && !self.early_drop(&orig) {
            self.stats.dropped_full += 1;
            return Err(TableFull);
        }
        let conn = Conn {
            tuple: [orig, reply],
            expires: timeout_ms,
            status: 0,
            proto,
            mark: 0,
            master: super::conn::NO_MASTER,
            helper: None,
            master_helper: None,
            masq_port: super::conn::NO_PORT,
            prev: NIL,
            next: NIL,
        };
        let id = if self.free != NIL {
            let id = self.free;
            self.free = self.slab[id as usize].next;
            self.slab[id as usize] = conn;
            id
        } else {
            self.slab.push(conn);
            (self.slab.len() - 1) as u32
        };
        self.count += 1;
        let (h0, h1) = (self.hash(&orig), self.hash(&reply));
        let slab = &self.slab;
        let rehash = |v: &u32| {
            let (a, b) = slab[(v >> 1) as usize].tuple[(v & 1) as usize].words();
            let mut h = self.hasher.build_hasher();
            h.write_u64(a);
            h.write_u64(b);
            h.finish()
        };
        self.index.insert_unique(h0, id << 1, rehash);
        self.index.insert_unique(h1, id << 1 | 1, rehash);
        Ok(id)
    }

    /// Confirms `id` (its packet survived the hooks): CONFIRMED, and its timeout starts now.
    /// Refused with [`Clash`] when another live connection already holds `id`'s reply tuple
    /// (NAT found no unique one, as for GRE without keys or an exhausted range): `id` is freed
    /// and its packet must be dropped, as `__nf_conntrack_confirm` does.
    ///
    /// The kernel's clash resolution (`nf_ct_resolve_clash`) could merge the two only when both
    /// tuples are equal, a race between CPUs; here every packet is looked up against the
    /// entries before it, so such a twin is never made and the clash always drops.
    pub fn confirm(&mut self, id: ConnId) -> Result<(), Clash> {
        if self.slab[id as usize].status & status::CONFIRMED != 0 {
            return Ok(());
        }
        let reply = self.slab[id as usize].tuple[1];
        if self.held_by_other(&reply, id) {
            self.remove(id);
            self.stats.insert_failed += 1;
            return Err(Clash);
        }
        let now = self.now_ms;
        let c = &mut self.slab[id as usize];
        c.status |= status::CONFIRMED;
        c.expires = now.wrapping_add(c.expires);
        self.stats.inserted += 1;
        self.wheel_insert(id);
        Ok(())
    }

    /// Whether a confirmed, unexpired connection other than `me` has `t` as one of its tuples.
    fn held_by_other(&self, t: &Tuple, me: ConnId) -> bool {
        self.index.iter_hash(self.hash(t)).any(|&v| {
            let c = &self.slab[(v >> 1) as usize];
            v >> 1 != me
                && c.tuple[(v & 1) as usize] == *t
                && c.status & status::CONFIRMED != 0
                && !ms_reached(self.now_ms, c.expires)
        })
    }

    /// Frees unconfirmed `id` (its packet was dropped before confirmation).
    pub fn abort(&mut self, id: ConnId) {
        if self.slab[id as usize].status & status::CONFIRMED == 0 {
            self.remove(id);
            self.stats.aborted += 1;
        }
    }

    /// Sets the connection's timeout to `timeout_ms` from now (`nf_ct_refresh`); before
    /// confirmation it is the timeout confirmation will start.
    #[inline]
    pub fn refresh(&mut self, id: ConnId, timeout_ms: u32) {
        let now = self.now_ms;
        let c = &mut self.slab[id as usize];
        c.expires = if c.status & status::CONFIRMED != 0 {
            now.wrapping_add(timeout_ms)
        } else {
            timeout_ms
        };
    }

    /// Milliseconds until `id` expires. An unconfirmed connection's clock has not started:
    /// `nf_ct_expires` gives 0 for it (its stored timeout is relative), and so does this.
    pub fn remaining_ms(&self, id: ConnId) -> u32 {
        let c = &self.slab[id as usize];
        if c.status & status::CONFIRMED == 0 {
            return 0;
        }
        let left = c.expires.wrapping_sub(self.now_ms) as i32;
        left.max(0) as u32
    }

    /// Removes `id` now (`nf_ct_kill`).
    pub fn kill(&mut self, id: ConnId) {
        self.remove(id);
    }

    /// `nf_ct_kill` of the connection of the packet being handled: out of the index and the
    /// wheel now (no lookup finds it, no listing shows it), its entry kept for that packet
    /// until [`Self::reap_dying`] (the next batch) frees it.
    pub fn kill_later(&mut self, id: ConnId) {
        if self.dying.len() == self.dying.capacity() {
            self.remove(id);
            return;
        }
        let c = self.slab[id as usize];
        if c.status & status::CONFIRMED != 0 {
            self.wheel_unlink(id);
        }
        for (dir, t) in c.tuple.iter().enumerate() {
            let want = id << 1 | dir as u32;
            if let Ok(e) = self.index.find_entry(self.hash(t), |&v| v == want) {
                e.remove();
            }
        }
        let c = &mut self.slab[id as usize];
        c.status = (c.status & !status::CONFIRMED) | status::DYING;
        self.dying.push(id);
    }

    /// Frees the entries [`Self::kill_later`] kept.
    pub fn reap_dying(&mut self) {
        while let Some(id) = self.dying.pop() {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: ConnId) {
        let c = &self.slab[id as usize];
        let tuples = c.tuple;
        let in_bysource = c.status & status::SRC_NAT_DONE != 0;
        if c.status & status::CLAIMED != 0 {
            if self.released.len() < RELEASED_MAX {
                self.released.push(tuples[Dir::Reply.index()]);
            } else {
                self.stats.releases_lost += 1;
            }
        }
        if c.status & status::CONFIRMED != 0 {
            self.wheel_unlink(id);
        }
        if in_bysource {
            self.bysource_remove(id);
        }
        for (dir, t) in tuples.iter().enumerate() {
            let want = id << 1 | dir as u32;
            let hash = self.hash(t);
            if let Ok(e) = self.index.find_entry(hash, |&v| v == want) {
                e.remove();
            }
        }
        let c = &mut self.slab[id as usize];
        c.status = status::FREE;
        c.prev = NIL;
        c.next = self.free;
        self.free = id;
        self.count -= 1;
    }

    /// Exchanges the reply tuples of the CLAIMED connections removed since the last call for
    /// `buf` (empty, with room for [`RELEASED_MAX`]: no allocation on either side).
    pub fn swap_released(&mut self, buf: &mut Vec<Tuple>) {
        debug_assert!(buf.is_empty());
        std::mem::swap(&mut self.released, buf);
    }

    /// Whether slab slot `id` holds a connection (confirmed or not).
    pub fn in_use(&self, id: ConnId) -> bool {
        self.slab
            .get(id as usize)
            .is_some_and(|c| c.status & status::FREE == 0)
    }

    /// The early drop of a full table: looks at up to [`EVICTION_SCAN`] entries at pseudo-random slots from a
    /// position the new tuple hashes to and evicts the first expired or not-ASSURED
    /// confirmed one.
    fn early_drop(&mut self, t: &Tuple) -> bool {
        let n = self.slab.len();
        if n == 0 {
            return false;
        }
        // Probes spread over the whole slab from the new tuple's hash, as the kernel's look at
        // the buckets after the tuple's: slab order follows creation order, so neighbours share
        // an age and a state (a contiguous scan of old ASSURED flows would find nothing).
        let mut x = self.hash(t);
        for _ in 0..EVICTION_SCAN.min(n) {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let id = ((x >> 32) as usize % n) as u32;
            let c = &self.slab[id as usize];
            let confirmed = c.status & (status::FREE | status::CONFIRMED) == status::CONFIRMED;
            if !confirmed {
                continue;
            }
            if ms_reached(self.now_ms, c.expires) {
                self.remove(id);
                self.stats.expired += 1;
                return true;
            }
            if c.status & status::ASSURED == 0 {
                self.remove(id);
                self.stats.early_drop += 1;
                return true;
            }
        }
        false
    }

    fn wheel_insert(&mut self, id: ConnId) {
        let slot = (tick_of(self.slab[id as usize].expires) as usize) & (WHEEL_SLOTS - 1);
        let head = self.wheel[slot];
        {
            let c = &mut self.slab[id as usize];
            c.prev = HEAD | slot as u32;
            c.next = head;
        }
        if head != NIL {
            self.slab[head as usize].prev = id;
        }
        self.wheel[slot] = id;
    }

    fn wheel_unlink(&mut self, id: ConnId) {
        let (prev, next) = {
            let c = &self.slab[id as usize];
            (c.prev, c.next)
        };
        if prev == NIL {
            // On the reaping list, which is singly walked from its head.
            if self.reaping == id {
                self.reaping = next;
            }
        } else if prev & HEAD != 0 {
            self.wheel[(prev & !HEAD) as usize] = next;
        } else {
            self.slab[prev as usize].next = next;
        }
        if next != NIL {
            self.slab[next as usize].prev = prev;
        }
        let c = &mut self.slab[id as usize];
        c.prev = NIL;
        c.next = NIL;
    }

    /// Ages the table: frees expired entries and re-files refreshed ones, looking at no more
    /// than `budget` entries (the rest waits for the next call). Returns the entries freed.
    pub fn age(&mut self, budget: usize) -> usize {
        let now_tick = tick_of(self.now_ms);
        let mut seen = 0;
        let mut freed = 0;
        // Nothing filed: the wheel may jump to now. Far behind: one turn visits every slot.
        if self.count == 0 && self.reaping == NIL {
            self.wheel_tick = now_tick;
        } else if now_tick.wrapping_sub(self.wheel_tick) as i32 > WHEEL_SLOTS as i32 {
            self.wheel_tick = now_tick.wrapping_sub(WHEEL_SLOTS as u32);
        }
        loop {
            while self.reaping != NIL {
                if seen == budget {
                    return freed;
                }
                seen += 1;
                let id = self.reaping;
                let next = self.slab[id as usize].next;
                self.reaping = next;
                if next != NIL {
                    self.slab[next as usize].prev = NIL;
                }
                let c = &mut self.slab[id as usize];
                c.prev = NIL;
                c.next = NIL;
                if ms_reached(self.now_ms, c.expires) {
                    // Off every list already: remove() must not unlink it again.
                    c.status &= !status::CONFIRMED;
                    self.remove(id);
                    self.stats.expired += 1;
                    freed += 1;
                } else {
                    self.wheel_insert(id);
                }
            }
            // The slot of tick T is due once the clock has passed all of T.
            if (now_tick.wrapping_sub(self.wheel_tick) as i32) <= 0 {
                return freed;
            }
            // An empty slot costs a look too (bounded work whatever the clock did).
            if seen == budget {
                return freed;
            }
            seen += 1;
            let slot = (self.wheel_tick as usize) & (WHEEL_SLOTS - 1);
            self.wheel_tick = self.wheel_tick.wrapping_add(1);
            let head = self.wheel[slot];
            if head != NIL {
                self.wheel[slot] = NIL;
                self.slab[head as usize].prev = NIL;
                self.reaping = head;
            }
        }
    }

    /// Every connection in use, confirmed ones only (what `conntrack -L` lists).
    pub fn iter(&self) -> impl Iterator<Item = (ConnId, &Conn)> {
        self.slab
            .iter()
            .enumerate()
            .filter(|(_, c)| c.status & (status::FREE | status::CONFIRMED) == status::CONFIRMED)
            .map(|(i, c)| (i as ConnId, c))
    }
}
