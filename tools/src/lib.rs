//! pollwall tools: helpers behind the binaries in `src/bin/` (today the ClassBench
//! converter, [`classbench`]), kept in a library so benches and tests can use them in process.

pub mod classbench;
