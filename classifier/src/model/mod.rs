//! The rule model: what an iptables ruleset *is*, independent of any text syntax.
//!
//! A [`Ruleset`] holds the four tables; each [`Table`] holds its built-in chains (with policies and
//! policy counters) and user chains; each [`Chain`] holds ordered [`Rule`]s. Every rule carries a
//! stable [`RuleId`] so that counters can follow a rule across inserts, deletes and ruleset swaps.
//! The grammar that reads and prints this model lives in the `control` crate.

pub mod check;
pub mod matches;
pub mod targets;

pub use check::{CheckError, MAX_CHAIN_NAME_LEN};
pub use matches::*;
pub use targets::*;

use std::fmt;
use std::net::Ipv4Addr;

/// The four iptables tables pollwall implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableKind {
    Filter,
    Nat,
    Mangle,
    Raw,
}

impl TableKind {
    /// All tables, in the order `iptables-save` prints them.
    pub const ALL: [TableKind; 4] = [
        TableKind::Raw,
        TableKind::Mangle,
        TableKind::Nat,
        TableKind::Filter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            TableKind::Filter => "filter",
            TableKind::Nat => "nat",
            TableKind::Mangle => "mangle",
            TableKind::Raw => "raw",
        }
    }

    pub fn from_name(name: &str) -> Option<TableKind> {
        Some(match name {
            "filter" => TableKind::Filter,
            "nat" => TableKind::Nat,
            "mangle" => TableKind::Mangle,
            "raw" => TableKind::Raw,
            _ => return None,
        })
    }

    /// The built-in chains of the table, in kernel hook order.
    pub fn builtin_hooks(self) -> &'static [Hook] {
        use Hook::*;
        match self {
            TableKind::Filter => &[Input, Forward, Output],
            TableKind::Nat => &[Prerouting, Input, Output, Postrouting],
            TableKind::Mangle => &[Prerouting, Input, Forward, Output, Postrouting],
            TableKind::Raw => &[Prerouting, Output],
        }
    }
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A netfilter hook (the name of a built-in chain).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Hook {
    Prerouting,
    Input,
    Forward,
    Output,
    Postrouting,
}

impl Hook {
    pub const ALL: [Hook; 5] = [
        Hook::Prerouting,
        Hook::Input,
        Hook::Forward,
        Hook::Output,
        Hook::Postrouting,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }

    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }

    /// Bit of this hook in a [`HookMask`].
    pub fn bit(self) -> HookMask {
        HookMask(1 << (self as u8))
    }
}

/// A set of hooks (bit i = `Hook::ALL[i]`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HookMask(pub u8);

impl HookMask {
    pub const NONE: HookMask = HookMask(0);
    pub fn contains(self, h: Hook) -> bool {
        self.0 & h.bit().0 != 0
    }
    pub fn union(self, o: HookMask) -> HookMask {
        HookMask(self.0 | o.0)
    }
    /// True when every hook of `self` is in `allowed`.
    pub fn within(self, allowed: HookMask) -> bool {
        self.0 & !allowed.0 == 0
    }
    pub fn of(hooks: &[Hook]) -> HookMask {
        hooks.iter().fold(HookMask::NONE, |m, h| m.union(h.bit()))
    }
}

/// Packet and byte counters (bytes count the IP datagram, as the kernel does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// Stable identity of a rule, assigned when the rule enters a ruleset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub u64);

/// An IPv4 address with a mask (`-s`/`-d`); a zero mask matches everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub mask: Ipv4Addr,
}

impl Ipv4Net {
    pub const ANY: Ipv4Net = Ipv4Net {
        addr: Ipv4Addr::UNSPECIFIED,
        mask: Ipv4Addr::UNSPECIFIED,
    };

    /// Builds the net, clearing host bits as the kernel stores it.
    pub fn new(addr: Ipv4Addr, mask: Ipv4Addr) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & u32::from(mask)),
            mask,
        }
    }

    pub fn from_prefix(addr: Ipv4Addr, len: u8) -> Ipv4Net {
        Ipv4Net::new(addr, prefix_mask(len))
    }

    pub fn is_any(&self) -> bool {
        self.mask.is_unspecified()
    }

    /// The prefix length when the mask is contiguous.
    pub fn prefix_len(&self) -> Option<u8> {
        let m = u32::from(self.mask);
        let len = m.leading_ones();
        (m.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        u32::from(a) & u32::from(self.mask) == u32::from(self.addr)
    }
}

/// The mask of a prefix length (0..=32).
pub fn prefix_mask(len: u8) -> Ipv4Addr {
    Ipv4Addr::from(if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    })
}

/// An interface name as matched by `-i`/`-o`: a trailing `+` matches every name with that prefix.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct IfaceMatch {
    /// Name without the trailing `+`.
    pub name: String,
    pub wildcard: bool,
}

impl IfaceMatch {
    /// Longest interface name the kernel accepts (IFNAMSIZ - 1).
    pub const MAX_LEN: usize = 15;

    /// `+` alone: the kernel's mask is empty (every name compares equal).
    pub fn matches_all(&self) -> bool {
        self.wildcard && self.name.is_empty()
    }

    pub fn matches(&self, ifname: &str) -> bool {
        if self.wildcard {
            ifname.starts_with(&self.name)
        } else {
            ifname == self.name
        }
    }
}

impl fmt::Display for IfaceMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, if self.wildcard { "+" } else { "" })
    }
}

/// A value that may be negated with `!`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Inv<T> {
    pub value: T,
    pub invert: bool,
}

impl<T> Inv<T> {
    pub fn new(value: T, invert: bool) -> Inv<T> {
        Inv { value, invert }
    }
}

/// The fragment selector: `-f` (second and later fragments) or `! -f` (first fragments and
/// unfragmented datagrams).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FragMatch {
    NonFirst,
    FirstOrUnfragmented,
}

/// One rule: the IP header part of `struct ipt_entry`, the matches in order, the target and the
/// counters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rule {
    pub id: RuleId,
    pub src: Option<Inv<Ipv4Net>>,
    pub dst: Option<Inv<Ipv4Net>>,
    pub in_iface: Option<Inv<IfaceMatch>>,
    pub out_iface: Option<Inv<IfaceMatch>>,
    /// Protocol number (0 = all, only stored when non-zero or inverted).
    pub proto: Option<Inv<u8>>,
    pub frag: Option<FragMatch>,
    pub matches: Vec<Match>,
    pub target: Target,
    pub counters: Counters,
}

impl Rule {
    /// Equality of everything but the id and counters: what `-D rule-spec` and `-C` compare.
    pub fn same_spec(&self, other: &Rule) -> bool {
        self.src == other.src
            && self.dst == other.dst
            && self.in_iface == other.in_iface
            && self.out_iface == other.out_iface
            && self.proto == other.proto
            && self.frag == other.frag
            && self.matches == other.matches
            && self.target == other.target
    }

    /// ip_tables' `unconditional()`: no matches and an all-zero `ipt_ip` (no address, interface,
    /// protocol, fragment or inversion).
    pub fn is_unconditional(&self) -> bool {
        let any = |n: &Option<Inv<Ipv4Net>>| {
            n.as_ref()
                .is_none_or(|n| !n.invert && n.value == Ipv4Net::ANY)
        };
        self.matches.is_empty()
            && any(&self.src)
            && any(&self.dst)
            && self.in_iface.is_none()
            && self.out_iface.is_none()
            && self
                .proto
                .as_ref()
                .is_none_or(|p| !p.invert && p.value == 0)
            && self.frag.is_none()
    }

    /// Where `mark_source_chains` stops walking a chain: an unconditional rule with an
    /// absolute verdict (ACCEPT, DROP, QUEUE, RETURN).
    pub fn ends_walk(&self) -> bool {
        self.is_unconditional()
            && matches!(
                self.target,
                Target::Accept | Target::Drop | Target::Queue | Target::Return
            )
    }

    /// The protocol number the rule requires (0 when any or inverted).
    pub fn required_proto(&self) -> u8 {
        match &self.proto {
            Some(p) if !p.invert => p.value,
            _ => 0,
        }
    }
}

/// A built-in chain's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Policy {
    Accept,
    Drop,
}

impl Policy {
    pub fn name(self) -> &'static str {
        match self {
            Policy::Accept => "ACCEPT",
            Policy::Drop => "DROP",
        }
    }
}

/// A chain: built-in chains have a hook, a policy and policy counters.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Chain {
    pub name: String,
    pub hook: Option<Hook>,
    pub policy: Policy,
    pub policy_counters: Counters,
    pub rules: Vec<Rule>,
}

impl Chain {
    pub fn builtin(hook: Hook) -> Chain {
        Chain {
            name: hook.name().to_string(),
            hook: Some(hook),
            policy: Policy::Accept,
            policy_counters: Counters::default(),
            rules: Vec::new(),
        }
    }

    pub fn user(name: &str) -> Chain {
        Chain {
            name: name.to_string(),
            hook: None,
            policy: Policy::Accept,
            policy_counters: Counters::default(),
            rules: Vec::new(),
        }
    }

    pub fn is_builtin(&self) -> bool {
        self.hook.is_some()
    }
}

/// One table: built-in chains first (hook order), then user chains in the order the kernel lists
/// them (sorted by name, as iptables-legacy does).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    pub kind: TableKind,
    pub chains: Vec<Chain>,
}

impl Table {
    pub fn new(kind: TableKind) -> Table {
        Table {
            kind,
            chains: kind
                .builtin_hooks()
                .iter()
                .map(|&h| Chain::builtin(h))
                .collect(),
        }
    }

    pub fn chain(&self, name: &str) -> Option<&Chain> {
        self.chains.iter().find(|c| c.name == name)
    }

    pub fn chain_mut(&mut self, name: &str) -> Option<&mut Chain> {
        self.chains.iter_mut().find(|c| c.name == name)
    }

    pub fn chain_index(&self, name: &str) -> Option<usize> {
        self.chains.iter().position(|c| c.name == name)
    }

    /// Adds a user chain, keeping user chains sorted by name.
    pub fn add_user_chain(&mut self, name: &str) {
        let builtins = self.chains.iter().filter(|c| c.is_builtin()).count();
        let pos = self.chains[builtins..]
            .iter()
            .position(|c| c.name.as_str() > name)
            .map_or(self.chains.len(), |p| p + builtins);
        self.chains.insert(pos, Chain::user(name));
    }

    /// Re-sorts user chains by name (after a rename).
    pub fn sort_user_chains(&mut self) {
        let builtins = self.chains.iter().filter(|c| c.is_builtin()).count();
        self.chains[builtins..].sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Number of rules in other chains that jump or go to `name`.
    pub fn references(&self, name: &str) -> usize {
        self.chains
            .iter()
            .flat_map(|c| c.rules.iter())
            .filter(|r| r.target.chain_ref() == Some(name))
            .count()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.chains.iter().flat_map(|c| c.rules.iter())
    }

    pub fn rules_mut(&mut self) -> impl Iterator<Item = &mut Rule> {
        self.chains.iter_mut().flat_map(|c| c.rules.iter_mut())
    }
}

/// The whole ruleset: the tables that exist, most recently created first (the order in which
/// the kernel lists `/proc/net/ip_tables_names`, and so the order `iptables-save` prints), plus
/// the allocator of stable rule ids. A table that does not exist behaves as an empty one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ruleset {
    pub tables: Vec<Table>,
    pub next_rule_id: u64,
}

impl Ruleset {
    pub fn new() -> Ruleset {
        Ruleset {
            tables: Vec::new(),
            next_rule_id: 1,
        }
    }

    pub fn table(&self, kind: TableKind) -> Option<&Table> {
        self.tables.iter().find(|t| t.kind == kind)
    }

    pub fn table_mut(&mut self, kind: TableKind) -> Option<&mut Table> {
        self.tables.iter_mut().find(|t| t.kind == kind)
    }

    /// The table, created (empty, ACCEPT policies, first in order) when it does not exist yet.
    pub fn ensure_table(&mut self, kind: TableKind) -> &mut Table {
        let idx = match self.tables.iter().position(|t| t.kind == kind) {
            Some(i) => i,
            None => {
                self.tables.insert(0, Table::new(kind));
                0
            }
        };
        &mut self.tables[idx]
    }

    /// Replaces a whole table (creating it when missing), giving new rules fresh ids.
    pub fn set_table(&mut self, mut table: Table) {
        self.assign_missing_ids(&mut table);
        let kind = table.kind;
        *self.ensure_table(kind) = table;
    }

    /// Gives `rule` a fresh stable id.
    pub fn assign_id(&mut self, rule: &mut Rule) {
        rule.id = RuleId(self.next_rule_id);
        self.next_rule_id += 1;
    }

    /// Gives every rule of `table` whose id is 0 a fresh id.
    pub fn assign_missing_ids(&mut self, table: &mut Table) {
        for r in table.rules_mut() {
            if r.id.0 == 0 {
                r.id = RuleId(self.next_rule_id);
                self.next_rule_id += 1;
            }
        }
    }
}
