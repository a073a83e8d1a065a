//! ftp through NAT for the routed NAT kernel differential: a control session from a
//! source-NATed LAN client to a server on the B side, or from a B-side client through a DNAT
//! forward of port 21 to a LAN server, announcing its data connection with `PORT`, `EPRT`,
//! `227` or `229`, and the data connection that follows.
//!
//! Each end speaks in its own view of the addresses: the LAN side sees real addresses, the B
//! side translated ones. When the ruleset gives port 21 the ftp helper, the kernel rewrites an
//! announcement whose address differs between the views (`nf_nat_ftp`) and moves the
//! sequence numbers after it; the receiving end here acknowledges what it would have received
//! (the longer or shorter stream), and the data connection is addressed as the rewritten
//! announcement says, so that it follows its master's NAT (`nf_nat_follow_master`). tftp
//! requests from a masqueraded client get their answer from a new server port, which the
//! tftp helper's expectation steers back to the client's own port.

use super::gen::Rng;
use super::nat_gen::{NatPlan, FW_B};
use super::stateful_gen::{ends, other, udp_payload_step, Side, Step, Tcp, F, K, P, S};
use std::net::Ipv4Addr;

/// The LAN server behind the DNAT forward of port 21.
pub const FTP_SERVER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);

/// The nat rule forwarding port 21 of fw's B address to [`FTP_SERVER`].
pub const FTP_FORWARD_RULE: &str = "-A PREROUTING -d 10.200.2.1/32 -i pwsf1 -p tcp -m tcp --dport 21 -j DNAT --to-destination 10.1.0.7\n";

/// Both views of a control connection: (client, server) as the client's side and as the
/// server's side see them.
struct Views {
    client_view: (Ipv4Addr, Ipv4Addr),
    server_view: (Ipv4Addr, Ipv4Addr),
    client_side: Side,
}

fn numbers(a: Ipv4Addr, port: u16) -> String {
    let o = a.octets();
    format!(
        "{},{},{},{},{},{}",
        o[0],
        o[1],
        o[2],
        o[3],
        port >> 8,
        port & 0xff
    )
}

/// One announcement: who says it, the line, and how much longer the kernel makes it when it
/// rewrites the sender's address to `new_addr`.
struct Announcement {
    from_client: bool,
    line: String,
    growth: i32,
}

fn announce(kind: u64, v: &Views, port: u16) -> Announcement {
    // The address the sender names is its own in its view; the kernel writes the one the
    // other side must reach (its own view of the sender).
    let (client_own, client_new) = (v.client_view.0, v.server_view.0);
    let (server_own, server_new) = (v.server_view.1, v.client_view.1);
    let grow = |own: Ipv4Addr, new: Ipv4Addr| {
        numbers(new, port).len() as i32 - numbers(own, port).len() as i32
    };
    match kind {
        0 => Announcement {
            from_client: true,
            line: format!("PORT {}\r\n", numbers(client_own, port)),
            growth: grow(client_own, client_new),
        },
        1 => Announcement {
            from_client: true,
            line: format!("EPRT |1|{client_own}|{port}|\r\n"),
            growth: client_new.to_string().len() as i32 - client_own.to_string().len() as i32,
        },
        2 => Announcement {
            from_client: false,
            line: format!(
                "227 Entering Passive Mode ({}).\r\n",
                numbers(server_own, port)
            ),
            growth: grow(server_own, server_new),
        },
        _ => Announcement {
            from_client: false,
            line: format!("229 Entering Extended Passive Mode (|||{port}|)\r\n"),
            growth: 0,
        },
    }
}

fn view_tcp(v: (Ipv4Addr, Ipv4Addr), cp: u16, sp: u16, seqs: (u32, u32), side: Side) -> Tcp {
    Tcp {
        c: v.0,
        s: v.1,
        cp,
        sp,
        cseq: seqs.0,
        sseq: seqs.1,
        client_side: side,
        wscale: false,
        sack: false,
    }
}

/// An ftp session through NAT for `plan` (None when the plan translates no ftp), on control
/// port `cp` and data port `dp`.
pub fn ftp_through_nat(rng: &mut Rng, plan: &NatPlan, cp: u16, dp: u16) -> Option<Vec<Step>> {
    let forward = plan.ftp_forward && (plan.snat.is_none() || rng.pct(50));
    let views = if forward {
        let cl = ends(rng, Side::B).0;
        Views {
            client_view: (cl, FW_B),
            server_view: (cl, FTP_SERVER),
            client_side: Side::B,
        }
    } else {
        let (c, s) = ends(rng, Side::A);
        // Only behind fw's own address: a data connection the helper did not expect (its
        // announcement dropped by the filter) then ends in fw's INPUT (dropped), where toward
        // a pool address it would be forwarded, hold the tuple and make the client's later
        // flow take a random port, which no replay can repeat.
        let nat = plan.snat.as_ref()?.address(c, s).filter(|a| *a == FW_B)?;
        Views {
            client_view: (c, s),
            server_view: (nat, s),
            client_side: Side::A,
        }
    };
    let a = announce(rng.below(4), &views, dp);
    let growth = if plan.ftp_helper { a.growth } else { 0 };
    let seqs = (rng.next() as u32, rng.next() as u32);
    let side = views.client_side;
    let cv = view_tcp(views.client_view, cp, 21, seqs, side);
    let sv = view_tcp(views.server_view, cp, 21, seqs, side);
    let mut v = vec![cv.seg(true, S, seqs.0, 0, 0, true)];
    v.push(sv.seg(false, S | K, seqs.1, seqs.0.wrapping_add(1), 0, true));
    let mut c = Control {
        cv,
        sv,
        cs: seqs.0.wrapping_add(1),
        ss: seqs.1.wrapping_add(1),
        shift: [0, 0],
    };
    v.push(c.ack(true));
    c.say(&mut v, false, b"220 pollwall ftp\r\n", 0);
    c.say(&mut v, true, b"USER anonymous\r\n", 0);
    c.say(&mut v, false, b"331 ok\r\n", 0);
    c.say(&mut v, a.from_client, a.line.as_bytes(), growth);
    c.say(&mut v, !a.from_client, b"200 ok\r\n", 0);
    v.extend(data_connection(rng, &views, a.from_client, dp));
    if rng.pct(50) {
        c.say(&mut v, false, b"226 done\r\n", 0);
    }
    if rng.pct(40) {
        let (seq, ack) = (c.cs, c.ss.wrapping_add(c.shift[1] as u32));
        v.push(c.cv.seg(true, F | K, seq, ack, 0, false));
    }
    Some(v)
}

/// The control connection's running state: both views, both sequence spaces, and how far
/// the kernel moved each direction's stream (by index: client's, server's).
struct Control {
    cv: Tcp,
    sv: Tcp,
    cs: u32,
    ss: u32,
    shift: [i32; 2],
}

impl Control {
    /// A bare ACK from one end, acknowledging the other's stream as it received it.
    fn ack(&self, from_client: bool) -> Step {
        if from_client {
            let ack = self.ss.wrapping_add(self.shift[1] as u32);
            self.cv.seg(true, K, self.cs, ack, 0, false)
        } else {
            let ack = self.cs.wrapping_add(self.shift[0] as u32);
            self.sv.seg(false, K, self.ss, ack, 0, false)
        }
    }

    /// A line from one end (which the kernel makes `growth` bytes longer), then the other's
    /// acknowledgement of it.
    fn say(&mut self, v: &mut Vec<Step>, from_client: bool, line: &[u8], growth: i32) {
        let step = if from_client {
            let ack = self.ss.wrapping_add(self.shift[1] as u32);
            self.cv.seg_with(true, K | P, self.cs, ack, line, false)
        } else {
            let ack = self.cs.wrapping_add(self.shift[0] as u32);
            self.sv.seg_with(false, K | P, self.ss, ack, line, false)
        };
        v.push(step);
        let n = line.len() as u32;
        if from_client {
            self.cs = self.cs.wrapping_add(n);
            self.shift[0] += growth;
        } else {
            self.ss = self.ss.wrapping_add(n);
            self.shift[1] += growth;
        }
        v.push(self.ack(!from_client));
    }
}

/// The data connection, as each side addresses it: opened by the client to the announced
/// port (passive) or by the server from port 20 (active).
fn data_connection(rng: &mut Rng, v: &Views, active: bool, dp: u16) -> Vec<Step> {
    let seqs = (rng.next() as u32, rng.next() as u32);
    let (opener_view, answer_view, opener_side, from_port) = if active {
        let flip = |p: (Ipv4Addr, Ipv4Addr)| (p.1, p.0);
        (
            flip(v.server_view),
            flip(v.client_view),
            other(v.client_side),
            20,
        )
    } else {
        (
            v.client_view,
            v.server_view,
            v.client_side,
            dp.wrapping_add(1),
        )
    };
    let o = view_tcp(opener_view, from_port, dp, seqs, opener_side);
    let r = view_tcp(answer_view, from_port, dp, seqs, opener_side);
    let (os, rs) = (seqs.0.wrapping_add(1), seqs.1.wrapping_add(1));
    let mut out = vec![o.seg(true, S, seqs.0, 0, 0, true)];
    out.push(r.seg(false, S | K, seqs.1, os, 0, true));
    out.push(o.seg(true, K | P, os, rs, 40, false));
    out.push(r.seg(false, K, rs, os.wrapping_add(40), 0, false));
    if rng.pct(50) {
        out.push(o.seg(true, F | K, os.wrapping_add(40), rs, 0, false));
    }
    out
}

/// A tftp read or write request from a LAN client behind fw's own address (None when the
/// plan masquerades none), answered from a port of the server's own, on client port `cp`.
pub fn tftp_through_nat(rng: &mut Rng, plan: &NatPlan, cp: u16) -> Option<Vec<Step>> {
    let (c, s) = ends(rng, Side::A);
    let nat = plan.snat.as_ref()?.address(c, s).filter(|a| *a == FW_B)?;
    let write = rng.pct(50);
    let mut req = vec![0, if write { 2 } else { 1 }];
    req.extend_from_slice(b"file\0octet\0");
    let tid = 45_000 + rng.below(5000) as u16;
    let answer: &[u8] = if write {
        b"\0\x04\0\0"
    } else {
        b"\0\x03\0\x01data"
    };
    let mut v = vec![udp_payload_step(Side::A, c, s, cp, 69, &req)];
    v.push(udp_payload_step(Side::B, s, nat, tid, cp, answer));
    v.push(udp_payload_step(Side::A, c, s, cp, tid, b"\0\x04\0\x01"));
    if rng.pct(50) {
        v.push(udp_payload_step(Side::B, s, nat, tid, cp, b"\0\x03\0\x02"));
    }
    Some(v)
}
