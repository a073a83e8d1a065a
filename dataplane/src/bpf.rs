//! The XDP side, loaded with raw `bpf(2)` calls (no clang, no libbpf): an XSKMAP per port, the
//! 6-instruction redirect program, and its attachment with `BPF_LINK_CREATE` (driver mode first,
//! generic mode as fallback). Closing the link fd detaches the program, so a crash or `kill -9`
//! never leaves a program behind on the interface.
//!
//! Also the traffic generator's program (`bpf_redirect(ifindex)`) and `BPF_PROG_TEST_RUN` with
//! live frames, used by `tools/` in the pktgen role.

use crate::xsk::sys::errno_name;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TEST_RUN: libc::c_long = 10;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
const BPF_XDP: u32 = 37;
const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;
const BPF_F_TEST_XDP_LIVE_FRAMES: u32 = 2;

/// XDP actions.
pub const XDP_DROP: i32 = 1;
pub const XDP_PASS: i32 = 2;

/// `union bpf_attr`, as a zeroed 144-byte buffer written at the uapi offsets.
#[repr(C, align(8))]
struct Attr([u8; 144]);

impl Attr {
    fn new() -> Attr {
        Attr([0; 144])
    }
    fn u32(&mut self, off: usize, v: u32) -> &mut Self {
        self.0[off..off + 4].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn u64(&mut self, off: usize, v: u64) -> &mut Self {
        self.0[off..off + 8].copy_from_slice(&v.to_ne_bytes());
        self
    }
    fn name(&mut self, off: usize, name: &str) -> &mut Self {
        let b = name.as_bytes();
        let n = b.len().min(15);
        self.0[off..off + n].copy_from_slice(&b[..n]);
        self
    }
    fn get_u32(&self, off: usize) -> u32 {
        u32::from_ne_bytes([
            self.0[off],
            self.0[off + 1],
            self.0[off + 2],
            self.0[off + 3],
        ])
    }
}

fn bpf(cmd: libc::c_long, attr: &mut Attr) -> io::Result<i64> {
    // SAFETY: `attr` is a live 144-byte buffer laid out as `union bpf_attr` for `cmd`; every
    // pointer stored in it (instructions, licence, log buffer, keys, packet data) refers to
    // memory the caller keeps alive across this call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr.0.as_mut_ptr(),
            std::mem::size_of::<Attr>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: i64) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us; nobody else owns it.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

fn ctx(what: String, e: io::Error) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) => " (needs CAP_BPF and CAP_NET_ADMIN: run as root)",
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what}: {}{hint} ({e})", errno_name(&e)))
}

/// An XSKMAP: RX queue index → AF_XDP socket.
pub struct XskMap {
    fd: OwnedFd,
}

impl XskMap {
    pub fn new(name: &str, entries: u32) -> io::Result<XskMap> {
        let mut a = Attr::new();
        a.u32(0, BPF_MAP_TYPE_XSKMAP)
            .u32(4, 4)
            .u32(8, 4)
            .u32(12, entries.max(1))
            .name(28, name);
        let fd =
            bpf(BPF_MAP_CREATE, &mut a).map_err(|e| ctx(format!("BPF_MAP_CREATE {name}"), e))?;
        Ok(XskMap { fd: owned(fd) })
    }

    /// Points queue `queue`'s slot at socket `xsk`.
    pub fn set(&self, queue: u32, xsk: BorrowedFd<'_>) -> io::Result<()> {
        let key = queue;
        let value = xsk.as_raw_fd() as u32;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64)
            .u64(16, &value as *const u32 as u64)
            .u64(24, 0);
        bpf(BPF_MAP_UPDATE_ELEM, &mut a)
            .map_err(|e| ctx(format!("XSKMAP update queue {queue}"), e))?;
        Ok(())
    }

    /// Empties queue `queue`'s slot: its frames take the program's fallback action again.
    pub fn clear(&self, queue: u32) {
        let key = queue;
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u64(8, &key as *const u32 as u64);
        let _ = bpf(BPF_MAP_DELETE_ELEM, &mut a);
    }
}

/// A loaded XDP program.
pub struct Program {
    fd: OwnedFd,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> [u8; 8] {
    let o = off.to_le_bytes();
    let i = imm.to_le_bytes();
    [
        code,
        (src << 4) | (dst & 0xf),
        o[0],
        o[1],
        i[0],
        i[1],
        i[2],
        i[3],
    ]
}

impl Program {
    /// `return bpf_redirect_map(&xsks, ctx->rx_queue_index, fallback)`: every frame of a queue
    /// with a socket goes to it; `fallback` (XDP_DROP for a firewall: fail closed) otherwise.
    pub fn redirect_to_xsk(map: &XskMap, fallback: i32) -> io::Result<Program> {
        let code: Vec<[u8; 8]> = vec![
            insn(0x61, 2, 1, 16, 0),                 // r2 = ctx->rx_queue_index
            insn(0x18, 1, 1, 0, map.fd.as_raw_fd()), // r1 = map (pseudo map fd)
            insn(0x00, 0, 0, 0, 0),                  //   (second half of ld_imm64)
            insn(0xb7, 3, 0, 0, fallback),           // r3 = fallback action
            insn(0x85, 0, 0, 0, 51),                 // call bpf_redirect_map
            insn(0x95, 0, 0, 0, 0),                  // exit
        ];
        Program::load("pw_xsk_redirect", &code)
    }

    /// `return bpf_redirect(ifindex, 0)`: the generator's program (live frames go out of
    /// `ifindex`).
    pub fn redirect_to_ifindex(ifindex: u32) -> io::Result<Program> {
        let code = vec![
            insn(0xb7, 1, 0, 0, ifindex as i32), // r1 = ifindex
            insn(0xb7, 2, 0, 0, 0),              // r2 = 0
            insn(0x85, 0, 0, 0, 23),             // call bpf_redirect
            insn(0x95, 0, 0, 0, 0),              // exit
        ];
        Program::load("pw_gen_redirect", &code)
    }

    fn load(name: &str, code: &[[u8; 8]]) -> io::Result<Program> {
        let bytes: Vec<u8> = code.iter().flatten().copied().collect();
        let license = c"Dual MIT/GPL";
        let attempt = |log: Option<&mut Vec<u8>>| {
            let mut a = Attr::new();
            a.u32(0, BPF_PROG_TYPE_XDP)
                .u32(4, code.len() as u32)
                .u64(8, bytes.as_ptr() as u64)
                .u64(16, license.as_ptr() as u64)
                .name(48, name)
                .u32(68, BPF_XDP);
            if let Some(buf) = log {
                a.u32(24, 1)
                    .u32(28, buf.len() as u32)
                    .u64(32, buf.as_mut_ptr() as u64);
            }
            bpf(BPF_PROG_LOAD, &mut a)
        };
        match attempt(None) {
            Ok(fd) => Ok(Program { fd: owned(fd) }),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EINVAL)) => {
                let mut log = vec![0u8; 64 * 1024];
                let r = attempt(Some(&mut log));
                let text = String::from_utf8_lossy(&log);
                let text = text.trim_end_matches('\0').trim();
                match r {
                    Ok(fd) => Ok(Program { fd: owned(fd) }),
                    Err(e2) => Err(ctx(format!("BPF_PROG_LOAD {name} (verifier: {text})"), e2)),
                }
            }
            Err(e) => Err(ctx(format!("BPF_PROG_LOAD {name}"), e)),
        }
    }

    /// Runs the program `repeat` times on `frame` in live-frames mode (each run's XDP_REDIRECT
    /// really transmits): the packet generator. Returns when all runs are done.
    pub fn test_run_live(&self, frame: &[u8], repeat: u32, batch: u32) -> io::Result<()> {
        let mut a = Attr::new();
        a.u32(0, self.fd.as_raw_fd() as u32)
            .u32(8, frame.len() as u32)
            .u64(16, frame.as_ptr() as u64)
            .u32(32, repeat)
            .u32(64, BPF_F_TEST_XDP_LIVE_FRAMES)
            .u32(72, batch);
        bpf(BPF_PROG_TEST_RUN, &mut a).map_err(|e| ctx("BPF_PROG_TEST_RUN".into(), e))?;
        let _ = a.get_u32(24); // retval (unused in live mode)
        Ok(())
    }
}

/// How a program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    Driver,
    Generic,
}

impl XdpMode {
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Driver => "driver",
            XdpMode::Generic => "generic",
        }
    }
}

/// An attachment; dropping it detaches the program.
pub struct Link {
    _fd: OwnedFd,
    pub mode: XdpMode,
}

impl Link {
    /// Attaches `prog` to `ifindex` in generic (SKB) mode only.
    pub fn attach_generic(prog: &Program, ifindex: u32, ifname: &str) -> io::Result<Link> {
        let mut a = Attr::new();
        a.u32(0, prog.fd.as_raw_fd() as u32)
            .u32(4, ifindex)
            .u32(8, BPF_XDP)
            .u32(12, XDP_FLAGS_SKB_MODE);
        let fd = bpf(BPF_LINK_CREATE, &mut a)
            .map_err(|e| ctx(format!("attach XDP to {ifname} (generic mode)"), e))?;
        Ok(Link {
            _fd: owned(fd),
            mode: XdpMode::Generic,
        })
    }

    /// Attaches `prog` to `ifindex`: driver mode, or generic mode when the driver has no XDP
    /// (EOPNOTSUPP) and `allow_generic`.
    pub fn attach(
        prog: &Program,
        ifindex: u32,
        ifname: &str,
        allow_generic: bool,
    ) -> io::Result<Link> {
        let create = |flags: u32| {
            let mut a = Attr::new();
            a.u32(0, prog.fd.as_raw_fd() as u32)
                .u32(4, ifindex)
                .u32(8, BPF_XDP)
                .u32(12, flags);
            bpf(BPF_LINK_CREATE, &mut a)
        };
        match create(XDP_FLAGS_DRV_MODE) {
            Ok(fd) => Ok(Link {
                _fd: owned(fd),
                mode: XdpMode::Driver,
            }),
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) && allow_generic => {
                let fd = create(XDP_FLAGS_SKB_MODE)
                    .map_err(|e| ctx(format!("attach XDP to {ifname} (generic mode)"), e))?;
                Ok(Link {
                    _fd: owned(fd),
                    mode: XdpMode::Generic,
                })
            }
            Err(e) => {
                let why = match e.raw_os_error() {
                    Some(libc::EBUSY) => format!(
                        "{ifname} already has an XDP program; remove it with `ip link set dev {ifname} xdp off`"
                    ),
                    Some(libc::ERANGE) => format!("the MTU of {ifname}'s peer is too large for native XDP"),
                    Some(libc::ENOSPC) => format!("{ifname} has fewer RX queues than its peer has TX queues"),
                    _ => format!("attach XDP to {ifname} (driver mode)"),
                };
                Err(ctx(why, e))
            }
        }
    }
}
