//! iptables' own rule test vectors (`../shared/data/iptables-t/*.t`, format in its README): each
//! line is added with `iptables -A`, checked against `iptables-save`, and deleted again.
//! Skips with a message when `../shared` is absent (a user's clone).

use crate::common::{shared_data, shlex_split, Sandbox};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Fail,
    NoMatch,
}

fn parse_result(s: &str) -> Expect {
    match s {
        "OK" => Expect::Ok,
        "FAIL" => Expect::Fail,
        "NOMATCH" => Expect::NoMatch,
        other => panic!("unknown result {other}"),
    }
}

/// The LEGACY reading of a test line's result (see the README's VARIANT rules).
fn legacy_result(fields: &[&str]) -> Expect {
    let base = parse_result(fields[2]);
    match fields.get(3).copied() {
        Some("NFT") => match fields.get(4) {
            Some(alt) => parse_result(alt),
            None if base == Expect::Fail => Expect::Ok,
            None => Expect::Fail,
        },
        _ => base,
    }
}

/// Runs one line in one chain; returns an error text when pollwall disagrees.
fn run_line(sb: &Sandbox, table: &str, chain: &str, fields: &[&str]) -> Result<(), String> {
    let rule = fields[0];
    let expected = match fields[1] {
        "=" => rule,
        e => e,
    };
    let want = legacy_result(fields);
    let mut args = vec![
        "-t".to_string(),
        table.to_string(),
        "-A".to_string(),
        chain.to_string(),
    ];
    args.extend(shlex_split(rule));
    let out = sb.run("iptables", &args, "");
    match want {
        Expect::Fail => {
            if out.code == 0 {
                return Err(format!("accepted a rule that must fail: {rule}"));
            }
            return Ok(());
        }
        _ if out.code != 0 => return Err(format!("refused {rule}: {}", out.stderr.trim_end())),
        _ => {}
    }
    let save = sb.run("iptables-save", &["-t".to_string(), table.to_string()], "");
    let line = format!("-A {chain} {expected}");
    let found = save.stdout.lines().any(|l| l == line);
    if want == Expect::Ok && !found {
        return Err(format!(
            "saved form differs: want `{line}`, save printed:\n{}",
            save.stdout
        ));
    }
    if want == Expect::NoMatch && found {
        return Err(format!("`{line}` must not appear in the saved text"));
    }
    let mut del = vec![
        "-t".to_string(),
        table.to_string(),
        "-D".to_string(),
        chain.to_string(),
    ];
    del.extend(shlex_split(rule));
    let d = sb.run("iptables", &del, "");
    if d.code != 0 {
        return Err(format!(
            "could not delete {rule} again: {}",
            d.stderr.trim_end()
        ));
    }
    Ok(())
}

/// The test lines upstream left commented out (they document disagreements), with what the
/// real iptables 1.8.9 does for each (checked in a private namespace): `Some(saved)` when it
/// accepts the rule, `None` when it refuses it. pollwall must do the same, except where noted.
const DISABLED_UPSTREAM: &[(&str, Option<&str>)] = &[
    (
        "-p icmp -m icmp --icmp-type echo-reply",
        Some("-p icmp -m icmp --icmp-type 0"),
    ),
    (
        "-p icmp -m icmp --icmp-type destination-unreachable",
        Some("-p icmp -m icmp --icmp-type 3"),
    ),
    (
        "-p icmp -m icmp --icmp-type destination-unreachable/network-unreachable",
        None,
    ),
    ("-p icmp -m icmp", None),
    (
        "-m iprange --src-range 1.1.1.1",
        Some("-m iprange --src-range 1.1.1.1-1.1.1.1"),
    ),
    (
        "-m iprange --dst-range 1.1.1.1",
        Some("-m iprange --dst-range 1.1.1.1-1.1.1.1"),
    ),
    (
        "-p tcp -m multiport --ports 1,2,3,4,6,7,8,9,10,11,12,13,14,15,16",
        Some("-p tcp -m multiport --ports 1,2,3,4,6,7,8,9,10,11,12,13,14,15,16"),
    ),
    // iptables 1.8.9 accepts this and saves `--sport 0`: udp's guided parser falls back to
    // getaddrinfo's numeric service, which keeps 16 bits (tcp refuses the same value). pollwall
    // does what iptables does (the CLI differential compares it live).
    (
        "-p udp -m udp --sport 65536",
        Some("-p udp -m udp --sport 0"),
    ),
    ("-p tcp -m tcp --sport 65536", None),
];

#[test]
fn iptables_disabled_vectors_follow_the_oracle() {
    let sb = Sandbox::new();
    for (rule, saved) in DISABLED_UPSTREAM {
        let mut args = vec!["-A".to_string(), "INPUT".to_string()];
        args.extend(shlex_split(rule));
        let out = sb.run("iptables", &args, "");
        match saved {
            None => assert_ne!(out.code, 0, "{rule} must be refused"),
            Some(s) => {
                assert_eq!(out.code, 0, "{rule}: {}", out.stderr);
                let save = sb.run("iptables", &["-S".into(), "INPUT".into()], "");
                assert!(
                    save.stdout.lines().any(|l| l == format!("-A INPUT {s}")),
                    "{rule} saved as:\n{}",
                    save.stdout
                );
                let del = sb.run("iptables", &["-F".into(), "INPUT".into()], "");
                assert_eq!(del.code, 0);
            }
        }
    }
    // The 256-character comment: iptables cuts it to 255.
    let long = "x".repeat(256);
    let out = sb.run(
        "iptables",
        &[
            "-A".into(),
            "INPUT".into(),
            "-m".into(),
            "comment".into(),
            "--comment".into(),
            long,
        ],
        "",
    );
    assert_eq!(out.code, 0);
    let save = sb.run("iptables", &["-S".into(), "INPUT".into()], "");
    assert!(
        save.stdout
            .contains(&format!("--comment {}\n", "x".repeat(255))),
        "{}",
        save.stdout
    );
}

#[test]
fn iptables_test_vectors() {
    let Some(dir) = shared_data("iptables-t") else {
        eprintln!("SKIPPED: ../shared/data/iptables-t is absent (a clone without shared data)");
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("read iptables-t")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "t"))
        .collect();
    files.sort();
    let (mut lines, mut runs, mut failures) = (0, 0, Vec::new());
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(f).expect("read .t file");
        let sb = Sandbox::new();
        let mut table = "filter".to_string();
        let mut chains: Vec<String> = vec!["INPUT".into()];
        for (i, raw) in text.lines().enumerate() {
            let l = raw.trim_end();
            if l.is_empty() || l.starts_with('#') || l.starts_with('@') || l.starts_with('%') {
                continue;
            }
            if let Some(c) = l.strip_prefix(':') {
                chains = c.split(',').map(str::to_string).collect();
                continue;
            }
            if let Some(t) = l.strip_prefix('*') {
                table = t.to_string();
                continue;
            }
            let fields: Vec<&str> = l.split(';').collect();
            assert!(fields.len() >= 3, "{name}:{}: malformed line", i + 1);
            lines += 1;
            for chain in &chains {
                runs += 1;
                if let Err(e) = run_line(&sb, &table, chain, &fields) {
                    failures.push(format!("{name}:{} [{table} {chain}]: {e}", i + 1));
                }
            }
        }
    }
    eprintln!(
        "iptables-t: {lines} lines, {runs} chain runs, {} failures",
        failures.len()
    );
    // 268 lines hold a ';': 258 active tests, 9 tests upstream commented out (run by
    // `iptables_disabled_vectors_follow_the_oracle`) and one prose comment.
    assert_eq!(
        lines, 258,
        "the vectors of iptables 1.8.9 have 258 active test lines"
    );
    assert!(
        failures.is_empty(),
        "{} of {runs} runs failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
