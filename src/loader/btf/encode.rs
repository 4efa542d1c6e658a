//! Encoding [`BtfType`]s back to raw BTF in native byte order (what BPF_BTF_LOAD wants).

use super::types::*;
use super::BTF_MAGIC;

fn put(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_ne_bytes());
}

fn info(kind: BtfKind, vlen: usize, kflag: bool) -> u32 {
    // vlen is 16 bits on disk; lengths above that cannot come from parsing and are clamped so the
    // record stays self-consistent (the trailing data is clamped the same way below).
    let vlen = vlen.min(0xffff) as u32;
    (u32::from(kflag) << 31) | ((kind.raw() & 0x1f) << 24) | vlen
}

/// Appends one type record. `tag_kflag` sets kind_flag on a DECL_TAG/TYPE_TAG.
pub(super) fn encode_type(out: &mut Vec<u8>, t: &BtfType, tag_kflag: bool) {
    let kind = t.kind();
    let head = |out: &mut Vec<u8>, vlen: usize, kflag: bool, size_or_type: u32| {
        put(out, t.name_off());
        put(out, info(kind, vlen, kflag));
        put(out, size_or_type);
    };
    match t {
        BtfType::Int {
            size,
            encoding,
            offset,
            bits,
            ..
        } => {
            head(out, 0, false, *size);
            put(
                out,
                ((*encoding as u32 & 0x0f) << 24) | ((*offset as u32) << 16) | *bits as u32,
            );
        }
        BtfType::Ptr { type_id }
        | BtfType::Volatile { type_id }
        | BtfType::Const { type_id }
        | BtfType::Restrict { type_id }
        | BtfType::Typedef { type_id, .. } => head(out, 0, false, *type_id),
        BtfType::TypeTag { type_id, .. } => head(out, 0, tag_kflag, *type_id),
        BtfType::Array {
            elem_type,
            index_type,
            nelems,
        } => {
            head(out, 0, false, 0);
            put(out, *elem_type);
            put(out, *index_type);
            put(out, *nelems);
        }
        BtfType::Struct { size, members, .. } | BtfType::Union { size, members, .. } => {
            let members = &members[..members.len().min(0xffff)];
            let kflag = members.iter().any(|m| m.bitfield_size != 0);
            head(out, members.len(), kflag, *size);
            for m in members {
                put(out, m.name_off);
                put(out, m.type_id);
                if kflag {
                    put(out, (m.bitfield_size << 24) | (m.offset_bits & 0x00ff_ffff));
                } else {
                    put(out, m.offset_bits);
                }
            }
        }
        BtfType::Enum {
            size,
            signed,
            values,
            ..
        } => {
            let values = &values[..values.len().min(0xffff)];
            head(out, values.len(), *signed, *size);
            for v in values {
                put(out, v.name_off);
                put(out, v.value as u32);
            }
        }
        BtfType::Enum64 {
            size,
            signed,
            values,
            ..
        } => {
            let values = &values[..values.len().min(0xffff)];
            head(out, values.len(), *signed, *size);
            for v in values {
                put(out, v.name_off);
                put(out, v.value as u64 as u32);
                put(out, (v.value as u64 >> 32) as u32);
            }
        }
        BtfType::Fwd { is_union, .. } => head(out, 0, *is_union, 0),
        BtfType::Func { proto, linkage, .. } => {
            head(out, (*linkage).min(0xffff) as usize, false, *proto)
        }
        BtfType::FuncProto { ret, params } => {
            let params = &params[..params.len().min(0xffff)];
            head(out, params.len(), false, *ret);
            for p in params {
                put(out, p.name_off);
                put(out, p.type_id);
            }
        }
        BtfType::Var {
            type_id, linkage, ..
        } => {
            head(out, 0, false, *type_id);
            put(out, *linkage);
        }
        BtfType::Datasec { size, vars, .. } => {
            let vars = &vars[..vars.len().min(0xffff)];
            head(out, vars.len(), false, *size);
            for v in vars {
                put(out, v.type_id);
                put(out, v.offset);
                put(out, v.size);
            }
        }
        BtfType::Float { size, .. } => head(out, 0, false, *size),
        BtfType::DeclTag {
            type_id,
            component_idx,
            ..
        } => {
            head(out, 0, tag_kflag, *type_id);
            put(out, *component_idx as u32);
        }
    }
}

/// A complete BTF blob: 24-byte header, type section, string section. `tag_kflags` is the sorted
/// list of tag type ids that carry kind_flag.
pub(super) fn encode(types: &[BtfType], strings: &[u8], tag_kflags: &[u32]) -> Vec<u8> {
    let mut type_sec = Vec::new();
    for (i, t) in types.iter().enumerate() {
        let id = i as u32 + 1;
        encode_type(&mut type_sec, t, tag_kflags.binary_search(&id).is_ok());
    }
    let mut out = Vec::with_capacity(24 + type_sec.len() + strings.len());
    out.extend_from_slice(&BTF_MAGIC.to_ne_bytes());
    out.push(1); // version
    out.push(0); // flags
    put(&mut out, 24); // hdr_len
    put(&mut out, 0); // type_off
    put(&mut out, type_sec.len() as u32);
    put(&mut out, type_sec.len() as u32); // str_off
    put(&mut out, strings.len() as u32);
    out.extend_from_slice(&type_sec);
    out.extend_from_slice(strings);
    out
}
