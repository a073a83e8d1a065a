//! Per-worker dataplane counters, declared once with their name and help text (VPP's style), kept
//! in cache-line-aligned shards that only their worker writes and anybody may read.
//!
//! A shard is written by one thread with a relaxed load and store (on x86-64 the same `mov`/`add`
//! as a plain integer, no locked instruction); readers sum the shards with relaxed loads. A
//! reader may see a counter a few packets old, never a torn value.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($id:ident = $name:literal : $help:literal,)*) => {
        /// Every dataplane counter.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(usize)]
        pub enum Counter { $($id,)* }

        impl Counter {
            pub const ALL: &'static [Counter] = &[$(Counter::$id,)*];
            pub fn name(self) -> &'static str {
                match self { $(Counter::$id => $name,)* }
            }
            pub fn help(self) -> &'static str {
                match self { $(Counter::$id => $help,)* }
            }
        }
    };
}

counters! {
    RxPackets = "rx_packets": "frames received from the ports (and the TAP)",
    RxBytes = "rx_bytes": "bytes of the frames received",
    TxPackets = "tx_packets": "frames handed to a port's TX ring",
    TxBytes = "tx_bytes": "bytes of the frames handed to TX",
    Forwarded = "forwarded": "frames FORWARD accepted and sent out of the paired port",
    NonIpForwarded = "non_ip_forwarded": "ARP frames bridged unchanged (no table sees them)",
    LocalIn = "local_in": "frames INPUT accepted and delivered to the TAP",
    LocalNoTap = "local_no_tap": "frames INPUT accepted with no TAP to deliver them to (routed mode without an exception path)",
    LocalOut = "local_out": "frames from the TAP that OUTPUT accepted",
    DropRule = "drop_rule": "frames a DROP rule or policy dropped",
    DropHotdrop = "drop_hotdrop": "frames a match could not read (the kernel's hotdrop)",
    DropTruncated = "drop_truncated": "frames shorter than a header they must hold",
    DropNotIpv4 = "drop_not_ipv4": "frames neither IPv4 nor ARP",
    DropBadVersion = "drop_bad_version": "IPv4 version field not 4",
    DropBadHeaderLen = "drop_bad_header_len": "IPv4 IHL below 5",
    DropBadTotalLen = "drop_bad_total_len": "IPv4 total length below the header length",
    DropBadChecksum = "drop_bad_checksum": "IPv4 header checksum does not verify",
    DropNoRoute = "drop_no_route": "frames for the box with no TAP configured",
    RejectSent = "reject_sent": "ICMP errors and TCP resets sent for REJECT",
    RejectSuppressed = "reject_suppressed": "REJECT with no reply (the kernel would not send one)",
    RejectRateLimited = "reject_rate_limited": "ICMP errors held back by the icmp_ratelimit emulation",
    RejectNoFrame = "reject_no_frame": "REJECT replies lost for want of a free frame",
    LogRecords = "log_records": "LOG records handed to the control side",
    LogDropped = "log_dropped": "LOG records lost because the log ring was full",
    Queued = "queued": "frames handed to a QUEUE/NFQUEUE ring",
    QueueDropped = "queue_dropped": "QUEUE frames dropped (no consumer, or the ring was full)",
    TxRingFull = "tx_ring_full": "frames dropped because a TX ring stayed full",
    TxNoFrame = "tx_no_frame": "frames not sent for want of a free frame (copies, floods)",
    TapErrors = "tap_errors": "frames the TAP refused",
    HandoffOut = "handoff_out": "frames steered to the worker that owns their flow",
    HandoffIn = "handoff_in": "frames other workers steered to this one",
    HandoffDropped = "handoff_dropped": "frames for another worker lost because its ring was full",
    CtInvalid = "ct_invalid": "packets connection tracking found INVALID (no connection)",
    CtTableFull = "ct_table_full": "new connections dropped: the connection table was full and nothing could be evicted",
    CtBatchSplits = "ct_batch_splits": "batches cut so the packet that made a connection finished the hooks first",
    CtInsertFailed = "ct_insert_failed": "frames dropped because their new connection's reply tuple was already taken (NAT found no free one)",
    CtHelperDrop = "ct_helper_drop": "frames a conntrack helper dropped (a malformed command, or no room for the connection it announced)",
    DefragHeld = "defrag_held": "fragments held for reassembly",
    DefragReassembled = "defrag_reassembled": "datagrams reassembled from their fragments",
    DefragRefragmented = "defrag_refragmented": "fragments sent again for reassembled datagrams leaving",
    DefragTimeout = "defrag_timeout": "reassembly queues expired (ipfrag_time) before completing",
    DefragMemLimit = "defrag_mem_limit": "fragments dropped with reassembly memory over ipfrag_high_thresh",
    DefragDuplicate = "defrag_duplicate": "duplicate fragments dropped (the queue kept)",
    DefragOverlap = "defrag_overlap": "overlapping fragments: the datagram discarded",
    DefragFailed = "defrag_failed": "fragments dropped for other reassembly failures (inconsistent ends, ECN, over 65535 bytes)",
    DefragTooBigForFrame = "defrag_too_big_for_frame": "reassembled datagrams larger than a UMEM frame, dropped",
    NatRewritten = "nat_rewritten": "packets NAT rewrote (addresses, ports, quoted datagrams of ICMP errors)",
    NatNoAddress = "nat_no_address": "new connections dropped: MASQUERADE or REDIRECT found no address on the port",
    NatFailed = "nat_failed": "packets dropped because their rewrite failed (too short, a bad ICMP checksum)",
    NatOifChanged = "nat_oif_changed": "masqueraded connections killed because their packets left by another port",
    ClaimSent = "claim_sent": "connections whose destination manip made their replies hash to another worker, claimed for this one",
    ClaimRefused = "claim_refused": "claims from other workers refused: the claims table was full",
    ClaimDropped = "claim_dropped": "claims or releases not sent: a claim ring was full",
    NatAddressGone = "nat_address_gone": "masqueraded connections killed because their port lost the address they were masqueraded to",
    RoutedForwarded = "routed_forwarded": "frames routed out of a port (TTL decremented, MACs rewritten)",
    RouteUnreachable = "route_unreachable": "frames with no route (ICMP net unreachable sent)",
    RouteTtlExceeded = "route_ttl_exceeded": "frames with TTL 1 or 0 to forward (ICMP time exceeded sent)",
    RouteFragNeeded = "route_frag_needed": "DF frames over the egress MTU (ICMP fragmentation needed sent)",
    RouteNotForUs = "route_not_for_us": "frames addressed to another MAC, or group-addressed frames to forward",
    RouteFragmented = "route_fragmented": "fragments made of datagrams over the egress MTU without DF",
    IcmpErrorSent = "icmp_error_sent": "ICMP errors the routing step sent (time exceeded, unreachable, fragmentation needed)",
    EchoReplied = "echo_replied": "ICMP echo requests to the box's addresses answered (routed mode without a TAP)",
    ArpReplied = "arp_replied": "ARP requests for the box's addresses answered",
    ArpRequested = "arp_requested": "ARP requests sent to resolve next hops",
    ArpIn = "arp_in": "ARP messages received in routed mode",
    NeighQueued = "neigh_queued": "frames queued while their next hop was resolved",
    NeighDropped = "neigh_dropped": "frames dropped while their next hop was unresolved (queue full, failed, no entry)",
}

impl Counter {
    /// The drop counter of a frame that failed the IPv4 checks.
    pub fn of_drop(r: classifier::wire::headers::DropReason) -> Counter {
        use classifier::wire::headers::DropReason as D;
        match r {
            D::Truncated => Counter::DropTruncated,
            D::NotIpv4 => Counter::DropNotIpv4,
            D::BadVersion => Counter::DropBadVersion,
            D::BadHeaderLen => Counter::DropBadHeaderLen,
            D::BadTotalLen => Counter::DropBadTotalLen,
            D::BadChecksum => Counter::DropBadChecksum,
        }
    }
}

const N: usize = Counter::ALL.len();

/// One worker's counters. Aligned so that two workers' shards never share a cache line.
#[repr(align(64))]
pub struct StatsShard {
    v: [AtomicU64; N],
}

impl Default for StatsShard {
    fn default() -> Self {
        StatsShard {
            v: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

impl StatsShard {
    /// Adds `n` (owner thread only: a load and a store, not a locked add).
    #[inline(always)]
    pub fn add(&self, c: Counter, n: u64) {
        let a = &self.v[c as usize];
        a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    pub fn get(&self, c: Counter) -> u64 {
        self.v[c as usize].load(Ordering::Relaxed)
    }
}

/// The sum over shards of every counter, in declaration order.
pub fn sum(shards: &[&StatsShard]) -> Vec<(Counter, u64)> {
    Counter::ALL
        .iter()
        .map(|&c| (c, shards.iter().map(|s| s.get(c)).sum()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_shards_sum() {
        let mut names: Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
        assert!(std::mem::align_of::<StatsShard>() >= 64);
        let (a, b) = (StatsShard::default(), StatsShard::default());
        a.add(Counter::RxPackets, 3);
        b.add(Counter::RxPackets, 4);
        b.add(Counter::TxBytes, 10);
        let s = sum(&[&a, &b]);
        assert_eq!(s[Counter::RxPackets as usize], (Counter::RxPackets, 7));
        assert_eq!(s[Counter::TxBytes as usize].1, 10);
    }
}
