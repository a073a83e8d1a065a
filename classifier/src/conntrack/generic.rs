//! The generic tracker (`nf_conntrack_proto_generic.c`: addresses and protocol only, 600 s) and
//! GRE (`nf_conntrack_proto_gre.c` without the PPTP helper: 30 s, 180 s and ASSURED once both
//! directions were seen).

use super::conn::{status, Conn};
use super::track::L4Verdict;
use super::tuple::Tuple;
use super::CtConfig;

const GRE_VERSION_MASK: u8 = 0x07;
const GRE_VERSION_1: u8 = 0x01;
const GRE_PROTO_PPP: u16 = 0x880b;

/// `gre_pkt_to_tuple`: version 0 (and anything too short to tell) is keyed like generic; a
/// version 1 (enhanced, PPTP) header carries the call id as the destination key and must carry
/// PPP.
pub(crate) fn gre_tuple(t: &mut Tuple, l4: &[u8]) -> Option<()> {
    t.sport = 0;
    t.dport = 0;
    if l4.len() < 4 || l4[1] & GRE_VERSION_MASK != GRE_VERSION_1 {
        return Some(());
    }
    if l4.len() < 8 {
        return Some(());
    }
    if u16::from_be_bytes([l4[2], l4[3]]) != GRE_PROTO_PPP {
        return None;
    }
    t.dport = u16::from_be_bytes([l4[6], l4[7]]);
    Some(())
}

/// `nf_conntrack_gre_packet`.
pub fn gre_packet(c: &mut Conn, cfg: &CtConfig) -> L4Verdict {
    if c.status & status::SEEN_REPLY != 0 {
        c.status |= status::ASSURED;
        L4Verdict::Accept(Some(cfg.timeouts.gre_stream))
    } else {
        L4Verdict::Accept(Some(cfg.timeouts.gre))
    }
}
