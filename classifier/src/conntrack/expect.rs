//! Expectations (`nf_conntrack_expect.c`): connections a helper announced (an ftp data
//! connection, a tftp transfer), matched by a tuple and a mask when their first packet arrives.
//!
//! The kernel's rules, kept here:
//! - an expectation is found only while its master is confirmed and alive, and is used up by the
//!   connection that matches it (`nf_ct_find_expectation` with unlink);
//! - a new expectation identical to one of the same master replaces it; one that clashes with
//!   another (equal where both masks care) is refused (`-EBUSY`); beyond the helper's
//!   `max_expected` for a master, that master's oldest goes (`evict_oldest_expect`); beyond the
//!   global `nf_ct_expect_max` (4096 here, as on this kernel) it is refused;
//! - it expires after the helper policy's timeout; the master's death removes its expectations.
//!
//! **Why a scanned slab.** Expectations are few (one per pending ftp transfer) and looked up
//! only when a connection is created while any exist; a bounded, preallocated slab scanned
//! linearly costs less than a second hash table and never allocates after its first use. A
//! master is recorded with its original tuple: a master slot that died and was reused no longer
//! matches, which is how its expectations disappear without a callback from the table.

use super::helper::Expectation;
use super::table::{ms_reached, ConnId, Table};
use super::tuple::Tuple;

/// `nf_ct_expect_max` on this kernel (`/proc/sys/net/netfilter/nf_conntrack_expect_max`).
pub const EXPECT_MAX: usize = 4096;

/// One pending expectation: what the helper announced, and whose it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pending {
    pub exp: Expectation,
    pub master: ConnId,
    /// The master's original tuple when the expectation was made.
    pub master_tuple: Tuple,
    /// Expiry on the table clock (ms).
    pub expires: u32,
    /// Creation order, for "oldest".
    pub serial: u64,
}

/// Why an expectation was not made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectError {
    /// `-EBUSY`: it clashes with another master's expectation.
    Clash,
    /// `-EALREADY`: the same expectation belongs to another master.
    Already,
    /// `-EMFILE`: the table is full.
    Full,
}

/// Counters of the expectation table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpectStats {
    pub created: u64,
    /// Connections that matched an expectation (`expect_new`).
    pub used: u64,
    pub evicted: u64,
    pub expired: u64,
    pub refused: u64,
}

/// A worker's expectations.
#[derive(Default)]
pub struct Expectations {
    slots: Vec<Pending>,
    serial: u64,
    pub stats: ExpectStats,
}

/// Whether master `e.master` is still the connection `e` was made for.
fn master_alive(table: &Table, e: &Pending) -> bool {
    table.in_use(e.master) && *table.get(e.master).orig() == e.master_tuple
}

impl Expectations {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Forgets every expectation of `master` (`nf_ct_remove_expectations`).
    pub fn remove_master(&mut self, master: ConnId) {
        self.slots.retain(|e| e.master != master);
    }

    /// `nf_ct_unexpect_related`: takes back `master`'s expectation that is [`Expectation::same`]
    /// as `exp`.
    pub fn remove(&mut self, exp: &Expectation, master: ConnId) {
        self.slots
            .retain(|e| !(e.master == master && e.exp.same(exp)));
    }

    pub fn iter(&self) -> impl Iterator<Item = &Pending> {
        self.slots.iter()
    }

    /// Drops expired expectations and those whose master is gone.
    fn collect(&mut self, table: &Table) {
        let now = table.now_ms();
        let before = self.slots.len();
        self.slots
            .retain(|e| !ms_reached(now, e.expires) && master_alive(table, e));
        self.stats.expired += (before - self.slots.len()) as u64;
    }

    /// `nf_ct_expect_related`: adds `exp` for `master` (its helper's policy allows
    /// `max_expected` at once, each living `timeout_s`).
    pub fn add(
        &mut self,
        table: &Table,
        exp: Expectation,
        master: ConnId,
    ) -> Result<(), ExpectError> {
        self.collect(table);
        if let Some(i) = self.slots.iter().position(|o| o.exp.same(&exp)) {
            if self.slots[i].master != master {
                self.stats.refused += 1;
                return Err(ExpectError::Already);
            }
            self.slots.remove(i);
        } else if self.slots.iter().any(|o| o.exp.clashes(&exp)) {
            self.stats.refused += 1;
            return Err(ExpectError::Clash);
        }
        let max_expected = exp.max_expected() as usize;
        let mine = self.slots.iter().filter(|o| o.master == master).count();
        if max_expected > 0 && mine >= max_expected {
            if let Some(oldest) = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, o)| o.master == master)
                .min_by_key(|(_, o)| o.serial)
                .map(|(i, _)| i)
            {
                self.slots.remove(oldest);
                self.stats.evicted += 1;
            }
        }
        if self.slots.len() >= EXPECT_MAX {
            self.stats.refused += 1;
            return Err(ExpectError::Full);
        }
        if self.slots.capacity() == 0 {
            self.slots.reserve_exact(EXPECT_MAX);
        }
        self.serial += 1;
        self.slots.push(Pending {
            exp,
            master,
            master_tuple: *table.get(master).orig(),
            expires: table
                .now_ms()
                .wrapping_add(exp.timeout_s().saturating_mul(1000)),
            serial: self.serial,
        });
        self.stats.created += 1;
        Ok(())
    }

    /// `nf_ct_find_expectation`: the expectation a new connection with original tuple `t`
    /// fulfils, taken out of the table; only while its master is confirmed.
    pub fn take(&mut self, table: &Table, t: &Tuple) -> Option<Pending> {
        if self.slots.is_empty() {
            return None;
        }
        self.collect(table);
        // The kernel's bucket lists put the newest first.
        let i = self.slots.iter().rposition(|e| e.exp.matches(t))?;
        let master = table.get(self.slots[i].master);
        if master.status & super::status::CONFIRMED == 0 {
            return None;
        }
        self.stats.used += 1;
        Some(self.slots.remove(i))
    }

    /// Ages the expectations (called with the table's aging, amortised per batch).
    pub fn age(&mut self, table: &Table) {
        if !self.slots.is_empty() {
            self.collect(table);
        }
    }
}
