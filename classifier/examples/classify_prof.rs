use classifier::classbench::{parse_rules, trace};
use classifier::compile::rbox::Key;
use classifier::compile::{CompiledRuleset, TreeParams};
use classifier::eval::Verdict;
use classifier::packet::*;
use classifier::Hook;
fn time(name: &str, n: usize, mut f: impl FnMut()) {
    let t0 = std::time::Instant::now();
    let mut rounds = 0;
    while t0.elapsed().as_secs_f64() < 1.5 {
        f();
        rounds += 1;
    }
    println!(
        "{name}: {:.2} Mpps",
        (rounds * n) as f64 / t0.elapsed().as_secs_f64() / 1e6
    );
}
fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rules = parse_rules(&std::fs::read_to_string(&a[1]).unwrap()).unwrap();
    let rs = trace::to_ruleset(&rules, "FORWARD");
    let c = CompiledRuleset::compile(&rs, 0, &TreeParams::default());
    let tr = trace::parse_trace(&std::fs::read_to_string(&a[2]).unwrap()).unwrap();
    let pk: Vec<(Headers, PacketMeta)> = tr
        .iter()
        .map(|t| {
            let h = t.headers();
            (
                h,
                PacketMeta {
                    in_iface: IfName::NONE,
                    out_iface: IfName::NONE,
                    ct: CtInfo::new_from(&h),
                    mark: 0,
                    owner: None,
                    now_ns: 0,
                },
            )
        })
        .collect();
    println!(
        "sizeof (Headers, PacketMeta) = {}",
        std::mem::size_of::<(Headers, PacketMeta)>()
    );
    let ci = rs.tables[0].chain_index("FORWARD").unwrap();
    for (ti, t) in c
        .chain_trees(classifier::TableKind::Filter, ci)
        .iter()
        .enumerate()
    {
        let (mut d, mut l, mut sc) = (0usize, 0usize, 0usize);
        for p in &pk {
            let k = Key::of(&p.0);
            d += t.depth_of(&k);
            let leaf = t.lookup(&k);
            l += leaf.len();
            for e in leaf {
                sc += 1;
                if e.rbox.contains(&k) {
                    break;
                }
            }
        }
        let n = pk.len() as f64;
        println!(
            "tree {ti}: {:?} mem {} avg depth {:.2} avg leaf {:.2} avg scanned {:.2}",
            t.stats(),
            t.memory_bytes(),
            d as f64 / n,
            l as f64 / n,
            sc as f64 / n
        );
    }
    let mut st = c.new_state();
    let mut v = vec![(Verdict::Accept, 0u32); 64];
    time("keys only", pk.len(), || {
        let mut x = 0u32;
        for p in &pk {
            let k = Key::of(&p.0);
            x = x.wrapping_add(k.0[0] ^ k.0[3]);
        }
        std::hint::black_box(x);
    });
    time("classify_batch", pk.len(), || {
        for ch in pk.chunks(64) {
            c.classify_batch(Hook::Forward, ch, &mut st, &mut v[..ch.len()]);
        }
    });
    // the same with a working set that fits in cache: first 4096 packets
    let small = &pk[..4096];
    time("classify_batch (4096 hot packets)", small.len(), || {
        for ch in small.chunks(64) {
            c.classify_batch(Hook::Forward, ch, &mut st, &mut v[..ch.len()]);
        }
    });
}
#[allow(dead_code)]
fn unused() {}
