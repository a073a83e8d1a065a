//! The neighbour cache's state machine and bounds, on a virtual clock.

use super::*;

const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

type Log = Vec<Action<u32>>;

fn run(
    n: &mut Neighbors<u32>,
    f: impl FnOnce(&mut Neighbors<u32>, &mut dyn FnMut(Action<u32>)),
) -> Log {
    let mut log = Vec::new();
    f(n, &mut |a| log.push(a));
    log
}

fn solicits(log: &Log) -> usize {
    log.iter()
        .filter(|a| matches!(a, Action::Solicit { .. }))
        .count()
}

fn resolve(n: &mut Neighbors<u32>, ip: u32, now: u64, log: &mut Log) -> Resolved {
    n.resolve(0, ip, now, &mut |a| log.push(a))
}

#[test]
fn an_unanswered_neighbour_fails_after_three_requests_and_drops_its_queue() {
    let mut n = Neighbors::new(NeighConfig::default(), 7);
    let mut log = Vec::new();
    let Resolved::Pending(i) = resolve(&mut n, 5, 0, &mut log) else {
        panic!()
    };
    assert_eq!(
        log,
        vec![Action::Solicit {
            port: 0,
            ip: 5,
            to: None
        }]
    );
    for f in 0..3 {
        n.enqueue(i, f, &mut |a| log.push(a));
    }
    assert_eq!(n.queued(), 3);
    let mut t = 0;
    let mut log = Vec::new();
    while t <= 5000 {
        n.tick(t, &mut |a| log.push(a));
        t += 100;
    }
    assert_eq!(solicits(&log), 2, "three requests in all, 1 s apart");
    let drops: Vec<_> = log
        .iter()
        .filter_map(|a| match a {
            Action::Drop {
                frame,
                failed: true,
            } => Some(*frame),
            _ => None,
        })
        .collect();
    assert_eq!(drops, vec![0, 1, 2]);
    assert_eq!(n.get(0, 5).unwrap().0, State::Failed);
    assert_eq!(n.queued(), 0);
    // Used again, it starts over.
    let mut log = Vec::new();
    assert!(matches!(
        resolve(&mut n, 5, 6000, &mut log),
        Resolved::Pending(_)
    ));
    assert_eq!(solicits(&log), 1);
}

#[test]
fn a_reply_releases_the_queue_in_order_and_the_entry_ages_through_stale_delay_probe() {
    let mut n = Neighbors::new(NeighConfig::default(), 7);
    let mut log = Vec::new();
    let Resolved::Pending(i) = resolve(&mut n, 5, 0, &mut log) else {
        panic!()
    };
    n.enqueue(i, 10, &mut |a| log.push(a));
    n.enqueue(i, 11, &mut |a| log.push(a));
    let log = run(&mut n, |n, mut a| {
        n.learn(
            Heard {
                port: 0,
                ip: 5,
                mac: MAC,
                solicited: true,
                create: false,
            },
            300,
            &mut a,
        )
    });
    assert_eq!(
        log,
        vec![
            Action::Send {
                port: 0,
                mac: MAC,
                frame: 10
            },
            Action::Send {
                port: 0,
                mac: MAC,
                frame: 11
            }
        ]
    );
    assert_eq!(n.get(0, 5), Some((State::Reachable, MAC)));
    // Unused past its reachable time (at most 45 s): stale, still used as it is.
    run(&mut n, |n, mut a| n.tick(46_000, &mut a));
    assert_eq!(n.get(0, 5).unwrap().0, State::Stale);
    let mut log = Vec::new();
    assert_eq!(resolve(&mut n, 5, 46_000, &mut log), Resolved::Mac(MAC));
    assert_eq!(n.get(0, 5).unwrap().0, State::Delay);
    // No confirmation within 5 s: three unicast probes, then failed.
    let mut log = Vec::new();
    for t in (46_000..=56_000).step_by(100) {
        n.tick(t, &mut |a| log.push(a));
    }
    assert_eq!(
        log.iter()
            .filter(|a| matches!(a, Action::Solicit { to: Some(MAC), .. }))
            .count(),
        3
    );
    assert_eq!(n.get(0, 5).unwrap().0, State::Failed);
}

#[test]
fn queues_are_bounded_per_entry_and_in_total() {
    let cfg = NeighConfig {
        queue_per_entry: 4,
        queue_total: 6,
        ..NeighConfig::default()
    };
    let mut n = Neighbors::new(cfg, 7);
    let mut log = Vec::new();
    let Resolved::Pending(a) = resolve(&mut n, 1, 0, &mut log) else {
        panic!()
    };
    let Resolved::Pending(b) = resolve(&mut n, 2, 0, &mut log) else {
        panic!()
    };
    let mut log = Vec::new();
    for f in 0..6 {
        n.enqueue(a, f, &mut |x| log.push(x));
    }
    assert_eq!(n.queued(), 4);
    assert_eq!(
        log,
        vec![
            Action::Drop {
                frame: 0,
                failed: false
            },
            Action::Drop {
                frame: 1,
                failed: false
            }
        ],
        "the oldest go first"
    );
    let mut log = Vec::new();
    for f in 10..14 {
        n.enqueue(b, f, &mut |x| log.push(x));
    }
    assert_eq!(n.queued(), 6, "the cache-wide bound holds");
    assert_eq!(log.len(), 2);
}

#[test]
fn static_entries_never_age_and_a_full_cache_evicts_failed_then_stale_entries() {
    let cfg = NeighConfig {
        max_entries: 3,
        ..NeighConfig::default()
    };
    let mut n: Neighbors<u32> = Neighbors::new(cfg, 7);
    assert!(n.add_static(0, 1, MAC));
    run(&mut n, |n, mut a| n.tick(10_000_000, &mut a));
    assert_eq!(n.get(0, 1), Some((State::Permanent, MAC)));
    let mut log = Vec::new();
    resolve(&mut n, 2, 0, &mut log);
    resolve(&mut n, 3, 0, &mut log);
    // Both pending with nothing queued; neither failed yet: no room for a fourth.
    assert_eq!(resolve(&mut n, 4, 0, &mut log), Resolved::NoEntry);
    for t in (0..=5000).step_by(100) {
        run(&mut n, |n, mut a| n.tick(t, &mut a));
    }
    assert!(matches!(
        resolve(&mut n, 4, 5000, &mut log),
        Resolved::Pending(_)
    ));
    assert_eq!(n.len(), 3);
    assert_eq!(n.get(0, 1).unwrap().0, State::Permanent);
    // An unsolicited message only updates an existing entry.
    run(&mut n, |n, mut a| {
        n.learn(
            Heard {
                port: 0,
                ip: 9,
                mac: MAC,
                solicited: false,
                create: false,
            },
            6000,
            &mut a,
        )
    });
    assert_eq!(n.get(0, 9), None);
}
