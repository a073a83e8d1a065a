//! `-j LOG` records: what a worker hands to the control side for each packet a LOG rule matched.
//!
//! A [`LogRecord`] is fixed-size, `Copy` and allocation-free, so a worker can push it into a ring
//! without touching the allocator. It keeps the first [`LOG_SNAP_LEN`] bytes of the frame, which is
//! more than the kernel's LOG target ever reads: the deepest header it prints is the inner
//! transport header of an ICMP error, at most 14 + 8 (two VLAN tags) + 60 + 8 + 60 + 60 = 210
//! bytes into the frame. The control side formats the kernel's line from it
//! (`control::logline::format_log_line`, after `nf_log_ip_packet` in
//! `net/netfilter/nf_log_syslog.c`).

use classifier::packet::{IfName, PacketMeta};
use classifier::{Hook, RuleId};

/// Bytes of the frame a record keeps.
pub const LOG_SNAP_LEN: usize = 256;

/// One LOG event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// The LOG rule that matched.
    pub rule: RuleId,
    /// The hook (built-in chain) the packet was traversing.
    pub hook: Hook,
    /// Input interface; [`IfName::NONE`] where the kernel has none (OUTPUT, POSTROUTING), which
    /// also means "no MAC header printed".
    pub in_iface: IfName,
    /// Output interface; [`IfName::NONE`] where the kernel has none (PREROUTING, INPUT).
    pub out_iface: IfName,
    /// `skb->mark` when the rule matched.
    pub mark: u32,
    /// When the packet arrived (the worker's monotonic clock, ns).
    pub timestamp_ns: u64,
    /// Length of the whole frame on the wire (without FCS).
    pub wire_len: u32,
    /// Bytes of `bytes` in use: `min(wire_len, LOG_SNAP_LEN)`.
    pub len: u16,
    /// The first `len` bytes of the frame, from the Ethernet header on; zero after that.
    pub bytes: [u8; LOG_SNAP_LEN],
}

impl LogRecord {
    /// A record of `frame` (as received, from the Ethernet header on) matched by `rule` in
    /// `hook`, with the interfaces, mark and arrival time from `meta`. Copies at most
    /// [`LOG_SNAP_LEN`] bytes.
    pub fn new(frame: &[u8], rule: RuleId, hook: Hook, meta: &PacketMeta) -> LogRecord {
        let len = frame.len().min(LOG_SNAP_LEN);
        let mut bytes = [0u8; LOG_SNAP_LEN];
        bytes[..len].copy_from_slice(&frame[..len]);
        LogRecord {
            rule,
            hook,
            in_iface: meta.in_iface,
            out_iface: meta.out_iface,
            mark: meta.mark,
            timestamp_ns: meta.now_ns,
            wire_len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            // len <= 256.
            len: len as u16,
            bytes,
        }
    }

    /// The captured bytes (the first `min(wire_len, 256)` bytes of the frame).
    pub fn frame(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len).min(LOG_SNAP_LEN)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use classifier::packet::{CtInfo, PacketMeta};

    fn meta() -> PacketMeta {
        PacketMeta {
            in_iface: IfName::new("eth0").unwrap(),
            out_iface: IfName::NONE,
            ct: CtInfo {
                state: 0,
                status: 0,
                orig: (0, 0, 0, 0),
                reply: (0, 0, 0, 0),
                l4proto: 0,
                expires: 0,
                reply_dir: false,
                conn: None,
                mark: 0,
                master_helper: None,
            },
            mark: 0x2a,
            owner: None,
            now_ns: 123_456_789,
        }
    }

    #[test]
    fn copies_at_most_the_snap_length() {
        let frame: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let r = LogRecord::new(&frame, RuleId(7), Hook::Input, &meta());
        assert_eq!((r.len, r.wire_len), (256, 300));
        assert_eq!(r.frame(), &frame[..256]);
        assert_eq!((r.rule, r.hook, r.mark), (RuleId(7), Hook::Input, 0x2a));
        assert_eq!(r.in_iface.as_str(), "eth0");
        assert_eq!(r.out_iface, IfName::NONE);
        assert_eq!(r.timestamp_ns, 123_456_789);

        let r = LogRecord::new(&frame[..60], RuleId(1), Hook::Forward, &meta());
        assert_eq!((r.len, r.wire_len), (60, 60));
        assert_eq!(r.frame(), &frame[..60]);
        assert!(r.bytes[60..].iter().all(|&b| b == 0));

        let r = LogRecord::new(&[], RuleId(1), Hook::Output, &meta());
        assert!(r.frame().is_empty());
    }

    #[test]
    fn is_plain_data() {
        fn copy<T: Copy + Send + Sync + 'static>() {}
        copy::<LogRecord>();
        // Small enough to move through a ring by value.
        assert!(std::mem::size_of::<LogRecord>() <= 256 + 96);
    }
}
