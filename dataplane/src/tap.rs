//! The exception path's TAP interface: frames for the box itself are written into it (the host's
//! own stack answers them behind INPUT), and what the stack sends comes back out of it (through
//! OUTPUT), as DPDK applications do with their TAP/KNI ports.

use crate::netdev::{self, IfReq};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TAP: libc::c_short = 0x0002;
const IFF_NO_PI: libc::c_short = 0x1000;

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
        let mut req = IfReq::new(name)?;
        req.data[..2].copy_from_slice(&(IFF_TAP | IFF_NO_PI).to_ne_bytes());
        req.ioctl(file.as_raw_fd(), TUNSETIFF, "TUNSETIFF")?;
        let mac = netdev::hw_addr(name)?;
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
