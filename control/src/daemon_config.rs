//! The daemon's TOML configuration (`pollwall daemon --config FILE`): ports, cores, ring sizes,
//! idle policy, rules file. Unknown keys are errors (a typo must not silently change nothing).
//!
//! ```toml
//! rules = "/etc/pollwall/rules.v4"   # iptables-save format, loaded at start
//! cores = [0, 1]                     # one worker per core (RX queue q goes to worker q % n)
//! idle = "busy"                      # or "adaptive": back off to poll() when idle
//! idle_spins = 2000                  # adaptive: empty iterations before sleeping
//! zero_copy = "auto"                 # "auto" | "require" | "off"
//! xdp_mode = "auto"                  # "auto" (driver, else generic) | "driver" | "generic"
//! frames = 2048                      # UMEM frames per worker (all workers within RLIMIT_MEMLOCK)
//! frame_size = 2048                  # 2048 or 4096
//! rx_ring = 0                        # per socket; 0 = derived from frames
//! tx_ring = 0
//! log_file = "-"                     # LOG lines: "-" = stderr, a file, "syslog" (/dev/log,
//!                                    #   the rule's --log-level as severity), "syslog:/socket"
//! queue_len = 1024                   # QUEUE/NFQUEUE ring per worker
//! tap = "pwtap0"                     # optional: the exception path's TAP interface
//! backend = "auto"                  # "auto" (AF_XDP, else AF_PACKET with a warning) | "af_xdp" | "af_packet"
//! steering = "flow"                  # "flow": both directions of a flow to one worker | "off"
//!
//! [[bridge]]
//! ports = ["eth0", "eth1"]
//!
//! [conntrack]                        # optional; netfilter's defaults
//! max = 262144                       # nf_conntrack_max, per worker
//! tcp_loose = true
//! tcp_be_liberal = false
//! tcp_max_retrans = 3
//! tcp_ignore_invalid_rst = false
//! checksum = true                    # verify TCP/UDP/ICMP checksums of arriving packets
//! [conntrack.timeouts]               # seconds, by sysctl name without nf_conntrack_
//! tcp_timeout_established = 432000
//! ```

use classifier::conntrack::{CtConfig, TimeoutError, Timeouts};
use dataplane::runtime::{AttachMode, Backend, DataplaneConfig};
use dataplane::worker::IdlePolicy;
use dataplane::xsk::ZeroCopy;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    rules: String,
    #[serde(default)]
    cores: Option<Vec<usize>>,
    #[serde(default)]
    idle: Option<String>,
    #[serde(default)]
    idle_spins: Option<u32>,
    #[serde(default)]
    zero_copy: Option<String>,
    #[serde(default)]
    xdp_mode: Option<String>,
    #[serde(default)]
    frames: Option<u32>,
    #[serde(default)]
    frame_size: Option<u32>,
    #[serde(default)]
    rx_ring: Option<u32>,
    #[serde(default)]
    tx_ring: Option<u32>,
    #[serde(default)]
    log_file: Option<String>,
    #[serde(default)]
    queue_len: Option<usize>,
    #[serde(default)]
    tap: Option<String>,
    #[serde(default)]
    steering: Option<String>,
    #[serde(default)]
    backend: Option<String>,
    #[serde(default)]
    bridge: Vec<RawBridge>,
    #[serde(default)]
    port: Vec<crate::routed_config::RawPort>,
    #[serde(default)]
    route: Vec<crate::routed_config::RawRoute>,
    #[serde(default)]
    neighbor: Vec<crate::routed_config::RawNeighbor>,
    #[serde(default)]
    routes: Option<String>,
    #[serde(default)]
    conntrack: Option<RawConntrack>,
}

/// `[conntrack]`: the table bound, the TCP switches, and timeouts by their sysctl names
/// without `nf_conntrack_` (`[conntrack.timeouts] tcp_timeout_established = 3600`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConntrack {
    max: Option<u32>,
    tcp_loose: Option<bool>,
    tcp_be_liberal: Option<bool>,
    tcp_max_retrans: Option<u8>,
    tcp_ignore_invalid_rst: Option<bool>,
    checksum: Option<bool>,
    #[serde(default)]
    timeouts: std::collections::BTreeMap<String, u32>,
}

fn conntrack_config(raw: RawConntrack) -> Result<CtConfig, String> {
    let mut c = CtConfig::default();
    if let Some(m) = raw.max {
        if m == 0 {
            return Err("conntrack.max: at least 1".into());
        }
        c.max = m;
    }
    c.tcp_loose = raw.tcp_loose.unwrap_or(c.tcp_loose);
    c.tcp_be_liberal = raw.tcp_be_liberal.unwrap_or(c.tcp_be_liberal);
    c.tcp_max_retrans = raw.tcp_max_retrans.unwrap_or(c.tcp_max_retrans);
    c.tcp_ignore_invalid_rst = raw
        .tcp_ignore_invalid_rst
        .unwrap_or(c.tcp_ignore_invalid_rst);
    c.checksum = raw.checksum.unwrap_or(c.checksum);
    for (name, secs) in raw.timeouts {
        c.timeouts.set(&name, secs).map_err(|e| match e {
            TimeoutError::Unknown => format!(
                "conntrack.timeouts: unknown timeout `{name}' (known: {})",
                Timeouts::names().join(", ")
            ),
            e => format!("conntrack.timeouts.{name}: {e}"),
        })?;
    }
    Ok(c)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBridge {
    ports: Vec<String>,
}

/// The parsed configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub rules: String,
    /// None: LOG lines go to stderr.
    pub log_file: Option<String>,
    pub dataplane: DataplaneConfig,
    /// Routed mode (`[[port]]`, `[[route]]`, `[[neighbor]]`), when configured.
    pub routed: Option<crate::routed_config::RoutedSpec>,
}

pub fn parse(text: &str) -> Result<DaemonConfig, String> {
    let raw: Raw = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut dp = DataplaneConfig::default();
    if let Some(c) = raw.cores {
        if c.is_empty() {
            return Err("cores: at least one core".into());
        }
        dp.cores = c.into_iter().map(Some).collect();
    }
    dp.idle = match raw.idle.as_deref() {
        None | Some("busy") => IdlePolicy::Busy,
        Some("adaptive") => IdlePolicy::Adaptive {
            idle_spins: raw.idle_spins.unwrap_or(2000),
        },
        Some(x) => return Err(format!("idle: `{x}' is not \"busy\" or \"adaptive\"")),
    };
    dp.zero_copy = match raw.zero_copy.as_deref() {
        None | Some("auto") => ZeroCopy::Auto,
        Some("require") => ZeroCopy::Require,
        Some("off") => ZeroCopy::Off,
        Some(x) => {
            return Err(format!(
                "zero_copy: `{x}' is not \"auto\", \"require\" or \"off\""
            ))
        }
    };
    dp.attach = match raw.xdp_mode.as_deref() {
        None | Some("auto") => AttachMode::Auto,
        Some("driver") => AttachMode::Driver,
        Some("generic") => AttachMode::Generic,
        Some(x) => {
            return Err(format!(
                "xdp_mode: `{x}' is not \"auto\", \"driver\" or \"generic\""
            ))
        }
    };
    if let Some(f) = raw.frames {
        dp.frames_per_worker = f;
    }
    if let Some(f) = raw.frame_size {
        if f != 2048 && f != 4096 {
            return Err(format!("frame_size: {f} is not 2048 or 4096"));
        }
        dp.frame_size = f;
    }
    dp.rx_ring = raw.rx_ring.unwrap_or(0);
    dp.tx_ring = raw.tx_ring.unwrap_or(0);
    if let Some(q) = raw.queue_len {
        dp.queue_ring = q.max(1);
    }
    dp.tap = raw.tap;
    dp.backend = match raw.backend.as_deref() {
        None | Some("auto") => Backend::Auto,
        Some("af_xdp") => Backend::AfXdp,
        Some("af_packet") => Backend::AfPacket,
        Some(x) => {
            return Err(format!(
                "backend: `{x}' is not \"auto\", \"af_xdp\" or \"af_packet\""
            ))
        }
    };
    dp.steering = match raw.steering.as_deref() {
        None | Some("flow") => true,
        Some("off") => false,
        Some(x) => return Err(format!("steering: `{x}' is not \"flow\" or \"off\"")),
    };
    for b in raw.bridge {
        match b.ports.as_slice() {
            [a, c] => dp.bridges.push((a.clone(), c.clone())),
            _ => return Err("bridge: `ports` must name exactly two interfaces".into()),
        }
    }
    if let Some(ct) = raw.conntrack {
        dp.conntrack = conntrack_config(ct)?;
    }
    let routed =
        crate::routed_config::parse(raw.port, raw.route, raw.neighbor, raw.routes.as_deref())?;
    if let Some(r) = &routed {
        let bridged: Vec<&String> = dp.bridges.iter().flat_map(|(a, b)| [a, b]).collect();
        if let Some(p) = r.ports.iter().find(|p| bridged.contains(&&p.name)) {
            return Err(format!(
                "port {} is both in a [[bridge]] and a [[port]]",
                p.name
            ));
        }
        if !dp.bridges.is_empty() {
            return Err(
                "[[bridge]] and routed [[port]]s in one configuration are not supported yet".into(),
            );
        }
    } else if dp.bridges.is_empty() {
        return Err("no [[bridge]] with ports = [\"A\", \"B\"] and no routed [[port]]".into());
    }
    Ok(DaemonConfig {
        rules: raw.rules,
        log_file: raw.log_file.filter(|f| f != "-"),
        dataplane: dp,
        routed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_minimal_configs() {
        let c = parse(
            "rules = \"r\"\ncores = [0, 1]\nidle = \"adaptive\"\nframes = 1024\n[[bridge]]\nports = [\"a\", \"b\"]\n",
        )
        .unwrap();
        assert_eq!(c.dataplane.cores, vec![Some(0), Some(1)]);
        assert_eq!(c.dataplane.frames_per_worker, 1024);
        assert_eq!(c.dataplane.bridges, vec![("a".into(), "b".into())]);
        assert!(matches!(
            c.dataplane.idle,
            IdlePolicy::Adaptive { idle_spins: 2000 }
        ));
        let e =
            parse("rules = \"r\"\ncoers = [1]\n[[bridge]]\nports = [\"a\", \"b\"]\n").unwrap_err();
        assert!(e.contains("coers"), "{e}");
        assert!(parse("rules = \"r\"\n").unwrap_err().contains("bridge"));
        assert!(
            parse("rules = \"r\"\nframe_size = 3000\n[[bridge]]\nports = [\"a\", \"b\"]\n")
                .is_err()
        );
    }

    #[test]
    fn routed_ports_routes_and_neighbors() {
        let c = parse(
            "rules = \"r\"\n[[port]]\nname = \"ina\"\nmac = \"02:00:00:00:f0:0a\"\naddress = [\"10.255.1.1/24\"]\n\
             [[port]]\nname = \"outb\"\nmac = \"02:00:00:00:f0:0b\"\naddress = [\"10.255.2.1/24\"]\nmtu = 1400\n\
             [[route]]\nto = \"0.0.0.0/0\"\nvia = \"10.255.2.2\"\n[[neighbor]]\nip = \"10.255.2.2\"\nmac = \"02:00:00:00:0b:99\"\n",
        )
        .unwrap();
        let r = c.routed.unwrap();
        assert_eq!(r.ports.len(), 2);
        assert_eq!(r.ports[1].mtu, Some(1400));
        let rt = r.router().unwrap();
        assert_eq!(
            rt.lookup(0x0808_0808),
            dataplane::route::Hop::Forward {
                port: 1,
                gateway: 0x0aff_0202
            }
        );
        assert!(rt.is_local(0x0aff_0101));
        assert_eq!(
            rt.neighbors,
            vec![(1, 0x0aff_0202, [2, 0, 0, 0, 0x0b, 0x99])]
        );
        let e = parse("rules = \"r\"\n[[port]]\nname = \"a\"\naddres = []\n").unwrap_err();
        assert!(e.contains("addres"), "{e}");
        let e = parse(
            "rules = \"r\"\n[[port]]\nname = \"a\"\naddress = [\"10.0.0.1/24\"]\n[[route]]\nto = \"1.0.0.0/8\"\nvia = \"9.9.9.9\"\n",
        )
        .unwrap()
        .routed
        .unwrap()
        .router()
        .unwrap_err();
        assert!(e.contains("mac"), "{e}");
    }

    #[test]
    fn conntrack_table() {
        let base = "rules = \"r\"\n[[bridge]]\nports = [\"a\", \"b\"]\n";
        let c = parse(&format!(
            "{base}[conntrack]\nmax = 1000\ntcp_loose = false\n[conntrack.timeouts]\nudp_timeout = 5\ntcp_timeout_time_wait = 1\n"
        ))
        .unwrap();
        let ct = &c.dataplane.conntrack;
        assert_eq!((ct.max, ct.tcp_loose), (1000, false));
        assert_eq!(ct.timeouts.udp, 5000);
        assert_eq!(ct.timeouts.tcp[7], 1000);
        let e = parse(&format!("{base}[conntrack.timeouts]\nudp = 5\n")).unwrap_err();
        assert!(
            e.contains("unknown timeout `udp'") && e.contains("udp_timeout_stream"),
            "{e}"
        );
        let e = parse(&format!("{base}[conntrack]\nmaxx = 5\n")).unwrap_err();
        assert!(e.contains("maxx"), "{e}");
        let e = parse(&format!(
            "{base}[conntrack.timeouts]\nicmp_timeout = 4000000\n"
        ))
        .unwrap_err();
        assert!(e.contains("longer than"), "{e}");
    }
}
