//! The AF_PACKET backend, for ports where AF_XDP cannot be used (no AF_XDP in the kernel, or XDP
//! refuses to attach): one raw packet socket per port, frames received and sent in batches with
//! `recvmmsg`/`sendmmsg` (a syscall per batch, never per packet) into and out of the same kind of
//! chunked frame store the pipeline uses everywhere. Slower than AF_XDP (every frame is copied
//! by the kernel, and the kernel's own stack still sees the frames), hence the warning when the
//! daemon falls back to it. One worker only: AF_PACKET has no per-queue binding here.

use crate::afxdp::ShutdownReport;
use crate::frames::HeapFrames;
use crate::io::{FrameIo, NoFreeFrame, PortIo};
use crate::pipeline::BATCH;
use crate::xsk::sys::XdpStatistics;
use crate::xsk::XdpDesc;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const FRAME: usize = 2048;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

fn packet_socket(ifindex: u32) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain old data; zero is a valid value.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: `sll` is a live sockaddr_ll and the length is its size.
    let r = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let one: libc::c_int = 1;
    // SAFETY: an int option; our own transmissions must not come back as receptions.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_IGNORE_OUTGOING,
            (&one as *const libc::c_int).cast(),
            4,
        );
    }
    let mreq = libc::packet_mreq {
        mr_ifindex: ifindex as i32,
        mr_type: libc::PACKET_MR_PROMISC as u16,
        mr_alen: 0,
        mr_address: [0; 8],
    };
    // SAFETY: a packet_mreq option: a bridge port must see frames for every MAC.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_PACKET,
            libc::PACKET_ADD_MEMBERSHIP,
            (&mreq as *const libc::packet_mreq).cast(),
            std::mem::size_of::<libc::packet_mreq>() as libc::socklen_t,
        );
    }
    Ok(fd)
}

/// One worker's AF_PACKET I/O: a socket per port, a heap frame store, TX staging per port.
pub struct PacketIo {
    socks: Vec<OwnedFd>,
    store: HeapFrames,
    staged: Vec<Vec<XdpDesc>>,
    grabbed: Vec<XdpDesc>,
}

/// Runs `recvmmsg` (`send == false`) or `sendmmsg` on `fd` over `descs` (at most [`BATCH`]),
/// each message one frame of `store` (`len` bytes at `addr`; for receiving, the room of the
/// chunk). Returns how many messages went through and, for receiving, sets each `len`.
fn mmsg(fd: &OwnedFd, store: &mut HeapFrames, descs: &mut [XdpDesc], send: bool) -> usize {
    let k = descs.len().min(BATCH);
    let base = store.base_ptr();
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; BATCH];
    // SAFETY: mmsghdr is plain old data; zero is a valid value.
    let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for (i, d) in descs[..k].iter().enumerate() {
        // SAFETY: every descriptor lies inside one chunk of the store (chunk starts from the
        // free list for receiving, frames checked by `frame` for sending), so the range is in
        // bounds of the arena.
        iov[i].iov_base = unsafe { base.add(d.addr as usize) }.cast();
        iov[i].iov_len = d.len as usize;
        msgs[i].msg_hdr.msg_iov = &mut iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `msgs[..k]` point at `iov[..k]`, which point at distinct chunks of the arena that
    // nothing else borrows during the call; the kernel reads (send) or writes at most `iov_len`
    // bytes of each (receive) and fills `msg_len`.
    let n = unsafe {
        if send {
            libc::sendmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                k as u32,
                libc::MSG_DONTWAIT,
            )
        } else {
            libc::recvmmsg(
                fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                k as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        }
    };
    let n = if n < 0 { 0 } else { n as usize };
    if !send {
        for (d, m) in descs.iter_mut().zip(&msgs[..n]) {
            d.len = m.msg_len.min(d.len);
        }
    }
    n
}

impl PacketIo {
    /// Opens a socket on each port (by ifindex) and a store of `frames` 2 KiB frames.
    pub fn open(ifindexes: &[u32], frames: u32) -> io::Result<PacketIo> {
        let socks = ifindexes
            .iter()
            .map(|&i| packet_socket(i))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(PacketIo {
            staged: (0..socks.len())
                .map(|_| Vec::with_capacity(4 * BATCH))
                .collect(),
            socks,
            store: HeapFrames::new(frames, FRAME as u32),
            grabbed: Vec::with_capacity(BATCH),
        })
    }
}

impl FrameIo for PacketIo {
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
        match self.staged.get_mut(port) {
            Some(s) if s.len() < s.capacity() => s.push(d),
            _ => self.store.free(d.addr),
        }
    }
}

impl PortIo for PacketIo {
    fn sources(&self) -> usize {
        self.socks.len()
    }

    fn port_of(&self, s: usize) -> usize {
        s
    }

    fn rx(&mut self, s: usize, out: &mut [XdpDesc]) -> usize {
        self.grabbed.clear();
        while self.grabbed.len() < out.len().min(BATCH) {
            let Some(addr) = self.store.alloc() else {
                break;
            };
            self.grabbed.push(XdpDesc {
                addr,
                len: FRAME as u32,
                options: 0,
            });
        }
        let n = mmsg(&self.socks[s], &mut self.store, &mut self.grabbed, false);
        out[..n].copy_from_slice(&self.grabbed[..n]);
        for d in &self.grabbed[n..] {
            self.store.free(d.addr);
        }
        n
    }

    fn default_tx_queue(&mut self) {}

    fn alloc_read(&mut self, read: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<XdpDesc> {
        let a = self.store.alloc()?;
        match read(self.store.chunk_mut(a)) {
            Some(n) if n > 0 && n <= FRAME => Some(XdpDesc {
                addr: a,
                len: n as u32,
                options: 0,
            }),
            _ => {
                self.store.free(a);
                None
            }
        }
    }

    fn flush_tx(&mut self) {
        for p in 0..self.socks.len() {
            let k = self.staged[p].len().min(BATCH);
            if k == 0 {
                continue;
            }
            let n = mmsg(
                &self.socks[p],
                &mut self.store,
                &mut self.staged[p][..k],
                true,
            );
            for d in self.staged[p].drain(..n) {
                self.store.free(d.addr);
            }
        }
    }

    fn reap(&mut self) {}

    fn refill(&mut self) {}

    fn in_tx(&self) -> u32 {
        self.staged.iter().map(|s| s.len() as u32).sum()
    }

    fn drop_staged(&mut self) {
        for p in 0..self.staged.len() {
            while let Some(d) = self.staged[p].pop() {
                self.store.free(d.addr);
            }
        }
    }

    fn report(&mut self) -> ShutdownReport {
        let free = self.store.free_count() as u32;
        let in_tx = self.in_tx();
        let frames = self.store.frames();
        ShutdownReport {
            frames,
            free,
            in_fill: 0,
            in_tx,
            lost: frames.saturating_sub(free + in_tx),
        }
    }

    fn kernel_stats(&self) -> XdpStatistics {
        XdpStatistics::default()
    }

    fn poll_fds(&self, out: &mut [i32]) -> usize {
        let mut n = 0;
        for (o, s) in out.iter_mut().zip(&self.socks) {
            *o = s.as_raw_fd();
            n += 1;
        }
        n
    }
}
