//! Queries over parsed BTF: resolving modifier chains, sizes, lookups by name.

use super::view::BtfView;
use super::{Btf, BtfError, BtfKind, BtfType, VarSecinfo};

/// Size of a pointer in BPF programs (the BPF target is always 64-bit).
pub const PTR_SIZE: u32 = 8;

impl Btf {
    /// Skips TYPEDEF/CONST/VOLATILE/RESTRICT/TYPE_TAG from `id` and returns the first other type id
    /// (0 for void). Errors on out-of-range ids and on chains longer than [`MAX_RESOLVE_DEPTH`] (cycles).
    /// (The walk is [`BtfView::resolve`], shared with the lazy view.)
    ///
    /// [`MAX_RESOLVE_DEPTH`]: super::MAX_RESOLVE_DEPTH
    pub fn resolve(&self, id: u32) -> Result<u32, BtfError> {
        BtfView::resolve(self, id)
    }

    /// Size in bytes of type `id`, following modifiers, VARs and arrays (nelems * element size,
    /// overflow-checked). Depth-bounded by [`MAX_RESOLVE_DEPTH`]. Pointers are 8 bytes.
    /// (The walk is [`BtfView::size_of`], shared with the lazy view.)
    ///
    /// [`MAX_RESOLVE_DEPTH`]: super::MAX_RESOLVE_DEPTH
    pub fn size_of(&self, id: u32) -> Result<u32, BtfError> {
        BtfView::size_of(self, id)
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
