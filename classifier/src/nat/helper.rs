//! NAT for helped connections (`nf_nat_ftp.c`, `nf_nat_tftp.c` and `nf_nat_helper.c` of Linux
//! 6.12, which this kernel builds in): what changes when the ftp or tftp helper announces a
//! connection on a connection that is NATed (status `SRC_NAT` or `DST_NAT`).
//!
//! - **ftp** ([`Tracker::nat_ftp`]): the expected connection will come from wherever this
//!   packet goes, so the expectation is registered to the connection's other-direction
//!   destination (`tuplehash[!dir].dst`: the translated address), on the announced port if
//!   free, else on up to 128 random ports above it (`nf_nat_exp_find_port`); none free drops
//!   the packet ("all ports in use"). The numbers of the `PORT` / `EPRT` command or `227` /
//!   `229` reply are then rewritten to that address and port ([`ftp_command`], in the
//!   kernel's format) and the segment resized ([`mangle_tcp`]): the IP length and checksum
//!   and the TCP checksum recomputed, and a length change recorded for sequence adjustment
//!   ([`crate::conntrack::seqadj`]). A rewrite that does not fit drops the packet and takes
//!   the expectation back.
//! - **tftp**: the expectation stays as the helper made it, marked to follow its master
//!   toward the client's original port.
//! - **Following the master** ([`Tracker::follow_master`], `nf_nat_follow_master`): a
//!   connection that fulfils such an expectation is bound on creation, both manips at once
//!   (so the nat table never sees it): its source to where the master sends
//!   (`master.tuplehash[!exp.dir].dst`), its destination to the master's other end with the
//!   announced port (`tuplehash[!exp.dir].src`, `saved_proto`).

use super::{range_flags, Manip, Range};
use crate::conntrack::helper::{ExpectNat, Expectation, FtpMatch, FtpType};
use crate::conntrack::table::{ConnId, Dir};
use crate::conntrack::HelpOutcome;
use crate::conntrack::{status, Tracker};
use crate::nat::csum;
use std::io::Write;

/// The longest command [`ftp_command`] writes (`|1|255.255.255.255|65535|`).
pub const FTP_COMMAND_MAX: usize = 32;

/// `nf_nat_ftp_fmt_cmd` (IPv4): the numbers announcing `addr`:`port` in `kind`'s syntax, in
/// `out`; returns the length.
pub fn ftp_command(kind: FtpType, addr: u32, port: u16, out: &mut [u8; FTP_COMMAND_MAX]) -> usize {
    let a = addr.to_be_bytes();
    let mut w = &mut out[..];
    let room = w.len();
    let written = match kind {
        FtpType::Port | FtpType::Pasv => write!(
            w,
            "{},{},{},{},{},{}",
            a[0],
            a[1],
            a[2],
            a[3],
            port >> 8,
            port & 0xff
        ),
        FtpType::Eprt => write!(w, "|1|{}.{}.{}.{}|{}|", a[0], a[1], a[2], a[3], port),
        FtpType::Epsv => write!(w, "|||{port}|"),
    };
    match written {
        Ok(()) => room - w.len(),
        Err(_) => 0,
    }
}

/// `__nf_nat_mangle_tcp_packet` and `mangle_contents`: replaces `matchlen` bytes at
/// `matchoff` of the TCP payload with `rep`. `ip` runs from the IPv4 header to the end of the
/// buffer (the room a longer datagram may take); `ip_len` bytes of it are the datagram. Sets
/// the total length and the IP checksum, recomputes the TCP checksum (as the kernel's
/// `CHECKSUM_PARTIAL` transmit does), and returns the new length; None when the result would
/// not fit the buffer or 65535 bytes, or the match is not inside the payload.
pub fn mangle_tcp(
    ip: &mut [u8],
    ip_len: usize,
    matchoff: usize,
    matchlen: usize,
    rep: &[u8],
) -> Option<usize> {
    let ihl = usize::from(*ip.first()? & 0x0f) * 4;
    let doff = usize::from(*ip.get(ihl + 12)? >> 4) * 4;
    let data = ihl + doff;
    let (from, to) = (data + matchoff, data + matchoff + matchlen);
    if ip_len > ip.len() || to > ip_len {
        return None;
    }
    let new_len = ip_len - matchlen + rep.len();
    if new_len > usize::from(u16::MAX) || new_len > ip.len() {
        return None;
    }
    ip.copy_within(to..ip_len, from + rep.len());
    ip[from..from + rep.len()].copy_from_slice(rep);
    ip[2..4].copy_from_slice(&(new_len as u16).to_be_bytes());
    ip[10..12].fill(0);
    let c = csum::sum_from_scratch(&ip[..ihl]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let word = |at: usize| u32::from_be_bytes([ip[at], ip[at + 1], ip[at + 2], ip[at + 3]]);
    let (src, dst) = (word(12), word(16));
    ip[ihl + 16..ihl + 18].fill(0);
    let c = csum::l4_from_scratch(src, dst, 6, &ip[ihl..new_len]);
    ip[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
    Some(new_len)
}

/// `nf_nat_exp_find_port`'s bound on random retries.
const MAX_ATTEMPTS: u32 = 128;

impl Tracker {
    /// Whether connection `id` is NATed (`ct->status & IPS_NAT_MASK`).
    pub(crate) fn is_nated(&self, id: ConnId) -> bool {
        self.table.get(id).status & (status::SRC_NAT | status::DST_NAT) != 0
    }

    /// `nf_nat_ftp`: the ftp helper announced `exp` (match `m`) in a packet of direction `dir`
    /// of NATed connection `id`. `ip` and `ip_len` as for [`mangle_tcp`].
    pub(crate) fn nat_ftp(
        &mut self,
        id: ConnId,
        dir: Dir,
        mut exp: Expectation,
        m: &FtpMatch,
        ip: &mut [u8],
        ip_len: usize,
    ) -> HelpOutcome {
        // The segment's sequence number, before adjustment: where a length change counts.
        let at = usize::from(ip.first().map_or(5, |b| b & 0x0f)) * 4 + 4;
        let seq = ip
            .get(at..at + 4)
            .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
        let other = self.table.get(id).tuple[dir.other().index()];
        let new_addr = other.dst;
        exp.nat = Some(ExpectNat {
            dir: dir.other(),
            saved_port: exp.dport,
        });
        let Some(port) = self.exp_find_port(&mut exp, id) else {
            return HelpOutcome::Drop;
        };
        let mut buf = [0u8; FTP_COMMAND_MAX];
        let n = ftp_command(m.kind, new_addr, port, &mut buf);
        let Some(new_len) = mangle_tcp(ip, ip_len, m.matchoff, m.matchlen, &buf[..n]) else {
            self.expect.remove(&exp, id);
            return HelpOutcome::Drop;
        };
        let off = n as i32 - m.matchlen as i32;
        if off != 0 {
            self.seqadj_set(id, dir, seq, off);
        }
        if new_len == ip_len {
            HelpOutcome::Accept
        } else {
            HelpOutcome::Resized(new_len as u16)
        }
    }

    /// `nf_nat_exp_find_port`: registers `exp` on its port if that is free, else on random
    /// ports from it up (at most [`MAX_ATTEMPTS`] more tries, only while the failure is a
    /// clash). The port it got, None when it got none.
    fn exp_find_port(&mut self, exp: &mut Expectation, master: ConnId) -> Option<u16> {
        let min = exp.dport;
        let range = u32::from(u16::MAX - min);
        let mut attempts_left = range.min(MAX_ATTEMPTS) as i64;
        loop {
            match self.expect.add(&self.table, *exp, master) {
                Ok(()) => return Some(exp.dport),
                Err(crate::conntrack::ExpectError::Clash) => {}
                Err(_) => return None,
            }
            attempts_left -= 1;
            if attempts_left < 0 || range == 0 {
                return None;
            }
            // `get_random_u32_between(min, min + range)`: [min, 65535).
            let draw = super::next_random(&mut self.nat_rng) % u64::from(range);
            exp.dport = min + draw as u16;
        }
    }

    /// `nf_ct_seqadj_set` for a segment of direction `dir` of `id` starting at `seq` whose
    /// payload changed by `off` bytes; sets `SEQ_ADJUST` (a connection getting it for the
    /// first time starts from zero offsets).
    pub(crate) fn seqadj_set(&mut self, id: ConnId, dir: Dir, seq: u32, off: i32) {
        let c = self.table.get_mut(id);
        let first = c.status & status::SEQ_ADJUST == 0;
        c.status |= status::SEQ_ADJUST;
        let adj = self.seqadj.entry(id).or_default();
        if first {
            *adj = Default::default();
        }
        adj[dir.index()].set(seq, off);
    }

    /// `nf_nat_follow_master`: binds new connection `id`, which fulfilled an expectation of
    /// `master` that asked for it (`nat`), both manips.
    pub(crate) fn follow_master(&mut self, id: ConnId, master: ConnId, nat: ExpectNat) {
        let m = self.table.get(master).tuple[nat.dir.other().index()];
        let src = Range {
            flags: range_flags::MAP_IPS,
            min_addr: m.dst,
            max_addr: m.dst,
            ..Range::default()
        };
        self.nat_setup(id, &src, Manip::Src);
        let dst = Range {
            flags: range_flags::MAP_IPS | range_flags::PROTO_SPECIFIED,
            min_addr: m.src,
            max_addr: m.src,
            min_port: nat.saved_port,
            max_port: nat.saved_port,
            base_port: 0,
        };
        self.nat_setup(id, &dst, Manip::Dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_in_the_kernels_format() {
        let mut b = [0u8; FTP_COMMAND_MAX];
        let a = u32::from(std::net::Ipv4Addr::new(10, 200, 2, 1));
        let n = ftp_command(FtpType::Port, a, 0x1234, &mut b);
        assert_eq!(&b[..n], b"10,200,2,1,18,52");
        let n = ftp_command(FtpType::Pasv, a, 21, &mut b);
        assert_eq!(&b[..n], b"10,200,2,1,0,21");
        let n = ftp_command(FtpType::Eprt, a, 65535, &mut b);
        assert_eq!(&b[..n], b"|1|10.200.2.1|65535|");
        let n = ftp_command(FtpType::Epsv, a, 40000, &mut b);
        assert_eq!(&b[..n], b"|||40000|");
        let n = ftp_command(FtpType::Eprt, u32::MAX, 65535, &mut b);
        assert_eq!(n, "|1|255.255.255.255|65535|".len());
    }

    fn datagram(payload: &[u8]) -> Vec<u8> {
        let mut ip = vec![0u8; 40];
        ip[0] = 0x45;
        let len = (40 + payload.len()) as u16;
        ip[2..4].copy_from_slice(&len.to_be_bytes());
        ip[8] = 64;
        ip[9] = 6;
        ip[12..16].copy_from_slice(&[10, 1, 0, 5]);
        ip[16..20].copy_from_slice(&[10, 200, 2, 9]);
        ip[32] = 5 << 4;
        ip.extend_from_slice(payload);
        ip
    }

    fn verifies(ip: &[u8]) -> bool {
        let len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
        let w = |at: usize| u32::from_be_bytes(ip[at..at + 4].try_into().unwrap());
        csum::sum_from_scratch(&ip[..20]) == 0
            && csum::l4_from_scratch(w(12), w(16), 6, &ip[20..len]) == 0
    }

    #[test]
    fn a_longer_command_grows_the_datagram_and_both_checksums_verify() {
        let line = b"PORT 10,1,0,5,117,48\r\n";
        let mut ip = datagram(line);
        let len = ip.len();
        ip.resize(len + 16, 0xee);
        let new = mangle_tcp(&mut ip, len, 5, 15, b"10,200,2,1,117,48").unwrap();
        assert_eq!(new, len + 2);
        assert_eq!(&ip[40..new], b"PORT 10,200,2,1,117,48\r\n");
        assert!(verifies(&ip));
        // And back: shorter.
        let new2 = mangle_tcp(&mut ip, new, 5, 17, b"10,1,0,5,117,48").unwrap();
        assert_eq!(new2, len);
        assert_eq!(&ip[40..new2], line);
        assert!(verifies(&ip));
    }

    #[test]
    fn no_room_or_a_match_outside_the_payload_changes_nothing() {
        let mut ip = datagram(b"PORT 1,2,3,4,5,6\r\n");
        let len = ip.len();
        let before = ip.clone();
        assert_eq!(mangle_tcp(&mut ip, len, 5, 11, b"10,200,2,1,5,6"), None);
        assert_eq!(mangle_tcp(&mut ip, len, 15, 11, b"x"), None);
        assert_eq!(ip, before);
    }
}
