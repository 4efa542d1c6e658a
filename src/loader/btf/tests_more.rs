//! Unit tests of printing, DATASEC fixups, sanitising and .BTF.ext, on hand-written blobs.

use super::testutil::{all_kinds, RawBtf, Rng};
use super::*;

#[test]
fn formats_every_kind() {
    let btf = Btf::parse(&all_kinds(false).bytes()).unwrap();
    let expect = [
        (1, "int"),
        (2, "int *"),
        (3, "int[4]"),
        (4, "struct s { int a; int b:3; }"),
        (5, "union u { int x; int *y; }"),
        (6, "enum e { A = -1, B = 2 }"),
        (7, "union f"),
        (8, "typedef int t"),
        (9, "volatile int"),
        (10, "int *const"),
        (11, "int *restrict"),
        (12, "int (int a, ...)"),
        (13, "int main(int a, ...)"),
        (14, "int v"),
        (15, "SEC(\".data\") { int v; /* offset 0 size 4 */ }"),
        (16, "double"),
        (
            17,
            "__attribute__((btf_decl_tag(\"tag\"))) on component 0 of type [4]",
        ),
        (18, "int __attribute__((btf_type_tag(\"user\")))"),
        (19, "enum e64 { BIG = 4294967297 }"),
        (20, "int __attribute__((btf_type_tag(\"user\"))) *"),
    ];
    for (id, want) in expect {
        assert_eq!(btf.format_type(id), want, "type [{id}]");
    }
    assert_eq!(btf.format_type(0), "void");
    assert!(btf.format_type(99).contains("bad type [99]"));
    let all = btf.format_all();
    assert_eq!(all.lines().count(), 20);
    assert!(all
        .lines()
        .nth(3)
        .unwrap()
        .starts_with("[4] STRUCT 's' size=8 vlen=2  // struct s {"));
    assert!(all.contains("[13] FUNC 'main' type_id=12 linkage=global  // int main(int a, ...)"));
    assert!(all.contains("[7] FWD 'f' fwd_kind=union"));
}

#[test]
fn format_is_bounded_on_explosive_input() {
    // Anonymous struct k has 600 members of anonymous struct k-1, ... : exponential if unbounded.
    let mut b = RawBtf::new(false);
    b.int("int", 4, 1, 32);
    let m = b.s("m");
    let mut prev = 1;
    for _ in 0..6 {
        let id = b.ty(0, 4, 600, false, 4);
        for _ in 0..600 {
            b.u32(m);
            b.u32(prev);
            b.u32(0);
        }
        prev = id;
    }
    let btf = Btf::parse(&b.bytes()).unwrap();
    let s = btf.format_type(prev);
    assert!(s.len() < 256 * 1024, "{} bytes", s.len());
    assert!(s.contains("/* ... */"));
}

/// int; VAR a (global); VAR b (static); DATASEC .data {b, a} size 0; DATASEC .bss {} ; DATASEC
/// .kconfig {}; FUNC_PROTO; FUNC ext (extern).
fn fixup_blob() -> RawBtf {
    let mut b = RawBtf::new(false);
    b.int("int", 4, 1, 32); // 1
    let a = b.s("a");
    b.ty(a, 14, 0, false, 1); // 2 var a global
    b.u32(1);
    let bb = b.s("b");
    b.ty(bb, 14, 0, false, 1); // 3 var b static
    b.u32(0);
    let data = b.s(".data");
    b.ty(data, 15, 2, false, 0); // 4 .data
    for v in [2, 3] {
        b.u32(v);
        b.u32(0);
        b.u32(0);
    }
    let bss = b.s(".bss");
    b.ty(bss, 15, 0, false, 0); // 5 .bss
    let kc = b.s(".kconfig");
    b.ty(kc, 15, 1, false, 0); // 6 .kconfig with var a (never touched)
    b.u32(2);
    b.u32(0);
    b.u32(0);
    b.ty(0, 13, 0, false, 1); // 7 proto
    let ext = b.s("ext");
    b.ty(ext, 12, 2, false, 7); // 8 extern func
    b
}

#[test]
fn fixup_sets_sizes_offsets_and_linkage() {
    let mut btf = Btf::parse(&fixup_blob().bytes()).unwrap();
    let sec_size = |s: &str| match s {
        ".data" => Some(16),
        ".kconfig" => Some(8),
        _ => None,
    };
    let sym = |s: &str, v: &str| match (s, v) {
        (".data", "a") => Some(8),
        (".data", "b") => Some(0),
        _ => None,
    };
    fixup_datasecs(&mut btf, &sec_size, &sym).unwrap();
    let (id, vars) = btf.datasec(".data").unwrap();
    assert_eq!(btf.size_of(id).unwrap(), 16);
    let got: Vec<_> = vars.iter().map(|v| (v.type_id, v.offset, v.size)).collect();
    assert_eq!(got, [(3, 0, 4), (2, 8, 4)]); // sorted by offset, sizes from the VAR types
    assert_eq!(btf.size_of(5).unwrap(), 0); // .bss not in the ELF: untouched
    assert_eq!(btf.size_of(6).unwrap(), 0); // .kconfig: left to extern handling
    assert!(matches!(
        btf.type_by_id(8).unwrap(),
        BtfType::Func { linkage: 1, .. }
    ));
    // The fixed BTF re-encodes and parses.
    assert_eq!(Btf::parse(&btf.to_bytes()).unwrap().types_len(), 9);
}

#[test]
fn fixup_errors_name_the_section() {
    let data16 = |s: &str| (s == ".data").then_some(16);
    // Global VAR without a symbol.
    let mut btf = Btf::parse(&fixup_blob().bytes()).unwrap();
    let e = fixup_datasecs(&mut btf, &data16, &|_, v| (v == "b").then_some(0)).unwrap_err();
    assert!(
        matches!(&e, BtfError::Datasec { section, id: 4, .. } if section == ".data"),
        "{e}"
    );
    assert!(e.to_string().contains("'a'"), "{e}");
    // Overlapping variables and variables past the section end.
    for (a, bo, size) in [(0, 0, 16), (14, 0, 16), (0, 4, 6)] {
        let mut btf = Btf::parse(&fixup_blob().bytes()).unwrap();
        let sec = move |s: &str| (s == ".data").then_some(size);
        let sym = move |_: &str, v: &str| Some(if v == "a" { a } else { bo });
        let e = fixup_datasecs(&mut btf, &sec, &sym).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
    }
    // A DATASEC entry that is not a VAR.
    let mut b = RawBtf::new(false);
    b.int("int", 4, 1, 32);
    let d = b.s(".data");
    b.ty(d, 15, 1, false, 4);
    b.u32(1);
    b.u32(0);
    b.u32(4);
    let mut btf = Btf::parse(&b.bytes()).unwrap();
    let e = fixup_datasecs(&mut btf, &data16, &|_, _| Some(0)).unwrap_err();
    assert!(e.to_string().contains("expected a VAR"), "{e}");
}

fn disallowed(btf: &Btf, f: &BtfFeatures) -> Vec<String> {
    let mut bad = Vec::new();
    for (i, t) in btf.types().iter().enumerate() {
        let ok = match t {
            BtfType::Var { .. } | BtfType::Datasec { .. } => f.datasec,
            BtfType::Func { linkage, .. } => f.func && (f.func_global || *linkage == 0),
            BtfType::FuncProto { .. } => f.func,
            BtfType::Float { .. } => f.float,
            BtfType::DeclTag { .. } => f.decl_tag,
            BtfType::TypeTag { .. } => f.type_tag,
            BtfType::Enum64 { .. } | BtfType::Enum { signed: true, .. } => f.enum64,
            _ => true,
        };
        if !ok {
            bad.push(btf.format_raw(i as u32 + 1));
        }
    }
    bad
}

/// Feature sets to try: all, none, and each one missing alone.
pub(super) fn feature_sets() -> Vec<BtfFeatures> {
    let mut sets = vec![BtfFeatures::all(), BtfFeatures::default()];
    for k in BtfFeatureKind::ALL {
        let mut f = BtfFeatures::all();
        f.set(k, false);
        sets.push(f);
    }
    sets
}

#[test]
fn sanitize_keeps_ids_and_removes_disallowed_kinds() {
    let btf = Btf::parse(&all_kinds(false).bytes()).unwrap();
    assert!(!disallowed(&btf, &BtfFeatures::default()).is_empty());
    for f in feature_sets() {
        let s = sanitize(&btf, &f);
        assert_eq!(disallowed(&s, &f), Vec::<String>::new(), "{f:?}");
        // Ids are kept (ENUM64 may append one placeholder type at the end).
        let extra = u32::from(!f.enum64);
        assert_eq!(s.types_len(), btf.types_len() + extra, "{f:?}");
        // Existing strings are untouched; only appended to.
        assert_eq!(&s.strings()[..btf.strings().len()], btf.strings());
        for id in 1..btf.types_len() {
            let (before, after) = (btf.type_by_id(id).unwrap(), s.type_by_id(id).unwrap());
            if before.kind() == after.kind()
                && !matches!(before, BtfType::Func { .. } | BtfType::Enum { .. })
            {
                assert_eq!(btf.format_raw(id), s.format_raw(id), "{f:?}");
            }
            // References keep pointing at the same ids.
            let mut refs_b = Vec::new();
            before.for_each_type_ref(|r| refs_b.push(r));
            let mut refs_a = Vec::new();
            after.for_each_type_ref(|r| refs_a.push(r));
            if after.kind() != BtfKind::Union
                && after.kind() != BtfKind::Int
                && after.kind() != BtfKind::Enum
            {
                assert_eq!(refs_a, refs_b, "type [{id}] {f:?}");
            }
        }
        let again = Btf::parse(&s.to_bytes()).expect("sanitized BTF parses");
        assert_eq!(again.types_len(), s.types_len());
    }
    let none = sanitize(&btf, &BtfFeatures::default());
    assert_eq!(none.kind_of(15).unwrap(), BtfKind::Struct);
    assert_eq!(none.name_of(15).unwrap(), "_data");
    assert_eq!(none.kind_of(14).unwrap(), BtfKind::Int);
    assert_eq!(none.name_of(14).unwrap(), "v");
    assert_eq!(none.kind_of(13).unwrap(), BtfKind::Typedef);
    assert_eq!(none.kind_of(12).unwrap(), BtfKind::Enum);
    assert_eq!(none.size_of(16).unwrap(), 8); // float -> struct of the same size
    assert_eq!(none.size_of(19).unwrap(), 8); // enum64 -> union of the same size
    assert_eq!(none.name_of(21).unwrap(), "enum64_placeholder");
    assert!(matches!(
        none.type_by_id(18).unwrap(),
        BtfType::Const { type_id: 1 }
    ));
}

#[test]
fn probe_blobs_parse_and_use_their_feature() {
    for k in BtfFeatureKind::ALL {
        let btf = Btf::parse(&probe_blob(k)).unwrap();
        let mut f = BtfFeatures::all();
        f.set(k, false);
        assert!(
            !disallowed(&btf, &f).is_empty(),
            "{k:?} blob does not use its feature"
        );
        // ...and nothing newer than it: with everything else off except what it builds on.
        let mut only = BtfFeatures::default();
        only.set(k, true);
        if k == BtfFeatureKind::FuncGlobal {
            only.func = true;
        }
        if k == BtfFeatureKind::DeclTag {
            only.datasec = true;
        }
        assert_eq!(disallowed(&btf, &only), Vec::<String>::new(), "{k:?}");
    }
}

/// Raw .BTF.ext: header (32 bytes) + func_info + line_info + core_relo areas.
fn ext_blob(big: bool, func: &[u32], line: &[u32], core: &[u32]) -> Vec<u8> {
    let w = |v: u32| {
        if big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let (fl, ll, cl) = (
        func.len() as u32 * 4,
        line.len() as u32 * 4,
        core.len() as u32 * 4,
    );
    let mut out = Vec::new();
    out.extend_from_slice(&if big {
        BTF_MAGIC.to_be_bytes()
    } else {
        BTF_MAGIC.to_le_bytes()
    });
    out.extend_from_slice(&[1, 0]);
    for v in [32, 0, fl, fl, ll, fl + ll, cl] {
        out.extend_from_slice(&w(v));
    }
    for v in func.iter().chain(line).chain(core) {
        out.extend_from_slice(&w(*v));
    }
    out
}

#[test]
fn ext_parses_records_per_section() {
    for big in [false, true] {
        let mut b = all_kinds(big);
        let (tp, other) = (b.s("tp/sched/x"), b.s("kprobe/y"));
        let btf = Btf::parse(&b.bytes()).unwrap();
        // func_info with 12-byte records (4 unknown trailing bytes skipped), two blocks for tp.
        let func = [
            12, tp, 1, 0, 13, 0xdead, other, 1, 8, 13, 0, tp, 1, 16, 13, 0,
        ];
        let line = [16, tp, 2, 0, tp, 5, (7 << 10) | 3, 8, tp, 6, 9 << 10];
        let core = [16, tp, 1, 24, 4, 1, 0];
        let ext = BtfExt::parse(&ext_blob(big, &func, &line, &core), &btf).unwrap();
        assert_eq!(ext.func_info_rec_size(), 12);
        assert_eq!(ext.line_info_rec_size(), 16);
        let fi: Vec<_> = ext
            .func_info("tp/sched/x")
            .iter()
            .map(|f| (f.insn_off, f.type_id))
            .collect();
        assert_eq!(fi, [(0, 13), (16, 13)]);
        assert_eq!(ext.func_info("kprobe/y")[0].insn_off, 8);
        assert!(ext.func_info("nope").is_empty());
        let li = ext.line_info("tp/sched/x");
        assert_eq!(li.len(), 2);
        assert_eq!(
            (li[0].insn_off, li[0].file_name_off, li[0].line_off),
            (0, tp, 5)
        );
        assert_eq!((li[0].line_col >> 10, li[0].line_col & 0x3ff), (7, 3));
        assert_eq!(li[1].insn_off, 8);
        let cr = ext.core_relos("tp/sched/x");
        assert_eq!(
            (
                cr[0].insn_off,
                cr[0].type_id,
                cr[0].access_str_off,
                cr[0].kind
            ),
            (24, 4, 1, 0)
        );
        assert_eq!(ext.sections(), ["tp/sched/x", "kprobe/y"]);
        // Without line/core areas (24-byte header, empty areas).
        let mut short = ext_blob(big, &func, &[], &[]);
        short[4] = if big { 0 } else { 24 };
        short[7] = if big { 24 } else { 0 };
        short.drain(24..32);
        let ext = BtfExt::parse(&short, &btf).unwrap();
        assert_eq!(ext.func_info("tp/sched/x").len(), 2);
        assert!(ext.line_info("tp/sched/x").is_empty());
    }
}

#[test]
fn ext_errors() {
    let mut b = all_kinds(false);
    let tp = b.s("tp");
    let btf = Btf::parse(&b.bytes()).unwrap();
    let ok_func = [8, tp, 1, 0, 13];
    let good = ext_blob(false, &ok_func, &[], &[]);
    assert!(BtfExt::parse(&good, &btf).is_ok());
    // Every truncation fails cleanly.
    for cut in 0..good.len() {
        assert!(BtfExt::parse(&good[..cut], &btf).is_err(), "cut {cut}");
    }
    let cases: [(&[u32], &str); 6] = [
        (&[6, tp, 1, 0, 13], "record size 6"),
        (&[10, tp, 1, 0, 13, 0], "record size 10"),
        (&[8, tp, 0xffff_ffff, 0, 13], "claims 4294967295 records"),
        (&[8, tp, 0], "has no records"),
        (&[8, 9999, 1, 0, 13], "bad section name offset 9999"),
        (&[8, tp, 1, 0, 4], "is not a FUNC"),
    ];
    for (func, want) in cases {
        let e = BtfExt::parse(&ext_blob(false, func, &[], &[]), &btf).unwrap_err();
        assert!(e.to_string().contains(want), "{e} (wanted {want})");
    }
    let e = BtfExt::parse(
        &ext_blob(false, &[], &[16, tp, 1, 0, 9999, 0, 0], &[]),
        &btf,
    )
    .unwrap_err();
    assert!(e.to_string().contains("line_info"), "{e}");
    let e =
        BtfExt::parse(&ext_blob(false, &[], &[], &[16, tp, 1, 0, 500, 0, 0]), &btf).unwrap_err();
    assert!(e.to_string().contains("core_relo"), "{e}");
    let mut bad = good.clone();
    bad[0] = 0;
    assert!(matches!(
        BtfExt::parse(&bad, &btf),
        Err(BtfError::BadMagic { .. })
    ));
    let mut bad = good.clone();
    bad[4] = 30;
    assert!(matches!(
        BtfExt::parse(&bad, &btf),
        Err(BtfError::BadHeaderLen { .. })
    ));
    // Random mutations never panic.
    let mut rng = Rng(42);
    for _ in 0..2000 {
        let mut m = good.clone();
        let i = (rng.next() % m.len() as u64) as usize;
        m[i] = rng.next() as u8;
        let _ = BtfExt::parse(&m, &btf);
    }
}

#[test]
fn tag_kind_flag_round_trips() {
    let mut b = RawBtf::new(false);
    b.int("int", 4, 1, 32);
    let t = b.s("attr");
    b.ty(t, 18, 0, true, 1); // 2 type_tag with kind_flag
    b.ty(t, 18, 0, false, 1); // 3 without
    let raw = b.bytes();
    let btf = Btf::parse(&raw).unwrap();
    assert!(btf.tag_kind_flag(2) && !btf.tag_kind_flag(3) && !btf.tag_kind_flag(1));
    if cfg!(target_endian = "little") {
        assert_eq!(btf.to_bytes(), raw);
    }
}

#[test]
fn ext_with_many_section_names_is_linear() {
    // The audit's 5.3 MB .BTF.ext naming a new section in every block took 25 s (each block
    // searched every section seen so far). 200,000 blocks: a hash lookup each, so this is quick
    // (the quadratic version does 2e10 string comparisons here and never finishes in CI).
    let mut b = all_kinds(false);
    let n = 200_000u32;
    let names: Vec<u32> = (0..n).map(|i| b.s(&format!("s{i}"))).collect();
    let btf = Btf::parse(&b.bytes()).unwrap();
    let mut func = vec![8];
    for &name in &names {
        func.extend([name, 1, 0, 13]);
    }
    let blob = ext_blob(false, &func, &[], &[]);
    assert!(blob.len() > 3_000_000);
    let ext = BtfExt::parse(&blob, &btf).unwrap();
    assert_eq!(ext.sections().len(), n as usize);
    assert_eq!(ext.func_info(&format!("s{}", n - 1)).len(), 1);
    assert!(ext.func_info("nope").is_empty());
}

mod bounded_printing {
    use crate::loader::btf::format::*;
    use crate::loader::btf::*;

    /// The audit's blob: `n` anonymous structs, each with `fan` one-letter members of the next
    /// (the last has ints): every rendering nests 8 anonymous bodies deep and fans out.
    fn nested_anonymous(n: u32, fan: u32) -> Btf {
        let mut btf = Btf::new();
        let a = btf.add_string("a");
        let int = btf.add_string("int");
        let int_id = n + 1;
        for id in 1..=n {
            let next = if id == n { int_id } else { id + 1 };
            btf.add_type(BtfType::Struct {
                name_off: 0,
                size: 4 * fan,
                members: (0..fan)
                    .map(|i| Member {
                        name_off: a,
                        type_id: next,
                        offset_bits: 32 * i,
                        bitfield_size: 0,
                    })
                    .collect(),
            });
        }
        btf.add_type(BtfType::Int {
            name_off: int,
            size: 4,
            encoding: 1,
            offset: 0,
            bits: 32,
        });
        btf
    }

    #[test]
    fn budget_counts_everything_emitted() {
        // Before keywords and punctuation were charged, a type spent a tenth of what it emitted.
        let btf = nested_anonymous(50, 6);
        for id in [1, 25, 45] {
            let s = btf.format_type(id);
            assert!(s.contains(CUT), "id {id} should be cut");
            assert!(s.len() <= MAX_OUTPUT + 1024, "id {id}: {} bytes", s.len());
        }
    }

    #[test]
    fn format_all_is_linear_in_the_input() {
        // 2000 nested anonymous structs: ~150 KB of BTF (the audit's 141 KB blob printed 480 MB).
        let btf = nested_anonymous(2000, 6);
        let input = btf.to_bytes().len();
        let all = btf.format_all();
        let lines = all.lines().count();
        assert_eq!(lines as u32, btf.types_len() - 1);
        let bound = ALL_OUTPUT_BASE + ALL_OUTPUT_PER_INPUT_BYTE * input + lines * MAX_RAW_LINE;
        assert!(
            all.len() <= bound,
            "{} bytes of output for {input} bytes of BTF (bound {bound})",
            all.len()
        );
    }
}
