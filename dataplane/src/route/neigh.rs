//! The neighbour cache of routed mode (one per worker): next-hop IPv4 address → MAC, with
//! Linux's state machine (`net/core/neighbour.c`, ARP's defaults of `arp_tbl`):
//!
//! - **INCOMPLETE**: the first packet toward an unknown neighbour creates the entry, sends a
//!   broadcast request at once and waits in the entry's queue; a request is repeated every
//!   `retrans_time` (1 s) up to `mcast_solicit` (3) in all, then the entry is FAILED and its
//!   queue dropped (each dropped packet is reported to the caller, which answers with ICMP host
//!   unreachable as `arp_error_report` does).
//! - **REACHABLE** after a reply, for a `reachable_time` drawn in [½, 1½) × 30 s; then **STALE**
//!   (still used); the first use of a stale entry starts **DELAY** (5 s), then **PROBE**: up
//!   to `ucast_solicit` (3) unicast requests 1 s apart before FAILED. A reply at any point makes
//!   it REACHABLE again.
//! - **PERMANENT**: static entries from the configuration, never aged.
//!
//! Bounds: at most `max_entries` (Linux's `gc_thresh3`, 1024), FAILED then the least recently
//! updated STALE entries evicted first; each unresolved entry queues at most `queue_per_entry`
//! frames, dropping the oldest beyond it (Linux bounds the queue by bytes, 212992; here queued
//! frames hold UMEM frames, a scarcer pool), and all entries together at most `queue_total`.
//! Times are milliseconds on the caller's clock; nothing here allocates after [`Neighbors::new`].

use hashbrown::HashTable;

/// Linux's defaults for ARP (`/proc/sys/net/ipv4/neigh/default/*`), and the queue bounds.
#[derive(Clone, Copy, Debug)]
pub struct NeighConfig {
    pub retrans_ms: u32,
    pub base_reachable_ms: u32,
    pub delay_first_probe_ms: u32,
    pub ucast_solicit: u8,
    pub mcast_solicit: u8,
    pub max_entries: usize,
    pub queue_per_entry: usize,
    pub queue_total: usize,
}

impl Default for NeighConfig {
    fn default() -> NeighConfig {
        NeighConfig {
            retrans_ms: 1000,
            base_reachable_ms: 30_000,
            delay_first_probe_ms: 5000,
            ucast_solicit: 3,
            mcast_solicit: 3,
            max_entries: 1024,
            queue_per_entry: 16,
            queue_total: 256,
        }
    }
}

/// `NUD_*` states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Incomplete,
    Reachable,
    Stale,
    Delay,
    Probe,
    Failed,
    Permanent,
}

/// Most frames one entry can queue (the configured bound is at most this).
pub const QUEUE_MAX: usize = 32;

#[derive(Clone, Debug)]
struct Entry<T> {
    port: u8,
    ip: u32,
    mac: [u8; 6],
    state: State,
    /// When the state's timer fires (INCOMPLETE, PROBE, DELAY, REACHABLE).
    timer: u64,
    confirmed: u64,
    used: u64,
    updated: u64,
    probes: u8,
    queue: [Option<T>; QUEUE_MAX],
    qhead: u8,
    qlen: u8,
}

/// What resolving a next hop gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolved {
    /// Send to this MAC now.
    Mac([u8; 6]),
    /// Unresolved: queue the frame with [`Neighbors::enqueue`] (entry number given).
    Pending(u32),
    /// No room for a new entry: drop the frame.
    NoEntry,
}

/// Something the cache wants done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action<T> {
    /// Send an ARP request for `ip` out of `port`: broadcast, or unicast to `to`.
    Solicit {
        port: u8,
        ip: u32,
        to: Option<[u8; 6]>,
    },
    /// A queued frame can go: to `mac` out of `port`.
    Send { port: u8, mac: [u8; 6], frame: T },
    /// A queued frame is dropped: its neighbour failed (or the queue overflowed).
    Drop { frame: T, failed: bool },
}

/// What an ARP message told about its sender (see [`Neighbors::learn`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heard {
    pub port: u8,
    pub ip: u32,
    pub mac: [u8; 6],
    /// A reply addressed to this box.
    pub solicited: bool,
    /// Make an entry when none exists.
    pub create: bool,
}

/// One worker's neighbour cache.
pub struct Neighbors<T> {
    cfg: NeighConfig,
    slab: Vec<Entry<T>>,
    index: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    queued: usize,
    rng: u64,
    reachable_ms: u32,
}

impl<T: Copy> Neighbors<T> {
    pub fn new(cfg: NeighConfig, seed: u64) -> Neighbors<T> {
        let cfg = NeighConfig {
            queue_per_entry: cfg.queue_per_entry.clamp(1, QUEUE_MAX),
            max_entries: cfg.max_entries.max(1),
            ..cfg
        };
        let mut n = Neighbors {
            cfg,
            slab: Vec::with_capacity(cfg.max_entries),
            index: HashTable::with_capacity(cfg.max_entries),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            queued: 0,
            rng: seed | 1,
            reachable_ms: cfg.base_reachable_ms,
        };
        n.reachable_ms = n.draw_reachable();
        n
    }

    /// `neigh_rand_reach_time`: uniform in [½, 1½) of the base.
    fn draw_reachable(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let base = u64::from(self.cfg.base_reachable_ms);
        (base / 2 + self.rng % base.max(1)) as u32
    }

    fn hash(&self, port: u8, ip: u32) -> u64 {
        use core::hash::BuildHasher;
        self.hasher.hash_one((port, ip))
    }

    fn find(&self, port: u8, ip: u32) -> Option<u32> {
        let slab = &self.slab;
        self.index
            .find(self.hash(port, ip), |&i| {
                let e = &slab[i as usize];
                e.port == port && e.ip == ip
            })
            .copied()
    }

    /// A static entry (PERMANENT).
    pub fn add_static(&mut self, port: u8, ip: u32, mac: [u8; 6]) -> bool {
        let Some(i) = self.find(port, ip).or_else(|| self.create(port, ip, 0)) else {
            return false;
        };
        let e = &mut self.slab[i as usize];
        e.mac = mac;
        e.state = State::Permanent;
        true
    }

    /// Undoes [`Self::add_static`]: the entry becomes FAILED (resolved again when next used).
    pub fn remove_static(&mut self, port: u8, ip: u32) {
        if let Some(i) = self.find(port, ip) {
            let e = &mut self.slab[i as usize];
            if e.state == State::Permanent {
                e.state = State::Failed;
            }
        }
    }

    fn create(&mut self, port: u8, ip: u32, now: u64) -> Option<u32> {
        let fresh = Entry {
            port,
            ip,
            mac: [0; 6],
            state: State::Failed,
            timer: now,
            confirmed: 0,
            used: now,
            updated: now,
            probes: 0,
            queue: [None; QUEUE_MAX],
            qhead: 0,
            qlen: 0,
        };
        let i = if self.slab.len() < self.cfg.max_entries {
            self.slab.push(fresh);
            (self.slab.len() - 1) as u32
        } else {
            let victim = self.victim()?;
            let old = &self.slab[victim as usize];
            let h = self.hash(old.port, old.ip);
            if let Ok(e) = self.index.find_entry(h, |&v| v == victim) {
                e.remove();
            }
            self.slab[victim as usize] = fresh;
            victim
        };
        let h = self.hash(port, ip);
        let slab = &self.slab;
        let hasher = &self.hasher;
        self.index.insert_unique(h, i, |&v| {
            use core::hash::BuildHasher;
            let e = &slab[v as usize];
            hasher.hash_one((e.port, e.ip))
        });
        Some(i)
    }

    /// The entry a full cache gives up (`neigh_forced_gc`): a FAILED one, else the least
    /// recently updated STALE one; never one with frames queued or a static one.
    fn victim(&self) -> Option<u32> {
        let idle = |e: &Entry<T>| e.qlen == 0 && matches!(e.state, State::Failed | State::Stale);
        self.slab
            .iter()
            .enumerate()
            .filter(|(_, e)| idle(e))
            .min_by_key(|(_, e)| (e.state != State::Failed, e.updated))
            .map(|(i, _)| i as u32)
    }

    /// Resolves next hop `ip` behind `port` for a frame about to leave (`neigh_output`).
    pub fn resolve(
        &mut self,
        port: u8,
        ip: u32,
        now: u64,
        act: &mut impl FnMut(Action<T>),
    ) -> Resolved {
        let i = match self.find(port, ip) {
            Some(i) => i,
            None => match self.create(port, ip, now) {
                Some(i) => i,
                None => return Resolved::NoEntry,
            },
        };
        let retrans = u64::from(self.cfg.retrans_ms);
        let delay = u64::from(self.cfg.delay_first_probe_ms);
        let e = &mut self.slab[i as usize];
        e.used = now;
        match e.state {
            State::Permanent | State::Reachable | State::Delay | State::Probe => {
                Resolved::Mac(e.mac)
            }
            State::Stale => {
                e.state = State::Delay;
                e.timer = now + delay;
                Resolved::Mac(e.mac)
            }
            State::Incomplete => Resolved::Pending(i),
            State::Failed => {
                // Used again: resolution starts over, its first request goes now.
                e.state = State::Incomplete;
                e.probes = self.cfg.ucast_solicit + 1;
                e.timer = now + retrans;
                act(Action::Solicit { port, ip, to: None });
                Resolved::Pending(i)
            }
        }
    }

    /// Queues `frame` on unresolved entry `i`; the oldest queued frame is dropped when the
    /// entry's or the cache's bound is reached.
    pub fn enqueue(&mut self, i: u32, frame: T, act: &mut impl FnMut(Action<T>)) {
        let per = self.cfg.queue_per_entry;
        let total_full = self.queued >= self.cfg.queue_total;
        let e = &mut self.slab[i as usize];
        if usize::from(e.qlen) >= per || (total_full && e.qlen > 0) {
            if let Some(old) = pop(e) {
                self.queued -= 1;
                act(Action::Drop {
                    frame: old,
                    failed: false,
                });
            }
        } else if total_full {
            act(Action::Drop {
                frame,
                failed: false,
            });
            return;
        }
        let at = (usize::from(e.qhead) + usize::from(e.qlen)) % QUEUE_MAX;
        e.queue[at] = Some(frame);
        e.qlen += 1;
        self.queued += 1;
    }

    /// An ARP message from `heard.ip` (at `heard.mac`) on `heard.port`: a solicited one (a
    /// reply addressed to this box) makes the entry REACHABLE; otherwise an existing entry
    /// only learns the address (STALE when it changed). `create` makes an entry when none
    /// exists (a request for one of our addresses, `neigh_event_ns`).
    pub fn learn(&mut self, heard: Heard, now: u64, act: &mut impl FnMut(Action<T>)) {
        let Heard {
            port,
            ip,
            mac,
            solicited,
            create,
        } = heard;
        let i = match self.find(port, ip) {
            Some(i) => i,
            None if create => match self.create(port, ip, now) {
                Some(i) => i,
                None => return,
            },
            None => return,
        };
        let reach = u64::from(self.reachable_ms);
        let e = &mut self.slab[i as usize];
        if e.state == State::Permanent {
            return;
        }
        let changed = e.mac != mac;
        e.mac = mac;
        e.updated = now;
        if solicited {
            e.state = State::Reachable;
            e.confirmed = now;
            e.timer = now + reach;
        } else if changed || !matches!(e.state, State::Reachable | State::Delay | State::Probe) {
            e.state = State::Stale;
        }
        while let Some(frame) = pop(e) {
            self.queued -= 1;
            act(Action::Send { port, mac, frame });
        }
    }

    /// Runs the timers due at `now` (call once per batch or so).
    pub fn tick(&mut self, now: u64, act: &mut impl FnMut(Action<T>)) {
        let retrans = u64::from(self.cfg.retrans_ms);
        let delay = u64::from(self.cfg.delay_first_probe_ms);
        let reach = u64::from(self.reachable_ms);
        let max_incomplete = self.cfg.ucast_solicit + self.cfg.mcast_solicit;
        let max_probe = self.cfg.ucast_solicit;
        for e in &mut self.slab {
            if now < e.timer {
                continue;
            }
            match e.state {
                State::Reachable if now >= e.confirmed + reach => {
                    e.state = if now < e.used + delay {
                        e.timer = now + delay;
                        State::Delay
                    } else {
                        State::Stale
                    };
                }
                State::Delay if now >= e.timer => {
                    if now < e.confirmed + delay {
                        e.state = State::Reachable;
                        e.timer = e.confirmed + reach;
                    } else {
                        e.state = State::Probe;
                        e.probes = 0;
                        e.timer = now;
                    }
                }
                _ => {}
            }
            let max = match e.state {
                State::Incomplete => max_incomplete,
                State::Probe => max_probe,
                _ => continue,
            };
            if e.probes >= max {
                e.state = State::Failed;
                e.updated = now;
                while let Some(frame) = pop(e) {
                    self.queued -= 1;
                    act(Action::Drop {
                        frame,
                        failed: true,
                    });
                }
                continue;
            }
            let to = (e.state == State::Probe).then_some(e.mac);
            e.probes += 1;
            e.timer = now + retrans;
            act(Action::Solicit {
                port: e.port,
                ip: e.ip,
                to,
            });
        }
    }

    /// The state and MAC of `ip` behind `port`.
    pub fn get(&self, port: u8, ip: u32) -> Option<(State, [u8; 6])> {
        let e = &self.slab[self.find(port, ip)? as usize];
        Some((e.state, e.mac))
    }

    /// Frames waiting for resolution, over all entries.
    pub fn queued(&self) -> usize {
        self.queued
    }

    pub fn len(&self) -> usize {
        self.slab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }
}

fn pop<T: Copy>(e: &mut Entry<T>) -> Option<T> {
    if e.qlen == 0 {
        return None;
    }
    let f = e.queue[usize::from(e.qhead)].take();
    e.qhead = ((usize::from(e.qhead) + 1) % QUEUE_MAX) as u8;
    e.qlen -= 1;
    f
}

#[cfg(test)]
mod tests;
