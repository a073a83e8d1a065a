//! The in-memory backend: frames live in a heap arena cut into chunks like a UMEM, tests and
//! benches inject frames as if a port received them, and what the pipeline transmits is either
//! captured per port (tests) or counted and recycled at once (benches, no allocation).

use crate::io::{FrameIo, NoFreeFrame};
use crate::xsk::XdpDesc;

pub struct MemIo {
    arena: Vec<u8>,
    frame_size: u32,
    free: Vec<u64>,
    capture: bool,
    sent: Vec<Vec<Vec<u8>>>,
    tx_count: Vec<u64>,
}

impl MemIo {
    /// `frames` chunks of `frame_size` bytes, `ports` ports; `capture` keeps copies of what is
    /// sent.
    pub fn new(frames: u32, frame_size: u32, ports: usize, capture: bool) -> MemIo {
        let frame_size = frame_size.max(64).next_power_of_two();
        MemIo {
            arena: vec![0; frames as usize * frame_size as usize],
            frame_size,
            free: (0..u64::from(frames))
                .rev()
                .map(|i| i * u64::from(frame_size))
                .collect(),
            capture,
            sent: vec![Vec::new(); ports],
            tx_count: vec![0; ports],
        }
    }

    /// Copies `frame` into a free chunk, as a port's RX would; None when no chunk is free or
    /// the frame does not fit.
    pub fn inject(&mut self, frame: &[u8]) -> Option<XdpDesc> {
        if frame.len() > self.frame_size as usize {
            return None;
        }
        let addr = self.free.pop()?;
        let a = addr as usize;
        self.arena[a..a + frame.len()].copy_from_slice(frame);
        Some(XdpDesc {
            addr,
            len: frame.len() as u32,
            options: 0,
        })
    }

    /// Frames sent on `port` since the last call (capture mode).
    pub fn take_sent(&mut self, port: usize) -> Vec<Vec<u8>> {
        self.sent
            .get_mut(port)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Frames sent per port (both modes).
    pub fn tx_count(&self, port: usize) -> u64 {
        self.tx_count.get(port).copied().unwrap_or(0)
    }

    /// Chunks on the free list (all of them when no frame is in flight).
    pub fn free_frames(&self) -> usize {
        self.free.len()
    }

    fn chunk(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.frame_size) - 1)
    }
}

impl FrameIo for MemIo {
    fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let end = addr.checked_add(u64::from(len))?;
        if end > self.arena.len() as u64 || (len > 0 && self.chunk(addr) != self.chunk(end - 1)) {
            return None;
        }
        self.arena.get(addr as usize..end as usize)
    }

    fn build_from(
        &mut self,
        src: u64,
        src_len: u32,
        fill: impl FnOnce(&[u8], &mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame> {
        self.frame(src, src_len).ok_or(NoFreeFrame)?;
        let dst = self.free.pop().ok_or(NoFreeFrame)?;
        let fs = self.frame_size as usize;
        let (s, d) = (src as usize, dst as usize);
        // Split the arena so the source and the new chunk can be borrowed together.
        let (orig, out) = if s < d {
            let (a, b) = self.arena.split_at_mut(d);
            (&a[s..s + src_len as usize], &mut b[..fs])
        } else {
            let (a, b) = self.arena.split_at_mut(s);
            (&b[..src_len as usize], &mut a[d..d + fs])
        };
        match fill(orig, out) {
            Some(n) if n <= fs => Ok(Some(XdpDesc {
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

    fn free(&mut self, addr: u64) {
        let c = self.chunk(addr);
        debug_assert!(!self.free.contains(&c), "double free of chunk {c}");
        self.free.push(c);
    }

    fn tx(&mut self, port: usize, d: XdpDesc) {
        if let Some(n) = self.tx_count.get_mut(port) {
            *n += 1;
        }
        if self.capture {
            if let (Some(f), Some(s)) = (
                self.frame(d.addr, d.len).map(<[u8]>::to_vec),
                self.sent.get_mut(port),
            ) {
                s.push(f);
            }
        }
        self.free(d.addr);
    }
}
