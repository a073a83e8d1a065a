//! Unit tests of reassembly and refragmentation, on a virtual clock. Expected behaviour is
//! Linux 6.12's (`ip_fragment.c`, `inet_fragment.c`, `ip_output.c`), case by case.

use super::*;
use std::net::Ipv4Addr;

const SRC: [u8; 4] = [10, 0, 0, 1];
const DST: [u8; 4] = [10, 0, 0, 2];
const CT_IN: u32 = user::CONNTRACK_IN;
const UDP: u8 = 17;

/// Record route (not copied) + router alert (copied) + END: 12 bytes.
const OPTS: [u8; 12] = [0x07, 0x07, 0x04, 0, 0, 0, 0, 0x94, 0x04, 0, 0, 0];

/// xorshift64*: a small seeded PRNG.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}

fn checksum_ok(hdr: &[u8]) -> bool {
    let mut sum = 0u32;
    for w in hdr.chunks(2) {
        sum += u32::from(w[0]) << 8 | u32::from(*w.get(1).unwrap_or(&0));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum == 0xffff
}

fn hlen_of(ip: &[u8]) -> usize {
    usize::from(ip[0] & 15) * 4
}

fn frag_off_of(ip: &[u8]) -> u16 {
    u16::from_be_bytes([ip[6], ip[7]])
}

fn tot_len_of(ip: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([ip[2], ip[3]]))
}

/// Any IPv4 packet: header with `opts`, `frag_off` built from a byte offset and flags.
#[allow(clippy::too_many_arguments)]
fn raw(
    src: [u8; 4],
    id: u16,
    tos: u8,
    opts: &[u8],
    off: usize,
    mf: bool,
    df: bool,
    data: &[u8],
) -> Vec<u8> {
    assert!(opts.len().is_multiple_of(4) && opts.len() <= 40);
    let hlen = 20 + opts.len();
    let mut v = vec![0u8; hlen + data.len()];
    v[0] = 0x40 | (hlen / 4) as u8;
    v[1] = tos;
    put16(&mut v, 2, (hlen + data.len()) as u16);
    put16(&mut v, 4, id);
    let mut fo = (off / 8) as u16;
    if mf {
        fo |= IP_MF;
    }
    if df {
        fo |= IP_DF;
    }
    put16(&mut v, 6, fo);
    v[8] = 64;
    v[9] = UDP;
    v[12..16].copy_from_slice(&src);
    v[16..20].copy_from_slice(&DST);
    v[20..hlen].copy_from_slice(opts);
    v[hlen..].copy_from_slice(data);
    set_checksum(&mut v[..hlen]);
    v
}

/// An unfragmented datagram.
fn datagram(id: u16, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    raw(SRC, id, 0, opts, 0, false, false, payload)
}

/// `dg` with DF set (checksum fixed).
fn with_df(dg: &[u8]) -> Vec<u8> {
    let mut v = dg.to_vec();
    let fo = frag_off_of(&v) | IP_DF;
    put16(&mut v, 6, fo);
    let hl = hlen_of(&v);
    set_checksum(&mut v[..hl]);
    v
}

/// The fragment of `dg` holding data `[off, off + len)`; options only if `off == 0`.
fn frag(dg: &[u8], off: usize, len: usize, mf: bool, df: bool) -> Vec<u8> {
    let hl = hlen_of(dg);
    let opts = if off == 0 { &dg[20..hl] } else { &[][..] };
    let src = [dg[12], dg[13], dg[14], dg[15]];
    let id = u16::from_be_bytes([dg[4], dg[5]]);
    raw(
        src,
        id,
        dg[1],
        opts,
        off,
        mf,
        df,
        &dg[hl + off..hl + off + len],
    )
}

/// `dg` cut at the given data sizes (their sum is the payload length).
fn split(dg: &[u8], sizes: &[usize], df: bool) -> Vec<Vec<u8>> {
    let hl = hlen_of(dg);
    assert_eq!(sizes.iter().sum::<usize>(), dg.len() - hl);
    let mut off = 0;
    let mut v = Vec::new();
    for (i, &s) in sizes.iter().enumerate() {
        v.push(frag(dg, off, s, i + 1 < sizes.len(), df));
        off += s;
    }
    v
}

#[derive(Debug, PartialEq)]
enum R {
    NotFragment,
    Held,
    Done(Vec<u8>, Vec<u16>, FragMeta),
    Dropped(DropReason),
}

fn offer_u(d: &mut Defrag, ip: &[u8], user: u32, now: u64) -> R {
    match d.offer(ip, user, 1, now) {
        Offer::NotFragment => R::NotFragment,
        Offer::Held => R::Held,
        Offer::Reassembled(r) => R::Done(r.datagram.to_vec(), r.fragments.to_vec(), r.meta),
        Offer::Dropped(x) => R::Dropped(x),
    }
}

/// Offers at time 0 as conntrack PREROUTING and checks the invariants.
fn offer(d: &mut Defrag, ip: &[u8]) -> R {
    let r = offer_u(d, ip, CT_IN, 0);
    d.check_invariants();
    r
}

fn new() -> Defrag {
    Defrag::new(DefragConfig::default(), 7)
}

fn done(r: R) -> (Vec<u8>, Vec<u16>, FragMeta) {
    match r {
        R::Done(a, b, c) => (a, b, c),
        other => panic!("expected a reassembled datagram, got {other:?}"),
    }
}

fn payload(n: usize, seed: u64) -> Vec<u8> {
    Rng::new(seed).bytes(n)
}

#[test]
fn not_fragment_and_malformed() {
    let mut d = new();
    let dg = datagram(1, &[], &payload(100, 1));
    assert_eq!(offer(&mut d, &dg), R::NotFragment);
    // DF alone is not a fragment.
    assert_eq!(offer(&mut d, &with_df(&dg)), R::NotFragment);
    assert_eq!(d.stats().not_fragment, 2);
    assert_eq!(d.stats().reasm_reqds, 0);

    let f = frag(&dg, 0, 48, true, false);
    for bad in [
        Vec::new(),
        f[..19].to_vec(),
        {
            let mut v = f.clone();
            v[0] = 0x65; // version 6
            v
        },
        {
            let mut v = f.clone();
            v[0] = 0x44; // IHL 4
            v
        },
        {
            let mut v = f.clone();
            v[0] = 0x4f; // IHL 15 > length
            v.truncate(40);
            put16(&mut v, 2, 40);
            v
        },
        f[..f.len() - 1].to_vec(), // total length past the buffer
        {
            let mut v = f.clone();
            put16(&mut v, 2, 19); // total length below the header
            v
        },
    ] {
        assert_eq!(offer(&mut d, &bad), R::Dropped(DropReason::Malformed));
    }
    assert_eq!(d.stats().malformed, 7);
    assert_eq!(d.queues(), 0);
    assert_eq!(d.mem(), 0);
}

#[test]
fn in_order() {
    let mut d = new();
    let dg = datagram(7, &[], &payload(3000, 2));
    let fr = split(&dg, &[1480, 1480, 40], false);
    assert_eq!(offer(&mut d, &fr[0]), R::Held);
    assert_eq!(d.mem(), 200 + 1500 + 1444);
    assert_eq!(offer(&mut d, &fr[1]), R::Held);
    let (out, layout, meta) = done(offer(&mut d, &fr[2]));
    assert_eq!(out, dg);
    assert!(checksum_ok(&out[..20]));
    assert_eq!(layout, vec![1480, 1480, 40]);
    assert_eq!(
        meta,
        FragMeta {
            frag_max_size: 1500,
            frag_pmtu: false,
            ignore_df: true
        }
    );
    let s = d.stats();
    assert_eq!(
        (s.reasm_reqds, s.reasm_oks, s.held, s.reasm_fails),
        (3, 1, 2, 0)
    );
    assert_eq!(d.queues(), 0);
    assert_eq!(d.mem(), 0);
}

#[test]
fn out_of_order_and_trailing_bytes() {
    let dg = datagram(8, &[], &payload(2000, 3));
    let fr = split(&dg, &[512, 256, 256, 512, 464], false);
    for order in [[4, 3, 2, 1, 0], [2, 0, 4, 1, 3], [1, 3, 0, 4, 2]] {
        let mut d = new();
        for (n, &i) in order.iter().enumerate() {
            // Ethernet padding after the datagram is not part of it.
            let mut f = fr[i].clone();
            f.extend_from_slice(&[0xee; 6]);
            let r = offer(&mut d, &f);
            if n + 1 < order.len() {
                assert_eq!(r, R::Held);
            } else {
                let (out, layout, _) = done(r);
                assert_eq!(out, dg);
                assert_eq!(layout, vec![512, 256, 256, 512, 464]);
            }
        }
        assert_eq!(d.mem(), 0);
    }
}

#[test]
fn user_is_part_of_the_key() {
    let mut d = new();
    let dg = datagram(9, &[], &payload(64, 4));
    let fr = split(&dg, &[32, 32], false);
    assert_eq!(offer_u(&mut d, &fr[0], user::conntrack_in(0), 0), R::Held);
    // Another zone, and LOCAL_OUT: separate queues.
    assert_eq!(offer_u(&mut d, &fr[1], user::conntrack_in(1), 0), R::Held);
    assert_eq!(offer_u(&mut d, &fr[1], user::conntrack_out(0), 0), R::Held);
    assert_eq!(d.queues(), 3);
    let (out, _, meta) = done(offer_u(&mut d, &fr[1], user::conntrack_in(0), 0));
    assert_eq!(out, dg);
    assert!(meta.ignore_df);
    // LOCAL_DELIVER reassembly does not set ignore_df.
    assert_eq!(offer_u(&mut d, &fr[0], user::LOCAL_DELIVER, 0), R::Held);
    let (_, _, meta) = done(offer_u(&mut d, &fr[1], user::LOCAL_DELIVER, 0));
    assert!(!meta.ignore_df);
}

#[test]
fn duplicates_are_ignored() {
    let mut d = new();
    let dg = datagram(10, &[], &payload(96, 5));
    let fr = split(&dg, &[32, 32, 32], false);
    assert_eq!(offer(&mut d, &fr[0]), R::Held);
    let mem = d.mem();
    assert_eq!(offer(&mut d, &fr[0]), R::Dropped(DropReason::Duplicate));
    assert_eq!(d.mem(), mem, "a duplicate is not charged");
    assert_eq!(offer(&mut d, &fr[2]), R::Held);
    assert_eq!(offer(&mut d, &fr[2]), R::Dropped(DropReason::Duplicate));
    let (out, _, _) = done(offer(&mut d, &fr[1]));
    assert_eq!(out, dg);
    assert_eq!(d.stats().duplicates, 2);
    assert_eq!(d.stats().reasm_fails, 0);
}

#[test]
fn duplicate_versus_overlap_follows_runs() {
    let dg = datagram(11, &[], &payload(48, 6));
    // In order, [0,16) and [16,32) form one run: [8,24) lies inside it, a duplicate.
    let mut d = new();
    assert_eq!(offer(&mut d, &frag(&dg, 0, 16, true, false)), R::Held);
    assert_eq!(offer(&mut d, &frag(&dg, 16, 16, true, false)), R::Held);
    let mut f = frag(&dg, 8, 16, true, false);
    f[25] ^= 0xff; // its bytes are not used
    let hl = hlen_of(&f);
    set_checksum(&mut f[..hl]);
    assert_eq!(offer(&mut d, &f), R::Dropped(DropReason::Duplicate));
    let (out, _, _) = done(offer(&mut d, &frag(&dg, 32, 16, false, false)));
    assert_eq!(out, dg);

    // Out of order the same bytes are two runs: [8,24) overlaps both, the queue is discarded.
    let mut d = new();
    assert_eq!(offer(&mut d, &frag(&dg, 16, 16, true, false)), R::Held);
    assert_eq!(offer(&mut d, &frag(&dg, 0, 16, true, false)), R::Held);
    assert_eq!(
        offer(&mut d, &frag(&dg, 8, 16, true, false)),
        R::Dropped(DropReason::Overlap)
    );
    assert_eq!(d.queues(), 0);
    assert_eq!(d.mem(), 0);
    assert_eq!(d.stats().reasm_overlaps, 1);
    assert_eq!(d.stats().reasm_fails, 1);
}

#[test]
fn overlap_drops_the_queue() {
    let mut d = new();
    let dg = datagram(12, &[], &payload(64, 7));
    assert_eq!(offer(&mut d, &frag(&dg, 0, 16, true, false)), R::Held);
    // Goes past the tail but starts inside it.
    assert_eq!(
        offer(&mut d, &frag(&dg, 8, 16, true, false)),
        R::Dropped(DropReason::Overlap)
    );
    assert_eq!(d.queues(), 0);
    // The next fragment starts a new queue.
    assert_eq!(offer(&mut d, &frag(&dg, 16, 16, true, false)), R::Held);
    assert_eq!(d.queues(), 1);
    // Overlap inside a gap before the tail: [32,48) against the run [32,40) found there.
    assert_eq!(offer(&mut d, &frag(&dg, 48, 16, false, false)), R::Held);
    assert_eq!(offer(&mut d, &frag(&dg, 32, 8, true, false)), R::Held);
    assert_eq!(
        offer(&mut d, &frag(&dg, 32, 16, true, false)),
        R::Dropped(DropReason::Overlap)
    );
    assert_eq!(d.queues(), 0);
    assert_eq!(d.mem(), 0);
}

#[test]
fn timeout_frees_memory_and_reports_icmp_candidates() {
    let mut d = new();
    let dg = datagram(13, &[], &payload(1000, 8));
    let fr = split(&dg, &[800, 200], false);
    assert_eq!(offer_u(&mut d, &fr[0], CT_IN, 1000), R::Held);
    assert_eq!(offer_u(&mut d, &fr[0], user::LOCAL_DELIVER, 1000), R::Held);
    // A queue whose first fragment never came.
    assert_eq!(offer_u(&mut d, &fr[1], user::CONNTRACK_OUT, 2000), R::Held);
    assert_eq!(d.next_deadline(), Some(31_000));
    let mut events = Vec::new();
    assert_eq!(d.expire(30_999, 100, |e| events.push(*e)), 0);
    assert_eq!(d.expire(31_000, 100, |e| events.push(*e)), 2);
    assert_eq!(d.queues(), 1);
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].icmp, IcmpOnExpire::IfLocalRoute);
    assert_eq!(events[0].key.user, CT_IN);
    assert_eq!(events[0].key.id, 13);
    assert_eq!(events[0].key.src, Ipv4Addr::from(SRC));
    assert_eq!(events[0].iif, 1);
    assert_eq!(events[0].first_fragment(), &fr[0][..EXPIRED_QUOTE]);
    assert_eq!(events[1].icmp, IcmpOnExpire::IfRouted);
    // No first fragment: expires silently.
    assert_eq!(d.expire(32_000, 100, |e| events.push(*e)), 1);
    assert_eq!(events.len(), 2);
    assert_eq!(d.mem(), 0);
    assert_eq!(d.queues(), 0);
    assert_eq!(d.stats().reasm_timeout, 3);
    assert_eq!(d.stats().reasm_fails, 3);
    d.check_invariants();
}

#[test]
fn expiry_is_budgeted_and_lazy() {
    let mut d = new();
    for id in 0..10u16 {
        let dg = datagram(id, &[], &payload(64, 9));
        assert_eq!(
            offer_u(&mut d, &frag(&dg, 0, 32, true, false), CT_IN, u64::from(id)),
            R::Held
        );
    }
    assert_eq!(d.expire(30_009, 3, |_| {}), 3);
    assert_eq!(d.queues(), 7);
    // A fragment finding its queue past the deadline expires it and starts anew.
    let dg = datagram(9, &[], &payload(64, 9));
    assert_eq!(
        offer_u(&mut d, &frag(&dg, 32, 32, false, false), CT_IN, 30_009),
        R::Held
    );
    let e = d.pop_expired().expect("lazy expiry event");
    assert_eq!(e.key.id, 9);
    assert!(d.pop_expired().is_none());
    assert_eq!(d.stats().reasm_timeout, 4);
    assert_eq!(d.queues(), 7);
    assert_eq!(d.expire(30_008, usize::MAX, |_| {}), 6);
    assert_eq!(d.queues(), 1);
    d.check_invariants();
    d.purge();
    assert_eq!((d.queues(), d.mem()), (0, 0));
}

#[test]
fn memory_bound() {
    let cfg = DefragConfig {
        high_thresh: 50_000,
        ..DefragConfig::default()
    };
    let mut d = Defrag::new(cfg, 1);
    let per_queue = 200 + 1020 + 1444;
    for id in 0..100u16 {
        let dg = datagram(id, &[], &payload(2000, 10));
        let r = offer(&mut d, &frag(&dg, 0, 1000, true, false));
        if id < 19 {
            assert_eq!(r, R::Held, "id {id}");
        } else {
            assert_eq!(r, R::Dropped(DropReason::MemLimit), "id {id}");
        }
        assert!(d.mem() <= d.mem_bound());
    }
    assert_eq!(d.queues(), 19);
    assert_eq!(d.mem(), 19 * per_queue);
    assert!(d.mem() > 50_000);
    assert_eq!(d.stats().mem_limit, 81);
    assert_eq!(d.stats().reasm_fails, 81);
    // Over the limit even a fragment of an existing queue is refused (inet_frag_find).
    let dg = datagram(0, &[], &payload(2000, 10));
    assert_eq!(
        offer(&mut d, &frag(&dg, 1000, 1000, false, false)),
        R::Dropped(DropReason::MemLimit)
    );
    // Timeouts give the memory back.
    assert_eq!(d.expire(30_000, usize::MAX, |_| {}), 19);
    assert_eq!(d.mem(), 0);
    assert_eq!(
        offer_u(&mut d, &frag(&dg, 0, 1000, true, false), CT_IN, 30_000),
        R::Held
    );

    // high_thresh 0 refuses everything.
    let mut d = Defrag::new(
        DefragConfig {
            high_thresh: 0,
            ..DefragConfig::default()
        },
        1,
    );
    assert_eq!(
        offer(&mut d, &frag(&dg, 0, 1000, true, false)),
        R::Dropped(DropReason::MemLimit)
    );
}

#[test]
fn memory_never_exceeds_the_bound_under_load() {
    let mut d = new();
    let mut rng = Rng::new(11);
    let mut now = 0u64;
    for i in 0..20_000u32 {
        let plen = 8 + 8 * rng.below(180);
        let data = rng.bytes(plen);
        let src = [10, 9, (i >> 8) as u8, i as u8];
        let f = raw(
            src,
            i as u16,
            0,
            &[],
            8 * rng.below(100),
            true,
            false,
            &data,
        );
        let _ = offer_u(&mut d, &f, CT_IN, now);
        assert!(d.mem() <= d.mem_bound());
        assert!(d.mem() <= d.config().high_thresh + 200 + 1444 + 65535);
        if i % 2000 == 0 {
            d.check_invariants();
        }
        now += 3;
        d.expire(now, 4, |_| {});
    }
    assert!(d.stats().mem_limit > 0);
    assert_eq!(d.stats().no_buffer, 0);
    d.check_invariants();
    d.expire(now + 30_000, usize::MAX, |_| {});
    assert_eq!((d.queues(), d.mem()), (0, 0));
    d.check_invariants();
}

#[test]
fn too_far() {
    let dg = datagram(1, &[], &payload(64, 12));
    let fr = split(&dg, &[32, 32], false);
    let others = |d: &mut Defrag, n: u16, src: [u8; 4]| {
        for id in 0..n {
            let f = raw(src, 1000 + id, 0, &[], 0, true, false, &[0; 8]);
            assert_eq!(offer(d, &f), R::Held);
        }
    };
    // 63 fragments of other queues from the same source in between: fine.
    let mut d = new();
    assert_eq!(offer(&mut d, &fr[0]), R::Held);
    others(&mut d, 63, SRC);
    done(offer(&mut d, &fr[1]));
    assert_eq!(d.stats().too_far, 0);

    // 64: too far; the queue is flushed and restarted with the new fragment.
    let mut d = new();
    assert_eq!(offer(&mut d, &fr[0]), R::Held);
    others(&mut d, 64, SRC);
    assert_eq!(offer(&mut d, &fr[1]), R::Held);
    assert_eq!(d.stats().too_far, 1);
    assert_eq!(d.stats().reasm_fails, 1);
    let (out, _, _) = done(offer(&mut d, &fr[0]));
    assert_eq!(out, dg);

    // Other sources do not count.
    let mut d = new();
    assert_eq!(offer(&mut d, &fr[0]), R::Held);
    others(&mut d, 200, [10, 0, 0, 99]);
    done(offer(&mut d, &fr[1]));

    // max_dist 0 disables it.
    let mut d = Defrag::new(
        DefragConfig {
            max_dist: 0,
            ..DefragConfig::default()
        },
        3,
    );
    assert_eq!(offer(&mut d, &fr[0]), R::Held);
    others(&mut d, 200, SRC);
    done(offer(&mut d, &fr[1]));
    assert_eq!(d.stats().too_far, 0);
}

#[test]
fn reinit_rearms_the_timer() {
    let mut d = new();
    let dg = datagram(1, &[], &payload(64, 13));
    let fr = split(&dg, &[32, 32], false);
    assert_eq!(offer_u(&mut d, &fr[0], CT_IN, 0), R::Held);
    for id in 0..64u16 {
        let f = raw(SRC, 1000 + id, 0, &[], 0, true, false, &[0; 8]);
        assert_eq!(offer_u(&mut d, &f, CT_IN, 10), R::Held);
    }
    assert_eq!(offer_u(&mut d, &fr[1], CT_IN, 20_000), R::Held);
    assert_eq!(d.stats().too_far, 1);
    d.check_invariants();
    // The 64 others expire at 30 010; queue 1 now at 50 000.
    assert_eq!(d.expire(40_000, usize::MAX, |_| {}), 64);
    assert_eq!(d.queues(), 1);
    assert_eq!(d.next_deadline(), Some(50_000));
    let (out, _, _) = done(offer_u(&mut d, &fr[0], CT_IN, 49_999));
    assert_eq!(out, dg);
}

#[test]
fn datagram_size_limit() {
    let big = payload(65_512, 14);
    // Header 20 + data 65 512 + 100 > 65 535.
    let mut d = new();
    assert_eq!(
        offer(&mut d, &raw(SRC, 5, 0, &[], 0, true, false, &big)),
        R::Held
    );
    assert_eq!(
        offer(
            &mut d,
            &raw(SRC, 5, 0, &[], 65_512, false, false, &[1; 100])
        ),
        R::Dropped(DropReason::TooBig)
    );
    assert_eq!(d.stats().too_big, 1);
    assert_eq!(d.stats().reasm_fails, 1);
    assert_eq!((d.queues(), d.mem()), (0, 0));
    // Exactly 65 535 is fine.
    assert_eq!(
        offer(&mut d, &raw(SRC, 6, 0, &[], 0, true, false, &big)),
        R::Held
    );
    let (out, _, _) = done(offer(
        &mut d,
        &raw(SRC, 6, 0, &[], 65_512, false, false, &[1; 3]),
    ));
    assert_eq!(out.len(), 65_535);
    assert_eq!(tot_len_of(&out), 65_535);
    assert_eq!(&out[20..20 + 65_512], &big[..]);
    // With options in the first fragment, the same data is too big.
    let opts = [1u8; 4];
    let first = raw(SRC, 7, 0, &opts, 0, true, false, &big[..65_504]);
    assert_eq!(offer(&mut d, &first), R::Held);
    // 24 + 65 504 + 8 = 65 536.
    assert_eq!(
        offer(&mut d, &raw(SRC, 7, 0, &[], 65_504, false, false, &[1; 8])),
        R::Dropped(DropReason::TooBig)
    );
}

#[test]
fn tiny_fragments() {
    let dg = datagram(15, &[], &payload(200, 15));
    let mut fr = split(&dg, &[8; 25], false);
    let mut rng = Rng::new(15);
    rng.shuffle(&mut fr);
    let mut d = new();
    let mut result = None;
    for f in &fr {
        match offer(&mut d, f) {
            R::Held => {}
            R::Done(out, layout, meta) => result = Some((out, layout, meta)),
            other => panic!("{other:?}"),
        }
    }
    let (out, layout, meta) = result.expect("reassembled");
    assert_eq!(out, dg);
    assert_eq!(layout, vec![8; 25]);
    assert_eq!(meta.frag_max_size, 28);
}

#[test]
fn many_tiny_fragments_out_of_order() {
    let cfg = DefragConfig {
        high_thresh: 16 << 20,
        frag_overhead: MIN_FRAG_OVERHEAD,
        ..DefragConfig::default()
    };
    let mut d = Defrag::new(cfg, 16);
    let dg = datagram(16, &[], &payload(64_000, 16));
    let mut fr = split(&dg, &[8; 8000], false);
    Rng::new(16).shuffle(&mut fr);
    let mut result = None;
    for (i, f) in fr.iter().enumerate() {
        match offer_u(&mut d, f, CT_IN, 0) {
            R::Held => {}
            R::Done(out, ..) => result = Some(out),
            other => panic!("{other:?}"),
        }
        if i == 4000 {
            d.check_invariants();
        }
    }
    assert_eq!(result.expect("reassembled"), dg);
    assert_eq!(d.mem(), 0);
}

#[test]
fn last_fragment_inconsistencies() {
    let dg = datagram(17, &[], &payload(64, 17));
    // Two final fragments with different ends.
    let mut d = new();
    assert_eq!(offer(&mut d, &frag(&dg, 16, 8, false, false)), R::Held);
    assert_eq!(
        offer(&mut d, &frag(&dg, 16, 16, false, false)),
        R::Dropped(DropReason::LastMismatch)
    );
    assert_eq!((d.queues(), d.mem()), (0, 0));
    // A final fragment ending before data already seen.
    assert_eq!(offer(&mut d, &frag(&dg, 0, 32, true, false)), R::Held);
    assert_eq!(
        offer(&mut d, &frag(&dg, 8, 8, false, false)),
        R::Dropped(DropReason::LastMismatch)
    );
    // A non-final fragment beyond the end.
    assert_eq!(offer(&mut d, &frag(&dg, 16, 8, false, false)), R::Held);
    assert_eq!(
        offer(&mut d, &frag(&dg, 24, 8, true, false)),
        R::Dropped(DropReason::BeyondEnd)
    );
    let s = *d.stats();
    assert_eq!((s.last_mismatch, s.beyond_end, s.reasm_fails), (2, 1, 3));
    assert_eq!((d.queues(), d.mem()), (0, 0));
    // The same final fragment twice is a duplicate.
    assert_eq!(offer(&mut d, &frag(&dg, 16, 8, false, false)), R::Held);
    assert_eq!(
        offer(&mut d, &frag(&dg, 16, 8, false, false)),
        R::Dropped(DropReason::Duplicate)
    );
    d.purge();
}

#[test]
fn empty_and_rounded_fragments() {
    let dg = datagram(18, &[], &payload(64, 18));
    let mut d = new();
    // A non-final fragment of 5 bytes rounds down to nothing: it kills the existing queue.
    assert_eq!(offer(&mut d, &frag(&dg, 8, 8, true, false)), R::Held);
    assert_eq!(
        offer(&mut d, &frag(&dg, 0, 5, true, false)),
        R::Dropped(DropReason::Empty)
    );
    assert_eq!(d.stats().empty, 1);
    assert_eq!((d.queues(), d.mem()), (0, 0));
    // A zero-length final fragment at the current end is empty too.
    assert_eq!(
        offer(&mut d, &frag(&dg, 16, 0, false, false)),
        R::Dropped(DropReason::Empty)
    );
    // A non-final fragment of 13 bytes keeps 8; the rest is cut off.
    let mut d = new();
    assert_eq!(offer(&mut d, &frag(&dg, 0, 13, true, false)), R::Held);
    let (out, layout, meta) = done(offer(&mut d, &frag(&dg, 8, 12, false, false)));
    assert_eq!(&out[..], &datagram(18, &[], &dg[20..40])[..]);
    assert_eq!(layout, vec![8, 12]);
    // fragsize counts the trimmed length.
    assert_eq!(meta.frag_max_size, 32);
}

#[test]
fn duplicate_final_range_still_marks_the_end() {
    // The kernel sets LAST_IN before the insertion finds the duplicate.
    let dg = datagram(19, &[], &payload(16, 19));
    let mut d = new();
    assert_eq!(offer(&mut d, &frag(&dg, 8, 8, true, false)), R::Held);
    assert_eq!(
        offer(&mut d, &frag(&dg, 8, 8, false, false)),
        R::Dropped(DropReason::Duplicate)
    );
    let (out, _, _) = done(offer(&mut d, &frag(&dg, 0, 8, true, false)));
    assert_eq!(out, dg);
}

#[test]
fn ecn_combinations() {
    let data = payload(16, 20);
    let run = |tos0: u8, tos1: u8| -> R {
        let mut d = new();
        assert_eq!(
            offer(&mut d, &raw(SRC, 20, tos0, &[], 0, true, false, &data[..8])),
            R::Held
        );
        let r = offer(
            &mut d,
            &raw(SRC, 20, tos1, &[], 8, false, false, &data[8..]),
        );
        assert_eq!((d.queues(), d.mem()), (0, 0));
        r
    };
    // Not-ECT mixed with anything ECN-capable is dropped.
    for (a, b) in [(0, 1), (0, 2), (0, 3), (2, 0), (3, 0)] {
        assert_eq!(run(a, b), R::Dropped(DropReason::BadEcn), "{a} {b}");
    }
    // CE with ECT: CE.
    for (a, b) in [(2, 3), (1, 3), (3, 2)] {
        let (out, _, _) = done(run(a | 0xb8, b | 0xb8));
        assert_eq!(out[1], 0xbb, "{a} {b}");
        assert!(checksum_ok(&out[..20]));
    }
    // Same codepoint, or ECT(0) with ECT(1): tos of the first fragment.
    for (a, b) in [(0, 0), (1, 1), (2, 2), (3, 3), (1, 2), (2, 1)] {
        let (out, _, _) = done(run(a, b));
        assert_eq!(out[1], a, "{a} {b}");
    }
    let mut d = new();
    assert_eq!(
        offer(&mut d, &raw(SRC, 20, 0, &[], 0, true, false, &data[..8])),
        R::Held
    );
    assert_eq!(
        offer(&mut d, &raw(SRC, 20, 2, &[], 8, false, false, &data[8..])),
        R::Dropped(DropReason::BadEcn)
    );
    assert_eq!(d.stats().bad_ecn, 1);
    assert_eq!(d.stats().reasm_fails, 1);
}

#[test]
fn options_come_from_the_first_fragment() {
    let dg = datagram(21, &OPTS, &payload(1000, 21));
    let fr = split(&dg, &[400, 400, 200], false);
    assert_eq!(hlen_of(&fr[0]), 32);
    assert_eq!(hlen_of(&fr[1]), 20);
    let mut d = new();
    assert_eq!(offer(&mut d, &fr[2]), R::Held);
    assert_eq!(offer(&mut d, &fr[0]), R::Held);
    let (out, layout, meta) = done(offer(&mut d, &fr[1]));
    assert_eq!(out, dg);
    assert_eq!(layout, vec![400, 400, 200]);
    assert_eq!(meta.frag_max_size, 432);
    // A later fragment's header never matters: options there are ignored.
    let mut odd = raw(
        SRC,
        21,
        0,
        &[0x94, 4, 0, 0],
        400,
        true,
        false,
        &dg[32 + 400..32 + 800],
    );
    let hl = hlen_of(&odd);
    set_checksum(&mut odd[..hl]);
    let mut d = new();
    assert_eq!(offer(&mut d, &fr[0]), R::Held);
    assert_eq!(offer(&mut d, &odd), R::Held);
    let (out, _, meta) = done(offer(&mut d, &fr[2]));
    assert_eq!(out, dg);
    assert_eq!(meta.frag_max_size, 432);
}

#[test]
fn dont_fragment_and_frag_max_size() {
    let dg = datagram(22, &[], &payload(3000, 22));
    // All fragments DF: the datagram gets DF and IPSKB_FRAG_PMTU.
    let mut d = new();
    let mut last = None;
    for f in split(&dg, &[1480, 1480, 40], true) {
        last = Some(offer(&mut d, &f));
    }
    let (out, _, meta) = done(last.unwrap());
    assert_eq!(out, with_df(&dg));
    assert_eq!(
        meta,
        FragMeta {
            frag_max_size: 1500,
            frag_pmtu: true,
            ignore_df: true
        }
    );
    // Only a small fragment had DF: no DF, no PMTU flag.
    let mut d = new();
    assert_eq!(offer(&mut d, &frag(&dg, 0, 1480, true, false)), R::Held);
    assert_eq!(offer(&mut d, &frag(&dg, 1480, 1480, true, false)), R::Held);
    let (out, _, meta) = done(offer(&mut d, &frag(&dg, 2960, 40, false, true)));
    assert_eq!(out, dg);
    assert_eq!(meta.frag_max_size, 1500);
    assert!(!meta.frag_pmtu);
    // The largest fragment had DF (and a smaller one not): DF.
    let mut d = new();
    assert_eq!(offer(&mut d, &frag(&dg, 0, 1480, true, true)), R::Held);
    assert_eq!(offer(&mut d, &frag(&dg, 1480, 1480, true, false)), R::Held);
    let (out, _, meta) = done(offer(&mut d, &frag(&dg, 2960, 40, false, false)));
    assert_eq!(frag_off_of(&out), IP_DF);
    assert!(meta.frag_pmtu);
    // Reserved bit and other flag bits of the first fragment are cleared.
    let mut d = new();
    let mut f0 = frag(&dg, 0, 1480, true, false);
    f0[6] |= 0x80;
    set_checksum(&mut f0[..20]);
    assert_eq!(offer(&mut d, &f0), R::Held);
    assert_eq!(offer(&mut d, &frag(&dg, 1480, 1480, true, false)), R::Held);
    let (out, _, _) = done(offer(&mut d, &frag(&dg, 2960, 40, false, false)));
    assert_eq!(out, dg);
}

fn fragment_all(
    dg: &[u8],
    meta: &FragMeta,
    mtu: u32,
    layout: Option<&[u16]>,
) -> (Vec<Vec<u8>>, FragDone) {
    let mut f = Fragmenter::new();
    let mut v = Vec::new();
    let done = f
        .fragment(dg, meta, mtu, layout, |p| v.push(p.to_vec()))
        .expect("fragmented");
    assert_eq!(done.fragments as usize, v.len());
    (v, done)
}

fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
    let mut d = new();
    let mut order: Vec<usize> = (0..frags.len()).collect();
    Rng::new(frags.len() as u64).shuffle(&mut order);
    let mut out = None;
    for &i in &order {
        match offer(&mut d, &frags[i]) {
            R::Held => {}
            R::Done(o, ..) => out = Some(o),
            other => panic!("{other:?}"),
        }
    }
    out.expect("reassembled")
}

#[test]
fn refragment_slow_path_with_options() {
    let dg = datagram(30, &OPTS, &payload(4000, 30));
    let (fr, fd) = fragment_all(&dg, &FragMeta::default(), 1500, None);
    assert!(!fd.fast_path);
    // Data space 1500 - 32 = 1468, rounded down to 1464.
    let sizes: Vec<usize> = fr.iter().map(|f| f.len()).collect();
    assert_eq!(sizes, vec![32 + 1464, 32 + 1464, 32 + 1072]);
    let mut off = 0;
    for (i, f) in fr.iter().enumerate() {
        assert_eq!(hlen_of(f), 32, "header length unchanged");
        assert_eq!(tot_len_of(f), f.len());
        assert!(checksum_ok(&f[..32]));
        let fo = frag_off_of(f);
        assert_eq!(usize::from(fo & IP_OFFSET) * 8, off);
        assert_eq!(fo & IP_MF != 0, i + 1 < fr.len());
        assert_eq!(fo & IP_DF, 0);
        if i == 0 {
            assert_eq!(&f[20..32], &OPTS);
        } else {
            // Record route (not copied) became NOOPs; router alert and END kept.
            assert_eq!(&f[20..32], &[1, 1, 1, 1, 1, 1, 1, 0x94, 4, 0, 0, 0]);
        }
        assert_eq!(&f[32..], &dg[32 + off..32 + off + f.len() - 32]);
        off += f.len() - 32;
    }
    assert_eq!(reassemble(&fr), dg);
}

#[test]
fn refragment_honours_frag_max_size_and_pmtu() {
    let dg = with_df(&datagram(31, &[], &payload(2000, 31)));
    let meta = FragMeta {
        frag_max_size: 600,
        frag_pmtu: true,
        ignore_df: true,
    };
    assert_eq!(
        forward_action(dg.len(), true, &meta, 1500),
        OutputAction::Fragment
    );
    let (fr, _) = fragment_all(&dg, &meta, 1500, None);
    // 600 - 20 = 580, rounded down to 576.
    let sizes: Vec<usize> = fr.iter().map(|f| f.len() - 20).collect();
    assert_eq!(sizes, vec![576, 576, 576, 272]);
    for f in &fr {
        assert!(f.len() <= 600);
        assert_ne!(
            frag_off_of(f) & IP_DF,
            0,
            "DF on every fragment (IPSKB_FRAG_PMTU)"
        );
    }
    assert_eq!(reassemble(&fr), dg);
    // Fitting datagram, frag_max_size set: one packet, frag_off rebuilt.
    let small = datagram(32, &[], &payload(100, 32));
    let (fr, _) = fragment_all(&small, &meta, 1500, None);
    assert_eq!(fr, vec![with_df(&small)]);
}

#[test]
fn refragment_fast_path_reuses_original_boundaries() {
    let dg = datagram(33, &[], &payload(3000, 33));
    let mut d = new();
    let mut last = None;
    for f in split(&dg, &[1480, 1480, 40], true) {
        last = Some(offer(&mut d, &f));
    }
    let (re, layout, meta) = done(last.unwrap());
    assert!(meta.frag_pmtu);
    let (fr, fd) = fragment_all(&re, &meta, 1500, Some(layout.as_slice()));
    assert!(fd.fast_path);
    let sizes: Vec<usize> = fr.iter().map(|f| f.len()).collect();
    assert_eq!(sizes, vec![1500, 1500, 60]);
    let offs: Vec<u16> = fr.iter().map(|f| frag_off_of(f)).collect();
    // DF is cleared by ip_fraglist_init.
    assert_eq!(offs, vec![IP_MF, IP_MF | 185, 370]);
    for f in &fr {
        assert!(checksum_ok(&f[..20]));
    }
    assert_eq!(reassemble(&fr), dg);

    // A smaller MTU breaks the geometry: slow path, with DF (IPSKB_FRAG_PMTU).
    let (fr, fd) = fragment_all(&re, &meta, 1000, Some(layout.as_slice()));
    assert!(!fd.fast_path);
    // The slow path cuts the whole datagram: 1000 - 20 = 980, rounded down to 976.
    let sizes: Vec<usize> = fr.iter().map(|f| f.len() - 20).collect();
    assert_eq!(sizes, vec![976, 976, 976, 72]);
    assert!(fr.iter().all(|f| frag_off_of(f) & IP_DF != 0));
    assert_eq!(reassemble(&fr), with_df(&dg));

    // A layout that does not match the data: slow path.
    let (_, fd) = fragment_all(&re, &meta, 1500, Some(&[1480u16, 1480][..]));
    assert!(!fd.fast_path);
}

#[test]
fn refragment_fast_path_with_options() {
    let dg = datagram(34, &OPTS, &payload(3000, 34));
    let fr0 = split(&dg, &[1464, 1464, 72], false);
    let sizes: Vec<usize> = fr0.iter().map(|f| f.len()).collect();
    assert_eq!(sizes, vec![1496, 1484, 92]);
    let mut d = new();
    let mut last = None;
    for f in &fr0 {
        last = Some(offer(&mut d, f));
    }
    let (re, layout, meta) = done(last.unwrap());
    assert_eq!(re, dg);
    assert_eq!(meta.frag_max_size, 1496);
    let (fr, fd) = fragment_all(&re, &meta, 1500, Some(layout.as_slice()));
    assert!(fd.fast_path);
    let sizes: Vec<usize> = fr.iter().map(|f| f.len()).collect();
    assert_eq!(sizes, vec![1496, 1496, 104]);
    assert_eq!(&fr[0][20..32], &OPTS);
    for f in &fr[1..] {
        assert_eq!(&f[20..32], &[1, 1, 1, 1, 1, 1, 1, 0x94, 4, 0, 0, 0]);
        assert!(checksum_ok(&f[..32]));
    }
    assert_eq!(reassemble(&fr), dg);
}

#[test]
fn refragment_errors() {
    let dg = datagram(35, &[], &payload(100, 35));
    let mut f = Fragmenter::new();
    let meta = FragMeta::default();
    assert_eq!(
        f.fragment(&dg, &meta, 27, None, |_| {}),
        Err(FragError::MtuTooSmall)
    );
    assert_eq!(
        f.fragment(&dg[..10], &meta, 1500, None, |_| {}),
        Err(FragError::Malformed)
    );
    // frag_max_size lowers the MTU below the header + 8.
    let tiny = FragMeta {
        frag_max_size: 24,
        ..FragMeta::default()
    };
    assert_eq!(
        f.fragment(&dg, &tiny, 1500, None, |_| {}),
        Err(FragError::MtuTooSmall)
    );
    // MTU 28: 8-byte pieces.
    let (fr, _) = fragment_all(&dg, &meta, 28, None);
    assert_eq!(fr.len(), 13);
    assert_eq!(reassemble(&fr), dg);
    // Refragmenting a fragment keeps its offset and MF.
    let big = datagram(36, &[], &payload(800, 36));
    let mid = frag(&big, 200, 400, true, false);
    let (fr, _) = fragment_all(&mid, &meta, 220, None);
    let offs: Vec<u16> = fr.iter().map(|f| frag_off_of(f)).collect();
    assert_eq!(offs, vec![IP_MF | 25, IP_MF | 50]);
}

#[test]
fn mtu_decisions() {
    let none = FragMeta::default();
    let ct = FragMeta {
        frag_max_size: 1500,
        frag_pmtu: true,
        ignore_df: true,
    };
    let ld = FragMeta {
        ignore_df: false,
        ..ct
    };
    assert_eq!(forward_action(1000, true, &none, 1500), OutputAction::Send);
    assert_eq!(
        forward_action(2000, false, &none, 1500),
        OutputAction::Fragment
    );
    assert_eq!(
        forward_action(2000, true, &none, 1500),
        OutputAction::FragNeeded { mtu: 1500 }
    );
    assert!(ip_exceeds_mtu(2000, true, &none, 1500));
    // Conntrack-reassembled DF datagram whose fragments fit: refragmented.
    assert_eq!(
        forward_action(3000, true, &ct, 1500),
        OutputAction::Fragment
    );
    assert!(!ip_exceeds_mtu(3000, true, &ct, 1500));
    // Its largest fragment does not fit: ICMP with the MTU.
    assert_eq!(
        forward_action(3000, true, &ct, 1400),
        OutputAction::FragNeeded { mtu: 1400 }
    );
    // Reassembled datagrams are refragmented even when they fit.
    assert_eq!(
        forward_action(1000, true, &ct, 1500),
        OutputAction::Fragment
    );
    assert_eq!(
        forward_action(1000, false, &ld, 1500),
        OutputAction::Fragment
    );
    // Without ignore_df a DF datagram is refused even though it fits.
    assert_eq!(
        output_action(1000, true, &ld, 1500),
        OutputAction::FragNeeded { mtu: 1500 }
    );
    assert_eq!(
        forward_action(3000, true, &ld, 1500),
        OutputAction::FragNeeded { mtu: 1500 }
    );
}

#[test]
fn options_fragment_rules() {
    let mut o = OPTS;
    ip_options_fragment(&mut o);
    assert_eq!(o, [1, 1, 1, 1, 1, 1, 1, 0x94, 4, 0, 0, 0]);
    // END stops; NOOPs are skipped.
    let mut o = [1, 0, 0x07, 3, 0, 0];
    ip_options_fragment(&mut o);
    assert_eq!(o, [1, 0, 0x07, 3, 0, 0]);
    // Malformed lengths stop the walk.
    for bad in [[0x07u8, 1, 0, 0], [0x07, 9, 0, 0], [1, 1, 1, 0x44]] {
        let mut o = bad;
        ip_options_fragment(&mut o);
        assert_eq!(o, bad);
    }
    // Timestamp (0x44, not copied) and security (0x82, copied).
    let mut o = [0x44, 4, 5, 0, 0x82, 4, 9, 9];
    ip_options_fragment(&mut o);
    assert_eq!(o, [1, 1, 1, 1, 0x82, 4, 9, 9]);
}

#[test]
fn randomized_reassembly() {
    let mut rng = Rng::new(0x5eed);
    let mut d = Defrag::new(DefragConfig::default(), 99);
    let mut now = 0u64;
    for round in 0..300u32 {
        let k = 1 + rng.below(4);
        let mut dgs = Vec::new();
        let mut all: Vec<(usize, Vec<u8>)> = Vec::new();
        for j in 0..k {
            let plen = 9 + rng.below(2000);
            let nopt = rng.below(11) * 4;
            let opts: Vec<u8> = if rng.chance(50) {
                vec![1; nopt]
            } else {
                (0..nopt).map(|i| [0x94, 4, 0, 0][i % 4]).collect()
            };
            let src = [10, 1 + j as u8, (round >> 8) as u8, round as u8];
            let id = rng.next() as u16;
            let tos = rng.next() as u8;
            let df = rng.chance(30);
            let dg = raw(src, id, tos, &opts, 0, false, false, &rng.bytes(plen));
            // Sizes: multiples of 8, at least two pieces.
            let mut sizes = Vec::new();
            let mut left = plen;
            while left > 0 {
                let max = if sizes.is_empty() {
                    (plen - 1) / 8
                } else {
                    185
                };
                let s = 8 * (1 + rng.below(max.clamp(1, 185)));
                if s >= left {
                    sizes.push(left);
                    break;
                }
                sizes.push(s);
                left -= s;
            }
            assert!(sizes.len() >= 2);
            for f in split(&dg, &sizes, df) {
                if rng.chance(15) {
                    all.push((j, f.clone()));
                }
                all.push((j, f));
            }
            dgs.push(if df { with_df(&dg) } else { dg });
        }
        rng.shuffle(&mut all);
        let mut completed = vec![0u32; k];
        for (j, f) in &all {
            match offer_u(&mut d, f, CT_IN, now) {
                R::Held | R::Dropped(DropReason::Duplicate) => {}
                R::Done(out, layout, meta) => {
                    assert_eq!(out, dgs[*j], "round {round}");
                    assert_eq!(
                        layout.iter().map(|&l| usize::from(l)).sum::<usize>(),
                        out.len() - hlen_of(&out)
                    );
                    assert_eq!(meta.frag_pmtu, frag_off_of(&out) == IP_DF);
                    // Refragment at the original sizes and back.
                    let (fr, _) = fragment_all(&out, &meta, 1500, Some(layout.as_slice()));
                    assert!(fr
                        .iter()
                        .all(|f| f.len() <= usize::from(meta.frag_max_size)));
                    let mut d2 = new();
                    let mut again = None;
                    for f in &fr {
                        if let R::Done(o, ..) = offer_u(&mut d2, f, CT_IN, 0) {
                            again = Some(o);
                        }
                    }
                    let again = again.expect("re-reassembled");
                    assert_eq!(&again[20..], &out[20..], "round {round}");
                    completed[*j] += 1;
                }
                other => panic!("round {round}: {other:?}"),
            }
        }
        assert!(completed.iter().all(|&c| c >= 1), "round {round}");
        d.check_invariants();
        now += 31_000;
        d.expire(now, usize::MAX, |_| {});
        assert_eq!((d.queues(), d.mem()), (0, 0));
    }
    assert_eq!(d.stats().reasm_overlaps, 0);
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng::new(0xbad);
    let cfg = DefragConfig {
        high_thresh: 200_000,
        ..DefragConfig::default()
    };
    let mut d = Defrag::new(cfg, 5);
    let mut fr = Fragmenter::new();
    let mut now = 0u64;
    for i in 0..30_000u32 {
        let len = rng.below(140);
        let mut p = rng.bytes(len);
        if len >= 20 {
            if rng.chance(80) {
                p[0] = if rng.chance(70) {
                    0x45
                } else {
                    0x40 | (rng.next() as u8 & 15)
                };
            }
            if rng.chance(70) {
                let tl = if rng.chance(80) {
                    len
                } else {
                    rng.below(len + 10)
                };
                put16(&mut p, 2, tl as u16);
            }
            if rng.chance(70) {
                let fo = (rng.below(24) as u16) | if rng.chance(60) { IP_MF } else { 0 };
                put16(&mut p, 6, fo | (rng.next() as u16 & 0xc000));
            }
            // Few keys, so fragments meet.
            p[4] = 0;
            p[5] = rng.below(4) as u8;
            p[9] = 17;
            p[12..16].copy_from_slice(&[10, 0, 0, rng.below(3) as u8]);
            p[16..20].copy_from_slice(&DST);
        }
        let _ = d.offer(&p, rng.below(3) as u32, 1, now);
        assert!(d.mem() <= d.mem_bound());
        let meta = FragMeta {
            frag_max_size: rng.below(2000) as u16,
            frag_pmtu: rng.chance(50),
            ignore_df: rng.chance(50),
        };
        let layout: Vec<u16> = (0..rng.below(4))
            .map(|_| 8 * rng.below(20) as u16)
            .collect();
        let _ = fr.fragment(
            &p,
            &meta,
            rng.below(200) as u32,
            Some(layout.as_slice()),
            |f| {
                assert!(f.len() >= 20);
            },
        );
        if i % 1000 == 0 {
            d.check_invariants();
        }
        now += rng.below(20) as u64;
        d.expire(now, 2, |e| {
            assert!(e.first_fragment().len() >= 20);
        });
        while d.pop_expired().is_some() {}
    }
    d.check_invariants();
    d.expire(now + 30_000, usize::MAX, |_| {});
    assert_eq!((d.queues(), d.mem()), (0, 0));
    d.check_invariants();
}
