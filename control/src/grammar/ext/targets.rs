//! The non-NAT targets with options: `REJECT`, `LOG`, `MARK`, `NFQUEUE`.

use super::{bad_value, once, opt, save_string, OptSpec, ParseCtx, TargetExt};
use crate::error::{CmdError, CmdResult};
use crate::grammar::values::{parse_mark_mask, parse_uint};
use classifier::model::log_flags;
use classifier::{LogTarget, MarkTarget, NfqueueTarget, RejectWith, Target};

const REJECT_OPTS: &[OptSpec] = &[opt("reject-with", true, false, 0)];

pub static REJECT: TargetExt = TargetExt {
    name: "REJECT",
    opts: REJECT_OPTS,
    init: || Target::Reject(RejectWith::PortUnreachable),
    parse: |t, seen, spec, arg, _, _| {
        let Target::Reject(r) = t else {
            unreachable!("REJECT parser on a REJECT target")
        };
        once("REJECT", *seen, spec)?;
        *r = RejectWith::ALL
            .iter()
            .filter(|(w, ..)| *w != RejectWith::EchoReply)
            .find(|(_, name, alias)| arg == *name || arg == *alias)
            .map(|(w, ..)| *w)
            .ok_or_else(|| CmdError::param(format!("unknown reject type \"{arg}\"")))?;
        Ok(())
    },
    finish: |_, _, _| Ok(()),
};

const LOG_OPTS: &[OptSpec] = &[
    opt("log-level", true, false, 0),
    opt("log-prefix", true, false, 1),
    opt("log-tcp-sequence", false, false, 2),
    opt("log-tcp-options", false, false, 3),
    opt("log-ip-options", false, false, 4),
    opt("log-uid", false, false, 5),
    opt("log-macdecode", false, false, 6),
];

/// syslog's `prioritynames`, in glibc's order (the first name of a level is the one printed).
const LEVELS: &[(&str, u8)] = &[
    ("alert", 1),
    ("crit", 2),
    ("debug", 7),
    ("emerg", 0),
    ("err", 3),
    ("error", 3),
    ("info", 6),
    ("notice", 5),
    ("panic", 0),
    ("warn", 4),
    ("warning", 4),
];

pub static LOG: TargetExt = TargetExt {
    name: "LOG",
    opts: LOG_OPTS,
    init: || {
        Target::Log(LogTarget {
            level: LogTarget::DEFAULT_LEVEL,
            flags: 0,
            prefix: String::new(),
        })
    },
    parse: parse_log,
    finish: |_, _, _| Ok(()),
};

fn parse_log(
    t: &mut Target,
    seen: &mut u32,
    spec: &OptSpec,
    arg: &str,
    _: bool,
    _: &ParseCtx,
) -> CmdResult<()> {
    let Target::Log(l) = t else {
        unreachable!("LOG parser on a LOG target")
    };
    once("LOG", *seen, spec)?;
    match spec.id {
        0 => {
            l.level = match parse_uint(arg, 0, 7) {
                Some(v) => v as u8,
                None => LEVELS
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(arg))
                    .map(|(_, v)| *v)
                    .ok_or_else(|| CmdError::param(format!("log level \"{arg}\" unknown\n")))?,
            }
        }
        1 => {
            if arg.is_empty() {
                return Err(CmdError::param(
                    "Argument must have a minimum length of 1 characters\n",
                ));
            }
            if arg.contains('\n') {
                return Err(CmdError::param("Newlines not allowed in --log-prefix"));
            }
            // The kernel structure holds 29 bytes: iptables silently cuts longer prefixes.
            l.prefix = super::misc::truncate(arg, LogTarget::MAX_PREFIX);
        }
        2 => l.flags |= log_flags::TCPSEQ,
        3 => l.flags |= log_flags::TCPOPT,
        4 => l.flags |= log_flags::IPOPT,
        5 => l.flags |= log_flags::UID,
        _ => l.flags |= log_flags::MACDECODE,
    }
    Ok(())
}

const MARK_OPTS: &[OptSpec] = &[
    opt("set-xmark", true, false, 0),
    opt("set-mark", true, false, 1),
    opt("and-mark", true, false, 2),
    opt("or-mark", true, false, 3),
    opt("xor-mark", true, false, 4),
];

pub static MARK: TargetExt = TargetExt {
    name: "MARK",
    opts: MARK_OPTS,
    init: || Target::Mark(MarkTarget { value: 0, mask: 0 }),
    parse: |t, _seen, spec, arg, _, _| {
        let Target::Mark(m) = t else {
            unreachable!("MARK parser on a MARK target")
        };
        let (v, mask) = parse_mark_mask(arg).ok_or_else(|| bad_value("MARK", spec))?;
        let full = mask.unwrap_or(u32::MAX);
        if spec.id >= 2 && mask.is_some() {
            return Err(bad_value("MARK", spec));
        }
        (m.value, m.mask) = match spec.id {
            0 => (v, full),
            1 => (v, v | full),
            2 => (0, !v),
            3 => (v, v),
            _ => (v, 0),
        };
        Ok(())
    },
    finish: |_, seen, _| {
        if seen == 0 {
            Err(CmdError::param(
                "MARK: One of the --set-xmark, --{and,or,xor,set}-mark options is required",
            ))
        } else {
            super::exclusive("MARK", MARK_OPTS, seen, &[0, 1, 2, 3, 4])
        }
    },
};

const NFQUEUE_OPTS: &[OptSpec] = &[
    opt("queue-num", true, false, 0),
    opt("queue-balance", true, false, 1),
    opt("queue-bypass", false, false, 2),
    opt("queue-cpu-fanout", false, false, 3),
];

pub static NFQUEUE: TargetExt = TargetExt {
    name: "NFQUEUE",
    opts: NFQUEUE_OPTS,
    init: || {
        Target::Nfqueue(NfqueueTarget {
            queue_num: 0,
            queues_total: 1,
            bypass: false,
            cpu_fanout: false,
        })
    },
    parse: |t, seen, spec, arg, _, _| {
        let Target::Nfqueue(q) = t else {
            unreachable!("NFQUEUE parser on an NFQUEUE target")
        };
        once("NFQUEUE", *seen, spec)?;
        match spec.id {
            0 => {
                q.queue_num =
                    parse_uint(arg, 0, 65535).ok_or_else(|| bad_value("NFQUEUE", spec))? as u16
            }
            1 => {
                let (a, b) = arg
                    .split_once(':')
                    .ok_or_else(|| bad_value("NFQUEUE", spec))?;
                let lo = parse_uint(a, 0, 65535).ok_or_else(|| bad_value("NFQUEUE", spec))?;
                let hi = parse_uint(b, 0, 65535).ok_or_else(|| bad_value("NFQUEUE", spec))?;
                if lo >= hi {
                    return Err(CmdError::param(format!("{lo} should be less than {hi}")));
                }
                if hi - lo + 1 > 65535 {
                    return Err(CmdError::param("NFQUEUE: number of total queues is 0"));
                }
                q.queue_num = lo as u16;
                q.queues_total = (hi - lo + 1) as u16;
            }
            2 => q.bypass = true,
            _ => q.cpu_fanout = true,
        }
        Ok(())
    },
    finish: |_, seen, _| {
        super::exclusive("NFQUEUE", NFQUEUE_OPTS, seen, &[0, 1])?;
        if seen & (1 << 3) != 0 && seen & (1 << 1) == 0 {
            return Err(CmdError::param(
                "NFQUEUE: option \"--queue-cpu-fanout\" also requires \"--queue-balance\".\n",
            ));
        }
        Ok(())
    },
};

pub fn save(t: &Target, out: &mut String) {
    match t {
        Target::Reject(r) => out.push_str(&format!(" --reject-with {}", r.name())),
        Target::Log(l) => {
            if !l.prefix.is_empty() {
                out.push_str(" --log-prefix");
                save_string(out, &l.prefix);
            }
            if l.level != LogTarget::DEFAULT_LEVEL {
                out.push_str(&format!(" --log-level {}", l.level));
            }
            for (bit, name) in [
                (log_flags::TCPSEQ, "tcp-sequence"),
                (log_flags::TCPOPT, "tcp-options"),
                (log_flags::IPOPT, "ip-options"),
                (log_flags::UID, "uid"),
                (log_flags::MACDECODE, "macdecode"),
            ] {
                if l.flags & bit != 0 {
                    out.push_str(&format!(" --log-{name}"));
                }
            }
        }
        Target::Mark(m) => out.push_str(&format!(" --set-xmark 0x{:x}/0x{:x}", m.value, m.mask)),
        Target::Nfqueue(q) => {
            if q.queues_total > 1 {
                out.push_str(&format!(
                    " --queue-balance {}:{}",
                    q.queue_num,
                    u32::from(q.queue_num) + u32::from(q.queues_total) - 1
                ));
            } else {
                out.push_str(&format!(" --queue-num {}", q.queue_num));
            }
            if q.bypass {
                out.push_str(" --queue-bypass");
            }
            if q.cpu_fanout {
                out.push_str(" --queue-cpu-fanout");
            }
        }
        _ => {}
    }
}

pub fn list(t: &Target, numeric: bool, out: &mut String) {
    match t {
        Target::Reject(r) => out.push_str(&format!(" reject-with {}", r.name())),
        Target::Log(l) => {
            if numeric {
                out.push_str(&format!(" LOG flags {} level {}", l.flags, l.level));
            } else {
                match LEVELS.iter().find(|(_, v)| *v == l.level) {
                    Some((n, _)) => out.push_str(&format!(" LOG level {n}")),
                    None => out.push_str(&format!(" LOG level {}", l.level)),
                }
                for (bit, name) in [
                    (log_flags::TCPSEQ, " tcp-sequence"),
                    (log_flags::TCPOPT, " tcp-options"),
                    (log_flags::IPOPT, " ip-options"),
                    (log_flags::UID, " uid"),
                    (log_flags::MACDECODE, " macdecode"),
                ] {
                    if l.flags & bit != 0 {
                        out.push_str(name);
                    }
                }
            }
            if !l.prefix.is_empty() {
                out.push_str(&format!(" prefix \"{}\"", l.prefix));
            }
        }
        Target::Mark(m) => {
            if m.value == 0 {
                out.push_str(&format!(" MARK and 0x{:x}", !m.mask));
            } else if m.value == m.mask {
                out.push_str(&format!(" MARK or 0x{:x}", m.value));
            } else if m.mask == 0 {
                out.push_str(&format!(" MARK xor 0x{:x}", m.value));
            } else if m.mask == u32::MAX {
                out.push_str(&format!(" MARK set 0x{:x}", m.value));
            } else {
                out.push_str(&format!(" MARK xset 0x{:x}/0x{:x}", m.value, m.mask));
            }
        }
        Target::Nfqueue(q) => {
            if q.queues_total > 1 {
                out.push_str(&format!(
                    " NFQUEUE balance {}:{}",
                    q.queue_num,
                    u32::from(q.queue_num) + u32::from(q.queues_total) - 1
                ));
            } else {
                out.push_str(&format!(" NFQUEUE num {}", q.queue_num));
            }
            if q.bypass {
                out.push_str(" bypass");
            }
            if q.cpu_fanout {
                out.push_str(" cpu-fanout");
            }
        }
        _ => {}
    }
}
