//! Object parsing, top to bottom: the ELF view ([`elf`](crate::loader::elf)) -> license,
//! version, `.BTF` (+ DATASEC fixups) and `.BTF.ext` -> map definitions
//! ([`crate::loader::maps`]) -> each program linked with its `.text` subprograms
//! ([`crate::loader::reloc`]) -> [`ObjectSpec`]. The one place that ties the parsing
//! modules together; none of them imports this one.

use std::collections::HashMap;

use object::elf as E;

use crate::loader::btf::{self, Btf, BtfExt};
use crate::loader::elf::{classify_section, is_data_section, ElfObject, Section, Symbol};
use crate::loader::spec::*;
use crate::loader::{maps, reloc};
use crate::sys::uapi::BPF_PROG_TYPE_TRACEPOINT;

impl ObjectSpec {
    /// Parse an ELF BPF object. Never panics on hostile input; time and memory are linear in
    /// `data.len()` (read files through [`read_object_file`], which caps the size).
    pub fn parse(data: &[u8]) -> Result<ObjectSpec, ParseError> {
        parse_object(data)
    }
}

/// Linked instructions allowed over all programs: at least this many (the kernel's own limit
/// for one program is 1M)...
pub const MAX_LINKED_INSNS: usize = 4 << 20;
/// ...or this many per instruction of code in the object: linking copies shared `.text`
/// functions into each caller, so a small object could otherwise link to gigabytes.
pub const LINKED_PER_CODE_INSN: usize = 32;

/// Largest object file [`read_object_file`] reads. Real BPF objects are kilobytes to a few
/// megabytes; this leaves room for big ones with full debug info.
pub const MAX_OBJECT_BYTES: u64 = 256 * 1024 * 1024;

/// Why an object file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(
        "{path} is not a regular file ({what}); pass a BPF object file (`clang -target bpf -c`)"
    )]
    NotRegular { path: String, what: &'static str },
    #[error(
        "{path} is over the {MAX_OBJECT_BYTES}-byte limit for a BPF object; is it the right file?"
    )]
    TooBig { path: String },
    #[error("cannot read {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Reads a BPF object file: only regular files (`/dev/zero`, a FIFO or a directory are refused
/// before reading), at most [`MAX_OBJECT_BYTES`] (checked while reading, so a file that grows
/// cannot get past it either).
pub fn read_object_file(path: &std::path::Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    let shown = crate::escape::escape_str(&path.display().to_string());
    let io = |source| ReadError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let what = if ft.is_dir() {
            "a directory"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(ReadError::NotRegular { path: shown, what });
    }
    if meta.len() > MAX_OBJECT_BYTES {
        return Err(ReadError::TooBig { path: shown });
    }
    let mut data = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_OBJECT_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(io)?;
    if data.len() as u64 > MAX_OBJECT_BYTES {
        return Err(ReadError::TooBig { path: shown });
    }
    Ok(data)
}

fn section_kind(s: &Section<'_>) -> SectionKind {
    if s.sh_type == E::SHT_REL || s.sh_type == E::SHT_RELA {
        SectionKind::Reloc
    } else if s.is_exec() {
        SectionKind::Program
    } else if s.name == ".maps" || s.name == "maps" {
        SectionKind::Maps
    } else if is_data_section(&s.name) {
        SectionKind::Data
    } else if s.name == ".BTF" || s.name == ".BTF.ext" {
        SectionKind::Btf
    } else if s.name == "license" || s.name == "version" {
        SectionKind::License
    } else {
        SectionKind::Other
    }
}

fn parse_license(elf: &ElfObject<'_>) -> Result<String, ParseError> {
    let Some(sec) = elf.section_by_name("license") else {
        return Ok(String::new());
    };
    let end = sec.data.iter().position(|&b| b == 0).ok_or_else(|| {
        ParseError::section("license", "not NUL-terminated (declare it as a char array)")
    })?;
    let text = sec.data.get(..end).unwrap_or_default();
    std::str::from_utf8(text)
        .map(str::to_string)
        .map_err(|_| ParseError::section("license", "not valid UTF-8"))
}

fn parse_version(elf: &ElfObject<'_>) -> Result<u32, ParseError> {
    let Some(sec) = elf.section_by_name("version") else {
        return Ok(0);
    };
    let bytes: [u8; 4] = sec.data.try_into().map_err(|_| {
        ParseError::section(
            "version",
            format!("is {} bytes, expected a 4-byte u32", sec.data.len()),
        )
    })?;
    Ok(u32::from_le_bytes(bytes))
}

/// Parse `.BTF` and apply `fixup_datasecs`; any failure becomes a warning and `None`.
fn parse_btf(elf: &ElfObject<'_>, warnings: &mut Vec<String>) -> Option<Btf> {
    let sec = elf.section_by_name(".BTF")?;
    let mut parsed = match Btf::parse(sec.data) {
        Ok(b) => b,
        Err(e) => {
            warnings.push(format!(".BTF unusable, continuing without BTF: {e}"));
            return None;
        }
    };
    let mut offsets: HashMap<(&str, &str), u64> = HashMap::new();
    for sym in &elf.symbols {
        if sym.is_section() || sym.name.is_empty() {
            continue;
        }
        if let Some(sec) = sym.section.and_then(|i| elf.sections.get(i)) {
            offsets.insert((sec.name.as_str(), sym.name.as_str()), sym.value);
        }
    }
    // One hash lookup per DATASEC (first section of a name wins, as a scan would find it).
    let mut sizes: HashMap<&str, u64> = HashMap::new();
    for s in &elf.sections {
        sizes.entry(s.name.as_str()).or_insert(s.size);
    }
    let sec_size =
        |name: &str| -> Option<u32> { sizes.get(name).and_then(|&s| u32::try_from(s).ok()) };
    let sym_offset = |sec: &str, sym: &str| -> Option<u32> {
        offsets
            .get(&(sec, sym))
            .and_then(|&v| u32::try_from(v).ok())
    };
    if let Err(e) = btf::fixup_datasecs(&mut parsed, &sec_size, &sym_offset) {
        warnings.push(format!(
            ".BTF DATASEC fixup failed, continuing without BTF: {e}"
        ));
        return None;
    }
    Some(parsed)
}

fn parse_btf_ext(
    elf: &ElfObject<'_>,
    btf: Option<&Btf>,
    warnings: &mut Vec<String>,
) -> Option<BtfExt> {
    let sec = elf.section_by_name(".BTF.ext")?;
    let btf = btf?;
    match BtfExt::parse(sec.data, btf) {
        Ok(ext) => Some(ext),
        Err(e) => {
            warnings.push(format!(
                ".BTF.ext unusable, programs load without func/line info: {e}"
            ));
            None
        }
    }
}

/// Bytes -> [`ObjectSpec`]: see the module docs of [`crate::loader::spec`].
fn parse_object(data: &[u8]) -> Result<ObjectSpec, ParseError> {
    let elf = ElfObject::parse(data)?;
    let mut warnings = Vec::new();
    let license = parse_license(&elf)?;
    let kern_version = parse_version(&elf)?;
    let mut btf = parse_btf(&elf, &mut warnings);
    // `.kconfig` externs: laid out (and the DATASEC fixed) before anything reads the BTF.
    let weak = |name: &str| elf.symbols.iter().any(|s| s.name == name && s.weak);
    let kconfig = btf
        .as_mut()
        .and_then(|b| crate::loader::externs::layout_kconfig(b, &weak));
    let ksyms = btf
        .as_mut()
        .map(crate::loader::externs::ksyms_of)
        .unwrap_or_default();
    let ext = parse_btf_ext(&elf, btf.as_ref(), &mut warnings);

    let mut found = maps::collect_maps(&elf, btf.as_ref(), &mut warnings)?;
    let mut externs = std::collections::HashMap::new();
    let kconfig_vars = match kconfig {
        Some((map, vars)) => {
            let idx = found.maps.len();
            found.maps.push(map);
            found.locations.push(maps::MapLocation {
                section: usize::MAX, // no ELF section: only extern symbols refer to it
                offset: 0,
                size: 0,
                data: true,
            });
            for v in &vars {
                externs.insert(v.name.clone(), (idx, v.offset));
            }
            vars
        }
        None => Vec::new(),
    };

    let sections: Vec<SectionInfo> = elf
        .sections
        .iter()
        .filter(|s| s.index != 0)
        .map(|s| SectionInfo {
            index: s.index,
            name: s.name.clone(),
            kind: section_kind(s),
            size: s.size,
        })
        .collect();

    let linker = reloc::Linker::new(&elf, &found.locations, ext.as_ref(), &mut warnings)?
        .with_externs(externs)
        .with_ksyms(ksyms);
    let mut programs = Vec::new();
    let code_insns: usize = elf
        .sections
        .iter()
        .filter(|s| s.is_exec())
        .map(|s| s.data.len() / 8)
        .sum();
    let link_limit = code_insns
        .saturating_mul(LINKED_PER_CODE_INSN)
        .max(MAX_LINKED_INSNS);
    let mut linked_total = 0usize;
    for sec in elf.sections.iter().filter(|s| s.is_exec()) {
        if sec.name == ".text" {
            continue;
        }
        let Some(kind) = classify_section(&sec.name) else {
            warnings.push(format!(
                "section `{}`: unknown program type, its programs are skipped",
                sec.name
            ));
            continue;
        };
        if kind.prog_type == BPF_PROG_TYPE_TRACEPOINT && kind.attach == AttachPoint::None {
            warnings.push(format!(
                "section `{}`: tracepoint without `<category>/<name>`, attach point unknown",
                sec.name
            ));
        }
        let mut funcs: Vec<&Symbol> = elf.symbols_in(sec.index).filter(|s| s.is_func()).collect();
        funcs.sort_by_key(|s| s.value);
        if funcs.is_empty() && sec.size > 0 {
            warnings.push(format!(
                "section `{}`: code without a FUNC symbol, skipped",
                sec.name
            ));
        }
        for sym in funcs {
            let linked = linker.link(sec, sym, &mut warnings)?;
            linked_total = linked_total.saturating_add(linked.insns.len());
            if linked_total > link_limit {
                return Err(ParseError::malformed(format!(
                    "linking copies each `.text` function into every program that calls it, and \
                     the {} programs up to `{}` already add up to {linked_total} instructions \
                     from {code_insns} in the object (limit {link_limit}); split the object",
                    programs.len() + 1,
                    sym.name
                )));
            }
            programs.push(ProgramSpec {
                name: sym.name.clone(),
                section: sec.name.clone(),
                prog_type: kind.prog_type,
                expected_attach_type: kind.expected_attach_type,
                attach: kind.attach.clone(),
                insns: linked.insns,
                relocs: linked.relocs,
                func_info_rec_size: if linked.func_info.is_empty() { 0 } else { 8 },
                line_info_rec_size: if linked.line_info.is_empty() { 0 } else { 16 },
                func_info: linked.func_info,
                line_info: linked.line_info,
                core_relos: linked.core_relos,
                ksyms: linked.ksyms,
                attach_btf_id: 0,
            });
        }
    }

    Ok(ObjectSpec {
        license,
        kern_version,
        programs,
        maps: found.maps,
        btf,
        sections,
        warnings,
        kconfig: kconfig_vars,
    })
}

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
pub(crate) mod gen;
#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod link_tests;
#[cfg(test)]
mod tests;
