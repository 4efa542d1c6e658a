//! Relocations, both halves:
//!
//! - `link` (parse time, no kernel): each program's code plus its `.rel<section>` entries ->
//!   the final instruction stream with `.text` subprograms appended, and the map relocations
//!   still to apply;
//! - [`apply_map_relocs`] (load time, given the created maps' fds): those map relocations
//!   written into the instructions.

use crate::loader::spec::{Insn, ProgramSpec, RelocKind, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE};

mod link;

pub(crate) use link::Linker;

/// `R_BPF_NONE`.
pub const R_BPF_NONE: u32 = 0;
/// `R_BPF_64_64`: a 64-bit immediate of an `ld_imm64` (map / data / function address).
pub const R_BPF_64_64: u32 = 1;
/// `R_BPF_64_32`: the 32-bit immediate of a call.
pub const R_BPF_64_32: u32 = 10;

/// A map relocation that cannot be applied: at which instruction, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relocation at instruction {insn}: {reason}")]
pub struct RelocError {
    /// Index into `ProgramSpec::insns`.
    pub insn: usize,
    pub reason: String,
}

/// Applies the map relocations of `prog` given the created maps' fds (`map_fds[i]` is the fd
/// of `ObjectSpec::maps[i]`): a copy of `prog.insns` with each `ld_imm64` pointing at its map.
pub fn apply_map_relocs(prog: &ProgramSpec, map_fds: &[i32]) -> Result<Vec<Insn>, RelocError> {
    let mut insns = prog.insns.clone();
    let err = |insn: usize, reason: String| RelocError { insn, reason };
    for r in &prog.relocs {
        let (map, src, next_imm) = match r.kind {
            RelocKind::Map { map } => (map, BPF_PSEUDO_MAP_FD, 0i32),
            RelocKind::MapValue { map, offset } => {
                let off = i32::try_from(offset)
                    .map_err(|_| err(r.insn, format!("value offset {offset} too large")))?;
                (map, BPF_PSEUDO_MAP_VALUE, off)
            }
        };
        let fd = *map_fds.get(map).ok_or_else(|| {
            err(
                r.insn,
                format!("refers to map #{map}, but the object has {}", map_fds.len()),
            )
        })?;
        if r.insn + 1 >= insns.len() || !insns[r.insn].is_ld_imm64() {
            return Err(err(r.insn, "not on a 16-byte ld_imm64 instruction".into()));
        }
        insns[r.insn].set_src(src);
        insns[r.insn].imm = fd;
        insns[r.insn + 1].imm = next_imm;
    }
    Ok(insns)
}
