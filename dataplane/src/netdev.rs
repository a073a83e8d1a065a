//! What the dataplane asks the kernel about an interface at start: its index, MAC address, MTU
//! and number of RX queues, through one `struct ifreq` ioctl helper (the TAP's `TUNSETIFF` uses
//! it too).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `struct ifreq`: the name and a 24-byte union (40 bytes on 64-bit Linux).
#[repr(C)]
pub(crate) struct IfReq {
    pub name: [u8; 16],
    pub data: [u8; 24],
}

impl IfReq {
    pub fn new(name: &str) -> io::Result<IfReq> {
        let b = name.as_bytes();
        if b.is_empty() || b.len() > 15 || b.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name `{name}'"),
            ));
        }
        let mut req = IfReq {
            name: [0; 16],
            data: [0; 24],
        };
        req.name[..b.len()].copy_from_slice(b);
        Ok(req)
    }

    /// `ioctl(fd, request, self)`; `what` names the request in errors.
    pub fn ioctl(&mut self, fd: RawFd, request: libc::c_ulong, what: &str) -> io::Result<()> {
        // SAFETY: every request used with this type reads and writes at most a `struct ifreq`
        // (40 bytes), which `self` is; a pointer stored in the union (SIOCETHTOOL) is the
        // caller's, kept alive across the call.
        let r = unsafe { libc::ioctl(fd, request, self as *mut IfReq) };
        if r < 0 {
            let e = io::Error::last_os_error();
            let name = String::from_utf8_lossy(&self.name);
            return Err(io::Error::new(
                e.kind(),
                format!("{what} {}: {e}", name.trim_end_matches('\0')),
            ));
        }
        Ok(())
    }

    /// As [`IfReq::ioctl`] on a throwaway datagram socket (the interface queries).
    fn query(&mut self, request: libc::c_ulong, what: &str) -> io::Result<()> {
        // SAFETY: plain socket(2); the result is checked and owned at once.
        let s = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if s < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `s` is a fresh descriptor nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(s) };
        self.ioctl(sock.as_raw_fd(), request, what)
    }
}

/// The index of interface `name` in this network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no interface `{name}' in this network namespace"),
        ));
    }
    Ok(i)
}

/// The MAC address of interface `name` (SIOCGIFHWADDR: a sockaddr, family then address).
pub fn hw_addr(name: &str) -> io::Result<[u8; 6]> {
    let mut req = IfReq::new(name)?;
    req.query(libc::SIOCGIFHWADDR as libc::c_ulong, "SIOCGIFHWADDR")?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&req.data[2..8]);
    Ok(mac)
}

/// The MTU of interface `name` (SIOCGIFMTU).
pub fn mtu(name: &str) -> io::Result<u32> {
    let mut req = IfReq::new(name)?;
    req.query(libc::SIOCGIFMTU as libc::c_ulong, "SIOCGIFMTU")?;
    let v = i32::from_ne_bytes([req.data[0], req.data[1], req.data[2], req.data[3]]);
    Ok(v.max(0) as u32)
}

/// RX queues of `name` (ETHTOOL_GCHANNELS; 1 when the driver does not say).
pub fn rx_queues(name: &str) -> u32 {
    // struct ethtool_channels: cmd, max rx/tx/other/combined, rx/tx/other/combined counts.
    let mut ch = [0u32; 9];
    ch[0] = 0x3c; // ETHTOOL_GCHANNELS
    let Ok(mut req) = IfReq::new(name) else {
        return 1;
    };
    req.data[..8].copy_from_slice(&(ch.as_mut_ptr() as u64).to_ne_bytes());
    if req
        .query(libc::SIOCETHTOOL as libc::c_ulong, "SIOCETHTOOL")
        .is_err()
    {
        return 1;
    }
    // rx_count (veth and split-queue NICs) or combined_count (most NICs).
    ch[5].max(ch[8]).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_facts_and_bad_names() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert!(ifindex("lo").is_ok());
        assert_eq!(hw_addr("lo").unwrap(), [0; 6]);
        assert!(mtu("lo").unwrap() >= 1500);
        assert_eq!(rx_queues("lo"), 1);
        assert!(IfReq::new("").is_err() && IfReq::new("a-name-far-too-long").is_err());
        assert!(ifindex("pwnope").is_err() && mtu("pwnope").is_err());
    }
}
