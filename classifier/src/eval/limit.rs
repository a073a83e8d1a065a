//! `xt_limit`'s token bucket, with the kernel's jiffies and credit arithmetic, so that the same
//! packets match for the same arrival times.

use crate::model::check::{user2credits, CREDITS_PER_JIFFY, HZ};
use crate::model::LimitMatch;

/// Jiffies for a time in nanoseconds (HZ ticks per second).
pub fn jiffies(now_ns: u64) -> u64 {
    now_ns / (1_000_000_000 / u64::from(HZ))
}

/// One rule's bucket (`xt_limit_priv` plus the rule's cost and cap).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    prev: u64,
    credit: u32,
    cap: u32,
    cost: u32,
}

impl Bucket {
    /// A full bucket, as `limit_mt_check` leaves it when the rule is loaded at `now_ns`.
    pub fn new(m: &LimitMatch, now_ns: u64) -> Bucket {
        let cap = user2credits(m.avg.wrapping_mul(m.burst));
        Bucket {
            prev: jiffies(now_ns),
            credit: cap,
            cap,
            cost: user2credits(m.avg),
        }
    }

    /// `limit_mt`: refill by elapsed jiffies, then spend one packet's cost if there is enough.
    pub fn take(&mut self, now_ns: u64) -> bool {
        let now = jiffies(now_ns);
        let elapsed = now.wrapping_sub(std::mem::replace(&mut self.prev, now));
        // `credit` is a u32 in the kernel: the refill wraps like it does there.
        self.credit = self
            .credit
            .wrapping_add(elapsed.wrapping_mul(u64::from(CREDITS_PER_JIFFY)) as u32);
        if self.credit > self.cap {
            self.credit = self.cap;
        }
        if self.credit >= self.cost {
            self.credit -= self.cost;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        // 3/sec, burst 5: five packets pass at once, then one every 1/3 s.
        let m = LimitMatch {
            avg: LimitMatch::SCALE / 3,
            burst: 5,
        };
        let mut b = Bucket::new(&m, 0);
        let passed = (0..10).filter(|_| b.take(0)).count();
        assert_eq!(passed, 5);
        assert!(!b.take(300_000_000));
        assert!(b.take(340_000_000));
        assert!(!b.take(340_000_000));
    }
}
