//! pollwall's control side: the iptables command line (grammar, commands, save/restore), the
//! store that holds the ruleset between commands, and (later) the daemon.
//!
//! The `pollwall` binary is a thin wrapper over [`cli::main`].

pub mod bench_classify;
pub mod cli;
pub mod commands;
pub mod counters;
pub mod daemon;
pub mod daemon_config;
pub mod demo;
pub mod error;
pub mod exec;
pub mod grammar;
pub mod help;
pub mod logline;
pub mod logsink;
pub mod names;
pub mod replay;
pub mod replay_config;
pub mod restore;
pub mod routed_config;
pub mod sample;
pub mod store;
