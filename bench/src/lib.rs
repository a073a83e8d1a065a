//! pollwall's benchmark support: fixtures and helpers shared by the benches in `benches/`.
//!
//! The restore benches want a realistic 10K-rule ruleset. They use the ClassBench `acl1_10K`
//! set from the project's shared data (`../shared/data/classbench/wustl_5field/acl1_10K`
//! beside the repository) when it is there, and otherwise a deterministic synthetic set in the
//! same ClassBench text format made by [`synthetic_classbench`], so a clone without `shared/`
//! still runs every bench. [`classbench_input`] makes that choice and says which it made.

use std::fmt;
use std::path::PathBuf;

/// The environment variable that names another ClassBench rule file for the benches.
pub const CLASSBENCH_ENV: &str = "POLLWALL_BENCH_CLASSBENCH";

/// How many rules the synthetic fallback has.
pub const SYNTHETIC_RULES: usize = 10_000;

/// Where the ClassBench acl1 10K rule set lives when the shared data sits beside the repo.
pub fn default_classbench_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/classbench/wustl_5field/acl1_10K")
}

/// Which rule set the benches run on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RuleSource {
    /// A ClassBench file read from disk.
    File(PathBuf),
    /// [`synthetic_classbench`] with [`SYNTHETIC_RULES`] rules, because no file was found.
    Synthetic { missing: PathBuf },
}

impl fmt::Display for RuleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleSource::File(p) => write!(f, "ClassBench file {}", p.display()),
            RuleSource::Synthetic { missing } => write!(
                f,
                "synthetic {SYNTHETIC_RULES}-rule ClassBench-style set ({} not found; \
                 set {CLASSBENCH_ENV} to use another file)",
                missing.display()
            ),
        }
    }
}

/// The ClassBench text the benches use: the file named by `POLLWALL_BENCH_CLASSBENCH`, else
/// [`default_classbench_path`], else the synthetic set. A file that exists but cannot be read
/// is an error (the bench should not silently measure something else).
pub fn classbench_input() -> std::io::Result<(String, RuleSource)> {
    let path = std::env::var_os(CLASSBENCH_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(default_classbench_path);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok((text, RuleSource::File(path))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((
            synthetic_classbench(SYNTHETIC_RULES, 0x5eed),
            RuleSource::Synthetic { missing: path },
        )),
        Err(e) => Err(std::io::Error::new(
            e.kind(),
            format!("{}: {e}", path.display()),
        )),
    }
}

/// splitmix64: a small deterministic generator, so the synthetic set is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the tiny modulo bias does not matter here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn prefix(rng: &mut Rng, lens: &[u8]) -> String {
    let len = lens[rng.below(lens.len() as u64) as usize];
    let mask = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    let [a, b, c, d] = (rng.next() as u32 & mask).to_be_bytes();
    format!("{a}.{b}.{c}.{d}/{len}")
}

fn port_range(rng: &mut Rng, wildcard_percent: u64) -> String {
    let roll = rng.below(100);
    if roll < wildcard_percent {
        "0 : 65535".into()
    } else if roll < wildcard_percent + (100 - wildcard_percent) * 9 / 10 {
        let p = rng.below(65536);
        format!("{p} : {p}")
    } else {
        let lo = rng.below(65536);
        let hi = (lo + rng.below(1024)).min(65535);
        format!("{lo} : {hi}")
    }
}

/// A deterministic ClassBench-format (5-field, wustl layout) rule set of `n` rules, shaped
/// roughly like acl1: mostly TCP rules with host or /24 prefixes and an exact destination
/// port, some UDP and ICMP, about 8% wildcard-protocol rules (always with full port ranges,
/// so the iptables conversion is exact), ending in a match-everything rule.
pub fn synthetic_classbench(n: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut out = String::with_capacity(n * 70);
    for i in 0..n {
        if i + 1 == n {
            out.push_str("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00\n");
            break;
        }
        let src = prefix(&mut rng, &[32, 32, 32, 28, 24, 24, 16, 8, 0]);
        let dst = prefix(&mut rng, &[32, 32, 32, 32, 30, 24, 16, 0]);
        let roll = rng.below(100);
        let (sport, dport, proto) = if roll < 84 {
            (
                port_range(&mut rng, 95),
                port_range(&mut rng, 5),
                "0x06/0xFF",
            )
        } else if roll < 89 {
            (
                port_range(&mut rng, 80),
                port_range(&mut rng, 10),
                "0x11/0xFF",
            )
        } else if roll < 92 {
            ("0 : 65535".into(), "0 : 65535".into(), "0x01/0xFF")
        } else {
            ("0 : 65535".into(), "0 : 65535".into(), "0x00/0x00")
        };
        out.push_str(&format!("@{src} {dst} {sport} {dport} {proto}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_set_is_deterministic_and_converts_exactly() {
        let a = synthetic_classbench(SYNTHETIC_RULES, 7);
        assert_eq!(a, synthetic_classbench(SYNTHETIC_RULES, 7));
        assert_ne!(a, synthetic_classbench(SYNTHETIC_RULES, 8));
        let conv = tools::classbench::convert(&a, &Default::default()).unwrap();
        assert_eq!(conv.rules, SYNTHETIC_RULES);
        assert!(conv.warning().is_none());
        assert!(a.ends_with("@0.0.0.0/0 0.0.0.0/0 0 : 65535 0 : 65535 0x00/0x00\n"));
    }

    #[test]
    fn synthetic_set_restores() {
        let conv =
            tools::classbench::convert(&synthetic_classbench(300, 1), &Default::default()).unwrap();
        let mut rs = classifier::Ruleset::new();
        control::restore::restore(&conv.text, &Default::default(), &mut rs).unwrap();
    }
}
