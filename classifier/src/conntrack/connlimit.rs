//! `-m connlimit`'s connection counts (`nf_conncount.c`): per match, per group key (the
//! packet's masked source or destination address), the original tuples of the connections
//! that were counted, pruned while counting of those that are gone or closed.
//!
//! Counting a packet (`count_tree` / `__nf_conncount_add`): a first packet of its group makes
//! the group with its tuple (count 1). Otherwise, a packet of a confirmed ASSURED connection is
//! not added (the group is pruned and its size is the count); any other walks the group,
//! dropping (at most [`GC_MAX_COLLECT`] + 1) tuples the table no longer holds (confirmed) or
//! whose TCP connection is in TIME_WAIT or CLOSE, stopping with the count as it stands when it
//! meets its own tuple, else adding it. One worker owns all of a flow's packets, so the
//! kernel's "added by another CPU, not yet confirmed" case never arises: an unconfirmed tuple
//! met again is gone.
//!
//! Bounded: at most `limit` tuples over all groups (the conntrack table's size). At the bound
//! the tuples of gone connections are reclaimed from every group (at most once a second); a
//! count that still needs more fails, and the match hotdrops as the kernel's does when it
//! cannot allocate.

use super::conn::ProtoState;
use super::table::Table;
use super::tcp::TcpState;
use super::tuple::Tuple;

/// `CONNCOUNT_GC_MAX_COLLECT`.
pub const GC_MAX_COLLECT: usize = 8;

/// One group (`struct nf_conncount_list`).
struct Group {
    tuples: Vec<Tuple>,
    /// Jiffy of the last garbage collection, and the count then.
    last_gc: u32,
    last_gc_count: u32,
}

/// The groups of every connlimit match of a ruleset, by the match's slot.
#[derive(Default)]
pub struct ConnLimits {
    slots: Vec<hashbrown::HashMap<u32, Group, foldhash::fast::FixedState>>,
    entries: usize,
    limit: usize,
    seed: u64,
    /// The second (table clock) of the last [`Self::reclaim`].
    last_reclaim: Option<u32>,
}

/// `already_closed`: TCP in TIME_WAIT or CLOSE.
fn closed(p: &ProtoState) -> bool {
    matches!(p, ProtoState::Tcp(t) if matches!(t.state, TcpState::TimeWait | TcpState::Close))
}

/// The kernel's jiffies for the table clock (HZ 250).
fn jiffies(table: Option<&Table>) -> u32 {
    table.map_or(0, |t| t.now_ms() / (1000 / crate::model::check::HZ))
}

/// How the counted packet's connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// Not confirmed yet (its first packet), or no connection.
    New,
    Confirmed,
    /// Confirmed and ASSURED: counted already, never added again.
    Assured,
}

impl Group {
    fn new(now: u32) -> Group {
        Group {
            tuples: Vec::new(),
            last_gc: now,
            last_gc_count: 0,
        }
    }

    /// Whether the table still holds `t` as a live, unclosed connection.
    fn alive(table: Option<&Table>, t: &Tuple) -> Option<bool> {
        table.and_then(|tb| tb.peek(t)).map(|c| !closed(&c.proto))
    }

    /// `__nf_conncount_gc_list`; returns the tuples dropped.
    fn gc(&mut self, table: Option<&Table>, now: u32) -> usize {
        if now == self.last_gc {
            return 0;
        }
        let (mut collected, mut i, before) = (0, 0, self.tuples.len());
        while i < self.tuples.len() {
            match Group::alive(table, &self.tuples[i]) {
                Some(true) => {
                    i += 1;
                    if collected > GC_MAX_COLLECT {
                        break;
                    }
                }
                _ => {
                    self.tuples.remove(i);
                    collected += 1;
                }
            }
        }
        self.last_gc = now;
        self.last_gc_count = self.tuples.len() as u32;
        before - self.tuples.len()
    }

    /// `__nf_conncount_add`: (tuples dropped, whether to add `tuple`); None for `-EEXIST`.
    fn add(
        &mut self,
        tuple: &Tuple,
        how: Counted,
        table: Option<&Table>,
        now: u32,
    ) -> Option<(usize, bool)> {
        match how {
            Counted::Assured => return None,
            Counted::New
                if now == self.last_gc
                    && (self.tuples.len() as u32).wrapping_sub(self.last_gc_count)
                        < GC_MAX_COLLECT as u32 =>
            {
                return Some((0, true));
            }
            _ => {}
        }
        let (mut collect, mut i, before) = (0, 0, self.tuples.len());
        while i < self.tuples.len() {
            if collect > GC_MAX_COLLECT {
                break;
            }
            match Group::alive(table, &self.tuples[i]) {
                None => {
                    self.tuples.remove(i);
                    collect += 1;
                }
                Some(_) if self.tuples[i] == *tuple => {
                    return Some((before - self.tuples.len(), false));
                }
                Some(false) => {
                    self.tuples.remove(i);
                    collect += 1;
                }
                Some(true) => i += 1,
            }
        }
        self.last_gc = now;
        self.last_gc_count = self.tuples.len() as u32;
        Some((before - self.tuples.len(), true))
    }
}

impl ConnLimits {
    /// At most `limit` tuples in all; group keys hashed under `seed`.
    pub fn new(limit: usize, seed: u64) -> ConnLimits {
        ConnLimits {
            slots: Vec::new(),
            entries: 0,
            limit,
            seed,
            last_reclaim: None,
        }
    }

    /// Tuples held in all groups.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// `count_tree`: the group size once this packet is counted, 0 when it cannot be (the
    /// match then hotdrops). `tuple` is its connection's original tuple (its own without one).
    pub fn count(
        &mut self,
        slot: usize,
        key: u32,
        tuple: &Tuple,
        how: Counted,
        table: Option<&Table>,
    ) -> u32 {
        let now = jiffies(table);
        if self.entries >= self.limit {
            self.reclaim(table, now);
        }
        if slot >= self.slots.len() {
            let seed = self.seed;
            self.slots.resize_with(slot + 1, || {
                hashbrown::HashMap::with_hasher(foldhash::fast::FixedState::with_seed(seed))
            });
        }
        let group = match self.slots[slot].get_mut(&key) {
            Some(g) => g,
            None => {
                if self.entries >= self.limit {
                    return 0;
                }
                let mut g = Group::new(now);
                g.tuples.push(*tuple);
                self.slots[slot].insert(key, g);
                self.entries += 1;
                return 1;
            }
        };
        match group.add(tuple, how, table, now) {
            None => {
                self.entries -= group.gc(table, now);
                group.tuples.len() as u32
            }
            Some((dropped, add)) => {
                self.entries -= dropped;
                if add {
                    if self.entries >= self.limit {
                        return 0;
                    }
                    group.tuples.push(*tuple);
                    self.entries += 1;
                }
                group.tuples.len() as u32
            }
        }
    }

    /// The kernel's tree gc worker, run only when the bound is reached and at most once a
    /// second of the table clock: drops from every group the tuples of connections that are
    /// gone or closed, and the groups left empty. Without it the tuples of groups never counted
    /// again would hold the bound forever.
    fn reclaim(&mut self, table: Option<&Table>, now: u32) {
        let second = now / crate::model::check::HZ;
        if self.last_reclaim == Some(second) {
            return;
        }
        self.last_reclaim = Some(second);
        let mut entries = 0;
        for groups in &mut self.slots {
            groups.retain(|_, g| {
                g.tuples.retain(|t| Group::alive(table, t) == Some(true));
                entries += g.tuples.len();
                !g.tuples.is_empty()
            });
        }
        self.entries = entries;
    }
}

/// `connlimit_mt`'s count for one packet: its group key (masked source or destination), its
/// connection's original tuple (or its own), how that connection stands.
pub fn count_packet(
    groups: &mut ConnLimits,
    slot: usize,
    m: &crate::model::ConnlimitMatch,
    h: &crate::packet::Headers,
    meta: &crate::packet::PacketMeta,
    table: Option<&Table>,
) -> u32 {
    let key = if m.daddr { h.dst } else { h.src } & m.mask;
    let ct = &meta.ct;
    let (tuple, how) = if ct.has_conn() && ct.conn.is_some() {
        let (src, dst, sport, dport) = ct.orig;
        let status = ct.status as u16;
        let how = if status & super::status::CONFIRMED == 0 {
            Counted::New
        } else if status & super::status::ASSURED != 0 {
            Counted::Assured
        } else {
            Counted::Confirmed
        };
        let t = Tuple {
            src,
            dst,
            sport,
            dport,
            proto: ct.l4proto,
        };
        (t, how)
    } else {
        // get_ct_or_tuple_from_skb: the packet's own tuple, and the connection it names if
        // the table has one (an out-of-window segment of a tracked connection, say).
        let (sport, dport) = h.ports().unwrap_or((0, 0));
        let t = Tuple {
            src: h.src,
            dst: h.dst,
            sport,
            dport,
            proto: h.proto,
        };
        let how = match table.and_then(|tb| tb.peek(&t)) {
            Some(c) if c.status & super::status::ASSURED != 0 => Counted::Assured,
            Some(_) => Counted::Confirmed,
            None => Counted::New,
        };
        (t, how)
    };
    groups.count(slot, key, &tuple, how, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(src: u32) -> Tuple {
        Tuple {
            src,
            dst: 9,
            sport: 1000,
            dport: 80,
            proto: 6,
        }
    }

    #[test]
    fn groups_never_counted_again_give_their_room_back_at_the_bound() {
        // No table: every tuple counted is of a connection that is gone.
        let mut g = ConnLimits::new(4, 1);
        for src in 0..4 {
            assert_eq!(g.count(0, src, &tuple(src), Counted::New, None), 1);
        }
        assert_eq!(g.len(), 4);
        // A fifth source finds the bound reached: the four dead tuples are reclaimed.
        assert_eq!(g.count(0, 77, &tuple(77), Counted::New, None), 1);
        assert_eq!(g.len(), 1);
        // Within the same second no second walk: full again, the next new group fails.
        for src in 100..103 {
            g.count(0, src, &tuple(src), Counted::New, None);
        }
        assert_eq!(g.len(), 4);
        assert_eq!(g.count(0, 200, &tuple(200), Counted::New, None), 0);
    }
}
