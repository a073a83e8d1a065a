//! The exception path's MAC table: which port the box's own frames leave by.

/// A small MAC → port cache for the exception path (which port the box's replies go out of).
/// Direct-mapped with a randomly keyed hash: a collision only costs a flood.
pub struct Fdb {
    key: u64,
    slots: [(u64, u8); 256],
}

impl Default for Fdb {
    fn default() -> Fdb {
        Fdb::new()
    }
}

impl Fdb {
    pub fn new() -> Fdb {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x70_77);
        Fdb {
            key: h.finish() | 1,
            slots: [(u64::MAX, 0); 256],
        }
    }
    fn mac(m: &[u8]) -> u64 {
        m.iter().take(6).fold(0u64, |a, b| a << 8 | u64::from(*b))
    }
    fn slot(&self, mac: u64) -> usize {
        ((mac ^ self.key).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56) as usize
    }
    pub fn learn(&mut self, src: &[u8], port: u8) {
        let m = Fdb::mac(src);
        let i = self.slot(m);
        self.slots[i] = (m, port);
    }
    pub fn lookup(&self, dst: &[u8]) -> Option<u8> {
        let m = Fdb::mac(dst);
        let (k, p) = self.slots[self.slot(m)];
        (k == m).then_some(p)
    }
}
