//! The kernel's AF_XDP ABI (`linux/if_xdp.h`) and the few raw calls the ring layer makes:
//! constants, `#[repr(C)]` structures, and `setsockopt`/`getsockopt`/`mmap` wrappers that turn
//! `-1` into `io::Error`. Everything `unsafe` about talking to the kernel sits here or in
//! [`super::ring`] / [`super::umem`].

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

pub const AF_XDP: libc::c_int = 44;
pub const SOL_XDP: libc::c_int = 283;

pub const XDP_MMAP_OFFSETS: libc::c_int = 1;
pub const XDP_RX_RING: libc::c_int = 2;
pub const XDP_TX_RING: libc::c_int = 3;
pub const XDP_UMEM_REG: libc::c_int = 4;
pub const XDP_UMEM_FILL_RING: libc::c_int = 5;
pub const XDP_UMEM_COMPLETION_RING: libc::c_int = 6;
pub const XDP_STATISTICS: libc::c_int = 7;
pub const XDP_OPTIONS: libc::c_int = 8;
pub const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;

pub const XDP_SHARED_UMEM: u16 = 1 << 0;
pub const XDP_COPY: u16 = 1 << 1;
pub const XDP_ZEROCOPY: u16 = 1 << 2;
pub const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;
pub const XDP_RING_NEED_WAKEUP: u32 = 1;
pub const XDP_OPTIONS_ZEROCOPY: u32 = 1;

pub const XDP_PGOFF_RX_RING: libc::off_t = 0;
pub const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
pub const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;
pub const XDP_UMEM_PGOFF_COMPLETION_RING: libc::off_t = 0x1_8000_0000;

/// Where the copy-mode kernel puts a frame inside its chunk (before any configured headroom).
pub const XDP_PACKET_HEADROOM: u64 = 256;

/// `struct xdp_umem_reg` (32 bytes with `tx_metadata_len`; the last field must be zero).
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct XdpUmemReg {
    pub addr: u64,
    pub len: u64,
    pub chunk_size: u32,
    pub headroom: u32,
    pub flags: u32,
    pub tx_metadata_len: u32,
}

/// `struct sockaddr_xdp`.
#[repr(C)]
#[derive(Default, Clone, Copy)]
pub struct SockaddrXdp {
    pub family: u16,
    pub flags: u16,
    pub ifindex: u32,
    pub queue_id: u32,
    pub shared_umem_fd: u32,
}

/// `struct xdp_ring_offset`.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct MmapOffsets {
    pub rx: RingOffset,
    pub tx: RingOffset,
    pub fr: RingOffset,
    pub cr: RingOffset,
}

/// `struct xdp_desc`: one RX or TX descriptor.
#[repr(C)]
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpDesc {
    pub addr: u64,
    pub len: u32,
    pub options: u32,
}

/// `struct xdp_statistics` (the kernel fills as much as it knows).
#[repr(C)]
#[derive(Default, Clone, Copy, Debug)]
pub struct XdpStatistics {
    pub rx_dropped: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    pub rx_ring_full: u64,
    pub rx_fill_ring_empty_descs: u64,
    pub tx_ring_empty_descs: u64,
}

/// `setsockopt(fd, SOL_XDP, opt, value)`.
pub fn set_opt<T: Copy>(fd: BorrowedFd<'_>, opt: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a live, initialised `T` and the length passed is exactly its size; the
    // kernel only reads it.
    let r = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            opt,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `getsockopt(fd, SOL_XDP, opt)` into a zeroed `T`; returns it and the length the kernel wrote.
pub fn get_opt<T: Copy + Default>(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<(T, usize)> {
    let mut value = T::default();
    let mut len = std::mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, which is a live `T` of exactly
    // that size, and updates `len`; every `T` used here is plain old data (integers only).
    let r = unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            SOL_XDP,
            opt,
            &mut value as *mut T as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((value, len as usize))
    }
}

/// The errno name of an error, for messages operators can search for.
pub fn errno_name(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) => "EPERM",
        Some(libc::ENOENT) => "ENOENT",
        Some(libc::EINTR) => "EINTR",
        Some(libc::ENXIO) => "ENXIO",
        Some(libc::E2BIG) => "E2BIG",
        Some(libc::EBADF) => "EBADF",
        Some(libc::EAGAIN) => "EAGAIN",
        Some(libc::ENOMEM) => "ENOMEM",
        Some(libc::EACCES) => "EACCES",
        Some(libc::EFAULT) => "EFAULT",
        Some(libc::EBUSY) => "EBUSY",
        Some(libc::EEXIST) => "EEXIST",
        Some(libc::ENODEV) => "ENODEV",
        Some(libc::EINVAL) => "EINVAL",
        Some(libc::ENOSPC) => "ENOSPC",
        Some(libc::ERANGE) => "ERANGE",
        Some(libc::ENOPROTOOPT) => "ENOPROTOOPT",
        Some(libc::EAFNOSUPPORT) => "EAFNOSUPPORT",
        Some(libc::EOPNOTSUPP) => "EOPNOTSUPP",
        Some(libc::ENOBUFS) => "ENOBUFS",
        Some(libc::ENOTCONN) => "ENOTCONN",
        Some(libc::ENETDOWN) => "ENETDOWN",
        _ => "error",
    }
}
