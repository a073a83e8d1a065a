//! A heap frame store cut into equal power-of-two chunks, like a UMEM: the in-memory and
//! AF_PACKET backends keep their frames here, address them the same way (chunk offset plus
//! length) and recycle them through a free list that never grows after `new`.

use crate::io::NoFreeFrame;
use crate::xsk::XdpDesc;

pub struct HeapFrames {
    arena: Vec<u8>,
    frame_size: u32,
    frames: u32,
    free: Vec<u64>,
}

impl HeapFrames {
    /// `frames` chunks of `frame_size` bytes (rounded up to a power of two, at least 64).
    pub fn new(frames: u32, frame_size: u32) -> HeapFrames {
        let frame_size = frame_size.max(64).next_power_of_two();
        HeapFrames {
            arena: vec![0; frames as usize * frame_size as usize],
            frame_size,
            frames,
            free: (0..u64::from(frames))
                .rev()
                .map(|i| i * u64::from(frame_size))
                .collect(),
        }
    }

    pub fn frame_size(&self) -> usize {
        self.frame_size as usize
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    /// Chunks on the free list.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub fn chunk_of(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.frame_size) - 1)
    }

    /// `len` bytes at `addr`, when they lie inside one chunk.
    pub fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let end = addr.checked_add(u64::from(len))?;
        if end > self.arena.len() as u64
            || (len > 0 && self.chunk_of(addr) != self.chunk_of(end - 1))
        {
            return None;
        }
        self.arena.get(addr as usize..end as usize)
    }

    /// [`Self::frame`], writable.
    pub fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let end = addr.checked_add(u64::from(len))?;
        if end > self.arena.len() as u64
            || (len > 0 && self.chunk_of(addr) != self.chunk_of(end - 1))
        {
            return None;
        }
        self.arena.get_mut(addr as usize..end as usize)
    }

    /// A free chunk's address.
    pub fn alloc(&mut self) -> Option<u64> {
        self.free.pop()
    }

    /// Returns the chunk holding `addr`.
    pub fn free(&mut self, addr: u64) {
        let c = self.chunk_of(addr);
        debug_assert!(!self.free.contains(&c), "double free of chunk {c}");
        self.free.push(c);
    }

    /// From `addr` to the end of its chunk, writable (a frame and the room after it).
    pub fn room_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let end = self
            .chunk_of(addr)
            .checked_add(u64::from(self.frame_size))?;
        if end > self.arena.len() as u64 {
            return None;
        }
        self.arena.get_mut(addr as usize..end as usize)
    }

    /// The whole chunk at `addr` (a chunk start from `alloc`), writable.
    pub fn chunk_mut(&mut self, addr: u64) -> &mut [u8] {
        let a = self.chunk_of(addr) as usize;
        let fs = self.frame_size as usize;
        &mut self.arena[a..a + fs]
    }

    /// Start of the arena, for system calls that fill or read chunks in place (AF_PACKET).
    pub fn base_ptr(&mut self) -> *mut u8 {
        self.arena.as_mut_ptr()
    }

    /// A new frame written by `fill` from the frame at (`src`, `src_len`): see
    /// [`crate::io::FrameIo::build_from`].
    /// A free chunk filled by `fill` (see [`crate::io::FrameIo::alloc_frame`]).
    pub fn alloc_frame(
        &mut self,
        fill: impl FnOnce(&mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame> {
        let dst = self.free.pop().ok_or(NoFreeFrame)?;
        let fs = self.frame_size as usize;
        let d = dst as usize;
        match fill(&mut self.arena[d..d + fs]) {
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

    pub fn build_from(
        &mut self,
        src: u64,
        src_len: u32,
        fill: impl FnOnce(&[u8], &mut [u8]) -> Option<usize>,
    ) -> Result<Option<XdpDesc>, NoFreeFrame> {
        self.frame(src, src_len).ok_or(NoFreeFrame)?;
        let dst = self.free.pop().ok_or(NoFreeFrame)?;
        let fs = self.frame_size as usize;
        let (s, d) = (src as usize, dst as usize);
        // Split the arena so the source and the new chunk (different chunks) borrow together.
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
}
