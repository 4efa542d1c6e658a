//! Tests on real BPF objects: the committed `src/loader/testdata/*.bpf.o` (always), the same sources
//! recompiled with every clang found, and the project's `bpf/*.bpf.c` (when clang exists).
//!
//! Expected values come from the C sources (map types, sizes, sections) or from an independent
//! reading of the ELF through the `object` crate's high-level API (symbol values, function bytes).

use super::*;
use crate::loader::elf::*;
use object::{Object, ObjectSection, ObjectSymbol};
use std::path::{Path, PathBuf};

pub(super) fn testdata(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src/loader/testdata")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// (section name, value, size) of symbol `name`, read through `object`'s high-level API.
pub(super) fn symbol(data: &[u8], name: &str) -> (String, u64, u64) {
    let file = object::File::parse(data).expect("object parses");
    let sym = file
        .symbols()
        .find(|s| s.name() == Ok(name))
        .unwrap_or_else(|| panic!("no symbol {name}"));
    let sec = file
        .section_by_index(sym.section_index().expect("defined"))
        .expect("section");
    (
        sec.name().expect("name").to_string(),
        sym.address(),
        sym.size(),
    )
}

/// Opcode bytes of function `name` as stored in the ELF (relocations do not touch opcodes).
pub(super) fn func_opcodes(data: &[u8], name: &str) -> Vec<u8> {
    let (sec, value, size) = symbol(data, name);
    let file = object::File::parse(data).expect("object parses");
    let bytes = file
        .section_by_name(&sec)
        .expect("sec")
        .data()
        .expect("data");
    bytes[value as usize..(value + size) as usize]
        .chunks(8)
        .map(|c| c[0])
        .collect()
}

pub(super) fn map_idx(spec: &ObjectSpec, name: &str) -> usize {
    spec.map_index(name)
        .unwrap_or_else(|| panic!("map {name} missing"))
}

/// Names of the maps a program's relocations refer to.
pub(super) fn referenced(spec: &ObjectSpec, prog: &ProgramSpec) -> Vec<String> {
    let mut v: Vec<String> = prog
        .relocs
        .iter()
        .map(|r| match r.kind {
            RelocKind::Map { map } | RelocKind::MapValue { map, .. } => spec.maps[map].name.clone(),
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Structural invariants every parsed object must satisfy; `data` is the ELF for independent checks.
pub(super) fn check_invariants(data: &[u8], spec: &ObjectSpec) {
    let btf = spec.btf.as_ref();
    for p in &spec.programs {
        for r in &p.relocs {
            let insn = p.insns.get(r.insn).expect("reloc inside the stream");
            assert!(
                insn.is_ld_imm64(),
                "{}: reloc at {} not on ld_imm64",
                p.name,
                r.insn
            );
            assert!(
                r.insn + 1 < p.insns.len(),
                "{}: ld_imm64 second half missing",
                p.name
            );
            match r.kind {
                RelocKind::Map { map } => {
                    let m = &spec.maps[map];
                    assert_ne!(
                        m.origin,
                        MapOrigin::GlobalData,
                        "{}: Map reloc on data map",
                        p.name
                    );
                }
                RelocKind::MapValue { map, offset } => {
                    let m = &spec.maps[map];
                    assert_eq!(m.origin, MapOrigin::GlobalData);
                    assert!(
                        offset < m.value_size,
                        "{}: offset {offset} >= {}",
                        p.name,
                        m.value_size
                    );
                }
            }
        }
        // Every bpf-to-bpf call lands on the first instruction of a function whose func_info names it,
        // and the code there is that function's code from `.text`.
        let starts: Vec<u32> = p.func_info.iter().map(|f| f.insn_off).collect();
        for (i, insn) in p.insns.iter().enumerate() {
            if !insn.is_pseudo_call() {
                continue;
            }
            let t = i as i64 + i64::from(insn.imm) + 1;
            assert!(
                t >= 0 && (t as usize) < p.insns.len(),
                "{}: call at {i} out of range",
                p.name
            );
            if let (Some(btf), false) = (btf, starts.is_empty()) {
                let fi = p
                    .func_info
                    .iter()
                    .find(|f| i64::from(f.insn_off) == t)
                    .unwrap_or_else(|| {
                        panic!("{}: call at {i} -> {t} is not a function start", p.name)
                    });
                let callee = btf.name_of(fi.type_id).expect("func name");
                let want = func_opcodes(data, callee);
                let got: Vec<u8> = p.insns[t as usize..t as usize + want.len()]
                    .iter()
                    .map(|x| x.code)
                    .collect();
                assert_eq!(got, want, "{}: code at {t} is not {callee}", p.name);
            }
        }
        if !p.func_info.is_empty() {
            let btf = btf.expect("func_info implies BTF");
            assert_eq!(p.func_info[0].insn_off, 0);
            assert_eq!(btf.name_of(p.func_info[0].type_id).expect("name"), p.name);
            assert!(starts.windows(2).all(|w| w[0] < w[1]));
            assert_eq!(p.func_info_rec_size, 8);
        }
        if !p.line_info.is_empty() {
            assert_eq!(p.line_info[0].insn_off, 0);
            assert!(p
                .line_info
                .windows(2)
                .all(|w| w[0].insn_off < w[1].insn_off));
            assert!(p
                .line_info
                .iter()
                .all(|l| (l.insn_off as usize) < p.insns.len()));
            for s in &starts {
                assert!(
                    p.line_info.iter().any(|l| l.insn_off == *s),
                    "{}: no line at func {s}",
                    p.name
                );
            }
            assert_eq!(p.line_info_rec_size, 16);
        }
    }
}

pub(super) fn check_maps_mix(data: &[u8]) {
    let spec = ObjectSpec::parse(data).expect("maps_mix parses");
    check_invariants(data, &spec);
    assert_eq!(spec.license, "Dual MIT/GPL");
    assert_eq!(spec.kern_version, 0);
    assert!(spec.warnings.is_empty(), "warnings: {:?}", spec.warnings);
    let btf = spec.btf.as_ref().expect("BTF");

    let m = spec.map("events").expect("events");
    assert_eq!(
        (m.map_type, m.key_size, m.value_size, m.max_entries),
        (27, 0, 0, 256 * 1024)
    );
    let m = spec.map("by_pid").expect("by_pid");
    assert_eq!(
        (m.map_type, m.key_size, m.value_size, m.max_entries, m.flags),
        (1, 4, 32, 1024, 1)
    );
    assert_eq!(btf.name_of(m.btf_value_type_id).expect("name"), "event");
    assert_eq!(btf.size_of(m.btf_key_type_id).expect("size"), 4);
    let m = spec.map("counters").expect("counters");
    assert_eq!(
        (m.map_type, m.key_size, m.value_size, m.max_entries),
        (6, 4, 8, 4)
    );
    assert_eq!((m.btf_key_type_id, m.btf_value_type_id), (0, 0));
    let m = spec
        .map("lru_with_a_rather_long_name")
        .expect("full name kept");
    assert_eq!(
        (m.map_type, m.key_size, m.value_size, m.max_entries),
        (9, 8, 8, 128)
    );
    let m = spec.map("perf_out").expect("perf_out");
    assert_eq!(
        (m.map_type, m.key_size, m.value_size, m.max_entries),
        (4, 4, 4, 0)
    );
    for name in ["events", "by_pid", "counters", "perf_out"] {
        assert_eq!(spec.map(name).expect("map").origin, MapOrigin::BtfMaps);
    }

    let rodata_size = symbol(data, "min_ns").1 + 8; // min_ns is the last .rodata variable
    let ro = spec.map(".rodata").expect(".rodata");
    assert_eq!(
        (ro.map_type, ro.key_size, ro.max_entries, ro.origin),
        (2, 4, 1, MapOrigin::GlobalData)
    );
    assert_eq!(u64::from(ro.value_size), rodata_size);
    assert!(ro.freeze);
    assert_eq!(ro.flags, BPF_F_RDONLY_PROG);
    let init = ro.initial.as_ref().expect("rodata initial");
    let off = symbol(data, "min_ns").1 as usize;
    assert_eq!(
        u64::from_le_bytes(init[off..off + 8].try_into().unwrap()),
        1000
    );
    assert_eq!(
        btf.name_of(ro.btf_value_type_id).expect("datasec"),
        ".rodata"
    );
    let d = spec.map(".data").expect(".data");
    assert_eq!(d.initial.as_deref(), Some(&7u64.to_le_bytes()[..]));
    assert!(!d.freeze);
    let bss = spec.map(".bss").expect(".bss");
    assert!(bss.initial.is_none());
    assert_eq!(bss.value_size, 8 + 16, "dropped (u64) + scratch (u32[4])");

    // Programs: two in one section, one `tracepoint/`, one kprobe.
    let names: Vec<_> = spec.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names.len(), 4, "{names:?}");
    let exec = spec.program("on_exec").expect("on_exec");
    let second = spec.program("on_exec_second").expect("on_exec_second");
    assert_eq!(exec.section, "tp/sched/sched_process_exec");
    assert_eq!(second.section, exec.section);
    let tp = AttachPoint::Tracepoint {
        category: "sched".into(),
        name: "sched_process_exec".into(),
    };
    assert_eq!((exec.prog_type, &exec.attach), (5, &tp));
    assert_eq!(second.attach, tp);
    let execve = spec.program("on_execve").expect("on_execve");
    assert_eq!(
        execve.attach,
        AttachPoint::Tracepoint {
            category: "syscalls".into(),
            name: "sys_enter_execve".into()
        }
    );
    let open = spec.program("on_open").expect("on_open");
    assert_eq!((open.prog_type, &open.attach), (2, &AttachPoint::None));

    // Linking: each callee appended once, after the program.
    let len = |f: &str| (symbol(data, f).2 / 8) as usize;
    assert_eq!(exec.insns.len(), len("on_exec") + len("fill") + len("bump"));
    assert_eq!(second.insns.len(), len("on_exec_second") + len("bump"));
    assert_eq!(
        execve.insns.len(),
        len("on_execve") + len("bump"),
        "bump called twice, linked once"
    );
    assert_eq!(open.insns.len(), len("on_open"));
    assert_eq!(exec.func_info.len(), 3);
    assert_eq!(second.func_info.len(), 2);
    assert_eq!(execve.func_info.len(), 2);
    assert_eq!(open.func_info.len(), 1);
    assert!(exec.line_info.len() >= 3 && !open.line_info.is_empty());
    let calls = execve.insns.iter().filter(|i| i.is_pseudo_call()).count();
    assert_eq!(calls, 2);

    // Relocations name the right maps, including those made by the linked subprograms.
    assert_eq!(
        referenced(&spec, exec),
        [".bss", ".data", ".rodata", "by_pid", "counters", "events"]
    );
    assert_eq!(referenced(&spec, second), [".bss", "counters"]);
    assert_eq!(
        referenced(&spec, execve),
        [".bss", ".rodata", "counters", "lru_with_a_rather_long_name"]
    );
    assert!(open.relocs.is_empty());
    let bss = map_idx(&spec, ".bss");
    let scratch = symbol(data, "scratch").1 as u32;
    let dropped = symbol(data, "dropped").1 as u32;
    let bss_offsets: Vec<u32> = second
        .relocs
        .iter()
        .filter_map(|r| match r.kind {
            RelocKind::MapValue { map, offset } if map == bss => Some(offset),
            _ => None,
        })
        .collect();
    assert!(
        bss_offsets.contains(&scratch) && bss_offsets.contains(&dropped),
        "{bss_offsets:?}"
    );
    // A subprogram's relocations are reported at their linked position (inside bump's copy).
    let bump_at = second.func_info[1].insn_off as usize;
    let counters = map_idx(&spec, "counters");
    assert!(second
        .relocs
        .iter()
        .any(|r| r.insn >= bump_at && r.kind == RelocKind::Map { map: counters }));

    // inspect: sections classified.
    let kind = |n: &str| spec.sections.iter().find(|s| s.name == n).map(|s| s.kind);
    assert_eq!(kind(".maps"), Some(SectionKind::Maps));
    assert_eq!(kind(".text"), Some(SectionKind::Program));
    assert_eq!(kind(".bss"), Some(SectionKind::Data));
    assert_eq!(kind(".BTF.ext"), Some(SectionKind::Btf));
    assert_eq!(kind("license"), Some(SectionKind::License));
    assert_eq!(kind(".rel.text"), Some(SectionKind::Reloc));
}

pub(super) fn check_legacy(data: &[u8]) {
    let spec = ObjectSpec::parse(data).expect("legacy parses");
    check_invariants(data, &spec);
    assert_eq!(spec.license, "GPL");
    assert_eq!(spec.kern_version, 0x060000);
    let h = spec.map("legacy_hash").expect("legacy_hash");
    assert_eq!(
        (
            h.map_type,
            h.key_size,
            h.value_size,
            h.max_entries,
            h.origin
        ),
        (1, 4, 8, 64, MapOrigin::Legacy)
    );
    let a = spec.map("legacy_array").expect("legacy_array");
    assert_eq!(
        (a.map_type, a.key_size, a.value_size, a.max_entries),
        (2, 4, 16, 2)
    );
    let sock = spec.program("sock_prog").expect("sock_prog");
    assert_eq!((sock.prog_type, sock.section.as_str()), (1, "socket"));
    assert_eq!(referenced(&spec, sock), ["legacy_array", "legacy_hash"]);
    assert!(sock
        .relocs
        .iter()
        .all(|r| matches!(r.kind, RelocKind::Map { .. })));
    let xdp = spec.program("xdp_prog").expect("xdp_prog");
    assert_eq!(xdp.prog_type, 6);
    assert_eq!(spec.programs.len(), 2);
}

#[test]
fn committed_maps_mix() {
    check_maps_mix(&testdata("maps_mix.bpf.o"));
}

#[test]
fn committed_legacy() {
    check_legacy(&testdata("legacy.bpf.o"));
}

#[test]
fn section_names_classify() {
    let tp = classify_section("tracepoint/syscalls/sys_enter_execve").expect("tp");
    assert_eq!(tp.prog_type, BPF_PROG_TYPE_TRACEPOINT);
    assert!(
        matches!(tp.attach, AttachPoint::Tracepoint { ref category, ref name }
        if category == "syscalls" && name == "sys_enter_execve")
    );
    assert_eq!(
        classify_section("tp/sched").expect("tp").attach,
        AttachPoint::None
    );
    assert_eq!(
        classify_section("kretprobe/do_exit").expect("k").prog_type,
        BPF_PROG_TYPE_KPROBE
    );
    let f = classify_section("fentry/do_exit").expect("fentry");
    assert_eq!(
        (f.prog_type, f.expected_attach_type),
        (BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY)
    );
    let b = classify_section("tp_btf/sched_switch").expect("tp_btf");
    assert_eq!(
        (b.prog_type, b.expected_attach_type),
        (BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP)
    );
    assert_eq!(
        classify_section("raw_tp/sched_switch")
            .expect("raw")
            .prog_type,
        17
    );
    assert_eq!(
        classify_section("xdp").expect("xdp").prog_type,
        BPF_PROG_TYPE_XDP
    );
    assert_eq!(
        classify_section("socket").expect("s").prog_type,
        BPF_PROG_TYPE_SOCKET_FILTER
    );
    assert_eq!(
        classify_section("perf_event").expect("p").prog_type,
        BPF_PROG_TYPE_PERF_EVENT
    );
    assert!(classify_section("xdpfoo").is_none());
    assert!(classify_section("mystery/thing").is_none());
    assert!(
        is_data_section(".rodata.str1.1") && is_data_section(".bss") && is_data_section(".data.x")
    );
    assert!(!is_data_section(".database") && !is_data_section(".rodatax"));
    assert_eq!(
        crate::loader::maps::kernel_name("lru_with_a_rather_long_name"),
        "lru_with_a_rath"
    );
}

/// clang binaries to try, in order; only those that run.
fn clangs() -> Vec<String> {
    ["clang", "clang-19", "clang-14"]
        .iter()
        .filter(|c| {
            std::process::Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(|c| c.to_string())
        .collect()
}

fn scratch_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rawsnoop-elf-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("tempdir");
    d
}

fn compile(clang: &str, src: &Path, include: &Path, out: &Path) -> Vec<u8> {
    let st = std::process::Command::new(clang)
        .args([
            "-target",
            "bpf",
            "-O2",
            "-g",
            "-I/usr/include/x86_64-linux-gnu",
        ])
        .arg("-I")
        .arg(include)
        .arg("-c")
        .arg(src)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run clang");
    assert!(
        st.status.success(),
        "{clang} {}: {}",
        src.display(),
        String::from_utf8_lossy(&st.stderr)
    );
    std::fs::read(out).expect("read object")
}

#[test]
fn recompiled_testdata_with_each_clang() {
    let cs = clangs();
    if cs.is_empty() {
        println!("SKIPPED (needs clang): recompiled_testdata_with_each_clang");
        return;
    }
    let dir = scratch_dir("td");
    let td = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/loader/testdata");
    for c in &cs {
        let o = compile(
            c,
            &td.join("maps_mix.bpf.c"),
            &td,
            &dir.join(format!("mm-{c}.o")),
        );
        check_maps_mix(&o);
        let o = compile(
            c,
            &td.join("legacy.bpf.c"),
            &td,
            &dir.join(format!("lg-{c}.o")),
        );
        check_legacy(&o);
        let o = compile(
            c,
            &td.join("calls.bpf.c"),
            &td,
            &dir.join(format!("calls-{c}.o")),
        );
        super::link_tests::check_calls(&o);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn project_bpf_objects_parse() {
    let cs = clangs();
    let bpf = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
    let srcs: Vec<PathBuf> = std::fs::read_dir(&bpf)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
                .collect()
        })
        .unwrap_or_default();
    if cs.is_empty() || srcs.is_empty() {
        println!("SKIPPED (needs clang and bpf/*.bpf.c): project_bpf_objects_parse");
        return;
    }
    let dir = scratch_dir("proj");
    for c in &cs {
        for src in &srcs {
            let stem = src.file_stem().unwrap().to_string_lossy().to_string();
            let data = compile(c, src, &bpf, &dir.join(format!("{stem}-{c}.o")));
            let spec = ObjectSpec::parse(&data).unwrap_or_else(|e| panic!("{stem} ({c}): {e}"));
            check_invariants(&data, &spec);
            assert!(!spec.programs.is_empty(), "{stem}: no programs");
            assert!(!spec.license.is_empty(), "{stem}: no license");
            assert!(
                spec.btf.is_some(),
                "{stem}: BTF unusable: {:?}",
                spec.warnings
            );
            for p in &spec.programs {
                assert!(
                    !p.func_info.is_empty(),
                    "{stem}/{}: no func_info: {:?}",
                    p.name,
                    spec.warnings
                );
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
