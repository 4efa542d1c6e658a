//! The load path's view of CO-RE: one call per program before PROG_LOAD ([`apply`]) and one
//! helper to turn a verifier rejection of a poisoned instruction into words ([`poisoned_reason`]).

use std::borrow::Cow;
use std::sync::Arc;

use crate::loader::btf::BtfKind;
use crate::loader::spec::{AttachPoint, ObjectSpec, ProgramSpec};

use super::{calc::POISON_HELPER, relocate_program, BtfSource, CoreError, Outcome, TargetBtf};

/// What loading needs from kernel BTF, read once per load and only when needed: the target
/// for CO-RE (some wanted program has CO-RE records) and the kernel's own BTF for attach ids
/// (some wanted program is `tp_btf`; always the running kernel's, whatever `--btf` says).
#[derive(Debug, Default)]
pub struct Context {
    target: Option<Arc<TargetBtf>>,
    kernel: Option<Arc<TargetBtf>>,
    /// `--btf none`: each program's tracefs-built target, by program name (a class type
    /// resolves from the event that program is attached to: `tracefs::target_for_program`).
    per_program: std::collections::HashMap<String, Arc<TargetBtf>>,
}

impl Context {
    pub fn new(
        programs: &[&ProgramSpec],
        local: Option<&crate::loader::btf::Btf>,
        source: &BtfSource,
    ) -> Result<Context, CoreError> {
        let mut per_program = std::collections::HashMap::new();
        let target = match (programs.iter().any(|p| !p.core_relos.is_empty()), local) {
            (true, Some(local)) if source.tracefs_only() => {
                for p in programs.iter().filter(|p| !p.core_relos.is_empty()) {
                    let t = super::tracefs::target_for_program(local, p)?;
                    per_program.insert(p.name.clone(), t);
                }
                None
            }
            (true, Some(local)) => TargetBtf::load_for(
                source,
                local,
                programs
                    .iter()
                    .flat_map(|p| p.core_relos.iter().map(|r| r.type_id)),
            )?,
            _ => None,
        };
        let kernel = if programs.iter().any(|p| {
            matches!(p.attach, AttachPoint::TpBtf { .. }) || p.ksyms.iter().any(|k| k.typed)
        }) {
            TargetBtf::load(&BtfSource::Kernel)?
        } else {
            None
        };
        Ok(Context {
            target,
            kernel,
            per_program,
        })
    }

    /// `prog` with its CO-RE relocations applied and its attach BTF id set (a copy only when
    /// something changes), plus what each relocation did.
    pub fn apply<'p>(
        &self,
        spec: &ObjectSpec,
        prog: &'p ProgramSpec,
    ) -> Result<(Cow<'p, ProgramSpec>, Vec<Outcome>), CoreError> {
        let target = self.per_program.get(&prog.name).or(self.target.as_ref());
        apply(spec, prog, target.map(|t| &**t), self.kernel.as_deref())
    }
}

/// See [`Context::apply`].
pub fn apply<'p>(
    spec: &ObjectSpec,
    prog: &'p ProgramSpec,
    target: Option<&TargetBtf>,
    kernel: Option<&TargetBtf>,
) -> Result<(Cow<'p, ProgramSpec>, Vec<Outcome>), CoreError> {
    let needs_id = matches!(prog.attach, AttachPoint::TpBtf { .. }) && prog.attach_btf_id == 0;
    if prog.core_relos.is_empty() && !needs_id && prog.ksyms.is_empty() {
        return Ok((Cow::Borrowed(prog), Vec::new()));
    }
    let mut p = prog.clone();
    let mut outcomes = Vec::new();
    if !prog.core_relos.is_empty() {
        let local = spec.btf.as_ref().ok_or_else(|| CoreError::Relo {
            program: prog.name.clone(),
            relo: "(all)".into(),
            reason: "the object has CO-RE records but no usable .BTF".into(),
        })?;
        outcomes = relocate_program(
            &prog.name,
            &mut p.insns,
            &prog.core_relos,
            local,
            &prog.line_info,
            target,
        )?;
    }
    if let (true, AttachPoint::TpBtf { name }) = (needs_id, &prog.attach) {
        p.attach_btf_id = btf_trace_id(kernel, name).ok_or_else(|| CoreError::NoAttachTarget {
            program: prog.name.clone(),
            name: name.clone(),
        })?;
    }
    for k in &prog.ksyms {
        patch_ksym(&prog.name, &mut p.insns, k, kernel)?;
    }
    Ok((Cow::Owned(p), outcomes))
}

/// `BPF_PSEUDO_BTF_ID` (ld_imm64 src_reg): the immediate is a kernel BTF VAR id.
const BPF_PSEUDO_BTF_ID: u8 = 3;

/// Patches the `ld_imm64` of a `.ksyms` extern: typed -> the kernel's VAR id, untyped -> the
/// kallsyms address; weak and missing -> 0, as libbpf does.
fn patch_ksym(
    program: &str,
    insns: &mut [crate::loader::spec::Insn],
    k: &crate::loader::spec::KsymReloc,
    kernel: Option<&TargetBtf>,
) -> Result<(), CoreError> {
    let err = |reason: String| CoreError::Ksym {
        program: program.to_string(),
        name: k.name.clone(),
        reason,
    };
    if k.insn + 1 >= insns.len() || !insns[k.insn].is_ld_imm64() {
        return Err(err("is not loaded by a 16-byte ld_imm64".into()));
    }
    let (src, lo, hi) = if k.typed {
        let id = kernel.and_then(|t| t.find(&k.name, BtfKind::Var));
        // The kernel resolves typed ksyms through kallsyms: without the symbol there (kernels
        // built without CONFIG_KALLSYMS_ALL) PROG_LOAD would fail with a bare ENOENT.
        let in_kallsyms = id.is_some() && crate::loader::externs::kallsyms_addr(&k.name).is_some();
        match id {
            Some(id) if in_kallsyms => (BPF_PSEUDO_BTF_ID, id as i32, 0),
            _ if k.weak => (0, 0, 0),
            Some(_) => {
                return Err(err(
                    "is in the kernel's BTF but not in /proc/kallsyms (a kernel built without \
                     CONFIG_KALLSYMS_ALL), so the kernel cannot resolve it"
                        .into(),
                ))
            }
            None => return Err(err(
                "is not a variable in the kernel's BTF (typed __ksym needs CONFIG_DEBUG_INFO_BTF \
                     and a per-CPU or global kernel variable of that name)"
                    .into(),
            )),
        }
    } else {
        match crate::loader::externs::kallsyms_addr(&k.name) {
            Some(a) => (0, a as u32 as i32, (a >> 32) as u32 as i32),
            None if k.weak => (0, 0, 0),
            None => {
                return Err(err(
                    "is not in /proc/kallsyms (or its address is hidden)".into()
                ))
            }
        }
    };
    insns[k.insn].set_src(src);
    insns[k.insn].imm = lo;
    insns[k.insn + 1].imm = hi;
    Ok(())
}

/// libbpf's rule for `tp_btf/<name>`: the TYPEDEF `btf_trace_<name>` in vmlinux.
pub fn btf_trace_id(kernel: Option<&TargetBtf>, name: &str) -> Option<u32> {
    kernel?.find(&format!("btf_trace_{name}"), BtfKind::Typedef)
}

/// If the verifier rejected a poisoned instruction, the relocation behind it in words.
pub fn poisoned_reason(outcomes: &[Outcome], log: &str) -> Option<String> {
    let poisoned: Vec<&Outcome> = outcomes.iter().filter(|o| o.poisoned).collect();
    if poisoned.is_empty() {
        return None;
    }
    let marker = format!("unknown#{POISON_HELPER}");
    // The instruction the verifier stopped at: `N: (85) call unknown#195896080`.
    let at = log.lines().rev().find_map(|l| {
        let (n, rest) = l.split_once(':')?;
        rest.contains(&marker)
            .then(|| n.trim().parse::<usize>().ok())?
    });
    if at.is_none() && !log.contains(&marker) && !log.contains("195896080") {
        return None;
    }
    let o = at
        .and_then(|n| poisoned.iter().find(|o| o.insn == n))
        .unwrap_or(&poisoned[0]);
    Some(format!(
        "CO-RE relocation {} could not be resolved against the kernel: {}",
        o.describe(),
        o.why.as_deref().unwrap_or("no matching kernel type")
    ))
}
