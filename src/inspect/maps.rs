//! The map-teaching part of `rawsnoop inspect`: for each ring buffer its mmap layout, the slot
//! a record of the object's event takes and how many fit; for a perf event array its memory
//! bill (pages x CPUs); and at each `bpf_ringbuf_reserve`/`submit`/`discard` call site the
//! verifier's reference rule.
//!
//! Pure but for two facts of this machine (the page size, the number of possible CPUs); record
//! sizes come from the program's own instructions (the constant loaded into the size argument
//! just before the call).

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::escape::escape_name as esc;

use crate::loader::spec::{Insn, MapSpec, ObjectSpec, ProgramSpec, RelocKind};
use crate::sys::uapi::{BPF_MAP_TYPE_PERF_EVENT_ARRAY, BPF_MAP_TYPE_RINGBUF};

const HELPER_PERF_EVENT_OUTPUT: i32 = 25;
const HELPER_RINGBUF_OUTPUT: i32 = 130;
const HELPER_RINGBUF_RESERVE: i32 = 131;
const HELPER_RINGBUF_SUBMIT: i32 = 132;
const HELPER_RINGBUF_DISCARD: i32 = 133;

/// The perf pages per CPU rawsnoop uses unless told otherwise (`--perf-pages`).
pub const DEFAULT_PERF_PAGES: u64 = 8;

/// A helper call found in a program.
struct CallSite<'a> {
    prog: &'a ProgramSpec,
    insn: usize,
    helper: i32,
    /// The map the call names, when its `ld_imm64` is found.
    map: Option<&'a MapSpec>,
    /// The record size, when it is a constant set just before the call.
    size: Option<i64>,
}

fn is_call(i: &Insn, helper: i32) -> bool {
    i.code == 0x85 && i.src() == 0 && i.imm == helper
}

/// Walks back from `at` for the instruction that last set `reg`: a constant move gives its
/// value; anything else (another write, a call, a jump target we cannot see) gives up.
fn const_in(insns: &[Insn], at: usize, reg: u8) -> Option<i64> {
    for i in insns[..at].iter().rev().take(32) {
        let class = i.code & 0x07;
        if i.code == 0x85 || i.code == 0x95 {
            return None;
        }
        let writes = matches!(class, 0x00 | 0x01 | 0x04 | 0x07) && i.dst() == reg;
        if writes {
            return match i.code {
                0xb7 => Some(i64::from(i.imm)),
                0xb4 => Some(i64::from(i.imm as u32)),
                _ => None,
            };
        }
    }
    None
}

/// The map whose address was loaded into `reg` before `at`.
fn map_in<'a>(
    spec: &'a ObjectSpec,
    p: &ProgramSpec,
    relocs: &HashMap<usize, RelocKind>,
    at: usize,
    reg: u8,
) -> Option<&'a MapSpec> {
    for idx in (at.saturating_sub(32)..at).rev() {
        let i = &p.insns[idx];
        if i.dst() == reg && matches!(i.code & 0x07, 0x00 | 0x01 | 0x04 | 0x07) {
            let map = match relocs.get(&idx)? {
                RelocKind::Map { map } | RelocKind::MapValue { map, .. } => map,
            };
            return spec.maps.get(*map);
        }
    }
    None
}

fn call_sites(spec: &ObjectSpec) -> Vec<CallSite<'_>> {
    let mut out = Vec::new();
    for p in &spec.programs {
        let relocs: HashMap<usize, RelocKind> = p.relocs.iter().map(|r| (r.insn, r.kind)).collect();
        for (idx, i) in p.insns.iter().enumerate() {
            // (helper, register holding the map, register holding the size)
            let (helper, map_reg, size_reg) = match i {
                i if is_call(i, HELPER_RINGBUF_RESERVE) => (HELPER_RINGBUF_RESERVE, 1, Some(2)),
                i if is_call(i, HELPER_RINGBUF_OUTPUT) => (HELPER_RINGBUF_OUTPUT, 1, Some(3)),
                i if is_call(i, HELPER_PERF_EVENT_OUTPUT) => (HELPER_PERF_EVENT_OUTPUT, 2, Some(5)),
                i if is_call(i, HELPER_RINGBUF_SUBMIT) => (HELPER_RINGBUF_SUBMIT, 0, None),
                i if is_call(i, HELPER_RINGBUF_DISCARD) => (HELPER_RINGBUF_DISCARD, 0, None),
                _ => continue,
            };
            out.push(CallSite {
                prog: p,
                insn: idx,
                helper,
                map: (map_reg != 0)
                    .then(|| map_in(spec, p, &relocs, idx, map_reg))
                    .flatten(),
                size: size_reg.and_then(|r| const_in(&p.insns, idx, r)),
            });
        }
    }
    out
}

fn round8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Appends the "ring buffers and perf buffers, explained" section (nothing when the object
/// has neither and makes no ring buffer call).
#[cfg(test)]
pub fn teach(out: &mut String, spec: &ObjectSpec, page: u64, cpus: u64) {
    teach_within(out, spec, page, cpus, usize::MAX);
}

/// Whether `out` is past `limit`; writes the marker the first time.
fn spent(out: &mut String, limit: usize) -> bool {
    if out.len() <= limit {
        return false;
    }
    if !out.ends_with("(cut: output budget spent)\n") {
        let _ = writeln!(out, "    ... (cut: output budget spent)");
    }
    true
}

/// [`teach`], stopping with a marker once `out` is longer than `limit` bytes (inspect's
/// output budget: one line per call site of every linked copy adds up).
pub fn teach_within(out: &mut String, spec: &ObjectSpec, page: u64, cpus: u64, limit: usize) {
    let sites = call_sites(spec);
    let mut by_map: HashMap<&str, Vec<&CallSite>> = HashMap::new();
    for s in &sites {
        if let Some(m) = s.map {
            by_map.entry(m.name.as_str()).or_default().push(s);
        }
    }
    let rings: Vec<&MapSpec> = spec
        .maps
        .iter()
        .filter(|m| {
            matches!(
                m.map_type,
                BPF_MAP_TYPE_RINGBUF | BPF_MAP_TYPE_PERF_EVENT_ARRAY
            )
        })
        .collect();
    if rings.is_empty() && sites.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nring buffers and perf buffers, explained (page size {page} on this machine):"
    );
    for m in rings {
        if spent(out, limit) {
            return;
        }
        let writers = by_map.get(m.name.as_str()).map_or(&[][..], Vec::as_slice);
        if m.map_type == BPF_MAP_TYPE_RINGBUF {
            let s = u64::from(m.max_entries);
            let _ = writeln!(
                out,
                "  {}: BPF_MAP_TYPE_RINGBUF, {s} data bytes",
                esc(&m.name)
            );
            let _ = writeln!(
                out,
                "    mmap layout: offset 0: the consumer page ({page} B, the only one mapped \
                 read-write: consumer_pos); offset {page}: the producer page (read-only: \
                 producer_pos, then pending_pos on kernels that have it); offset {}: the {s} data \
                 bytes, mapped twice in a row, so the consumer maps {page} + 2 x {s} = {} bytes \
                 read-only at offset {page} and a record that runs past the end reads on \
                 contiguously.",
                2 * page,
                page + 2 * s
            );
            if !s.is_power_of_two() || s % page != 0 {
                let _ = writeln!(
                    out,
                    "    max_entries {s} is not a power of two multiple of the page size: the \
                     kernel refuses this map."
                );
                continue;
            }
            for w in writers {
                if spent(out, limit) {
                    return;
                }
                let name = if w.helper == HELPER_RINGBUF_RESERVE {
                    "bpf_ringbuf_reserve"
                } else {
                    "bpf_ringbuf_output"
                };
                match w.size {
                    Some(n) if n >= 0 => {
                        let slot = round8(n as u64 + 8);
                        let _ = writeln!(
                            out,
                            "    {} insn {}: {name}(&{}, {n}): each record takes 8 (header) + \
                             {n}, rounded up to 8 = {slot} bytes; {} fit before the kernel \
                             refuses one (the producer may get at most {} bytes ahead of the \
                             consumer).",
                            esc(&w.prog.name),
                            w.insn,
                            esc(&m.name),
                            (s - 1) / slot,
                            s - 1
                        );
                    }
                    _ => {
                        let _ = writeln!(
                            out,
                            "    {} insn {}: {name}(&{}, size not a constant here): each record \
                             takes 8 + size rounded up to 8.",
                            esc(&w.prog.name),
                            w.insn,
                            esc(&m.name)
                        );
                    }
                }
            }
        } else {
            let _ = writeln!(
                out,
                "  {}: BPF_MAP_TYPE_PERF_EVENT_ARRAY, one slot per CPU ({}): user space opens a \
                 perf event per CPU and stores its fd at key = cpu.",
                esc(&m.name),
                if m.max_entries == 0 {
                    format!("max_entries 0 = the possible CPUs, {cpus} here")
                } else {
                    format!("max_entries {}", m.max_entries)
                }
            );
            let per_cpu = (1 + DEFAULT_PERF_PAGES) * page;
            let _ = writeln!(
                out,
                "    memory: each CPU's ring is 1 metadata page (data_head, data_tail) + a power \
                 of two of data pages, all mapped read-write; with rawsnoop's default \
                 {DEFAULT_PERF_PAGES} pages: {per_cpu} B per CPU x {cpus} CPUs = {} B (a BPF ring buffer \
                 is instead one area shared by every CPU).",
                per_cpu * cpus
            );
            for w in writers {
                if spent(out, limit) {
                    return;
                }
                if let Some(n) = w.size.filter(|n| *n >= 0) {
                    let rec = 8 + round8(4 + n as u64);
                    let _ = writeln!(
                        out,
                        "    {} insn {}: bpf_perf_event_output(.., &{}, .., {n}): a SAMPLE \
                         record of 8 (header) + 4 (raw size) + {n}, padded to 8 = {rec} bytes; \
                         {} fit in one CPU's {} data bytes. A full ring drops the sample and \
                         the kernel later writes a LOST record with the count.",
                        esc(&w.prog.name),
                        w.insn,
                        esc(&m.name),
                        DEFAULT_PERF_PAGES * page / rec,
                        DEFAULT_PERF_PAGES * page
                    );
                } else {
                    let _ = writeln!(
                        out,
                        "    {} insn {}: bpf_perf_event_output(.., &{}, .., size not a constant \
                         here): a SAMPLE record of 8 (header) + 4 (raw size) + size, padded to 8.",
                        esc(&w.prog.name),
                        w.insn,
                        esc(&m.name)
                    );
                }
            }
        }
    }
    let refs: Vec<&CallSite> = sites
        .iter()
        .filter(|s| {
            matches!(
                s.helper,
                HELPER_RINGBUF_RESERVE | HELPER_RINGBUF_SUBMIT | HELPER_RINGBUF_DISCARD
            )
        })
        .collect();
    if !refs.is_empty() {
        let _ = writeln!(out, "  the verifier's reference rule, at each call site:");
    }
    for s in refs {
        if spent(out, limit) {
            return;
        }
        let note = match s.helper {
            HELPER_RINGBUF_RESERVE => {
                "bpf_ringbuf_reserve returns a pointer into the ring or NULL. The verifier types \
                 it ringbuf_mem_or_null: the program must test it against NULL before any access \
                 (else: \"invalid mem access 'ringbuf_mem_or_null'\"), and from here it tracks a \
                 reference that must be released."
            }
            HELPER_RINGBUF_SUBMIT => {
                "bpf_ringbuf_submit releases the reference (commits the record). On every path \
                 from the reserve to the exit exactly one submit or discard must run: a path \
                 without one is rejected (\"Unreleased reference\"), and the pointer cannot be \
                 used after it."
            }
            _ => {
                "bpf_ringbuf_discard releases the reference without publishing the record (the \
                 consumer skips it, but the space is consumed in order); it counts as the one \
                 release of that path."
            }
        };
        let _ = writeln!(out, "    {} insn {}: {note}", esc(&s.prog.name), s.insn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every "bpf_ringbuf_reserve(&rb, N)" line of `out` with its slot and count checked
    /// against the protocol's arithmetic; returns how many there were.
    fn check_reserve_lines(out: &str, ring: u64) -> usize {
        let mut n = 0;
        for line in out
            .lines()
            .filter(|l| l.contains("bpf_ringbuf_reserve(&rb, "))
        {
            let size: u64 = line
                .split("bpf_ringbuf_reserve(&rb, ")
                .nth(1)
                .and_then(|r| r.split(')').next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{line}"));
            let slot = (size + 8 + 7) & !7;
            let want = format!("= {slot} bytes; {} fit", (ring - 1) / slot);
            assert!(line.contains(&want), "{line}\nwants {want}");
            n += 1;
        }
        n
    }

    #[test]
    fn explains_the_builtin_reserve_object() {
        let spec = ObjectSpec::parse(crate::objects::RINGBUF_RESERVE).unwrap();
        let mut out = String::new();
        teach(&mut out, &spec, 4096, 2);
        assert!(
            out.contains("BPF_MAP_TYPE_RINGBUF, 262144 data bytes"),
            "{out}"
        );
        // The record sizes are read from the calls (constants before each reserve).
        assert!(check_reserve_lines(&out, 262144) > 0, "{out}");
        assert!(out.contains("ringbuf_mem_or_null"), "{out}");
        assert!(out.contains("Unreleased reference"), "{out}");
    }

    #[test]
    fn explains_the_builtin_perf_object() {
        let spec = ObjectSpec::parse(crate::objects::PERFBUF_OUTPUT).unwrap();
        let mut out = String::new();
        teach(&mut out, &spec, 4096, 2);
        assert!(out.contains("36864 B per CPU x 2 CPUs = 73728 B"), "{out}");
        assert!(out.contains("bpf_perf_event_output(.., &pb, .., "), "{out}");
    }

    #[test]
    fn reads_constant_sizes_and_maps_from_instructions() {
        // The bench object: one bpf_ringbuf_reserve of a constant size into its 16 MiB ring.
        let spec = ObjectSpec::parse(crate::objects::BENCH).unwrap();
        let mut out = String::new();
        teach(&mut out, &spec, 4096, 4);
        assert_eq!(check_reserve_lines(&out, 16 << 20), 1, "{out}");
        assert!(out.contains("x 4 CPUs"), "{out}");
    }
}
