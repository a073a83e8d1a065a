//! The end-to-end rig: a client namespace, the firewall namespace running `pollwall daemon` on
//! AF_XDP between two veths, and a server namespace, all created by the test (both ends of every
//! veth inside them, names `pw...`), removed on drop. Client and server code runs on threads that
//! enter their namespace; the daemon is a child process (`ip netns exec`), stopped with SIGTERM.

use crate::netns::{require_root_and, Netns};
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const CLIENT_IP: &str = "10.9.0.1";
pub const SERVER_IP: &str = "10.9.0.2";
pub const BOX_IP: &str = "10.9.0.3";
pub const CLIENT_MAC: &str = "02:70:77:00:00:01";
pub const SERVER_MAC: &str = "02:70:77:00:00:02";

/// E2E cases run one at a time: they share RLIMIT_MEMLOCK (8 MiB per user) and two cores.
static SERIAL: Mutex<()> = Mutex::new(());
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Holds the e2e lock (for cases that run AF_XDP without a [`Rig`], like the demo).
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why the e2e tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<String> {
    if let Err(e) = require_root_and(&["ip", "ethtool"]) {
        return Some(e);
    }
    // SAFETY: plain socket(2); closed at once.
    let fd = unsafe { libc::socket(44, libc::SOCK_RAW, 0) };
    if fd < 0 {
        return Some(format!(
            "no AF_XDP sockets here: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    None
}

pub struct Rig {
    pub c: Netns,
    pub s: Netns,
    pub f: Netns,
    pub dir: tempfile::TempDir,
    daemon: Option<Child>,
    stderr_lines: Option<std::sync::mpsc::Receiver<String>>,
    _serial: MutexGuard<'static, ()>,
}

/// What the daemon printed when it stopped.
pub struct Stopped {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Stopped {
    /// `[packets:bytes]` of the first saved rule line containing `needle`.
    pub fn rule_packets(&self, needle: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with('[') && l.contains(needle))
            .unwrap_or_else(|| panic!("no rule with {needle:?} in\n{}", self.stdout));
        line[1..line.find(':').unwrap()].parse().unwrap()
    }

    /// Packets of a chain's policy (`:CHAIN POLICY [p:b]`).
    pub fn policy_packets(&self, chain: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!(":{chain} ")))
            .unwrap_or_else(|| panic!("no chain {chain} in\n{}", self.stdout));
        let b = line.find('[').unwrap();
        line[b + 1..line.rfind(':').unwrap()].parse().unwrap()
    }

    /// A dataplane counter from the stop report.
    pub fn counter(&self, name: &str) -> u64 {
        self.stderr
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(name)).then(|| w.next().unwrap().parse().unwrap())
            })
            .next()
            .unwrap_or(0)
    }
}

impl Rig {
    /// The three namespaces and veths; `queues` RX/TX queues per veth end (1 for plain veths).
    pub fn new(queues: u32) -> Rig {
        let serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let tag = format!(
            "pw{}e{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let c = Netns::new(&format!("{tag}c")).unwrap();
        let s = Netns::new(&format!("{tag}s")).unwrap();
        let f = Netns::new(&format!("{tag}f")).unwrap();
        let q = queues.to_string();
        for (fw, host, peer, mac) in [
            ("pwf0", &c, "pwc0", CLIENT_MAC),
            ("pwf1", &s, "pws0", SERVER_MAC),
        ] {
            let mut args = vec!["-n", f.name(), "link", "add", fw];
            if queues > 1 {
                args.extend(["numtxqueues", &q, "numrxqueues", &q]);
            }
            args.extend(["type", "veth", "peer", "name", peer, "address", mac]);
            if queues > 1 {
                args.extend(["numtxqueues", &q, "numrxqueues", &q]);
            }
            args.extend(["netns", host.name()]);
            let out = Command::new("ip").args(&args).output().unwrap();
            assert!(
                out.status.success(),
                "ip {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            f.exec_ok("ip", &["link", "set", fw, "up"]);
            // Full checksums from the hosts' stacks (AF_XDP carries no offload metadata), no
            // GSO super-frames, no IPv6 chatter.
            host.exec_ok(
                "ethtool",
                &["-K", peer, "tx", "off", "tso", "off", "gso", "off"],
            );
            host.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
            host.exec_ok("ip", &["link", "set", peer, "up"]);
        }
        f.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        c.exec_ok(
            "ip",
            &["addr", "add", &format!("{CLIENT_IP}/24"), "dev", "pwc0"],
        );
        s.exec_ok(
            "ip",
            &["addr", "add", &format!("{SERVER_IP}/24"), "dev", "pws0"],
        );
        Rig {
            c,
            s,
            f,
            dir: tempfile::tempdir().unwrap(),
            daemon: None,
            stderr_lines: None,
            _serial: serial,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the daemon with `rules` and extra config lines; waits for `pollwall: ready`.
    pub fn start(&mut self, rules: &str, extra: &str) -> Vec<String> {
        std::fs::write(self.path("rules"), rules).unwrap();
        // 1 MiB UMEMs unless the case asks for more (RLIMIT_MEMLOCK is shared by the user).
        let frames = if extra.contains("frames") {
            ""
        } else {
            "frames = 512\n"
        };
        // Routed cases bring their own [[port]] tables (last, after every top-level key).
        let bridge = if extra.contains("[[port]]") {
            ""
        } else {
            "[[bridge]]\nports = [\"pwf0\", \"pwf1\"]\n"
        };
        let cfg = format!(
            "rules = \"{}\"\nidle = \"adaptive\"\n{frames}log_file = \"{}\"\n{extra}\n{bridge}",
            self.path("rules").display(),
            self.path("log").display()
        );
        std::fs::write(self.path("config.toml"), cfg).unwrap();
        let mut child = self
            .daemon_command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(l) => {
                    let ready = l == "pollwall: ready";
                    lines.push(l);
                    if ready {
                        break;
                    }
                }
                Err(_) => {
                    if let Ok(Some(st)) = child.try_wait() {
                        panic!("daemon exited ({st}) before ready:\n{}", lines.join("\n"));
                    }
                    assert!(
                        Instant::now() < deadline,
                        "daemon not ready:\n{}",
                        lines.join("\n")
                    );
                }
            }
        }
        self.daemon = Some(child);
        self.stderr_lines = Some(rx);
        lines
    }

    /// Runs the daemon with a config that must make it fail at start; returns its exit code
    /// and stderr.
    pub fn start_fails(&mut self, rules: &str, extra: &str) -> (i32, String) {
        std::fs::write(self.path("rules"), rules).unwrap();
        let cfg = format!(
            "rules = \"{}\"\n{extra}\n[[bridge]]\nports = [\"pwf0\", \"pwf1\"]\n",
            self.path("rules").display()
        );
        std::fs::write(self.path("config.toml"), cfg).unwrap();
        let out = self.daemon_command().output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `pollwall daemon --config DIR/config.toml` in the firewall namespace, stdin closed.
    fn daemon_command(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.f.name()])
            .arg(env!("CARGO_BIN_EXE_pollwall-under-test"))
            .args(["daemon", "--config"])
            .arg(self.path("config.toml"))
            .stdin(Stdio::null());
        c
    }

    /// Sends `sig` to the running daemon.
    pub fn signal(&self, sig: i32) {
        let child = self.daemon.as_ref().expect("daemon running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, sig) };
    }

    /// SIGTERM, then the daemon's output.
    pub fn stop(&mut self) -> Stopped {
        let mut child = self.daemon.take().expect("daemon running");
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("daemon did not stop within 10 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        let rx = self.stderr_lines.take().unwrap();
        let mut stderr = String::new();
        while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            stderr.push_str(&l);
            stderr.push('\n');
        }
        Stopped {
            code: status.code().unwrap_or(-1),
            stdout,
            stderr,
        }
    }

    /// Runs `f` on a thread inside namespace `ns`.
    pub fn in_ns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
        spawn_in_ns(ns, f).join().unwrap()
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Spawns `f` on a thread inside namespace `ns` (servers); join it yourself.
pub fn spawn_in_ns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let name = ns.name().to_string();
    std::thread::spawn(move || {
        crate::netns::enter_on_this_thread(&name).expect("setns into the test's namespace");
        f()
    })
}

/// A TCP and UDP echo server on `addr:port` until `stop` is set (bounded: 30 s at most).
pub fn echo_server(
    ns: &Netns,
    addr: &'static str,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::io::Write;
    use std::net::{TcpListener, UdpSocket};
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = spawn_in_ns(ns, move || {
        let l = TcpListener::bind((addr, port)).unwrap();
        l.set_nonblocking(true).unwrap();
        let u = UdpSocket::bind((addr, port)).unwrap();
        u.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
        ready_tx.send(()).unwrap();
        let start = Instant::now();
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) && start.elapsed() < Duration::from_secs(30) {
            if let Ok((mut c, _)) = l.accept() {
                c.set_nonblocking(false).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                std::thread::spawn(move || {
                    let mut b = vec![0u8; 65536];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
            if let Ok((n, from)) = u.recv_from(&mut buf) {
                let _ = u.send_to(&buf[..n], from);
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    h
}

/// Sends `len` bytes over TCP to `addr:port` and checks they come back; returns an error text.
pub fn tcp_echo(addr: &str, port: u16, len: usize) -> Result<(), String> {
    use std::io::Write;
    use std::net::{Shutdown, SocketAddr, TcpStream};
    let to: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    let mut c =
        TcpStream::connect_timeout(&to, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let mut w = c.try_clone().unwrap();
        let d = data.clone();
        std::thread::spawn(move || {
            let _ = w.write_all(&d);
            let _ = w.shutdown(Shutdown::Write);
        })
    };
    let mut got = Vec::new();
    c.read_to_end(&mut got).map_err(|e| format!("read: {e}"))?;
    writer.join().unwrap();
    if got != data {
        return Err(format!("echoed {} bytes, sent {len}", got.len()));
    }
    Ok(())
}
