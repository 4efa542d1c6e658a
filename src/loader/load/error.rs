//! [`LoadError`]: why loading an object failed. Names from the object and kernel log lines are
//! printed through [`crate::escape`]; an OS error is the variant's source (chained, not repeated).

use std::io;

use crate::escape::{escape_lines, escape_name as esc};

/// Why loading an object failed. Each says which map or program, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "permission denied while {}: run as root, or grant CAP_BPF and CAP_PERFMON \
         (e.g. `sudo setcap cap_bpf,cap_perfmon+ep $(which rawsnoop)`)", esc(.what)
    )]
    Permission { what: String },
    #[error("map '{}': {}", esc(.map), esc(.reason))]
    BadMap { map: String, reason: String },
    #[error("creating map '{}' ({kind}) failed{hint}", esc(.map))]
    MapCreate {
        map: String,
        kind: String,
        source: io::Error,
        hint: String,
    },
    #[error("writing the initial data of map '{}' failed", esc(.map))]
    MapInit { map: String, source: io::Error },
    #[error("program '{}': relocation at instruction {insn}: {}", esc(.program), esc(.reason))]
    Reloc {
        program: String,
        insn: usize,
        reason: String,
    },
    #[error(
        "the kernel's verifier rejected program '{}' (errno {}).\n\
         Verifier log, up to the rejected instruction and the reason (source lines come from the object's BTF):\n{}",
        esc(.program), errno.raw_os_error().unwrap_or(0), escape_lines(.log_tail)
    )]
    Verifier {
        program: String,
        errno: io::Error,
        log: String,
        log_tail: String,
    },
    #[error("program '{}' could not be loaded{hint}", esc(.program))]
    ProgLoad {
        program: String,
        source: io::Error,
        hint: String,
    },
    #[error("the kernel refused program '{}' ({prog_type}, section `{}`): {why}", esc(.program), esc(.section))]
    Refused {
        program: String,
        prog_type: &'static str,
        section: String,
        why: String,
        source: io::Error,
    },
    #[error("no program named '{}' in the object", esc(.0))]
    NoProgram(String),
    #[error(transparent)]
    Core(#[from] crate::loader::core::CoreError),
    #[error(
        "program '{program}' cannot run on this kernel: {reason}. The instruction was poisoned \
         (as libbpf does) and the verifier rejected it; guard the access with \
         bpf_core_field_exists() or build against this kernel's types (`rawsnoop inspect --core` \
         shows every relocation)"
    )]
    CoreUnresolved {
        program: String,
        reason: String,
        log: String,
    },
}

pub(crate) fn is_eperm(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}
