//! `rawsnoop inspect --core`: every CO-RE relocation of an object, resolved against the target
//! BTF the loader would use, as a learner would want to see it: the local type and access path,
//! the kernel candidates considered, the one chosen, the value before and after, and the
//! instruction before and after patching. Nothing is loaded.

use std::fmt::Write;

use crate::escape::escape_str;
use crate::inspect::format_insn;
use crate::loader::core::{relocate_copy, BtfSource, Outcome, TargetBtf};
use crate::loader::ObjectSpec;

fn insns(v: &[crate::loader::Insn]) -> String {
    match v {
        [] => "(none)".into(),
        [a, rest @ ..] => format_insn(a, rest.first()),
    }
}

fn write_outcome(out: &mut String, o: &Outcome) {
    let _ = writeln!(
        out,
        "    #{} {} {} (access {}) at insn {}",
        o.index,
        o.kind,
        escape_str(&o.local),
        escape_str(&o.access),
        o.insn
    );
    if let Some(src) = &o.source {
        let _ = writeln!(out, "       source:     {}", escape_str(src));
    }
    if !o.kind.is_type() || !o.candidates.is_empty() {
        let c = if o.candidates.is_empty() {
            "(none)".to_string()
        } else {
            escape_str(&o.candidates.join(", "))
        };
        let _ = writeln!(out, "       candidates: {c}");
    }
    match &o.chosen {
        Some(c) => {
            let _ = writeln!(out, "       chosen:     {}", escape_str(c));
        }
        None if o.kind == crate::loader::core::CoreKind::TypeIdLocal => {}
        None => {
            let _ = writeln!(out, "       chosen:     (no match)");
        }
    }
    if o.poisoned {
        let _ = writeln!(
            out,
            "       value:      {} -> POISONED: {}",
            o.orig,
            escape_str(o.why.as_deref().unwrap_or("unresolved"))
        );
    } else {
        let _ = writeln!(out, "       value:      {} -> {}", o.orig, o.new);
    }
    let _ = writeln!(out, "       before:     {}", insns(&o.before));
    let _ = writeln!(out, "       after:      {}", insns(&o.after));
}

/// The CO-RE section of `inspect` for one object.
pub fn describe_core(name: &str, spec: &ObjectSpec, source: &BtfSource) -> String {
    let mut out = String::new();
    let total: usize = spec.programs.iter().map(|p| p.core_relos.len()).sum();
    let _ = writeln!(out, "CO-RE relocations of {}: {total}", escape_str(name));
    if total == 0 {
        return out;
    }
    let ids = spec
        .programs
        .iter()
        .flat_map(|p| p.core_relos.iter().map(|r| r.type_id));
    // `--btf none`: each program's own tracefs-built target (printed with the program).
    let per_program = source.tracefs_only() && spec.btf.is_some();
    let loaded = match spec.btf.as_ref() {
        _ if per_program => Ok(None),
        Some(local) => TargetBtf::load_for(source, local, ids),
        None => TargetBtf::load(source),
    };
    let target = match loaded {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(out, "  target BTF unusable: {}", escape_str(&e.to_string()));
            None
        }
    };
    let origin = target
        .as_ref()
        .map_or("(none: --btf none)".to_string(), |t| t.origin.clone());
    if !per_program {
        let _ = writeln!(out, "  target BTF: {}", escape_str(&origin));
    }
    let Some(local) = spec.btf.as_ref() else {
        let _ = writeln!(
            out,
            "  the object has no usable .BTF: nothing can be relocated"
        );
        return out;
    };
    for p in spec.programs.iter().filter(|p| !p.core_relos.is_empty()) {
        let _ = writeln!(
            out,
            "  program {} ({} relocations):",
            escape_str(&p.name),
            p.core_relos.len()
        );
        let mut own = None;
        if per_program {
            match crate::loader::core::tracefs::target_for_program(local, p) {
                Ok(t) => {
                    let _ = writeln!(out, "    target BTF: {}", escape_str(&t.origin));
                    own = Some(t);
                }
                Err(e) => {
                    let _ = writeln!(
                        out,
                        "    target BTF unusable: {}",
                        escape_str(&e.to_string())
                    );
                }
            }
        }
        let (_, results) = relocate_copy(p, local, own.as_deref().or(target.as_deref()));
        for (i, r) in results.iter().enumerate() {
            match r {
                Ok(o) => write_outcome(&mut out, o),
                Err(e) => {
                    let _ = writeln!(out, "    #{i} ERROR: {}", escape_str(&e.to_string()));
                }
            }
        }
    }
    out
}
