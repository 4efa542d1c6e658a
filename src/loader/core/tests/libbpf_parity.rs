//! Relocations on which compare/core-diff/run found rawsnoop and libbpf 1.1 disagreeing, each
//! pinned to libbpf's answer (relo_core.c was read for the rule; the object that showed it is
//! named in each test).

use super::*;

/// `bpf_core_type_matches()`: enums of different sizes never match, even when every local
/// enumerator exists in the kernel's (edge.bpf.o: a 4-byte local flavour of the kernel's 8-byte
/// ENUM64 `perf_callchain_context`; libbpf 0, we said 1).
#[test]
fn type_matches_enum_sizes_must_be_equal() {
    let mut l = B::new();
    let e = l.enm("ctx___f", &[("USER___f", 1)]);
    let mut k = B::new();
    k.enm64("ctx", &[("USER", -512)]);
    let t = target(k);
    let relos = [l.relo(0, e, "0", 8), l.relo(1, e, "0", 12)];
    let mut insns = vec![mov(1), mov(1)];
    run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!((insns[0].imm, insns[1].imm), (1, 0), "exists, but no match");

    // Same size: enum matches enum64, enumerators by essential name.
    let mut k = B::new();
    k.enm("ctx", &[("OTHER", 0), ("USER", 3)]);
    let t = target(k);
    let mut insns = vec![mov(1), mov(1)];
    run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!((insns[0].imm, insns[1].imm), (1, 1));
}

/// `bpf_core_type_matches()` compares member names and types, not bitfield widths
/// (edge.bpf.o: local `struct linux_binprm___c { unsigned int secureexec; }` against the
/// kernel's `unsigned int secureexec: 1`; libbpf 1, we said 0).
#[test]
fn type_matches_ignores_bitfield_widths() {
    let mut l = B::new();
    let lu = l.int("unsigned int", 4, false);
    let s = l.strukt("bprm___c", 4, &[("secureexec", lu, 0, 0)]);
    let mut k = B::new();
    let ku = k.int("unsigned int", 4, false);
    k.strukt(
        "bprm",
        8,
        &[("have_execfd", ku, 0, 1), ("secureexec", ku, 2, 1)],
    );
    let t = target(k);
    let relos = [l.relo(0, s, "0", 12)];
    let mut insns = vec![mov(1)];
    run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!(insns[0].imm, 1);
}

/// Member names match by essential name too, and an anonymous local member type does not match a
/// named kernel one (libbpf `bpf_core_names_match`).
#[test]
fn type_matches_member_names_are_essential_names() {
    let mut l = B::new();
    let li = l.int("int", 4, true);
    let s = l.strukt("s___m", 4, &[("a___x", li, 0, 0)]);
    let (_, _, t) = basic();
    let relos = [l.relo(0, s, "0", 12)];
    let mut insns = vec![mov(1)];
    run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!(insns[0].imm, 1, "a___x is a");

    // A member whose local type is an anonymous struct, the kernel's a named one: no match.
    let mut l = B::new();
    let anon = l.strukt("", 4, &[]);
    let s = l.strukt("w", 4, &[("inner", anon, 0, 0)]);
    let mut k = B::new();
    let named = k.strukt("inner_t", 4, &[]);
    k.strukt("w", 4, &[("inner", named, 0, 0)]);
    let t = target(k);
    let relos = [l.relo(0, s, "0", 12)];
    let mut insns = vec![mov(1)];
    run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!(insns[0].imm, 0);
}

/// A 32-bit enumerator's value is sign-extended, as libbpf reads `__s32 btf_enum.val`, even
/// when the enum is not flagged signed (5.10's BTF: `perf_callchain_context` is a 4-byte ENUM
/// with PERF_CONTEXT_USER = -512 stored as 0xfffffe00 and no kflag; libbpf patched the ld_imm64
/// to 0xfffffffffffffe00, we to 0xfffffe00).
#[test]
fn enum_value_32bit_is_sign_extended() {
    let mut l = B::new();
    let e = l.enm("ctx", &[("USER", -512)]);
    let mut k = B::new();
    // BtfType::Enum with signed: false keeps the raw u32, as the parser does without kflag.
    let n = k.0.add_string("ctx");
    let v = k.0.add_string("USER");
    k.0.add_type(BtfType::Enum {
        name_off: n,
        size: 4,
        signed: false,
        values: vec![EnumValue {
            name_off: v,
            value: 0xffff_fe00,
        }],
    });
    let t = target(k);
    let relos = [l.relo(0, e, "0", 11)];
    let mut insns = vec![
        Insn {
            code: crate::loader::OP_LD_IMM64,
            regs: 0x01,
            off: 0,
            imm: -512,
        },
        Insn {
            imm: -1,
            ..Insn::default()
        },
    ];
    let out = run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!(out[0].new, 0xffff_ffff_ffff_fe00);
    assert_eq!((insns[0].imm, insns[1].imm), (-512, -1));
}
