//! Routed mode's tables while something changes them under running workers (`routes =
//! "kernel"`: the rtnetlink mirror publishes a new [`Router`] when the host's addresses, routes
//! or neighbours change).
//!
//! One atomic swap (arc-swap) holds the current tables; a generation number beside it lets a
//! worker see a change with one relaxed load per batch and take the new `Arc` only then, so the
//! hot path neither locks nor touches a shared reference count. A retired router is freed when
//! the last worker drops its `Arc` (its next batch).

use super::Router;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The current [`Router`] and its generation.
#[derive(Debug)]
pub struct SharedRouter {
    generation: AtomicU64,
    current: ArcSwap<Router>,
}

impl SharedRouter {
    pub fn new(router: Arc<Router>) -> SharedRouter {
        SharedRouter {
            generation: AtomicU64::new(0),
            current: ArcSwap::new(router),
        }
    }

    /// Makes `router` current; workers take it at their next batch.
    pub fn publish(&self, router: Router) {
        self.current.store(Arc::new(router));
        // After the store: a worker that sees the new generation loads at least this router.
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Bumped by every [`Self::publish`].
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Arc<Router> {
        self.current.load_full()
    }
}
