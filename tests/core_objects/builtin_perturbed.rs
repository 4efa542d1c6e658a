//! Issue 8, point 7: rawsnoop's own programs (bpf/ringbuf_reserve.bpf.c, bpf/perfbuf_output.bpf.c)
//! built here with clang against a deliberately perturbed bpf/tracer.h (`-DRAWSNOOP_PERTURB`:
//! padding no kernel has before every field they read, in the tracepoint record and in
//! task_struct / linux_binprm), run through `TracerOptions::builtin_object`, print the real
//! kernel's values: pid, ppid, uid, comm, filename, arguments, exit code. The test first checks
//! the object's .BTF really has the padding (so it cannot pass vacuously), then traces with the
//! kernel's BTF (classic tracepoint and tp_btf) and without it (`BtfSource::None`: the record's
//! fields from tracefs, task_struct unknown, so ppid and exit code are -1 with the warning).

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rawsnoop::event::Kind;
use rawsnoop::loader::btf::{Btf, BtfKind, BtfType};
use rawsnoop::loader::core::BtfSource;
use rawsnoop::loader::ObjectSpec;
use rawsnoop::tracer::{ExecAttach, Tracer, TracerOptions, Transport};

use crate::common::*;

fn required() -> bool {
    std::env::var("RAWSNOOP_REQUIRE_BPF").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// `$CLANG`, else clang-19, else clang: the first that runs.
fn clang() -> Option<String> {
    let candidates = std::env::var("CLANG")
        .ok()
        .into_iter()
        .chain(["clang-19", "clang"].map(String::from));
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// (stem, object bytes) of each perturbed build.
type Built = Vec<(&'static str, Vec<u8>)>;

/// An EXEC as printed: (pid, ppid, uid, comm, filename, args).
type Exec = (i32, Option<i32>, Option<u32>, String, String, Vec<String>);

/// `bpf/<stem>.bpf.c` compiled with `-DRAWSNOOP_PERTURB` and build.rs's flags (x86-64), once
/// per test binary. `None` (with a SKIPPED line) when there is no clang and skipping is
/// allowed; with RAWSNOOP_REQUIRE_BPF=1 a missing clang is a failure.
fn perturbed(stem: &'static str) -> Option<&'static [u8]> {
    static BUILT: OnceLock<Result<Built, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let Some(clang) = clang() else {
            return Err(
                "no clang ($CLANG, clang-19 or clang) to build the perturbed programs".into(),
            );
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let dir = TempDir::new("builtin-perturbed");
        let mut out = Vec::new();
        for stem in ["ringbuf_reserve", "perfbuf_output"] {
            let obj: PathBuf = dir.0.join(format!("{stem}.bpf.o"));
            let o = Command::new(&clang)
                .args(["-target", "bpfel", "-O2", "-g", "-Wall", "-Werror"])
                .args(["-DRAWSNOOP_PERTURB", "-D__TARGET_ARCH_x86"])
                .arg("-I")
                .arg(root.join("bpf"))
                .args(["-I", "/usr/include/x86_64-linux-gnu", "-c"])
                .arg(root.join(format!("bpf/{stem}.bpf.c")))
                .arg("-o")
                .arg(&obj)
                .output()
                .expect("run clang");
            assert!(
                o.status.success(),
                "{clang} -DRAWSNOOP_PERTURB bpf/{stem}.bpf.c failed:\n{}",
                String::from_utf8_lossy(&o.stderr)
            );
            out.push((stem, std::fs::read(&obj).unwrap()));
        }
        Ok(out)
    });
    match built {
        Ok(objs) => objs.iter().find(|(s, _)| *s == stem).map(|(_, b)| &b[..]),
        Err(msg) if required() => panic!("{msg}, and RAWSNOOP_REQUIRE_BPF=1 forbids skipping"),
        Err(msg) => {
            println!("SKIPPED: {msg}");
            None
        }
    }
}

/// Byte offset of `field` in local struct `name` of `btf`.
fn offset(btf: &Btf, name: &str, field: &str) -> u32 {
    let id = btf
        .find_by_name(name, BtfKind::Struct)
        .unwrap_or_else(|| panic!("no struct {name}"));
    let Ok(BtfType::Struct { members, .. }) = btf.type_by_id(id) else {
        panic!("{name} is not a struct")
    };
    members
        .iter()
        .find(|m| btf.string_at(m.name_off).ok() == Some(field))
        .unwrap_or_else(|| panic!("no {name}.{field}"))
        .offset_bits
        / 8
}

/// The perturbed object's local types really have the padding: every field the programs read
/// is further than in the shipped object (which has none).
fn check_padding(perturbed: &[u8], shipped: &[u8]) {
    let p = ObjectSpec::parse(perturbed).unwrap().btf.unwrap();
    let s = ObjectSpec::parse(shipped).unwrap().btf.unwrap();
    for (st, field) in [
        (
            "trace_event_raw_sched_process_exec___core",
            "__data_loc_filename",
        ),
        ("trace_event_raw_sched_process_exec___core", "pid"),
        ("trace_event_raw_sched_process_exec___core", "old_pid"),
        ("task_struct", "real_parent"),
        ("task_struct", "tgid"),
        ("task_struct", "exit_code"),
        ("linux_binprm", "filename"),
    ] {
        assert!(
            offset(&p, st, field) >= offset(&s, st, field) + 24,
            "{st}.{field}: perturbed at {}, shipped at {}",
            offset(&p, st, field),
            offset(&s, st, field)
        );
    }
    assert_eq!(offset(&p, "task_struct", "__rawsnoop_pad0"), 0);
}

/// What the tracer printed for our two children.
#[derive(Debug, Default)]
struct Seen {
    exec: Option<Exec>,
    exit_code: Option<Option<i32>>,
}

/// Traces with the perturbed object: execs the probe with arguments (spaces included), and a
/// shell that exits 3. Returns what was seen, the probe's pid and path, and the warnings.
fn trace(
    transport: Transport,
    object: &[u8],
    btf: BtfSource,
    attach: ExecAttach,
) -> (Seen, u32, String, Vec<String>) {
    let mut opts = TracerOptions::new(transport);
    opts.builtin_object = Some(object.to_vec());
    opts.btf = btf;
    opts.attach = attach;
    opts.args = true;
    opts.exit = true;
    let mut tracer = Tracer::open(&opts).unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir::new("builtin-perturbed-probe");
    let probe = probe_program(&dir.0, "rsnp-pert probe");
    let path = probe.to_str().unwrap().to_string();
    let mut c = Command::new(&probe).args(["a b", "c  d"]).spawn().unwrap();
    let pid = c.id();
    assert!(c.wait().unwrap().success());
    let mut sh = Command::new("/bin/sh")
        .args(["-c", "exit 3"])
        .spawn()
        .unwrap();
    let sh_pid = sh.id() as i32;
    assert_eq!(sh.wait().unwrap().code(), Some(3));
    let mut seen = Seen::default();
    let deadline = Instant::now() + DEADLINE;
    while (seen.exec.is_none() || seen.exit_code.is_none()) && Instant::now() < deadline {
        tracer
            .poll(
                Some(Duration::from_millis(100)),
                |e| {
                    if e.kind() == Kind::Exec && e.pid() == pid as i32 {
                        let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                        seen.exec = Some((
                            e.pid(),
                            e.ppid(),
                            e.uid(),
                            s(e.comm()),
                            s(e.filename()),
                            e.args().into_iter().map(s).collect(),
                        ));
                    }
                    if e.kind() == Kind::Exit && e.pid() == sh_pid {
                        seen.exit_code = Some(e.exit_code());
                    }
                    ControlFlow::Continue(())
                },
                |_| {},
            )
            .unwrap();
    }
    (seen, pid, path, tracer.warnings.clone())
}

fn check(transport: Transport, stem: &'static str, btf: BtfSource, attach: ExecAttach) {
    let Some(obj) = perturbed(stem) else { return };
    check_padding(obj, transport.builtin_object());
    let no_btf = btf == BtfSource::None;
    let (seen, pid, path, warnings) = trace(transport, obj, btf, attach);
    // SAFETY: getuid(2) cannot fail.
    let uid = unsafe { libc::getuid() };
    let ppid = if no_btf {
        None
    } else {
        Some(std::process::id() as i32)
    };
    let comm = "rsnp-pert probe".to_string();
    let args = vec![path.clone(), "a b".into(), "c  d".into()];
    assert_eq!(
        seen.exec,
        Some((pid as i32, ppid, Some(uid), comm, path, args)),
        "{stem} EXEC (pid, ppid, uid, comm, filename, args); warnings {warnings:?}"
    );
    let code = if no_btf { None } else { Some(3) };
    assert_eq!(
        seen.exit_code,
        Some(code),
        "{stem} EXIT of `sh -c 'exit 3'`"
    );
    assert_eq!(
        warnings
            .iter()
            .any(|w| w.contains("parent pids and exit codes are unknown")),
        no_btf,
        "{warnings:?}"
    );
}

#[test]
fn perturbed_ringbuf_reserve_prints_the_kernels_values() {
    if !transport_allowed("perturbed_ringbuf_reserve_prints_the_kernels_values", true) {
        return;
    }
    check(
        Transport::RingbufReserve,
        "ringbuf_reserve",
        BtfSource::Kernel,
        ExecAttach::Tracepoint,
    );
}

/// tp_btf reads the filename through `linux_binprm`, perturbed too.
#[test]
fn perturbed_ringbuf_reserve_tp_btf_prints_the_kernels_values() {
    if !transport_allowed(
        "perturbed_ringbuf_reserve_tp_btf_prints_the_kernels_values",
        true,
    ) {
        return;
    }
    check(
        Transport::RingbufReserve,
        "ringbuf_reserve",
        BtfSource::Kernel,
        ExecAttach::TpBtf,
    );
}

#[test]
fn perturbed_ringbuf_reserve_without_kernel_btf_uses_tracefs() {
    if !transport_allowed(
        "perturbed_ringbuf_reserve_without_kernel_btf_uses_tracefs",
        true,
    ) {
        return;
    }
    check(
        Transport::RingbufReserve,
        "ringbuf_reserve",
        BtfSource::None,
        ExecAttach::Auto,
    );
}

#[test]
fn perturbed_perfbuf_prints_the_kernels_values() {
    if !transport_allowed("perturbed_perfbuf_prints_the_kernels_values", false) {
        return;
    }
    check(
        Transport::Perfbuf,
        "perfbuf_output",
        BtfSource::Kernel,
        ExecAttach::Tracepoint,
    );
}

#[test]
fn perturbed_perfbuf_without_kernel_btf_uses_tracefs() {
    if !transport_allowed("perturbed_perfbuf_without_kernel_btf_uses_tracefs", false) {
        return;
    }
    check(
        Transport::Perfbuf,
        "perfbuf_output",
        BtfSource::None,
        ExecAttach::Auto,
    );
}
