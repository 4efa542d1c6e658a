//! Raw system calls and the kernel ABI structures they take. Nothing here knows
//! about ELF, BTF specs, events or the CLI. Every function returns `std::io::Result`
//! (or a plain value); the layers above add context.

pub mod bpf;
pub mod cgroup;
pub mod cpus;
pub mod epoll;
pub mod eventfd;
#[cfg(test)]
pub(crate) mod fake;
pub mod kernel;
pub mod mmap;
pub mod perf;
pub mod probe;
pub mod signal;
pub mod time;
pub mod tracefs;
pub mod uapi;
