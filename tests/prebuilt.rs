//! The committed BPF objects in `bpf/prebuilt/` match the current `bpf/`
//! sources, and the objects embedded in the crate are BPF ELF files.
//!
//! A failure here after editing `bpf/` means: run
//! `RAWSNOOP_UPDATE_PREBUILT=1 cargo build` (needs clang) and commit
//! `bpf/prebuilt/`.

use std::fs;
use std::path::{Path, PathBuf};

include!("../bpf/source_hash.rs");

const EM_BPF: u16 = 247;
const ET_REL: u16 = 1;
const FIX: &str = "run `RAWSNOOP_UPDATE_PREBUILT=1 cargo build` and commit bpf/prebuilt/";

fn bpf_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf")
}

/// (name, path) of every `bpf/<name>.bpf.c`, sorted by name.
fn programs() -> Vec<(String, PathBuf)> {
    let mut programs = Vec::new();
    for entry in fs::read_dir(bpf_dir()).expect("reading bpf/") {
        let path = entry.expect("reading bpf/").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .map(str::to_owned);
        if let Some(name) = name {
            programs.push((name, path));
        }
    }
    programs.sort();
    programs
}

/// Checks the ELF header of `bytes`: 64-bit, this host's byte order,
/// relocatable, machine EM_BPF. Returns what is wrong, if anything.
fn elf_problem(bytes: &[u8]) -> Option<String> {
    let header = match bytes.get(..64) {
        Some(h) => h,
        None => {
            return Some(format!(
                "{} bytes, shorter than an ELF64 header",
                bytes.len()
            ))
        }
    };
    if header[..4] != *b"\x7fELF" {
        return Some(format!("bad magic {:02x?}", &header[..4]));
    }
    if header[4] != 2 {
        return Some(format!("EI_CLASS {} (want 2, 64-bit)", header[4]));
    }
    let little = match header[5] {
        1 => true,
        2 => false,
        other => return Some(format!("EI_DATA {other} (want 1 or 2)")),
    };
    if little != cfg!(target_endian = "little") {
        return Some("byte order differs from this host".to_string());
    }
    let half = |off: usize| {
        let b = [header[off], header[off + 1]];
        if little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        }
    };
    if half(16) != ET_REL {
        return Some(format!("e_type {} (want {ET_REL}, ET_REL)", half(16)));
    }
    if half(18) != EM_BPF {
        return Some(format!("e_machine {} (want {EM_BPF}, EM_BPF)", half(18)));
    }
    None
}

#[test]
fn fnv1a64_matches_reference_vectors() {
    // Published FNV-1a 64 test vectors.
    assert_eq!(fnv1a64_update(FNV1A64_OFFSET, b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64_update(FNV1A64_OFFSET, b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(
        fnv1a64_update(FNV1A64_OFFSET, b"foobar"),
        0x8594_4171_f739_67e8
    );
    // Streaming in pieces equals hashing at once.
    let split = fnv1a64_update(fnv1a64_update(FNV1A64_OFFSET, b"foo"), b"bar");
    assert_eq!(split, 0x8594_4171_f739_67e8);
}

#[test]
fn hash_file_round_trips_and_rejects_junk() {
    for hash in [0, 1, 0x0447_cf04_2a10_b71a, u64::MAX] {
        assert_eq!(parse_hash_file(&format_hash_file(hash)), Some(hash));
    }
    for junk in [
        "",
        "fnv1a64 ",
        "fnv1a64 123",
        "sha256 0447cf042a10b71a",
        "fnv1a64 zz47cf042a10b71a",
    ] {
        assert_eq!(parse_hash_file(junk), None, "{junk:?}");
    }
}

#[test]
fn sources_include_the_program_and_every_header() {
    let (_, source) = programs().into_iter().next().expect("a bpf/*.bpf.c");
    let files = bpf_source_files(&source).expect("listing sources");
    assert_eq!(files.first(), Some(&source));
    let names: Vec<String> = files[1..]
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for header in ["bench.h", "event.h", "rawsnoop.h", "tracer.h"] {
        assert!(
            names.iter().any(|n| n == header),
            "{header} missing from {names:?}"
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        names, sorted,
        "headers must be hashed in a fixed (sorted) order"
    );
}

#[test]
fn every_program_has_a_fresh_prebuilt_object() {
    let prebuilt = bpf_dir().join("prebuilt");
    let mut problems = Vec::new();
    for (name, source) in programs() {
        let object = prebuilt.join(format!("{name}.bpf.o"));
        let hash_file = prebuilt.join(format!("{name}.bpf.o.hash"));
        let Ok(bytes) = fs::read(&object) else {
            problems.push(format!("bpf/{name}.bpf.c has no bpf/prebuilt/{name}.bpf.o"));
            continue;
        };
        if let Some(problem) = elf_problem(&bytes) {
            problems.push(format!(
                "bpf/prebuilt/{name}.bpf.o is not a BPF object: {problem}"
            ));
        }
        let committed = fs::read_to_string(&hash_file).ok();
        let Some(committed) = committed.as_deref().and_then(parse_hash_file) else {
            problems.push(format!(
                "bpf/prebuilt/{name}.bpf.o.hash is missing or not `fnv1a64 <16 hex digits>`"
            ));
            continue;
        };
        let current = bpf_source_hash(&source).expect("hashing sources");
        if committed != current {
            problems.push(format!(
                "bpf/prebuilt/{name}.bpf.o is stale: built from sources hashing to \
                 {committed:016x}, bpf/ now hashes to {current:016x}"
            ));
        }
    }
    assert!(problems.is_empty(), "{}\n=> {FIX}", problems.join("\n"));
}

#[test]
fn no_prebuilt_object_without_a_program() {
    let names: Vec<String> = programs().into_iter().map(|(n, _)| n).collect();
    let mut orphans = Vec::new();
    for entry in fs::read_dir(bpf_dir().join("prebuilt")).expect("reading bpf/prebuilt/") {
        let file_name = entry.expect("reading bpf/prebuilt/").file_name();
        let file_name = file_name.to_string_lossy();
        let stem = file_name
            .strip_suffix(".bpf.o.hash")
            .or_else(|| file_name.strip_suffix(".bpf.o"));
        match stem {
            Some(stem) if names.iter().any(|n| n == stem) => {}
            _ => orphans.push(file_name.into_owned()),
        }
    }
    assert!(
        orphans.is_empty(),
        "bpf/prebuilt/ holds files for no bpf/*.bpf.c: {orphans:?} (delete them)"
    );
}

#[test]
fn embedded_objects_are_aligned_bpf_elf() {
    let builtin = rawsnoop::objects::builtin();
    for (name, bytes) in builtin {
        assert_eq!(
            bytes.as_ptr() as usize % 8,
            0,
            "embedded {name} is not 8-byte aligned"
        );
        if let Some(problem) = elf_problem(bytes) {
            panic!("embedded {name} is not a BPF object: {problem}");
        }
    }
    // Every program in bpf/ is embedded, and nothing else.
    let mut embedded: Vec<&str> = builtin.iter().map(|(n, _)| *n).collect();
    embedded.sort();
    let programs: Vec<String> = programs().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        embedded, programs,
        "src/objects.rs must embed exactly the bpf/*.bpf.c programs"
    );
    // The named statics are the ones listed under their names.
    use rawsnoop::objects::{BENCH, PERFBUF_OUTPUT, RINGBUF_OUTPUT, RINGBUF_RESERVE};
    for (name, bytes) in [
        ("ringbuf_reserve", RINGBUF_RESERVE),
        ("ringbuf_output", RINGBUF_OUTPUT),
        ("perfbuf_output", PERFBUF_OUTPUT),
        ("bench", BENCH),
    ] {
        let listed = builtin.iter().find(|(n, _)| *n == name).map(|(_, b)| *b);
        assert_eq!(listed.map(<[u8]>::as_ptr), Some(bytes.as_ptr()), "{name}");
    }
}

#[test]
fn elf_check_rejects_non_bpf_bytes() {
    // The checker itself must be able to fail.
    let good = rawsnoop::objects::RINGBUF_RESERVE;
    assert_eq!(elf_problem(good), None);
    assert!(elf_problem(&good[..63]).is_some());
    let mut wrong_machine = good[..64].to_vec();
    wrong_machine[18] = 62; // EM_X86_64
    wrong_machine[19] = 0;
    assert!(elf_problem(&wrong_machine).unwrap().contains("e_machine"));
    let mut bad_magic = good[..64].to_vec();
    bad_magic[0] = 0;
    assert!(elf_problem(&bad_magic).unwrap().contains("magic"));
}
