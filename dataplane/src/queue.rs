//! Where a worker's QUEUE/NFQUEUE frames and LOG records leave it: bounded SPSC rings
//! (`rtrb`), pushed without waiting; a full ring drops and counts.

use crate::log::LogRecord;
use classifier::Hook;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

/// A frame handed to a QUEUE/NFQUEUE consumer (a copy; the UMEM frame is freed at once).
#[derive(Clone)]
pub struct QueuedFrame {
    pub queue: u16,
    pub hook: Hook,
    pub in_port: u8,
    pub len: u16,
    pub data: [u8; crate::steer::MAX_FRAME],
}

/// Where LOG records and QUEUE frames leave the worker.
pub struct Sinks {
    pub log: Option<rtrb::Producer<LogRecord>>,
    pub queue: Option<rtrb::Producer<QueuedFrame>>,
    /// Set while a userspace consumer reads the queue ring (none until the queue issue).
    pub queue_consumer: Arc<AtomicBool>,
}

impl Sinks {
    pub fn none() -> Sinks {
        Sinks {
            log: None,
            queue: None,
            queue_consumer: Arc::new(AtomicBool::new(false)),
        }
    }
}
