//! The loader on our own compiled objects: the specs it reads (maps, programs,
//! relocations), then the same objects loaded into the running kernel and checked against
//! what the kernel reports.

mod common;

use std::collections::BTreeSet;

use rawsnoop::loader::load::Object;
use rawsnoop::loader::{AttachPoint, ObjectSpec, RelocKind};
use rawsnoop::sys::bpf;
use rawsnoop::sys::kernel::KernelVersion;
use rawsnoop::tracer::Transport;

struct Want {
    name: &'static str,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
}

/// `sizeof(struct event)` (bpf/event.h): the demo's 532 bytes, our additions, 7680 of args.
const EVENT_SIZE: u32 = 8264;

fn expected_maps(t: Transport) -> Vec<Want> {
    let heap = Want {
        name: "heap",
        map_type: bpf::BPF_MAP_TYPE_PERCPU_ARRAY,
        key_size: 4,
        value_size: EVENT_SIZE,
        max_entries: 1,
    };
    let rb = Want {
        name: "rb",
        map_type: bpf::BPF_MAP_TYPE_RINGBUF,
        key_size: 0,
        value_size: 0,
        max_entries: 256 * 1024,
    };
    let pb = Want {
        name: "pb",
        map_type: bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 0,
    };
    // The `const volatile` filters and options (bpf/tracer.h, bpf/ringbuf_wakeup.h) become
    // a one-entry array; the ring buffer tracers add the wakeup policy's three.
    let rodata = |value_size| Want {
        name: ".rodata",
        map_type: bpf::BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size,
        max_entries: 1,
    };
    // `__u64 lost_full, lost_other` (bpf/tracer.h), and for the ring buffer tracers
    // `__u64 last_wakeup_ns` (bpf/ringbuf_wakeup.h).
    let bss = |value_size| Want {
        name: ".bss",
        map_type: bpf::BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size,
        max_entries: 1,
    };
    let execs = Want {
        name: "execs",
        map_type: bpf::BPF_MAP_TYPE_LRU_HASH,
        key_size: 4,
        value_size: EVENT_SIZE,
        max_entries: 1024,
    };
    let exec_start = Want {
        name: "exec_start",
        map_type: bpf::BPF_MAP_TYPE_LRU_HASH,
        key_size: 4,
        value_size: 8,
        max_entries: 16384,
    };
    // --cgroup's directory fd (bpf_current_task_under_cgroup).
    let cgroup = Want {
        name: "cgroup_filter",
        map_type: bpf::BPF_MAP_TYPE_CGROUP_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: 1,
    };
    match t {
        Transport::RingbufReserve | Transport::RingbufOutput => {
            vec![rb, heap, rodata(56), bss(24), execs, exec_start, cgroup]
        }
        Transport::Perfbuf => vec![pb, heap, rodata(32), bss(16), execs, exec_start, cgroup],
    }
}

fn check_spec(t: Transport) -> ObjectSpec {
    let spec = ObjectSpec::parse(t.builtin_object()).expect("parse built-in object");
    assert_eq!(spec.license, "Dual BSD/GPL");
    let names: BTreeSet<&str> = spec.programs.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "handle_exec",
            "handle_exec_btf",
            "handle_exit",
            "handle_enter_execve",
            "handle_enter_execveat",
            "handle_exit_execve",
            "handle_exit_execveat",
        ]),
        "{t:?}: programs"
    );
    for p in &spec.programs {
        // handle_exec_btf is the tp_btf twin of handle_exec (a tracing program).
        let want = if p.name == "handle_exec_btf" {
            bpf::BPF_PROG_TYPE_TRACING
        } else {
            bpf::BPF_PROG_TYPE_TRACEPOINT
        };
        assert_eq!(p.prog_type, want, "{}", p.name);
        assert!(!p.insns.is_empty());
    }
    let p = spec.program("handle_exec").unwrap();
    assert_eq!(p.section, "tp/sched/sched_process_exec");
    assert_eq!(
        p.attach,
        AttachPoint::Tracepoint {
            category: "sched".into(),
            name: "sched_process_exec".into()
        }
    );
    let want = expected_maps(t);
    assert_eq!(
        spec.maps.len(),
        want.len(),
        "{t:?}: maps {:?}",
        spec.maps.iter().map(|m| &m.name).collect::<Vec<_>>()
    );
    for w in &want {
        let m = spec
            .map(w.name)
            .unwrap_or_else(|| panic!("{t:?}: map {}", w.name));
        assert_eq!(
            (m.map_type, m.key_size, m.value_size, m.max_entries),
            (w.map_type, w.key_size, w.value_size, w.max_entries),
            "{t:?}: map {}",
            w.name
        );
    }
    // Every relocation sits on an ld_imm64 and names a map; every map is referenced by
    // some program, the global data by value (inside the section), the others by fd.
    let mut referenced = BTreeSet::new();
    let filter = spec
        .global_var("filter_uid")
        .expect("filter_uid in .rodata");
    assert_eq!((filter.section.as_str(), filter.size), (".rodata", 4));
    for p in &spec.programs {
        for r in &p.relocs {
            let insn = p.insns[r.insn];
            assert!(
                insn.is_ld_imm64(),
                "{t:?}: relocation at {} is on opcode {:#x}",
                r.insn,
                insn.code
            );
            match r.kind {
                RelocKind::Map { map } => {
                    assert!(
                        !spec.maps[map].name.starts_with('.'),
                        "{t:?}: global data is referenced by value"
                    );
                    referenced.insert(spec.maps[map].name.clone());
                }
                RelocKind::MapValue { map, offset } => {
                    let m = &spec.maps[map];
                    assert!(m.name.starts_with('.'), "{t:?}: {}", m.name);
                    assert!(offset < m.value_size, "{t:?}: {} + {offset}", m.name);
                    referenced.insert(m.name.clone());
                }
            }
        }
    }
    let all: BTreeSet<String> = want.iter().map(|w| w.name.to_string()).collect();
    assert_eq!(referenced, all, "{t:?}: maps referenced by the program");
    // With BTF: func_info covers instruction 0 and line info exists (for verifier source lines).
    assert!(
        spec.btf.is_some(),
        "{t:?}: built with -g, so BTF is present"
    );
    assert_eq!(
        p.func_info.first().map(|f| f.insn_off),
        Some(0),
        "{t:?}: func_info"
    );
    assert!(!p.line_info.is_empty(), "{t:?}: line_info");
    spec
}

#[test]
fn ringbuf_reserve_object_spec() {
    check_spec(Transport::RingbufReserve);
}

#[test]
fn ringbuf_output_object_spec() {
    check_spec(Transport::RingbufOutput);
}

#[test]
fn perfbuf_object_spec() {
    check_spec(Transport::Perfbuf);
}

fn loads_into_kernel(test: &str, t: Transport) {
    if !common::transport_allowed(test, t != Transport::Perfbuf) {
        return;
    }
    let spec = check_spec(t);
    let obj = Object::load(&spec).unwrap_or_else(|e| panic!("{test}: load: {e}"));
    let cpus = rawsnoop::sys::cpus::possible_cpus().unwrap();
    for w in expected_maps(t) {
        let m = obj.map(w.name).unwrap();
        let info = bpf::map_info(m.fd()).unwrap();
        let max = if w.max_entries == 0 {
            cpus.iter().max().unwrap() + 1
        } else {
            w.max_entries
        };
        assert_eq!(
            (
                info.map_type,
                info.key_size,
                info.value_size,
                info.max_entries
            ),
            (w.map_type, w.key_size, w.value_size, max),
            "{test}: kernel's view of map {}",
            w.name
        );
    }
    assert!(obj.program("handle_exec").is_some());
}

#[test]
fn ringbuf_reserve_object_loads() {
    loads_into_kernel("ringbuf_reserve_object_loads", Transport::RingbufReserve);
}

#[test]
fn ringbuf_output_object_loads() {
    loads_into_kernel("ringbuf_output_object_loads", Transport::RingbufOutput);
}

#[test]
fn perfbuf_object_loads() {
    loads_into_kernel("perfbuf_object_loads", Transport::Perfbuf);
}

#[test]
fn oversized_and_malformed_ringbufs_are_refused_before_the_kernel() {
    use rawsnoop::loader::load::{finalize_map_spec, LoadOptions};
    let spec = ObjectSpec::parse(Transport::RingbufReserve.builtin_object()).unwrap();
    let rb = spec.map("rb").unwrap();
    for bad in [0u32, 3 * 4096, 4096 + 8, 1 << 31] {
        let mut opts = LoadOptions::default();
        opts.max_entries.insert("rb".into(), bad);
        let err = finalize_map_spec(rb, &opts).expect_err(&format!("ringbuf size {bad}"));
        assert!(err.to_string().contains("map 'rb'"), "{err}");
    }
    let mut ok = LoadOptions::default();
    ok.max_entries.insert("rb".into(), 1 << 20);
    assert_eq!(finalize_map_spec(rb, &ok).unwrap().max_entries, 1 << 20);
}

/// The loader's own test objects (legacy `maps`, global data, bpf-to-bpf calls, several
/// programs per object) must not only parse but load: the kernel's verifier is the judge
/// of the linked call offsets, func_info and relocations.
#[test]
fn loader_testdata_objects_load_into_the_kernel() {
    let test = "loader_testdata_objects_load_into_the_kernel";
    if !common::bpf_allowed(test) {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/loader/testdata");
    let mut loaded = 0;
    let v = rawsnoop::sys::kernel::version().expect("kernel version");
    let mut objects = vec!["legacy.bpf.o"];
    // maps_mix has a BPF_F_NO_PREALLOC hash used from tracing programs: older kernels
    // load it but WARN ("trace type BPF program uses run-time allocation").
    if v >= KernelVersion(6, 1, 0) {
        objects.push("maps_mix.bpf.o");
    }
    // calls uses bpf_loop (5.17) with a callback loaded by address (BPF_PSEUDO_FUNC, 5.13).
    if v >= KernelVersion(5, 17, 0) {
        objects.push("calls.bpf.o");
    }
    for name in objects {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let spec = ObjectSpec::parse(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        let obj = Object::load(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(obj.programs().len(), spec.programs.len(), "{name}");
        assert_eq!(obj.maps().len(), spec.maps.len(), "{name}");
        for m in obj.maps() {
            let info = bpf::map_info(m.fd()).unwrap();
            assert_eq!(
                info.map_type, m.spec.map_type,
                "{name}: map {}",
                m.spec.name
            );
        }
        loaded += obj.programs().len();
    }
    assert!(loaded >= 2, "programs loaded: {loaded}");
}

#[test]
fn inspect_explains_builtin_and_foreign_objects() {
    let foreign = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/foreign/perfbuf-output.bpf.o"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .args(["inspect", foreign])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "pb               perf_event_array",
        "heap             percpu_array",
        "handle_exec in section 'tp/sched/sched_process_exec': type tracepoint (5)",
        "call bpf_perf_event_output#25",
        "struct event {",
        "ld_imm64 <- map fd of 'heap'",
    ] {
        assert!(
            text.contains(want),
            "inspect output lacks {want:?}:\n{text}"
        );
    }
    let all = std::process::Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .arg("inspect")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&all.stdout);
    for (name, _) in rawsnoop::objects::builtin() {
        assert!(
            text.contains(&format!("object {name} (built in)")),
            "{name}"
        );
    }
}

#[test]
fn perf_link_support_is_probed() {
    use rawsnoop::loader::attach;
    if !common::bpf_allowed("perf_link_support_is_probed") {
        return;
    }
    let probed = attach::perf_link_supported();
    assert_eq!(
        probed,
        attach::perf_link_supported(),
        "probed once, same answer"
    );
    // The matrix kernels are upstream ones, where perf links arrived in 5.15 (a distro
    // kernel may have them earlier: that is why the loader probes).
    if let Some(v) = rawsnoop::sys::kernel::version() {
        assert_eq!(probed, v >= KernelVersion(5, 15, 0), "kernel {v}");
    }
    // And attaching uses what the probe found. The demo's perfbuf object: no run-time allocated
    // hash maps (5.10's verifier WARNs when a tracing program uses one).
    let demo =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/foreign/perfbuf-output.bpf.o");
    let bytes = std::fs::read(demo).expect("committed demo object");
    let spec = ObjectSpec::parse(&bytes).expect("parses");
    let name = "handle_exec".to_string();
    let obj = Object::load_with(
        &spec,
        &rawsnoop::loader::load::LoadOptions::default().only_program(&name),
    )
    .expect("loads");
    let link = attach::attach(obj.program(&name).expect("loaded")).expect("attaches");
    let want = if probed {
        "bpf_link"
    } else {
        "perf_event_ioctl"
    };
    assert_eq!(link.kind(), want);
}

/// The demo's object with every `sched_process_exec` (section names, BTF strings) replaced by
/// terminal control sequences of the same length.
fn evil_object(dir: &std::path::Path) -> std::path::PathBuf {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/foreign/ringbuf-reserve-submit.bpf.o");
    let mut data = std::fs::read(src).expect("read the committed object");
    let (from, to): (&[u8], &[u8]) = (b"sched_process_exec", b"\x1b[2J\x1b]0;pwned\x07xxxx");
    assert_eq!(from.len(), to.len());
    let mut i = 0;
    while i + from.len() <= data.len() {
        if &data[i..i + from.len()] == from {
            data[i..i + from.len()].copy_from_slice(to);
            i += from.len();
        } else {
            i += 1;
        }
    }
    let path = dir.join("evil.bpf.o");
    std::fs::write(&path, data).expect("write");
    path
}

#[test]
fn names_from_objects_print_escaped_in_inspect_and_errors() {
    let dir = common::TempDir::new("names_escaped");
    let evil = evil_object(&dir.0);
    let out = common::run_tool(&["inspect", evil.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !stdout.contains('\x1b') && !stdout.contains('\x07'),
        "raw escapes in inspect"
    );
    assert!(
        stdout.contains("tp/sched/\\x1b[2J\\x1b]0;pwned\\x07xxxx"),
        "{stdout}"
    );
    if !common::bpf_allowed("names_from_objects_print_escaped_in_inspect_and_errors") {
        return;
    }
    // The tracepoint `sched/<escapes>` does not exist: the error names it, escaped.
    let out = common::run_tool(&["--ringbuf-reserve", "--object", evil.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\x07'),
        "{stderr:?}"
    );
    assert!(stderr.contains("\\x1b[2J"), "{stderr}");
}

#[test]
fn errors_print_each_cause_once() {
    // The OS error is the source of "cannot read": chained once, not repeated.
    let out = common::run_tool(&["inspect", "/nonexistent/rawsnoop.bpf.o"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "rawsnoop: error: cannot read /nonexistent/rawsnoop.bpf.o: No such file or directory (os error 2)"
    );
    // Non-regular files are refused before reading (`/dev/zero` used to read until OOM).
    let out = common::run_tool(&["inspect", "/dev/zero"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("/dev/zero is not a regular file (a character device)"),
        "{stderr}"
    );
    // And typed errors chain rather than quote their source.
    use rawsnoop::loader::load::LoadError;
    use std::error::Error as _;
    let e = LoadError::MapInit {
        map: "m".into(),
        source: std::io::Error::from_raw_os_error(libc::EINVAL),
    };
    assert!(e.source().is_some());
    assert!(!e.to_string().contains("Invalid argument"), "{e}");
}
