//! `pollwall demo`: the main job on an embedded default ruleset.
//!
//! As root it builds a test topology in network namespaces it creates (a LAN client, pollwall
//! as a routed NAT gateway between two veths, a server on the uplink: module `topology`), loads
//! [`DEFAULT_RULES`] with [`GATEWAY_NAT`] (MASQUERADE and one port forward) added (a stateful
//! firewall: new connections from the client to ssh, web and DNS, replies by connection state,
//! the rest logged with a rate limit and rejected), starts the AF_XDP dataplane in-process,
//! runs traffic through it for a few seconds (module `live`), prints what each exchange did,
//! the LOG lines, the connections the workers tracked (as `conntrack -L` prints them),
//! `iptables -L -v -n` with the counters the workers kept, the measured packet rate and the
//! frame accounting, and removes everything it made (also on errors, panics and Ctrl-C).
//!
//! Without root, without AF_XDP or the tools it needs (`ip`, `ethtool`), or when the topology
//! or the dataplane cannot be set up, it says why in one line and runs the same ruleset over the
//! in-memory backend instead (module `memory`): the same pipeline, fed crafted frames, no NIC.
//!
//! `POLLWALL_DEMO_BACKEND` chooses: `memory` always runs in memory; `afxdp` runs live and fails
//! (exit code 1) instead of falling back; unset or empty picks as above. Exit code 0 when every
//! exchange did what the ruleset says and no frame was lost, 1 otherwise.

mod frames;
mod live;
mod memory;
mod topology;

use crate::cli::run;
use crate::error::CmdResult;
use crate::restore::{restore, RestoreOptions};
use crate::store::{RulesetStore, Wait};
use classifier::compile::{CompiledRuleset, TreeParams, WorkerState};
use classifier::Ruleset;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// The embedded default ruleset, in `iptables-restore` format: a stateful firewall for the
/// demo's bridge, `pwf0` facing the client and `pwf1` facing the server. Replies and related
/// traffic (ICMP errors about a connection) pass by connection state; new connections only
/// from the client side, to ssh, web and DNS; the rest from the client is logged with a rate
/// limit and rejected; anything new from the server side meets the DROP policy.
pub const DEFAULT_RULES: &str = "\
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:to-server - [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment \"replies and related\" -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -i pwf0 -o pwf1 -m conntrack --ctstate NEW -j to-server
-A to-server -p tcp -m multiport --dports 22,80,443 -m comment --comment \"ssh and web\" -j ACCEPT
-A to-server -p udp -m udp --dport 53 -m comment --comment dns -j ACCEPT
-A to-server -m limit --limit 5/min -j LOG --log-prefix \"pollwall reject: \"
-A to-server -p tcp -j REJECT --reject-with tcp-reset
-A to-server -j REJECT --reject-with icmp-port-unreachable
COMMIT
";

/// What the live demo adds to [`DEFAULT_RULES`] to make the box a NAT gateway: MASQUERADE on
/// the uplink, one port forward (the uplink's :2222 to the LAN client's ssh) and the FORWARD
/// rule that lets forwarded connections in.
pub const GATEWAY_NAT: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i pwf1 -p tcp -m tcp --dport 2222 -m comment --comment \"port forward to the LAN's ssh\" -j DNAT --to-destination 10.1.0.2:22
-A POSTROUTING -o pwf1 -j MASQUERADE
COMMIT
";

const PORT_FORWARD_RULE: &str = "-A FORWARD -i pwf1 -o pwf0 -m conntrack --ctstate DNAT -m comment --comment \"port forwards\" -j ACCEPT\n";

/// The live demo's ruleset: the default one with [`GATEWAY_NAT`] and the port forward's
/// FORWARD rule (after the INVALID drop).
pub fn gateway_rules() -> String {
    let invalid = "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n";
    let filter = DEFAULT_RULES.replacen(invalid, &format!("{invalid}{PORT_FORWARD_RULE}"), 1);
    format!("{GATEWAY_NAT}{filter}")
}

/// The environment variable that picks the backend (`memory`, `afxdp`).
pub const BACKEND_ENV: &str = "POLLWALL_DEMO_BACKEND";

const LIVE_BLAST: Duration = Duration::from_secs(2);
const MEMORY_BLAST: Duration = Duration::from_secs(1);

/// One exchange of the run: what happened, and whether it is what the ruleset says.
pub(crate) struct Step {
    ok: bool,
    text: String,
}

impl Step {
    fn new(ok: bool, text: String) -> Step {
        Step { ok, text }
    }
}

/// What a run produced; [`report`] prints it.
pub(crate) struct Outcome {
    notes: Vec<String>,
    steps: Vec<Step>,
    /// LOG lines, kernel format.
    logs: Vec<String>,
    /// Per-worker rule counters, folded into the ruleset for the listing.
    states: Vec<WorkerState>,
    rate: Vec<String>,
    accounting: Vec<String>,
    /// The dataplane counters (`daemon::stats_lines`).
    counters: String,
    /// What removing the topology did (live runs).
    cleanup: Option<Result<String, String>>,
}

/// `1.23 Mpps` style.
fn pps(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2} Mpps", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1} kpps", v / 1e3)
    } else {
        format!("{v:.0} pps")
    }
}

/// A read-only store over a copy of a ruleset: lets the demo run `iptables -L`/`-S` on it.
struct Snapshot(Ruleset);

impl RulesetStore for Snapshot {
    fn transact(
        &self,
        _wait: Wait,
        f: &mut dyn FnMut(&mut Ruleset) -> CmdResult<(String, bool)>,
    ) -> CmdResult<String> {
        let mut rs = self.0.clone();
        f(&mut rs).map(|(out, _)| out)
    }
}

/// `iptables ARGS` over `rs`: its output, or why it failed.
fn iptables(rs: &Ruleset, args: &[&str]) -> Result<String, String> {
    let store = Snapshot(rs.clone());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = run(
        "iptables",
        &args,
        &mut std::io::empty(),
        Ok(&store as &dyn RulesetStore),
    );
    if out.code != 0 {
        return Err(format!(
            "iptables {}: {}",
            args.join(" "),
            out.stderr.trim()
        ));
    }
    Ok(out.stdout)
}

/// The default ruleset, parsed.
pub fn default_ruleset() -> Result<Ruleset, String> {
    parse_embedded(DEFAULT_RULES)
}

fn parse_embedded(text: &str) -> Result<Ruleset, String> {
    let mut rs = Ruleset::new();
    restore(text, &RestoreOptions::default(), &mut rs).map_err(|e| {
        format!(
            "the embedded ruleset:\n{}",
            e.render("iptables-restore").trim_end()
        )
    })?;
    Ok(rs)
}

/// Runs the demo; returns the process exit code.
pub fn main() -> i32 {
    match demo() {
        Ok(true) => 0,
        Ok(false) => {
            eprintln!("pollwall demo: some exchanges did not do what the ruleset says (see above)");
            1
        }
        Err(e) => {
            eprintln!("pollwall demo: {e}");
            1
        }
    }
}

fn compile(rs: &Ruleset) -> Arc<CompiledRuleset> {
    Arc::new(CompiledRuleset::compile(
        rs,
        dataplane::worker::now_ns(),
        &TreeParams::default(),
    ))
}

fn demo() -> Result<bool, String> {
    let mut rs = default_ruleset()?;
    let mut compiled = compile(&rs);
    let targets = crate::daemon::log_targets(&rs);
    let choice = std::env::var(BACKEND_ENV).unwrap_or_default();
    let live_reason = match choice.as_str() {
        "memory" => Some(format!("{BACKEND_ENV}=memory")),
        "" | "afxdp" => live::unavailable(),
        other => {
            return Err(format!(
                "{BACKEND_ENV}={other}: expected `memory' or `afxdp'"
            ))
        }
    };
    let in_memory = |why: &str, show_rules: bool| {
        println!("pollwall demo: {why}: running the default ruleset over the in-memory backend instead\n");
        if show_rules {
            print_ruleset(&rs)?;
        }
        memory::run(Arc::clone(&compiled), &targets, MEMORY_BLAST)
    };
    let outcome = match live_reason {
        Some(why) if choice == "afxdp" => return Err(format!("cannot run live: {why}")),
        Some(why) => in_memory(&why, true)?,
        None => {
            println!(
                "pollwall demo: a NAT gateway on the AF_XDP dataplane, between network namespaces made for the demo\n"
            );
            let gateway = parse_embedded(&gateway_rules())?;
            let (gw_compiled, gw_targets) =
                (compile(&gateway), crate::daemon::log_targets(&gateway));
            print_ruleset(&gateway)?;
            let interrupted = Arc::new(AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                // A second signal ends the process at once; the first stops the run cleanly.
                signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&interrupted))
                    .and_then(|_| signal_hook::flag::register(sig, Arc::clone(&interrupted)))
                    .map_err(|e| format!("cannot handle signal {sig}: {e}"))?;
            }
            match live::run(
                Arc::clone(&gw_compiled),
                &gw_targets,
                LIVE_BLAST,
                &interrupted,
            ) {
                Ok(o) => {
                    (rs, compiled) = (gateway, gw_compiled);
                    o
                }
                Err(live::Failure::Setup(e)) if choice != "afxdp" => {
                    println!("pollwall demo: {e} (removed what it made)");
                    in_memory("the live topology could not be set up", false)?
                }
                Err(live::Failure::Setup(e) | live::Failure::Run(e)) => {
                    return Err(format!("{e} (everything the demo made was removed)"))
                }
            }
        }
    };
    report(&mut rs, &compiled, outcome)
}

fn print_ruleset(rs: &Ruleset) -> Result<(), String> {
    println!("the embedded default ruleset ($ iptables -S):");
    for l in iptables(rs, &["-S"])?.lines() {
        println!("  {l}");
    }
    println!();
    Ok(())
}

/// Prints the outcome with the counters folded into `rs`; true when every step was ok.
fn report(rs: &mut Ruleset, compiled: &CompiledRuleset, o: Outcome) -> Result<bool, String> {
    for n in &o.notes {
        println!("{n}");
    }
    println!("\ntraffic:");
    for s in &o.steps {
        println!("  {} {}", if s.ok { "ok  " } else { "FAIL" }, s.text);
    }
    println!("\nLOG lines written by pollwall (kernel format; -m limit 5/min, burst 5):");
    if o.logs.is_empty() {
        println!("  (none)");
    }
    for l in &o.logs {
        println!("  {l}");
    }
    let trackers: Vec<&classifier::conntrack::Tracker> =
        o.states.iter().filter_map(|s| s.ct.as_deref()).collect();
    let conns = classifier::conntrack::list::listing(trackers.iter().copied());
    println!("\nconnections tracked ($ conntrack -L):");
    for l in &conns {
        println!("  {l}");
    }
    println!("  {}", classifier::conntrack::list::summary(conns.len()));
    let states: Vec<&WorkerState> = o.states.iter().collect();
    crate::counters::fold(rs, compiled, &states);
    println!("\n$ iptables -L -v -n");
    print!("{}", iptables(rs, &["-L", "-v", "-n"])?);
    if rs
        .tables
        .iter()
        .any(|t| t.kind == classifier::TableKind::Nat)
    {
        println!("\n$ iptables -t nat -L -v -n");
        print!("{}", iptables(rs, &["-t", "nat", "-L", "-v", "-n"])?);
    }
    println!();
    for l in o.rate.iter().chain(&o.accounting) {
        println!("{l}");
    }
    print!("dataplane counters:\n{}", o.counters);
    let mut ok = o.steps.iter().all(|s| s.ok);
    match o.cleanup {
        Some(Ok(c)) => println!("cleanup: {c}"),
        Some(Err(e)) => {
            println!("cleanup FAILED: {e}");
            ok = false;
        }
        None => {}
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::frames::{self, CLIENT, RST, SERVER, SYN};
    use super::memory::{Mem, PORT_CLIENT, PORT_SERVER};
    use super::*;
    use dataplane::stats::Counter;

    fn compiled() -> (Ruleset, Arc<CompiledRuleset>) {
        let rs = default_ruleset().expect("the embedded ruleset loads");
        let c = Arc::new(CompiledRuleset::compile(&rs, 0, &TreeParams::default()));
        (rs, c)
    }

    /// `[packets]` of each rule of `chain` in `iptables -L -v -n -x` order.
    fn packets(rs: &Ruleset, chain: &str) -> Vec<u64> {
        let out = iptables(rs, &["-L", chain, "-v", "-n", "-x"]).expect("listing");
        out.lines()
            .skip(2)
            .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
            .collect()
    }

    #[test]
    fn default_ruleset_on_the_in_memory_pipeline() {
        let (mut rs, c) = compiled();
        let targets = crate::daemon::log_targets(&rs);
        let mut m = Mem::new(Arc::clone(&c)).unwrap();
        let syn80 = frames::tcp(CLIENT, SERVER, 40000, 80, SYN, &[]);
        let sent = m.send(PORT_CLIENT, std::slice::from_ref(&syn80)).unwrap();
        assert_eq!(
            sent.to_server,
            vec![syn80],
            "the allowed SYN goes out of pwf1 unchanged"
        );
        assert!(sent.to_client.is_empty());

        let sent = m
            .send(
                PORT_CLIENT,
                &[frames::tcp(CLIENT, SERVER, 40001, 23, SYN, &[])],
            )
            .unwrap();
        assert!(sent.to_server.is_empty(), "the SYN to :23 is not forwarded");
        assert_eq!(sent.to_client.len(), 1, "one reply out of the ingress port");
        let rst = &sent.to_client[0];
        assert_eq!(frames::tcp_flags(rst).map(|f| f & RST), Some(RST));
        assert_eq!(frames::src_ip(rst), Some(SERVER));
        assert_eq!(&rst[..6], &frames::CLIENT_MAC, "addressed to the client");

        let sent = m
            .send(
                PORT_CLIENT,
                &[frames::udp(CLIENT, SERVER, 40002, 161, b"x")],
            )
            .unwrap();
        assert!(sent.to_server.is_empty());
        assert_eq!(
            sent.to_client
                .iter()
                .map(|f| frames::icmp_type_code(f))
                .collect::<Vec<_>>(),
            vec![Some((3, 3))],
            "ICMP port unreachable"
        );
        let sent = m
            .send(PORT_SERVER, &[frames::udp(SERVER, CLIENT, 53, 40002, b"a")])
            .unwrap();
        assert!(
            sent.to_client.is_empty(),
            "a DNS 'reply' to no query is NEW from the server side: dropped"
        );
        let sent = m
            .send(
                PORT_SERVER,
                &[frames::tcp(SERVER, CLIENT, 8080, 1, SYN, &[])],
            )
            .unwrap();
        assert!(sent.to_client.is_empty() && sent.to_server.is_empty());

        let logs = m.log_lines(&targets);
        assert_eq!(logs.len(), 2, "{logs:?}");
        assert!(
            logs[0].contains("pollwall reject: IN=pwf0 OUT=pwf1"),
            "{}",
            logs[0]
        );
        assert!(logs[0].contains("DPT=23"), "{}", logs[0]);
        assert_eq!(m.stats().get(Counter::RejectSent), 2);
        assert_eq!(m.stats().get(Counter::Forwarded), 1);
        let conns = classifier::conntrack::list::listing(m.tracker());
        assert_eq!(
            conns.len(),
            1,
            "only the accepted SYN left a connection: {conns:?}"
        );
        // The timeout column counts down with the clock: a slow machine may
        // list 119 (CI did), so only its bound is checked.
        let fields: Vec<&str> = conns[0].split_whitespace().collect();
        let left: u32 = fields[2].parse().expect("the timeout column");
        assert!((110..=120).contains(&left), "{conns:?}");
        assert_eq!(
            fields[3..8].join(" "),
            "SYN_SENT src=10.9.0.1 dst=10.9.0.2 sport=40000 dport=80",
            "{conns:?}"
        );
        assert_eq!(fields[8], "[UNREPLIED]", "{conns:?}");
        assert_eq!(m.free_frames(), 256, "every frame back on the free list");

        let state = m.into_state();
        crate::counters::fold(&mut rs, &c, &[&state]);
        // established, invalid, new from the client.
        assert_eq!(packets(&rs, "FORWARD"), vec![0, 0, 3]);
        // accept web, accept dns, LOG, reject tcp, reject other.
        assert_eq!(packets(&rs, "to-server"), vec![1, 0, 2, 1, 1]);
        let fwd = iptables(&rs, &["-L", "FORWARD", "-v", "-n", "-x"]).unwrap();
        assert!(
            fwd.starts_with("Chain FORWARD (policy DROP 2 packets"),
            "{fwd}"
        );
    }

    #[test]
    fn memory_run_reports_every_step_ok() {
        let (_, c) = compiled();
        let targets = std::collections::HashMap::new();
        let o = memory::run(c, &targets, Duration::from_millis(20)).unwrap();
        for s in &o.steps {
            assert!(s.ok, "{}", s.text);
        }
        assert_eq!(o.steps.len(), 6);
        let trackers: Vec<_> = o.states.iter().filter_map(|s| s.ct.as_deref()).collect();
        let conns = classifier::conntrack::list::listing(trackers.iter().copied());
        assert!(
            conns
                .iter()
                .any(|l| l.contains("ESTABLISHED src=10.9.0.1 dst=10.9.0.2 sport=40000 dport=80")),
            "{conns:?}"
        );
        assert!(o.rate[0].contains("forwarded"), "{}", o.rate[0]);
        assert!(o.accounting[0].contains("lost 0"), "{}", o.accounting[0]);
    }
}
