//! One worker's batch pipeline (DESIGN.md §1), independent of the packet I/O backend:
//! rx burst → parse every frame → steering → PREROUTING's raw table → connection tracking
//! ([`track`]) → the rest of PREROUTING and its DNAT ([`nat`]) → routing decision (bridge mode:
//! the box's own MAC → INPUT, else FORWARD; routed mode: the FIB, TTL and ICMP errors,
//! [`routed`]) → FORWARD or INPUT → POSTROUTING and its SNAT → confirmation → next-hop
//! resolution (routed) → TX staging, each hook's group classified as one batch. The box's own
//! frames (the TAP, and the routing step's ICMP errors) take OUTPUT's raw table → tracking →
//! the rest of OUTPUT → POSTROUTING.
//!
//! Frames move by descriptor: an accepted FORWARD frame is handed unchanged to the paired port,
//! a dropped one goes back to the free list; REJECT builds its reply in a free frame and sends it
//! out of the ingress port; LOG hits become fixed-size records on a bounded SPSC ring and QUEUE
//! frames are copied to another (a full ring drops and counts; the worker never waits). Nothing
//! here allocates, locks or makes a syscall per packet, except the exception path's TAP reads and
//! writes (frames for the box itself), as DPDK's TAP/KNI ports do.

use crate::fdb::Fdb;
use crate::io::FrameIo;
use crate::log::LogRecord;
pub use crate::queue::{QueuedFrame, Sinks};
use crate::reject::IcmpRateLimit;
use crate::route::{self, Route};
use crate::stats::{Counter, StatsShard};
pub use crate::steer::{flow_owner, Handoff, Steering, MAX_FRAME};
use crate::tap::Tap;
use crate::xsk::XdpDesc;
use classifier::compile::{BatchRecorder, CompiledRuleset, WorkerState};
use classifier::conntrack::{Outcome, Tracker};
use classifier::eval::{Stage, Verdict};
use classifier::packet::{Effects, Headers, IfName, PacketMeta};
use classifier::wire::headers::parse_ethernet;
use classifier::{Hook, RuleId};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Most frames handled as one batch.
pub const BATCH: usize = 64;

/// A wire port in bridge mode.
#[derive(Clone, Debug)]
pub struct Port {
    pub name: IfName,
    /// The port FORWARD-accepted frames leave by.
    pub peer: usize,
}

/// The ports and the box's own interface (the TAP of the exception path).
#[derive(Clone, Debug, Default)]
pub struct Topology {
    pub ports: Vec<Port>,
    /// MAC of the TAP: frames sent to it are for the box (INPUT).
    pub local_mac: Option<[u8; 6]>,
    /// Routed mode: the ports' addresses, the FIB and the static neighbours (`ports[i]` is
    /// routed port i; bridge mode when None).
    pub router: Option<Arc<crate::route::Router>>,
    /// Routed mode whose tables change while it runs (`routes = "kernel"`): workers take the
    /// current router from here once per batch.
    pub router_updates: Option<Arc<crate::route::shared::SharedRouter>>,
}

mod claims;
mod frag;
mod kernel_routes;
mod local;
mod nat;
mod routed;
mod track;

use track::{random_seed, AGE_BUDGET};

/// A hook, or the part of one before or after connection tracking, with its packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Group {
    /// PREROUTING's raw table (before tracking).
    RawPre = 0,
    /// The rest of PREROUTING.
    Pre = 1,
    Forward = 2,
    Input = 3,
    /// OUTPUT's raw table.
    RawOut = 4,
    /// The rest of OUTPUT.
    Output = 5,
    Post = 6,
}

const GROUPS: usize = 7;

/// A group's verdicts and new marks, by packet.
type GroupVerdicts = [(Verdict, Effects); BATCH];

impl Group {
    fn hook(self) -> Hook {
        match self {
            Group::RawPre | Group::Pre => Hook::Prerouting,
            Group::Forward => Hook::Forward,
            Group::Input => Hook::Input,
            Group::RawOut | Group::Output => Hook::Output,
            Group::Post => Hook::Postrouting,
        }
    }

    fn stage(self) -> Stage {
        match self {
            Group::RawPre | Group::RawOut => Stage::Raw,
            Group::Pre | Group::Output => Stage::AfterRaw,
            Group::Forward | Group::Input | Group::Post => Stage::All,
        }
    }
}

/// One hook's share of a batch.
struct GroupBuf {
    h: [Headers; BATCH],
    m: [PacketMeta; BATCH],
    d: [XdpDesc; BATCH],
    /// Ingress port (the TAP's frames: their egress port).
    port: [u8; BATCH],
    /// Egress port chosen by the routing decision (Forward, Output, Post).
    egress: [u8; BATCH],
    /// What connection tracking made of each packet (`Invalid` before tracking or without it).
    ct: [Outcome; BATCH],
    /// The routing decision, taken once when the frame arrived (PREROUTING and its raw part).
    route: [Route; BATCH],
    /// A reassembled datagram's fragment layout tag (0: the frame arrived whole).
    frag: [u16; BATCH],
    /// Routed mode: the next hop (gateway, or the destination on-link) of a packet leaving.
    hop: [u32; BATCH],
    n: usize,
}

impl GroupBuf {
    fn new() -> GroupBuf {
        GroupBuf {
            h: [Headers::default(); BATCH],
            m: [PacketMeta::default(); BATCH],
            d: [XdpDesc::default(); BATCH],
            port: [0; BATCH],
            egress: [0; BATCH],
            ct: [Outcome::Invalid; BATCH],
            route: [Route::Local; BATCH],
            frag: [0; BATCH],
            hop: [0; BATCH],
            n: 0,
        }
    }

    /// Appends a packet (the caller keeps each group within [`BATCH`]).
    fn push(&mut self, h: Headers, m: PacketMeta, d: XdpDesc, port: u8, egress: u8) {
        self.frag[self.n] = 0;
        self.push_tracked(h, m, d, port, egress, Outcome::Invalid)
    }

    fn push_tracked(
        &mut self,
        h: Headers,
        m: PacketMeta,
        d: XdpDesc,
        port: u8,
        egress: u8,
        ct: Outcome,
    ) {
        let k = self.n;
        self.h[k] = h;
        self.m[k] = m;
        self.d[k] = d;
        self.port[k] = port;
        self.egress[k] = egress;
        self.ct[k] = ct;
        self.n += 1;
    }
}

/// The LOG hits of one classified group.
struct LogHits {
    hits: [(u16, RuleId); BATCH * 2],
    n: usize,
    lost: u64,
}

impl BatchRecorder for LogHits {
    #[inline]
    fn log(&mut self, packet: usize, rule: RuleId) {
        if self.n < self.hits.len() {
            self.hits[self.n] = (packet as u16, rule);
            self.n += 1;
        } else {
            self.lost += 1;
        }
    }
}

/// Per-worker pipeline state; everything is allocated once in [`Pipeline::new`].
pub struct Pipeline {
    rules: Arc<CompiledRuleset>,
    st: WorkerState,
    topo: Arc<Topology>,
    stats: Arc<StatsShard>,
    groups: Box<[GroupBuf; GROUPS]>,
    /// Each group's verdicts (a group can be flushed while another's are being acted on).
    out: Box<[GroupVerdicts; GROUPS]>,
    /// IPv4 reassembly in front of tracking (when the ruleset tracks connections).
    defrag: Option<Box<classifier::defrag::Defrag>>,
    layouts: Box<frag::Layouts>,
    /// The ctstate of each packet tracked, in order, while a replay asks for it.
    ct_trace: Option<Vec<u32>>,
    logs: Box<LogHits>,
    sinks: Sinks,
    icmp: IcmpRateLimit,
    tap: Option<Arc<Tap>>,
    /// `routes = "kernel"`: each routed port's TAP twin (by port), which takes the box's
    /// traffic of that port (INPUT-accepted frames, ARP) in place of `tap`.
    twins: Vec<Arc<Tap>>,
    /// Routed mode's tables as this worker last took them, and their generation.
    router: Option<Arc<crate::route::Router>>,
    router_gen: u64,
    fdb: Box<Fdb>,
    ip_id: u16,
    steering: Steering,
    /// Flows other workers claimed (their destination manips), and this worker's released
    /// claims on their way out (a reused buffer).
    claims: crate::steer::Claims,
    released: Vec<classifier::conntrack::tuple::Tuple>,
    /// Fragments being made of one packet (a reused buffer).
    pieces: Vec<XdpDesc>,
    /// Unconfirmed connections whose packet was dropped after an ICMP error attached to them:
    /// freed once the local packets have run.
    doomed: Vec<u32>,
    /// Routed mode's neighbour cache, and the actions it asked for (reused buffer).
    neigh: Box<crate::route::neigh::Neighbors<XdpDesc>>,
    neigh_acts: Vec<crate::route::neigh::Action<XdpDesc>>,
    neigh_next_tick: u64,
    /// The current batch's time.
    clock_ns: u64,
    /// Local packets (the routing step's ICMP errors) wait in OUTPUT's groups.
    local_pending: bool,
}

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;

/// The neighbour cache of a topology, its static entries in place.
fn neighbors(topo: &Topology) -> crate::route::neigh::Neighbors<XdpDesc> {
    let mut n = crate::route::neigh::Neighbors::new(Default::default(), track::random_seed());
    if let Some(rt) = &topo.router {
        for &(port, ip, mac) in &rt.neighbors {
            n.add_static(port, ip, mac);
        }
    }
    n
}

fn ethertype(f: &[u8]) -> u16 {
    // The type after any 802.1Q / 802.1ad tags (at most two, as the parser reads): a tagged
    // ARP frame is ARP.
    let mut at = 12;
    for _ in 0..3 {
        let Some(b) = f.get(at..at + 2) else {
            return 0;
        };
        let t = u16::from_be_bytes([b[0], b[1]]);
        if !matches!(t, 0x8100 | 0x88a8) {
            return t;
        }
        at += 4;
    }
    0
}

impl Pipeline {
    pub fn new(
        rules: Arc<CompiledRuleset>,
        topo: Arc<Topology>,
        stats: Arc<StatsShard>,
        sinks: Sinks,
        tap: Option<Arc<Tap>>,
    ) -> Pipeline {
        let mut st = rules.new_state();
        st.ct = rules
            .uses_conntrack()
            .then(|| Box::new(Tracker::new(Default::default(), random_seed(), 0)));
        st.connlimits =
            classifier::conntrack::connlimit::ConnLimits::new(st.connlimits_limit(), random_seed());
        let defrag = st.ct.is_some().then(|| {
            Box::new(classifier::defrag::Defrag::new(
                Default::default(),
                random_seed(),
            ))
        });
        let topo_for_neigh = Arc::clone(&topo);
        Pipeline {
            rules,
            st,
            topo,
            stats,
            groups: Box::new(std::array::from_fn(|_| GroupBuf::new())),
            out: Box::new([[(Verdict::Accept, Effects::default()); BATCH]; GROUPS]),
            defrag,
            layouts: Box::new(frag::Layouts::new()),
            ct_trace: None,
            logs: Box::new(LogHits {
                hits: [(0, RuleId(0)); BATCH * 2],
                n: 0,
                lost: 0,
            }),
            sinks,
            icmp: IcmpRateLimit::new(),
            tap,
            twins: Vec::new(),
            router: topo_for_neigh.router.clone(),
            router_gen: 0,
            fdb: Box::new(Fdb::new()),
            ip_id: 1,
            steering: Steering::single(),
            claims: crate::steer::Claims::new(0, 0),
            released: Vec::new(),
            pieces: Vec::with_capacity(128),
            doomed: Vec::with_capacity(BATCH),
            neigh: Box::new(neighbors(&topo_for_neigh)),
            neigh_acts: Vec::with_capacity(crate::route::neigh::QUEUE_MAX * 4),
            neigh_next_tick: 0,
            clock_ns: 0,
            local_pending: false,
        }
    }

    /// Tracks connections with these settings (when the ruleset needs tracking).
    pub fn with_conntrack(mut self, cfg: classifier::conntrack::CtConfig) -> Pipeline {
        if self.st.ct.is_some() {
            self.st.connlimits =
                classifier::conntrack::connlimit::ConnLimits::new(cfg.max as usize, random_seed());
            self.st.ct = Some(Box::new(Tracker::new(cfg, random_seed(), 0)));
        }
        self
    }

    /// Records the ctstate bits of every packet tracked from now on (replay's `--verdicts`).
    pub fn trace_ctstates(&mut self) {
        self.ct_trace = Some(Vec::new());
    }

    /// The ctstates recorded since the last call.
    pub fn take_ctstates(&mut self) -> Vec<u32> {
        self.ct_trace
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The connection tracker, while the ruleset needs one.
    pub fn tracker(&self) -> Option<&Tracker> {
        self.st.ct.as_deref()
    }

    /// Turns flow steering on (several workers).
    pub fn with_steering(mut self, s: Steering) -> Pipeline {
        if s.workers > 1 {
            let bound = self.st.ct.as_ref().map_or(0, |ct| ct.table.max());
            self.claims = crate::steer::Claims::new(bound, random_seed());
            self.released = Vec::with_capacity(classifier::conntrack::table::RELEASED_MAX);
        }
        if let Some(ct) = self.st.ct.as_mut() {
            ct.set_nat_owner(classifier::nat::Owner {
                key: s.key,
                workers: s.workers as u16,
                me: s.worker as u16,
            });
        }
        self.steering = s;
        self
    }

    /// Per-rule counters and limit buckets of this worker (summed by the control side).
    pub fn state(&self) -> &WorkerState {
        &self.st
    }

    pub fn into_state(self) -> WorkerState {
        self.st
    }

    pub fn stats(&self) -> &StatsShard {
        &self.stats
    }

    /// Handles a burst of frames received on `port` (in batches of [`BATCH`]).
    pub fn rx_burst<I: FrameIo>(
        &mut self,
        io: &mut I,
        port: usize,
        descs: &[XdpDesc],
        now_ns: u64,
    ) {
        for chunk in descs.chunks(BATCH) {
            self.rx(io, port, chunk, now_ns, true)
        }
    }

    /// Handles frames another worker steered here (they are not steered again).
    pub fn handoff_burst<I: FrameIo>(
        &mut self,
        io: &mut I,
        port: usize,
        descs: &[XdpDesc],
        now_ns: u64,
    ) {
        self.stats.add(Counter::HandoffIn, descs.len() as u64);
        for chunk in descs.chunks(BATCH) {
            self.rx(io, port, chunk, now_ns, false)
        }
    }

    fn rx<I: FrameIo>(
        &mut self,
        io: &mut I,
        port: usize,
        descs: &[XdpDesc],
        now_ns: u64,
        steer: bool,
    ) {
        let topo = Arc::clone(&self.topo);
        let Some(p) = topo.ports.get(port) else {
            for d in descs {
                io.free(d.addr);
            }
            return;
        };
        self.clock_ns = now_ns;
        self.refresh_router();
        if steer && self.steering.workers > 1 {
            self.take_claims();
        }
        let router = self.router.clone();
        let routed = router.as_deref();
        let mut bytes = 0u64;
        for d in descs.iter().take(BATCH) {
            bytes += u64::from(d.len);
            let Some(f) = io.frame(d.addr, d.len) else {
                self.stats.add(Counter::DropTruncated, 1);
                io.free(d.addr);
                continue;
            };
            if f.len() < 14 {
                self.stats.add(Counter::DropTruncated, 1);
                io.free(d.addr);
                continue;
            }
            let route = match routed {
                Some(rt) => {
                    if ethertype(f) == ETH_P_ARP {
                        // Every worker keeps its own neighbour cache: each learns from every
                        // ARP frame, and the one that received it answers.
                        if steer {
                            self.copy_to_all(port, f);
                        }
                        self.arp_in(io, port, *d, steer);
                        continue;
                    }
                    let mine = rt.ports.get(port).is_some_and(|p| f[..6] == p.mac);
                    if !mine && f[0] & 1 == 0 {
                        self.stats.add(Counter::RouteNotForUs, 1);
                        io.free(d.addr);
                        continue;
                    }
                    if mine {
                        Route::Local
                    } else {
                        Route::Both { egress: port }
                    }
                }
                None => route::decide(&topo, port, &f[..6]),
            };
            if self.tap.is_some() && routed.is_none() {
                self.fdb.learn(&f[6..12], port as u8);
            }
            if ethertype(f) == ETH_P_ARP {
                // ARP is not IPv4: no table sees it. The box's copy goes to the TAP (so its
                // stack answers for its own address); the wire's copy to the paired port.
                if let (Some(tap), Route::Local | Route::Both { .. }) = (&self.tap, route) {
                    if tap.write(f).is_err() {
                        self.stats.add(Counter::TapErrors, 1);
                    }
                }
                match route {
                    Route::Local => io.free(d.addr),
                    Route::Forward { egress } | Route::Both { egress } => {
                        self.stats.add(Counter::NonIpForwarded, 1);
                        io.tx(egress, *d);
                    }
                }
                continue;
            }
            let h = match parse_ethernet(f) {
                Ok(h) => h,
                Err(r) => {
                    self.stats.add(Counter::of_drop(r), 1);
                    io.free(d.addr);
                    continue;
                }
            };
            // Routed mode steers the box's own traffic too: it is tracked like the rest.
            if steer && self.steering.workers > 1 && (routed.is_some() || route != Route::Local) {
                let owner = crate::steer::flow_owner_claimed(
                    &h,
                    f,
                    self.steering.key,
                    self.steering.workers,
                    Some(&self.claims),
                );
                if owner != self.steering.worker {
                    let sent = self.hand_off(owner, port, f);
                    self.stats.add(
                        if sent {
                            Counter::HandoffOut
                        } else {
                            Counter::HandoffDropped
                        },
                        1,
                    );
                    io.free(d.addr);
                    continue;
                }
            }
            let (d, h, frag) = match self.reassemble(io, *d, &h, port, now_ns) {
                frag::Arrival::Whole => (*d, h, 0),
                frag::Arrival::Gone => continue,
                frag::Arrival::Complete(nd, nh, tag) => (nd, nh, tag),
            };
            let m = PacketMeta::arriving(&h, p.name, IfName::NONE, now_ns);
            let g = self.entry_group(Group::RawPre);
            let gb = &mut self.groups[g as usize];
            gb.route[gb.n] = route;
            gb.push(h, m, d, port as u8, 0);
            gb.frag[gb.n - 1] = frag;
        }
        if steer {
            self.stats.add(Counter::RxPackets, descs.len() as u64);
            self.stats.add(Counter::RxBytes, bytes);
        }
        if let Some(ct) = self.st.ct.as_mut() {
            ct.set_clock(now_ns);
        }
        self.run_group(io, Group::RawPre);
        self.run_arriving(io);
        self.run_local_pending(io);
        self.neigh_tick(io, now_ns);
        if let Some(ct) = self.st.ct.as_mut() {
            ct.age(AGE_BUDGET);
            self.age_fragments(now_ns);
        }
        if self.steering.workers > 1 {
            self.release_claims();
        }
    }

    /// Copies frame `f` (received on `port`) to worker `owner`'s ring; false when it is full.
    pub(super) fn hand_off(&mut self, owner: usize, port: usize, f: &[u8]) -> bool {
        match self.steering.out.get_mut(owner) {
            Some(Some(ring)) if !ring.is_full() && f.len() <= MAX_FRAME => {
                let mut m = Handoff {
                    port: port as u8,
                    len: f.len() as u16,
                    data: [0; MAX_FRAME],
                };
                m.data[..f.len()].copy_from_slice(f);
                ring.push(m).is_ok()
            }
            _ => false,
        }
    }

    /// Copies frame `f` to every other worker (ARP, which each worker's cache learns from).
    fn copy_to_all(&mut self, port: usize, f: &[u8]) {
        for w in 0..self.steering.workers {
            if w != self.steering.worker && !self.hand_off(w, port, f) {
                self.stats.add(Counter::HandoffDropped, 1);
            }
        }
    }

    /// Runs the local packets the routing step made (its ICMP errors) through OUTPUT.
    fn run_local_pending<I: FrameIo>(&mut self, io: &mut I) {
        while self.local_pending {
            self.local_pending = false;
            self.run_group(io, Group::RawOut);
            self.run_local(io);
        }
        if let Some(ct) = self.st.ct.as_mut() {
            for id in self.doomed.drain(..) {
                ct.table.abort(id);
            }
        }
    }

    /// Runs the timers of routed mode (neighbour resolution) when no traffic does.
    pub fn idle_tick<I: FrameIo>(&mut self, io: &mut I, now_ns: u64) {
        self.refresh_router();
        if self.steering.workers > 1 {
            self.take_claims();
            self.release_claims();
        }
        self.clock_ns = now_ns;
        self.neigh_tick(io, now_ns);
        self.run_local_pending(io);
    }

    /// Runs what follows PREROUTING's raw table for the packets gathered so far.
    fn run_arriving<I: FrameIo>(&mut self, io: &mut I) {
        self.run_group(io, Group::Pre);
        self.run_group(io, Group::Forward);
        self.run_group(io, Group::Input);
        self.run_group(io, Group::Post);
    }

    /// Runs what follows OUTPUT's raw table for the packets gathered so far.
    fn run_local<I: FrameIo>(&mut self, io: &mut I) {
        self.run_group(io, Group::Output);
        self.run_group(io, Group::Post);
    }

    /// Where a packet enters a hook: its raw stage when tracking sits between raw and the
    /// rest or the raw table has the hook, else straight to the whole hook.
    fn entry_group(&self, raw: Group) -> Group {
        let direct = match raw {
            Group::RawOut => Group::Output,
            _ => Group::Pre,
        };
        if self.st.ct.is_some() || !self.rules.stage_is_empty(raw.hook(), Stage::Raw) {
            raw
        } else {
            direct
        }
    }

    /// Moves packet `i` of group `from` to the end of group `to` (they are never the same).
    fn pass(&mut self, from: Group, i: usize, to: Group, mark: Option<u32>) {
        let src = &self.groups[from as usize];
        let (h, mut m, d, port, egress, ct) = (
            src.h[i],
            src.m[i],
            src.d[i],
            src.port[i],
            src.egress[i],
            src.ct[i],
        );
        if let Some(mark) = mark {
            m.mark = mark;
        }
        let (route, frag, hop) = (src.route[i], src.frag[i], src.hop[i]);
        let dst = &mut self.groups[to as usize];
        dst.route[dst.n] = route;
        dst.frag[dst.n] = frag;
        dst.hop[dst.n] = hop;
        dst.push_tracked(h, m, d, port, egress, ct);
    }

    fn run_group<I: FrameIo>(&mut self, io: &mut I, g: Group) {
        let n = self.groups[g as usize].n;
        if n == 0 {
            return;
        }
        if matches!(g, Group::RawPre | Group::RawOut) {
            self.warm_connections(io, g);
        }
        let (hook, stage) = (g.hook(), g.stage());
        let out = &mut self.out[g as usize];
        if self.rules.stage_is_empty(hook, stage) {
            // No table on this hook: every packet goes on, as the kernel's hook would let it.
            for o in &mut out[..n] {
                *o = (Verdict::Accept, Effects::default());
            }
        } else {
            self.logs.n = 0;
            let gb = &self.groups[g as usize];
            self.rules.classify_batch_stage(
                hook,
                stage,
                &gb.h[..n],
                &gb.m[..n],
                &mut self.st,
                &mut out[..n],
                &mut *self.logs,
            );
            self.emit_logs(io, g);
        }
        for i in 0..n {
            let (v, fx) = self.out[g as usize][i];
            if fx.ctmark.is_some() {
                self.save_ctmark(g, i, fx.ctmark);
            }
            self.act(io, g, i, v, fx);
        }
        self.groups[g as usize].n = 0;
    }

    fn emit_logs<I: FrameIo>(&mut self, io: &mut I, g: Group) {
        if self.logs.lost > 0 {
            self.stats.add(Counter::LogDropped, self.logs.lost);
            self.logs.lost = 0;
        }
        let gb = &self.groups[g as usize];
        for &(i, rule) in &self.logs.hits[..self.logs.n] {
            let i = usize::from(i);
            let d = gb.d[i];
            let m = &gb.m[i];
            let Some(f) = io.frame(d.addr, d.len) else {
                continue;
            };
            let Some(ring) = self.sinks.log.as_mut() else {
                self.stats.add(Counter::LogDropped, 1);
                continue;
            };
            let rec = LogRecord::new(f, rule, g.hook(), m);
            if ring.push(rec).is_ok() {
                self.stats.add(Counter::LogRecords, 1);
            } else {
                self.stats.add(Counter::LogDropped, 1);
            }
        }
    }

    fn accept<I: FrameIo>(&mut self, io: &mut I, g: Group, i: usize, fx: Effects) {
        let mark = fx.mark;
        if !self.nat_step(io, g, i, &fx) {
            self.settle(g, i, false);
            io.free(self.groups[g as usize].d[i].addr);
            return;
        }
        let gb = &self.groups[g as usize];
        let (d, egress) = (gb.d[i], usize::from(gb.egress[i]));
        match g {
            Group::RawPre => self.track_step(io, i, fx, Group::Pre),
            Group::RawOut => self.track_step(io, i, fx, Group::Output),
            Group::Pre if self.router.is_some() => self.route_routed(io, i, mark),
            Group::Pre => {
                let route = gb.route[i];
                if let Route::Both { .. } = route {
                    self.local_copy(io, i, d, mark);
                }
                match route {
                    Route::Forward { egress } | Route::Both { egress } => {
                        let out_iface =
                            self.topo.ports.get(egress).map_or(IfName::NONE, |p| p.name);
                        let gb = &mut self.groups[Group::Pre as usize];
                        gb.egress[i] = egress as u8;
                        gb.m[i].out_iface = out_iface;
                        self.pass(Group::Pre, i, Group::Forward, mark);
                    }
                    Route::Local if self.tap.is_some() => {
                        self.pass(Group::Pre, i, Group::Input, mark)
                    }
                    Route::Local => {
                        self.stats.add(Counter::DropNoRoute, 1);
                        self.settle(g, i, false);
                        io.free(d.addr);
                    }
                }
            }
            Group::Forward | Group::Output => {
                if g == Group::Forward {
                    self.stats.add(Counter::Forwarded, 1);
                } else {
                    self.stats.add(Counter::LocalOut, 1);
                }
                if self.rules.hook_is_empty(Hook::Postrouting) {
                    if self.confirm_out(io, g, i) {
                        self.transmit(io, g, i, egress);
                    } else {
                        io.free(d.addr);
                    }
                } else {
                    self.pass(g, i, Group::Post, mark);
                }
            }
            Group::Post => {
                if self.confirm_out(io, g, i) {
                    self.transmit(io, g, i, egress)
                } else {
                    io.free(d.addr);
                }
            }
            Group::Input => {
                if !self.confirm_out(io, g, i) {
                    io.free(d.addr);
                    return;
                }
                // A NAT helper may have resized it.
                let (d, port) = (
                    self.groups[g as usize].d[i],
                    self.groups[g as usize].port[i],
                );
                let sink = self.local_sink(usize::from(port)).cloned();
                if sink.is_none() && self.answer_echo(io, d) {
                    self.stats.add(Counter::LocalIn, 1);
                    return;
                }
                match (&sink, io.frame(d.addr, d.len)) {
                    (Some(tap), Some(f)) => {
                        if tap.write(f).is_ok() {
                            self.stats.add(Counter::LocalIn, 1);
                        } else {
                            self.stats.add(Counter::TapErrors, 1);
                        }
                    }
                    _ => self.stats.add(Counter::LocalNoTap, 1),
                }
                io.free(d.addr);
            }
        }
    }

    /// Sends packet `i` of `g` out of `egress`: in routed mode once its next hop is resolved.
    fn transmit<I: FrameIo>(&mut self, io: &mut I, g: Group, i: usize, egress: usize) {
        if self.router.is_some() {
            if !self.resolve_out(io, g, i, egress) {
                return;
            }
            self.stats.add(Counter::RoutedForwarded, 1);
        }
        self.send_out(io, g, i, egress);
    }

    fn act<I: FrameIo>(&mut self, io: &mut I, g: Group, i: usize, v: Verdict, fx: Effects) {
        let d = self.groups[g as usize].d[i];
        if !matches!(v, Verdict::Accept | Verdict::Queue { bypass: true, .. }) {
            // Dropped here (or queued, which this dataplane does not reinject): a connection
            // the packet made goes with it.
            self.settle(g, i, false);
        }
        match v {
            Verdict::Accept => self.accept(io, g, i, fx),
            Verdict::Drop => {
                self.stats.add(Counter::DropRule, 1);
                io.free(d.addr);
            }
            Verdict::HotDrop => {
                self.stats.add(Counter::DropHotdrop, 1);
                io.free(d.addr);
            }
            Verdict::Reject(with) => {
                self.stats.add(Counter::DropRule, 1);
                self.reject(io, g, i, with);
                io.free(d.addr);
            }
            Verdict::Queue { num, bypass, .. } => {
                let consumer = self.sinks.queue_consumer.load(Ordering::Relaxed);
                if !consumer && bypass {
                    // --queue-bypass: with no listener the packet continues (as accepted).
                    self.accept(io, g, i, fx);
                    return;
                }
                self.settle(g, i, false);
                let queued = consumer
                    && match (self.sinks.queue.as_mut(), io.frame(d.addr, d.len)) {
                        (Some(ring), Some(f)) if !ring.is_full() => {
                            let mut q = QueuedFrame {
                                queue: num,
                                hook: g.hook(),
                                in_port: self.groups[g as usize].port[i],
                                len: f.len().min(MAX_FRAME) as u16,
                                data: [0; MAX_FRAME],
                            };
                            q.data[..usize::from(q.len)].copy_from_slice(&f[..usize::from(q.len)]);
                            ring.push(q).is_ok()
                        }
                        _ => false,
                    };
                self.stats.add(
                    if queued {
                        Counter::Queued
                    } else {
                        Counter::QueueDropped
                    },
                    1,
                );
                io.free(d.addr);
            }
        }
    }
}
