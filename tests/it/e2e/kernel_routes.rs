//! Routed mode with `routes = "kernel"` end to end: the daemon gives each routed port a TAP
//! twin (`pw-pwf0`, `pw-pwf1`) in its namespace, with the port's MAC and configured address,
//! and mirrors the twins' addresses and routes over rtnetlink. Shown here: the host's stack
//! answers ARP and pings for the box through the twins (the dataplane's own echo responder stays
//! silent), forwarding uses the twins' connected routes, and an `ip route add` on a twin changes
//! forwarding within a second (and `ip route del` takes it back). With two workers, the host's
//! own connections (a TCP service on the twin's address behind a stateful INPUT) work: the
//! frames the host sends are steered to the worker tracking their connection.

use super::rig::{echo_server, skip_reason, tcp_echo, Rig};
use super::routed::{icmp_socket, ip, ping, recv_icmp, routed_rig};
use socket2::SockAddr;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const GATEWAY: &str = "10.1.0.1";
const SERVER: &str = "10.2.0.2";
/// Behind the server, reachable only once a route says so.
const BEHIND: &str = "10.3.0.2";

const CONFIG: &str = "routes = \"kernel\"\n[[port]]\nname = \"pwf0\"\naddress = [\"10.1.0.1/24\"]\n\n[[port]]\nname = \"pwf1\"\naddress = [\"10.2.0.1/24\"]\n";

const RULES: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A INPUT -p icmp -j ACCEPT\n-A FORWARD -d 10.3.0.0/24 -j ACCEPT\nCOMMIT\n";

/// One echo request to `to`; whether its reply came within `wait_ms`.
fn echo_once(to: &str, id: u16, seq: u16, wait_ms: u64) -> bool {
    let s = icmp_socket();
    s.set_read_timeout(Some(Duration::from_millis(wait_ms.clamp(1, 200))))
        .unwrap();
    let dst = SockAddr::from(SocketAddrV4::new(ip(to), 0));
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    let c = !classifier::wire::checksum::data(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    s.send_to(&m, &dst).unwrap();
    recv_icmp(&s, wait_ms, |(src, t, _, rest, _)| {
        *src == ip(to) && *t == 0 && rest[..2] == id.to_be_bytes() && rest[2..] == seq.to_be_bytes()
    })
    .is_some()
}

/// How long until a ping to `to` from the client answers (every 20 ms), up to `limit`.
fn answers_within(r: &Rig, to: &'static str, id: u16, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    Rig::in_ns(&r.c, move || {
        let mut seq = 0u16;
        while start.elapsed() < limit {
            seq += 1;
            if echo_once(to, id, seq, 20) {
                return Some(start.elapsed());
            }
        }
        None
    })
}

#[test]
fn e2e_routed_kernel_routes_follow_ip_route_on_the_twins() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let mut r = routed_rig(1);
    r.s.exec_ok("ip", &["route", "add", "10.1.0.0/24", "via", "10.2.0.1"]);
    r.s.exec_ok("ip", &["addr", "add", &format!("{BEHIND}/32"), "dev", "lo"]);
    r.start(RULES, CONFIG);
    // The twins exist, carry their port's MAC and the configured address, and are up.
    let twin =
        r.f.exec_ok("ip", &["-o", "-4", "addr", "show", "dev", "pw-pwf0"]);
    assert!(twin.contains("10.1.0.1/24"), "{twin}");
    // `ip netns exec` mounts the namespace's own sysfs.
    let mac = |dev: &str| {
        r.f.exec_ok("cat", &[&format!("/sys/class/net/{dev}/address")])
    };
    assert_eq!(mac("pwf1"), mac("pw-pwf1"));

    let (gw, fwd) = Rig::in_ns(&r.c, || (ping(GATEWAY, 0x7101, 3), ping(SERVER, 0x7102, 3)));
    let before = Rig::in_ns(&r.c, || echo_once(BEHIND, 0x7103, 1, 300));
    r.f.exec_ok(
        "ip",
        &[
            "route",
            "add",
            "10.3.0.0/24",
            "via",
            SERVER,
            "dev",
            "pw-pwf1",
        ],
    );
    let after = answers_within(&r, BEHIND, 0x7104, Duration::from_secs(1));
    r.f.exec_ok("ip", &["route", "del", "10.3.0.0/24"]);
    std::thread::sleep(Duration::from_millis(300));
    let removed = Rig::in_ns(&r.c, || echo_once(BEHIND, 0x7105, 1, 300));
    let out = r.stop();
    assert_eq!(gw, 3, "the host answers pings to the box:\n{}", out.stderr);
    assert_eq!(out.counter("echo_replied"), 0, "{}", out.stderr);
    assert!(out.counter("local_in") >= 3, "{}", out.stderr);
    assert_eq!(
        out.counter("arp_replied"),
        0,
        "the host answers ARP:\n{}",
        out.stderr
    );
    assert_eq!(fwd, 3, "connected routes of the twins:\n{}", out.stderr);
    assert!(!before, "no route to {BEHIND} yet");
    let took =
        after.unwrap_or_else(|| panic!("ip route add not followed within 1 s:\n{}", out.stderr));
    eprintln!("ip route add on the twin: forwarding followed in {took:?}");
    assert!(!removed, "ip route del not followed:\n{}", out.stderr);
    assert!(out.counter("route_unreachable") >= 2, "{}", out.stderr);
    assert!(out.rule_packets("-d 10.3.0.0/24") >= 1, "{}", out.stdout);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn e2e_routed_kernel_routes_host_services_with_two_workers() {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n\
-A INPUT -p tcp -m tcp --dport 7 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";
    let mut r = routed_rig(4);
    r.start(rules, &format!("cores = [0, 1]\nframes = 1024\n{CONFIG}"));
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.f, GATEWAY, 7, Arc::clone(&stop));
    let done = Rig::in_ns(&r.c, || {
        let hs: Vec<_> = (0..16)
            .map(|_| std::thread::spawn(|| tcp_echo(GATEWAY, 7, 32 * 1024)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let out = r.stop();
    // Half the host's replies are read by the worker that does not track them: without the
    // steering their connections would never become ESTABLISHED, and INPUT would drop.
    assert!(done.iter().all(|x| x.is_ok()), "{done:?}\n{}", out.stderr);
    assert!(out.counter("handoff_in") > 0, "{}", out.stderr);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
