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
    // 400 programs each linking the same 20,000-instruction function: the listing would be
    // 400 copies; it stops at the budget (linear in the object's code) with a marker.
    let data = gen::many_programs_one_big_function(400, 20_000);
    let spec = ObjectSpec::parse(&data).expect("parses");
    let code = 20_000 * 8 + 400 * 16;
    let text = crate::inspect::describe("x", &spec, true);
    // Past the budget, each program still gets its header lines.
    let bound = crate::inspect::OUTPUT_BASE
        + crate::inspect::OUTPUT_PER_CODE_BYTE * code
        + spec.programs.len() * 512;
    assert!(text.len() <= bound, "{} > {bound}", text.len());
    assert!(text.contains("listing cut"));
    // Every program is still described (one header line each).
    assert_eq!(text.matches(" in section 'tp/sched/p").count(), 400);
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
