//! TCP sequence adjustment (`nf_conntrack_seqadj.c`, Linux 6.12): when a NAT helper changed
//! the length of a segment's payload (`nf_nat_ftp` rewriting a `PORT` command), every later
//! segment of that direction has its sequence number moved by the difference, and every
//! segment of the other direction has its acknowledgement (and SACK blocks) moved back, so
//! both ends see a consistent stream.
//!
//! A direction keeps one correction point: segments after `correction_pos` move by
//! `offset_after`, those at or before it by `offset_before` (a retransmission of the mangled
//! segment). A second change in the same window is not tracked (the kernel's limit too).
//!
//! Conntrack itself sees packets before they are adjusted (the adjustment runs in
//! `nf_confirm`, after the hooks): `tcp_in_window` takes an acknowledgement back into the
//! sender's own sequence space with [`SeqAdj::offset`] of the other direction.

use super::table::Dir;
use crate::nat::csum;

/// `struct nf_ct_seqadj`: one direction's correction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SeqAdj {
    pub correction_pos: u32,
    pub offset_before: i32,
    pub offset_after: i32,
}

/// `struct nf_conn_seqadj`: both directions, by [`Dir::index`].
pub type SeqAdjs = [SeqAdj; 2];

/// `before(seq1, seq2)`.
fn before(seq1: u32, seq2: u32) -> bool {
    (seq1.wrapping_sub(seq2) as i32) < 0
}

/// `after(seq2, seq1)`.
fn after(seq2: u32, seq1: u32) -> bool {
    before(seq1, seq2)
}

impl SeqAdj {
    /// `nf_ct_seqadj_set`: a segment starting at `seq` grew by `off` bytes (shrank if
    /// negative). Recorded if no correction is pending or this one is further on.
    pub fn set(&mut self, seq: u32, off: i32) {
        if off == 0 {
            return;
        }
        if self.offset_before == self.offset_after || before(self.correction_pos, seq) {
            self.correction_pos = seq;
            self.offset_before = self.offset_after;
            self.offset_after = self.offset_after.wrapping_add(off);
        }
    }

    /// `nf_ct_seq_offset`: the offset of sequence number `seq` of this direction.
    pub fn offset(&self, seq: u32) -> i32 {
        if after(seq, self.correction_pos) {
            self.offset_after
        } else {
            self.offset_before
        }
    }

    /// The offset of an acknowledgement (or SACK edge) `ack` of this direction's data, as the
    /// receiver sent it (already moved): `after(ack - offset_before, correction_pos)`.
    fn ack_offset(&self, ack: u32) -> i32 {
        if after(
            ack.wrapping_sub(self.offset_before as u32),
            self.correction_pos,
        ) {
            self.offset_after
        } else {
            self.offset_before
        }
    }
}

const TCPOPT_EOL: u8 = 0;
const TCPOPT_NOP: u8 = 1;
const TCPOPT_SACK: u8 = 5;
const TCPOLEN_SACK_PERBLOCK: usize = 8;

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
}

/// Writes `to` over the 32-bit field at `at` of `tcp`, updating the checksum incrementally.
fn replace(tcp: &mut [u8], at: usize, to: u32) {
    let from = be32(tcp, at);
    let check = u16::from_be_bytes([tcp[16], tcp[17]]);
    let check = csum::replace4(check, from, to);
    tcp[16..18].copy_from_slice(&check.to_be_bytes());
    tcp[at..at + 4].copy_from_slice(&to.to_be_bytes());
}

/// `nf_ct_seq_adjust` on a segment of direction `dir` (`tcp`: the TCP header and payload):
/// its sequence number by this direction's offset, its acknowledgement and SACK blocks back by
/// the other's. False when the options are malformed (`nf_ct_sack_adjust` fails: the kernel
/// drops the packet) or the header is short.
pub fn adjust(adj: &SeqAdjs, dir: Dir, tcp: &mut [u8]) -> bool {
    if tcp.len() < 20 {
        return false;
    }
    let (this_way, other_way) = (&adj[dir.index()], &adj[dir.other().index()]);
    let seq = be32(tcp, 4);
    let ack = be32(tcp, 8);
    let new_seq = seq.wrapping_add(this_way.offset(seq) as u32);
    let new_ack = ack.wrapping_sub(other_way.ack_offset(ack) as u32);
    replace(tcp, 4, new_seq);
    replace(tcp, 8, new_ack);
    sack_adjust(other_way, tcp)
}

/// `nf_ct_sack_adjust`: moves the SACK blocks' edges back by `other_way`'s offsets.
fn sack_adjust(other_way: &SeqAdj, tcp: &mut [u8]) -> bool {
    let optend = usize::from(tcp[12] >> 4) * 4;
    if optend > tcp.len() {
        return false;
    }
    let mut off = 20;
    while off < optend {
        match tcp[off] {
            TCPOPT_EOL => return true,
            TCPOPT_NOP => off += 1,
            kind => {
                if off + 1 == optend {
                    return false;
                }
                let len = usize::from(tcp[off + 1]);
                if off + len > optend || len < 2 {
                    return false;
                }
                if kind == TCPOPT_SACK
                    && len >= 2 + TCPOLEN_SACK_PERBLOCK
                    && (len - 2) % TCPOLEN_SACK_PERBLOCK == 0
                {
                    let mut at = off + 2;
                    while at < off + len {
                        for edge in [at, at + 4] {
                            let v = be32(tcp, edge);
                            replace(tcp, edge, v.wrapping_sub(other_way.ack_offset(v) as u32));
                        }
                        at += TCPOLEN_SACK_PERBLOCK;
                    }
                }
                off += len;
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(seq: u32, ack: u32, sack: Option<(u32, u32)>) -> Vec<u8> {
        let opts: Vec<u8> = match sack {
            Some((l, r)) => {
                let mut o = vec![TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK, 10];
                o.extend_from_slice(&l.to_be_bytes());
                o.extend_from_slice(&r.to_be_bytes());
                o
            }
            None => vec![],
        };
        let mut t = vec![0u8; 20];
        t[4..8].copy_from_slice(&seq.to_be_bytes());
        t[8..12].copy_from_slice(&ack.to_be_bytes());
        t[12] = (((20 + opts.len()) / 4) << 4) as u8;
        t[13] = 0x10;
        t.extend_from_slice(&opts);
        t.extend_from_slice(b"data");
        let c = csum::l4_from_scratch(1, 2, 6, &t);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }

    #[test]
    fn later_segments_move_and_acks_come_back() {
        let mut adj = SeqAdjs::default();
        // The original direction's segment at 1000 grew by 2.
        adj[0].set(1000, 2);
        assert_eq!(adj[0].offset(1000), 0, "the mangled segment itself: before");
        assert_eq!(adj[0].offset(1001), 2);
        let mut t = segment(1020, 5000, None);
        assert!(adjust(&adj, Dir::Original, &mut t));
        assert_eq!(be32(&t, 4), 1022);
        assert_eq!(be32(&t, 8), 5000, "the reply direction has no offset");
        assert_eq!(
            csum::l4_from_scratch(1, 2, 6, &t),
            0,
            "checksum still verifies"
        );
        // The reply acknowledges 1022 (it saw the longer stream): 1020 goes back.
        let mut r = segment(5000, 1022, Some((1030, 1040)));
        assert!(adjust(&adj, Dir::Reply, &mut r));
        assert_eq!(be32(&r, 8), 1020);
        assert_eq!((be32(&r, 24), be32(&r, 28)), (1028, 1038));
        assert_eq!(csum::l4_from_scratch(1, 2, 6, &r), 0);
        // An ack of the mangled segment's start stays (before the correction point).
        let mut r = segment(5000, 1000, None);
        assert!(adjust(&adj, Dir::Reply, &mut r));
        assert_eq!(be32(&r, 8), 1000);
    }

    #[test]
    fn a_second_change_inside_the_window_is_ignored_until_past_it() {
        let mut a = SeqAdj::default();
        a.set(1000, 2);
        a.set(990, 5);
        assert_eq!(
            (a.offset_before, a.offset_after),
            (0, 2),
            "earlier: ignored"
        );
        a.set(2000, -1);
        assert_eq!(a.correction_pos, 2000);
        assert_eq!((a.offset_before, a.offset_after), (2, 1));
        a.set(3000, 0);
        assert_eq!(a.correction_pos, 2000, "no change, nothing recorded");
    }

    #[test]
    fn malformed_options_fail_and_short_headers_too() {
        let adj = SeqAdjs::default();
        let mut t = segment(1, 2, Some((3, 4)));
        t[23] = 40; // the SACK option's length runs past the header
        assert!(!adjust(&adj, Dir::Original, &mut t));
        assert!(!adjust(&adj, Dir::Original, &mut [0u8; 12]));
    }
}
