//! CO-RE relocation kinds (`enum bpf_core_relo_kind`, include/uapi/linux/bpf.h).

/// What a CO-RE relocation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoreKind {
    FieldByteOffset,
    FieldByteSize,
    FieldExists,
    FieldSigned,
    FieldLshiftU64,
    FieldRshiftU64,
    TypeIdLocal,
    TypeIdTarget,
    TypeExists,
    TypeSize,
    EnumvalExists,
    EnumvalValue,
    TypeMatches,
}

impl CoreKind {
    /// The kind for the raw number in a `.BTF.ext` record; `None` for numbers we do not know.
    pub fn from_raw(raw: u32) -> Option<CoreKind> {
        use CoreKind::*;
        Some(match raw {
            0 => FieldByteOffset,
            1 => FieldByteSize,
            2 => FieldExists,
            3 => FieldSigned,
            4 => FieldLshiftU64,
            5 => FieldRshiftU64,
            6 => TypeIdLocal,
            7 => TypeIdTarget,
            8 => TypeExists,
            9 => TypeSize,
            10 => EnumvalExists,
            11 => EnumvalValue,
            12 => TypeMatches,
            _ => return None,
        })
    }

    /// libbpf's name for the kind (`byte_off`, `type_id_target`, ...), as its logs print it.
    pub fn name(self) -> &'static str {
        use CoreKind::*;
        match self {
            FieldByteOffset => "byte_off",
            FieldByteSize => "byte_sz",
            FieldExists => "field_exists",
            FieldSigned => "signed",
            FieldLshiftU64 => "lshift_u64",
            FieldRshiftU64 => "rshift_u64",
            TypeIdLocal => "local_type_id",
            TypeIdTarget => "target_type_id",
            TypeExists => "type_exists",
            TypeSize => "type_size",
            EnumvalExists => "enumval_exists",
            EnumvalValue => "enumval_value",
            TypeMatches => "type_matches",
        }
    }

    /// Field-based kinds: the access string walks members and array elements.
    pub fn is_field(self) -> bool {
        use CoreKind::*;
        matches!(
            self,
            FieldByteOffset
                | FieldByteSize
                | FieldExists
                | FieldSigned
                | FieldLshiftU64
                | FieldRshiftU64
        )
    }

    /// Type-based kinds: the access string is "0".
    pub fn is_type(self) -> bool {
        use CoreKind::*;
        matches!(
            self,
            TypeIdLocal | TypeIdTarget | TypeExists | TypeSize | TypeMatches
        )
    }

    /// Enum-value kinds: the access string is the enumerator's index.
    pub fn is_enumval(self) -> bool {
        matches!(self, CoreKind::EnumvalExists | CoreKind::EnumvalValue)
    }

    /// Kinds whose value is 0 when nothing matches (no poisoning).
    pub fn zero_when_missing(self) -> bool {
        use CoreKind::*;
        matches!(
            self,
            FieldExists | TypeExists | TypeMatches | EnumvalExists | TypeIdTarget | TypeSize
        )
    }
}

impl std::fmt::Display for CoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
