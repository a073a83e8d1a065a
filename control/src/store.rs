//! Where the ruleset lives between commands. Until the daemon exists, it is a file named by
//! `POLLWALL_RULES_FILE` in `iptables-save -c` format: created when missing, locked (a sidecar
//! `FILE.lock`, never replaced) while a command runs so concurrent invocations serialise, and
//! replaced atomically (temp file, fsync, rename, fsync of the directory).
//!
//! Commands reach the store through [`RulesetStore`], so the same command layer can later talk
//! to the daemon instead.

use crate::error::{exit, CmdError, CmdResult};
use crate::grammar::save::store_table;
use crate::restore::{restore, RestoreOptions};
use classifier::Ruleset;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The environment variable naming the rules file.
pub const RULES_FILE_ENV: &str = "POLLWALL_RULES_FILE";

/// How long to wait for the lock (`-w [secs]`): None waits as long as it takes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Wait(pub Option<Duration>);

/// A place that holds the ruleset and runs one transaction at a time on it.
pub trait RulesetStore {
    /// Runs `f` on a copy of the current ruleset; when `f` succeeds and reports a change, the copy
    /// replaces the stored ruleset whole.
    fn transact(
        &self,
        wait: Wait,
        f: &mut dyn FnMut(&mut Ruleset) -> CmdResult<(String, bool)>,
    ) -> CmdResult<String>;
}

/// The rules-file store.
pub struct RulesFile {
    path: PathBuf,
}

struct Lock(File);

impl Drop for Lock {
    fn drop(&mut self) {
        // SAFETY: flock on a file descriptor we own; unlocking cannot violate memory safety.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

impl RulesFile {
    pub fn new(path: impl Into<PathBuf>) -> RulesFile {
        RulesFile { path: path.into() }
    }

    /// The store named by `POLLWALL_RULES_FILE`, or a clear error.
    pub fn from_env() -> CmdResult<RulesFile> {
        match std::env::var_os(RULES_FILE_ENV) {
            Some(p) if !p.is_empty() => Ok(RulesFile::new(p)),
            _ => Err(CmdError::plain(
                exit::OTHER_PROBLEM,
                format!(
                    "pollwall: no ruleset store: set {RULES_FILE_ENV} to the rules file to use \
                     (it is created when missing); the pollwall daemon is not running\n"
                ),
            )),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self, wait: Wait) -> CmdResult<Lock> {
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error("cannot open lock file", Path::new(&lock_path), &e))?;
        let fd = f.as_raw_fd();
        let start = Instant::now();
        loop {
            // SAFETY: flock on a file descriptor we own.
            let rc = unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(Lock(f));
            }
            if let Some(max) = wait.0 {
                if start.elapsed() >= max {
                    return Err(CmdError::plain(
                        exit::RESOURCE_PROBLEM,
                        format!(
                            "Another app is currently holding the xtables lock. Stopped waiting after {}s.\n",
                            max.as_secs()
                        ),
                    ));
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Reads the ruleset (an empty one when the file is missing or empty).
    pub fn load(&self) -> CmdResult<Ruleset> {
        let text = match fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(io_error("cannot read rules file", &self.path, &e)),
        };
        let mut rs = Ruleset::new();
        let opts = RestoreOptions {
            counters: true,
            from_store: true,
            ..Default::default()
        };
        restore(&text, &opts, &mut rs).map_err(|e| {
            CmdError::plain(
                exit::OTHER_PROBLEM,
                format!(
                    "pollwall: rules file {} is corrupt:\n{}",
                    self.path.display(),
                    e.render("iptables-restore")
                ),
            )
        })?;
        Ok(rs)
    }

    /// Writes the ruleset atomically.
    pub fn store(&self, rs: &Ruleset) -> CmdResult<()> {
        let text = serialize(rs);
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            File::open(&dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            io_error("cannot write rules file", &self.path, &e)
        })
    }
}

/// The rules file text: every existing table in `iptables-save -c` form.
pub fn serialize(rs: &Ruleset) -> String {
    let mut text = String::from("# pollwall rules (iptables-save -c format)\n");
    // Oldest table first: loading re-creates them in that order, so the newest ends up first.
    for t in rs.tables.iter().rev() {
        text.push_str(&store_table(t));
    }
    text
}

fn io_error(what: &str, path: &Path, e: &std::io::Error) -> CmdError {
    CmdError::plain(
        exit::OTHER_PROBLEM,
        format!("pollwall: {what} {}: {e}\n", path.display()),
    )
}

impl RulesetStore for RulesFile {
    fn transact(
        &self,
        wait: Wait,
        f: &mut dyn FnMut(&mut Ruleset) -> CmdResult<(String, bool)>,
    ) -> CmdResult<String> {
        let _lock = self.lock(wait)?;
        let existed = self.path.exists();
        let mut rs = self.load()?;
        let (out, modified) = f(&mut rs)?;
        if modified || !existed {
            self.store(&rs)?;
        }
        Ok(out)
    }
}
