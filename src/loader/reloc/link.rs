//! Linking: one program's code plus its `.rel<section>` entries -> the final instruction stream
//! (program, then each `.text` subprogram it calls, once), map relocations recorded for load
//! time, `.BTF.ext` func/line info converted to instruction units.

use std::collections::HashMap;

use super::{R_BPF_64_32, R_BPF_64_64, R_BPF_NONE};
use crate::loader::btf::{BtfExt, CoreRelo, FuncInfo, LineInfo};
use crate::loader::elf::{ElfObject, RelEntry, Section, Symbol};
use crate::loader::maps::MapLocation;
use crate::loader::spec::*;

mod ext;

const INSN_SIZE: u64 = 8;

/// The linked result for one program.
#[derive(Debug, Default)]
pub(crate) struct Linked {
    pub insns: Vec<Insn>,
    pub relocs: Vec<Reloc>,
    pub func_info: Vec<FuncInfo>,
    pub line_info: Vec<LineInfo>,
    /// CO-RE records with `insn_off` in instruction units of `insns`.
    pub core_relos: Vec<CoreRelo>,
    /// `.ksyms` extern loads, patched at load time.
    pub ksyms: Vec<KsymReloc>,
}

/// A function's instructions: `[start, start + len)` of section `section`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Func {
    section: usize,
    start: usize,
    len: usize,
}

/// A function placed in the output stream at `out_start`.
#[derive(Debug, Clone, Copy)]
struct Segment {
    func: Func,
    out_start: usize,
}

/// Decoded code and validated relocations of every executable section.
pub(crate) struct Linker<'e, 'a> {
    elf: &'e ElfObject<'a>,
    maps: &'e [MapLocation],
    ext: Option<&'e BtfExt>,
    text: Option<usize>,
    code: HashMap<usize, Vec<Insn>>,
    /// Section -> instruction index -> relocation.
    rels: HashMap<usize, HashMap<usize, RelEntry>>,
    /// `.text` functions sorted by start.
    subprogs: Vec<Func>,
    /// Extern symbol -> (map index, offset in its value): `.kconfig` externs.
    externs: HashMap<String, (usize, u32)>,
    /// `.ksyms` extern -> typed.
    ksyms: HashMap<String, bool>,
    /// Section -> indices into `maps` of the maps defined there, in order (relocations look
    /// maps up here: one hash lookup each, however many maps and relocations there are).
    maps_by_section: HashMap<usize, Vec<usize>>,
    /// (section, offset) -> index into `maps`, first definition wins.
    map_at: HashMap<(usize, u64), usize>,
}

fn decode(sec: &Section<'_>) -> Result<Vec<Insn>, ParseError> {
    if !sec.data.len().is_multiple_of(INSN_SIZE as usize) {
        return Err(ParseError::section(
            &sec.name,
            format!(
                "code size {} is not a multiple of 8 (one BPF instruction); the object is corrupt",
                sec.data.len()
            ),
        ));
    }
    Ok(sec
        .data
        .chunks_exact(INSN_SIZE as usize)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            Insn::from_bytes(b)
        })
        .collect())
}

fn is_ignored_reloc_target(name: &str) -> bool {
    name == ".BTF" || name == ".BTF.ext" || name.starts_with(".debug") || name == ".maps"
}

impl<'e, 'a> Linker<'e, 'a> {
    /// Decode all code, validate every relocation against it and index `.text` functions.
    pub fn new(
        elf: &'e ElfObject<'a>,
        maps: &'e [MapLocation],
        ext: Option<&'e BtfExt>,
        warnings: &mut Vec<String>,
    ) -> Result<Self, ParseError> {
        let mut code = HashMap::new();
        for sec in elf.sections.iter().filter(|s| s.is_exec()) {
            code.insert(sec.index, decode(sec)?);
        }
        let mut rels = HashMap::new();
        let mut targets: Vec<_> = elf.rels.keys().copied().collect();
        targets.sort_unstable();
        for target in targets {
            let Some((rel_name, entries)) = elf.rels.get(&target) else {
                continue;
            };
            let Some(insns) = code.get(&target) else {
                let name = elf.section_name(Some(target));
                if !is_ignored_reloc_target(name) && !entries.is_empty() {
                    warnings.push(format!(
                        "relocations in `{rel_name}` for non-code section `{name}` are ignored"
                    ));
                }
                continue;
            };
            let mut by_insn = HashMap::with_capacity(entries.len());
            for r in entries {
                let sym = elf.symbols.get(r.sym).map_or("?", |s| s.name.as_str());
                let err = |what: String| ParseError::Reloc {
                    section: rel_name.clone(),
                    offset: r.offset,
                    symbol: sym.to_string(),
                    what,
                };
                if r.r_type == R_BPF_NONE {
                    continue;
                }
                if r.offset % INSN_SIZE != 0 {
                    return Err(err(
                        "offset is not on an instruction boundary (8 bytes)".into()
                    ));
                }
                let idx = usize::try_from(r.offset / INSN_SIZE)
                    .ok()
                    .filter(|&i| i < insns.len())
                    .ok_or_else(|| {
                        err(format!(
                            "offset is past the end of the {}-byte code section",
                            insns.len() as u64 * INSN_SIZE
                        ))
                    })?;
                let insn = insns.get(idx).copied().unwrap_or_default();
                match r.r_type {
                    R_BPF_64_64 => {
                        if !insn.is_ld_imm64() || idx + 1 >= insns.len() {
                            return Err(err(format!(
                                "R_BPF_64_64 must be on a 16-byte ld_imm64, found opcode {:#04x}",
                                insn.code
                            )));
                        }
                    }
                    R_BPF_64_32 => {
                        if insn.code != OP_CALL {
                            return Err(err(format!(
                                "R_BPF_64_32 must be on a call, found opcode {:#04x}",
                                insn.code
                            )));
                        }
                    }
                    t => {
                        return Err(err(format!(
                            "relocation type {t} is not supported in code (only R_BPF_64_64, R_BPF_64_32)"
                        )))
                    }
                }
                if by_insn.insert(idx, *r).is_some() {
                    return Err(err("two relocations on one instruction".into()));
                }
            }
            rels.insert(target, by_insn);
        }

        let text = elf
            .sections
            .iter()
            .find(|s| s.name == ".text" && s.is_exec())
            .map(|s| s.index);
        let mut subprogs = Vec::new();
        if let Some(t) = text {
            let len = code.get(&t).map_or(0, Vec::len);
            for sym in elf.symbols_in(t).filter(|s| s.is_func()) {
                subprogs.push(func_range(elf, t, sym, len)?);
            }
        }
        subprogs.sort_by_key(|f| f.start);
        let mut maps_by_section: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut map_at = HashMap::new();
        for (i, l) in maps.iter().enumerate() {
            maps_by_section.entry(l.section).or_default().push(i);
            map_at.entry((l.section, l.offset)).or_insert(i);
        }
        Ok(Linker {
            elf,
            maps,
            ext,
            text,
            code,
            rels,
            subprogs,
            externs: HashMap::new(),
            ksyms: HashMap::new(),
            maps_by_section,
            map_at,
        })
    }

    /// Extern symbols that resolve to a map value (`.kconfig`, see `loader::externs`).
    pub fn with_externs(mut self, externs: HashMap<String, (usize, u32)>) -> Self {
        self.externs = externs;
        self
    }

    /// `.ksyms` externs (name -> typed), see `loader::externs::ksyms_of`.
    pub fn with_ksyms(mut self, ksyms: HashMap<String, bool>) -> Self {
        self.ksyms = ksyms;
        self
    }

    /// Link the program `sym` of section `sec`.
    pub fn link(
        &self,
        sec: &Section<'_>,
        sym: &Symbol,
        warnings: &mut Vec<String>,
    ) -> Result<Linked, ParseError> {
        let len = self.code.get(&sec.index).map_or(0, Vec::len);
        let main = func_range(self.elf, sec.index, sym, len)?;
        let perr = |what: String| ParseError::Program {
            program: sym.name.clone(),
            section: sec.name.clone(),
            what,
        };
        let mut out = Vec::new();
        let mut relocs = Vec::new();
        let mut ksyms = Vec::new();
        let mut segments = vec![Segment {
            func: main,
            out_start: 0,
        }];
        self.append(&mut out, main);
        let mut placed: HashMap<usize, usize> = HashMap::new();
        let mut k = 0;
        while let Some(seg) = segments.get(k).copied() {
            k += 1;
            let sec_rels = self.rels.get(&seg.func.section);
            let sec_name = self.elf.section_name(Some(seg.func.section)).to_string();
            let mut j = 0;
            while j < seg.func.len {
                let orig = seg.func.start + j;
                let at = seg.out_start + j;
                j += 1;
                let insn = out.get(at).copied().unwrap_or_default();
                let rel = sec_rels.and_then(|m| m.get(&orig));
                if insn.is_ld_imm64() {
                    if j >= seg.func.len {
                        return Err(perr(format!(
                            "ld_imm64 at instruction {orig} of `{sec_name}` is cut off by the end of the function"
                        )));
                    }
                    j += 1; // skip the second half
                }
                let Some(rel) = rel else {
                    if insn.is_pseudo_call() {
                        // Static call inside one section without relocation: imm is relative.
                        let target = rel_target(orig, insn.imm)
                            .ok_or_else(|| perr(format!("call at {orig} jumps out of range")))?;
                        if seg.func.section == main.section
                            && seg.func == main
                            && (main.start..main.start + main.len).contains(&target)
                        {
                            continue; // stays inside the program: offset already right
                        }
                        if Some(seg.func.section) != self.text {
                            return Err(perr(format!(
                                "call at {orig} of `{sec_name}` leaves the program without a relocation; \
                                 only `.text` functions can be called (drop SEC() from the callee)"
                            )));
                        }
                        let pos =
                            self.place(target, &mut out, &mut segments, &mut placed, &perr)?;
                        set_rel_imm(&mut out, at, pos, &perr)?;
                    }
                    continue;
                };
                let target_sym =
                    self.elf.symbols.get(rel.sym).ok_or_else(|| {
                        perr(format!("relocation at {orig} names a missing symbol"))
                    })?;
                let rerr = |what: String| ParseError::Reloc {
                    section: format!(".rel{sec_name}"),
                    offset: rel.offset,
                    symbol: target_sym.name.clone(),
                    what,
                };
                match rel.r_type {
                    R_BPF_64_32 => {
                        if !insn.is_pseudo_call() {
                            return Err(rerr(format!(
                                "call with src_reg {} has a relocation: kfunc/extern calls are not supported",
                                insn.src()
                            )));
                        }
                        if target_sym.section != self.text || self.text.is_none() {
                            return Err(rerr(format!(
                                "calls into `{}` are not supported: callees must live in `.text`",
                                self.elf.section_name(target_sym.section)
                            )));
                        }
                        // libbpf: target = sym_off / 8 + imm + 1 (imm = -1 for global functions).
                        let target = (target_sym.value / INSN_SIZE)
                            .try_into()
                            .ok()
                            .and_then(|base| rel_target(base, insn.imm))
                            .ok_or_else(|| rerr("call target out of range".into()))?;
                        let pos =
                            self.place(target, &mut out, &mut segments, &mut placed, &perr)?;
                        set_rel_imm(&mut out, at, pos, &perr)?;
                    }
                    R_BPF_64_64 => {
                        if target_sym.section.is_some() && target_sym.section == self.text {
                            // Address of a subprogram (callback): BPF_PSEUDO_FUNC.
                            let byte = i64::try_from(target_sym.value)
                                .ok()
                                .and_then(|v| v.checked_add(i64::from(insn.imm)))
                                .filter(|b| *b >= 0 && (*b as u64).is_multiple_of(INSN_SIZE))
                                .ok_or_else(|| {
                                    rerr("function address is not an instruction".into())
                                })?;
                            let target = usize::try_from(byte as u64 / INSN_SIZE)
                                .map_err(|_| rerr("function address out of range".into()))?;
                            let pos =
                                self.place(target, &mut out, &mut segments, &mut placed, &perr)?;
                            set_rel_imm(&mut out, at, pos, &perr)?;
                            if let Some(i) = out.get_mut(at) {
                                i.set_src(BPF_PSEUDO_FUNC);
                            }
                            continue;
                        }
                        if target_sym.section.is_none() {
                            if let Some(&typed) = self.ksyms.get(&target_sym.name) {
                                ksyms.push(KsymReloc {
                                    insn: at,
                                    name: target_sym.name.clone(),
                                    typed,
                                    weak: target_sym.weak,
                                });
                                continue;
                            }
                        }
                        let kind = self.map_reloc(target_sym, insn).map_err(rerr)?;
                        relocs.push(Reloc { insn: at, kind });
                    }
                    _ => return Err(rerr("unsupported relocation type".into())),
                }
            }
        }
        let (func_info, line_info) = self.btf_ext_info(&segments, out.len(), &sym.name, warnings);
        let core_relos = self.core_relos(&segments);
        Ok(Linked {
            insns: out,
            relocs,
            func_info,
            line_info,
            core_relos,
            ksyms,
        })
    }

    fn append(&self, out: &mut Vec<Insn>, f: Func) {
        if let Some(code) = self.code.get(&f.section) {
            out.extend(code.iter().skip(f.start).take(f.len));
        }
    }

    /// Output position of `.text` instruction `target`, appending its function if not yet placed.
    fn place(
        &self,
        target: usize,
        out: &mut Vec<Insn>,
        segments: &mut Vec<Segment>,
        placed: &mut HashMap<usize, usize>,
        perr: &dyn Fn(String) -> ParseError,
    ) -> Result<usize, ParseError> {
        // Sorted by start: the candidate is the last function starting at or before `target`
        // (overlapping hostile symbols fall back to a scan of the few before it).
        let upto = self.subprogs.partition_point(|f| f.start <= target);
        let func = self.subprogs[..upto]
            .iter()
            .rev()
            .take(16)
            .find(|f| (f.start..f.start + f.len).contains(&target))
            .copied()
            .ok_or_else(|| {
                perr(format!(
                    "call target {target} in `.text` is not inside any function symbol"
                ))
            })?;
        let start = match placed.get(&func.start) {
            Some(&s) => s,
            None => {
                let s = out.len();
                self.append(out, func);
                placed.insert(func.start, s);
                segments.push(Segment { func, out_start: s });
                s
            }
        };
        Ok(start + (target - func.start))
    }

    fn map_reloc(&self, sym: &Symbol, insn: Insn) -> Result<RelocKind, String> {
        let Some(sec) = sym.section else {
            if let Some(&(map, off)) = self.externs.get(&sym.name) {
                let offset = i64::from(off)
                    .checked_add(i64::from(insn.imm))
                    .and_then(|o| u32::try_from(o).ok())
                    .ok_or_else(|| format!("extern `{}` offset out of range", sym.name))?;
                return Ok(RelocKind::MapValue { map, offset });
            }
            return Err(format!(
                "extern `{}` cannot be resolved: it is neither a `.kconfig` extern \
                 (LINUX_KERNEL_VERSION, CONFIG_*) nor a `.ksyms` variable",
                sym.name
            ));
        };
        let sec_name = self.elf.section_name(Some(sec));
        let Some((map, first)) = self
            .maps_by_section
            .get(&sec)
            .and_then(|v| v.first())
            .and_then(|&i| Some((i, self.maps.get(i)?)))
        else {
            return Err(format!(
                "section `{sec_name}` holds neither map definitions nor global data"
            ));
        };
        if first.data {
            let off = i64::try_from(sym.value)
                .ok()
                .and_then(|v| v.checked_add(i64::from(insn.imm)))
                .filter(|&o| o >= 0 && (o as u64) < first.size)
                .and_then(|o| u32::try_from(o).ok())
                .ok_or_else(|| {
                    format!(
                        "offset {} + {} is outside `{sec_name}` ({} bytes)",
                        sym.value, insn.imm, first.size
                    )
                })?;
            return Ok(RelocKind::MapValue { map, offset: off });
        }
        let want = if sym.is_section() {
            i64::try_from(sym.value)
                .ok()
                .and_then(|v| v.checked_add(i64::from(insn.imm)))
                .and_then(|v| u64::try_from(v).ok())
        } else {
            Some(sym.value)
        };
        want.and_then(|w| self.map_at.get(&(sec, w)))
            .map(|&i| RelocKind::Map { map: i })
            .ok_or_else(|| format!("no map definition at offset {want:?} of `{sec_name}`"))
    }
}

/// `base + imm + 1`, as a non-negative instruction index.
fn rel_target(base: usize, imm: i32) -> Option<usize> {
    let t = i64::try_from(base)
        .ok()?
        .checked_add(i64::from(imm))?
        .checked_add(1)?;
    usize::try_from(t).ok()
}

/// Make the call / ld_imm64 at `at` point at output position `pos`.
fn set_rel_imm(
    out: &mut [Insn],
    at: usize,
    pos: usize,
    perr: &dyn Fn(String) -> ParseError,
) -> Result<(), ParseError> {
    let rel = i64::try_from(pos)
        .ok()
        .zip(i64::try_from(at).ok())
        .and_then(|(p, a)| p.checked_sub(a)?.checked_sub(1))
        .and_then(|r| i32::try_from(r).ok())
        .ok_or_else(|| perr(format!("call offset from {at} to {pos} overflows")))?;
    if let Some(i) = out.get_mut(at) {
        i.imm = rel;
    }
    Ok(())
}

/// A FUNC symbol's instruction range, checked against the section.
fn func_range(
    elf: &ElfObject<'_>,
    section: usize,
    sym: &Symbol,
    sec_insns: usize,
) -> Result<Func, ParseError> {
    let err = |what: String| ParseError::Symbol {
        symbol: sym.name.clone(),
        section: elf.section_name(Some(section)).to_string(),
        what,
    };
    if !sym.value.is_multiple_of(INSN_SIZE) || !sym.size.is_multiple_of(INSN_SIZE) || sym.size == 0
    {
        return Err(err(format!(
            "function at {:#x} size {} is not a whole number of instructions",
            sym.value, sym.size
        )));
    }
    let start = usize::try_from(sym.value / INSN_SIZE).ok();
    let len = usize::try_from(sym.size / INSN_SIZE).ok();
    match (start, len) {
        (Some(s), Some(l)) if s.checked_add(l).is_some_and(|e| e <= sec_insns) => Ok(Func {
            section,
            start: s,
            len: l,
        }),
        _ => Err(err(format!(
            "function at {:#x} size {} runs past the end of its {}-instruction section",
            sym.value, sym.size, sec_insns
        ))),
    }
}
