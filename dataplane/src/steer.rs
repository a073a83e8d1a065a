//! Flow steering between workers: the owner of a flow (both directions) and the frames handed
//! to it over SPSC rings.

use classifier::conntrack::icmp::quoted_tuple;
use classifier::conntrack::track::packet_tuple;
use classifier::conntrack::tuple::{icmp_is_error, proto, Tuple};
use classifier::nat::tuple_hash;
use classifier::packet::Headers;

/// The largest frame a worker can receive: the largest UMEM frame size the configuration
/// accepts (`frame_size = 4096`).
pub const MAX_FRAME: usize = 4096;

/// [`Handoff::port`]'s bit for a frame the host sent out of that port's TAP twin (the owner
/// runs it through OUTPUT, not PREROUTING).
pub const FROM_TWIN: u8 = 0x80;

/// A frame on its way to the worker that owns its flow.
#[derive(Clone)]
pub struct Handoff {
    /// The port it arrived on (with [`FROM_TWIN`]: the twin it came out of).
    pub port: u8,
    pub len: u16,
    pub data: [u8; MAX_FRAME],
}

/// Flow steering: every flow (both directions) belongs to one worker, chosen by a symmetric,
/// randomly keyed hash of its addresses, protocol and ports. Frames a worker receives for
/// another worker's flow are copied to that worker over an SPSC ring (NIC RSS is not symmetric,
/// and on veth queues follow the sender's CPU). Connection tracking will rely on it: a flow's
/// state lives in its owner's table, touched by one core only.
pub struct Steering {
    pub worker: usize,
    pub workers: usize,
    /// Shared by all workers (the same flow must hash the same everywhere).
    pub key: u64,
    /// `out[w]`: the ring to worker `w` (None for this worker).
    pub out: Vec<Option<rtrb::Producer<Handoff>>>,
    /// `claims_out[w]`: claims and releases to worker `w` (None for this worker).
    pub claims_out: Vec<Option<rtrb::Producer<Claim>>>,
    /// Claims and releases from the other workers.
    pub claims_in: Vec<rtrb::Consumer<Claim>>,
}

impl Steering {
    /// A single worker: nothing to steer.
    pub fn single() -> Steering {
        Steering {
            worker: 0,
            workers: 1,
            key: 0,
            out: Vec::new(),
            claims_out: Vec::new(),
            claims_in: Vec::new(),
        }
    }
}

/// A flow's identity regardless of direction: both (address, port) ends in order, and the
/// protocol (an ICMP query's id as both ports, as [`tuple_hash`] reads it).
pub type ClaimKey = (u32, u16, u32, u16, u8);

/// The direction-free key of tuple `t`.
pub fn claim_key(t: &Tuple) -> ClaimKey {
    let (sp, dp) = classifier::nat::tuple_ports(t).unwrap_or((0, 0));
    let (a, b) = ((t.src, sp), (t.dst, dp));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (lo.0, lo.1, hi.0, hi.1, t.proto)
}

/// "Steer the flow `key` to worker `owner`" (a connection whose destination manip made its
/// reply hash to another worker), or its withdrawal when the connection is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub key: ClaimKey,
    pub owner: u8,
    pub release: bool,
}

/// The claims a worker holds from the others, bounded (a claim beyond the bound is refused and
/// counted; its connection's replies then take the hash's worker).
pub struct Claims {
    map: hashbrown::HashMap<ClaimKey, u8, foldhash::fast::FixedState>,
    bound: usize,
}

impl Claims {
    /// Room for `bound` claims, allocated now, hashed under `seed`.
    pub fn new(bound: usize, seed: u64) -> Claims {
        Claims {
            map: hashbrown::HashMap::with_capacity_and_hasher(
                bound,
                foldhash::fast::FixedState::with_seed(seed),
            ),
            bound,
        }
    }

    /// Applies `c`; false when a claim was refused for room.
    pub fn apply(&mut self, c: &Claim) -> bool {
        if c.release {
            if self.map.get(&c.key) == Some(&c.owner) {
                self.map.remove(&c.key);
            }
            return true;
        }
        if self.map.len() >= self.bound && !self.map.contains_key(&c.key) {
            return false;
        }
        self.map.insert(c.key, c.owner);
        true
    }

    /// The worker that claimed the flow of tuple `t`.
    #[inline]
    pub fn owner(&self, t: &Tuple) -> Option<usize> {
        if self.map.is_empty() {
            return None;
        }
        self.map.get(&claim_key(t)).map(|&w| usize::from(w))
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The worker (of `workers`) owning the flow of `h` (parsed from `frame`); the same for both
/// directions, and the same as [`classifier::nat::Owner::owns`] says of the flow's tuples (both
/// hash the connection tracking tuple through [`tuple_hash`]), so that NAT only picks
/// translations whose replies come back to the worker that picked them.
///
/// ICMP queries hash their id (a request and its reply carry the same); an ICMP error hashes
/// the tuple of the packet it quotes, so it reaches the worker tracking that flow (which
/// relates it and reverses its NAT). Fragments hash the addresses only (no ports in most of
/// them).
pub fn flow_owner(h: &Headers, frame: &[u8], key: u64, workers: usize) -> usize {
    flow_owner_claimed(h, frame, key, workers, None)
}

/// [`flow_owner`], unless `claims` holds a claim on the flow: then the claiming worker.
#[inline]
pub fn flow_owner_claimed(
    h: &Headers,
    frame: &[u8],
    key: u64,
    workers: usize,
    claims: Option<&Claims>,
) -> usize {
    if workers <= 1 {
        return 0;
    }
    let t = steering_tuple(h, frame);
    if let Some(w) = claims.and_then(|c| c.owner(&t)) {
        return w;
    }
    (tuple_hash(&t, key) % workers as u64) as usize
}

/// The tuple a packet is steered by: the tracker's (`packet_tuple`), an ICMP error's quoted
/// one (`quoted_tuple`), or the addresses alone for fragments and short headers.
fn steering_tuple(h: &Headers, frame: &[u8]) -> Tuple {
    let bare = Tuple {
        src: h.src,
        dst: h.dst,
        sport: 0,
        dport: 0,
        proto: h.proto,
    };
    if h.frag_off != 0 || h.more_frags {
        return bare;
    }
    let l3 = usize::from(h.l3_offset);
    let end = (l3 + usize::from(h.ip_len)).min(frame.len());
    let l4 = frame.get(l3 + usize::from(h.ihl_bytes)..end).unwrap_or(&[]);
    match packet_tuple(h, l4) {
        Some(t) if t.proto == proto::ICMP && icmp_is_error(t.icmp_type()) => {
            l4.get(8..).and_then(quoted_tuple).unwrap_or(bare)
        }
        Some(t) => t,
        None => bare,
    }
}
