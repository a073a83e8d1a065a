//! The iptables grammar: parsing a command line into a [`Command`] over the rule model, and
//! printing rules back (`-S`/`iptables-save` forms in [`save`], `-L` tables in [`list`]).
//!
//! The parser follows iptables 1.8.9's `do_parse` closely (getopt_long semantics with unique
//! prefixes, `!` before an option, extension options merged as extensions load, the implicit
//! protocol match), because scripts rely on those details.

pub mod ext;
pub mod list;
pub mod parse;
pub mod save;
pub mod values;

pub use parse::{parse_command, parse_command_in, Command, Op, ParseMode};
