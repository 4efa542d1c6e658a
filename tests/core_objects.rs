//! CO-RE on the real kernel: objects built like libbpf users build them (Debian clang and
//! libbpf headers against a bpftool vmlinux.h, tests/core/*.bpf.c) load through our loader, and
//! every relocation kind gives the value the running kernel's own BTF says (offsets computed here
//! from /sys/kernel/btf/vmlinux independently of the engine), read back from a map after the
//! programs ran on a syscall of this process. Also: tp_btf and raw_tp attach, a relocation that
//! cannot be resolved fails with the relocation in words, and a perturbed context header still
//! reads the kernel's real values. Committed objects are used (tests/core/build.sh rebuilds).

mod common;

// In this binary rather than their own: every test binary costs the VM guests memory (vm/guest.sh
// copies each to a tmpfs), and two more made the 1 GiB 6.1 guest fail with SIGBUS.
#[path = "core_objects/builtin_perturbed.rs"]
mod builtin_perturbed;
#[path = "core_objects/classes.rs"]
mod classes;

use std::path::{Path, PathBuf};

use rawsnoop::loader::attach;
use rawsnoop::loader::btf::{Btf, BtfKind, BtfType};
use rawsnoop::loader::core::BtfSource;
use rawsnoop::loader::load::{LoadError, LoadOptions, Object};
use rawsnoop::loader::{AttachPoint, ObjectSpec};
use rawsnoop::sys::bpf;

use common::*;

fn fixture(stem: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/core/{stem}.bpf.o"))
}

fn vmlinux() -> Btf {
    Btf::parse(&std::fs::read("/sys/kernel/btf/vmlinux").expect("read vmlinux BTF")).expect("parse")
}

/// (bit offset, bitfield size) of `s.field` in the kernel, descending into anonymous members.
fn member(btf: &Btf, s: u32, field: &str) -> Option<(u32, u32, u32)> {
    let (BtfType::Struct { members, .. } | BtfType::Union { members, .. }) =
        btf.type_by_id(btf.resolve(s).ok()?).ok()?
    else {
        return None;
    };
    for m in members {
        let name = btf.string_at(m.name_off).ok()?;
        if name == field {
            return Some((m.offset_bits, m.bitfield_size, m.type_id));
        }
        if name.is_empty() {
            if let Some((o, b, t)) = member(btf, m.type_id, field) {
                return Some((m.offset_bits + o, b, t));
            }
        }
    }
    None
}

fn patches(spec: &ObjectSpec, var: &str, val: u32) -> LoadOptions {
    let g = spec.global_var(var).expect("global var");
    LoadOptions {
        data_patches: vec![(g.section, g.offset, val.to_ne_bytes().to_vec())],
        ..LoadOptions::default()
    }
}

#[test]
fn every_relocation_kind_matches_the_kernel_layout() {
    if !bpf_allowed("every_relocation_kind_matches_the_kernel_layout") {
        return;
    }
    let data = std::fs::read(fixture("fields")).unwrap();
    let spec = ObjectSpec::parse(&data).unwrap();
    let kinds: std::collections::BTreeSet<u32> = spec
        .programs
        .iter()
        .flat_map(|p| p.core_relos.iter().map(|r| r.kind))
        .collect();
    assert_eq!(kinds.len(), 13, "the fixture uses every kind: {kinds:?}");
    assert_eq!(
        spec.program("core_tp_btf").unwrap().attach,
        AttachPoint::TpBtf {
            name: "sys_enter".into()
        }
    );
    let opts = patches(&spec, "target_tgid", std::process::id());
    let obj = Object::load_with(&spec, &opts).unwrap_or_else(|e| panic!("{e}"));
    let links: Vec<_> = obj
        .programs()
        .iter()
        .map(|p| attach::attach(p).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    assert!(links.iter().all(|l| l.kind() == "raw_tracepoint"));
    // Any syscall of this process runs both programs.
    // SAFETY: getppid(2) takes no arguments and cannot fail.
    let ppid = unsafe { libc::getppid() } as u64;
    drop(links);

    let k = vmlinux();
    let task = k.find_by_name("task_struct", BtfKind::Struct).unwrap();
    let (tgid_bits, _, _) = member(&k, task, "tgid").unwrap();
    let (comm_bits, _, comm_t) = member(&k, task, "comm").unwrap();
    let (rof_bits, rof_sz, _) = member(&k, task, "sched_reset_on_fork").unwrap();
    assert_eq!(rof_sz, 1);
    let unit = rof_bits / 32 * 32;
    let local_task = spec
        .btf
        .as_ref()
        .unwrap()
        .find_by_name("task_struct", BtfKind::Struct)
        .unwrap();
    let map = obj.map("results").unwrap();
    for slot in 0u32..2 {
        let mut v = [0u8; 17 * 8];
        bpf::map_lookup_elem(map.fd(), &slot.to_ne_bytes(), &mut v).unwrap();
        let v: Vec<u64> = v
            .chunks_exact(8)
            .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
            .collect();
        let want = [
            u64::from(tgid_bits / 8),
            u64::from(k.size_of(comm_t).unwrap()),
            1,
            0,
            1,
            u64::from(k.size_of(task).unwrap()),
            u64::from(task),
            1,
            27, // BPF_MAP_TYPE_RINGBUF
            ppid,
            u64::from(std::process::id()),
            u64::from(64 - (rof_bits + 1 - unit)),
            63,
            1,
            1,
            100,
            u64::from(local_task),
        ];
        assert_eq!(
            v, want,
            "slot {slot} (0: tp_btf, 1: raw_tp); comm at bit {comm_bits}"
        );
    }
}

#[test]
fn unresolvable_relocation_names_type_field_and_source_line() {
    if !bpf_allowed("unresolvable_relocation_names_type_field_and_source_line") {
        return;
    }
    let data = std::fs::read(fixture("missing")).unwrap();
    let spec = ObjectSpec::parse(&data).unwrap();
    let e = Object::load(&spec).unwrap_err();
    assert!(matches!(e, LoadError::CoreUnresolved { .. }), "{e:?}");
    let msg = e.to_string();
    eprintln!("{msg}");
    for want in [
        "missing_field",
        "trace_event_raw_sched_process_exec___rawsnoop.__rawsnoop_missing",
        "seen = ctx->__rawsnoop_missing",
        "has no field `__rawsnoop_missing`",
        "__data_loc_filename",
    ] {
        assert!(msg.contains(want), "missing {want:?} in: {msg}");
    }
}

#[test]
fn perturbed_header_reads_the_kernels_real_values() {
    if !bpf_allowed("perturbed_header_reads_the_kernels_real_values") {
        return;
    }
    perturbed(BtfSource::Kernel);
}

/// Point 10 of issue 8: with kernel BTF ignored (`--btf none`) the tracepoint context type
/// resolves from the tracefs format file, and the real values are still printed.
#[test]
fn perturbed_header_without_kernel_btf_uses_tracefs_formats() {
    if !bpf_allowed("perturbed_header_without_kernel_btf_uses_tracefs_formats") {
        return;
    }
    perturbed(BtfSource::None);
    // A field the format file does not have is refused by name.
    let spec = ObjectSpec::parse(&std::fs::read(fixture("missing")).unwrap()).unwrap();
    let opts = LoadOptions {
        btf: BtfSource::None,
        ..LoadOptions::default()
    };
    let msg = Object::load_with(&spec, &opts).unwrap_err().to_string();
    assert!(
        msg.contains("has no field `__rawsnoop_missing`") && msg.contains("__data_loc_filename"),
        "{msg}"
    );
}

fn perturbed(source: BtfSource) {
    let dir = TempDir::new("core-perturbed");
    let probe = probe_program(&dir.0, "rsnp-core-pert");
    let data = std::fs::read(fixture("perturbed")).unwrap();
    let spec = ObjectSpec::parse(&data).unwrap();
    // The program filters on one pid: fork a shell that waits on stdin, load with its pid,
    // then let it exec the probe.
    let mut child = std::process::Command::new("/bin/sh")
        .args(["-c", "read x; exec \"$0\"", probe.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut opts = patches(&spec, "target_pid", pid);
    opts.btf = source;
    let obj = Object::load_with(&spec, &opts).unwrap_or_else(|e| panic!("{e}"));
    let _link = attach::attach(obj.program("perturbed_exec").unwrap()).unwrap();
    drop(child.stdin.take()); // EOF: `read` returns, the shell execs the probe
    assert!(child.wait().unwrap().success());
    let mut v = [0u8; 72];
    bpf::map_lookup_elem(obj.map("last").unwrap().fd(), &0u32.to_ne_bytes(), &mut v).unwrap();
    let got_pid = u32::from_ne_bytes(v[0..4].try_into().unwrap());
    let old_pid = u32::from_ne_bytes(v[4..8].try_into().unwrap());
    let name = &v[8..];
    let name = String::from_utf8_lossy(&name[..name.iter().position(|&b| b == 0).unwrap_or(64)]);
    assert_eq!((got_pid, old_pid), (pid, pid));
    assert_eq!(name, probe.to_str().unwrap());
}

#[test]
fn kconfig_externs_get_the_running_kernels_values() {
    if !bpf_allowed("kconfig_externs_get_the_running_kernels_values") {
        return;
    }
    let spec = ObjectSpec::parse(&std::fs::read(fixture("kconfig")).unwrap()).unwrap();
    assert_eq!(spec.kconfig.len(), 6);
    let obj = Object::load(&spec).unwrap_or_else(|e| panic!("{e}"));
    let _link = attach::attach(obj.program("kconfig_values").unwrap()).unwrap();
    let dir = TempDir::new("core-kconfig");
    exec_n(&probe_program(&dir.0, "rsnp-kconfig"), 1);
    let mut v = [0u8; 48];
    bpf::map_lookup_elem(obj.map(".bss").unwrap().fd(), &0u32.to_ne_bytes(), &mut v).unwrap();
    let v: Vec<u64> = v
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    let version = rawsnoop::sys::kernel::version().unwrap().code();
    assert_eq!(v[0], u64::from(version));
    assert_eq!(v[4], 100, "a weak CONFIG the kernel lacks is 0");
    // Every CONFIG_ extern of the fixture is __weak, so kernels without an available config
    // (no /boot/config-*, no /proc/config.gz) still load it, with zeros.
    match rawsnoop::loader::externs::read_kernel_config() {
        Ok(cfg) => {
            assert_eq!(v[1], 1, "CONFIG_BPF_SYSCALL=y");
            let hz = cfg
                .get("CONFIG_HZ")
                .map_or(0, |h| h.parse::<u64>().unwrap());
            assert_eq!(v[2], hz);
            let tri = match cfg.get("CONFIG_EXT4_FS").map(String::as_str) {
                Some("y") => 1,
                Some("m") => 2,
                _ => 0,
            };
            assert_eq!(v[3], tri);
            let lv = cfg
                .get("CONFIG_LOCALVERSION")
                .and_then(|s| s.trim_matches('"').bytes().next())
                .map_or(0, u64::from);
            assert_eq!(v[5], 200 + lv);
        }
        Err(e) => println!("kernel config unavailable ({e}): weak externs are 0"),
    }

    let spec = ObjectSpec::parse(&std::fs::read(fixture("kconfig-missing")).unwrap()).unwrap();
    let msg = Object::load(&spec).unwrap_err().to_string();
    assert!(msg.contains("CONFIG_RAWSNOOP_NOPE"), "{msg}");
}

#[test]
fn ksym_externs_get_btf_ids_and_kallsyms_addresses() {
    if !bpf_allowed("ksym_externs_get_btf_ids_and_kallsyms_addresses") {
        return;
    }
    let spec = ObjectSpec::parse(&std::fs::read(fixture("ksyms")).unwrap()).unwrap();
    let p = spec.program("ksym_values").unwrap();
    assert_eq!(p.ksyms.len(), 3, "{:?}", p.ksyms);
    let obj = Object::load(&spec).unwrap_or_else(|e| panic!("{e}"));
    let _link = attach::attach(obj.program("ksym_values").unwrap()).unwrap();
    let dir = TempDir::new("core-ksyms");
    exec_n(&probe_program(&dir.0, "rsnp-ksyms"), 1);
    let mut v = [0u8; 24];
    bpf::map_lookup_elem(obj.map(".bss").unwrap().fd(), &0u32.to_ne_bytes(), &mut v).unwrap();
    let v: Vec<u64> = v
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    // Typed ksyms need the variable in the kernel's BTF (per-CPU variables are there from 5.11)
    // and in kallsyms (CONFIG_KALLSYMS_ALL): the kernel resolves it there. The fixture's
    // extern is weak, so elsewhere it loads with the address 0.
    let typed_ok = rawsnoop::loader::externs::kallsyms_addr("runqueues").is_some()
        && vmlinux().find_by_name("runqueues", BtfKind::Var).is_some();
    assert_eq!(
        v[0],
        if typed_ok { 100 } else { 1 },
        "runqueues of CPU 0 says cpu 0"
    );
    assert_eq!(
        Some(v[1]),
        rawsnoop::loader::externs::kallsyms_addr("_stext")
    );
    assert_eq!(v[2], 0, "a weak __ksym the kernel lacks is 0");
}

/// Module BTF: relocations against `struct p9_client`, which only the 9pnet module's split BTF
/// has. Runs where that module is loaded with BTF (the VM guests load 9pnet for their root
/// file system); elsewhere there is no module type to relocate against and it checks nothing.
#[test]
fn module_types_resolve_from_split_module_btf() {
    let module = Path::new("/sys/kernel/btf/9pnet");
    if !module.exists() || !bpf_allowed("module_types_resolve_from_split_module_btf") {
        println!("no /sys/kernel/btf/9pnet here: nothing to relocate against");
        return;
    }
    let btf = Btf::parse_split(&std::fs::read(module).unwrap(), &vmlinux()).unwrap();
    let id = btf.find_by_name("p9_client", BtfKind::Struct).unwrap();
    let (msize_bits, _, _) = member(&btf, id, "msize").unwrap();
    let spec = ObjectSpec::parse(&std::fs::read(fixture("module")).unwrap()).unwrap();
    let obj = Object::load(&spec).unwrap_or_else(|e| panic!("{e}"));
    let _link = attach::attach(obj.program("module_type").unwrap()).unwrap();
    let dir = TempDir::new("core-module");
    exec_n(&probe_program(&dir.0, "rsnp-module"), 1);
    let mut v = [0u8; 24];
    bpf::map_lookup_elem(obj.map(".bss").unwrap().fd(), &0u32.to_ne_bytes(), &mut v).unwrap();
    let v: Vec<u64> = v
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(
        v,
        [
            1,
            u64::from(msize_bits / 8),
            u64::from(btf.size_of(id).unwrap())
        ]
    );
}

/// The kernel's vmlinux BTF by each way `core::kernel_btf` knows, byte for byte the sysfs file:
/// the whole chain, and the copy out of the kernel's BTF object (Linux 5.11+ name it "vmlinux").
#[test]
fn kernel_btf_by_every_path_equals_the_sysfs_file() {
    use rawsnoop::loader::core::kernel_btf;
    use rawsnoop::sys::kernel::KernelVersion;
    let path = Path::new("/sys/kernel/btf/vmlinux");
    if !path.exists() || !bpf_allowed("kernel_btf_by_every_path_equals_the_sysfs_file") {
        println!("no kernel BTF here");
        return;
    }
    let file = std::fs::read(path).unwrap();
    let chain = kernel_btf::kernel_btf_bytes(path).unwrap();
    assert!(*chain == file[..], "kernel_btf_bytes differs from the file");
    let read = kernel_btf::read_populated(path).unwrap();
    assert!(*read == file[..], "read_populated differs from the file");
    // 5.11+ give vmlinux BTF an id and the name "vmlinux"; before, it cannot be found (and the
    // chain above read the file instead).
    let copied = kernel_btf::from_btf_object();
    match rawsnoop::sys::kernel::version() {
        Some(v) if v < KernelVersion(5, 11, 0) => assert!(copied.is_none()),
        v => {
            let copied = copied.unwrap_or_else(|| panic!("kernel {v:?} names its vmlinux BTF"));
            assert!(
                *copied == file[..],
                "the BTF object's bytes differ from the file"
            );
        }
    }
}
