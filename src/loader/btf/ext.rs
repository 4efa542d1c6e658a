//! .BTF.ext: func_info, line_info and CO-RE relocation records per ELF section.
//!
//! Layout (libbpf's `struct btf_ext_header`): magic u16, version u8, flags u8, hdr_len u32, then
//! func_info_off/len, line_info_off/len and (when hdr_len >= 32) core_relo_off/len, all relative to the
//! end of the header. Each info area is `rec_size: u32` followed by blocks of
//! `{sec_name_off: u32, num_info: u32, num_info records of rec_size bytes}`. Records may be longer than
//! the fields we know (newer producers); the extra bytes are skipped.

use std::collections::{HashMap, HashSet};

use super::parse::Reader;
use super::{Btf, BtfError, BtfKind};

/// A func_info record: `insn_off` is in BYTES, as in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuncInfo {
    pub insn_off: u32,
    pub type_id: u32,
}

/// A line_info record: `insn_off` is in BYTES, as in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineInfo {
    pub insn_off: u32,
    pub file_name_off: u32,
    pub line_off: u32,
    pub line_col: u32,
}

/// A CO-RE relocation record (`struct bpf_core_relo`): `insn_off` is in BYTES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoreRelo {
    pub insn_off: u32,
    pub type_id: u32,
    pub access_str_off: u32,
    pub kind: u32,
}

/// Records of one kind, grouped by ELF section name, in the order the sections first appear;
/// looked up by name through a hash index (a hostile .BTF.ext may name many sections).
#[derive(Debug, Clone)]
struct PerSection<T> {
    list: Vec<(String, Vec<T>)>,
    index: HashMap<String, usize>,
}

impl<T> Default for PerSection<T> {
    fn default() -> Self {
        PerSection {
            list: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> PerSection<T> {
    fn add(&mut self, section: &str, recs: Vec<T>) {
        match self.index.get(section) {
            Some(&i) => {
                if let Some((_, v)) = self.list.get_mut(i) {
                    v.extend(recs);
                }
            }
            None => {
                self.index.insert(section.to_string(), self.list.len());
                self.list.push((section.to_string(), recs));
            }
        }
    }

    fn get(&self, section: &str) -> &[T] {
        self.index
            .get(section)
            .and_then(|&i| self.list.get(i))
            .map(|(_, recs)| recs.as_slice())
            .unwrap_or(&[])
    }

    /// Orders each section's records by `key` (stable: records on one instruction keep their
    /// file order), so users can find the records of an instruction range by binary search.
    fn sort_by_insn(&mut self, key: impl Fn(&T) -> u32) {
        for (_, recs) in &mut self.list {
            recs.sort_by_key(&key);
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.list.iter().map(|(n, _)| n.as_str())
    }
}

/// Parsed .BTF.ext.
#[derive(Debug, Clone, Default)]
pub struct BtfExt {
    func_info: PerSection<FuncInfo>,
    line_info: PerSection<LineInfo>,
    core_relos: PerSection<CoreRelo>,
    func_info_rec_size: u32,
    line_info_rec_size: u32,
    core_relo_rec_size: u32,
}

/// Fixed part of the header (up to line_info_len).
const EXT_HEADER_MIN: usize = 24;
/// Header including core_relo_off/len.
const EXT_HEADER_CORE: usize = 32;

fn ext_err(area: &'static str, offset: usize, reason: impl Into<String>) -> BtfError {
    BtfError::Ext {
        area,
        offset,
        reason: reason.into(),
    }
}

/// One info area: its name, minimum record size, and a decoder `(reader, record offset) -> T`.
struct Area<'a> {
    name: &'static str,
    min_rec: u32,
    r: Reader<'a>,
    btf: &'a Btf,
}

impl<'a> Area<'a> {
    /// Parses the area at absolute `range` of the data; returns (rec_size, records per section).
    fn parse<T>(
        &self,
        range: std::ops::Range<usize>,
        decode: impl Fn(&Reader<'a>, usize) -> Result<T, BtfError>,
    ) -> Result<(u32, PerSection<T>), BtfError> {
        let mut out: PerSection<T> = PerSection::default();
        if range.is_empty() {
            return Ok((0, out));
        }
        let (start, end) = (range.start, range.end);
        let rec_size = self
            .r
            .u32_at(start)
            .filter(|_| start + 4 <= end)
            .ok_or_else(|| ext_err(self.name, start, "too short for the record size"))?;
        if rec_size < self.min_rec || rec_size % 4 != 0 {
            return Err(ext_err(
                self.name,
                start,
                format!(
                    "record size {rec_size} is invalid (must be a multiple of 4 and at least {})",
                    self.min_rec
                ),
            ));
        }
        let mut pos = start + 4;
        while pos < end {
            if end - pos < 8 {
                return Err(ext_err(self.name, pos, "truncated section block header"));
            }
            let name_off = self.r.u32_at(pos).unwrap_or(0);
            let num = self.r.u32_at(pos + 4).unwrap_or(0);
            let sec = self.btf.string_at(name_off).map_err(|e| {
                ext_err(
                    self.name,
                    pos,
                    format!("bad section name offset {name_off}: {e}"),
                )
            })?;
            if num == 0 {
                return Err(ext_err(
                    self.name,
                    pos,
                    format!("section '{sec}' has no records"),
                ));
            }
            pos += 8;
            // Checked against the remaining bytes before allocating anything.
            let bytes = num as u64 * rec_size as u64;
            if bytes > (end - pos) as u64 {
                return Err(ext_err(
                    self.name,
                    pos,
                    format!(
                        "section '{sec}' claims {num} records of {rec_size} bytes, only {} bytes remain",
                        end - pos
                    ),
                ));
            }
            let mut recs = Vec::with_capacity(num as usize);
            for i in 0..num as usize {
                recs.push(decode(&self.r, pos + i * rec_size as usize)?);
            }
            pos += bytes as usize;
            out.add(sec, recs);
        }
        Ok((rec_size, out))
    }
}

/// Absolute range of an area given relative to the end of the header.
fn area_range(
    name: &'static str,
    hdr_len: usize,
    off: u32,
    len: u32,
    total: usize,
) -> Result<std::ops::Range<usize>, BtfError> {
    let start = hdr_len.checked_add(off as usize);
    let end = start.and_then(|s| s.checked_add(len as usize));
    match (start, end) {
        (Some(s), Some(e)) if e <= total => Ok(s..e),
        _ => Err(ext_err(
            name,
            hdr_len,
            format!(
                "area at +{off} length {len} runs past the end of the {total}-byte section; truncated?"
            ),
        )),
    }
}

impl BtfExt {
    /// Parses .BTF.ext; section names and type ids are checked against `btf`.
    pub fn parse(data: &[u8], btf: &Btf) -> Result<BtfExt, BtfError> {
        if data.len() < EXT_HEADER_MIN {
            return Err(ext_err(
                "header",
                0,
                format!(
                    "{} bytes, too short for the {EXT_HEADER_MIN}-byte header",
                    data.len()
                ),
            ));
        }
        let (r, hdr) = super::parse::preamble(data, ".BTF.ext", EXT_HEADER_MIN)?;
        let field = |off: usize| r.u32_at(off).unwrap_or(0);
        let total = data.len();
        let func_range = area_range("func_info", hdr, field(8), field(12), total)?;
        let line_range = area_range("line_info", hdr, field(16), field(20), total)?;
        let core_range = if hdr >= EXT_HEADER_CORE {
            area_range("core_relo", hdr, field(24), field(28), total)?
        } else {
            0..0
        };
        let str_len = btf.strings().len() as u32;
        let area = |name, min_rec| Area {
            name,
            min_rec,
            r,
            btf,
        };

        let (func_info_rec_size, func_info) =
            area("func_info", 8).parse(func_range, |r, off| {
                let rec = FuncInfo {
                    insn_off: r.u32_at(off).unwrap_or(0),
                    type_id: r.u32_at(off + 4).unwrap_or(0),
                };
                match btf.kind_of(rec.type_id) {
                    Ok(BtfKind::Func) => Ok(rec),
                    other => Err(ext_err(
                        "func_info",
                        off,
                        format!("type id {} is not a FUNC ({other:?})", rec.type_id),
                    )),
                }
            })?;
        let (line_info_rec_size, line_info) =
            area("line_info", 16).parse(line_range, |r, off| {
                let rec = LineInfo {
                    insn_off: r.u32_at(off).unwrap_or(0),
                    file_name_off: r.u32_at(off + 4).unwrap_or(0),
                    line_off: r.u32_at(off + 8).unwrap_or(0),
                    line_col: r.u32_at(off + 12).unwrap_or(0),
                };
                if rec.file_name_off >= str_len || rec.line_off >= str_len {
                    return Err(ext_err(
                        "line_info",
                        off,
                        format!(
                            "string offset {} or {} is past the {str_len}-byte BTF string section",
                            rec.file_name_off, rec.line_off
                        ),
                    ));
                }
                Ok(rec)
            })?;
        let types_len = btf.types_len();
        let (core_relo_rec_size, core_relos) =
            area("core_relo", 16).parse(core_range, |r, off| {
                let rec = CoreRelo {
                    insn_off: r.u32_at(off).unwrap_or(0),
                    type_id: r.u32_at(off + 4).unwrap_or(0),
                    access_str_off: r.u32_at(off + 8).unwrap_or(0),
                    kind: r.u32_at(off + 12).unwrap_or(0),
                };
                if rec.type_id >= types_len || rec.access_str_off >= str_len {
                    return Err(ext_err(
                        "core_relo",
                        off,
                        format!(
                            "type id {} or access string offset {} is out of range",
                            rec.type_id, rec.access_str_off
                        ),
                    ));
                }
                Ok(rec)
            })?;
        let (mut func_info, mut line_info, mut core_relos) = (func_info, line_info, core_relos);
        func_info.sort_by_insn(|r| r.insn_off);
        line_info.sort_by_insn(|r| r.insn_off);
        core_relos.sort_by_insn(|r| r.insn_off);
        Ok(BtfExt {
            func_info,
            line_info,
            core_relos,
            func_info_rec_size,
            line_info_rec_size,
            core_relo_rec_size,
        })
    }

    /// func_info records for ELF section `section` (empty if none), ordered by `insn_off`.
    pub fn func_info(&self, section: &str) -> &[FuncInfo] {
        self.func_info.get(section)
    }

    /// line_info records for ELF section `section` (empty if none), ordered by `insn_off`.
    pub fn line_info(&self, section: &str) -> &[LineInfo] {
        self.line_info.get(section)
    }

    /// CO-RE relocation records for ELF section `section` (empty if none), ordered by
    /// `insn_off` (records on one instruction in file order).
    pub fn core_relos(&self, section: &str) -> &[CoreRelo] {
        self.core_relos.get(section)
    }

    /// ELF section names that have func_info, line_info or CO-RE records.
    pub fn sections(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        let mut seen = HashSet::new();
        let all = self.func_info.names().chain(self.line_info.names());
        for n in all.chain(self.core_relos.names()) {
            if seen.insert(n) {
                names.push(n);
            }
        }
        names
    }

    /// Size of one func_info record as given in the file (0 when there are none).
    pub fn func_info_rec_size(&self) -> u32 {
        self.func_info_rec_size
    }

    /// Size of one line_info record as given in the file (0 when there are none).
    pub fn line_info_rec_size(&self) -> u32 {
        self.line_info_rec_size
    }

    /// Size of one CO-RE relocation record as given in the file (0 when there are none).
    pub fn core_relo_rec_size(&self) -> u32 {
        self.core_relo_rec_size
    }
}
