//! The code paths the fuzz targets drive, shared with `tests/fuzz_corpus.rs` (which includes this
//! file with `#[path]`), so the corpus replay in `cargo test` runs exactly what the fuzzer ran.
//!
//! Every check here panics on a bug (the fuzzer's signal); a parse error is an expected outcome and is
//! returned as its message after checking that it is one clear paragraph.
#![allow(dead_code)]

use rawsnoop::loader::btf::{sanitize, Btf, BtfExt, BtfFeatures};
use rawsnoop::loader::ObjectSpec;

/// What the fuzzed input led to: `Ok` when it parsed, `Err(message)` when it was rejected.
pub type Outcome = Result<(), String>;

/// Panics unless `msg` is a usable error message: non-empty and a single paragraph (no blank line).
pub fn check_message(what: &str, msg: &str) {
    assert!(!msg.trim().is_empty(), "{what}: empty error message");
    assert!(
        !msg.contains("\n\n"),
        "{what}: error message is more than one paragraph: {msg:?}"
    );
}

/// What `inspect::describe` may print for an input of `len` bytes: its listing budget, the BTF
/// listing's, and a line per section/map/program/type (all linear in `len`). Time is bounded by
/// the same argument (the fuzzer runs with `-timeout`; see fuzz/README.md).
pub fn describe_bound(len: usize) -> usize {
    use rawsnoop::loader::btf::format::{ALL_OUTPUT_BASE, ALL_OUTPUT_PER_INPUT_BYTE, MAX_RAW_LINE};
    rawsnoop::inspect::OUTPUT_BASE
        + ALL_OUTPUT_BASE
        + len * (rawsnoop::inspect::OUTPUT_PER_CODE_BYTE + ALL_OUTPUT_PER_INPUT_BYTE)
        + (len / 12 + 16) * MAX_RAW_LINE
}

/// `parse_object`: bytes -> `ObjectSpec::parse`, and on success `inspect::describe` with
/// instructions, whose output must stay within [`describe_bound`] and contain no raw control
/// characters but line breaks (everything from the object is escaped).
pub fn parse_object(data: &[u8]) -> Outcome {
    match ObjectSpec::parse(data) {
        Ok(spec) => {
            for with_insns in [true, false] {
                let text = rawsnoop::inspect::describe("fuzz.bpf.o", &spec, with_insns);
                assert!(!text.is_empty(), "describe returned nothing");
                let bound = describe_bound(data.len());
                assert!(
                    text.len() <= bound,
                    "describe printed {} bytes for a {}-byte input (bound {bound})",
                    text.len(),
                    data.len()
                );
                assert!(
                    !text.chars().any(|c| c.is_control() && c != '\n'),
                    "describe printed a raw control character"
                );
            }
            Ok(())
        }
        Err(e) => {
            let msg = e.to_string();
            check_message("ObjectSpec::parse", &msg);
            Err(msg)
        }
    }
}

/// Where the BTF blob described by `data`'s header ends (header + the furthest of the type and string
/// sections), so the rest of the input can be fed to `BtfExt::parse`. `None` if the header is unreadable.
pub fn btf_end(data: &[u8]) -> Option<usize> {
    let word = |off: usize| -> Option<u32> {
        let b: [u8; 4] = data.get(off..off.checked_add(4)?)?.try_into().ok()?;
        match data.get(..2)? {
            [0x9f, 0xeb] => Some(u32::from_le_bytes(b)),
            [0xeb, 0x9f] => Some(u32::from_be_bytes(b)),
            _ => None,
        }
    };
    let hdr = u64::from(word(4)?);
    let types_end = u64::from(word(8)?) + u64::from(word(12)?);
    let strings_end = u64::from(word(16)?) + u64::from(word(20)?);
    usize::try_from(hdr + types_end.max(strings_end)).ok()
}

/// The lazy view CO-RE reads target BTF through (`LazyBtf`) on the same bytes: whatever it opens
/// must answer every id without panicking, and where the eager parse accepts the blob (every type
/// checked up front), the same as the eager parse for every id.
pub fn lazy_agrees(data: &[u8]) {
    use rawsnoop::loader::btf::{lazy::Bytes, BtfView, LazyBtf};
    let Ok(lazy) = LazyBtf::new(Bytes::Owned(data.to_vec())) else {
        return;
    };
    let eager = Btf::parse(data).ok();
    // Bounded like the eager parse: one record per 12 input bytes at most.
    for id in 0..BtfView::types_len(&lazy).saturating_add(1) {
        let t = lazy.type_at(id);
        let (kind, name) = (BtfView::kind_of(&lazy, id), BtfView::name_of(&lazy, id));
        let (resolved, size) = (BtfView::resolve(&lazy, id), BtfView::size_of(&lazy, id));
        if let Err(e) = &t {
            check_message("LazyBtf::type_at", &e.to_string());
        }
        if let Some(e) = &eager {
            let same = match (e.type_by_id(id), &t) {
                (Ok(a), Ok(b)) => format!("{a:?}") == format!("{:?}", b.as_ref()),
                (Err(_), Err(_)) => true,
                _ => false,
            };
            assert!(same, "lazy and eager decode type [{id}] differently");
            assert_eq!(e.kind_of(id).ok(), kind.ok(), "kind of [{id}]");
            assert_eq!(e.name_of(id).ok(), name.ok(), "name of [{id}]");
            assert_eq!(e.resolve(id).ok(), resolved.ok(), "resolve [{id}]");
            assert_eq!(e.size_of(id).ok(), size.ok(), "size of [{id}]");
        }
    }
}

/// `parse_btf`: bytes -> `Btf::parse`, then `format_all`, a `to_bytes` round trip, `sanitize` for a
/// kernel with no optional features, and `BtfExt::parse` on whatever follows the BTF blob.
pub fn parse_btf(data: &[u8]) -> Outcome {
    lazy_agrees(data);
    let btf = match Btf::parse(data) {
        Ok(btf) => btf,
        Err(e) => {
            let msg = e.to_string();
            check_message("Btf::parse", &msg);
            return Err(msg);
        }
    };
    let all = btf.format_all();
    let bound = btf.format_all_budget()
        + (btf.types_len() as usize) * rawsnoop::loader::btf::format::MAX_RAW_LINE;
    assert!(
        all.len() <= bound,
        "format_all printed {} bytes for a {}-byte input (bound {bound})",
        all.len(),
        data.len()
    );
    assert!(
        !all.chars().any(|c| c.is_control() && c != '\n'),
        "format_all printed a raw control character"
    );

    // A parsed BTF re-encodes into something that parses again to the same types and strings.
    let bytes = btf.to_bytes();
    let again = match Btf::parse(&bytes) {
        Ok(b) => b,
        Err(e) => panic!("to_bytes() of a parsed BTF does not re-parse: {e}"),
    };
    assert_eq!(
        again.types_len(),
        btf.types_len(),
        "type count differs after round trip"
    );
    assert_eq!(
        again.strings(),
        btf.strings(),
        "strings differ after round trip"
    );
    assert!(
        again.to_bytes() == bytes,
        "re-encoding the re-parsed BTF gives other bytes"
    );

    // Sanitising for the oldest kernel keeps every id (it may append types) and yields BTF that parses.
    let old = sanitize(&btf, &BtfFeatures::default());
    assert!(old.types_len() >= btf.types_len(), "sanitize dropped types");
    let _ = old.format_all();
    if let Err(e) = Btf::parse(&old.to_bytes()) {
        panic!("sanitized BTF does not re-parse: {e}");
    }

    let tail = btf_end(data).and_then(|end| data.get(end..)).unwrap_or(&[]);
    if !tail.is_empty() {
        match BtfExt::parse(tail, &btf) {
            Ok(ext) => {
                for sec in ext.sections() {
                    let _ = (ext.func_info(sec), ext.line_info(sec), ext.core_relos(sec));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                check_message("BtfExt::parse", &msg);
                return Err(msg);
            }
        }
    }
    Ok(())
}

/// `core_relo`: bytes -> `ObjectSpec::parse`, then every program's CO-RE records relocated against
/// the object's own BTF as the target (so the fuzzer's records meet real type graphs), and
/// `inspect --core`'s text. Each failing record must give one clear error; nothing may panic.
pub fn core_relo(data: &[u8]) -> Outcome {
    use rawsnoop::loader::core::{relocate_copy, TargetBtf};
    let spec = match ObjectSpec::parse(data) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            check_message("ObjectSpec::parse", &msg);
            return Err(msg);
        }
    };
    let Some(local) = spec.btf.as_ref() else {
        return Ok(());
    };
    let target = TargetBtf::from_btf("fuzz-target", local.clone());
    // The same BTF through the lazy view the kernel's BTF is read with: same outcome per record.
    let lazy = TargetBtf::from_bytes("fuzz-target", &local.to_bytes()).ok();
    for p in &spec.programs {
        let (insns, eager) = relocate_copy(p, local, Some(&target));
        for r in &eager {
            if let Err(e) = r {
                check_message("CO-RE relocation", &e.to_string());
            }
        }
        assert_eq!(
            insns.len(),
            p.insns.len(),
            "relocation changed the program length"
        );
        if let Some(lazy) = &lazy {
            let (lazy_insns, other) = relocate_copy(p, local, Some(lazy));
            assert!(
                lazy_insns == insns,
                "lazy and eager targets patch differently"
            );
            for (a, b) in eager.iter().zip(&other) {
                match (a, b) {
                    (Ok(a), Ok(b)) => assert_eq!(
                        (a.new, a.poisoned, &a.chosen),
                        (b.new, b.poisoned, &b.chosen),
                        "lazy and eager targets resolve differently"
                    ),
                    (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                    _ => panic!("lazy and eager targets disagree: {a:?} vs {b:?}"),
                }
            }
        }
    }
    Ok(())
}
