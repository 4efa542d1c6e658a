//! [`LazyBtf`]: a BTF blob read on demand, for target BTF (the kernel's vmlinux BTF is ~5.5 MB and
//! ~127k types; a CO-RE relocation touches a few dozen of them).
//!
//! Opening does one cheap pass over the type section: the header, the string section's first and
//! last byte, and for every record its kind and its length (vlen fits in what remains), recording
//! each record's byte offset and name offset. Nothing is decoded, allocated per type or indexed. A type is decoded
//! from the bytes when asked for ([`BtfView::type_at`]), with every read bounds-checked and its
//! names and references checked against the sections then, so a hostile file gives errors at use,
//! never a panic. Split BTF (kernel modules) sits on top of a shared base.
//!
//! Name lookup ([`LazyBtf::ids_named`]) is a scan per distinct essential name, cached, as libbpf's
//! candidate cache does, not an index. Measured on the 2-vCPU development machine (Linux 6.18,
//! 127k types, other builds running): the opening pass takes ~1 ms, one lookup ~0.3 ms (a memmem
//! of the 2 MB string section for the name, ~0.23 ms, then a compare of the recorded name offsets,
//! ~0.05 ms), while a `HashMap` of every essential name took 36 ms or more, and any index must at
//! least read every name once (all 2 MB, at random). The built-in tracer looks up 1 to 3 names,
//! and objects with many CO-RE types a few dozen, so scanning wins for both.

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
    /// Read into memory (`--btf FILE`, module BTF, kernels before 6.16, tests).
    Owned(Vec<u8>),
    /// A read-only mapping: of `/sys/kernel/btf/vmlinux` itself ([`Bytes::map_kernel_btf`]), or
    /// of memory the kernel's BTF was copied into (`core::kernel_btf`).
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
    /// Name offset of type id `first_id + i` (0 for kinds without names), for name lookups.
    name_offs: Vec<u32>,
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
        let Scanned { offsets, names } = scan(&bytes, hdr.types.clone(), hdr.big_endian, 1)?;
        Ok(LazyBtf {
            big_endian: hdr.big_endian,
            types: hdr.types,
            strings: hdr.strings,
            offsets,
            name_offs: names,
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
        let Scanned { offsets, names } = scan(&bytes, hdr.types.clone(), hdr.big_endian, first_id)?;
        Ok(LazyBtf {
            big_endian: hdr.big_endian,
            types: hdr.types,
            strings: hdr.strings,
            offsets,
            name_offs: names,
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

    /// Whether the bytes are a read-only mapping (not a `Vec`).
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

    /// Index of `id` in this part's tables (`id` must be in this part, not the base).
    fn index_of(&self, id: u32) -> Result<usize, BtfError> {
        id.checked_sub(self.first_id)
            .map(|i| i as usize)
            .filter(|&i| i < self.offsets.len())
            .ok_or(BtfError::TypeIdOutOfRange {
                id,
                len: self.types_len(),
                referrer: None,
            })
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
        // Two steps, neither touching the strings per type: the string offsets whose essential
        // name is `essential` (a memmem over the string section; BTF strings are deduplicated, so
        // these are a handful), then the records whose name offset is one of them.
        let names = self.name_offsets(essential.as_bytes());
        let mut found = Vec::new();
        if names.is_empty() {
            return found;
        }
        let ids = self.name_offs.iter().enumerate();
        let id = |i: usize| self.first_id + i as u32;
        match names[..] {
            // The common case (one string of that name, deduplicated): a plain compare per record.
            [only] => found.extend(ids.filter(|&(_, &o)| o == only).map(|(i, _)| id(i))),
            _ => found.extend(
                ids.filter(|&(_, o)| names.binary_search(o).is_ok())
                    .map(|(i, _)| id(i)),
            ),
        }
        if let Ok(mut c) = self.names.lock() {
            c.insert(essential.to_string(), found.clone());
        }
        found
    }

    /// Sorted (global) offsets of the strings, in this part's string section and its base's, whose
    /// essential name is `want` (non-empty).
    fn name_offsets(&self, want: &[u8]) -> Vec<u32> {
        let mut out = match &self.base {
            Some(b) => b.name_offsets(want),
            None => Vec::new(),
        };
        let own = self.bytes.get(self.strings.clone()).unwrap_or(&[]);
        // A string starts at offset 0 (a split section has no leading "") or right after a NUL.
        if own.starts_with(want) && essential_is(own, 0, want) {
            out.push(self.str_base);
        }
        let mut needle = Vec::with_capacity(want.len() + 1);
        needle.push(0);
        needle.extend_from_slice(want);
        let mut from = 0;
        while let Some(p) = own.get(from..).and_then(|h| find(h, &needle)) {
            let at = from + p + 1;
            // `at` < the section's length, which was checked to fit below 2 GiB with `str_base`.
            if essential_is(own, at as u32, want) {
                out.push(self.str_base + at as u32);
            }
            from = at;
        }
        out.sort_unstable();
        out
    }

    /// The first type of this part of kind `kind` named exactly `name`.
    pub fn find(&self, name: &str, kind: BtfKind) -> Option<u32> {
        self.ids_named(essential_name(name))
            .into_iter()
            .find(|&id| self.kind_of(id).ok() == Some(kind) && self.name_of(id).ok() == Some(name))
    }
}

/// Position of the first occurrence of `needle` in `hay` (glibc's memmem is vectorised; a scan
/// of the 2 MB vmlinux string section takes tens of microseconds).
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    // SAFETY: both pointers come from live slices with their exact lengths; memmem(3) reads only
    // within them and returns either NULL or a pointer to the start of a match inside `hay`.
    let p = unsafe {
        libc::memmem(
            hay.as_ptr().cast(),
            hay.len(),
            needle.as_ptr().cast(),
            needle.len(),
        )
    };
    (!p.is_null()).then(|| p as usize - hay.as_ptr() as usize)
}

/// Whether records of `kind` carry a name (the others' name_off is ignored, as `BtfType::name_off`
/// does).
fn is_named(kind: BtfKind) -> bool {
    !matches!(
        kind,
        BtfKind::Ptr
            | BtfKind::Array
            | BtfKind::Volatile
            | BtfKind::Const
            | BtfKind::Restrict
            | BtfKind::FuncProto
    )
}

/// What the opening pass records: each record's type-section offset and name offset (0 for kinds
/// without names), for ids `first_id..`.
struct Scanned {
    offsets: Vec<u32>,
    names: Vec<u32>,
}

/// The opening pass: the type-section offset and name offset of every record, checking its kind
/// is known and that its header and kind-specific data fit. `first_id` numbers the records in
/// errors. Table-driven (one lookup per record for its length), as this walk is a dependent chain
/// over ~150k records.
fn scan(
    bytes: &[u8],
    types: Range<usize>,
    big_endian: bool,
    first_id: u32,
) -> Result<Scanned, BtfError> {
    let data = bytes.get(types).unwrap_or(&[]);
    // Per raw kind (5 bits): fixed record length, bytes per vlen entry, whether named; `None` for
    // kinds this parser does not know. Derived from `parse::record_len`.
    let mut table = [None; 32];
    for (raw, slot) in table.iter_mut().enumerate() {
        *slot = BtfKind::from_raw(raw as u32).map(|k| {
            let fixed = parse::record_len(k, 0);
            (fixed, parse::record_len(k, 1) - fixed, is_named(k))
        });
    }
    let word = |b: &[u8]| {
        let b = [b[0], b[1], b[2], b[3]];
        if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        }
    };
    // Every record is at least 12 bytes: this bounds the allocations by the input size.
    let cap = data.len() / TYPE_HEADER_LEN;
    let (mut offsets, mut names) = (Vec::with_capacity(cap), Vec::with_capacity(cap));
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
        let Some(head) = data.get(pos..pos + TYPE_HEADER_LEN) else {
            return Err(truncated(TYPE_HEADER_LEN));
        };
        let info = word(&head[4..8]);
        let raw_kind = (info >> 24) & 0x1f;
        let Some((fixed, per, named)) = table[raw_kind as usize] else {
            return Err(BtfError::UnknownKind {
                id,
                offset: pos,
                kind: raw_kind,
            });
        };
        let len = fixed + per * (info & 0xffff) as usize;
        if len > have {
            return Err(truncated(len));
        }
        // The type section is at most u32::MAX bytes long (its length is a u32 in the header).
        offsets.push(pos as u32);
        names.push(if named { word(&head[0..4]) } else { 0 });
        pos += len;
    }
    Ok(Scanned { offsets, names })
}

impl LazyBtf {
    /// The base BTF, when this is split BTF and `id` is one of the base's types.
    fn base_of(&self, id: u32) -> Option<&LazyBtf> {
        self.base.as_deref().filter(|_| id < self.first_id)
    }
}

impl BtfView for LazyBtf {
    fn types_len(&self) -> u32 {
        self.first_id.saturating_add(self.offsets.len() as u32)
    }

    fn type_at(&self, id: u32) -> Result<Cow<'_, BtfType>, BtfError> {
        if id == 0 {
            return Err(BtfError::VoidHasNoType);
        }
        if let Some(b) = self.base_of(id) {
            return b.type_at(id);
        }
        let pos = self.offsets[self.index_of(id)?] as usize;
        let (t, _, _) = parse::parse_one(self.reader(), pos, id)?;
        parse::check_type_refs(&t, id, self.str_len(), self.types_len())?;
        Ok(Cow::Owned(t))
    }

    fn kind_of(&self, id: u32) -> Result<BtfKind, BtfError> {
        if id == 0 {
            return Ok(BtfKind::Void);
        }
        if let Some(b) = self.base_of(id) {
            return b.kind_of(id);
        }
        let pos = self.offsets[self.index_of(id)?] as usize;
        let info = self.reader().u32_at(pos + 4).unwrap_or(0);
        // The opening pass checked every record's kind.
        Ok(BtfKind::from_raw((info >> 24) & 0x1f).unwrap_or(BtfKind::Void))
    }

    fn name_of(&self, id: u32) -> Result<&str, BtfError> {
        if id == 0 {
            return Ok("");
        }
        if let Some(b) = self.base_of(id) {
            return b.name_of(id);
        }
        let off = self.name_offs[self.index_of(id)?];
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
        super::c_str_at(strings, local as usize, off, self.str_len())
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
