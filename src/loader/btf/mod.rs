//! BTF: parsing (either byte order), queries, fixups for the loader, sanitising for older kernels,
//! C-like printing, and .BTF.ext (func_info / line_info / CO-RE relocation records).
//!
//! Pure parsing: nothing here talks to the kernel. All input is treated as hostile: every read is
//! bounds-checked, counts are checked against the remaining bytes before allocating, and every walk
//! over type references is depth-bounded so cycles terminate.
//!
//! Layout: [`types`] (model), `parse`/`encode` (bytes), `query` (resolve/size/lookup), [`format`](mod@format)
//! (printing), [`fixup`] (DATASEC sizes/offsets), [`sanitize`](mod@sanitize) (feature fallbacks + probe blobs),
//! [`ext`] (.BTF.ext), [`lazy`] (target BTF decoded on demand) and [`view`] (what CO-RE reads, over
//! either).

pub mod dump_c;
mod encode;
mod error;
pub mod ext;
pub mod fixup;
pub mod format;
pub mod index;
pub mod lazy;
mod parse;
mod query;
pub mod sanitize;
mod split;
pub mod types;
pub mod view;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_lazy;
#[cfg(test)]
mod tests_more;
#[cfg(test)]
mod tests_real;
#[cfg(test)]
mod testutil;

pub use error::BtfError;
pub use ext::{BtfExt, CoreRelo, FuncInfo, LineInfo};
pub use fixup::fixup_datasecs;
pub use index::{essential_name, NameIndex};
pub use lazy::LazyBtf;
pub use query::PTR_SIZE;
pub use sanitize::{probe_blob, sanitize, BtfFeatureKind, BtfFeatures};
pub use types::{BtfKind, BtfType, EnumValue, Member, Param, VarSecinfo};
pub use view::BtfView;

/// The BTF (and .BTF.ext) magic number.
pub const BTF_MAGIC: u16 = 0xEB9F;

/// Longest typedef/const/array/... chain followed before giving up (the kernel's MAX_RESOLVE_DEPTH).
pub const MAX_RESOLVE_DEPTH: u32 = 32;

/// Parsed BTF: the types (id 1.. ; id 0 is void), the string section, and the input's byte order.
#[derive(Debug, Clone)]
pub struct Btf {
    /// `types[i]` is type id `i + 1`.
    types: Vec<BtfType>,
    /// The raw string section (starts with NUL so offset 0 is "").
    strings: Vec<u8>,
    /// Byte order of the parsed input (`to_bytes` always writes native order).
    big_endian: bool,
    /// Sorted ids of DECL_TAG/TYPE_TAG types whose kind_flag is set (attribute-style tags).
    tag_kflags: Vec<u32>,
}

impl Default for Btf {
    fn default() -> Self {
        Btf::new()
    }
}

impl Btf {
    /// An empty BTF (no types, string section holding only ""), to build blobs from scratch.
    pub fn new() -> Btf {
        Btf {
            types: Vec::new(),
            strings: vec![0],
            big_endian: cfg!(target_endian = "big"),
            tag_kflags: Vec::new(),
        }
    }

    /// Parses a raw .BTF section (or /sys/kernel/btf/vmlinux) in either byte order (told by the magic).
    ///
    /// A blob with one type, `int` (4 bytes, 32 bits):
    ///
    /// ```
    /// use rawsnoop::loader::btf::{types::BtfKind, Btf};
    ///
    /// let mut blob = Vec::new();
    /// // Header: magic, version 1, flags 0, hdr_len, type_off, type_len, str_off, str_len.
    /// blob.extend_from_slice(&0xeb9fu16.to_ne_bytes());
    /// blob.extend_from_slice(&[1, 0]);
    /// for v in [24u32, 0, 16, 16, 5] {
    ///     blob.extend_from_slice(&v.to_ne_bytes());
    /// }
    /// // [1] INT 'int': name_off 1, info (kind 1 << 24), size 4, encoding/offset/bits 32.
    /// for v in [1u32, 1 << 24, 4, 32] {
    ///     blob.extend_from_slice(&v.to_ne_bytes());
    /// }
    /// blob.extend_from_slice(b"\0int\0");
    ///
    /// let btf = Btf::parse(&blob)?;
    /// assert_eq!(btf.types_len(), 2); // [0] void, [1] int
    /// assert_eq!(btf.kind_of(1)?, BtfKind::Int);
    /// assert_eq!(btf.name_of(1)?, "int");
    /// // A truncated header is an error, not a panic.
    /// assert!(Btf::parse(&blob[..10]).is_err());
    /// # Ok::<(), rawsnoop::loader::btf::BtfError>(())
    /// ```
    pub fn parse(data: &[u8]) -> Result<Btf, BtfError> {
        let hdr = parse::parse_header(data)?;
        let strings = data.get(hdr.strings.clone()).unwrap_or(&[]);
        parse::check_strings(strings, hdr.strings.start)?;
        let type_bytes = data.get(hdr.types.clone()).unwrap_or(&[]);
        let (types, tag_kflags) = parse::parse_types(parse::Reader {
            data: type_bytes,
            big_endian: hdr.big_endian,
        })?;
        parse::check_refs(&types, strings.len() as u32, 0)?;
        Ok(Btf {
            types,
            strings: strings.to_vec(),
            big_endian: hdr.big_endian,
            tag_kflags,
        })
    }

    /// Whether the parsed input was big-endian.
    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// Whether DECL_TAG/TYPE_TAG `id` has kind_flag set (a tag written as a plain attribute, newer
    /// kernels only). Preserved by `to_bytes`; false for every other type.
    pub fn tag_kind_flag(&self, id: u32) -> bool {
        self.tag_kflags.binary_search(&id).is_ok()
            && matches!(
                self.type_by_id(id),
                Ok(BtfType::DeclTag { .. } | BtfType::TypeTag { .. })
            )
    }

    /// Number of type ids including void (max id + 1).
    pub fn types_len(&self) -> u32 {
        (self.types.len() as u32).saturating_add(1)
    }

    /// The record of type `id`; id 0 (void) and ids past the end are errors.
    pub fn type_by_id(&self, id: u32) -> Result<&BtfType, BtfError> {
        if id == 0 {
            return Err(BtfError::VoidHasNoType);
        }
        self.types
            .get(id as usize - 1)
            .ok_or(BtfError::TypeIdOutOfRange {
                id,
                len: self.types_len(),
                referrer: None,
            })
    }

    /// The kind of type `id` (`Void` for 0).
    pub fn kind_of(&self, id: u32) -> Result<BtfKind, BtfError> {
        if id == 0 {
            return Ok(BtfKind::Void);
        }
        self.type_by_id(id).map(BtfType::kind)
    }

    /// The NUL-terminated UTF-8 string at `off` in the string section.
    pub fn string_at(&self, off: u32) -> Result<&str, BtfError> {
        let len = self.strings.len() as u32;
        if off == 0 && self.strings.is_empty() {
            return Ok("");
        }
        c_str_at(&self.strings, off as usize, off, len)
    }

    /// The name of type `id` ("" for anonymous types, for kinds without names and for void).
    pub fn name_of(&self, id: u32) -> Result<&str, BtfError> {
        if id == 0 {
            return Ok("");
        }
        self.string_at(self.type_by_id(id)?.name_off())
    }

    /// All types; index `i` is type id `i + 1` (for fixups by the loader).
    pub fn types_mut(&mut self) -> &mut [BtfType] {
        &mut self.types
    }

    /// All types; index `i` is type id `i + 1`.
    pub fn types(&self) -> &[BtfType] {
        &self.types
    }

    /// The raw string section.
    pub fn strings(&self) -> &[u8] {
        &self.strings
    }

    /// Appends a type and returns its id (ids of existing types do not change).
    pub fn add_type(&mut self, t: BtfType) -> u32 {
        self.types.push(t);
        self.types.len() as u32
    }

    /// Appends `s` (NUL-terminated) to the string section and returns its offset. Interior NULs cut
    /// the string short when read back. Existing offsets never change.
    pub fn add_string(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            if self.strings.is_empty() {
                self.strings.push(0);
            }
            return 0;
        }
        if self.strings.is_empty() {
            self.strings.push(0);
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    /// Re-encodes the BTF in native byte order with the same types and the same string section.
    pub fn to_bytes(&self) -> Vec<u8> {
        encode::encode(&self.types, &self.strings, &self.tag_kflags)
    }
}

/// The NUL-terminated UTF-8 string at byte `at` of a string section (`off` and `len`, the offset
/// as the BTF names it and the section's length, are for the error).
pub(crate) fn c_str_at(strings: &[u8], at: usize, off: u32, len: u32) -> Result<&str, BtfError> {
    let rest = strings
        .get(at..)
        .filter(|r| !r.is_empty())
        .ok_or(BtfError::StringOutOfRange {
            off,
            len,
            referrer: None,
        })?;
    let end = rest
        .iter()
        .position(|&b| b == 0)
        .ok_or(BtfError::StringNotTerminated { off })?;
    std::str::from_utf8(&rest[..end]).map_err(|_| BtfError::StringNotUtf8 { off })
}
