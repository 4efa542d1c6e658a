//! Raw system calls and the kernel ABI structures they take. Nothing here knows
//! about ELF, BTF specs, events or the CLI. Every function returns `std::io::Result`;
//! the layers above add context.

pub mod bpf;
pub mod cpus;
pub mod epoll;
pub mod mmap;
pub mod perf;
pub mod tracefs;
