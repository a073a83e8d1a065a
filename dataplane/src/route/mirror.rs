//! `routes = "kernel"`: the routed ports' tables mirrored from their TAP twins over rtnetlink
//! (the `rtnetlink` crate), as VPP's linux-cp does, so that `ip addr`, `ip route`, `ip neigh`, a
//! DHCP client or a routing daemon configure the box unchanged.
//!
//! A thread of its own (a current-thread tokio runtime; nothing here touches a packet) listens
//! to the address, route, neighbour and link groups; after any message it dumps the twins'
//! IPv4 addresses, the main table's unicast routes out of a twin, and the twins' permanent
//! neighbours, and publishes a new [`Router`] through [`SharedRouter`] when they differ from
//! the last ones. Connected and local routes come from the addresses ([`Router::build`]), as
//! the kernel's do; a route of another type (blackhole, prohibit...) or out of another device
//! is not mirrored, and a multipath route takes its first next hop through a twin. Dynamic host
//! neighbours are not copied: the dataplane resolves its own next hops (and learns from the ARP
//! it sees), as the host does.

use super::shared::SharedRouter;
use super::{IfAddr, RoutedPort, Router, StaticRoute};
use futures::{StreamExt, TryStreamExt};
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteType};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkUnspec, MulticastGroup, RouteMessageBuilder};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the mirror failed at.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("rtnetlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("rtnetlink socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("twin {0}: {1}")]
    Twin(String, String),
}

/// The routed ports and their twins.
#[derive(Clone, Debug)]
pub struct Twins {
    /// Port `i`'s twin's interface index.
    pub ifindex: Vec<u32>,
    /// Port `i`'s twin's name (for messages).
    pub names: Vec<String>,
    /// Port `i`'s MAC and MTU (its addresses are the twin's).
    pub ports: Vec<RoutedPort>,
}

/// What the host's tables said, in the form [`Router::build`] takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Mirrored {
    addrs: Vec<Vec<IfAddr>>,
    routes: Vec<StaticRoute>,
    neighbors: Vec<(u8, u32, [u8; 6])>,
}

fn runtime() -> Result<tokio::runtime::Runtime, MirrorError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?)
}

fn connect() -> Result<Handle, MirrorError> {
    let (conn, handle, _) = rtnetlink::new_connection()?;
    tokio::spawn(conn);
    Ok(handle)
}

/// Brings each twin up with its port's MAC and MTU, and gives it `addrs[i]` (the configured
/// addresses; one it already has is kept).
pub fn prepare(twins: &Twins, addrs: &[Vec<IfAddr>]) -> Result<(), MirrorError> {
    runtime()?.block_on(async {
        let handle = connect()?;
        for (i, &index) in twins.ifindex.iter().enumerate() {
            let name = || twins.names[i].clone();
            let p = &twins.ports[i];
            let set = LinkUnspec::new_with_index(index)
                .address(p.mac.to_vec())
                .mtu(u32::from(p.mtu))
                .build();
            handle
                .link()
                .set(set)
                .execute()
                .await
                .map_err(|e| MirrorError::Twin(name(), format!("MAC and MTU: {e}")))?;
            let up = LinkUnspec::new_with_index(index).up().build();
            handle
                .link()
                .set(up)
                .execute()
                .await
                .map_err(|e| MirrorError::Twin(name(), format!("up: {e}")))?;
            for a in addrs.get(i).into_iter().flatten() {
                let ip = IpAddr::V4(Ipv4Addr::from(a.addr));
                match handle.address().add(index, ip, a.len).execute().await {
                    Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::EEXIST => {}
                    Err(e) => return Err(MirrorError::Twin(name(), format!("address {ip}: {e}"))),
                    Ok(()) => {}
                }
            }
        }
        Ok(())
    })
}

/// Starts the mirror: publishes into `shared` until `stop` is set (checked every 100 ms).
/// Failures after start are reported on stderr; the last good tables stay.
pub fn spawn(
    twins: Twins,
    shared: Arc<SharedRouter>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>, MirrorError> {
    let rt = runtime()?;
    Ok(std::thread::Builder::new()
        .name("pw-routes".into())
        .spawn(move || {
            if let Err(e) = rt.block_on(watch(&twins, &shared, &stop)) {
                eprintln!("pollwall: routes = \"kernel\": the mirror stopped: {e}; forwarding keeps the last tables");
            }
        })?)
}

async fn watch(twins: &Twins, shared: &SharedRouter, stop: &AtomicBool) -> Result<(), MirrorError> {
    let groups = [
        MulticastGroup::Ipv4Ifaddr,
        MulticastGroup::Ipv4Route,
        MulticastGroup::Neigh,
        MulticastGroup::Link,
    ];
    let (conn, _, mut events) = rtnetlink::new_multicast_connection(&groups)?;
    tokio::spawn(conn);
    let handle = connect()?;
    let mut last = None;
    // A full dump now and then too, in case a burst overflowed the event socket.
    let mut since_dump = Duration::ZERO;
    let tick = Duration::from_millis(100);
    let mut dirty = true;
    while !stop.load(Ordering::Relaxed) {
        if dirty || since_dump >= Duration::from_secs(10) {
            dirty = false;
            since_dump = Duration::ZERO;
            let now = dump(&handle, twins).await?;
            if last.as_ref() != Some(&now) {
                match build(twins, &now) {
                    Ok(r) => shared.publish(r),
                    Err(e) => eprintln!("pollwall: routes = \"kernel\": tables not taken: {e}"),
                }
                last = Some(now);
            }
        }
        match tokio::time::timeout(tick, events.next()).await {
            Ok(Some(_)) => {
                // Take the rest of a burst before dumping once.
                while let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(5), events.next()).await
                {
                }
                dirty = true;
            }
            Ok(None) => return Err(MirrorError::Twin("*".into(), "event socket closed".into())),
            Err(_) => since_dump += tick,
        }
    }
    Ok(())
}

fn build(twins: &Twins, m: &Mirrored) -> Result<Router, super::RouteError> {
    let ports = twins
        .ports
        .iter()
        .zip(&m.addrs)
        .map(|(p, a)| RoutedPort {
            addrs: a.clone(),
            ..p.clone()
        })
        .collect();
    let mut r = Router::build(ports, &m.routes, &[])?;
    r.neighbors = m.neighbors.clone();
    Ok(r)
}

fn v4(a: &RouteAddress) -> Option<u32> {
    match a {
        RouteAddress::Inet(ip) => Some(u32::from(*ip)),
        _ => None,
    }
}

async fn dump(handle: &Handle, twins: &Twins) -> Result<Mirrored, MirrorError> {
    let port_of = |index: u32| twins.ifindex.iter().position(|&x| x == index);
    let mut m = Mirrored {
        addrs: vec![Vec::new(); twins.ifindex.len()],
        ..Mirrored::default()
    };
    let mut addrs = handle.address().get().execute();
    while let Some(a) = addrs.try_next().await? {
        let Some(p) = port_of(a.header.index) else {
            continue;
        };
        if a.header.family != AddressFamily::Inet {
            continue;
        }
        let local = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        let address = a.attributes.iter().find_map(|x| match x {
            AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
            _ => None,
        });
        if let Some(ip) = local.or(address) {
            m.addrs[p].push(IfAddr {
                addr: u32::from(ip),
                len: a.header.prefix_len,
            });
        }
    }
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    while let Some(r) = routes.try_next().await? {
        let table = r
            .attributes
            .iter()
            .find_map(|x| match x {
                RouteAttribute::Table(t) => Some(*t),
                _ => None,
            })
            .unwrap_or(u32::from(r.header.table));
        if table != u32::from(RouteHeader::RT_TABLE_MAIN)
            || r.header.kind != RouteType::Unicast
            || r.header.address_family != AddressFamily::Inet
        {
            continue;
        }
        let dst = r.attributes.iter().find_map(|x| match x {
            RouteAttribute::Destination(a) => v4(a),
            _ => None,
        });
        let mut hop = r.attributes.iter().find_map(|x| match x {
            RouteAttribute::Oif(i) => port_of(*i).map(|p| {
                let gw = r.attributes.iter().find_map(|y| match y {
                    RouteAttribute::Gateway(g) => v4(g),
                    _ => None,
                });
                (p, gw)
            }),
            _ => None,
        });
        if hop.is_none() {
            hop = r.attributes.iter().find_map(|x| match x {
                RouteAttribute::MultiPath(hops) => hops.iter().find_map(|h| {
                    let p = port_of(h.interface_index)?;
                    let gw = h.attributes.iter().find_map(|y| match y {
                        RouteAttribute::Gateway(g) => v4(g),
                        _ => None,
                    });
                    Some((p, gw))
                }),
                _ => None,
            });
        }
        let Some((port, via)) = hop else {
            continue;
        };
        m.routes.push(StaticRoute {
            to: IfAddr {
                addr: dst.unwrap_or(0),
                len: r.header.destination_prefix_length,
            },
            via,
            port: Some(port),
        });
    }
    let mut neigh = handle
        .neighbours()
        .get()
        .set_address_family(AddressFamily::Inet)
        .execute();
    while let Some(n) = neigh.try_next().await? {
        let Some(p) = port_of(n.header.ifindex) else {
            continue;
        };
        if !matches!(
            n.header.state,
            NeighbourState::Permanent | NeighbourState::Noarp
        ) {
            continue;
        }
        let ip = n.attributes.iter().find_map(|x| match x {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(ip.to_bits()),
            _ => None,
        });
        let mac = n.attributes.iter().find_map(|x| match x {
            NeighbourAttribute::LinkLayerAddress(l) => <[u8; 6]>::try_from(l.as_slice()).ok(),
            _ => None,
        });
        if let (Some(ip), Some(mac)) = (ip, mac) {
            m.neighbors.push((p as u8, ip, mac));
        }
    }
    Ok(m)
}
