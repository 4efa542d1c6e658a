//! Hostile input: truncations, random corruption and targeted patches of the committed test objects
//! must give `Err` (or a valid spec), never a panic, hang or huge allocation.

use super::tests::testdata;
use super::*;
use object::{Object, ObjectSection, ObjectSymbol};

/// File offset of section `name`'s data.
fn sec_offset(data: &[u8], name: &str) -> usize {
    let f = object::File::parse(data).expect("parse");
    let s = f
        .section_by_name(name)
        .unwrap_or_else(|| panic!("no {name}"));
    s.file_range().expect("file range").0 as usize
}

/// File offset of section `name`'s header.
fn shdr_offset(data: &[u8], name: &str) -> usize {
    let f = object::File::parse(data).expect("parse");
    let idx = f.section_by_name(name).expect("section").index().0;
    let shoff = u64::from_le_bytes(data[0x28..0x30].try_into().unwrap()) as usize;
    shoff + idx * 64
}

/// File offset of symbol `name`'s Elf64_Sym.
fn sym_offset(data: &[u8], name: &str) -> usize {
    let f = object::File::parse(data).expect("parse");
    let idx = f
        .symbols()
        .find(|s| s.name() == Ok(name))
        .expect("sym")
        .index()
        .0;
    sec_offset(data, ".symtab") + idx * 24
}

fn put_u64(data: &mut [u8], at: usize, v: u64) {
    data[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(data: &mut [u8], at: usize, v: u32) {
    data[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

const PROG_REL: &str = ".reltp/sched/sched_process_exec";

#[test]
fn truncated_at_every_length_is_an_error() {
    for name in ["maps_mix.bpf.o", "legacy.bpf.o", "calls.bpf.o"] {
        let data = testdata(name);
        for len in 0..data.len() {
            // Section headers sit at the end of a clang object: every truncation loses some.
            assert!(
                ObjectSpec::parse(&data[..len]).is_err(),
                "{name} truncated to {len} parsed"
            );
        }
    }
}

/// Deterministic xorshift so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn random_corruption_never_panics() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ok, mut err) = (0, 0);
    for name in ["maps_mix.bpf.o", "legacy.bpf.o", "calls.bpf.o"] {
        let data = testdata(name);
        for _ in 0..3000 {
            let mut d = data.clone();
            for _ in 0..1 + rng.next() % 8 {
                let at = (rng.next() % d.len() as u64) as usize;
                d[at] = rng.next() as u8;
            }
            match ObjectSpec::parse(&d) {
                Ok(spec) => {
                    ok += 1;
                    // Whatever parses must still be internally consistent.
                    for p in &spec.programs {
                        for r in &p.relocs {
                            assert!(p.insns.get(r.insn).is_some_and(|i| i.is_ld_imm64()));
                        }
                    }
                }
                Err(e) => {
                    err += 1;
                    assert!(!e.to_string().is_empty());
                }
            }
        }
    }
    println!("random corruption: {ok} parsed, {err} rejected");
}

#[test]
fn wrong_machine_class_endianness() {
    let data = testdata("maps_mix.bpf.o");
    let mut d = data.clone();
    d[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(
        matches!(e, ParseError::WrongMachine { machine: 62, .. }),
        "{e}"
    );
    assert!(e.to_string().contains("EM_X86_64") && e.to_string().contains("EM_BPF"));

    let mut d = data.clone();
    d[4] = 1; // ELFCLASS32
    assert!(matches!(
        ObjectSpec::parse(&d),
        Err(ParseError::WrongClass { .. })
    ));
    let mut d = data.clone();
    d[5] = 2; // ELFDATA2MSB
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(matches!(e, ParseError::WrongEndian { .. }) && e.to_string().contains("big endian"));
    assert!(matches!(
        ObjectSpec::parse(b"#!/bin/sh\n echo hi there"),
        Err(ParseError::NotElf(_))
    ));
    assert!(matches!(ObjectSpec::parse(&[]), Err(ParseError::NotElf(_))));
}

#[test]
fn relocation_past_the_end() {
    let mut d = testdata("maps_mix.bpf.o");
    let rel = sec_offset(&d, PROG_REL);
    put_u64(&mut d, rel, 0x10_0000);
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(
        matches!(e, ParseError::Reloc { ref section, offset: 0x10_0000, .. } if section == PROG_REL),
        "{e}"
    );
    assert!(e.to_string().contains("past the end"), "{e}");
}

#[test]
fn relocation_misaligned_or_not_on_ld_imm64() {
    let data = testdata("maps_mix.bpf.o");
    let rel = sec_offset(&data, PROG_REL);
    let first = u64::from_le_bytes(data[rel..rel + 8].try_into().unwrap());

    let mut d = data.clone();
    put_u64(&mut d, rel, first + 4);
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(e.to_string().contains("instruction boundary"), "{e}");

    // Instruction 0 of on_exec is `r1 = 0`, not an ld_imm64.
    let mut d = data.clone();
    put_u64(&mut d, rel, 0);
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(
        e.to_string()
            .contains("R_BPF_64_64 must be on a 16-byte ld_imm64"),
        "{e}"
    );

    // Symbol index beyond the symbol table.
    let mut d = data.clone();
    put_u64(&mut d, rel + 8, (0xffff_u64 << 32) | 1);
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(e.to_string().contains("symbol index out of range"), "{e}");

    // Unknown relocation type on code.
    let mut d = data.clone();
    let info = u64::from_le_bytes(d[rel + 8..rel + 16].try_into().unwrap());
    put_u64(&mut d, rel + 8, (info & !0xffff_ffff) | 3);
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(e.to_string().contains("not supported"), "{e}");
}

#[test]
fn function_symbol_past_section_end() {
    let mut d = testdata("maps_mix.bpf.o");
    let at = sym_offset(&d, "on_exec") + 16; // st_size
    put_u64(&mut d, at, 1 << 40);
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(
        matches!(e, ParseError::Symbol { ref symbol, .. } if symbol == "on_exec"),
        "{e}"
    );
}

#[test]
fn code_section_not_whole_instructions() {
    let mut d = testdata("maps_mix.bpf.o");
    let at = shdr_offset(&d, "kprobe/do_sys_openat2") + 0x20; // sh_size
    put_u64(&mut d, at, 12);
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(e.to_string().contains("not a multiple of 8"), "{e}");
}

#[test]
fn absurd_legacy_map_sizes() {
    let data = testdata("legacy.bpf.o");
    let def = sec_offset(&data, "maps")
        + object::File::parse(&*data)
            .unwrap()
            .symbols()
            .find(|s| s.name() == Ok("legacy_hash"))
            .unwrap()
            .address() as usize;
    let mut d = data.clone();
    put_u32(&mut d, def + 8, u32::MAX); // value_size
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(
        matches!(e, ParseError::Map { ref map, .. } if map == "legacy_hash"),
        "{e}"
    );
    let mut d = data.clone();
    put_u32(&mut d, def + 8, 1 << 20); // 1 MiB values
    put_u32(&mut d, def + 12, u32::MAX); // * 4G entries
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(e.to_string().contains("max_entries"), "{e}");
}

#[test]
fn corrupt_btf_degrades_to_warning_or_error() {
    // Garbage .BTF: BTF maps cannot be parsed, which must be a clear error, not a panic.
    let mut d = testdata("maps_mix.bpf.o");
    let at = sec_offset(&d, ".BTF");
    d[at] ^= 0xff; // break the magic
    let e = ObjectSpec::parse(&d).unwrap_err();
    assert!(matches!(e, ParseError::BtfRequired { .. }), "{e}");
    // Legacy maps need no BTF: the object still parses, with a warning and no BTF.
    let mut d = testdata("legacy.bpf.o");
    let at = sec_offset(&d, ".BTF");
    d[at] ^= 0xff;
    let spec = ObjectSpec::parse(&d).expect("legacy without BTF");
    assert!(spec.btf.is_none());
    assert!(
        spec.warnings.iter().any(|w| w.contains(".BTF")),
        "{:?}",
        spec.warnings
    );
    assert!(spec.programs.iter().all(|p| p.func_info.is_empty()));
}
