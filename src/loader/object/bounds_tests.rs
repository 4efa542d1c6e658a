//! Bounds on hostile but well-formed objects: what parsing keeps and what `inspect` prints grow
//! linearly with the input (sizes and counts asserted, never wall time).

use super::gen;
use crate::loader::spec::ObjectSpec;

#[test]
fn generated_objects_parse() {
    let spec = ObjectSpec::parse(&gen::many_relocations(3)).expect("many_relocations");
    assert_eq!(spec.programs[0].relocs.len(), 3);
    let spec = ObjectSpec::parse(&gen::many_programs_one_big_function(3, 10)).expect("calls");
    assert_eq!(spec.programs.len(), 3);
    assert_eq!(spec.programs[0].insns.len(), 2 + 10);
}

#[test]
fn two_hundred_thousand_relocations_parse_and_print_linearly() {
    // The audit's 200,000 relocations took 8 s even with --no-insns (every instruction
    // searched every relocation). Now: a hash lookup per instruction; output bounded.
    let n = 200_000;
    let data = gen::many_relocations(n);
    let spec = ObjectSpec::parse(&data).expect("parses");
    assert_eq!(spec.programs[0].relocs.len(), n);
    let code = n * 16 + 16;
    for with_insns in [false, true] {
        let text = crate::inspect::describe("x", &spec, with_insns);
        let bound = crate::inspect::OUTPUT_BASE + crate::inspect::OUTPUT_PER_CODE_BYTE * code;
        assert!(text.len() <= bound + 4096, "{} > {bound}", text.len());
    }
    let short = crate::inspect::describe("x", &spec, false);
    assert!(
        !short.contains("(relocated at load)"),
        "--no-insns lists no instructions"
    );
}

#[test]
fn inspect_output_is_bounded_by_the_code_size() {
    // 150 programs each linking the same 20,000-instruction function: the listing would be
    // 150 copies; it stops at the budget (linear in the object's code) with a marker.
    let data = gen::many_programs_one_big_function(150, 20_000);
    let spec = ObjectSpec::parse(&data).expect("parses");
    let code = 20_000 * 8 + 150 * 16;
    let text = crate::inspect::describe("x", &spec, true);
    // Past the budget, each program still gets its header lines.
    let bound = crate::inspect::OUTPUT_BASE
        + crate::inspect::OUTPUT_PER_CODE_BYTE * code
        + spec.programs.len() * 512;
    assert!(text.len() <= bound, "{} > {bound}", text.len());
    assert!(text.contains("listing cut"));
    // Every program is still described (one header line each).
    assert_eq!(text.matches(" in section 'tp/sched/p").count(), 150);
}

#[test]
fn hostile_names_print_escaped() {
    // A section name that would clear the screen and set the terminal title.
    let mut b = gen::ElfBuilder::default();
    b.section("license", gen::SHT_PROGBITS, 0x2, b"GPL\0".to_vec());
    let mut code = gen::MOV_R0_0.to_vec();
    code.extend_from_slice(&gen::EXIT);
    let evil = "tp/sched/\x1b[2J\x1b]0;pwned\x07";
    let s = b.section(evil, gen::SHT_PROGBITS, gen::SHF_ALLOC_EXEC, code);
    b.symbol("prog\x1b[31m", s, 0, 16, gen::STT_FUNC);
    let spec = ObjectSpec::parse(&b.build()).expect("parses");
    let text = crate::inspect::describe("x\x1b[0m", &spec, true);
    assert!(!text.contains('\x1b') && !text.contains('\x07'), "{text:?}");
    assert!(
        text.contains("tp/sched/\\x1b[2J\\x1b]0;pwned\\x07"),
        "{text}"
    );
    assert!(text.contains("prog\\x1b[31m"), "{text}");
}

#[test]
fn names_shared_by_many_headers_are_capped_in_total() {
    // 200 sections whose headers all name one 100 KB string: 20 MB of copies from a ~100 KB
    // file. Refused with a clear error instead (the copies are capped linearly in the size).
    let mut b = gen::ElfBuilder::default();
    b.section("license", gen::SHT_PROGBITS, 0x2, b"GPL\0".to_vec());
    let long = "x".repeat(100_000);
    b.section(&long, gen::SHT_PROGBITS, 0, vec![0; 8]);
    for i in 0..200 {
        b.section(&format!("s{i}"), gen::SHT_PROGBITS, 0, vec![0; 8]);
    }
    let mut data = b.build();
    let shoff = u64::from_le_bytes(data[0x28..0x30].try_into().unwrap()) as usize;
    let name_of = |d: &[u8], i: usize| {
        u32::from_le_bytes(d[shoff + i * 64..shoff + i * 64 + 4].try_into().unwrap())
    };
    let long_name = name_of(&data, 2);
    for i in 3..203 {
        data[shoff + i * 64..shoff + i * 64 + 4].copy_from_slice(&long_name.to_le_bytes());
    }
    let err = ObjectSpec::parse(&data).expect_err("20 MB of names from a small file");
    assert!(
        err.to_string().contains("names add up to more than"),
        "{err}"
    );
}

#[test]
fn linking_one_big_function_into_many_programs_is_capped() {
    // 400 programs each calling one 60,000-instruction `.text` function (a 0.5 MB object)
    // linked to 24M instructions (195 MB RSS). Linking stops at the cap with a clear error.
    let data = gen::many_programs_one_big_function(400, 60_000);
    let err = ObjectSpec::parse(&data).expect_err("over the linking cap");
    let text = err.to_string();
    assert!(
        text.contains("linking copies each `.text` function"),
        "{text}"
    );
    // A few programs sharing it are fine.
    let spec = ObjectSpec::parse(&gen::many_programs_one_big_function(20, 60_000)).unwrap();
    assert_eq!(spec.programs.len(), 20);
}
