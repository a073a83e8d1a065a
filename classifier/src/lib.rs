//! pollwall's classifier crate: the rule model shared by every layer.
//!
//! This is a pure library (no I/O, no threads). Today it holds the rule model ([`model`]):
//! tables, chains, policies, rules, matches, targets, counters and stable rule ids, plus the
//! checks the kernel applies to a table before accepting it ([`model::check`]). The packet views,
//! the reference evaluator and the compiled decision trees follow in later issues.

pub mod model;

pub use model::*;
