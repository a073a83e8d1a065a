//! The four AF_XDP rings as safe types over their shared mappings.
//!
//! A ring is an array of `size` entries (a power of two) plus a producer and a consumer index
//! that run freely and wrap at 2^32; the kernel and this process each own one index. The
//! producer writes entries, then publishes with a Release store of its index; the consumer reads
//! the producer index with Acquire, reads the entries, then gives them back with a Release store
//! of its own index (the protocol of the kernel's `xsk_queue.h` and libxdp's `xsk.h`). Cached
//! copies of the other side's index keep the shared cache lines cold until the ring looks empty
//! or full.
//!
//! [`ProdRing`] is the fill and TX side (we produce), [`ConsRing`] the RX and completion side (we
//! consume). Both work on whole batches: `push` / `pop` move up to a slice of entries with one
//! index store, so the cost per frame is the copy of a 16- or 8-byte entry.

use super::sys::{self, RingOffset};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// A shared memory mapping, unmapped on drop.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; the types built on it decide who may touch what, and the
// kernel side is synchronised through the ring indices' atomics.
unsafe impl Send for Mapping {}

impl Mapping {
    /// `mmap(NULL, len, RW, MAP_SHARED|MAP_POPULATE, fd, offset)`: a ring of an AF_XDP socket.
    pub fn ring(fd: BorrowedFd<'_>, len: usize, offset: libc::off_t) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping chosen by the kernel (NULL hint) cannot alias any Rust object;
        // the result is checked for MAP_FAILED before use.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    /// Anonymous private memory (the UMEM), populated up front so that no page fault happens on
    /// the data path.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        // SAFETY: as above, a fresh anonymous mapping aliases nothing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and nothing borrowed from the
        // mapping outlives `self` (every user holds the Mapping it reads through).
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

/// The raw parts of a mapped ring, checked against the mapping's length once.
struct RawRing<T> {
    /// Keeps the memory mapped for as long as the pointers below are used.
    _map: Mapping,
    producer: *const AtomicU32,
    consumer: *const AtomicU32,
    flags: *const AtomicU32,
    entries: *mut T,
    mask: u32,
}

impl<T: Copy> RawRing<T> {
    fn new(map: Mapping, off: &RingOffset, size: u32) -> io::Result<RawRing<T>> {
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        if !size.is_power_of_two() {
            return Err(bad("ring size is not a power of two"));
        }
        let entries_end = off.desc as usize + size as usize * std::mem::size_of::<T>();
        let idx_ok = |o: u64| o as usize + 4 <= map.len() && o.is_multiple_of(4);
        if entries_end > map.len()
            || !idx_ok(off.producer)
            || !idx_ok(off.consumer)
            || !idx_ok(off.flags)
            || !(off.desc as usize).is_multiple_of(std::mem::align_of::<T>())
        {
            return Err(bad(
                "ring offsets from XDP_MMAP_OFFSETS fall outside the mapping",
            ));
        }
        let base = map.as_ptr();
        // SAFETY: every offset was just checked to lie inside the mapping and to be aligned for
        // its type, so these pointers stay in bounds for the mapping's lifetime (owned here).
        let (producer, consumer, flags, entries) = unsafe {
            (
                base.add(off.producer as usize) as *const AtomicU32,
                base.add(off.consumer as usize) as *const AtomicU32,
                base.add(off.flags as usize) as *const AtomicU32,
                base.add(off.desc as usize) as *mut T,
            )
        };
        Ok(RawRing {
            _map: map,
            producer,
            consumer,
            flags,
            entries,
            mask: size - 1,
        })
    }

    fn producer(&self) -> &AtomicU32 {
        // SAFETY: in bounds and aligned (checked in `new`), valid while `self.map` lives; the
        // kernel writes it concurrently, which is why it is accessed only as an atomic.
        unsafe { &*self.producer }
    }

    fn consumer(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.consumer }
    }

    fn flags(&self) -> &AtomicU32 {
        // SAFETY: as for `producer`.
        unsafe { &*self.flags }
    }

    fn read(&self, idx: u32) -> T {
        // SAFETY: `idx & mask` < size and the entry array was checked to fit the mapping. The
        // entry is owned by us (between the consumer index and the producer index we loaded with
        // Acquire), so the kernel does not write it concurrently.
        unsafe { self.entries.add((idx & self.mask) as usize).read_volatile() }
    }

    fn write(&self, idx: u32, v: T) {
        // SAFETY: in bounds as in `read`; the slot lies between our producer index and the
        // consumer index we loaded with Acquire, so the kernel is not reading it yet.
        unsafe {
            self.entries
                .add((idx & self.mask) as usize)
                .write_volatile(v)
        }
    }

    fn size(&self) -> u32 {
        self.mask + 1
    }
}

/// A ring we produce into: the fill ring (frame addresses) and the TX ring (descriptors).
pub struct ProdRing<T> {
    raw: RawRing<T>,
    cached_prod: u32,
    cached_cons: u32,
}

// SAFETY: the ring is used by one thread at a time (moved into its worker); the kernel side is
// synchronised through the atomics.
unsafe impl<T: Send> Send for ProdRing<T> {}

impl<T: Copy> ProdRing<T> {
    pub fn new(map: Mapping, off: &RingOffset, size: u32) -> io::Result<ProdRing<T>> {
        let raw = RawRing::new(map, off, size)?;
        let cached_prod = raw.producer().load(Ordering::Relaxed);
        let cached_cons = raw.consumer().load(Ordering::Acquire);
        Ok(ProdRing {
            raw,
            cached_prod,
            cached_cons,
        })
    }

    /// Entries the kernel has not consumed yet (refreshes the consumer index).
    pub fn in_flight(&mut self) -> u32 {
        self.cached_cons = self.raw.consumer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Free slots, refreshing the kernel's consumer index only when the cached view is short.
    pub fn free(&mut self, want: u32) -> u32 {
        let free = self.raw.size() - self.cached_prod.wrapping_sub(self.cached_cons);
        if free >= want {
            return free;
        }
        self.cached_cons = self.raw.consumer().load(Ordering::Acquire);
        self.raw.size() - self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Publishes as many of `items` as fit; returns how many.
    pub fn push(&mut self, items: &[T]) -> usize {
        let n = (self.free(items.len() as u32) as usize).min(items.len());
        for (i, v) in items[..n].iter().enumerate() {
            self.raw.write(self.cached_prod.wrapping_add(i as u32), *v);
        }
        if n > 0 {
            self.cached_prod = self.cached_prod.wrapping_add(n as u32);
            self.raw
                .producer()
                .store(self.cached_prod, Ordering::Release);
        }
        n
    }

    /// Whether the kernel asked to be woken (`XDP_RING_NEED_WAKEUP`).
    pub fn needs_wakeup(&self) -> bool {
        // The flag must be read after the producer store above is visible.
        fence(Ordering::SeqCst);
        self.raw.flags().load(Ordering::Relaxed) & sys::XDP_RING_NEED_WAKEUP != 0
    }

    pub fn size(&self) -> u32 {
        self.raw.size()
    }
}

/// A ring we consume from: the RX ring (descriptors) and the completion ring (addresses).
pub struct ConsRing<T> {
    raw: RawRing<T>,
    cached_prod: u32,
    cached_cons: u32,
}

// SAFETY: as for ProdRing.
unsafe impl<T: Send> Send for ConsRing<T> {}

impl<T: Copy> ConsRing<T> {
    pub fn new(map: Mapping, off: &RingOffset, size: u32) -> io::Result<ConsRing<T>> {
        let raw = RawRing::new(map, off, size)?;
        let cached_cons = raw.consumer().load(Ordering::Relaxed);
        let cached_prod = raw.producer().load(Ordering::Acquire);
        Ok(ConsRing {
            raw,
            cached_prod,
            cached_cons,
        })
    }

    /// Entries ready to read, refreshing the producer index when the cached view is empty.
    pub fn available(&mut self) -> u32 {
        let n = self.cached_prod.wrapping_sub(self.cached_cons);
        if n > 0 {
            return n;
        }
        self.cached_prod = self.raw.producer().load(Ordering::Acquire);
        self.cached_prod.wrapping_sub(self.cached_cons)
    }

    /// Copies up to `out.len()` entries out and gives their slots back at once.
    pub fn pop(&mut self, out: &mut [T]) -> usize {
        let n = (self.available() as usize).min(out.len());
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.raw.read(self.cached_cons.wrapping_add(i as u32));
        }
        if n > 0 {
            self.cached_cons = self.cached_cons.wrapping_add(n as u32);
            self.raw
                .consumer()
                .store(self.cached_cons, Ordering::Release);
        }
        n
    }

    pub fn size(&self) -> u32 {
        self.raw.size()
    }
}

#[cfg(test)]
mod tests {
    //! The ring arithmetic without a kernel: the test plays the kernel's side on the same memory.
    use super::*;

    fn pair(size: u32) -> (ProdRing<u64>, ConsRing<u64>) {
        // Layout: producer @0, consumer @64, flags @128, entries @192.
        let len = 192 + size as usize * 8;
        let off = RingOffset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 192,
        };
        // Two views of the same memory (a memfd mapped twice), one per side.
        let fd = memfd(len);
        let m1 = Mapping::ring(fd.as_fd_ref(), len, 0).unwrap();
        let m2 = Mapping::ring(fd.as_fd_ref(), len, 0).unwrap();
        (
            ProdRing::new(m1, &off, size).unwrap(),
            ConsRing::new(m2, &off, size).unwrap(),
        )
    }

    struct Memfd(std::os::fd::OwnedFd);
    impl Memfd {
        fn as_fd_ref(&self) -> BorrowedFd<'_> {
            use std::os::fd::AsFd;
            self.0.as_fd()
        }
    }

    fn memfd(len: usize) -> Memfd {
        use std::os::fd::FromRawFd;
        // SAFETY: memfd_create with a static NUL-terminated name; the fd is checked.
        let fd = unsafe { libc::memfd_create(c"pw-ring-test".as_ptr(), 0) };
        assert!(fd >= 0);
        // SAFETY: fd is a fresh descriptor we own.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: plain syscall on our own fd.
        assert_eq!(unsafe { libc::ftruncate(fd, len as libc::off_t) }, 0);
        Memfd(owned)
    }

    #[test]
    fn push_pop_wraps_and_respects_capacity() {
        let (mut p, mut c) = pair(8);
        let mut out = [0u64; 16];
        let mut next = 0u64;
        let mut expect = 0u64;
        for round in 0..1000u64 {
            let want = (round % 11) as usize;
            let items: Vec<u64> = (next..next + want as u64).collect();
            let pushed = p.push(&items);
            assert!(pushed <= 8);
            next += pushed as u64;
            let take = (round % 5) as usize + 1;
            let got = c.pop(&mut out[..take]);
            for v in &out[..got] {
                assert_eq!(*v, expect);
                expect += 1;
            }
            assert!(
                next - expect <= 8,
                "never more in flight than the ring holds"
            );
        }
        assert_eq!(p.in_flight() as u64, next - expect);
    }

    #[test]
    fn rejects_offsets_outside_the_mapping() {
        let fd = memfd(4096);
        let m = Mapping::ring(fd.as_fd_ref(), 4096, 0).unwrap();
        let off = RingOffset {
            producer: 0,
            consumer: 64,
            flags: 128,
            desc: 4000,
        };
        assert!(ProdRing::<u64>::new(m, &off, 64).is_err());
        let m = Mapping::ring(fd.as_fd_ref(), 4096, 0).unwrap();
        assert!(ConsRing::<u64>::new(m, &RingOffset::default(), 6).is_err());
    }
}
