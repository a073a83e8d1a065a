//! What NAT needs from the connection table: the index of connections by original source
//! (`nf_nat_bysource`, for `find_appropriate_src`), the clash test of a proposed reply tuple
//! (`nf_conntrack_tuple_taken`) and the change of a connection's reply tuple
//! (`nf_conntrack_alter_reply`).
//!
//! The by-source index holds every connection a source manip was set up for (status
//! `SRC_NAT_DONE`, null bindings included, as the kernel's list does) and is sized with the
//! table, so adding to it never allocates.

use super::{ms_reached, ConnId, Dir, Table};
use crate::conntrack::conn::status;
use crate::conntrack::tuple::Tuple;
use core::hash::{BuildHasher, Hasher};

impl Table {
    /// Hash of a tuple's source part (address, port, protocol): `hash_by_src`.
    fn src_hash(&self, t: &Tuple) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u64(u64::from(t.src) << 32 | u64::from(t.sport) << 8 | u64::from(t.proto));
        h.finish()
    }

    /// Files `id` under its original source (its source manip was just set up).
    pub fn bysource_add(&mut self, id: ConnId) {
        let h = self.src_hash(&self.slab[id as usize].tuple[0]);
        let slab = &self.slab;
        let hasher = &self.hasher;
        self.bysource.insert_unique(h, id, |&v| {
            let t = &slab[v as usize].tuple[0];
            let mut x = hasher.build_hasher();
            x.write_u64(u64::from(t.src) << 32 | u64::from(t.sport) << 8 | u64::from(t.proto));
            x.finish()
        });
    }

    /// Takes `id` out of the by-source index (it is being freed).
    pub(super) fn bysource_remove(&mut self, id: ConnId) {
        let h = self.src_hash(&self.slab[id as usize].tuple[0]);
        if let Ok(e) = self.bysource.find_entry(h, |&v| v == id) {
            e.remove();
        }
    }

    /// The connections whose original source (address, port, protocol) is `t`'s, among those
    /// with a source manip (`same_src` over the by-source bucket).
    pub fn same_source(&self, t: &Tuple) -> impl Iterator<Item = ConnId> + '_ {
        let want = (t.src, t.sport, t.proto);
        self.bysource
            .iter_hash(self.src_hash(t))
            .copied()
            .filter(move |&id| {
                let o = &self.slab[id as usize].tuple[0];
                (o.src, o.sport, o.proto) == want
            })
    }

    /// Whether another connection than `ignore` has `t` as one of its tuples
    /// (`nf_conntrack_tuple_taken`): expired ones are freed on the way and do not count, nor
    /// does one whose original tuple is `ignore`'s (the same flow, seen twice). Unconfirmed
    /// entries count: in the kernel's one-packet-at-a-time order, the packet that made one
    /// would already have confirmed it.
    pub fn tuple_taken(&mut self, t: &Tuple, ignore: ConnId) -> bool {
        let h = self.hash(t);
        loop {
            let own = self.slab.get(ignore as usize).map(|c| c.tuple[0]);
            let mut expired = None;
            let mut taken = false;
            for &v in self.index.iter_hash(h) {
                let id = v >> 1;
                let c = &self.slab[id as usize];
                if id == ignore || c.tuple[(v & 1) as usize] != *t {
                    continue;
                }
                if c.status & status::CONFIRMED != 0 && ms_reached(self.now_ms, c.expires) {
                    expired = Some(id);
                    break;
                }
                if own == Some(c.tuple[0]) {
                    continue;
                }
                taken = true;
                break;
            }
            match expired {
                Some(id) => {
                    self.remove(id);
                    self.stats.expired += 1;
                }
                None => return taken,
            }
        }
    }

    /// The confirmed, unexpired connection with tuple `t`, and which of its tuples `t` is
    /// (`nf_conntrack_find_get`).
    pub fn find_confirmed(&self, t: &Tuple) -> Option<(ConnId, Dir)> {
        let h = self.hash(t);
        self.index.iter_hash(h).find_map(|&v| {
            let id = v >> 1;
            let c = &self.slab[id as usize];
            let live = c.status & status::CONFIRMED != 0 && !ms_reached(self.now_ms, c.expires);
            (live && c.tuple[(v & 1) as usize] == *t).then_some((
                id,
                if v & 1 == 0 {
                    Dir::Original
                } else {
                    Dir::Reply
                },
            ))
        })
    }

    /// Gives unconfirmed `id` a new reply tuple (`nf_conntrack_alter_reply`), re-indexed.
    pub fn alter_reply(&mut self, id: ConnId, reply: Tuple) {
        let old = self.slab[id as usize].tuple[1];
        let want = id << 1 | 1;
        if let Ok(e) = self.index.find_entry(self.hash(&old), |&v| v == want) {
            e.remove();
        }
        self.slab[id as usize].tuple[1] = reply;
        let h = self.hash(&reply);
        let slab = &self.slab;
        let hasher = &self.hasher;
        self.index.insert_unique(h, want, |&v| {
            let (a, b) = slab[(v >> 1) as usize].tuple[(v & 1) as usize].words();
            let mut x = hasher.build_hasher();
            x.write_u64(a);
            x.write_u64(b);
            x.finish()
        });
    }
}
