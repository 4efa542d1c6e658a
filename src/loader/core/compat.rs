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

/// `bpf_core_type_matches()` (libbpf relo_core.c `__bpf_core_types_match`): stricter than
/// compat. Names match by essential name (an anonymous target only matches an anonymous local);
/// composites: every local member has a target member of the same essential name whose type
/// matches (bitfield widths are not compared); enums: same size, every local enumerator exists
/// by essential name (enum and enum64 match each other); ints: same size and signedness; arrays:
/// same length, elements match; pointers: pointees match, where a struct or union behind a
/// pointer only needs the same kind (or a forward declaration of that kind); forward
/// declarations: same kind and flavour; function prototypes: same arity, all types match.
/// Anything else (floats included) never matches, as in libbpf.
pub fn types_match(lb: &dyn BtfView, lid: u32, tb: &dyn BtfView, tid: u32) -> bool {
    types_match_depth(lb, lid, tb, tid, false, 0)
}

/// libbpf's `bpf_core_names_match`: essential names equal; an anonymous target matches only an
/// anonymous local.
fn core_names_match(lb: &dyn BtfView, loff: u32, tb: &dyn BtfView, toff: u32) -> bool {
    let l = lb.string_at(loff).unwrap_or("");
    let t = tb.string_at(toff).unwrap_or("");
    if t.is_empty() {
        return l.is_empty();
    }
    essential_name(l) == essential_name(t)
}

fn types_match_depth(
    lb: &dyn BtfView,
    lid: u32,
    tb: &dyn BtfView,
    tid: u32,
    behind_ptr: bool,
    depth: u32,
) -> bool {
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
    if !core_names_match(lb, lt.name_off(), tb, tt.name_off()) {
        return false;
    }
    let next = |l: u32, t: u32, behind: bool| types_match_depth(lb, l, tb, t, behind, depth + 1);
    let (lt, tt) = (lt.as_ref(), tt.as_ref());
    match (lt, tt) {
        (BtfType::Fwd { is_union: lf, .. }, _) => match tt {
            BtfType::Fwd { is_union: tf, .. } => lf == tf,
            BtfType::Struct { .. } => behind_ptr && !lf,
            BtfType::Union { .. } => behind_ptr && *lf,
            _ => false,
        },
        (BtfType::Enum { .. } | BtfType::Enum64 { .. }, _) => {
            let (Some(lv), Some(tv)) = (enum_values(lt), enum_values(tt)) else {
                return false;
            };
            enum_size(lt) == enum_size(tt)
                && lv.len() <= tv.len()
                && lv.iter().all(|l| {
                    tv.iter()
                        .any(|t| core_names_match(lb, l.name_off, tb, t.name_off))
                })
        }
        (BtfType::Struct { .. } | BtfType::Union { .. }, _) => {
            let (lk, tk) = (lt.kind(), tt.kind());
            if behind_ptr {
                return lk == tk
                    || matches!(tt, BtfType::Fwd { is_union, .. } if *is_union == (lk == BtfKind::Union));
            }
            let (Some(lm), Some(tm)) = (members(lt), members(tt)) else {
                return false;
            };
            lk == tk
                && lm.len() <= tm.len()
                && lm.iter().all(|l| {
                    tm.iter().any(|t| {
                        core_names_match(lb, l.name_off, tb, t.name_off)
                            && next(l.type_id, t.type_id, behind_ptr)
                    })
                })
        }
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
        (BtfType::Ptr { type_id: l }, BtfType::Ptr { type_id: t }) => next(*l, *t, true),
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
        ) => ln == tn && next(*le, *te, behind_ptr),
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
                    .all(|(l, t)| next(l.type_id, t.type_id, behind_ptr))
                && next(*lr, *tr, behind_ptr)
        }
        _ => false,
    }
}

fn enum_size(t: &BtfType) -> Option<u32> {
    match t {
        BtfType::Enum { size, .. } | BtfType::Enum64 { size, .. } => Some(*size),
        _ => None,
    }
}
