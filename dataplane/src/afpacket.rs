//! The AF_PACKET backend, for ports where AF_XDP cannot be used (no AF_XDP in the kernel, or XDP
//! refuses to attach): one raw packet socket per port, frames received and sent in batches with
//! `recvmmsg`/`sendmmsg` (a syscall per batch, never per packet) into and out of the same kind of
//! chunked frame store the pipeline uses everywhere. Slower than AF_XDP (every frame is copied
//! by the kernel, and the kernel's own stack still sees the frames), hence the warning when the
//! daemon falls back to it. One worker only: AF_PACKET has no per-queue binding here.

use crate::afxdp::ShutdownReport;
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
    arena: Vec<u8>,
    frames: u32,
    free: Vec<u64>,
    staged: Vec<Vec<XdpDesc>>,
    grabbed: Vec<u64>,
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
            arena: vec![0; frames as usize * FRAME],
            frames,
            free: (0..u64::from(frames))
                .rev()
                .map(|i| i * FRAME as u64)
                .collect(),
            grabbed: Vec::with_capacity(BATCH),
        })
    }

    fn chunk(addr: u64) -> u64 {
        addr & !(FRAME as u64 - 1)
    }
}

impl FrameIo for PacketIo {
    fn frame(&self, addr: u64, len: u32) -> Option<&[u8]> {
        let end = addr.checked_add(u64::from(len))?;
        if len as usize > FRAME || Self::chunk(addr) != Self::chunk(end.saturating_sub(1).max(addr))
        {
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
        let (s, d) = (src as usize, dst as usize);
        let (orig, out) = if s < d {
            let (a, b) = self.arena.split_at_mut(d);
            (&a[s..s + src_len as usize], &mut b[..FRAME])
        } else {
            let (a, b) = self.arena.split_at_mut(s);
            (&b[..src_len as usize], &mut a[d..d + FRAME])
        };
        match fill(orig, out) {
            Some(n) if n <= FRAME => Ok(Some(XdpDesc {
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
        self.free.push(Self::chunk(addr));
    }

    fn tx(&mut self, port: usize, d: XdpDesc) {
        match self.staged.get_mut(port) {
            Some(s) if s.len() < s.capacity() => s.push(d),
            _ => self.free.push(Self::chunk(d.addr)),
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
        let k = out.len().min(BATCH).min(self.free.len());
        if k == 0 {
            return 0;
        }
        self.grabbed.clear();
        for _ in 0..k {
            if let Some(a) = self.free.pop() {
                self.grabbed.push(a);
            }
        }
        let base = self.arena.as_mut_ptr();
        let mut iov = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: mmsghdr is plain old data; zero is a valid value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        for (i, &a) in self.grabbed.iter().enumerate() {
            // SAFETY: `a` is a chunk start inside the arena (from the free list), so the
            // FRAME bytes after it are in bounds.
            iov[i].iov_base = unsafe { base.add(a as usize) }.cast();
            iov[i].iov_len = FRAME;
            msgs[i].msg_hdr.msg_iov = &mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: `msgs[..k]` point at `iov[..k]`, which point at distinct free chunks of the
        // arena (not borrowed elsewhere: they sit in `grabbed` only); the call writes at most
        // FRAME bytes into each and fills msg_len.
        let n = unsafe {
            libc::recvmmsg(
                self.socks[s].as_raw_fd(),
                msgs.as_mut_ptr(),
                self.grabbed.len() as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let n = if n < 0 { 0 } else { n as usize };
        for i in 0..n {
            out[i] = XdpDesc {
                addr: self.grabbed[i],
                len: msgs[i].msg_len.min(FRAME as u32),
                options: 0,
            };
        }
        for &a in &self.grabbed[n..] {
            self.free.push(a);
        }
        n
    }

    fn default_tx_queue(&mut self) {}

    fn alloc_read(&mut self, read: impl FnOnce(&mut [u8]) -> Option<usize>) -> Option<XdpDesc> {
        let a = self.free.pop()?;
        let chunk = &mut self.arena[a as usize..a as usize + FRAME];
        match read(chunk) {
            Some(n) if n > 0 && n <= FRAME => Some(XdpDesc {
                addr: a,
                len: n as u32,
                options: 0,
            }),
            _ => {
                self.free.push(a);
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
            let base = self.arena.as_mut_ptr();
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH];
            // SAFETY: plain old data; zero is valid.
            let mut msgs: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
            for (i, d) in self.staged[p][..k].iter().enumerate() {
                // SAFETY: staged descriptors lie inside one chunk of the arena (checked by
                // `frame` when they were made), so addr..addr+len is in bounds.
                iov[i].iov_base = unsafe { base.add(d.addr as usize) }.cast();
                iov[i].iov_len = d.len as usize;
                msgs[i].msg_hdr.msg_iov = &mut iov[i];
                msgs[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: the kernel only reads the k frames described, all inside the arena.
            let n = unsafe {
                libc::sendmmsg(
                    self.socks[p].as_raw_fd(),
                    msgs.as_mut_ptr(),
                    k as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            let n = if n < 0 { 0 } else { n as usize };
            for d in self.staged[p].drain(..n) {
                self.free.push(Self::chunk(d.addr));
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
                self.free.push(Self::chunk(d.addr));
            }
        }
    }

    fn report(&mut self) -> ShutdownReport {
        let free = self.free.len() as u32;
        let in_tx = self.in_tx();
        ShutdownReport {
            frames: self.frames,
            free,
            in_fill: 0,
            in_tx,
            lost: self.frames.saturating_sub(free + in_tx),
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
