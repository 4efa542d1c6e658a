//! [`LazyBtf`]: a BTF blob read on demand, for target BTF (the kernel's vmlinux BTF is ~5 MB and
//! ~150k types; a CO-RE relocation touches a few dozen of them).
//!
//! Opening does one cheap pass over the type section: the header, the string section's first and
//! last byte, and for every record its kind and its length (vlen fits in what remains), recording
//! each record's byte offset. Nothing is decoded, allocated per type or indexed. A type is decoded
//! from the bytes when asked for ([`BtfView::type_at`]), with every read bounds-checked and its
//! names and references checked against the sections then, so a hostile file gives errors at use,
//! never a panic. Split BTF (kernel modules) sits on top of a shared base.
//!
//! Name lookup ([`LazyBtf::ids_named`]) is a linear scan over the records' name offsets per distinct
//! essential name, cached, as libbpf's candidate cache does. Measured on this project's machine
//! (Linux 6.18 vmlinux, 150k types): one scan costs ~0.3 ms, building a hash index of every name
//! costs ~6 ms; the built-in tracer looks up 1-3 names and a large CO-RE object a few dozen, so
//! scanning wins until ~20 distinct names, and those objects pay under a millisecond more.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use super::index::{essential_is, essential_name};
use super::parse::{self, Reader, BTF_MAX_TYPE, TYPE_HEADER_LEN};
use super::view::BtfView;
use super::{BtfError, BtfKind, BtfType};

/// The bytes of a lazy BTF: read into memory, or a read-only mapping of the kernel's BTF.
pub enum Bytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) => m,
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bytes::Owned(v) => write!(f, "Owned({} bytes)", v.len()),
            Bytes::Mapped(m) => write!(f, "Mapped({} bytes)", m.len()),
        }
    }
}

impl Bytes {
    /// Maps `/sys/kernel/btf/vmlinux` read-only (the kernel allows a private read-only mapping of
    /// it since 6.16, `btf_sysfs_vmlinux_mmap` in kernel/bpf/sysfs_btf.c). `None` when the kernel
    /// refuses (older kernels: no mmap on that file), when the file is not on sysfs, or is empty;
    /// callers then read it.
    pub fn map_kernel_btf(path: &std::path::Path) -> Option<Bytes> {
        use nix::sys::statfs::{fstatfs, SYSFS_MAGIC};
        let file = std::fs::File::open(path).ok()?;
        // Only the kernel's own sysfs file is known immutable; a bind-mounted regular file is not.
        if fstatfs(&file).ok()?.filesystem_type() != SYSFS_MAGIC {
            return None;
        }
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: the mapping is MAP_PRIVATE + PROT_READ (memmap2's `map_copy_read_only`) of
        // /sys/kernel/btf/vmlinux, checked above to be on sysfs. The kernel backs it with its own
        // `__start_BTF` pages, which are `__ro_after_init` (never written after boot), and the
        // sysfs file has a fixed size, so the bytes behind the returned slice can neither change
        // nor be truncated while the mapping lives (no SIGBUS, no data race). `len` is the file's
        // size, which the kernel checks against the BTF's pages.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(len)
                .map_copy_read_only(&file)
        };
        map.ok().map(Bytes::Mapped)
    }
}

/// A BTF blob decoded on demand (see the module docs).
#[derive(Debug)]
pub struct LazyBtf {
    bytes: Bytes,
    big_endian: bool,
    /// Absolute byte ranges of the type and string sections in `bytes`.
    types: Range<usize>,
    strings: Range<usize>,
    /// Type-section byte offset of type id `first_id + i`.
    offsets: Vec<u32>,
    /// The base of a split BTF (ids below `first_id`, string offsets below `str_base`).
    base: Option<Arc<LazyBtf>>,
    first_id: u32,
    str_base: u32,
    /// Essential name -> ids (ascending, this part only), filled per name on first lookup.
    names: Mutex<HashMap<String, Vec<u32>>>,
}

impl LazyBtf {
    /// Opens a complete BTF blob (either byte order): header, string section and the one pass
    /// over the type section (see the module docs).
    pub fn new(bytes: Bytes) -> Result<LazyBtf, BtfError> {
        let hdr = parse::parse_header(&bytes)?;
        let strings = bytes.get(hdr.strings.clone()).unwrap_or(&[]);
        parse::check_strings(strings, hdr.strings.start)?;
        let offsets = scan(&bytes, hdr.types.clone(), hdr.big_endian, 1)?;
        Ok(LazyBtf {
            big_endian: hdr.big_endian,
            types: hdr.types,
            strings: hdr.strings,
            offsets,
            base: None,
            first_id: 1,
            str_base: 0,
            names: Mutex::new(HashMap::new()),
            bytes,
        })
    }

    /// Opens split BTF (a kernel module's) on top of `base`: ids continue after the base's, and
    /// string offsets past the base's string section are this blob's.
    pub fn new_split(bytes: Bytes, base: Arc<LazyBtf>) -> Result<LazyBtf, BtfError> {
        let hdr = parse::parse_header(&bytes)?;
        let strings = bytes.get(hdr.strings.clone()).unwrap_or(&[]);
        // Like `Btf::parse_split`: no leading NUL is required, the last string must end.
        if strings.last().is_some_and(|&b| b != 0) {
            return Err(BtfError::BadStringSection {
                offset: hdr.strings.start,
                len: strings.len() as u32,
                reason: "last string is not NUL-terminated",
            });
        }
        let first_id = base.types_len();
        let str_base = base.str_len();
        if u64::from(str_base) + strings.len() as u64 > u64::from(parse::BTF_MAX_STR_OFFSET) {
            return Err(BtfError::BadStringSection {
                offset: hdr.strings.start,
                len: strings.len() as u32,
                reason: "base and split string sections together are larger than 2 GiB",
            });
        }
        let offsets = scan(&bytes, hdr.types.clone(), hdr.big_endian, first_id)?;
        Ok(LazyBtf {
            big_endian: hdr.big_endian,
            types: hdr.types,
            strings: hdr.strings,
            offsets,
            base: Some(base),
            first_id,
            str_base,
            names: Mutex::new(HashMap::new()),
            bytes,
        })
    }

    /// Whether the blob is big-endian.
    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// The first type id of this part (1, or the first id after a split BTF's base).
    pub fn first_id(&self) -> u32 {
        self.first_id
    }

    /// Whether the bytes are a mapping of the kernel's BTF (not a copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped(_))
    }

    /// Length of the string offsets space (the base's included).
    fn str_len(&self) -> u32 {
        self.str_base
            .saturating_add(self.strings.len().min(u32::MAX as usize) as u32)
    }

    fn reader(&self) -> Reader<'_> {
        Reader {
            data: self.bytes.get(self.types.clone()).unwrap_or(&[]),
            big_endian: self.big_endian,
        }
    }

    /// Type-section offset of `id`, which must be in this part (not the base).
    fn pos_of(&self, id: u32) -> Result<usize, BtfError> {
        id.checked_sub(self.first_id)
            .and_then(|i| self.offsets.get(i as usize))
            .map(|&p| p as usize)
            .ok_or(BtfError::TypeIdOutOfRange {
                id,
                len: self.types_len(),
                referrer: None,
            })
    }

    /// Kind and name offset of the record at `pos` (0 for kinds without names), from two words;
    /// the kind was checked by the opening pass.
    fn kind_and_name_at(&self, r: Reader<'_>, pos: usize) -> (Option<BtfKind>, u32) {
        let info = r.u32_at(pos + 4).unwrap_or(0);
        let kind = BtfKind::from_raw((info >> 24) & 0x1f);
        let named = !matches!(
            kind,
            Some(
                BtfKind::Ptr
                    | BtfKind::Array
                    | BtfKind::Volatile
                    | BtfKind::Const
                    | BtfKind::Restrict
                    | BtfKind::FuncProto
            )
        );
        (kind, if named { r.u32_at(pos).unwrap_or(0) } else { 0 })
    }

    /// Ids of this part's types (not the base's) whose essential name is `essential`, ascending.
    /// One scan per distinct name, cached (see the module docs for why not an index).
    pub fn ids_named(&self, essential: &str) -> Vec<u32> {
        if essential.is_empty() {
            return Vec::new();
        }
        if let Some(v) = self
            .names
            .lock()
            .ok()
            .and_then(|c| c.get(essential).cloned())
        {
            return v;
        }
        let want = essential.as_bytes();
        let r = self.reader();
        let own = self.bytes.get(self.strings.clone()).unwrap_or(&[]);
        let base = self.base.as_deref();
        let mut found = Vec::new();
        for (i, &pos) in self.offsets.iter().enumerate() {
            let (_, off) = self.kind_and_name_at(r, pos as usize);
            if off == 0 {
                continue;
            }
            let hit = match (off.checked_sub(self.str_base), base) {
                // The first byte rules out almost every name without a call to memcmp.
                (Some(local), _) => {
                    own.get(local as usize) == want.first() && essential_is(own, local, want)
                }
                (None, Some(b)) => b.essential_is_at(off, want),
                (None, None) => false,
            };
            if hit {
                found.push(self.first_id + i as u32);
            }
        }
        if let Ok(mut c) = self.names.lock() {
            c.insert(essential.to_string(), found.clone());
        }
        found
    }

    /// Whether the string at (global) offset `off` has essential name `want`.
    fn essential_is_at(&self, off: u32, want: &[u8]) -> bool {
        match (off.checked_sub(self.str_base), &self.base) {
            (Some(local), _) => essential_is(
                self.bytes.get(self.strings.clone()).unwrap_or(&[]),
                local,
                want,
            ),
            (None, Some(b)) => b.essential_is_at(off, want),
            (None, None) => false,
        }
    }

    /// The first type of this part of kind `kind` named exactly `name`.
    pub fn find(&self, name: &str, kind: BtfKind) -> Option<u32> {
        self.ids_named(essential_name(name))
            .into_iter()
            .find(|&id| self.kind_of(id).ok() == Some(kind) && self.name_of(id).ok() == Some(name))
    }
}

/// The opening pass: the type-section offset of every record, checking its kind is known and that
/// its header and kind-specific data fit. `first_id` numbers the records in errors.
fn scan(
    bytes: &[u8],
    types: Range<usize>,
    big_endian: bool,
    first_id: u32,
) -> Result<Vec<u32>, BtfError> {
    let data = bytes.get(types).unwrap_or(&[]);
    let r = Reader { data, big_endian };
    // Every record is at least 12 bytes: this bounds the allocation by the input size.
    let mut offsets = Vec::with_capacity(data.len() / TYPE_HEADER_LEN);
    let mut pos = 0usize;
    while pos < data.len() {
        let id = first_id.saturating_add(offsets.len() as u32);
        if id > BTF_MAX_TYPE {
            return Err(BtfError::TooManyTypes {
                max: BTF_MAX_TYPE,
                offset: pos,
            });
        }
        let have = data.len() - pos;
        let truncated = |need| BtfError::Truncated {
            id,
            offset: pos,
            need,
            have,
        };
        if have < TYPE_HEADER_LEN {
            return Err(truncated(TYPE_HEADER_LEN));
        }
        let info = r.u32_at(pos + 4).unwrap_or(0);
        let raw_kind = (info >> 24) & 0x1f;
        let kind = BtfKind::from_raw(raw_kind).ok_or(BtfError::UnknownKind {
            id,
            offset: pos,
            kind: raw_kind,
        })?;
        let len = parse::record_len(kind, (info & 0xffff) as usize);
        if len > have {
            return Err(truncated(len));
        }
        // The type section is at most u32::MAX bytes long (its length is a u32 in the header).
        offsets.push(pos as u32);
        pos += len;
    }
    Ok(offsets)
}

impl BtfView for LazyBtf {
    fn types_len(&self) -> u32 {
        self.first_id.saturating_add(self.offsets.len() as u32)
    }

    fn type_at(&self, id: u32) -> Result<Cow<'_, BtfType>, BtfError> {
        if id == 0 {
            return Err(BtfError::VoidHasNoType);
        }
        if id < self.first_id {
            if let Some(b) = &self.base {
                return b.type_at(id);
            }
        }
        let pos = self.pos_of(id)?;
        let (t, _, _) = parse::parse_one(self.reader(), pos, id)?;
        parse::check_type_refs(&t, id, self.str_len(), self.types_len())?;
        Ok(Cow::Owned(t))
    }

    fn kind_of(&self, id: u32) -> Result<BtfKind, BtfError> {
        if id == 0 {
            return Ok(BtfKind::Void);
        }
        if id < self.first_id {
            if let Some(b) = &self.base {
                return b.kind_of(id);
            }
        }
        let pos = self.pos_of(id)?;
        // The opening pass checked every record's kind.
        let (kind, _) = self.kind_and_name_at(self.reader(), pos);
        Ok(kind.unwrap_or(BtfKind::Void))
    }

    fn name_of(&self, id: u32) -> Result<&str, BtfError> {
        if id == 0 {
            return Ok("");
        }
        if id < self.first_id {
            if let Some(b) = &self.base {
                return b.name_of(id);
            }
        }
        let pos = self.pos_of(id)?;
        let (_, off) = self.kind_and_name_at(self.reader(), pos);
        self.string_at(off)
    }

    fn string_at(&self, off: u32) -> Result<&str, BtfError> {
        let Some(local) = off.checked_sub(self.str_base) else {
            return match &self.base {
                Some(b) => b.string_at(off),
                None => unreachable_str(off, self.str_len()),
            };
        };
        let strings = self.bytes.get(self.strings.clone()).unwrap_or(&[]);
        let rest = strings
            .get(local as usize..)
            .filter(|r| !r.is_empty())
            .ok_or(BtfError::StringOutOfRange {
                off,
                len: self.str_len(),
                referrer: None,
            })?;
        let end = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(BtfError::StringNotTerminated { off })?;
        std::str::from_utf8(&rest[..end]).map_err(|_| BtfError::StringNotUtf8 { off })
    }
}

/// A string offset below `str_base` without a base (cannot happen: `str_base` is 0 then).
fn unreachable_str(off: u32, len: u32) -> Result<&'static str, BtfError> {
    Err(BtfError::StringOutOfRange {
        off,
        len,
        referrer: None,
    })
}
