//! rawsnoop: an exec tracer over BPF ring buffers and perf buffers, with its own
//! ELF/BTF loader and raw syscalls (no libbpf).
//!
//! Layers flow one way:
//! - [`sys`]: raw syscalls (`bpf(2)`, `perf_event_open(2)`, mmap, epoll, tracefs). Knows nothing above it.
//! - [`loader`]: ELF/BTF parsing into specs (no kernel), then loading specs through `sys`.
//! - [`ringbuf`], [`perfbuf`]: consumers over the mmap'd pages, using `sys` only;
//!   [`consumer`]: the transport, its options and the one [`consumer::Reader`] over both.
//! - [`tracer`], [`event`], [`output`]: the exec tracer the CLI (`main.rs`) drives.
//! - [`escape`]: the one escaping function for anything from an object or the kernel we print.
//! - [`guide`]: `rawsnoop guide`, a Markdown guide filled with this kernel's values.
//! - [`lab`]: `rawsnoop lab`, a private ring driven step by step with BPF_PROG_TEST_RUN.
//! - [`objects`]: the BPF objects built from `bpf/` and embedded in the binary.

pub mod bench;
pub mod consumer;
pub mod escape;
pub mod event;
pub mod guide;
pub mod inspect;
pub mod inspect_core;
pub mod lab;
pub mod loader;
pub mod objects;
pub mod output;
pub mod perfbuf;
pub mod ringbuf;
pub mod sys;
pub mod tracer;
pub mod view;
