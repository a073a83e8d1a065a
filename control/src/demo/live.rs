//! The demo on the AF_XDP dataplane (root): builds the [`Topology`], starts the dataplane
//! in-process on a thread that entered the firewall namespace (its workers inherit it), runs
//! echo servers in the server namespace and the client's traffic from threads in the client
//! namespace, then stops everything and removes what it made.
//!
//! pollwall runs in routed mode (ports 10.1.0.1 and 10.2.0.1, no static neighbours) with the
//! gateway ruleset (MASQUERADE out of `pwf1`, `:2222` forwarded to the LAN client's `:22`).
//! Traffic: a 1 MiB TCP echo on :80, a connect to :23 (refused by pollwall's RST), UDP echoes on
//! :53, a datagram to :161 (refused by pollwall's ICMP port unreachable), an unsolicited datagram
//! from the server (FORWARD's policy), the port forward from the uplink, then a UDP blast to :53
//! for the packet rate: forwarded frames (the dataplane's own counter) over the blast's duration.
//! Every wait is bounded; SIGINT/SIGTERM stop the run between steps and still clean up.

use super::topology::{join, spawn_in, tool, Topology, CLIENT_IP, SERVER_IP, UPLINK_IP};
use super::topology::{FW_CLIENT_MAC, FW_SERVER_MAC};
use super::topology::{FW_CLIENT_SIDE, FW_SERVER_SIDE};
use super::{pps, Outcome, Step};
use crate::daemon::{drain_logs, stats_lines};
use classifier::compile::CompiledRuleset;
use classifier::{LogTarget, RuleId};
use dataplane::runtime::DataplaneConfig;
use dataplane::stats::{Counter, StatsShard};
use dataplane::worker::{IdlePolicy, WorkerExit};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Why the live run did not produce an outcome.
pub enum Failure {
    /// The topology or the dataplane could not be set up (the in-memory run can stand in).
    Setup(String),
    /// Something failed once traffic was running.
    Run(String),
}

const LIMIT: Duration = Duration::from_secs(60);
const TCP_BYTES: usize = 1 << 20;

/// The dataplane, running on its own thread inside the firewall namespace.
struct Dataplane {
    stop: Option<mpsc::Sender<()>>,
    handle: Option<JoinHandle<Result<Result<Finished, String>, String>>>,
    stats: Vec<Arc<StatsShard>>,
    notes: Vec<String>,
}

struct Finished {
    exits: Vec<WorkerExit>,
    logs: Vec<String>,
}

type Ready = Result<(Vec<Arc<StatsShard>>, Vec<String>), String>;

impl Dataplane {
    fn start(
        ns: &str,
        cfg: DataplaneConfig,
        rules: Arc<CompiledRuleset>,
        targets: HashMap<RuleId, LogTarget>,
    ) -> Result<Dataplane, String> {
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let handle = spawn_in(ns, "dataplane", move || {
            let mut running = match dataplane::runtime::start(&cfg, rules) {
                Ok(r) => r,
                Err(e) => {
                    let _ = ready_tx.send(Err(e.clone()));
                    return Err(e);
                }
            };
            let _ = ready_tx.send(Ok((running.stats.clone(), running.notes.clone())));
            let mut out = Vec::new();
            let deadline = Instant::now() + LIMIT;
            loop {
                drain_logs(&mut running.logs, &targets, &mut out);
                match stop_rx.recv_timeout(Duration::from_millis(10)) {
                    Err(mpsc::RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                    _ => break,
                }
            }
            let mut logs = std::mem::take(&mut running.logs);
            let exits = running.stop();
            drain_logs(&mut logs, &targets, &mut out);
            let logs = String::from_utf8_lossy(&out)
                .lines()
                .map(str::to_string)
                .collect();
            Ok(Finished { exits, logs })
        })?;
        let mut dp = Dataplane {
            stop: Some(stop_tx),
            handle: Some(handle),
            stats: Vec::new(),
            notes: Vec::new(),
        };
        match ready_rx.recv_timeout(Duration::from_secs(20)) {
            Ok(Ok((stats, notes))) => {
                dp.stats = stats;
                dp.notes = notes;
                Ok(dp)
            }
            Ok(Err(e)) => Err(e),
            // The thread ended before starting anything (setns failed): its error says why.
            Err(_) => match dp.finish() {
                Err(e) => Err(e),
                Ok(_) => Err("the dataplane did not start".into()),
            },
        }
    }

    fn counter(&self, c: Counter) -> u64 {
        self.stats.iter().map(|s| s.get(c)).sum()
    }

    /// Stops the workers (clean shutdown); their exits and the LOG lines written.
    fn finish(&mut self) -> Result<Finished, String> {
        self.stop.take();
        match self.handle.take() {
            Some(h) => join(h, "dataplane")?,
            None => Err("the dataplane was already stopped".into()),
        }
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        if self.handle.is_some() {
            let _ = self.finish();
        }
    }
}

/// The echo servers in the server namespace: TCP :80 and UDP :53 (echoing while `echo_udp`).
struct Servers {
    stop: Arc<AtomicBool>,
    echo_udp: Arc<AtomicBool>,
    udp_received: Arc<AtomicU64>,
    handles: Vec<JoinHandle<Result<(), String>>>,
}

impl Servers {
    fn start(ns: &str) -> Result<Servers, String> {
        let mut s = Servers {
            stop: Arc::new(AtomicBool::new(false)),
            echo_udp: Arc::new(AtomicBool::new(true)),
            udp_received: Arc::new(AtomicU64::new(0)),
            handles: Vec::new(),
        };
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), String>>();
        let (stop, tx) = (Arc::clone(&s.stop), ready_tx.clone());
        s.handles.push(spawn_in(ns, "tcp-server", move || {
            let l = TcpListener::bind((SERVER_IP, 80))
                .and_then(|l| l.set_nonblocking(true).map(|()| l))
                .map_err(|e| format!("server: TCP {SERVER_IP}:80: {e}"));
            let _ = tx.send(l.as_ref().map(|_| ()).map_err(Clone::clone));
            if let Ok(l) = l {
                tcp_server(&l, &stop);
            }
        })?);
        let (stop, echo, count) = (
            Arc::clone(&s.stop),
            Arc::clone(&s.echo_udp),
            Arc::clone(&s.udp_received),
        );
        s.handles.push(spawn_in(ns, "udp-server", move || {
            let u = UdpSocket::bind((SERVER_IP, 53))
                .and_then(|u| {
                    u.set_read_timeout(Some(Duration::from_millis(20)))
                        .map(|()| u)
                })
                .map_err(|e| format!("server: UDP {SERVER_IP}:53: {e}"));
            let _ = ready_tx.send(u.as_ref().map(|_| ()).map_err(Clone::clone));
            if let Ok(u) = u {
                udp_server(&u, &stop, &echo, &count);
            }
        })?);
        for _ in 0..2 {
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .map_err(|_| "the servers did not start".to_string())??;
        }
        Ok(s)
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn tcp_server(l: &TcpListener, stop: &AtomicBool) {
    let start = Instant::now();
    let mut conns = Vec::new();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < LIMIT {
        match l.accept() {
            Ok((c, _)) => conns.push(std::thread::spawn(move || echo_conn(c))),
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for c in conns {
        let _ = c.join();
    }
}

fn echo_conn(mut c: TcpStream) {
    let timeouts = c
        .set_nonblocking(false)
        .and_then(|()| c.set_read_timeout(Some(Duration::from_secs(3))))
        .and_then(|()| c.set_write_timeout(Some(Duration::from_secs(3))));
    if timeouts.is_err() {
        return;
    }
    let mut b = vec![0u8; 65536];
    while let Ok(n) = c.read(&mut b) {
        if n == 0 || c.write_all(&b[..n]).is_err() {
            break;
        }
    }
}

fn udp_server(u: &UdpSocket, stop: &AtomicBool, echo: &AtomicBool, count: &AtomicU64) {
    let start = Instant::now();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) && start.elapsed() < LIMIT {
        if let Ok((n, from)) = u.recv_from(&mut buf) {
            count.fetch_add(1, Ordering::Relaxed);
            if echo.load(Ordering::Relaxed) {
                let _ = u.send_to(&buf[..n], from);
            }
        }
    }
}

fn server_addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 2, 0, 2], port))
}

/// The gateway's two routed ports: `pwf0` the LAN's gateway, `pwf1` the uplink (MASQUERADE's
/// address), no static routes or neighbours (ARP resolves them).
fn gateway_ports() -> Result<dataplane::runtime::RoutedPorts, String> {
    use dataplane::route::IfAddr;
    dataplane::runtime::RoutedPorts::connected(
        &[
            (
                FW_CLIENT_SIDE,
                FW_CLIENT_MAC,
                IfAddr::new([10, 1, 0, 1], 24),
            ),
            (
                FW_SERVER_SIDE,
                FW_SERVER_MAC,
                IfAddr::new([10, 2, 0, 1], 24),
            ),
        ],
        &[],
    )
}

/// The peer the LAN server saw, or why none came.
type PeerSeen = Result<SocketAddr, String>;

const SSH_BANNER: &str = "SSH-2.0-pollwall-demo\r\n";

/// A one-connection "ssh" server on the LAN client's :22: sends a banner; returns the peer it saw.
fn lan_banner(ns: &str) -> Result<JoinHandle<Result<PeerSeen, String>>, String> {
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let h = spawn_in(ns, "lan-ssh", move || {
        let l = TcpListener::bind((CLIENT_IP, 22)).map_err(|e| format!("LAN :22: {e}"))?;
        l.set_nonblocking(true).map_err(|e| e.to_string())?;
        let _ = ready_tx.send(());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok((mut c, from)) = l.accept() {
                let _ = c.write_all(SSH_BANNER.as_bytes());
                return Ok(from);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Err("no connection reached the LAN's :22".to_string())
    })?;
    let _ = ready_rx.recv_timeout(Duration::from_secs(5));
    Ok(h)
}

/// From the uplink side: connects to the gateway's :2222 and reads the banner line.
fn read_forwarded_banner() -> Result<String, String> {
    let to = SocketAddr::from(([10, 2, 0, 1], 2222));
    let mut c = TcpStream::connect_timeout(&to, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut b = [0u8; 64];
    while !got.ends_with(b"\n") {
        match c.read(&mut b) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&got).trim_end().to_string())
}

/// Sends `len` bytes to the server's :80 and reads them back; the time it took.
fn tcp_echo(len: usize) -> Result<Duration, String> {
    let start = Instant::now();
    let c = TcpStream::connect_timeout(&server_addr(80), Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(5)))
        .and_then(|()| c.set_write_timeout(Some(Duration::from_secs(5))))
        .map_err(|e| format!("socket options: {e}"))?;
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let mut w = c.try_clone().map_err(|e| format!("socket: {e}"))?;
    let d = data.clone();
    let writer = std::thread::spawn(move || {
        let r = w.write_all(&d);
        let _ = w.shutdown(Shutdown::Write);
        r
    });
    let mut got = Vec::with_capacity(len);
    let read = (&c).read_to_end(&mut got);
    let wrote = writer
        .join()
        .map_err(|_| "the writer panicked".to_string())?;
    wrote.map_err(|e| format!("write: {e}"))?;
    read.map_err(|e| format!("read: {e}"))?;
    if got != data {
        return Err(format!("{} bytes came back of {len}", got.len()));
    }
    Ok(start.elapsed())
}

/// UDP request/response pairs to :53; how many answers came back.
fn udp_echoes(n: usize) -> Result<usize, String> {
    let u = UdpSocket::bind((CLIENT_IP, 0)).map_err(|e| format!("bind: {e}"))?;
    u.set_read_timeout(Some(Duration::from_millis(300)))
        .map_err(|e| format!("socket options: {e}"))?;
    let mut ok = 0;
    let mut buf = [0u8; 64];
    for i in 0..n {
        let msg = format!("pollwall demo {i}");
        u.send_to(msg.as_bytes(), server_addr(53))
            .map_err(|e| format!("send: {e}"))?;
        if let Ok((len, _)) = u.recv_from(&mut buf) {
            ok += usize::from(&buf[..len] == msg.as_bytes());
        }
    }
    Ok(ok)
}

/// One datagram to a connected socket on `port`; the error a read then reports.
fn udp_refused(port: u16) -> Result<std::io::Result<usize>, String> {
    let u = UdpSocket::bind((CLIENT_IP, 0)).map_err(|e| format!("bind: {e}"))?;
    u.connect(server_addr(port))
        .and_then(|()| u.set_read_timeout(Some(Duration::from_secs(1))))
        .map_err(|e| format!("socket: {e}"))?;
    u.send(b"pollwall demo").map_err(|e| format!("send: {e}"))?;
    Ok(u.recv(&mut [0u8; 64]))
}

/// Sends 18-byte datagrams (60-byte frames) to :53 for `dur`; how many `send` accepted.
fn udp_blast(dur: Duration, stop: &AtomicBool) -> Result<u64, String> {
    let u = UdpSocket::bind((CLIENT_IP, 0)).map_err(|e| format!("bind: {e}"))?;
    u.connect(server_addr(53))
        .map_err(|e| format!("connect: {e}"))?;
    let payload = [0u8; 18];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < dur && !stop.load(Ordering::Relaxed) {
        for _ in 0..256 {
            sent += u64::from(u.send(&payload).is_ok());
        }
    }
    Ok(sent)
}

fn check_interrupt(flag: &AtomicBool) -> Result<(), Failure> {
    if flag.load(Ordering::Relaxed) {
        Err(Failure::Run("interrupted".into()))
    } else {
        Ok(())
    }
}

/// Runs `f` on a thread in the client namespace.
fn client<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Failure> {
    let h = spawn_in(ns, "client", f).map_err(Failure::Run)?;
    join(h, "client").map_err(Failure::Run)
}

/// Why this machine cannot run the live demo, if it cannot (checked before building anything).
pub fn unavailable() -> Option<String> {
    // SAFETY: geteuid has no arguments and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for t in ["ip", "ethtool", "sh"] {
        if let Err(e) = tool(t) {
            return Some(e);
        }
    }
    // SAFETY: plain socket(2); the descriptor is closed at once.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Some(format!(
            "no AF_XDP sockets here ({})",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    None
}

/// Runs the live demo with a `blast`-long rate measurement.
pub fn run(
    rules: Arc<CompiledRuleset>,
    targets: &HashMap<RuleId, LogTarget>,
    blast: Duration,
    interrupted: &Arc<AtomicBool>,
) -> Result<Outcome, Failure> {
    let tag = format!("pwdemo{}", std::process::id());
    // Dropped last (declared first): the namespaces outlive the servers and the dataplane.
    let topo = Topology::build(&tag).map_err(Failure::Setup)?;
    let cfg = DataplaneConfig {
        routed: Some(gateway_ports().map_err(Failure::Setup)?),
        cores: vec![None],
        frames_per_worker: 2048,
        idle: IdlePolicy::Adaptive { idle_spins: 2000 },
        ..DataplaneConfig::default()
    };
    let servers = Servers::start(topo.server.name()).map_err(Failure::Setup)?;
    let mut dp = Dataplane::start(topo.fw.name(), cfg, rules, targets.clone())
        .map_err(|e| Failure::Setup(format!("cannot start the AF_XDP dataplane: {e}")))?;
    let mut notes = vec![format!(
        "topology: {} (LAN client {CLIENT_IP} on pwc0) — pwf0 10.1.0.1 [pollwall, a routed NAT gateway, in {}] {UPLINK_IP} pwf1 — {} (server {SERVER_IP} on pws0)",
        topo.client.name(),
        topo.fw.name(),
        topo.server.name()
    )];
    notes.extend(dp.notes.iter().map(|n| format!("dataplane: {n}")));
    let cns = topo.client.name().to_string();
    let mut steps = Vec::new();

    check_interrupt(interrupted)?;
    let r = client(&cns, || tcp_echo(TCP_BYTES))?;
    steps.push(match r {
        Ok(d) => Step::new(
            true,
            format!("TCP :80   echo 1 MiB ok ({} ms)", d.as_millis()),
        ),
        Err(e) => Step::new(false, format!("TCP :80   echo 1 MiB FAILED: {e}")),
    });

    check_interrupt(interrupted)?;
    let r = client(&cns, || {
        TcpStream::connect_timeout(&server_addr(23), Duration::from_secs(1)).map(drop)
    })?;
    steps.push(match r {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Step::new(true, "TCP :23   refused (RST from pollwall)".into())
        }
        Err(e) => Step::new(false, format!("TCP :23   expected a refusal, got: {e}")),
        Ok(()) => Step::new(
            false,
            "TCP :23   connected: the REJECT rule did not fire".into(),
        ),
    });

    check_interrupt(interrupted)?;
    let n = 20;
    let r = client(&cns, move || udp_echoes(n))?;
    steps.push(match r {
        Ok(got) => Step::new(got == n, format!("UDP :53   echo {got}/{n} answered")),
        Err(e) => Step::new(false, format!("UDP :53   echo FAILED: {e}")),
    });

    check_interrupt(interrupted)?;
    let r = client(&cns, || udp_refused(161))?;
    steps.push(match r {
        Ok(Err(e)) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Step::new(
            true,
            "UDP :161  refused (ICMP port unreachable from pollwall)".into(),
        ),
        Ok(Err(e)) => Step::new(false, format!("UDP :161  expected a refusal, got: {e}")),
        Ok(Ok(_)) => Step::new(
            false,
            "UDP :161  answered: the REJECT rule did not fire".into(),
        ),
        Err(e) => Step::new(false, format!("UDP :161  FAILED: {e}")),
    });

    // Server → client from a port no allowed service uses: FORWARD's policy drops it.
    check_interrupt(interrupted)?;
    let sock = client(&cns, || {
        UdpSocket::bind((CLIENT_IP, 5000))
            .and_then(|u| {
                u.set_read_timeout(Some(Duration::from_millis(300)))
                    .map(|()| u)
            })
            .map_err(|e| format!("client: UDP {CLIENT_IP}:5000: {e}"))
    })?
    .map_err(Failure::Run)?;
    let h = spawn_in(topo.server.name(), "server-send", || {
        UdpSocket::bind((SERVER_IP, 5000))
            .and_then(|u| u.send_to(b"unsolicited", (CLIENT_IP, 5000)))
            .map_err(|e| format!("server: send from :5000: {e}"))
    })
    .map_err(Failure::Run)?;
    join(h, "server-send")
        .and_then(|r| r)
        .map_err(Failure::Run)?;
    let got = sock.recv_from(&mut [0u8; 64]);
    steps.push(Step::new(
        got.is_err(),
        match got {
            Err(_) => "UDP from the server's :5000 to the client: dropped (FORWARD policy), nothing arrived".into(),
            Ok(_) => "UDP from the server's :5000 to the client: ARRIVED, the policy did not drop it".into(),
        },
    ));

    // The port forward: from the uplink to the gateway's :2222, DNAT to the LAN's ssh.
    check_interrupt(interrupted)?;
    let banner = lan_banner(topo.client.name()).map_err(Failure::Run)?;
    let r = join(
        spawn_in(topo.server.name(), "forward-client", read_forwarded_banner)
            .map_err(Failure::Run)?,
        "forward-client",
    )
    .map_err(Failure::Run)?;
    let served = join(banner, "lan-ssh").map_err(Failure::Run)?;
    steps.push(match (r, served) {
        (Ok(b), Ok(from)) if b == SSH_BANNER.trim_end() => Step::new(
            true,
            format!("TCP {UPLINK_IP}:2222 from the uplink: forwarded to {CLIENT_IP}:22 (DNAT), which saw {from} and answered {b:?}"),
        ),
        (r, s) => Step::new(false, format!("TCP {UPLINK_IP}:2222 port forward FAILED: {r:?} / {s:?}")),
    });

    // The rate: one direction only (the server counts, does not echo).
    check_interrupt(interrupted)?;
    servers.echo_udp.store(false, Ordering::Relaxed);
    let (rx0, fwd0, srv0) = (
        dp.counter(Counter::RxPackets),
        dp.counter(Counter::Forwarded),
        servers.udp_received.load(Ordering::Relaxed),
    );
    let t0 = Instant::now();
    let flag = Arc::clone(interrupted);
    let sent = client(&cns, move || udp_blast(blast, &flag))?.map_err(Failure::Run)?;
    check_interrupt(interrupted)?;
    // Frames still in the rings when the client stops are forwarded within a few ms.
    std::thread::sleep(Duration::from_millis(20));
    let secs = t0.elapsed().as_secs_f64();
    let (rx, fwd, srv) = (
        dp.counter(Counter::RxPackets) - rx0,
        dp.counter(Counter::Forwarded) - fwd0,
        servers.udp_received.load(Ordering::Relaxed) - srv0,
    );
    steps.push(Step::new(
        fwd > 0,
        format!(
            "UDP :53   blast for {secs:.1} s: the client sent {sent} datagrams, pollwall received {rx} and forwarded {fwd}, the server got {srv}"
        ),
    ));
    let rate = vec![
        format!(
            "packet rate: pollwall forwarded {fwd} frames in {secs:.2} s = {}",
            pps(fwd as f64 / secs)
        ),
        "  60-byte UDP :53 frames from one client thread (std UdpSocket), one worker, AF_XDP in copy".into(),
        format!(
            "  mode on veth; client, server, veth softirqs and the worker share this machine's {} CPU(s),",
            std::thread::available_parallelism().map_or(1, |n| n.get())
        ),
        "  so this is the whole rig's rate, not the dataplane's ceiling (`pw-gen` measures that)".into(),
        format!(
            "  {} of the client's datagrams never reached pollwall (the kernel drops below); {} forwarded",
            sent.saturating_sub(rx),
            fwd.saturating_sub(srv)
        ),
        "  ones were lost after it, between the server's veth and its UDP socket".into(),
    ];

    let fin = dp.finish().map_err(Failure::Run)?;
    drop(servers);
    let mut accounting = Vec::new();
    let mut states = Vec::new();
    for e in fin.exits {
        let (r, k) = (e.report, e.kernel);
        accounting.push(format!(
            "frame accounting: worker {}: {}/{} frames accounted (free {}, in fill rings {}, in TX {}), lost {}",
            e.index, r.frames - r.lost, r.frames, r.free, r.in_fill, r.in_tx, r.lost
        ));
        accounting.push(format!(
            "kernel drops: worker {}: rx_dropped {} rx_ring_full {} fill_ring_empty {} tx_invalid {}",
            e.index, k.rx_dropped, k.rx_ring_full, k.rx_fill_ring_empty_descs, k.tx_invalid_descs
        ));
        if r.lost != 0 {
            steps.push(Step::new(
                false,
                format!("worker {} lost {} frames", e.index, r.lost),
            ));
        }
        states.push(e.pipeline.into_state());
    }
    let counters = stats_lines(&dp.stats);
    let cleanup = Some(topo.remove());
    Ok(Outcome {
        notes,
        steps,
        logs: fin.logs,
        states,
        rate,
        accounting,
        counters,
        cleanup,
    })
}
