//! pollwall tools: helpers behind the binaries in `src/bin/` (today the ClassBench
//! converter over [`classbench`], which lives in the classifier crate), kept in a library so
//! benches and tests can use them in process.

pub use classifier::classbench;
