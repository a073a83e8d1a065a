//! Connection tuples: a connection's identity in one direction, as `nf_conntrack_tuple` holds it
//! for IPv4 (`nf_ct_get_tuple` and the protocols' `pkt_to_tuple` / `invert_tuple`).
//!
//! | protocol | `sport` | `dport` |
//! |---|---|---|
//! | TCP, UDP, UDP-Lite, SCTP | source port | destination port |
//! | ICMP queries | the query id | `type << 8 \| code` |
//! | GRE version 1 (PPTP) | 0 (no PPTP helper keymap) | the call id |
//! | GRE version 0, anything else | 0 | 0 |
//!
//! DCCP has no tracker of its own since Linux 6.16 (this kernel builds none): it is generic.

/// IP protocol numbers the tracker knows by name.
pub mod proto {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
    pub const SCTP: u8 = 132;
    pub const UDPLITE: u8 = 136;
}

/// One direction of a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Tuple {
    pub src: u32,
    pub dst: u32,
    /// Source port; for ICMP the query id.
    pub sport: u16,
    /// Destination port; for ICMP `type << 8 | code`.
    pub dport: u16,
    pub proto: u8,
}

impl Tuple {
    /// The tuple a reply to a packet with this tuple carries (`nf_ct_invert_tuple`), when the
    /// protocol has one: ICMP messages that are not queries have none.
    pub fn invert(&self) -> Option<Tuple> {
        let (sport, dport) = match self.proto {
            proto::ICMP => {
                let reply = icmp_reply_type((self.dport >> 8) as u8)?;
                (self.sport, u16::from(reply) << 8 | (self.dport & 0xff))
            }
            _ => (self.dport, self.sport),
        };
        Some(Tuple {
            src: self.dst,
            dst: self.src,
            sport,
            dport,
            proto: self.proto,
        })
    }

    /// Whether the protocol carries ports in the tuple.
    pub fn has_ports(&self) -> bool {
        matches!(
            self.proto,
            proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP
        )
    }

    /// ICMP type (for ICMP tuples).
    pub fn icmp_type(&self) -> u8 {
        (self.dport >> 8) as u8
    }

    /// ICMP code (for ICMP tuples).
    pub fn icmp_code(&self) -> u8 {
        self.dport as u8
    }

    /// The two words the table hashes.
    #[inline]
    pub(crate) fn words(&self) -> (u64, u64) {
        (
            u64::from(self.src) << 32 | u64::from(self.dst),
            u64::from(self.sport) << 24 | u64::from(self.dport) << 8 | u64::from(self.proto),
        )
    }
}

/// ICMP query types and the type of their reply (`invmap` of `nf_conntrack_proto_icmp.c`):
/// echo, timestamp, information and address mask requests and replies.
pub fn icmp_reply_type(t: u8) -> Option<u8> {
    match t {
        8 => Some(0),
        0 => Some(8),
        13 => Some(14),
        14 => Some(13),
        15 => Some(16),
        16 => Some(15),
        17 => Some(18),
        18 => Some(17),
        _ => None,
    }
}

/// ICMP types that may start a connection (`valid_new`): the requests.
pub fn icmp_is_request(t: u8) -> bool {
    matches!(t, 8 | 13 | 15 | 17)
}

/// ICMP error types whose payload quotes the offending datagram (`icmp_error_message`).
pub fn icmp_is_error(t: u8) -> bool {
    matches!(t, 3 | 4 | 5 | 11 | 12)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_swap_and_icmp_types_map_to_their_reply() {
        let t = Tuple {
            src: 1,
            dst: 2,
            sport: 1000,
            dport: 80,
            proto: proto::TCP,
        };
        let r = t.invert().unwrap();
        assert_eq!((r.src, r.dst, r.sport, r.dport), (2, 1, 80, 1000));
        assert_eq!(r.invert(), Some(t));
        let echo = Tuple {
            src: 1,
            dst: 2,
            sport: 77,
            dport: 8 << 8,
            proto: proto::ICMP,
        };
        let reply = echo.invert().unwrap();
        assert_eq!(
            (reply.sport, reply.icmp_type(), reply.icmp_code()),
            (77, 0, 0)
        );
        let unreach = Tuple {
            dport: 3 << 8 | 3,
            ..echo
        };
        assert_eq!(unreach.invert(), None);
        let gre = Tuple {
            sport: 0,
            dport: 0,
            proto: proto::GRE,
            ..echo
        };
        assert_eq!(gre.invert().unwrap().src, 2);
    }
}
