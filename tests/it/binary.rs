//! The real binary: multi-call through links, the POLLWALL_RULES_FILE contract, the lock that
//! serialises concurrent invocations, and "a failed command changes nothing".

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pollwall-under-test"))
}

fn run_with(program: &Path, args: &[&str], rules: Option<&Path>) -> Output {
    let mut c = Command::new(program);
    c.args(args).stdin(Stdio::null());
    match rules {
        Some(r) => c.env("POLLWALL_RULES_FILE", r),
        None => c.env_remove("POLLWALL_RULES_FILE"),
    };
    c.output().expect("run pollwall")
}

#[test]
fn subcommand_and_link_names_both_work() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let out = run_with(
        &exe(),
        &[
            "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT",
        ],
        Some(&rules),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["iptables", "iptables-save", "iptables-restore"] {
        std::os::unix::fs::symlink(exe(), dir.path().join(name)).unwrap();
    }
    let out = run_with(&dir.path().join("iptables"), &["-S", "INPUT"], Some(&rules));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-P INPUT ACCEPT\n-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"
    );
    let save = run_with(&dir.path().join("iptables-save"), &[], Some(&rules));
    let text = String::from_utf8_lossy(&save.stdout).to_string();
    assert!(
        text.contains("*filter\n")
            && text.contains("-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n"),
        "{text}"
    );
    // restore through the link, from a file argument
    let f = dir.path().join("in.rules");
    std::fs::write(
        &f,
        "*filter\n:INPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let out = run_with(
        &dir.path().join("iptables-restore"),
        &[f.to_str().unwrap()],
        Some(&rules),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_with(&exe(), &["iptables", "-S", "INPUT"], Some(&rules));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "-P INPUT DROP\n-A INPUT -i lo -j ACCEPT\n"
    );
}

#[test]
fn without_rules_file_or_daemon_fails_with_exit_1() {
    let out = run_with(&exe(), &["iptables", "-L"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("POLLWALL_RULES_FILE"), "{err}");
    // A parse error is still reported as iptables would, before the store is needed.
    let out = run_with(&exe(), &["iptables", "--bogus"], None);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn unknown_subcommand_is_refused_with_a_suggestion() {
    let out = run_with(&exe(), &["replya", "x.pcap"], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unrecognized subcommand 'replya'"), "{err}");
    assert!(
        err.contains("a similar subcommand exists: 'replay'"),
        "{err}"
    );
    let out = run_with(&exe(), &[], None);
    assert_eq!(out.status.code(), Some(2), "no subcommand is a usage error");
}

#[test]
fn help_and_version_of_pollwall_and_its_subcommands() {
    let text = |args: &[&str]| {
        let out = run_with(&exe(), args, None);
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let top = text(&["--help"]);
    for sub in [
        "replay",
        "bench-classify",
        "daemon",
        "demo",
        "iptables-restore",
    ] {
        assert!(top.contains(sub), "--help lists {sub}:\n{top}");
    }
    assert_eq!(
        text(&["--version"]),
        format!("pollwall {}\n", env!("CARGO_PKG_VERSION"))
    );
    let replay = text(&["help", "replay"]);
    assert_eq!(replay, text(&["replay", "--help"]));
    for flag in [
        "--config",
        "--out",
        "--conntrack",
        "--verdicts",
        "--rules",
        "--hook",
    ] {
        assert!(
            replay.contains(flag),
            "replay --help names {flag}:\n{replay}"
        );
    }
    assert!(text(&["bench-classify", "--help"]).contains("--trace"));
    assert!(text(&["daemon", "--help"]).contains("--check"));
    assert!(text(&["demo", "--help"]).contains("Usage: pollwall demo"));
    // Usage errors: exit 2, with what was wrong.
    for (args, says) in [
        (
            &["replay", "--rules", "r", "--config", "c", "x"][..],
            "cannot be used with",
        ),
        (
            &["replay", "--hook", "SIDEWAYS", "--rules", "r", "x"][..],
            "unknown hook",
        ),
        (
            &["bench-classify", "--rules", "r", "--format", "yaml"][..],
            "invalid value 'yaml'",
        ),
        (
            &["daemon", "--confg", "x"][..],
            "tip: a similar argument exists: '--config'",
        ),
    ] {
        let out = run_with(&exe(), args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    // The iptables tools keep iptables' own help and version.
    let v = text(&["iptables", "-V"]);
    assert_eq!(v, "iptables v1.8.9 (pollwall)\n");
}

#[test]
fn concurrent_invocations_serialise() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    let children: Vec<_> = (0..24)
        .map(|i| {
            Command::new(exe())
                .args([
                    "iptables",
                    "-w",
                    "-A",
                    "FORWARD",
                    "-s",
                    &format!("10.0.0.{i}"),
                    "-j",
                    "DROP",
                ])
                .env("POLLWALL_RULES_FILE", &rules)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = run_with(&exe(), &["iptables", "-S", "FORWARD"], Some(&rules));
    let text = String::from_utf8_lossy(&out.stdout);
    for i in 0..24 {
        assert!(
            text.contains(&format!("-A FORWARD -s 10.0.0.{i}/32 -j DROP\n")),
            "rule {i} lost:\n{text}"
        );
    }
    assert_eq!(text.lines().count(), 25);
}

#[test]
fn a_failed_command_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    assert!(run_with(&exe(), &["iptables", "-N", "a"], Some(&rules))
        .status
        .success());
    assert!(run_with(&exe(), &["iptables", "-N", "b"], Some(&rules))
        .status
        .success());
    assert!(run_with(
        &exe(),
        &["iptables", "-A", "INPUT", "-j", "a"],
        Some(&rules)
    )
    .status
    .success());
    assert!(
        run_with(&exe(), &["iptables", "-A", "a", "-j", "b"], Some(&rules))
            .status
            .success()
    );
    let before = std::fs::read(&rules).unwrap();
    // A loop reachable from INPUT is refused by the kernel check: exit 1, file untouched.
    let out = run_with(&exe(), &["iptables", "-A", "b", "-j", "a"], Some(&rules));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "iptables: Too many levels of symbolic links.\n"
    );
    assert_eq!(std::fs::read(&rules).unwrap(), before);
    // A restore whose second table fails keeps the first (as iptables) but never half a table.
    let mut child = Command::new(exe())
        .args(["iptables-restore"])
        .env("POLLWALL_RULES_FILE", &rules)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -j ACCEPT\n-A INPUT -o eth0 -j DROP\nCOMMIT\n",
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Error occurred at line: 4"));
    assert_eq!(std::fs::read(&rules).unwrap(), before);
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn rules_file_is_iptables_save_format_and_survives_reload() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    for args in [
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "eth0",
            "-j",
            "MASQUERADE",
        ][..],
        &[
            "iptables",
            "-A",
            "INPUT",
            "-m",
            "comment",
            "--comment",
            "it's \"quoted\"",
            "-j",
            "LOG",
            "--log-prefix",
            "in: ",
        ][..],
        &["iptables", "-c", "5", "600", "-A", "OUTPUT", "-j", "ACCEPT"][..],
    ] {
        let out = run_with(&exe(), args, Some(&rules));
        assert!(
            out.status.success(),
            "{:?}: {}",
            args,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = std::fs::read_to_string(&rules).unwrap();
    assert!(text.contains("[5:600] -A OUTPUT -j ACCEPT\n"), "{text}");
    assert!(
        text.contains("--comment \"it\\'s \\\"quoted\\\"\""),
        "{text}"
    );
    // iptables-save -c prints the same rules the file holds
    let save = run_with(&exe(), &["iptables-save", "-c"], Some(&rules));
    let save = String::from_utf8_lossy(&save.stdout);
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            save.lines().any(|s| s == line),
            "`{line}` missing from iptables-save -c:\n{save}"
        );
    }
}

#[test]
fn iptables_save_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    assert!(run_with(
        &exe(),
        &[
            "iptables",
            "-A",
            "INPUT",
            "-s",
            "192.0.2.0/24",
            "-j",
            "DROP"
        ],
        Some(&rules)
    )
    .status
    .success());
    let dump = dir.path().join("dump");
    let out = run_with(
        &exe(),
        &["iptables-save", "-f", dump.to_str().unwrap()],
        Some(&rules),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(
        text.contains("-A INPUT -s 192.0.2.0/24 -j DROP\n"),
        "{text}"
    );
}

/// `pollwall daemon --config F --check`: a good configuration and rules file pass (and say what
/// would run) without touching any interface; a bad key, a bad rules file and a bad usage fail
/// with a clear message (no root needed).
#[test]
fn daemon_check_validates_config_and_rules() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.v4");
    std::fs::write(
        &rules,
        "*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport 22 -j ACCEPT\nCOMMIT\n",
    )
    .unwrap();
    let cfg = dir.path().join("pollwall.toml");
    let write_cfg = |extra: &str| {
        std::fs::write(
            &cfg,
            format!(
                "rules = \"{}\"\ncores = [0, 1]\n{extra}\n[[bridge]]\nports = [\"pwx0\", \"pwx1\"]\n",
                rules.display()
            ),
        )
        .unwrap();
    };
    let check = || {
        run_with(
            &exe(),
            &["daemon", "--config", cfg.to_str().unwrap(), "--check"],
            None,
        )
    };
    write_cfg("");
    let out = check();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(": ok: 1 rules")
            && stdout.contains("pwx0<->pwx1")
            && stdout.contains("2 worker(s)"),
        "{stdout}"
    );
    write_cfg("idel = \"busy\"");
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("idel"));
    write_cfg("");
    std::fs::write(&rules, "*filter\n-A NOPE -j ACCEPT\nCOMMIT\n").unwrap();
    let out = check();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rules.v4"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_with(&exe(), &["daemon"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage: pollwall daemon --config <FILE>"));
}
