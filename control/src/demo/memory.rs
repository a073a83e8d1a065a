//! The demo on the in-memory backend (no root, no NIC): the same pipeline the AF_XDP workers
//! run, fed with crafted frames through [`MemIo`], with port 0 named `pwf0` (the client side)
//! and port 1 `pwf1` (the server side) so the ruleset's `-i`/`-o` matches mean what they mean
//! on the live topology. Each step sends what the live run's client or server would put on the
//! wire and checks what came out of which port; then a timed blast of UDP :53 frames measures
//! the pipeline's own rate (one thread, frames copied into a heap arena, TX a counting sink).

use super::frames::{self, CLIENT, PSH_ACK, RST, SERVER, SYN, SYN_ACK};
use super::{Outcome, Step};
use crate::daemon::{drain_logs, stats_lines};
use classifier::compile::{CompiledRuleset, WorkerState};
use classifier::packet::IfName;
use classifier::{LogTarget, RuleId};
use dataplane::log::LogRecord;
use dataplane::mem::MemIo;
use dataplane::pipeline::{Pipeline, Port, Sinks, Topology, BATCH};
use dataplane::stats::{Counter, StatsShard};
use dataplane::worker::now_ns;
use dataplane::xsk::XdpDesc;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const PORT_CLIENT: usize = 0;
pub const PORT_SERVER: usize = 1;
const FRAMES: u32 = 256;
const FRAME_SIZE: u32 = 2048;

/// A pipeline between two in-memory ports.
pub struct Mem {
    io: MemIo,
    p: Pipeline,
    stats: Arc<StatsShard>,
    log_rx: rtrb::Consumer<LogRecord>,
}

/// What left the pipeline for one burst, per port.
pub struct Sent {
    pub to_client: Vec<Vec<u8>>,
    pub to_server: Vec<Vec<u8>>,
}

/// A timed blast's numbers.
pub struct Blast {
    pub offered: u64,
    pub forwarded: u64,
    pub elapsed: Duration,
}

impl Mem {
    pub fn new(rules: Arc<CompiledRuleset>) -> Result<Mem, String> {
        let port = |name: &str, peer| {
            IfName::new(name)
                .map(|name| Port { name, peer })
                .ok_or_else(|| format!("bad interface name {name}"))
        };
        let topo = Arc::new(Topology {
            ports: vec![port("pwf0", PORT_SERVER)?, port("pwf1", PORT_CLIENT)?],
            local_mac: None,
            router: None,
            router_updates: None,
        });
        let stats = Arc::new(StatsShard::default());
        let (log_tx, log_rx) = rtrb::RingBuffer::new(256);
        let sinks = Sinks {
            log: Some(log_tx),
            ..Sinks::none()
        };
        let p = Pipeline::new(rules, topo, Arc::clone(&stats), sinks, None);
        Ok(Mem {
            io: MemIo::new(FRAMES, FRAME_SIZE, 2, true),
            p,
            stats,
            log_rx,
        })
    }

    /// Receives `frames` on `port` as one burst; returns what was sent out of each port.
    pub fn send(&mut self, port: usize, frames: &[Vec<u8>]) -> Result<Sent, String> {
        let mut descs = Vec::with_capacity(frames.len());
        for f in frames.iter().take(BATCH) {
            descs.push(
                self.io
                    .inject(f)
                    .ok_or("in-memory backend: no free frame")?,
            );
        }
        self.p.rx_burst(&mut self.io, port, &descs, now_ns());
        Ok(Sent {
            to_client: self.io.take_sent(PORT_CLIENT),
            to_server: self.io.take_sent(PORT_SERVER),
        })
    }

    /// Receives copies of `frame` on the client port in full bursts for `dur`, with a counting
    /// (non-capturing) backend.
    pub fn blast(&mut self, frame: &[u8], dur: Duration) -> Result<Blast, String> {
        let frames = 2 * BATCH as u32;
        let mut io = MemIo::new(frames, FRAME_SIZE, 2, false);
        let before = self.stats.get(Counter::Forwarded);
        let mut descs = [XdpDesc::default(); BATCH];
        let mut offered = 0u64;
        let start = Instant::now();
        while start.elapsed() < dur {
            for _ in 0..16 {
                for d in descs.iter_mut() {
                    *d = io.inject(frame).ok_or("in-memory backend: no free frame")?;
                }
                self.p.rx_burst(&mut io, PORT_CLIENT, &descs, now_ns());
                offered += BATCH as u64;
            }
        }
        let elapsed = start.elapsed();
        if io.free_frames() != frames as usize {
            return Err(format!(
                "in-memory backend: {} of {frames} frames not returned",
                frames as usize - io.free_frames()
            ));
        }
        Ok(Blast {
            offered,
            forwarded: self.stats.get(Counter::Forwarded) - before,
            elapsed,
        })
    }

    /// The LOG lines of the records waiting (kernel format).
    pub fn log_lines(&mut self, targets: &HashMap<RuleId, LogTarget>) -> Vec<String> {
        let mut out = Vec::new();
        drain_logs(std::slice::from_mut(&mut self.log_rx), targets, &mut out);
        String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[cfg(test)]
    pub fn stats(&self) -> &StatsShard {
        &self.stats
    }

    /// Frames on the free list (all of them when nothing is in flight).
    pub fn free_frames(&self) -> usize {
        self.io.free_frames()
    }

    /// The pipeline's connection tracker.
    #[cfg(test)]
    pub fn tracker(&self) -> Option<&classifier::conntrack::Tracker> {
        self.p.tracker()
    }

    pub fn into_state(self) -> WorkerState {
        self.p.into_state()
    }
}

/// Runs the scenario and a `blast`-long rate measurement.
pub fn run(
    rules: Arc<CompiledRuleset>,
    targets: &HashMap<RuleId, LogTarget>,
    blast: Duration,
) -> Result<Outcome, String> {
    let mut m = Mem::new(rules)?;
    let mut steps = Vec::new();

    // TCP :80: a handshake and data both ways; the replies pass as ESTABLISHED.
    let data: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    let (c, s) = (0x1000_0000u32, 0x7000_0000u32);
    let ports = (40000, 80);
    let back = (80, 40000);
    let syn = frames::tcp_seq(CLIENT, SERVER, ports, SYN, (c, 0), &[]);
    let syn_ack = frames::tcp_seq(SERVER, CLIENT, back, SYN_ACK, (s, c + 1), &[]);
    let c_data = frames::tcp_seq(CLIENT, SERVER, ports, PSH_ACK, (c + 1, s + 1), &data);
    let s_data = frames::tcp_seq(SERVER, CLIENT, back, PSH_ACK, (s + 1, c + 1001), &data);
    let mut forwarded = 0;
    let mut ok = true;
    for (port, f) in [
        (PORT_CLIENT, &syn),
        (PORT_SERVER, &syn_ack),
        (PORT_CLIENT, &c_data),
        (PORT_SERVER, &s_data),
    ] {
        let r = m.send(port, std::slice::from_ref(f))?;
        let out = if port == PORT_CLIENT {
            (&r.to_server, &r.to_client)
        } else {
            (&r.to_client, &r.to_server)
        };
        ok &= out.0.as_slice() == std::slice::from_ref(f) && out.1.is_empty();
        forwarded += out.0.len();
    }
    steps.push(Step::new(
        ok,
        format!(
            "TCP :80   SYN, SYN-ACK, 1000 bytes and their echo: {forwarded}/4 frames forwarded unchanged"
        ),
    ));

    // TCP :23: LOG (limited), then REJECT with a reset from the server's address.
    let syn23 = frames::tcp(CLIENT, SERVER, 40001, 23, SYN, &[]);
    let r = m.send(PORT_CLIENT, &[syn23])?;
    let rst = r.to_client.first();
    let ok = r.to_server.is_empty()
        && r.to_client.len() == 1
        && rst
            .and_then(|f| frames::tcp_flags(f))
            .is_some_and(|f| f & RST != 0)
        && rst.and_then(|f| frames::src_ip(f)) == Some(SERVER);
    steps.push(Step::new(
        ok,
        format!(
            "TCP :23   SYN rejected: pollwall sent a TCP RST (from {}) back out of pwf0",
            frames::dotted(SERVER)
        ),
    ));

    // UDP :53 query and its reply.
    let q = [frames::udp(CLIENT, SERVER, 40002, 53, b"query")];
    let rep = [frames::udp(SERVER, CLIENT, 53, 40002, b"answer")];
    let a = m.send(PORT_CLIENT, &q)?;
    let b = m.send(PORT_SERVER, &rep)?;
    let ok = a.to_server == q && b.to_client == rep;
    steps.push(Step::new(
        ok,
        format!(
            "UDP :53   query and reply: {}/2 frames forwarded unchanged",
            a.to_server.len() + b.to_client.len()
        ),
    ));

    // UDP :161: REJECT with ICMP port unreachable.
    let r = m.send(
        PORT_CLIENT,
        &[frames::udp(CLIENT, SERVER, 40003, 161, b"get")],
    )?;
    let ok = r.to_server.is_empty()
        && r.to_client.len() == 1
        && r.to_client.first().and_then(|f| frames::icmp_type_code(f)) == Some((3, 3));
    steps.push(Step::new(
        ok,
        "UDP :161  rejected: pollwall sent ICMP port unreachable back out of pwf0".into(),
    ));

    // Server → client from a port that is no allowed service's: the FORWARD policy drops it.
    let r = m.send(
        PORT_SERVER,
        &[frames::tcp(SERVER, CLIENT, 8080, 40004, SYN, &[])],
    )?;
    steps.push(Step::new(
        r.to_server.is_empty() && r.to_client.is_empty(),
        "TCP from server port 8080 to the client: dropped (FORWARD policy), nothing sent".into(),
    ));

    // A DNS "reply" nobody asked for: NEW from the server side, the FORWARD policy drops it
    // (a stateless ACL allowing replies by source port would have let it in).
    let r = m.send(
        PORT_SERVER,
        &[frames::udp(SERVER, CLIENT, 53, 40009, b"unasked")],
    )?;
    steps.push(Step::new(
        r.to_server.is_empty() && r.to_client.is_empty(),
        "UDP from server port 53 that answers no query: dropped (NEW from the server side)".into(),
    ));

    let logs = m.log_lines(targets);
    let free_after_steps = m.free_frames();

    let payload = [0u8; 18]; // 60-byte frames, the Ethernet minimum
    let frame = frames::udp(CLIENT, SERVER, 40005, 53, &payload);
    let b = m.blast(&frame, blast)?;
    let secs = b.elapsed.as_secs_f64().max(1e-9);
    let rate = vec![
        format!(
            "packet rate (in-memory pipeline, no NIC): {} forwarded in {secs:.2} s = {}",
            b.forwarded,
            super::pps(b.forwarded as f64 / secs)
        ),
        format!(
            "  {} UDP :53 frames of {} bytes offered in bursts of {BATCH} on one thread; each is copied into",
            b.offered,
            frame.len()
        ),
        "  a heap arena, parsed, tracked (one connection), classified (FORWARD: 3 rules, to-server: 2)".into(),
        "  and handed to a TX sink that".into(),
        "  only counts: an upper bound for one worker, not a network measurement".into(),
    ];
    let accounting = vec![format!(
        "frame accounting: {free_after_steps}/{FRAMES} frames back on the free list after the steps, \
         {}/{} after the blast, lost {}",
        2 * BATCH,
        2 * BATCH,
        FRAMES as usize - free_after_steps
    )];
    let counters = stats_lines(&[Arc::clone(&m.stats)]);
    Ok(Outcome {
        notes: vec![format!(
            "in-memory backend: ports pwf0 (client side) and pwf1 (server side), {FRAMES} frames of {FRAME_SIZE} B"
        )],
        steps,
        logs,
        states: vec![m.into_state()],
        rate,
        accounting,
        counters,
        cleanup: None,
    })
}
