//! Queries over parsed BTF: resolving modifier chains, sizes, lookups by name.

use super::{Btf, BtfError, BtfKind, BtfType, VarSecinfo, MAX_RESOLVE_DEPTH};

/// Size of a pointer in BPF programs (the BPF target is always 64-bit).
pub const PTR_SIZE: u32 = 8;

impl Btf {
    /// Skips TYPEDEF/CONST/VOLATILE/RESTRICT/TYPE_TAG from `id` and returns the first other type id
    /// (0 for void). Errors on out-of-range ids and on chains longer than [`MAX_RESOLVE_DEPTH`] (cycles).
    pub fn resolve(&self, id: u32) -> Result<u32, BtfError> {
        let mut cur = id;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            if cur == 0 {
                return Ok(0);
            }
            match self.type_by_id(cur)? {
                BtfType::Typedef { type_id, .. }
                | BtfType::Const { type_id }
                | BtfType::Volatile { type_id }
                | BtfType::Restrict { type_id }
                | BtfType::TypeTag { type_id, .. } => cur = *type_id,
                _ => return Ok(cur),
            }
        }
        Err(BtfError::Cycle {
            id,
            max: MAX_RESOLVE_DEPTH,
        })
    }

    /// Size in bytes of type `id`, following modifiers, VARs and arrays (nelems * element size,
    /// overflow-checked). Depth-bounded by [`MAX_RESOLVE_DEPTH`]. Pointers are 8 bytes.
    pub fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        let mut cur = id;
        // Product of the array dimensions seen so far.
        let mut mult: u32 = 1;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            let t = match cur {
                0 => {
                    return Err(BtfError::NoSize {
                        id: cur,
                        kind: BtfKind::Void,
                    })
                }
                _ => self.type_by_id(cur)?,
            };
            let size = match t {
                BtfType::Int { size, .. }
                | BtfType::Struct { size, .. }
                | BtfType::Union { size, .. }
                | BtfType::Enum { size, .. }
                | BtfType::Enum64 { size, .. }
                | BtfType::Datasec { size, .. }
                | BtfType::Float { size, .. } => *size,
                BtfType::Ptr { .. } => PTR_SIZE,
                BtfType::Array {
                    elem_type, nelems, ..
                } => {
                    mult = mult
                        .checked_mul(*nelems)
                        .ok_or(BtfError::SizeOverflow { id })?;
                    cur = *elem_type;
                    continue;
                }
                BtfType::Typedef { type_id, .. }
                | BtfType::Const { type_id }
                | BtfType::Volatile { type_id }
                | BtfType::Restrict { type_id }
                | BtfType::TypeTag { type_id, .. }
                | BtfType::Var { type_id, .. } => {
                    cur = *type_id;
                    continue;
                }
                BtfType::Fwd { .. }
                | BtfType::Func { .. }
                | BtfType::FuncProto { .. }
                | BtfType::DeclTag { .. } => {
                    return Err(BtfError::NoSize {
                        id: cur,
                        kind: t.kind(),
                    })
                }
            };
            return mult.checked_mul(size).ok_or(BtfError::SizeOverflow { id });
        }
        Err(BtfError::Cycle {
            id,
            max: MAX_RESOLVE_DEPTH,
        })
    }

    /// The first type id of kind `kind` named `name` (names that are not valid strings never match).
    pub fn find_by_name(&self, name: &str, kind: BtfKind) -> Option<u32> {
        self.types
            .iter()
            .enumerate()
            .find(|(_, t)| t.kind() == kind && self.string_at(t.name_off()).ok() == Some(name))
            .map(|(i, _)| i as u32 + 1)
    }

    /// The DATASEC named `name` (e.g. ".data", ".maps"): its type id and variables.
    pub fn datasec(&self, name: &str) -> Option<(u32, &[VarSecinfo])> {
        let id = self.find_by_name(name, BtfKind::Datasec)?;
        match self.types.get(id as usize - 1)? {
            BtfType::Datasec { vars, .. } => Some((id, vars.as_slice())),
            _ => None,
        }
    }
}
