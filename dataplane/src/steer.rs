//! Flow steering between workers: the owner of a flow (both directions) and the frames handed
//! to it over SPSC rings.

use classifier::conntrack::tuple::{icmp_reply_type, proto};
use classifier::nat::flow_hash;
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

/// The worker (of `workers`) owning the flow of `h` (parsed from `frame`); the same for both
/// directions, and the same as [`classifier::nat::Owner::owns`] says of the flow's tuples, so
/// that NAT only picks translations whose replies come back to the worker that picked them.
///
/// ICMP queries hash their id (a request and its reply carry the same); an ICMP error hashes
/// the packet it quotes, so it reaches the worker tracking that flow (which relates it and
/// reverses its NAT). Fragments hash the addresses only (no ports in most of them).
pub fn flow_owner(h: &Headers, frame: &[u8], key: u64, workers: usize) -> usize {
    if workers <= 1 {
        return 0;
    }
    let (src, dst, ports, proto) = steering_key(h, frame);
    (flow_hash(src, dst, ports, proto, key) % workers as u64) as usize
}

/// Source, destination, ports and protocol, as the steering hash reads them.
type SteerKey = (u32, u32, Option<(u16, u16)>, u8);

/// What the steering hash reads of a packet: addresses, ports (see [`flow_owner`]), protocol.
fn steering_key(h: &Headers, frame: &[u8]) -> SteerKey {
    let fragment = h.frag_off != 0 || h.more_frags;
    if fragment {
        return (h.src, h.dst, None, h.proto);
    }
    match h.proto {
        proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => {
            return (h.src, h.dst, h.ports(), h.proto)
        }
        proto::ICMP => {}
        _ => return (h.src, h.dst, None, h.proto),
    }
    let l4 = usize::from(h.l3_offset) + usize::from(h.ihl_bytes);
    let Some(icmp) = frame.get(l4..) else {
        return (h.src, h.dst, None, h.proto);
    };
    match icmp.first().copied() {
        Some(t) if icmp_reply_type(t).is_some() => (h.src, h.dst, query_id(icmp), h.proto),
        Some(3 | 4 | 5 | 11 | 12) => {
            quoted_key(icmp.get(8..).unwrap_or(&[])).unwrap_or((h.src, h.dst, None, h.proto))
        }
        _ => (h.src, h.dst, None, h.proto),
    }
}

/// An ICMP query's id, twice.
fn query_id(icmp: &[u8]) -> Option<(u16, u16)> {
    let id = icmp.get(4..6).map(|b| u16::from_be_bytes([b[0], b[1]]))?;
    Some((id, id))
}

/// The steering key of the IPv4 packet an ICMP error quotes (None when too short to tell).
fn quoted_key(ip: &[u8]) -> Option<SteerKey> {
    let hdr = ip.get(..20)?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    let word = |at: usize| u32::from_be_bytes([hdr[at], hdr[at + 1], hdr[at + 2], hdr[at + 3]]);
    let (src, dst, p) = (word(12), word(16), hdr[9]);
    let first = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x1fff == 0;
    let l4 = ip.get(ihl.max(20)..).filter(|_| first).unwrap_or(&[]);
    let ports = match p {
        proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => l4.get(..4).map(|b| {
            (
                u16::from_be_bytes([b[0], b[1]]),
                u16::from_be_bytes([b[2], b[3]]),
            )
        }),
        proto::ICMP => match l4.first() {
            Some(&t) if icmp_reply_type(t).is_some() => query_id(l4),
            _ => None,
        },
        _ => None,
    };
    Some((src, dst, ports, p))
}
