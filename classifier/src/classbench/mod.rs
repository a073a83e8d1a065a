//! ClassBench 5-field rule files and their conversion to an `iptables-restore` file.
//!
//! # Input format
//!
//! One rule per line; a rule's priority is its line number (line 1 matches first). Split on
//! whitespace (spaces or TABs), a rule is
//!
//! ```text
//! @SRC/LEN  DST/LEN  SPLO : SPHI  DPLO : DPHI  PROTO/MASK  [EXTRA...]
//! @59.0.0.0/8 17.59.77.0/24 0 : 65535 53 : 53 0x11/0xFF
//! ```
//!
//! * `@` marks the start of a rule (accepted when missing).
//! * `SRC/LEN`, `DST/LEN`: IPv4 prefixes, length 0..=32. Host bits beyond the prefix are
//!   cleared (ClassBench files have none, but the output must be a valid network).
//! * `LO : HI`: inclusive port ranges, 0..=65535, `LO <= HI` (`LO:HI` without spaces is also
//!   accepted).
//! * `PROTO/MASK`: hex (`0x` optional) protocol value and mask; the mask must be `0xFF` (exact)
//!   or `0x00` (any protocol).
//! * `EXTRA`: anything after the protocol is ignored. The `flags_6field` sets put a 16-bit
//!   `0xVVVV/0xMMMM` flags field there (and end every line in a TAB); like the published
//!   classifiers we match on the 5-tuple only.
//!
//! Blank lines are skipped (they are not counted as rules, but line numbers in errors are the
//! file's own).
//!
//! # Output
//!
//! ```text
//! *filter
//! :INPUT ACCEPT [0:0]
//! :FORWARD DROP [0:0]
//! :OUTPUT ACCEPT [0:0]
//! -A FORWARD -s 59.0.0.0/8 -d 17.59.77.0/24 -p udp -m udp --dport 53 -j ACCEPT
//! COMMIT
//! ```
//!
//! One `-A CHAIN` per rule, in file order, all with the same target (`ACCEPT` by default).
//! When the chain is a built-in one its policy is `DROP`, so a packet that no ClassBench rule
//! matches is dropped; any other chain name is declared as a user chain (`:NAME - [0:0]`)
//! and the built-in policies stay `ACCEPT`. The target is written as given: a user-chain
//! target must exist already.
//!
//! * A `/0` address is omitted; other prefixes are written `A.B.C.D/LEN` (also `/32`).
//! * Protocol mask `0xFF`: `-p tcp` (6), `-p udp` (17), `-p icmp` (1), else `-p N`.
//!   Protocol `0x00/0xFF` is written as no `-p` (iptables reads `-p 0` as "any protocol", so
//!   protocol 0 cannot be matched exactly); such rules are counted in
//!   [`Conversion::proto_zero_widened`].
//! * Ports, for `tcp`/`udp` only: `-m tcp --sport LO:HI --dport LO:HI` (or `-m udp`), a single
//!   port as `N`, the full range `0:65535` omitted (and `-m` with it when both are full).
//! * **Lossy case**: iptables can only match ports together with a protocol that has them. A
//!   rule whose protocol is a wildcard (mask `0x00`) or has no ports (ICMP, GRE, ...) but
//!   whose port ranges are not both `0 : 65535` is written without its ports, so it matches
//!   more packets than the ClassBench rule. Such rules are listed in
//!   [`Conversion::ports_dropped`] (the command-line tool prints a summary on stderr). The
//!   published ClassBench sets (acl1, fw1, ipc1) contain no such rule.

use std::fmt;

/// An IPv4 prefix: `addr` has no bits set beyond `len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub addr: u32,
    pub len: u8,
}

impl Prefix {
    /// Builds a prefix, clearing the host bits of `addr`.
    pub fn new(addr: u32, len: u8) -> Prefix {
        let len = len.min(32);
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        Prefix {
            addr: addr & mask,
            len,
        }
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d] = self.addr.to_be_bytes();
        write!(f, "{a}.{b}.{c}.{d}/{}", self.len)
    }
}

/// An inclusive port range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub const ANY: PortRange = PortRange { lo: 0, hi: 65535 };

    pub fn is_any(&self) -> bool {
        *self == PortRange::ANY
    }
}

impl fmt::Display for PortRange {
    /// iptables' form: `N` for a single port, `LO:HI` otherwise.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}:{}", self.lo, self.hi)
        }
    }
}

/// One ClassBench rule (the 5-tuple part).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub src: Prefix,
    pub dst: Prefix,
    pub sport: PortRange,
    pub dport: PortRange,
    /// `None`: any protocol (mask `0x00`).
    pub proto: Option<u8>,
}

/// A rule file that could not be read: the 1-based line and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses one line. `Ok(None)` for a blank line.
pub fn parse_line(line: &str) -> Result<Option<Rule>, String> {
    let mut toks = line.split_whitespace().peekable();
    let Some(first) = toks.next() else {
        return Ok(None);
    };
    let first = first.strip_prefix('@').unwrap_or(first);
    let src = parse_prefix(first).map_err(|e| format!("source prefix: {e}"))?;
    let dst = toks
        .next()
        .ok_or_else(|| "missing destination prefix".to_string())
        .and_then(|t| parse_prefix(t).map_err(|e| format!("destination prefix: {e}")))?;
    let sport = parse_range(&mut toks).map_err(|e| format!("source port range: {e}"))?;
    let dport = parse_range(&mut toks).map_err(|e| format!("destination port range: {e}"))?;
    let proto = toks
        .next()
        .ok_or_else(|| "missing protocol (expected VALUE/MASK such as 0x06/0xFF)".to_string())
        .and_then(|t| parse_proto(t).map_err(|e| format!("protocol: {e}")))?;
    // Anything further (the flags field of the 6-field sets) is ignored.
    Ok(Some(Rule {
        src,
        dst,
        sport,
        dport,
        proto,
    }))
}

/// Parses a whole rule file, skipping blank lines.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, ParseError> {
    let mut rules = Vec::new();
    for (idx, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(r)) => rules.push(r),
            Ok(None) => {}
            Err(reason) => {
                return Err(ParseError {
                    line: idx + 1,
                    reason,
                })
            }
        }
    }
    Ok(rules)
}

fn parse_prefix(s: &str) -> Result<Prefix, String> {
    let (addr, len) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}' is not ADDRESS/LENGTH"))?;
    let addr: std::net::Ipv4Addr = addr
        .parse()
        .map_err(|_| format!("`{addr}' is not a dotted-quad IPv4 address"))?;
    let len: u8 = len
        .parse()
        .ok()
        .filter(|l| *l <= 32)
        .ok_or_else(|| format!("prefix length `{len}' is not a number 0..32"))?;
    Ok(Prefix::new(u32::from(addr), len))
}

fn parse_port(s: &str) -> Result<u16, String> {
    s.parse()
        .map_err(|_| format!("`{s}' is not a port number 0..65535"))
}

/// Reads `LO : HI` (three tokens), `LO:HI`, `LO: HI` or `LO :HI`.
fn parse_range<'a>(toks: &mut impl Iterator<Item = &'a str>) -> Result<PortRange, String> {
    let missing = || "missing (expected `LO : HI')".to_string();
    let first = toks.next().ok_or_else(missing)?;
    let (lo, hi) = match first.split_once(':') {
        Some((lo, "")) => (lo, toks.next().ok_or_else(missing)?),
        Some((lo, hi)) => (lo, hi),
        None => {
            let colon = toks.next().ok_or_else(missing)?;
            match colon.strip_prefix(':') {
                Some("") => (first, toks.next().ok_or_else(missing)?),
                Some(hi) => (first, hi),
                None => return Err(format!("expected `:' after `{first}', found `{colon}'")),
            }
        }
    };
    let (lo, hi) = (parse_port(lo)?, parse_port(hi)?);
    if lo > hi {
        return Err(format!("low port {lo} is above high port {hi}"));
    }
    Ok(PortRange { lo, hi })
}

fn parse_hex_byte(s: &str) -> Result<u8, String> {
    let digits = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u8::from_str_radix(digits, 16).map_err(|_| format!("`{s}' is not a hex byte such as 0x06"))
}

fn parse_proto(s: &str) -> Result<Option<u8>, String> {
    let (value, mask) = s
        .split_once('/')
        .ok_or_else(|| format!("`{s}' is not VALUE/MASK such as 0x06/0xFF"))?;
    let (value, mask) = (parse_hex_byte(value)?, parse_hex_byte(mask)?);
    match mask {
        0xFF => Ok(Some(value)),
        0x00 => Ok(None),
        _ => Err(format!(
            "mask {mask:#04x} cannot be expressed with iptables -p (only 0xFF or 0x00)"
        )),
    }
}

/// Conversion settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// The chain the rules are appended to.
    pub chain: String,
    /// The `-j` target of every rule.
    pub target: String,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            chain: "FORWARD".into(),
            target: "ACCEPT".into(),
        }
    }
}

const BUILTIN_CHAINS: [&str; 3] = ["INPUT", "FORWARD", "OUTPUT"];

impl Options {
    /// Checks that the chain and target names can be written into a restore file.
    pub fn validate(&self) -> Result<(), String> {
        check_name("chain", &self.chain)?;
        if self.chain.len() > crate::MAX_CHAIN_NAME_LEN {
            return Err(format!(
                "chain name `{}' is longer than {} characters",
                self.chain,
                crate::MAX_CHAIN_NAME_LEN
            ));
        }
        check_name("target", &self.target)
    }
}

fn check_name(what: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("the {what} name is empty"));
    }
    if name.starts_with(['-', '!']) || name.chars().any(|c| c.is_whitespace() || c == '"') {
        return Err(format!(
            "the {what} name `{name}' must not start with `-' or `!' nor contain spaces or quotes"
        ));
    }
    Ok(())
}

/// The result of a conversion.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conversion {
    /// The `iptables-restore` input.
    pub text: String,
    /// How many rules were written.
    pub rules: usize,
    /// 1-based rule numbers (blank lines not counted) whose port ranges were dropped because
    /// their protocol is a wildcard or has no ports.
    pub ports_dropped: Vec<usize>,
    /// 1-based rule numbers with protocol `0x00/0xFF`, written as any protocol.
    pub proto_zero_widened: Vec<usize>,
}

impl Conversion {
    /// A one-paragraph summary of the lossy rules, or `None` when every rule is exact.
    pub fn warning(&self) -> Option<String> {
        let mut out = String::new();
        let list = |v: &[usize]| {
            let shown: Vec<String> = v.iter().take(10).map(usize::to_string).collect();
            let more = if v.len() > 10 { ", ..." } else { "" };
            format!("{}{more}", shown.join(", "))
        };
        if !self.ports_dropped.is_empty() {
            out.push_str(&format!(
                "{} rule(s) have port ranges but a wildcard protocol or one without ports; \
                 iptables cannot express that, so they were written without ports and match \
                 more packets than in ClassBench (rules {})\n",
                self.ports_dropped.len(),
                list(&self.ports_dropped)
            ));
        }
        if !self.proto_zero_widened.is_empty() {
            out.push_str(&format!(
                "{} rule(s) match protocol 0 exactly, which iptables reads as any protocol; \
                 they were written without -p (rules {})\n",
                self.proto_zero_widened.len(),
                list(&self.proto_zero_widened)
            ));
        }
        (!out.is_empty()).then_some(out)
    }
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        n => n.to_string(),
    }
}

/// Writes `rules` as an `iptables-restore` file (see the module documentation).
pub fn to_restore(rules: &[Rule], opts: &Options) -> Conversion {
    let mut conv = Conversion {
        text: String::with_capacity(64 * rules.len() + 128),
        rules: rules.len(),
        ..Default::default()
    };
    let text = &mut conv.text;
    text.push_str("*filter\n");
    let user_chain = !BUILTIN_CHAINS.contains(&opts.chain.as_str());
    for b in BUILTIN_CHAINS {
        let policy = if b == opts.chain { "DROP" } else { "ACCEPT" };
        text.push_str(&format!(":{b} {policy} [0:0]\n"));
    }
    if user_chain {
        text.push_str(&format!(":{} - [0:0]\n", opts.chain));
    }
    for (i, r) in rules.iter().enumerate() {
        let n = i + 1;
        text.push_str("-A ");
        text.push_str(&opts.chain);
        if r.src.len != 0 {
            text.push_str(&format!(" -s {}", r.src));
        }
        if r.dst.len != 0 {
            text.push_str(&format!(" -d {}", r.dst));
        }
        let ports_any = r.sport.is_any() && r.dport.is_any();
        match r.proto {
            Some(0) => {
                conv.proto_zero_widened.push(n);
                if !ports_any {
                    conv.ports_dropped.push(n);
                }
            }
            Some(p @ (6 | 17)) => {
                let name = proto_name(p);
                text.push_str(&format!(" -p {name}"));
                if !ports_any {
                    text.push_str(&format!(" -m {name}"));
                    if !r.sport.is_any() {
                        text.push_str(&format!(" --sport {}", r.sport));
                    }
                    if !r.dport.is_any() {
                        text.push_str(&format!(" --dport {}", r.dport));
                    }
                }
            }
            Some(p) => {
                text.push_str(&format!(" -p {}", proto_name(p)));
                if !ports_any {
                    conv.ports_dropped.push(n);
                }
            }
            None => {
                if !ports_any {
                    conv.ports_dropped.push(n);
                }
            }
        }
        text.push_str(" -j ");
        text.push_str(&opts.target);
        text.push('\n');
    }
    text.push_str("COMMIT\n");
    conv
}

/// Parses a ClassBench file and converts it.
pub fn convert(text: &str, opts: &Options) -> Result<Conversion, ParseError> {
    Ok(to_restore(&parse_rules(text)?, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
@59.0.0.0/8\t17.59.77.0/24\t0 : 65535\t53 : 53\t0x11/0xFF
@81.110.124.109/32 249.145.51.3/32 0 : 65535 135 : 135 0x06/0xFF
@10.1.2.3/16 0.0.0.0/0 1024 : 65535 80 : 88 0x06/0xFF
@0.0.0.0/0 44.0.0.0/8 0 : 65535 0 : 65535 0x01/0xFF

@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x2f/0xFF
@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00
";

    const EXPECTED: &str = "\
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -s 59.0.0.0/8 -d 17.59.77.0/24 -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -s 81.110.124.109/32 -d 249.145.51.3/32 -p tcp -m tcp --dport 135 -j ACCEPT
-A FORWARD -s 10.1.0.0/16 -p tcp -m tcp --sport 1024:65535 --dport 80:88 -j ACCEPT
-A FORWARD -d 44.0.0.0/8 -p icmp -j ACCEPT
-A FORWARD -p 47 -j ACCEPT
-A FORWARD -j ACCEPT
COMMIT
";

    #[test]
    fn converts_sample() {
        let conv = convert(SAMPLE, &Options::default()).unwrap();
        assert_eq!(conv.text, EXPECTED);
        assert_eq!(conv.rules, 6);
        assert!(conv.ports_dropped.is_empty());
        assert_eq!(conv.warning(), None);
    }

    #[test]
    fn six_field_lines_with_trailing_tab() {
        let line =
            "@69.137.30.88/30\t249.244.188.176/28\t67 : 67\t119 : 119\t0x11/0xFF\t0x0000/0x0000\t";
        let r = parse_line(line).unwrap().unwrap();
        assert_eq!(r.src, Prefix::new(0x4589_1e58, 30));
        assert_eq!(r.dst.to_string(), "249.244.188.176/28");
        assert_eq!(r.sport, PortRange { lo: 67, hi: 67 });
        assert_eq!(r.dport, PortRange { lo: 119, hi: 119 });
        assert_eq!(r.proto, Some(17));
    }

    #[test]
    fn compact_ranges_and_missing_at() {
        let r = parse_line("1.2.3.4/32 5.6.7.8/32 1:2 3 :4 0x06/0xff")
            .unwrap()
            .unwrap();
        assert_eq!(r.sport, PortRange { lo: 1, hi: 2 });
        assert_eq!(r.dport, PortRange { lo: 3, hi: 4 });
    }

    #[test]
    fn user_chain_and_target() {
        let opts = Options {
            chain: "CB".into(),
            target: "DROP".into(),
        };
        let conv = convert(
            "@1.2.3.4/24 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00\n",
            &opts,
        )
        .unwrap();
        assert_eq!(
            conv.text,
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
             :CB - [0:0]\n-A CB -s 1.2.3.0/24 -j DROP\nCOMMIT\n"
        );
    }

    #[test]
    fn lossy_rules_are_reported() {
        let text = "\
@0.0.0.0/0 0.0.0.0/0 0 : 65535 53 : 53 0x00/0x00
@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x06/0xFF
@0.0.0.0/0 0.0.0.0/0 7 : 7 0 : 65535 0x01/0xFF
@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0xFF
";
        let conv = convert(text, &Options::default()).unwrap();
        assert_eq!(conv.ports_dropped, vec![1, 3]);
        assert_eq!(conv.proto_zero_widened, vec![4]);
        assert!(conv
            .text
            .contains("\n-A FORWARD -j ACCEPT\n-A FORWARD -p tcp -j ACCEPT\n"));
        assert!(conv.text.contains("\n-A FORWARD -p icmp -j ACCEPT\n"));
        let w = conv.warning().unwrap();
        assert!(w.contains("2 rule(s) have port ranges"), "{w}");
        assert!(w.contains("(rules 1, 3)"), "{w}");
    }

    #[test]
    fn errors_name_the_line_and_reason() {
        let cases = [
            ("@1.2.3/8 0.0.0.0/0 0 : 1 0 : 1 0x06/0xFF", "source prefix"),
            (
                "@1.2.3.4/33 0.0.0.0/0 0 : 1 0 : 1 0x06/0xFF",
                "prefix length",
            ),
            (
                "@1.2.3.4/8 0.0.0.0/0 5 : 1 0 : 1 0x06/0xFF",
                "above high port",
            ),
            ("@1.2.3.4/8 0.0.0.0/0 0 : 70000 0 : 1 0x06/0xFF", "0..65535"),
            ("@1.2.3.4/8 0.0.0.0/0 0 - 1 0 : 1 0x06/0xFF", "expected `:'"),
            ("@1.2.3.4/8 0.0.0.0/0 0 : 1 0 : 1 0x06/0xF0", "mask 0xf0"),
            ("@1.2.3.4/8 0.0.0.0/0 0 : 1 0 : 1", "missing protocol"),
            (
                "@1.2.3.4/8 0.0.0.0/0 0 : 1",
                "destination port range: missing",
            ),
            ("@1.2.3.4/8", "missing destination"),
            ("@1.2.3.4/8 0.0.0.0/0 0 : 1 0 : 1 0xZZ/0xFF", "hex byte"),
        ];
        for (line, want) in cases {
            let text = format!("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00\n{line}\n");
            let err = convert(&text, &Options::default()).unwrap_err();
            assert_eq!(err.line, 2, "{line}");
            assert!(err.reason.contains(want), "{line}: {err}");
            assert!(err.to_string().starts_with("line 2: "));
        }
    }

    #[test]
    fn bad_options() {
        let mut o = Options::default();
        assert!(o.validate().is_ok());
        o.chain = "A".repeat(40);
        assert!(o.validate().is_err());
        o.chain = "FORWARD".into();
        o.target = "-j".into();
        assert!(o.validate().is_err());
        o.target = String::new();
        assert!(o.validate().is_err());
    }
}

pub mod trace;
