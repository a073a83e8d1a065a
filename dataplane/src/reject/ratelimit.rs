//! The kernel's two ICMP error rate limits, per worker, in nanoseconds instead of jiffies.
//!
//! * Global (`icmp_global_allow` and `icmp_global_consume` in `net/ipv4/icmp.c`, 6.x with
//!   per-netns credit): a credit of at most `icmp_msgs_burst` (50) messages. While the credit is
//!   positive a message may go; once it is spent, it is refilled at `icmp_msgs_per_sec` (1000/s)
//!   for the time since the last refill (at most one second's worth, and not before 20 ms, HZ/50,
//!   have passed). Each message sent consumes one credit; the kernel consumes a random 0, 1 or 2
//!   (one on average), which pollwall replaces by exactly one.
//! * Per destination (`icmpv4_xrlim_allow`, `inet_peer_xrlim_allow` in `net/ipv4/inetpeer.c`): a
//!   token bucket per destination host holding at most `XRLIM_BURST_FACTOR` (6) × `icmp_ratelimit`
//!   (1000 ms) of time; a message costs `icmp_ratelimit`. A new peer starts full (the kernel
//!   back-dates `rate_last` by 60 s), so a destination gets a burst of 6 and then one per second.
//!
//! Both apply to the types in `icmp_ratemask` (0x1818: 3, 4, 11, 12) except 3/4 (fragmentation
//! needed): every ICMP error REJECT sends is one of them. The kernel checks the global credit
//! first, then the peer, and consumes global credit only when the peer allowed the message;
//! [`IcmpRateLimit::allow`] does the same. TCP resets are not rate-limited (`nf_send_reset` has no
//! limit), so the dataplane does not call it for them.
//!
//! The peer table is fixed (4096 entries: 1024 sets of 4, preallocated by `new`, no allocation
//! afterwards), indexed by a randomly keyed SipHash of the address (so nobody can aim addresses
//! at one set), and a miss evicts the least recently refilled entry of its set. An evicted peer
//! comes back with a full bucket, which can let a few more errors through to addresses that are
//! being sprayed; the global limit still bounds the total. (The kernel's peer table also forgets
//! idle peers.) The limiter is per worker: with N workers the totals are N times the kernel's.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::Ipv4Addr;

const NS_PER_SEC: u64 = 1_000_000_000;
const NS_PER_MS: u64 = 1_000_000;
/// HZ / 50: the shortest interval after which the global credit is refilled.
const MIN_REFILL_NS: u64 = NS_PER_SEC / 50;
/// Ways per set of the peer table.
const WAYS: usize = 4;

/// One destination's token bucket.
#[derive(Clone, Copy, Debug, Default)]
struct Peer {
    used: bool,
    addr: u32,
    /// Tokens, in nanoseconds of credit.
    tokens_ns: u64,
    /// Last time tokens were added.
    last_ns: u64,
}

/// Emulation of the kernel's ICMP error rate limits (global credit and per-destination bucket).
#[derive(Clone, Debug)]
pub struct IcmpRateLimit {
    msgs_per_sec: u64,
    burst: i64,
    /// Global credit; may go to zero or below, like the kernel's.
    credit: i64,
    /// Time of the last global refill; None before the first.
    stamp_ns: Option<u64>,
    /// Cost of one message in a peer bucket (`icmp_ratelimit`).
    ratelimit_ns: u64,
    peers: Box<[Peer]>,
    hasher: RandomState,
}

impl Default for IcmpRateLimit {
    fn default() -> Self {
        Self::new()
    }
}

impl IcmpRateLimit {
    /// `net.ipv4.icmp_msgs_per_sec` default.
    pub const DEFAULT_MSGS_PER_SEC: u32 = 1000;
    /// `net.ipv4.icmp_msgs_burst` default.
    pub const DEFAULT_MSGS_BURST: u32 = 50;
    /// `net.ipv4.icmp_ratelimit` default, in milliseconds.
    pub const DEFAULT_RATELIMIT_MS: u32 = 1000;
    /// `XRLIM_BURST_FACTOR`: a peer bucket holds this many messages.
    pub const BURST_FACTOR: u64 = 6;
    /// Destinations remembered at once.
    pub const PEER_SLOTS: usize = 4096;

    /// The kernel's defaults.
    pub fn new() -> IcmpRateLimit {
        Self::with_limits(
            Self::DEFAULT_MSGS_PER_SEC,
            Self::DEFAULT_MSGS_BURST,
            Self::DEFAULT_RATELIMIT_MS,
        )
    }

    /// Explicit `icmp_msgs_per_sec`, `icmp_msgs_burst` and `icmp_ratelimit` (ms; 0 disables the
    /// per-destination limit, as in the kernel).
    pub fn with_limits(msgs_per_sec: u32, msgs_burst: u32, ratelimit_ms: u32) -> IcmpRateLimit {
        IcmpRateLimit {
            msgs_per_sec: u64::from(msgs_per_sec),
            burst: i64::from(msgs_burst),
            credit: 0,
            stamp_ns: None,
            ratelimit_ns: u64::from(ratelimit_ms) * NS_PER_MS,
            peers: vec![Peer::default(); Self::PEER_SLOTS].into_boxed_slice(),
            hasher: RandomState::new(),
        }
    }

    /// May an ICMP error go to `dst` at `now_ns` (any monotonic clock)? Consumes the credit when
    /// it says yes.
    pub fn allow(&mut self, dst: Ipv4Addr, now_ns: u64) -> bool {
        if !self.global_allow(now_ns) {
            return false;
        }
        if !self.peer_allow(dst, now_ns) {
            return false;
        }
        self.credit -= 1;
        true
    }

    /// `icmp_global_allow`.
    fn global_allow(&mut self, now_ns: u64) -> bool {
        if self.credit > 0 {
            return true;
        }
        let delta = match self.stamp_ns {
            Some(stamp) => now_ns.saturating_sub(stamp).min(NS_PER_SEC),
            None => NS_PER_SEC,
        };
        if delta < MIN_REFILL_NS {
            return false;
        }
        // delta <= 1e9 and msgs_per_sec < 2^32: no overflow; the result fits in an i64.
        let incr = (self.msgs_per_sec * delta / NS_PER_SEC) as i64;
        if incr == 0 {
            return false;
        }
        self.stamp_ns = Some(now_ns);
        self.credit = (self.credit + incr).min(self.burst);
        true
    }

    /// `inet_peer_xrlim_allow` on `dst`'s bucket.
    fn peer_allow(&mut self, dst: Ipv4Addr, now_ns: u64) -> bool {
        let cap = Self::BURST_FACTOR * self.ratelimit_ns;
        let timeout = self.ratelimit_ns;
        let peer = self.peer(u32::from(dst), now_ns, cap);
        let delta = now_ns.saturating_sub(peer.last_ns);
        if delta > 0 {
            peer.last_ns = now_ns;
            peer.tokens_ns = peer.tokens_ns.saturating_add(delta).min(cap);
        }
        if peer.tokens_ns >= timeout {
            peer.tokens_ns -= timeout;
            true
        } else {
            false
        }
    }

    /// The bucket of `addr`, created full (evicting the stalest of its set) when absent.
    fn peer(&mut self, addr: u32, now_ns: u64, cap: u64) -> &mut Peer {
        let sets = self.peers.len() / WAYS;
        // The modulo keeps the index below `sets`; the cast of a value below 1024 is lossless.
        let set = (self.hasher.hash_one(addr) % sets as u64) as usize;
        let ways = &mut self.peers[set * WAYS..(set + 1) * WAYS];
        let at = match ways.iter().position(|p| p.used && p.addr == addr) {
            Some(i) => i,
            None => {
                let victim = ways
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, p)| (p.used, p.last_ns))
                    .map_or(0, |(i, _)| i);
                ways[victim] = Peer {
                    used: true,
                    addr,
                    tokens_ns: cap,
                    last_ns: now_ns,
                };
                victim
            }
        };
        &mut ways[at]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = NS_PER_MS;
    const T0: u64 = 1_000 * NS_PER_SEC;

    fn addr(i: u32) -> Ipv4Addr {
        Ipv4Addr::from(0x0a00_0000 + i)
    }

    #[test]
    fn peer_burst_of_six_then_one_per_second() {
        let mut rl = IcmpRateLimit::new();
        let a = addr(1);
        let sent = (0..20).filter(|_| rl.allow(a, T0)).count();
        assert_eq!(sent, 6);
        // 999 ms later: still nothing; at 1000 ms: one more.
        assert!(!rl.allow(a, T0 + 999 * MS));
        assert!(rl.allow(a, T0 + 1000 * MS));
        assert!(!rl.allow(a, T0 + 1000 * MS));
        // After a long pause the bucket is full again, but holds only six.
        let later = T0 + 3600 * NS_PER_SEC;
        assert_eq!((0..20).filter(|_| rl.allow(a, later)).count(), 6);
    }

    #[test]
    fn global_burst_and_rate() {
        let mut rl = IcmpRateLimit::new();
        // 100 destinations at once: the global credit (50) runs out first. The credit check is
        // "> 0", so the 50th message takes the last credit and the 51st finds none.
        let sent = (0..100).filter(|&i| rl.allow(addr(i), T0)).count();
        assert_eq!(sent, 50);
        // Less than 20 ms later: no refill.
        assert!(!rl.allow(addr(200), T0 + 19 * MS));
        // 20 ms later: 1000/s * 20 ms = 20 credits.
        let t = T0 + 20 * MS;
        let sent = (300..400).filter(|&i| rl.allow(addr(i), t)).count();
        assert_eq!(sent, 20);
        // A full second refills at most the burst.
        let t = t + 5 * NS_PER_SEC;
        let sent = (400..500).filter(|&i| rl.allow(addr(i), t)).count();
        assert_eq!(sent, 50);
    }

    #[test]
    fn peer_refusal_does_not_consume_global_credit() {
        let mut rl = IcmpRateLimit::new();
        let a = addr(7);
        for _ in 0..1000 {
            rl.allow(a, T0);
        }
        // Six went to `a`; 44 credits are left for others.
        let sent = (100..200).filter(|&i| rl.allow(addr(i), T0)).count();
        assert_eq!(sent, 44);
    }

    #[test]
    fn zero_ratelimit_disables_the_peer_limit() {
        let mut rl = IcmpRateLimit::with_limits(1000, 50, 0);
        assert_eq!((0..100).filter(|_| rl.allow(addr(1), T0)).count(), 50);
    }

    #[test]
    fn table_is_bounded_and_evicts_the_stalest() {
        let mut rl = IcmpRateLimit::with_limits(u32::MAX, u32::MAX, 1000);
        // Many more destinations than slots: each still gets its first message, nothing grows.
        for i in 0..3 * IcmpRateLimit::PEER_SLOTS as u32 {
            assert!(rl.allow(addr(i), T0));
        }
        assert_eq!(rl.peers.len(), IcmpRateLimit::PEER_SLOTS);

        // Five addresses of one set: the fifth evicts the least recently refilled.
        let sets = (IcmpRateLimit::PEER_SLOTS / WAYS) as u64;
        let set_of = |rl: &IcmpRateLimit, a: Ipv4Addr| rl.hasher.hash_one(u32::from(a)) % sets;
        let mut rl = IcmpRateLimit::with_limits(u32::MAX, u32::MAX, 1000);
        let target = set_of(&rl, addr(0));
        let same: Vec<Ipv4Addr> = (0..1_000_000)
            .map(addr)
            .filter(|&a| set_of(&rl, a) == target)
            .take(WAYS + 1)
            .collect();
        assert_eq!(same.len(), WAYS + 1);
        for (i, &a) in same[..WAYS].iter().enumerate() {
            let t = T0 + i as u64;
            assert_eq!((0..10).filter(|_| rl.allow(a, t)).count(), 6);
        }
        // same[0] is the stalest: the newcomer takes its slot, so same[0] starts over full.
        assert_eq!((0..10).filter(|_| rl.allow(same[WAYS], T0 + 10)).count(), 6);
        assert_eq!((0..10).filter(|_| rl.allow(same[0], T0 + 11)).count(), 6);
        // ...evicting same[1] in turn; same[2] is still remembered, and empty.
        assert!(!rl.allow(same[2], T0 + 12));
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut rl = IcmpRateLimit::new();
        assert!(rl.allow(addr(1), T0));
        assert!(rl.allow(addr(1), 0));
        assert!(rl.allow(addr(2), 5));
        let _ = rl.allow(addr(3), u64::MAX);
        let _ = rl.allow(addr(3), 0);
    }
}
