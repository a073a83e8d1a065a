//! Connections printed as conntrack-tools' `conntrack -L` prints them (libnetfilter_conntrack's
//! default format, acct and timestamps off, zone 0):
//!
//! ```text
//! tcp      6 431999 ESTABLISHED src=A dst=B sport=P dport=Q src=B dst=A sport=Q dport=P [ASSURED] mark=0 use=1
//! ```
//!
//! protocol name and number as `"%-8s %u "`, seconds left (rounded down), the state for TCP and
//! SCTP, the original tuple, `[UNREPLIED]` until a reply was seen, the reply tuple, `[ASSURED]`,
//! `mark=`, `helper=` when a helper is attached, `use=1`. ICMP tuples print `type= code= id=`, GRE `srckey= dstkey=` in hex, other
//! protocols (named `unknown`) addresses only.

use super::conn::{status, Conn, ProtoState};
use super::tuple::{proto, Tuple};
use super::Tracker;
use std::fmt::Write;
use std::net::Ipv4Addr;

fn proto_name(p: u8) -> &'static str {
    match p {
        proto::TCP => "tcp",
        proto::UDP => "udp",
        proto::ICMP => "icmp",
        proto::SCTP => "sctp",
        proto::GRE => "gre",
        proto::UDPLITE => "udplite",
        _ => "unknown",
    }
}

fn tuple(out: &mut String, t: &Tuple) {
    let _ = write!(
        out,
        "src={} dst={} ",
        Ipv4Addr::from(t.src),
        Ipv4Addr::from(t.dst)
    );
    let _ = match t.proto {
        proto::TCP | proto::UDP | proto::UDPLITE | proto::SCTP => {
            write!(out, "sport={} dport={} ", t.sport, t.dport)
        }
        proto::ICMP => write!(
            out,
            "type={} code={} id={} ",
            t.icmp_type(),
            t.icmp_code(),
            t.sport
        ),
        proto::GRE => write!(out, "srckey={:#x} dstkey={:#x} ", t.sport, t.dport),
        _ => Ok(()),
    };
}

/// One connection's line (without the newline); `secs` is its time left, `children` the
/// expected connections that hold a reference to it.
pub fn line(c: &Conn, secs: u32, children: u32) -> String {
    let mut out = String::with_capacity(200);
    let p = c.l4proto();
    let _ = write!(out, "{:<8} {} {} ", proto_name(p), p, secs);
    match &c.proto {
        ProtoState::Tcp(t) => {
            let _ = write!(out, "{} ", t.state.name());
        }
        ProtoState::Sctp(s) => {
            let _ = write!(out, "{} ", s.state.name());
        }
        _ => {}
    }
    tuple(&mut out, c.orig());
    if c.status & status::SEEN_REPLY == 0 {
        out.push_str("[UNREPLIED] ");
    }
    tuple(&mut out, c.reply());
    if c.status & status::ASSURED != 0 {
        out.push_str("[ASSURED] ");
    }
    let _ = write!(out, "mark={} ", c.mark);
    if let Some(h) = c.helper {
        let _ = write!(out, "helper={} ", h.name());
    }
    let _ = write!(out, "use={}", 1 + children);
    out
}

/// Every confirmed connection of the trackers, one line each, sorted (the kernel lists in hash
/// order, which no one can rely on).
pub fn listing<'a>(trackers: impl IntoIterator<Item = &'a Tracker>) -> Vec<String> {
    let mut lines: Vec<String> = trackers
        .into_iter()
        .flat_map(|tr| {
            let children = children(tr);
            tr.table.iter().map(move |(id, c)| {
                let n = children.get(&id).copied().unwrap_or(0);
                line(c, tr.table.remaining_ms(id) / 1000, n)
            })
        })
        .collect();
    lines.sort();
    lines
}

/// Expected connections per master slot. A master slot that died and was reused by another
/// connection could be credited with the old one's children: a child counts only while its
/// hosts are its master's (ftp and tftp children always connect the master's two hosts).
fn children(tr: &Tracker) -> std::collections::HashMap<u32, u32> {
    let mut n = std::collections::HashMap::new();
    for (_, c) in tr.table.iter() {
        if c.master == super::conn::NO_MASTER || !tr.table.in_use(c.master) {
            continue;
        }
        let m = tr.table.get(c.master).orig();
        let hosts = [m.src, m.dst];
        if hosts.contains(&c.orig().src) && hosts.contains(&c.orig().dst) {
            *n.entry(c.master).or_insert(0) += 1;
        }
    }
    n
}

/// The summary conntrack-tools writes to stderr after a listing.
pub fn summary(n: usize) -> String {
    format!("conntrack v1.4.7 (conntrack-tools): {n} flow entries have been shown.")
}
