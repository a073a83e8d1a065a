//! Starting and stopping the AF_XDP dataplane: ports and their XDP programs, one UMEM and socket
//! set per worker, workers pinned to their cores, and a clean stop (XSKMAP slots cleared, RX
//! drained, TX completed, frames accounted, programs detached when the links close).
//!
//! Start-up order per port (nothing reaches a half-built socket): XSKMAP → program (map fd
//! baked in) → UMEMs, sockets, binds, fill rings → XSKMAP slots → link (attach) last.

use crate::afpacket::PacketIo;
use crate::afxdp::{UmemLayout, XdpIo};
use crate::bpf::{self, Link, Program, XskMap};
use crate::io::PortIo;
use crate::log::LogRecord;
use crate::netdev::{self, ifindex, rx_queues};
use crate::pipeline::{Handoff, Pipeline, Port, QueuedFrame, Sinks, Steering, Topology};
use crate::route::shared::SharedRouter;
use crate::route::{IfAddr, RoutedPort, Router};
use crate::stats::StatsShard;
use crate::tap::Tap;
use crate::worker::{IdlePolicy, Worker, WorkerExit};
use crate::xsk::{RingSizes, ZeroCopy};
use classifier::compile::{CompiledRuleset, CounterShard};
use classifier::packet::IfName;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// How XDP programs are attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver mode, generic mode when the driver has none (with a warning).
    Auto,
    Driver,
    Generic,
}

/// Everything the dataplane needs to start.
#[derive(Clone, Debug)]
pub struct DataplaneConfig {
    /// Bridged port pairs.
    pub bridges: Vec<(String, String)>,
    /// One worker per entry, pinned to that core (None: not pinned).
    pub cores: Vec<Option<usize>>,
    pub frames_per_worker: u32,
    pub frame_size: u32,
    /// RX/fill and TX/completion ring sizes per socket (0: derived from the frames).
    pub rx_ring: u32,
    pub tx_ring: u32,
    pub idle: IdlePolicy,
    pub zero_copy: ZeroCopy,
    pub attach: AttachMode,
    /// The exception path's TAP interface.
    pub tap: Option<String>,
    pub log_ring: usize,
    pub queue_ring: usize,
    /// Steer every flow to one worker (symmetric hash, SPSC handoff) when there are several.
    pub steering: bool,
    pub backend: Backend,
    /// Connection tracking settings (used while the ruleset needs tracking).
    pub conntrack: classifier::conntrack::CtConfig,
    /// Routed mode (instead of `bridges`): the ports by name, in the router's order.
    pub routed: Option<RoutedPorts>,
}

/// Routed mode's ports: their names and the router (addresses, FIB, static neighbours) whose
/// port `i` is `names[i]`.
#[derive(Clone, Debug)]
pub struct RoutedPorts {
    pub names: Vec<String>,
    pub router: Arc<Router>,
    /// `routes = "kernel"`: port `i`'s TAP twin is `twins[i]`, and the tables are mirrored
    /// from the twins (`router` is the start: the ports' MACs and MTUs, the configured
    /// addresses, which the twins are given). Empty: static tables.
    pub twins: Vec<String>,
}

/// The host's TAPs the workers use: the exception path's and the routed ports' twins.
#[derive(Clone, Default)]
struct HostTaps {
    tap: Option<Arc<Tap>>,
    twins: Vec<Arc<Tap>>,
}

impl HostTaps {
    /// What worker `w` reads: worker 0 takes every TAP.
    fn read_by(&self, w: usize) -> Vec<(Arc<Tap>, Option<usize>)> {
        if w != 0 {
            return Vec::new();
        }
        let twins = self
            .twins
            .iter()
            .enumerate()
            .map(|(i, t)| (Arc::clone(t), Some(i)));
        self.tap
            .iter()
            .map(|t| (Arc::clone(t), None))
            .chain(twins)
            .collect()
    }
}

/// `routes = "kernel"`: the twins, open, and the mirror's inputs.
struct KernelRoutes {
    taps: Vec<Arc<Tap>>,
    twins: crate::route::mirror::Twins,
    shared: Arc<SharedRouter>,
}

/// Opens each routed port's TAP twin and readies it (the port's MAC, MTU and configured
/// addresses, up).
fn open_twins(r: &RoutedPorts) -> Result<KernelRoutes, String> {
    if r.twins.len() != r.names.len() {
        return Err("routes = \"kernel\": every routed port needs its TAP twin".into());
    }
    if r.names.len() >= usize::from(crate::steer::FROM_TWIN) {
        return Err("routes = \"kernel\": at most 127 routed ports".into());
    }
    let mut taps = Vec::new();
    let mut ifindex = Vec::new();
    for (n, port) in r.twins.iter().zip(&r.names) {
        let tap = Tap::open(n).map_err(|e| format!("TAP twin {n} of {port}: {e}"))?;
        ifindex.push(netdev::ifindex(n).map_err(|e| format!("TAP twin {n}: {e}"))?);
        taps.push(Arc::new(tap));
    }
    let twins = crate::route::mirror::Twins {
        ifindex,
        names: r.twins.clone(),
        ports: r.router.ports.clone(),
    };
    let addrs: Vec<Vec<IfAddr>> = r.router.ports.iter().map(|p| p.addrs.clone()).collect();
    crate::route::mirror::prepare(&twins, &addrs).map_err(|e| e.to_string())?;
    Ok(KernelRoutes {
        taps,
        twins,
        shared: Arc::new(SharedRouter::new(Arc::clone(&r.router))),
    })
}

/// Which packet I/O the ports use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// AF_XDP, or AF_PACKET (with a warning) when AF_XDP or XDP is not available.
    Auto,
    AfXdp,
    AfPacket,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig {
            bridges: Vec::new(),
            cores: vec![None],
            frames_per_worker: 2048,
            frame_size: 2048,
            rx_ring: 0,
            tx_ring: 0,
            idle: IdlePolicy::Busy,
            zero_copy: ZeroCopy::Auto,
            attach: AttachMode::Auto,
            tap: None,
            log_ring: 4096,
            queue_ring: 1024,
            steering: true,
            backend: Backend::Auto,
            conntrack: Default::default(),
            routed: None,
        }
    }
}

struct PortSetup {
    name: String,
    ifindex: u32,
    queues: u32,
    map: Arc<XskMap>,
    prog: Program,
    link: Option<Link>,
}

/// A running dataplane.
pub struct Running {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<WorkerExit>>,
    ports: Vec<PortSetup>,
    /// One log ring per worker.
    pub logs: Vec<rtrb::Consumer<LogRecord>>,
    pub queues: Vec<rtrb::Consumer<QueuedFrame>>,
    pub stats: Vec<Arc<StatsShard>>,
    /// Each worker's rule and policy counters, readable while they run.
    pub counters: Vec<Arc<CounterShard>>,
    /// What start-up decided (modes, ring sizes), one line each, for the operator's log.
    pub notes: Vec<String>,
    /// `routes = "kernel"`: the rtnetlink mirror's thread and its stop flag.
    mirror: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Running {
    /// Stops the workers (clean shutdown) and detaches the programs; returns each worker's exit.
    pub fn stop(mut self) -> Vec<WorkerExit> {
        self.stop.store(true, Ordering::Relaxed);
        let mut exits: Vec<WorkerExit> = Vec::new();
        for h in self.workers.drain(..) {
            if let Ok(e) = h.join() {
                exits.push(e);
            }
        }
        for p in &mut self.ports {
            p.link = None;
        }
        if let Some((stop, h)) = self.mirror.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
        exits
    }
}

/// Raises RLIMIT_MEMLOCK's soft limit to the hard one; returns the soft limit in bytes (None:
/// unlimited).
fn memlock_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `r` is a live rlimit.
    unsafe {
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r);
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raised) == 0 {
                r.rlim_cur = r.rlim_max;
            }
        }
    }
    (r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

/// Ring sizes for `sockets` sockets sharing `frames` frames: the kernel may hold a full fill ring
/// and a full TX ring per socket, and the worker keeps two batches in hand.
pub fn ring_sizes(frames: u32, sockets: u32, rx: u32, tx: u32) -> Result<RingSizes, String> {
    let slack = 128;
    let (rx, tx) = if rx == 0 || tx == 0 {
        let per = frames.saturating_sub(slack) / sockets.max(1);
        // rx + rx/2 <= per, powers of two.
        let mut r = 2048u32;
        while r > 16 && r + r / 2 > per {
            r /= 2;
        }
        (r, (r / 2).max(16))
    } else {
        (rx, tx)
    };
    if !rx.is_power_of_two() || !tx.is_power_of_two() {
        return Err(format!(
            "ring sizes must be powers of two (rx_ring {rx}, tx_ring {tx})"
        ));
    }
    let need = sockets * (rx + tx) + slack;
    if need > frames {
        return Err(format!(
            "{sockets} sockets × (rx_ring {rx} + tx_ring {tx}) + {slack} = {need} frames, but a worker has {frames}: raise frames or lower the ring sizes"
        ));
    }
    Ok(RingSizes {
        rx,
        tx,
        fill: rx,
        comp: tx,
    })
}

impl RoutedPorts {
    /// Ports given as (name, MAC, address), each with the Ethernet MTU and only its connected
    /// route, and these static neighbours (address, MAC).
    pub fn connected(
        ports: &[(&str, [u8; 6], IfAddr)],
        neighbors: &[(u32, [u8; 6])],
    ) -> Result<RoutedPorts, String> {
        let routed = ports
            .iter()
            .map(|&(_, mac, addr)| RoutedPort {
                mac,
                addrs: vec![addr],
                mtu: 1500,
            })
            .collect();
        let router = Router::build(routed, &[], neighbors).map_err(|e| e.to_string())?;
        Ok(RoutedPorts {
            names: ports.iter().map(|p| p.0.to_string()).collect(),
            router: Arc::new(router),
            twins: Vec::new(),
        })
    }
}

/// Starts the dataplane on `rules`.
pub fn start(cfg: &DataplaneConfig, rules: Arc<CompiledRuleset>) -> Result<Running, String> {
    let mut notes = Vec::new();
    let (names, mut topo) = match &cfg.routed {
        Some(r) => routed_topology(r)?,
        None => bridge_topology(&cfg.bridges)?,
    };
    let tap = match &cfg.tap {
        Some(t) => {
            let tap = Tap::open(t).map_err(|e| format!("exception path: {e}"))?;
            topo.local_mac = Some(tap.mac());
            Some(Arc::new(tap))
        }
        None => None,
    };
    let kernel = match &cfg.routed {
        Some(r) if !r.twins.is_empty() => Some(open_twins(r)?),
        _ => None,
    };
    if let Some(k) = &kernel {
        topo.router_updates = Some(Arc::clone(&k.shared));
        notes.push(format!(
            "routes = \"kernel\": tables mirrored from the TAP twins {}",
            k.twins.names.join(", ")
        ));
    }
    let host = HostTaps {
        tap,
        twins: kernel.as_ref().map(|k| k.taps.clone()).unwrap_or_default(),
    };
    let topo = Arc::new(topo);

    let mut running = match cfg.backend {
        Backend::AfPacket => start_packet(cfg, rules, &names, topo, host, notes),
        Backend::AfXdp => start_xdp(cfg, rules, &names, topo, host, notes),
        Backend::Auto => match start_xdp(
            cfg,
            Arc::clone(&rules),
            &names,
            Arc::clone(&topo),
            host.clone(),
            notes.clone(),
        ) {
            Err(e) if e.starts_with(XDP_UNAVAILABLE) => {
                notes.push(format!("warning: {e}; falling back to AF_PACKET (slower: the kernel copies every frame and its stack still sees them)"));
                start_packet(cfg, rules, &names, topo, host, notes)
            }
            r => r,
        },
    }?;
    if let Some(k) = kernel {
        let stop = Arc::new(AtomicBool::new(false));
        let h = crate::route::mirror::spawn(k.twins, k.shared, Arc::clone(&stop))
            .map_err(|e| format!("routes = \"kernel\": {e}"))?;
        running.mirror = Some((stop, h));
    }
    Ok(running)
}

/// Bridge mode's ports, in the order they appear; each bridge pairs two of them.
fn bridge_topology(bridges: &[(String, String)]) -> Result<(Vec<String>, Topology), String> {
    if bridges.is_empty() {
        return Err("no ports configured (bridge = [\"A\", \"B\"])".into());
    }
    let mut names: Vec<String> = Vec::new();
    let mut peer: Vec<usize> = Vec::new();
    for (a, b) in bridges {
        if a == b || names.contains(a) || names.contains(b) {
            return Err(format!("port pairs must be disjoint ({a}, {b})"));
        }
        names.push(a.clone());
        names.push(b.clone());
        let i = names.len() - 2;
        peer.push(i + 1);
        peer.push(i);
    }
    let mut topo = Topology::default();
    for (n, &p) in names.iter().zip(&peer) {
        topo.ports.push(Port {
            name: if_name(n)?,
            peer: p,
        });
    }
    Ok((names, topo))
}

/// Routed mode's ports (each its own peer: the FIB chooses where a packet leaves).
fn routed_topology(r: &RoutedPorts) -> Result<(Vec<String>, Topology), String> {
    if r.names.is_empty() || r.names.len() != r.router.ports.len() {
        return Err("routed mode needs its ports ([[port]] with name and address)".into());
    }
    let mut topo = Topology {
        router: Some(Arc::clone(&r.router)),
        ..Topology::default()
    };
    for (i, n) in r.names.iter().enumerate() {
        if r.names[..i].contains(n) {
            return Err(format!("port {n} is configured twice"));
        }
        topo.ports.push(Port {
            name: if_name(n)?,
            peer: i,
        });
    }
    Ok((r.names.clone(), topo))
}

fn if_name(n: &str) -> Result<IfName, String> {
    IfName::new(n).ok_or_else(|| format!("interface name `{n}' is too long"))
}

/// Prefix of the errors after which `backend = "auto"` falls back to AF_PACKET.
const XDP_UNAVAILABLE: &str = "AF_XDP unavailable: ";

fn spawn<I: PortIo + Send + 'static>(
    wk: Worker<I>,
    core: Option<usize>,
    stop: &Arc<AtomicBool>,
) -> Result<JoinHandle<WorkerExit>, String> {
    let stop = Arc::clone(stop);
    std::thread::Builder::new()
        .name(format!("pw-worker-{}", wk.index))
        .spawn(move || {
            if let Some(c) = core {
                core_affinity::set_for_current(core_affinity::CoreId { id: c });
            }
            wk.run(&stop)
        })
        .map_err(|e| format!("cannot start a worker thread: {e}"))
}

/// What the control side keeps of each worker: its log and queue rings' consumer ends and its
/// counter shards.
#[derive(Default)]
struct Outlets {
    logs: Vec<rtrb::Consumer<LogRecord>>,
    queues: Vec<rtrb::Consumer<QueuedFrame>>,
    stats: Vec<Arc<StatsShard>>,
    counters: Vec<Arc<CounterShard>>,
}

impl Outlets {
    /// A worker's pipeline and its rings, counting into `shard` (the control ends kept here).
    fn pipeline(
        &mut self,
        cfg: &DataplaneConfig,
        rules: &Arc<CompiledRuleset>,
        topo: &Arc<Topology>,
        host: &HostTaps,
        shard: Arc<StatsShard>,
    ) -> Pipeline {
        let (log_tx, log_rx) = rtrb::RingBuffer::new(cfg.log_ring.max(1));
        let (q_tx, q_rx) = rtrb::RingBuffer::new(cfg.queue_ring.max(1));
        let sinks = Sinks {
            log: Some(log_tx),
            queue: Some(q_tx),
            ..Sinks::none()
        };
        let p = Pipeline::new(
            Arc::clone(rules),
            Arc::clone(topo),
            Arc::clone(&shard),
            sinks,
            host.tap.clone(),
        )
        .with_twins(host.twins.clone())
        .with_conntrack(cfg.conntrack.clone());
        self.logs.push(log_rx);
        self.queues.push(q_rx);
        self.stats.push(shard);
        self.counters.push(Arc::clone(&p.state().counters));
        p
    }

    fn running(
        self,
        stop: Arc<AtomicBool>,
        workers: Vec<JoinHandle<WorkerExit>>,
        ports: Vec<PortSetup>,
        notes: Vec<String>,
    ) -> Running {
        Running {
            stop,
            workers,
            ports,
            logs: self.logs,
            queues: self.queues,
            stats: self.stats,
            counters: self.counters,
            notes,
            mirror: None,
        }
    }
}

/// The AF_PACKET fallback: one worker, a packet socket per port.
fn start_packet(
    cfg: &DataplaneConfig,
    rules: Arc<CompiledRuleset>,
    names: &[String],
    topo: Arc<Topology>,
    host: HostTaps,
    mut notes: Vec<String>,
) -> Result<Running, String> {
    if cfg.cores.len() > 1 {
        notes.push(format!(
            "warning: AF_PACKET runs one worker; {} cores configured, using the first",
            cfg.cores.len()
        ));
    }
    let idx = names
        .iter()
        .map(|n| ifindex(n).map_err(|e| e.to_string()))
        .collect::<Result<Vec<_>, _>>()?;
    let io = PacketIo::open(&idx, cfg.frames_per_worker).map_err(|e| format!("AF_PACKET: {e}"))?;
    let mut outlets = Outlets::default();
    let pipeline = outlets.pipeline(cfg, &rules, &topo, &host, Arc::default());
    notes.push(format!(
        "worker 0: AF_PACKET on {} port(s), {} frames of 2048 B",
        names.len(),
        cfg.frames_per_worker
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let wk = Worker {
        index: 0,
        io,
        pipeline,
        nports: names.len(),
        maps: Vec::new(),
        queues: Vec::new(),
        taps: host.read_by(0),
        idle: cfg.idle,
        handoff_in: Vec::new(),
        iterations: 0,
    };
    let h = spawn(wk, cfg.cores.first().copied().flatten(), &stop)?;
    Ok(outlets.running(stop, vec![h], Vec::new(), notes))
}

/// SPSC rings between every pair of `n` workers (none unless `on`): `out[v][w]` sends from
/// worker v to worker w (None for w = v), `ins[w]` are worker w's receiving ends.
type Rings<T> = (
    Vec<Vec<Option<rtrb::Producer<T>>>>,
    Vec<Vec<rtrb::Consumer<T>>>,
);

fn rings<T>(n: usize, on: bool, size: usize) -> Rings<T> {
    let mut out: Vec<Vec<Option<rtrb::Producer<T>>>> =
        (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
    let mut ins: Vec<Vec<rtrb::Consumer<T>>> = (0..n).map(|_| Vec::new()).collect();
    if on {
        for (w, inw) in ins.iter_mut().enumerate() {
            for (v, outv) in out.iter_mut().enumerate() {
                if v != w {
                    let (p, c) = rtrb::RingBuffer::new(size);
                    outv[w] = Some(p);
                    inw.push(c);
                }
            }
        }
    }
    (out, ins)
}

/// The AF_XDP dataplane.
fn start_xdp(
    cfg: &DataplaneConfig,
    rules: Arc<CompiledRuleset>,
    names: &[String],
    topo: Arc<Topology>,
    host: HostTaps,
    mut notes: Vec<String>,
) -> Result<Running, String> {
    let nworkers = cfg.cores.len().max(1);
    // SAFETY: plain socket(2), closed at once: does this kernel have AF_XDP at all?
    let probe = unsafe {
        libc::socket(
            crate::xsk::sys::AF_XDP,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if probe < 0 {
        return Err(format!(
            "{XDP_UNAVAILABLE}socket(AF_XDP): {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `probe` is our own descriptor.
    unsafe { libc::close(probe) };
    // UMEM budget against RLIMIT_MEMLOCK (charged per user, shared by all its processes).
    let total = nworkers as u64 * u64::from(cfg.frames_per_worker) * u64::from(cfg.frame_size);
    if let Some(limit) = memlock_limit() {
        if total > limit {
            return Err(format!(
                "cannot register {} of packet buffers ({nworkers} worker(s) × {} frames × {} B): RLIMIT_MEMLOCK is {} for the whole user, shared with every other process of that user. Lower frames or the number of cores, or raise the limit (ulimit -l, systemd LimitMEMLOCK=)",
                mib(total), cfg.frames_per_worker, cfg.frame_size, mib(limit)
            ));
        }
    }

    let mut ports = Vec::new();
    for n in names {
        let ifindex = ifindex(n).map_err(|e| e.to_string())?;
        // Copy mode puts a frame 256 bytes into its chunk; a longer frame would be dropped by
        // the kernel (counted only in XDP_STATISTICS), so refuse to start instead.
        if let Ok(mtu) = netdev::mtu(n) {
            let room = cfg.frame_size - crate::xsk::sys::XDP_PACKET_HEADROOM as u32;
            if mtu + 14 + 8 > room {
                return Err(format!(
                    "{n}: MTU {mtu} does not fit AF_XDP frames of {} bytes ({room} after the kernel's headroom, with Ethernet and two VLAN tags): {}",
                    cfg.frame_size,
                    if cfg.frame_size < 4096 && mtu + 22 <= 4096 - 256 {
                        "set frame_size = 4096".to_string()
                    } else {
                        format!("lower the MTU to {} or less", 4096 - 256 - 22)
                    }
                ));
            }
        }
        let queues = rx_queues(n);
        let map = Arc::new(
            XskMap::new(&format!("pw_xsks_{}", n), queues).map_err(|e| format!("{n}: {e}"))?,
        );
        let prog =
            Program::redirect_to_xsk(&map, bpf::XDP_DROP).map_err(|e| format!("{n}: {e}"))?;
        ports.push(PortSetup {
            name: n.clone(),
            ifindex,
            queues,
            map,
            prog,
            link: None,
        });
    }
    let q = ports[0].queues;
    if let Some(p) = ports.iter().find(|p| p.queues != q) {
        return Err(format!(
            "every port needs the same number of RX queues ({} has {q}, {} has {})",
            ports[0].name, p.name, p.queues
        ));
    }
    if nworkers as u32 > q {
        return Err(format!(
            "{nworkers} workers but the ports have {q} RX queue(s): use at most {q} cores"
        ));
    }

    // Handoff rings (frames) and claim rings (DNAT replies' owners) between every pair.
    let steer = cfg.steering && nworkers > 1;
    let key = {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(nworkers as u64);
        h.finish()
    };
    let (producers, consumers) = rings::<Handoff>(nworkers, steer, 256);
    let (mut claims_out, mut claims_in) = rings::<crate::steer::Claim>(nworkers, steer, 4096);
    let mut producers = producers.into_iter();
    let mut consumers = consumers.into_iter();
    let stop = Arc::new(AtomicBool::new(false));
    let port_ids: Vec<(u32, String)> = ports.iter().map(|p| (p.ifindex, p.name.clone())).collect();
    let mut workers = Vec::new();
    let mut built = Vec::new();
    let mut outlets = Outlets::default();
    for w in 0..nworkers {
        let queues: Vec<u32> = (0..q).filter(|x| *x as usize % nworkers == w).collect();
        let sockets = (queues.len() * ports.len()) as u32;
        let rings = ring_sizes(cfg.frames_per_worker, sockets, cfg.rx_ring, cfg.tx_ring)?;
        let layout = UmemLayout {
            frames: cfg.frames_per_worker,
            frame_size: cfg.frame_size,
            rings,
        };
        let shard = Arc::new(StatsShard::default());
        let io = XdpIo::open(layout, &port_ids, &queues, cfg.zero_copy, Arc::clone(&shard))
            .map_err(|e| {
                if e.raw_os_error() == Some(libc::ENOBUFS) || e.to_string().contains("ENOBUFS") {
                    format!(
                        "worker {w}: {e}: the UMEMs of all processes of this user must fit in RLIMIT_MEMLOCK ({}); lower frames or cores",
                        memlock_limit().map_or("unlimited".into(), mib)
                    )
                } else {
                    format!("worker {w}: {e}")
                }
            })?;
        if w == 0 && steer {
            notes.push(format!(
                "flow steering on: every flow's two directions go to one of {nworkers} workers"
            ));
        }
        notes.push(format!(
            "worker {w}: queues {queues:?} on {} port(s), {} mode, UMEM {} frames × {} B, rx/fill {} tx/comp {}",
            ports.len(),
            if io.zero_copy() { "zero-copy" } else { "copy (driver has no zero-copy)" },
            layout.frames,
            layout.frame_size,
            rings.rx,
            rings.tx
        ));
        let mut pipeline = outlets.pipeline(cfg, &rules, &topo, &host, shard);
        let out = producers.next().unwrap_or_default();
        if steer {
            pipeline = pipeline.with_steering(Steering {
                worker: w,
                workers: nworkers,
                key,
                out,
                claims_out: std::mem::take(&mut claims_out[w]),
                claims_in: std::mem::take(&mut claims_in[w]),
            });
        }
        built.push(Worker {
            index: w,
            io,
            pipeline,
            nports: ports.len(),
            maps: ports.iter().map(|p| Arc::clone(&p.map)).collect(),
            queues,
            taps: host.read_by(w),
            idle: cfg.idle,
            handoff_in: consumers.next().unwrap_or_default(),
            iterations: 0,
        });
    }
    // Queue → socket slots, then attach.
    for wk in &built {
        for (si, s) in wk.io.socks.iter().enumerate() {
            let port = &ports[si % ports.len()];
            port.map
                .set(s.queue(), s.fd())
                .map_err(|e| format!("{}: {e}", port.name))?;
        }
    }
    for p in &mut ports {
        let link = match cfg.attach {
            AttachMode::Auto => Link::attach(&p.prog, p.ifindex, &p.name, true),
            AttachMode::Driver => Link::attach(&p.prog, p.ifindex, &p.name, false),
            AttachMode::Generic => Link::attach_generic(&p.prog, p.ifindex, &p.name),
        }
        .map_err(|e| format!("{XDP_UNAVAILABLE}{e}"))?;
        if link.mode == bpf::XdpMode::Generic && cfg.attach == AttachMode::Auto {
            notes.push(format!(
                "warning: {} has no native XDP: attached in generic (SKB) mode, slower",
                p.name
            ));
        }
        notes.push(format!(
            "{}: XDP attached in {} mode, {} RX queue(s)",
            p.name,
            link.mode.name(),
            p.queues
        ));
        p.link = Some(link);
    }
    for (wk, core) in built
        .into_iter()
        .zip(cfg.cores.iter().copied().chain(std::iter::repeat(None)))
    {
        workers.push(spawn(wk, core, &stop)?);
    }
    Ok(outlets.running(stop, workers, ports, notes))
}
