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
}

impl Context {
    pub fn new(
        programs: &[&ProgramSpec],
        local: Option<&crate::loader::btf::Btf>,
        source: &BtfSource,
    ) -> Result<Context, CoreError> {
        let target = match (programs.iter().any(|p| !p.core_relos.is_empty()), local) {
            (true, Some(local)) => TargetBtf::load_for(
                source,
                local,
                programs
                    .iter()
                    .flat_map(|p| p.core_relos.iter().map(|r| r.type_id)),
            )?,
            _ => None,
        };
        let kernel = if programs
            .iter()
            .any(|p| matches!(p.attach, AttachPoint::TpBtf { .. }))
        {
            TargetBtf::load(&BtfSource::Kernel)?
        } else {
            None
        };
        Ok(Context { target, kernel })
    }

    /// `prog` with its CO-RE relocations applied and its attach BTF id set (a copy only when
    /// something changes), plus what each relocation did.
    pub fn apply<'p>(
        &self,
        spec: &ObjectSpec,
        prog: &'p ProgramSpec,
    ) -> Result<(Cow<'p, ProgramSpec>, Vec<Outcome>), CoreError> {
        apply(spec, prog, self.target.as_deref(), self.kernel.as_deref())
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
    if prog.core_relos.is_empty() && !needs_id {
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
    Ok((Cow::Owned(p), outcomes))
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
