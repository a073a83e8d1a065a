//! pollwall tools: helpers behind the binaries in `src/bin/`, kept in a library so benches and
//! tests can use them in process: the ClassBench converter over [`classbench`] (which lives in
//! the classifier crate) and the traffic generator [`gen`] (`pw-gen`).

pub use classifier::classbench;
pub mod gen;
