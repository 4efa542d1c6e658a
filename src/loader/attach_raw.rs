//! BTF-typed raw tracepoints (`tp_btf/<name>`) and raw tracepoints (`raw_tp/<name>`): the link
//! syscalls, below [`crate::loader::attach`] (which wraps them into a `Link`). Neither needs
//! tracefs: the kernel finds the tracepoint by name, or by the program's attach_btf_id
//! (`btf_trace_<name>` in vmlinux BTF, set at load by `loader::core::hook`).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};

use crate::sys::bpf;

/// Links a loaded `tp_btf` program: BPF_LINK_CREATE with `BPF_TRACE_RAW_TP` where the kernel
/// has it for raw tracepoints (6.10+), else BPF_RAW_TRACEPOINT_OPEN without a name (5.5+).
/// Probed by trying: a kernel without the first answers EINVAL (or E2BIG/EOPNOTSUPP); never a
/// guess from the version.
pub fn open_tp_btf(prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    match bpf::link_create_tracing(prog, crate::sys::uapi::BPF_TRACE_RAW_TP) {
        Ok(link) => return Ok(link),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::E2BIG) | Some(libc::EOPNOTSUPP)
            ) => {}
        Err(e) => return Err(e),
    }
    bpf::raw_tracepoint_open(None, prog)
}

/// Links a loaded `raw_tp` program to tracepoint `name` (BPF_RAW_TRACEPOINT_OPEN, every kernel
/// we support).
pub fn open_raw_tp(name: &str, prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    bpf::raw_tracepoint_open(Some(name), prog)
}
