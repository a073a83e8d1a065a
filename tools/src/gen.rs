//! The traffic generator (the pktgen role): `BPF_PROG_TEST_RUN` in live-frames mode runs a
//! 4-instruction XDP program (`bpf_redirect(ifindex)`) on a template frame `repeat` times, and
//! each run really transmits the frame out of the interface (5-8 Mpps on one core here, DESIGN.md
//! §7). Flows differ by UDP source port; the frames are complete (IP and UDP checksums set).
//!
//! Needs root (CAP_BPF, CAP_NET_ADMIN). The receiving side of the veth must run an XDP program
//! or have GRO on, or the kernel drops redirected frames silently (DESIGN.md §7).

use dataplane::bpf::Program;
use dataplane::netdev::ifindex;
use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What to send.
#[derive(Clone, Debug)]
pub struct GenConfig {
    /// Interface to send out of (in the calling thread's network namespace).
    pub ifname: String,
    /// Number of flows: UDP source ports `sport_base ..`, then (beyond 65536 of them) source
    /// addresses counting up from `src_ip` (the AF_XDP sender rewrites each frame it reuses).
    pub flows: u32,
    /// Frame size in bytes without FCS (at least 42: Ethernet + IPv4 + UDP).
    pub size: usize,
    /// Target rate in packets per second; 0 sends as fast as possible.
    pub pps: u64,
    pub duration: Duration,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub sport_base: u16,
    pub dport: u16,
    /// Each source address (every 65536 flows) sends to its own destination port `dport + n`,
    /// so that MASQUERADE onto one address never runs out of ports: flow f's reply tuple
    /// (dst:dport+n → the box:sport) is free and its source port is kept.
    pub dport_per_source: bool,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            ifname: String::new(),
            flows: 16,
            size: 60,
            pps: 0,
            duration: Duration::from_secs(2),
            src_mac: [0x02, 0x70, 0x77, 0, 0, 0x0a],
            dst_mac: [0x02, 0x70, 0x77, 0, 0, 0x0b],
            src_ip: Ipv4Addr::new(10, 10, 0, 2),
            dst_ip: Ipv4Addr::new(10, 11, 0, 2),
            sport_base: 10000,
            dport: 9,
            dport_per_source: false,
        }
    }
}

/// What was sent.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenReport {
    pub sent: u64,
    pub elapsed: Duration,
}

impl GenReport {
    pub fn pps(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// One UDP frame of flow `sport`, `size` bytes long (DF set, TTL 64, checksums filled).
pub fn udp_frame(cfg: &GenConfig, sport: u16) -> Vec<u8> {
    use classifier::wire::{build, ethernet::EtherType, ipv4};
    let payload = vec![0u8; cfg.size.max(42) - 42];
    let l4 = build::udp(cfg.src_ip, cfg.dst_ip, sport, cfg.dport, &payload);
    let ip = ipv4::Repr {
        dont_frag: true,
        ..ipv4::Repr::new(cfg.src_ip, cfg.dst_ip, ipv4::IpProtocol::UDP, 0, 64)
    };
    let datagram = build::ipv4(ip, &l4);
    build::ethernet(cfg.dst_mac, cfg.src_mac, EtherType::IPV4, &datagram, 0)
}

/// Rewrites a frame made by [`udp_frame`] into flow `f`'s: source port `sport_base + f % 65536`,
/// source address `src_ip + f / 65536`, IPv4 checksum recomputed, UDP checksum 0 (none).
pub fn set_flow(frame: &mut [u8], cfg: &GenConfig, f: u32) {
    if frame.len() < 42 {
        return;
    }
    let src = u32::from(cfg.src_ip).wrapping_add(f >> 16);
    frame[26..30].copy_from_slice(&src.to_be_bytes());
    let sport = cfg.sport_base.wrapping_add(f as u16);
    frame[34..36].copy_from_slice(&sport.to_be_bytes());
    if cfg.dport_per_source {
        let dport = cfg.dport.wrapping_add((f >> 16) as u16);
        frame[36..38].copy_from_slice(&dport.to_be_bytes());
    }
    frame[40..42].copy_from_slice(&[0, 0]);
    frame[24..26].copy_from_slice(&[0, 0]);
    let c = !classifier::wire::checksum::data(&frame[14..34]);
    frame[24..26].copy_from_slice(&c.to_be_bytes());
}

/// Sends from an AF_XDP socket's TX ring (copy mode) instead of live frames: the frames enter
/// the peer as ordinary skbs, so no XDP program or GRO is needed on the receiving side (what
/// the kernel-forwarding runs need; live frames redirected into a veth whose peer has no XDP
/// program mostly vanish before IP). Slower than live frames (~1-2 Mpps here).
pub fn run_xsk(cfg: &GenConfig, stop: &AtomicBool) -> io::Result<GenReport> {
    use dataplane::xsk::{RingSizes, Umem, XdpDesc, XskSocket, ZeroCopy};
    const FRAMES: u32 = 1024;
    let mut umem = Umem::new(FRAMES, 2048)?;
    let rings = RingSizes {
        rx: 64,
        tx: 512,
        fill: 64,
        comp: 512,
    };
    let mut sock = XskSocket::open(&umem, None, ifindex(&cfg.ifname)?, 0, rings, ZeroCopy::Off)?;
    let flows = cfg.flows.max(1);
    let mut free: Vec<XdpDesc> = Vec::with_capacity(FRAMES as usize);
    for i in 0..FRAMES {
        let mut f = udp_frame(cfg, 0);
        set_flow(&mut f, cfg, i % flows);
        let addr = umem.chunk_addr(i);
        umem.write(addr, &f);
        free.push(XdpDesc {
            addr,
            len: f.len() as u32,
            options: 0,
        });
    }
    let mut comp = vec![0u64; 512];
    let start = Instant::now();
    let mut sent = 0u64;
    let mut template = udp_frame(cfg, 0);
    let len = template.len() as u32;
    // More flows than frames: each reused frame is rewritten into the next flow.
    let rewrite = flows > FRAMES;
    let mut next_flow = FRAMES;
    while !stop.load(Ordering::Relaxed) && start.elapsed() < cfg.duration {
        let mut budget = free.len();
        if cfg.pps > 0 {
            let due = (start.elapsed().as_secs_f64() * cfg.pps as f64) as u64;
            budget = budget.min(due.saturating_sub(sent) as usize);
        }
        if budget > 0 {
            let k = free.len() - budget;
            let n = sock.tx.push(&free[k..]);
            free.drain(k..k + n);
            sent += n as u64;
        }
        let _ = sock.kick_tx();
        let n = sock.comp.pop(&mut comp);
        for &a in &comp[..n] {
            if rewrite {
                set_flow(&mut template, cfg, next_flow % flows);
                next_flow = next_flow.wrapping_add(1);
                umem.write(a, &template);
            }
            free.push(XdpDesc {
                addr: a,
                len,
                options: 0,
            });
        }
        if budget == 0 && cfg.pps > 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok(GenReport {
        sent,
        elapsed: start.elapsed(),
    })
}

/// Sends until `cfg.duration` has passed or `stop` is set.
pub fn run(cfg: &GenConfig, stop: &AtomicBool) -> io::Result<GenReport> {
    let prog = Program::redirect_to_ifindex(ifindex(&cfg.ifname)?)?;
    let frames: Vec<Vec<u8>> = (0..cfg.flows.max(1))
        .map(|i| udp_frame(cfg, cfg.sport_base.wrapping_add(i as u16)))
        .collect();
    // Each BPF_PROG_TEST_RUN call has a fixed cost of ~25 ms here (the live-frames page pool is
    // set up and torn down per call), so calls are sized to last ~200 ms at the rate measured so
    // far (or at the target rate when pacing).
    let start = Instant::now();
    let mut sent = 0u64;
    let mut i = 0usize;
    let mut chunk: u64 = if cfg.pps == 0 {
        65_536
    } else {
        (cfg.pps / 5).max(64)
    };
    while !stop.load(Ordering::Relaxed) && start.elapsed() < cfg.duration {
        let left = cfg.duration.saturating_sub(start.elapsed()).as_secs_f64();
        let rate_guess = if sent > 0 {
            sent as f64 / start.elapsed().as_secs_f64()
        } else {
            chunk as f64 * 5.0
        };
        let n = chunk
            .min((rate_guess * left).ceil().max(64.0) as u64)
            .clamp(64, u64::from(u32::MAX));
        prog.test_run_live(&frames[i % frames.len()], n as u32, 64)?;
        sent += n;
        i += 1;
        if cfg.pps > 0 {
            let due = Duration::from_secs_f64(sent as f64 / cfg.pps as f64);
            let now = start.elapsed();
            if due > now {
                std::thread::sleep(due - now);
            }
        } else {
            chunk = ((sent as f64 / start.elapsed().as_secs_f64()) * 0.2).max(4096.0) as u64;
        }
    }
    Ok(GenReport {
        sent,
        elapsed: start.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_and_have_valid_checksums() {
        let cfg = GenConfig::default();
        for size in [42, 60, 128, 1514] {
            let f = udp_frame(
                &GenConfig {
                    size,
                    ..cfg.clone()
                },
                1234,
            );
            assert_eq!(f.len(), size);
            let h = classifier::wire::headers::parse_ethernet(&f).expect("a valid IPv4 frame");
            assert_eq!(h.ports(), Some((1234, 9)));
            assert_eq!(usize::from(h.ip_len), size - 14);
            let udp = classifier::wire::udp::Packet::new_checked(&f[34..]).unwrap();
            assert!(
                udp.verify_checksum(cfg.src_ip, cfg.dst_ip),
                "UDP checksum verifies"
            );
        }
    }
}
