//! [`LoadError`]: why loading an object failed.

use std::io;

/// Why loading an object failed. Each says which map or program, and what to do.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "permission denied while {what}: run as root, or grant CAP_BPF and CAP_PERFMON \
         (e.g. `sudo setcap cap_bpf,cap_perfmon+ep $(which rawsnoop)`)"
    )]
    Permission { what: String },
    #[error("map '{map}': {reason}")]
    BadMap { map: String, reason: String },
    #[error("creating map '{map}' ({kind}) failed: {source}{hint}")]
    MapCreate {
        map: String,
        kind: String,
        source: io::Error,
        hint: String,
    },
    #[error("writing the initial data of map '{map}' failed: {source}")]
    MapInit { map: String, source: io::Error },
    #[error("program '{program}': relocation at instruction {insn}: {reason}")]
    Reloc {
        program: String,
        insn: usize,
        reason: String,
    },
    #[error(
        "the kernel's verifier rejected program '{program}' (errno {}).\n\
         Verifier log, up to the rejected instruction and the reason (source lines come from the object's BTF):\n{log_tail}",
        errno.raw_os_error().unwrap_or(0)
    )]
    Verifier {
        program: String,
        errno: io::Error,
        log: String,
        log_tail: String,
    },
    #[error("program '{program}' could not be loaded: {source}{hint}")]
    ProgLoad {
        program: String,
        source: io::Error,
        hint: String,
    },
    #[error("the kernel refused program '{program}' ({prog_type}, section `{section}`): {why}")]
    Refused {
        program: String,
        prog_type: &'static str,
        section: String,
        why: String,
        source: io::Error,
    },
    #[error("no program named '{0}' in the object")]
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
