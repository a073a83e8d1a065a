//! A small network-namespace toolkit for tests that need a real kernel: named namespaces that
//! delete themselves, veth pairs created directly between two of them, commands run inside one,
//! a thread that enters one, and a raw AF_PACKET sender.
//!
//! Safety rules (see the kernel differential test): every namespace made here is named `pw...`,
//! no veth end is ever created in the root namespace (`ip -n A link add X type veth peer name Y
//! netns B` makes both ends inside A and B), and everything is removed on drop, also when a test
//! panics. Nothing here touches the root namespace's interfaces or firewall.

#![allow(dead_code)]

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Output, Stdio};

/// Returns why a kernel test cannot run here (`Err(reason)`): not root, or one of `cmds` missing
/// from `PATH` (and the sbin directories). Tests print `SKIPPED: reason` on stderr and return.
pub fn require_root_and(cmds: &[&str]) -> Result<(), String> {
    if !is_root() {
        return Err("not running as root".to_string());
    }
    let missing: Vec<&str> = cmds
        .iter()
        .copied()
        .filter(|c| find_in_path(c).is_none())
        .collect();
    if !missing.is_empty() {
        return Err(format!("missing command(s): {}", missing.join(", ")));
    }
    if !Path::new("/proc/self/ns/net").exists() {
        return Err("no network namespace support (/proc/self/ns/net)".to_string());
    }
    Ok(())
}

fn is_root() -> bool {
    // SAFETY: geteuid takes no arguments, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() == 0 }
}

/// The full path of `cmd` in `PATH`, `/usr/sbin` or `/sbin`.
pub fn find_in_path(cmd: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(
            ["/usr/local/sbin", "/usr/sbin", "/sbin"]
                .iter()
                .map(Into::into),
        )
        .map(|d| d.join(cmd))
        .find(|p| p.is_file())
}

/// Runs `cmd args` (not in any namespace) and fails the test with its output if it fails.
fn run_checked(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(
        out.status.success(),
        "`{cmd} {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A named network namespace (`ip netns add NAME`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates namespace `name`, which must start with `pw` and fit `ip netns` (no `/`).
    pub fn new(name: &str) -> io::Result<Netns> {
        assert!(
            name.starts_with("pw") && !name.contains('/') && name.len() <= 64,
            "bad netns name {name:?}"
        );
        let out = Command::new("ip")
            .args(["netns", "add", name])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "ip netns add {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let ns = Netns {
            name: name.to_string(),
        };
        // The loopback device is down in a new namespace; some tools like it up.
        ns.exec_ok("ip", &["link", "set", "lo", "up"]);
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs `cmd args` inside the namespace (`ip netns exec NAME cmd args`), stdin closed.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        self.exec_with_stdin(cmd, args, b"")
    }

    /// As [`Netns::exec`] with `stdin` fed to the command.
    pub fn exec_with_stdin(&self, cmd: &str, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec {} {cmd}: {e}", self.name));
        let mut pipe = child.stdin.take().expect("piped stdin");
        // A command that does not read its input closes the pipe early: ignore EPIPE.
        let _ = pipe.write_all(stdin);
        drop(pipe);
        child.wait_with_output().expect("wait for ip netns exec")
    }

    /// As [`Netns::exec`], failing the test (with the command's output) when it fails.
    pub fn exec_ok(&self, cmd: &str, args: &[&str]) -> String {
        let out = self.exec(cmd, args);
        assert!(
            out.status.success(),
            "in netns {}: `{cmd} {}` failed: {}{}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Sets a sysctl under `/proc/sys` inside the namespace (`key` as in `net.ipv4.ip_forward`).
    pub fn sysctl(&self, key: &str, value: &str) {
        assert!(
            key.starts_with("net.") && !key.contains(".."),
            "not a net sysctl: {key}"
        );
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let script = format!("echo {value} > {path}");
        self.exec_ok("sh", &["-c", &script]);
    }

    /// Moves the calling thread into this namespace (`setns(CLONE_NEWNET)`); for use on a
    /// dedicated `std::thread` that ends afterwards (sockets it opens then live in this namespace).
    pub fn enter_on_this_thread(&self) -> io::Result<()> {
        enter_on_this_thread(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the namespace destroys its devices (and so the veth pairs that cross it).
        let out = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => eprintln!(
                "warning: ip netns del {}: {}",
                self.name,
                String::from_utf8_lossy(&o.stderr).trim()
            ),
            Err(e) => eprintln!("warning: ip netns del {}: {e}", self.name),
        }
    }
}

/// Moves the calling thread into the named namespace `name` (see
/// [`Netns::enter_on_this_thread`]; for threads that cannot borrow the `Netns`).
pub fn enter_on_this_thread(name: &str) -> io::Result<()> {
    let f = File::open(format!("/run/netns/{name}"))?;
    setns_net(&f)
}

fn setns_net(f: &File) -> io::Result<()> {
    // SAFETY: `f` is an open namespace file for the whole call; setns only changes the calling
    // thread's network namespace and reads no memory of ours.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Creates a veth pair with end `name_a` in `a` and end `name_b` in `b`, both ends made inside
/// those namespaces (never in the root namespace), with the given MAC addresses, and sets both up.
pub fn veth_pair(a: &Netns, name_a: &str, mac_a: &str, b: &Netns, name_b: &str, mac_b: &str) {
    run_checked(
        "ip",
        &[
            "-n", &a.name, "link", "add", name_a, "address", mac_a, "type", "veth", "peer", "name",
            name_b, "address", mac_b, "netns", &b.name,
        ],
    );
    a.exec_ok("ip", &["link", "set", name_a, "up"]);
    b.exec_ok("ip", &["link", "set", name_b, "up"]);
}

/// The index of interface `name` in the calling thread's network namespace.
pub fn ifindex(name: &str) -> io::Result<u32> {
    let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a NUL-terminated string that outlives the call, which only reads it.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(idx)
    }
}

/// A raw AF_PACKET socket bound to one interface: `send` puts a whole Ethernet frame on the
/// wire as is. Open it on a thread that entered the namespace holding the interface.
pub struct RawSender {
    fd: OwnedFd,
}

impl RawSender {
    /// Opens `socket(AF_PACKET, SOCK_RAW, 0)` (protocol 0: it receives nothing) and binds it to
    /// interface `ifname` of the calling thread's namespace.
    pub fn open(ifname: &str) -> io::Result<RawSender> {
        let index = ifindex(ifname)?;
        let fd = packet_socket()?;
        bind_to_ifindex(&fd, index)?;
        Ok(RawSender { fd })
    }

    /// Sends one frame (destination MAC first); errors unless all of it was sent.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = send_bytes(&self.fd, frame)?;
        if n == frame.len() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "short send: {n} of {} bytes",
                frame.len()
            )))
        }
    }
}

fn packet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall with constant arguments; it returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by socket(), is open, and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind_to_ifindex(fd: &OwnedFd, index: u32) -> io::Result<()> {
    let ifindex = i32::try_from(index).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value of it.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = 0;
    sll.sll_ifindex = ifindex;
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: `sll` is a valid sockaddr_ll that lives across the call and `len` is its size;
    // `fd` is an open socket.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            len,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn send_bytes(fd: &OwnedFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes for the whole call; `fd` is open.
    let n = unsafe { libc::send(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// An AF_PACKET capture of every frame on one interface, both directions (`ETH_P_ALL`). Open it
/// on a thread that entered the namespace holding the interface, before the traffic starts.
pub struct RawCapture {
    fd: OwnedFd,
}

impl RawCapture {
    pub fn open(ifname: &str) -> io::Result<RawCapture> {
        let index = ifindex(ifname)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain syscall with constant arguments; it returns a new descriptor or -1.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                i32::from(proto),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by socket(), is open, and nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value of it.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        // SAFETY: `sll` is a valid sockaddr_ll for the call and the length is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // The frames are read only at the end of a run: room for thousands of them (the
        // default buffer holds a few hundred and silently drops the rest). FORCE passes
        // rmem_max as root; a refusal leaves the default.
        let bytes: libc::c_int = 16 << 20;
        // SAFETY: `fd` is open; the option value is a c_int of the given size.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
        Ok(RawCapture { fd })
    }

    /// Every frame queued so far: (sent by this host, bytes).
    pub fn drain(&self) -> Vec<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 65536];
        for _ in 0..100_000 {
            // SAFETY: as in `bind`; all-zero is valid.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: `buf` is writable for its length and `sll`/`len` describe a live
            // sockaddr_ll; the fd is open and non-blocking.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    (&mut sll as *mut libc::sockaddr_ll).cast(),
                    &mut len,
                )
            };
            if n <= 0 {
                break;
            }
            let outgoing = sll.sll_pkttype == libc::PACKET_OUTGOING;
            out.push((outgoing, buf[..n as usize].to_vec()));
        }
        out
    }
}
