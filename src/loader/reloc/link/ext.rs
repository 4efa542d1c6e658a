//! `.BTF.ext` records of a linked program: CO-RE relocations and func/line info, shifted from
//! section offsets to output instruction positions.

use super::{Func, Linker, Segment, INSN_SIZE};
use crate::loader::btf::{CoreRelo, FuncInfo, LineInfo};

impl Linker<'_, '_> {
    /// CO-RE records of every segment, shifted to output positions (records outside any placed
    /// function, or not on an instruction boundary, belong to no program and are dropped).
    pub(super) fn core_relos(&self, segments: &[Segment]) -> Vec<CoreRelo> {
        let Some(ext) = self.ext else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for seg in segments {
            let name = self.elf.section_name(Some(seg.func.section));
            for r in in_func(ext.core_relos(name), |r| r.insn_off, seg.func) {
                if u64::from(r.insn_off) % INSN_SIZE != 0 {
                    continue;
                }
                let idx = (u64::from(r.insn_off) / INSN_SIZE) as usize;
                if idx < seg.func.start || idx >= seg.func.start + seg.func.len {
                    continue;
                }
                if let Ok(insn_off) = u32::try_from(seg.out_start + (idx - seg.func.start)) {
                    out.push(CoreRelo { insn_off, ..*r });
                }
            }
        }
        out
    }

    /// func/line info of every segment, shifted to output positions and checked.
    pub(super) fn btf_ext_info(
        &self,
        segments: &[Segment],
        total: usize,
        prog: &str,
        warnings: &mut Vec<String>,
    ) -> (Vec<FuncInfo>, Vec<LineInfo>) {
        let Some(ext) = self.ext else {
            return (Vec::new(), Vec::new());
        };
        let mut funcs = Vec::new();
        let mut lines = Vec::new();
        for seg in segments {
            let name = self.elf.section_name(Some(seg.func.section));
            let shift = |byte_off: u32| -> Option<u32> {
                if u64::from(byte_off) % INSN_SIZE != 0 {
                    return None;
                }
                let idx = (u64::from(byte_off) / INSN_SIZE) as usize;
                if idx < seg.func.start || idx >= seg.func.start + seg.func.len {
                    return None;
                }
                u32::try_from(seg.out_start + (idx - seg.func.start)).ok()
            };
            for f in in_func(ext.func_info(name), |f| f.insn_off, seg.func) {
                if let Some(insn_off) = shift(f.insn_off) {
                    funcs.push(FuncInfo {
                        insn_off,
                        type_id: f.type_id,
                    });
                }
            }
            for l in in_func(ext.line_info(name), |l| l.insn_off, seg.func) {
                if let Some(insn_off) = shift(l.insn_off) {
                    lines.push(LineInfo {
                        insn_off,
                        file_name_off: l.file_name_off,
                        line_off: l.line_off,
                        line_col: l.line_col,
                    });
                }
            }
        }
        funcs.sort_by_key(|f| f.insn_off);
        lines.sort_by_key(|l| l.insn_off);
        let starts: Vec<u32> = segments
            .iter()
            .filter_map(|s| u32::try_from(s.out_start).ok())
            .collect();
        let mut sorted_starts = starts.clone();
        sorted_starts.sort_unstable();
        let funcs_ok = funcs.len() == sorted_starts.len()
            && funcs
                .iter()
                .zip(&sorted_starts)
                .all(|(f, s)| f.insn_off == *s);
        if !funcs_ok {
            if !funcs.is_empty() || !lines.is_empty() {
                warnings.push(format!(
                    "program `{prog}`: .BTF.ext func_info has {} records for {} functions (not one per function start); func/line info dropped",
                    funcs.len(),
                    sorted_starts.len()
                ));
            }
            return (Vec::new(), Vec::new());
        }
        let increasing = lines.windows(2).all(|w| match w {
            [a, b] => a.insn_off < b.insn_off,
            _ => true,
        });
        // `lines` is sorted by insn_off: one binary search per function start.
        let covers = sorted_starts
            .iter()
            .all(|s| lines.binary_search_by_key(s, |l| l.insn_off).is_ok());
        let in_range = lines.iter().all(|l| (l.insn_off as usize) < total);
        if !(lines.is_empty() || increasing && covers && in_range) {
            warnings.push(format!(
                "program `{prog}`: .BTF.ext line_info does not start every function or is unordered; line info dropped"
            ));
            lines.clear();
        }
        (funcs, lines)
    }
}

/// The records (sorted by byte offset `key`, as `BtfExt` keeps them) that fall inside `f`:
/// two binary searches, so placing many functions never rescans a section's records.
fn in_func<T>(recs: &[T], key: impl Fn(&T) -> u32, f: Func) -> &[T] {
    let lo = (f.start as u64).saturating_mul(INSN_SIZE);
    let hi = ((f.start + f.len) as u64).saturating_mul(INSN_SIZE);
    let a = recs.partition_point(|r| u64::from(key(r)) < lo);
    let b = recs.partition_point(|r| u64::from(key(r)) < hi);
    recs.get(a..b.max(a)).unwrap_or(&[])
}
