//! Bad input gets an error, never a panic: random command lines built from iptables' own
//! vocabulary (and random bytes) go through the parser and the executor; random restore files
//! through iptables-restore.

use crate::common::Sandbox;
use proptest::prelude::*;

const WORDS: &[&str] = &[
    "-A",
    "-C",
    "-D",
    "-I",
    "-R",
    "-L",
    "-S",
    "-F",
    "-Z",
    "-N",
    "-X",
    "-E",
    "-P",
    "-t",
    "nat",
    "mangle",
    "raw",
    "filter",
    "INPUT",
    "FORWARD",
    "OUTPUT",
    "PREROUTING",
    "POSTROUTING",
    "foo",
    "bar",
    "1",
    "2",
    "0",
    "-1",
    "99999999999",
    "!",
    "-s",
    "-d",
    "-p",
    "tcp",
    "udp",
    "icmp",
    "all",
    "-i",
    "-o",
    "eth0",
    "eth+",
    "-f",
    "-j",
    "-g",
    "ACCEPT",
    "DROP",
    "RETURN",
    "REJECT",
    "LOG",
    "MARK",
    "SNAT",
    "DNAT",
    "MASQUERADE",
    "REDIRECT",
    "NFQUEUE",
    "-m",
    "tcp",
    "multiport",
    "limit",
    "state",
    "conntrack",
    "owner",
    "mark",
    "comment",
    "iprange",
    "mac",
    "--dport",
    "--sport",
    "--dports",
    "--ports",
    "--syn",
    "--tcp-flags",
    "SYN,ACK",
    "ALL",
    "NONE",
    "--tcp-option",
    "--icmp-type",
    "echo-request",
    "3/4",
    "--limit",
    "3/min",
    "--limit-burst",
    "--state",
    "NEW,ESTABLISHED",
    "--ctstate",
    "--ctproto",
    "--ctorigsrc",
    "--ctexpire",
    "10:5",
    "--uid-owner",
    "--mark",
    "0x1/0xff",
    "--comment",
    "x y",
    "--src-range",
    "1.1.1.1-1.1.1.9",
    "--mac-source",
    "aa:bb:cc:dd:ee:ff",
    "--reject-with",
    "tcp-reset",
    "--log-prefix",
    "--log-level",
    "--set-xmark",
    "--to-source",
    "1.2.3.4:80-90",
    "--to-destination",
    "--to-ports",
    "--queue-balance",
    "0:3",
    "-n",
    "-v",
    "-x",
    "--line-numbers",
    "-w",
    "-c",
    "10.0.0.0/8",
    "1.2.3.4/255.0.255.0",
    "--",
    "-",
    "--list=INPUT",
    "-nvL",
    "--app",
    "22:",
    ":80",
    "ssh",
    "http",
];

fn argv() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            8 => proptest::sample::select(WORDS).prop_map(str::to_string),
            1 => "\\PC{0,12}",
        ],
        0..12,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_command_lines_never_panic(args in argv()) {
        let sb = Sandbox::new();
        // Some structure to work on: a user chain and a few rules.
        let mut setup = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:foo - [0:0]\n\
            -A INPUT -p tcp -m tcp --dport 22 -j ACCEPT\n-A INPUT -j foo\nCOMMIT\n".as_bytes();
        let _ = control::cli::run("iptables-restore", &[], &mut setup, Ok(&sb.store as &dyn control::store::RulesetStore));
        let out = sb.run("iptables", &args, "");
        prop_assert!(out.code != 0 || out.stderr.is_empty() || out.stderr.starts_with("Ignoring"), "{:?}", out);
        // Whatever happened, the store still loads and lists.
        let list = sb.run("iptables-save", &[], "");
        prop_assert_eq!(list.code, 0, "{:?}", list);
    }

    #[test]
    fn random_restore_input_never_panics(lines in proptest::collection::vec(
        prop_oneof![
            Just("*filter".to_string()), Just("*nat".to_string()), Just("COMMIT".to_string()),
            Just(":INPUT DROP [1:2]".to_string()), Just(":x - [0:0]".to_string()), Just("[3:4] -A INPUT -j x".to_string()),
            argv().prop_map(|a| a.join(" ")),
            "\\PC{0,30}",
        ], 0..10)) {
        let sb = Sandbox::new();
        let input = lines.join("\n");
        let out = sb.run("iptables-restore", &["--counters".into()], &input);
        prop_assert!(out.code == 0 || !out.stderr.is_empty(), "failed silently: {:?}", out);
        let list = sb.run("iptables-save", &["-c".into()], "");
        prop_assert_eq!(list.code, 0, "{:?}", list);
    }
}
