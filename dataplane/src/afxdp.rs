//! The AF_XDP backend: one worker's UMEM and sockets (one per (port, queue) it owns, all sharing
//! the UMEM so forwarding moves a descriptor, never bytes), the free list, TX staging, completion
//! recycling and fill-ring refills, with exact frame accounting.
//!
//! Accounting (checked at shutdown, see [`XdpIo::report`]): every chunk is on the free list, in
//! a fill ring (`kernel_rx`, until it comes back on RX), staged for TX, or in a TX ring until its
//! completion (`kernel_tx`). Ring sizes are chosen so the kernel can always hold a full fill ring
//! per socket plus a full TX ring per socket and the worker still has a batch in hand.

use crate::io::{FrameIo, NoFreeFrame, PortIo};
use crate::stats::{Counter, StatsShard};
use crate::xsk::{RingSizes, Umem, XdpDesc, XskSocket, ZeroCopy};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

/// What one worker's UMEM looks like.
#[derive(Clone, Copy, Debug)]
pub struct UmemLayout {
    pub frames: u32,
    pub frame_size: u32,
    pub rings: RingSizes,
}

/// Frame accounting at shutdown.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    pub frames: u32,
    pub free: u32,
    pub in_fill: u32,
    pub in_tx: u32,
    pub lost: u32,
}

/// One worker's AF_XDP I/O.
pub struct XdpIo {
    umem: Umem,
    /// Socket of (queue slot qi, port p) at `qi * nports + p`.
    pub socks: Vec<XskSocket>,
    nports: usize,
    /// Queue slot being processed (TX goes to the same queue of the egress port).
    pub cur_q: usize,
    free: Vec<u64>,
    staged: Vec<Vec<XdpDesc>>,
    kernel_rx: Vec<u32>,
    kernel_tx: Vec<u32>,
    comp_buf: Vec<u64>,
    stats: Arc<StatsShard>,
    fill_target: u32,
}

impl XdpIo {
    /// Maps the UMEM and opens one socket per (queue, port): `ports[p] = (ifindex, name)`,
    /// `queues` the queue ids this worker owns.
    pub fn open(
        layout: UmemLayout,
        ports: &[(u32, String)],
        queues: &[u32],
        zc: ZeroCopy,
        stats: Arc<StatsShard>,
    ) -> io::Result<XdpIo> {
        let umem = Umem::new(layout.frames, layout.frame_size).map_err(|e| {
            io::Error::new(e.kind(), format!("UMEM of {} frames: {e}", layout.frames))
        })?;
        let mut socks: Vec<XskSocket> = Vec::with_capacity(ports.len() * queues.len());
        for &q in queues {
            for (ifindex, name) in ports {
                let shared = socks.first().map(|s| s.fd().as_raw_fd());
                let s = XskSocket::open(&umem, shared, *ifindex, q, layout.rings, zc)
                    .map_err(|e| io::Error::new(e.kind(), format!("{name} queue {q}: {e}")))?;
                socks.push(s);
            }
        }
        let n = socks.len();
        let free = (0..layout.frames)
            .rev()
            .map(|i| umem.chunk_addr(i))
            .collect();
        let mut io = XdpIo {
            umem,
            socks,
            nports: ports.len(),
            cur_q: 0,
            free,
            staged: (0..n)
                .map(|_| Vec::with_capacity(layout.rings.tx as usize))
                .collect(),
            kernel_rx: vec![0; n],
            kernel_tx: vec![0; n],
            comp_buf: vec![0; layout.rings.comp as usize],
            stats,
            fill_target: layout.rings.fill.min(layout.rings.rx),
        };
        io.refill();
        Ok(io)
    }

    pub fn zero_copy(&self) -> bool {
        self.socks.first().is_some_and(XskSocket::zero_copy)
    }

    /// Pops up to `out.len()` RX descriptors of socket `s`.
    #[inline]
    pub fn rx(&mut self, s: usize, out: &mut [XdpDesc]) -> usize {
        let n = self.socks[s].rx.pop(out);
        self.kernel_rx[s] -= n as u32;
        n
    }

    /// Reads a frame from `read` (the TAP) into a free chunk.
    pub fn alloc_read(&mut self, read: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<XdpDesc> {
        let addr = self.free.pop()?;
        let chunk = self.umem.chunk_mut(addr)?;
        match read(chunk) {
            Some(n) if n > 0 => Some(XdpDesc {
                addr,
                len: n as u32,
                options: 0,
            }),
            _ => {
                self.free.push(addr);
                None
            }
        }
    }

    /// Moves staged frames into the TX rings and kicks the kernel where frames wait.
    pub fn flush_tx(&mut self) {
        for s in 0..self.socks.len() {
            let staged = &mut self.staged[s];
            if !staged.is_empty() {
                let pushed = self.socks[s].tx.push(staged);
                self.kernel_tx[s] += pushed as u32;
                let mut bytes = 0u64;
                for d in &staged[..pushed] {
                    bytes += u64::from(d.len);
                }
                self.stats.add(Counter::TxPackets, pushed as u64);
                self.stats.add(Counter::TxBytes, bytes);
                staged.drain(..pushed);
            }
            if self.kernel_tx[s] > 0 && self.socks[s].tx.needs_wakeup() {
                // EAGAIN/EBUSY are "again next round"; anything else is counted as a drop of
                // nothing in particular: the frames stay accounted in the TX ring.
                let _ = self.socks[s].kick_tx();
            }
        }
    }

    /// Returns completed TX frames to the free list.
    pub fn reap(&mut self) {
        for s in 0..self.socks.len() {
            if self.kernel_tx[s] == 0 {
                continue;
            }
            let n = self.socks[s].comp.pop(&mut self.comp_buf);
            for &a in &self.comp_buf[..n] {
                self.free.push(self.umem.chunk_of(a));
            }
            self.kernel_tx[s] -= n as u32;
        }
    }

    /// Tops every fill ring up to its target from the free list.
    pub fn refill(&mut self) {
        for s in 0..self.socks.len() {
            let want = self.fill_target.saturating_sub(self.kernel_rx[s]) as usize;
            let m = want.min(self.free.len());
            if m == 0 {
                continue;
            }
            let k = self.free.len() - m;
            let pushed = self.socks[s].fill.push(&self.free[k..]);
            self.free.copy_within(k + pushed.., k);
            self.free.truncate(self.free.len() - pushed);
            self.kernel_rx[s] += pushed as u32;
            if pushed > 0 && self.socks[s].fill.needs_wakeup() {
                self.socks[s].wake_rx();
            }
        }
    }

    /// Frames sitting in TX rings (not completed yet).
    pub fn in_tx(&self) -> u32 {
        self.kernel_tx.iter().sum::<u32>() + self.staged.iter().map(|s| s.len() as u32).sum::<u32>()
    }

    /// Gives up on staged frames (shutdown): back to the free list.
    pub fn drop_staged(&mut self) {
        for s in 0..self.staged.len() {
            while let Some(d) = self.staged[s].pop() {
                let c = self.umem.chunk_of(d.addr);
                self.free.push(c);
            }
        }
    }

    /// The frame accounting now (call when RX is drained and TX completed).
    pub fn report(&mut self) -> ShutdownReport {
        let frames = self.umem.frames();
        let free = self.free.len() as u32;
        let in_fill: u32 = self.socks.iter_mut().map(|s| s.fill.in_flight()).sum();
        let in_tx = self.in_tx();
        ShutdownReport {
            frames,
            free,
            in_fill,
            in_tx,
            lost: frames.saturating_sub(free + in_fill + in_tx),
        }
    }

    /// The kernel's per-socket drop counters, summed over this worker's sockets.
    pub fn kernel_stats(&self) -> crate::xsk::sys::XdpStatistics {
        let mut t = crate::xsk::sys::XdpStatistics::default();
        for s in &self.socks {
            if let Ok(x) = s.statistics() {
                t.rx_dropped += x.rx_dropped;
                t.rx_invalid_descs += x.rx_invalid_descs;
                t.tx_invalid_descs += x.tx_invalid_descs;
                t.rx_ring_full += x.rx_ring_full;
                t.rx_fill_ring_empty_descs += x.rx_fill_ring_empty_descs;
                t.tx_ring_empty_descs += x.tx_ring_empty_descs;
            }
        }
        t
    }

    pub fn fds(&self) -> impl Iterator<Item = std::os::fd::BorrowedFd<'_>> {
        self.socks.iter().map(|s| s.fd())
    }
}

impl FrameIo for XdpIo {
    #[inline]
    fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        self.umem.frame(addr, len)
    }

    fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        self.umem.frame_mut(addr, len)
    }

    fn room_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        self.umem.chunk_mut(addr)
    }

    fn alloc_frame(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame> {
        let dst = self.free.pop().ok_or(NoFreeFrame)?;
        let Some(out) = self.umem.chunk_mut(dst) else {
            self.free.push(dst);
            return Err(NoFreeFrame);
        };
        let room = out.len();
        match fill(out) {
            Some(n) if n <= room => Ok(Some(XdpDesc {
                addr: dst,
                len: n as u32,
                options: 0,
            })),
            _ => {
                self.free.push(dst);
                Ok(None)
            }
        }
    }

    fn build_from(
        &mut self,
        src: u64,
        src_len: u32,
        fill: impl FnOnce(&[u8], &mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame> {
        let dst = self.free.pop().ok_or(NoFreeFrame)?;
        let Some((orig, out)) = self.umem.pair_mut(src, src_len, dst) else {
            self.free.push(dst);
            return Err(NoFreeFrame);
        };
        let room = out.len();
        match fill(orig, out) {
            Some(n) if n <= room => Ok(Some(XdpDesc {
                addr: dst,
                len: n as u32,
                options: 0,
            })),
            _ => {
                self.free.push(dst);
                Ok(None)
            }
        }
    }

    #[inline]
    fn free(&mut self, addr: u64) {
        self.free.push(self.umem.chunk_of(addr));
    }

    #[inline]
    fn tx(&mut self, port: usize, d: XdpDesc) {
        let s = self.cur_q * self.nports + port;
        match self.staged.get_mut(s) {
            Some(st) if st.len() < st.capacity() => st.push(d),
            _ => {
                self.stats.add(Counter::TxRingFull, 1);
                self.free.push(self.umem.chunk_of(d.addr));
            }
        }
    }
}

impl PortIo for XdpIo {
    fn sources(&self) -> usize {
        self.socks.len()
    }
    fn port_of(&self, s: usize) -> usize {
        s % self.nports
    }
    #[inline]
    fn rx(&mut self, s: usize, out: &mut [XdpDesc]) -> usize {
        self.cur_q = s / self.nports;
        XdpIo::rx(self, s, out)
    }
    fn default_tx_queue(&mut self) {
        self.cur_q = 0;
    }
    fn alloc_read(&mut self, read: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<XdpDesc> {
        XdpIo::alloc_read(self, read)
    }
    fn flush_tx(&mut self) {
        XdpIo::flush_tx(self)
    }
    fn reap(&mut self) {
        XdpIo::reap(self)
    }
    fn refill(&mut self) {
        XdpIo::refill(self)
    }
    fn in_tx(&self) -> u32 {
        XdpIo::in_tx(self)
    }
    fn drop_staged(&mut self) {
        XdpIo::drop_staged(self)
    }
    fn report(&mut self) -> ShutdownReport {
        XdpIo::report(self)
    }
    fn kernel_stats(&self) -> crate::xsk::sys::XdpStatistics {
        XdpIo::kernel_stats(self)
    }
    fn poll_fds(&self, out: &mut [i32]) -> usize {
        let mut n = 0;
        for (o, fd) in out.iter_mut().zip(self.fds()) {
            *o = fd.as_raw_fd();
            n += 1;
        }
        n
    }
}
