//! One connection's entry ([`Conn`]): both tuples, status bits, expiry, mark, the protocol's
//! tracking state, and the table's own links. Kept compact (DESIGN.md §5 aims at ≤ 128 bytes a
//! connection, index included): see [`super::Table::bytes_per_connection`].

use super::tcp::TcpConn;
use super::tuple::Tuple;

/// Status bits (`IPS_*`, the same bit positions as the kernel's `ct->status`).
pub mod status {
    pub const EXPECTED: u16 = 1 << 0;
    pub const SEEN_REPLY: u16 = 1 << 1;
    pub const ASSURED: u16 = 1 << 2;
    pub const CONFIRMED: u16 = 1 << 3;
    pub const SRC_NAT: u16 = 1 << 4;
    pub const DST_NAT: u16 = 1 << 5;
    pub const SEQ_ADJUST: u16 = 1 << 6;
    pub const SRC_NAT_DONE: u16 = 1 << 7;
    pub const DST_NAT_DONE: u16 = 1 << 8;
    pub const DYING: u16 = 1 << 9;
    pub const FIXED_TIMEOUT: u16 = 1 << 10;
    pub const HELPER: u16 = 1 << 13;
    /// pollwall's own: the other workers were told to steer this connection's reply tuple
    /// here (a destination manip whose reply hashes elsewhere); its removal is announced.
    pub const CLAIMED: u16 = 1 << 14;
    /// pollwall's own: the slab slot is free.
    pub const FREE: u16 = 1 << 15;
}

/// What a protocol tracker keeps per connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtoState {
    /// Protocols tracked by addresses only (and ICMP queries, whose state is the tuple).
    None,
    Tcp(TcpConn),
    Sctp(super::sctp::SctpConn),
    /// UDP and UDP-Lite: when the flow counts as a stream (table ms) once replied.
    Udp {
        stream_ts: u32,
    },
    /// GRE: whether a reply was seen is in the status; nothing else.
    Gre,
}

/// [`Conn::master`] of a connection nobody expected.
pub const NO_MASTER: u32 = u32::MAX;

/// [`Conn::masq_port`] of a connection without MASQUERADE.
pub const NO_PORT: u8 = u8::MAX;

/// One connection.
#[derive(Clone, Copy, Debug)]
#[repr(C)]
pub struct Conn {
    /// Original and reply tuples (`tuplehash[IP_CT_DIR_*]`).
    pub tuple: [Tuple; 2],
    /// Expiry on the table clock (ms, wrapping); the pending timeout while unconfirmed.
    pub expires: u32,
    pub status: u16,
    pub proto: ProtoState,
    /// `ct->mark` (CONNMARK, `-m connmark`).
    pub mark: u32,
    /// For an expected connection, its master's slot (`ct->master`; [`NO_MASTER`] otherwise).
    /// The master holds a reference for each (`use=` in `conntrack -L`).
    pub master: u32,
    /// The helper the raw table's `-j CT --helper` gave this connection.
    pub helper: Option<super::helper::HelperKind>,
    /// For an expected connection (status EXPECTED): its master's helper (`-m helper`).
    pub master_helper: Option<super::helper::HelperKind>,
    /// The port a MASQUERADE binding masquerades behind ([`NO_PORT`] otherwise): a packet of
    /// the original direction leaving by another port kills the connection
    /// (`nf_nat_oif_changed`).
    pub masq_port: u8,
    /// Timer wheel links (the table's business).
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl Conn {
    pub fn orig(&self) -> &Tuple {
        &self.tuple[0]
    }
    pub fn reply(&self) -> &Tuple {
        &self.tuple[1]
    }
    pub fn l4proto(&self) -> u8 {
        self.tuple[0].proto
    }
    pub fn has(&self, bits: u16) -> bool {
        self.status & bits == bits
    }
}
