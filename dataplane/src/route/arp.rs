//! ARP for IPv4 over Ethernet (RFC 826): a bounds-checked view of a received message and the
//! builder of the requests and replies the neighbour layer sends, laid out as Linux's
//! `arp_create` lays them out (42 bytes; drivers pad on the wire).

/// `ARPOP_REQUEST` / `ARPOP_REPLY`.
pub const REQUEST: u16 = 1;
pub const REPLY: u16 = 2;

/// Length of an Ethernet ARP frame for IPv4, without padding.
pub const FRAME_LEN: usize = 42;

/// An Ethernet/IPv4 ARP message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arp {
    pub op: u16,
    pub sender_mac: [u8; 6],
    pub sender_ip: u32,
    pub target_mac: [u8; 6],
    pub target_ip: u32,
}

impl Arp {
    /// Parses the ARP message of an untagged Ethernet frame; None unless it is Ethernet
    /// hardware, IPv4 protocol, with the lengths those imply.
    pub fn parse(frame: &[u8]) -> Option<Arp> {
        let b = frame.get(14..FRAME_LEN)?;
        if frame.get(12..14)? != [0x08, 0x06] || b[0..6] != [0, 1, 0x08, 0x00, 6, 4] {
            return None;
        }
        let mac = |at: usize| -> [u8; 6] { b[at..at + 6].try_into().unwrap_or([0; 6]) };
        let ip = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Some(Arp {
            op: u16::from_be_bytes([b[6], b[7]]),
            sender_mac: mac(8),
            sender_ip: ip(14),
            target_mac: mac(18),
            target_ip: ip(24),
        })
    }

    /// Writes this message in an Ethernet frame to `eth_dst` from `eth_src` into `out`
    /// (at least [`FRAME_LEN`] bytes); returns the length.
    pub fn emit(&self, eth_dst: [u8; 6], eth_src: [u8; 6], out: &mut [u8]) -> Option<usize> {
        let f = out.get_mut(..FRAME_LEN)?;
        f[0..6].copy_from_slice(&eth_dst);
        f[6..12].copy_from_slice(&eth_src);
        f[12..14].copy_from_slice(&[0x08, 0x06]);
        f[14..20].copy_from_slice(&[0, 1, 0x08, 0x00, 6, 4]);
        f[20..22].copy_from_slice(&self.op.to_be_bytes());
        f[22..28].copy_from_slice(&self.sender_mac);
        f[28..32].copy_from_slice(&self.sender_ip.to_be_bytes());
        f[32..38].copy_from_slice(&self.target_mac);
        f[38..42].copy_from_slice(&self.target_ip.to_be_bytes());
        Some(FRAME_LEN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_parse() {
        let a = Arp {
            op: REQUEST,
            sender_mac: [2, 0, 0, 0, 0, 1],
            sender_ip: 0x0aff_0101,
            target_mac: [0; 6],
            target_ip: 0x0aff_0102,
        };
        let mut buf = [0u8; 64];
        let n = a.emit([0xff; 6], [2, 0, 0, 0, 0, 1], &mut buf).unwrap();
        assert_eq!(n, FRAME_LEN);
        assert_eq!(Arp::parse(&buf[..n]), Some(a));
        assert_eq!(Arp::parse(&buf[..41]), None);
        buf[19] = 16; // an IPv6-sized protocol address
        assert_eq!(Arp::parse(&buf[..n]), None);
    }
}
