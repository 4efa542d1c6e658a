//! The real tool on the real kernel: execs we cause must appear with their real pid and
//! path, in each transport, in the demo's exact format; signals and a closed stdout end it
//! cleanly; bad input and missing privilege give one clear error.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;

fn comm_of(path: &Path) -> String {
    let base = path.file_name().unwrap().to_string_lossy().into_owned();
    base.chars().take(15).collect()
}

fn is_hms(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8
        && b[2] == b':'
        && b[5] == b':'
        && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit())
}

/// Starts the tool, execs `probe` `n` times, and waits until every pid appeared with the
/// probe's path. Returns the tool (still running) and the matching lines by pid.
fn trace_execs(test: &str, flag: &str, probe: &Path, n: usize) -> (Tool, HashMap<u32, String>) {
    let mut tool = spawn_tool(&[flag]);
    let header = tool.next_line("the header");
    assert_eq!(
        header, "TIME     EVENT PID     COMM             FILENAME",
        "{test}: header"
    );
    let pids = exec_n(probe, n);
    let path = probe.to_str().unwrap().to_string();
    let mut want: HashMap<u32, ()> = pids.iter().map(|&p| (p, ())).collect();
    let mut got = HashMap::new();
    while !want.is_empty() {
        let line = tool.next_line(&format!("{} more exec lines of {path}", want.len()));
        let Some((_, _, pid, _, filename)) = parse_table_line(&line) else {
            continue;
        };
        if filename == path && want.remove(&pid).is_some() {
            got.insert(pid, line);
        }
    }
    (tool, got)
}

fn own_execs_appear(test: &str, flag: &str, ringbuf: bool) {
    if !transport_allowed(test, ringbuf) {
        return;
    }
    let dir = TempDir::new(test);
    let probe = probe_program(&dir.0, &format!("rsnp-{}", std::process::id()));
    let (tool, got) = trace_execs(test, flag, &probe, 5);
    assert_eq!(got.len(), 5);
    for (pid, line) in &got {
        let time = &line[..8];
        assert!(is_hms(time), "{test}: time column in {line:?}");
        assert_eq!(
            line,
            &expected_line(time, *pid, &comm_of(&probe), probe.to_str().unwrap()),
            "{test}: line format"
        );
    }
    let st = tool.stop(libc::SIGINT);
    assert!(st.success(), "{test}: exit after SIGINT: {st}");
}

#[test]
fn ringbuf_reserve_cli_sees_own_execs() {
    own_execs_appear(
        "ringbuf_reserve_cli_sees_own_execs",
        "--ringbuf-reserve",
        true,
    );
}

#[test]
fn ringbuf_output_cli_sees_own_execs() {
    own_execs_appear("ringbuf_output_cli_sees_own_execs", "--ringbuf", true);
}

#[test]
fn perfbuf_cli_sees_own_execs() {
    own_execs_appear("perfbuf_cli_sees_own_execs", "--perfbuf", false);
}

fn burst_arrives_complete(test: &str, flag: &str) {
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new(test);
    let probe = probe_program(&dir.0, "rsnp-burst");
    let (tool, got) = trace_execs(test, flag, &probe, 300);
    assert_eq!(got.len(), 300, "{test}: every exec of the burst");
    let errs = tool.stderr_text();
    assert!(
        !errs.iter().any(|l| l.starts_with("Lost")),
        "{test}: lost events in a 300-exec burst: {errs:?}"
    );
    assert!(
        tool.stop(libc::SIGTERM).success(),
        "{test}: exit after SIGTERM"
    );
}

#[test]
fn ringbuf_reserve_burst_of_300_execs_arrives_complete() {
    burst_arrives_complete(
        "ringbuf_reserve_burst_of_300_execs_arrives_complete",
        "--ringbuf-reserve",
    );
}

#[test]
fn ringbuf_output_burst_of_300_execs_arrives_complete() {
    burst_arrives_complete(
        "ringbuf_output_burst_of_300_execs_arrives_complete",
        "--ringbuf",
    );
}

#[test]
fn default_transport_is_ringbuf_reserve_and_json_works() {
    let test = "ringbuf_reserve_default_and_json";
    if !transport_allowed(test, true) {
        return;
    }
    let dir = TempDir::new("json");
    let probe = probe_program(&dir.0, "rsnp-json");
    let mut tool = spawn_tool(&["--json", "-v"]);
    // -v says how it attached before anything else; JSON mode prints no header.
    let attached = tool.attach_line();
    assert!(attached.ends_with("over ringbuf-reserve"), "{attached}");
    let pid = exec_n(&probe, 1)[0];
    let want = format!(
        "\"pid\":{pid},\"ppid\":{},\"uid\":0,\"comm\":\"rsnp-json\",\"ret\":0,\"filename\":\"{}\",\"args\":[\"{}\"],",
        std::process::id(),
        probe.display(),
        probe.display()
    );
    loop {
        let l = tool.next_line("the JSON line of our exec");
        assert!(
            l.starts_with("{\"time\":") && l.ends_with('}'),
            "not a JSON line: {l}"
        );
        if l.contains(&want) {
            break;
        }
    }
    assert!(tool.stop(libc::SIGINT).success());
}

#[test]
fn control_characters_in_names_are_escaped() {
    let test = "perfbuf_control_characters_escaped";
    if !transport_allowed(test, false) {
        return;
    }
    let dir = TempDir::new("escape");
    let probe = probe_program(&dir.0, "evil\nname\x1b[2J");
    let mut tool = spawn_tool(&["--perfbuf"]);
    tool.next_line("the header");
    let pid = exec_n(&probe, 1)[0];
    let escaped_path = format!("{}/evil\\nname\\x1b[2J", dir.0.display());
    loop {
        let l = tool.next_line("the escaped exec line");
        assert!(!l.contains('\x1b'), "raw escape byte printed: {l:?}");
        if l.contains(&format!(" {pid} ")) {
            assert!(
                l.ends_with(&escaped_path),
                "{l:?} should end with {escaped_path:?}"
            );
            assert!(l.contains("evil\\nname\\x1b["), "comm escaped in {l:?}");
            break;
        }
    }
    assert!(tool.stop(libc::SIGINT).success());
}

#[test]
fn count_limits_events_and_exits_zero() {
    let test = "perfbuf_count_exits";
    if !transport_allowed(test, false) {
        return;
    }
    let dir = TempDir::new("count");
    let probe = probe_program(&dir.0, "rsnp-count");
    let mut tool = spawn_tool(&["--perfbuf", "--count", "3"]);
    tool.next_line("the header");
    exec_n(&probe, 5);
    let mut n = 0;
    while tool.lines.recv_timeout(DEADLINE).is_ok() {
        n += 1;
    }
    let st = tool.child.wait().unwrap();
    assert!(st.success(), "{st}");
    assert_eq!(n, 3, "--count 3 prints three events");
}

#[test]
fn closed_stdout_ends_quietly() {
    let test = "perfbuf_closed_stdout";
    if !transport_allowed(test, false) {
        return;
    }
    let dir = TempDir::new("pipe");
    let probe = probe_program(&dir.0, "rsnp-pipe");
    let mut tool = spawn_tool(&["--perfbuf"]);
    tool.next_line("the header");
    // Close our end of the pipe, as `rawsnoop | head -1` does after one line.
    let Tool {
        mut child,
        lines,
        stderr,
    } = tool;
    drop(lines);
    // The reader thread exits on its next line: cause some.
    let deadline = std::time::Instant::now() + DEADLINE;
    let st = loop {
        exec_n(&probe, 2);
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rawsnoop kept running with a closed stdout"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(st.success(), "exit status with closed stdout: {st}");
    let errs: Vec<String> = stderr.try_iter().collect();
    assert!(
        errs.iter()
            .all(|l| !l.contains("panicked") && !l.contains("error")),
        "{errs:?}"
    );
}

#[test]
fn unprivileged_user_gets_one_clear_line() {
    let test = "unprivileged_user_gets_one_clear_line";
    // We need root to drop to another user; without it the tool's own error is what we get.
    if !bpf_allowed(test) {
        return;
    }
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .arg("--perfbuf")
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert!(
        err.contains("CAP_BPF") && err.contains("CAP_PERFMON"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}

#[test]
fn bad_object_file_is_a_clear_error() {
    let test = "bad_object_file_is_a_clear_error";
    if !bpf_allowed(test) {
        return;
    }
    let dir = TempDir::new("badobj");
    let cases: [(&str, &[u8]); 3] = [
        ("empty.o", b""),
        ("text.o", b"this is not an ELF file at all"),
        ("truncated.o", &rawsnoop::objects::RINGBUF_RESERVE[..200]),
    ];
    for (name, bytes) in cases {
        let p = dir.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        let err = expect_clean_failure(&["--object", p.to_str().unwrap()], &[]);
        assert!(err.starts_with("rawsnoop: error:"), "{name}: {err}");
    }
    // Arguments a user can get wrong: one line each, exit 1.
    expect_clean_failure(&["--perfbuf", "--perf-pages", "3"], &["power of two"]);
    // Each transport's settings are refused on the others, and the limits are stated.
    expect_clean_failure(&["--perf-pages", "8"], &["need --perfbuf"]);
    expect_clean_failure(
        &["--ringbuf", "--perf-watermark", "64"],
        &["need --perfbuf"],
    );
    expect_clean_failure(
        &["--perfbuf", "--ringbuf-size", "4096"],
        &["does not apply to --perfbuf"],
    );
    expect_clean_failure(&["--perfbuf", "--perf-pages", "1048576"], &["from 1 to"]);
    expect_clean_failure(
        &[
            "--perfbuf",
            "--perf-pages",
            "1",
            "--perf-watermark",
            "1000000",
        ],
        &["larger than a CPU's ring"],
    );
    expect_clean_failure(&["--object", "/nonexistent/x.o"], &["/nonexistent/x.o"]);
    expect_clean_failure(
        &["bench", "--transport", "carrier-pigeon"],
        &["unknown transport"],
    );
}

#[test]
fn perfbuf_attach_uses_bpf_link_where_the_kernel_has_one() {
    let test = "perfbuf_attach_uses_bpf_link_where_the_kernel_has_one";
    if !transport_allowed(test, false) {
        return;
    }
    // The classic tracepoint (the default is tp_btf where the kernel has BTF: no perf event).
    let tool = spawn_tool(&["--perfbuf", "-v", "--attach", "tracepoint"]);
    let attached = tool.attach_line();
    let v = rawsnoop::sys::kernel::version().expect("kernel version");
    let want = if v >= rawsnoop::sys::kernel::KernelVersion(5, 15, 0) {
        "bpf_link"
    } else {
        "perf_event_ioctl"
    };
    assert!(
        attached.contains(&format!("attached with {want} ")),
        "kernel {v}: {attached}"
    );
    assert!(tool.stop(libc::SIGINT).success());
}

#[test]
fn perfbuf_mounts_tracefs_when_none_is_mounted() {
    let test = "perfbuf_mounts_tracefs_when_none_is_mounted";
    if !transport_allowed(test, false) {
        return;
    }
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("nomount");
    let probe = probe_program(&dir.0, "rsnp-nomount");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rawsnoop"));
    cmd.args(["--perfbuf", "-c", "1"]);
    // In a private mount namespace, take away every tracefs/debugfs mount, as on a fresh
    // machine: the tool must mount tracefs itself.
    // SAFETY: between fork and exec we only make async-signal-safe syscalls.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = c"/";
            if libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            for p in [
                c"/sys/kernel/debug/tracing",
                c"/sys/kernel/tracing",
                c"/sys/kernel/debug",
            ] {
                // Repeat: several mounts may be stacked on one path.
                while libc::umount2(p.as_ptr(), libc::MNT_DETACH) == 0 {}
            }
            Ok(())
        });
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn in a new mount namespace");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut header = String::new();
    std::io::BufRead::read_line(&mut out, &mut header).unwrap();
    let mut err = String::new();
    if header.is_empty() {
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    }
    assert!(header.starts_with("TIME"), "no header; stderr: {err}");
    let deadline = std::time::Instant::now() + DEADLINE;
    let st = loop {
        exec_n(&probe, 1);
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no event within the deadline"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(st.success(), "{st}");
}

#[test]
fn ringbuf_output_uid_filter_runs_in_the_kernel() {
    let test = "ringbuf_output_uid_filter_runs_in_the_kernel";
    if !transport_allowed(test, true) {
        return;
    }
    use std::os::unix::process::CommandExt;
    let dir = TempDir::new("uid");
    let probe = probe_program(&dir.0, "rsnp-uid");
    let mut tool = spawn_tool(&["--ringbuf", "--uid", "65534"]);
    tool.next_line("the header");
    // First as root (filtered out), then as nobody (reported). One ring keeps global order,
    // so root's exec, had it passed the filter, would be read before nobody's.
    let root_pid = exec_n(&probe, 1)[0];
    let mut c = std::process::Command::new(&probe)
        .uid(65534)
        .gid(65534)
        .spawn()
        .expect("spawn as nobody");
    let nobody_pid = c.id();
    assert!(c.wait().unwrap().success());
    let path = probe.to_str().unwrap();
    loop {
        let line = tool.next_line("nobody's exec");
        let Some((_, _, pid, _, filename)) = parse_table_line(&line) else {
            continue;
        };
        assert_ne!(pid, root_pid, "root's exec passed --uid 65534: {line}");
        if pid == nobody_pid {
            assert_eq!(filename, path);
            break;
        }
    }
    assert!(tool.stop(libc::SIGINT).success());
}

#[test]
fn perfbuf_uid_filter_needs_the_variable_in_foreign_objects() {
    let test = "perfbuf_uid_filter_needs_the_variable";
    if !bpf_allowed(test) {
        return;
    }
    let obj = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/foreign/perfbuf-output.bpf.o"
    );
    expect_clean_failure(
        &["--perfbuf", "--uid", "0", "--object", obj],
        &["filter_uid"],
    );
}
