//! Routed mode's part of the configuration (DESIGN.md §9, a contract): `[[port]]` (name, MAC,
//! addresses, MTU), `[[route]]` (to, via, port) and `[[neighbor]]` (ip, mac), and the
//! top-level `routes = "static" | "kernel"`. Parsed here into [`RoutedSpec`], turned into the
//! dataplane's [`Router`] once the port order is known.
//!
//! ```toml
//! [[port]]
//! name = "ina"
//! mac = "02:00:00:00:f0:0a"       # optional for the daemon (read from the device); needed by replay
//! address = ["10.255.1.1/24"]     # the first is the primary (MASQUERADE's source)
//! mtu = 1500                      # optional
//! twin = "pw-ina"                 # routes = "kernel": the TAP twin's name (this is the default)
//!
//! [[route]]
//! to = "0.0.0.0/0"
//! via = "10.255.2.2"              # omitted: on-link (then `port` is needed)
//! port = "outb"                   # optional when `via` is on a port's subnet
//!
//! [[neighbor]]                    # a static ARP entry (never expires)
//! ip = "10.255.2.2"
//! mac = "02:00:00:00:0b:99"
//! ```

use dataplane::route::{IfAddr, RoutedPort, Router, StaticRoute};
use serde::Deserialize;
use std::net::Ipv4Addr;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPort {
    name: String,
    mac: Option<String>,
    #[serde(default)]
    address: Vec<String>,
    mtu: Option<u16>,
    twin: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRoute {
    to: String,
    via: Option<String>,
    port: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawNeighbor {
    ip: String,
    mac: String,
}

/// One routed port as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub addrs: Vec<IfAddr>,
    /// None: the device's (the daemon), 1500 (the replay).
    pub mtu: Option<u16>,
    /// `routes = "kernel"`: the TAP twin's name (`twin`, default `pw-` and the port's name).
    pub twin: String,
}

/// The routed mode of a configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoutedSpec {
    pub ports: Vec<PortSpec>,
    /// (to, via, port name).
    pub routes: Vec<(IfAddr, Option<u32>, Option<String>)>,
    pub neighbors: Vec<(u32, [u8; 6])>,
    /// `routes = "kernel"`: mirror the TAP twins' addresses, routes and neighbours.
    pub kernel_routes: bool,
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    let mut mac = [0u8; 6];
    if parts.len() != 6 {
        return Err(format!("`{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"));
    }
    for (m, p) in mac.iter_mut().zip(parts) {
        *m = u8::from_str_radix(p, 16)
            .ok()
            .filter(|_| !p.is_empty() && p.len() <= 2)
            .ok_or_else(|| format!("`{s}' is not a MAC address (aa:bb:cc:dd:ee:ff)"))?;
    }
    Ok(mac)
}

fn parse_ip(s: &str) -> Result<u32, String> {
    s.parse::<Ipv4Addr>()
        .map(u32::from)
        .map_err(|_| format!("`{s}' is not an IPv4 address"))
}

/// `A.B.C.D/len` (a bare address is a /32).
pub fn parse_prefix(s: &str) -> Result<IfAddr, String> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (
            a,
            l.parse::<u8>()
                .ok()
                .filter(|&l| l <= 32)
                .ok_or_else(|| format!("`{s}': prefix length must be 0 to 32"))?,
        ),
        None => (s, 32),
    };
    Ok(IfAddr {
        addr: parse_ip(a)?,
        len,
    })
}

pub(crate) fn parse(
    ports: Vec<RawPort>,
    routes: Vec<RawRoute>,
    neighbors: Vec<RawNeighbor>,
    mode: Option<&str>,
) -> Result<Option<RoutedSpec>, String> {
    let kernel_routes = match mode {
        None | Some("static") => false,
        Some("kernel") => true,
        Some(x) => return Err(format!("routes: `{x}' is not \"static\" or \"kernel\"")),
    };
    if ports.is_empty() {
        if !routes.is_empty() || !neighbors.is_empty() {
            return Err("[[route]] and [[neighbor]] need routed ports ([[port]])".into());
        }
        return Ok(None);
    }
    if kernel_routes && (!routes.is_empty() || !neighbors.is_empty()) {
        return Err(
            "routes = \"kernel\" takes the routes and neighbours from the TAP twins \
                    (ip route, ip neigh on them): drop the [[route]] and [[neighbor]] tables"
                .into(),
        );
    }
    let mut spec = RoutedSpec {
        kernel_routes,
        ..RoutedSpec::default()
    };
    for p in ports {
        let ctx = |e: String| format!("port {}: {e}", p.name);
        if spec.ports.iter().any(|q| q.name == p.name) {
            return Err(format!("port {} is configured twice", p.name));
        }
        let addrs = p
            .address
            .iter()
            .map(|a| parse_prefix(a))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ctx)?;
        if let Some(mtu) = p.mtu.filter(|&m| m < 68) {
            return Err(ctx(format!("mtu {mtu} is below IPv4's minimum of 68")));
        }
        let twin = p.twin.clone().unwrap_or_else(|| format!("pw-{}", p.name));
        if twin.is_empty() || twin.len() > 15 || twin.contains(['/', ' ']) {
            return Err(ctx(format!(
                "twin `{twin}' is not an interface name (1 to 15 bytes, no `/' or space): set `twin'"
            )));
        }
        if twin == p.name || spec.ports.iter().any(|q| q.twin == twin) {
            return Err(ctx(format!("twin `{twin}' is already used")));
        }
        spec.ports.push(PortSpec {
            mac: p.mac.as_deref().map(parse_mac).transpose().map_err(ctx)?,
            name: p.name,
            addrs,
            mtu: p.mtu,
            twin,
        });
    }
    for r in routes {
        let to = parse_prefix(&r.to).map_err(|e| format!("route: {e}"))?;
        let via = r.via.as_deref().map(parse_ip).transpose()?;
        if let Some(p) = &r.port {
            if !spec.ports.iter().any(|q| &q.name == p) {
                return Err(format!("route to {}: port {p} is not a [[port]]", r.to));
            }
        }
        spec.routes.push((to, via, r.port));
    }
    for n in neighbors {
        spec.neighbors.push((
            parse_ip(&n.ip)?,
            parse_mac(&n.mac).map_err(|e| format!("neighbor {}: {e}", n.ip))?,
        ));
    }
    Ok(Some(spec))
}

impl RoutedSpec {
    /// The spec with each port's missing MAC and MTU read from its device (the daemon's ports
    /// exist; the replay's do not).
    pub fn with_devices(&self) -> Result<RoutedSpec, String> {
        let mut spec = self.clone();
        for p in &mut spec.ports {
            if p.mac.is_none() {
                p.mac = Some(
                    dataplane::netdev::hw_addr(&p.name)
                        .map_err(|e| format!("port {}: cannot read its MAC: {e}", p.name))?,
                );
            }
            if p.mtu.is_none() {
                p.mtu = dataplane::netdev::mtu(&p.name)
                    .ok()
                    .and_then(|m| u16::try_from(m).ok());
            }
        }
        Ok(spec)
    }

    /// The dataplane's routed ports: names and router.
    pub fn dataplane_ports(&self) -> Result<dataplane::runtime::RoutedPorts, String> {
        Ok(dataplane::runtime::RoutedPorts {
            names: self.ports.iter().map(|p| p.name.clone()).collect(),
            router: std::sync::Arc::new(self.router()?),
            twins: if self.kernel_routes {
                self.ports.iter().map(|p| p.twin.clone()).collect()
            } else {
                Vec::new()
            },
        })
    }

    /// The dataplane's tables, ports in configuration order (every port must have its MAC).
    pub fn router(&self) -> Result<Router, String> {
        let ports = self
            .ports
            .iter()
            .map(|p| {
                Ok(RoutedPort {
                    mac: p
                        .mac
                        .ok_or_else(|| format!("port {}: `mac` is needed here", p.name))?,
                    addrs: p.addrs.clone(),
                    mtu: p.mtu.unwrap_or(1500),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let routes: Vec<StaticRoute> = self
            .routes
            .iter()
            .map(|(to, via, port)| StaticRoute {
                to: *to,
                via: *via,
                port: port
                    .as_ref()
                    .and_then(|n| self.ports.iter().position(|p| &p.name == n)),
            })
            .collect();
        Router::build(ports, &routes, &self.neighbors).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_prefixes() {
        assert_eq!(parse_mac("02:00:00:00:f0:0a"), Ok([2, 0, 0, 0, 0xf0, 0x0a]));
        assert!(parse_mac("02:00:00:00:f0").is_err());
        assert!(parse_mac("02:00:00:00:f0:0g").is_err());
        assert_eq!(
            parse_prefix("10.1.0.0/16"),
            Ok(IfAddr {
                addr: 0x0a01_0000,
                len: 16
            })
        );
        assert_eq!(parse_prefix("10.1.0.1").unwrap().len, 32);
        assert!(parse_prefix("10.1.0.0/33").is_err());
    }

    fn port(name: &str, twin: Option<&str>) -> RawPort {
        RawPort {
            name: name.into(),
            mac: None,
            address: vec!["10.1.0.1/24".into()],
            mtu: None,
            twin: twin.map(String::from),
        }
    }

    #[test]
    fn kernel_routes_name_the_twins_and_refuse_static_tables() {
        let spec = parse(
            vec![port("eth1", None), port("eth2", Some("up0"))],
            vec![],
            vec![],
            Some("kernel"),
        )
        .unwrap()
        .unwrap();
        assert!(spec.kernel_routes);
        assert_eq!(spec.ports[0].twin, "pw-eth1");
        assert_eq!(spec.ports[1].twin, "up0");
        let route = RawRoute {
            to: "0.0.0.0/0".into(),
            via: Some("10.1.0.254".into()),
            port: None,
        };
        let e = parse(
            vec![port("eth1", None)],
            vec![route],
            vec![],
            Some("kernel"),
        )
        .unwrap_err();
        assert!(e.contains("ip route"), "{e}");
        let e = parse(
            vec![port("enp129s0f0np01", None)],
            vec![],
            vec![],
            Some("kernel"),
        )
        .unwrap_err();
        assert!(e.contains("set `twin'"), "{e}");
        let e = parse(
            vec![port("eth1", Some("x")), port("eth2", Some("x"))],
            vec![],
            vec![],
            Some("kernel"),
        )
        .unwrap_err();
        assert!(e.contains("already used"), "{e}");
    }
}
