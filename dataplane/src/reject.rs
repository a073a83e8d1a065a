//! `-j REJECT` replies, built byte for byte the way Linux builds them (see `dataplane/NOTES.md`
//! §6 for the specification and its sources).
//!
//! [`build_reject`] takes the offending Ethernet frame as received and writes the whole reply
//! frame (the dataplane sends it back out of the ingress port), or says why no reply is due
//! ([`NoReply`], one counter each):
//!
//! * ICMP errors follow `nf_send_unreach` (`net/ipv4/netfilter/nf_reject_ipv4.c`) and
//!   `__icmp_send` (`net/ipv4/icmp.c`): no reply to a non-first fragment, to a packet whose
//!   transport checksum does not verify (`nf_reject_verify_csum`, `nf_ip_checksum`), to a
//!   link-layer broadcast or multicast frame (`pkt_type != PACKET_HOST`), to a broadcast or
//!   multicast destination (`RTCF_BROADCAST | RTCF_MULTICAST`), or to an ICMP error. The reply
//!   quotes the original datagram from its IP header, up to 576 − 20 − 8 = 548 bytes.
//! * TCP resets follow `nf_send_reset` with `nf_reject_ip_tcphdr_get`, `nf_reject_iphdr_put` and
//!   `nf_reject_ip_tcphdr_put`.
//! * [`IcmpRateLimit`] emulates `icmp_global_allow` / `icmp_global_consume` and
//!   `icmpv4_xrlim_allow` / `inet_peer_xrlim_allow`; the caller asks it after `build_reject`
//!   succeeded for an ICMP error (never for a reset: the kernel does not rate-limit resets).
//!
//! Documented differences from the kernel: the ICMP error carries no IP options (the kernel
//! echoes the original's with `ip_options_echo`); its IP ID is the caller's `ip_id` (the kernel's
//! `ip_select_ident` is a hashed per-destination counter nobody can reproduce); the TCP checksum of
//! a reset is always complete (the kernel leaves it to checksum offload); a subnet broadcast
//! destination is not recognised (the dataplane has no routing table); replies are not padded to
//! the 60-byte Ethernet minimum (the NIC pads); a group-addressed frame gets no reset either (the
//! kernel checks the link layer for ICMP errors only, and answers a reset from its own MAC where
//! pollwall would have to use the group address).
//!
//! Every read is bounds-checked (the classifier's wire views or `get`), so no input can panic.

use classifier::wire::{checksum, ethernet, icmp, ipv4, tcp, vlan, EtherType, IpProtocol};
use classifier::RejectWith;
use core::fmt;
use std::net::Ipv4Addr;

mod ratelimit;
#[cfg(test)]
mod tests;

pub use ratelimit::IcmpRateLimit;

/// Most bytes of the original datagram an ICMP error quotes: 576 − 20 (IP) − 8 (ICMP).
pub const MAX_QUOTE_LEN: usize = icmp::MAX_QUOTE_LEN;

/// Longest reply [`build_reject`] writes: Ethernet, two VLAN tags, IP, ICMP, a full quote.
pub const MAX_REPLY_LEN: usize = ethernet::HEADER_LEN
    + 2 * vlan::HEADER_LEN
    + ipv4::HEADER_LEN
    + icmp::HEADER_LEN
    + MAX_QUOTE_LEN;

/// TTL of every reply (`net.ipv4.ip_default_ttl`, the route's hop limit by default).
pub const REPLY_TTL: u8 = 64;

/// `IPTOS_TOS_MASK`: the bits of the original TOS an ICMP error keeps.
const TOS_MASK: u8 = 0x1e;
/// `IPTOS_PREC_INTERNETCONTROL`: the precedence every ICMP error gets.
const PREC_INTERNETCONTROL: u8 = 0xc0;
/// Most VLAN tags read (the same rule as `classifier::wire::parse_ethernet`).
const MAX_TAGS: usize = 2;

/// Why [`build_reject`] produced no reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NoReply {
    /// The frame is shorter than its Ethernet, VLAN or IPv4 headers or than the IP total length.
    Truncated,
    /// Not IPv4 (ethertype after the tags, or the version field).
    NotIpv4,
    /// IHL below 5 or total length below the header length.
    Malformed,
    /// A source or destination the kernel's routing drops before the tables
    /// (`ip_route_input_slow`: 0.0.0.0/8, 127.0.0.0/8, multicast or limited broadcast source;
    /// 0.0.0.0/8 or 127.0.0.0/8 destination).
    Martian,
    /// Fragment offset not zero: only the first fragment gets a reply.
    NotFirstFragment,
    /// The destination MAC has the group bit (link-layer broadcast or multicast).
    LinkBroadcast,
    /// Destination 255.255.255.255 or 224.0.0.0/4.
    DestBroadcastOrMulticast,
    /// The transport checksum does not verify.
    BadChecksum,
    /// The packet is an ICMP error (or an ICMP message whose type cannot be read).
    IcmpError,
    /// `tcp-reset` for a packet that is not TCP.
    NotTcp,
    /// `tcp-reset` for a packet with less than 20 bytes of TCP header.
    TcpTooShort,
    /// `tcp-reset` for a segment that is itself a reset.
    RstSet,
    /// `icmp-echo-reply`: the kernel refuses the rule (`reject_tg_check`), so nothing is sent.
    EchoReplyRefused,
    /// The output buffer cannot hold the reply (never with [`MAX_REPLY_LEN`] bytes).
    OutTooSmall,
}

impl NoReply {
    /// Every reason, in declaration order (for counter tables).
    pub const ALL: [NoReply; 14] = [
        NoReply::Truncated,
        NoReply::NotIpv4,
        NoReply::Malformed,
        NoReply::Martian,
        NoReply::NotFirstFragment,
        NoReply::LinkBroadcast,
        NoReply::DestBroadcastOrMulticast,
        NoReply::BadChecksum,
        NoReply::IcmpError,
        NoReply::NotTcp,
        NoReply::TcpTooShort,
        NoReply::RstSet,
        NoReply::EchoReplyRefused,
        NoReply::OutTooSmall,
    ];

    /// A stable snake_case name for counters.
    pub fn name(self) -> &'static str {
        match self {
            NoReply::Truncated => "truncated",
            NoReply::NotIpv4 => "not_ipv4",
            NoReply::Malformed => "malformed",
            NoReply::Martian => "martian",
            NoReply::NotFirstFragment => "not_first_fragment",
            NoReply::LinkBroadcast => "link_broadcast",
            NoReply::DestBroadcastOrMulticast => "dest_broadcast_or_multicast",
            NoReply::BadChecksum => "bad_checksum",
            NoReply::IcmpError => "icmp_error",
            NoReply::NotTcp => "not_tcp",
            NoReply::TcpTooShort => "tcp_too_short",
            NoReply::RstSet => "rst_set",
            NoReply::EchoReplyRefused => "echo_reply_refused",
            NoReply::OutTooSmall => "out_too_small",
        }
    }
}

impl fmt::Display for NoReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The ICMP destination-unreachable code of an ICMP `--reject-with` (`reject_tg` in
/// `net/ipv4/netfilter/ipt_REJECT.c`); None for `tcp-reset` and `icmp-echo-reply`.
pub fn unreach_code(with: RejectWith) -> Option<u8> {
    use icmp::unreachable as code;
    match with {
        RejectWith::NetUnreachable => Some(code::NET),
        RejectWith::HostUnreachable => Some(code::HOST),
        RejectWith::ProtoUnreachable => Some(code::PROTOCOL),
        RejectWith::PortUnreachable => Some(code::PORT),
        RejectWith::NetProhibited => Some(code::NET_PROHIBITED),
        RejectWith::HostProhibited => Some(code::HOST_PROHIBITED),
        RejectWith::AdminProhibited => Some(code::ADMIN_PROHIBITED),
        RejectWith::TcpReset | RejectWith::EchoReply => None,
    }
}

/// The offending frame, split where the reply needs it.
struct Original<'a> {
    dst_mac: ethernet::EthernetAddress,
    src_mac: ethernet::EthernetAddress,
    /// Bytes 12 to the IP header: the ethertype and any VLAN tags, copied into the reply as is.
    l2_rest: &'a [u8],
    /// The IP datagram, exactly `tot_len` bytes (Ethernet padding excluded).
    ip: ipv4::Packet<&'a [u8]>,
}

impl<'a> Original<'a> {
    fn parse(frame: &'a [u8]) -> Result<Original<'a>, NoReply> {
        let eth = ethernet::Packet::new_checked(frame).map_err(|_| NoReply::Truncated)?;
        let mut ethertype = eth.ethertype();
        let mut rest = eth.payload();
        let mut tags = 0;
        while ethertype.is_vlan_tag() {
            // Only the outer tag may be a service tag; a third tag is not read.
            if tags == MAX_TAGS || (tags > 0 && ethertype == EtherType::QINQ) {
                return Err(NoReply::NotIpv4);
            }
            let tag = vlan::Packet::new_checked(rest).map_err(|_| NoReply::Truncated)?;
            ethertype = tag.ethertype();
            rest = tag.payload();
            tags += 1;
        }
        if ethertype != EtherType::IPV4 {
            return Err(NoReply::NotIpv4);
        }
        let l3_offset = frame.len() - rest.len();
        let ip = ipv4::Packet::new_checked(rest).map_err(|e| match e {
            classifier::wire::Error::Malformed => NoReply::Malformed,
            _ => NoReply::Truncated,
        })?;
        if ip.version() != 4 {
            return Err(NoReply::NotIpv4);
        }
        let datagram = rest
            .get(..usize::from(ip.total_len()))
            .ok_or(NoReply::Truncated)?;
        Ok(Original {
            dst_mac: eth.dst_addr(),
            src_mac: eth.src_addr(),
            l2_rest: frame.get(12..l3_offset).ok_or(NoReply::Truncated)?,
            ip: ipv4::Packet::new_unchecked(datagram),
        })
    }

    /// The transport bytes: header end to total length.
    fn l4(&self) -> &'a [u8] {
        self.ip.payload()
    }

    /// `ip_route_input_slow`'s martian checks, in its order (a limited-broadcast destination is
    /// left to the broadcast check).
    fn is_martian(&self) -> bool {
        let (src, dst) = (self.ip.src_addr(), self.ip.dst_addr());
        let zeronet = |a: Ipv4Addr| a.octets()[0] == 0;
        if src.is_multicast() || src.is_broadcast() {
            return true;
        }
        if dst.is_broadcast() {
            return false;
        }
        zeronet(src) || zeronet(dst) || dst.is_loopback() || src.is_loopback()
    }

    fn dst_is_broadcast_or_multicast(&self) -> bool {
        let dst = self.ip.dst_addr();
        dst.is_broadcast() || dst.is_multicast()
    }

    /// What `nf_ip_checksum` computes for a packet without checksum offload: the one's
    /// complement sum of `skb->data` (the IP header on, which is where the data starts in the
    /// IPv4 hooks) over `skb->len` (the total length), plus the pseudo-header for TCP and UDP
    /// with the length of the whole IP payload. It verifies when the sum is 0xffff.
    fn l4_checksum_ok(&self) -> bool {
        let proto = self.ip.protocol();
        let l4 = self.l4();
        let mut parts = [checksum::data(self.ip.header()), checksum::data(l4), 0];
        if proto == IpProtocol::TCP || proto == IpProtocol::UDP {
            // At most 65535 bytes: the cast cannot truncate.
            parts[2] = checksum::pseudo_header(
                self.ip.src_addr(),
                self.ip.dst_addr(),
                proto,
                l4.len() as u32,
            );
        }
        checksum::combine(&parts) == 0xffff
    }

    /// `nf_reject_verify_csum`: which protocols get their checksum checked at all.
    fn checksum_verified(&self) -> bool {
        match self.ip.protocol() {
            // A zero UDP checksum means "none"; a header too short to read is checked.
            IpProtocol::UDP => !matches!(self.l4().get(6..8), Some([0, 0])),
            IpProtocol::GRE
            | IpProtocol::AH
            | IpProtocol::ESP
            | IpProtocol::SCTP
            | IpProtocol::UDPLITE => false,
            _ => true,
        }
    }

    /// Writes the reply's Ethernet header (MACs swapped, tags kept) and returns its length.
    fn emit_l2(&self, out: &mut [u8]) -> usize {
        let mut eth = ethernet::Packet::new_unchecked(&mut *out);
        eth.set_dst_addr(self.src_mac);
        eth.set_src_addr(self.dst_mac);
        let end = 12 + self.l2_rest.len();
        out[12..end].copy_from_slice(self.l2_rest);
        end
    }

    fn l2_len(&self) -> usize {
        12 + self.l2_rest.len()
    }
}

/// Builds the reply to `frame` for `-j REJECT --reject-with with` into `out` and returns its
/// length.
///
/// * `frame`: the Ethernet frame as received (up to two VLAN tags, maybe Ethernet padding).
/// * `reply_src`: the source address of an ICMP error; None uses the original destination
///   (what the kernel does for a packet addressed to the box). A reset always comes from the
///   original destination.
/// * `ip_id`: the IP identification of an ICMP error (a reset's is 0, as the kernel's). The caller
///   picks it, e.g. a per-worker counter.
/// * `out`: at least [`MAX_REPLY_LEN`] bytes is always enough.
///
/// The reply goes to the original source MAC from the original destination MAC, with the same
/// VLAN tags. Rate limiting is the caller's ([`IcmpRateLimit`], ICMP errors only).
pub fn build_reject(
    frame: &[u8],
    with: RejectWith,
    reply_src: Option<Ipv4Addr>,
    ip_id: u16,
    out: &mut [u8],
) -> Result<usize, NoReply> {
    if with == RejectWith::EchoReply {
        return Err(NoReply::EchoReplyRefused);
    }
    let orig = Original::parse(frame)?;
    if orig.is_martian() {
        return Err(NoReply::Martian);
    }
    if orig.ip.frag_offset() != 0 {
        return Err(NoReply::NotFirstFragment);
    }
    // The kernel checks the link layer for ICMP errors only; a routed reset would leave from the
    // box's own MAC. pollwall answers from the original destination MAC, which must then be a
    // unicast address: no reply of either kind to a group-addressed frame.
    if orig.dst_mac.is_multicast() {
        return Err(NoReply::LinkBroadcast);
    }
    match unreach_code(with) {
        Some(code) => icmp_error(
            &orig,
            icmp::Repr::dst_unreachable(code, &[]),
            reply_src,
            ip_id,
            out,
        ),
        None => tcp_reset(&orig, out),
    }
}

/// The ICMP error the forwarding path sends about `frame` (`icmp_send` from `ip_forward` or
/// `ip_error`): `kind`'s type, code and bytes 4..8 (the next-hop MTU of "fragmentation
/// needed"), from `reply_src`, quoting the datagram as [`build_reject`] does.
pub fn build_icmp_error(
    frame: &[u8],
    kind: icmp::Repr<'_>,
    reply_src: Ipv4Addr,
    ip_id: u16,
    out: &mut [u8],
) -> Result<usize, NoReply> {
    let orig = Original::parse(frame)?;
    if orig.is_martian() {
        return Err(NoReply::Martian);
    }
    if orig.ip.frag_offset() != 0 {
        return Err(NoReply::NotFirstFragment);
    }
    icmp_error(&orig, kind, Some(reply_src), ip_id, out)
}

/// `nf_send_unreach` then `__icmp_send`, in their order of checks; `kind` gives the type, code
/// and rest of header (its data is the quote, filled here).
fn icmp_error(
    orig: &Original<'_>,
    kind: icmp::Repr<'_>,
    reply_src: Option<Ipv4Addr>,
    ip_id: u16,
    out: &mut [u8],
) -> Result<usize, NoReply> {
    if orig.checksum_verified() && !orig.l4_checksum_ok() {
        return Err(NoReply::BadChecksum);
    }
    if orig.dst_is_broadcast_or_multicast() {
        return Err(NoReply::DestBroadcastOrMulticast);
    }
    if orig.ip.protocol() == IpProtocol::ICMP {
        // Any unknown type (> NR_ICMP_TYPES, 18) counts as an error; so does a missing one.
        match orig.l4().first() {
            Some(&t) if t <= 18 && !icmp::Message(t).is_error() => {}
            _ => return Err(NoReply::IcmpError),
        }
    }

    let datagram: &[u8] = orig.ip.into_inner();
    let quote = datagram.get(..MAX_QUOTE_LEN).unwrap_or(datagram);
    let l2_len = orig.l2_len();
    let icmp_repr = icmp::Repr {
        data: quote,
        ..kind
    };
    let ip_repr = ipv4::Repr {
        tos: (orig.ip.tos() & TOS_MASK) | PREC_INTERNETCONTROL,
        ident: ip_id,
        ..ipv4::Repr::new(
            reply_src.unwrap_or(orig.ip.dst_addr()),
            orig.ip.src_addr(),
            IpProtocol::ICMP,
            icmp_repr.buffer_len(),
            REPLY_TTL,
        )
    };
    let total = l2_len + ip_repr.buffer_len();
    let out = out.get_mut(..total).ok_or(NoReply::OutTooSmall)?;
    orig.emit_l2(out);
    let mut ip = ipv4::Packet::new_unchecked(&mut out[l2_len..]);
    ip_repr.emit(&mut ip);
    icmp_repr.emit(&mut icmp::Packet::new_unchecked(ip.payload_mut()));
    Ok(total)
}

/// `nf_send_reset`: `nf_reject_ip_tcphdr_get`'s checks, the broadcast route check, then the reply
/// from `nf_reject_iphdr_put` and `nf_reject_ip_tcphdr_put`.
fn tcp_reset(orig: &Original<'_>, out: &mut [u8]) -> Result<usize, NoReply> {
    if orig.ip.protocol() != IpProtocol::TCP {
        return Err(NoReply::NotTcp);
    }
    // Read the fixed header by hand: the kernel does not look at the data offset here (a value
    // below 5 is used as is in the sequence arithmetic), so the checked view would be stricter.
    let th = orig
        .l4()
        .get(..tcp::HEADER_LEN)
        .ok_or(NoReply::TcpTooShort)?;
    let be32 = |at: usize| u32::from_be_bytes([th[at], th[at + 1], th[at + 2], th[at + 3]]);
    let flags = th[13];
    if flags & tcp::flags::RST != 0 {
        return Err(NoReply::RstSet);
    }
    if !orig.l4_checksum_ok() {
        return Err(NoReply::BadChecksum);
    }
    if orig.dst_is_broadcast_or_multicast() {
        return Err(NoReply::DestBroadcastOrMulticast);
    }

    let (seq, ack, reply_flags) = if flags & tcp::flags::ACK != 0 {
        (be32(8), 0, tcp::flags::RST)
    } else {
        // seq + SYN + FIN + (skb->len - ip_hdrlen - doff * 4), all in u32 like the kernel's
        // unsigned arithmetic (a data offset beyond the segment wraps).
        let doff_bytes = u32::from(th[12] >> 4) * 4;
        let seg_len = (orig.l4().len() as u32).wrapping_sub(doff_bytes);
        let ack = be32(4)
            .wrapping_add(u32::from(flags & tcp::flags::SYN != 0))
            .wrapping_add(u32::from(flags & tcp::flags::FIN != 0))
            .wrapping_add(seg_len);
        (0, ack, tcp::flags::RST | tcp::flags::ACK)
    };
    let (src, dst) = (orig.ip.dst_addr(), orig.ip.src_addr());
    let tcp_repr = tcp::Repr {
        src_port: u16::from_be_bytes([th[2], th[3]]),
        dst_port: u16::from_be_bytes([th[0], th[1]]),
        seq_number: seq,
        ack_number: ack,
        flags: reply_flags,
        window_len: 0,
        urgent_at: 0,
        options: &[],
        payload: &[],
    };
    let ip_repr = ipv4::Repr {
        dont_frag: true,
        ..ipv4::Repr::new(src, dst, IpProtocol::TCP, tcp_repr.buffer_len(), REPLY_TTL)
    };
    let l2_len = orig.l2_len();
    let total = l2_len + ip_repr.buffer_len();
    let out = out.get_mut(..total).ok_or(NoReply::OutTooSmall)?;
    orig.emit_l2(out);
    let mut ip = ipv4::Packet::new_unchecked(&mut out[l2_len..]);
    ip_repr.emit(&mut ip);
    tcp_repr.emit(&mut tcp::Packet::new_unchecked(ip.payload_mut()), src, dst);
    Ok(total)
}
