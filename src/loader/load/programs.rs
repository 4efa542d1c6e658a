//! Program loading: instructions finalised for the kernel ([`finalize_insns`], the one place
//! that rewrites a program's instructions at load time), `.BTF.ext` records, PROG_LOAD with the
//! verifier log, and what a refusal means.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use super::error::{is_eperm, LoadError};
use super::log::log_excerpt;
use super::{Map, Program};
use crate::loader::reloc;
use crate::loader::spec::{Insn, ObjectSpec, ProgramSpec};
use crate::sys::{self, bpf};

/// The instructions PROG_LOAD gets for `prog`: a copy of the linked instructions with every
/// load-time rewrite applied, in order: CO-RE relocations against the target BTF (done first by
/// `load_program` through `core::hook::Context::apply`, which returns the patched copy this
/// function receives), then map relocations (fds of the created `maps`). Anything else that must
/// change instructions before PROG_LOAD belongs here, and nowhere else.
pub fn finalize_insns(prog: &ProgramSpec, maps: &[Map]) -> Result<Vec<Insn>, LoadError> {
    let fds: Vec<i32> = maps.iter().map(|m| m.fd().as_raw_fd()).collect();
    let insns = reloc::apply_map_relocs(prog, &fds).map_err(|e| LoadError::Reloc {
        program: prog.name.clone(),
        insn: e.insn,
        reason: e.reason,
    })?;
    Ok(insns)
}

/// Raw 8-byte instructions as `struct bpf_insn` lays them out on this machine.
pub fn raw_insns(insns: &[Insn]) -> Vec<u64> {
    insns
        .iter()
        .map(|i| {
            let off = i.off.to_ne_bytes();
            let imm = i.imm.to_ne_bytes();
            u64::from_ne_bytes([
                i.code, i.regs, off[0], off[1], imm[0], imm[1], imm[2], imm[3],
            ])
        })
        .collect()
}

fn ext_records(prog: &ProgramSpec) -> (Vec<u8>, Vec<u8>) {
    let mut func = Vec::with_capacity(prog.func_info.len() * 8);
    for f in &prog.func_info {
        func.extend_from_slice(&f.insn_off.to_ne_bytes());
        func.extend_from_slice(&f.type_id.to_ne_bytes());
    }
    let mut line = Vec::with_capacity(prog.line_info.len() * 16);
    for l in &prog.line_info {
        for v in [l.insn_off, l.file_name_off, l.line_off, l.line_col] {
            line.extend_from_slice(&v.to_ne_bytes());
        }
    }
    (func, line)
}

pub(crate) fn load_program(
    spec: &ObjectSpec,
    prog: &ProgramSpec,
    maps: &[Map],
    btf_fd: Option<BorrowedFd<'_>>,
    core: &crate::loader::core::hook::Context,
    warnings: &mut Vec<String>,
) -> Result<Program, LoadError> {
    // CO-RE (and the attach BTF id) on a copy of the spec; what each relocation did is kept to
    // explain a verifier rejection of a poisoned instruction.
    let (prog, outcomes) = core.apply(spec, prog)?;
    load_patched(spec, &prog, maps, btf_fd, warnings).map_err(|e| core_rejection(e, &outcomes))
}

/// A verifier rejection caused by a poisoned CO-RE instruction, told as the relocation in words.
fn core_rejection(e: LoadError, outcomes: &[crate::loader::core::Outcome]) -> LoadError {
    if let LoadError::Verifier { program, log, .. } = &e {
        if let Some(reason) = crate::loader::core::hook::poisoned_reason(outcomes, log) {
            return LoadError::CoreUnresolved {
                program: program.clone(),
                reason,
                log: log.clone(),
            };
        }
    }
    e
}

fn load_patched(
    spec: &ObjectSpec,
    prog: &ProgramSpec,
    maps: &[Map],
    btf_fd: Option<BorrowedFd<'_>>,
    warnings: &mut Vec<String>,
) -> Result<Program, LoadError> {
    let insns = raw_insns(&finalize_insns(prog, maps)?);
    let (func, line) = ext_records(prog);
    let kern_version = if spec.kern_version != 0 {
        spec.kern_version
    } else {
        sys::kernel::version().map_or(0, |v| v.code())
    };
    let mut attr = bpf::ProgLoad {
        prog_type: prog.prog_type,
        expected_attach_type: prog.expected_attach_type,
        name: &prog.name,
        insns: &insns,
        license: &spec.license,
        kern_version,
        btf_fd,
        attach_btf_id: prog.attach_btf_id,
        ..Default::default()
    };
    if btf_fd.is_some() && !func.is_empty() {
        attr.func_info = &func;
        attr.func_info_rec_size = 8;
        attr.line_info = &line;
        attr.line_info_rec_size = if line.is_empty() { 0 } else { 16 };
    }
    let first = match bpf::prog_load_with_log(&attr) {
        Ok(fd) => {
            return Ok(Program {
                name: prog.name.clone(),
                section: prog.section.clone(),
                attach: prog.attach.clone(),
                fd,
            })
        }
        Err(e) => e,
    };
    // If the rejection may be about our BTF.ext records rather than the code, try once
    // without them; keep the first log (it has source lines) for the user otherwise.
    if attr.btf_fd.is_some() && !is_eperm(&first.0) {
        let mut plain = attr.clone();
        plain.btf_fd = None;
        plain.func_info = &[];
        plain.line_info = &[];
        if let Ok(fd) = bpf::prog_load_with_log(&plain) {
            let why = first
                .1
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .to_string();
            warnings.push(format!(
                "program '{}' loaded without BTF func/line info (the kernel refused it: {why})",
                prog.name
            ));
            return Ok(Program {
                name: prog.name.clone(),
                section: prog.section.clone(),
                attach: prog.attach.clone(),
                fd,
            });
        }
    }
    let (source, log) = first;
    if let Some(why) = refusal_reason(prog, &source, &log) {
        return Err(LoadError::Refused {
            program: prog.name.clone(),
            prog_type: bpf::prog_type_name(prog.prog_type),
            section: prog.section.clone(),
            why,
            source,
        });
    }
    if is_eperm(&source) && log.trim().is_empty() {
        return Err(LoadError::Permission {
            what: format!("loading program '{}'", prog.name),
        });
    }
    if log.trim().is_empty() {
        let hint = match source.raw_os_error() {
            Some(libc::EINVAL) => {
                "; this kernel may not support this program type or a helper it calls"
            }
            _ => "",
        };
        return Err(LoadError::ProgLoad {
            program: prog.name.clone(),
            source,
            hint: hint.to_string(),
        });
    }
    Err(LoadError::Verifier {
        program: prog.name.clone(),
        errno: source,
        log_tail: log_excerpt(&log, 16, 24),
        log,
    })
}

/// Program types the kernel loads only with an `attach_btf_id` (the BTF id of the kernel
/// function or hook they attach to), which this loader does not resolve.
fn needs_attach_btf_id(prog_type: u32) -> bool {
    matches!(
        prog_type,
        bpf::BPF_PROG_TYPE_TRACING
            | bpf::BPF_PROG_TYPE_LSM
            | bpf::BPF_PROG_TYPE_EXT
            | bpf::BPF_PROG_TYPE_STRUCT_OPS
    )
}

/// What the kernel refused when it is not the verifier rejecting the code and not a missing
/// privilege: a program type we cannot give what it needs, or EPERM/EACCES although this
/// process holds the capabilities. `None`: the caller reports the errno or the verifier log.
fn refusal_reason(prog: &ProgramSpec, errno: &io::Error, log: &str) -> Option<String> {
    if needs_attach_btf_id(prog.prog_type) && prog.attach_btf_id == 0 {
        return Some(
            "this program type needs attach_btf_id (the BTF id of the kernel function or hook \
             it attaches to), which rawsnoop resolves only for SEC(\"tp_btf/<name>\"); rawsnoop loads and attaches \
             tracepoint (tp/, tp_btf/, raw_tp/) programs: load only the programs you use \
             (LoadOptions::programs) or drop this one from the object"
                .to_string(),
        );
    }
    // The verifier rejects code with EACCES and a log: that is the verifier's report, not this.
    let refused = errno.raw_os_error() == Some(libc::EPERM)
        || (is_eperm(errno) && !log.lines().any(|l| !l.trim().is_empty()));
    if refused && sys::kernel::has_bpf_privilege() {
        let last = log.lines().rev().find(|l| !l.trim().is_empty());
        return Some(format!(
            "the kernel said {} although this process has the capabilities to load BPF \
             (CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN), so this is not about privilege: \
             the kernel does not allow this program type here (kernel lockdown, a security \
             module, or a program type this kernel restricts){}{}",
            if errno.raw_os_error() == Some(libc::EACCES) {
                "EACCES"
            } else {
                "EPERM"
            },
            if last.is_some() {
                "; its log ends: "
            } else {
                ""
            },
            last.map(crate::escape::escape_str).unwrap_or_default()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::spec::AttachPoint;

    fn prog(prog_type: u32) -> ProgramSpec {
        ProgramSpec {
            name: "p".into(),
            section: "s".into(),
            prog_type,
            expected_attach_type: 0,
            attach: AttachPoint::None,
            insns: Vec::new(),
            relocs: Vec::new(),
            func_info: Vec::new(),
            line_info: Vec::new(),
            func_info_rec_size: 0,
            line_info_rec_size: 0,
            core_relos: Vec::new(),
            attach_btf_id: 0,
            ksyms: Vec::new(),
        }
    }

    #[test]
    fn refusals_say_what_the_kernel_refused() {
        let eperm = io::Error::from_raw_os_error(libc::EPERM);
        let eacces = io::Error::from_raw_os_error(libc::EACCES);
        // A tracing program without attach_btf_id: whatever the errno, that is the reason.
        let why = refusal_reason(&prog(bpf::BPF_PROG_TYPE_TRACING), &eperm, "").unwrap();
        assert!(why.contains("attach_btf_id"), "{why}");
        // The verifier's EACCES with a log is the verifier's report, not a refusal.
        let log = "0: (b7) r0 = 0\nR1 invalid mem access 'scalar'\n";
        assert!(refusal_reason(&prog(bpf::BPF_PROG_TYPE_TRACEPOINT), &eacces, log).is_none());
        // EPERM with the capabilities is not "missing privilege" (without them it is).
        let r = refusal_reason(&prog(bpf::BPF_PROG_TYPE_TRACEPOINT), &eperm, "");
        if sys::kernel::has_bpf_privilege() {
            let why = r.expect("explained");
            assert!(why.contains("not about privilege"), "{why}");
        } else {
            assert!(r.is_none());
        }
    }
}
