//! The live stateful kernel differential (DESIGN §8, the connection tracking issue): random
//! stateful rulesets and random conversations injected from **both** sides of a kernel
//! firewall namespace, and `pollwall replay --config` on the same frames must give the same
//! counters in every table, the same final connection table as `conntrack -L` (timeouts
//! aside) and the same transmitted frames: what a and b receive from fw against what pollwall
//! writes out of each port (`--out`), as IPv4 datagrams with TTL and header checksum cleared
//! (fw routes and decrements TTL, pollwall bridges), reassembled datagrams cut again included.
//!
//! ```text
//!   a: pwsa0 ──veth── pwsf0 :fw: pwsf1 ──veth── pwsb0 :b
//!   clients 10.1/16 ─────────▶ routed ◀───────── servers 10.2/16
//! ```
//!
//! fw routes 10.1/16 to a and 10.2/16 to b through permanent neighbours; a and b have no
//! route to the other side's networks, so their stacks never answer forwarded frames. Frames
//! are sent raw (AF_PACKET) from a or b; before a frame from the other side than the previous
//! one is sent, the test waits until fw's ports have received every frame so far, so the
//! kernel sees them in order. Both senders run on one CPU, off jiffy edges (one frame per
//! jiffy when a ruleset has connlimit), with CLOCK_MONOTONIC capture times, so the replay's
//! clock names the jiffies the kernel saw. pollwall replays them as a bridge of pwsf0 and
//! pwsf1 (each pcapng frame on the port it entered by, with its send time), which sees the
//! same FORWARD traffic: counters, states and tuples do not depend on routing.
//!
//! A fresh seed each run (printed; `STATEFUL_DIFF_SEED` repeats one), and the seeds in
//! [`REGRESSION_SEEDS`] every run: each seed that ever failed is added there.

use super::gen::Rng;
use super::stateful_gen::{conversations, ruleset, Side, Step};
use crate::netns::{require_root_and, veth_pair, Netns, RawCapture, RawSender};
use dataplane::pcapng::PcapNgOut;
use std::process::Command;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seeds that once failed (kept as regressions).
const REGRESSION_SEEDS: &[u64] = &[
    // A reset answering a SYN: the dying connection is SEEN_REPLY to the rules.
    1_796_310_308_545_983_512,
    // ftp/tftp masters whose expected connections hold a reference: conntrack -L's use=2.
    1_796_317_127_537_513_773,
    // connlimit counting while the same group gained and lost tuples within one jiffy.
    1_796_317_982_089_334_366,
];
/// Rulesets per run and frames per ruleset (≥ 20 and ≥ 4,000 in all).
const RULESETS: usize = 20;
const FRAMES: usize = 210;

pub(super) const MAC_A: [u8; 6] = [0x02, 0x70, 0x77, 0, 1, 0xa0];
pub(super) const MAC_FW0: [u8; 6] = [0x02, 0x70, 0x77, 0, 1, 0xf0];
pub(super) const MAC_FW1: [u8; 6] = [0x02, 0x70, 0x77, 0, 1, 0xf1];
pub(super) const MAC_B: [u8; 6] = [0x02, 0x70, 0x77, 0, 1, 0xb0];
const IF_A: &str = "pwsa0";
pub(super) const IF_FW0: &str = "pwsf0";
pub(super) const IF_FW1: &str = "pwsf1";
const IF_B: &str = "pwsb0";

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(super) struct Rig {
    a: Netns,
    fw: Netns,
    b: Netns,
    /// fw's received-frame count when the current ruleset was loaded.
    base: std::cell::Cell<u64>,
}

impl Rig {
    /// The three namespaces, named with `tag` (tests running at once use their own).
    pub(super) fn new(tag: &str) -> Rig {
        let pid = std::process::id();
        let a = Netns::new(&format!("pw{tag}-a-{pid}")).expect("netns a");
        let fw = Netns::new(&format!("pw{tag}-fw-{pid}")).expect("netns fw");
        let b = Netns::new(&format!("pw{tag}-b-{pid}")).expect("netns b");
        for ns in [&a, &fw, &b] {
            for k in ["all", "default"] {
                ns.sysctl(&format!("net.ipv6.conf.{k}.disable_ipv6"), "1");
                ns.sysctl(&format!("net.ipv4.conf.{k}.rp_filter"), "0");
            }
        }
        veth_pair(&a, IF_A, &mac_str(MAC_A), &fw, IF_FW0, &mac_str(MAC_FW0));
        veth_pair(&fw, IF_FW1, &mac_str(MAC_FW1), &b, IF_B, &mac_str(MAC_B));
        for (ns, dev) in [(&a, IF_A), (&fw, IF_FW0), (&fw, IF_FW1), (&b, IF_B)] {
            ns.sysctl(&format!("net.ipv4.conf.{dev}.rp_filter"), "0");
        }
        a.exec_ok("ip", &["addr", "add", "10.200.1.1/24", "dev", IF_A]);
        fw.exec_ok("ip", &["addr", "add", "10.200.1.2/24", "dev", IF_FW0]);
        fw.exec_ok("ip", &["addr", "add", "10.200.2.1/24", "dev", IF_FW1]);
        b.exec_ok("ip", &["addr", "add", "10.200.2.2/24", "dev", IF_B]);
        fw.sysctl("net.ipv4.ip_forward", "1");
        // A NAT helper's rewrite leaves the TCP checksum to the device (CHECKSUM_PARTIAL):
        // without transmit offload the kernel completes it in software, as a NIC would on
        // the wire, instead of the capture seeing the bare pseudo-header sum.
        for dev in [IF_FW0, IF_FW1] {
            fw.exec_ok("ethtool", &["-K", dev, "tx", "off"]);
        }
        for (ip, mac, dev, net) in [
            ("10.200.1.1", MAC_A, IF_FW0, "10.1.0.0/16"),
            ("10.200.2.2", MAC_B, IF_FW1, "10.2.0.0/16"),
        ] {
            fw.exec_ok(
                "ip",
                &[
                    "neigh",
                    "replace",
                    ip,
                    "lladdr",
                    &mac_str(mac),
                    "dev",
                    dev,
                    "nud",
                    "permanent",
                ],
            );
            fw.exec_ok("ip", &["route", "add", net, "via", ip, "dev", dev]);
        }
        Rig {
            a,
            fw,
            b,
            base: std::cell::Cell::new(0),
        }
    }

    pub(super) fn load(&self, rules: &str) {
        let _ = self.fw.exec("conntrack", &["-F"]);
        // Neighbours being resolved for the last ruleset's frames (translated addresses no
        // one owns) go, queued frames with them: their failure, seconds later, would send an
        // unreachable through this ruleset's OUTPUT. The permanent ones stay.
        for dev in [IF_FW0, IF_FW1] {
            self.fw.exec_ok("ip", &["neigh", "flush", "dev", dev]);
        }
        let out = self
            .fw
            .exec_with_stdin("iptables-legacy-restore", &["-w"], rules.as_bytes());
        assert!(
            out.status.success(),
            "iptables-legacy-restore refused:\n{}\n{rules}",
            String::from_utf8_lossy(&out.stderr)
        );
        for t in ["raw", "filter", "mangle"] {
            self.fw.exec_ok("iptables-legacy", &["-w", "-t", t, "-Z"]);
        }
        self.base.set(self.received());
    }

    /// Frames fw's two ports have received (fragments too: reassembly holds them before any
    /// hook sees them, so no rule counter can say they arrived).
    fn received(&self) -> u64 {
        let stat = |dev: &str| format!("/sys/class/net/{dev}/statistics/rx_packets");
        let out = self.fw.exec_ok("cat", &[&stat(IF_FW0), &stat(IF_FW1)]);
        out.split_whitespace()
            .filter_map(|v| v.parse::<u64>().ok())
            .sum()
    }

    /// Frames received since the ruleset was loaded.
    fn arrived(&self) -> u64 {
        self.received().saturating_sub(self.base.get())
    }

    fn wait_arrived(&self, n: u64) {
        let start = Instant::now();
        while self.arrived() < n {
            assert!(
                start.elapsed() < Duration::from_secs(3),
                "only {} of {n} frames reached fw after 3 s",
                self.arrived()
            );
            std::thread::sleep(Duration::from_micros(300));
        }
    }

    /// Sends every step from its side, in order; returns each frame's send time (ns).
    /// Sends the frames in order; `tick_apart` puts each in a jiffy of its own (connlimit
    /// skips its garbage collection for a second packet within one jiffy, and which jiffy a
    /// frame lands in is the kernel's business down to microseconds).
    /// Also returns what fw sent to a and to b (IPv4 frames each side received).
    pub(super) fn send(
        &self,
        frames: &[(Side, Vec<u8>)],
        tick_apart: bool,
    ) -> (Vec<u64>, SentBySide) {
        let mut times = Vec::with_capacity(frames.len());
        let mut got: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
        std::thread::scope(|sc| {
            let mut tx = Vec::new();
            let mut done = Vec::new();
            let mut captured = Vec::new();
            // Both captures open before the first frame goes.
            let ready = std::sync::Arc::new(std::sync::Barrier::new(3));
            let last_tick = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
            for (ns, dev) in [(&self.a, IF_A), (&self.b, IF_B)] {
                let last_tick = last_tick.clone();
                let ready = ready.clone();
                let (t, r) = mpsc::channel::<Vec<u8>>();
                let (dt, dr) = mpsc::channel::<u64>();
                captured.push(sc.spawn(move || {
                    ns.enter_on_this_thread().expect("setns");
                    pin_to_first_cpu();
                    let s = RawSender::open(dev).expect("AF_PACKET socket");
                    let cap = RawCapture::open(dev).expect("AF_PACKET capture");
                    ready.wait();
                    for f in r {
                        // The kernel handles the frame inside the send (veth delivers it in
                        // the sender's softirq): the middle of the call is its time.
                        let mut before = away_from_tick();
                        while tick_apart && before / TICK_NS <= last_tick.load(Ordering::SeqCst) {
                            std::thread::sleep(std::time::Duration::from_micros(500));
                            before = away_from_tick();
                        }
                        last_tick.store(before / TICK_NS, Ordering::SeqCst);
                        s.send(&f).expect("send frame");
                        let after = monotonic_ns();
                        let _ = dt.send(before + (after - before) / 2);
                    }
                    cap.drain()
                        .into_iter()
                        .filter(|(ours, f)| !ours && f.get(12..14) == Some(&[0x08, 0x00][..]))
                        .map(|(_, f)| f)
                        .collect::<Vec<_>>()
                }));
                tx.push(t);
                done.push(dr);
            }
            ready.wait();
            let mut last = None;
            for (i, (side, f)) in frames.iter().enumerate() {
                if last.is_some_and(|l| l != *side) {
                    self.wait_arrived(i as u64);
                }
                let k = usize::from(*side == Side::B);
                tx[k].send(f.clone()).expect("sender alive");
                times.push(done[k].recv().expect("sent"));
                last = Some(*side);
            }
            self.wait_arrived(frames.len() as u64);
            // What fw forwards goes out in the same softirq; a moment for the last of it.
            std::thread::sleep(Duration::from_millis(20));
            drop(tx);
            for (k, h) in captured.into_iter().enumerate() {
                got[k] = h.join().expect("sender thread");
            }
        });
        (times, got)
    }

    pub(super) fn save(&self) -> String {
        self.fw.exec_ok("iptables-legacy-save", &["-c"])
    }

    pub(super) fn conntrack(&self) -> Vec<String> {
        let out = self.fw.exec("conntrack", &["-L"]);
        normalize_ct(&String::from_utf8_lossy(&out.stdout))
    }
}

pub(super) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Runs this thread on the first CPU it may use. veth delivers a frame in its sender's
/// softirq, so both senders on one CPU make the kernel handle every frame on the same CPU, as
/// one pollwall worker does (nf_conncount, for one, treats entries another CPU added in the
/// last two jiffies differently).
fn pin_to_first_cpu() {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity/setaffinity read and write one.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return;
        }
        let Some(cpu) = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &set)) else {
            return;
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one);
    }
}

/// The kernel's jiffies (HZ 250) tick at CLOCK_MONOTONIC multiples of 4 ms, a few tens of
/// microseconds late: waits until the clock is well inside a tick, so the frame sent next is
/// handled in the jiffy its capture time names. Returns the time.
/// One jiffy at HZ 250.
const TICK_NS: u64 = 4_000_000;

fn away_from_tick() -> u64 {
    const TICK: u64 = TICK_NS;
    const GUARD: u64 = 150_000;
    loop {
        let t = monotonic_ns();
        let r = t % TICK;
        if (GUARD..TICK - GUARD).contains(&r) {
            return t;
        }
        let wait = if r < GUARD {
            GUARD - r
        } else {
            TICK - r + GUARD
        };
        std::thread::sleep(std::time::Duration::from_nanos(wait));
    }
}

/// CLOCK_MONOTONIC in ns: the kernel's jiffies tick at its multiples of 1/HZ, so capture
/// times on this clock let the replay see the same jiffy changes (connlimit's same-jiffy
/// shortcut depends on them).
fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the struct we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// `conntrack -L` lines without their timeout, sorted.
fn normalize_ct(text: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let mut w: Vec<&str> = l.split_whitespace().collect();
            if w.len() > 2 {
                w.remove(2);
            }
            w.join(" ")
        })
        .collect();
    v.sort();
    v
}

/// `:CHAIN POLICY [p:b]` and `[p:b] -A ...` lines of the raw, filter and mangle tables.
pub(super) fn counter_lines(save: &str) -> Vec<String> {
    counter_lines_of(save, &["filter", "mangle", "raw"])
}

/// `:CHAIN POLICY [p:b]` and `[p:b] -A ...` lines of `tables`.
pub(super) fn counter_lines_of(save: &str, tables: &[&str]) -> Vec<String> {
    let mut table = String::new();
    let mut out = Vec::new();
    for l in save.lines() {
        let l = l.trim_end();
        if let Some(t) = l.strip_prefix('*') {
            table = t.to_string();
        } else if tables.contains(&table.as_str()) && (l.starts_with(':') || l.starts_with('[')) {
            out.push(format!("{table} {l}"));
        }
    }
    out
}

pub(super) fn frame(side: Side, ip: &[u8]) -> Vec<u8> {
    let (dst, src) = match side {
        Side::A => (MAC_FW0, MAC_A),
        Side::B => (MAC_FW1, MAC_B),
    };
    classifier::wire::build::ethernet(dst, src, classifier::wire::EtherType::IPV4, ip, 60)
}

/// Frames sent towards a and towards b.
pub(super) type SentBySide = [Vec<Vec<u8>>; 2];

/// The replay's configuration in bridge mode (fw's two ports paired).
fn bridge_config() -> String {
    format!("rules = \"rules.v4\"\n\n[[bridge]]\nports = [\"{IF_FW0}\", \"{IF_FW1}\"]\n")
}

/// pollwall's counters, connection table and transmitted frames for the same frames, with
/// `config` as its configuration (rules in `rules.v4` beside it).
pub(super) fn replay(
    dir: &std::path::Path,
    config: &str,
    rules: &str,
    frames: &[(Side, Vec<u8>)],
    times: &[u64],
) -> Result<(String, Vec<String>, SentBySide), String> {
    std::fs::write(dir.join("rules.v4"), rules).expect("write rules");
    std::fs::write(dir.join("fw.toml"), config).expect("write config");
    let mut w = PcapNgOut::new(Vec::new(), &[IF_FW0, IF_FW1]).expect("pcapng");
    for ((side, f), t) in frames.iter().zip(times) {
        w.write(u32::from(*side == Side::B), *t, f).expect("frame");
    }
    std::fs::write(dir.join("in.pcapng"), w.into_inner()).expect("write capture");
    let exe = std::env::var("KERNEL_DIFF_POLLWALL")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_pollwall-under-test").to_string());
    let p = |n: &str| dir.join(n).to_string_lossy().into_owned();
    let out = Command::new(&exe)
        .args([
            "replay",
            "--config",
            &p("fw.toml"),
            "--conntrack",
            &p("ct.txt"),
            "--out",
            &p("out.pcapng"),
            &p("in.pcapng"),
        ])
        .output()
        .map_err(|e| format!("cannot run {exe}: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let ct = std::fs::read_to_string(dir.join("ct.txt")).map_err(|e| e.to_string())?;
    let sent = std::fs::read(dir.join("out.pcapng")).map_err(|e| e.to_string())?;
    let mut out_by_side: [Vec<Vec<u8>>; 2] = [Vec::new(), Vec::new()];
    for f in dataplane::pcapng::read_capture(&sent)? {
        // IPv4 only, as the captures on a and b keep (ARP's timing is the neighbour
        // layer's, not the ruleset's).
        if f.data.get(12..14) != Some(&[0x08, 0x00][..]) {
            continue;
        }
        // Out of pwsf0 reaches a, out of pwsf1 reaches b.
        let k = usize::from(f.iface.as_deref() == Some(IF_FW1));
        out_by_side[k].push(f.data);
    }
    Ok((
        String::from_utf8_lossy(&out.stdout).into_owned(),
        normalize_ct(&ct),
        out_by_side,
    ))
}

/// A transmitted frame as both sides can agree on it: the IPv4 datagram (Ethernet and its
/// padding stripped) with TTL and header checksum cleared (fw routes and decrements TTL;
/// pollwall bridges), as hex.
fn sent_form(f: &[u8]) -> String {
    let ip = f.get(14..).unwrap_or(&[]);
    let len = ip
        .get(2..4)
        .map_or(ip.len(), |b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .min(ip.len());
    let mut d = ip[..len].to_vec();
    if d.len() >= 20 {
        d[8] = 0;
        d[10] = 0;
        d[11] = 0;
    }
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first difference between the frames fw and pollwall sent to one side, if any.
fn sent_diff(side: &str, kernel: &[Vec<u8>], ours: &[Vec<u8>]) -> String {
    let (k, o): (Vec<String>, Vec<String>) = (
        kernel.iter().map(|f| sent_form(f)).collect(),
        ours.iter().map(|f| sent_form(f)).collect(),
    );
    first_difference(side, &k, &o)
}

/// Where two sequences of frames (in a comparable form) first differ, as a report line; empty
/// when they agree.
pub(super) fn first_difference(side: &str, k: &[String], o: &[String]) -> String {
    if k == o {
        return String::new();
    }
    let at = k
        .iter()
        .zip(o)
        .position(|(a, b)| a != b)
        .unwrap_or(k.len().min(o.len()));
    format!(
        "  sent to {side}: kernel {} frames, pollwall {}; first difference at #{at}:\n    kernel   {}\n    pollwall {}\n",
        k.len(),
        o.len(),
        k.get(at).map_or("(none)", String::as_str),
        o.get(at).map_or("(none)", String::as_str)
    )
}

pub(super) fn diff_lines(what: &str, kernel: &[String], ours: &[String]) -> String {
    let mut d = String::new();
    for l in kernel.iter().filter(|l| !ours.contains(l)) {
        d.push_str(&format!("  {what} kernel only:   {l}\n"));
    }
    for l in ours.iter().filter(|l| !kernel.contains(l)) {
        d.push_str(&format!("  {what} pollwall only: {l}\n"));
    }
    d
}

/// One seed: its rulesets and conversations on both sides; the differences found.
fn run_seed(rig: &Rig, dir: &std::path::Path, seed: u64, rulesets: usize) -> Vec<String> {
    let mut rng = Rng::new(seed);
    let mut failures = Vec::new();
    for k in 0..rulesets {
        let rules = ruleset(&mut rng);
        let steps: Vec<Step> = conversations(&mut rng, FRAMES);
        let frames: Vec<(Side, Vec<u8>)> = steps
            .iter()
            .map(|s| (s.side, frame(s.side, &s.ip)))
            .collect();
        rig.load(&rules);
        let (times, ksent) = rig.send(&frames, rules.contains("connlimit"));
        let (ksave, kct) = (rig.save(), rig.conntrack());
        if std::env::var_os("STATEFUL_DIFF_DUMP").is_some() {
            eprintln!("--- seed {seed} ruleset {k}: kernel counters\n{ksave}");
        }
        match replay(dir, &bridge_config(), &rules, &frames, &times) {
            Err(e) => failures.push(format!("seed {seed} ruleset {k}: replay failed: {e}")),
            Ok((osave, oct, osent)) => {
                let d = diff_lines("counters", &counter_lines(&ksave), &counter_lines(&osave))
                    + &diff_lines("conntrack", &kct, &oct)
                    + &sent_diff("a", &ksent[0], &osent[0])
                    + &sent_diff("b", &ksent[1], &osent[1]);
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
fn kernel_differential_stateful() {
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
    let fresh = std::env::var("STATEFUL_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(now_ns);
    eprintln!("stateful kernel differential: seed {fresh} (STATEFUL_DIFF_SEED={fresh} repeats it)");
    let started = Instant::now();
    let rig = Rig::new("ks");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut failures = Vec::new();
    for &seed in REGRESSION_SEEDS {
        failures.extend(run_seed(&rig, dir.path(), seed, 2));
    }
    failures.extend(run_seed(&rig, dir.path(), fresh, RULESETS));
    eprintln!(
        "stateful kernel differential: {} rulesets, {} frames each, in {:.1?}",
        RULESETS + 2 * REGRESSION_SEEDS.len(),
        FRAMES,
        started.elapsed()
    );
    drop(rig);
    let shown: Vec<String> = failures.iter().take(3).cloned().collect();
    assert!(
        failures.is_empty(),
        "{} of the rulesets differ (seed {fresh}); the first:\n{}",
        failures.len(),
        shown.join("\n\n")
    );
}
