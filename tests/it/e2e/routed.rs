//! Routed mode end to end: `pollwall daemon` on AF_XDP as the edge gateway between a LAN
//! namespace (10.1.0.0/24, two client addresses, default route via the box) and an uplink
//! namespace (10.2.0.0/24, no route back to the LAN), with no static neighbours (ARP must work),
//! MASQUERADE on the uplink and one DNAT port forward. Shown here: TCP 1 MiB both ways, UDP and
//! ping through MASQUERADE; the box answering pings to its own address; the port forward from the uplink to a LAN server; ICMP time
//! exceeded at TTL 1 and fragmentation needed for a DF datagram over the uplink's MTU (1400);
//! two LAN clients with the same source port get different translated ports; and the same with
//! two workers, where NAT picks only ports whose replies hash back to the picking worker and
//! port-forwarded connections whose replies hash elsewhere are claimed by their owner.

use super::rig::{echo_server, serial, skip_reason, spawn_in_ns, tcp_echo, Rig};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GATEWAY: &str = "10.1.0.1";
const UPLINK: &str = "10.2.0.1";
const CLIENT_A: &str = "10.1.0.2";
const CLIENT_B: &str = "10.1.0.3";
const SERVER: &str = "10.2.0.2";

const PORTS: &str = "[[port]]\nname = \"pwf0\"\naddress = [\"10.1.0.1/24\"]\n\n[[port]]\nname = \"pwf1\"\naddress = [\"10.2.0.1/24\"]\nmtu = 1400\n";

const RULES: &str = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n-A PREROUTING -i pwf1 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.1.0.2:7\n-A POSTROUTING -o pwf1 -j MASQUERADE\nCOMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -i pwf0 -o pwf1 -j ACCEPT\n-A FORWARD -d 10.1.0.2/32 -i pwf1 -o pwf0 -p tcp -m tcp --dport 7 -j ACCEPT\nCOMMIT\n";

macro_rules! require_e2e {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

/// The e2e rig with routed addressing: the LAN side's default route is the box.
pub(super) fn routed_rig(queues: u32) -> Rig {
    let r = Rig::new(queues);
    r.c.exec_ok("ip", &["addr", "flush", "dev", "pwc0"]);
    for a in [CLIENT_A, CLIENT_B] {
        r.c.exec_ok("ip", &["addr", "add", &format!("{a}/24"), "dev", "pwc0"]);
    }
    r.c.exec_ok("ip", &["route", "add", "default", "via", GATEWAY]);
    r.s.exec_ok("ip", &["addr", "flush", "dev", "pws0"]);
    r.s.exec_ok(
        "ip",
        &["addr", "add", &format!("{SERVER}/24"), "dev", "pws0"],
    );
    r
}

pub(super) fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// A raw ICMP socket (the current thread's namespace), reads time out after 200 ms.
pub(super) fn icmp_socket() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    s
}

/// ICMP messages as (source, type, code, the 4 bytes after the checksum, the payload).
pub(super) type IcmpMsg = (Ipv4Addr, u8, u8, [u8; 4], Vec<u8>);

/// The first ICMP message on `s` that `want` accepts, within `ms`.
pub(super) fn recv_icmp(s: &Socket, ms: u64, want: impl Fn(&IcmpMsg) -> bool) -> Option<IcmpMsg> {
    let deadline = Instant::now() + Duration::from_millis(ms);
    let mut buf = [MaybeUninit::<u8>::uninit(); 2048];
    while Instant::now() < deadline {
        let Ok(n) = s.recv(&mut buf) else {
            continue;
        };
        // SAFETY: recv initialised the first `n` bytes.
        let p: Vec<u8> = buf[..n]
            .iter()
            .map(|b| unsafe { b.assume_init() })
            .collect();
        let ihl = usize::from(p[0] & 0x0f) * 4;
        if p.len() < ihl + 8 {
            continue;
        }
        let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
        let mut rest = [0u8; 4];
        rest.copy_from_slice(&p[ihl + 4..ihl + 8]);
        let m = (src, p[ihl], p[ihl + 1], rest, p[ihl + 8..].to_vec());
        if want(&m) {
            return Some(m);
        }
    }
    None
}

/// Pings `to` `n` times (id `id`); returns how many replies came back from it.
pub(super) fn ping(to: &str, id: u16, n: u16) -> usize {
    let s = icmp_socket();
    let dst = SockAddr::from(SocketAddrV4::new(ip(to), 0));
    let mut got = 0;
    for seq in 0..n {
        let mut m = vec![8, 0, 0, 0];
        m.extend_from_slice(&id.to_be_bytes());
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(b"pollwall routed ping");
        let c = !classifier::wire::checksum::data(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        s.send_to(&m, &dst).unwrap();
        let reply = recv_icmp(&s, 1000, |(src, t, _, rest, _)| {
            *src == ip(to)
                && *t == 0
                && rest[..2] == id.to_be_bytes()
                && rest[2..] == seq.to_be_bytes()
        });
        got += usize::from(reply.is_some());
    }
    got
}

/// UDP request/response pairs from `from` to `to:port`; how many answers came back.
fn udp_echoes(from: &str, to: &str, port: u16, n: usize) -> usize {
    let u = UdpSocket::bind((from, 0)).unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 64];
    (0..n)
        .filter(|i| {
            let msg = format!("pw{i}");
            u.send_to(msg.as_bytes(), (to, port)).unwrap();
            matches!(u.recv_from(&mut buf), Ok((len, _)) if &buf[..len] == msg.as_bytes())
        })
        .count()
}

#[test]
fn e2e_routed_masquerade_tcp_udp_ping_and_a_port_forward() {
    require_e2e!();
    let mut r = routed_rig(1);
    r.start(RULES, PORTS);
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.s, SERVER, 7, Arc::clone(&stop));
    let lan_srv = echo_server(&r.c, CLIENT_A, 7, Arc::clone(&stop));
    let (tcp, udp, pings, gw_pings) = Rig::in_ns(&r.c, || {
        (
            tcp_echo(SERVER, 7, 1 << 20),
            udp_echoes(CLIENT_B, SERVER, 7, 20),
            ping(SERVER, 0x7077, 5),
            ping(GATEWAY, 0x7078, 3),
        )
    });
    // The port forward: the uplink side connects to the box's uplink address.
    let forwarded = Rig::in_ns(&r.s, || tcp_echo(UPLINK, 8080, 256 * 1024));
    // What the server sees as the LAN's source: the uplink address (it has no route back).
    let rec = udp_recorder(&r.s, SERVER, 9000, 1);
    Rig::in_ns(&r.c, || send_udp(CLIENT_A, 0, SERVER, 9000));
    let seen = rec.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    lan_srv.join().unwrap();
    let out = r.stop();
    assert_eq!(tcp, Ok(()), "{}", out.stderr);
    assert_eq!(udp, 20, "{}", out.stderr);
    assert_eq!(pings, 5, "{}", out.stderr);
    // The box answers pings to its own addresses (INPUT accepts them here).
    assert_eq!(gw_pings, 3, "{}", out.stderr);
    assert_eq!(out.counter("echo_replied"), 3, "{}", out.stderr);
    assert_eq!(forwarded, Ok(()), "{}", out.stderr);
    assert_eq!(seen.len(), 1, "{}", out.stderr);
    assert_eq!(*seen[0].ip(), ip(UPLINK));
    // One MASQUERADE per connection (TCP, UDP, ping, the last datagram), one DNAT.
    assert_eq!(out.rule_packets("-j MASQUERADE"), 4, "{}", out.stdout);
    assert_eq!(out.rule_packets("-j DNAT"), 1, "{}", out.stdout);
    assert!(out.counter("arp_replied") >= 1, "{}", out.stderr);
    assert!(out.counter("arp_requested") >= 1, "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// One datagram from `from:port` (0: any) to `to:dport`.
fn send_udp(from: &str, port: u16, to: &str, dport: u16) {
    let u = UdpSocket::bind((from, port)).unwrap();
    u.send_to(b"pw", (to, dport)).unwrap();
}

/// Records the sources of the first `n` datagrams to `addr:port` in `ns` (3 s at most).
fn udp_recorder(
    ns: &crate::netns::Netns,
    addr: &'static str,
    port: u16,
    n: usize,
) -> std::thread::JoinHandle<Vec<SocketAddrV4>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = spawn_in_ns(ns, move || {
        let u = UdpSocket::bind((addr, port)).unwrap();
        u.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut seen = Vec::new();
        let mut b = [0u8; 64];
        while seen.len() < n && Instant::now() < deadline {
            if let Ok((_, std::net::SocketAddr::V4(from))) = u.recv_from(&mut b) {
                seen.push(from);
            }
        }
        seen
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    h
}

#[test]
fn e2e_routed_icmp_errors_and_clashing_source_ports() {
    require_e2e!();
    let mut r = routed_rig(1);
    r.start(RULES, PORTS);
    // The server's receiver of the datagram the box must fragment (no DF, over the MTU).
    let whole = spawn_in_ns(&r.s, || {
        let u = UdpSocket::bind((SERVER, 9002)).unwrap();
        u.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut b = [0u8; 2048];
        u.recv(&mut b).map(|n| b[..n].to_vec()).ok()
    });
    std::thread::sleep(Duration::from_millis(100));
    let (ttl, frag) = Rig::in_ns(&r.c, || {
        let icmp = icmp_socket();
        let u = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        u.bind(&SockAddr::from(SocketAddrV4::new(ip(CLIENT_A), 0)))
            .unwrap();
        let to = SockAddr::from(SocketAddrV4::new(ip(SERVER), 9));
        u.set_ttl(1).unwrap();
        u.send_to(b"ttl one", &to).unwrap();
        let ttl = recv_icmp(&icmp, 2000, |m| m.1 == 11);
        u.set_ttl(64).unwrap();
        let pmtu_discovery = |v: libc::c_int| {
            let fd = std::os::fd::AsRawFd::as_raw_fd(&u);
            // SAFETY: setsockopt on our own socket with an int option.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::IPPROTO_IP,
                    libc::IP_MTU_DISCOVER,
                    &v as *const libc::c_int as *const libc::c_void,
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0);
        };
        // IP_PMTUDISC_DONT first (before any fragmentation needed teaches this host the
        // path's MTU): no DF, the box fragments.
        pmtu_discovery(libc::IP_PMTUDISC_DONT);
        let big: Vec<u8> = (0..1450).map(|i| (i % 251) as u8).collect();
        u.send_to(&big, &SockAddr::from(SocketAddrV4::new(ip(SERVER), 9002)))
            .unwrap();
        // IP_PMTUDISC_DO: DF set, and the datagram is not fragmented by the sender.
        pmtu_discovery(libc::IP_PMTUDISC_DO);
        u.send_to(&[0x5a; 1450], &to).unwrap();
        let frag = recv_icmp(&icmp, 2000, |m| m.1 == 3 && m.2 == 4);
        (ttl, frag)
    });
    // Two LAN clients from the same source port to the same server port.
    let rec = udp_recorder(&r.s, SERVER, 9001, 2);
    Rig::in_ns(&r.c, || {
        send_udp(CLIENT_A, 40000, SERVER, 9001);
        send_udp(CLIENT_B, 40000, SERVER, 9001);
    });
    let seen = rec.join().unwrap();
    let out = r.stop();
    let (src, _, _, _, quoted) = ttl.expect("ICMP time exceeded for TTL 1");
    assert_eq!(src, ip(GATEWAY));
    // It quotes the datagram as it arrived (the box's TTL decrement not applied).
    assert_eq!(&quoted[12..16], &ip(CLIENT_A).octets());
    let (src, _, _, rest, _) = frag.expect("ICMP fragmentation needed for DF over the MTU");
    assert_eq!(src, ip(GATEWAY));
    assert_eq!(u16::from_be_bytes([rest[2], rest[3]]), 1400);
    assert_eq!(out.counter("route_ttl_exceeded"), 1, "{}", out.stderr);
    assert_eq!(out.counter("route_frag_needed"), 1, "{}", out.stderr);
    let whole = whole.join().unwrap();
    let big: Vec<u8> = (0..1450).map(|i| (i % 251) as u8).collect();
    assert_eq!(whole.as_deref(), Some(&big[..]), "{}", out.stderr);
    assert_eq!(out.counter("route_fragmented"), 2, "{}", out.stderr);
    assert_eq!(out.counter("reject_rate_limited"), 0, "{}", out.stderr);
    assert_eq!(seen.len(), 2, "{}", out.stderr);
    assert!(seen.iter().all(|s| *s.ip() == ip(UPLINK)), "{seen:?}");
    assert_ne!(seen[0].port(), seen[1].port(), "{seen:?}");
    // The first keeps its port (get_unique_tuple's first choice); the second gets another.
    assert_eq!(seen[0].port(), 40000, "{seen:?}");
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn e2e_routed_masquerade_with_two_workers() {
    require_e2e!();
    let mut r = routed_rig(4);
    r.start(RULES, &format!("cores = [0, 1]\nframes = 1024\n{PORTS}"));
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.s, SERVER, 7, Arc::clone(&stop));
    let lan_srv = echo_server(&r.c, CLIENT_A, 7, Arc::clone(&stop));
    let (tcp, udp, pings) = Rig::in_ns(&r.c, || {
        let hs: Vec<_> = (0..16)
            .map(|i| {
                let from = if i % 2 == 0 { CLIENT_A } else { CLIENT_B };
                std::thread::spawn(move || tcp_echo_from(from, SERVER, 7, 64 * 1024))
            })
            .collect();
        let tcp: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
        let udp: usize = (0..8).map(|_| udp_echoes(CLIENT_A, SERVER, 7, 2)).sum();
        let pings: usize = (0..8).map(|id| ping(SERVER, 0x100 + id, 1)).sum();
        (tcp, udp, pings)
    });
    // Port forwards from the uplink: DNAT fixes the reply's ports, so about half the replies
    // hash to the other worker; the owner's claim brings them back.
    let forwarded = Rig::in_ns(&r.s, || {
        let hs: Vec<_> = (0..16)
            .map(|_| std::thread::spawn(|| tcp_echo(UPLINK, 8080, 64 * 1024)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    lan_srv.join().unwrap();
    let out = r.stop();
    // A reply reaching a worker without the connection would be dropped (no route back
    // through FORWARD's policy): every echo completing means each translated reply hashed to
    // the worker that translated it.
    assert!(tcp.iter().all(|x| x.is_ok()), "{tcp:?}\n{}", out.stderr);
    assert!(
        forwarded.iter().all(|x| x.is_ok()),
        "{forwarded:?}\n{}",
        out.stderr
    );
    assert!(out.counter("claim_sent") > 0, "{}", out.stderr);
    assert_eq!(udp, 16, "{}", out.stderr);
    assert_eq!(pings, 8, "{}", out.stderr);
    assert!(out.counter("handoff_in") > 0, "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// [`tcp_echo`] from a chosen local address.
fn tcp_echo_from(from: &str, to: &str, port: u16, len: usize) -> Result<(), String> {
    use std::io::{Read, Write};
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
    s.bind(&SockAddr::from(SocketAddrV4::new(ip(from), 0)))
        .unwrap();
    s.connect_timeout(
        &SockAddr::from(SocketAddrV4::new(ip(to), port)),
        Duration::from_secs(3),
    )
    .map_err(|e| format!("connect: {e}"))?;
    let mut c: std::net::TcpStream = s.into();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
    let mut w = c.try_clone().unwrap();
    let d = data.clone();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&d);
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let mut got = Vec::new();
    c.read_to_end(&mut got).map_err(|e| format!("read: {e}"))?;
    writer.join().unwrap();
    (got == data)
        .then_some(())
        .ok_or_else(|| format!("echoed {} bytes, sent {len}", got.len()))
}

#[test]
fn e2e_demo_runs_a_nat_gateway() {
    require_e2e!();
    let _serial = serial();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pollwall-under-test"))
        .arg("demo")
        .env("POLLWALL_DEMO_BACKEND", "afxdp")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!text.contains("FAIL"), "{text}");
    // MASQUERADE: the reply tuple goes to the uplink address; the port forward's reply comes
    // from the LAN server.
    assert!(
        text.lines().any(|l| l.contains("src=10.1.0.2 dst=10.2.0.2")
            && l.contains("src=10.2.0.2 dst=10.2.0.1 sport=80")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("dport=2222 src=10.1.0.2 dst=10.2.0.2 sport=22")),
        "{text}"
    );
    assert!(text.contains("forwarded to 10.1.0.2:22 (DNAT)"), "{text}");
    assert!(text.contains("$ iptables -t nat -L -v -n"), "{text}");
}
