//! The live routed NAT kernel differential (the routed mode and NAT issue): the stateful
//! differential's three namespaces (fw routes between a and b through permanent neighbours),
//! random NAT rulesets ([`super::nat_gen`]) and conversations fitted to them, and
//! `pollwall replay` in **routed mode** with the same topology in DESIGN §9's configuration
//! (fw's ports with their MACs and addresses, the two routes, the two static neighbours).
//!
//! Compared: the counters of every table (nat included), the connection table with its
//! translated tuples (`conntrack -L`, timeouts aside), and every frame fw transmits, byte for
//! byte from the Ethernet header to the end of the datagram: MACs, TTL, addresses, ports and
//! every checksum.
//!
//! A fresh seed each run (printed; `NAT_DIFF_SEED` repeats one), and the seeds in
//! [`REGRESSION_CASES`] every run.

use super::gen::Rng;
use super::nat_gen::{conversations, expiring_copies, ruleset};
use super::stateful::{
    counter_lines_of, diff_lines, first_difference, frame, now_ns, replay, Rig, IF_FW0, IF_FW1,
    MAC_A, MAC_B, MAC_FW0, MAC_FW1,
};
use crate::netns::require_root_and;
use std::time::Instant;

/// Rulesets that once failed, as (seed, index of the ruleset in that seed's sequence).
const REGRESSION_CASES: &[(u64, usize)] = &[
    // Two GRE flows without keys SNATed to the same address: the second's reply tuple is
    // taken, and the kernel drops it at confirmation (insert_failed).
    (1796329952888496417, 8),
    (1796329970171256950, 5),
    // Frames to a translated address no one owns wait for ARP in the kernel: not an
    // IPv4 frame for the capture, and a reference on the connection.
    (1796344163905031952, 0),
    (1796344163905031952, 8),
    (1796344197568062904, 6),
    // 260 frames with ftp sessions: the capture's default receive buffer dropped the last
    // frames the kernel sent (the rig's bug, fixed with a larger buffer).
    (1796365673570134811, 0),
];
const RULESETS: usize = 12;
const FRAMES: usize = 160;

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// fw's topology as pollwall's routed configuration.
fn routed_config() -> String {
    format!(
        "rules = \"rules.v4\"\n\n\
         [[port]]\nname = \"{IF_FW0}\"\nmac = \"{}\"\naddress = [\"10.200.1.2/24\"]\n\n\
         [[port]]\nname = \"{IF_FW1}\"\nmac = \"{}\"\naddress = [\"10.200.2.1/24\"]\n\n\
         [[route]]\nto = \"10.1.0.0/16\"\nvia = \"10.200.1.1\"\n\n\
         [[route]]\nto = \"10.2.0.0/16\"\nvia = \"10.200.2.2\"\n\n\
         [[neighbor]]\nip = \"10.200.1.1\"\nmac = \"{}\"\n\n\
         [[neighbor]]\nip = \"10.200.2.2\"\nmac = \"{}\"\n",
        mac(MAC_FW0),
        mac(MAC_FW1),
        mac(MAC_A),
        mac(MAC_B)
    )
}

/// A transmitted frame, Ethernet header and datagram (padding stripped), as hex. An ICMP
/// error fw made itself has its IP id and header checksum masked (the rest is compared): the
/// kernel draws the id from a keyed per-destination counter (`ip_select_ident`), which no
/// replay can repeat.
fn wire_form(f: &[u8]) -> String {
    let len = f
        .get(16..18)
        .map_or(f.len(), |b| {
            14 + usize::from(u16::from_be_bytes([b[0], b[1]]))
        })
        .min(f.len());
    let mut f = f[..len].to_vec();
    // fw's own errors leave with TTL 64 (forwarded ones were decremented) and the kernel's
    // ICMP error TOS 0xc0; their source may be a translated address.
    let own_error = f.len() >= 34 + 8
        && f[23] == 1
        && f[22] == 64
        && f[15] == 0xc0
        && matches!(f[14 + usize::from(f[14] & 15) * 4], 3 | 11);
    if own_error {
        f[18..20].copy_from_slice(b"..");
        f[24..26].copy_from_slice(b"..");
    }
    f.iter().map(|b| format!("{b:02x}")).collect()
}

/// Conntrack lines without `use=`: a frame the kernel holds while its next hop resolves
/// keeps a reference to its connection (a translated address no one owns is never
/// resolved), which pollwall's queued frames do not count.
fn without_use(lines: Vec<String>) -> Vec<String> {
    lines
        .into_iter()
        .map(|l| {
            l.split(' ')
                .filter(|w| !w.starts_with("use="))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// What the kernel's tables held at the end of the rulesets (to show the test reached NAT).
#[derive(Default)]
struct Tally {
    /// Entries whose reply is not the inverse of their original (translated).
    translated: usize,
    /// Of those, entries whose source port was moved (a clash).
    moved: usize,
    /// Frames the kernel sent with an ftp announcement rewritten to fw's B address.
    rewritten: usize,
}

/// Whether a frame carries an ftp announcement of fw's B address (only `nf_nat_ftp` writes
/// one: the generator announces real addresses).
fn announces_fw(f: &[u8]) -> bool {
    let has = |pat: &[u8]| f.windows(pat.len()).any(|w| w == pat);
    has(b"10,200,2,1,") || has(b"|10.200.2.1|")
}

/// Whether a conntrack line is translated, and whether its source port moved.
fn translation_of(line: &str) -> (bool, bool) {
    let field = |key: &str| -> Vec<&str> {
        line.split(' ')
            .filter_map(|w| w.strip_prefix(key))
            .collect()
    };
    let (src, dst, sport, dport) = (
        field("src="),
        field("dst="),
        field("sport="),
        field("dport="),
    );
    let nat = src.len() == 2 && dst.len() == 2 && (src[0] != dst[1] || dst[0] != src[1]);
    let moved = sport.len() == 2 && dport.len() == 2 && sport[0] != dport[1];
    (nat, moved)
}

/// Runs the rulesets `which` of `seed`'s sequence (the ones before are generated and skipped).
fn run_seed(
    rig: &Rig,
    dir: &std::path::Path,
    seed: u64,
    which: std::ops::Range<usize>,
    tally: &mut Tally,
) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut later = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut newer = Rng::new(seed ^ 0x5851_f42d_4c95_7f2d);
    let mut newest = Rng::new(seed ^ 0x2545_f491_4f6c_dd1d);
    let mut failures = Vec::new();
    let config = routed_config();
    for k in 0..which.end {
        let (rules, plan) = ruleset(&mut rng, &mut later, &mut newer);
        let steps = conversations(&mut rng, &mut later, &mut newer, &plan, FRAMES);
        let steps = expiring_copies(&mut newest, steps);
        if k < which.start {
            continue;
        }
        let frames: Vec<_> = steps
            .iter()
            .map(|s| (s.side, frame(s.side, &s.ip)))
            .collect();
        rig.load(&rules);
        let (times, ksent) = rig.send(&frames, rules.contains("connlimit"));
        let (ksave, kct) = (rig.save(), without_use(rig.conntrack()));
        for l in &kct {
            let (nat, moved) = translation_of(l);
            tally.translated += usize::from(nat);
            tally.moved += usize::from(moved);
        }
        tally.rewritten += ksent.iter().flatten().filter(|f| announces_fw(f)).count();
        match replay(dir, &config, &rules, &frames, &times) {
            Err(e) => failures.push(format!("seed {seed} ruleset {k}: replay failed: {e}")),
            Ok((osave, oct, osent)) => {
                let oct = without_use(oct);
                let tables = ["filter", "mangle", "raw", "nat"];
                let form = |v: &[Vec<u8>]| v.iter().map(|f| wire_form(f)).collect::<Vec<_>>();
                let d = diff_lines(
                    "counters",
                    &counter_lines_of(&ksave, &tables),
                    &counter_lines_of(&osave, &tables),
                ) + &diff_lines("conntrack", &kct, &oct)
                    + &first_difference("a", &form(&ksent[0]), &form(&osent[0]))
                    + &first_difference("b", &form(&ksent[1]), &form(&osent[1]));
                if !d.is_empty() {
                    let script: String = steps
                        .iter()
                        .enumerate()
                        .map(|(i, s)| format!("  #{i} {:?} {}\n", s.side, s.what))
                        .collect();
                    failures.push(format!(
                        "seed {seed} ruleset {k}: differs from the kernel\n--- ruleset\n{rules}--- differences\n{d}--- frames\n{script}"
                    ));
                }
            }
        }
    }
    failures
}

#[test]
fn kernel_differential_routed_nat() {
    if let Err(reason) = require_root_and(&[
        "ip",
        "ethtool",
        "iptables-legacy",
        "iptables-legacy-save",
        "iptables-legacy-restore",
        "conntrack",
    ]) {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let fresh = std::env::var("NAT_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now_ns);
    eprintln!("routed NAT kernel differential: seed {fresh} (NAT_DIFF_SEED={fresh} repeats it)");
    let started = Instant::now();
    let rig = Rig::new("kn");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    let mut tally = Tally::default();
    for &(seed, k) in REGRESSION_CASES {
        failures.extend(run_seed(&rig, dir.path(), seed, k..k + 1, &mut tally));
    }
    failures.extend(run_seed(&rig, dir.path(), fresh, 0..RULESETS, &mut tally));
    eprintln!(
        "routed NAT kernel differential: {} rulesets, {FRAMES} frames each, in {:.1?}; the kernel \
         ended with {} translated connections, {} of them on a moved port, and sent {} \
         frames with an ftp announcement it rewrote",
        RULESETS + REGRESSION_CASES.len(),
        started.elapsed(),
        tally.translated,
        tally.moved,
        tally.rewritten
    );
    drop(rig);
    let shown: Vec<String> = failures.iter().take(2).cloned().collect();
    assert!(
        failures.is_empty(),
        "{} of the rulesets differ (seed {fresh}); the first:\n{}",
        failures.len(),
        shown.join("\n\n")
    );
}
