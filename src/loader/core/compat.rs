//! Type compatibility between the object's BTF and the kernel's, as CO-RE decides it (libbpf
//! relo_core.c `bpf_core_fields_are_compat`, `__bpf_core_types_are_compat`,
//! `__bpf_core_types_match`, reimplemented). All walks are depth-bounded.

use crate::loader::btf::{essential_name, BtfKind, BtfType, BtfView, MAX_RESOLVE_DEPTH};

use super::spec::{enum_values, members, skip_mods};

fn is_composite(k: BtfKind) -> bool {
    matches!(k, BtfKind::Struct | BtfKind::Union)
}

fn is_any_enum(k: BtfKind) -> bool {
    matches!(k, BtfKind::Enum | BtfKind::Enum64)
}

fn kinds_equal(a: BtfKind, b: BtfKind) -> bool {
    a == b || is_any_enum(a) && is_any_enum(b)
}

fn int_offset(t: &BtfType) -> u8 {
    match t {
        BtfType::Int { offset, .. } => *offset,
        _ => 0,
    }
}

/// Essential names equal (an anonymous side matches anything, as libbpf's `bpf_core_names_match`
/// is only asked about named types).
fn names_match(lb: &dyn BtfView, loff: u32, tb: &dyn BtfView, toff: u32) -> bool {
    let l = lb.string_at(loff).unwrap_or("");
    let t = tb.string_at(toff).unwrap_or("");
    if l.is_empty() || t.is_empty() {
        return true;
    }
    essential_name(l) == essential_name(t)
}

/// Whether a local field of type `lid` can be relocated to a target field of type `tid`.
pub fn fields_compat(lb: &dyn BtfView, lid: u32, tb: &dyn BtfView, tid: u32) -> bool {
    fields_compat_depth(lb, lid, tb, tid, 0)
}

fn fields_compat_depth(lb: &dyn BtfView, lid: u32, tb: &dyn BtfView, tid: u32, depth: u32) -> bool {
    if depth > MAX_RESOLVE_DEPTH {
        return false;
    }
    let (Some((_, lt)), Some((_, tt))) = (skip_mods(lb, lid), skip_mods(tb, tid)) else {
        // void on either side: only void against void.
        return lb.resolve(lid).ok() == Some(0) && tb.resolve(tid).ok() == Some(0);
    };
    let (lk, tk) = (lt.kind(), tt.kind());
    if is_composite(lk) && is_composite(tk) {
        return true;
    }
    if !kinds_equal(lk, tk) {
        return false;
    }
    match (lt.as_ref(), tt.as_ref()) {
        (BtfType::Ptr { .. }, _) | (BtfType::Float { .. }, _) => true,
        (BtfType::Fwd { .. } | BtfType::Enum { .. } | BtfType::Enum64 { .. }, _) => {
            names_match(lb, lt.name_off(), tb, tt.name_off())
        }
        (BtfType::Int { .. }, _) => int_offset(&lt) == 0 && int_offset(&tt) == 0,
        (BtfType::Array { elem_type: le, .. }, BtfType::Array { elem_type: te, .. }) => {
            fields_compat_depth(lb, *le, tb, *te, depth + 1)
        }
        _ => false,
    }
}

/// Whether local type `lid` and target type `tid` are compatible for type-based relocations
/// (names were already matched by candidate lookup; this checks kinds recursively).
pub fn types_compat(lb: &dyn BtfView, lid: u32, tb: &dyn BtfView, tid: u32) -> bool {
    types_compat_depth(lb, lid, tb, tid, 0)
}

fn types_compat_depth(lb: &dyn BtfView, lid: u32, tb: &dyn BtfView, tid: u32, depth: u32) -> bool {
    if depth > MAX_RESOLVE_DEPTH {
        return false;
    }
    let (lr, tr) = (lb.resolve(lid).ok(), tb.resolve(tid).ok());
    let (Some(lr), Some(tr)) = (lr, tr) else {
        return false;
    };
    if lr == 0 || tr == 0 {
        return lr == 0 && tr == 0;
    }
    let (Ok(lt), Ok(tt)) = (lb.type_at(lr), tb.type_at(tr)) else {
        return false;
    };
    if !kinds_equal(lt.kind(), tt.kind()) {
        return false;
    }
    match (lt.as_ref(), tt.as_ref()) {
        (
            BtfType::Struct { .. }
            | BtfType::Union { .. }
            | BtfType::Fwd { .. }
            | BtfType::Enum { .. }
            | BtfType::Enum64 { .. }
            | BtfType::Float { .. },
            _,
        ) => true,
        (BtfType::Int { .. }, _) => int_offset(&lt) == 0 && int_offset(&tt) == 0,
        (BtfType::Ptr { type_id: l }, BtfType::Ptr { type_id: t }) => {
            types_compat_depth(lb, *l, tb, *t, depth + 1)
        }
        (BtfType::Array { elem_type: l, .. }, BtfType::Array { elem_type: t, .. }) => {
            types_compat_depth(lb, *l, tb, *t, depth + 1)
        }
        (
            BtfType::FuncProto {
                ret: lr,
                params: lp,
            },
            BtfType::FuncProto {
                ret: tr,
                params: tp,
            },
        ) => {
            lp.len() == tp.len()
                && lp
                    .iter()
                    .zip(tp)
                    .all(|(l, t)| types_compat_depth(lb, l.type_id, tb, t.type_id, depth + 1))
                && types_compat_depth(lb, *lr, tb, *tr, depth + 1)
        }
        _ => false,
    }
}

/// `bpf_core_type_matches()`: stricter than compat. Composites: every local member exists by name in
/// the target with a matching type; enums: every local enumerator exists; ints: same size and
/// signedness; pointers: pointees match (by name for named pointees).
pub fn types_match(lb: &dyn BtfView, lid: u32, tb: &dyn BtfView, tid: u32) -> bool {
    types_match_depth(lb, lid, tb, tid, 0)
}

fn types_match_depth(lb: &dyn BtfView, lid: u32, tb: &dyn BtfView, tid: u32, depth: u32) -> bool {
    if depth > MAX_RESOLVE_DEPTH {
        return false;
    }
    let (Some(lr), Some(tr)) = (lb.resolve(lid).ok(), tb.resolve(tid).ok()) else {
        return false;
    };
    if lr == 0 || tr == 0 {
        return lr == 0 && tr == 0;
    }
    let (Ok(lt), Ok(tt)) = (lb.type_at(lr), tb.type_at(tr)) else {
        return false;
    };
    if !names_match(lb, lt.name_off(), tb, tt.name_off()) {
        return false;
    }
    let (lk, tk) = (lt.kind(), tt.kind());
    if lk == BtfKind::Fwd || tk == BtfKind::Fwd {
        // A forward declaration matches a composite of the same flavour.
        return lk == tk || is_composite(lk) || is_composite(tk);
    }
    if !kinds_equal(lk, tk) {
        return false;
    }
    if let (Some(lv), Some(tv)) = (enum_values(&lt), enum_values(&tt)) {
        return lv.iter().all(|l| {
            let ln = essential_name(lb.string_at(l.name_off).unwrap_or(""));
            tv.iter()
                .any(|t| essential_name(tb.string_at(t.name_off).unwrap_or("")) == ln)
        });
    }
    if let (Some(lm), Some(tm)) = (members(&lt), members(&tt)) {
        return lm.iter().all(|l| {
            let ln = lb.string_at(l.name_off).unwrap_or("");
            tm.iter().any(|t| {
                tb.string_at(t.name_off).unwrap_or("") == ln
                    && l.bitfield_size == t.bitfield_size
                    && types_match_depth(lb, l.type_id, tb, t.type_id, depth + 1)
            })
        });
    }
    match (lt.as_ref(), tt.as_ref()) {
        (
            BtfType::Int {
                size: ls,
                encoding: le,
                ..
            },
            BtfType::Int {
                size: ts,
                encoding: te,
                ..
            },
        ) => ls == ts && (le & 1) == (te & 1),
        (BtfType::Float { size: ls, .. }, BtfType::Float { size: ts, .. }) => ls == ts,
        (BtfType::Ptr { type_id: l }, BtfType::Ptr { type_id: t }) => {
            // Pointees only need the same name and kind (no deep walk through kernel graphs).
            match (skip_mods(lb, *l), skip_mods(tb, *t)) {
                (None, None) => true,
                (Some((_, a)), Some((_, b))) => {
                    kinds_equal(a.kind(), b.kind())
                        && names_match(lb, a.name_off(), tb, b.name_off())
                }
                _ => false,
            }
        }
        (
            BtfType::Array {
                elem_type: le,
                nelems: ln,
                ..
            },
            BtfType::Array {
                elem_type: te,
                nelems: tn,
                ..
            },
        ) => ln == tn && types_match_depth(lb, *le, tb, *te, depth + 1),
        (
            BtfType::FuncProto {
                ret: lr,
                params: lp,
            },
            BtfType::FuncProto {
                ret: tr,
                params: tp,
            },
        ) => {
            lp.len() == tp.len()
                && lp
                    .iter()
                    .zip(tp)
                    .all(|(l, t)| types_match_depth(lb, l.type_id, tb, t.type_id, depth + 1))
                && types_match_depth(lb, *lr, tb, *tr, depth + 1)
        }
        _ => false,
    }
}
