//! IPv4 reassembly and refragmentation, ported from Linux 6.12: `net/ipv4/ip_fragment.c`
//! (`ip_defrag`, `ip_frag_queue`, `ip_frag_reasm`, `ip_expire`, `ip_frag_too_far`),
//! `net/ipv4/inet_fragment.c` (the run tree of `inet_frag_queue_insert`, `inet_frag_find`'s
//! memory limit), `net/ipv4/netfilter/nf_defrag_ipv4.c` (the conntrack users, `ignore_df`) and,
//! in [`refrag`], the fragmenting half of `net/ipv4/ip_output.c` (`ip_fragment`,
//! `ip_do_fragment`'s fast and slow paths) with `ip_forward.c`'s `ip_exceeds_mtu`.
//!
//! A pure library: time is passed in (milliseconds of any monotonic clock), there are no
//! threads, no I/O, and nothing is allocated after [`Defrag::new`]. Untrusted bytes are only
//! read through checked lengths; no input panics.
//!
//! # Use
//!
//! ```text
//! let mut d = Defrag::new(DefragConfig::default(), seed);
//! d.expire(now_ms, 64, |e| maybe_icmp_time_exceeded(e));   // regularly, e.g. once per batch
//! match d.offer(ip, user::conntrack_in(zone), iif, now_ms) {
//!     Offer::NotFragment => { /* process ip as is */ }
//!     Offer::Held => { /* stolen: the fragment is queued (NF_STOLEN) */ }
//!     Offer::Reassembled(r) => { /* process r.datagram (copy it: it lives until the next
//!                                   offer); keep r.meta (+ r.fragments) for refragmenting */ }
//!     Offer::Dropped(reason) => { /* the fragment is gone (counted in stats) */ }
//! }
//! while let Some(e) = d.pop_expired() { /* queues `offer` found expired: ICMP candidates */ }
//! ```
//!
//! # Kernel behaviour reproduced
//!
//! - **Queue key**: (saddr, daddr, id, protocol, user). The kernel's key also has the l3mdev
//!   master ifindex (`vif`); fold it into `user` or use one [`Defrag`] per VRF if that matters.
//!   `user` is the kernel's `u32` (`ip_defrag_users`, see [`user`]): conntrack passes
//!   `IP_DEFRAG_CONNTRACK_IN + zone` at PREROUTING and `IP_DEFRAG_CONNTRACK_OUT + zone` at
//!   LOCAL_OUT, so zones never share a queue.
//! - **Memory**: `inet_frag_find` refuses *every* fragment (new queue or not) while the
//!   accounted memory is above `high_thresh` (strictly greater), or when `high_thresh` is 0;
//!   the fragment is dropped and `REASMFAILS` counted. 6.12 has no evictor: `low_thresh` is only
//!   a sysctl bound and memory is freed only by completion, errors and timeouts. Memory can
//!   therefore exceed `high_thresh` by at most one queue overhead plus one fragment charge.
//!   Accounting model (the kernel charges `sizeof(struct ipq)` per queue and each skb's
//!   `truesize`, which depends on the driver): a queue costs `queue_overhead` (default 200, the
//!   figure `ip_fragment.c` quotes), a fragment `total length + frag_overhead` (default 1444,
//!   so a 1500-byte fragment costs the 2944 bytes the same comment quotes). Duplicates are not
//!   charged; the whole charge of a queue is returned when it dies.
//! - **Timeout**: `ipfrag_time` (30 s) from the queue's creation, never extended by later
//!   fragments (only a "too far" reinit re-arms it). All queues share the timeout, so they age
//!   on one FIFO list; [`Defrag::expire`] walks it with a budget. A fragment that finds its
//!   queue past the deadline expires it first (the kernel's timer would have) and starts anew.
//!   On expiry `ip_expire` counts `REASMFAILS` and `REASMTIMEOUT` and, only if the first
//!   fragment (offset 0) had arrived, may send ICMP time exceeded / fragment reassembly time
//!   exceeded quoting that fragment: [`Expired`] carries what is needed and
//!   [`IcmpOnExpire`] the rule: for the conntrack PREROUTING users (`CONNTRACK_IN`,
//!   `CONNTRACK_BRIDGE_IN` ranges) and `AF_PACKET` the ICMP is sent only if the route lookup
//!   for the head says the destination is local (`RTN_LOCAL`, RFC 792: only end hosts send it);
//!   for the other users (including `CONNTRACK_OUT` and `LOCAL_DELIVER`) whenever the route
//!   lookup succeeds.
//! - **Too far** (`ipfrag_max_dist`, 64): applies to every user, conntrack included (the
//!   per-source `inet_peer` counter is taken at queue creation whenever `max_dist != 0`). Each
//!   fragment from a source bumps that source's counter; if more than `max_dist` fragments from
//!   the source reached any queue between two fragments of this queue, the queue's fragments
//!   are flushed and its state reset (`ip_frag_reinit`: flags, length, received bytes, ECN,
//!   iif; *not* `max_size`/`max_df_size`), its timer re-armed, `REASMFAILS` counted, and the
//!   new fragment is then queued normally. The kernel keys the peer by (saddr, vif); here by
//!   saddr. Counters are per [`Defrag`], so shard by source address to keep them exact.
//!   (The kernel skips the check for fragments its own `ip_do_fragment` made,
//!   `IPSKB_FRAG_COMPLETE`; a forwarding dataplane never offers those.)
//! - **Fragment checks** (`ip_frag_queue`): offset = 8 × the offset field; end = offset +
//!   payload. A last fragment (no MF) whose end is below the data already seen, or differs from
//!   an earlier last fragment's, discards the queue; a non-last fragment's end is rounded down
//!   to a multiple of 8 (the excess bytes dropped) and discards the queue if it goes past a
//!   known last fragment; a fragment left with no payload discards the queue (even an existing
//!   one). Note the kernel sets "last fragment seen" *before* the duplicate check, so a
//!   duplicate of the final range without MF still marks the end: reproduced.
//! - **Overlaps** (RFC 5722 as the kernel applies it to IPv4): a fragment inside one existing
//!   run is a duplicate, dropped, queue kept (not a failure); any other overlap discards the
//!   whole queue (`REASM_OVERLAPS` and `REASMFAILS`). Runs are maximal chains of fragments that
//!   arrived in order at the tail; see `queue.rs` for why that makes the outcome order-dependent.
//! - **Reassembly** (`ip_frag_reasm`) when the first and last fragments are in and the bytes
//!   received equal the length: the ECN bits of all fragments are combined by
//!   `ip_frag_ecn_table` (Not-ECT mixed with ECT/CE drops the datagram; CE with ECT sets CE);
//!   then the length (first fragment's header + data) must be at most 65535. The result is the
//!   first fragment's header (options included, as received) with total length set, `tos |=`
//!   the ECN result, `frag_off` = DF if the largest DF fragment is also the largest fragment
//!   (`max_df_size == max_size`, then `IPSKB_FRAG_PMTU` too) else 0 (MF, offset and the
//!   reserved bit cleared), and the checksum recomputed. `frag_max_size` = the largest
//!   fragment (header + data) seen.
//!
//! What the caller must do (the kernel does it before `ip_defrag`): validate the header
//! checksum and the header as `ip_rcv_core` does; [`Defrag::offer`] checks lengths only (and
//! version 4) and reads the datagram up to its total length (trailing bytes are ignored).

mod queue;
pub mod refrag;
#[cfg(test)]
mod tests;

pub use refrag::{
    forward_action, ip_exceeds_mtu, ip_options_fragment, output_action, FragDone, FragError,
    Fragmenter, OutputAction,
};

use core::hash::{BuildHasher, Hasher};
use hashbrown::HashTable;
use queue::{FragStore, InsertError, RunSet, BLOCK, NIL};
use std::collections::VecDeque;
use std::net::Ipv4Addr;

/// `ip_defrag_users` (include/net/ip.h), the kernel's values.
pub mod user {
    pub const LOCAL_DELIVER: u32 = 0;
    pub const CALL_RA_CHAIN: u32 = 1;
    pub const CONNTRACK_IN: u32 = 2;
    pub const CONNTRACK_IN_END: u32 = CONNTRACK_IN + 0xffff;
    pub const CONNTRACK_OUT: u32 = CONNTRACK_IN_END + 1;
    pub const CONNTRACK_OUT_END: u32 = CONNTRACK_OUT + 0xffff;
    pub const CONNTRACK_BRIDGE_IN: u32 = CONNTRACK_OUT_END + 1;
    pub const CONNTRACK_BRIDGE_IN_END: u32 = CONNTRACK_BRIDGE_IN + 0xffff;
    pub const VS_IN: u32 = CONNTRACK_BRIDGE_IN_END + 1;
    pub const VS_OUT: u32 = VS_IN + 1;
    pub const VS_FWD: u32 = VS_OUT + 1;
    pub const AF_PACKET: u32 = VS_FWD + 1;
    pub const MACVLAN: u32 = AF_PACKET + 1;

    /// `nf_ct_defrag_user` at PREROUTING for conntrack zone `zone`.
    pub const fn conntrack_in(zone: u16) -> u32 {
        CONNTRACK_IN + zone as u32
    }

    /// `nf_ct_defrag_user` at LOCAL_OUT.
    pub const fn conntrack_out(zone: u16) -> u32 {
        CONNTRACK_OUT + zone as u32
    }

    /// `nf_ct_defrag_user` for bridged traffic at PREROUTING.
    pub const fn conntrack_bridge_in(zone: u16) -> u32 {
        CONNTRACK_BRIDGE_IN + zone as u32
    }

    /// Users that reassemble through `nf_ct_ipv4_gather_frags`, which sets `skb->ignore_df`.
    pub fn is_conntrack(user: u32) -> bool {
        (CONNTRACK_IN..=CONNTRACK_BRIDGE_IN_END).contains(&user)
    }

    /// `frag_expire_skip_icmp`: users whose expiry sends ICMP only when the destination is
    /// local.
    pub fn skips_expire_icmp(user: u32) -> bool {
        user == AF_PACKET
            || (CONNTRACK_IN..=CONNTRACK_IN_END).contains(&user)
            || (CONNTRACK_BRIDGE_IN..=CONNTRACK_BRIDGE_IN_END).contains(&user)
    }
}

pub(crate) const IP_DF: u16 = 0x4000;
pub(crate) const IP_MF: u16 = 0x2000;
pub(crate) const IP_OFFSET: u16 = 0x1fff;

/// Queue flags (`INET_FRAG_FIRST_IN`, `INET_FRAG_LAST_IN`).
const FIRST_IN: u8 = 1;
const LAST_IN: u8 = 2;

/// `ip_frag_ecn_table`: indexed by the OR of `1 << (tos & 3)` over the fragments
/// (bit 0 Not-ECT, 1 ECT(1), 2 ECT(0), 3 CE); 0xff drops, otherwise OR'ed into the tos.
const IP_FRAG_ECN_TABLE: [u8; 16] = [
    0, 0, 0, 0xff, 0, 0xff, 0, 0xff, // 0..7
    0, 0xff, 3, 0xff, 3, 0xff, 3, 0xff, // 8..15
];

/// Bytes of the first fragment an [`Expired`] keeps (more than ICMP can quote: 576 - 28).
pub const EXPIRED_QUOTE: usize = 576;
/// Expiry events [`Defrag::offer`] can hold for [`Defrag::pop_expired`].
const PENDING_CAP: usize = 32;
/// Due queues `offer` expires itself when memory is over the limit.
const PRESSURE_EXPIRE: usize = 32;
/// Longest reassembled datagram.
const MAX_DATAGRAM: usize = 65535;
/// Most fragments a datagram of at most 65535 bytes can have (8-byte pieces).
const MAX_LAYOUT: usize = MAX_DATAGRAM / 8 + 2;
/// Lower bounds on the accounting overheads (they size the pools).
pub const MIN_FRAG_OVERHEAD: u32 = 256;
pub const MIN_QUEUE_OVERHEAD: u32 = 64;
/// Upper bound on `high_thresh`.
pub const MAX_HIGH_THRESH: u64 = 1 << 30;

/// Reassembly settings: the `net.ipv4.ipfrag_*` sysctls plus the accounting model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DefragConfig {
    /// `ipfrag_high_thresh` (bytes): above it every fragment is refused. Default 4 MiB; at most
    /// [`MAX_HIGH_THRESH`]. 0 refuses everything, as in the kernel.
    pub high_thresh: u64,
    /// `ipfrag_low_thresh` (default 3 MiB): unused by 6.12 apart from sysctl validation; kept
    /// for completeness.
    pub low_thresh: u64,
    /// `ipfrag_time` in milliseconds (default 30 000).
    pub timeout_ms: u64,
    /// `ipfrag_max_dist` (default 64); 0 disables the check.
    pub max_dist: u32,
    /// Bytes charged per queue (`sizeof(struct ipq)`, default 200; at least
    /// [`MIN_QUEUE_OVERHEAD`]).
    pub queue_overhead: u32,
    /// Bytes charged per fragment on top of its total length (the skb overhead of its
    /// truesize, default 1444; at least [`MIN_FRAG_OVERHEAD`]).
    pub frag_overhead: u32,
}

impl Default for DefragConfig {
    fn default() -> DefragConfig {
        DefragConfig {
            high_thresh: 4 * 1024 * 1024,
            low_thresh: 3 * 1024 * 1024,
            timeout_ms: 30_000,
            max_dist: 64,
            queue_overhead: 200,
            frag_overhead: 1444,
        }
    }
}

impl DefragConfig {
    fn sanitized(mut self) -> DefragConfig {
        self.high_thresh = self.high_thresh.min(MAX_HIGH_THRESH);
        self.queue_overhead = self.queue_overhead.max(MIN_QUEUE_OVERHEAD);
        self.frag_overhead = self.frag_overhead.clamp(MIN_FRAG_OVERHEAD, 1 << 20);
        self
    }
}

/// Counters. The first five are the kernel's `/proc/net/snmp` Ip fields (as `ip_defrag`
/// counts them); the rest break the outcomes down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// `IPSTATS_MIB_REASMREQDS` (`ReasmReqds`): fragments handed to reassembly.
    pub reasm_reqds: u64,
    /// `IPSTATS_MIB_REASMOKS` (`ReasmOKs`): datagrams reassembled.
    pub reasm_oks: u64,
    /// `IPSTATS_MIB_REASMFAILS` (`ReasmFails`): memory refusals, too-far reinits, discarded
    /// queues, failed reassemblies and timeouts, each counted once as the kernel does.
    pub reasm_fails: u64,
    /// `IPSTATS_MIB_REASMTIMEOUT` (`ReasmTimeout`).
    pub reasm_timeout: u64,
    /// `IPSTATS_MIB_REASM_OVERLAPS` (`ReasmOverlaps`): queues discarded for an overlap.
    pub reasm_overlaps: u64,
    /// Datagrams that were not fragments.
    pub not_fragment: u64,
    /// Datagrams failing the length/version checks.
    pub malformed: u64,
    /// Fragments queued without completing a datagram.
    pub held: u64,
    /// Duplicate fragments dropped (queue kept).
    pub duplicates: u64,
    /// Fragments refused because memory was over `high_thresh`.
    pub mem_limit: u64,
    /// `ip_frag_too_far` hits (queue flushed and restarted).
    pub too_far: u64,
    /// Queues discarded: last fragment inconsistent with the data or an earlier last fragment.
    pub last_mismatch: u64,
    /// Queues discarded: non-last fragment beyond the known end.
    pub beyond_end: u64,
    /// Queues discarded: fragment with no payload left.
    pub empty: u64,
    /// Reassemblies failed on an invalid ECN combination.
    pub bad_ecn: u64,
    /// Reassemblies failed because the datagram would exceed 65535 bytes.
    pub too_big: u64,
    /// Pools exhausted (stays 0 within the derived bounds).
    pub no_buffer: u64,
    /// Queues created / freed.
    pub queues_created: u64,
    pub queues_freed: u64,
    /// Expiry events dropped because [`Defrag::pop_expired`] was not drained.
    pub expired_events_lost: u64,
}

/// Why a fragment was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// Shorter than its header or total length, not version 4, or IHL < 5.
    Malformed,
    /// Memory over `high_thresh` (`inet_frag_find` failed).
    MemLimit,
    /// A duplicate (`IPFRAG_DUP`); the queue is kept.
    Duplicate,
    /// An overlap (`IPFRAG_OVERLAP`); the queue was discarded.
    Overlap,
    /// Last fragment inconsistent; the queue was discarded.
    LastMismatch,
    /// Non-last fragment beyond the known end; the queue was discarded.
    BeyondEnd,
    /// No payload left after rounding; the queue was discarded.
    Empty,
    /// Invalid ECN combination at reassembly; the queue was discarded.
    BadEcn,
    /// Reassembled length over 65535; the queue was discarded.
    TooBig,
    /// Pools exhausted (kernel ENOMEM); the queue, if any, was discarded.
    NoBuffer,
}

/// A queue's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub id: u16,
    pub protocol: u8,
    pub user: u32,
}

/// What the output path needs to know about a reassembled datagram (`IPCB(skb)` fields and
/// `skb->ignore_df`); [`FragMeta::default`] for a datagram that was not reassembled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragMeta {
    /// `IPCB(skb)->frag_max_size`: the largest fragment received (header + data).
    pub frag_max_size: u16,
    /// `IPSKB_FRAG_PMTU`: the largest fragment had DF (the datagram then has DF too);
    /// `ip_do_fragment`'s slow path sets DF on every fragment it makes.
    pub frag_pmtu: bool,
    /// `skb->ignore_df`: set by conntrack reassembly (`nf_ct_ipv4_gather_frags`).
    pub ignore_df: bool,
}

/// A reassembled datagram, valid until the next call on the [`Defrag`].
#[derive(Clone, Copy, Debug)]
pub struct Reassembled<'a> {
    /// The datagram: fixed-up header of the first fragment, then the data.
    pub datagram: &'a [u8],
    /// Payload length of each fragment in offset order (the kernel's frag_list, which
    /// `ip_do_fragment`'s fast path reuses); see [`Fragmenter::fragment`].
    pub fragments: &'a [u16],
    pub meta: FragMeta,
    pub key: FragKey,
}

/// What [`Defrag::offer`] did with a datagram.
#[derive(Clone, Copy, Debug)]
pub enum Offer<'a> {
    /// Not a fragment (MF clear and offset 0): untouched, process it as is.
    NotFragment,
    /// Queued; nothing to process now.
    Held,
    /// This fragment completed a datagram.
    Reassembled(Reassembled<'a>),
    /// The fragment was dropped.
    Dropped(DropReason),
}

/// When `ip_expire` sends ICMP time exceeded (code 1, fragment reassembly time exceeded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IcmpOnExpire {
    /// Send only if routing the first fragment (daddr, saddr, tos, iif) gives a local route.
    IfLocalRoute,
    /// Send if routing the first fragment succeeds.
    IfRouted,
}

/// A queue that timed out with its first fragment received (ICMP candidate). Queues whose first
/// fragment never came expire silently (counted only).
#[derive(Clone, Copy)]
pub struct Expired {
    pub key: FragKey,
    /// Interface of the last fragment queued (`qp->iif`), as passed to [`Defrag::offer`].
    pub iif: u32,
    pub icmp: IcmpOnExpire,
    quote: [u8; EXPIRED_QUOTE],
    quote_len: u16,
}

impl Expired {
    /// The first fragment's header (as received) and the start of its data: at most
    /// [`EXPIRED_QUOTE`] bytes, more than `icmp_send` quotes.
    pub fn first_fragment(&self) -> &[u8] {
        &self.quote[..self.quote_len as usize]
    }
}

impl core::fmt::Debug for Expired {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Expired")
            .field("key", &self.key)
            .field("iif", &self.iif)
            .field("icmp", &self.icmp)
            .field("quote_len", &self.quote_len)
            .finish()
    }
}

/// The header fields reassembly reads, after the length checks.
#[derive(Clone, Copy, Debug)]
struct Hdr {
    ihl: usize,
    tot_len: usize,
    tos: u8,
    id: u16,
    frag_off: u16,
    proto: u8,
    src: u32,
    dst: u32,
}

impl Hdr {
    /// Version 4, IHL ≥ 5, the header and the total length within `ip`, total length ≥ header.
    fn parse(ip: &[u8]) -> Option<Hdr> {
        if ip.len() < 20 {
            return None;
        }
        if ip[0] >> 4 != 4 {
            return None;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        if ihl < 20 || ihl > ip.len() {
            return None;
        }
        let tot_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        if tot_len < ihl || tot_len > ip.len() {
            return None;
        }
        Some(Hdr {
            ihl,
            tot_len,
            tos: ip[1],
            id: u16::from_be_bytes([ip[4], ip[5]]),
            frag_off: u16::from_be_bytes([ip[6], ip[7]]),
            proto: ip[9],
            src: u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
            dst: u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
        })
    }

    /// `ip_is_fragment`.
    fn is_fragment(&self) -> bool {
        self.frag_off & (IP_MF | IP_OFFSET) != 0
    }
}

/// Writes a big-endian `u16` at `at` (no-op if out of range).
fn put16(buf: &mut [u8], at: usize, v: u16) {
    if let Some(b) = buf.get_mut(at..at + 2) {
        b.copy_from_slice(&v.to_be_bytes());
    }
}

/// `ip_send_check`: recomputes the checksum of the header `hdr` (exactly the header bytes).
fn set_checksum(hdr: &mut [u8]) {
    if hdr.len() < 20 {
        return;
    }
    hdr[10] = 0;
    hdr[11] = 0;
    let mut sum = 0u32;
    for w in hdr.chunks(2) {
        let hi = u32::from(w[0]) << 8;
        let lo = w.get(1).map_or(0, |&b| u32::from(b));
        sum += hi | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let c = !(sum as u16);
    hdr[10..12].copy_from_slice(&c.to_be_bytes());
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Key {
    src: u32,
    dst: u32,
    user: u32,
    id: u16,
    proto: u8,
}

impl Key {
    fn public(&self) -> FragKey {
        FragKey {
            src: Ipv4Addr::from(self.src),
            dst: Ipv4Addr::from(self.dst),
            id: self.id,
            protocol: self.proto,
            user: self.user,
        }
    }
}

/// One reassembly queue (`struct ipq`).
#[derive(Clone, Copy)]
struct Queue {
    key: Key,
    hash: u64,
    deadline: u64,
    /// FIFO links when live; `next` links the free list otherwise.
    prev: u32,
    next: u32,
    runs: RunSet,
    /// `q.len`: the datagram's data length as far as known.
    len: u32,
    /// `q.meat`: data bytes received.
    meat: u32,
    flags: u8,
    ecn: u8,
    max_size: u16,
    max_df_size: u16,
    iif: u32,
    rid: u32,
    peer: u32,
    hdr_len: u8,
    hdr: [u8; 60],
    live: bool,
}

const QUEUE_FREE: Queue = Queue {
    key: Key {
        src: 0,
        dst: 0,
        user: 0,
        id: 0,
        proto: 0,
    },
    hash: 0,
    deadline: 0,
    prev: NIL,
    next: NIL,
    runs: RunSet::EMPTY,
    len: 0,
    meat: 0,
    flags: 0,
    ecn: 0,
    max_size: 0,
    max_df_size: 0,
    iif: 0,
    rid: 0,
    peer: NIL,
    hdr_len: 0,
    hdr: [0; 60],
    live: false,
};

/// A source's fragment counter (`inet_peer::rid`), alive while a queue from it is.
#[derive(Clone, Copy)]
struct Peer {
    saddr: u32,
    hash: u64,
    rid: u32,
    refs: u32,
    next_free: u32,
}

const PEER_FREE: Peer = Peer {
    saddr: 0,
    hash: 0,
    rid: 0,
    refs: 0,
    next_free: NIL,
};

/// Outcome of queueing one fragment.
enum Step {
    Held,
    Done {
        len: usize,
        meta: FragMeta,
        key: FragKey,
    },
}

/// The reassembler: every queue of one network namespace's `fqdir` (one worker's share).
pub struct Defrag {
    cfg: DefragConfig,
    queues: Vec<Queue>,
    free_queue: u32,
    live: u32,
    index: HashTable<u32>,
    hasher: foldhash::fast::FixedState,
    fifo_head: u32,
    fifo_tail: u32,
    peers: Vec<Peer>,
    free_peer: u32,
    peer_index: HashTable<u32>,
    store: FragStore,
    mem: u64,
    mem_bound: u64,
    out: Vec<u8>,
    layout: Vec<u16>,
    pending: VecDeque<Expired>,
    stats: DefragStats,
}

impl Defrag {
    /// A reassembler with `cfg` (overheads raised to their minimums, `high_thresh` capped),
    /// hashing queue keys under `seed` (attackers choose the keys: give a random seed).
    ///
    /// Pools are sized from the worst case the accounting allows: memory never exceeds
    /// `high_thresh + queue_overhead + 65535 + frag_overhead` ([`Defrag::mem_bound`]), every
    /// live queue holds at least one fragment, and every fragment is charged at least
    /// `21 + frag_overhead`.
    pub fn new(cfg: DefragConfig, seed: u64) -> Defrag {
        let cfg = cfg.sanitized();
        let qsize = u64::from(cfg.queue_overhead);
        let fo = u64::from(cfg.frag_overhead);
        let mem_bound = cfg.high_thresh + qsize + MAX_DATAGRAM as u64 + fo;
        let min_frag = 21 + fo;
        let max_frags = (mem_bound / min_frag + 1) as usize;
        let max_queues = ((mem_bound / (min_frag + qsize) + 1) as usize).min((NIL - 1) as usize);
        let max_blocks = (mem_bound / BLOCK as u64) as usize + max_frags + 1;
        let mut queues = vec![QUEUE_FREE; max_queues];
        for (i, q) in queues.iter_mut().enumerate() {
            q.next = if i + 1 < max_queues {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        let mut peers = vec![PEER_FREE; max_queues];
        for (i, p) in peers.iter_mut().enumerate() {
            p.next_free = if i + 1 < max_queues {
                (i + 1) as u32
            } else {
                NIL
            };
        }
        Defrag {
            cfg,
            queues,
            free_queue: 0,
            live: 0,
            // Twice the entries: hashbrown then always rehashes in place, never reallocates.
            index: HashTable::with_capacity(2 * max_queues),
            hasher: foldhash::fast::FixedState::with_seed(seed),
            fifo_head: NIL,
            fifo_tail: NIL,
            peers,
            free_peer: 0,
            peer_index: HashTable::with_capacity(2 * max_queues),
            store: FragStore::new(max_frags, max_blocks, seed),
            mem: 0,
            mem_bound,
            out: vec![0u8; MAX_DATAGRAM],
            layout: Vec::with_capacity(MAX_LAYOUT),
            pending: VecDeque::with_capacity(PENDING_CAP),
            stats: DefragStats::default(),
        }
    }

    /// The configuration in force (after sanitizing).
    pub fn config(&self) -> &DefragConfig {
        &self.cfg
    }

    pub fn stats(&self) -> &DefragStats {
        &self.stats
    }

    /// Accounted memory (`frag_mem_limit`), bytes.
    pub fn mem(&self) -> u64 {
        self.mem
    }

    /// The most [`Defrag::mem`] can ever reach.
    pub fn mem_bound(&self) -> u64 {
        self.mem_bound
    }

    /// Live queues.
    pub fn queues(&self) -> usize {
        self.live as usize
    }

    /// Most queues the pools hold.
    pub fn max_queues(&self) -> usize {
        self.queues.len()
    }

    /// Bytes allocated by the pools and buffers (a rough total).
    pub fn pool_bytes(&self) -> usize {
        self.store.pool_bytes()
            + self.queues.len() * (core::mem::size_of::<Queue>() + core::mem::size_of::<Peer>())
            + 4 * self.queues.len() * 5 * 8 / 7
            + self.out.len()
            + 2 * self.layout.capacity()
            + PENDING_CAP * core::mem::size_of::<Expired>()
    }

    /// The earliest deadline of a live queue (ms), for scheduling [`Defrag::expire`].
    pub fn next_deadline(&self) -> Option<u64> {
        if self.fifo_head == NIL {
            None
        } else {
            Some(self.queues[self.fifo_head as usize].deadline)
        }
    }

    /// `ip_defrag` for one IPv4 datagram `ip` (from its header; bytes past its total length
    /// are ignored) received on interface `iif` by reassembly user `user` (see [`user`]).
    ///
    /// A non-fragment is returned untouched ([`Offer::NotFragment`]). A fragment is stolen:
    /// queued ([`Offer::Held`]), dropped ([`Offer::Dropped`]), or it completes a datagram
    /// ([`Offer::Reassembled`], borrowed from `self` until the next call).
    pub fn offer(&mut self, ip: &[u8], user: u32, iif: u32, now_ms: u64) -> Offer<'_> {
        let h = match Hdr::parse(ip) {
            Some(h) => h,
            None => {
                self.stats.malformed += 1;
                return Offer::Dropped(DropReason::Malformed);
            }
        };
        if !h.is_fragment() {
            self.stats.not_fragment += 1;
            return Offer::NotFragment;
        }
        self.stats.reasm_reqds += 1;
        match self.ip_defrag(&h, &ip[..h.tot_len], user, iif, now_ms) {
            Ok(Step::Held) => {
                self.stats.held += 1;
                Offer::Held
            }
            Ok(Step::Done { len, meta, key }) => Offer::Reassembled(Reassembled {
                datagram: &self.out[..len],
                fragments: &self.layout[..],
                meta,
                key,
            }),
            Err(r) => Offer::Dropped(r),
        }
    }

    /// Expires up to `budget` queues whose deadline is at or before `now_ms`, oldest first
    /// (`ip_expire`), calling `on_expired` for those whose first fragment had arrived; returns
    /// how many queues expired.
    pub fn expire<F: FnMut(&Expired)>(
        &mut self,
        now_ms: u64,
        budget: usize,
        mut on_expired: F,
    ) -> usize {
        let mut n = 0;
        while n < budget {
            let q = self.fifo_head;
            if q == NIL || now_ms < self.queues[q as usize].deadline {
                break;
            }
            if let Some(e) = self.expire_queue(q) {
                on_expired(&e);
            }
            n += 1;
        }
        n
    }

    /// Takes the oldest expiry event [`Defrag::offer`] produced itself (when a fragment found
    /// its queue past the deadline, or under memory pressure). At most 32 are kept.
    pub fn pop_expired(&mut self) -> Option<Expired> {
        self.pending.pop_front()
    }

    /// Frees every queue without counting anything (`fqdir_exit`).
    pub fn purge(&mut self) {
        while self.fifo_head != NIL {
            let q = self.fifo_head;
            self.free_queue(q);
        }
        self.pending.clear();
    }

    fn over_limit(&self) -> bool {
        self.cfg.high_thresh == 0 || self.mem > self.cfg.high_thresh
    }

    fn hash_key(&self, k: &Key) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u64(u64::from(k.src) << 32 | u64::from(k.dst));
        h.write_u64(u64::from(k.user) << 32 | u64::from(k.id) << 16 | u64::from(k.proto));
        h.finish()
    }

    fn hash_peer(&self, saddr: u32) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write_u64(u64::from(saddr) | 0x5045_4552_0000_0000);
        h.finish()
    }

    fn lookup(&self, hash: u64, key: &Key) -> Option<u32> {
        let queues = &self.queues;
        self.index
            .find(hash, |&v| queues[v as usize].key == *key)
            .copied()
    }

    fn push_pending(&mut self, e: Expired) {
        if self.pending.len() >= PENDING_CAP {
            self.pending.pop_front();
            self.stats.expired_events_lost += 1;
        }
        self.pending.push_back(e);
    }

    /// `ip_defrag` + `ip_find`.
    fn ip_defrag(
        &mut self,
        h: &Hdr,
        ip: &[u8],
        user: u32,
        iif: u32,
        now: u64,
    ) -> Result<Step, DropReason> {
        let key = Key {
            src: h.src,
            dst: h.dst,
            user,
            id: h.id,
            proto: h.proto,
        };
        let hash = self.hash_key(&key);
        let mut found = self.lookup(hash, &key);
        if let Some(q) = found {
            if now >= self.queues[q as usize].deadline {
                // Its timer would have fired already.
                if let Some(e) = self.expire_queue(q) {
                    self.push_pending(e);
                }
                found = None;
            }
        }
        if self.over_limit() && self.cfg.high_thresh != 0 {
            // Queues past their deadline would be gone in the kernel: free them first.
            let mut n = 0;
            while n < PRESSURE_EXPIRE && self.over_limit() {
                let q = self.fifo_head;
                if q == NIL || now < self.queues[q as usize].deadline {
                    break;
                }
                if let Some(e) = self.expire_queue(q) {
                    self.push_pending(e);
                }
                n += 1;
            }
        }
        // inet_frag_find
        if self.over_limit() {
            self.stats.mem_limit += 1;
            self.stats.reasm_fails += 1;
            return Err(DropReason::MemLimit);
        }
        let q = match found {
            Some(q) => q,
            None => match self.create_queue(key, hash, now) {
                Some(q) => q,
                None => {
                    self.stats.no_buffer += 1;
                    self.stats.reasm_fails += 1;
                    return Err(DropReason::NoBuffer);
                }
            },
        };
        self.frag_queue(q, h, ip, iif, now)
    }

    /// `inet_frag_create` + `ip4_frag_init`.
    fn create_queue(&mut self, key: Key, hash: u64, now: u64) -> Option<u32> {
        let q = self.free_queue;
        if q == NIL {
            return None;
        }
        self.free_queue = self.queues[q as usize].next;
        let peer = if self.cfg.max_dist != 0 {
            self.peer_get(key.src)
        } else {
            NIL
        };
        let mut qu = QUEUE_FREE;
        qu.key = key;
        qu.hash = hash;
        qu.deadline = now.saturating_add(self.cfg.timeout_ms);
        qu.peer = peer;
        qu.live = true;
        self.queues[q as usize] = qu;
        self.mem += u64::from(self.cfg.queue_overhead);
        self.fifo_push(q);
        let queues = &self.queues;
        self.index
            .insert_unique(hash, q, |&v| queues[v as usize].hash);
        self.live += 1;
        self.stats.queues_created += 1;
        Some(q)
    }

    /// `inet_frag_kill` + `inet_frag_destroy`: unhooks the queue and frees its fragments.
    fn free_queue(&mut self, q: u32) {
        let qi = q as usize;
        if !self.queues[qi].live {
            return;
        }
        let freed = {
            let qu = &mut self.queues[qi];
            self.store.flush(&mut qu.runs)
        };
        self.mem = self
            .mem
            .saturating_sub(freed + u64::from(self.cfg.queue_overhead));
        let hash = self.queues[qi].hash;
        if let Ok(e) = self.index.find_entry(hash, |&v| v == q) {
            e.remove();
        }
        self.fifo_unlink(q);
        let peer = self.queues[qi].peer;
        if peer != NIL {
            self.peer_put(peer);
        }
        let mut qu = QUEUE_FREE;
        qu.next = self.free_queue;
        self.queues[qi] = qu;
        self.free_queue = q;
        self.live -= 1;
        self.stats.queues_freed += 1;
    }

    /// `ip_expire` up to the ICMP decision: counts, builds the event, frees the queue.
    fn expire_queue(&mut self, q: u32) -> Option<Expired> {
        self.stats.reasm_fails += 1;
        self.stats.reasm_timeout += 1;
        let qu = &self.queues[q as usize];
        let first = qu.runs.first();
        let ev = if qu.flags & FIRST_IN != 0 && first != NIL && qu.hdr_len >= 20 {
            let mut e = Expired {
                key: qu.key.public(),
                iif: qu.iif,
                icmp: if user::skips_expire_icmp(qu.key.user) {
                    IcmpOnExpire::IfLocalRoute
                } else {
                    IcmpOnExpire::IfRouted
                },
                quote: [0; EXPIRED_QUOTE],
                quote_len: 0,
            };
            let hl = usize::from(qu.hdr_len);
            e.quote[..hl].copy_from_slice(&qu.hdr[..hl]);
            let flen = (self.store.frag(first).len as usize).min(EXPIRED_QUOTE - hl);
            self.store.copy_data(first, &mut e.quote[hl..hl + flen]);
            e.quote_len = (hl + flen) as u16;
            Some(e)
        } else {
            None
        };
        self.free_queue(q);
        ev
    }

    fn fifo_push(&mut self, q: u32) {
        let t = self.fifo_tail;
        self.queues[q as usize].prev = t;
        self.queues[q as usize].next = NIL;
        if t == NIL {
            self.fifo_head = q;
        } else {
            self.queues[t as usize].next = q;
        }
        self.fifo_tail = q;
    }

    fn fifo_unlink(&mut self, q: u32) {
        let (p, n) = {
            let qu = &self.queues[q as usize];
            (qu.prev, qu.next)
        };
        if p == NIL {
            self.fifo_head = n;
        } else {
            self.queues[p as usize].next = n;
        }
        if n == NIL {
            self.fifo_tail = p;
        } else {
            self.queues[n as usize].prev = p;
        }
        self.queues[q as usize].prev = NIL;
        self.queues[q as usize].next = NIL;
    }

    /// `inet_getpeer_v4` (with a reference).
    fn peer_get(&mut self, saddr: u32) -> u32 {
        let hash = self.hash_peer(saddr);
        let found = {
            let peers = &self.peers;
            self.peer_index
                .find(hash, |&v| peers[v as usize].saddr == saddr)
                .copied()
        };
        if let Some(p) = found {
            self.peers[p as usize].refs += 1;
            return p;
        }
        let p = self.free_peer;
        if p == NIL {
            return NIL;
        }
        self.free_peer = self.peers[p as usize].next_free;
        self.peers[p as usize] = Peer {
            saddr,
            hash,
            rid: 0,
            refs: 1,
            next_free: NIL,
        };
        let peers = &self.peers;
        self.peer_index
            .insert_unique(hash, p, |&v| peers[v as usize].hash);
        p
    }

    /// `inet_putpeer`.
    fn peer_put(&mut self, p: u32) {
        let pi = p as usize;
        if self.peers[pi].refs > 1 {
            self.peers[pi].refs -= 1;
            return;
        }
        let hash = self.peers[pi].hash;
        if let Ok(e) = self.peer_index.find_entry(hash, |&v| v == p) {
            e.remove();
        }
        self.peers[pi] = PEER_FREE;
        self.peers[pi].next_free = self.free_peer;
        self.free_peer = p;
    }

    /// `ip_frag_reinit`: the queue's timer is pending (it is not past its deadline), so the
    /// fragments are flushed and the state reset; `max_size`/`max_df_size` are kept.
    fn reinit(&mut self, q: u32, now: u64) {
        let freed = {
            let qu = &mut self.queues[q as usize];
            let freed = self.store.flush(&mut qu.runs);
            qu.flags = 0;
            qu.len = 0;
            qu.meat = 0;
            qu.iif = 0;
            qu.ecn = 0;
            qu.hdr_len = 0;
            qu.deadline = now.saturating_add(self.cfg.timeout_ms);
            freed
        };
        self.mem = self.mem.saturating_sub(freed);
        // mod_timer re-arms: the queue moves to the end of the (deadline-ordered) FIFO.
        self.fifo_unlink(q);
        self.fifo_push(q);
    }

    /// `discard_qp`: kills the queue, counts the failure.
    fn discard(&mut self, q: u32, reason: DropReason) -> DropReason {
        self.stats.reasm_fails += 1;
        match reason {
            DropReason::LastMismatch => self.stats.last_mismatch += 1,
            DropReason::BeyondEnd => self.stats.beyond_end += 1,
            DropReason::Empty => self.stats.empty += 1,
            DropReason::NoBuffer => self.stats.no_buffer += 1,
            DropReason::Malformed => self.stats.malformed += 1,
            _ => {}
        }
        self.free_queue(q);
        reason
    }

    /// `ip_frag_queue`.
    fn frag_queue(
        &mut self,
        q: u32,
        h: &Hdr,
        ip: &[u8],
        iif: u32,
        now: u64,
    ) -> Result<Step, DropReason> {
        let qi = q as usize;

        // ip_frag_too_far, then ip_frag_reinit.
        let peer = self.queues[qi].peer;
        if self.cfg.max_dist != 0 && peer != NIL {
            let end = {
                let p = &mut self.peers[peer as usize];
                p.rid = p.rid.wrapping_add(1);
                p.rid
            };
            let start = self.queues[qi].rid;
            self.queues[qi].rid = end;
            if !self.queues[qi].runs.is_empty() && end.wrapping_sub(start) > self.cfg.max_dist {
                self.stats.reasm_fails += 1;
                self.stats.too_far += 1;
                self.reinit(q, now);
            }
        }

        let ecn = 1u8 << (h.tos & 3);
        let offset = u32::from(h.frag_off & IP_OFFSET) << 3;
        let mf = h.frag_off & IP_MF != 0;
        let ihl = h.ihl;
        let mut end = offset + (h.tot_len - ihl) as u32;

        let verdict = {
            let qu = &mut self.queues[qi];
            if !mf {
                // The final fragment: nothing may lie beyond it, and its end is fixed.
                if end < qu.len || (qu.flags & LAST_IN != 0 && end != qu.len) {
                    Some(DropReason::LastMismatch)
                } else {
                    qu.flags |= LAST_IN;
                    qu.len = end;
                    None
                }
            } else {
                if end & 7 != 0 {
                    end &= !7;
                }
                if end > qu.len {
                    if qu.flags & LAST_IN != 0 {
                        Some(DropReason::BeyondEnd)
                    } else {
                        qu.len = end;
                        None
                    }
                } else {
                    None
                }
            }
        };
        if let Some(r) = verdict {
            return Err(self.discard(q, r));
        }
        if end == offset {
            return Err(self.discard(q, DropReason::Empty));
        }

        let plen = (end - offset) as usize;
        let payload = match ip.get(ihl..ihl + plen) {
            Some(p) => p,
            None => return Err(self.discard(q, DropReason::Malformed)),
        };
        let charge = h.tot_len as u32 + self.cfg.frag_overhead;
        let res = {
            let qu = &mut self.queues[qi];
            self.store.insert(&mut qu.runs, offset, payload, charge)
        };
        match res {
            Ok(()) => {}
            Err(InsertError::Dup) => {
                self.stats.duplicates += 1;
                return Err(DropReason::Duplicate);
            }
            Err(InsertError::Overlap) => {
                self.stats.reasm_overlaps += 1;
                return Err(self.discard(q, DropReason::Overlap));
            }
            Err(InsertError::NoSpace) => return Err(self.discard(q, DropReason::NoBuffer)),
        }
        self.mem += u64::from(charge);

        let complete = {
            let qu = &mut self.queues[qi];
            qu.iif = iif;
            qu.meat += plen as u32;
            qu.ecn |= ecn;
            if offset == 0 {
                qu.flags |= FIRST_IN;
                qu.hdr_len = ihl as u8;
                qu.hdr[..ihl].copy_from_slice(&ip[..ihl]);
            }
            let fragsize = (plen + ihl) as u16;
            if fragsize > qu.max_size {
                qu.max_size = fragsize;
            }
            if h.frag_off & IP_DF != 0 && fragsize > qu.max_df_size {
                qu.max_df_size = fragsize;
            }
            qu.flags == FIRST_IN | LAST_IN && qu.meat == qu.len
        };
        if complete {
            return self.reasm(q);
        }
        Ok(Step::Held)
    }

    /// `ip_frag_reasm`.
    fn reasm(&mut self, q: u32) -> Result<Step, DropReason> {
        let qi = q as usize;
        let (ecn_bits, hlen, qlen, max_size, max_df_size, key) = {
            let qu = &self.queues[qi];
            (
                qu.ecn,
                usize::from(qu.hdr_len),
                qu.len as usize,
                qu.max_size,
                qu.max_df_size,
                qu.key,
            )
        };
        let ecn = IP_FRAG_ECN_TABLE[usize::from(ecn_bits & 15)];
        if ecn == 0xff {
            self.stats.reasm_fails += 1;
            self.stats.bad_ecn += 1;
            self.free_queue(q);
            return Err(DropReason::BadEcn);
        }
        let len = hlen + qlen;
        if len > MAX_DATAGRAM {
            self.stats.reasm_fails += 1;
            self.stats.too_big += 1;
            self.free_queue(q);
            return Err(DropReason::TooBig);
        }
        if hlen < 20 {
            // Cannot happen: FIRST_IN implies the first fragment's header was stored.
            return Err(self.discard(q, DropReason::Malformed));
        }

        self.layout.clear();
        {
            let out = &mut self.out[..len];
            out[..hlen].copy_from_slice(&self.queues[qi].hdr[..hlen]);
            let store = &self.store;
            let layout = &mut self.layout;
            store.in_order(&self.queues[qi].runs, |idx, f| {
                let at = hlen + f.offset as usize;
                if let Some(dst) = out.get_mut(at..at + f.len as usize) {
                    store.copy_data(idx, dst);
                }
                if layout.len() < layout.capacity() {
                    layout.push(f.len as u16);
                }
            });
            put16(out, 2, len as u16);
            out[1] |= ecn;
            let pmtu = max_df_size == max_size;
            put16(out, 6, if pmtu { IP_DF } else { 0 });
            set_checksum(&mut out[..hlen]);
        }
        let meta = FragMeta {
            frag_max_size: max_df_size.max(max_size),
            frag_pmtu: max_df_size == max_size,
            ignore_df: user::is_conntrack(key.user),
        };
        self.stats.reasm_oks += 1;
        self.free_queue(q);
        Ok(Step::Done {
            len,
            meta,
            key: key.public(),
        })
    }

    /// Test support: checks every live queue's structure and the memory accounting.
    #[cfg(test)]
    fn check_invariants(&self) {
        let mut mem = 0u64;
        let mut live = 0u32;
        let mut frags = 0usize;
        let mut q = self.fifo_head;
        let mut prev_deadline = 0u64;
        while q != NIL {
            let qu = &self.queues[q as usize];
            assert!(qu.live);
            assert!(qu.deadline >= prev_deadline, "FIFO not in deadline order");
            prev_deadline = qu.deadline;
            let (n, charge) = self.store.check(&qu.runs);
            assert!(n >= 1, "live queue without fragments");
            frags += n as usize;
            mem += charge + u64::from(self.cfg.queue_overhead);
            assert_eq!(self.lookup(qu.hash, &qu.key), Some(q));
            live += 1;
            q = qu.next;
        }
        assert_eq!(live, self.live);
        assert_eq!(self.index.len(), self.live as usize);
        assert_eq!(mem, self.mem, "memory accounting");
        assert!(self.mem <= self.mem_bound, "memory bound");
        assert_eq!(self.store.frags_free() + frags, self.store.capacity().0);
        if live == 0 {
            assert_eq!(self.store.blocks_free(), self.store.capacity().1);
            assert_eq!(self.peer_index.len(), 0);
        }
    }
}
