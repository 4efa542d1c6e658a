//! `rawsnoop bench --mode storm` on the real kernel: the storm execs its probe, the tracer
//! it starts (this rawsnoop) prints every exec, and the JSON line counts them all. Counts
//! only: no timing is asserted.

mod common;

use std::process::Command;

use common::{bpf_allowed, kernel_has};
use rawsnoop::sys::kernel::KernelVersion;

fn storm(transport: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .args([
            "bench",
            "--mode",
            "storm",
            "--json",
            "--execs",
            "40",
            "--workers",
            "2",
            "--sparse",
            "3",
            "--wakeup",
            "per-record",
            "--transport",
            transport,
        ])
        .output()
        .expect("run rawsnoop bench --mode storm");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "storm failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn field(line: &str, key: &str) -> String {
    let at = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[at + key.len() + 3..]
        .split([',', '}'])
        .next()
        .unwrap()
        .trim_matches('"')
        .to_string()
}

#[test]
fn storm_counts_every_exec_of_each_transport() {
    if !bpf_allowed("storm_counts_every_exec_of_each_transport") {
        return;
    }
    let mut transports = vec!["perfbuf"];
    if kernel_has(
        "storm_counts_every_exec_of_each_transport (ringbuf part)",
        KernelVersion(5, 8, 0),
        "BPF ringbuf",
    ) {
        transports.push("ringbuf-reserve");
    }
    for t in transports {
        let out = storm(t);
        let lines: Vec<&str> = out.lines().filter(|l| l.starts_with('{')).collect();
        assert_eq!(lines.len(), 1, "{out}");
        let l = lines[0];
        assert_eq!(field(l, "mode"), "storm");
        assert_eq!(field(l, "transport"), t);
        assert_eq!(field(l, "execs"), "40", "{l}");
        assert_eq!(field(l, "captured"), "40", "{l}");
        assert_eq!(field(l, "sparse_execs"), "3", "{l}");
        assert_eq!(field(l, "sparse_captured"), "3", "{l}");
        for key in [
            "cpu_ns_per_event",
            "wakeups_per_event",
            "latency_p50_ms",
            "latency_p95_ms",
            "latency_p99_ms",
            "sparse_p95_ms",
            "startup_ms",
        ] {
            let v: f64 = field(l, key).parse().expect(key);
            assert!(v >= 0.0, "{key} in {l}");
        }
    }
}
