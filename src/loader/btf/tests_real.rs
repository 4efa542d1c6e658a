//! Tests on real BTF: the running kernel's /sys/kernel/btf/vmlinux, and (when clang is installed) a
//! tiny BPF object compiled in a temp dir. Both are skipped with a note when unavailable.

use super::*;

const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[test]
fn parses_running_kernel_vmlinux() {
    let Ok(data) = std::fs::read(VMLINUX) else {
        eprintln!("SKIPPED: {VMLINUX} not readable");
        return;
    };
    let start = std::time::Instant::now();
    let btf = Btf::parse(&data).expect("vmlinux BTF parses");
    eprintln!(
        "vmlinux: {} bytes, {} types, parsed in {:?}",
        data.len(),
        btf.types_len(),
        start.elapsed()
    );
    assert!(btf.types_len() > 10_000);
    let task = btf
        .find_by_name("task_struct", BtfKind::Struct)
        .expect("struct task_struct");
    let s = btf.format_type(task);
    assert!(
        s.starts_with("struct task_struct {"),
        "{}",
        &s[..s.len().min(200)]
    );
    assert!(s.contains(" pid;") && s.contains(" comm[16];"), "{s}");
    assert!(btf.size_of(task).unwrap() > 1000);
    let pid = btf.find_by_name("pid_t", BtfKind::Typedef).unwrap();
    assert_eq!(btf.size_of(pid).unwrap(), 4);
    assert_eq!(
        btf.kind_of(btf.resolve(pid).unwrap()).unwrap(),
        BtfKind::Int
    );
    for name in ["sched_switch", "trace_event_raw_sched_process_exec"] {
        if let Some(id) = btf.find_by_name(name, BtfKind::Struct) {
            assert!(btf.format_type(id).contains('{'));
        }
    }
    // Every type formats and re-encodes; the re-encoding parses to the same types.
    let start = std::time::Instant::now();
    let all = btf.format_all();
    eprintln!(
        "vmlinux format_all: {} bytes in {:?}",
        all.len(),
        start.elapsed()
    );
    assert_eq!(all.lines().count() as u32, btf.types_len() - 1);
    let bytes = btf.to_bytes();
    if !btf.is_big_endian() && cfg!(target_endian = "little") {
        // The kernel's own BTF is canonical: re-encoding reproduces it byte for byte.
        assert_eq!(bytes.len(), data.len());
        if let Some(i) = (0..bytes.len()).find(|&i| bytes[i] != data[i]) {
            panic!(
                "re-encoded vmlinux BTF differs at byte {i}: {:02x?} vs {:02x?}",
                &bytes[i.saturating_sub(16)..(i + 16).min(bytes.len())],
                &data[i.saturating_sub(16)..(i + 16).min(data.len())]
            );
        }
    }
    let again = Btf::parse(&bytes).unwrap();
    assert_eq!(again.types_len(), btf.types_len());
}

/// Loads `bytes` with BPF_BTF_LOAD. `None` when not privileged (after printing SKIPPED, or panicking
/// when RAWSNOOP_REQUIRE_BPF=1); otherwise the result with the kernel's log on failure.
fn kernel_load(what: &str, bytes: &[u8]) -> Option<Result<(), String>> {
    match crate::sys::bpf::btf_load(bytes, None) {
        Ok(_fd) => Some(Ok(())),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) => {
            if std::env::var("RAWSNOOP_REQUIRE_BPF").as_deref() == Ok("1") {
                panic!("BTF_LOAD of {what} not permitted ({e}) but RAWSNOOP_REQUIRE_BPF=1");
            }
            eprintln!("SKIPPED (needs root/CAP_BPF): BTF_LOAD of {what}: {e}");
            None
        }
        Err(e) => {
            let mut log = Vec::with_capacity(1 << 16);
            let _ = crate::sys::bpf::btf_load(bytes, Some(&mut log));
            Some(Err(format!("{e}: {}", String::from_utf8_lossy(&log))))
        }
    }
}

#[test]
fn kernel_accepts_probe_blobs_and_sanitized_btf() {
    for k in BtfFeatureKind::ALL {
        let Some(res) = kernel_load(&format!("probe {k:?}"), &probe_blob(k)) else {
            return;
        };
        // This test machine runs a kernel newer than 6.0, which has every feature.
        res.unwrap_or_else(|e| panic!("probe blob {k:?} rejected: {e}"));
    }
    let btf = Btf::parse(&super::testutil::all_kinds(false).bytes()).unwrap();
    for f in super::tests_more::feature_sets() {
        let bytes = sanitize(&btf, &f).to_bytes();
        if let Some(Err(e)) = kernel_load("sanitized all-kinds BTF", &bytes) {
            panic!("kernel rejected sanitized BTF for {f:?}: {e}");
        }
    }
}

const BPF_C: &str = r#"
typedef unsigned int __u32;
typedef unsigned long long __u64;
#define SEC(n) __attribute__((section(n), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

struct event { __u32 pid; __u32 flags:3; __u32 more:5; char comm[16]; };
struct { __uint(type, 27); __uint(max_entries, 4096); } events SEC(".maps");
struct { __uint(type, 2); __uint(max_entries, 1); __type(key, __u32); __type(value, struct event); } arr SEC(".maps");
int counter = 1;
int second = 2;
__u64 zeroed;
const volatile int target_pid = 0;
static __attribute__((noinline)) int helper(int x) { return x * 2 + counter; }
SEC("tracepoint/sched/sched_process_exec")
int handle(void *ctx) { zeroed++; second++; if (target_pid) return helper(target_pid); return helper(1); }
char LICENSE[] SEC("license") = "GPL";
"#;

/// Compiles BPF_C with clang (-g, -target bpf) and returns the object bytes, or `None` without clang.
fn compile_bpf() -> Option<Vec<u8>> {
    let clang = ["/usr/bin/clang-19", "/usr/bin/clang"]
        .into_iter()
        .find(|c| std::path::Path::new(c).exists())?;
    let dir = std::env::temp_dir().join(format!("rawsnoop-btf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let (src, obj) = (dir.join("t.bpf.c"), dir.join("t.bpf.o"));
    std::fs::write(&src, BPF_C).ok()?;
    let status = std::process::Command::new(clang)
        .args(["-O2", "-g", "-target", "bpf", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .ok()?;
    let bytes = std::fs::read(&obj).ok();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        status.success(),
        "{clang} failed to compile the test program"
    );
    bytes
}

#[test]
fn clang_object_btf_and_ext() {
    use object::{Object, ObjectSection, ObjectSymbol};
    let Some(data) = compile_bpf() else {
        eprintln!("SKIPPED: no clang to compile a BPF object");
        return;
    };
    let elf = object::File::parse(&*data).unwrap();
    let sec_data = |n: &str| elf.section_by_name(n).and_then(|s| s.data().ok());
    let mut btf = Btf::parse(sec_data(".BTF").expect(".BTF section")).unwrap();
    let sec_size = |n: &str| elf.section_by_name(n).map(|s| s.size() as u32);
    let sym_offset = |sec: &str, name: &str| {
        elf.symbols()
            .find(|s| {
                s.name() == Ok(name)
                    && s.section_index()
                        .and_then(|i| elf.section_by_index(i).ok())
                        .and_then(|s| s.name().ok().map(|n| n == sec))
                        == Some(true)
            })
            .map(|s| s.address() as u32)
    };
    fixup_datasecs(&mut btf, &sec_size, &sym_offset).unwrap();
    let mut checked = 0;
    for sec in [".data", ".bss", ".rodata", ".maps"] {
        let (id, vars) = btf.datasec(sec).unwrap_or_else(|| panic!("DATASEC {sec}"));
        assert_eq!(btf.size_of(id).unwrap(), sec_size(sec).unwrap(), "{sec}");
        for v in vars {
            let name = btf.name_of(v.type_id).unwrap();
            assert_eq!(Some(v.offset), sym_offset(sec, name), "{sec} {name}");
            assert_eq!(v.size, btf.size_of(v.type_id).unwrap());
            checked += 1;
        }
    }
    assert!(checked >= 6, "{checked} variables checked");
    let (_, data_vars) = btf.datasec(".data").unwrap();
    assert_eq!(data_vars.len(), 2);
    assert!(data_vars[0].offset < data_vars[1].offset);
    let ev = btf.find_by_name("event", BtfKind::Struct).unwrap();
    assert_eq!(
        btf.format_type(ev),
        "struct event { __u32 pid; __u32 flags:3; __u32 more:5; char comm[16]; }"
    );
    let handle = btf.find_by_name("handle", BtfKind::Func).unwrap();
    assert_eq!(btf.format_type(handle), "int handle(void *ctx)");
    let helper = btf.find_by_name("helper", BtfKind::Func).unwrap();
    assert!(matches!(
        btf.type_by_id(helper).unwrap(),
        BtfType::Func { linkage: 0, .. }
    ));

    let ext = BtfExt::parse(sec_data(".BTF.ext").expect(".BTF.ext"), &btf).unwrap();
    let prog = "tracepoint/sched/sched_process_exec";
    assert_eq!(ext.func_info_rec_size(), 8);
    assert_eq!(ext.line_info_rec_size(), 16);
    let fi = ext.func_info(prog);
    assert_eq!(fi.len(), 1, "{fi:?}");
    assert_eq!((fi[0].insn_off, fi[0].type_id), (0, handle));
    // The noinline static subprog lives in .text with its own func_info.
    let text = ext.func_info(".text");
    assert_eq!(text.len(), 1, "{text:?}");
    assert_eq!((text[0].insn_off, text[0].type_id), (0, helper));
    assert!(ext.sections().contains(&".text"));
    let prog_len = elf.section_by_name(prog).unwrap().size() as u32;
    let li = ext.line_info(prog);
    assert!(!li.is_empty());
    assert!(li.iter().all(|l| l.insn_off < prog_len));
    assert!(btf
        .string_at(li[0].file_name_off)
        .unwrap()
        .ends_with("t.bpf.c"));
    assert!(btf.string_at(li[0].line_off).unwrap().contains("handle"));

    // Round trip and kernel acceptance at every feature level.
    assert_eq!(
        Btf::parse(&btf.to_bytes()).unwrap().format_all(),
        btf.format_all()
    );
    for f in super::tests_more::feature_sets() {
        match kernel_load("clang object BTF", &sanitize(&btf, &f).to_bytes()) {
            None => return,
            Some(res) => res.unwrap_or_else(|e| panic!("rejected for {f:?}: {e}")),
        }
    }
}
