//! Errors of the command layer, printed and exited with exactly as iptables 1.8.9 does.
//!
//! iptables has three shapes of error: `xtables_error(PARAMETER_PROBLEM, ...)` (exit 2, a banner
//! and a "Try `iptables -h'" line), the other `xtables_error` kinds (exit 1 or 3, banner only), and
//! libiptc's `iptables: <strerror>.` (exit 1). [`CmdError`] carries which one and renders it.

use std::fmt;

/// The version banner every message starts with.
pub const VERSION: &str = "v1.8.9 (pollwall)";

/// Exit codes of `enum xtables_exittype`.
pub mod exit {
    pub const OTHER_PROBLEM: i32 = 1;
    pub const PARAMETER_PROBLEM: i32 = 2;
    pub const VERSION_PROBLEM: i32 = 3;
    pub const RESOURCE_PROBLEM: i32 = 4;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorShape {
    /// `PROG v1.8.9: msg` + `Try ...` line.
    Parameter,
    /// `PROG v1.8.9: msg` + `Perhaps iptables or your kernel needs to be upgraded.`
    Version,
    /// `PROG v1.8.9: msg`.
    Banner,
    /// `iptables: msg.` (libiptc's strerror).
    Libiptc,
    /// The message as it is (already complete lines).
    Plain,
}

/// A failed command: the text iptables would print and its exit code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CmdError {
    pub code: i32,
    pub shape: ErrorShape,
    pub msg: String,
    /// What the command printed to stdout before it failed (`-X -v` prints as it goes).
    pub stdout: String,
    /// Warnings printed on stderr before the message.
    pub notes: String,
}

impl CmdError {
    pub fn param(msg: impl Into<String>) -> CmdError {
        CmdError {
            code: exit::PARAMETER_PROBLEM,
            shape: ErrorShape::Parameter,
            msg: msg.into(),
            stdout: String::new(),
            notes: String::new(),
        }
    }
    pub fn other(msg: impl Into<String>) -> CmdError {
        CmdError {
            code: exit::OTHER_PROBLEM,
            shape: ErrorShape::Banner,
            msg: msg.into(),
            stdout: String::new(),
            notes: String::new(),
        }
    }
    pub fn version(msg: impl Into<String>) -> CmdError {
        CmdError {
            code: exit::VERSION_PROBLEM,
            shape: ErrorShape::Version,
            msg: msg.into(),
            stdout: String::new(),
            notes: String::new(),
        }
    }
    pub fn resource(msg: impl Into<String>) -> CmdError {
        CmdError {
            code: exit::RESOURCE_PROBLEM,
            shape: ErrorShape::Banner,
            msg: msg.into(),
            stdout: String::new(),
            notes: String::new(),
        }
    }
    /// Lines printed on stderr before the error itself (warnings).
    pub fn with_notes(self, notes: &str) -> CmdError {
        if notes.is_empty() {
            return self;
        }
        CmdError {
            notes: notes.to_string(),
            ..self
        }
    }

    /// libiptc's `iptables: <msg>.` (exit 1).
    pub fn iptc(msg: impl Into<String>) -> CmdError {
        CmdError {
            code: exit::OTHER_PROBLEM,
            shape: ErrorShape::Libiptc,
            msg: msg.into(),
            stdout: String::new(),
            notes: String::new(),
        }
    }
    pub fn plain(code: i32, msg: impl Into<String>) -> CmdError {
        CmdError {
            code,
            shape: ErrorShape::Plain,
            msg: msg.into(),
            stdout: String::new(),
            notes: String::new(),
        }
    }

    /// The complete text for stderr, for program `prog` (`iptables`, `iptables-restore`).
    pub fn render(&self, prog: &str) -> String {
        format!("{}{}", self.notes, self.render_message(prog))
    }

    fn render_message(&self, prog: &str) -> String {
        // xtables_error prints the message, then always a newline: a message that ends in '\n'
        // leaves an empty line, as iptables does.
        let m = &self.msg;
        let nl = "\n";
        match self.shape {
            ErrorShape::Parameter => format!(
                "{prog} {VERSION}: {m}{nl}Try `{prog} -h' or '{prog} --help' for more information.\n"
            ),
            ErrorShape::Version => {
                format!("{prog} {VERSION}: {m}{nl}Perhaps iptables or your kernel needs to be upgraded.\n")
            }
            ErrorShape::Banner => format!("{prog} {VERSION}: {m}{nl}"),
            ErrorShape::Libiptc => format!("iptables: {m}.\n"),
            ErrorShape::Plain => {
                if m.ends_with('\n') {
                    m.clone()
                } else {
                    format!("{m}\n")
                }
            }
        }
    }
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render("iptables"))
    }
}

impl std::error::Error for CmdError {}

pub type CmdResult<T> = Result<T, CmdError>;
