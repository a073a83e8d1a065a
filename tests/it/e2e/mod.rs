//! End-to-end tests of the AF_XDP dataplane: `pollwall daemon` bridging two veths between a
//! client and a server namespace (all created here, see [`rig`]). They need root and AF_XDP; they
//! print `SKIPPED: reason` on stderr otherwise. CI runs as root, so there they run.

mod rig;

use rig::{echo_server, skip_reason, tcp_echo, Rig, CLIENT_IP, SERVER_IP};
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

macro_rules! require_e2e {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
}

const ACCEPT_ALL: &str =
    "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";

/// UDP request/response pairs from the client; returns how many answers came back.
fn udp_echoes(to: &str, port: u16, n: usize) -> usize {
    let u = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
    u.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut ok = 0;
    let mut buf = [0u8; 64];
    for i in 0..n {
        let msg = format!("pw{i}");
        u.send_to(msg.as_bytes(), (to, port)).unwrap();
        if let Ok((len, _)) = u.recv_from(&mut buf) {
            ok += usize::from(&buf[..len] == msg.as_bytes());
        }
    }
    ok
}

#[test]
fn e2e_tcp_and_udp_through_the_bridge() {
    require_e2e!();
    let mut r = Rig::new(1);
    let notes = r.start(ACCEPT_ALL, "");
    assert!(
        notes
            .iter()
            .any(|n| n.contains("copy (driver has no zero-copy)")),
        "the log says which mode: {notes:?}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.s, SERVER_IP, 7, Arc::clone(&stop));
    let tcp = Rig::in_ns(&r.c, || tcp_echo(SERVER_IP, 7, 1 << 20));
    let udp = Rig::in_ns(&r.c, || udp_echoes(SERVER_IP, 7, 200));
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let out = r.stop();
    assert_eq!(tcp, Ok(()), "1 MiB TCP echo through the bridge");
    assert_eq!(udp, 200, "every UDP datagram answered");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("lost 0"), "{}", out.stderr);
    let fwd = out.policy_packets("FORWARD");
    assert!(
        fwd >= 400 + 700,
        "FORWARD policy counted every IPv4 frame: {fwd}"
    );
    assert_eq!(
        fwd,
        out.counter("forwarded"),
        "policy counter = frames forwarded"
    );
}

#[test]
fn e2e_accept_drop_reject() {
    require_e2e!();
    let mut r = Rig::new(1);
    let rules = "*filter\n:FORWARD ACCEPT [0:0]\n\
        -A FORWARD -p tcp --dport 9 -j DROP\n\
        -A FORWARD -p tcp --dport 10 -j REJECT --reject-with tcp-reset\n\
        -A FORWARD -p udp --dport 11 -j REJECT\n\
        -A FORWARD -p udp --dport 12 -j REJECT --reject-with icmp-admin-prohibited\n\
        COMMIT\n";
    r.start(rules, "");
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.s, SERVER_IP, 7, Arc::clone(&stop));
    let (ok7, e9, e10, e11, e12, frames) = Rig::in_ns(&r.c, || {
        let cap = crate::netns::RawCapture::open("pwc0").unwrap();
        let ok7 = tcp_echo(SERVER_IP, 7, 1000);
        let connect = |port| {
            std::net::TcpStream::connect_timeout(
                &format!("{SERVER_IP}:{port}").parse().unwrap(),
                Duration::from_millis(400),
            )
            .map(|_| ())
            .map_err(|e| e.kind())
        };
        let e9 = connect(9);
        let e10 = connect(10);
        let udp_err = |port| {
            let u = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
            u.connect((SERVER_IP, port)).unwrap();
            u.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            u.send(b"x").unwrap();
            u.recv(&mut [0u8; 8])
                .map(|_| ())
                .map_err(|e| e.raw_os_error())
        };
        let e11 = udp_err(11);
        let e12 = udp_err(12);
        std::thread::sleep(Duration::from_millis(50));
        (ok7, e9, e10, e11, e12, cap.drain())
    });
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let out = r.stop();
    assert_eq!(ok7, Ok(()));
    assert_eq!(e9, Err(std::io::ErrorKind::TimedOut), "DROP: no answer");
    assert_eq!(e10, Err(std::io::ErrorKind::ConnectionRefused), "tcp-reset");
    assert_eq!(e11, Err(Some(libc::ECONNREFUSED)), "port unreachable");
    assert_eq!(e12, Err(Some(libc::EHOSTUNREACH)), "admin prohibited");
    assert!(out.rule_packets("--dport 9") >= 1);
    assert!(out.rule_packets("--dport 10") >= 1);
    assert_eq!(out.rule_packets("--dport 11"), 1);
    // Byte for byte: each reply the client received equals what the kernel's REJECT builds
    // from the request it answers (dataplane::reject follows nf_reject_ipv4 / icmp_send).
    let sent: Vec<&Vec<u8>> = frames.iter().filter(|(o, _)| *o).map(|(_, f)| f).collect();
    let got: Vec<&Vec<u8>> = frames.iter().filter(|(o, _)| !*o).map(|(_, f)| f).collect();
    let syn10 = sent
        .iter()
        .find(|f| f.len() >= 54 && f[23] == 6 && f[36..38] == 10u16.to_be_bytes())
        .expect("the SYN to port 10 was captured");
    let rst = got
        .iter()
        .find(|f| f.len() >= 54 && f[23] == 6 && f[34..36] == 10u16.to_be_bytes())
        .expect("the RST was captured");
    let mut want = vec![0u8; 2048];
    let n = dataplane::reject::build_reject(
        syn10,
        classifier::RejectWith::TcpReset,
        None,
        0,
        &mut want,
    )
    .unwrap();
    assert_eq!(&rst[..], &want[..n], "RST byte for byte");
    let udp11 = sent
        .iter()
        .find(|f| f.len() >= 42 && f[23] == 17 && f[36..38] == 11u16.to_be_bytes())
        .unwrap();
    let icmp = got
        .iter()
        .find(|f| f.len() >= 42 && f[23] == 1 && f[34] == 3 && f[35] == 3)
        .expect("the port unreachable was captured");
    let n = dataplane::reject::build_reject(
        udp11,
        classifier::RejectWith::PortUnreachable,
        None,
        u16::from_be_bytes([icmp[18], icmp[19]]),
        &mut want,
    )
    .unwrap();
    assert_eq!(
        &icmp[..],
        &want[..n],
        "ICMP error byte for byte (IP ID taken from the reply)"
    );
}

#[test]
fn e2e_log_lines_are_the_kernels() {
    require_e2e!();
    let mut r = Rig::new(1);
    let rules = "*filter\n:FORWARD ACCEPT [0:0]\n\
        -A FORWARD -p udp --dport 11 -j LOG --log-prefix \"pw-e2e \"\nCOMMIT\n";
    r.start(rules, "");
    let frames = Rig::in_ns(&r.c, || {
        let cap = crate::netns::RawCapture::open("pwc0").unwrap();
        let u = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
        for i in 0..3 {
            u.send_to(&vec![b'a'; 10 + i], (SERVER_IP, 11)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        cap.drain()
    });
    let out = r.stop();
    assert_eq!(out.code, 0, "{}", out.stderr);
    let log = std::fs::read_to_string(r.path("log")).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    // The kernel's nf_log_syslog line, written out field by field from the captured frame.
    let want: Vec<String> = frames
        .iter()
        .filter(|(o, f)| *o && f.len() >= 42 && f[23] == 17)
        .map(|(_, f)| {
            let mac: Vec<String> = f[..14].iter().map(|b| format!("{b:02x}")).collect();
            let be = |i: usize| u16::from_be_bytes([f[i], f[i + 1]]);
            format!(
                "pw-e2e IN=pwf0 OUT=pwf1 MAC={} SRC={CLIENT_IP} DST={SERVER_IP} LEN={} TOS=0x00 PREC=0x00 TTL=64 ID={} {}PROTO=UDP SPT={} DPT=11 LEN={} ",
                mac.join(":"),
                be(16),
                be(18),
                if f[20] & 0x40 != 0 { "DF " } else { "" },
                be(34),
                be(38)
            )
        })
        .collect();
    assert_eq!(want.len(), 3);
    assert_eq!(lines, want);
}

#[test]
fn e2e_multi_queue_two_workers() {
    require_e2e!();
    let mut r = Rig::new(4);
    let notes = r.start(ACCEPT_ALL, "cores = [0, 1]\nframes = 1024");
    assert!(
        notes.iter().any(|n| n.contains("worker 0: queues [0, 2]")),
        "{notes:?}"
    );
    assert!(
        notes.iter().any(|n| n.contains("worker 1: queues [1, 3]")),
        "{notes:?}"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.s, SERVER_IP, 7, Arc::clone(&stop));
    let results = Rig::in_ns(&r.c, || {
        let hs: Vec<_> = (0..32)
            .map(|_| std::thread::spawn(|| tcp_echo(SERVER_IP, 7, 32 * 1024)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let out = r.stop();
    assert!(results.iter().all(|x| x.is_ok()), "{results:?}");
    assert_eq!(out.code, 0, "{}", out.stderr);
    // veth queues follow the sender's CPU, not a symmetric hash: steering moves the frames that
    // arrive at the wrong worker to the flow's owner, and none is lost on the way.
    assert!(
        notes.iter().any(|n| n.contains("flow steering on")),
        "{notes:?}"
    );
    let (hout, hin) = (out.counter("handoff_out"), out.counter("handoff_in"));
    assert!(
        hout > 0 && hout == hin,
        "handoff out {hout}, in {hin}\n{}",
        out.stderr
    );
    assert_eq!(out.counter("handoff_dropped"), 0);
    for w in 0..2 {
        let line = out
            .stderr
            .lines()
            .find(|l| l.starts_with(&format!("pollwall: worker {w}: rx ")))
            .unwrap();
        let rx: u64 = line.split_whitespace().nth(4).unwrap().parse().unwrap();
        assert!(rx > 0, "worker {w} saw traffic: {line}");
        assert!(line.ends_with("lost 0"), "{line}");
    }
}

#[test]
fn e2e_exception_path_to_the_box_itself() {
    require_e2e!();
    let mut r = Rig::new(1);
    let rules = "*filter\n:INPUT DROP [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n\
        -A INPUT -p tcp --dport 7777 -j ACCEPT\nCOMMIT\n";
    r.start(rules, "tap = \"pwtap0\"");
    r.f.exec_ok(
        "ip",
        &[
            "addr",
            "add",
            &format!("{}/24", rig::BOX_IP),
            "dev",
            "pwtap0",
        ],
    );
    r.f.exec_ok("ip", &["link", "set", "pwtap0", "up"]);
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.f, rig::BOX_IP, 7777, Arc::clone(&stop));
    let (ok, refused) = Rig::in_ns(&r.c, || {
        let ok = tcp_echo(rig::BOX_IP, 7777, 10_000);
        let refused = std::net::TcpStream::connect_timeout(
            &format!("{}:7778", rig::BOX_IP).parse().unwrap(),
            Duration::from_millis(400),
        )
        .map(|_| ())
        .map_err(|e| e.kind());
        (ok, refused)
    });
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let out = r.stop();
    assert_eq!(
        ok,
        Ok(()),
        "TCP to the box's own address through INPUT and OUTPUT"
    );
    assert_eq!(
        refused,
        Err(std::io::ErrorKind::TimedOut),
        "INPUT policy DROP"
    );
    assert!(out.rule_packets("--dport 7777") >= 3, "{}", out.stdout);
    assert!(out.policy_packets("OUTPUT") >= 3, "{}", out.stdout);
    assert!(out.policy_packets("INPUT") >= 1, "{}", out.stdout);
    assert!(
        out.counter("local_in") >= 3 && out.counter("local_out") >= 3,
        "{}",
        out.stderr
    );
}

#[test]
fn e2e_clean_shutdown_under_load_then_restart() {
    require_e2e!();
    let mut r = Rig::new(1);
    r.start(ACCEPT_ALL, "");
    let stop = Arc::new(AtomicBool::new(false));
    let flood = {
        let stop = Arc::clone(&stop);
        rig::spawn_in_ns(&r.c, move || {
            let u = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
            let t = std::time::Instant::now();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) && t.elapsed() < Duration::from_secs(5) {
                let _ = u.send_to(&[0u8; 64], (SERVER_IP, 9));
                n += 1;
                if n.is_multiple_of(64) {
                    std::thread::sleep(Duration::from_micros(500));
                }
            }
            n
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let out = r.stop();
    let sent_during = flood.is_finished();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let sent = flood.join().unwrap();
    assert!(
        !sent_during && sent > 100,
        "traffic ran through the shutdown ({sent} datagrams)"
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("lost 0"), "{}", out.stderr);
    assert!(out.counter("forwarded") > 50, "{}", out.stderr);
    for dev in ["pwf0", "pwf1"] {
        let link = r.f.exec_ok("ip", &["-d", "link", "show", dev]);
        assert!(!link.contains("xdp"), "program detached from {dev}: {link}");
    }
    // The queues are free again at once (the bind retries EBUSY while the kernel lets go).
    r.start(ACCEPT_ALL, "");
    let again = r.stop();
    assert_eq!(again.code, 0, "{}", again.stderr);
}

#[test]
fn e2e_af_packet_backend() {
    require_e2e!();
    let mut r = Rig::new(1);
    let rules = "*filter\n:FORWARD ACCEPT [0:0]\n\
        -A FORWARD -p tcp --dport 10 -j REJECT --reject-with tcp-reset\nCOMMIT\n";
    let notes = r.start(rules, "backend = \"af_packet\"");
    assert!(notes.iter().any(|n| n.contains("AF_PACKET")), "{notes:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.s, SERVER_IP, 7, Arc::clone(&stop));
    let (tcp, udp, rst) = Rig::in_ns(&r.c, || {
        let tcp = tcp_echo(SERVER_IP, 7, 256 * 1024);
        let udp = udp_echoes(SERVER_IP, 7, 50);
        let rst = std::net::TcpStream::connect_timeout(
            &format!("{SERVER_IP}:10").parse().unwrap(),
            Duration::from_millis(500),
        )
        .map(|_| ())
        .map_err(|e| e.kind());
        (tcp, udp, rst)
    });
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let out = r.stop();
    assert_eq!(tcp, Ok(()));
    assert_eq!(udp, 50);
    assert_eq!(rst, Err(std::io::ErrorKind::ConnectionRefused));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("lost 0"), "{}", out.stderr);
}
