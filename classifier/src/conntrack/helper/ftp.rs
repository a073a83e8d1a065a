//! The ftp helper: `help()` of `nf_conntrack_ftp.c` (Linux 6.12), IPv4 only.
//!
//! Once traffic has gone both ways (ctinfo ESTABLISHED or ESTABLISHED_REPLY), a segment with
//! payload is read only if it starts at a sequence number right after a newline the helper saw
//! end an earlier segment of the same direction ([`FtpState`]; the first line of each direction
//! is therefore never read). Only the start of the segment is compared, case-insensitively, with
//! the direction's patterns, in order:
//!
//! | direction | pattern | then | numbers ([`FtpType`]) |
//! |---|---|---|---|
//! | original | `PORT` | skip to past the first `' '` | `h1,h2,h3,h4,p1,p2` ended by `'\r'` (`try_rfc959`) |
//! | original | `EPRT` | skip to past the first `' '` | `<d>1<d>a.b.c.d<d>port<d>` (`try_eprt`) |
//! | reply | `227 ` | — | the first digit on, six numbers ended by anything (`try_rfc1123`) |
//! | reply | `229 ` | skip to past the first `'('` | `<d><d><d>port<d>` (`try_epsv_response`) |
//!
//! A segment that is a prefix of a pattern, or matches one but whose numbers do not parse, is
//! *dropped* ("partial matching"); one that matches no pattern is accepted. Numbers are decimal
//! digit runs accumulated in wrapping 32-bit arithmetic and combined without range checks
//! (`h2 = 257` carries into `h1`; `p1 << 8 | p2` is cut to 16 bits), ports of `EPRT`/`229` in
//! wrapping 16-bit arithmetic (0 is refused). The expectation is from the other side of the
//! connection (`tuplehash[!dir]` source, any port) to `tuplehash[!dir]`'s destination and the
//! announced port, over TCP. An announced address other than the sender's own
//! (`tuplehash[dir]` source) is ignored unless `loose` is set, when the expectation goes to it.
//! On a NATed connection the tracker hands the [`FtpMatch`] (type, offset, length) to
//! `nf_nat_ftp`'s port ([`crate::nat::helper`]), which rewrites it and registers the
//! expectation itself (this kernel builds `nf_nat_ftp` in).

use super::{Expectation, HelperKind, NF_CT_EXPECT_CLASS_DEFAULT};
use crate::conntrack::table::Dir;
use crate::conntrack::tuple::{proto, Tuple};

/// `NUM_SEQ_TO_REMEMBER`: sequence numbers after a newline kept per direction.
pub const NUM_SEQ_TO_REMEMBER: usize = 2;

/// `NF_CT_FTP_SEQ_PICKUP`: read the next segment of the direction whatever its sequence number
/// (set on connections injected through ctnetlink, e.g. by conntrackd after a failover).
pub const NF_CT_FTP_SEQ_PICKUP: u8 = 1 << 0;

/// The smallest TCP header (`sizeof(struct tcphdr)`).
pub const TCP_HDR_LEN: usize = 20;

/// `struct nf_ct_ftp_master`, packed: the kernel's `u16` counts (at most 2) and flags (one bit)
/// fit a byte. 20 bytes; zeroed when the helper is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct FtpState {
    /// Valid sequence numbers for reading a line, per direction (`seq_aft_nl`).
    pub seq_aft_nl: [[u32; NUM_SEQ_TO_REMEMBER]; 2],
    /// How many of `seq_aft_nl[dir]` are set (`seq_aft_nl_num`; 0 at first).
    pub seq_aft_nl_num: [u8; 2],
    /// [`NF_CT_FTP_SEQ_PICKUP`] per direction.
    pub flags: [u8; 2],
}

impl FtpState {
    /// The state `nf_ct_ftp_from_nlattr` leaves: both directions pick up their next segment.
    pub fn picked_up() -> FtpState {
        FtpState {
            flags: [NF_CT_FTP_SEQ_PICKUP; 2],
            ..FtpState::default()
        }
    }

    /// `find_nl_seq`: whether `seq` is right after a newline seen in direction `dir`.
    pub fn find_nl_seq(&self, seq: u32, dir: Dir) -> bool {
        let d = dir.index();
        self.seq_aft_nl[d]
            .iter()
            .take(usize::from(self.seq_aft_nl_num[d]))
            .any(|&s| s == seq)
    }

    /// `update_nl_seq`: remember `nl_seq` (the sequence number after a segment that ended in a
    /// newline) for direction `dir`: kept if new, in a free slot, or replacing the older of the
    /// two if it is after it.
    pub fn update_nl_seq(&mut self, nl_seq: u32, dir: Dir) {
        let d = dir.index();
        if self.find_nl_seq(nl_seq, dir) {
            return;
        }
        let n = usize::from(self.seq_aft_nl_num[d]);
        if n < NUM_SEQ_TO_REMEMBER {
            self.seq_aft_nl[d][n] = nl_seq;
            self.seq_aft_nl_num[d] += 1;
        } else {
            let s = &mut self.seq_aft_nl[d];
            let oldest = if before(s[0], s[1]) { 0 } else { 1 };
            if after(nl_seq, s[oldest]) {
                s[oldest] = nl_seq;
            }
        }
    }
}

/// `before(seq1, seq2)` of `tcp.h`.
fn before(seq1: u32, seq2: u32) -> bool {
    (seq1.wrapping_sub(seq2) as i32) < 0
}

/// `after(seq2, seq1)`.
fn after(seq2: u32, seq1: u32) -> bool {
    before(seq1, seq2)
}

/// `enum nf_ct_ftp_type` (uapi values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FtpType {
    /// `PORT` command from the client.
    Port = 0,
    /// `227` (PASV) reply from the server.
    Pasv = 1,
    /// `EPRT` command from the client.
    Eprt = 2,
    /// `229` (EPSV) reply from the server.
    Epsv = 3,
}

impl FtpType {
    /// The pattern of `search[][]` (what "partial matching of `%s'" names).
    pub const fn pattern(self) -> &'static str {
        match self {
            FtpType::Port => "PORT",
            FtpType::Pasv => "227 ",
            FtpType::Eprt => "EPRT",
            FtpType::Epsv => "229 ",
        }
    }
}

/// `struct nf_conntrack_man` as the parsers fill it (IPv4): the address (preset to the
/// sender's, which `229` does not name) and the port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Cmd {
    pub addr: u32,
    pub port: u16,
}

/// A parser of `search[][]`: `(data after the skip, cmd, term, &mut matchoff) -> length`, 0 for
/// no numbers.
pub type GetNum = fn(&[u8], &mut Cmd, u8, &mut usize) -> usize;

/// One entry of `search[][]`.
struct Pattern {
    pattern: &'static [u8],
    skip: u8,
    term: u8,
    ftptype: FtpType,
    getnum: GetNum,
}

/// `search[IP_CT_DIR_MAX][2]`.
static SEARCH: [[Pattern; 2]; 2] = [
    [
        Pattern {
            pattern: b"PORT",
            skip: b' ',
            term: b'\r',
            ftptype: FtpType::Port,
            getnum: try_rfc959,
        },
        Pattern {
            pattern: b"EPRT",
            skip: b' ',
            term: b'\r',
            ftptype: FtpType::Eprt,
            getnum: try_eprt,
        },
    ],
    [
        Pattern {
            pattern: b"227 ",
            skip: 0,
            term: 0,
            ftptype: FtpType::Pasv,
            getnum: try_rfc1123,
        },
        Pattern {
            pattern: b"229 ",
            skip: b'(',
            term: b')',
            ftptype: FtpType::Epsv,
            getnum: try_epsv_response,
        },
    ],
];

/// `try_number`: fills `array` with numbers separated by `sep`; returns the length read up to
/// the character ending the last number, which must be `term` (any non-digit, non-`sep` when
/// `term` is 0), or 0. Digits accumulate in wrapping `u32` arithmetic, as the C does.
pub fn try_number(data: &[u8], array: &mut [u32], sep: u8, term: u8) -> usize {
    for a in array.iter_mut() {
        *a = 0;
    }
    let n = array.len();
    let mut i = 0usize;
    let mut len = 0usize;
    while len < data.len() && i < n {
        let c = data[len];
        if c.is_ascii_digit() {
            array[i] = array[i].wrapping_mul(10).wrapping_add(u32::from(c - b'0'));
        } else if c == sep {
            i += 1;
        } else {
            // Unexpected character: fine if it is the terminator (or any will do) and the last
            // number is being read.
            if (c == term || term == 0) && i + 1 == n {
                return len;
            }
            return 0;
        }
        len += 1;
    }
    0
}

/// `try_rfc959`: `h1,h2,h3,h4,p1,p2` then `term`. The address is `h1 << 24 | h2 << 16 | h3 << 8
/// | h4` and the port `(p1 << 8 | p2)` cut to 16 bits, in `u32` without range checks.
pub fn try_rfc959(data: &[u8], cmd: &mut Cmd, term: u8, _offset: &mut usize) -> usize {
    let mut a = [0u32; 6];
    let length = try_number(data, &mut a, b',', term);
    if length == 0 {
        return 0;
    }
    // `<<` by less than 32 discards the bits shifted out (no overflow check), as in C.
    cmd.addr = (a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3];
    cmd.port = ((a[4] << 8) | a[5]) as u16;
    length
}

/// `try_rfc1123`: the `227` reply's numbers start at its first digit (RFC 1123 4.1.2.6), then
/// [`try_rfc959`] with no terminator required; `offset` moves to that digit.
pub fn try_rfc1123(data: &[u8], cmd: &mut Cmd, _term: u8, offset: &mut usize) -> usize {
    let Some(i) = data.iter().position(|c| c.is_ascii_digit()) else {
        return 0;
    };
    *offset += i;
    try_rfc959(&data[i..], cmd, 0, offset)
}

/// `get_port`: a port from `start` up to `delim`, in wrapping `u16` arithmetic; returns the
/// length past the delimiter, or 0 (another character, no delimiter, or port 0).
pub fn get_port(data: &[u8], start: usize, delim: u8, port: &mut u16) -> usize {
    let mut tmp: u16 = 0;
    let mut i = start;
    while i < data.len() {
        let c = data[i];
        if c == delim {
            if tmp == 0 {
                break;
            }
            *port = tmp;
            return i + 1;
        } else if c.is_ascii_digit() {
            tmp = tmp.wrapping_mul(10).wrapping_add(u16::from(c - b'0'));
        } else {
            break;
        }
        i += 1;
    }
    0
}

/// The `EPRT`/`229` delimiter test: printable ASCII other than space and digits (`delim < 33
/// || delim > 126` on a signed or unsigned `char` both refuse bytes of 0x80 and up).
fn valid_delim(d: u8) -> bool {
    !d.is_ascii_digit() && (33..=126).contains(&d)
}

/// `try_eprt`: `<d>1<d>a.b.c.d<d>port<d>`. On this IPv4 connection the protocol must be `1`
/// (`2`, IPv6, is refused).
pub fn try_eprt(data: &[u8], cmd: &mut Cmd, _term: u8, _offset: &mut usize) -> usize {
    if data.len() <= 3 {
        return 0;
    }
    let delim = data[0];
    if !valid_delim(delim) || data[2] != delim {
        return 0;
    }
    if data[1] != b'1' {
        return 0;
    }
    let mut a = [0u32; 4];
    let length = try_number(&data[3..], &mut a, b'.', delim);
    if length == 0 {
        return 0;
    }
    cmd.addr = (a[0] << 24) | (a[1] << 16) | (a[2] << 8) | a[3];
    // Past "<d>1<d>", the address and its delimiter.
    get_port(data, 3 + length + 1, delim, &mut cmd.port)
}

/// `try_epsv_response`: `<d><d><d>port<d>` (the address stays the sender's).
pub fn try_epsv_response(data: &[u8], cmd: &mut Cmd, _term: u8, _offset: &mut usize) -> usize {
    if data.len() <= 3 {
        return 0;
    }
    let delim = data[0];
    if !valid_delim(delim) || data[1] != delim || data[2] != delim {
        return 0;
    }
    get_port(data, 3, delim, &mut cmd.port)
}

/// `strncasecmp(a, b, n) == 0` for `a` and `b` of `n` bytes. The patterns are ASCII and
/// Latin-1 `tolower` never maps a byte into ASCII, so ASCII case folding is exact; a NUL in
/// `a` differs from any pattern byte, as `strncasecmp` stopping there does.
fn eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// What [`find_pattern`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Found {
    /// 0: not this pattern.
    No,
    /// -1: a prefix of the pattern, or the pattern without parsable numbers.
    Partial,
    /// 1: numbers at `off`, `len` bytes long.
    Match { off: usize, len: usize },
}

/// `find_pattern`: `pattern` at the start of `data` (case-insensitive), then past the first
/// `skip` byte (when `skip` is not 0), then `getnum`.
pub fn find_pattern(
    data: &[u8],
    pattern: &[u8],
    skip: u8,
    term: u8,
    cmd: &mut Cmd,
    getnum: GetNum,
) -> Found {
    let dlen = data.len();
    let plen = pattern.len();
    if dlen <= plen {
        // Short packet: a partial match?
        return if eq_ignore_case(data, &pattern[..dlen]) {
            Found::Partial
        } else {
            Found::No
        };
    }
    if !eq_ignore_case(&data[..plen], pattern) {
        return Found::No;
    }
    let mut i = plen;
    if skip != 0 {
        // `for (i = plen; data[i] != skip; i++) if (i == dlen - 1) return -1;`
        loop {
            match data.get(i) {
                Some(&c) if c == skip => break,
                Some(_) if i + 1 >= dlen => return Found::Partial,
                Some(_) => i += 1,
                None => return Found::Partial,
            }
        }
        // Skip over the skip character.
        i += 1;
    }
    let mut numoff = i;
    let rest = data.get(i..).unwrap_or(&[]);
    let numlen = getnum(rest, cmd, term, &mut numoff);
    if numlen == 0 {
        return Found::Partial;
    }
    Found::Match {
        off: numoff,
        len: numlen,
    }
}

/// A command or reply that announced a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FtpMatch {
    pub kind: FtpType,
    /// The announced address (for `229`, the sender's own).
    pub addr: u32,
    pub port: u16,
    /// Where the numbers start in the payload, and their length (`matchoff`, `matchlen`: what
    /// `nf_nat_ftp` would rewrite).
    pub matchoff: usize,
    pub matchlen: usize,
}

/// What the patterns of a direction make of a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scan {
    No,
    Partial(FtpType),
    Match(FtpMatch),
}

/// The `for (i = 0; i < ARRAY_SIZE(search[dir]); i++)` loop of `help()`: the patterns of
/// direction `dir` in order, the first that is not "no match" deciding. `sender` is the
/// sender's address (`tuplehash[dir]` source), which `cmd` starts with.
pub fn scan(dir: Dir, data: &[u8], sender: u32) -> Scan {
    let mut cmd = Cmd {
        addr: sender,
        port: 0,
    };
    for p in &SEARCH[dir.index()] {
        match find_pattern(data, p.pattern, p.skip, p.term, &mut cmd, p.getnum) {
            Found::No => continue,
            Found::Partial => return Scan::Partial(p.ftptype),
            Found::Match { off, len } => {
                return Scan::Match(FtpMatch {
                    kind: p.ftptype,
                    addr: cmd.addr,
                    port: cmd.port,
                    matchoff: off,
                    matchlen: len,
                })
            }
        }
    }
    Scan::No
}

/// What `help()` decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FtpVerdict {
    /// `NF_ACCEPT`, nothing announced (or not read).
    Accept,
    /// `NF_ACCEPT`: the announced address is not the sender's and `loose` is off ("NOT
    /// RECORDING"): nothing expected.
    NotRecorded(FtpMatch),
    /// Register the expectation (`nf_ct_expect_related`): `NF_ACCEPT` if that works, `NF_DROP`
    /// ("cannot add expectation") if not.
    Expect(Expectation, FtpMatch),
    /// `NF_DROP`: "partial matching of `PATTERN'".
    Partial(FtpType),
}

impl FtpVerdict {
    /// Whether the packet is dropped whatever the tracker does.
    pub fn drops(&self) -> bool {
        matches!(self, FtpVerdict::Partial(_))
    }
}

/// `help()` of `nf_conntrack_ftp.c`: one packet of a connection with the ftp helper.
///
/// - `st`: the connection's helper state, updated here as the kernel does (also on the
///   `Expect` path, whatever registering the expectation then does).
/// - `loose`: the module parameter (default false).
/// - `tuples`: the connection's original and reply tuples.
/// - `dir`: the packet's direction; `established`: ctinfo is ESTABLISHED or
///   ESTABLISHED_REPLY (see [`super::HelperPacket::established`]).
/// - `tcp`: the TCP header and payload, up to the IPv4 total length.
pub fn help(
    st: &mut FtpState,
    loose: bool,
    tuples: &[Tuple; 2],
    dir: Dir,
    established: bool,
    tcp: &[u8],
) -> FtpVerdict {
    // Until there's been traffic both ways, don't look in packets.
    if !established {
        return FtpVerdict::Accept;
    }
    if tcp.len() < TCP_HDR_LEN {
        return FtpVerdict::Accept;
    }
    let dataoff = usize::from(tcp[12] >> 4) * 4;
    // No data?
    if dataoff >= tcp.len() {
        return FtpVerdict::Accept;
    }
    let data = &tcp[dataoff..];
    let th_seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let ends_in_nl = data.last() == Some(&b'\n');
    let seq = th_seq.wrapping_add(data.len() as u32);

    let (verdict, update_nl) = examine(st, loose, tuples, dir, th_seq, data);
    // `out_update_nl`: now if this ends in \n, update ftp info.
    if update_nl && ends_in_nl {
        st.update_nl_seq(seq, dir);
    }
    verdict
}

/// `help()` from the sequence check to `out_update_nl` (true) or `out` (false).
fn examine(
    st: &mut FtpState,
    loose: bool,
    tuples: &[Tuple; 2],
    dir: Dir,
    th_seq: u32,
    data: &[u8],
) -> (FtpVerdict, bool) {
    let d = dir.index();
    if !st.find_nl_seq(th_seq, dir) {
        if st.flags[d] & NF_CT_FTP_SEQ_PICKUP == 0 {
            return (FtpVerdict::Accept, true);
        }
        // We're picking up this one: clear the flag and read it.
        st.flags[d] ^= NF_CT_FTP_SEQ_PICKUP;
    }

    let sender = tuples[d].src;
    let m = match scan(dir, data, sender) {
        Scan::No => return (FtpVerdict::Accept, true),
        Scan::Partial(t) => return (FtpVerdict::Partial(t), false),
        Scan::Match(m) => m,
    };

    // The reverse direction's tuple: the connection comes the other way.
    let other = &tuples[dir.other().index()];
    let mut daddr = other.dst;
    if m.addr != sender {
        // Not the sender's address: a hole to somewhere else. Only `loose` allows it.
        if !loose {
            return (FtpVerdict::NotRecorded(m), true);
        }
        daddr = m.addr;
    }
    let exp = Expectation {
        helper: HelperKind::Ftp,
        class: NF_CT_EXPECT_CLASS_DEFAULT,
        flags: 0,
        proto: proto::TCP,
        src: Some(other.src),
        sport: None,
        dst: daddr,
        dport: m.port,
        announced_in: dir,
        nat: None,
    };
    (FtpVerdict::Expect(exp, m), true)
}
