//! Stateful end to end: `pollwall daemon` on AF_XDP with a classic stateful ruleset (policy
//! DROP; RELATED and ESTABLISHED accepted; NEW only from the inside port, to the echo and ftp
//! ports and any UDP). A TCP connection from inside works and one from outside does not; an
//! ICMP port unreachable for a tracked UDP flow comes back as RELATED; a passive-mode ftp
//! session against the small server below works only with the raw table's ftp helper (the
//! data connection is RELATED through its expectation); two workers on four-queue veths keep
//! both directions of every flow in one worker.

use super::rig::{echo_server, skip_reason, spawn_in_ns, tcp_echo, Rig, CLIENT_IP, SERVER_IP};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

const HELPER: &str = "*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 21 -j CT --helper ftp\nCOMMIT\n";

const FILTER: &str = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n-A FORWARD -m conntrack --ctstate INVALID -j DROP\n-A FORWARD -i pwf0 -p tcp -m multiport --dports 7,21 -m conntrack --ctstate NEW -j ACCEPT\n-A FORWARD -i pwf0 -p udp -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n";

const DATA: &[u8] = b"pollwall ftp data connection\r\n";

fn connect(addr: &str, port: u16, ms: u64) -> std::io::Result<TcpStream> {
    let to: SocketAddr = format!("{addr}:{port}").parse().unwrap();
    TcpStream::connect_timeout(&to, Duration::from_millis(ms))
}

/// A one-session passive-mode ftp server on the server's port 21: banner, USER, PASV (a data
/// port of its own), the data sent on the connection the client makes to it.
fn ftp_server(r: &Rig) -> std::thread::JoinHandle<Result<(), String>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = spawn_in_ns(&r.s, move || {
        let l = TcpListener::bind((SERVER_IP, 21)).map_err(|e| e.to_string())?;
        ready_tx.send(()).unwrap();
        let (c, _) = l.accept().map_err(|e| e.to_string())?;
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut w = c.try_clone().unwrap();
        let mut rd = BufReader::new(c);
        let mut line = String::new();
        let say = |w: &mut TcpStream, s: &str| w.write_all(s.as_bytes());
        say(&mut w, "220 pollwall test ftp\r\n").map_err(|e| e.to_string())?;
        for expect in ["USER", "PASV"] {
            line.clear();
            rd.read_line(&mut line).map_err(|e| e.to_string())?;
            if !line.starts_with(expect) {
                return Err(format!("wanted {expect}, got {line:?}"));
            }
            if expect == "USER" {
                say(&mut w, "331 any password\r\n").map_err(|e| e.to_string())?;
            }
        }
        let data = TcpListener::bind((SERVER_IP, 0)).map_err(|e| e.to_string())?;
        let port = data.local_addr().unwrap().port();
        let reply = format!(
            "227 Entering Passive Mode (10,9,0,2,{},{}).\r\n",
            port >> 8,
            port & 0xff
        );
        say(&mut w, &reply).map_err(|e| e.to_string())?;
        data.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        loop {
            match data.accept() {
                Ok((mut d, _)) => {
                    d.set_nonblocking(false).unwrap();
                    d.write_all(DATA).map_err(|e| e.to_string())?;
                    return Ok(());
                }
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => return Err(format!("no data connection: {e}")),
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    h
}

/// The client's side of the session: the data it read, or what failed.
fn ftp_client() -> Result<Vec<u8>, String> {
    let c = connect(SERVER_IP, 21, 2000).map_err(|e| format!("control: {e}"))?;
    c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut w = c.try_clone().unwrap();
    let mut rd = BufReader::new(c);
    let mut line = String::new();
    let mut expect = |rd: &mut BufReader<TcpStream>, code: &str| -> Result<String, String> {
        line.clear();
        rd.read_line(&mut line).map_err(|e| format!("reply: {e}"))?;
        if line.starts_with(code) {
            Ok(line.clone())
        } else {
            Err(format!("wanted {code}, got {line:?}"))
        }
    };
    expect(&mut rd, "220")?;
    w.write_all(b"USER anonymous\r\n").unwrap();
    expect(&mut rd, "331")?;
    w.write_all(b"PASV\r\n").unwrap();
    let reply = expect(&mut rd, "227")?;
    let nums: Vec<u16> = reply
        .split(['(', ')'])
        .nth(1)
        .ok_or("no address in 227")?
        .split(',')
        .map(|n| n.trim().parse().unwrap_or(0))
        .collect();
    let port = nums[4] << 8 | nums[5];
    let mut d = connect(SERVER_IP, port, 1000).map_err(|e| format!("data connection: {e}"))?;
    d.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut got = Vec::new();
    d.read_to_end(&mut got).map_err(|e| format!("data: {e}"))?;
    Ok(got)
}

#[test]
fn e2e_stateful_inside_out_icmp_related_and_ftp_through_the_helper() {
    require_e2e!();
    let mut r = Rig::new(1);
    r.start(&format!("{HELPER}{FILTER}"), "");
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.s, SERVER_IP, 7, Arc::clone(&stop));
    let inside = Rig::in_ns(&r.c, || tcp_echo(SERVER_IP, 7, 256 * 1024));
    // The client listens; the server's attempt is NEW from outside.
    let listener = spawn_in_ns(&r.c, || {
        let l = TcpListener::bind((CLIENT_IP, 2222)).unwrap();
        l.set_nonblocking(true).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        l.accept().is_ok()
    });
    std::thread::sleep(Duration::from_millis(100));
    let outside = Rig::in_ns(&r.s, || connect(CLIENT_IP, 2222, 800).map(|_| ()));
    let accepted = listener.join().unwrap();
    // A datagram to a closed port: the server's ICMP port unreachable is RELATED to the flow.
    let refused = Rig::in_ns(&r.c, || {
        let u = UdpSocket::bind((CLIENT_IP, 0)).unwrap();
        u.connect((SERVER_IP, 9999)).unwrap();
        u.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        u.send(b"anyone?").unwrap();
        u.recv(&mut [0u8; 16]).map_err(|e| e.kind())
    });
    let ftp = ftp_server(&r);
    let got = Rig::in_ns(&r.c, ftp_client);
    let served = ftp.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let out = r.stop();
    assert_eq!(inside, Ok(()), "a connection from inside works");
    assert!(outside.is_err() && !accepted, "one from outside does not");
    assert_eq!(
        refused,
        Err(std::io::ErrorKind::ConnectionRefused),
        "the ICMP error passed as RELATED"
    );
    assert_eq!(got.as_deref(), Ok(DATA), "ftp through the helper");
    assert_eq!(served, Ok(()));
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn e2e_stateful_ftp_data_is_refused_without_the_helper() {
    require_e2e!();
    let mut r = Rig::new(1);
    r.start(FILTER, "");
    let ftp = ftp_server(&r);
    let got = Rig::in_ns(&r.c, ftp_client);
    let _ = ftp.join().unwrap();
    let out = r.stop();
    let err = got.expect_err("the data connection is NEW from inside to a port not allowed");
    assert!(err.starts_with("data connection"), "{err}");
    assert_eq!(out.code, 0, "{}", out.stderr);
}

#[test]
fn e2e_stateful_two_workers_keep_each_flow_in_one() {
    require_e2e!();
    let mut r = Rig::new(4);
    r.start(FILTER, "cores = [0, 1]\nframes = 1024");
    let stop = Arc::new(AtomicBool::new(false));
    let srv = echo_server(&r.s, SERVER_IP, 7, Arc::clone(&stop));
    let results = Rig::in_ns(&r.c, || {
        let hs: Vec<_> = (0..24)
            .map(|_| std::thread::spawn(|| tcp_echo(SERVER_IP, 7, 32 * 1024)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    stop.store(true, Ordering::Relaxed);
    srv.join().unwrap();
    let out = r.stop();
    // A reply tracked by a worker that did not see the SYN would be NEW from outside, and
    // dropped: every echo completing means both directions met the same table.
    assert!(results.iter().all(|x| x.is_ok()), "{results:?}");
    assert!(out.counter("handoff_in") > 0, "{}", out.stderr);
    assert_eq!(out.counter("handoff_dropped"), 0);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
