//! The lazy view ([`LazyBtf`]) against the eager parse ([`Btf`]): same answers for every type of
//! the running kernel's BTF and of the every-kind test blob (both byte orders), and hostile inputs
//! (truncations, bad vlen, names past the string section, out-of-range refs, cycles, random
//! mutations) giving errors, never panics.

use super::lazy::Bytes;
use super::testutil::{all_kinds, RawBtf, Rng};
use super::*;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

fn lazy(bytes: &[u8]) -> Result<LazyBtf, BtfError> {
    LazyBtf::new(Bytes::Owned(bytes.to_vec()))
}

/// Every id answers the same through both (types compared by their Debug form).
fn assert_same(eager: &Btf, lazy: &LazyBtf) {
    assert_same_ids(eager, lazy, 0..eager.types_len() + 2);
}

/// Ids `ids` answer the same through both.
fn assert_same_ids(eager: &Btf, lazy: &LazyBtf, ids: impl Iterator<Item = u32>) {
    assert_eq!(BtfView::types_len(lazy), eager.types_len());
    for id in ids {
        let (e, l) = (eager.type_by_id(id), lazy.type_at(id));
        match (&e, &l) {
            (Ok(e), Ok(l)) => assert_eq!(format!("{e:?}"), format!("{:?}", l.as_ref()), "[{id}]"),
            (Err(_), Err(_)) => {}
            _ => panic!("[{id}]: eager {e:?}, lazy {l:?}"),
        }
        assert_eq!(
            eager.kind_of(id).ok(),
            BtfView::kind_of(lazy, id).ok(),
            "[{id}]"
        );
        assert_eq!(
            eager.name_of(id).ok(),
            BtfView::name_of(lazy, id).ok(),
            "[{id}]"
        );
        assert_eq!(
            eager.resolve(id).ok(),
            BtfView::resolve(lazy, id).ok(),
            "[{id}]"
        );
        assert_eq!(
            eager.size_of(id).ok(),
            BtfView::size_of(lazy, id).ok(),
            "[{id}]"
        );
    }
}

#[test]
fn same_answers_as_eager_for_every_kind_in_both_byte_orders() {
    for big in [false, true] {
        let bytes = all_kinds(big).bytes();
        let eager = Btf::parse(&bytes).unwrap();
        let l = lazy(&bytes).unwrap();
        assert_eq!(l.is_big_endian(), big);
        assert_same(&eager, &l);
        let index = NameIndex::build(&eager);
        for n in [
            "s", "u", "e", "f", "t", "main", "v", ".data", "e64", "int", "nope", "",
        ] {
            assert_eq!(l.ids_named(n), index.ids(&eager, n), "{n}");
        }
        assert_eq!(l.find("e64", BtfKind::Enum64), Some(19));
        assert_eq!(l.find("s", BtfKind::Union), None);
    }
}

#[test]
fn flavours_are_found_by_essential_name() {
    let mut b = Btf::new();
    for n in ["s", "s___v1", "t", "", "s___a___b", "st", "s_"] {
        let off = b.add_string(n);
        b.add_type(BtfType::Struct {
            name_off: off,
            size: 0,
            members: vec![],
        });
    }
    let l = lazy(&b.to_bytes()).unwrap();
    assert_eq!(l.ids_named("s"), [1, 2]);
    assert_eq!(l.ids_named("s"), [1, 2], "cached answer");
    assert_eq!(l.ids_named("s___a"), [5]);
    assert_eq!(l.find("s___v1", BtfKind::Struct), Some(2));
}

#[test]
fn running_kernel_vmlinux_same_as_eager() {
    let Ok(data) = std::fs::read(VMLINUX) else {
        eprintln!("SKIPPED: {VMLINUX} not readable (kernel without BTF)");
        return;
    };
    let eager = Btf::parse(&data).unwrap();
    let l = lazy(&data).unwrap();
    assert_same(&eager, &l);
    // Candidate lookup: a sample of names agrees with the eager index.
    let index = NameIndex::build(&eager);
    for id in (1..eager.types_len()).step_by(1009) {
        let n = essential_name(eager.name_of(id).unwrap());
        assert_eq!(l.ids_named(n), index.ids(&eager, n), "{n}");
    }
    let task = l.find("task_struct", BtfKind::Struct).expect("task_struct");
    assert_eq!(
        Some(task),
        index.find(&eager, "task_struct", BtfKind::Struct)
    );
}

/// Kernel release (major, minor) from /proc/sys/kernel/osrelease.
fn kernel_version() -> Option<(u32, u32)> {
    let s = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut it = s.trim().split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[test]
fn running_kernel_vmlinux_maps_on_6_16_and_later() {
    if !std::path::Path::new(VMLINUX).exists() {
        eprintln!("SKIPPED: {VMLINUX} missing (kernel without BTF)");
        return;
    }
    let mapped = Bytes::map_kernel_btf(std::path::Path::new(VMLINUX));
    let new_enough = kernel_version().is_some_and(|v| v >= (6, 16));
    match mapped {
        Some(m) => {
            let read = std::fs::read(VMLINUX).unwrap();
            assert!(*m == read[..], "the mapping holds the file's bytes");
            let l = LazyBtf::new(m).unwrap();
            assert!(l.is_mapped());
            assert!(l.find("task_struct", BtfKind::Struct).is_some());
        }
        // The kernel allows mmap of vmlinux BTF since 6.16 (btf_sysfs_vmlinux_mmap).
        None => assert!(
            !new_enough,
            "kernel {:?} should allow the mapping",
            kernel_version()
        ),
    }
    // A regular file is never mapped (it could change under us): read instead.
    let tmp = std::env::temp_dir().join(format!("rawsnoop-lazy-{}", std::process::id()));
    std::fs::write(&tmp, all_kinds(false).bytes()).unwrap();
    assert!(Bytes::map_kernel_btf(&tmp).is_none());
    let _ = std::fs::remove_file(&tmp);
}

#[test]
fn running_kernel_module_btf_same_as_eager_split() {
    let Ok(base) = std::fs::read(VMLINUX) else {
        eprintln!("SKIPPED: {VMLINUX} not readable (kernel without BTF)");
        return;
    };
    let mut modules: Vec<_> = std::fs::read_dir("/sys/kernel/btf")
        .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    modules.retain(|p| !p.ends_with("vmlinux"));
    modules.sort();
    if modules.is_empty() {
        eprintln!("SKIPPED: no module BTF under /sys/kernel/btf (no modules loaded)");
        return;
    }
    let eager_base = Btf::parse(&base).unwrap();
    let lazy_base = std::sync::Arc::new(lazy(&base).unwrap());
    // A few modules are enough; each compares every one of its own types and a few base ones.
    for path in modules.iter().take(4) {
        let data = std::fs::read(path).unwrap();
        let eager = Btf::parse_split(&data, &eager_base).unwrap();
        let l = LazyBtf::new_split(Bytes::Owned(data), lazy_base.clone()).unwrap();
        let first = eager_base.types_len();
        assert_same_ids(&eager, &l, (first..eager.types_len() + 1).chain(1..50));
        for id in (first..eager.types_len()).step_by(7) {
            let n = essential_name(eager.name_of(id).unwrap());
            let want: Vec<u32> = NameIndex::build_from(&eager, first).ids(&eager, n);
            assert_eq!(l.ids_named(n), want, "{}: {n}", path.display());
        }
    }
}

#[test]
fn split_matches_eager_split() {
    let base_bytes = all_kinds(false).bytes();
    let eager_base = Btf::parse(&base_bytes).unwrap();
    let base_len = eager_base.strings().len() as u32;
    let mut split = Btf::new();
    let sn = split.add_string("mod_struct") + base_len;
    let xn = split.add_string("x") + base_len;
    split.add_type(BtfType::Struct {
        name_off: sn,
        size: 8,
        members: vec![
            Member {
                name_off: xn,
                type_id: 1,
                offset_bits: 0,
                bitfield_size: 0,
            },
            Member {
                name_off: xn,
                type_id: 22,
                offset_bits: 32,
                bitfield_size: 0,
            },
        ],
    });
    split.add_type(BtfType::Ptr { type_id: 21 }); // [22] -> the split struct
    let bytes = split.to_bytes();
    let eager = Btf::parse_split(&bytes, &eager_base).unwrap();
    let base = std::sync::Arc::new(lazy(&base_bytes).unwrap());
    let l = LazyBtf::new_split(Bytes::Owned(bytes.clone()), base).unwrap();
    assert_eq!(l.first_id(), 21);
    assert_same(&eager, &l);
    assert_eq!(l.ids_named("mod_struct"), [21]);
    assert!(
        l.ids_named("s").is_empty(),
        "only the split part is searched"
    );
    // A reference past the combined range is an error when the type is used.
    let mut bad = Btf::new();
    bad.add_type(BtfType::Ptr { type_id: 99 });
    let base = std::sync::Arc::new(lazy(&base_bytes).unwrap());
    let l = LazyBtf::new_split(Bytes::Owned(bad.to_bytes()), base).unwrap();
    assert!(matches!(
        l.type_at(21),
        Err(BtfError::TypeIdOutOfRange { id: 99, .. })
    ));
}

#[test]
fn truncated_at_every_length_is_an_error_or_consistent() {
    let bytes = all_kinds(false).bytes();
    for n in 0..bytes.len() {
        // Cut the whole blob, and cut only the type section (header claims less).
        if let Ok(l) = lazy(&bytes[..n]) {
            walk(&l);
        }
    }
    let mut raw = all_kinds(false);
    let full = raw.types.len();
    for cut in 0..full {
        raw.types.truncate(cut);
        let r = lazy(&raw.bytes());
        if let Ok(l) = &r {
            walk(l);
        }
        raw = all_kinds(false);
    }
    // A record cut in the middle names the type and where it is.
    let mut raw = all_kinds(false);
    raw.types.truncate(full - 4);
    assert!(matches!(
        lazy(&raw.bytes()),
        Err(BtfError::Truncated { id: 20, .. })
    ));
}

/// Uses every id, name and walk: any answer is fine, a panic is not.
fn walk(l: &LazyBtf) {
    for id in 0..BtfView::types_len(l) + 1 {
        let _ = l.type_at(id);
        let _ = BtfView::kind_of(l, id);
        let _ = BtfView::name_of(l, id);
        let _ = BtfView::resolve(l, id);
        let _ = BtfView::size_of(l, id);
    }
    for n in ["s", "int", "e64", "x"] {
        let _ = l.ids_named(n);
    }
}

#[test]
fn bad_vlen_bad_names_bad_refs_and_cycles_are_errors() {
    // vlen too large for the remaining bytes: refused by the opening pass.
    let mut b = RawBtf::new(false);
    let s = b.s("s");
    b.ty(s, 4, 0xffff, false, 4);
    assert!(matches!(
        lazy(&b.bytes()),
        Err(BtfError::Truncated { id: 1, .. })
    ));
    // vlen on a kind that has none: found when the type is decoded.
    let mut b = RawBtf::new(false);
    b.int("int", 4, 0, 32);
    b.ty(0, 2, 1, false, 1); // ptr with vlen 1
    let l = lazy(&b.bytes()).unwrap();
    assert!(l.type_at(1).is_ok());
    assert!(matches!(
        l.type_at(2),
        Err(BtfError::InvalidType { id: 2, .. })
    ));
    // Unknown kind: refused at open.
    let mut b = RawBtf::new(false);
    b.ty(0, 31, 0, false, 0);
    assert!(matches!(
        lazy(&b.bytes()),
        Err(BtfError::UnknownKind {
            id: 1,
            kind: 31,
            ..
        })
    ));
    // Name offsets past the string section: the type and its name are errors.
    let mut b = RawBtf::new(false);
    b.ty(1_000_000, 8, 0, false, 0); // typedef -> void, name far away
    let (m, x) = (b.s("m"), 5000);
    b.ty(m, 4, 1, false, 4); // struct m { int <name 5000> }
    b.u32(x);
    b.u32(0);
    b.u32(0);
    let l = lazy(&b.bytes()).unwrap();
    assert!(matches!(
        l.type_at(1),
        Err(BtfError::StringOutOfRange {
            off: 1_000_000,
            referrer: Some(1),
            ..
        })
    ));
    assert!(BtfView::name_of(&l, 1).is_err());
    assert!(matches!(
        l.type_at(2),
        Err(BtfError::StringOutOfRange {
            off: 5000,
            referrer: Some(2),
            ..
        })
    ));
    assert!(l.ids_named("m") == [2], "the name itself is fine");
    // Type references past the end and reference cycles.
    let mut b = RawBtf::new(false);
    let (t, u) = (b.s("t"), b.s("u"));
    b.ty(t, 8, 0, false, 2); // [1] typedef t -> 2
    b.ty(u, 8, 0, false, 1); // [2] typedef u -> 1
    b.ty(0, 3, 0, false, 0); // [3] array of 1, index 1, 4 elems
    b.u32(1);
    b.u32(1);
    b.u32(4);
    b.ty(0, 2, 0, false, 77); // [4] ptr -> 77
    let l = lazy(&b.bytes()).unwrap();
    assert!(matches!(
        BtfView::resolve(&l, 1),
        Err(BtfError::Cycle { id: 1, .. })
    ));
    assert!(matches!(
        BtfView::size_of(&l, 3),
        Err(BtfError::Cycle { .. })
    ));
    assert!(matches!(
        l.type_at(4),
        Err(BtfError::TypeIdOutOfRange {
            id: 77,
            referrer: Some(4),
            ..
        })
    ));
    assert!(matches!(
        l.type_at(5),
        Err(BtfError::TypeIdOutOfRange { id: 5, .. })
    ));
    assert!(matches!(l.type_at(0), Err(BtfError::VoidHasNoType)));
    // A string section without a leading NUL is refused at open, as the eager parse does.
    let mut b = RawBtf::new(false);
    b.int("int", 4, 0, 32);
    b.strings[0] = b'x';
    assert!(matches!(
        lazy(&b.bytes()),
        Err(BtfError::BadStringSection { .. })
    ));
}

#[test]
fn random_mutations_never_panic() {
    let base = all_kinds(false).bytes();
    let mut rng = Rng(0x5eed_1a2b_3c4d_5e6f);
    for _ in 0..3000 {
        let mut m = base.clone();
        for _ in 0..1 + rng.next() % 4 {
            let i = (rng.next() % m.len() as u64) as usize;
            m[i] = rng.next() as u8;
        }
        if let Ok(l) = lazy(&m) {
            walk(&l);
            // Whatever the lazy view decodes, the eager parse agrees on or refuses outright.
            if let Ok(e) = Btf::parse(&m) {
                assert_same(&e, &l);
            }
        }
    }
}
