//! Replacing BTF kinds an older kernel lacks (keeping every type id and string offset stable), and
//! tiny probe blobs to find out which kinds the running kernel accepts.
//!
//! The replacements follow what libbpf does in `bpf_object__sanitize_btf`, so the result is what
//! kernels of that age are known to accept.

use super::types::*;
use super::Btf;

/// Which optional BTF features the running kernel accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BtfFeatures {
    /// FUNC and FUNC_PROTO (Linux 5.0).
    pub func: bool,
    /// FUNC with global linkage (Linux 5.6).
    pub func_global: bool,
    /// VAR and DATASEC (Linux 5.2).
    pub datasec: bool,
    /// FLOAT (Linux 5.13).
    pub float: bool,
    /// DECL_TAG (Linux 5.16).
    pub decl_tag: bool,
    /// TYPE_TAG (Linux 5.17).
    pub type_tag: bool,
    /// ENUM64 and signed ENUM (Linux 6.0).
    pub enum64: bool,
}

impl BtfFeatures {
    /// Every feature supported (a current kernel).
    pub fn all() -> Self {
        BtfFeatures {
            func: true,
            func_global: true,
            datasec: true,
            float: true,
            decl_tag: true,
            type_tag: true,
            enum64: true,
        }
    }

    /// Records the outcome of probing `feature`.
    pub fn set(&mut self, feature: BtfFeatureKind, supported: bool) {
        match feature {
            BtfFeatureKind::Func => self.func = supported,
            BtfFeatureKind::FuncGlobal => self.func_global = supported,
            BtfFeatureKind::Datasec => self.datasec = supported,
            BtfFeatureKind::Float => self.float = supported,
            BtfFeatureKind::DeclTag => self.decl_tag = supported,
            BtfFeatureKind::TypeTag => self.type_tag = supported,
            BtfFeatureKind::Enum64 => self.enum64 = supported,
        }
    }
}

/// One optional BTF feature, probed with [`probe_blob`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BtfFeatureKind {
    Func,
    FuncGlobal,
    Datasec,
    Float,
    DeclTag,
    TypeTag,
    Enum64,
}

impl BtfFeatureKind {
    /// Every feature, in probing order.
    pub const ALL: [BtfFeatureKind; 7] = [
        BtfFeatureKind::Func,
        BtfFeatureKind::FuncGlobal,
        BtfFeatureKind::Datasec,
        BtfFeatureKind::Float,
        BtfFeatureKind::DeclTag,
        BtfFeatureKind::TypeTag,
        BtfFeatureKind::Enum64,
    ];
}

fn int(btf: &mut Btf) -> u32 {
    let name_off = btf.add_string("int");
    btf.add_type(BtfType::Int {
        name_off,
        size: 4,
        encoding: BTF_INT_SIGNED,
        offset: 0,
        bits: 32,
    })
}

fn var(btf: &mut Btf, type_id: u32, linkage: u32) -> u32 {
    let name_off = btf.add_string("x");
    btf.add_type(BtfType::Var {
        name_off,
        type_id,
        linkage,
    })
}

/// A tiny raw BTF blob (native byte order) that uses exactly one optional feature on top of what
/// older kernels already accept; load it with BPF_BTF_LOAD: success means the kernel has it.
pub fn probe_blob(feature: BtfFeatureKind) -> Vec<u8> {
    let mut btf = Btf::new();
    match feature {
        BtfFeatureKind::Func | BtfFeatureKind::FuncGlobal => {
            let int = int(&mut btf);
            let x = btf.add_string("x");
            let proto = btf.add_type(BtfType::FuncProto {
                ret: 0,
                params: vec![Param {
                    name_off: x,
                    type_id: int,
                }],
            });
            let name_off = btf.add_string("f");
            let linkage = match feature {
                BtfFeatureKind::FuncGlobal => BTF_FUNC_GLOBAL,
                _ => BTF_FUNC_STATIC,
            };
            btf.add_type(BtfType::Func {
                name_off,
                proto,
                linkage,
            });
        }
        BtfFeatureKind::Datasec => {
            let int = int(&mut btf);
            let v = var(&mut btf, int, BTF_VAR_GLOBAL_ALLOCATED);
            let name_off = btf.add_string(".data");
            btf.add_type(BtfType::Datasec {
                name_off,
                size: 4,
                vars: vec![VarSecinfo {
                    type_id: v,
                    offset: 0,
                    size: 4,
                }],
            });
        }
        BtfFeatureKind::Float => {
            let name_off = btf.add_string("float");
            btf.add_type(BtfType::Float { name_off, size: 4 });
        }
        BtfFeatureKind::DeclTag => {
            let int = int(&mut btf);
            let v = var(&mut btf, int, BTF_VAR_STATIC);
            let name_off = btf.add_string("tag");
            btf.add_type(BtfType::DeclTag {
                name_off,
                type_id: v,
                component_idx: -1,
            });
        }
        BtfFeatureKind::TypeTag => {
            let int = int(&mut btf);
            let name_off = btf.add_string("tag");
            let tag = btf.add_type(BtfType::TypeTag {
                name_off,
                type_id: int,
            });
            btf.add_type(BtfType::Ptr { type_id: tag });
        }
        BtfFeatureKind::Enum64 => {
            let name_off = btf.add_string("e");
            let v = btf.add_string("v");
            btf.add_type(BtfType::Enum64 {
                name_off,
                size: 8,
                signed: false,
                values: vec![EnumValue {
                    name_off: v,
                    value: 0x1_0000_0000,
                }],
            });
        }
    }
    btf.to_bytes()
}

/// A copy of `btf` with the kinds the kernel lacks replaced by ones it accepts, keeping every type id
/// and every existing string offset stable (new strings/types are only appended):
///
/// - no DATASEC: VAR -> 1-byte INT with the VAR's name; DATASEC -> STRUCT of the same size whose
///   members are the variables (name with '.' replaced by '_', as a new string);
/// - no FUNC: FUNC_PROTO -> ENUM (one value per param; unnamed params named `__param`), FUNC ->
///   TYPEDEF of it;
/// - no global FUNC: global FUNC -> static;
/// - no FLOAT: FLOAT -> anonymous empty STRUCT of the same size;
/// - no DECL_TAG: DECL_TAG -> anonymous 1-byte INT;
/// - no TYPE_TAG: TYPE_TAG -> CONST of the same type;
/// - no ENUM64: signed ENUM -> unsigned, ENUM64 -> UNION of the same size whose members all have a
///   new 1-byte INT type `enum64_placeholder`.
pub fn sanitize(btf: &Btf, features: &BtfFeatures) -> Btf {
    let mut out = btf.clone();
    let mut enum64_placeholder = None;
    let mut unnamed_param = None;
    for idx in 0..out.types.len() {
        let Some(t) = out.types.get(idx) else { break };
        let new = match t {
            BtfType::Var { name_off, .. } if !features.datasec => Some(BtfType::Int {
                name_off: *name_off,
                size: 1,
                encoding: 0,
                offset: 0,
                bits: 8,
            }),
            BtfType::Datasec {
                name_off,
                size,
                vars,
            } if !features.datasec => {
                let members = vars
                    .iter()
                    .map(|v| Member {
                        name_off: btf.type_by_id(v.type_id).map_or(0, |t| t.name_off()),
                        type_id: v.type_id,
                        offset_bits: v.offset.saturating_mul(8),
                        bitfield_size: 0,
                    })
                    .collect();
                let (name_off, size) = (*name_off, *size);
                let name = btf.string_at(name_off).unwrap_or("").replace('.', "_");
                let name_off = if name.is_empty() {
                    0
                } else {
                    out.add_string(&name)
                };
                Some(BtfType::Struct {
                    name_off,
                    size,
                    members,
                })
            }
            BtfType::FuncProto { params, .. } if !features.func => {
                let mut values: Vec<EnumValue> = params
                    .iter()
                    .map(|p| EnumValue {
                        name_off: p.name_off,
                        value: p.type_id as i64,
                    })
                    .collect();
                // Kernels check enum value names are identifiers; unnamed params get a name.
                if values.iter().any(|v| v.name_off == 0) {
                    let unnamed = *unnamed_param.get_or_insert_with(|| out.add_string("__param"));
                    for v in values.iter_mut().filter(|v| v.name_off == 0) {
                        v.name_off = unnamed;
                    }
                }
                Some(BtfType::Enum {
                    name_off: 0,
                    size: 4,
                    signed: false,
                    values,
                })
            }
            BtfType::Func {
                name_off, proto, ..
            } if !features.func => Some(BtfType::Typedef {
                name_off: *name_off,
                type_id: *proto,
            }),
            BtfType::Func {
                name_off,
                proto,
                linkage,
            } if !features.func_global && *linkage != BTF_FUNC_STATIC => Some(BtfType::Func {
                name_off: *name_off,
                proto: *proto,
                linkage: BTF_FUNC_STATIC,
            }),
            BtfType::Float { size, .. } if !features.float => Some(BtfType::Struct {
                name_off: 0,
                size: *size,
                members: Vec::new(),
            }),
            BtfType::DeclTag { .. } if !features.decl_tag => Some(BtfType::Int {
                name_off: 0,
                size: 1,
                encoding: 0,
                offset: 0,
                bits: 8,
            }),
            BtfType::TypeTag { type_id, .. } if !features.type_tag => {
                Some(BtfType::Const { type_id: *type_id })
            }
            BtfType::Enum {
                name_off,
                size,
                signed: true,
                values,
            } if !features.enum64 => Some(BtfType::Enum {
                name_off: *name_off,
                size: *size,
                signed: false,
                values: values.clone(),
            }),
            BtfType::Enum64 {
                name_off,
                size,
                values,
                ..
            } if !features.enum64 => {
                let (name_off, size) = (*name_off, *size);
                let names: Vec<u32> = values.iter().map(|v| v.name_off).collect();
                let placeholder = *enum64_placeholder.get_or_insert_with(|| {
                    let name_off = out.add_string("enum64_placeholder");
                    out.add_type(BtfType::Int {
                        name_off,
                        size: 1,
                        encoding: 0,
                        offset: 0,
                        bits: 8,
                    })
                });
                Some(BtfType::Union {
                    name_off,
                    size,
                    members: names
                        .into_iter()
                        .map(|name_off| Member {
                            name_off,
                            type_id: placeholder,
                            offset_bits: 0,
                            bitfield_size: 0,
                        })
                        .collect(),
                })
            }
            _ => None,
        };
        if let (Some(new), Some(slot)) = (new, out.types.get_mut(idx)) {
            *slot = new;
        }
    }
    out
}
