//! Losses are exact: every exec of ours is printed or counted as lost, once. Its own test
//! binary, so that `--ppid <us>` sees only these tests' children.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The tests here run one at a time: each tracer counts every child of this process.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The count in a `Lost N events ...` line.
fn lost_count(line: &str) -> Option<u64> {
    line.strip_prefix("Lost ")?.split(' ').next()?.parse().ok()
}

/// Stops the tracer, runs `n` execs, resumes it: printed + reported lost must be exactly n,
/// and stay so (a loss told twice would push it past n).
fn stopped_tracer_loses_exactly(test: &str, args: &[&str], ringbuf: bool, n: usize) {
    if !transport_allowed(test, ringbuf) {
        return;
    }
    let dir = TempDir::new(test);
    let probe = probe_program(&dir.0, "rsnp-lost");
    let me = std::process::id().to_string();
    let mut all = vec!["--ppid", me.as_str(), "-v"];
    all.extend_from_slice(args);
    let mut tool = spawn_tool(&all);
    tool.attach_line();
    assert!(tool.next_line("the header").starts_with("TIME"));
    let pid = tool.child.id() as i32;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let pids = exec_n(&probe, n);
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let path = probe.to_str().unwrap();
    let (mut printed, mut lost) = (0u64, 0u64);
    let start = Instant::now();
    while printed + lost < n as u64 {
        assert!(
            start.elapsed() < DEADLINE,
            "printed {printed} + lost {lost} < {n}"
        );
        while let Ok(l) = tool.lines.try_recv() {
            if let Some((_, _, p, _, f)) = parse_table_line(&l) {
                if f == path && pids.contains(&p) {
                    printed += 1;
                }
            }
        }
        while let Ok(l) = tool.stderr.try_recv() {
            lost += lost_count(&l).unwrap_or(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Whatever the kernel reports later (its LOST records) must not be counted again.
    let more = exec_n(&probe, 3);
    let want = n as u64 + 3;
    let start = Instant::now();
    while printed + lost < want && start.elapsed() < DEADLINE {
        while let Ok(l) = tool.lines.try_recv() {
            if let Some((_, _, p, _, f)) = parse_table_line(&l) {
                if f == path && (pids.contains(&p) || more.contains(&p)) {
                    printed += 1;
                }
            }
        }
        while let Ok(l) = tool.stderr.try_recv() {
            lost += lost_count(&l).unwrap_or(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    let Tool {
        mut child,
        lines,
        stderr,
    } = tool;
    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let st = child.wait().expect("wait rawsnoop");
    std::thread::sleep(Duration::from_millis(200));
    for l in stderr.try_iter() {
        lost += lost_count(&l).unwrap_or(0);
    }
    for l in lines.try_iter() {
        if let Some((_, _, p, _, f)) = parse_table_line(&l) {
            if f == path && (pids.contains(&p) || more.contains(&p)) {
                printed += 1;
            }
        }
    }
    assert!(st.success());
    assert!(lost > 0, "{test}: the stopped tracer should have lost some");
    assert_eq!(
        printed + lost,
        want,
        "{test}: printed {printed}, lost {lost}"
    );
}

/// One test for the three transports, one after the other: each tracer counts every
/// child of this process (`--ppid`), so they must not overlap.
#[test]
fn losses_are_counted_once_and_exactly() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    stopped_tracer_loses_exactly(
        "perfbuf_losses_are_counted_once",
        &["--perfbuf", "--perf-pages", "1"],
        false,
        150,
    );
    stopped_tracer_loses_exactly(
        "ringbuf_losses_are_exact",
        &["--ringbuf", "--ringbuf-size", "4096"],
        true,
        150,
    );
    stopped_tracer_loses_exactly(
        "ringbuf_reserve_losses_are_exact",
        &["--ringbuf-reserve", "--ringbuf-size", "4096"],
        true,
        150,
    );
}

/// No exec is missed silently: 1000 execs while another task hammers map lookups (a map
/// syscall holds the CPU's bpf_prog_active; on kernels with lazy or full preemption a
/// classic tracepoint program is then skipped). Every exec is printed or counted lost
/// (`recursion_misses` counts skips of any exec on the system, hence >=).
#[test]
fn execs_under_map_syscall_pressure_are_printed_or_counted() {
    let test = "execs_under_map_syscall_pressure_are_printed_or_counted";
    if !transport_allowed(test, true) {
        return;
    }
    use rawsnoop::sys::bpf;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = TempDir::new(test);
    let probe = probe_program(&dir.0, "rsnp-press");
    let me = std::process::id().to_string();
    let mut tool = spawn_tool(&["--ppid", me.as_str(), "-v"]);
    tool.attach_line();
    let exec_program = tool
        .stderr
        .recv_timeout(DEADLINE)
        .expect("-v exec program line");
    // tp_btf (the default with kernel BTF) is not subject to bpf_prog_active at all.
    let tp_btf = exec_program.ends_with("exec program: tp_btf");
    assert!(tool.next_line("the header").starts_with("TIME"));
    // Kernels before 5.11 charge maps to RLIMIT_MEMLOCK (raising it may fail: best effort).
    let _ = rawsnoop::sys::kernel::raise_memlock_if_needed();
    let map = bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: 1,
        map_flags: 0,
        name: "rsnp_press",
        btf_fd: None,
        btf_key_type_id: 0,
        btf_value_type_id: 0,
    })
    .expect("create a map to hammer");
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut v = [0u8; 8];
            while !stop.load(Ordering::Relaxed) {
                let _ = bpf::map_lookup_elem(
                    std::os::fd::AsFd::as_fd(&map),
                    &0u32.to_ne_bytes(),
                    &mut v,
                );
            }
        })
    };
    let n = 1000;
    let pids = exec_n(&probe, n);
    stop.store(true, Ordering::Relaxed);
    hammer.join().unwrap();
    let path = probe.to_str().unwrap();
    let (mut printed, mut lost) = (0u64, 0u64);
    let start = Instant::now();
    while printed + lost < n as u64 && start.elapsed() < DEADLINE {
        while let Ok(l) = tool.lines.try_recv() {
            if let Some((_, _, p, _, f)) = parse_table_line(&l) {
                if f == path && pids.contains(&p) {
                    printed += 1;
                }
            }
        }
        while let Ok(l) = tool.stderr.try_recv() {
            lost += lost_count(&l).unwrap_or(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(tool.stop(libc::SIGINT).success());
    assert!(printed <= n as u64);
    assert!(
        printed + lost >= n as u64,
        "{test}: {printed} printed + {lost} counted lost < {n} execs: some missed silently"
    );
    if tp_btf {
        assert_eq!(
            printed, n as u64,
            "{test}: tp_btf skipped some execs ({lost} counted)"
        );
    }
}
