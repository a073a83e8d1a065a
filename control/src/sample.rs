//! Packets sampled from a chain's own rules (for `bench-classify` without a trace, and for the
//! benches of the 100k ClassBench sets that have none): each packet lies inside a randomly chosen
//! rule's addresses, protocol and ports, as ClassBench's trace generator does.

use classifier::compile::rbox::{rule_box, DPORT, DST, PROTO, SPORT, SRC};
use classifier::packet::{Headers, TcpOptionKinds, TcpOptions, L4};
use classifier::Chain;

/// A small deterministic generator (xorshift64*), so runs are repeatable.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        let span = u64::from(hi - lo) + 1;
        lo + (self.next_u64() % span) as u32
    }
}

/// `n` packets, each inside the box of a random rule of `chain`.
pub fn sample_packets(chain: &Chain, n: usize) -> Vec<Headers> {
    let mut rng = Rng::new(0x5eed_cafe);
    let boxes: Vec<_> = chain.rules.iter().map(|r| rule_box(r).0).collect();
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let (src, dst, sport, dport, proto) = if boxes.is_empty() {
            (
                rng.next_u64() as u32,
                rng.next_u64() as u32,
                rng.range(0, 65535),
                rng.range(0, 65535),
                6,
            )
        } else {
            let b = &boxes[rng.next_u64() as usize % boxes.len()];
            let pick = |rng: &mut Rng, d: usize| {
                if b.lo[d] <= b.hi[d] {
                    rng.range(b.lo[d], b.hi[d])
                } else {
                    b.lo[d]
                }
            };
            let proto_dim = pick(&mut rng, PROTO) >> 1;
            let proto = if b.lo[PROTO] == 0 && b.hi[PROTO] >= 0x1fe {
                [6, 17, 1][rng.next_u64() as usize % 3]
            } else {
                proto_dim
            };
            (
                pick(&mut rng, SRC),
                pick(&mut rng, DST),
                pick(&mut rng, SPORT),
                pick(&mut rng, DPORT),
                proto,
            )
        };
        let (sport, dport) = (sport as u16, dport as u16);
        let l4 = match proto {
            6 => L4::Tcp {
                sport,
                dport,
                flags: 0x02,
                options: TcpOptions::Kinds(TcpOptionKinds::default()),
            },
            17 => L4::Udp { sport, dport },
            1 => L4::Icmp {
                icmp_type: 8,
                code: 0,
            },
            _ => L4::None,
        };
        out.push(Headers::synthetic(src, dst, proto as u8, l4));
    }
    out
}
