//! Access specs: the local side parsed from a record's access string ("0:1:2"), and the target
//! side found by walking the same path through a candidate type by member NAMES (libbpf
//! relo_core.c `bpf_core_parse_spec` / `bpf_core_spec_match`, reimplemented).

use std::borrow::Cow;

use crate::loader::btf::{essential_name, BtfType, BtfView, EnumValue, Member, MAX_RESOLVE_DEPTH};

use super::compat::{fields_compat, types_compat, types_match};
use super::kind::CoreKind;

/// Most accessors in one access string (libbpf's BPF_CORE_SPEC_MAX_LEN).
pub const MAX_SPEC_LEN: usize = 64;

/// One high-level step: member `idx` of composite `type_id` (named), element `idx` of array
/// `type_id` (no name), or enumerator `idx` of enum `type_id` (named).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accessor {
    pub type_id: u32,
    pub idx: u32,
    pub name: Option<String>,
}

/// A resolved access path in one BTF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub root_type_id: u32,
    /// Named members and array indices (anonymous members are only in `raw`).
    pub spec: Vec<Accessor>,
    /// Every index, anonymous members included (the access string's form).
    pub raw: Vec<u32>,
    /// Bit offset of the accessed field from the root pointer.
    pub bit_offset: u64,
}

/// Why an access string could not be parsed against the local BTF (a malformed object).
pub type SpecError = String;

pub(super) fn members(t: &BtfType) -> Option<&[Member]> {
    match t {
        BtfType::Struct { members, .. } | BtfType::Union { members, .. } => Some(members),
        _ => None,
    }
}

pub(super) fn enum_values(t: &BtfType) -> Option<&[EnumValue]> {
    match t {
        BtfType::Enum { values, .. } | BtfType::Enum64 { values, .. } => Some(values),
        _ => None,
    }
}

/// Skips typedefs and modifiers: (resolved id, its record). Void and errors are `None`.
pub(super) fn skip_mods(btf: &dyn BtfView, id: u32) -> Option<(u32, Cow<'_, BtfType>)> {
    let r = btf.resolve(id).ok()?;
    if r == 0 {
        return None;
    }
    Some((r, btf.type_at(r).ok()?))
}

/// Like [`skip_mods`] for the target side of a match: a malformed type or a modifier cycle is an
/// error naming it (a corrupt target BTF, e.g. a hostile `--btf FILE`), not a candidate that
/// silently does not match. Void is `Ok(None)`.
pub(super) fn skip_mods_checked(
    btf: &dyn BtfView,
    id: u32,
) -> Result<Option<(u32, Cow<'_, BtfType>)>, SpecError> {
    let bad = |e: crate::loader::btf::BtfError| format!("the target BTF is malformed: {e}");
    let r = btf.resolve(id).map_err(bad)?;
    if r == 0 {
        return Ok(None);
    }
    btf.type_at(r).map(|t| Some((r, t))).map_err(bad)
}

/// Member `idx` of composite `id` (a copy: the record may be decoded on demand).
pub(super) fn member_of(btf: &dyn BtfView, id: u32, idx: u32) -> Option<Member> {
    let t = btf.type_at(id).ok()?;
    members(&t)?.get(idx as usize).cloned()
}

fn name_str(btf: &dyn BtfView, off: u32) -> &str {
    btf.string_at(off).unwrap_or("")
}

/// `acc` (the last high-level accessor) is the last member of its struct and `nelems` is 0.
fn is_flex_arr(btf: &dyn BtfView, prev: Option<&Accessor>, nelems: u32) -> bool {
    let Some(prev) = prev.filter(|a| a.name.is_some()) else {
        return false;
    };
    if nelems > 0 {
        return false;
    }
    btf.type_at(prev.type_id)
        .ok()
        .is_some_and(|t| members(&t).is_some_and(|m| prev.idx as usize + 1 == m.len()))
}

fn size_bits(btf: &dyn BtfView, id: u32) -> Result<u64, SpecError> {
    btf.size_of(id)
        .map(|s| u64::from(s) * 8)
        .map_err(|e| format!("type [{id}] has no size: {e}"))
}

/// Parses `access` ("0:1:2") for a record of `kind` rooted at local type `type_id`.
pub fn parse_local(
    btf: &dyn BtfView,
    type_id: u32,
    access: &str,
    kind: CoreKind,
) -> Result<Spec, SpecError> {
    if access.is_empty() {
        return Err("empty access string".into());
    }
    let mut raw = Vec::new();
    for part in access.split(':') {
        if raw.len() >= MAX_SPEC_LEN {
            return Err(format!("access string has more than {MAX_SPEC_LEN} steps"));
        }
        let v: u32 = part
            .parse()
            .map_err(|_| format!("access string `{access}` has a non-number step `{part}`"))?;
        raw.push(v);
    }
    let Some((root_id, root)) = skip_mods(btf, type_id) else {
        return Err(format!("root type [{type_id}] is void or invalid"));
    };
    let mut spec = Spec {
        root_type_id: type_id,
        spec: Vec::new(),
        raw: raw.clone(),
        bit_offset: 0,
    };
    if kind.is_type() {
        if raw != [0] {
            return Err(format!(
                "type relocation with access string `{access}` (must be `0`)"
            ));
        }
        return Ok(spec);
    }
    if kind.is_enumval() {
        let vals = enum_values(&root)
            .ok_or_else(|| format!("enum relocation on non-enum type [{type_id}]"))?;
        let [idx] = raw[..] else {
            return Err(format!(
                "enum relocation with access string `{access}` (must be one index)"
            ));
        };
        let v = vals
            .get(idx as usize)
            .ok_or_else(|| format!("enumerator #{idx} past the {} of [{type_id}]", vals.len()))?;
        spec.spec.push(Accessor {
            type_id,
            idx,
            name: Some(name_str(btf, v.name_off).to_string()),
        });
        return Ok(spec);
    }
    // Field: first index is an array index over the root type (pointer arithmetic).
    let first = raw[0];
    spec.bit_offset = u64::from(first) * size_bits(btf, type_id)?;
    spec.spec.push(Accessor {
        type_id: root_id,
        idx: first,
        name: None,
    });
    let mut id = type_id;
    for &idx in &raw[1..] {
        let (rid, t) = skip_mods(btf, id).ok_or_else(|| format!("step into void type [{id}]"))?;
        if let Some(ms) = members(&t) {
            let m = ms.get(idx as usize).ok_or_else(|| {
                format!(
                    "member #{idx} past the {} members of [{rid}] {}",
                    ms.len(),
                    name_str(btf, t.name_off())
                )
            })?;
            spec.bit_offset += u64::from(m.offset_bits);
            let n = name_str(btf, m.name_off);
            if !n.is_empty() {
                spec.spec.push(Accessor {
                    type_id: rid,
                    idx,
                    name: Some(n.to_string()),
                });
            }
            id = m.type_id;
        } else if let BtfType::Array {
            elem_type, nelems, ..
        } = t.as_ref()
        {
            let flex = is_flex_arr(btf, spec.spec.last(), *nelems);
            if !flex && idx >= *nelems {
                return Err(format!(
                    "array index {idx} past the {nelems} elements of [{rid}]"
                ));
            }
            let eid = btf.resolve(*elem_type).map_err(|e| e.to_string())?;
            spec.spec.push(Accessor {
                type_id: eid,
                idx,
                name: None,
            });
            spec.bit_offset += u64::from(idx) * size_bits(btf, *elem_type)?;
            id = *elem_type;
        } else {
            return Err(format!(
                "step {idx} goes into type [{rid}] of kind {}, which has no members or elements",
                t.kind().name()
            ));
        }
    }
    Ok(spec)
}

/// Matches local member `local` (accessor into local composite) by name inside target composite
/// `targ_id`, descending into anonymous members. Ok(Some(next target type)) when found.
fn match_member(
    lbtf: &dyn BtfView,
    local: &Accessor,
    tbtf: &dyn BtfView,
    targ_id: u32,
    spec: &mut Spec,
    depth: u32,
) -> Result<Option<u32>, SpecError> {
    if depth > MAX_RESOLVE_DEPTH {
        return Err("anonymous members nest too deep in the target".into());
    }
    let lm = member_of(lbtf, local.type_id, local.idx).ok_or("local member vanished")?;
    let Some((tid, tt)) = skip_mods_checked(tbtf, targ_id)? else {
        return Ok(None);
    };
    let Some(tms) = members(&tt) else {
        return Ok(None);
    };
    let lname = local.name.as_deref().unwrap_or("");
    for (i, m) in tms.iter().enumerate() {
        let bit = u64::from(m.offset_bits);
        spec.bit_offset += bit;
        spec.raw.push(i as u32);
        let n = name_str(tbtf, m.name_off);
        if n.is_empty() {
            if let Some(next) = match_member(lbtf, local, tbtf, m.type_id, spec, depth + 1)? {
                return Ok(Some(next));
            }
        } else if n == lname {
            spec.spec.push(Accessor {
                type_id: tid,
                idx: i as u32,
                name: Some(n.to_string()),
            });
            if fields_compat(lbtf, lm.type_id, tbtf, m.type_id) {
                return Ok(Some(m.type_id));
            }
            spec.spec.pop();
            spec.raw.pop();
            spec.bit_offset -= bit;
            return Ok(None);
        }
        spec.bit_offset -= bit;
        spec.raw.pop();
    }
    Ok(None)
}

/// Walks `local` through candidate `targ_id` of `tbtf`. Ok(None) when the candidate does not match.
pub fn match_target(
    local: &Spec,
    lbtf: &dyn BtfView,
    kind: CoreKind,
    tbtf: &dyn BtfView,
    targ_id: u32,
) -> Result<Option<Spec>, SpecError> {
    let mut t = Spec {
        root_type_id: targ_id,
        spec: Vec::new(),
        raw: Vec::new(),
        bit_offset: 0,
    };
    if kind.is_type() {
        let ok = if kind == CoreKind::TypeMatches {
            types_match(lbtf, local.root_type_id, tbtf, targ_id)
        } else {
            types_compat(lbtf, local.root_type_id, tbtf, targ_id)
        };
        return Ok(ok.then_some(t));
    }
    let Some(first) = local.spec.first() else {
        return Err("empty local spec".into());
    };
    if kind.is_enumval() {
        let Some((_, tt)) = skip_mods_checked(tbtf, targ_id)? else {
            return Ok(None);
        };
        let Some(vals) = enum_values(&tt) else {
            return Ok(None);
        };
        let lname = essential_name(first.name.as_deref().unwrap_or(""));
        for (i, v) in vals.iter().enumerate() {
            let n = name_str(tbtf, v.name_off);
            if !n.is_empty() && essential_name(n) == lname {
                t.spec.push(Accessor {
                    type_id: targ_id,
                    idx: i as u32,
                    name: Some(n.to_string()),
                });
                t.raw.push(i as u32);
                return Ok(Some(t));
            }
        }
        return Ok(None);
    }
    let troot = tbtf.resolve(targ_id).map_err(|e| e.to_string())?;
    t.spec.push(Accessor {
        type_id: troot,
        idx: first.idx,
        name: None,
    });
    t.raw.push(first.idx);
    t.bit_offset = u64::from(first.idx) * size_bits(tbtf, targ_id)?;
    let mut tid = targ_id;
    for acc in &local.spec[1..] {
        if acc.name.is_some() {
            match match_member(lbtf, acc, tbtf, tid, &mut t, 0)? {
                Some(next) => tid = next,
                None => return Ok(None),
            }
        } else {
            let Some((elem_type, nelems)) =
                skip_mods_checked(tbtf, tid)?.and_then(|(_, t)| match *t {
                    BtfType::Array {
                        elem_type, nelems, ..
                    } => Some((elem_type, nelems)),
                    _ => None,
                })
            else {
                return Ok(None);
            };
            let flex = is_flex_arr(tbtf, t.spec.last(), nelems);
            if !flex && acc.idx >= nelems {
                return Ok(None);
            }
            let rid = tbtf.resolve(elem_type).map_err(|e| e.to_string())?;
            t.spec.push(Accessor {
                type_id: rid,
                idx: acc.idx,
                name: None,
            });
            t.raw.push(acc.idx);
            t.bit_offset += u64::from(acc.idx) * size_bits(tbtf, elem_type)?;
            tid = elem_type;
        }
    }
    Ok(Some(t))
}

/// `struct task_struct.real_parent.tgid`-style description of a spec ("\[3\]" for array steps).
pub fn describe(btf: &dyn BtfView, spec: &Spec) -> String {
    let root = spec.root_type_id;
    let kind = match skip_mods(btf, root).map(|(_, t)| t.kind()) {
        Some(crate::loader::btf::BtfKind::Struct) => "struct ",
        Some(crate::loader::btf::BtfKind::Union) => "union ",
        Some(crate::loader::btf::BtfKind::Enum | crate::loader::btf::BtfKind::Enum64) => "enum ",
        _ => "",
    };
    let mut s = format!("{kind}{}", btf.name_of(root).unwrap_or("?"));
    if s.trim().is_empty() || s.ends_with(' ') {
        s.push_str("(anon)");
    }
    for (i, a) in spec.spec.iter().enumerate() {
        match &a.name {
            Some(n) if i == 0 => s.push_str(&format!("::{n}")),
            Some(n) => s.push_str(&format!(".{n}")),
            None if i == 0 && a.idx == 0 => {}
            None => s.push_str(&format!("[{}]", a.idx)),
        }
    }
    s
}
