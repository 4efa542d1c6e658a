//! Linking tests on `testdata/calls.bpf.c`: nested `.text` calls (with and without relocations),
//! a callback passed by address (`BPF_PSEUDO_FUNC`) and string literals in `.rodata.str1.1`.

use super::tests::{check_invariants, map_idx, symbol, testdata};
use super::*;
use crate::loader::elf::*;

pub(super) fn check_calls(data: &[u8]) {
    let spec = ObjectSpec::parse(data).expect("calls parses");
    check_invariants(data, &spec);
    assert!(spec.warnings.is_empty(), "warnings: {:?}", spec.warnings);
    let btf = spec.btf.as_ref().expect("BTF");
    let len = |f: &str| (symbol(data, f).2 / 8) as usize;
    let fnames = |p: &ProgramSpec| -> Vec<String> {
        let mut v: Vec<String> = p
            .func_info
            .iter()
            .map(|f| btf.name_of(f.type_id).expect("name").to_string())
            .collect();
        v.sort();
        v
    };

    // nested -> outer -> middle -> leaf, outer -> leaf: every function linked exactly once.
    let nested = spec.program("nested").expect("nested");
    assert_eq!(nested.prog_type, BPF_PROG_TYPE_RAW_TRACEPOINT);
    assert_eq!(
        nested.insns.len(),
        len("nested") + len("outer") + len("middle") + len("leaf")
    );
    assert_eq!(fnames(nested), ["leaf", "middle", "nested", "outer"]);
    assert_eq!(
        nested.insns.iter().filter(|i| i.is_pseudo_call()).count(),
        4
    );

    // looper passes `step` by address (ld_imm64 -> BPF_PSEUDO_FUNC) and calls leaf.
    let looper = spec.program("looper").expect("looper");
    assert_eq!(
        looper.insns.len(),
        len("looper") + len("step") + len("leaf")
    );
    assert_eq!(fnames(looper), ["leaf", "looper", "step"]);
    let funcs: Vec<(usize, &Insn)> = looper
        .insns
        .iter()
        .enumerate()
        .filter(|(_, i)| i.is_ld_imm64() && i.src() == BPF_PSEUDO_FUNC)
        .collect();
    assert_eq!(funcs.len(), 1);
    let (at, insn) = funcs[0];
    let target = (at as i64 + i64::from(insn.imm) + 1) as u32;
    let fi = looper
        .func_info
        .iter()
        .find(|f| f.insn_off == target)
        .expect("callback address is a function start");
    assert_eq!(btf.name_of(fi.type_id).expect("name"), "step");
    assert!(
        looper.relocs.iter().all(|r| r.insn != at),
        "no map reloc on the callback"
    );

    // The string literal lands in a frozen `.rodata.str1.1` map referenced by looper.
    let s = spec.map(".rodata.str1.1").expect("string map");
    assert!(s.freeze);
    let init = s.initial.as_ref().expect("initial");
    assert!(init.windows(11).any(|w| w == b"literal %d\n"), "{init:?}");
    let idx = map_idx(&spec, ".rodata.str1.1");
    assert!(looper
        .relocs
        .iter()
        .any(|r| matches!(r.kind, RelocKind::MapValue { map, .. } if map == idx)));
}

#[test]
fn committed_calls() {
    check_calls(&testdata("calls.bpf.o"));
}
