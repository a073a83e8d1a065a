//! Golden transcripts recorded from the real iptables 1.8.9 (`tests/golden/*.golden`, format in
//! its README): every command's stdout, stderr and exit code must match byte for byte.

use crate::common::{mask_dates, repo_root, shlex_split, Sandbox};

/// One command of a transcript and what the oracle printed.
struct Step {
    line_no: usize,
    cmd: String,
    stdin: String,
    stdout: String,
    stderr: String,
    code: i32,
}

fn parse_golden(text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if let Some(cmd) = line.strip_prefix("$ ") {
            steps.push(Step {
                line_no: i + 1,
                cmd: cmd.to_string(),
                stdin: String::new(),
                stdout: String::new(),
                stderr: String::new(),
                code: 0,
            });
            continue;
        }
        let Some(step) = steps.last_mut() else {
            continue;
        };
        let rest = |p: &str| {
            line.strip_prefix(p)
                .or_else(|| (line == p.trim_end()).then_some(""))
        };
        if let Some(s) = rest("< ") {
            step.stdin.push_str(s);
            step.stdin.push('\n');
        } else if let Some(s) = rest("> ") {
            step.stdout.push_str(s);
            step.stdout.push('\n');
        } else if let Some(s) = rest("! ") {
            step.stderr.push_str(s);
            step.stderr.push('\n');
        } else if let Some(s) = line.strip_prefix("? ") {
            step.code = s.trim().parse().expect("exit code");
        } else if line == "%noeol" {
            if !step.stderr.is_empty() {
                step.stderr.pop();
            } else {
                step.stdout.pop();
            }
        }
    }
    steps
}

/// Where pollwall deliberately differs from iptables-legacy, by golden file and line.
///
/// - `policy`: iptables-legacy's libiptc zeroes every built-in chain's policy counters whenever
///   it rewrites a table (any -A/-D/-I/-N/-Z CHAIN N, a restore without counters). pollwall keeps
///   counters exact across changes (DESIGN.md §4). These steps must match once policy counters
///   are masked, so nothing else may differ there.
/// - `security`: the SELinux `security` table is not implemented (no labels to match on).
const DEVIATIONS: &[(&str, &[usize], &str)] = &[
    (
        "list_counters_units.golden",
        &[234, 244, 257, 264, 271, 285],
        "policy",
    ),
    ("restore_errors.golden", &[280, 291], "policy"),
    ("save_restore.golden", &[342, 380], "policy"),
    ("zero.golden", &[43, 52, 72, 82, 214], "policy"),
    ("list_basic.golden", &[81], "security"),
];

fn deviation(file: &str, line: usize) -> Option<&'static str> {
    DEVIATIONS
        .iter()
        .find(|(f, lines, _)| *f == file && lines.contains(&line))
        .map(|d| d.2)
}

/// Replaces the policy counters of built-in chains with zeros in every output form.
fn mask_policy_counters(s: &str) -> String {
    s.lines()
        .map(|l| {
            if let Some(rest) = l.strip_prefix("Chain ") {
                if let Some(i) = rest.find(" (policy ") {
                    let pol: String = rest[i + 9..].split(' ').next().unwrap_or("").to_string();
                    let pol = pol.trim_end_matches(')');
                    if rest.contains("packets,") {
                        return format!("Chain {} (policy {pol} 0 packets, 0 bytes)", &rest[..i]);
                    }
                }
            }
            if l.starts_with(':') && !l.contains(" - [") {
                if let Some(i) = l.find(" [") {
                    return format!("{} [0:0]", &l[..i]);
                }
            }
            if l.starts_with("-P ") {
                if let Some(i) = l.find(" -c ") {
                    return format!("{} -c 0 0", &l[..i]);
                }
            }
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Runs one golden file; returns a description of each mismatch.
fn check_file(name: &str, text: &str) -> Vec<String> {
    let sb = Sandbox::new();
    let mut failures = Vec::new();
    for step in parse_golden(text) {
        let argv = shlex_split(&step.cmd);
        let out = sb.run(&argv[0], &argv[1..], &step.stdin);
        let stdout = mask_dates(&out.stdout);
        let same = stdout == step.stdout && out.stderr == step.stderr && out.code == step.code;
        match deviation(name, step.line_no) {
            Some("policy") => {
                let masked = mask_policy_counters(&stdout) == mask_policy_counters(&step.stdout);
                if same || !masked || out.stderr != step.stderr || out.code != step.code {
                    failures.push(format!(
                        "{name}:{}: listed as a policy-counter deviation but {}",
                        step.line_no,
                        if same {
                            "matches iptables (stale entry)"
                        } else {
                            "differs in more than policy counters"
                        }
                    ));
                }
                continue;
            }
            Some(_) => {
                if same {
                    failures.push(format!(
                        "{name}:{}: listed as a deviation but matches (stale entry)",
                        step.line_no
                    ));
                }
                continue;
            }
            None => {}
        }
        if !same {
            failures.push(format!(
                "{name}:{}: $ {}\n--- expected (exit {}):\n{}{}--- got (exit {}):\n{}{}",
                step.line_no,
                step.cmd,
                step.code,
                step.stdout,
                prefix_err(&step.stderr),
                out.code,
                stdout,
                prefix_err(&out.stderr)
            ));
        }
    }
    failures
}

fn prefix_err(s: &str) -> String {
    s.lines().map(|l| format!("! {l}\n")).collect()
}

#[test]
fn golden_transcripts_match_iptables() {
    let dir = repo_root().join("tests/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/golden exists")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "golden"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no golden files in {}", dir.display());
    let mut failures = Vec::new();
    let mut total = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read golden");
        total += parse_golden(&text).len();
        failures.extend(check_file(&f.file_name().unwrap().to_string_lossy(), &text));
    }
    if !failures.is_empty() {
        let report = failures.join("\n");
        let _ = std::fs::write(
            std::env::temp_dir().join("pollwall-golden-failures.txt"),
            &report,
        );
        panic!(
            "{} of {total} golden commands differ:\n{report}",
            failures.len()
        );
    }
}
