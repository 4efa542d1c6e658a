//! The loader: bytes -> specs (`ObjectSpec`, no kernel involved), then specs -> kernel objects (`load`).
//!
//! Reading order, and the only direction imports go:
//!
//! - [`spec`]: the pure data types (`ObjectSpec`, `ProgramSpec`, `MapSpec`, `Insn`, `ParseError`);
//!   imports nothing of the loader but [`btf`].
//! - [`btf`]: BTF and .BTF.ext parsing, fixups, sanitising for older kernels, C-like printing.
//! - [`elf`]: a bounds-checked view of the ELF sections, symbols and relocations; section name ->
//!   program type.
//! - [`maps`]: map definitions (`.maps`, legacy `maps`, global data) from the ELF view.
//! - [`reloc`]: linking programs with their `.text` subprograms (parse time) and applying map
//!   relocations (load time).
//! - [`object`]: the one place that ties `elf`, `btf`, `maps` and `reloc` together into an
//!   [`ObjectSpec`] (`ObjectSpec::parse`).
//! - [`load`]: specs -> kernel objects through `crate::sys` (the only part that talks to the
//!   kernel); [`attach`]: loaded programs -> links ([`attach_raw`]: raw_tp / tp_btf links).
//! - [`core`]: CO-RE relocation against the target kernel's BTF, applied by `load` per program.

pub mod btf;
pub mod core;
pub mod elf;
pub mod externs;
pub mod inflate;
pub mod maps;
pub mod object;
pub mod reloc;
pub mod spec;

pub use spec::*;
pub mod attach;
pub mod attach_raw;
pub mod load;
