//! ftp through source NAT on one tracker, packet by packet: the `PORT` command rewritten to
//! the translated address, the sequence numbers moved after it both ways (and accepted by
//! the window check), and the data connection bound to follow its master.

use super::*;
use crate::conntrack::helper::HelperKind;
use crate::conntrack::{CtConfig, CtKind, HelpOutcome, Outcome};
use crate::packet::CtTemplate;
use std::net::Ipv4Addr;

const C: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const S: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 80);
const N: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);

/// A TCP segment from `src` to `dst` (the tracker tests' builder).
fn seg(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    ports: (u16, u16),
    flags: u8,
    seq: u32,
    ack: u32,
    payload: &[u8],
) -> Vec<u8> {
    crate::conntrack::tests::tcp_data(src, dst, ports.0, ports.1, flags, seq, ack, payload)
}

/// Tracks `ip`, runs `nf_confirm` (helper, adjustment, confirmation) on a copy with room to
/// grow; the outcome and the datagram as it leaves.
fn pass(tr: &mut Tracker, ip: &[u8], template: &CtTemplate) -> (Outcome, HelpOutcome, Vec<u8>) {
    let h = crate::wire::parse_ipv4(ip).unwrap();
    let (o, _) = tr.track_with(&h, ip, true, template);
    if let Outcome::Conn {
        id, created: true, ..
    } = o
    {
        if tr.table.get(id).status & status::SRC_NAT_DONE == 0 {
            tr.nat_null_binding(id, Manip::Dst);
            tr.nat_setup(
                id,
                &Range::onto_range(&Range::default(), N.into()),
                Manip::Src,
            );
        }
    }
    let mut room = ip.to_vec();
    room.resize(ip.len() + 64, 0);
    let help = tr.help(&h, &mut room, &o);
    let len = match help {
        HelpOutcome::Resized(n) => usize::from(n),
        _ => ip.len(),
    };
    room.truncate(len);
    tr.confirm(&o).expect("no clash");
    (o, help, room)
}

fn be32(d: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(d[at..at + 4].try_into().unwrap())
}

#[test]
fn port_through_source_nat_is_rewritten_and_the_stream_adjusted() {
    let mut tr = Tracker::new(CtConfig::default(), 7, 1_000_000_000);
    let ftp = CtTemplate {
        helper: Some(HelperKind::Ftp),
        ..CtTemplate::default()
    };
    let none = CtTemplate::default();
    let (cp, cs, ss) = ((40000, 21), 100u32, 900u32);
    let back = (21, 40000);
    pass(&mut tr, &seg(C, S, cp, 0x02, cs, 0, b""), &ftp);
    pass(&mut tr, &seg(S, N, back, 0x12, ss, cs + 1, b""), &none);
    pass(&mut tr, &seg(C, S, cp, 0x10, cs + 1, ss + 1, b""), &none);
    // The helper reads a line only after one it saw end.
    let user = b"USER a\r\n";
    pass(&mut tr, &seg(C, S, cp, 0x18, cs + 1, ss + 1, user), &none);
    let cs = cs + user.len() as u32;
    let line = b"PORT 10,1,0,2,156,65\r\n";
    let (o, help, out) = pass(&mut tr, &seg(C, S, cp, 0x18, cs + 1, ss + 1, line), &none);
    let Outcome::Conn { id, .. } = o else {
        panic!("{o:?}")
    };
    let new = b"PORT 198,51,100,1,156,65\r\n";
    assert_eq!(help, HelpOutcome::Resized((40 + new.len()) as u16));
    assert_eq!(&out[40..], new);
    assert!(tr.table.get(id).status & status::SEQ_ADJUST != 0);
    let w = |at| be32(&out, at);
    assert_eq!(csum::l4_from_scratch(w(12), w(16), 6, &out[20..]), 0);
    assert_eq!(csum::sum_from_scratch(&out[..20]), 0);
    let exp = tr.expect.iter().next().expect("an expectation").exp;
    assert_eq!(
        (exp.dst, exp.dport, exp.src),
        (N.into(), 40001, Some(S.into()))
    );
    let grown = (new.len() - line.len()) as u32;
    // The client's next segment moves by the growth; the server's ack of the longer stream
    // is in the window and comes back to the client's numbers.
    let next = cs + 1 + line.len() as u32;
    let (_, _, out) = pass(&mut tr, &seg(C, S, cp, 0x10, next, ss + 1, b""), &none);
    assert_eq!(be32(&out, 24), next + grown);
    let (o, _, out) = pass(
        &mut tr,
        &seg(S, N, back, 0x18, ss + 1, next + grown, b"200 ok\r\n"),
        &none,
    );
    assert!(matches!(o, Outcome::Conn { .. }), "in window: {o:?}");
    assert_eq!(be32(&out, 28), next);
    // The server's data connection to the announced address follows the master.
    let (o, _, _) = pass(&mut tr, &seg(S, N, (20, 40001), 0x02, 5, 0, b""), &none);
    let Outcome::Conn {
        id: data,
        kind: CtKind::Related,
        ..
    } = o
    else {
        panic!("not related: {o:?}")
    };
    let reply = *tr.table.get(data).reply();
    assert_eq!((reply.src, reply.sport), (C.into(), 40001), "to the client");
    assert_eq!((reply.dst, reply.dport), (S.into(), 20));
}
