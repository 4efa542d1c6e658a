//! [`LoadError`]: why loading an object failed. Names from the object and kernel log lines are
//! printed through [`crate::escape`]; an OS error is the variant's source (chained, not repeated).

use std::io;

use crate::escape::{escape_lines, escape_name as esc};

/// Why loading an object failed. Each says which map or program, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel said EPERM: not enough privilege.
    #[error(
        "permission denied while {}: run as root, or grant CAP_BPF and CAP_PERFMON \
         (e.g. `sudo setcap cap_bpf,cap_perfmon+ep $(which rawsnoop)`)", esc(.what)
    )]
    Permission {
        /// The step that needed privilege.
        what: String,
    },
    /// A map definition cannot be created as written.
    #[error("map '{}': {}", esc(.map), esc(.reason))]
    BadMap {
        /// The map's name.
        map: String,
        /// What is wrong with its definition.
        reason: String,
    },
    /// `BPF_MAP_CREATE` failed.
    #[error("creating map '{}' ({kind}) failed{hint}", esc(.map))]
    MapCreate {
        /// The map's name.
        map: String,
        /// Its type, by name.
        kind: String,
        /// The system call's error.
        source: io::Error,
        /// What to try (may be empty), starting with its separator.
        hint: String,
    },
    /// Writing a global-data map's initial value (or freezing it) failed.
    #[error("writing the initial data of map '{}' failed", esc(.map))]
    MapInit {
        /// The map's name.
        map: String,
        /// The system call's error.
        source: io::Error,
    },
    /// A map relocation cannot be applied.
    #[error("program '{}': relocation at instruction {insn}: {}", esc(.program), esc(.reason))]
    Reloc {
        /// The program's name.
        program: String,
        /// The instruction index.
        insn: usize,
        /// Why it cannot be applied.
        reason: String,
    },
    /// The verifier rejected a program; the log says why.
    #[error(
        "the kernel's verifier rejected program '{}' (errno {}).\n\
         Verifier log, up to the rejected instruction and the reason (source lines come from the object's BTF):\n{}",
        esc(.program), errno.raw_os_error().unwrap_or(0), escape_lines(.log_tail)
    )]
    Verifier {
        /// The program's name.
        program: String,
        /// `BPF_PROG_LOAD`'s error (printed as a number, not chained: the log explains it).
        errno: io::Error,
        /// The whole verifier log.
        log: String,
        /// The excerpt shown to the user ([`crate::loader::load::log_excerpt`]).
        log_tail: String,
    },
    /// `BPF_PROG_LOAD` failed without a verifier verdict.
    #[error("program '{}' could not be loaded{hint}", esc(.program))]
    ProgLoad {
        /// The program's name.
        program: String,
        /// The system call's error.
        source: io::Error,
        /// What to try (may be empty), starting with its separator.
        hint: String,
    },
    /// The kernel does not support this kind of program.
    #[error("the kernel refused program '{}' ({prog_type}, section `{}`): {why}", esc(.program), esc(.section))]
    Refused {
        /// The program's name.
        program: String,
        /// Its program type, by name.
        prog_type: &'static str,
        /// Its ELF section.
        section: String,
        /// Why this kernel refuses it.
        why: String,
        /// The system call's error.
        source: io::Error,
    },
    /// [`crate::loader::load::LoadOptions::programs`] names a program the object lacks.
    #[error("no program named '{}' in the object", esc(.0))]
    NoProgram(
        /// The name asked for.
        String,
    ),
    /// A CO-RE relocation failed (see [`crate::loader::core::CoreError`]).
    #[error(transparent)]
    Core(#[from] crate::loader::core::CoreError),
    #[error(
        "program '{program}' cannot run on this kernel: {reason}. The instruction was poisoned \
         (as libbpf does) and the verifier rejected it; guard the access with \
         bpf_core_field_exists() or build against this kernel's types (`rawsnoop inspect --core` \
         shows every relocation)"
    )]
    /// A CO-RE relocation did not resolve on this kernel and the program reached the poisoned
    /// instruction.
    CoreUnresolved {
        /// The program's name.
        program: String,
        /// Which relocation and why.
        reason: String,
        /// The whole verifier log.
        log: String,
    },
}

pub(crate) fn is_eperm(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}
