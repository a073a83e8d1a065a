//! What the classifier needs to know about one packet: the header fields rules look at
//! ([`Headers`], filled from the wire views in [`crate::wire`]) and the metadata that does not come
//! from the packet bytes ([`PacketMeta`]: interfaces, connection state, mark, owner, time).
//!
//! The L4 readout records exactly what the kernel's matches would be able to read, so that a
//! match on a header that is too short "hotdrops" the packet as the kernel does.

/// TCP flag byte (offset 13) bits are in [`crate::model::tcp_flags`].
/// Which TCP option kinds are present, as `tcp_find_option` walks them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpOptionKinds(pub [u64; 4]);

impl TcpOptionKinds {
    pub fn insert(&mut self, kind: u8) {
        self.0[usize::from(kind >> 6)] |= 1 << (kind & 63);
    }
    pub fn contains(&self, kind: u8) -> bool {
        self.0[usize::from(kind >> 6)] & (1 << (kind & 63)) != 0
    }
}

/// The TCP options area as `tcp_mt` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TcpOptions {
    /// `doff * 4 < 20`: a `--tcp-option` match hotdrops.
    BadOffset,
    /// `doff * 4 - 20` bytes of options are not all inside the datagram: `--tcp-option` hotdrops.
    Truncated,
    /// The kinds found walking the options (empty when there are none).
    Kinds(TcpOptionKinds),
}

/// The transport header readout of a first fragment (or an unfragmented datagram).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum L4 {
    /// A non-first fragment, or a protocol the matches do not read.
    #[default]
    None,
    /// TCP with the full 20-byte header.
    Tcp {
        sport: u16,
        dport: u16,
        flags: u8,
        options: TcpOptions,
    },
    /// UDP with the full 8-byte header.
    Udp { sport: u16, dport: u16 },
    /// ICMP with the full 8-byte header.
    Icmp { icmp_type: u8, code: u8 },
    /// SCTP, DCCP, UDP-Lite: the first 4 bytes (ports), which is all `multiport` reads.
    Ports { sport: u16, dport: u16 },
    /// The protocol's header is shorter than what its matches read (`hdr_len` bytes present):
    /// a match that needs more hotdrops; `multiport` still works when `hdr_len >= 4`.
    Short {
        hdr_len: u16,
        sport: u16,
        dport: u16,
    },
}

/// Header fields of one IPv4 packet, after the checks `ip_rcv` does (a packet that fails them
/// never reaches a table: it is dropped and counted before classification).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
// Laid out by hand: what a lookup key reads (L4 ports, addresses, protocol, fragment offset) comes
// first, within 64 bytes; what only LOG and REJECT read comes after.
#[repr(C)]
pub struct Headers {
    pub l4: L4,
    pub src: u32,
    pub dst: u32,
    /// Fragment offset in 8-byte units (0 for a first fragment or an unfragmented datagram).
    pub frag_off: u16,
    /// IPv4 total length: what byte counters count.
    pub ip_len: u16,
    pub proto: u8,
    pub more_frags: bool,
    pub dont_frag: bool,
    pub tos: u8,
    pub ttl: u8,
    /// IP header length in bytes (20..=60).
    pub ihl_bytes: u8,
    pub ip_id: u16,
    /// Offset of the IPv4 header in the frame.
    pub l3_offset: u16,
    /// 802.1Q VLAN id, when tagged.
    pub vlan: Option<u16>,
    /// Ethernet source and destination, when the packet came from an Ethernet port.
    pub src_mac: Option<[u8; 6]>,
    pub dst_mac: Option<[u8; 6]>,
}

impl Headers {
    /// A synthesized header for classification (trace and sampled packets): an unfragmented
    /// 64-byte datagram without options, TTL 64, from no Ethernet port.
    pub fn synthetic(src: u32, dst: u32, proto: u8, l4: L4) -> Headers {
        Headers {
            src,
            dst,
            proto,
            ip_len: 64,
            ttl: 64,
            ihl_bytes: 20,
            l4,
            ..Headers::default()
        }
    }

    /// Source and destination ports when the L4 readout has them (for keys and multiport).
    pub fn ports(&self) -> Option<(u16, u16)> {
        match self.l4 {
            L4::Tcp { sport, dport, .. }
            | L4::Udp { sport, dport }
            | L4::Ports { sport, dport } => Some((sport, dport)),
            L4::Short {
                hdr_len,
                sport,
                dport,
            } if hdr_len >= 4 => Some((sport, dport)),
            _ => None,
        }
    }
}

/// An interface name (at most 15 bytes), stored inline so metadata never allocates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfName {
    len: u8,
    bytes: [u8; 16],
}

impl IfName {
    /// The empty name (no interface, e.g. `-i` in OUTPUT).
    pub const NONE: IfName = IfName {
        len: 0,
        bytes: [0; 16],
    };

    /// None when longer than 15 bytes.
    pub fn new(name: &str) -> Option<IfName> {
        let b = name.as_bytes();
        if b.len() > 15 {
            return None;
        }
        let mut bytes = [0u8; 16];
        bytes[..b.len()].copy_from_slice(b);
        Some(IfName {
            len: b.len() as u8,
            bytes,
        })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// Connection-tracking facts a rule can match: what [`crate::conntrack::Tracker::info`] says
/// about the packet, or NEW with no status where nothing tracks (stateless replays and benches).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtInfo {
    /// `ct_state` bits (`model::ct_state`): NEW, ESTABLISHED, ... plus SNAT/DNAT virtual states.
    pub state: u32,
    /// `ct_status` bits.
    pub status: u32,
    /// Original and reply tuples: (src, dst, sport, dport).
    pub orig: (u32, u32, u16, u16),
    pub reply: (u32, u32, u16, u16),
    pub l4proto: u8,
    /// Seconds left before the entry expires.
    pub expires: u32,
    /// True for packets in the reply direction.
    pub reply_dir: bool,
    /// The packet's connection in its worker's table (None: INVALID or UNTRACKED, or nothing
    /// tracks).
    pub conn: Option<u32>,
    /// `ct->mark` (`-m connmark`, CONNMARK).
    pub mark: u32,
    /// For an expected connection, its master's helper (`-m helper`).
    pub master_helper: Option<crate::conntrack::helper::HelperKind>,
}

/// What the raw table's `-j CT` / `-j NOTRACK` asks of tracking (the kernel's template
/// conntrack): no tracking at all, or a helper and zone for a new connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTemplate {
    pub notrack: bool,
    pub helper: Option<crate::conntrack::helper::HelperKind>,
    pub zone: u16,
    /// `XT_CT_ZONE_*` bits of [`crate::model::ct_flags`].
    pub zone_flags: u16,
}

impl CtTemplate {
    /// The template a CT target attaches (its helper was checked against the rule's protocol
    /// when the table was loaded).
    pub fn of(t: &crate::model::CtTarget, rule_proto: u8) -> CtTemplate {
        use crate::model::ct_flags;
        CtTemplate {
            notrack: t.notrack(),
            helper: crate::conntrack::helper::HelperKind::find(&t.helper, rule_proto),
            zone: t.zone,
            zone_flags: t.flags
                & (ct_flags::ZONE_DIR_ORIG | ct_flags::ZONE_DIR_REPL | ct_flags::ZONE_MARK),
        }
    }
}

/// What a hook's walk did to a packet besides its verdict: its mark (MARK, CONNMARK
/// `--restore-mark`), its connection's mark (CONNMARK), the raw table's CT template.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    pub mark: Option<u32>,
    pub ctmark: Option<u32>,
    pub ct: Option<CtTemplate>,
    /// The nat table's NAT target, when one took the packet.
    pub nat: Option<crate::nat::NatAction>,
}

impl CtInfo {
    /// A packet that starts a new connection (what every packet is before conntrack exists).
    pub fn new_from(h: &Headers) -> CtInfo {
        let (sp, dp) = h.ports().unwrap_or((0, 0));
        CtInfo {
            state: crate::model::ct_state::NEW,
            status: 0,
            orig: (h.src, h.dst, sp, dp),
            reply: (h.dst, h.src, dp, sp),
            l4proto: h.proto,
            expires: 0,
            reply_dir: false,
            conn: None,
            mark: 0,
            master_helper: None,
        }
    }

    /// A packet without a connection: INVALID.
    pub fn invalid() -> CtInfo {
        CtInfo {
            state: crate::model::ct_state::INVALID,
            ..CtInfo::default()
        }
    }

    /// A packet the raw table exempted from tracking: UNTRACKED.
    pub fn untracked() -> CtInfo {
        CtInfo {
            state: crate::model::ct_state::UNTRACKED,
            ..CtInfo::default()
        }
    }

    /// Whether the nat table sees this packet on `hook`: the first packet of a connection
    /// (NEW), before a binding of the hook's kind (destination on PREROUTING and OUTPUT, source
    /// on INPUT and POSTROUTING) was made for it (`nf_nat_inet_fn`).
    pub fn nat_sees(&self, hook: crate::model::Hook) -> bool {
        use crate::conntrack::status::{DST_NAT_DONE, SRC_NAT_DONE};
        use crate::model::Hook::*;
        let done = match hook {
            Prerouting | Output => DST_NAT_DONE,
            Input | Postrouting => SRC_NAT_DONE,
            Forward => 0,
        };
        // `nf_nat_inet_fn`: NEW and RELATED packets whose manip is not set up yet.
        let first = crate::model::ct_state::NEW | crate::model::ct_state::RELATED;
        self.state & first != 0 && self.status & u32::from(done) == 0
    }

    /// Whether the packet has a connection (`nf_ct_get` is not NULL); the stateless default
    /// (NEW, no connection known) counts as having one.
    pub fn has_conn(&self) -> bool {
        self.state & (crate::model::ct_state::INVALID | crate::model::ct_state::UNTRACKED) == 0
    }
}

/// The socket that sent a locally generated packet (`-m owner`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Everything about a packet that is not in its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PacketMeta {
    pub in_iface: IfName,
    pub out_iface: IfName,
    pub ct: CtInfo,
    /// `skb->mark` on entry to the hook.
    pub mark: u32,
    /// The sending socket, for OUTPUT/POSTROUTING packets of local processes.
    pub owner: Option<Owner>,
    /// Arrival time in nanoseconds (any monotonic origin): drives `limit`.
    pub now_ns: u64,
}

impl PacketMeta {
    /// A packet arriving on `in_iface` for `out_iface` (either may be [`IfName::NONE`]) at
    /// `now_ns`: NEW (what every packet is until connection tracking), no mark, no owner.
    pub fn arriving(h: &Headers, in_iface: IfName, out_iface: IfName, now_ns: u64) -> PacketMeta {
        PacketMeta {
            in_iface,
            out_iface,
            ct: CtInfo::new_from(h),
            mark: 0,
            owner: None,
            now_ns,
        }
    }
}
