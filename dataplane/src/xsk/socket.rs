//! One AF_XDP socket bound to (interface, queue), with its four rings mapped.
//!
//! The first socket of a UMEM registers it (`XDP_UMEM_REG`) and binds with `XDP_USE_NEED_WAKEUP`
//! plus the zero-copy choice; every further socket on the same UMEM (another port's queue) binds
//! with `XDP_SHARED_UMEM` and the first socket's fd, and brings its own fill and completion
//! rings (one pair per (device, queue)). The kernel refuses mode flags on a shared bind: those
//! sockets inherit the first one's mode.

use super::ring::{ConsRing, Mapping, ProdRing};
use super::sys::{self, errno_name, MmapOffsets, SockaddrXdp, XdpDesc, XdpUmemReg};
use super::umem::Umem;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Zero-copy policy of the first socket on a UMEM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ZeroCopy {
    /// Let the kernel pick (zero-copy when the driver offers it) and report which it chose.
    Auto,
    /// Fail unless the driver does zero-copy.
    Require,
    /// Always copy mode.
    Off,
}

/// Ring sizes of one socket (powers of two).
#[derive(Clone, Copy, Debug)]
pub struct RingSizes {
    pub rx: u32,
    pub tx: u32,
    pub fill: u32,
    pub comp: u32,
}

pub struct XskSocket {
    fd: OwnedFd,
    pub rx: ConsRing<XdpDesc>,
    pub tx: ProdRing<XdpDesc>,
    pub fill: ProdRing<u64>,
    pub comp: ConsRing<u64>,
    zero_copy: bool,
    queue: u32,
}

/// What went wrong, with the step and errno, for the operator.
fn step_err(step: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{step}: {} ({e})", errno_name(&e)))
}

impl XskSocket {
    /// Opens a socket on `ifindex`/`queue`. `shared_with`: the fd number of the socket that
    /// registered `umem` (None: this socket registers it); it must stay open while this one is.
    pub fn open(
        umem: &Umem,
        shared_with: Option<RawFd>,
        ifindex: u32,
        queue: u32,
        sizes: RingSizes,
        zc: ZeroCopy,
    ) -> io::Result<XskSocket> {
        // SAFETY: plain socket(2) call; the result is checked and owned at once.
        let raw = unsafe { libc::socket(sys::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(step_err("socket(AF_XDP)", io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        if shared_with.is_none() {
            let reg = XdpUmemReg {
                addr: umem.base_addr(),
                len: umem.len() as u64,
                chunk_size: umem.frame_size(),
                headroom: 0,
                flags: 0,
                tx_metadata_len: 0,
            };
            sys::set_opt(fd.as_fd(), sys::XDP_UMEM_REG, &reg)
                .map_err(|e| step_err("XDP_UMEM_REG", e))?;
        }
        let f = fd.as_fd();
        sys::set_opt(f, sys::XDP_UMEM_FILL_RING, &sizes.fill)
            .map_err(|e| step_err("XDP_UMEM_FILL_RING", e))?;
        sys::set_opt(f, sys::XDP_UMEM_COMPLETION_RING, &sizes.comp)
            .map_err(|e| step_err("XDP_UMEM_COMPLETION_RING", e))?;
        sys::set_opt(f, sys::XDP_RX_RING, &sizes.rx).map_err(|e| step_err("XDP_RX_RING", e))?;
        sys::set_opt(f, sys::XDP_TX_RING, &sizes.tx).map_err(|e| step_err("XDP_TX_RING", e))?;
        // One kick may send up to this many frames in copy mode (newer kernels only).
        let budget = sizes.tx.min(256);
        let _ = sys::set_opt(f, sys::XDP_MAX_TX_SKB_BUDGET, &budget);
        let (off, _) = sys::get_opt::<MmapOffsets>(f, sys::XDP_MMAP_OFFSETS)
            .map_err(|e| step_err("XDP_MMAP_OFFSETS", e))?;
        let map = |o: &sys::RingOffset, n: u32, each: usize, pgoff| {
            Mapping::ring(f, o.desc as usize + n as usize * each, pgoff)
                .map_err(|e| step_err("mmap ring", e))
        };
        let rx = ConsRing::new(
            map(&off.rx, sizes.rx, 16, sys::XDP_PGOFF_RX_RING)?,
            &off.rx,
            sizes.rx,
        )?;
        let tx = ProdRing::new(
            map(&off.tx, sizes.tx, 16, sys::XDP_PGOFF_TX_RING)?,
            &off.tx,
            sizes.tx,
        )?;
        let fill = ProdRing::new(
            map(&off.fr, sizes.fill, 8, sys::XDP_UMEM_PGOFF_FILL_RING)?,
            &off.fr,
            sizes.fill,
        )?;
        let comp = ConsRing::new(
            map(&off.cr, sizes.comp, 8, sys::XDP_UMEM_PGOFF_COMPLETION_RING)?,
            &off.cr,
            sizes.comp,
        )?;
        let flags = match (shared_with, zc) {
            (Some(_), _) => sys::XDP_SHARED_UMEM,
            (None, ZeroCopy::Auto) => sys::XDP_USE_NEED_WAKEUP,
            (None, ZeroCopy::Require) => sys::XDP_USE_NEED_WAKEUP | sys::XDP_ZEROCOPY,
            (None, ZeroCopy::Off) => sys::XDP_USE_NEED_WAKEUP | sys::XDP_COPY,
        };
        let addr = SockaddrXdp {
            family: sys::AF_XDP as u16,
            flags,
            ifindex,
            queue_id: queue,
            shared_umem_fd: shared_with.map_or(0, |s| s as u32),
        };
        // A queue released by a socket that just closed stays busy until the kernel's deferred
        // cleanup runs (~100 ms measured): retry EBUSY for a second.
        let deadline = Instant::now() + Duration::from_secs(1);
        loop {
            // SAFETY: `addr` is a live sockaddr_xdp and the length is its size.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &addr as *const SockaddrXdp as *const libc::sockaddr,
                    std::mem::size_of::<SockaddrXdp>() as libc::socklen_t,
                )
            };
            if r == 0 {
                break;
            }
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            if e.raw_os_error() == Some(libc::EOPNOTSUPP) && zc == ZeroCopy::Require {
                return Err(step_err(
                    "zero_copy = \"require\", but the driver has no AF_XDP zero-copy (bind)",
                    e,
                ));
            }
            return Err(step_err(
                &format!("bind(ifindex {ifindex}, queue {queue})"),
                e,
            ));
        }
        let zero_copy = sys::get_opt::<u32>(fd.as_fd(), sys::XDP_OPTIONS)
            .map(|(o, _)| o & sys::XDP_OPTIONS_ZEROCOPY != 0)
            .unwrap_or(false);
        Ok(XskSocket {
            fd,
            rx,
            tx,
            fill,
            comp,
            zero_copy,
            queue,
        })
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Asks the kernel to send what the TX ring holds (`sendto(MSG_DONTWAIT)`). EAGAIN and
    /// EBUSY mean "try again next round"; other errors are returned.
    pub fn kick_tx(&self) -> io::Result<()> {
        // SAFETY: a zero-length sendto with null buffers is the documented AF_XDP TX kick; no
        // memory of ours is read.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                std::ptr::null(),
                0,
                libc::MSG_DONTWAIT,
                std::ptr::null(),
                0,
            )
        };
        if r >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EBUSY) | Some(libc::ENOBUFS) | Some(libc::ENETDOWN) => {
                Ok(())
            }
            _ => Err(e),
        }
    }

    /// Wakes the driver's RX side when the fill ring asks for it (zero-copy drivers).
    pub fn wake_rx(&self) {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        unsafe {
            libc::poll(&mut p, 1, 0);
        }
    }

    /// The kernel's drop counters for this socket.
    pub fn statistics(&self) -> io::Result<sys::XdpStatistics> {
        sys::get_opt(self.fd.as_fd(), sys::XDP_STATISTICS).map(|(s, _)| s)
    }
}
