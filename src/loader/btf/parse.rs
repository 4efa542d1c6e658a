//! Decoding raw .BTF bytes (either byte order) into [`BtfType`]s. Every read is bounds-checked and
//! every count is checked against the bytes that remain before anything is allocated.

use super::types::*;
use super::{BtfError, BTF_MAGIC};

/// Size of `struct btf_header` (magic .. str_len).
pub(super) const BTF_HEADER_LEN: usize = 24;
/// The kernel's BTF_MAX_TYPE: type ids are at most 20 bits wide.
pub(super) const BTF_MAX_TYPE: u32 = 0x000f_ffff;
/// libbpf's BTF_MAX_STR_OFFSET (the kernel's own limit for loading is lower, 16 MiB).
pub(super) const BTF_MAX_STR_OFFSET: u32 = 0x7fff_ffff;
/// Size of `struct btf_type` (name_off, info, size/type).
pub(super) const TYPE_HEADER_LEN: usize = 12;

/// Bounds-checked reads in a fixed byte order.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    pub data: &'a [u8],
    pub big_endian: bool,
}

impl<'a> Reader<'a> {
    pub fn u32_at(&self, off: usize) -> Option<u32> {
        let b = self.data.get(off..off.checked_add(4)?)?;
        let b = [b[0], b[1], b[2], b[3]];
        Some(if self.big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    }
}

/// Works out the byte order from a magic number: `Some(big_endian)` or `None` if it is not 0xeb9f.
pub(super) fn endianness(data: &[u8]) -> Option<bool> {
    match data.get(0..2)? {
        b if u16::from_le_bytes([b[0], b[1]]) == BTF_MAGIC => Some(false),
        b if u16::from_be_bytes([b[0], b[1]]) == BTF_MAGIC => Some(true),
        _ => None,
    }
}

/// The parsed `struct btf_header`, with sections as absolute byte ranges of the input.
pub(super) struct Header {
    pub big_endian: bool,
    pub types: std::ops::Range<usize>,
    pub strings: std::ops::Range<usize>,
}

/// Absolute range of a section given relative to the end of the header, checked against the input.
fn section(
    name: &'static str,
    hdr_len: usize,
    off: u32,
    len: u32,
    total: usize,
) -> Result<std::ops::Range<usize>, BtfError> {
    let avail = total.saturating_sub(hdr_len);
    let err = || BtfError::SectionOutOfBounds {
        section: name,
        off,
        len,
        avail,
    };
    let start = hdr_len.checked_add(off as usize).ok_or_else(err)?;
    let end = start.checked_add(len as usize).ok_or_else(err)?;
    if end > total {
        return Err(err());
    }
    Ok(start..end)
}

/// The preamble `.BTF` and `.BTF.ext` share: magic (either byte order), version 1, and a
/// `hdr_len` that covers at least `min_hdr` bytes, is 4-byte aligned and fits in `data`.
/// Returns a reader in the blob's byte order and `hdr_len`. `data` must hold `min_hdr`
/// bytes (callers check, with their own error).
pub(super) fn preamble<'a>(
    data: &'a [u8],
    what: &'static str,
    min_hdr: usize,
) -> Result<(Reader<'a>, usize), BtfError> {
    let big_endian = endianness(data).ok_or_else(|| BtfError::BadMagic {
        what,
        magic: u16::from_le_bytes([data[0], data[1]]),
    })?;
    let r = Reader { data, big_endian };
    let version = data[2];
    if version != 1 {
        return Err(BtfError::BadVersion { what, version });
    }
    let hdr_len = r.u32_at(4).unwrap_or(0);
    let bad = |reason| BtfError::BadHeaderLen {
        what,
        hdr_len,
        reason,
    };
    if (hdr_len as usize) < min_hdr {
        return Err(bad("smaller than the 24-byte fixed header"));
    }
    if !hdr_len.is_multiple_of(4) {
        return Err(bad("not a multiple of 4"));
    }
    if hdr_len as usize > data.len() {
        return Err(bad("past the end of the data"));
    }
    Ok((r, hdr_len as usize))
}

pub(super) fn parse_header(data: &[u8]) -> Result<Header, BtfError> {
    if data.len() < BTF_HEADER_LEN {
        return Err(BtfError::TooShort {
            len: data.len(),
            need: BTF_HEADER_LEN,
        });
    }
    let (r, hdr) = preamble(data, "BTF", BTF_HEADER_LEN)?;
    let field = |off| r.u32_at(off).unwrap_or(0); // all within the 24 bytes checked above
    let (type_off, type_len, str_off, str_len) = (field(8), field(12), field(16), field(20));
    let types = section("BTF type", hdr, type_off, type_len, data.len())?;
    let strings = section("BTF string", hdr, str_off, str_len, data.len())?;
    let layout = |reason| BtfError::BadSectionLayout {
        reason,
        type_off,
        type_len,
        str_off,
        str_len,
    };
    if type_off % 4 != 0 {
        return Err(layout("type section is not 4-byte aligned"));
    }
    if type_len % 4 != 0 {
        return Err(layout("type section length is not a multiple of 4"));
    }
    if types.start < strings.end && strings.start < types.end {
        return Err(layout("type and string sections overlap"));
    }
    Ok(Header {
        big_endian: r.big_endian,
        types,
        strings,
    })
}

/// Checks the string section like the kernel does: non-empty, starts and ends with NUL.
/// `offset` is where the section starts in the input, for the error message.
pub(super) fn check_strings(s: &[u8], offset: usize) -> Result<(), BtfError> {
    let len = s.len() as u32;
    let bad = |reason| BtfError::BadStringSection {
        offset,
        len,
        reason,
    };
    match (s.first(), s.last()) {
        (None, _) => Err(bad(
            "empty (it must hold at least the empty string at offset 0)",
        )),
        (Some(0), Some(0)) if s.len() - 1 <= BTF_MAX_STR_OFFSET as usize => Ok(()),
        (Some(0), Some(0)) => Err(bad("larger than 2 GiB")),
        (Some(0), _) => Err(bad("last string is not NUL-terminated")),
        (_, _) => Err(bad(
            "does not start with a NUL byte (offset 0 must be the empty string)",
        )),
    }
}

/// Decodes the whole type section. `types[i]` is type id `i + 1`. Also returns the (sorted) ids of
/// DECL_TAG/TYPE_TAG types with kind_flag set (tags written as plain attributes; the type model has no
/// field for it, so it is kept on the side to re-encode faithfully).
pub(super) fn parse_types(r: Reader<'_>) -> Result<(Vec<BtfType>, Vec<u32>), BtfError> {
    let data = r.data;
    // Every record is at least 12 bytes: this bounds the allocation by the input size.
    let mut types = Vec::with_capacity(data.len() / TYPE_HEADER_LEN);
    let mut tag_kflags = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let id = (types.len() as u32).saturating_add(1);
        if id > BTF_MAX_TYPE {
            return Err(BtfError::TooManyTypes {
                max: BTF_MAX_TYPE,
                offset: pos,
            });
        }
        let (t, len, kflag) = parse_one(r, pos, id)?;
        if kflag && matches!(t, BtfType::DeclTag { .. } | BtfType::TypeTag { .. }) {
            tag_kflags.push(id);
        }
        types.push(t);
        pos += len; // len <= data.len() - pos, checked by parse_one
    }
    types.shrink_to_fit();
    Ok((types, tag_kflags))
}

/// Length in bytes of a record of `kind` with `vlen` (the 12-byte header plus kind-specific data).
pub(super) fn record_len(kind: BtfKind, vlen: usize) -> usize {
    TYPE_HEADER_LEN
        + match kind {
            BtfKind::Int | BtfKind::Var | BtfKind::DeclTag => 4,
            BtfKind::Array => 12,
            BtfKind::Struct | BtfKind::Union | BtfKind::Enum64 | BtfKind::Datasec => 12 * vlen,
            BtfKind::Enum | BtfKind::FuncProto => 8 * vlen,
            _ => 0,
        }
}

/// Decodes the record at `pos`; returns it, its length in bytes and its kind_flag.
pub(super) fn parse_one(
    r: Reader<'_>,
    pos: usize,
    id: u32,
) -> Result<(BtfType, usize, bool), BtfError> {
    let have = r.data.len() - pos;
    let truncated = |need| BtfError::Truncated {
        id,
        offset: pos,
        need,
        have,
    };
    if have < TYPE_HEADER_LEN {
        return Err(truncated(TYPE_HEADER_LEN));
    }
    let u32_at = |off: usize| r.u32_at(pos + off).unwrap_or(0); // callers check bounds first
    let name_off = u32_at(0);
    let info = u32_at(4);
    let size_or_type = u32_at(8);
    let raw_kind = (info >> 24) & 0x1f;
    let vlen = (info & 0xffff) as usize;
    let kflag = info >> 31 != 0;
    let kind = BtfKind::from_raw(raw_kind).ok_or(BtfError::UnknownKind {
        id,
        offset: pos,
        kind: raw_kind,
    })?;
    let invalid = |reason: &str| BtfError::InvalidType {
        id,
        offset: pos,
        reason: format!("{} {}", kind.name(), reason),
    };
    let len = record_len(kind, vlen);
    if len > have {
        return Err(truncated(len));
    }
    let uses_vlen = matches!(
        kind,
        BtfKind::Struct
            | BtfKind::Union
            | BtfKind::Enum
            | BtfKind::Enum64
            | BtfKind::Datasec
            | BtfKind::FuncProto
            | BtfKind::Func
    );
    if !uses_vlen && vlen != 0 {
        return Err(invalid(&format!("has vlen {vlen}, which must be 0")));
    }
    let body = pos + TYPE_HEADER_LEN;
    let at = |i: usize, rec: usize, field: usize| u32_at(TYPE_HEADER_LEN + i * rec + field);
    let t = match kind {
        BtfKind::Void => return Err(invalid("is not a valid on-disk kind")),
        BtfKind::Int => {
            let v = r.u32_at(body).unwrap_or(0);
            let (encoding, offset, bits) = (((v >> 24) & 0x0f) as u8, (v >> 16) as u8, v as u8);
            if bits as u32 > 128 || (offset as u64 + bits as u64) > size_or_type as u64 * 8 {
                return Err(invalid(&format!(
                    "has {bits} bits at bit offset {offset}, which do not fit its {size_or_type} bytes"
                )));
            }
            BtfType::Int {
                name_off,
                size: size_or_type,
                encoding,
                offset,
                bits,
            }
        }
        BtfKind::Ptr => BtfType::Ptr {
            type_id: size_or_type,
        },
        BtfKind::Array => BtfType::Array {
            elem_type: at(0, 12, 0),
            index_type: at(0, 12, 4),
            nelems: at(0, 12, 8),
        },
        BtfKind::Struct | BtfKind::Union => {
            let members = (0..vlen)
                .map(|i| {
                    let off = at(i, 12, 8);
                    let (offset_bits, bitfield_size) = if kflag {
                        (off & 0x00ff_ffff, off >> 24)
                    } else {
                        (off, 0)
                    };
                    Member {
                        name_off: at(i, 12, 0),
                        type_id: at(i, 12, 4),
                        offset_bits,
                        bitfield_size,
                    }
                })
                .collect();
            if kind == BtfKind::Struct {
                BtfType::Struct {
                    name_off,
                    size: size_or_type,
                    members,
                }
            } else {
                BtfType::Union {
                    name_off,
                    size: size_or_type,
                    members,
                }
            }
        }
        BtfKind::Enum => {
            let values = (0..vlen)
                .map(|i| {
                    let raw = at(i, 8, 4);
                    EnumValue {
                        name_off: at(i, 8, 0),
                        value: if kflag { raw as i32 as i64 } else { raw as i64 },
                    }
                })
                .collect();
            BtfType::Enum {
                name_off,
                size: size_or_type,
                signed: kflag,
                values,
            }
        }
        BtfKind::Enum64 => {
            let values = (0..vlen)
                .map(|i| EnumValue {
                    name_off: at(i, 12, 0),
                    value: (((at(i, 12, 8) as u64) << 32) | at(i, 12, 4) as u64) as i64,
                })
                .collect();
            BtfType::Enum64 {
                name_off,
                size: size_or_type,
                signed: kflag,
                values,
            }
        }
        BtfKind::Fwd => BtfType::Fwd {
            name_off,
            is_union: kflag,
        },
        BtfKind::Typedef => BtfType::Typedef {
            name_off,
            type_id: size_or_type,
        },
        BtfKind::Volatile => BtfType::Volatile {
            type_id: size_or_type,
        },
        BtfKind::Const => BtfType::Const {
            type_id: size_or_type,
        },
        BtfKind::Restrict => BtfType::Restrict {
            type_id: size_or_type,
        },
        BtfKind::Func => BtfType::Func {
            name_off,
            proto: size_or_type,
            linkage: vlen as u32,
        },
        BtfKind::FuncProto => BtfType::FuncProto {
            ret: size_or_type,
            params: (0..vlen)
                .map(|i| Param {
                    name_off: at(i, 8, 0),
                    type_id: at(i, 8, 4),
                })
                .collect(),
        },
        BtfKind::Var => BtfType::Var {
            name_off,
            type_id: size_or_type,
            linkage: at(0, 4, 0),
        },
        BtfKind::Datasec => BtfType::Datasec {
            name_off,
            size: size_or_type,
            vars: (0..vlen)
                .map(|i| VarSecinfo {
                    type_id: at(i, 12, 0),
                    offset: at(i, 12, 4),
                    size: at(i, 12, 8),
                })
                .collect(),
        },
        BtfKind::Float => BtfType::Float {
            name_off,
            size: size_or_type,
        },
        BtfKind::DeclTag => BtfType::DeclTag {
            name_off,
            type_id: size_or_type,
            component_idx: at(0, 4, 0) as i32,
        },
        BtfKind::TypeTag => BtfType::TypeTag {
            name_off,
            type_id: size_or_type,
        },
    };
    Ok((t, len, kflag))
}

/// Checks every string offset and type id the types use against the parsed sections,
/// skipping the first `skip` types (a split BTF's base, checked when it was parsed).
pub(super) fn check_refs(types: &[BtfType], str_len: u32, skip: usize) -> Result<(), BtfError> {
    let types_len = (types.len() as u32).saturating_add(1);
    for (i, t) in types.iter().enumerate().skip(skip) {
        check_type_refs(t, i as u32 + 1, str_len, types_len)?;
    }
    Ok(())
}

/// Checks the string offsets and type ids of one type `id` against a string section of `str_len`
/// bytes and `types_len` type ids (void included).
pub(super) fn check_type_refs(
    t: &BtfType,
    id: u32,
    str_len: u32,
    types_len: u32,
) -> Result<(), BtfError> {
    let mut err = None;
    t.for_each_name_off(|off| {
        if off >= str_len && err.is_none() {
            err = Some(BtfError::StringOutOfRange {
                off,
                len: str_len,
                referrer: Some(id),
            });
        }
    });
    t.for_each_type_ref(|r| {
        if r >= types_len && err.is_none() {
            err = Some(BtfError::TypeIdOutOfRange {
                id: r,
                len: types_len,
                referrer: Some(id),
            });
        }
    });
    err.map_or(Ok(()), Err)
}
