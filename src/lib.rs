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
//!
//! # Public API
//!
//! rawsnoop is a tool first, but these types are what a Rust user can build on; they are
//! documented item by item (`missing_docs` is denied in their modules) with the errors each
//! call returns, and `examples/` uses nothing else:
//!
//! | step | type | errors |
//! |---|---|---|
//! | parse an object (no kernel) | [`loader::ObjectSpec`] (`ObjectSpec::parse`), with [`loader::ProgramSpec`], [`loader::MapSpec`] | [`loader::ParseError`] |
//! | load it | [`loader::load::Object`] ([`loader::load::Object::load_with`] and [`loader::load::LoadOptions`]) | [`loader::load::LoadError`] |
//! | its programs and maps | [`loader::load::Program`], [`loader::load::Map`] | |
//! | attach a program | [`loader::attach::attach`] -> [`loader::attach::Link`] (detaches on drop) | [`loader::attach::AttachError`] |
//! | read a ring | [`consumer::Reader`] over [`consumer::RingBuf`] (`BPF_MAP_TYPE_RINGBUF`) or [`consumer::PerfBuf`] (`BPF_MAP_TYPE_PERF_EVENT_ARRAY`), chosen by [`consumer::TransportOptions`] | [`consumer::ConsumerError`] |
//! | decode rawsnoop's exec event | [`event::EventRef`] | [`event::EventError`] |
//! | the whole exec tracer | [`tracer::Tracer`] | [`tracer::TracerError`] |
//!
//! A minimal ring buffer reader (see `examples/ringbuf_reader.rs` for the full one):
//!
//! ```no_run
//! use std::ops::ControlFlow;
//! use std::time::Duration;
//!
//! use rawsnoop::consumer::{Reader, Record, Transport};
//! use rawsnoop::loader::{attach, load::{LoadOptions, Object}, ObjectSpec};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = ObjectSpec::parse(rawsnoop::objects::RINGBUF_RESERVE)?;
//! let object = Object::load_with(&spec, &LoadOptions::default().only_program("handle_exec"))?;
//! let rb = object.map("rb").expect("the object's ring");
//! let opts = Transport::RingbufReserve.default_options();
//! let mut reader = Reader::open(rb.fd(), rb.spec.max_entries, &opts)?;
//! let _link = attach::attach(object.program("handle_exec").expect("loaded"))?;
//! reader.poll(Some(Duration::from_secs(1)), |record| {
//!     if let Record::Sample { data, .. } = record {
//!         println!("{} bytes", data.len());
//!     }
//!     ControlFlow::Continue(())
//! })?;
//! # Ok(())
//! # }
//! ```
//!
//! Everything else is public for the CLI, `bench`, `lab` and the tests, and may change.

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
