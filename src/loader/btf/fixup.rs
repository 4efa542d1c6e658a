//! Fixups clang leaves to the loader: DATASEC sizes, VAR offsets, linkage the kernel accepts.

use super::types::{BTF_FUNC_EXTERN, BTF_FUNC_GLOBAL, BTF_VAR_GLOBAL_EXTERN, BTF_VAR_STATIC};
use super::{Btf, BtfError, BtfType};

/// Datasecs of extern symbols; the loader fills them from kconfig/kallsyms, not from the ELF.
const EXTERN_SECTIONS: [&str; 2] = [".kconfig", ".ksyms"];

/// Fix what clang leaves to the loader: DATASEC sizes and VAR offsets in sections like
/// .data/.rodata/.bss/.maps, and VAR/FUNC linkage the kernel needs. `sec_size(name)` gives the ELF
/// section size, `sym_offset(section_name, var_name)` the ELF symbol value. Datasecs the ELF does not
/// have are left alone.
///
/// For each DATASEC whose section exists in the ELF (and is not `.kconfig`/`.ksyms`):
/// - a zero size is replaced by the ELF section size;
/// - each VAR's offset is taken from its ELF symbol (a global VAR without a symbol is an error; a
///   static one keeps its offset), a zero VAR size is filled from the VAR's type;
/// - entries are sorted by offset and checked not to overlap or run past the section (the kernel
///   rejects both).
///
/// Everywhere: FUNCs with extern linkage (which the kernel rejects) become global.
pub fn fixup_datasecs(
    btf: &mut Btf,
    sec_size: &dyn Fn(&str) -> Option<u32>,
    sym_offset: &dyn Fn(&str, &str) -> Option<u32>,
) -> Result<(), BtfError> {
    for idx in 0..btf.types.len() {
        let id = idx as u32 + 1;
        match btf.types.get(idx) {
            Some(BtfType::Datasec { .. }) => fixup_one(btf, id, sec_size, sym_offset)?,
            Some(BtfType::Func { .. }) => {
                if let Some(BtfType::Func { linkage, .. }) = btf.types.get_mut(idx) {
                    if *linkage == BTF_FUNC_EXTERN {
                        *linkage = BTF_FUNC_GLOBAL;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn fixup_one(
    btf: &mut Btf,
    id: u32,
    sec_size: &dyn Fn(&str) -> Option<u32>,
    sym_offset: &dyn Fn(&str, &str) -> Option<u32>,
) -> Result<(), BtfError> {
    let (name_off, size, vars) = match btf.type_by_id(id)? {
        BtfType::Datasec {
            name_off,
            size,
            vars,
        } => (*name_off, *size, vars.clone()),
        _ => return Ok(()),
    };
    let section = btf.string_at(name_off)?.to_string();
    if EXTERN_SECTIONS.contains(&section.as_str()) {
        return Ok(());
    }
    let Some(elf_size) = sec_size(&section) else {
        return Ok(());
    };
    let err = |reason: String| BtfError::Datasec {
        section: section.clone(),
        id,
        reason,
    };
    let size = if size == 0 { elf_size } else { size };

    let mut fixed = Vec::with_capacity(vars.len());
    for (i, v) in vars.into_iter().enumerate() {
        let mut v = v;
        let (var_name_off, linkage) = match btf.type_by_id(v.type_id) {
            Ok(BtfType::Var {
                name_off, linkage, ..
            }) => (*name_off, *linkage),
            // .BTF from some producers places FUNCs in datasecs; nothing to fix there.
            Ok(BtfType::Func { .. }) => {
                fixed.push(v);
                continue;
            }
            Ok(other) => {
                return Err(err(format!(
                    "entry {i} is type [{}] of kind {}, expected a VAR",
                    v.type_id,
                    other.kind().name()
                )))
            }
            Err(e) => return Err(err(format!("entry {i}: {e}"))),
        };
        let var_name = btf.string_at(var_name_off)?.to_string();
        if linkage != BTF_VAR_GLOBAL_EXTERN {
            match sym_offset(&section, &var_name) {
                Some(off) => v.offset = off,
                None if linkage == BTF_VAR_STATIC => {}
                None => {
                    return Err(err(format!(
                        "no ELF symbol for global VAR '{var_name}'; was the object stripped?"
                    )))
                }
            }
        }
        if v.size == 0 {
            v.size = btf
                .size_of(v.type_id)
                .map_err(|e| err(format!("VAR '{var_name}': {e}")))?;
        }
        fixed.push(v);
    }
    fixed.sort_by_key(|v| v.offset);
    let mut end_prev = 0u64;
    for v in &fixed {
        let end = v.offset as u64 + v.size as u64;
        if (v.offset as u64) < end_prev || end > size as u64 {
            let name = btf.name_of(v.type_id).unwrap_or("?");
            return Err(err(format!(
                "'{name}' at offset {} size {} overlaps the previous variable or runs past the \
                 section size {size}",
                v.offset, v.size
            )));
        }
        end_prev = end;
    }
    if let Some(BtfType::Datasec {
        size: s, vars: vs, ..
    }) = btf.types.get_mut(id as usize - 1)
    {
        *s = size;
        *vs = fixed;
    }
    Ok(())
}
