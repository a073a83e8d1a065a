//! ClassBench in the rule model: a rule set as one chain of the filter table, and trace files
//! (one header per line) as packets with the rule each should hit first.

use super::Rule as CbRule;
use crate::model::*;
use crate::packet::{Headers, TcpOptionKinds, TcpOptions, L4};
use std::net::Ipv4Addr;

/// Builds a filter table whose chain `chain` (FORWARD by default) holds one `-j ACCEPT` rule per
/// ClassBench rule, in order, with policy DROP. Rule ids are 1-based line numbers.
pub fn to_ruleset(rules: &[CbRule], chain: &str) -> Ruleset {
    let mut t = Table::new(TableKind::Filter);
    if t.chain(chain).is_none() {
        t.add_user_chain(chain);
    }
    let c = t.chain_mut(chain).expect("chain exists");
    c.policy = Policy::Drop;
    for (i, r) in rules.iter().enumerate() {
        let mut rule = Rule {
            id: RuleId(i as u64 + 1),
            target: Target::Accept,
            ..Default::default()
        };
        let net = |p: &super::Prefix| {
            (p.len > 0)
                .then(|| Inv::new(Ipv4Net::from_prefix(Ipv4Addr::from(p.addr), p.len), false))
        };
        rule.src = net(&r.src);
        rule.dst = net(&r.dst);
        if let Some(p) = r.proto.filter(|p| *p != 0) {
            rule.proto = Some(Inv::new(p, false));
            let sport = PortRange {
                lo: r.sport.lo,
                hi: r.sport.hi,
            };
            let dport = PortRange {
                lo: r.dport.lo,
                hi: r.dport.hi,
            };
            if !(sport.is_any() && dport.is_any()) {
                match p {
                    6 => rule.matches.push(Match::Tcp(TcpMatch {
                        sport,
                        dport,
                        ..Default::default()
                    })),
                    17 => rule.matches.push(Match::Udp(UdpMatch {
                        sport,
                        dport,
                        ..Default::default()
                    })),
                    _ => {}
                }
            }
        }
        c.rules.push(rule);
    }
    let mut rs = Ruleset::new();
    rs.next_rule_id = rules.len() as u64 + 1;
    rs.tables.push(t);
    rs
}

/// One trace header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceHeader {
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub proto: u8,
    /// wustl traces: the 1-based line of the first matching rule (exact). flags traces: the
    /// 1-based line of the rule the header was generated from (an upper bound).
    pub expect: u32,
    pub expect_exact: bool,
}

impl TraceHeader {
    /// The packet as the classifier sees it (a first fragment with a full L4 header).
    pub fn headers(&self) -> Headers {
        let l4 = match self.proto {
            6 => L4::Tcp {
                sport: self.sport,
                dport: self.dport,
                flags: 0,
                options: TcpOptions::Kinds(TcpOptionKinds::default()),
            },
            17 => L4::Udp {
                sport: self.sport,
                dport: self.dport,
            },
            1 => L4::Icmp {
                icmp_type: 8,
                code: 0,
            },
            132 | 33 | 136 => L4::Ports {
                sport: self.sport,
                dport: self.dport,
            },
            _ => L4::None,
        };
        Headers::synthetic(self.src, self.dst, self.proto, l4)
    }
}

/// Parses a trace: 6 fields (wustl: `src dst sport dport proto match`, 1-based exact first
/// match) or 7 (flags: `... flags gen_rule`, 0-based generating rule).
pub fn parse_trace(text: &str) -> Result<Vec<TraceHeader>, super::ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        let err = |reason: &str| super::ParseError {
            line: i + 1,
            reason: reason.to_string(),
        };
        let num = |s: &str| {
            s.parse::<u64>()
                .map_err(|_| err(&format!("`{s}' is not a number")))
        };
        if f.len() != 6 && f.len() != 7 {
            return Err(err("expected 6 or 7 fields"));
        }
        let v: Vec<u64> = f.iter().map(|s| num(s)).collect::<Result<_, _>>()?;
        if v[0] > u64::from(u32::MAX)
            || v[1] > u64::from(u32::MAX)
            || v[2] > 65535
            || v[3] > 65535
            || v[4] > 255
        {
            return Err(err("field out of range"));
        }
        let (expect, exact) = if f.len() == 6 {
            (v[5], true)
        } else {
            (v[6] + 1, false)
        };
        out.push(TraceHeader {
            src: v[0] as u32,
            dst: v[1] as u32,
            sport: v[2] as u16,
            dport: v[3] as u16,
            proto: v[4] as u8,
            expect: expect.min(u64::from(u32::MAX)) as u32,
            expect_exact: exact,
        });
    }
    Ok(out)
}
