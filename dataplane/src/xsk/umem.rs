//! The UMEM: one anonymous mapping cut into equal chunks ("frames") that the kernel and the
//! worker pass back and forth by address through the rings.
//!
//! Ownership rule (what makes the accessors below sound): at any moment each chunk is either held
//! by the kernel (its address sits in a fill or TX ring) or by the worker (it came out of the RX
//! or completion ring, or was never given away). The worker only reads or writes chunks it holds,
//! and `frame`/`chunk_mut` never hand out a range that crosses a chunk boundary. Only the worker
//! that owns the UMEM touches it, so `&mut self` keeps its own accesses exclusive.

use super::ring::Mapping;
use std::io;

/// Chunk sizes the kernel accepts in aligned mode.
pub const FRAME_SIZES: [u32; 2] = [2048, 4096];

pub struct Umem {
    map: Mapping,
    frame_size: u32,
    frames: u32,
}

impl Umem {
    /// Maps `frames` chunks of `frame_size` bytes (2048 or 4096).
    pub fn new(frames: u32, frame_size: u32) -> io::Result<Umem> {
        if !FRAME_SIZES.contains(&frame_size) || frames == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("UMEM frame size must be 2048 or 4096 and frames > 0 (got {frames} × {frame_size})"),
            ));
        }
        let map = Mapping::anonymous(frames as usize * frame_size as usize)?;
        Ok(Umem {
            map,
            frame_size,
            frames,
        })
    }

    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    pub fn frames(&self) -> u32 {
        self.frames
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Start address of the mapping (for `XDP_UMEM_REG`).
    pub(super) fn base_addr(&self) -> u64 {
        self.map.as_ptr() as u64
    }

    /// Address of chunk `i` (as the rings carry it).
    pub fn chunk_addr(&self, i: u32) -> u64 {
        u64::from(i) * u64::from(self.frame_size)
    }

    /// The chunk start of any address inside it.
    pub fn chunk_of(&self, addr: u64) -> u64 {
        addr & !(u64::from(self.frame_size) - 1)
    }

    /// `len` bytes at `addr`, when they lie inside one chunk of this UMEM.
    pub fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let (start, end) = self.range(addr, len)?;
        // SAFETY: `range` checked that [start, end) lies inside the mapping and inside one
        // chunk; by the ownership rule in the module doc the caller holds that chunk, so the
        // kernel does not write it while the borrow (tied to &self) lives.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), end - start) })
    }

    /// [`Self::frame`], writable.
    pub fn frame_mut(&mut self, addr: u64, len: u32) -> Option<&mut [u8]> {
        let (start, end) = self.range(addr, len)?;
        // SAFETY: as in `frame`, and `&mut self` makes this the only borrow of the UMEM.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(start), end - start) })
    }

    /// From `addr` to the end of its chunk, writable.
    pub fn chunk_mut(&mut self, addr: u64) -> Option<&mut [u8]> {
        let room = u64::from(self.frame_size) - (addr & (u64::from(self.frame_size) - 1));
        let (start, end) = self.range(addr, room as u32)?;
        // SAFETY: as in `frame`, and `&mut self` makes this the only borrow of the UMEM.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.as_ptr().add(start), end - start) })
    }

    /// Copies `bytes` into the chunk at `addr` (an address the caller holds).
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> bool {
        match self.chunk_mut(addr) {
            Some(c) if c.len() >= bytes.len() => {
                c[..bytes.len()].copy_from_slice(bytes);
                true
            }
            _ => false,
        }
    }

    /// The frame at (`src`, `len`) to read and the whole chunk at `dst` to write, together; None
    /// unless both are in range and in different chunks.
    pub fn pair_mut(&mut self, src: u64, len: u32, dst: u64) -> Option<(&[u8], &mut [u8])> {
        let (s0, s1) = self.range(src, len)?;
        let dst = self.chunk_of(dst);
        let (d0, d1) = self.range(dst, self.frame_size)?;
        if self.chunk_of(src) == dst {
            return None;
        }
        let base = self.map.as_ptr();
        // SAFETY: both ranges are in bounds (checked by `range`) and lie in different chunks, so
        // they do not overlap; `&mut self` makes them the only borrows of the UMEM, and the
        // caller holds both chunks (module doc).
        unsafe {
            Some((
                std::slice::from_raw_parts(base.add(s0), s1 - s0),
                std::slice::from_raw_parts_mut(base.add(d0), d1 - d0),
            ))
        }
    }

    fn range(&self, addr: u64, len: u32) -> Option<(usize, usize)> {
        let end = addr.checked_add(u64::from(len))?;
        let fs = u64::from(self.frame_size);
        if end > self.map.len() as u64 || (len > 0 && addr / fs != (end - 1) / fs) {
            return None;
        }
        Some((addr as usize, end as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_never_cross_chunks_or_the_end() {
        let mut u = Umem::new(4, 2048).unwrap();
        assert!(u.frame(0, 2048).is_some());
        assert!(u.frame(100, 2000).is_none(), "crosses into chunk 1");
        assert!(u.frame(3 * 2048, 2048).is_some());
        assert!(u.frame(4 * 2048, 1).is_none());
        assert!(u.frame(u64::MAX, 10).is_none());
        assert_eq!(u.chunk_mut(2048 + 256).unwrap().len(), 2048 - 256);
        assert!(u.write(2048 + 256, &[1, 2, 3]));
        assert_eq!(u.frame(2048 + 256, 3).unwrap(), &[1, 2, 3]);
        assert_eq!(u.chunk_of(2048 + 300), 2048);
        assert!(Umem::new(4, 1000).is_err());
    }
}
