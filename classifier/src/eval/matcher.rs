//! One rule against one packet, exactly as `ipt_do_table` evaluates it: the IP part
//! (`ip_packet_match`) first, then each match in order, stopping at the first that fails. A match
//! that cannot read the header it needs sets "hotdrop" (the kernel drops the packet at once).
//!
//! Shared by the reference evaluator and by the compiled classifier's leaf checks, so that both
//! walk identical semantics.

use crate::model::*;
use crate::packet::{Headers, PacketMeta, TcpOptions, L4};

/// The result of evaluating one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleMatch {
    No,
    Yes,
    /// A match could not read its header: the packet is dropped, the rule is not counted.
    HotDrop,
}

/// The mutable state a rule's matches may need: the packet's and its connection's current marks
/// (MARK and CONNMARK targets earlier in the traversal change them).
pub struct MatchEnv<'a> {
    pub mark: u32,
    pub ctmark: u32,
    pub meta: &'a PacketMeta,
}

/// `ip_packet_match`: addresses, interfaces, protocol, fragment flag.
#[inline]
pub fn ip_match(rule: &Rule, h: &Headers, meta: &PacketMeta) -> bool {
    if let Some(s) = &rule.src {
        if (h.src & u32::from(s.value.mask) != u32::from(s.value.addr)) ^ s.invert {
            return false;
        }
    }
    if let Some(d) = &rule.dst {
        if (h.dst & u32::from(d.value.mask) != u32::from(d.value.addr)) ^ d.invert {
            return false;
        }
    }
    if let Some(i) = &rule.in_iface {
        if !iface_match(&i.value, meta.in_iface.as_bytes()) ^ i.invert {
            return false;
        }
    }
    if let Some(o) = &rule.out_iface {
        if !iface_match(&o.value, meta.out_iface.as_bytes()) ^ o.invert {
            return false;
        }
    }
    if let Some(p) = &rule.proto {
        if p.value != 0 && ((h.proto != p.value) ^ p.invert) {
            return false;
        }
    }
    match rule.frag {
        Some(FragMatch::NonFirst) if h.frag_off == 0 => return false,
        Some(FragMatch::FirstOrUnfragmented) if h.frag_off != 0 => return false,
        _ => {}
    }
    true
}

/// `ifname_compare_aligned` with iptables' mask: a `+` name matches every name it prefixes.
#[inline]
pub fn iface_match(m: &IfaceMatch, name: &[u8]) -> bool {
    let want = m.name.as_bytes();
    if m.wildcard {
        name.starts_with(want)
    } else {
        name == want
    }
}

#[inline]
fn ports_in(r: PortRange, p: u16, inv: bool) -> bool {
    r.contains(p) ^ inv
}

/// Evaluates one match. `limit` spends from this match's token bucket (only called for `limit`).
pub fn match_one(
    m: &Match,
    h: &Headers,
    env: &MatchEnv,
    limit: impl FnOnce(&LimitMatch) -> bool,
) -> RuleMatch {
    use RuleMatch::*;
    let b = |x: bool| if x { Yes } else { No };
    match m {
        Match::Tcp(t) => {
            if h.frag_off != 0 {
                // "Don't allow a fragment of TCP 8 bytes in" (offset 1 overwrites the flags).
                return if h.frag_off == 1 && h.proto == 6 {
                    HotDrop
                } else {
                    No
                };
            }
            let L4::Tcp {
                sport,
                dport,
                flags,
                options,
            } = h.l4
            else {
                return HotDrop;
            };
            if !ports_in(t.sport, sport, t.inv_sport) || !ports_in(t.dport, dport, t.inv_dport) {
                return No;
            }
            if ((flags & t.flags_mask) == t.flags_cmp) == t.inv_flags {
                return No;
            }
            if t.option != 0 {
                return match options {
                    TcpOptions::BadOffset | TcpOptions::Truncated => HotDrop,
                    TcpOptions::Kinds(k) => b(k.contains(t.option) ^ t.inv_option),
                };
            }
            Yes
        }
        Match::Udp(u) => {
            if h.frag_off != 0 {
                return No;
            }
            let L4::Udp { sport, dport } = h.l4 else {
                return HotDrop;
            };
            b(ports_in(u.sport, sport, u.inv_sport) && ports_in(u.dport, dport, u.inv_dport))
        }
        Match::Icmp(i) => {
            if h.frag_off != 0 {
                return No;
            }
            let L4::Icmp { icmp_type, code } = h.l4 else {
                return HotDrop;
            };
            let hit = i.icmp_type == IcmpMatch::ANY_TYPE
                || (icmp_type == i.icmp_type && code >= i.code_min && code <= i.code_max);
            b(hit ^ i.invert)
        }
        Match::Multiport(mp) => {
            if h.frag_off != 0 {
                return No;
            }
            let Some((sport, dport)) = h.ports() else {
                return HotDrop;
            };
            let hit = mp.ports.iter().any(|r| match mp.kind {
                MultiportKind::Source => r.contains(sport),
                MultiportKind::Destination => r.contains(dport),
                MultiportKind::Either => r.contains(sport) || r.contains(dport),
            });
            b(hit ^ mp.invert)
        }
        Match::Mac(mm) => match h.src_mac {
            Some(mac) => b((mac == mm.addr) ^ mm.invert),
            None => No,
        },
        Match::Limit(l) => b(limit(l)),
        Match::State(s) => b((env.meta.ct.state & s.states != 0) ^ s.invert),
        Match::Conntrack(c) => b(conntrack(c, env.meta)),
        Match::Owner(o) => b(owner(o, env.meta)),
        Match::Mark(mm) => b(((env.mark & mm.mask) == mm.value) ^ mm.invert),
        Match::Connmark(c) => {
            // connmark_mt: no connection, no match (inversion included).
            b(env.meta.ct.has_conn() && (((env.ctmark & c.mask) == c.mark) ^ c.invert))
        }
        Match::Helper(hm) => b(helper_match(hm, &env.meta.ct)),
        // Counted with the worker's connection groups: `rule_matches` handles it.
        Match::Connlimit(_) => Yes,
        Match::Comment(_) => Yes,
        Match::Iprange(r) => {
            let inside = |v: &Inv<(std::net::Ipv4Addr, std::net::Ipv4Addr)>, a: u32| {
                (a >= u32::from(v.value.0) && a <= u32::from(v.value.1)) ^ v.invert
            };
            let src_ok = r.src.as_ref().is_none_or(|v| inside(v, h.src));
            let dst_ok = r.dst.as_ref().is_none_or(|v| inside(v, h.dst));
            b(src_ok && dst_ok)
        }
    }
}

/// `helper_mt`: only an expected connection whose master has a helper can match; the rule's
/// name matches when the helper's name is its prefix (`strncmp` over the helper's length), an
/// empty name matches any helper.
fn helper_match(hm: &HelperMatch, ct: &crate::packet::CtInfo) -> bool {
    let Some(helper) = ct.master_helper.filter(|_| ct.has_conn()) else {
        return hm.invert;
    };
    let name = helper.name().as_bytes();
    let hit = hm.name.is_empty() || hm.name.as_bytes().get(..name.len()) == Some(name);
    hit ^ hm.invert
}

fn conntrack(c: &ConntrackMatch, meta: &PacketMeta) -> bool {
    let ct = &meta.ct;
    let ok = |inv: bool, cond: bool| cond ^ inv;
    if let Some(s) = &c.state {
        if !ok(s.invert, ct.state & s.value != 0) {
            return false;
        }
    }
    // Without a connection only --ctstate can hold (xt_conntrack's `ct == NULL` case).
    if !ct.has_conn() {
        return c.state.is_some();
    }
    if let Some(p) = &c.proto {
        if !ok(p.invert, ct.l4proto == p.value) {
            return false;
        }
    }
    let addr = |n: &Option<Inv<Ipv4Net>>, a: u32| {
        n.as_ref().is_none_or(|n| {
            ok(
                n.invert,
                (a ^ u32::from(n.value.addr)) & u32::from(n.value.mask) == 0,
            )
        })
    };
    if !addr(&c.orig_src, ct.orig.0)
        || !addr(&c.orig_dst, ct.orig.1)
        || !addr(&c.repl_src, ct.reply.0)
        || !addr(&c.repl_dst, ct.reply.1)
    {
        return false;
    }
    let port = |r: &Option<Inv<PortRange>>, p: u16| {
        r.as_ref().is_none_or(|r| ok(r.invert, r.value.contains(p)))
    };
    if !port(&c.orig_src_port, ct.orig.2)
        || !port(&c.orig_dst_port, ct.orig.3)
        || !port(&c.repl_src_port, ct.reply.2)
        || !port(&c.repl_dst_port, ct.reply.3)
    {
        return false;
    }
    if let Some(s) = &c.status {
        if !ok(s.invert, ct.status & s.value != 0) {
            return false;
        }
    }
    if let Some(e) = &c.expire {
        if !ok(e.invert, ct.expires >= e.value.0 && ct.expires <= e.value.1) {
            return false;
        }
    }
    if let Some(d) = c.dir {
        if (d == CtDir::Reply) != ct.reply_dir {
            return false;
        }
    }
    true
}

fn owner(o: &OwnerMatch, meta: &PacketMeta) -> bool {
    let Some(sock) = meta.owner else {
        // No socket: only a rule whose every condition is inverted matches.
        let all_inverted = o.socket_exists.is_none_or(|i| i)
            && o.uid.as_ref().is_none_or(|u| u.invert)
            && o.gid.as_ref().is_none_or(|g| g.invert)
            && !o.suppl_groups;
        return all_inverted;
    };
    if o.socket_exists == Some(true) {
        return false;
    }
    if let Some(u) = &o.uid {
        if (sock.uid >= u.value.0 && sock.uid <= u.value.1) == u.invert {
            return false;
        }
    }
    if let Some(g) = &o.gid {
        if (sock.gid >= g.value.0 && sock.gid <= g.value.1) == g.invert {
            return false;
        }
    }
    true
}

/// A whole rule: IP part, then matches in order. `limit(i, m)` spends from the bucket of the
/// rule's match number `i` (a `limit`).
pub fn rule_matches(
    rule: &Rule,
    h: &Headers,
    env: &MatchEnv,
    mut limit: impl FnMut(usize, &LimitMatch) -> bool,
    mut connlimit: impl FnMut(usize, &ConnlimitMatch) -> u32,
) -> RuleMatch {
    if !ip_match(rule, h, env.meta) {
        return RuleMatch::No;
    }
    for (i, m) in rule.matches.iter().enumerate() {
        if let Match::Connlimit(c) = m {
            // connlimit_mt: 0 means the packet could not be counted (hotdrop).
            match connlimit(i, c) {
                0 => return RuleMatch::HotDrop,
                n if (n > c.limit) != c.upto => continue,
                _ => return RuleMatch::No,
            }
        }
        match match_one(m, h, env, |l| limit(i, l)) {
            RuleMatch::Yes => {}
            other => return other,
        }
    }
    RuleMatch::Yes
}
