//! Flow steering between workers: the owner of a flow (both directions) and the frames handed
//! to it over SPSC rings.

use classifier::packet::Headers;

/// The largest frame a worker can receive: the largest UMEM frame size the configuration
/// accepts (`frame_size = 4096`).
pub const MAX_FRAME: usize = 4096;

/// A frame on its way to the worker that owns its flow.
#[derive(Clone)]
pub struct Handoff {
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
}

impl Steering {
    /// A single worker: nothing to steer.
    pub fn single() -> Steering {
        Steering {
            worker: 0,
            workers: 1,
            key: 0,
            out: Vec::new(),
        }
    }
}

/// The worker (of `workers`) owning the flow of `h`; the same for both directions.
pub fn flow_owner(h: &Headers, key: u64, workers: usize) -> usize {
    let (a, b) = (h.src.min(h.dst), h.src.max(h.dst));
    let fragment = h.frag_off != 0 || h.more_frags;
    let ports = match h.ports() {
        Some((s, d)) if !fragment => {
            let (x, y) = (s.min(d), s.max(d));
            u64::from(x) << 16 | u64::from(y)
        }
        _ => 0,
    };
    let mut x = (u64::from(a) << 32 | u64::from(b)) ^ key;
    x = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= ports << 8 | u64::from(h.proto);
    x = (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 32;
    (x % workers.max(1) as u64) as usize
}
