//! CO-RE: relocating an object's field offsets, sizes, type ids and enum values against the
//! target kernel's BTF, as libbpf does (relo_core.c and cilium btf/core.go were read for the
//! facts; this is our own implementation).
//!
//! - [`target`]: the kernel's BTF (or `--btf PATH`, or none), read lazily (`btf::lazy`): types are
//!   decoded when a relocation reaches them; the engine reads them through `btf::BtfView`.
//! - [`spec`]: access strings -> local specs, and matching them by name in candidate types.
//! - [`compat`]: type compatibility rules.
//! - [`calc`]: values of each kind, and patching ALU / LDX / ST / STX / ld_imm64 instructions.
//!
//! Pure logic: nothing here calls bpf(2). `load.rs` calls [`relocate_program`] once per program
//! before PROG_LOAD.

pub mod calc;
pub mod compat;
pub mod hook;
pub mod kernel_btf;
pub mod kind;
pub mod spec;
pub mod target;
pub mod tracefs;

#[cfg(test)]
mod tests;

use crate::loader::btf::{Btf, CoreRelo, LineInfo};
use crate::loader::spec::{Insn, ProgramSpec};

pub use calc::{Resolution, Value, POISON_HELPER};
pub use kind::CoreKind;
pub use spec::{describe, Spec};
pub use target::{BtfSource, Cand, TargetBtf};

/// Why CO-RE relocation failed. Each names the program and the relocation in words.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(
        "cannot read the kernel BTF {path}: {err}; pass `--btf PATH` with this kernel's BTF \
         (e.g. from BTFHub), or use a kernel built with CONFIG_DEBUG_INFO_BTF"
    )]
    TargetRead { path: String, err: std::io::Error },
    #[error("the BTF in {path} is unusable ({err}); pass `--btf PATH` with a valid BTF file")]
    TargetParse {
        path: String,
        err: crate::loader::btf::BtfError,
    },
    #[error("{0}")]
    Target(String),
    #[error("program '{program}': CO-RE relocation {relo}: {reason}")]
    Relo {
        program: String,
        relo: String,
        reason: String,
    },
    #[error(
        "program '{program}' (SEC(\"tp_btf/{name}\")): the kernel BTF has no `btf_trace_{name}` \
         typedef, so this kernel has no raw tracepoint `{name}` (see \
         /sys/kernel/tracing/available_events)"
    )]
    NoAttachTarget { program: String, name: String },
    #[error(
        "program '{program}': extern `{name}` (__ksym) {reason}; declare it __weak to load \
         without it (its address is then 0)"
    )]
    Ksym {
        program: String,
        name: String,
        reason: String,
    },
    #[error(
        "program '{program}' has CO-RE relocations but no target BTF was given (`--btf none`) and \
         {relo} is not a tracepoint context type tracefs describes; pass `--btf PATH`"
    )]
    NoTarget { program: String, relo: String },
}

/// What happened to one relocation (for `inspect --core` and for error messages).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Position of the record among the program's CO-RE records.
    pub index: usize,
    /// Instruction index in the program.
    pub insn: usize,
    pub kind: CoreKind,
    /// Access string as in the object.
    pub access: String,
    /// The local side in words (`struct task_struct.real_parent`).
    pub local: String,
    /// Candidates considered (`[id] name` plus module).
    pub candidates: Vec<String>,
    /// The target side chosen, in words.
    pub chosen: Option<String>,
    pub orig: u64,
    pub new: u64,
    pub poisoned: bool,
    /// Why it was poisoned, in words (what the kernel has instead).
    pub why: Option<String>,
    /// C source line from .BTF.ext line_info, when known.
    pub source: Option<String>,
    pub before: Vec<Insn>,
    pub after: Vec<Insn>,
}

impl Outcome {
    /// One line naming the relocation: `#2 byte_off struct x.y (0:1) at insn 7 (file.c:12: code)`.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "#{} {} of {} (access {}) at insn {}",
            self.index, self.kind, self.local, self.access, self.insn
        );
        if let Some(src) = &self.source {
            s.push_str(&format!(", source {src}"));
        }
        s
    }
}

/// The C source line for instruction `insn` from (instruction-unit) line info.
pub fn source_line(btf: &Btf, lines: &[LineInfo], insn: usize) -> Option<String> {
    let l = lines
        .iter()
        .filter(|l| l.insn_off as usize <= insn)
        .max_by_key(|l| l.insn_off)?;
    let file = btf.string_at(l.file_name_off).ok()?;
    let text = btf.string_at(l.line_off).ok()?.trim();
    let file = file.rsplit('/').next().unwrap_or(file);
    Some(format!("{file}:{}: `{text}`", l.line_col >> 10))
}

/// Relocates every CO-RE record of one program in place. `relos` have `insn_off` in instruction
/// units of `insns`. `target` is `None` with `--btf none`.
pub fn relocate_program(
    program: &str,
    insns: &mut [Insn],
    relos: &[CoreRelo],
    local: &Btf,
    lines: &[LineInfo],
    target: Option<&TargetBtf>,
) -> Result<Vec<Outcome>, CoreError> {
    // Stops at the first failed record (collecting into a Result is lazy).
    relos
        .iter()
        .enumerate()
        .map(|(i, r)| relocate_one(program, insns, i, r, local, lines, target))
        .collect()
}

/// Like [`relocate_program`] but goes on after a failed record: one result per record (for
/// `inspect --core`, which explains every relocation, the failing ones included).
pub fn relocate_each(
    program: &str,
    insns: &mut [Insn],
    relos: &[CoreRelo],
    local: &Btf,
    lines: &[LineInfo],
    target: Option<&TargetBtf>,
) -> Vec<Result<Outcome, CoreError>> {
    relos
        .iter()
        .enumerate()
        .map(|(i, r)| relocate_one(program, insns, i, r, local, lines, target))
        .collect()
}

/// [`relocate_each`] on a copy of one program's instructions: the patched copy and one result
/// per CO-RE record, the program itself untouched (what `inspect --core`, the comparison with
/// libbpf and the tests look at).
pub fn relocate_copy(
    p: &ProgramSpec,
    local: &Btf,
    target: Option<&TargetBtf>,
) -> (Vec<Insn>, Vec<Result<Outcome, CoreError>>) {
    let mut code = p.insns.clone();
    let results = relocate_each(
        &p.name,
        &mut code,
        &p.core_relos,
        local,
        &p.line_info,
        target,
    );
    (code, results)
}

fn relocate_one(
    program: &str,
    insns: &mut [Insn],
    index: usize,
    r: &CoreRelo,
    local: &Btf,
    lines: &[LineInfo],
    target: Option<&TargetBtf>,
) -> Result<Outcome, CoreError> {
    let insn = r.insn_off as usize;
    let access = local.string_at(r.access_str_off).unwrap_or("?").to_string();
    let mut o = Outcome {
        index,
        insn,
        kind: CoreKind::FieldByteOffset,
        access: access.clone(),
        local: format!("[{}]", r.type_id),
        candidates: Vec::new(),
        chosen: None,
        orig: 0,
        new: 0,
        poisoned: false,
        why: None,
        source: source_line(local, lines, insn),
        before: insns
            .get(insn..(insn + 2).min(insns.len()))
            .unwrap_or(&[])
            .to_vec(),
        after: Vec::new(),
    };
    let fail = |o: &Outcome, reason: String| CoreError::Relo {
        program: program.to_string(),
        relo: o.describe(),
        reason,
    };
    let Some(kind) = CoreKind::from_raw(r.kind) else {
        return Err(fail(
            &o,
            format!(
                "unknown relocation kind {} (this rawsnoop knows 0..=12)",
                r.kind
            ),
        ));
    };
    o.kind = kind;
    if insn >= insns.len() {
        return Err(fail(
            &o,
            format!(
                "instruction {insn} is past the program's {} instructions",
                insns.len()
            ),
        ));
    }
    let lspec = spec::parse_local(local, r.type_id, &access, kind).map_err(|e| fail(&o, e))?;
    o.local = describe(local, &lspec);
    let mut res = Resolution {
        validate: true,
        ..Resolution::default()
    };
    let orig = calc::value(kind, local, Some(&lspec), &mut res.validate)
        .map_err(|e| fail(&o, e))?
        .ok_or_else(|| fail(&o, "the local side does not resolve".into()))?;
    res.orig = orig;
    if kind == CoreKind::TypeIdLocal {
        res.new = orig;
    } else {
        let Some(target) = target else {
            return Err(CoreError::NoTarget {
                program: program.to_string(),
                relo: o.describe(),
            });
        };
        let Some(ess) = target::local_essential(local, r.type_id) else {
            return Err(fail(
                &o,
                "the local type is anonymous: CO-RE needs a named type".into(),
            ));
        };
        let lkind = local
            .kind_of(r.type_id)
            .map_err(|e| fail(&o, e.to_string()))?;
        let cands = target.candidates(ess, lkind);
        let mut chosen: Option<(Spec, Option<Value>, Cand)> = None;
        let mut validate_new = true;
        for c in &cands {
            let mut name = format!("[{}] {}", c.id, c.btf().name_of(c.id).unwrap_or("?"));
            if let Some(m) = &c.part.module {
                name.push_str(&format!(" (module {m})"));
            }
            o.candidates.push(name);
            // Decoding checks the candidate's names and references (the target BTF is read
            // lazily, so a corrupt `--btf FILE` shows here, by type id, not as a silent miss).
            if let Err(e) = c.btf().type_at(c.id) {
                return Err(fail(
                    &o,
                    format!(
                        "candidate [{}] in the target BTF ({}) is malformed: {e}",
                        c.id, target.origin
                    ),
                ));
            }
            let Some(tspec) = spec::match_target(&lspec, local, kind, c.btf(), c.id)
                .map_err(|e| fail(&o, format!("candidate [{}]: {e}", c.id)))?
            else {
                continue;
            };
            let v = calc::value(kind, c.btf(), Some(&tspec), &mut validate_new)
                .map_err(|e| fail(&o, format!("candidate [{}]: {e}", c.id)))?;
            match &chosen {
                None => chosen = Some((tspec, v, c.clone())),
                Some((first, fv, fc)) => {
                    if kind.is_field() && first.bit_offset != tspec.bit_offset {
                        return Err(fail(&o, format!(
                            "ambiguous: kernel types {} and {} place the field at different offsets \
                             (bit {} vs {}); the object cannot be relocated unambiguously",
                            describe(fc.btf(), first), describe(c.btf(), &tspec), first.bit_offset, tspec.bit_offset
                        )));
                    }
                    if fv.map(|v| v.val) != v.map(|v| v.val) {
                        return Err(fail(
                            &o,
                            format!(
                                "ambiguous: kernel types {} and {} give different values",
                                describe(fc.btf(), first),
                                describe(c.btf(), &tspec)
                            ),
                        ));
                    }
                }
            }
        }
        match chosen {
            Some((tspec, v, c)) => {
                o.chosen = Some(describe(c.btf(), &tspec));
                match v {
                    Some(v) => {
                        res.new = v;
                        if kind.is_field() && !calc::memsz_adjust_ok(local, &res.orig, c.btf(), &v)
                        {
                            res.fail_memsz_adjust = true;
                        }
                    }
                    None => res.poison = true,
                }
            }
            None => {
                let mut ignored = true;
                match calc::value(kind, local, None, &mut ignored).map_err(|e| fail(&o, e))? {
                    Some(v) => res.new = v,
                    None => {
                        res.poison = true;
                        o.why = Some(explain_miss(local, &lspec, kind, &cands, &target.origin));
                    }
                }
            }
        }
    }
    o.orig = res.orig.val;
    o.new = res.new.val;
    let poisoned =
        calc::patch(insns, insn, &res).map_err(|e| fail(&o, format!("instruction {insn}: {e}")))?;
    if poisoned && o.why.is_none() {
        o.why = Some(if res.fail_memsz_adjust {
            "the kernel's field has a different size and is signed or not an integer, so the load cannot be resized".into()
        } else {
            "the value cannot be computed on this kernel".into()
        });
    }
    o.poisoned = poisoned;
    o.after = insns
        .get(insn..(insn + 2).min(insns.len()))
        .unwrap_or(&[])
        .to_vec();
    Ok(o)
}

/// Why no candidate matched, in words: no type of that name, or where the path breaks and what the
/// kernel's type has there instead.
fn explain_miss(local: &Btf, lspec: &Spec, kind: CoreKind, cands: &[Cand], origin: &str) -> String {
    let root = local.name_of(lspec.root_type_id).unwrap_or("?");
    let Some(c) = cands.first() else {
        return format!("the kernel BTF ({origin}) has no type named `{root}`");
    };
    if !kind.is_field() && !kind.is_enumval() {
        return format!("the kernel's `{root}` is not compatible with the object's");
    }
    if kind.is_enumval() {
        let have = spec::skip_mods(c.btf(), c.id)
            .and_then(|(_, t)| {
                spec::enum_values(&t).map(|v| {
                    v.iter()
                        .take(40)
                        .map(|e| c.btf().string_at(e.name_off).unwrap_or("?"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
            })
            .unwrap_or_default();
        let want = lspec
            .spec
            .first()
            .and_then(|a| a.name.clone())
            .unwrap_or_default();
        return format!("the kernel's enum `{root}` has no `{want}`; it has: {have}");
    }
    // Find the longest prefix of the path that still matches, then list the members there.
    for k in (1..lspec.spec.len()).rev() {
        let mut prefix = lspec.clone();
        prefix.spec.truncate(k);
        let Ok(Some(t)) = spec::match_target(&prefix, local, kind, c.btf(), c.id) else {
            continue;
        };
        let want = lspec
            .spec
            .get(k)
            .and_then(|a| a.name.clone())
            .unwrap_or_else(|| "[index]".into());
        let Some(last) = t.spec.last() else { break };
        let next = if k == 1 {
            Some(c.id)
        } else if last.name.is_some() {
            spec::member_of(c.btf(), last.type_id, last.idx).map(|m| m.type_id)
        } else {
            Some(last.type_id)
        };
        let at = next.and_then(|id| spec::skip_mods(c.btf(), id));
        let (tname, have) = match at {
            Some((id, tt)) => (
                c.btf().name_of(id).unwrap_or("").to_string(),
                spec::members(&tt)
                    .map(|ms| {
                        let names: Vec<&str> = ms
                            .iter()
                            .take(40)
                            .map(|m| c.btf().string_at(m.name_off).unwrap_or("?"))
                            .map(|n| if n.is_empty() { "(anon)" } else { n })
                            .collect();
                        let more = ms.len().saturating_sub(40);
                        format!(
                            "{}{}",
                            names.join(", "),
                            if more > 0 {
                                format!(", ... ({more} more)")
                            } else {
                                String::new()
                            }
                        )
                    })
                    .unwrap_or_else(|| format!("a {}", tt.kind().name())),
            ),
            None => (String::new(), "nothing".into()),
        };
        return format!(
            "the kernel's `{}` has no field `{want}` of a compatible type; it has: {have}",
            if tname.is_empty() { root } else { &tname }
        );
    }
    format!("the kernel's `{root}` does not match the object's access path")
}
