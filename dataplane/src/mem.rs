//! The in-memory backend: frames live in a heap frame store cut into chunks like a UMEM, tests and
//! benches inject frames as if a port received them, and what the pipeline transmits is either
//! captured per port (tests) or recycled at once (benches, no allocation).

use crate::frames::HeapFrames;
use crate::io::{FrameIo, NoFreeFrame};
use crate::xsk::XdpDesc;

pub struct MemIo {
    store: HeapFrames,
    capture: bool,
    sent: Vec<Vec<Vec<u8>>>,
}

impl MemIo {
    /// `frames` chunks of `frame_size` bytes, `ports` ports; `capture` keeps copies of what is
    /// sent.
    pub fn new(frames: u32, frame_size: u32, ports: usize, capture: bool) -> MemIo {
        MemIo {
            store: HeapFrames::new(frames, frame_size),
            capture,
            sent: vec![Vec::new(); ports],
        }
    }

    /// Copies `frame` into a free chunk, as a port's RX would; None when no chunk is free or
    /// the frame does not fit.
    pub fn inject(&mut self, frame: &[u8]) -> Option<XdpDesc> {
        if frame.len() > self.store.frame_size() {
            return None;
        }
        let addr = self.store.alloc()?;
        self.store.chunk_mut(addr)[..frame.len()].copy_from_slice(frame);
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

    /// Chunks on the free list (all of them when no frame is in flight).
    pub fn free_frames(&self) -> usize {
        self.store.free_count()
    }
}

impl FrameIo for MemIo {
    fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        self.store.frame(addr, len)
    }

    fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        self.store.frame_mut(addr, len)
    }

    fn room_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        self.store.room_mut(addr)
    }

    fn alloc_frame(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame> {
        self.store.alloc_frame(fill)
    }

    fn build_from(
        &mut self,
        src: u64,
        src_len: u32,
        fill: impl FnOnce(&[u8], &mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame> {
        self.store.build_from(src, src_len, fill)
    }

    fn free(&mut self, addr: u64) {
        self.store.free(addr);
    }

    fn tx(&mut self, port: usize, d: XdpDesc) {
        if self.capture {
            if let (Some(f), Some(s)) = (
                self.store.frame(d.addr, d.len).map(<[u8]>::to_vec),
                self.sent.get_mut(port),
            ) {
                s.push(f);
            }
        }
        self.store.free(d.addr);
    }
}
