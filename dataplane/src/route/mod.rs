//! The routing decision: its own step between PREROUTING and the FORWARD/INPUT hooks, as in
//! netfilter.
//!
//! - **Bridge mode** ([`decide`]) decides by the destination MAC: the box's own (the TAP's)
//!   means INPUT, anything else is FORWARD out of the paired port, unchanged.
//! - **Routed mode** ([`Router`], DESIGN.md §9) decides after PREROUTING (so after DNAT) by a
//!   longest-prefix match of the destination in the [`fib`]: the ports' addresses and their
//!   subnets' broadcasts are the box's (INPUT), each port's subnet is on-link, static routes
//!   go via a gateway. The [`neigh`]bour cache (ARP, [`arp`]) resolves the next hop when the
//!   packet leaves; the pipeline (`pipeline/routed.rs`) does the TTL, the ICMP errors and the
//!   MAC rewrite.

pub mod arp;
pub mod fib;
pub mod mirror;
pub mod neigh;
pub mod shared;

use crate::pipeline::Topology;

/// Where a packet goes after PREROUTING.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Through FORWARD and POSTROUTING, out of port `egress`.
    Forward { egress: usize },
    /// To the box itself: INPUT, then the TAP.
    Local,
    /// A broadcast or multicast frame: FORWARD out of `egress`, and a copy through INPUT to
    /// the box (what a bridge with a local port does).
    Both { egress: usize },
}

/// Bridge mode's decision for a frame received on `ingress` with destination MAC `dst_mac`
/// (ARP frames take it too, before any hook). A routed mode will also read the destination
/// address here.
#[inline]
pub fn decide(topo: &Topology, ingress: usize, dst_mac: &[u8]) -> Route {
    let egress = topo.ports.get(ingress).map_or(ingress, |p| p.peer);
    match topo.local_mac {
        Some(m) if dst_mac == m => Route::Local,
        Some(_) if dst_mac.first().is_some_and(|b| b & 1 != 0) => Route::Both { egress },
        _ => Route::Forward { egress },
    }
}

/// A routed port's address (`ip addr`'s `A/len`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IfAddr {
    pub addr: u32,
    pub len: u8,
}

impl IfAddr {
    /// `a.b.c.d/len`.
    pub const fn new(octets: [u8; 4], len: u8) -> IfAddr {
        IfAddr {
            addr: u32::from_be_bytes(octets),
            len,
        }
    }

    /// Whether `ip` is on this address's subnet (`inet_ifa_match`).
    pub fn matches(&self, ip: u32) -> bool {
        (ip ^ self.addr) & fib::mask(self.len) == 0
    }
}

/// A port of routed mode (DESIGN.md §9 `[[port]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoutedPort {
    pub mac: [u8; 6],
    /// The first is the primary.
    pub addrs: Vec<IfAddr>,
    pub mtu: u16,
}

/// A static route (`[[route]]`): `to` via a gateway, or on-link out of `port`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    pub to: IfAddr,
    pub via: Option<u32>,
    pub port: Option<usize>,
}

/// What the forwarding table says about a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hop {
    /// No route (`RTN_UNREACHABLE`: ICMP net unreachable).
    Unreachable,
    /// One of the box's addresses (`RTN_LOCAL`).
    Local,
    /// A subnet's or the limited broadcast (`RTN_BROADCAST`): delivered to the box.
    Broadcast,
    /// Out of `port`, to `gateway` (0: on-link, the destination itself).
    Forward { port: u8, gateway: u32 },
}

/// A routed configuration that cannot work.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("route to {to}: gateway {via} is on no port's subnet")]
    GatewayOffLink { to: String, via: String },
    #[error("route to {0}: an on-link route needs `port`")]
    OnLinkWithoutPort(String),
    #[error("more than 255 routed ports")]
    TooManyPorts,
    #[error(transparent)]
    Fib(#[from] fib::FibError),
}

/// Routed mode's tables: the ports' addresses, the FIB and the static neighbours.
#[derive(Debug)]
pub struct Router {
    pub ports: Vec<RoutedPort>,
    fib: fib::Fib,
    hops: Vec<Hop>,
    /// (port, address, MAC) of `[[neighbor]]`.
    pub neighbors: Vec<(u8, u32, [u8; 6])>,
}

fn dotted(a: u32, len: u8) -> String {
    format!("{}/{len}", std::net::Ipv4Addr::from(a))
}

impl Router {
    /// The tables of these ports, routes and static neighbours (a neighbour's port: the one
    /// whose subnet holds it, else the first). As the kernel's local table does, each address
    /// is local, its subnet's broadcast address is a broadcast, and its subnet is on-link.
    pub fn build(
        ports: Vec<RoutedPort>,
        routes: &[StaticRoute],
        neighbors: &[(u32, [u8; 6])],
    ) -> Result<Router, RouteError> {
        if ports.len() > 255 {
            return Err(RouteError::TooManyPorts);
        }
        let mut hops = vec![Hop::Unreachable, Hop::Local, Hop::Broadcast];
        let mut prefixes = Vec::new();
        let hop_of = |h: Hop, hops: &mut Vec<Hop>| -> u32 {
            match hops.iter().position(|x| *x == h) {
                Some(i) => i as u32,
                None => {
                    hops.push(h);
                    (hops.len() - 1) as u32
                }
            }
        };
        let on_subnet = |ip: u32| {
            ports
                .iter()
                .position(|p| p.addrs.iter().any(|a| a.matches(ip)))
        };
        for r in routes {
            let to = dotted(r.to.addr, r.to.len);
            let port = match (r.port, r.via) {
                (Some(p), _) => p,
                (None, Some(v)) => on_subnet(v).ok_or_else(|| RouteError::GatewayOffLink {
                    to: to.clone(),
                    via: std::net::Ipv4Addr::from(v).to_string(),
                })?,
                (None, None) => return Err(RouteError::OnLinkWithoutPort(to)),
            };
            let h = hop_of(
                Hop::Forward {
                    port: port as u8,
                    gateway: r.via.unwrap_or(0),
                },
                &mut hops,
            );
            prefixes.push(fib::Prefix {
                addr: r.to.addr,
                len: r.to.len,
                hop: h,
            });
        }
        // The connected and local routes last: of equal prefixes the later wins, and the
        // kernel's local table is consulted before the main one.
        for (pi, p) in ports.iter().enumerate() {
            for a in &p.addrs {
                let h = hop_of(
                    Hop::Forward {
                        port: pi as u8,
                        gateway: 0,
                    },
                    &mut hops,
                );
                prefixes.push(fib::Prefix {
                    addr: a.addr,
                    len: a.len,
                    hop: h,
                });
            }
        }
        for p in &ports {
            for a in &p.addrs {
                if a.len < 31 {
                    prefixes.push(fib::Prefix {
                        addr: a.addr | !fib::mask(a.len),
                        len: 32,
                        hop: 2,
                    });
                }
                prefixes.push(fib::Prefix {
                    addr: a.addr,
                    len: 32,
                    hop: 1,
                });
            }
        }
        prefixes.push(fib::Prefix {
            addr: u32::MAX,
            len: 32,
            hop: 2,
        });
        let neighbors = neighbors
            .iter()
            .map(|&(ip, mac)| (on_subnet(ip).unwrap_or(0) as u8, ip, mac))
            .collect();
        Ok(Router {
            fib: fib::Fib::build(&prefixes)?,
            hops,
            ports,
            neighbors,
        })
    }

    /// The route of `dst`.
    #[inline]
    pub fn lookup(&self, dst: u32) -> Hop {
        self.hops
            .get(self.fib.lookup(dst) as usize)
            .copied()
            .unwrap_or(Hop::Unreachable)
    }

    /// Whether `ip` is one of the box's addresses.
    pub fn is_local(&self, ip: u32) -> bool {
        self.lookup(ip) == Hop::Local
    }

    /// `inet_select_addr(port, toward, RT_SCOPE_UNIVERSE)`: the port's first primary address
    /// on `toward`'s subnet, else its first primary address (secondaries: a later address on
    /// the subnet of an earlier one).
    pub fn select_addr(&self, port: usize, toward: u32) -> Option<u32> {
        let addrs = &self.ports.get(port)?.addrs;
        let primary = |i: usize| {
            !addrs[..i]
                .iter()
                .any(|p| p.matches(addrs[i].addr) && p.len == addrs[i].len)
        };
        let mut first = None;
        for (i, a) in addrs.iter().enumerate() {
            if !primary(i) {
                continue;
            }
            if toward == 0 || a.matches(toward) {
                return Some(a.addr);
            }
            first.get_or_insert(a.addr);
        }
        first
    }

    /// The port's primary address.
    pub fn primary(&self, port: usize) -> Option<u32> {
        self.ports.get(port)?.addrs.first().map(|a| a.addr)
    }
}
