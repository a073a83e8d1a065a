//! NAT in the pipeline (DESIGN.md §5), where netfilter's NAT hooks sit: the destination manip
//! at the end of PREROUTING (and of OUTPUT), the source manip at the end of POSTROUTING and of
//! INPUT. The nat table is the last table of those hooks, so doing the manip when the group's
//! verdict is acted on is the kernel's order (OUTPUT's filter table, which runs after nat
//! there, is the exception: it sees the packet before its DNAT here).
//!
//! On a connection's first packet the nat table's target (or the null binding) binds it
//! ([`classifier::nat`]); every packet whose connection's binding asks for this manip is then
//! rewritten in place, and its parsed headers with it, so later hooks match the new addresses.
//! ICMP errors RELATED to a connection have the datagram they quote translated back.

use super::{Group, Pipeline};
use crate::io::FrameIo;
use crate::stats::Counter;
use classifier::conntrack::tuple::{icmp_is_error, proto};
use classifier::conntrack::{CtKind, Outcome};
use classifier::nat::{manip, Manip, NatAction, Range};
use classifier::packet::Effects;
use classifier::wire::headers::parse_ethernet;
use classifier::TableKind;

impl Pipeline {
    /// The NAT step of packet `i` of `g` (PREROUTING, OUTPUT, INPUT or POSTROUTING) after its
    /// hook accepted it. False when the packet is dropped (the caller frees it).
    pub(super) fn nat_step<I: FrameIo>(
        &mut self,
        io: &mut I,
        g: Group,
        i: usize,
        fx: &Effects,
    ) -> bool {
        let hook = g.hook();
        if !matches!(g, Group::Pre | Group::Output | Group::Input | Group::Post)
            || !self.rules.hook_has_table(hook, TableKind::Nat)
        {
            return true;
        }
        let manip = Manip::of_hook(hook);
        let gb = &self.groups[g as usize];
        let (o, h, d) = (gb.ct[i], gb.h[i], gb.d[i]);
        let (id, dir, kind) = match o {
            Outcome::Conn { id, dir, kind, .. } | Outcome::Ended { id, dir, kind } => {
                (id, dir, kind)
            }
            _ => return true,
        };
        let icmp_error = kind == CtKind::Related
            && h.proto == proto::ICMP
            && matches!(h.l4, classifier::packet::L4::Icmp { icmp_type, .. } if icmp_is_error(icmp_type));
        if !icmp_error && gb.m[i].ct.nat_sees(hook) {
            if !self.bind(g, i, id, manip, fx) {
                self.stats.add(Counter::NatNoAddress, 1);
                return false;
            }
        } else if self.masquerade_moved(g, i, id, dir) {
            return false;
        }
        let Some(ct) = self.st.ct.as_ref() else {
            return true;
        };
        let conn = *ct.table.get(id);
        let l3 = usize::from(h.l3_offset);
        let end = l3 + usize::from(h.ip_len);
        let Some(ip) = io.frame_mut(d.addr, d.len).and_then(|f| f.get_mut(l3..end)) else {
            return true;
        };
        let done = if icmp_error {
            manip::icmp_reply_translation(&conn, dir, manip, ip)
        } else {
            manip::nat_packet(&conn, dir, manip, ip)
        };
        match done {
            Ok(false) => true,
            Ok(true) => {
                self.stats.add(Counter::NatRewritten, 1);
                self.reparse(io, g, i);
                true
            }
            Err(_) => {
                self.stats.add(Counter::NatFailed, 1);
                false
            }
        }
    }

    /// Binds the connection of packet `i` for `manip`: the nat table's target, else the null
    /// binding. False when MASQUERADE or REDIRECT found no address (the kernel drops).
    fn bind(&mut self, g: Group, i: usize, id: u32, manip: Manip, fx: &Effects) -> bool {
        let gb = &self.groups[g as usize];
        let (egress, port, nexthop) = (
            usize::from(gb.egress[i]),
            usize::from(gb.port[i]),
            gb.hop[i],
        );
        let router = self.router.as_deref();
        let range = match fx.nat {
            None => None,
            Some(NatAction::Snat(r) | NatAction::Dnat(r)) => Some(r),
            Some(NatAction::Masquerade(r)) => {
                let Some(addr) = router.and_then(|rt| rt.select_addr(egress, nexthop)) else {
                    return false;
                };
                Some(Range::onto_range(&r, addr))
            }
            Some(NatAction::Redirect(r)) => {
                let addr = if g == Group::Output {
                    Some(u32::from(std::net::Ipv4Addr::LOCALHOST))
                } else {
                    router.and_then(|rt| rt.primary(port))
                };
                let Some(addr) = addr else {
                    return false;
                };
                Some(Range::onto_range(&r, addr))
            }
        };
        let masquerade = matches!(fx.nat, Some(NatAction::Masquerade(_)));
        let Some(ct) = self.st.ct.as_mut() else {
            return true;
        };
        match range {
            Some(r) => ct.nat_setup(id, &r, manip),
            None => ct.nat_null_binding(id, manip),
        };
        if masquerade {
            ct.table.get_mut(id).masq_port = egress as u8;
        }
        let o = self.groups[g as usize].ct[i];
        let state = self.groups[g as usize].m[i].ct.state;
        let mut info = ct.info(&o);
        // The packet's state stays; the binding's virtual states (`--ctstate SNAT/DNAT`, read
        // from the connection's status as xt_conntrack does) are seen by the hooks after it.
        let nat_bits = classifier::ct_state::SNAT | classifier::ct_state::DNAT;
        info.state = state | (info.state & nat_bits);
        self.groups[g as usize].m[i].ct = info;
        true
    }

    /// Parses packet `i` of `g` again after a rewrite (its addresses and ports changed).
    pub(super) fn reparse<I: FrameIo>(&mut self, io: &I, g: Group, i: usize) {
        let gb = &mut self.groups[g as usize];
        let d = gb.d[i];
        if let Some(Ok(h)) = io.frame(d.addr, d.len).map(parse_ethernet) {
            gb.h[i] = h;
        }
    }
}
