//! `forward`: the forwarding benchmark harness. In namespaces it creates (generator `g`,
//! firewall `f`, sink `s`; veths g0↔f0 and f1↔s0, both ends inside them), it sends UDP frames
//! from `tools`' generator into f0 and counts what arrives on s0, with the firewall namespace
//! running, one after another in the same run:
//!   * pollwall: the AF_XDP dataplane bridging f0 and f1 (one worker, busy polling, on core 1);
//!   * iptables-legacy and iptables-nft: the Linux kernel routing f0 → f1 with the same rules;
//!
//! for each rule count (DESIGN.md §6: N non-matching `-s 10.x.y.z/32 -p tcp --dport P -j DROP`
//! rules in FORWARD, so the kernel walks every rule for every packet).
//!
//! The generator is `BPF_PROG_TEST_RUN` live frames for pollwall (5-8 Mpps offered: f0 runs
//! pollwall's XDP program) and an AF_XDP TX socket for the kernel runs (live frames redirected
//! into a veth without an XDP program mostly vanish before IP; DESIGN §6 measured the kernel
//! from an AF_XDP sender too). Both offer more than the firewall forwards; the table shows both.
//!
//! ```sh
//! cargo run --release -p bench --bin forward -- [--rules 0,1000,10000] [--duration 3]
//!     [--flows 16] [--size 60] [--systems pollwall,legacy,nft] [--pps RATE] [--repeat 3]
//!     [--out DIR] [--stateful | --masquerade] [--new-flows] [--ct-max N]
//! ```
//! `--new-flows` (with `--stateful` or `--masquerade`): every packet opens a connection never
//! seen before (each run sends 16M flows from its own 256 source addresses, each address to its
//! own destination port so MASQUERADE never runs out of ports), so the forwarded
//! rate is new connections per second; the kernel's table is flushed before each run
//! (`conntrack -F`) and pollwall's holds 4M entries, so neither fills.
//! `--masquerade`: routed with `-t nat -A POSTROUTING -o f1 -j MASQUERADE` and the stateful head
//! (pollwall in routed mode with the kernel run's addresses and static neighbour).
//! Each configuration gets a 0.3 s warm-up, then `--repeat` runs; the median is reported.
//! `--pps RATE` offers the same paced rate to every system from the AF_XDP sender (loss at a
//! given load) instead of saturating.
//! Prints a markdown table (forwarded Mpps and loss); with `--out DIR` also writes
//! `forward.json` and `forward.svg` there. Needs root; says SKIPPED otherwise.

use classifier::compile::{CompiledRuleset, TreeParams};
use dataplane::runtime::{AttachMode, DataplaneConfig};
use dataplane::worker::IdlePolicy;
use std::fmt::Write as _;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use tools::gen::GenConfig;

const F0_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0xbe, 0, 0x10];
const G0_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0xbe, 0, 0x01];
const S0_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0xbe, 0, 0x02];

fn mac_str(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn sh(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "`{}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The three namespaces, deleted on drop.
struct Topo {
    g: String,
    f: String,
    s: String,
}

impl Topo {
    fn new(tag: &str) -> Result<Topo, String> {
        let t = Topo {
            g: format!("pwb{tag}g"),
            f: format!("pwb{tag}f"),
            s: format!("pwb{tag}s"),
        };
        for n in [&t.g, &t.f, &t.s] {
            let _ = sh(&["ip", "netns", "del", n]);
            sh(&["ip", "netns", "add", n])?;
        }
        let (f0, g0, s0) = (mac_str(F0_MAC), mac_str(G0_MAC), mac_str(S0_MAC));
        sh(&[
            "ip", "-n", &t.f, "link", "add", "f0", "address", &f0, "type", "veth", "peer", "name",
            "g0", "address", &g0, "netns", &t.g,
        ])?;
        sh(&[
            "ip", "-n", &t.f, "link", "add", "f1", "type", "veth", "peer", "name", "s0", "address",
            &s0, "netns", &t.s,
        ])?;
        for (ns, dev) in [(&t.g, "g0"), (&t.f, "f0"), (&t.f, "f1"), (&t.s, "s0")] {
            sh(&["ip", "-n", ns, "link", "set", dev, "up"])?;
        }
        for ns in [&t.g, &t.f, &t.s] {
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.disable_ipv6=1",
            ])?;
        }
        Ok(t)
    }

    fn sink_packets(&self) -> Result<u64, String> {
        let s = sh(&[
            "ip",
            "netns",
            "exec",
            &self.s,
            "cat",
            "/sys/class/net/s0/statistics/rx_packets",
        ])?;
        s.trim().parse().map_err(|_| format!("bad counter `{s}'"))
    }

    /// The kernel as the firewall: forwarding f0 → f1 with a static next hop.
    fn kernel_router(&self) -> Result<(), String> {
        let f = &self.f;
        sh(&["ip", "-n", f, "addr", "add", "10.10.0.1/24", "dev", "f0"])?;
        sh(&["ip", "-n", f, "addr", "add", "10.11.0.1/24", "dev", "f1"])?;
        sh(&[
            "ip",
            "-n",
            &self.s,
            "addr",
            "add",
            "10.11.0.2/24",
            "dev",
            "s0",
        ])?;
        sh(&[
            "ip",
            "-n",
            f,
            "neigh",
            "add",
            "10.11.0.2",
            "lladdr",
            &mac_str(S0_MAC),
            "dev",
            "f1",
            "nud",
            "permanent",
        ])?;
        for kv in [
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.f0.rp_filter=0",
        ] {
            sh(&["ip", "netns", "exec", f, "sysctl", "-qw", kv])?;
        }
        // Redirected frames into a veth without XDP need GRO on the receiving end (DESIGN §7).
        sh(&["ip", "netns", "exec", f, "ethtool", "-K", "f0", "gro", "on"])?;
        Ok(())
    }
}

impl Drop for Topo {
    fn drop(&mut self) {
        for n in [&self.g, &self.f, &self.s] {
            let _ = sh(&["ip", "netns", "del", n]);
        }
    }
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> Result<T, String> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        // SAFETY: `file` is an open netns file; setns changes only this thread's namespace.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
        }
        Ok(f())
    })
    .join()
    .map_err(|_| "thread panicked".to_string())?
}

fn rules_text(n: usize, stateful: bool, masquerade: bool) -> String {
    let mut s = String::new();
    if masquerade {
        s.push_str("*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -o f1 -j MASQUERADE\nCOMMIT\n");
    }
    s.push_str("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n");
    if stateful {
        // The classic head of a stateful ruleset: every packet is tracked, known flows leave
        // at the first rule, the rest (here: every packet of the one-way flows) go on.
        s.push_str("-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n");
        s.push_str("-A FORWARD -m conntrack --ctstate INVALID -j DROP\n");
    }
    for i in 0..n {
        let _ = writeln!(
            s,
            "-A FORWARD -s 10.{}.{}.{}/32 -p tcp -m tcp --dport {} -j DROP",
            100 + i / 65536 % 100,
            i / 256 % 256,
            i % 256,
            1000 + i % 50000
        );
    }
    s.push_str("COMMIT\n");
    s
}

#[derive(Clone, Debug)]
struct Row {
    system: String,
    rules: usize,
    offered_pps: f64,
    forwarded_pps: f64,
    loss: f64,
}

#[derive(Clone)]
struct Opts {
    rules: Vec<usize>,
    duration: f64,
    flows: u32,
    size: usize,
    systems: Vec<String>,
    out: Option<String>,
    /// Offered rate for every system (AF_XDP sender, paced); 0: saturate.
    pps: u64,
    /// Runs per configuration (the median is reported).
    repeat: usize,
    /// Track connections (a stateful head in front of the rules; the kernel loads conntrack).
    stateful: bool,
    /// Routed, with MASQUERADE out of f1 (implies `stateful`): pollwall in routed mode, the
    /// kernel with the same nat rule.
    masquerade: bool,
    /// Every packet a new connection (runs on disjoint flows; tables never full).
    new_flows: bool,
    /// pollwall's connection table size (default 262144, 4M with `--new-flows`).
    ct_max: Option<u32>,
}

/// Flows per run with `--new-flows`: 256 source addresses × 65536 ports.
const NEW_FLOWS: u32 = 1 << 24;

/// The forwarding benchmark: pollwall against the kernel's iptables on veths in namespaces it
/// makes (see the module documentation).
#[derive(Debug, clap::Parser)]
#[command(name = "forward", version)]
struct Cli {
    /// Rule counts (comma-separated)
    #[arg(long, value_delimiter = ',', default_value = "0,1000,10000")]
    rules: Vec<usize>,
    /// Seconds per run
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// UDP flows the generator cycles through
    #[arg(long, default_value_t = 16)]
    flows: u32,
    /// Frame size in bytes
    #[arg(long, default_value_t = 60)]
    size: usize,
    /// Systems to measure (comma-separated: pollwall, legacy, nft)
    #[arg(long, value_delimiter = ',', default_value = "pollwall,legacy,nft")]
    systems: Vec<String>,
    /// Also writes forward.json and forward.svg there
    #[arg(long, value_name = "DIR")]
    out: Option<String>,
    /// Runs per configuration (the median is reported)
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Offers this paced rate to every system from the AF_XDP sender (0: saturate)
    #[arg(long, value_name = "RATE", default_value_t = 0)]
    pps: u64,
    /// Tracks connections: a stateful head in front of the rules
    #[arg(long)]
    stateful: bool,
    /// Routed, with MASQUERADE out of f1 (implies --stateful)
    #[arg(long)]
    masquerade: bool,
    /// Every packet a new connection (16M flows per run; needs --stateful or --masquerade)
    #[arg(long)]
    new_flows: bool,
    /// pollwall's connection table size (default 262144, 4M with --new-flows)
    #[arg(long, value_name = "N")]
    ct_max: Option<u32>,
}

fn parse() -> Result<Opts, String> {
    use clap::Parser;
    // `cargo bench` passes `--bench`.
    let args = std::env::args().filter(|a| a != "--bench");
    let c = Cli::try_parse_from(args).unwrap_or_else(|e| e.exit());
    let stateful = c.stateful || c.masquerade;
    if c.new_flows && !stateful {
        return Err("--new-flows needs --stateful or --masquerade".into());
    }
    Ok(Opts {
        rules: c.rules,
        duration: c.duration,
        flows: if c.new_flows { NEW_FLOWS } else { c.flows },
        size: c.size,
        systems: c.systems,
        out: c.out,
        pps: c.pps,
        repeat: c.repeat,
        stateful,
        masquerade: c.masquerade,
        new_flows: c.new_flows,
        ct_max: c.ct_max,
    })
}

/// Median (by forwarded rate) of `o.repeat` runs, after a short warm-up run.
fn measure(topo: &Topo, o: &Opts, xsk: bool) -> Result<(f64, f64), String> {
    let warm = Opts {
        duration: 0.3,
        ..o.clone()
    };
    measure_once(topo, &warm, xsk, 0)?;
    let mut runs = (0..o.repeat.max(1))
        .map(|r| measure_once(topo, o, xsk, r as u32 + 1))
        .collect::<Result<Vec<_>, _>>()?;
    runs.sort_by(|a, b| a.1.total_cmp(&b.1));
    Ok(runs[runs.len() / 2])
}

/// One run (`run`: 0 for the warm-up); with `--new-flows` on its own source addresses, after
/// the kernel's table is flushed.
fn measure_once(topo: &Topo, o: &Opts, xsk: bool, run: u32) -> Result<(f64, f64), String> {
    let mut src_ip = GenConfig::default().src_ip;
    if o.new_flows {
        src_ip = std::net::Ipv4Addr::from(u32::from(src_ip) + (run << 8));
        if xsk {
            // Only the kernel's table (pollwall's is not the namespace's); an empty one is fine.
            let _ = sh(&["ip", "netns", "exec", &topo.f, "conntrack", "-F"]);
        }
    }
    let gen = GenConfig {
        ifname: "g0".into(),
        flows: o.flows,
        size: o.size,
        pps: o.pps,
        duration: Duration::from_secs_f64(o.duration),
        src_mac: G0_MAC,
        dst_mac: F0_MAC,
        src_ip,
        dport_per_source: o.new_flows,
        ..GenConfig::default()
    };
    let before = topo.sink_packets()?;
    let rep = in_ns(&topo.g, move || {
        core_affinity::set_for_current(core_affinity::CoreId { id: 0 });
        if xsk || gen.pps > 0 {
            tools::gen::run_xsk(&gen, &AtomicBool::new(false))
        } else {
            tools::gen::run(&gen, &AtomicBool::new(false))
        }
    })?
    .map_err(|e| format!("generator: {e}"))?;
    std::thread::sleep(Duration::from_millis(200));
    let got = topo.sink_packets()? - before;
    let secs = rep.elapsed.as_secs_f64();
    Ok((rep.pps(), got as f64 / secs))
}

/// pollwall's routed ports with the kernel run's addressing (f0 10.10.0.1/24, f1 10.11.0.1/24,
/// the sink 10.11.0.2 a static neighbour); called inside the firewall namespace.
fn routed_ports() -> Result<dataplane::runtime::RoutedPorts, String> {
    use dataplane::route::IfAddr;
    let f1 = dataplane::netdev::hw_addr("f1").map_err(|e| format!("f1: {e}"))?;
    dataplane::runtime::RoutedPorts::connected(
        &[
            ("f0", F0_MAC, IfAddr::new([10, 10, 0, 1], 24)),
            ("f1", f1, IfAddr::new([10, 11, 0, 1], 24)),
        ],
        &[(u32::from_be_bytes([10, 11, 0, 2]), S0_MAC)],
    )
}

fn run_pollwall(n: usize, o: &Opts) -> Result<Row, String> {
    let topo = Topo::new(&format!("{}", std::process::id()))?;
    let mut rs = classifier::Ruleset::new();
    control::restore::restore(
        &rules_text(n, o.stateful, o.masquerade),
        &Default::default(),
        &mut rs,
    )
    .map_err(|e| e.render("iptables-restore"))?;
    let compiled = Arc::new(CompiledRuleset::compile(&rs, 0, &TreeParams::default()));
    let mut cfg = DataplaneConfig {
        bridges: vec![("f0".into(), "f1".into())],
        cores: vec![Some(1)],
        frames_per_worker: 2048,
        idle: IdlePolicy::Busy,
        attach: AttachMode::Auto,
        ..DataplaneConfig::default()
    };
    if o.new_flows {
        cfg.conntrack.max = 1 << 22;
    }
    if let Some(max) = o.ct_max {
        cfg.conntrack.max = max;
    }
    let masquerade = o.masquerade;
    let running = in_ns(&topo.f, move || {
        if masquerade {
            cfg.bridges.clear();
            cfg.routed = Some(routed_ports()?);
        }
        dataplane::runtime::start(&cfg, compiled)
    })??;
    // The live-frame generator holds a frame per flow: new flows come from the AF_XDP sender.
    let r = measure(&topo, o, o.new_flows);
    let exits = running.stop();
    let lost: u32 = exits.iter().map(|e| e.report.lost).sum();
    if lost != 0 {
        eprintln!("warning: pollwall lost {lost} frames from its accounting");
    }
    let (offered, fwd) = r?;
    Ok(Row {
        system: "pollwall".into(),
        rules: n,
        offered_pps: offered,
        forwarded_pps: fwd,
        loss: 1.0 - fwd / offered.max(1.0),
    })
}

fn run_kernel(system: &str, n: usize, o: &Opts) -> Result<Row, String> {
    let tool = match system {
        "legacy" => "iptables-legacy-restore",
        "nft" => "iptables-nft-restore",
        _ => return Err(format!("unknown system `{system}'")),
    };
    let topo = Topo::new(&format!("{}", std::process::id()))?;
    topo.kernel_router()?;
    let rules = std::env::temp_dir().join(format!("pwbench-{}-{n}.rules", std::process::id()));
    std::fs::write(&rules, rules_text(n, o.stateful, o.masquerade)).map_err(|e| e.to_string())?;
    let script = format!("{tool} -w < {}", rules.display());
    let r = sh(&["ip", "netns", "exec", &topo.f, "sh", "-c", &script]);
    let _ = std::fs::remove_file(&rules);
    r?;
    let (offered, fwd) = measure(&topo, o, true)?;
    Ok(Row {
        system: format!("iptables-{system}"),
        rules: n,
        offered_pps: offered,
        forwarded_pps: fwd,
        loss: 1.0 - fwd / offered.max(1.0),
    })
}

fn svg(rows: &[Row], systems: &[String], rules: &[usize]) -> String {
    // Grouped bars on a log scale (1 kpps .. 10 Mpps).
    let (w, h, left, bottom) = (640.0, 360.0, 70.0, 50.0);
    let y = |pps: f64| {
        let v = (pps.max(1e3).log10() - 3.0) / 4.0;
        h - bottom - v.clamp(0.0, 1.0) * (h - bottom - 30.0)
    };
    let colors = ["#1f77b4", "#d62728", "#ff7f0e", "#2ca02c"];
    let mut s = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"18\" text-anchor=\"middle\" font-size=\"14\">Forwarded packets/s on veth (one firewall core), by rule count</text>\n", w / 2.0);
    for (k, label) in [
        (3.0, "1 k"),
        (4.0, "10 k"),
        (5.0, "100 k"),
        (6.0, "1 M"),
        (7.0, "10 M"),
    ] {
        let yy = y(10f64.powf(k));
        let _ = writeln!(s, "<line x1=\"{left}\" x2=\"{}\" y1=\"{yy}\" y2=\"{yy}\" stroke=\"#ddd\"/><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{label}</text>", w - 10.0, left - 6.0, yy + 4.0);
    }
    let group = (w - left - 20.0) / rules.len() as f64;
    let bar = group * 0.8 / systems.len().max(1) as f64;
    for (gi, n) in rules.iter().enumerate() {
        let gx = left + gi as f64 * group + group * 0.1;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{n} rules</text>",
            gx + group * 0.4,
            h - bottom + 18.0
        );
        for (si, sys) in systems.iter().enumerate() {
            if let Some(r) = rows
                .iter()
                .find(|r| r.rules == *n && r.system.ends_with(sys.as_str()))
            {
                let top = y(r.forwarded_pps);
                let _ = writeln!(s, "<rect x=\"{:.1}\" y=\"{top:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"/>", gx + si as f64 * bar, bar * 0.9, (h - bottom - top).max(0.0), colors[si % colors.len()]);
            }
        }
    }
    for (si, sys) in systems.iter().enumerate() {
        let lx = left + si as f64 * 150.0;
        let _ = writeln!(s, "<rect x=\"{lx}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>", h - 22.0, colors[si % colors.len()], lx + 16.0, h - 12.0, if sys == "pollwall" { "pollwall".to_string() } else { format!("iptables-{sys}") });
    }
    s.push_str("</svg>\n");
    s
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("forward: {e}");
            std::process::exit(2);
        }
    };
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the forwarding benchmark needs root (namespaces, XDP, iptables)");
        return;
    }
    let mut rows = Vec::new();
    for &n in &o.rules {
        for sys in &o.systems {
            let r = if sys == "pollwall" {
                run_pollwall(n, &o)
            } else {
                run_kernel(sys, n, &o)
            };
            match r {
                Ok(r) => {
                    eprintln!(
                        "{} {} rules: offered {:.2} Mpps, forwarded {:.3} Mpps",
                        r.system,
                        r.rules,
                        r.offered_pps / 1e6,
                        r.forwarded_pps / 1e6
                    );
                    rows.push(r);
                }
                Err(e) => eprintln!("{sys} {n} rules: FAILED: {e}"),
            }
        }
    }
    println!("| rules | system | forwarded Mpps | offered Mpps | loss |");
    println!("|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.3} | {:.2} | {:.1}% |",
            r.rules,
            r.system,
            r.forwarded_pps / 1e6,
            r.offered_pps / 1e6,
            r.loss * 100.0
        );
    }
    for &n in &o.rules {
        let pw = rows.iter().find(|r| r.rules == n && r.system == "pollwall");
        for k in rows
            .iter()
            .filter(|r| r.rules == n && r.system != "pollwall")
        {
            if let Some(p) = pw {
                println!(
                    "{n} rules: pollwall / {} = {:.1}×",
                    k.system,
                    p.forwarded_pps / k.forwarded_pps.max(1.0)
                );
            }
        }
    }
    if let Some(dir) = &o.out {
        let _ = std::fs::create_dir_all(dir);
        let mut j = String::from("[\n");
        for (i, r) in rows.iter().enumerate() {
            let _ = writeln!(j, "  {{\"system\": \"{}\", \"rules\": {}, \"forwarded_pps\": {:.0}, \"offered_pps\": {:.0}, \"loss\": {:.4}}}{}", r.system, r.rules, r.forwarded_pps, r.offered_pps, r.loss, if i + 1 < rows.len() { "," } else { "" });
        }
        j.push_str("]\n");
        let stem = if o.pps > 0 {
            format!("forward-{}pps", o.pps)
        } else {
            "forward".into()
        };
        let _ = std::fs::write(format!("{dir}/{stem}.json"), j);
        let _ = std::fs::write(
            format!("{dir}/{stem}.svg"),
            svg(&rows, &o.systems, &o.rules),
        );
        eprintln!("wrote {dir}/{stem}.json and {dir}/{stem}.svg");
    }
}
