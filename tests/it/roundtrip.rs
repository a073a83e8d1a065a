//! Property: any ruleset survives save → restore → save byte for byte, and restore gives back
//! the same model (nftables' tests/py style round trip, over random rulesets).

use classifier::model::{ct_state, log_flags};
use classifier::*;
use control::grammar::save::save_table;
use control::restore::{restore, RestoreOptions};
use proptest::prelude::*;
use std::net::Ipv4Addr;

fn net() -> impl Strategy<Value = Ipv4Net> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::from_prefix(Ipv4Addr::from(a), l)),
        (any::<u32>(), any::<u32>())
            .prop_map(|(a, m)| Ipv4Net::new(Ipv4Addr::from(a), Ipv4Addr::from(m))),
    ]
    .prop_filter("0.0.0.0/0 is stored as no address", |n| !n.is_any())
}

fn inv<T: std::fmt::Debug + Clone>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Inv<T>> {
    (s, any::<bool>()).prop_map(|(v, i)| Inv::new(v, i))
}

fn iface() -> impl Strategy<Value = IfaceMatch> {
    ("[a-z][a-z0-9]{0,13}", any::<bool>())
        .prop_map(|(name, wildcard)| IfaceMatch { name, wildcard })
}

fn ports() -> impl Strategy<Value = PortRange> {
    (any::<u16>(), any::<u16>()).prop_map(|(a, b)| PortRange {
        lo: a.min(b),
        hi: a.max(b),
    })
}

/// Free text as operators write it in comments and log prefixes: quotes, backslashes, spaces.
fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just('"'),
            Just('\\'),
            Just('\''),
            Just(' '),
            Just('-'),
            proptest::char::range('a', 'z'),
            proptest::char::range('0', '9')
        ],
        1..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Maps the low 7 bits to conntrack state bits.
fn ct_bits(bits: u32) -> u32 {
    ct_state::NAMES
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .fold(0, |a, (_, (_, b))| a | b)
}

fn generic_match() -> impl Strategy<Value = Match> {
    prop_oneof![
        (
            1u32..1000,
            prop_oneof![Just(1u32), Just(60), Just(3600), Just(86400)],
            1u32..100
        )
            .prop_map(|(n, unit, burst)| {
                // Bursts the kernel would refuse (avg * burst overflowing) are not valid rulesets.
                // iptables prints a rate rounded to its best unit (`print_rate`), so not every
                // interval survives a save: generate the ones a save can express.
                let raw = LimitMatch::SCALE * unit / n;
                let avg = control::grammar::ext::misc::parse_rate(
                    &control::grammar::ext::misc::rate_text(raw),
                )
                .expect("printed rates parse");
                let burst = burst.min(u32::MAX / avg / 2).max(1);
                let credits = classifier::check::user2credits;
                let ok = credits(avg.wrapping_mul(burst)) >= credits(avg);
                Match::Limit(LimitMatch {
                    avg,
                    burst: if ok { burst } else { 1 },
                })
            }),
        (1u32..0x3f, any::<bool>()).prop_map(|(bits, invert)| {
            let states = ct_state::NAMES[..5]
                .iter()
                .enumerate()
                .filter(|(i, _)| bits & (1 << i) != 0)
                .fold(0, |a, (_, (_, b))| a | b);
            Match::State(StateMatch {
                states: states.max(ct_state::NEW),
                invert,
            })
        }),
        (any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(value, mask, invert)| Match::Mark(
            MarkMatch {
                value,
                mask,
                invert
            }
        )),
        text(60).prop_map(Match::Comment),
        (inv((any::<u32>(), any::<u32>())), any::<bool>()).prop_map(|(r, src)| {
            let v = Some(Inv::new(
                (Ipv4Addr::from(r.value.0), Ipv4Addr::from(r.value.1)),
                r.invert,
            ));
            Match::Iprange(if src {
                IprangeMatch { src: v, dst: None }
            } else {
                IprangeMatch { src: None, dst: v }
            })
        }),
        (
            proptest::option::of(inv((1u32..0x7f).prop_map(ct_bits))),
            proptest::option::of(inv(net())),
            proptest::option::of(inv(ports()))
        )
            .prop_filter("conntrack needs an option", |(a, b, c)| a.is_some()
                || b.is_some()
                || c.is_some())
            .prop_map(
                |(state, orig_src, orig_dst_port)| Match::Conntrack(ConntrackMatch {
                    state,
                    orig_src,
                    orig_dst_port,
                    ..Default::default()
                })
            ),
    ]
}

/// A rule for `chain` of the filter table (INPUT, FORWARD, OUTPUT or a user chain).
fn rule(chain: &'static str, users: Vec<String>) -> impl Strategy<Value = Rule> {
    let proto = prop_oneof![
        Just(None),
        inv(prop_oneof![
            Just(6u8),
            Just(17),
            Just(1),
            Just(47),
            2u8..=255
        ])
        .prop_map(Some)
    ];
    (
        proptest::option::of(inv(net())),
        proptest::option::of(inv(net())),
        proptest::option::of(inv(iface())),
        proptest::option::of(inv(iface())),
        proto,
        proptest::option::of(prop_oneof![
            Just(FragMatch::NonFirst),
            Just(FragMatch::FirstOrUnfragmented)
        ]),
        (
            ports(),
            ports(),
            any::<bool>(),
            any::<bool>(),
            0u8..4,
            any::<u8>(),
        ),
        proptest::collection::vec(generic_match(), 0..3),
        (
            0usize..12,
            text(29),
            0u8..8,
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            any::<u16>(),
        ),
        (any::<u64>(), any::<u64>()),
    )
        .prop_map(
            move |(
                src,
                dst,
                i,
                o,
                proto,
                frag,
                (sp, dp, isp, idp, which, byte),
                extra,
                tgt,
                (packets, bytes),
            )| {
                let mut r = Rule {
                    src,
                    dst,
                    proto: proto.clone(),
                    frag,
                    ..Default::default()
                };
                if chain != "OUTPUT" {
                    r.in_iface = i;
                }
                if chain != "INPUT" {
                    r.out_iface = o;
                }
                let p = r.required_proto();
                match (p, which) {
                    (6, 1) => r.matches.push(Match::Tcp(TcpMatch {
                        sport: sp,
                        inv_sport: isp && !sp.is_any(),
                        dport: dp,
                        inv_dport: idp && !dp.is_any(),
                        flags_mask: byte & 0x3f,
                        flags_cmp: if byte & 0x3f == 0 {
                            0
                        } else {
                            (byte >> 2) & 0x3f
                        },
                        inv_flags: isp && byte & 0x3f != 0,
                        ..Default::default()
                    })),
                    (17, 1) => r.matches.push(Match::Udp(UdpMatch {
                        sport: sp,
                        inv_sport: isp && !sp.is_any(),
                        dport: dp,
                        inv_dport: idp && !dp.is_any(),
                    })),
                    (1, 1) => r.matches.push(Match::Icmp(IcmpMatch {
                        icmp_type: byte % 20,
                        code_min: 0,
                        code_max: 0xff,
                        invert: isp,
                    })),
                    (6 | 17, 2) => r.matches.push(Match::Multiport(MultiportMatch {
                        kind: MultiportKind::Destination,
                        ports: vec![PortRange::single(dp.lo), sp],
                        invert: idp,
                    })),
                    _ => {}
                }
                if chain == "OUTPUT" && which == 3 {
                    r.matches.push(Match::Owner(OwnerMatch {
                        uid: Some(Inv::new((u32::from(byte), u32::from(byte) + 5), isp)),
                        ..Default::default()
                    }));
                }
                if matches!(chain, "INPUT" | "FORWARD") && which == 3 {
                    r.matches.push(Match::Mac(MacMatch {
                        addr: [byte, 1, 2, 3, 4, byte],
                        invert: idp,
                    }));
                }
                r.matches.extend(extra);
                let (t, prefix, level, flags, v, m, q) = tgt;
                r.target = match t {
                    0 => Target::None,
                    1 => Target::Accept,
                    2 => Target::Drop,
                    3 => Target::Return,
                    4 => Target::Queue,
                    5 if !users.is_empty() && !chain.starts_with('u') => {
                        Target::Jump(users[q as usize % users.len()].clone())
                    }
                    6 if !users.is_empty() && !chain.starts_with('u') => {
                        Target::Goto(users[q as usize % users.len()].clone())
                    }
                    7 => Target::Reject(if p == 6 {
                        RejectWith::TcpReset
                    } else {
                        RejectWith::ALL[(q % 6) as usize].0
                    }),
                    8 => Target::Log(LogTarget {
                        level,
                        flags: flags
                            & (log_flags::TCPSEQ
                                | log_flags::TCPOPT
                                | log_flags::IPOPT
                                | log_flags::UID),
                        prefix,
                    }),
                    9 => Target::Mark(MarkTarget { value: v, mask: m }),
                    10 => Target::Nfqueue(NfqueueTarget {
                        queue_num: q / 2,
                        queues_total: if v % 2 == 0 { 1 } else { 1 + (q % 7) + 1 },
                        bypass: m % 2 == 0,
                        cpu_fanout: v % 2 == 1 && m % 3 == 0,
                    }),
                    _ => Target::Accept,
                };
                r.counters = Counters { packets, bytes };
                r
            },
        )
}

fn table() -> impl Strategy<Value = Table> {
    let users = proptest::collection::btree_set("u[a-z0-9_-]{0,20}", 0..3)
        .prop_map(|s| s.into_iter().collect::<Vec<_>>());
    users
        .prop_flat_map(|users| {
            let chain_rules = |name: &'static str, users: &Vec<String>| {
                proptest::collection::vec(rule(name, users.clone()), 0..6)
            };
            (
                chain_rules("INPUT", &users),
                chain_rules("FORWARD", &users),
                chain_rules("OUTPUT", &users),
                proptest::collection::vec(chain_rules("u", &users), users.len()..=users.len()),
                any::<[bool; 3]>(),
                any::<[(u64, u64); 3]>(),
                Just(users),
            )
        })
        .prop_map(|(input, forward, output, user_rules, drops, pol, users)| {
            let mut t = Table::new(TableKind::Filter);
            for (i, rules) in [input, forward, output].into_iter().enumerate() {
                t.chains[i].rules = rules;
                t.chains[i].policy = if drops[i] {
                    Policy::Drop
                } else {
                    Policy::Accept
                };
                t.chains[i].policy_counters = Counters {
                    packets: pol[i].0,
                    bytes: pol[i].1,
                };
            }
            for (name, rules) in users.iter().zip(user_rules) {
                t.add_user_chain(name);
                t.chain_mut(name).unwrap().rules = rules;
            }
            t
        })
}

fn strip_ids(t: &Table) -> Table {
    let mut t = t.clone();
    for r in t.rules_mut() {
        r.id = RuleId(0);
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn save_restore_save_is_identity(t in table()) {
        let first = save_table(&t, true);
        let mut rs = Ruleset::new();
        let opts = RestoreOptions { counters: true, ..Default::default() };
        let res = restore(&first, &opts, &mut rs);
        prop_assert!(res.is_ok(), "restore refused:\n{first}\n{}", res.unwrap_err().render("iptables-restore"));
        let back = rs.table(TableKind::Filter).expect("restored table");
        let second = save_table(back, true);
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(strip_ids(&t), strip_ids(back));
    }
}
