//! Objects built for libbpf (the demo's own programs, compiled against Debian's libbpf
//! headers) must load and trace under `--object` as they are; an object whose `struct event`
//! does not match is refused with a clear error. When clang and the libbpf headers are here
//! (CI installs them) the objects are rebuilt from `tests/foreign/*.bpf.c` first, else the
//! committed ones are used.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn clang() -> Option<String> {
    let candidates = std::env::var("CLANG").ok().into_iter().chain(
        ["clang-22", "clang-19", "clang-16", "clang"]
            .iter()
            .map(|s| s.to_string()),
    );
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// The object for `stem`: freshly compiled into `dir` when possible, else the committed one.
fn object(stem: &str, dir: &Path) -> PathBuf {
    let src_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/foreign");
    let committed = src_dir.join(format!("{stem}.bpf.o"));
    // The VM harness sets RAWSNOOP_FOREIGN_PREBUILT=1: clang under emulation is slow, and the
    // host's own run already checked the fresh build.
    let prebuilt_only = std::env::var("RAWSNOOP_FOREIGN_PREBUILT").is_ok_and(|v| v == "1");
    let headers = Path::new("/usr/include/bpf/bpf_helpers.h").exists();
    // Only look for clang when it would be used: even `clang --version` is slow under TCG.
    let clang = if headers && !prebuilt_only {
        clang()
    } else {
        None
    };
    let Some(clang) = clang else {
        eprintln!("note: using committed {}", committed.display());
        return committed;
    };
    let out = dir.join(format!("{stem}.bpf.o"));
    let st = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-D__TARGET_ARCH_x86", "-I"])
        .arg(&src_dir)
        .args(["-I/usr/include/x86_64-linux-gnu", "-c"])
        .arg(src_dir.join(format!("{stem}.bpf.c")))
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run clang");
    assert!(st.success(), "{clang} failed on {stem}.bpf.c");
    out
}

fn foreign_object_traces(test: &str, stem: &str, flag: &str, ringbuf: bool) {
    if !transport_allowed(test, ringbuf) {
        return;
    }
    let dir = TempDir::new(test);
    let obj = object(stem, &dir.0);
    let probe = probe_program(&dir.0, "rsnp-foreign");
    let mut tool = spawn_tool(&[flag, "--object", obj.to_str().unwrap()]);
    assert_eq!(
        tool.next_line("the header"),
        "TIME     EVENT PID     COMM             FILENAME"
    );
    let pids = exec_n(&probe, 3);
    let path = probe.to_str().unwrap();
    let mut want: Vec<u32> = pids.clone();
    while !want.is_empty() {
        let line = tool.next_line("our execs through the foreign object");
        if let Some((_, ev, pid, comm, filename)) = parse_table_line(&line) {
            if filename == path && want.contains(&pid) {
                assert_eq!(
                    (ev.as_str(), comm.as_str()),
                    ("EXEC", "rsnp-foreign"),
                    "{line}"
                );
                want.retain(|&p| p != pid);
            }
        }
    }
    assert!(tool.stop(libc::SIGINT).success());
}

#[test]
fn ringbuf_reserve_libbpf_demo_object_traces() {
    foreign_object_traces(
        "ringbuf_reserve_libbpf_demo_object_traces",
        "ringbuf-reserve-submit",
        "--ringbuf-reserve",
        true,
    );
}

#[test]
fn ringbuf_output_libbpf_demo_object_traces() {
    foreign_object_traces(
        "ringbuf_output_libbpf_demo_object_traces",
        "ringbuf-output",
        "--ringbuf",
        true,
    );
}

#[test]
fn perfbuf_libbpf_demo_object_traces() {
    foreign_object_traces(
        "perfbuf_libbpf_demo_object_traces",
        "perfbuf-output",
        "--perfbuf",
        false,
    );
}

#[test]
fn ringbuf_output_mismatched_event_layout_is_refused() {
    let test = "ringbuf_output_mismatched_event_layout_is_refused";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    let obj = object("bad-event", &dir.0);
    let err = expect_clean_failure(&["--ringbuf", "--object", obj.to_str().unwrap()], &[]);
    assert!(err.contains("struct event"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn wrong_transport_for_the_object_is_a_clear_error() {
    let test = "perfbuf_wrong_transport_for_object";
    if !bpf_allowed(test) {
        return;
    }
    let dir = TempDir::new(test);
    let obj = object("ringbuf-output", &dir.0);
    let err = expect_clean_failure(&["--perfbuf", "--object", obj.to_str().unwrap()], &[]);
    assert!(err.contains("PERF_EVENT_ARRAY"), "{err}");
}

#[test]
fn ringbuf_reserve_verifier_rejection_shows_the_c_source_line() {
    let test = "ringbuf_reserve_verifier_rejection_shows_the_c_source_line";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    let obj = object("verifier-reject", &dir.0);
    let err = expect_clean_failure(
        &["--ringbuf-reserve", "--object", obj.to_str().unwrap()],
        &[],
    );
    assert!(
        err.contains("verifier rejected program 'handle_exec'"),
        "{err}"
    );
    // The line comes from .BTF.ext line_info, which only reaches the kernel with the BTF.
    assert!(
        err.contains("e->pid = bpf_get_current_pid_tgid() >> 32;"),
        "no C source line in: {err}"
    );
    // `ringbuf_mem_or_null` on new kernels, `alloc_mem_or_null` on 5.10/6.1.
    assert!(err.contains("invalid mem access"), "{err}");
}

#[test]
fn ringbuf_reserve_object_with_an_unusable_extra_program_traces() {
    // The extra `fentry/` program has no attach_btf_id: the kernel refuses it. Only the
    // program rawsnoop attaches is loaded, so the object still traces.
    foreign_object_traces(
        "ringbuf_reserve_object_with_an_unusable_extra_program_traces",
        "extra-fentry",
        "--ringbuf-reserve",
        true,
    );
}

#[test]
fn ringbuf_loading_every_program_says_what_the_kernel_refused() {
    use rawsnoop::loader::load::{LoadError, LoadOptions, Object};
    let test = "ringbuf_loading_every_program_says_what_the_kernel_refused";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    let bytes = std::fs::read(object("extra-fentry", &dir.0)).expect("read object");
    let spec = rawsnoop::loader::ObjectSpec::parse(&bytes).expect("parses");
    // Everything: the fentry program is refused, and the error says why (not "run as root").
    let err =
        Object::load(&spec).expect_err("the fentry program cannot load without attach_btf_id");
    assert!(
        matches!(&err, LoadError::Refused { program, .. } if program == "unused_fentry"),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("attach_btf_id") && text.contains("tracing"),
        "{text}"
    );
    assert!(!text.contains("run as root"), "{text}");
    // Only the program in use: loads, and the other is not there.
    let obj = Object::load_with(&spec, &LoadOptions::default().only_program("handle_exec"))
        .expect("the tracepoint program alone loads");
    assert!(obj.program("handle_exec").is_some());
    assert!(obj.program("unused_fentry").is_none());
    assert_eq!(obj.programs().len(), 1);
    // Asking for a program the object does not have is an error before anything loads.
    let err = Object::load_with(&spec, &LoadOptions::default().only_program("nope"))
        .expect_err("no such program");
    assert!(
        matches!(err, LoadError::NoProgram(ref n) if n == "nope"),
        "{err:?}"
    );
}

#[test]
fn ringbuf_attach_refused_for_ctx_past_the_record_says_why() {
    let test = "ringbuf_attach_refused_for_ctx_past_the_record_says_why";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    let obj = object("ctx-past-record", &dir.0);
    let err = expect_clean_failure(
        &["--ringbuf-reserve", "--object", obj.to_str().unwrap()],
        &[],
    );
    assert!(
        err.contains("reads its context past the end of the tracepoint's record"),
        "{err}"
    );
    assert!(err.contains("sched_process_exec/format"), "{err}");
}

#[test]
fn ringbuf_missing_tracepoint_is_reported_before_anything_loads() {
    let test = "ringbuf_missing_tracepoint_is_reported_before_anything_loads";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    // The program would also fail the verifier: resolving the tracepoint first means the
    // user hears about the tracepoint, and the kernel never saw a map or a program.
    let obj = object("missing-tracepoint", &dir.0);
    let err = expect_clean_failure(
        &["--ringbuf-reserve", "--object", obj.to_str().unwrap()],
        &[],
    );
    assert!(
        err.contains("rawsnoop_no_such_category/no_such_event does not exist"),
        "{err}"
    );
    assert!(!err.contains("verifier"), "{err}");
}
