//! The exception path's TAP interface: frames for the box itself are written into it (the host's
//! own stack answers them behind INPUT), and what the stack sends comes back out of it (through
//! OUTPUT), as DPDK applications do with their TAP/KNI ports.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

#[repr(C)]
struct IfReqFlags {
    name: [u8; 16],
    flags: libc::c_short,
    _pad: [u8; 22],
}

#[repr(C)]
struct IfReqHwaddr {
    name: [u8; 16],
    family: libc::c_ushort,
    data: [u8; 14],
    _pad: [u8; 8],
}

fn ifname_bytes(name: &str) -> io::Result<[u8; 16]> {
    let b = name.as_bytes();
    if b.is_empty() || b.len() > 15 || b.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name `{name}'"),
        ));
    }
    let mut out = [0u8; 16];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// An open TAP device (non-blocking).
pub struct Tap {
    file: File,
    name: String,
    mac: [u8; 6],
}

impl Tap {
    /// Creates (or attaches to) the TAP device `name`.
    pub fn open(name: &str) -> io::Result<Tap> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open("/dev/net/tun")
            .map_err(|e| io::Error::new(e.kind(), format!("open /dev/net/tun: {e}")))?;
        let mut req = IfReqFlags {
            name: ifname_bytes(name)?,
            flags: IFF_TAP | IFF_NO_PI,
            _pad: [0; 22],
        };
        // SAFETY: TUNSETIFF reads and writes a `struct ifreq` (40 bytes), which `req` is.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, &mut req as *mut IfReqFlags) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(e.kind(), format!("TUNSETIFF {name}: {e}")));
        }
        let mac = hw_addr(name)?;
        Ok(Tap {
            file,
            name: name.to_string(),
            mac,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Hands one frame to the host stack.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        (&self.file).write(frame).map(|_| ())
    }

    /// One frame from the host stack, or None when there is none waiting.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match (&self.file).read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn raw_fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

/// The MAC address of interface `name` (SIOCGIFHWADDR).
pub fn hw_addr(name: &str) -> io::Result<[u8; 6]> {
    // SAFETY: plain socket(2); the fd is checked and owned at once.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req = IfReqHwaddr {
        name: ifname_bytes(name)?,
        family: 0,
        data: [0; 14],
        _pad: [0; 8],
    };
    // SAFETY: SIOCGIFHWADDR fills a `struct ifreq` (40 bytes), which `req` is.
    let r = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFHWADDR as libc::c_ulong,
            &mut req as *mut IfReqHwaddr,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("SIOCGIFHWADDR {name}: {e}"),
        ));
    }
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[..6]);
    Ok(mac)
}

/// The MTU of interface `name` (SIOCGIFMTU).
pub fn mtu(name: &str) -> io::Result<u32> {
    #[repr(C)]
    struct IfReqMtu {
        name: [u8; 16],
        mtu: libc::c_int,
        _pad: [u8; 20],
    }
    // SAFETY: plain socket(2); the fd is checked and owned at once.
    let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if s < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `s` is a fresh fd we own.
    let sock = unsafe { OwnedFd::from_raw_fd(s) };
    let mut req = IfReqMtu {
        name: ifname_bytes(name)?,
        mtu: 0,
        _pad: [0; 20],
    };
    // SAFETY: SIOCGIFMTU fills a `struct ifreq` (40 bytes), which `req` is.
    let r = unsafe {
        libc::ioctl(
            sock.as_raw_fd(),
            libc::SIOCGIFMTU as libc::c_ulong,
            &mut req as *mut IfReqMtu,
        )
    };
    if r < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("SIOCGIFMTU {name}: {e}")));
    }
    Ok(req.mtu.max(0) as u32)
}
