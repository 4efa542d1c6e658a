//! Errors of the BTF layer. Each variant names where the problem is (byte offset, type id, section)
//! and, where someone can act on it, what to do.

use super::BtfKind;

/// Everything that can go wrong while reading, querying or fixing up BTF / .BTF.ext data.
#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    /// The blob is shorter than the fixed part of the header.
    #[error("BTF data is {len} bytes, too short for the {need}-byte header; is this really a .BTF section?")]
    TooShort { len: usize, need: usize },

    /// The first two bytes are not 0xeb9f in either byte order.
    #[error("bad {what} magic {magic:#06x} at offset 0 (expected 0xeb9f in either byte order); not BTF data")]
    BadMagic { what: &'static str, magic: u16 },

    /// A BTF version this parser does not know.
    #[error("unsupported {what} version {version} at offset 2 (only version 1 is known)")]
    BadVersion { what: &'static str, version: u8 },

    /// hdr_len is too small, misaligned or runs past the end of the data.
    #[error("bad {what} header length {hdr_len} at offset 4 ({reason}); the section is corrupt")]
    BadHeaderLen {
        what: &'static str,
        hdr_len: u32,
        reason: &'static str,
    },

    /// A section described by the header does not fit in the data.
    #[error(
        "{section} section at offset {off} (+{len} bytes after the header) runs past the {avail} bytes \
         available; the data is truncated or corrupt"
    )]
    SectionOutOfBounds {
        section: &'static str,
        off: u32,
        len: u32,
        avail: usize,
    },

    /// The type and string sections overlap or are misaligned.
    #[error("BTF sections are inconsistent: {reason} (type section {type_off}+{type_len}, string section {str_off}+{str_len})")]
    BadSectionLayout {
        reason: &'static str,
        type_off: u32,
        type_len: u32,
        str_off: u32,
        str_len: u32,
    },

    /// The string section does not start and end with a NUL byte.
    #[error("BTF string section at offset {offset} ({len} bytes) is malformed: {reason}")]
    BadStringSection {
        offset: usize,
        len: u32,
        reason: &'static str,
    },

    /// A type record is cut off by the end of the type section.
    #[error(
        "BTF type [{id}] at type-section offset {offset} is truncated: it needs {need} bytes but only {have} \
         remain"
    )]
    Truncated {
        id: u32,
        offset: usize,
        need: usize,
        have: usize,
    },

    /// A kind number this parser does not know (0 or > 19).
    #[error("BTF type [{id}] at type-section offset {offset} has unknown kind {kind}; the object may need a newer rawsnoop")]
    UnknownKind { id: u32, offset: usize, kind: u32 },

    /// A type whose fields make no sense (e.g. a PTR with a vlen).
    #[error("BTF type [{id}] at type-section offset {offset} is invalid: {reason}")]
    InvalidType {
        id: u32,
        offset: usize,
        reason: String,
    },

    /// More types than the kernel's BTF_MAX_TYPE.
    #[error("BTF has more than {max} types (at type-section offset {offset}); the kernel would reject it")]
    TooManyTypes { max: u32, offset: usize },

    /// A type id that does not exist.
    #[error("BTF type id {id} is out of range: valid ids are 0..{len}{}", referrer_note(*.referrer))]
    TypeIdOutOfRange {
        id: u32,
        len: u32,
        referrer: Option<u32>,
    },

    /// Id 0 is `void`, which has no type record.
    #[error("BTF type id 0 is void and has no type record")]
    VoidHasNoType,

    /// A string offset outside the string section.
    #[error("BTF string offset {off} is past the end of the {len}-byte string section{}", referrer_note(*.referrer))]
    StringOutOfRange {
        off: u32,
        len: u32,
        referrer: Option<u32>,
    },

    /// A string that runs to the end of the section without a NUL.
    #[error("BTF string at offset {off} is not NUL-terminated")]
    StringNotTerminated { off: u32 },

    /// A string that is not UTF-8.
    #[error("BTF string at offset {off} is not valid UTF-8")]
    StringNotUtf8 { off: u32 },

    /// A chain of typedef/const/array/... references that loops or is absurdly deep.
    #[error(
        "BTF type [{id}]: reference chain is longer than {max} (a cycle?); the BTF is corrupt"
    )]
    Cycle { id: u32, max: u32 },

    /// A size computation that does not fit in u32 (e.g. huge nelems).
    #[error("BTF type [{id}]: size overflows u32 (array nelems times element size too large)")]
    SizeOverflow { id: u32 },

    /// A type that has no size (void, FUNC, FUNC_PROTO, FWD, DECL_TAG).
    #[error("BTF type [{id}] of kind {kind:?} has no size")]
    NoSize { id: u32, kind: BtfKind },

    /// A DATASEC that the fixup cannot complete.
    #[error("BTF DATASEC '{section}' (type [{id}]): {reason}")]
    Datasec {
        section: String,
        id: u32,
        reason: String,
    },

    /// Malformed .BTF.ext data.
    #[error(".BTF.ext {area} at offset {offset}: {reason}")]
    Ext {
        area: &'static str,
        offset: usize,
        reason: String,
    },
}

fn referrer_note(referrer: Option<u32>) -> String {
    match referrer {
        Some(r) => format!(" (referenced by type [{r}])"),
        None => String::new(),
    }
}
