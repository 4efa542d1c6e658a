//! Unit tests of parsing, encoding and queries, on blobs written by hand (`testutil`).

use super::testutil::{all_kinds, RawBtf, Rng};
use super::*;

fn parse_all(big: bool) -> Btf {
    Btf::parse(&all_kinds(big).bytes()).expect("all-kinds blob parses")
}

#[test]
fn parses_every_kind_in_both_byte_orders() {
    for big in [false, true] {
        let btf = parse_all(big);
        assert_eq!(btf.is_big_endian(), big);
        assert_eq!(btf.types_len(), 21);
        let kinds: Vec<BtfKind> = (0..21).map(|id| btf.kind_of(id).unwrap()).collect();
        use BtfKind::*;
        assert_eq!(
            kinds,
            [
                Void, Int, Ptr, Array, Struct, Union, Enum, Fwd, Typedef, Volatile, Const,
                Restrict, FuncProto, Func, Var, Datasec, Float, DeclTag, TypeTag, Enum64, Ptr
            ]
        );
        match btf.type_by_id(1).unwrap() {
            BtfType::Int {
                size,
                encoding,
                bits,
                offset,
                ..
            } => assert_eq!((*size, *encoding, *bits, *offset), (4, 1, 32, 0)),
            t => panic!("{t:?}"),
        }
        match btf.type_by_id(3).unwrap() {
            BtfType::Array {
                elem_type,
                index_type,
                nelems,
            } => assert_eq!((*elem_type, *index_type, *nelems), (1, 1, 4)),
            t => panic!("{t:?}"),
        }
        match btf.type_by_id(4).unwrap() {
            BtfType::Struct { size, members, .. } => {
                assert_eq!(*size, 8);
                assert_eq!(btf.string_at(members[1].name_off).unwrap(), "b");
                assert_eq!((members[1].offset_bits, members[1].bitfield_size), (32, 3));
                assert_eq!((members[0].offset_bits, members[0].bitfield_size), (0, 0));
            }
            t => panic!("{t:?}"),
        }
        match btf.type_by_id(6).unwrap() {
            BtfType::Enum { signed, values, .. } => {
                assert!(*signed);
                assert_eq!(values[0].value, -1);
                assert_eq!(values[1].value, 2);
            }
            t => panic!("{t:?}"),
        }
        assert!(matches!(
            btf.type_by_id(7).unwrap(),
            BtfType::Fwd { is_union: true, .. }
        ));
        match btf.type_by_id(12).unwrap() {
            BtfType::FuncProto { ret, params } => {
                assert_eq!(*ret, 1);
                assert_eq!(params.len(), 2);
                assert_eq!((params[1].name_off, params[1].type_id), (0, 0));
            }
            t => panic!("{t:?}"),
        }
        assert!(matches!(
            btf.type_by_id(13).unwrap(),
            BtfType::Func {
                proto: 12,
                linkage: 1,
                ..
            }
        ));
        assert!(matches!(
            btf.type_by_id(14).unwrap(),
            BtfType::Var {
                type_id: 1,
                linkage: 1,
                ..
            }
        ));
        assert!(matches!(
            btf.type_by_id(17).unwrap(),
            BtfType::DeclTag {
                type_id: 4,
                component_idx: 0,
                ..
            }
        ));
        match btf.type_by_id(19).unwrap() {
            BtfType::Enum64 { values, size, .. } => {
                assert_eq!(*size, 8);
                assert_eq!(values[0].value, 0x1_0000_0001);
            }
            t => panic!("{t:?}"),
        }
        assert_eq!(btf.name_of(13).unwrap(), "main");
        assert_eq!(btf.name_of(2).unwrap(), "");
        assert_eq!(btf.name_of(0).unwrap(), "");
    }
}

#[test]
fn round_trip_is_stable() {
    for big in [false, true] {
        let raw = all_kinds(big).bytes();
        let btf = Btf::parse(&raw).unwrap();
        let bytes = btf.to_bytes();
        let again = Btf::parse(&bytes).unwrap();
        assert!(!again.is_big_endian() || cfg!(target_endian = "big"));
        assert_eq!(again.to_bytes(), bytes);
        assert_eq!(again.format_all(), btf.format_all());
        assert_eq!(again.strings(), btf.strings());
        // Input already in native order and canonical form: bytes are reproduced exactly.
        if big == cfg!(target_endian = "big") {
            assert_eq!(bytes, raw);
        }
    }
}

#[test]
fn queries_resolve_size_find() {
    let btf = parse_all(false);
    assert_eq!(btf.resolve(8).unwrap(), 1); // typedef -> int
    assert_eq!(btf.resolve(10).unwrap(), 2); // const -> ptr (stops at ptr)
    assert_eq!(btf.resolve(18).unwrap(), 1); // type_tag -> int
    assert_eq!(btf.resolve(0).unwrap(), 0);
    assert_eq!(btf.size_of(3).unwrap(), 16); // int[4]
    assert_eq!(btf.size_of(2).unwrap(), 8);
    assert_eq!(btf.size_of(14).unwrap(), 4); // var int
    assert_eq!(btf.size_of(19).unwrap(), 8);
    assert!(matches!(btf.size_of(0), Err(BtfError::NoSize { .. })));
    assert!(matches!(
        btf.size_of(13),
        Err(BtfError::NoSize { id: 13, .. })
    ));
    assert!(matches!(btf.size_of(7), Err(BtfError::NoSize { .. })));
    assert_eq!(btf.find_by_name("s", BtfKind::Struct), Some(4));
    assert_eq!(btf.find_by_name("s", BtfKind::Union), None);
    assert_eq!(btf.find_by_name("main", BtfKind::Func), Some(13));
    let (id, vars) = btf.datasec(".data").unwrap();
    assert_eq!(id, 15);
    assert_eq!((vars[0].type_id, vars[0].offset, vars[0].size), (14, 0, 4));
    assert!(btf.datasec(".bss").is_none());
    assert!(matches!(btf.type_by_id(0), Err(BtfError::VoidHasNoType)));
    assert!(matches!(
        btf.type_by_id(21),
        Err(BtfError::TypeIdOutOfRange {
            id: 21,
            len: 21,
            ..
        })
    ));
    assert!(matches!(
        btf.kind_of(u32::MAX),
        Err(BtfError::TypeIdOutOfRange { .. })
    ));
}

#[test]
fn strings_are_checked() {
    let mut btf = parse_all(false);
    let len = btf.strings().len() as u32;
    assert!(matches!(
        btf.string_at(len),
        Err(BtfError::StringOutOfRange { .. })
    ));
    assert!(matches!(
        btf.string_at(u32::MAX),
        Err(BtfError::StringOutOfRange { .. })
    ));
    assert_eq!(btf.string_at(0).unwrap(), "");
    let off = btf.add_string("hello");
    assert_eq!(off, len);
    assert_eq!(btf.string_at(off).unwrap(), "hello");
    assert_eq!(btf.string_at(off + 2).unwrap(), "llo");
    // Invalid UTF-8 in a name.
    let mut b = RawBtf::new(false);
    let n = b.strings.len() as u32;
    b.strings.extend_from_slice(&[0xff, 0xfe, 0]);
    b.ty(n, 7, 0, false, 0);
    let btf = Btf::parse(&b.bytes()).unwrap();
    assert!(matches!(btf.name_of(1), Err(BtfError::StringNotUtf8 { off }) if off == n));
    assert!(btf.format_all().contains("bad name"));
}

fn err_of(bytes: &[u8]) -> BtfError {
    match Btf::parse(bytes) {
        Ok(_) => panic!("parse unexpectedly succeeded"),
        Err(e) => e,
    }
}

#[test]
fn header_errors() {
    let b = all_kinds(false);
    let good = b.header();
    assert!(matches!(
        err_of(&[0x9f, 0xeb, 1]),
        BtfError::TooShort { len: 3, .. }
    ));
    let mut h = good;
    h.0 = 0x1234;
    assert!(matches!(
        err_of(&b.bytes_with(h)),
        BtfError::BadMagic { magic: 0x1234, .. }
    ));
    let mut h = good;
    h.1 = 2;
    assert!(matches!(
        err_of(&b.bytes_with(h)),
        BtfError::BadVersion { version: 2, .. }
    ));
    for hdr_len in [0, 23, 25, 27] {
        let mut h = good;
        h.3 = hdr_len;
        assert!(
            matches!(err_of(&b.bytes_with(h)), BtfError::BadHeaderLen { hdr_len: l, .. } if l == hdr_len),
            "hdr_len {hdr_len}"
        );
    }
    let mut h = good;
    h.3 = 1 << 30;
    assert!(matches!(
        err_of(&b.bytes_with(h)),
        BtfError::BadHeaderLen { .. }
    ));
    // A longer (zero-padded) header is accepted.
    let mut h = good;
    h.3 = 32;
    assert_eq!(Btf::parse(&b.bytes_with(h)).unwrap().types_len(), 21);
    // Sections past the end, overflowing, overlapping, misaligned.
    let mut h = good;
    h.7 += 1;
    assert!(matches!(
        err_of(&b.bytes_with(h)),
        BtfError::SectionOutOfBounds { .. }
    ));
    let mut h = good;
    h.4 = u32::MAX;
    assert!(matches!(
        err_of(&b.bytes_with(h)),
        BtfError::SectionOutOfBounds { .. }
    ));
    let mut h = good;
    h.6 = h.5 - 4;
    h.7 = 4;
    assert!(matches!(
        err_of(&b.bytes_with(h)),
        BtfError::BadSectionLayout { .. }
    ));
    let mut h = good;
    h.4 = 2;
    h.5 -= 4;
    assert!(matches!(
        err_of(&b.bytes_with(h)),
        BtfError::BadSectionLayout { .. }
    ));
}

#[test]
fn string_section_errors() {
    let mut b = RawBtf::new(false);
    b.int("int", 4, 1, 32);
    b.strings.pop(); // last string not NUL-terminated
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::BadStringSection { .. }
    ));
    let mut b = RawBtf::new(false);
    b.strings = b"x\0".to_vec();
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::BadStringSection { .. }
    ));
    let mut b = RawBtf::new(false);
    b.strings.clear();
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::BadStringSection { .. }
    ));
    let mut b = RawBtf::new(false);
    b.ty(1000, 7, 0, false, 0);
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::StringOutOfRange {
            off: 1000,
            referrer: Some(1),
            ..
        }
    ));
}

#[test]
fn type_errors() {
    // Unknown kinds 0 and 20.
    for kind in [0, 20, 31] {
        let mut b = RawBtf::new(false);
        b.ty(0, kind, 0, false, 0);
        assert!(
            matches!(err_of(&b.bytes()), BtfError::UnknownKind { id: 1, offset: 0, kind: k } if k == kind)
        );
    }
    // Huge vlen with few bytes: truncated, checked before allocating.
    let mut b = RawBtf::new(false);
    b.int("int", 4, 1, 32);
    b.ty(0, 4, 0xffff, false, 4);
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::Truncated { id: 2, offset: 16, need, have: 12 } if need == 12 + 12 * 0xffff
    ));
    // Reference out of range.
    let mut b = RawBtf::new(false);
    b.ty(0, 2, 0, false, 99);
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::TypeIdOutOfRange {
            id: 99,
            len: 2,
            referrer: Some(1)
        }
    ));
    let mut b = RawBtf::new(false);
    let s = b.s("s");
    b.ty(s, 4, 1, false, 4);
    b.u32(0);
    b.u32(7);
    b.u32(0);
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::TypeIdOutOfRange { id: 7, .. }
    ));
    // vlen on a kind without one; INT bits past its size.
    let mut b = RawBtf::new(false);
    b.ty(0, 2, 3, false, 0);
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::InvalidType { id: 1, .. }
    ));
    let mut b = RawBtf::new(false);
    b.int("int", 1, 0, 9);
    assert!(matches!(
        err_of(&b.bytes()),
        BtfError::InvalidType { id: 1, .. }
    ));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let b = all_kinds(false);
    let tl = b.types.len() as u32;
    for cut in 0..tl {
        if cut % 4 != 0 {
            continue; // misaligned lengths are rejected by the layout check
        }
        let mut short = RawBtf::new(false);
        short.types = b.types[..cut as usize].to_vec();
        short.strings = b.strings.clone();
        match Btf::parse(&short.bytes()) {
            // Cutting exactly at a record boundary is a valid, shorter BTF unless a reference breaks.
            Ok(btf) => assert!(btf.types_len() <= 21),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
    }
    let full = b.bytes();
    for cut in 0..full.len() {
        assert!(Btf::parse(&full[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn cycles_terminate() {
    // typedef A -> typedef B -> A; struct s { s arr[2]; } through an array; const chain loop.
    let mut b = RawBtf::new(false);
    let (a, bb, s, m) = (b.s("A"), b.s("B"), b.s("s"), b.s("m"));
    b.ty(a, 8, 0, false, 2); // 1
    b.ty(bb, 8, 0, false, 1); // 2
    b.ty(s, 4, 1, false, 16); // 3 struct s { s m[2]; }
    b.u32(m);
    b.u32(4);
    b.u32(0);
    b.ty(0, 3, 0, false, 0); // 4 array of 3
    b.u32(3);
    b.u32(3);
    b.u32(2);
    b.ty(0, 10, 0, false, 5); // 5 const -> 6
    b.ty(0, 3, 0, false, 0); // 6 array of 5
    b.u32(5);
    b.u32(5);
    b.u32(1);
    b.ty(0, 2, 0, false, 7); // 7 ptr -> itself
    let btf = Btf::parse(&b.bytes()).unwrap();
    assert!(matches!(btf.resolve(1), Err(BtfError::Cycle { id: 1, .. })));
    assert!(matches!(btf.size_of(2), Err(BtfError::Cycle { id: 2, .. })));
    assert_eq!(btf.size_of(3).unwrap(), 16);
    assert_eq!(btf.size_of(4).unwrap(), 32);
    assert!(matches!(btf.size_of(5), Err(BtfError::Cycle { .. })));
    assert_eq!(btf.size_of(7).unwrap(), 8);
    for id in 0..9 {
        let s = btf.format_type(id);
        assert!(!s.is_empty());
    }
    assert_eq!(btf.format_type(1), "typedef B A");
    assert!(btf.format_type(5).contains("/* ... */"));
    assert!(btf.format_type(7).contains("/* ... */"));
    assert_eq!(btf.format_all().lines().count(), 7);
}

#[test]
fn array_size_overflow() {
    let mut b = RawBtf::new(false);
    b.int("int", 4, 1, 32);
    b.ty(0, 3, 0, false, 0); // 2: int[0x4000_0000] = 4 GiB
    b.u32(1);
    b.u32(1);
    b.u32(0x4000_0000);
    b.ty(0, 3, 0, false, 0); // 3: int[2][0x4000_0000]... via 2
    b.u32(2);
    b.u32(1);
    b.u32(2);
    let btf = Btf::parse(&b.bytes()).unwrap();
    assert!(matches!(
        btf.size_of(2),
        Err(BtfError::SizeOverflow { id: 2 })
    ));
    assert!(matches!(
        btf.size_of(3),
        Err(BtfError::SizeOverflow { id: 3 })
    ));
}

#[test]
fn too_many_types() {
    let mut b = RawBtf::new(false);
    for _ in 0..=parse::BTF_MAX_TYPE {
        b.ty(0, 7, 0, false, 0);
    }
    assert!(matches!(err_of(&b.bytes()), BtfError::TooManyTypes { .. }));
}

#[test]
fn mutated_blobs_never_panic() {
    let good = all_kinds(false).bytes();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut parsed = 0;
    for _ in 0..3000 {
        let mut m = good.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = (rng.next() % m.len() as u64) as usize;
            m[i] = rng.next() as u8;
        }
        if let Ok(btf) = Btf::parse(&m) {
            parsed += 1;
            let _ = btf.format_all();
            for id in 0..btf.types_len() + 1 {
                let _ = (btf.resolve(id), btf.size_of(id), btf.name_of(id));
            }
            let again = Btf::parse(&btf.to_bytes()).expect("re-encoded BTF parses");
            assert_eq!(again.types_len(), btf.types_len());
        }
    }
    // Some mutations (e.g. in names) keep the blob valid; the loop must have exercised both paths.
    assert!(parsed > 0 && parsed < 3000, "parsed {parsed}");
}
