//! Destination NAT across workers (DESIGN.md §5, `dataplane/NOTES.md` §7): a DNAT or REDIRECT
//! fixes the reply tuple's ports, so NAT's partitioned port search cannot make the reply hash
//! back to the worker that owns the connection. When such a connection is confirmed its owner
//! sends a claim (the flow's direction-free key → itself) to every other worker over SPSC
//! rings; each worker's steering step looks a frame's flow up in the claims it holds (only
//! while it holds any) before hashing, so the replies reach the owner. When the connection goes
//! (expiry, kill, early drop, abort) its owner sends the release.
//!
//! A claim can lose a race with the first reply (the ring is read once per batch, the reply
//! needs a round trip through the server); that reply then reaches the hash's worker, which
//! has no connection for it, and the peer's retransmission finds the claim in place. A claim
//! left behind (a lost release) only pins both directions of that flow to one worker, which
//! stays correct.

use super::Pipeline;
use crate::stats::Counter;
use crate::steer::{claim_key, Claim};
use classifier::conntrack::conn::status;
use classifier::conntrack::table::Dir;

impl Pipeline {
    /// Takes the claims and releases the other workers sent.
    pub(super) fn take_claims(&mut self) {
        for r in 0..self.steering.claims_in.len() {
            while let Ok(c) = self.steering.claims_in[r].pop() {
                if !self.claims.apply(&c) {
                    self.stats.add(Counter::ClaimRefused, 1);
                }
            }
        }
    }

    /// Connection `id` was just confirmed: claims its reply for this worker when the hash
    /// sends that elsewhere.
    pub(super) fn claim_reply(&mut self, id: u32) {
        if self.steering.workers < 2 {
            return;
        }
        let Some(ct) = self.st.ct.as_mut() else {
            return;
        };
        let conn = ct.table.get_mut(id);
        let reply = conn.tuple[Dir::Reply.index()];
        if ct.nat_owner().owns(&reply) {
            return;
        }
        ct.table.get_mut(id).status |= status::CLAIMED;
        self.stats.add(Counter::ClaimSent, 1);
        self.broadcast(Claim {
            key: claim_key(&reply),
            owner: self.steering.worker as u8,
            release: false,
        });
    }

    /// Announces the removal of this worker's CLAIMED connections.
    pub(super) fn release_claims(&mut self) {
        let Some(ct) = self.st.ct.as_mut() else {
            return;
        };
        let mut gone = std::mem::take(&mut self.released);
        ct.table.swap_released(&mut gone);
        for t in &gone {
            self.broadcast(Claim {
                key: claim_key(t),
                owner: self.steering.worker as u8,
                release: true,
            });
        }
        gone.clear();
        self.released = gone;
    }

    /// Sends `c` to every other worker and applies it here too (the owner must keep the
    /// frames of its claimed flows it receives itself).
    fn broadcast(&mut self, c: Claim) {
        if !self.claims.apply(&c) {
            self.stats.add(Counter::ClaimRefused, 1);
        }
        for ring in self.steering.claims_out.iter_mut().flatten() {
            if ring.push(c).is_err() {
                self.stats.add(Counter::ClaimDropped, 1);
            }
        }
    }
}
