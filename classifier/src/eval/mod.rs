//! The reference evaluator: the plain, obviously correct in-order walk of DESIGN.md §3 over the
//! rule model, for one hook and one packet. It is the oracle the compiled classifier is tested
//! against, and the slow path for packets the fast path declines.
//!
//! Traversal: a hook visits its tables in netfilter priority order (raw, mangle, nat, filter as
//! the hook has them); in each table the built-in chain's rules are tried in order; every rule
//! whose matches all hold is counted; a jump pushes a return point, a goto does not; RETURN or
//! falling off a user chain resumes after the last jump; RETURN in, or falling off, a built-in
//! chain applies (and counts) its policy. ACCEPT ends the table (the next table still runs);
//! DROP, REJECT, QUEUE and a hotdrop end the hook.

pub mod limit;
pub mod matcher;

use crate::model::*;
use crate::packet::{Headers, PacketMeta};
use limit::Bucket;
use matcher::{rule_matches, MatchEnv, RuleMatch};
use std::collections::HashMap;

/// The final decision of a hook for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Accept,
    Drop,
    /// Dropped because a match could not read the header it needs (`hotdrop`).
    HotDrop,
    /// Dropped, and the dataplane answers with this ICMP error or TCP reset.
    Reject(RejectWith),
    /// Handed to userspace queue `num` (of `total` when balancing).
    Queue {
        num: u16,
        total: u16,
        bypass: bool,
        cpu_fanout: bool,
    },
}

/// Which counter a packet moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Hit {
    Rule(RuleId),
    Policy(TableKind, Hook),
}

/// Everything a hook traversal did to one packet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trace {
    pub verdict: Option<Verdict>,
    /// Counters moved, in traversal order.
    pub hits: Vec<Hit>,
    /// The packet's mark after MARK targets.
    pub mark: u32,
    /// The connection's mark after CONNMARK targets.
    pub ctmark: u32,
    /// The raw table's CT template, when a CT or NOTRACK target fired.
    pub ct: Option<crate::packet::CtTemplate>,
    /// LOG rules that fired, in order.
    pub logs: Vec<RuleId>,
    /// The NAT rule that decided, when a nat-table target fired.
    pub nat: Option<RuleId>,
}

impl Trace {
    pub fn verdict(&self) -> Verdict {
        self.verdict.unwrap_or(Verdict::Accept)
    }
}

/// Tables a hook traverses, in netfilter priority order.
pub fn hook_tables(hook: Hook) -> &'static [TableKind] {
    use TableKind::*;
    match hook {
        Hook::Prerouting => &[Raw, Mangle, Nat],
        Hook::Input => &[Mangle, Filter, Nat],
        Hook::Forward => &[Mangle, Filter],
        Hook::Output => &[Raw, Mangle, Nat, Filter],
        Hook::Postrouting => &[Mangle, Nat],
    }
}

/// Which of a hook's tables a traversal runs. Connection tracking sits between the raw table
/// and the others (priority -300 < -200 < -150), so the dataplane runs a hook in two stages
/// around it; [`Stage::All`] runs every table (no tracking between them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    All = 0,
    /// The raw table only (PREROUTING and OUTPUT have one).
    Raw = 1,
    /// Every table after raw.
    AfterRaw = 2,
}

impl Stage {
    pub const ALL: [Stage; 3] = [Stage::All, Stage::Raw, Stage::AfterRaw];

    /// Whether this stage runs table `kind`.
    pub fn runs(self, kind: TableKind) -> bool {
        match self {
            Stage::All => true,
            Stage::Raw => kind == TableKind::Raw,
            Stage::AfterRaw => kind != TableKind::Raw,
        }
    }
}

/// What one table traversal ended with.
enum TableEnd {
    /// ACCEPT (explicit, policy, or a NAT target): the next table runs.
    Continue,
    /// The hook ends with this verdict.
    Stop(Verdict),
}

/// The reference evaluator over a ruleset, with the limit buckets it has used.
pub struct RefEvaluator<'a> {
    rs: &'a Ruleset,
    start_ns: u64,
    buckets: HashMap<(RuleId, usize), Bucket>,
    /// connlimit groups (without a connection table: a group only ever holds what was counted
    /// since it was last walked), by the match's slot.
    connlimits: crate::conntrack::connlimit::ConnLimits,
    connlimit_slots: HashMap<(RuleId, usize), usize>,
}

impl<'a> RefEvaluator<'a> {
    /// `start_ns`: when the ruleset was loaded (limit buckets start full then).
    pub fn new(rs: &'a Ruleset, start_ns: u64) -> RefEvaluator<'a> {
        RefEvaluator {
            rs,
            start_ns,
            buckets: HashMap::new(),
            connlimits: crate::conntrack::connlimit::ConnLimits::new(1 << 18, 0),
            connlimit_slots: HashMap::new(),
        }
    }

    /// Runs every table of `hook` on the packet.
    pub fn eval_hook(&mut self, hook: Hook, h: &Headers, meta: &PacketMeta) -> Trace {
        self.eval_stage(hook, Stage::All, h, meta)
    }

    /// Runs the tables of `hook` that `stage` names.
    pub fn eval_stage(
        &mut self,
        hook: Hook,
        stage: Stage,
        h: &Headers,
        meta: &PacketMeta,
    ) -> Trace {
        let mut trace = Trace {
            mark: meta.mark,
            ctmark: meta.ct.mark,
            ..Default::default()
        };
        for &kind in hook_tables(hook).iter().filter(|k| stage.runs(**k)) {
            let Some(table) = self.rs.table(kind) else {
                continue;
            };
            if table.chain(hook.name()).is_none() {
                continue;
            }
            // The nat table only sees the first packet of a connection.
            if kind == TableKind::Nat && !meta.ct.nat_sees(hook) {
                continue;
            }
            if let TableEnd::Stop(v) = self.eval_table(table, hook, h, meta, &mut trace) {
                trace.verdict = Some(v);
                return trace;
            }
        }
        trace.verdict = Some(Verdict::Accept);
        trace
    }

    fn eval_table(
        &mut self,
        table: &Table,
        hook: Hook,
        h: &Headers,
        meta: &PacketMeta,
        trace: &mut Trace,
    ) -> TableEnd {
        let mut chain = table
            .chain_index(hook.name())
            .expect("caller checked the hook's chain");
        let mut pos = 0usize;
        let mut stack: Vec<(usize, usize)> = Vec::new();
        loop {
            let rules = &table.chains[chain].rules;
            if pos >= rules.len() {
                // Falling off the end: a user chain returns, a built-in chain applies its policy.
                match stack.pop() {
                    Some((c, p)) if !table.chains[chain].is_builtin() => {
                        chain = c;
                        pos = p;
                        continue;
                    }
                    _ => return self.policy(table, hook, trace),
                }
            }
            let rule = &rules[pos];
            pos += 1;
            let env = MatchEnv {
                mark: trace.mark,
                ctmark: trace.ctmark,
                meta,
            };
            let start = self.start_ns;
            let buckets = &mut self.buckets;
            let now = meta.now_ns;
            let (groups, slots) = (&mut self.connlimits, &mut self.connlimit_slots);
            let res = rule_matches(
                rule,
                h,
                &env,
                |i, l| {
                    buckets
                        .entry((rule.id, i))
                        .or_insert_with(|| Bucket::new(l, start))
                        .take(now)
                },
                |i, c| {
                    let next = slots.len();
                    let slot = *slots.entry((rule.id, i)).or_insert(next);
                    crate::conntrack::connlimit::count_packet(groups, slot, c, h, meta, None)
                },
            );
            match res {
                RuleMatch::No => continue,
                RuleMatch::HotDrop => return TableEnd::Stop(Verdict::HotDrop),
                RuleMatch::Yes => {}
            }
            trace.hits.push(Hit::Rule(rule.id));
            match &rule.target {
                Target::None => {}
                Target::Accept => return TableEnd::Continue,
                Target::Drop => return TableEnd::Stop(Verdict::Drop),
                Target::Queue => {
                    return TableEnd::Stop(Verdict::Queue {
                        num: 0,
                        total: 1,
                        bypass: false,
                        cpu_fanout: false,
                    })
                }
                Target::Nfqueue(q) => {
                    return TableEnd::Stop(Verdict::Queue {
                        num: q.queue_num,
                        total: q.queues_total,
                        bypass: q.bypass,
                        cpu_fanout: q.cpu_fanout,
                    })
                }
                Target::Reject(r) => return TableEnd::Stop(Verdict::Reject(*r)),
                Target::Return => match stack.pop() {
                    Some((c, p)) => {
                        chain = c;
                        pos = p;
                    }
                    None => return self.policy(table, hook, trace),
                },
                Target::Jump(name) | Target::Goto(name) => {
                    let Some(next) = table.chain_index(name) else {
                        continue;
                    };
                    if matches!(rule.target, Target::Jump(_)) {
                        stack.push((chain, pos));
                    }
                    chain = next;
                    pos = 0;
                }
                Target::Log(_) => trace.logs.push(rule.id),
                Target::Mark(m) => trace.mark = (trace.mark & !m.mask) ^ m.value,
                Target::Connmark(c) if meta.ct.has_conn() => {
                    (trace.mark, trace.ctmark) = c.apply(trace.mark, trace.ctmark)
                }
                Target::Connmark(_) => {}
                Target::Ct(c) if trace.ct.is_none() => {
                    trace.ct = Some(crate::packet::CtTemplate::of(c, rule.required_proto()))
                }
                Target::Ct(_) => {}
                Target::Snat(_) | Target::Dnat(_) | Target::Masquerade(_) | Target::Redirect(_) => {
                    trace.nat = Some(rule.id);
                    return TableEnd::Continue;
                }
            }
        }
    }

    fn policy(&self, table: &Table, hook: Hook, trace: &mut Trace) -> TableEnd {
        trace.hits.push(Hit::Policy(table.kind, hook));
        let chain = table.chain(hook.name()).expect("built-in chain exists");
        match chain.policy {
            Policy::Accept => TableEnd::Continue,
            Policy::Drop => TableEnd::Stop(Verdict::Drop),
        }
    }
}
