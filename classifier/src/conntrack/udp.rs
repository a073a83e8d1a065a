//! UDP and UDP-Lite (`nf_conntrack_proto_udp.c`): 30 s until a reply was seen; a connection that
//! has seen a reply and is still active two seconds after it was made is a stream: 120 s and
//! ASSURED. Short, truncated and (arriving, with `checksum` on) badly checksummed datagrams are
//! INVALID; UDP-Lite also needs a checksum and a sane coverage.

use super::conn::{status, Conn, ProtoState};
use super::track::{L4Verdict, Pkt};
use super::{l4_checksum_ok, CtConfig};

/// Two seconds (`2 * HZ`): how long a replied flow must live before it counts as a stream.
const STREAM_AFTER_MS: u32 = 2000;

/// `udp_error`: whether the datagram is malformed for the tracker.
fn udp_error(p: &Pkt<'_>, cfg: &CtConfig) -> bool {
    let l4 = p.l4;
    if l4.len() < 8 {
        return true;
    }
    let len = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
    if len > l4.len() || len < 8 {
        return true;
    }
    let check = u16::from_be_bytes([l4[6], l4[7]]);
    if check == 0 {
        return false;
    }
    p.arriving && cfg.checksum && !l4_checksum_ok(p.h, l4, l4.len())
}

/// `udplite_error`.
fn udplite_error(p: &Pkt<'_>, cfg: &CtConfig) -> bool {
    let l4 = p.l4;
    if l4.len() < 8 {
        return true;
    }
    let mut cscov = usize::from(u16::from_be_bytes([l4[4], l4[5]]));
    if cscov == 0 {
        cscov = l4.len();
    } else if cscov < 8 || cscov > l4.len() {
        return true;
    }
    if u16::from_be_bytes([l4[6], l4[7]]) == 0 {
        return true;
    }
    p.arriving && cfg.checksum && !l4_checksum_ok(p.h, l4, cscov)
}

/// `nf_conntrack_udp_packet` / `nf_conntrack_udplite_packet`.
pub fn packet(c: &mut Conn, p: &Pkt<'_>, cfg: &CtConfig, now: u32, lite: bool) -> L4Verdict {
    let bad = if lite {
        udplite_error(p, cfg)
    } else {
        udp_error(p, cfg)
    };
    if bad {
        return L4Verdict::Invalid;
    }
    let confirmed = c.status & status::CONFIRMED != 0;
    let ProtoState::Udp { stream_ts } = &mut c.proto else {
        return L4Verdict::Invalid;
    };
    if !confirmed {
        *stream_ts = now.wrapping_add(STREAM_AFTER_MS);
    }
    if c.status & status::SEEN_REPLY == 0 {
        return L4Verdict::Accept(Some(cfg.timeouts.udp));
    }
    // time_after(jiffies, stream_ts): strictly later.
    if now.wrapping_sub(*stream_ts) as i32 > 0 {
        c.status |= status::ASSURED;
        L4Verdict::Accept(Some(cfg.timeouts.udp_stream))
    } else {
        L4Verdict::Accept(Some(cfg.timeouts.udp))
    }
}
