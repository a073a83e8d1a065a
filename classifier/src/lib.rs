//! pollwall's classifier crate: a pure library (no I/O, no threads).
//!
//! - [`model`]: the rule model shared by every layer (tables, chains, rules, matches, targets,
//!   counters, stable rule ids) and the kernel's table checks.
//! - [`wire`]: bounds-checked zero-copy packet views; [`packet`]: the header fields and metadata
//!   rules look at.
//! - [`eval`]: the reference evaluator, the plain in-order walk that defines the semantics.
//! - [`compile`]: the compiler to decision trees and the batch classifier, which must agree with
//!   the reference evaluator on every verdict and counter.

pub mod classbench;
pub mod compile;
pub mod conntrack;
pub mod defrag;
pub mod eval;
pub mod model;
pub mod nat;
pub mod packet;
pub mod wire;

pub use model::*;
