//! The demo's test topology: three network namespaces it creates (`pwdemo<pid>c` LAN client,
//! `pwdemo<pid>f` the gateway, `pwdemo<pid>s` uplink server) and two veth pairs, client `pwc0`
//! (10.1.0.2, default route via pollwall's 10.1.0.1) — `pwf0` pollwall `pwf1` (10.2.0.1) —
//! `pws0` server (10.2.0.2), removed again on every path (explicitly, and by `Drop` on
//! errors and panics).
//!
//! Safety rules: every veth is created with `ip -n FW link add ... peer ... netns HOST`, so both
//! ends are born inside namespaces this module made; nothing is ever created in, moved to or
//! changed in the root namespace; only namespaces this process added are deleted. The host ends
//! get full checksums from their stacks (`ethtool -K ... tx off tso off gso off`: AF_XDP carries
//! no checksum-offload metadata) and IPv6 is off in every namespace (no router solicitations).

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

/// The LAN client (behind pollwall) and the server on the uplink side.
pub const CLIENT_IP: &str = "10.1.0.2";
pub const SERVER_IP: &str = "10.2.0.2";
/// pollwall's addresses: the LAN's gateway and the uplink address MASQUERADE uses.
pub const LAN_GW: &str = "10.1.0.1";
pub const UPLINK_IP: &str = "10.2.0.1";
/// The MACs of pollwall's two ports.
pub const FW_CLIENT_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 0xf0];
pub const FW_SERVER_MAC: [u8; 6] = [0x02, 0x70, 0x77, 0, 0, 0xf1];
pub const CLIENT_MAC: &str = "02:70:77:00:00:01";
pub const SERVER_MAC: &str = "02:70:77:00:00:02";
/// The firewall's ports: towards the client, towards the server (the ruleset names them).
pub const FW_CLIENT_SIDE: &str = "pwf0";
pub const FW_SERVER_SIDE: &str = "pwf1";
const CLIENT_IF: &str = "pwc0";
const SERVER_IF: &str = "pws0";

/// The full path of a system tool (`PATH`, then the sbin directories).
pub fn tool(name: &str) -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "`{name}' not found in PATH (as root, tools/scripts/ensure-system-deps.sh installs it)"
            )
        })
}

/// Runs `prog args` (stdin closed); an error carries the command line and its stderr.
fn run(prog: &PathBuf, args: &[&str]) -> Result<(), String> {
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", prog.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{} {}` failed: {}",
            prog.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A network namespace this process added; deleted on drop.
pub struct Netns {
    name: String,
    ip: PathBuf,
    deleted: bool,
}

impl Netns {
    /// `ip netns add NAME` (fails if it exists: then there is nothing of ours to remove).
    fn add(ip: &PathBuf, name: &str) -> Result<Netns, String> {
        if !name.starts_with("pw") || name.contains('/') || name.len() > 64 {
            return Err(format!("refusing to create namespace {name:?}"));
        }
        run(ip, &["netns", "add", name])?;
        let ns = Netns {
            name: name.to_string(),
            ip: ip.clone(),
            deleted: false,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME args`.
    fn ip(&self, args: &[&str]) -> Result<(), String> {
        let mut a = vec!["-n", self.name.as_str()];
        a.extend_from_slice(args);
        run(&self.ip, &a)
    }

    /// `ip netns exec NAME prog args`.
    fn exec(&self, prog: &str, args: &[&str]) -> Result<(), String> {
        let mut a = vec!["netns", "exec", self.name.as_str(), prog];
        a.extend_from_slice(args);
        run(&self.ip, &a)
    }

    fn delete(&mut self) -> Result<(), String> {
        if self.deleted {
            return Ok(());
        }
        self.deleted = true;
        run(&self.ip, &["netns", "del", &self.name])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = self.delete() {
            eprintln!("pollwall demo: warning: {e}");
        }
    }
}

/// The three namespaces and their veths.
pub struct Topology {
    pub client: Netns,
    pub server: Netns,
    pub fw: Netns,
}

impl Topology {
    /// Builds the topology for namespaces named `{tag}c`, `{tag}s` and `{tag}f`.
    pub fn build(tag: &str) -> Result<Topology, String> {
        let ip = tool("ip")?;
        let ethtool = tool("ethtool")?;
        let ethtool = ethtool.to_string_lossy();
        let client = Netns::add(&ip, &format!("{tag}c"))?;
        let server = Netns::add(&ip, &format!("{tag}s"))?;
        let fw = Netns::add(&ip, &format!("{tag}f"))?;
        for ns in [&client, &server, &fw] {
            ns.exec(
                "sh",
                &[
                    "-c",
                    "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6 && \
                     echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6",
                ],
            )?;
        }
        // The LAN's default route is pollwall; the server reaches the LAN through it too (so
        // that unsolicited traffic from outside meets FORWARD's policy).
        let lan_route = ("default", LAN_GW);
        let uplink_route = ("10.1.0.0/24", UPLINK_IP);
        for (fw_if, fw_mac, host, host_if, mac, addr, (to, via)) in [
            (
                FW_CLIENT_SIDE,
                FW_CLIENT_MAC,
                &client,
                CLIENT_IF,
                CLIENT_MAC,
                CLIENT_IP,
                lan_route,
            ),
            (
                FW_SERVER_SIDE,
                FW_SERVER_MAC,
                &server,
                SERVER_IF,
                SERVER_MAC,
                SERVER_IP,
                uplink_route,
            ),
        ] {
            let fw_mac = fw_mac.map(|b| format!("{b:02x}")).join(":");
            // Both ends are created inside namespaces: FW's end in FW, the peer in HOST.
            fw.ip(&[
                "link",
                "add",
                fw_if,
                "address",
                &fw_mac,
                "type",
                "veth",
                "peer",
                "name",
                host_if,
                "address",
                mac,
                "netns",
                host.name(),
            ])?;
            fw.ip(&["link", "set", fw_if, "up"])?;
            host.exec(
                &ethtool,
                &["-K", host_if, "tx", "off", "tso", "off", "gso", "off"],
            )?;
            host.ip(&["addr", "add", &format!("{addr}/24"), "dev", host_if])?;
            host.ip(&["link", "set", host_if, "up"])?;
            host.ip(&["route", "add", to, "via", via])?;
        }
        Ok(Topology { client, server, fw })
    }

    /// Deletes the namespaces (and with them the veths); returns what was removed.
    pub fn remove(mut self) -> Result<String, String> {
        let mut errors = Vec::new();
        let mut names = Vec::new();
        for ns in [&mut self.client, &mut self.server, &mut self.fw] {
            names.push(ns.name.clone());
            if let Err(e) = ns.delete() {
                errors.push(e);
            }
        }
        if errors.is_empty() {
            Ok(format!(
                "removed namespaces {} (and the veths in them)",
                names.join(", ")
            ))
        } else {
            Err(errors.join("; "))
        }
    }
}

/// Spawns `f` on a new thread that first enters network namespace `ns` (`setns`, this thread
/// only; threads it spawns inherit it). The thread's result is an error if `setns` failed.
pub fn spawn_in<T: Send + 'static>(
    ns: &str,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<Result<T, String>>, String> {
    let path = format!("/run/netns/{ns}");
    std::thread::Builder::new()
        .name(format!("pw-demo-{what}"))
        .spawn(move || {
            let file = File::open(&path).map_err(|e| format!("cannot open {path}: {e}"))?;
            // SAFETY: `file` is an open namespace file for the whole call; setns changes only
            // the calling thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(format!("setns {path}: {}", std::io::Error::last_os_error()));
            }
            Ok(f())
        })
        .map_err(|e| format!("cannot start the {what} thread: {e}"))
}

/// Joins a [`spawn_in`] thread: its result, or why there is none.
pub fn join<T>(h: JoinHandle<Result<T, String>>, what: &str) -> Result<T, String> {
    h.join()
        .map_err(|_| format!("the {what} thread panicked"))?
}
