//! `pollwall replay --config FILE [--out OUT.pcapng] [--conntrack CT.txt] CAPTURE` (DESIGN.md
//! §9's replay contract): the daemon's configuration, its ports and its ruleset, with the
//! capture as the traffic and the capture's timestamps as the clock. Each frame of a pcapng
//! capture enters on the port its interface description's `if_name` names (a classic pcap's
//! frames enter on the first port) and goes through the same pipeline as the daemon's, with
//! connection tracking as the ruleset needs it.
//!
//! Stdout is `iptables-save -c` of every table; `--out` receives every frame pollwall
//! transmits, as pcapng with one interface per port (each frame on the port it leaves by);
//! `--conntrack` receives the final connection table as `conntrack -L` prints it (sorted:
//! the kernel's hash order is nobody's contract). `--verdicts` prints instead one line per
//! frame, each run through the pipeline alone: its number (1-based), its fate (`ACCEPT`,
//! `REJECT`, `DROP`, `QUEUE`, `HELD(fragment)`, `DROP(table-full)`, `DROP(helper)`, or
//! `DROP(other)` for a frame dropped before the hooks) and `ctstate=` the state tracking gave it
//! (`-` when it was not tracked; `+` between the packets of one frame).

use crate::daemon_config::{parse, DaemonConfig};
use crate::grammar::save::save_table;
use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::conntrack::list;
use classifier::packet::IfName;
use dataplane::pcapng::{read_capture, PcapNgOut};
use dataplane::pipeline::{Pipeline, Port, Sinks, Topology};
use dataplane::stats::{Counter, StatsShard};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Args {
    config: PathBuf,
    out: Option<PathBuf>,
    conntrack: Option<PathBuf>,
    verdicts: bool,
    capture: PathBuf,
}

/// `pollwall replay --config`; returns the exit code.
pub(crate) fn run_cmd(
    config: PathBuf,
    out: Option<PathBuf>,
    conntrack: Option<PathBuf>,
    verdicts: bool,
    capture: PathBuf,
) -> i32 {
    let a = Args {
        config,
        out,
        conntrack,
        verdicts,
        capture,
    };
    match run(a) {
        Ok((out, notes)) => {
            print!("{out}");
            eprint!("{notes}");
            0
        }
        Err(e) => {
            eprintln!("pollwall replay: {e}");
            1
        }
    }
}

/// The configuration, with its rules path made relative to the file.
fn load_config(path: &Path) -> Result<DaemonConfig, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut cfg = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let rules = Path::new(&cfg.rules);
    if rules.is_relative() {
        let base = path.parent().unwrap_or(Path::new("."));
        cfg.rules = base.join(rules).to_string_lossy().into_owned();
    }
    Ok(cfg)
}

/// Bridge ports in configuration order, each paired with its peer; or the routed ports, in
/// configuration order, with their router.
fn topology(cfg: &DaemonConfig) -> Result<(Topology, Vec<String>), String> {
    let mut names = Vec::new();
    let mut topo = Topology::default();
    if let Some(spec) = &cfg.routed {
        if spec.kernel_routes {
            return Err("routes = \"kernel\" mirrors TAP twins: the daemon's, not replay's".into());
        }
        for (i, p) in spec.ports.iter().enumerate() {
            let name = IfName::new(&p.name)
                .ok_or_else(|| format!("interface name `{}' is too long", p.name))?;
            topo.ports.push(Port { name, peer: i });
            names.push(p.name.clone());
        }
        topo.router = Some(Arc::new(spec.router()?));
        return Ok((topo, names));
    }
    for (a, b) in &cfg.dataplane.bridges {
        for (n, peer) in [(a, names.len() + 1), (b, names.len())] {
            let name = IfName::new(n).ok_or_else(|| format!("interface name `{n}' is too long"))?;
            topo.ports.push(Port { name, peer });
        }
        names.push(a.clone());
        names.push(b.clone());
    }
    Ok((topo, names))
}

fn run(a: Args) -> Result<(String, String), String> {
    let cfg = load_config(&a.config)?;
    let mut rs = crate::daemon::load_rules(&cfg.rules)?;
    let (topo, names) = topology(&cfg)?;
    let bytes = std::fs::read(&a.capture)
        .map_err(|e| format!("cannot read {}: {e}", a.capture.display()))?;
    let frames = read_capture(&bytes).map_err(|e| format!("{}: {e}", a.capture.display()))?;
    let mut ported = Vec::with_capacity(frames.len());
    for (n, f) in frames.iter().enumerate() {
        let port = match &f.iface {
            None => 0,
            Some(i) => names.iter().position(|p| p == i).ok_or_else(|| {
                format!(
                    "frame {}: interface `{i}' is none of the configured ports ({})",
                    n + 1,
                    names.join(", ")
                )
            })?,
        };
        ported.push((f.ts_ns, port, f.data.as_slice()));
    }
    let max_len = frames.iter().map(|f| f.data.len()).max().unwrap_or(0);
    let t0 = frames.first().map_or(0, |f| f.ts_ns);
    let compiled = Arc::new(CompiledRuleset::compile(&rs, t0, &TreeParams::default()));
    let stats = Arc::new(StatsShard::default());
    let mut p = Pipeline::new(
        Arc::clone(&compiled),
        Arc::new(topo),
        Arc::clone(&stats),
        Sinks::none(),
        None,
    )
    .with_conntrack(cfg.dataplane.conntrack.clone());
    let iface_names: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut out = match &a.out {
        Some(_) => Some(PcapNgOut::new(Vec::new(), &iface_names)?),
        None => None,
    };
    let mut sent = |port: usize, ts: u64, f: &[u8]| match out.as_mut() {
        Some(w) => w.write(port as u32, ts, f),
        None => Ok(()),
    };
    let mut lines = String::new();
    if a.verdicts {
        p.trace_ctstates();
        let mut n = 0usize;
        let mut seen = Snapshot::of(&stats);
        let mut each = |p: &mut Pipeline| {
            n += 1;
            let now = Snapshot::of(&stats);
            lines.push_str(&format!(
                "{n} {} ctstate={}\n",
                now.verdict_since(&seen),
                ctstate_names(&p.take_ctstates())
            ));
            seen = now;
            Ok(())
        };
        dataplane::pcap_io::replay_ports_each(
            &mut p,
            ported.into_iter(),
            names.len(),
            max_len,
            &mut sent,
            Some(&mut each),
        )?;
    } else {
        dataplane::pcap_io::replay_ports(
            &mut p,
            ported.into_iter(),
            names.len(),
            max_len,
            &mut sent,
        )?;
    }
    if let (Some(path), Some(w)) = (&a.out, out) {
        write_file(path, &w.into_inner())?;
    }
    if let Some(path) = &a.conntrack {
        let mut text = list::listing(p.tracker()).join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        write_file(path, text.as_bytes())?;
    }
    if a.verdicts {
        return Ok((lines, crate::replay::drop_notes(&stats)));
    }
    crate::counters::fold(&mut rs, &compiled, &[p.state()]);
    let mut text = String::new();
    for t in &rs.tables {
        text.push_str("# Generated by pollwall replay\n");
        text.push_str(&save_table(t, true));
        text.push_str("# Completed\n");
    }
    Ok((text, crate::replay::drop_notes(&stats)))
}

/// The dataplane counters a frame's fate shows in.
#[derive(Clone, Copy)]
struct Snapshot([u64; 11]);

const FATES: [(Counter, &str); 11] = [
    (Counter::Forwarded, "ACCEPT"),
    (Counter::LocalIn, "ACCEPT"),
    (Counter::LocalNoTap, "ACCEPT"),
    (Counter::NonIpForwarded, "ACCEPT(non-ip)"),
    (Counter::RejectSent, "REJECT"),
    (Counter::DropRule, "DROP"),
    (Counter::Queued, "QUEUE"),
    (Counter::DefragHeld, "HELD(fragment)"),
    (Counter::CtTableFull, "DROP(table-full)"),
    (Counter::CtHelperDrop, "DROP(helper)"),
    (Counter::CtInsertFailed, "DROP(clash)"),
];

impl Snapshot {
    fn of(stats: &StatsShard) -> Snapshot {
        Snapshot(FATES.map(|(c, _)| stats.get(c)))
    }

    /// The first fate (in [`FATES`] order) whose counter moved since `before`.
    fn verdict_since(&self, before: &Snapshot) -> &'static str {
        FATES
            .iter()
            .zip(self.0.iter().zip(before.0.iter()))
            .find(|(_, (now, was))| now > was)
            .map_or("DROP(other)", |((_, name), _)| name)
    }
}

/// `NEW`, `RELATED,ESTABLISHED`, ... for each packet tracked (`-` when none was).
fn ctstate_names(states: &[u32]) -> String {
    use classifier::model::ct_state;
    if states.is_empty() {
        return "-".into();
    }
    let one = |bits: u32| {
        ct_state::NAMES
            .iter()
            .filter(|(_, b)| bits & b != 0)
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(",")
    };
    states.iter().map(|&b| one(b)).collect::<Vec<_>>().join("+")
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}
