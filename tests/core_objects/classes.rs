//! Tracepoint layouts without kernel BTF (issue 8, point 10), for event classes: a program that
//! declares its context as a class's struct (`trace_event_raw_sched_process_template`, which no
//! tracefs event is named after) resolves, with `--btf none`, from the format file of the event
//! it is attached to. tests/core/class.bpf.c (built like the other tests/core objects) has two
//! such programs on two classes; a shell of ours forks a child and exits, and both programs must
//! report the real pids and priority. The same object with kernel BTF gets what libbpf computes
//! (the class's BTF layout). And the layouts built from the format files equal the kernel BTF's
//! for every class and event checked here.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use rawsnoop::loader::attach;
use rawsnoop::loader::btf::{Btf, BtfKind, BtfType};
use rawsnoop::loader::core::tracefs;
use rawsnoop::loader::core::BtfSource;
use rawsnoop::loader::load::{LoadOptions, Object};
use rawsnoop::loader::ObjectSpec;
use rawsnoop::sys::bpf;

use crate::common::*;

fn fixture() -> ObjectSpec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/core/class.bpf.o");
    ObjectSpec::parse(&std::fs::read(path).unwrap()).unwrap()
}

fn kernel_btf() -> Option<Btf> {
    let data = std::fs::read("/sys/kernel/btf/vmlinux").ok()?;
    Some(Btf::parse(&data).expect("parse vmlinux BTF"))
}

fn format(event: &str) -> String {
    let root = rawsnoop::sys::tracefs::find_or_mount().expect("tracefs");
    std::fs::read_to_string(root.join("events").join(event).join("format"))
        .unwrap_or_else(|e| panic!("format of {event}: {e}"))
}

/// Byte offset of each member of struct `name` (`__data` included), and the struct's size.
fn layout(btf: &Btf, name: &str) -> Option<(BTreeMap<String, u32>, u32)> {
    let id = btf.find_by_name(name, BtfKind::Struct)?;
    let Ok(BtfType::Struct { members, size, .. }) = btf.type_by_id(id) else {
        return None;
    };
    let m = members
        .iter()
        .map(|m| {
            (
                btf.string_at(m.name_off).unwrap().to_string(),
                m.offset_bits / 8,
            )
        })
        .collect();
    Some((m, *size))
}

/// The layout of `trace_event_raw_<name>` as `--btf none` resolves it for a program attached to
/// `event` (`category/name`): through `tracefs::sources_for`, which must pick `event`'s format.
fn from_format(name: &str, event: &str) -> (BTreeMap<String, u32>, u32) {
    let root = rawsnoop::sys::tracefs::find_or_mount().expect("tracefs");
    let (category, ev) = event.split_once('/').unwrap();
    let attach = rawsnoop::loader::AttachPoint::Tracepoint {
        category: category.into(),
        name: ev.into(),
    };
    let sources = tracefs::sources_for(&root, &[name.to_string()], &attach);
    assert_eq!(sources.len(), 1, "{name} on {event}");
    assert_eq!(
        sources[0].event, event,
        "{name} resolved from another event"
    );
    assert_eq!(sources[0].text, format(event));
    let btf = tracefs::btf_from_formats(&[(name.to_string(), sources[0].text.clone())]).unwrap();
    layout(&btf, &format!("trace_event_raw_{name}")).unwrap()
}

/// The kernel's `prio` of `pid` (/proc/PID/stat field 18 is prio - 100).
fn prio_of(pid: u32) -> i32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[15].parse::<i32>().unwrap() + 100
}

/// (pid, prio, hits) of each slot: 0 sched_process_exit, 1 sched_wakeup_new.
struct Seen([(i32, i32, u32); 2]);

/// Loads the fixture for one shell of ours, which forks a child and exits.
/// Returns what the programs saw, the shell's pid, the child's pid and the shell's prio.
fn run(source: BtfSource) -> (Seen, u32, u32, i32) {
    let spec = fixture();
    let mut sh = Command::new("/bin/sh")
        .args(["-c", "read x; sleep 0 & echo $!; wait"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = sh.id();
    let prio = prio_of(pid);
    let g = spec.global_var("target_tgid").expect("target_tgid");
    let opts = LoadOptions {
        data_patches: vec![(g.section, g.offset, pid.to_ne_bytes().to_vec())],
        btf: source,
        ..LoadOptions::default()
    };
    let obj = Object::load_with(&spec, &opts).unwrap_or_else(|e| panic!("{e}"));
    let links: Vec<_> = obj
        .programs()
        .iter()
        .map(|p| attach::attach(p).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    drop(sh.stdin.take()); // EOF: `read` returns, the shell forks and exits
    let mut line = String::new();
    BufReader::new(sh.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child: u32 = line.trim().parse().unwrap();
    assert!(sh.wait().unwrap().success());
    drop(links);
    let mut seen = [(0, 0, 0); 2];
    for (slot, s) in seen.iter_mut().enumerate() {
        let mut v = [0u8; 12];
        bpf::map_lookup_elem(
            obj.map("seen").unwrap().fd(),
            &(slot as u32).to_ne_bytes(),
            &mut v,
        )
        .unwrap();
        let word = |i: usize| u32::from_ne_bytes(v[i * 4..i * 4 + 4].try_into().unwrap());
        *s = (word(0) as i32, word(1) as i32, word(2));
    }
    (Seen(seen), pid, child, prio)
}

#[test]
fn event_classes_without_kernel_btf_resolve_from_the_attached_events_format() {
    if !bpf_allowed("event_classes_without_kernel_btf_resolve_from_the_attached_events_format") {
        return;
    }
    let (seen, pid, child, prio) = run(BtfSource::None);
    assert_eq!(
        seen.0[0],
        (pid as i32, prio, 1),
        "sched_process_exit via trace_event_raw_sched_process_template"
    );
    assert_eq!(
        seen.0[1],
        (child as i32, prio, 1),
        "sched_wakeup_new via trace_event_raw_sched_wakeup_template"
    );
    // inspect --core --btf none names the event each class came from.
    let text = rawsnoop::inspect_core::describe_core("class.bpf.o", &fixture(), &BtfSource::None);
    for want in [
        "trace_event_raw_sched_process_template from sched/sched_process_exit",
        "trace_event_raw_sched_wakeup_template from sched/sched_wakeup_new",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    assert!(
        !text.contains("ERROR") && !text.contains("POISONED"),
        "{text}"
    );
}

/// With kernel BTF the class's BTF layout is used, as libbpf does: right wherever the event
/// still has the class's record (sched_wakeup_new everywhere, sched_process_exit before it got
/// its own), and the class's offsets otherwise (6.18: not the exiting pid).
#[test]
fn event_classes_with_kernel_btf_use_the_class_layout_as_libbpf_does() {
    if !bpf_allowed("event_classes_with_kernel_btf_use_the_class_layout_as_libbpf_does") {
        return;
    }
    let Some(k) = kernel_btf() else {
        println!("SKIPPED: no /sys/kernel/btf/vmlinux on this kernel");
        return;
    };
    let (seen, pid, child, prio) = run(BtfSource::Kernel);
    assert_eq!(seen.0[1], (child as i32, prio, 1), "sched_wakeup_new");
    let class = layout(&k, "trace_event_raw_sched_process_template")
        .unwrap()
        .0;
    let exit = from_format("sched_process_exit", "sched/sched_process_exit").0;
    if class.get("pid") == exit.get("pid") && class.get("prio") == exit.get("prio") {
        assert_eq!(seen.0[0], (pid as i32, prio, 1), "sched_process_exit");
    } else {
        println!(
            "sched_process_exit has its own record here (pid at {:?}, the class's at {:?}): \
             the class layout reads {:?}, --btf none reads the real pid",
            exit.get("pid"),
            class.get("pid"),
            seen.0[0]
        );
        assert_eq!(seen.0[0].2, 1);
        assert_ne!(seen.0[0].0, pid as i32);
    }
}

/// The structs built from tracefs format files have the kernel BTF's members at the kernel
/// BTF's offsets, and its size: for the classes through an event of theirs, and for events
/// that are their own class.
#[test]
fn tracefs_layouts_equal_the_kernel_btf() {
    if !bpf_allowed("tracefs_layouts_equal_the_kernel_btf") {
        return;
    }
    let Some(k) = kernel_btf() else {
        println!("SKIPPED: no /sys/kernel/btf/vmlinux on this kernel");
        return;
    };
    let mut pairs = vec![
        ("sched_process_template", "sched/sched_process_free"),
        ("sched_wakeup_template", "sched/sched_wakeup_new"),
        ("sched_wakeup_template", "sched/sched_wakeup"),
        ("sched_process_exec", "sched/sched_process_exec"),
        ("sys_enter", "raw_syscalls/sys_enter"),
        ("sys_exit", "raw_syscalls/sys_exit"),
    ];
    // sched_process_exit: the class's record, or its own where it has one.
    if k.find_by_name("trace_event_raw_sched_process_exit", BtfKind::Struct)
        .is_some()
    {
        pairs.push(("sched_process_exit", "sched/sched_process_exit"));
    } else {
        pairs.push(("sched_process_template", "sched/sched_process_exit"));
    }
    for (name, event) in pairs {
        let want = layout(&k, &format!("trace_event_raw_{name}"))
            .unwrap_or_else(|| panic!("kernel BTF has no trace_event_raw_{name}"));
        let got = from_format(name, event);
        assert_eq!(got, want, "trace_event_raw_{name} from {event}'s format");
    }
}
