//! The BTF type model: kinds, type records and their kind-specific trailing data
//! (include/uapi/linux/btf.h).

/// A BTF kind. The discriminants are the on-disk kind numbers (`Void` is 0, which is never on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BtfKind {
    Void,
    Int,
    Ptr,
    Array,
    Struct,
    Union,
    Enum,
    Fwd,
    Typedef,
    Volatile,
    Const,
    Restrict,
    Func,
    FuncProto,
    Var,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl BtfKind {
    /// The kind for an on-disk kind number (1..=19); `None` for 0 and unknown numbers.
    pub fn from_raw(kind: u32) -> Option<BtfKind> {
        use BtfKind::*;
        Some(match kind {
            1 => Int,
            2 => Ptr,
            3 => Array,
            4 => Struct,
            5 => Union,
            6 => Enum,
            7 => Fwd,
            8 => Typedef,
            9 => Volatile,
            10 => Const,
            11 => Restrict,
            12 => Func,
            13 => FuncProto,
            14 => Var,
            15 => Datasec,
            16 => Float,
            17 => DeclTag,
            18 => TypeTag,
            19 => Enum64,
            _ => return None,
        })
    }

    /// The on-disk kind number (0 for `Void`).
    pub fn raw(self) -> u32 {
        use BtfKind::*;
        match self {
            Void => 0,
            Int => 1,
            Ptr => 2,
            Array => 3,
            Struct => 4,
            Union => 5,
            Enum => 6,
            Fwd => 7,
            Typedef => 8,
            Volatile => 9,
            Const => 10,
            Restrict => 11,
            Func => 12,
            FuncProto => 13,
            Var => 14,
            Datasec => 15,
            Float => 16,
            DeclTag => 17,
            TypeTag => 18,
            Enum64 => 19,
        }
    }

    /// The kernel's upper-case name, as bpftool prints it (`STRUCT`, `FUNC_PROTO`, ...).
    pub fn name(self) -> &'static str {
        use BtfKind::*;
        match self {
            Void => "VOID",
            Int => "INT",
            Ptr => "PTR",
            Array => "ARRAY",
            Struct => "STRUCT",
            Union => "UNION",
            Enum => "ENUM",
            Fwd => "FWD",
            Typedef => "TYPEDEF",
            Volatile => "VOLATILE",
            Const => "CONST",
            Restrict => "RESTRICT",
            Func => "FUNC",
            FuncProto => "FUNC_PROTO",
            Var => "VAR",
            Datasec => "DATASEC",
            Float => "FLOAT",
            DeclTag => "DECL_TAG",
            TypeTag => "TYPE_TAG",
            Enum64 => "ENUM64",
        }
    }
}

/// `BTF_INT_SIGNED` bit of an INT's encoding.
pub const BTF_INT_SIGNED: u8 = 1;
/// `BTF_INT_CHAR` bit of an INT's encoding.
pub const BTF_INT_CHAR: u8 = 2;
/// `BTF_INT_BOOL` bit of an INT's encoding.
pub const BTF_INT_BOOL: u8 = 4;

/// FUNC linkage: static.
pub const BTF_FUNC_STATIC: u32 = 0;
/// FUNC linkage: global.
pub const BTF_FUNC_GLOBAL: u32 = 1;
/// FUNC linkage: extern (the kernel rejects it).
pub const BTF_FUNC_EXTERN: u32 = 2;
/// VAR linkage: static.
pub const BTF_VAR_STATIC: u32 = 0;
/// VAR linkage: global, allocated in this object.
pub const BTF_VAR_GLOBAL_ALLOCATED: u32 = 1;
/// VAR linkage: extern (resolved by the loader).
pub const BTF_VAR_GLOBAL_EXTERN: u32 = 2;

/// A STRUCT/UNION member. `offset_bits` is the bit offset; `bitfield_size` is non-zero for bitfields
/// (only representable when the struct has kind_flag set, which the encoder does automatically).
#[derive(Debug, Clone)]
pub struct Member {
    pub name_off: u32,
    pub type_id: u32,
    pub offset_bits: u32,
    pub bitfield_size: u32,
}

/// A FUNC_PROTO parameter. The last parameter `{0, 0}` means varargs.
#[derive(Debug, Clone)]
pub struct Param {
    pub name_off: u32,
    pub type_id: u32,
}

/// An ENUM/ENUM64 value. For ENUM it is the 32-bit value sign- or zero-extended according to
/// `signed`; for ENUM64 it carries the 64 bits (reinterpret as u64 when unsigned).
#[derive(Debug, Clone)]
pub struct EnumValue {
    pub name_off: u32,
    pub value: i64,
}

/// One variable (or function) placed in a DATASEC.
#[derive(Debug, Clone)]
pub struct VarSecinfo {
    pub type_id: u32,
    pub offset: u32,
    pub size: u32,
}

/// One BTF type record (ids start at 1; id 0 is `void` and has no record).
#[derive(Debug, Clone)]
pub enum BtfType {
    Int {
        name_off: u32,
        size: u32,
        encoding: u8,
        offset: u8,
        bits: u8,
    },
    Ptr {
        type_id: u32,
    },
    Array {
        elem_type: u32,
        index_type: u32,
        nelems: u32,
    },
    Struct {
        name_off: u32,
        size: u32,
        members: Vec<Member>,
    },
    Union {
        name_off: u32,
        size: u32,
        members: Vec<Member>,
    },
    Enum {
        name_off: u32,
        size: u32,
        signed: bool,
        values: Vec<EnumValue>,
    },
    Enum64 {
        name_off: u32,
        size: u32,
        signed: bool,
        values: Vec<EnumValue>,
    },
    Fwd {
        name_off: u32,
        is_union: bool,
    },
    Typedef {
        name_off: u32,
        type_id: u32,
    },
    Volatile {
        type_id: u32,
    },
    Const {
        type_id: u32,
    },
    Restrict {
        type_id: u32,
    },
    Func {
        name_off: u32,
        proto: u32,
        linkage: u32,
    },
    FuncProto {
        ret: u32,
        params: Vec<Param>,
    },
    Var {
        name_off: u32,
        type_id: u32,
        linkage: u32,
    },
    Datasec {
        name_off: u32,
        size: u32,
        vars: Vec<VarSecinfo>,
    },
    Float {
        name_off: u32,
        size: u32,
    },
    DeclTag {
        name_off: u32,
        type_id: u32,
        component_idx: i32,
    },
    TypeTag {
        name_off: u32,
        type_id: u32,
    },
}

impl BtfType {
    /// The kind of this record.
    pub fn kind(&self) -> BtfKind {
        match self {
            BtfType::Int { .. } => BtfKind::Int,
            BtfType::Ptr { .. } => BtfKind::Ptr,
            BtfType::Array { .. } => BtfKind::Array,
            BtfType::Struct { .. } => BtfKind::Struct,
            BtfType::Union { .. } => BtfKind::Union,
            BtfType::Enum { .. } => BtfKind::Enum,
            BtfType::Enum64 { .. } => BtfKind::Enum64,
            BtfType::Fwd { .. } => BtfKind::Fwd,
            BtfType::Typedef { .. } => BtfKind::Typedef,
            BtfType::Volatile { .. } => BtfKind::Volatile,
            BtfType::Const { .. } => BtfKind::Const,
            BtfType::Restrict { .. } => BtfKind::Restrict,
            BtfType::Func { .. } => BtfKind::Func,
            BtfType::FuncProto { .. } => BtfKind::FuncProto,
            BtfType::Var { .. } => BtfKind::Var,
            BtfType::Datasec { .. } => BtfKind::Datasec,
            BtfType::Float { .. } => BtfKind::Float,
            BtfType::DeclTag { .. } => BtfKind::DeclTag,
            BtfType::TypeTag { .. } => BtfKind::TypeTag,
        }
    }

    /// The string offset of the type's name; 0 when the kind has no name (PTR, ARRAY, CONST, ...).
    pub fn name_off(&self) -> u32 {
        match self {
            BtfType::Int { name_off, .. }
            | BtfType::Struct { name_off, .. }
            | BtfType::Union { name_off, .. }
            | BtfType::Enum { name_off, .. }
            | BtfType::Enum64 { name_off, .. }
            | BtfType::Fwd { name_off, .. }
            | BtfType::Typedef { name_off, .. }
            | BtfType::Func { name_off, .. }
            | BtfType::Var { name_off, .. }
            | BtfType::Datasec { name_off, .. }
            | BtfType::Float { name_off, .. }
            | BtfType::DeclTag { name_off, .. }
            | BtfType::TypeTag { name_off, .. } => *name_off,
            BtfType::Ptr { .. }
            | BtfType::Array { .. }
            | BtfType::Volatile { .. }
            | BtfType::Const { .. }
            | BtfType::Restrict { .. }
            | BtfType::FuncProto { .. } => 0,
        }
    }

    /// The single type this one refers to, for the "modifier-like" kinds
    /// (PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG, VAR, FUNC, DECL_TAG, ARRAY element).
    pub fn ref_type(&self) -> Option<u32> {
        match self {
            BtfType::Ptr { type_id }
            | BtfType::Volatile { type_id }
            | BtfType::Const { type_id }
            | BtfType::Restrict { type_id }
            | BtfType::Typedef { type_id, .. }
            | BtfType::TypeTag { type_id, .. }
            | BtfType::Var { type_id, .. }
            | BtfType::DeclTag { type_id, .. } => Some(*type_id),
            BtfType::Func { proto, .. } => Some(*proto),
            BtfType::Array { elem_type, .. } => Some(*elem_type),
            _ => None,
        }
    }

    /// Calls `f` with every string offset this record uses (its name, member/param/value names).
    pub fn for_each_name_off(&self, mut f: impl FnMut(u32)) {
        f(self.name_off());
        match self {
            BtfType::Struct { members, .. } | BtfType::Union { members, .. } => {
                members.iter().for_each(|m| f(m.name_off))
            }
            BtfType::Enum { values, .. } | BtfType::Enum64 { values, .. } => {
                values.iter().for_each(|v| f(v.name_off))
            }
            BtfType::FuncProto { params, .. } => params.iter().for_each(|p| f(p.name_off)),
            _ => {}
        }
    }

    /// Calls `f` with every type id this record refers to.
    pub fn for_each_type_ref(&self, mut f: impl FnMut(u32)) {
        if let Some(t) = self.ref_type() {
            f(t);
        }
        match self {
            BtfType::Array { index_type, .. } => f(*index_type),
            BtfType::Struct { members, .. } | BtfType::Union { members, .. } => {
                members.iter().for_each(|m| f(m.type_id))
            }
            BtfType::FuncProto { ret, params } => {
                f(*ret);
                params.iter().for_each(|p| f(p.type_id));
            }
            BtfType::Datasec { vars, .. } => vars.iter().for_each(|v| f(v.type_id)),
            _ => {}
        }
    }
}
