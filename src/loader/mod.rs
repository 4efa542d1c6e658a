//! The loader: bytes -> specs (`ObjectSpec`, no kernel involved), then specs -> kernel objects (`load`).
//!
//! - [`btf`]: BTF and .BTF.ext parsing, fixups, sanitising for older kernels, C-like printing.
//! - [`elf`], [`maps`], [`reloc`]: ELF sections, map definitions, relocations -> [`ObjectSpec`].
//! - [`load`]: specs -> kernel objects through `crate::sys` (the only part that talks to the kernel).

pub mod btf;
pub mod core;
pub mod elf;
pub mod maps;
pub mod reloc;
pub mod spec;

pub use spec::*;
pub mod attach;
pub mod load;
