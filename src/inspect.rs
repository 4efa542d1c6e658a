//! `rawsnoop inspect`: explain a BPF object without other tools — its sections, programs
//! (type, attach point, instructions with the C source lines from BTF), maps, relocations and
//! BTF types in a C-like form. Pure: reads an [`ObjectSpec`], never the kernel.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::escape::{escape_name, escape_str};

mod maps;

use crate::loader::btf::Btf;
use crate::loader::spec::{
    AttachPoint, Insn, MapOrigin, ObjectSpec, ProgramSpec, RelocKind, SectionKind,
};
pub use crate::sys::uapi::{map_type_name, prog_type_name};

/// Names of the helpers BPF tracing programs call most (`enum bpf_func_id`).
pub fn helper_name(id: i32) -> Option<&'static str> {
    Some(match id {
        1 => "map_lookup_elem",
        2 => "map_update_elem",
        3 => "map_delete_elem",
        4 => "probe_read",
        5 => "ktime_get_ns",
        6 => "trace_printk",
        7 => "get_prandom_u32",
        8 => "get_smp_processor_id",
        14 => "get_current_pid_tgid",
        15 => "get_current_uid_gid",
        16 => "get_current_comm",
        25 => "perf_event_output",
        35 => "get_current_task",
        45 => "probe_read_str",
        112 => "probe_read_user",
        113 => "probe_read_kernel",
        114 => "probe_read_user_str",
        115 => "probe_read_kernel_str",
        130 => "ringbuf_output",
        131 => "ringbuf_reserve",
        132 => "ringbuf_submit",
        133 => "ringbuf_discard",
        134 => "ringbuf_query",
        181 => "loop",
        _ => return None,
    })
}

/// A short, readable rendering of one instruction (enough to follow a program; not a full
/// disassembler). `next` is the second half of an `ld_imm64`.
pub fn format_insn(i: &Insn, next: Option<&Insn>) -> String {
    let class = i.code & 0x07;
    let (dst, src) = (i.dst(), i.src());
    let alu_ops = [
        "+=", "-=", "*=", "/=", "|=", "&=", "<<=", ">>=", "neg", "%=", "^=", "=", "s>>=", "end",
    ];
    let jmp_ops = [
        "goto", "==", ">", ">=", "&", "!=", "s>", "s>=", "call", "exit", "<", "<=", "s<", "s<=",
    ];
    let size = match (i.code >> 3) & 0x3 {
        0 => "u32",
        1 => "u16",
        2 => "u8",
        _ => "u64",
    };
    let operand = |is_reg: bool| {
        if is_reg {
            format!("r{src}")
        } else {
            format!("{}", i.imm)
        }
    };
    match class {
        0x00 if i.code == 0x18 => {
            let hi = next.map_or(0, |n| n.imm as u32 as u64);
            let v = (hi << 32) | u64::from(i.imm as u32);
            match src {
                1 => format!("r{dst} = map_fd[{}] ll", i.imm),
                2 => format!("r{dst} = map_value[{}] + {} ll", i.imm, hi),
                _ => format!("r{dst} = {v:#x} ll"),
            }
        }
        0x04 | 0x07 => {
            let w = if class == 0x04 { "w" } else { "r" };
            let op = alu_ops.get((i.code >> 4) as usize).copied().unwrap_or("?");
            match op {
                "neg" => format!("{w}{dst} = -{w}{dst}"),
                "end" => format!("{w}{dst} = bswap{}({w}{dst})", i.imm),
                "=" => format!(
                    "{w}{dst} = {}",
                    if i.code & 0x08 != 0 {
                        format!("{w}{src}")
                    } else {
                        i.imm.to_string()
                    }
                ),
                _ => format!(
                    "{w}{dst} {op} {}",
                    if i.code & 0x08 != 0 {
                        format!("{w}{src}")
                    } else {
                        i.imm.to_string()
                    }
                ),
            }
        }
        0x05 | 0x06 => {
            let op = jmp_ops.get((i.code >> 4) as usize).copied().unwrap_or("?");
            let w = if class == 0x06 { "w" } else { "r" };
            match op {
                "exit" => "exit".to_string(),
                "call" if src == 1 => format!("call pc{:+}", i.imm),
                "call" => match helper_name(i.imm) {
                    Some(n) => format!("call bpf_{n}#{}", i.imm),
                    None => format!("call helper#{}", i.imm),
                },
                "goto" => format!("goto pc{:+}", i.off),
                _ => format!(
                    "if {w}{dst} {op} {} goto pc{:+}",
                    operand(i.code & 0x08 != 0),
                    i.off
                ),
            }
        }
        0x01 => format!("r{dst} = *({size} *)(r{src} {:+})", i.off),
        0x02 => format!("*({size} *)(r{dst} {:+}) = {}", i.off, i.imm),
        0x03 if i.code & 0xe0 == 0xc0 => {
            let op = match i.imm & !0x01 {
                0x00 => "+=",
                0x40 => "|=",
                0x50 => "&=",
                0xa0 => "^=",
                0xe0 => "xchg",
                0xf0 => "cmpxchg",
                _ => "?=",
            };
            let fetch = if i.imm & 0x01 != 0 { " (fetch)" } else { "" };
            format!("lock *({size} *)(r{dst} {:+}) {op} r{src}{fetch}", i.off)
        }
        0x03 => format!("*({size} *)(r{dst} {:+}) = r{src}", i.off),
        _ => format!(
            "op {:#04x} r{dst} r{src} off {} imm {}",
            i.code, i.off, i.imm
        ),
    }
}

fn source_line(btf: Option<&Btf>, line_off: u32) -> String {
    btf.and_then(|b| b.string_at(line_off).ok())
        .map(|s| escape_name(s.trim()))
        .unwrap_or_default()
}

/// `describe` prints at most this many bytes, plus [`OUTPUT_PER_CODE_BYTE`] per byte of code
/// in the object (and the BTF listing, which has its own budget linear in the BTF), so a small
/// hostile object (400 programs linking one big function, say) cannot print gigabytes.
pub const OUTPUT_BASE: usize = 1024 * 1024;
/// See [`OUTPUT_BASE`].
pub const OUTPUT_PER_CODE_BYTE: usize = 32;

/// Output left to spend on listings; past it, listings print one marker and stop.
struct Budget {
    limit: usize,
    cut: bool,
}

impl Budget {
    /// Whether `out` may grow; writes the marker the first time it may not.
    fn ok(&mut self, out: &mut String) -> bool {
        if out.len() <= self.limit {
            return true;
        }
        if !self.cut {
            self.cut = true;
            let _ = writeln!(
                out,
                "      ... (listing cut: the output budget for this object is spent; \
                 use --no-insns, or `inspect` one object at a time)"
            );
        }
        false
    }
}

fn write_program_header(out: &mut String, p: &ProgramSpec) {
    let attach = match &p.attach {
        AttachPoint::Tracepoint { category, name } => {
            format!("tracepoint {}/{}", escape_name(category), escape_name(name))
        }
        AttachPoint::TpBtf { name } => format!("tp_btf {}", escape_name(name)),
        AttachPoint::RawTracepoint { name } => format!("raw tracepoint {}", escape_name(name)),
        AttachPoint::None => "(none rawsnoop can attach)".to_string(),
    };
    let _ = writeln!(
        out,
        "  {} in section '{}': type {} ({}), attach {attach}, {} instructions, {} func_info, {} line_info",
        escape_name(&p.name),
        escape_name(&p.section),
        prog_type_name(p.prog_type),
        p.prog_type,
        p.insns.len(),
        p.func_info.len(),
        p.line_info.len()
    );
}

fn write_program(out: &mut String, spec: &ObjectSpec, p: &ProgramSpec, budget: &mut Budget) {
    let btf = spec.btf.as_ref();
    let relocs: HashMap<usize, &RelocKind> = p.relocs.iter().map(|r| (r.insn, &r.kind)).collect();
    let mut lines = p.line_info.iter().peekable();
    let mut last_line = u32::MAX;
    let mut skip_next = false;
    for (idx, insn) in p.insns.iter().enumerate() {
        if !budget.ok(out) {
            return;
        }
        if skip_next {
            skip_next = false;
            continue;
        }
        while let Some(l) = lines.peek() {
            if l.insn_off as usize > idx {
                break;
            }
            let file = btf
                .and_then(|b| b.string_at(l.file_name_off).ok())
                .map(|f| escape_name(f.rsplit('/').next().unwrap_or(f)))
                .unwrap_or_default();
            if l.line_off != last_line {
                let _ = writeln!(
                    out,
                    "      ; {}  [{}:{}]",
                    source_line(btf, l.line_off),
                    file,
                    l.line_col >> 10
                );
            }
            last_line = l.line_off;
            lines.next();
        }
        let next = p.insns.get(idx + 1);
        let mut text = format_insn(insn, next);
        if let Some(kind) = relocs.get(&idx) {
            let (map, extra) = match kind {
                RelocKind::Map { map } => (*map, String::new()),
                RelocKind::MapValue { map, offset } => (*map, format!(" + {offset}")),
            };
            let name = spec
                .maps
                .get(map)
                .map_or("?".into(), |m| escape_name(&m.name));
            text = format!(
                "r{} = &map '{name}'{extra}   (relocated at load)",
                insn.dst()
            );
        }
        let _ = writeln!(out, "    {idx:5}: {text}");
        skip_next = insn.is_ld_imm64();
    }
}

/// The whole explanation of an object; `name` labels it (a path or a built-in's name).
/// Everything from the object is escaped ([`crate::escape`]); the output is bounded
/// (see [`OUTPUT_BASE`]).
pub fn describe(name: &str, spec: &ObjectSpec, with_insns: bool) -> String {
    let code_bytes: u64 = spec
        .sections
        .iter()
        .filter(|s| s.kind == SectionKind::Program)
        .map(|s| s.size)
        .sum();
    let mut budget = Budget {
        limit: OUTPUT_BASE.saturating_add(
            usize::try_from(code_bytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(OUTPUT_PER_CODE_BYTE),
        ),
        cut: false,
    };
    let mut out = String::new();
    let _ = writeln!(out, "object {}", escape_name(name));
    let _ = writeln!(out, "  license: \"{}\"", escape_name(&spec.license));
    if spec.kern_version != 0 {
        let v = spec.kern_version;
        let _ = writeln!(
            out,
            "  kernel version: {}.{}.{}",
            v >> 16,
            (v >> 8) & 0xff,
            v & 0xff
        );
    }
    let _ = writeln!(out, "\nsections ({}):", spec.sections.len());
    for s in &spec.sections {
        let _ = writeln!(
            out,
            "  [{:2}] {:<36} {:<8} {:>8} bytes",
            s.index,
            escape_name(&s.name),
            s.kind.as_str(),
            s.size
        );
    }
    let _ = writeln!(out, "\nmaps ({}):", spec.maps.len());
    for m in &spec.maps {
        let origin = match m.origin {
            MapOrigin::BtfMaps => "BTF-defined in .maps",
            MapOrigin::Legacy => "legacy `maps` section",
            MapOrigin::GlobalData => "global data",
        };
        let entries = if m.max_entries == 0 {
            "0 (= possible CPUs)".to_string()
        } else {
            m.max_entries.to_string()
        };
        let _ = writeln!(
            out,
            "  {:<16} {:<17} key {:>3} B  value {:>5} B  max_entries {entries}  flags {:#x}  ({origin}, section {}){}",
            escape_name(&m.name),
            map_type_name(m.map_type),
            m.key_size,
            m.value_size,
            m.flags,
            escape_name(&m.section),
            if m.freeze { ", frozen after load" } else { "" }
        );
    }
    maps::teach_within(
        &mut out,
        spec,
        crate::sys::mmap::page_size() as u64,
        crate::sys::cpus::possible_cpus().map_or(1, |c| c.len() as u64),
        budget.limit,
    );
    let _ = writeln!(out, "\nprograms ({}):", spec.programs.len());
    for p in &spec.programs {
        write_program_header(&mut out, p);
        if with_insns {
            write_program(&mut out, spec, p, &mut budget);
        }
        let _ = writeln!(out, "    relocations ({}):", p.relocs.len());
        for r in &p.relocs {
            if !budget.ok(&mut out) {
                break;
            }
            let (map, what) = match r.kind {
                RelocKind::Map { map } => (map, "map fd".to_string()),
                RelocKind::MapValue { map, offset } => (map, format!("map value + {offset}")),
            };
            let name = spec
                .maps
                .get(map)
                .map_or("?".into(), |m| escape_name(&m.name));
            let _ = writeln!(
                out,
                "      insn {:5}: ld_imm64 <- {what} of '{name}'",
                r.insn
            );
        }
    }
    for w in &spec.warnings {
        let _ = writeln!(out, "warning: {}", escape_str(w));
    }
    match &spec.btf {
        Some(btf) => {
            let _ = writeln!(out, "\nBTF types ({}):", btf.types_len().saturating_sub(1));
            // format_all escapes the names it prints (one line per type).
            for l in btf.format_all().lines() {
                let _ = writeln!(out, "  {l}");
            }
        }
        None => {
            let _ = writeln!(
                out,
                "\nno BTF (compile with -g to get types and source lines)"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | dst,
            off,
            imm,
        }
    }

    #[test]
    fn formats_common_instructions() {
        assert_eq!(format_insn(&insn(0xb7, 1, 0, 0, 5), None), "r1 = 5");
        assert_eq!(format_insn(&insn(0xbf, 6, 1, 0, 0), None), "r6 = r1");
        assert_eq!(
            format_insn(&insn(0x85, 0, 0, 0, 131), None),
            "call bpf_ringbuf_reserve#131"
        );
        assert_eq!(
            format_insn(&insn(0x85, 0, 0, 0, 9999), None),
            "call helper#9999"
        );
        assert_eq!(
            format_insn(&insn(0xdb, 0, 1, 0, 0), None),
            "lock *(u64 *)(r0 +0) += r1"
        );
        assert_eq!(format_insn(&insn(0x95, 0, 0, 0, 0), None), "exit");
        assert_eq!(
            format_insn(&insn(0x15, 0, 0, 3, 0), None),
            "if r0 == 0 goto pc+3"
        );
        assert_eq!(
            format_insn(&insn(0x61, 1, 6, 8, 0), None),
            "r1 = *(u32 *)(r6 +8)"
        );
        assert_eq!(
            format_insn(&insn(0x18, 1, 1, 0, 7), Some(&insn(0, 0, 0, 0, 0))),
            "r1 = map_fd[7] ll"
        );
        assert_eq!(map_type_name(27), "ringbuf");
        assert_eq!(prog_type_name(5), "tracepoint");
        assert_eq!(map_type_name(9999), "unknown");
    }

    #[test]
    fn describes_every_builtin_object() {
        for (name, bytes) in crate::objects::builtin() {
            let spec = ObjectSpec::parse(bytes).expect("builtin parses");
            let text = describe(name, &spec, true);
            for m in &spec.maps {
                assert!(text.contains(&m.name), "{name}: map {} missing", m.name);
            }
            for p in &spec.programs {
                assert!(
                    text.contains(&format!("{} in section '{}'", p.name, p.section)),
                    "{name}"
                );
            }
            assert!(text.contains("BTF types"), "{name}");
        }
    }
}
