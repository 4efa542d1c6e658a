//! CO-RE over two hand-built BTF blobs (the object's and a "kernel"), no kernel involved.

use super::*;
use crate::loader::btf::{BtfType, EnumValue, Member};

/// A small BTF builder.
struct B(Btf);

impl B {
    fn new() -> B {
        B(Btf::new())
    }
    fn int(&mut self, name: &str, size: u32, signed: bool) -> u32 {
        let n = self.0.add_string(name);
        self.0.add_type(BtfType::Int {
            name_off: n,
            size,
            encoding: u8::from(signed),
            offset: 0,
            bits: (size * 8) as u8,
        })
    }
    fn arr(&mut self, elem: u32, index: u32, n: u32) -> u32 {
        self.0.add_type(BtfType::Array {
            elem_type: elem,
            index_type: index,
            nelems: n,
        })
    }
    /// members: (name, type, bit offset, bitfield size)
    fn strukt(&mut self, name: &str, size: u32, ms: &[(&str, u32, u32, u32)]) -> u32 {
        let n = self.0.add_string(name);
        let members = ms
            .iter()
            .map(|&(mn, t, off, bf)| Member {
                name_off: self.0.add_string(mn),
                type_id: t,
                offset_bits: off,
                bitfield_size: bf,
            })
            .collect();
        self.0.add_type(BtfType::Struct {
            name_off: n,
            size,
            members,
        })
    }
    fn enm(&mut self, name: &str, vals: &[(&str, i64)]) -> u32 {
        let (name_off, values) = self.enum_parts(name, vals);
        self.0.add_type(BtfType::Enum {
            name_off,
            size: 4,
            signed: false,
            values,
        })
    }
    /// An 8-byte unsigned ENUM64.
    fn enm64(&mut self, name: &str, vals: &[(&str, i64)]) -> u32 {
        let (name_off, values) = self.enum_parts(name, vals);
        self.0.add_type(BtfType::Enum64 {
            name_off,
            size: 8,
            signed: false,
            values,
        })
    }
    fn enum_parts(&mut self, name: &str, vals: &[(&str, i64)]) -> (u32, Vec<EnumValue>) {
        let n = self.0.add_string(name);
        let values = vals
            .iter()
            .map(|&(vn, v)| EnumValue {
                name_off: self.0.add_string(vn),
                value: v,
            })
            .collect();
        (n, values)
    }
    fn relo(&mut self, insn: u32, type_id: u32, access: &str, kind: u32) -> CoreRelo {
        CoreRelo {
            insn_off: insn,
            type_id,
            access_str_off: self.0.add_string(access),
            kind,
        }
    }
}

fn ldx(size_code: u8, off: i16) -> Insn {
    // BPF_LDX | BPF_MEM | size, r0 = *(r1 + off)
    Insn {
        code: 0x61 | size_code,
        regs: 0x10,
        off,
        imm: 0,
    }
}

fn alu_add(imm: i32) -> Insn {
    Insn {
        code: 0x07,
        regs: 0x01,
        off: 0,
        imm,
    }
}

fn mov(imm: i32) -> Insn {
    Insn {
        code: 0xb7,
        regs: 0x00,
        off: 0,
        imm,
    }
}

fn target(b: B) -> TargetBtf {
    TargetBtf::from_bytes("test-kernel", &b.0.to_bytes()).unwrap()
}

fn run(
    local: &B,
    insns: &mut [Insn],
    relos: &[CoreRelo],
    t: &TargetBtf,
) -> Result<Vec<Outcome>, CoreError> {
    let lb = Btf::parse(&local.0.to_bytes()).unwrap();
    relocate_program("p", insns, relos, &lb, &[], Some(t))
}

/// Local `struct s { int a; int b; }`, kernel `struct s { long pad; int a; int b; }`.
fn basic() -> (B, u32, TargetBtf) {
    let mut l = B::new();
    let li = l.int("int", 4, true);
    let ls = l.strukt("s", 8, &[("a", li, 0, 0), ("b", li, 32, 0)]);
    let mut k = B::new();
    let ki = k.int("int", 4, true);
    let kl = k.int("long", 8, true);
    k.strukt(
        "s",
        16,
        &[("pad", kl, 0, 0), ("a", ki, 64, 0), ("b", ki, 96, 0)],
    );
    (l, ls, target(k))
}

#[test]
fn field_byte_offset_patches_ldx_and_alu() {
    let (mut l, s, t) = basic();
    let r1 = l.relo(0, s, "0:1", 0);
    let r2 = l.relo(1, s, "0:1", 0);
    let mut insns = vec![ldx(0, 4), alu_add(4)];
    let out = run(&l, &mut insns, &[r1, r2], &t).unwrap();
    assert_eq!(insns[0].off, 12);
    assert_eq!(insns[1].imm, 12);
    assert_eq!((out[0].orig, out[0].new), (4, 12));
    assert_eq!(out[0].local, "struct s.b");
    assert_eq!(out[0].chosen.as_deref(), Some("struct s.b"));
    assert_eq!(out[0].candidates.len(), 1);
}

#[test]
fn flavoured_local_names_find_the_kernel_type() {
    let mut l = B::new();
    let li = l.int("int", 4, true);
    let s = l.strukt("s___old", 8, &[("a", li, 0, 0), ("b", li, 32, 0)]);
    let (_, _, t) = basic();
    let r = l.relo(0, s, "0:0", 0);
    let mut insns = vec![ldx(0, 0)];
    run(&l, &mut insns, &[r], &t).unwrap();
    assert_eq!(insns[0].off, 8);
}

#[test]
fn missing_field_poisons_and_explains() {
    let mut l = B::new();
    let li = l.int("int", 4, true);
    let s = l.strukt("s", 12, &[("a", li, 0, 0), ("gone", li, 32, 0)]);
    let (_, _, t) = basic();
    let r = l.relo(0, s, "0:1", 0);
    let e = l.relo(1, s, "0:1", 2); // FIELD_EXISTS
    let mut insns = vec![ldx(0, 4), mov(1)];
    let out = run(&l, &mut insns, &[r, e], &t).unwrap();
    assert!(out[0].poisoned);
    assert_eq!(insns[0], calc::poison_insn());
    let why = out[0].why.as_deref().unwrap();
    assert!(
        why.contains("no field `gone`") && why.contains("pad, a, b"),
        "{why}"
    );
    assert_eq!(insns[1].imm, 0, "field_exists of a missing field is 0");
}

#[test]
fn missing_type_zero_for_exists_kinds_poison_for_others() {
    let mut l = B::new();
    let li = l.int("int", 4, true);
    let s = l.strukt("nosuch", 4, &[("a", li, 0, 0)]);
    let (_, _, t) = basic();
    let relos = [
        l.relo(0, s, "0", 8), // TYPE_EXISTS
        l.relo(1, s, "0", 9), // TYPE_SIZE
        l.relo(2, s, "0:0", 0),
    ];
    let mut insns = vec![mov(1), mov(4), ldx(0, 0)];
    let out = run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!((insns[0].imm, insns[1].imm), (0, 0));
    assert!(out[2].poisoned);
    assert!(out[2]
        .why
        .as_deref()
        .unwrap()
        .contains("no type named `nosuch`"));
}

#[test]
fn type_relocations() {
    let (mut l, s, t) = basic();
    let relos = [
        l.relo(0, s, "0", 6),  // local id
        l.relo(1, s, "0", 7),  // target id
        l.relo(2, s, "0", 8),  // exists
        l.relo(3, s, "0", 9),  // size
        l.relo(4, s, "0", 12), // matches
    ];
    let mut insns = vec![mov(s as i32), mov(s as i32), mov(1), mov(8), mov(1)];
    run(&l, &mut insns, &relos, &t).unwrap();
    let ks = t.find("s", crate::loader::btf::BtfKind::Struct).unwrap();
    assert_eq!(
        insns.iter().map(|i| i.imm).collect::<Vec<_>>(),
        vec![s as i32, ks as i32, 1, 16, 1]
    );
}

#[test]
fn type_matches_is_stricter_than_exists() {
    let mut l = B::new();
    let li = l.int("int", 4, true);
    let s = l.strukt("s", 8, &[("a", li, 0, 0), ("zzz", li, 32, 0)]);
    let (_, _, t) = basic();
    let relos = [l.relo(0, s, "0", 8), l.relo(1, s, "0", 12)];
    let mut insns = vec![mov(1), mov(1)];
    run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!((insns[0].imm, insns[1].imm), (1, 0));
}

#[test]
fn enum_values_by_name() {
    let mut l = B::new();
    let e = l.enm("state", &[("RUNNING", 0), ("GONE", 1)]);
    let mut k = B::new();
    k.enm("state", &[("SLEEPING", 1), ("RUNNING", 7)]);
    let t = target(k);
    let relos = [
        l.relo(0, e, "0", 11),
        l.relo(1, e, "0", 10),
        l.relo(2, e, "1", 10),
        l.relo(3, e, "1", 11),
    ];
    let mut insns = vec![mov(0), mov(1), mov(1), mov(1)];
    let out = run(&l, &mut insns, &relos, &t).unwrap();
    assert_eq!((insns[0].imm, insns[1].imm, insns[2].imm), (7, 1, 0));
    assert!(out[3].poisoned);
    assert!(out[3].why.as_deref().unwrap().contains("no `GONE`"));
}

#[test]
fn enum_value_in_ld_imm64() {
    let mut l = B::new();
    let e = l.enm("state", &[("BIG", 5)]);
    let mut k = B::new();
    k.enm64("state", &[("BIG", 0x1_0000_0002)]);
    let t = target(k);
    let r = l.relo(0, e, "0", 11);
    let mut insns = vec![
        Insn {
            code: 0x18,
            regs: 1,
            off: 0,
            imm: 5,
        },
        Insn::default(),
    ];
    run(&l, &mut insns, &[r], &t).unwrap();
    assert_eq!((insns[0].imm, insns[1].imm), (2, 1));
}

#[test]
fn bitfields_lshift_rshift_size_signed() {
    // Local: struct f { unsigned int x:3; unsigned int y:5; }  kernel: y at bit 13, 6 bits.
    let mut l = B::new();
    let lu = l.int("unsigned int", 4, false);
    let lf = l.strukt("f", 4, &[("x", lu, 0, 3), ("y", lu, 3, 5)]);
    let mut k = B::new();
    let ku = k.int("unsigned int", 4, false);
    k.strukt("f", 8, &[("x", ku, 0, 3), ("y", ku, 13, 6)]);
    let t = target(k);
    let relos = [
        l.relo(0, lf, "0:1", 0), // byte_off
        l.relo(1, lf, "0:1", 1), // byte_sz
        l.relo(2, lf, "0:1", 4), // lshift
        l.relo(3, lf, "0:1", 5), // rshift
        l.relo(4, lf, "0:1", 3), // signed
    ];
    let mut insns = vec![mov(0), mov(4), mov(56), mov(59), mov(0)];
    run(&l, &mut insns, &relos, &t).unwrap();
    // bit 13..19 in a 4-byte unit at byte 0: lshift = 64 - (13 + 6) = 45, rshift = 58.
    assert_eq!(
        insns.iter().map(|i| i.imm).collect::<Vec<_>>(),
        vec![0, 4, 45, 58, 0]
    );
}

#[test]
fn nested_anonymous_and_arrays() {
    // Local: struct o { int pad; struct in { int v[4]; } i; } reading o.i.v[2] -> "0:1:0:2".
    let mut l = B::new();
    let li = l.int("int", 4, true);
    let la = l.arr(li, li, 4);
    let lin = l.strukt("in", 16, &[("v", la, 0, 0)]);
    let lo = l.strukt("o", 20, &[("pad", li, 0, 0), ("i", lin, 32, 0)]);
    // Kernel: `i` sits inside an anonymous struct at byte 8, `v` at byte 4 of `in`.
    let mut k = B::new();
    let ki = k.int("int", 4, true);
    let ka = k.arr(ki, ki, 4);
    let kin = k.strukt("in", 20, &[("x", ki, 0, 0), ("v", ka, 32, 0)]);
    let anon = k.strukt("", 20, &[("i", kin, 0, 0)]);
    k.strukt("o", 28, &[("pad", ki, 0, 0), ("", anon, 64, 0)]);
    let t = target(k);
    let r = l.relo(0, lo, "0:1:0:2", 0);
    let mut insns = vec![ldx(0, 4 + 8)];
    let out = run(&l, &mut insns, &[r], &t).unwrap();
    assert_eq!(insns[0].off, 8 + 4 + 8, "{out:?}");
    assert_eq!(out[0].local, "struct o.i.v[2]");
}

#[test]
fn ambiguous_candidates_are_an_error() {
    let (mut l, s, _) = basic();
    let mut k = B::new();
    let ki = k.int("int", 4, true);
    k.strukt("s", 8, &[("a", ki, 0, 0), ("b", ki, 32, 0)]);
    k.strukt("s___2", 8, &[("b", ki, 0, 0), ("a", ki, 32, 0)]);
    let t = target(k);
    let r = l.relo(0, s, "0:1", 0);
    let mut insns = vec![ldx(0, 4)];
    let e = run(&l, &mut insns, &[r], &t).unwrap_err().to_string();
    assert!(e.contains("ambiguous") && e.contains("struct s.b"), "{e}");
}

#[test]
fn instruction_is_checked_before_patching() {
    let (mut l, s, t) = basic();
    let r = l.relo(0, s, "0:1", 0);
    let mut insns = vec![ldx(0, 8)];
    let e = run(&l, &mut insns, &[r], &t).unwrap_err().to_string();
    assert!(e.contains("expected offset 4"), "{e}");
    let r = l.relo(0, s, "0:1", 0);
    let mut insns = vec![Insn {
        code: 0x05,
        ..Insn::default()
    }];
    let e = run(&l, &mut insns, &[r], &t).unwrap_err().to_string();
    assert!(e.contains("cannot carry a CO-RE value"), "{e}");
}

#[test]
fn load_size_changes_only_for_unsigned_and_pointers() {
    // Local u32 field, kernel u64 (unsigned): LDX W -> DW. Signed: poisoned.
    for (signed, poison) in [(false, false), (true, true)] {
        let mut l = B::new();
        let lu = l.int("u32", 4, signed);
        let s = l.strukt("s", 4, &[("f", lu, 0, 0)]);
        let mut k = B::new();
        let ku = k.int("u64", 8, signed);
        k.strukt("s", 8, &[("f", ku, 0, 0)]);
        let t = target(k);
        let r = l.relo(0, s, "0:0", 0);
        let mut insns = vec![ldx(0, 0)];
        let out = run(&l, &mut insns, &[r], &t).unwrap();
        assert_eq!(out[0].poisoned, poison);
        if !poison {
            assert_eq!(insns[0].code, 0x61 | 0x18);
        }
    }
}

#[test]
fn hostile_records_fail_clearly() {
    let (mut l, s, t) = basic();
    let long = vec!["0"; 100].join(":");
    for (acc, kind, want) in [
        ("0:7", 0, "member #7"),
        ("x", 0, "non-number"),
        ("", 0, "empty access"),
        (long.as_str(), 0, "more than 64"),
        ("0:1", 99, "unknown relocation kind"),
        ("1", 8, "must be `0`"),
        ("0:0:0", 0, "no members or elements"),
    ] {
        let r = l.relo(0, s, acc, kind);
        let mut insns = vec![ldx(0, 4)];
        let e = run(&l, &mut insns, &[r], &t).unwrap_err().to_string();
        assert!(e.contains(want), "{acc}: {e}");
    }
    // Out-of-range instruction and void root.
    let r = l.relo(5, s, "0:0", 0);
    assert!(run(&l, &mut [ldx(0, 0)], &[r], &t).is_err());
    let r = l.relo(0, 0, "0:0", 0);
    assert!(run(&l, &mut [ldx(0, 0)], &[r], &t).is_err());
}

#[test]
fn no_target_is_an_error_naming_the_relocation() {
    let (mut l, s, _) = basic();
    let r = l.relo(0, s, "0:1", 0);
    let lb = Btf::parse(&l.0.to_bytes()).unwrap();
    let e = relocate_program("p", &mut [ldx(0, 4)], &[r], &lb, &[], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("struct s.b") && e.contains("--btf"), "{e}");
}

#[test]
fn cyclic_target_types_terminate() {
    // Kernel: typedef loop t1 -> t2 -> t1 named like the local struct's member type.
    let (mut l, s, _) = basic();
    let mut k = B::new();
    let n1 = k.0.add_string("t1");
    let n2 = k.0.add_string("t2");
    k.0.add_type(BtfType::Typedef {
        name_off: n1,
        type_id: 2,
    });
    k.0.add_type(BtfType::Typedef {
        name_off: n2,
        type_id: 1,
    });
    k.strukt("s", 8, &[("a", 1, 0, 0), ("b", 2, 32, 0)]);
    let t = target(k);
    let r = l.relo(0, s, "0:1", 0);
    let out = run(&l, &mut [ldx(0, 4)], &[r], &t);
    // Either a clear error or a poison, never a hang or a panic.
    if let Ok(o) = out {
        assert!(o[0].poisoned);
    }
}

#[test]
fn random_hostile_records_never_panic_and_stay_bounded() {
    // Records with random kinds, type ids (in and out of range), access strings (long, past
    // the end, non-numeric) and instruction offsets, over nested/anonymous/array/cyclic types.
    let mut l = B::new();
    let li = l.int("int", 4, true);
    let la = l.arr(li, li, 4);
    let lin = l.strukt("in", 16, &[("v", la, 0, 0)]);
    let lo = l.strukt("o", 20, &[("pad", li, 0, 0), ("i", lin, 32, 0)]);
    let le = l.enm("state", &[("A", 1), ("B", 2)]);
    let n1 = l.0.add_string("loop");
    l.0.add_type(BtfType::Typedef {
        name_off: n1,
        type_id: le + 2,
    });
    l.0.add_type(BtfType::Typedef {
        name_off: n1,
        type_id: le + 1,
    });
    let mut k = B::new();
    let ki = k.int("int", 4, true);
    let ka = k.arr(ki, ki, 0);
    let kin = k.strukt("in", 20, &[("x", ki, 0, 0), ("v", ka, 32, 0)]);
    let anon = k.strukt("", 20, &[("i", kin, 0, 0)]);
    k.strukt("o", 28, &[("pad", ki, 0, 0), ("", anon, 64, 0)]);
    k.strukt("o___x", 28, &[("i", kin, 0, 0)]);
    k.enm("state", &[("B", 9)]);
    let t = target(k);
    let types = l.0.types_len() + 3;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let start = std::time::Instant::now();
    for _ in 0..5000 {
        let steps = (next() % 6) as usize;
        let mut acc: Vec<String> = (0..=steps).map(|_| (next() % 6).to_string()).collect();
        match next() % 10 {
            0 => acc.push("x".into()),
            1 => acc = vec!["0".into(); 100],
            2 => acc.push("4294967295".into()),
            _ => {}
        }
        let access = acc.join(":");
        let ty =
            [lo, lin, le, la, li, 0, (next() % u64::from(types)) as u32][(next() % 7) as usize];
        let kind = (next() % 15) as u32;
        let r = l.relo((next() % 4) as u32, ty, &access, kind);
        let mut insns = vec![ldx(0, 0), alu_add(0), mov(0)];
        let _ = run(&l, &mut insns, &[r], &t);
    }
    // No timing assertion: the loop finishing at all is the bound. Print for the curious.
    eprintln!("5000 hostile records in {:?}", start.elapsed());
}

/// The target BTF is read lazily: a corrupt record in it (a hostile `--btf FILE`) is an error
/// naming the candidate when a relocation reaches it, not a silent non-match or a panic.
#[test]
fn corrupt_target_btf_is_an_error_naming_the_candidate() {
    let (mut l, s, _) = basic();
    let r = l.relo(0, s, "0:1", 0);
    // Kernel `struct s` whose member name points past the string section.
    let mut k = B::new();
    let ki = k.int("int", 4, true);
    let n = k.0.add_string("s");
    k.0.add_type(BtfType::Struct {
        name_off: n,
        size: 8,
        members: vec![Member {
            name_off: 99_999,
            type_id: ki,
            offset_bits: 0,
            bitfield_size: 0,
        }],
    });
    let t = target(k);
    let err = run(&l, &mut [ldx(0, 4)], &[r], &t).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("candidate [2]") && msg.contains("malformed") && msg.contains("99999"),
        "{msg}"
    );
    // A member whose type reference cycles through typedefs: an error, not a miss.
    let mut k = B::new();
    let t1 = k.0.add_string("t1");
    let t2 = k.0.add_string("t2");
    k.0.add_type(BtfType::Typedef {
        name_off: t1,
        type_id: 2,
    }); // [1] -> [2]
    k.0.add_type(BtfType::Typedef {
        name_off: t2,
        type_id: 1,
    }); // [2] -> [1]
    k.strukt("s", 8, &[("a", 1, 0, 0)]);
    let mut l2 = B::new();
    let li = l2.int("int", 4, true);
    let inner = l2.strukt("in", 4, &[("x", li, 0, 0)]);
    let ls = l2.strukt("s", 8, &[("a", inner, 0, 0)]);
    let r = l2.relo(0, ls, "0:0:0", 0);
    let t = target(k);
    let out = run(&l2, &mut [ldx(0, 0)], &[r], &t);
    match out {
        Err(e) => assert!(e.to_string().contains("malformed"), "{e}"),
        // fields_compat sees the cycle as an incompatible member: poisoned, with a reason.
        Ok(o) => assert!(o[0].poisoned && o[0].why.is_some(), "{o:?}"),
    }
}

/// Cases where compare/core-diff found us disagreeing with libbpf, pinned.
mod libbpf_parity;
