//! A worker's rule and policy counters as a shard the control side can read while the worker
//! runs: each counter is written by its worker only, with a relaxed load and store (the same
//! plain `mov`/`add` as an ordinary integer on x86-64, no locked instruction), and read by
//! anyone with relaxed loads. The shard is whole cache lines (64-byte aligned, four counters per
//! line), so two workers' shards never share a line.

use crate::model::Counters;
use std::sync::atomic::{AtomicU64, Ordering};

/// One rule's or policy's packets and bytes.
#[derive(Debug, Default)]
#[repr(C)]
pub struct SharedCounter {
    packets: AtomicU64,
    bytes: AtomicU64,
}

impl SharedCounter {
    /// Counts one packet of `bytes` (owner thread only).
    #[inline(always)]
    pub fn add(&self, bytes: u64) {
        let p = self.packets.load(Ordering::Relaxed);
        let b = self.bytes.load(Ordering::Relaxed);
        self.packets.store(p.wrapping_add(1), Ordering::Relaxed);
        self.bytes.store(b.wrapping_add(bytes), Ordering::Relaxed);
    }

    pub fn get(&self) -> Counters {
        Counters {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
        }
    }
}

#[derive(Debug, Default)]
#[repr(align(64))]
struct Line([SharedCounter; 4]);

/// `len` counters in whole cache lines.
#[derive(Debug)]
pub struct CounterArray {
    lines: Box<[Line]>,
    len: usize,
}

impl CounterArray {
    pub fn new(len: usize) -> CounterArray {
        CounterArray {
            lines: (0..len.div_ceil(4)).map(|_| Line::default()).collect(),
            len,
        }
    }

    #[inline(always)]
    pub fn at(&self, i: usize) -> &SharedCounter {
        &self.lines[i / 4].0[i % 4]
    }

    /// Counter `i`, or None past the end.
    pub fn get(&self, i: usize) -> Option<Counters> {
        (i < self.len).then(|| self.at(i).get())
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Counters> + '_ {
        (0..self.len).map(|i| self.at(i).get())
    }
}

/// A worker's counters: rules by dense slot, policies by policy slot.
#[derive(Debug)]
pub struct CounterShard {
    pub rules: CounterArray,
    pub policy: CounterArray,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_reads_across_threads() {
        let s = std::sync::Arc::new(CounterShard {
            rules: CounterArray::new(9),
            policy: CounterArray::new(1),
        });
        assert_eq!(std::mem::align_of::<Line>(), 64);
        let w = std::sync::Arc::clone(&s);
        std::thread::spawn(move || {
            for _ in 0..1000 {
                w.rules.at(8).add(60);
            }
        })
        .join()
        .unwrap();
        assert_eq!(
            s.rules.get(8),
            Some(Counters {
                packets: 1000,
                bytes: 60_000
            })
        );
        assert_eq!(s.rules.get(9), None);
        assert_eq!(s.rules.iter().count(), 9);
    }
}
