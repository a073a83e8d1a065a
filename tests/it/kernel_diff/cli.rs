//! The live random differential of the command line (issue 11): random command sequences run
//! against `iptables-legacy` in a network namespace of their own and against `pollwall
//! iptables` with a fresh rules file; every command's exit code, stdout and stderr and the
//! final `iptables-save` must be equal (the version banner `(legacy)` read as `(pollwall)`).
//!
//! The generator covers: `-A/-I/-D/-R/-C/-N/-X/-E/-F/-Z/-P/-S` on the built-in and two user
//! chains (and a missing one), `-t filter|nat|mangle|raw`; addresses with prefixes and masks,
//! protocols by name (any case) and number, tcp/udp ports (numbers, services, ranges, reversed
//! ones), interfaces with `+`, `!` before options, conntrack/state lists (prefixes, NONE, bad
//! names), multiport, icmp types, comment, and the targets ACCEPT/DROP/RETURN/LOG/REJECT/MARK
//! and jumps (to user chains, built-ins and missing ones); and bad values, indexes out of range
//! and wrong chains. A second random stream adds long option spellings, `-f`, tcp flags,
//! limit, mark, mac, iprange, owner and the table- or hook-restricted targets CONNMARK, CT,
//! SNAT, REJECT --reject-with and NFQUEUE. `-L` stays out: `-L -n` prints protocol numbers in 1.8.9 where pollwall
//! prints names (a documented deviation, see `tools/oracle/record.py`), and `-L` without `-n`
//! does reverse lookups.
//!
//! `iptables-restore` gets the same treatment: 300 random restore files per run (with
//! `--noflush`, `-c`, `[p:b]` rule counters, policies with counters and bad ones, user chains,
//! rules from the same generator, broken lines and missing COMMITs, `* table` lines), after a
//! `-N u1`; exit code, output and the final `iptables-save -c` compared.
//!
//! Fresh seeds each run (printed; `CLI_DIFF_SEED` and `RESTORE_DIFF_SEED` repeat them), and
//! [`REGRESSION_SEEDS`] and [`RESTORE_REGRESSION_SEEDS`].

use super::gen::Rng;
use crate::netns::require_root_and;
use control::cli::run;
use control::store::{RulesFile, RulesetStore};
use std::process::{Command, Stdio};

/// Sequences that once failed (all from the run of seed 1796597963446684628, the first):
/// a table a failed command opened is listed by iptables-save; -C/-D on a missing chain say
/// "Bad rule"; `80:80` is not a multiport range; `! -p tcp --dport` loads tcp (and the kernel
/// refuses the rule); udp's unknown service message.
const REGRESSION_SEEDS: &[u64] = &[
    8751984430846684336,
    5858201748607397165,
    6093649907308170198,
    6274745273416834525,
    17978169566215073794,
    6295464979217753930,
    5312730363528720828,
    3587092672165266799,
    // iprange's reversed-range warning; a rule after an unconditional verdict is checked
    // against no hook (`mark_source_chains` stops there), so `-m owner` passes in FORWARD.
    16738215916979890733,
    15029016822018455495,
    4119297224473663685,
    12722103876770465995,
];
const SEQUENCES: usize = 2000;

const CHAINS: &[&str] = &["INPUT", "FORWARD", "OUTPUT", "u1", "u2", "nochain"];

fn addr(r: &mut Rng) -> String {
    let a = [
        r.range(1, 223) as u8,
        r.below(256) as u8,
        r.below(256) as u8,
        r.below(256) as u8,
    ];
    let base = format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    match r.below(6) {
        0 => base,
        1 => format!("{base}/{}", r.below(33)),
        2 => format!("{base}/255.255.{}.0", r.pick(&[0, 128, 255])),
        3 => format!("{}.{}", a[0], a[1]),
        4 => format!("{base}/{}", r.range(33, 40)),
        _ => format!("{base},{}.0.0.{}", a[1].max(1), a[2]),
    }
}

fn port(r: &mut Rng) -> String {
    let one = |r: &mut Rng| match r.below(5) {
        0 => r
            .pick(&[
                "ssh",
                "smtp",
                "http",
                "domain",
                "https",
                "syslog",
                "nosuchsvc",
            ])
            .to_string(),
        1 => r.below(70000).to_string(),
        _ => r.below(2000).to_string(),
    };
    match r.below(5) {
        0 => format!("{}:{}", one(r), one(r)),
        1 => format!("{}:", one(r)),
        2 => format!(":{}", one(r)),
        _ => one(r),
    }
}

fn neg(r: &mut Rng, out: &mut Vec<String>) {
    if r.pct(15) {
        out.push("!".into());
    }
}

/// A random rule specification (after the chain).
fn rule_spec(r: &mut Rng) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if r.pct(30) {
        neg(r, &mut a);
        a.extend(["-s".into(), addr(r)]);
    }
    if r.pct(20) {
        neg(r, &mut a);
        a.extend(["-d".into(), addr(r)]);
    }
    if r.pct(15) {
        neg(r, &mut a);
        let i = r.pick(&["eth0", "eth+", "+", "veth1", "lo"]).to_string();
        a.extend([r.pick(&["-i", "-o"]).to_string(), i]);
    }
    let proto = match r.below(10) {
        0..=3 => Some(*r.pick(&["tcp", "udp", "TCP", "Udp", "6", "17"])),
        4 => Some(*r.pick(&["icmp", "1", "all", "0", "gre", "47", "sctp", "bogus"])),
        _ => None,
    };
    if let Some(p) = proto {
        neg(r, &mut a);
        a.extend(["-p".into(), p.into()]);
        let lower = p.to_ascii_lowercase();
        let tcpudp = matches!(lower.as_str(), "tcp" | "udp" | "6" | "17");
        if tcpudp && r.pct(60) {
            if r.pct(70) {
                neg(r, &mut a);
                a.extend(["--dport".into(), port(r)]);
            }
            if r.pct(40) {
                neg(r, &mut a);
                a.extend([r.pick(&["--sport", "--source-port"]).to_string(), port(r)]);
            }
        }
        if tcpudp && r.pct(15) {
            let list: Vec<String> = (0..r.range(1, 3)).map(|_| port(r)).collect();
            a.extend(["-m".into(), "multiport".into()]);
            neg(r, &mut a);
            a.extend([
                r.pick(&["--dports", "--sports", "--ports"]).to_string(),
                list.join(","),
            ]);
        }
        if (lower == "icmp" || lower == "1") && r.pct(60) {
            neg(r, &mut a);
            let t = r.pick(&[
                "8",
                "echo-request",
                "3/4",
                "ttl-exceeded",
                "time",
                "any",
                "255",
                "port-unr",
            ]);
            a.extend(["--icmp-type".into(), t.to_string()]);
        }
    }
    if r.pct(15) {
        let states = [
            "NEW",
            "ESTABLISHED",
            "RELATED",
            "INVALID",
            "UNTRACKED",
            "EST",
            "rel",
            "SNAT",
            "dnat",
            "FOO",
            "",
        ];
        let n = r.range(1, 3);
        let list: Vec<&str> = (0..n).map(|_| *r.pick(&states)).collect();
        if r.pct(50) {
            a.extend(["-m".into(), "conntrack".into()]);
            neg(r, &mut a);
            a.extend(["--ctstate".into(), list.join(",")]);
        } else {
            a.extend(["-m".into(), "state".into()]);
            neg(r, &mut a);
            a.extend(["--state".into(), list.join(",")]);
        }
    }
    if r.pct(8) {
        let st = [
            "NONE",
            "EXPECTED",
            "SEEN_REPLY",
            "ASSURED",
            "CONFIRMED",
            "SEEN",
            "N",
            "BAR",
        ];
        let list: Vec<&str> = (0..r.range(1, 2)).map(|_| *r.pick(&st)).collect();
        a.extend([
            "-m".into(),
            "conntrack".into(),
            "--ctstatus".into(),
            list.join(","),
        ]);
    }
    if r.pct(8) {
        a.extend([
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            r.pick(&["x", "two words", "\"q\""]).to_string(),
        ]);
    }
    match r.below(12) {
        0..=2 => a.extend(["-j".into(), "ACCEPT".into()]),
        3 | 4 => a.extend(["-j".into(), "DROP".into()]),
        5 => a.extend(["-j".into(), "RETURN".into()]),
        6 => a.extend([
            "-j".into(),
            r.pick(&["u1", "u2", "INPUT", "nochain"]).to_string(),
        ]),
        7 => a.extend([
            "-j".into(),
            "LOG".into(),
            "--log-prefix".into(),
            "p: ".into(),
        ]),
        8 => a.extend(["-j".into(), "REJECT".into()]),
        9 => a.extend([
            "-j".into(),
            "MARK".into(),
            "--set-mark".into(),
            r.pick(&["1", "0x10/0xff", "bad"]).to_string(),
        ]),
        10 => a.extend(["-g".into(), r.pick(&["u1", "u2", "OUTPUT"]).to_string()]),
        _ => {}
    }
    a
}

/// What a rule gets from the second stream (so older seeds keep their base commands): long
/// option spellings, fragments, tcp flags, limit, mark, mac, iprange, owner, and the targets
/// with table or hook restrictions.
fn extras(x: &mut Rng, words: &mut Vec<String>) {
    let long = |w: &str| -> &'static [&'static str] {
        match w {
            "-s" => &["--source", "--src"],
            "-d" => &["--destination", "--dst"],
            "-p" => &["--protocol", "--proto"],
            "-j" => &["--jump"],
            "-i" => &["--in-interface"],
            "-o" => &["--out-interface"],
            _ => &[],
        }
    };
    for w in words.iter_mut() {
        let alts = long(w);
        if !alts.is_empty() && x.pct(25) {
            *w = x.pick(alts).to_string();
        }
    }
    let tcp = words.windows(2).any(|p| {
        matches!(p[0].as_str(), "-p" | "--protocol" | "--proto")
            && matches!(p[1].to_ascii_lowercase().as_str(), "tcp" | "6")
    });
    let mut add: Vec<String> = Vec::new();
    let mut push = |v: &[&str]| add.extend(v.iter().map(|s| s.to_string()));
    if x.pct(5) {
        push(if x.pct(50) { &["-f"] } else { &["!", "-f"] });
    }
    if tcp && x.pct(25) {
        match x.below(4) {
            0 => push(&["--syn"]),
            1 => push(&["!", "--syn"]),
            2 => push(&["--tcp-flags", "SYN,ACK", "SYN"]),
            _ => push(&["--tcp-flags", "ALL", "NONE"]),
        }
    }
    match x.below(16) {
        0 => push(&[
            "-m",
            "limit",
            "--limit",
            *x.pick(&["5/min", "3/s", "0/sec", "10/hour"]),
            "--limit-burst",
            "3",
        ]),
        1 => push(&["-m", "mark", "--mark", *x.pick(&["0x1/0xff", "7", "bad"])]),
        2 => push(&[
            "-m",
            "mac",
            "--mac-source",
            *x.pick(&["00:11:22:33:44:55", "00:11:22"]),
        ]),
        3 => push(&[
            "-m",
            "iprange",
            "--src-range",
            *x.pick(&["1.2.3.4-1.2.3.9", "1.2.3.9-1.2.3.4", "1.2.3.4"]),
        ]),
        4 => push(&["-m", "owner", "--uid-owner", "0"]),
        _ => {}
    }
    let has_target = words
        .iter()
        .any(|w| matches!(w.as_str(), "-j" | "--jump" | "-g"));
    if !has_target && x.pct(30) {
        match x.below(5) {
            0 => push(&["-j", "CONNMARK", "--set-mark", "1"]),
            1 => push(&["-j", "CT", "--notrack"]),
            2 => push(&["-j", "SNAT", "--to-source", "1.2.3.4"]),
            3 => push(&[
                "-j",
                "REJECT",
                "--reject-with",
                *x.pick(&["tcp-reset", "icmp-host-prohibited", "bogus"]),
            ]),
            _ => push(&["-j", "NFQUEUE", "--queue-num", "3"]),
        }
    }
    words.extend(add);
}

/// One random command line (after the program name).
fn command(r: &mut Rng) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    if r.pct(15) {
        a.extend([
            "-t".into(),
            r.pick(&["filter", "nat", "mangle", "raw", "bogus"])
                .to_string(),
        ]);
    }
    let chain = r.pick(CHAINS).to_string();
    let num = |r: &mut Rng| r.range(0, 4).to_string();
    match r.below(20) {
        0..=5 => {
            a.extend(["-A".into(), chain]);
            a.extend(rule_spec(r));
        }
        6 | 7 => {
            a.push("-I".into());
            a.push(chain);
            if r.pct(50) {
                a.push(num(r));
            }
            a.extend(rule_spec(r));
        }
        8 => {
            a.extend(["-D".into(), chain]);
            if r.pct(50) {
                a.push(num(r));
            } else {
                a.extend(rule_spec(r));
            }
        }
        9 => {
            a.extend(["-R".into(), chain, num(r)]);
            a.extend(rule_spec(r));
        }
        10 => {
            a.extend(["-C".into(), chain]);
            a.extend(rule_spec(r));
        }
        11 | 12 => a.extend([
            "-N".into(),
            r.pick(&["u1", "u2", "ACCEPT", "x-y.z", ""]).to_string(),
        ]),
        13 => {
            a.push("-X".into());
            if r.pct(70) {
                a.push(r.pick(&["u1", "u2", "INPUT", "nochain"]).to_string());
            }
        }
        14 => a.extend([
            "-E".into(),
            r.pick(&["u1", "u2", "INPUT"]).to_string(),
            r.pick(&["u1", "u2", "u3", "ACCEPT", "FORWARD"]).to_string(),
        ]),
        15 => {
            a.push(r.pick(&["-F", "-Z"]).to_string());
            if r.pct(60) {
                a.push(chain);
            }
        }
        16 => a.extend([
            "-P".into(),
            chain,
            r.pick(&["ACCEPT", "DROP", "RETURN", "bogus"]).to_string(),
        ]),
        _ => {
            a.push(r.pick(&["-S", "-S", "-v -S"]).to_string());
            if r.pct(50) {
                a.push(chain);
            }
        }
    }
    // "-v -S" is two words.
    a.iter()
        .flat_map(|w| {
            if w == "-v -S" {
                vec!["-v".to_string(), "-S".into()]
            } else {
                vec![w.clone()]
            }
        })
        .collect()
}

/// A random `iptables-restore` file: tables with chain lines (policies, counters, user
/// chains, bad ones), rules with and without `[p:b]` counters, and now and then a broken line,
/// a missing COMMIT or a table line with blanks.
fn restore_file(r: &mut Rng) -> String {
    let mut t = String::new();
    let mut used: Vec<&str> = Vec::new();
    for _ in 0..r.range(1, 3) {
        let table = *r.pick(&[
            "filter", "filter", "nat", "mangle", "raw", " mangle", "bogus",
        ]);
        // Not the same table twice: the second block's policy counters under -n -c follow
        // libiptc's counter maps, which pollwall does not model (left for later).
        if used.contains(&table.trim()) {
            continue;
        }
        used.push(table.trim());
        t.push_str(&format!("*{table}\n"));
        let builtin: &[&str] = match table.trim() {
            "nat" => &["PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"],
            "mangle" => &["PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"],
            "raw" => &["PREROUTING", "OUTPUT"],
            _ => &["INPUT", "FORWARD", "OUTPUT"],
        };
        for c in builtin {
            if r.pct(70) {
                let pol = *r.pick(&["ACCEPT", "ACCEPT", "DROP", "-", "bogus"]);
                t.push_str(&format!(
                    ":{c} {pol} [{}:{}]\n",
                    r.below(100),
                    r.below(10000)
                ));
            }
        }
        for u in ["u1", "u2"] {
            if r.pct(50) {
                t.push_str(&format!(":{u} - [0:0]\n"));
            }
        }
        let chains: Vec<&str> = builtin
            .iter()
            .copied()
            .chain(["u1", "u2", "nochain"])
            .collect();
        for _ in 0..r.range(0, 5) {
            if r.pct(25) {
                t.push_str(&format!("[{}:{}] ", r.below(50), r.below(5000)));
            }
            let spec = rule_spec(r)
                .into_iter()
                .map(|w| {
                    if w.contains(' ') || w.is_empty() {
                        format!("\"{w}\"")
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ");
            t.push_str(&format!("-A {} {spec}\n", r.pick(&chains)));
        }
        match r.below(20) {
            0 => t.push_str("garbage line\n"),
            1 => t.push_str("-X u1\n"),
            2 => {}
            _ => t.push_str("COMMIT\n"),
        }
    }
    t
}

/// A restore run: its options and its file.
fn restore_case(seed: u64) -> (Vec<String>, String) {
    let mut r = Rng::new(seed);
    let opts = match r.below(5) {
        0 => vec!["--noflush".to_string()],
        1 => vec!["-c".into()],
        2 => vec!["-n".into(), "-c".into()],
        _ => Vec::new(),
    };
    (opts, restore_file(&mut r))
}

/// A sequence's commands.
fn sequence(seed: u64) -> Vec<Vec<String>> {
    let mut r = Rng::new(seed);
    let mut x = Rng::new(seed ^ 0x2545_f491_4f6c_dd1d);
    (0..r.range(3, 9))
        .map(|_| {
            let mut c = command(&mut r);
            let rule_cmd = c
                .iter()
                .any(|w| matches!(w.as_str(), "-A" | "-I" | "-R" | "-D" | "-C"));
            if rule_cmd {
                extras(&mut x, &mut c);
            }
            c
        })
        .collect()
}

/// What one command printed.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    code: i32,
    stdout: String,
    stderr: String,
}

fn without_comments(s: &str) -> String {
    s.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The kernel's side, in a namespace of its own (a thread that unshared its network namespace;
/// the commands it spawns inherit it).
fn kernel_side(cmds: Vec<Vec<String>>) -> (Vec<Seen>, String) {
    std::thread::spawn(move || {
        // SAFETY: unshare on the calling thread only; it leaves with the namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET)");
        let mut seen = Vec::new();
        for c in &cmds {
            let out = Command::new("iptables-legacy")
                .args(c)
                .stdin(Stdio::null())
                .output()
                .expect("iptables-legacy");
            seen.push(Seen {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).replace("(legacy)", "(pollwall)"),
            });
        }
        let save = Command::new("iptables-legacy-save")
            .output()
            .expect("iptables-legacy-save");
        (
            seen,
            without_comments(&String::from_utf8_lossy(&save.stdout)),
        )
    })
    .join()
    .expect("kernel side")
}

fn pollwall_side(cmds: &[Vec<String>], file: &std::path::Path) -> (Vec<Seen>, String) {
    let store = RulesFile::new(file);
    let mut seen = Vec::new();
    for c in cmds {
        let o = run(
            "iptables",
            c,
            &mut std::io::empty(),
            Ok(&store as &dyn RulesetStore),
        );
        seen.push(Seen {
            code: o.code,
            stdout: o.stdout,
            stderr: o.stderr,
        });
    }
    let save = run(
        "iptables-save",
        &[],
        &mut std::io::empty(),
        Ok(&store as &dyn RulesetStore),
    );
    (seen, without_comments(&save.stdout))
}

/// The first difference of sequence `seed`, if any.
fn differs(seed: u64, dir: &std::path::Path) -> Option<String> {
    let cmds = sequence(seed);
    let (kseen, ksave) = kernel_side(cmds.clone());
    let file = dir.join(format!("rules-{seed}"));
    let (pseen, psave) = pollwall_side(&cmds, &file);
    let _ = std::fs::remove_file(&file);
    for (i, (k, p)) in kseen.iter().zip(&pseen).enumerate() {
        if k != p {
            let script: String = cmds
                .iter()
                .map(|c| format!("  iptables {}\n", c.join(" ")))
                .collect();
            return Some(format!(
                "seed {seed}: command {i} `iptables {}` differs\n  kernel:   {k:?}\n  pollwall: {p:?}\n--- sequence\n{script}",
                cmds[i].join(" ")
            ));
        }
    }
    (ksave != psave).then(|| {
        format!(
            "seed {seed}: final iptables-save differs\n--- kernel\n{ksave}--- pollwall\n{psave}"
        )
    })
}

#[test]
fn kernel_differential_cli() {
    if let Err(reason) = require_root_and(&["iptables-legacy", "iptables-legacy-save"]) {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let fresh = std::env::var("CLI_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(super::stateful::now_ns);
    eprintln!("CLI differential: seed {fresh} (CLI_DIFF_SEED={fresh} repeats it)");
    let dir = tempfile::tempdir().expect("temp dir");
    let started = std::time::Instant::now();
    let mut failures: Vec<String> = REGRESSION_SEEDS
        .iter()
        .filter_map(|&s| differs(s, dir.path()))
        .collect();
    let mut r = Rng::new(fresh);
    for _ in 0..SEQUENCES {
        if let Some(f) = differs(r.next(), dir.path()) {
            failures.push(f);
        }
    }
    eprintln!(
        "CLI differential: {} sequences in {:.1?}, {} differ",
        SEQUENCES + REGRESSION_SEEDS.len(),
        started.elapsed(),
        failures.len()
    );
    if let Ok(p) = std::env::var("CLI_DIFF_DUMP") {
        let _ = std::fs::write(p, failures.join("\n=====\n"));
    }
    let shown: Vec<String> = failures.iter().take(3).cloned().collect();
    assert!(
        failures.is_empty(),
        "{} sequences differ (seed {fresh}); the first:\n{}",
        failures.len(),
        shown.join("\n")
    );
}

/// The first difference of restore case `seed` (a setup command, then the restore), if any.
fn restore_differs(seed: u64, dir: &std::path::Path) -> Option<String> {
    let (opts, file) = restore_case(seed);
    let setup = vec!["-N".to_string(), "u1".to_string()];
    let (k_opts, k_file, k_setup) = (opts.clone(), file.clone(), setup.clone());
    let (kseen, ksave) = std::thread::spawn(move || {
        // SAFETY: unshare on the calling thread only; it leaves with the namespace.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "unshare(CLONE_NEWNET)");
        let _ = Command::new("iptables-legacy").args(&k_setup).output();
        let mut child = Command::new("iptables-legacy-restore")
            .args(&k_opts)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("iptables-legacy-restore");
        use std::io::Write;
        let _ = child
            .stdin
            .take()
            .expect("stdin")
            .write_all(k_file.as_bytes());
        let out = child.wait_with_output().expect("restore");
        let save = Command::new("iptables-legacy-save")
            .arg("-c")
            .output()
            .expect("iptables-legacy-save");
        (
            Seen {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).replace("(legacy)", "(pollwall)"),
            },
            without_comments(&String::from_utf8_lossy(&save.stdout)),
        )
    })
    .join()
    .expect("kernel side");
    let path = dir.join(format!("restore-{seed}"));
    let store = RulesFile::new(&path);
    let st = Ok(&store as &dyn RulesetStore);
    let _ = run("iptables", &setup, &mut std::io::empty(), st);
    let o = run(
        "iptables-restore",
        &opts,
        &mut file.as_bytes(),
        Ok(&store as &dyn RulesetStore),
    );
    let pseen = Seen {
        code: o.code,
        stdout: o.stdout,
        stderr: o.stderr,
    };
    let save = run(
        "iptables-save",
        &["-c".to_string()],
        &mut std::io::empty(),
        Ok(&store as &dyn RulesetStore),
    );
    let psave = without_comments(&save.stdout);
    let _ = std::fs::remove_file(&path);
    if kseen != pseen || ksave != psave {
        return Some(format!(
            "restore seed {seed}: iptables-restore {} differs\n  kernel:   {kseen:?}\n  pollwall: {pseen:?}\n--- kernel save\n{ksave}--- pollwall save\n{psave}--- file\n{file}",
            opts.join(" ")
        ));
    }
    None
}

/// Restore cases that once failed: a table opened by a failing restore stays listed; a `-`
/// policy leaves a built-in chain's counters alone; nat's DROP refusal in a restore line; a
/// `* table` line inside an open table (the run of seed 1796598610506992508 found the first
/// three, 160 of 300 files differing).
const RESTORE_REGRESSION_SEEDS: &[u64] = &[
    9613626868045860270,
    13804549469226035226,
    10301028107481702691,
    4453914397457674395,
    17296995174596627121,
];
const RESTORES: usize = 300;

#[test]
fn kernel_differential_restore() {
    if let Err(reason) = require_root_and(&[
        "iptables-legacy",
        "iptables-legacy-save",
        "iptables-legacy-restore",
    ]) {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let fresh = std::env::var("RESTORE_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(super::stateful::now_ns);
    eprintln!("restore differential: seed {fresh} (RESTORE_DIFF_SEED={fresh} repeats it)");
    let dir = tempfile::tempdir().expect("temp dir");
    let started = std::time::Instant::now();
    let mut failures: Vec<String> = RESTORE_REGRESSION_SEEDS
        .iter()
        .filter_map(|&s| restore_differs(s, dir.path()))
        .collect();
    let mut r = Rng::new(fresh);
    for _ in 0..RESTORES {
        if let Some(f) = restore_differs(r.next(), dir.path()) {
            failures.push(f);
        }
    }
    eprintln!(
        "restore differential: {} files in {:.1?}, {} differ",
        RESTORES + RESTORE_REGRESSION_SEEDS.len(),
        started.elapsed(),
        failures.len()
    );
    if let Ok(p) = std::env::var("CLI_DIFF_DUMP") {
        let _ = std::fs::write(p, failures.join("\n=====\n"));
    }
    let shown: Vec<String> = failures.iter().take(3).cloned().collect();
    assert!(
        failures.is_empty(),
        "{} restore files differ (seed {fresh}); the first:\n{}",
        failures.len(),
        shown.join("\n")
    );
}
