//! The kernel as a differential oracle for the classifier (DESIGN §8).
//!
//! Topology, three namespaces made by this test and removed on drop (also on panic):
//!
//! ```text
//!   a: pwa0 ──veth── pwf0 :fw: pwf1 ──veth── pwb0 :b
//!      10.200.1.1      10.200.1.2  10.200.2.1      10.200.2.2
//! ```
//!
//! fw forwards, rp_filter is off everywhere, fw's default route goes via b's address whose MAC is
//! a permanent neighbour entry (no ARP), and b neither forwards nor has a route back, so nothing
//! comes back. Frames are sent raw from a (AF_PACKET on pwa0) to fw's ingress MAC.
//!
//! For each seed: a random stateless filter ruleset (iptables-restore text) and 150-300 crafted
//! Ethernet/IPv4 frames drawn from its own prefixes and ports. The kernel side loads the ruleset
//! into fw with `iptables-legacy-restore`, zeroes the counters, sends the frames and reads
//! `iptables-legacy-save -c -t filter`. The pollwall side runs
//! `pollwall replay --rules RULES --hook FORWARD --in-iface pwf0 --out-iface pwf1 CAPTURE.pcap`
//! on the same frames (a pcap written with `dataplane::pcap`) and prints `iptables-save -c`
//! text. Every `:CHAIN POLICY [p:b]` and `[p:b] -A ...` line of the filter table must agree.
//!
//! Before each seed the frames are also sent through an empty ruleset: every one of them must be
//! counted by FORWARD's policy (else frames die before netfilter and the comparison means
//! nothing). A counting rule in fw's mangle FORWARD chain (which runs before filter) tells when all
//! frames have gone through, and that every frame reached FORWARD with the random ruleset too.
//!
//! No conntrack, state, limit, owner or mac matches (DESIGN §8: conntrack turns on reassembly
//! and changes what FORWARD sees; limit refills; owner/mac do not apply in FORWARD).
//!
//! Frames are built by a small private builder ([`frame`]); replace it with the
//! `classifier::wire` emit APIs once they exist.

mod cli;
pub(crate) mod gen;
mod nat_clash;
mod nat_ftp;
mod nat_gen;
mod routed_nat;
mod stateful;
mod stateful_apps;
mod stateful_gen;

use crate::netns::{require_root_and, veth_pair, Netns, RawSender};
use dataplane::pcap::{LinkType, PcapWriter};
use gen::*;
use std::fmt::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

const SEEDS: [u64; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 0x5eed_cafe];

const MAC_A: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 0xa0];
const MAC_FW_IN: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 0xf0];
const MAC_FW_OUT: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 0xf1];
const MAC_B: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 0xb0];
const IF_A: &str = "pwa0";
const IF_IN: &str = "pwf0";
const IF_OUT: &str = "pwf1";
const IF_B: &str = "pwb0";
/// Every topology address is in 10.200.0.0/16, which no crafted frame uses.
const TOPO_NET: u32 = 0x0ac8_0000;
const TOPO_MASK: u32 = 0xffff_0000;

// ---------------------------------------------------------------------------------------------
// The kernel side.

/// The three namespaces, removed on drop (fields drop in order: a, fw, b).
struct Topology {
    a: Netns,
    fw: Netns,
    _b: Netns,
}

impl Topology {
    fn new() -> Topology {
        let pid = std::process::id();
        let a = Netns::new(&format!("pwkd-a-{pid}")).expect("create netns a");
        let fw = Netns::new(&format!("pwkd-fw-{pid}")).expect("create netns fw");
        let b = Netns::new(&format!("pwkd-b-{pid}")).expect("create netns b");
        for ns in [&a, &fw, &b] {
            // No IPv6 chatter (DAD, router solicitations) on the veths; no source validation.
            for k in ["all", "default"] {
                let _ = ns.exec(
                    "sh",
                    &[
                        "-c",
                        &format!("echo 1 > /proc/sys/net/ipv6/conf/{k}/disable_ipv6"),
                    ],
                );
                ns.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0");
            }
        }
        veth_pair(&a, IF_A, &mac_str(MAC_A), &fw, IF_IN, &mac_str(MAC_FW_IN));
        veth_pair(&fw, IF_OUT, &mac_str(MAC_FW_OUT), &b, IF_B, &mac_str(MAC_B));
        for (ns, dev) in [(&a, IF_A), (&fw, IF_IN), (&fw, IF_OUT), (&b, IF_B)] {
            ns.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0");
        }
        a.exec_ok("ip", &["addr", "add", "10.200.1.1/24", "dev", IF_A]);
        fw.exec_ok("ip", &["addr", "add", "10.200.1.2/24", "dev", IF_IN]);
        fw.exec_ok("ip", &["addr", "add", "10.200.2.1/24", "dev", IF_OUT]);
        b.exec_ok("ip", &["addr", "add", "10.200.2.2/24", "dev", IF_B]);
        fw.sysctl("net.ipv4.ip_forward", "1");
        fw.exec_ok(
            "ip",
            &[
                "neigh",
                "replace",
                "10.200.2.2",
                "lladdr",
                &mac_str(MAC_B),
                "dev",
                IF_OUT,
                "nud",
                "permanent",
            ],
        );
        fw.exec_ok(
            "ip",
            &[
                "route",
                "add",
                "default",
                "via",
                "10.200.2.2",
                "dev",
                IF_OUT,
            ],
        );
        // Counts every frame that reaches FORWARD (mangle runs before filter).
        fw.exec_ok(
            "iptables-legacy",
            &["-w", "-t", "mangle", "-A", "PREROUTING"],
        );
        fw.exec_ok("iptables-legacy", &["-w", "-t", "mangle", "-A", "FORWARD"]);
        Topology { a, fw, _b: b }
    }

    fn load(&self, ruleset: &str) {
        let out = self
            .fw
            .exec_with_stdin("iptables-legacy-restore", &["-w"], ruleset.as_bytes());
        assert!(
            out.status.success(),
            "iptables-legacy-restore rejected the ruleset: {}\n{ruleset}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.fw
            .exec_ok("iptables-legacy", &["-w", "-t", "filter", "-Z"]);
        self.fw
            .exec_ok("iptables-legacy", &["-w", "-t", "mangle", "-Z"]);
    }

    /// Sends the frames from namespace a, on a thread that entered it.
    fn send(&self, frames: &[&[u8]]) {
        let frames: Vec<Vec<u8>> = frames.iter().map(|f| f.to_vec()).collect();
        let a = &self.a;
        std::thread::scope(|s| {
            s.spawn(move || {
                a.enter_on_this_thread().expect("setns into a");
                let tx = RawSender::open(IF_A).expect("AF_PACKET socket on pwa0");
                for (i, f) in frames.iter().enumerate() {
                    tx.send(f).unwrap_or_else(|e| panic!("send frame {i}: {e}"));
                    // Pace a little so that no backlog queue overflows.
                    if i % 32 == 31 {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
            })
            .join()
            .expect("sender thread");
        });
    }

    /// (packets, bytes) of the counting rule in mangle `chain`.
    fn mangle_count(&self, chain: &str) -> (u64, u64) {
        let save = self
            .fw
            .exec_ok("iptables-legacy-save", &["-c", "-t", "mangle"]);
        let want = format!("-A {chain}");
        save.lines()
            .filter_map(split_counters)
            .find(|(_, rest)| *rest == want)
            .map(|(c, _)| c)
            .unwrap_or_else(|| panic!("no counting rule in mangle {chain}:\n{save}"))
    }

    /// Sends the frames, waits (bounded) until all have gone through FORWARD and the filter
    /// counters are stable, and returns `iptables-legacy-save -c -t filter`.
    fn run(&self, frames: &[&[u8]]) -> String {
        self.send(frames);
        let n = frames.len() as u64;
        let start = Instant::now();
        loop {
            let (p, _) = self.mangle_count("FORWARD");
            if p >= n {
                assert_eq!(p, n, "more packets reached FORWARD than were sent");
                break;
            }
            if start.elapsed() > Duration::from_secs(3) {
                let pre = self.mangle_count("PREROUTING").0;
                panic!(
                    "only {p} of {n} frames reached FORWARD ({pre} reached PREROUTING) after 3 s"
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut save = self
            .fw
            .exec_ok("iptables-legacy-save", &["-c", "-t", "filter"]);
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(10));
            let again = self
                .fw
                .exec_ok("iptables-legacy-save", &["-c", "-t", "filter"]);
            if counter_lines(&again) == counter_lines(&save) {
                return save;
            }
            save = again;
        }
        panic!("filter counters still changing after 200 ms:\n{save}");
    }
}

/// `[p:b] rest` -> ((p, b), rest).
fn split_counters(line: &str) -> Option<((u64, u64), &str)> {
    let inner = line.strip_prefix('[')?;
    let (c, rest) = inner.split_once("] ")?;
    let (p, b) = c.split_once(':')?;
    Some(((p.parse().ok()?, b.parse().ok()?), rest))
}

/// The lines compared: `:CHAIN POLICY [p:b]` and `[p:b] -A ...` of the filter table.
fn counter_lines(save: &str) -> Vec<String> {
    let mut in_filter = false;
    let mut out = Vec::new();
    for l in save.lines() {
        let l = l.trim_end();
        if l.starts_with('#') {
            continue;
        }
        if let Some(t) = l.strip_prefix('*') {
            in_filter = t == "filter";
        } else if l == "COMMIT" {
            in_filter = false;
        } else if in_filter && (l.starts_with(':') || l.starts_with('[')) {
            out.push(l.to_string());
        }
    }
    out
}

/// (packets, bytes) of `:chain POLICY [p:b]`.
fn policy_counters(save: &str, chain: &str) -> (u64, u64) {
    let prefix = format!(":{chain} ");
    let l = save
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {chain} chain line in\n{save}"));
    let c = l
        .rsplit_once('[')
        .and_then(|(_, c)| c.strip_suffix(']'))
        .expect("policy counters");
    let (p, b) = c.split_once(':').expect("p:b");
    (p.parse().expect("packets"), b.parse().expect("bytes"))
}

// ---------------------------------------------------------------------------------------------
// The pollwall side.

/// Runs `pollwall replay` on `frames` with `ruleset`; its stdout (iptables-save -c text).
fn replay(dir: &std::path::Path, ruleset: &str, frames: &[&[u8]]) -> Result<String, String> {
    let rules = dir.join("rules.txt");
    let capture = dir.join("capture.pcap");
    std::fs::write(&rules, ruleset).expect("write rules");
    let mut w = PcapWriter::new(Vec::new(), LinkType::ETHERNET).expect("pcap header");
    for (i, f) in frames.iter().enumerate() {
        w.write_frame(1_700_000_000_000_000_000 + i as u64 * 1000, f)
            .expect("pcap record");
    }
    std::fs::write(&capture, w.into_inner().expect("pcap bytes")).expect("write capture");
    // KERNEL_DIFF_POLLWALL runs another build (e.g. a release binary) for debugging.
    let exe = std::env::var("KERNEL_DIFF_POLLWALL")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pollwall-under-test").to_string());
    let exe = exe.as_str();
    let args = [
        "replay",
        "--rules",
        rules.to_str().expect("utf-8 path"),
        "--hook",
        "FORWARD",
        "--in-iface",
        IF_IN,
        "--out-iface",
        IF_OUT,
        capture.to_str().expect("utf-8 path"),
    ];
    let out = Command::new(exe)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {exe}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{exe} {}` exited with {}: {}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Line-by-line differences between the kernel's and pollwall's counter lines ("" when equal).
fn diff(kernel: &[String], ours: &[String]) -> String {
    let mut d = String::new();
    for i in 0..kernel.len().max(ours.len()) {
        let (k, o) = (kernel.get(i), ours.get(i));
        if k != o {
            let _ = writeln!(d, "  kernel:   {}", k.map_or("<none>", |s| s));
            let _ = writeln!(d, "  pollwall: {}", o.map_or("<none>", |s| s));
        }
    }
    d
}

/// Summary of the kernel's verdicts for the progress output.
fn summarize(save: &str, n: usize) -> String {
    let lines = counter_lines(save);
    let rules: Vec<((u64, u64), &str)> = lines.iter().filter_map(|l| split_counters(l)).collect();
    let hit = rules.iter().filter(|((p, _), _)| *p > 0).count();
    let terminal: u64 = rules
        .iter()
        .filter(|(_, r)| r.ends_with(" -j ACCEPT") || r.ends_with(" -j DROP"))
        .map(|((p, _), _)| p)
        .sum();
    let (policy, _) = policy_counters(save, "FORWARD");
    format!(
        "{n} frames: {hit}/{} rules hit, {terminal} by ACCEPT/DROP rules + {policy} by FORWARD's policy \
         (+ {} hotdropped by a match)",
        rules.len(),
        n as u64 - terminal - policy
    )
}

const EMPTY_RULESET: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

#[test]
fn kernel_differential_forward() {
    if let Err(reason) = require_root_and(&[
        "ip",
        "iptables-legacy",
        "iptables-legacy-save",
        "iptables-legacy-restore",
    ]) {
        eprintln!("SKIPPED: {reason}");
        return;
    }
    let started = Instant::now();
    let topo = Topology::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for seed in SEEDS {
        let mut rng = Rng::new(seed);
        let rs = gen_ruleset(&mut rng);
        let crafted = gen_frames(&mut rng, &rs);
        let frames: Vec<&[u8]> = crafted.iter().map(|c| c.frame.as_slice()).collect();
        let n = frames.len() as u64;
        let bytes: u64 = crafted.iter().map(|c| c.ip_len).sum();

        // With no rules every frame must be counted by FORWARD's policy, bytes as IP lengths.
        topo.load(EMPTY_RULESET);
        let save = topo.run(&frames);
        assert_eq!(
            policy_counters(&save, "FORWARD"),
            (n, bytes),
            "seed {seed}: with an empty ruleset FORWARD's policy must count every frame \
             (packets, IP bytes); frames are being dropped before netfilter\n{save}"
        );

        topo.load(&rs.text);
        let kernel = topo.run(&frames);
        eprintln!("seed {seed}: kernel: {}", summarize(&kernel, frames.len()));
        if std::env::var_os("KERNEL_DIFF_VERBOSE").is_some() {
            eprintln!("--- seed {seed} ruleset\n{}--- kernel\n{kernel}", rs.text);
        }

        match replay(dir.path(), &rs.text, &frames) {
            Err(e) => failures.push(format!("seed {seed}: pollwall replay failed: {e}")),
            Ok(ours) => {
                let d = diff(&counter_lines(&kernel), &counter_lines(&ours));
                if !d.is_empty() {
                    // Narrowing down costs up to 20 s: only for the first failing seed.
                    let first = if failures.is_empty() {
                        first_differing_frame(&topo, dir.path(), &rs.text, &crafted)
                    } else {
                        String::new()
                    };
                    failures.push(format!(
                        "seed {seed}: counters differ from the kernel's\n--- ruleset\n{}--- differing lines\n{d}{first}",
                        rs.text
                    ));
                }
            }
        }
    }
    eprintln!(
        "kernel_diff: {} seeds in {:.1?}",
        SEEDS.len(),
        started.elapsed()
    );
    drop(topo);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// Replays the frames one at a time on both sides to name the first one they disagree on.
fn first_differing_frame(
    topo: &Topology,
    dir: &std::path::Path,
    ruleset: &str,
    crafted: &[Crafted],
) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    for (i, c) in crafted.iter().enumerate() {
        if Instant::now() > deadline {
            return format!("(no single differing frame found within 20 s, {i} frames tried)\n");
        }
        topo.load(ruleset);
        let kernel = topo.run(&[&c.frame]);
        let Ok(ours) = replay(dir, ruleset, &[&c.frame]) else {
            return format!("--- first frame pollwall fails on: #{i}: {}\n", c.what);
        };
        let d = diff(&counter_lines(&kernel), &counter_lines(&ours));
        if !d.is_empty() {
            let hex: String = c.frame.iter().map(|b| format!("{b:02x}")).collect();
            return format!("--- first differing frame: #{i}: {}\n  {hex}\n{d}", c.what);
        }
    }
    "(every frame agrees on its own: the difference needs several frames)\n".to_string()
}
