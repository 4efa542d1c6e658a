//! Values of a relocation from a resolved spec, and the instruction patching (libbpf relo_core.c
//! `bpf_core_calc_field_relo` / `_type_relo` / `_enumval_relo` and `bpf_core_patch_insn`,
//! reimplemented).

use crate::loader::btf::types::BTF_INT_SIGNED;
use crate::loader::btf::{BtfType, BtfView};
use crate::loader::spec::Insn;

use super::kind::CoreKind;
use super::spec::{enum_values, member_of, skip_mods, Spec};

/// The helper id libbpf calls in a poisoned instruction (0xbad2310, "bad relo"); the verifier
/// rejects it as an unknown function if the instruction is reachable.
pub const POISON_HELPER: i32 = 0xbad2310;

/// One side's computed value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Value {
    pub val: u64,
    /// Memory size of the field (field byte offsets of non-bitfields), else 0.
    pub size: u32,
    /// The field's type id (with `size`), else 0.
    pub type_id: u32,
}

/// What to do with the instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resolution {
    pub orig: Value,
    pub new: Value,
    pub poison: bool,
    /// Check the instruction holds `orig` before patching.
    pub validate: bool,
    /// LDX/ST/STX must not change size (poison instead).
    pub fail_memsz_adjust: bool,
}

/// `Err` is a malformed object; `Ok(None)` asks for poisoning.
pub fn value(
    kind: CoreKind,
    btf: &dyn BtfView,
    spec: Option<&Spec>,
    validate: &mut bool,
) -> Result<Option<Value>, String> {
    if kind.is_field() {
        field_value(kind, btf, spec, validate)
    } else if kind.is_type() {
        let Some(spec) = spec else {
            return Ok(Some(Value::default()));
        };
        let id = spec.root_type_id;
        let val = match kind {
            // Type ids in instructions may change when objects are linked: libbpf does not
            // check the instruction's current value for these two kinds.
            CoreKind::TypeIdLocal | CoreKind::TypeIdTarget => {
                *validate = false;
                u64::from(id)
            }
            CoreKind::TypeExists | CoreKind::TypeMatches => 1,
            _ => u64::from(
                btf.size_of(id)
                    .map_err(|e| format!("type [{id}] has no size: {e}"))?,
            ),
        };
        Ok(Some(Value {
            val,
            ..Value::default()
        }))
    } else {
        match (kind, spec) {
            (CoreKind::EnumvalExists, s) => Ok(Some(Value {
                val: u64::from(s.is_some()),
                ..Value::default()
            })),
            (_, None) => Ok(None),
            (_, Some(spec)) => {
                let acc = spec.spec.first().ok_or("empty enum spec")?;
                let (_, t) = skip_mods(btf, acc.type_id).ok_or("enumerator vanished")?;
                let v = enum_values(&t)
                    .and_then(|v| v.get(acc.idx as usize).cloned())
                    .ok_or("enumerator vanished")?;
                // A 32-bit enumerator is `__s32 val` in struct btf_enum, and libbpf
                // (bpf_core_calc_enumval_relo) sign-extends it into the 64-bit value whatever the
                // enum's signedness flag says (BTF from older pahole has no flag: -512 is stored
                // as 0xfffffe00). ENUM64 values are taken as they are.
                let val = match &*t {
                    crate::loader::btf::BtfType::Enum { .. } => v.value as i32 as i64 as u64,
                    _ => v.value as u64,
                };
                Ok(Some(Value {
                    val,
                    ..Value::default()
                }))
            }
        }
    }
}

fn field_value(
    kind: CoreKind,
    btf: &dyn BtfView,
    spec: Option<&Spec>,
    validate: &mut bool,
) -> Result<Option<Value>, String> {
    if kind == CoreKind::FieldExists {
        return Ok(Some(Value {
            val: u64::from(spec.is_some()),
            ..Value::default()
        }));
    }
    let Some(spec) = spec else {
        return Ok(None);
    };
    let acc = spec.spec.last().ok_or("empty field spec")?;
    let size_of = |id: u32| {
        btf.size_of(id)
            .map_err(|e| format!("type [{id}] has no size: {e}"))
    };
    if acc.name.is_none() {
        // An array element (or the root itself): the accessor holds the element type.
        let elem = acc.type_id;
        let sz = size_of(elem)?;
        *validate = true;
        return match kind {
            CoreKind::FieldByteOffset => Ok(Some(Value {
                val: spec.bit_offset / 8,
                size: sz,
                type_id: elem,
            })),
            CoreKind::FieldByteSize => Ok(Some(Value {
                val: u64::from(sz),
                ..Value::default()
            })),
            _ => Err(format!("{kind} cannot be applied to an array element")),
        };
    }
    let m = member_of(btf, acc.type_id, acc.idx).ok_or("member vanished")?;
    let field_type_id = btf.resolve(m.type_id).map_err(|e| e.to_string())?;
    let mt = skip_mods(btf, m.type_id).map(|(_, t)| t);
    let bit_off = spec.bit_offset;
    let mut bit_sz = u64::from(m.bitfield_size);
    let bitfield = bit_sz > 0;
    let (byte_off, byte_sz) = if bitfield {
        let mut byte_sz = u64::from(size_of(m.type_id)?);
        if byte_sz == 0 {
            return Err("bitfield of a zero-sized type".into());
        }
        let mut byte_off = bit_off / 8 / byte_sz * byte_sz;
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8 {
            if byte_sz >= 8 {
                return Err("bitfield cannot be read with one 64-bit load".into());
            }
            byte_sz *= 2;
            byte_off = bit_off / 8 / byte_sz * byte_sz;
        }
        (byte_off, byte_sz)
    } else {
        let sz = u64::from(size_of(m.type_id)?);
        bit_sz = sz * 8;
        (bit_off / 8, sz)
    };
    *validate = !bitfield;
    let mut out = Value::default();
    out.val = match kind {
        CoreKind::FieldByteOffset => {
            if !bitfield {
                out.size = byte_sz as u32;
                out.type_id = field_type_id;
            }
            byte_off
        }
        CoreKind::FieldByteSize => byte_sz,
        CoreKind::FieldSigned => {
            *validate = true;
            u64::from(match mt.as_deref() {
                Some(BtfType::Int { encoding, .. }) => encoding & BTF_INT_SIGNED != 0,
                Some(BtfType::Enum { signed, .. } | BtfType::Enum64 { signed, .. }) => *signed,
                _ => false,
            })
        }
        // Little-endian layout (the BPF target we load for).
        CoreKind::FieldLshiftU64 => 64u64
            .checked_sub(bit_off + bit_sz - byte_off * 8)
            .ok_or("bitfield shift out of range")?,
        CoreKind::FieldRshiftU64 => {
            *validate = true;
            64u64
                .checked_sub(bit_sz)
                .ok_or("field wider than 64 bits")?
        }
        _ => return Err(format!("{kind} is not a field relocation")),
    };
    Ok(Some(out))
}

/// Whether a size change between `orig` and `new` is safe for loads/stores (pointers, or unsigned
/// integers on both sides: zero extension keeps the value).
pub fn memsz_adjust_ok(lbtf: &dyn BtfView, orig: &Value, tbtf: &dyn BtfView, new: &Value) -> bool {
    if orig.size == new.size {
        return true;
    }
    let (Ok(o), Ok(n)) = (lbtf.type_at(orig.type_id), tbtf.type_at(new.type_id)) else {
        return false;
    };
    match (o.as_ref(), n.as_ref()) {
        (BtfType::Ptr { .. }, BtfType::Ptr { .. }) => true,
        (BtfType::Int { encoding: a, .. }, BtfType::Int { encoding: b, .. }) => {
            a & BTF_INT_SIGNED == 0 && b & BTF_INT_SIGNED == 0
        }
        _ => false,
    }
}

const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_ST: u8 = 0x02;
const BPF_STX: u8 = 0x03;
const BPF_ALU: u8 = 0x04;
const BPF_ALU64: u8 = 0x07;
const BPF_K: u8 = 0x00;

fn size_bytes(code: u8) -> u32 {
    match code & 0x18 {
        0x00 => 4,
        0x08 => 2,
        0x10 => 1,
        _ => 8,
    }
}

fn size_code(bytes: u32) -> Option<u8> {
    Some(match bytes {
        4 => 0x00,
        2 => 0x08,
        1 => 0x10,
        8 => 0x18,
        _ => return None,
    })
}

/// The poison libbpf writes: `call 0xbad2310`.
pub fn poison_insn() -> Insn {
    Insn {
        code: 0x85,
        regs: 0,
        off: 0,
        imm: POISON_HELPER,
    }
}

/// Patches `insns[at]` (and `at + 1` for ld_imm64). `Err` says what was wrong with the instruction.
/// Returns whether the instruction was poisoned.
pub fn patch(insns: &mut [Insn], at: usize, res: &Resolution) -> Result<bool, String> {
    let insn = *insns
        .get(at)
        .ok_or_else(|| format!("instruction {at} is past the end of the program"))?;
    let poison = |insns: &mut [Insn]| {
        if insn.is_ld_imm64() {
            if let Some(next) = insns.get_mut(at + 1) {
                *next = poison_insn();
            }
        }
        insns[at] = poison_insn();
        Ok(true)
    };
    if res.poison {
        return poison(insns);
    }
    let (orig, new) = (res.orig.val, res.new.val);
    match insn.code & 0x07 {
        BPF_ALU | BPF_ALU64 => {
            if insn.code & 0x08 != BPF_K {
                return Err(format!(
                    "ALU instruction (opcode {:#04x}) does not use an immediate",
                    insn.code
                ));
            }
            if res.validate && insn.imm as i64 as u64 != orig && insn.imm as u32 as u64 != orig {
                return Err(format!(
                    "expected immediate {orig}, the instruction has {}",
                    insn.imm
                ));
            }
            let v = i32::try_from(new as i64)
                .or_else(|_| u32::try_from(new).map(|u| u as i32))
                .map_err(|_| format!("value {new} does not fit a 32-bit immediate"))?;
            insns[at].imm = v;
        }
        BPF_LDX | BPF_ST | BPF_STX => {
            if res.validate && insn.off as i64 as u64 != orig {
                return Err(format!(
                    "expected offset {orig}, the instruction has {}",
                    insn.off
                ));
            }
            if new > i16::MAX as u64 {
                return Err(format!(
                    "offset {new} is too big for a load/store (max {})",
                    i16::MAX
                ));
            }
            if res.fail_memsz_adjust {
                return poison(insns);
            }
            insns[at].off = new as i16;
            if res.new.size != res.orig.size {
                let have = size_bytes(insn.code);
                if have != res.orig.size {
                    return Err(format!(
                        "load/store of {have} bytes, expected {} (the local field size)",
                        res.orig.size
                    ));
                }
                let sz = size_code(res.new.size).ok_or_else(|| {
                    format!(
                        "the kernel field is {} bytes, no load of that size",
                        res.new.size
                    )
                })?;
                insns[at].code = (insn.code & !0x18) | sz;
            }
        }
        BPF_LD => {
            let next = insns.get(at + 1).copied();
            let ok = insn.is_ld_imm64()
                && insn.src() == 0
                && insn.off == 0
                && next.is_some_and(|n| n.code == 0 && n.regs == 0 && n.off == 0);
            let Some(next) = next.filter(|_| ok) else {
                return Err("ld_imm64 of an unexpected form".into());
            };
            let imm = u64::from(insn.imm as u32) | (u64::from(next.imm as u32) << 32);
            if res.validate && imm != orig {
                return Err(format!(
                    "expected 64-bit immediate {orig}, the instruction has {imm}"
                ));
            }
            insns[at].imm = new as u32 as i32;
            insns[at + 1].imm = (new >> 32) as u32 as i32;
        }
        _ => {
            return Err(format!(
                "opcode {:#04x} cannot carry a CO-RE value (only ALU, LDX/ST/STX and ld_imm64)",
                insn.code
            ))
        }
    }
    Ok(false)
}
