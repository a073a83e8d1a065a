//! Differential tests: the compiled classifier against the reference evaluator. For thousands of
//! random rulesets (user chains, jumps, gotos, RETURN, inversions, LOG/MARK, limit, mark matches)
//! and random packets, both give the same verdict, the same counters moved in the same order, the
//! same final mark and the same LOG records, packet after packet (limit buckets included).

use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::eval::{Hit, RefEvaluator, Trace};
use classifier::model::{ct_state, tcp_flags};
use classifier::packet::*;
use classifier::*;
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::Ipv4Addr;

const ADDRS: [u32; 6] = [
    0x0a00_0001,
    0x0a00_0102,
    0x0a01_0203,
    0xc0a8_0001,
    0xc0a8_01fe,
    0x0101_0101,
];
const PORTS: [u16; 6] = [22, 53, 80, 443, 1024, 65535];

fn addr() -> impl Strategy<Value = u32> {
    (proptest::sample::select(&ADDRS[..]), any::<u8>()).prop_map(|(a, x)| {
        if x < 200 {
            a
        } else {
            a ^ u32::from(x)
        }
    })
}

fn net() -> impl Strategy<Value = Inv<Ipv4Net>> {
    (
        addr(),
        prop_oneof![Just(8u8), Just(16), Just(24), Just(32), Just(0), Just(30)],
        any::<bool>(),
        0u8..10,
    )
        .prop_map(|(a, len, inv, odd)| {
            let n = if odd == 0 {
                Ipv4Net::new(Ipv4Addr::from(a), Ipv4Addr::new(255, 0, 255, 0))
            } else {
                Ipv4Net::from_prefix(Ipv4Addr::from(a), len)
            };
            Inv::new(n, inv && odd < 3)
        })
}

fn ports() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        proptest::sample::select(&PORTS[..]).prop_map(PortRange::single),
        (
            proptest::sample::select(&PORTS[..]),
            proptest::sample::select(&PORTS[..])
        )
            .prop_map(|(a, b)| PortRange {
                lo: a.min(b),
                hi: a.max(b)
            }),
        Just(PortRange::ANY),
    ]
}

#[derive(Debug, Clone)]
struct Shape {
    chains: usize,
}

fn rule(shape: Shape, from_chain: usize, hook: Option<Hook>) -> impl Strategy<Value = Rule> {
    (
        proptest::option::weighted(0.5, net()),
        proptest::option::weighted(0.5, net()),
        proptest::option::weighted(
            0.5,
            (prop_oneof![Just(6u8), Just(17), Just(1), Just(47)], 0u8..8),
        ),
        proptest::option::weighted(0.15, (0u8..3, any::<bool>())),
        proptest::option::weighted(0.1, any::<bool>()),
        (ports(), ports(), 0u8..8, any::<u8>()),
        (0u8..16, any::<u32>(), 0usize..8),
        (0u8..8, 1u32..4),
    )
        .prop_map(
            move |(
                src,
                dst,
                proto,
                iface,
                frag,
                (sp, dp, l4kind, x),
                (tk, v, jt),
                (extra, burst),
            )| {
                let mut r = Rule {
                    src,
                    dst,
                    ..Default::default()
                };
                if let Some((p, inv)) = proto {
                    r.proto = Some(Inv::new(p, inv == 0));
                }
                if let Some((which, inv)) = iface {
                    let m = IfaceMatch {
                        name: ["pwin", "pwout", "pw"][which as usize].into(),
                        wildcard: which == 2,
                    };
                    if hook != Some(Hook::Output) && x % 2 == 0 {
                        r.in_iface = Some(Inv::new(m, inv));
                    } else if hook != Some(Hook::Input) {
                        r.out_iface = Some(Inv::new(m, inv));
                    }
                }
                r.frag = frag.map(|f| {
                    if f {
                        FragMatch::NonFirst
                    } else {
                        FragMatch::FirstOrUnfragmented
                    }
                });
                let p = r.required_proto();
                let (isp, idp) = (x & 1 != 0 && !sp.is_any(), x & 2 != 0 && !dp.is_any());
                match (p, l4kind) {
                    (6, 0..=3) => r.matches.push(Match::Tcp(TcpMatch {
                        sport: sp,
                        inv_sport: isp,
                        dport: dp,
                        inv_dport: idp,
                        flags_mask: if l4kind == 1 {
                            tcp_flags::SYN | tcp_flags::ACK
                        } else {
                            0
                        },
                        flags_cmp: if l4kind == 1 { tcp_flags::SYN } else { 0 },
                        inv_flags: l4kind == 1 && x & 4 != 0,
                        option: if l4kind == 2 { 2 } else { 0 },
                        inv_option: l4kind == 2 && x & 8 != 0,
                    })),
                    (17, 0..=3) => r.matches.push(Match::Udp(UdpMatch {
                        sport: sp,
                        inv_sport: isp,
                        dport: dp,
                        inv_dport: idp,
                    })),
                    (1, 0..=3) => r.matches.push(Match::Icmp(IcmpMatch {
                        icmp_type: [8, 0, 3, 0xff][usize::from(l4kind)],
                        code_min: 0,
                        code_max: if l4kind == 2 { 3 } else { 0xff },
                        invert: x & 4 != 0,
                    })),
                    (6 | 17, 4) => r.matches.push(Match::Multiport(MultiportMatch {
                        kind: [
                            MultiportKind::Source,
                            MultiportKind::Destination,
                            MultiportKind::Either,
                        ][usize::from(x % 3)],
                        ports: vec![PortRange::single(dp.lo), sp],
                        invert: x & 8 != 0,
                    })),
                    _ => {}
                }
                match extra {
                    0 => r.matches.push(Match::Mark(MarkMatch {
                        value: v & 3,
                        mask: 3,
                        invert: x & 16 != 0,
                    })),
                    1 => r.matches.insert(
                        0,
                        Match::Limit(LimitMatch {
                            avg: LimitMatch::SCALE / 2,
                            burst,
                        }),
                    ),
                    2 => r.matches.push(Match::Limit(LimitMatch {
                        avg: LimitMatch::SCALE / 4,
                        burst,
                    })),
                    3 => r.matches.push(Match::Iprange(IprangeMatch {
                        src: Some(Inv::new(
                            (Ipv4Addr::from(ADDRS[0]), Ipv4Addr::from(ADDRS[3])),
                            x & 32 != 0,
                        )),
                        dst: None,
                    })),
                    4 => r.matches.push(Match::State(StateMatch {
                        states: ct_state::NEW,
                        invert: x & 64 != 0,
                    })),
                    _ => {}
                }
                // Jumps only go to later chains (no loops).
                let later = |k: usize| (from_chain + 1 + k % shape.chains.max(1)).min(shape.chains);
                r.target = match tk {
                    0 | 1 => Target::None,
                    2 | 3 => Target::Accept,
                    4 | 5 => Target::Drop,
                    6 => Target::Return,
                    7 | 8 if from_chain < shape.chains => Target::Jump(format!("u{}", later(jt))),
                    9 if from_chain < shape.chains => Target::Goto(format!("u{}", later(jt))),
                    10 => Target::Log(LogTarget {
                        level: 4,
                        flags: 0,
                        prefix: "x".into(),
                    }),
                    11 => Target::Mark(MarkTarget {
                        value: v & 3,
                        mask: 3,
                    }),
                    12 if hook.is_some() => Target::Reject(RejectWith::PortUnreachable),
                    13 => Target::Nfqueue(NfqueueTarget {
                        queue_num: 3,
                        queues_total: 1,
                        bypass: false,
                        cpu_fanout: false,
                    }),
                    _ => Target::Accept,
                };
                r
            },
        )
}

/// A filter table (FORWARD with user chains u1..uN) and, sometimes, a mangle FORWARD chain.
fn ruleset() -> impl Strategy<Value = Ruleset> {
    (0usize..4, 1usize..40, any::<bool>(), any::<bool>()).prop_flat_map(|(n, len, drop, mangle)| {
        let shape = Shape { chains: n };
        let user = (1..=n)
            .map(|i| proptest::collection::vec(rule(shape.clone(), i, None), 0..8))
            .collect::<Vec<_>>();
        (
            proptest::collection::vec(rule(shape.clone(), 0, Some(Hook::Forward)), len..=len),
            user,
            proptest::collection::vec(
                rule(Shape { chains: 0 }, 0, Some(Hook::Forward)),
                0..if mangle { 6 } else { 1 },
            ),
            Just(drop),
        )
            .prop_map(move |(fwd, user, mangle_rules, drop)| {
                let mut rs = Ruleset::new();
                let mut t = Table::new(TableKind::Filter);
                t.chain_mut("FORWARD").unwrap().rules = fwd;
                t.chain_mut("FORWARD").unwrap().policy =
                    if drop { Policy::Drop } else { Policy::Accept };
                for (i, rules) in user.into_iter().enumerate() {
                    let name = format!("u{}", i + 1);
                    t.add_user_chain(&name);
                    // REJECT is only valid where reachable from INPUT/FORWARD/OUTPUT: always here.
                    t.chain_mut(&name).unwrap().rules = rules;
                }
                rs.set_table(t);
                let mut m = Table::new(TableKind::Mangle);
                m.chain_mut("FORWARD").unwrap().rules = mangle_rules
                    .into_iter()
                    .map(|mut r| {
                        if matches!(
                            r.target,
                            Target::Reject(_) | Target::Jump(_) | Target::Goto(_)
                        ) {
                            r.target = Target::Mark(MarkTarget { value: 1, mask: 1 });
                        }
                        r
                    })
                    .collect();
                rs.set_table(m);
                rs
            })
    })
}

fn headers() -> impl Strategy<Value = (Headers, PacketMeta)> {
    (
        (
            addr(),
            addr(),
            prop_oneof![4 => Just(6u8), 3 => Just(17), 2 => Just(1), 1 => Just(47)],
        ),
        (
            proptest::sample::select(&PORTS[..]),
            proptest::sample::select(&PORTS[..]),
            any::<u8>(),
        ),
        (
            prop_oneof![8 => Just(0u16), 1 => Just(1), 1 => Just(9)],
            0u8..12,
            0u32..4,
        ),
        (0u8..4, 0u8..3, 20u16..1500),
    )
        .prop_map(
            |((src, dst, proto), (sp, dp, flags), (frag_off, shape, mark), (inif, outif, len))| {
                let l4 = if frag_off != 0 {
                    L4::None
                } else {
                    match (proto, shape) {
                        (_, 0) => L4::Short {
                            hdr_len: 3,
                            sport: 0,
                            dport: 0,
                        },
                        (_, 1) => L4::Short {
                            hdr_len: 4,
                            sport: sp,
                            dport: dp,
                        },
                        (6, s) => {
                            let mut k = TcpOptionKinds::default();
                            if s % 2 == 0 {
                                k.insert(2);
                            }
                            let options = match s {
                                2 => TcpOptions::Truncated,
                                3 => TcpOptions::BadOffset,
                                _ => TcpOptions::Kinds(k),
                            };
                            L4::Tcp {
                                sport: sp,
                                dport: dp,
                                flags,
                                options,
                            }
                        }
                        (17, _) => L4::Udp {
                            sport: sp,
                            dport: dp,
                        },
                        (1, s) => L4::Icmp {
                            icmp_type: [0, 3, 8, 11][usize::from(s % 4)],
                            code: flags % 5,
                        },
                        _ => L4::None,
                    }
                };
                let h = Headers {
                    src,
                    dst,
                    proto,
                    ip_len: len,
                    frag_off,
                    more_frags: false,
                    dont_frag: false,
                    tos: 0,
                    ttl: 64,
                    ip_id: 1,
                    ihl_bytes: 20,
                    l4,
                    src_mac: None,
                    dst_mac: None,
                    vlan: None,
                    l3_offset: 0,
                };
                let name =
                    |i: u8| IfName::new(["pwin", "pwout", "pwx", ""][usize::from(i % 4)]).unwrap();
                let meta = PacketMeta {
                    in_iface: name(inif),
                    out_iface: name(outif),
                    ct: CtInfo::new_from(&h),
                    mark,
                    owner: None,
                    now_ns: 0,
                };
                (h, meta)
            },
        )
}

fn check_ruleset(
    rs: &Ruleset,
    pkts: &[(Headers, PacketMeta)],
    params: &TreeParams,
) -> Result<(), TestCaseError> {
    prop_assume!(rs.tables.iter().all(|t| check::check_table(t).is_ok()));
    let compiled = CompiledRuleset::compile(rs, 0, params);
    let mut st = compiled.new_state();
    let mut reference = RefEvaluator::new(rs, 0);
    let mut counts: HashMap<Hit, (u64, u64)> = HashMap::new();
    let mut wants = Vec::with_capacity(pkts.len());
    for (i, (h, meta)) in pkts.iter().enumerate() {
        let mut meta = *meta;
        meta.now_ns = i as u64 * 37_000_000; // 37 ms apart: limit buckets drain and refill
        let want = reference.eval_hook(Hook::Forward, h, &meta);
        wants.push(want.clone());
        let mut got = Trace {
            mark: meta.mark,
            ..Default::default()
        };
        let (v, mark) = compiled.classify(Hook::Forward, h, &meta, &mut st, &mut got);
        got.verdict = Some(v);
        got.mark = mark;
        prop_assert_eq!(&got, &want, "packet {} {:?}", i, h);
        for hit in &want.hits {
            let c = counts.entry(*hit).or_default();
            c.0 += 1;
            c.1 += u64::from(h.ip_len);
        }
    }
    for (slot, id) in compiled.rule_ids.iter().enumerate() {
        let want = counts.get(&Hit::Rule(*id)).copied().unwrap_or((0, 0));
        prop_assert_eq!(
            (
                st.counters.rules.at(slot).get().packets,
                st.counters.rules.at(slot).get().bytes
            ),
            want,
            "rule {:?}",
            id
        );
    }
    for (slot, (t, hook)) in compiled.policy_slots.iter().enumerate() {
        let want = counts
            .get(&Hit::Policy(*t, *hook))
            .copied()
            .unwrap_or((0, 0));
        let p = st.counters.policy.at(slot).get();
        prop_assert_eq!((p.packets, p.bytes), want);
    }
    // The batch API (tree lookups interleaved across the batch, the ACCEPT/DROP fast path) on
    // the same packets from a fresh state: same verdicts, marks, LOG hits and final counters.
    struct Logs(Vec<(usize, classifier::RuleId)>);
    impl classifier::compile::BatchRecorder for Logs {
        fn log(&mut self, packet: usize, rule: classifier::RuleId) {
            self.0.push((packet, rule));
        }
    }
    let mut st = compiled.new_state();
    let (hs, ms): (Vec<Headers>, Vec<PacketMeta>) = pkts
        .iter()
        .enumerate()
        .map(|(i, (h, m))| {
            let mut m = *m;
            m.now_ns = i as u64 * 37_000_000;
            (*h, m)
        })
        .unzip();
    let mut out = vec![
        (
            classifier::eval::Verdict::Accept,
            classifier::packet::Effects::default()
        );
        pkts.len()
    ];
    let mut logs = Logs(Vec::new());
    compiled.classify_batch_rec(Hook::Forward, &hs, &ms, &mut st, &mut out, &mut logs);
    for (i, want) in wants.iter().enumerate() {
        prop_assert_eq!(
            Some(out[i].0),
            want.verdict,
            "batch verdict of packet {}",
            i
        );
        prop_assert_eq!(
            out[i].1.mark.unwrap_or(ms[i].mark),
            want.mark,
            "batch mark of packet {}",
            i
        );
        let got: Vec<_> = logs
            .0
            .iter()
            .filter(|(p, _)| *p == i)
            .map(|(_, r)| *r)
            .collect();
        prop_assert_eq!(&got, &want.logs, "batch LOG hits of packet {}", i);
    }
    for (slot, id) in compiled.rule_ids.iter().enumerate() {
        let want = counts.get(&Hit::Rule(*id)).copied().unwrap_or((0, 0));
        let c = st.counters.rules.at(slot).get();
        prop_assert_eq!(
            (c.packets, c.bytes),
            want,
            "batch counters of rule {:?}",
            id
        );
    }
    for (slot, (t, hook)) in compiled.policy_slots.iter().enumerate() {
        let want = counts
            .get(&Hit::Policy(*t, *hook))
            .copied()
            .unwrap_or((0, 0));
        let p = st.counters.policy.at(slot).get();
        prop_assert_eq!((p.packets, p.bytes), want, "batch policy counters");
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn compiled_classifier_agrees_with_reference(
        rs in ruleset(),
        pkts in proptest::collection::vec(headers(), 1..60),
        binth in 1usize..10,
    ) {
        // Small binth forces deep trees and partitions even on small rulesets.
        let params = TreeParams { binth, ..TreeParams::default() };
        check_ruleset(&rs, &pkts, &params)?;
    }
}
