//! Replays the fuzz corpus (`fuzz/corpus/<target>/`) and every crash reproducer
//! (`fuzz/regressions/<target>/`) through the same code as the cargo-fuzz targets, so the normal
//! `cargo test` keeps the hostile-input guarantees without a fuzzer: no panic, and a rejected input
//! gets one non-empty, single-paragraph error. Also checks the CLI on rejected inputs: exit code 1
//! and a `rawsnoop: error:` line, never a panic.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::panic;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// Sorted regular files directly in `dir` (none if it does not exist).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Corpus then regressions of `target`; fails if the corpus is missing (a replay of nothing proves nothing).
fn inputs(target: &str) -> Vec<PathBuf> {
    let corpus = files_in(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target}/ is empty or missing; the replay would test nothing"
    );
    let mut all = corpus;
    all.extend(files_in(&fuzz_dir().join("regressions").join(target)));
    all
}

/// Runs `run` on every input of `target`, catching panics so one report lists every failing file.
/// Returns how many inputs parsed and how many were rejected.
fn replay(target: &str, run: fn(&[u8]) -> harness::Outcome) -> (usize, usize) {
    let (mut ok, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    for path in inputs(target) {
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        match panic::catch_unwind(|| run(&data)) {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => rejected += 1,
            Err(p) => {
                let why = p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failures.push(format!("{}: {why}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{target}: {} input(s) panicked:\n{}",
        failures.len(),
        failures.join("\n")
    );
    (ok, rejected)
}

#[test]
fn parse_object_corpus_replays_without_panics() {
    let (ok, rejected) = replay("parse_object", harness::parse_object);
    eprintln!("parse_object: {ok} parsed, {rejected} rejected");
    // The seeds are real objects, so a corpus where nothing parses means the parser regressed.
    assert!(ok > 0, "no corpus input parsed as an object");
}

#[test]
fn parse_btf_corpus_replays_without_panics() {
    let (ok, rejected) = replay("parse_btf", harness::parse_btf);
    eprintln!("parse_btf: {ok} parsed, {rejected} rejected");
    assert!(ok > 0, "no corpus input parsed as BTF");
}

#[test]
fn core_relo_corpus_replays_without_panics() {
    let (ok, rejected) = replay("core_relo", harness::core_relo);
    eprintln!("core_relo: {ok} parsed, {rejected} rejected");
    assert!(ok > 0, "no corpus input parsed as an object");
}

#[test]
fn btf_end_reads_header_in_both_byte_orders() {
    // hdr_len 24, types 0+8, strings 8+4: the blob ends at 24 + 12 = 36.
    let mut le = vec![0x9f, 0xeb, 1, 0];
    for w in [24u32, 0, 8, 8, 4] {
        le.extend_from_slice(&w.to_le_bytes());
    }
    assert_eq!(harness::btf_end(&le), Some(36));
    let mut be = vec![0xeb, 0x9f, 1, 0];
    for w in [24u32, 0, 8, 8, 4] {
        be.extend_from_slice(&w.to_be_bytes());
    }
    assert_eq!(harness::btf_end(&be), Some(36));
    assert_eq!(harness::btf_end(&le[..20]), None, "truncated header");
    assert_eq!(harness::btf_end(b"not btf at all, not btf at all"), None);
}

/// Up to `n` inputs the parser rejects: regressions first, then rejected corpus files.
fn rejected_objects(n: usize) -> Vec<PathBuf> {
    let mut picked = Vec::new();
    let regressions = files_in(&fuzz_dir().join("regressions").join("parse_object"));
    let corpus = files_in(&fuzz_dir().join("corpus").join("parse_object"));
    for path in regressions.into_iter().chain(corpus) {
        if picked.len() == n {
            break;
        }
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if harness::parse_object(&data).is_err() {
            picked.push(path);
        }
    }
    picked
}

#[test]
fn inspect_cli_rejects_hostile_objects_with_one_error() {
    let files = rejected_objects(4);
    assert!(
        !files.is_empty(),
        "no rejected input in fuzz/regressions/parse_object or fuzz/corpus/parse_object"
    );
    for path in files {
        let out = Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
            .arg("inspect")
            .arg(&path)
            .output()
            .expect("running rawsnoop inspect");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}: expected exit code 1, stderr:\n{stderr}",
            path.display()
        );
        assert!(
            !stderr.contains("panicked"),
            "{}: rawsnoop panicked:\n{stderr}",
            path.display()
        );
        let errors: Vec<&str> = stderr
            .lines()
            .filter(|l| l.starts_with("rawsnoop: error: "))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "{}: expected one `rawsnoop: error:` line, stderr:\n{stderr}",
            path.display()
        );
        assert!(
            errors[0].contains(&path.display().to_string()),
            "{}: error does not name the file: {}",
            path.display(),
            errors[0]
        );
    }
}

#[test]
fn inspect_cli_output_stays_bounded_on_btf_fan_out() {
    // 41 FUNC_PROTOs each returning and taking the next: before the formatter charged the
    // declarators it copies, `inspect` printed ~30 MB here and spent seconds doing it.
    let path = fuzz_dir().join("regressions/parse_object/slow-func-proto-fan-out.bpf.o");
    let out = Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .arg("inspect")
        .arg(&path)
        .output()
        .expect("running rawsnoop inspect");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("BTF types (41):"),
        "{}",
        &stdout[..stdout.len().min(2000)]
    );
    assert!(
        stdout.len() < 1024 * 1024,
        "{} bytes of output",
        stdout.len()
    );
}
