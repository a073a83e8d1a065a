//! The tftp helper: `tftp_help()` of `nf_conntrack_tftp.c` (Linux 6.12), IPv4 only.
//!
//! Any packet of the connection (either direction, any ctinfo, the very first one included)
//! whose UDP payload starts with opcode 1 (RRQ) or 2 (WRQ) expects the server's answer: the
//! reply tuple with its source port wildcarded (the server answers from a port of its own), over
//! UDP. Other opcodes (DATA, ACK, ERROR, anything) and payloads shorter than the 2-byte opcode are
//! accepted as they are. The helper keeps no state.
//!
//! The first request is seen while its connection is still unconfirmed: the expectation is
//! registered then, but matches nothing until the master is confirmed (`nf_ct_find_expectation`),
//! and goes with the master if that is dropped. There is no NAT (`nf_nat_tftp`).

use super::{Expectation, HelperKind, NF_CT_EXPECT_CLASS_DEFAULT};
use crate::conntrack::table::Dir;
use crate::conntrack::tuple::{proto, Tuple};

/// `sizeof(struct udphdr)`.
pub const UDP_HDR_LEN: usize = 8;

/// `TFTP_OPCODE_*`.
pub const TFTP_OPCODE_READ: u16 = 1;
pub const TFTP_OPCODE_WRITE: u16 = 2;
pub const TFTP_OPCODE_DATA: u16 = 3;
pub const TFTP_OPCODE_ACK: u16 = 4;
pub const TFTP_OPCODE_ERROR: u16 = 5;

/// What `tftp_help()` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TftpVerdict {
    /// `NF_ACCEPT`, nothing to expect.
    Accept,
    /// Register the expectation (`nf_ct_expect_related`): `NF_ACCEPT` if that works, `NF_DROP`
    /// ("cannot add expectation") if not.
    Expect(Expectation),
}

/// The opcode (`struct tftphdr`, big-endian) after the UDP header, if the datagram holds one
/// (`skb_header_pointer(skb, protoff + sizeof(struct udphdr), sizeof(_tftph))`).
pub fn opcode(udp: &[u8]) -> Option<u16> {
    let b = udp.get(UDP_HDR_LEN..UDP_HDR_LEN + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

/// `tftp_help()`: one packet of a connection with the tftp helper. `tuples` are the
/// connection's original and reply tuples, `dir` the packet's direction (only recorded in the
/// expectation), `udp` the UDP header and payload up to the IPv4 total length.
pub fn help(tuples: &[Tuple; 2], dir: Dir, udp: &[u8]) -> TftpVerdict {
    match opcode(udp) {
        Some(TFTP_OPCODE_READ | TFTP_OPCODE_WRITE) => {
            // RRQ and WRQ work the same way: expect the reply tuple, from any source port.
            let r = &tuples[Dir::Reply.index()];
            TftpVerdict::Expect(Expectation {
                helper: HelperKind::Tftp,
                class: NF_CT_EXPECT_CLASS_DEFAULT,
                flags: 0,
                proto: proto::UDP,
                src: Some(r.src),
                sport: None,
                dst: r.dst,
                dport: r.dport,
                announced_in: dir,
                nat: None,
            })
        }
        // DATA, ACK, ERROR, unknown opcodes, no opcode.
        _ => TftpVerdict::Accept,
    }
}
