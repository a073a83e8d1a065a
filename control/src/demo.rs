//! `pollwall demo`: the main job on an embedded default. Today it loads the default ruleset
//! (a small edge firewall: allow ssh, web, dns and established traffic, log and reject the rest)
//! into a temporary rules file through `iptables-restore`, then lists it as an operator would.
//! The dataplane issue extends it to forward real traffic between namespaces.

use crate::cli::{run, RunOutput};
use crate::store::{RulesFile, RulesetStore};

/// The embedded default ruleset, in `iptables-restore` format.
pub const DEFAULT_RULES: &str = "\
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A POSTROUTING -o wan0 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:services - [0:0]
:reject-log - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m conntrack --ctstate INVALID -j DROP
-A INPUT -p icmp -m icmp --icmp-type 8 -m limit --limit 10/sec -j ACCEPT
-A INPUT -j services
-A INPUT -j reject-log
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -j services
-A FORWARD -j reject-log
-A services -p tcp -m tcp --dport 22 -m comment --comment ssh -j ACCEPT
-A services -p tcp -m multiport --dports 80,443 -m comment --comment web -j ACCEPT
-A services -p udp -m udp --dport 53 -j ACCEPT
-A services -p tcp -m tcp --dport 53 -j ACCEPT
-A reject-log -m limit --limit 5/min -j LOG --log-prefix \"pollwall reject: \"
-A reject-log -p tcp -j REJECT --reject-with tcp-reset
-A reject-log -j REJECT --reject-with icmp-port-unreachable
COMMIT
";

fn show(title: &str, out: &RunOutput) -> Result<(), String> {
    println!("$ {title}");
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    println!();
    if out.code != 0 {
        return Err(format!("`{title}` failed with exit code {}", out.code));
    }
    Ok(())
}

/// Runs the demo; returns the process exit code.
pub fn main() -> i32 {
    match demo() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("pollwall demo: {e}");
            1
        }
    }
}

fn demo() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("pollwall-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let store = RulesFile::new(dir.join("rules"));
    let result = (|| {
        println!(
            "pollwall demo: loading the embedded default ruleset into {}\n",
            store.path().display()
        );
        let s = || Ok(&store as &dyn RulesetStore);
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut input = DEFAULT_RULES.as_bytes();
        show(
            "iptables-restore < default.rules",
            &run("iptables-restore", &[], &mut input, s()),
        )?;
        let mut none: &[u8] = &[];
        show(
            "iptables -L -n -v --line-numbers",
            &run(
                "iptables",
                &args(&["-L", "-n", "-v", "--line-numbers"]),
                &mut none,
                s(),
            ),
        )?;
        show(
            "iptables -A services -p tcp --dport 8443 -j ACCEPT",
            &run(
                "iptables",
                &args(&[
                    "-A", "services", "-p", "tcp", "--dport", "8443", "-j", "ACCEPT",
                ]),
                &mut none,
                s(),
            ),
        )?;
        show(
            "iptables -A services -j services   (a loop: refused, nothing changes)",
            &RunOutput {
                code: 0,
                ..run(
                    "iptables",
                    &args(&["-A", "services", "-j", "services"]),
                    &mut none,
                    s(),
                )
            },
        )?;
        show(
            "iptables -S services",
            &run("iptables", &args(&["-S", "services"]), &mut none, s()),
        )?;
        show("iptables-save", &run("iptables-save", &[], &mut none, s()))?;
        println!(
            "The packet path (AF_XDP workers, classifier) is not built yet; this demo exercises the\n\
             rule model and the iptables command line over a rules file."
        );
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
