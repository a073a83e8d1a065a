//! `pollwall replay --rules FILE [--hook FORWARD] [--in-iface IF] [--out-iface IF] [--verdicts]
//! CAPTURE.pcap`: runs every frame of a capture through the compiled rules, as the dataplane would
//! on that hook, and prints `iptables-save -c` with the resulting counters (counters start at
//! zero). `--verdicts` prints instead one line per frame: the frame number (1-based), the verdict
//! and the counters it moved (`table/CHAIN/N` for rule N of a chain, `table/CHAIN/policy`).
//!
//! With `--hook FORWARD` (the default) and no `--verdicts`, the frames go through the dataplane's
//! own batch pipeline (the pcap backend) as if received on `--in-iface` and bridged to
//! `--out-iface`: PREROUTING, FORWARD and POSTROUTING all run, as for a forwarded packet. The
//! other hooks, and `--verdicts`, classify each frame on the one hook named.
//!
//! Connection tracking does not exist yet: stateful matches see every packet as NEW. Frames that
//! are not IPv4 or fail the kernel's IPv4 checks never reach a table; they are counted and
//! reported on stderr.

use crate::grammar::save::save_table;
use crate::restore::{restore, RestoreOptions};
use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::eval::{Hit, Trace, Verdict};
use classifier::packet::{IfName, PacketMeta};
use classifier::wire::headers::{parse_ethernet, parse_ipv4};
use classifier::{Hook, RuleId, Ruleset};
use dataplane::pcap::PcapSlice;
use std::collections::HashMap;

struct Args {
    rules: String,
    hook: Hook,
    in_iface: IfName,
    out_iface: IfName,
    verdicts: bool,
    capture: String,
}

/// `pollwall replay` (the command line is `crate::commands`'): with `--config`, the pipeline of
/// a configuration; else one hook of a ruleset. Returns the exit code.
pub(crate) fn run_cmd(a: crate::commands::ReplayArgs) -> i32 {
    if let Some(config) = a.config {
        return crate::replay_config::run_cmd(config, a.out, a.conntrack, a.verdicts, a.capture);
    }
    let iface = |s: Option<String>| match s {
        None => Ok(IfName::NONE),
        Some(s) => {
            IfName::new(&s).ok_or_else(|| format!("interface name `{s}' is longer than 15 bytes"))
        }
    };
    let args = (|| {
        Ok::<_, String>(Args {
            rules: a
                .rules
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            hook: a.hook.unwrap_or(Hook::Forward),
            in_iface: iface(a.in_iface)?,
            out_iface: iface(a.out_iface)?,
            verdicts: a.verdicts,
            capture: a.capture.to_string_lossy().into_owned(),
        })
    })();
    match args.and_then(run) {
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

fn verdict_name(v: Verdict) -> String {
    match v {
        Verdict::Accept => "ACCEPT".into(),
        Verdict::Drop => "DROP".into(),
        Verdict::HotDrop => "DROP(hotdrop)".into(),
        Verdict::Reject(r) => format!("REJECT({})", r.name()),
        Verdict::Queue { num, .. } => format!("QUEUE({num})"),
    }
}

fn run(a: Args) -> Result<(String, String), String> {
    let text =
        std::fs::read_to_string(&a.rules).map_err(|e| format!("cannot read {}: {e}", a.rules))?;
    let mut rs = Ruleset::new();
    restore(&text, &RestoreOptions::default(), &mut rs)
        .map_err(|e| format!("{}:\n{}", a.rules, e.render("iptables-restore").trim_end()))?;
    let bytes = std::fs::read(&a.capture).map_err(|e| format!("cannot read {}: {e}", a.capture))?;
    let pcap = PcapSlice::new(&bytes).map_err(|e| format!("{}: {e}", a.capture))?;
    let raw_ip = pcap.linktype().is_raw_ip();

    // Where each rule is, for --verdicts and for folding counters back.
    let mut place: HashMap<RuleId, (usize, usize, usize)> = HashMap::new();
    for (ti, t) in rs.tables.iter().enumerate() {
        for (ci, c) in t.chains.iter().enumerate() {
            for (ri, r) in c.rules.iter().enumerate() {
                place.insert(r.id, (ti, ci, ri));
            }
        }
    }
    let compiled = CompiledRuleset::compile(&rs, 0, &TreeParams::default());
    if a.hook == Hook::Forward && !a.verdicts && !raw_ip {
        let max_len = PcapSlice::new(&bytes)
            .map(|p| {
                p.filter_map(Result::ok)
                    .map(|f| f.data.len())
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        return replay_through_dataplane(&a, rs, compiled, pcap, max_len);
    }
    let mut st = compiled.new_state();
    let (in_iface, out_iface) = match a.hook {
        Hook::Prerouting | Hook::Input => (a.in_iface, IfName::NONE),
        Hook::Forward => (a.in_iface, a.out_iface),
        Hook::Output | Hook::Postrouting => (IfName::NONE, a.out_iface),
    };
    let mut out = String::new();
    let mut dropped: HashMap<&'static str, u64> = HashMap::new();
    let mut first_ts = None;
    for (n, frame) in pcap.enumerate() {
        let frame = frame.map_err(|e| format!("{}: frame {}: {e}", a.capture, n + 1))?;
        let parsed = if raw_ip {
            parse_ipv4(frame.data)
        } else {
            parse_ethernet(frame.data)
        };
        let h = match parsed {
            Ok(h) => h,
            Err(reason) => {
                *dropped.entry(reason.name()).or_default() += 1;
                if a.verdicts {
                    out.push_str(&format!("{} DROP(malformed:{})\n", n + 1, reason.name()));
                }
                continue;
            }
        };
        let t0 = *first_ts.get_or_insert(frame.ts_ns);
        let meta = PacketMeta::arriving(&h, in_iface, out_iface, frame.ts_ns.saturating_sub(t0));
        let mut trace = Trace::default();
        let (v, _mark) = compiled.classify(a.hook, &h, &meta, &mut st, &mut trace);
        if a.verdicts {
            let hits: Vec<String> = trace
                .hits
                .iter()
                .map(|hit| match hit {
                    Hit::Rule(id) => {
                        let (ti, ci, ri) = place[id];
                        let t = &rs.tables[ti];
                        format!("{}/{}/{}", t.kind, t.chains[ci].name, ri + 1)
                    }
                    Hit::Policy(t, hook) => format!("{t}/{}/policy", hook.name()),
                })
                .collect();
            out.push_str(&format!(
                "{} {} {}\n",
                n + 1,
                verdict_name(v),
                hits.join(",")
            ));
        }
    }
    // Fold the counters back into the ruleset and print it as iptables-save -c.
    crate::counters::fold(&mut rs, &compiled, &[&st]);
    if !a.verdicts {
        for t in &rs.tables {
            out.push_str("# Generated by pollwall replay\n");
            out.push_str(&save_table(t, true));
            out.push_str("# Completed\n");
        }
    }
    let mut notes = String::new();
    let mut reasons: Vec<_> = dropped.into_iter().collect();
    reasons.sort();
    for (reason, count) in reasons {
        notes.push_str(&format!(
            "pollwall replay: {count} frames dropped before any table: {reason}\n"
        ));
    }
    Ok((out, notes))
}

/// FORWARD counters through the dataplane's own batch pipeline (the pcap backend): the capture's
/// frames arrive on a port named `--in-iface` bridged to one named `--out-iface`, exactly as
/// AF_XDP frames would.
fn replay_through_dataplane(
    a: &Args,
    mut rs: Ruleset,
    compiled: CompiledRuleset,
    pcap: PcapSlice<'_>,
    max_len: usize,
) -> Result<(String, String), String> {
    use dataplane::pipeline::{Pipeline, Port, Sinks, Topology};
    use dataplane::stats::StatsShard;
    use std::sync::Arc;
    let compiled = Arc::new(compiled);
    let topo = Arc::new(Topology {
        ports: vec![
            Port {
                name: a.in_iface,
                peer: 1,
            },
            Port {
                name: a.out_iface,
                peer: 0,
            },
        ],
        local_mac: None,
        router: None,
        router_updates: None,
    });
    let stats = Arc::new(StatsShard::default());
    let mut p = Pipeline::new(
        Arc::clone(&compiled),
        topo,
        Arc::clone(&stats),
        Sinks::none(),
        None,
    );
    let frames = pcap.map(|f| f.map(|f| (f.ts_ns, f.data)));
    let mut out: [Option<dataplane::pcap::PcapWriter<std::io::Sink>>; 2] = [None, None];
    dataplane::pcap_io::replay(&mut p, frames, 0, max_len, &mut out)
        .map_err(|e| format!("{}: {e}", a.capture))?;
    crate::counters::fold(&mut rs, &compiled, &[p.state()]);
    let mut text = String::new();
    for t in &rs.tables {
        text.push_str("# Generated by pollwall replay\n");
        text.push_str(&save_table(t, true));
        text.push_str("# Completed\n");
    }
    let notes = drop_notes(&stats);
    Ok((text, notes))
}

/// What the pipeline dropped before any table (and bridged without one), for stderr.
pub(crate) fn drop_notes(stats: &dataplane::stats::StatsShard) -> String {
    use dataplane::stats::Counter;
    let mut notes = String::new();
    let reasons = [
        (Counter::DropBadChecksum, "bad_checksum"),
        (Counter::DropBadHeaderLen, "bad_header_len"),
        (Counter::DropBadTotalLen, "bad_total_len"),
        (Counter::DropBadVersion, "bad_version"),
        (Counter::DropNotIpv4, "not_ipv4"),
        (Counter::DropTruncated, "truncated"),
    ];
    for (c, name) in reasons {
        let n = stats.get(c);
        if n > 0 {
            notes.push_str(&format!(
                "pollwall replay: {n} frames dropped before any table: {name}\n"
            ));
        }
    }
    let routed = [
        Counter::RouteNotForUs,
        Counter::RouteUnreachable,
        Counter::RouteTtlExceeded,
        Counter::RouteFragNeeded,
        Counter::NeighDropped,
        Counter::NatNoAddress,
        Counter::NatFailed,
        Counter::NatOifChanged,
    ];
    for c in routed {
        let n = stats.get(c);
        if n > 0 {
            notes.push_str(&format!(
                "pollwall replay: {n} frames dropped by routing or NAT: {}\n",
                c.name()
            ));
        }
    }
    let arp = stats.get(Counter::NonIpForwarded);
    if arp > 0 {
        notes.push_str(&format!(
            "pollwall replay: {arp} ARP frames bridged without reaching a table\n"
        ));
    }
    notes
}
