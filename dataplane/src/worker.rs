//! A poll-mode worker: pinned to its core, it owns one UMEM and the sockets of its queues on every
//! port, and loops: RX bursts from each socket through the pipeline, the TAP's frames (worker 0),
//! TX flush and kicks, completion reaping, fill-ring refills, then the idle policy. No allocation,
//! lock or per-packet syscall; one TX kick per socket per iteration at most.
//!
//! Shutdown (stop flag set by the control side on SIGTERM): the XSKMAP slots of its queues are
//! cleared first (new frames take the program's fallback), RX is drained until quiet, TX is flushed
//! and completed, then the frame accounting is checked and reported.

use crate::afxdp::ShutdownReport;
use crate::bpf::XskMap;
use crate::io::PortIo;
use crate::pipeline::{Handoff, Pipeline, BATCH};
use crate::steer::FROM_TWIN;
use crate::tap::Tap;
use crate::xsk::XdpDesc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker does when a whole iteration found nothing to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin (lowest latency; the core is 100% busy).
    Busy,
    /// Spin `idle_spins` empty iterations, then sleep in `poll()` on the sockets with a timeout
    /// that doubles from 1 to 8 ms while idle.
    Adaptive { idle_spins: u32 },
}

/// Monotonic nanoseconds (vDSO `clock_gettime`, once per iteration).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live timespec; CLOCK_MONOTONIC always exists.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Everything one worker thread owns.
pub struct Worker<I: PortIo> {
    pub index: usize,
    pub io: I,
    pub pipeline: Pipeline,
    pub nports: usize,
    /// The XSKMAP of each port and the queues this worker owns (cleared at shutdown).
    pub maps: Vec<Arc<XskMap>>,
    pub queues: Vec<u32>,
    /// The host's TAPs this worker reads: the exception path's (None) or a routed port's twin
    /// (`routes = "kernel"`, Some(port)).
    pub taps: Vec<(Arc<Tap>, Option<usize>)>,
    pub idle: IdlePolicy,
    /// Frames other workers steered to this one.
    pub handoff_in: Vec<rtrb::Consumer<Handoff>>,
    /// Iterations so far (paces the TAP's reads).
    pub iterations: u32,
}

/// What a worker hands back when it stops.
pub struct WorkerExit {
    pub index: usize,
    pub pipeline: Pipeline,
    pub report: ShutdownReport,
    /// The kernel's drop counters of the worker's sockets.
    pub kernel: crate::xsk::sys::XdpStatistics,
}

impl<I: PortIo> Worker<I> {
    pub fn run(mut self, stop: &AtomicBool) -> WorkerExit {
        let mut descs = [XdpDesc::default(); BATCH];
        let mut idle_iters = 0u32;
        let mut timeout_ms = 1;
        let nsock = self.io.sources();
        while !stop.load(Ordering::Relaxed) {
            let got = self.iteration(&mut descs, nsock);
            if got > 0 {
                idle_iters = 0;
                timeout_ms = 1;
                continue;
            }
            idle_iters = idle_iters.saturating_add(1);
            match self.idle {
                IdlePolicy::Busy => std::hint::spin_loop(),
                IdlePolicy::Adaptive { idle_spins } => {
                    if idle_iters >= idle_spins {
                        self.sleep(timeout_ms);
                        timeout_ms = (timeout_ms * 2).min(8);
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        }
        self.shutdown(&mut descs, nsock)
    }

    /// One pass over every socket (and the TAP); returns the frames received.
    fn iteration(&mut self, descs: &mut [XdpDesc; BATCH], nsock: usize) -> usize {
        // The clock is read once per iteration, and only when something arrived.
        let mut clock = None;
        let mut now = || *clock.get_or_insert_with(now_ns);
        let mut got = 0;
        for s in 0..nsock {
            let n = self.io.rx(s, descs);
            if n == 0 {
                continue;
            }
            got += n;
            let port = self.io.port_of(s);
            self.pipeline
                .rx_burst(&mut self.io, port, &descs[..n], now());
        }
        if !self.handoff_in.is_empty() {
            got += self.handoffs(descs, &mut now);
        }
        // The TAP costs a system call per look: every 16th iteration is often enough for the
        // box's own traffic.
        self.iterations = self.iterations.wrapping_add(1);
        if got == 0 {
            // Timers that run without traffic (routed mode's ARP retries and failures).
            self.io.default_tx_queue();
            self.pipeline.idle_tick(&mut self.io, now());
        }
        if !self.taps.is_empty() && self.iterations.is_multiple_of(16) {
            for t in 0..self.taps.len() {
                got += self.read_tap(t, descs, &mut now);
            }
        }
        self.io.flush_tx();
        self.io.reap();
        self.io.refill();
        got
    }

    /// Takes one burst of the frames the host sent into TAP `t`.
    fn read_tap(
        &mut self,
        t: usize,
        descs: &mut [XdpDesc; BATCH],
        now: &mut impl FnMut() -> u64,
    ) -> usize {
        let (tap, twin_of) = (Arc::clone(&self.taps[t].0), self.taps[t].1);
        let mut n = 0;
        while n < BATCH {
            match self.io.alloc_read(|buf| tap.read(buf).ok().flatten()) {
                Some(d) => {
                    descs[n] = d;
                    n += 1;
                }
                None => break,
            }
        }
        if n > 0 {
            self.io.default_tx_queue();
            match twin_of {
                Some(port) => self
                    .pipeline
                    .twin_burst(&mut self.io, port, &descs[..n], now()),
                None => self.pipeline.local_burst(&mut self.io, &descs[..n], now()),
            }
        }
        n
    }

    /// Takes in what other workers steered here, one port at a time.
    fn handoffs(&mut self, descs: &mut [XdpDesc; BATCH], now: &mut impl FnMut() -> u64) -> usize {
        let mut total = 0;
        for r in 0..self.handoff_in.len() {
            let mut ports = [0u8; BATCH];
            let mut n = 0;
            while n < BATCH {
                let Ok(h) = self.handoff_in[r].pop() else {
                    break;
                };
                let len = usize::from(h.len);
                if let Some(d) = self.io.alloc_read(|buf| {
                    let k = len.min(buf.len());
                    buf[..k].copy_from_slice(&h.data[..k]);
                    Some(k)
                }) {
                    descs[n] = d;
                    ports[n] = h.port;
                    n += 1;
                }
            }
            total += n;
            for tag in (0..self.nports).flat_map(|p| [p as u8, p as u8 | FROM_TWIN]) {
                let mut mine = [XdpDesc::default(); BATCH];
                let mut k = 0;
                for i in 0..n {
                    if ports[i] == tag {
                        mine[k] = descs[i];
                        k += 1;
                    }
                }
                if k == 0 {
                    continue;
                }
                self.io.default_tx_queue();
                let p = usize::from(tag & !FROM_TWIN);
                if tag & FROM_TWIN != 0 {
                    self.pipeline
                        .twin_handoff_burst(&mut self.io, p, &mine[..k], now());
                } else {
                    self.pipeline
                        .handoff_burst(&mut self.io, p, &mine[..k], now());
                }
            }
        }
        total
    }

    fn sleep(&mut self, timeout_ms: i32) {
        // Flush what is pending before sleeping.
        self.io.flush_tx();
        self.io.reap();
        self.io.refill();
        let mut raw = [-1i32; 16];
        let k = self.io.poll_fds(&mut raw);
        let mut fds: [libc::pollfd; 32] = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; 32];
        let mut n = 0;
        for fd in &raw[..k] {
            fds[n] = libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            };
            n += 1;
        }
        for (tap, _) in &self.taps {
            if n == fds.len() {
                break;
            }
            fds[n] = libc::pollfd {
                fd: tap.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            n += 1;
        }
        // SAFETY: `fds[..n]` are initialised pollfds on descriptors this worker keeps open.
        unsafe {
            libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, timeout_ms);
        }
    }

    fn shutdown(mut self, descs: &mut [XdpDesc; BATCH], nsock: usize) -> WorkerExit {
        // 1. New frames take the program's fallback action from now on.
        for m in &self.maps {
            for &q in &self.queues {
                m.clear(q);
            }
        }
        // 2. Drain RX (processing what arrives) until it stays quiet for 10 ms.
        let start = Instant::now();
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_millis(10)
            && start.elapsed() < Duration::from_secs(2)
        {
            if self.iteration(descs, nsock) > 0 {
                quiet_since = Instant::now();
            }
        }
        // 3. Complete every TX.
        let start = Instant::now();
        while self.io.in_tx() > 0 && start.elapsed() < Duration::from_secs(1) {
            self.io.flush_tx();
            self.io.reap();
            std::thread::sleep(Duration::from_micros(200));
        }
        self.io.drop_staged();
        let report = self.io.report();
        WorkerExit {
            index: self.index,
            kernel: self.io.kernel_stats(),
            pipeline: self.pipeline,
            report,
        }
    }
}
