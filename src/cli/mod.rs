//! The subcommands' runners and the trace loop (binary-private; the library is src/lib.rs).

pub(crate) mod bench;
pub(crate) mod btf;
pub(crate) mod inspect;
pub(crate) mod lab;
pub(crate) mod options;
pub(crate) mod trace;
