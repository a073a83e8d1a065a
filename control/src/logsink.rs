//! Where the daemon writes LOG lines: a file or stderr (the line as the kernel prints it), or
//! syslog (`log_file = "syslog"`, or `"syslog:/path/to/socket"`), where each line goes as one
//! datagram to `/dev/log` with the rule's `--log-level` as its severity, as the kernel's LOG lines
//! reach syslog through the kernel log with theirs. Facility `daemon` (userspace cannot send as
//! `kern`).

use std::io::Write;
use std::os::unix::net::UnixDatagram;

/// Receives LOG lines with their syslog level (0-7).
pub trait LineSink {
    fn line(&mut self, level: u8, text: &str);
    fn flush_lines(&mut self) {}
}

impl<W: Write> LineSink for W {
    fn line(&mut self, _level: u8, text: &str) {
        let _ = writeln!(self, "{text}");
    }
    fn flush_lines(&mut self) {
        let _ = self.flush();
    }
}

/// Lines as syslog datagrams.
pub struct Syslog {
    sock: UnixDatagram,
}

/// `LOG_DAEMON` in syslog's numbering.
const FACILITY_DAEMON: u8 = 3;

impl Syslog {
    /// Connects to the syslog socket at `path` (`/dev/log` normally).
    pub fn connect(path: &str) -> Result<Syslog, String> {
        let sock = UnixDatagram::unbound().map_err(|e| format!("syslog socket: {e}"))?;
        sock.connect(path)
            .map_err(|e| format!("cannot reach syslog at {path}: {e}"))?;
        sock.set_nonblocking(true)
            .map_err(|e| format!("syslog socket: {e}"))?;
        Ok(Syslog { sock })
    }

    /// The datagram for one line: `<PRI>pollwall: TEXT`.
    pub fn message(level: u8, text: &str) -> String {
        let pri = u32::from(FACILITY_DAEMON) * 8 + u32::from(level.min(7));
        format!("<{pri}>pollwall: {text}")
    }
}

impl LineSink for Syslog {
    fn line(&mut self, level: u8, text: &str) {
        // A full syslog socket drops the line rather than stall the control loop.
        let _ = self.sock.send(Syslog::message(level, text).as_bytes());
    }
}

/// Opens the sink a `log_file` setting names (None: stderr).
pub fn open(spec: Option<&str>) -> Result<Box<dyn LineSink>, String> {
    Ok(match spec {
        None => Box::new(std::io::stderr()),
        Some("syslog") => Box::new(Syslog::connect("/dev/log")?),
        Some(s) if s.starts_with("syslog:") => Box::new(Syslog::connect(&s["syslog:".len()..])?),
        Some(p) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| format!("cannot open log_file {p}: {e}"))?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syslog_datagrams_carry_the_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut sink = open(Some(&format!("syslog:{}", path.display()))).unwrap();
        sink.line(4, "pw: IN=a OUT=b ");
        sink.line(7, "debug line");
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<28>pollwall: pw: IN=a OUT=b ");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<31>pollwall: debug line");
        assert!(open(Some("syslog:/nonexistent/pw.sock")).is_err());
    }

    #[test]
    fn writers_get_the_plain_line() {
        let mut v: Vec<u8> = Vec::new();
        v.line(4, "a line");
        assert_eq!(v, b"a line\n");
    }
}
