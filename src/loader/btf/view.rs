//! [`BtfView`]: what the CO-RE engine reads from a BTF, implemented by the fully parsed [`Btf`] and
//! by the on-demand [`LazyBtf`](super::lazy::LazyBtf) (the kernel's 5 MB vmlinux BTF, of which a
//! relocation touches a few dozen types). Types come back as [`Cow`]: borrowed from a parsed
//! `Btf`, decoded (and checked) from the bytes by the lazy view.
//!
//! The modifier walks ([`BtfView::resolve`], [`BtfView::size_of`]) live here once, for both.

use std::borrow::Cow;

use super::{Btf, BtfError, BtfKind, BtfType, MAX_RESOLVE_DEPTH, PTR_SIZE};

/// Read access to BTF types and strings by id / offset. Every method bounds-checks; ids past the
/// end, bad offsets and malformed records are errors, never panics.
pub trait BtfView: std::fmt::Debug + Send + Sync {
    /// Number of type ids including void (max id + 1).
    fn types_len(&self) -> u32;

    /// The record of type `id`; id 0 (void) and ids past the end are errors.
    fn type_at(&self, id: u32) -> Result<Cow<'_, BtfType>, BtfError>;

    /// The NUL-terminated UTF-8 string at `off` in the string section.
    fn string_at(&self, off: u32) -> Result<&str, BtfError>;

    /// The kind of type `id` (`Void` for 0).
    fn kind_of(&self, id: u32) -> Result<BtfKind, BtfError> {
        if id == 0 {
            return Ok(BtfKind::Void);
        }
        Ok(self.type_at(id)?.kind())
    }

    /// The name of type `id` ("" for anonymous types, for kinds without names and for void).
    fn name_of(&self, id: u32) -> Result<&str, BtfError> {
        if id == 0 {
            return Ok("");
        }
        let off = self.type_at(id)?.name_off();
        self.string_at(off)
    }

    /// Skips TYPEDEF/CONST/VOLATILE/RESTRICT/TYPE_TAG from `id` and returns the first other type id
    /// (0 for void). Errors on out-of-range ids and on chains longer than [`MAX_RESOLVE_DEPTH`].
    fn resolve(&self, id: u32) -> Result<u32, BtfError> {
        let mut cur = id;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            if cur == 0 {
                return Ok(0);
            }
            match self.type_at(cur)?.as_ref() {
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
    fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        let mut cur = id;
        // Product of the array dimensions seen so far.
        let mut mult: u32 = 1;
        for _ in 0..=MAX_RESOLVE_DEPTH {
            if cur == 0 {
                return Err(BtfError::NoSize {
                    id: cur,
                    kind: BtfKind::Void,
                });
            }
            let t = self.type_at(cur)?;
            let size = match t.as_ref() {
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
}

impl BtfView for Btf {
    fn types_len(&self) -> u32 {
        Btf::types_len(self)
    }

    fn type_at(&self, id: u32) -> Result<Cow<'_, BtfType>, BtfError> {
        self.type_by_id(id).map(Cow::Borrowed)
    }

    fn string_at(&self, off: u32) -> Result<&str, BtfError> {
        Btf::string_at(self, off)
    }
}
