//! `rawsnoop btf dump --format c`: the header made from this kernel's BTF compiles with clang,
//! reproduces the kernel's layout (every named struct's size and every named member's offset,
//! checked by the compiler with _Static_assert), and a CO-RE program built against it loads.
//! Skipped (loudly) without clang-19 or the kernel's BTF.

mod common;

use std::fmt::Write;
use std::path::Path;
use std::process::Command;

use rawsnoop::loader::btf::{dump_c::dump_c, Btf, BtfType};
use rawsnoop::loader::load::Object;
use rawsnoop::loader::ObjectSpec;

use common::*;

fn clang() -> Option<String> {
    let c = std::env::var("CLANG").unwrap_or_else(|_| "clang-19".into());
    Command::new(&c)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(c)
}

fn setup(test: &str) -> Option<(String, Btf, TempDir)> {
    // Under the VM harness clang is slow (TCG); the host run covers this.
    if std::env::var("RAWSNOOP_FOREIGN_PREBUILT").is_ok_and(|v| v == "1") {
        println!("SKIPPED: {test}: prebuilt-only run (no clang in guests)");
        return None;
    }
    let Some(clang) = clang() else {
        println!("SKIPPED: {test}: no clang-19");
        return None;
    };
    let Ok(data) = std::fs::read("/sys/kernel/btf/vmlinux") else {
        println!("SKIPPED: {test}: no /sys/kernel/btf/vmlinux");
        return None;
    };
    let btf = Btf::parse(&data).unwrap();
    let dir = TempDir::new(test);
    std::fs::write(dir.0.join("vmlinux.h"), dump_c(&btf)).unwrap();
    Some((clang, btf, dir))
}

fn compile(clang: &str, dir: &Path, src: &str, extra: &[&str]) -> std::process::Output {
    std::fs::write(dir.join("t.c"), src).unwrap();
    Command::new(clang)
        .args(["-target", "bpf", "-O2", "-g", "-D__TARGET_ARCH_x86", "-I"])
        .arg(dir)
        .args(["-I/usr/include/x86_64-linux-gnu"])
        .args(extra)
        .arg("-c")
        .arg(dir.join("t.c"))
        .arg("-o")
        .arg(dir.join("t.o"))
        .output()
        .unwrap()
}

#[test]
fn dumped_header_reproduces_every_struct_layout() {
    let Some((clang, btf, dir)) = setup("dumped_header_reproduces_every_struct_layout") else {
        return;
    };
    let mut src = String::from("#include \"vmlinux.h\"\n");
    let mut seen = std::collections::HashSet::new();
    let (mut structs, mut fields) = (0, 0);
    for id in 1..btf.types_len() {
        let t = btf.type_by_id(id).unwrap();
        let name = btf.name_of(id).unwrap();
        // struct, union and enum tags share one namespace: only a tag's first user keeps it.
        let first = !name.is_empty() && seen.insert(name.to_string());
        let (kw, members, size) = match t {
            BtfType::Struct { members, size, .. } => ("struct", members, *size),
            BtfType::Union { members, size, .. } => ("union", members, *size),
            _ => continue,
        };
        // va_list is the BPF target's (8 bytes), not the kernel's: bpftool's header differs
        // from the kernel there in the same way.
        if !first || uses_va_list(&btf, id, 0) {
            continue;
        }
        structs += 1;
        let _ = writeln!(
            src,
            "_Static_assert(sizeof({kw} {name}) == {size}, \"size of {name}\");"
        );
        for m in members.iter().filter(|m| m.bitfield_size == 0) {
            let f = btf.string_at(m.name_off).unwrap();
            if f.is_empty() {
                continue;
            }
            fields += 1;
            let _ = writeln!(
                src,
                "_Static_assert(__builtin_offsetof({kw} {name}, {f}) == {}, \"{name}.{f}\");",
                m.offset_bits / 8
            );
        }
    }
    let out = compile(&clang, &dir.0, &src, &["-fsyntax-only"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let first: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("error"))
        .take(20)
        .collect();
    assert!(
        out.status.success(),
        "{} of {structs} structs / {fields} fields wrong:\n{}",
        err.matches("error:").count(),
        first.join("\n")
    );
}

/// Whether `id` holds a `va_list` by value (directly or in a by-value member).
fn uses_va_list(btf: &Btf, id: u32, depth: u32) -> bool {
    if depth > 16 || id == 0 {
        return false;
    }
    match btf.type_by_id(id).unwrap() {
        BtfType::Typedef { type_id, .. } => {
            let n = btf.name_of(id).unwrap();
            n.contains("va_list") || uses_va_list(btf, *type_id, depth + 1)
        }
        BtfType::Struct { members, .. } | BtfType::Union { members, .. } => members
            .iter()
            .any(|m| uses_va_list(btf, m.type_id, depth + 1)),
        BtfType::Array { elem_type, .. } => uses_va_list(btf, *elem_type, depth + 1),
        BtfType::Const { type_id } | BtfType::Volatile { type_id } => {
            uses_va_list(btf, *type_id, depth + 1)
        }
        _ => false,
    }
}

#[test]
fn core_program_built_against_the_dumped_header_loads() {
    let Some((clang, _, dir)) = setup("core_program_built_against_the_dumped_header_loads") else {
        return;
    };
    if !bpf_allowed("core_program_built_against_the_dumped_header_loads") {
        return;
    }
    let src = r#"
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
__u32 ppid = 0;
SEC("tp/sched/sched_process_exec")
int exec_ppid(struct trace_event_raw_sched_process_exec *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	ppid = BPF_CORE_READ(t, real_parent, tgid) + ctx->pid * 0;
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
"#;
    let out = compile(&clang, &dir.0, src, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spec = ObjectSpec::parse(&std::fs::read(dir.0.join("t.o")).unwrap()).unwrap();
    assert!(!spec.programs[0].core_relos.is_empty());
    Object::load(&spec).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn cli_dumps_an_objects_types_and_refuses_bad_formats() {
    let obj = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/core/perturbed.bpf.o");
    let out = Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .args(["btf", "dump"])
        .arg(&obj)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("struct trace_event_raw_sched_process_exec___perturbed {")
            && text.contains("preserve_access_index"),
        "{text}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .args(["btf", "dump", "--format", "yaml"])
        .arg(&obj)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--format must be"));
}
