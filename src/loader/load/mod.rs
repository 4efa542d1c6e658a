//! Specs -> kernel objects, the only part of the loader that talks to the kernel (through
//! `crate::sys`). In load order:
//!
//! - [`btf`]: probe the kernel's BTF features, sanitise and BTF_LOAD the object's BTF;
//! - [`maps`]: finalise each map definition, MAP_CREATE, initial data, freeze;
//! - [`programs`]: finalise instructions ([`programs::finalize_insns`]: map relocations),
//!   PROG_LOAD with the verifier log;
//! - [`log`]: the verifier-log excerpt shown to the user;
//! - [`error`]: why loading failed ([`LoadError`]).

#![deny(missing_docs)]

use std::collections::HashMap;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::loader::spec::{MapSpec, ObjectSpec};
use crate::sys;

pub mod btf;
pub mod error;
pub mod log;
pub mod maps;
pub mod programs;

#[cfg(test)]
mod fake_tests;

pub use btf::btf_features;
pub use error::LoadError;
pub use log::log_excerpt;
pub use maps::{finalize_map_spec, MAX_MAP_BYTES};
pub use programs::{finalize_insns, raw_insns};

/// A map living in the kernel.
#[derive(Debug)]
pub struct Map {
    /// The definition it was created from, after finalising (sizes the kernel filled in).
    pub spec: MapSpec,
    fd: OwnedFd,
}

impl Map {
    /// The map's fd, for `bpf(2)` calls and [`crate::consumer::Reader::open`].
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The map's full name (the kernel keeps only its first 15 bytes).
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// A read-only view of a one-entry array map's value (created with `BPF_F_MMAPABLE`,
    /// see [`LoadOptions::mmapable`]): the kernel maps the value area at offset 0.
    pub fn mmap_ro(&self) -> std::io::Result<crate::sys::mmap::Mmap> {
        let len = (self.spec.value_size as usize).max(1);
        crate::sys::mmap::Mmap::map(
            self.fd(),
            0,
            len,
            crate::sys::mmap::Prot::Read,
            libc::MAP_SHARED,
        )
    }
}

/// A program living in the kernel (not yet attached).
#[derive(Debug)]
pub struct Program {
    /// Its FUNC symbol's name.
    pub name: String,
    /// Its ELF section (`tp/sched/sched_process_exec`, ...).
    pub section: String,
    /// Where [`crate::loader::attach::attach`] attaches it, parsed from the section.
    pub attach: crate::loader::spec::AttachPoint,
    fd: OwnedFd,
}

impl Program {
    /// The program's fd, for attaching.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Changes to an object before loading: the CLI and the bench size rings, set `.rodata`
/// configuration (`const volatile` globals), and choose which programs to load here.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// map name -> max_entries to use instead of the object's.
    pub max_entries: HashMap<String, u32>,
    /// (global-data section, byte offset, bytes) written into the initial value before creation.
    pub data_patches: Vec<(String, usize, Vec<u8>)>,
    /// The programs to load, by name; `None` loads every program of the object. A program the
    /// caller never attaches (an extra `fentry/` the kernel would refuse, say) is best left
    /// out: one unusable program then cannot fail the whole object.
    pub programs: Option<Vec<String>>,
    /// Maps (array maps: global data) to create with `BPF_F_MMAPABLE`, for [`Map::mmap_ro`].
    pub mmapable: Vec<String>,
    /// BTF that CO-RE relocations resolve against (`--btf`); the running kernel's by default.
    pub btf: crate::loader::core::BtfSource,
}

impl LoadOptions {
    /// Load only the program `name` (see [`LoadOptions::programs`]).
    pub fn only_program(mut self, name: &str) -> Self {
        self.programs = Some(vec![name.to_string()]);
        self
    }

    fn wants(&self, program: &str) -> bool {
        self.programs
            .as_ref()
            .is_none_or(|list| list.iter().any(|p| p == program))
    }
}

/// An object whose maps and programs are loaded. Dropping it closes every fd, which frees
/// the kernel objects unless something else (a link, a pin) holds them.
#[derive(Debug)]
pub struct Object {
    maps: Vec<Map>,
    programs: Vec<Program>,
    _btf: Option<OwnedFd>,
    /// Things the user should know but that did not stop the load (e.g. BTF not loaded).
    pub warnings: Vec<String>,
}

impl Object {
    /// Loads every map and program of `spec` with the object's own settings.
    ///
    /// # Errors
    /// See [`Object::load_with`].
    pub fn load(spec: &ObjectSpec) -> Result<Object, LoadError> {
        Self::load_with(spec, &LoadOptions::default())
    }

    /// Loads `spec` changed by `opts`: BTF (when the kernel takes it), then the maps, then
    /// the programs `opts` selects.
    ///
    /// # Errors
    /// [`LoadError::NoProgram`] for a name in [`LoadOptions::programs`] the object lacks;
    /// [`LoadError::Permission`] without privilege; [`LoadError::BadMap`],
    /// [`LoadError::MapCreate`], [`LoadError::MapInit`] for maps; [`LoadError::Reloc`],
    /// [`LoadError::Core`], [`LoadError::CoreUnresolved`], [`LoadError::Verifier`],
    /// [`LoadError::ProgLoad`], [`LoadError::Refused`] for programs.
    pub fn load_with(spec: &ObjectSpec, opts: &LoadOptions) -> Result<Object, LoadError> {
        if let Some(missing) = opts
            .programs
            .iter()
            .flatten()
            .find(|name| spec.program(name).is_none())
        {
            return Err(LoadError::NoProgram(missing.clone()));
        }
        let mut warnings = spec.warnings.clone();
        if let Err(e) = sys::kernel::raise_memlock_if_needed() {
            warnings.push(format!(
                "could not raise RLIMIT_MEMLOCK ({e}); this kernel may need it for BPF maps: \
                 if loading fails with 'Operation not permitted', run `ulimit -l unlimited` first"
            ));
        }
        // `.kconfig` externs get their values from the running kernel here.
        let kconfig_opts;
        let opts = if spec.kconfig.is_empty() {
            opts
        } else {
            let version = sys::kernel::version().map_or(0, |v| v.code());
            let local = spec.btf.as_ref().ok_or_else(|| LoadError::BadMap {
                map: ".kconfig".into(),
                reason: "the object has .kconfig externs but no usable .BTF".into(),
            })?;
            let mut o = opts.clone();
            o.data_patches.extend(
                crate::loader::externs::kconfig_patches(local, &spec.kconfig, version).map_err(
                    |e| LoadError::BadMap {
                        map: ".kconfig".into(),
                        reason: e.to_string(),
                    },
                )?,
            );
            kconfig_opts = o;
            &kconfig_opts
        };
        let btf_fd = btf::load_btf(spec, &mut warnings);
        let mut maps = Vec::with_capacity(spec.maps.len());
        for m in &spec.maps {
            maps.push(maps::create_map(
                m,
                opts,
                btf_fd.as_ref().map(|f| f.as_fd()),
                &mut warnings,
            )?);
        }
        let mut programs = Vec::with_capacity(spec.programs.len());
        let wanted: Vec<_> = spec
            .programs
            .iter()
            .filter(|p| opts.wants(&p.name))
            .collect();
        // Kernel BTF is read only if a wanted program has CO-RE records or is tp_btf.
        let core = crate::loader::core::hook::Context::new(&wanted, spec.btf.as_ref(), &opts.btf)?;
        for p in wanted {
            programs.push(programs::load_program(
                spec,
                p,
                &maps,
                btf_fd.as_ref().map(|f| f.as_fd()),
                &core,
                &mut warnings,
            )?);
        }
        Ok(Object {
            maps,
            programs,
            _btf: btf_fd,
            warnings,
        })
    }

    /// Every map, in the spec's order.
    pub fn maps(&self) -> &[Map] {
        &self.maps
    }
    /// Every loaded program, in the spec's order.
    pub fn programs(&self) -> &[Program] {
        &self.programs
    }
    /// The map called `name` (full name).
    pub fn map(&self, name: &str) -> Option<&Map> {
        self.maps.iter().find(|m| m.spec.name == name)
    }
    /// The loaded program called `name`.
    pub fn program(&self, name: &str) -> Option<&Program> {
        self.programs.iter().find(|p| p.name == name)
    }
}
