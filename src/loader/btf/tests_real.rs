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
    assert!(s.starts_with("struct task_struct {"), "{}", &s[..s.len().min(200)]);
    assert!(s.contains(" pid;") && s.contains(" comm[16];"), "{s}");
    assert!(btf.size_of(task).unwrap() > 1000);
    let pid = btf.find_by_name("pid_t", BtfKind::Typedef).unwrap();
    assert_eq!(btf.size_of(pid).unwrap(), 4);
    assert_eq!(btf.kind_of(btf.resolve(pid).unwrap()).unwrap(), BtfKind::Int);
    for name in ["sched_switch", "trace_event_raw_sched_process_exec"] {
        if let Some(id) = btf.find_by_name(name, BtfKind::Struct) {
            assert!(btf.format_type(id).contains('{'));
        }
    }
    // Every type formats and re-encodes; the re-encoding parses to the same types.
    let start = std::time::Instant::now();
    let all = btf.format_all();
    eprintln!("vmlinux format_all: {} bytes in {:?}", all.len(), start.elapsed());
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
