//! Shared helpers for the integration tests: privilege and kernel gates (loud skips, and
//! failures under RAWSNOOP_REQUIRE_BPF=1), temporary probe programs, and running the CLI.
#![allow(
    dead_code,
    reason = "each test crate uses a different subset (expect would fail in the crates that use all)"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use rawsnoop::sys::kernel::{self, KernelVersion};

/// How long we wait for anything the kernel should do promptly. Generous: the VM harness
/// runs these under TCG emulation. Never a timing assertion, only a hang guard.
pub const DEADLINE: Duration = Duration::from_secs(90);

fn required() -> bool {
    std::env::var("RAWSNOOP_REQUIRE_BPF").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// True when this test may use BPF. Otherwise prints a loud skip, or panics when
/// RAWSNOOP_REQUIRE_BPF=1 (CI and the VM harness set it).
pub fn bpf_allowed(test: &str) -> bool {
    if rawsnoop::tracer::has_privilege() {
        return true;
    }
    let msg = format!("SKIPPED: {test}: needs root or CAP_BPF+CAP_PERFMON");
    if required() {
        panic!("{msg}, and RAWSNOOP_REQUIRE_BPF=1 forbids skipping");
    }
    eprintln!("\n*** {msg} ***\n");
    println!("{msg}");
    false
}

/// True when the running kernel is at least `min`; otherwise a `SKIPPED:` line naming the
/// feature (the VM harness checks such skips against the kernel version it booted).
pub fn kernel_has(test: &str, min: KernelVersion, feature: &str) -> bool {
    match kernel::version() {
        Some(v) if v < min => {
            let msg = format!("SKIPPED: {test}: kernel {v} < {min} has no {feature}");
            eprintln!("\n*** {msg} ***\n");
            println!("{msg}");
            false
        }
        _ => true,
    }
}

/// BPF allowed and, for ringbuf transports, a kernel with ringbuf (5.8).
pub fn transport_allowed(test: &str, ringbuf: bool) -> bool {
    bpf_allowed(test) && (!ringbuf || kernel_has(test, KernelVersion(5, 8, 0), "BPF ringbuf"))
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let p =
            std::env::temp_dir().join(format!("rawsnoop-test-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// The probe's bytes: a static x86-64 executable that exits 0 at once (no dynamic loader, no
// libc), which keeps 300-exec bursts quick under emulation (vm/run). The storm bench execs the
// same one.
#[cfg(target_arch = "x86_64")]
use rawsnoop::bench::storm::tiny_exit0_elf;

/// Writes an executable `dir/name` that exits 0: an exec of it is uniquely ours. On x86-64
/// a tiny static program, elsewhere a copy of `true`.
pub fn probe_program(dir: &Path, name: &str) -> PathBuf {
    let dst = dir.join(name);
    #[cfg(target_arch = "x86_64")]
    std::fs::write(&dst, tiny_exit0_elf()).expect("write probe");
    #[cfg(not(target_arch = "x86_64"))]
    {
        let src = ["/bin/true", "/usr/bin/true"]
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .expect("no `true` binary on this system");
        std::fs::copy(src, &dst).expect("copy true");
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dst
}

/// Runs `path` `n` times (each to completion) and returns the pids.
pub fn exec_n(path: &Path, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| {
            let mut c = Command::new(path).spawn().expect("spawn probe");
            let pid = c.id();
            let st = c.wait().expect("wait probe");
            assert!(st.success(), "probe {} failed: {st}", path.display());
            pid
        })
        .collect()
}

/// The rawsnoop binary under test, running with its stdout read line by line.
pub struct Tool {
    pub child: Child,
    pub lines: Receiver<String>,
    pub stderr: Receiver<String>,
}

pub fn spawn_tool(args: &[&str]) -> Tool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rawsnoop");
    let (tx, lines) = mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let (etx, stderr) = mpsc::channel();
    let err = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines() {
            let Ok(l) = l else { break };
            eprintln!("[rawsnoop stderr] {l}");
            if etx.send(l).is_err() {
                break;
            }
        }
    });
    Tool {
        child,
        lines,
        stderr,
    }
}

impl Tool {
    /// The next stdout line, or a panic naming what we waited for (and the tool's stderr).
    pub fn next_line(&mut self, waiting_for: &str) -> String {
        match self.lines.recv_timeout(DEADLINE) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                let _ = self.child.kill();
                panic!("rawsnoop printed nothing for {DEADLINE:?} while waiting for {waiting_for}; stderr: {:?}", self.stderr_text());
            }
            Err(RecvTimeoutError::Disconnected) => {
                let st = self.child.wait();
                panic!(
                    "rawsnoop exited ({st:?}) while waiting for {waiting_for}; stderr: {:?}",
                    self.stderr_text()
                );
            }
        }
    }

    pub fn stderr_text(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Sends `sig` and waits (bounded) for the exit status.
    pub fn stop(mut self, sig: i32) -> std::process::ExitStatus {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            if start.elapsed() > DEADLINE {
                let _ = self.child.kill();
                panic!("rawsnoop did not exit within {DEADLINE:?} of signal {sig}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One parsed line of the table: (time, event, pid, comm, filename). Splits on white
/// space, so it is for lines whose comm has no spaces (our probes); `expected_line` checks
/// the exact columns.
pub fn parse_table_line(line: &str) -> Option<(String, String, u32, String, String)> {
    let mut it = line.split_whitespace();
    let time = it.next()?.to_string();
    let event = it.next()?.to_string();
    let pid = it.next()?.parse().ok()?;
    let comm = it.next()?.to_string();
    let filename = it.collect::<Vec<_>>().join(" ");
    Some((time, event, pid, comm, filename))
}

/// The exact line the demo's `%-8s %-5s %-7d %-16s %s` gives.
pub fn expected_line(time: &str, pid: u32, comm: &str, filename: &str) -> String {
    format!("{time:<8} {:<5} {pid:<7} {comm:<16} {filename}", "EXEC")
}

/// Runs rawsnoop with `args` to completion.
pub fn run_tool(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rawsnoop"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run rawsnoop")
}

/// Runs rawsnoop expecting a clean failure: exit status 1, a `rawsnoop: error:` message
/// containing every `needle`, no panic. Returns the stderr text.
pub fn expect_clean_failure(args: &[&str], needles: &[&str]) -> String {
    let out = run_tool(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "rawsnoop {args:?}: {err}");
    assert!(err.contains("rawsnoop: error:"), "rawsnoop {args:?}: {err}");
    assert!(!err.contains("panicked"), "rawsnoop {args:?}: {err}");
    for n in needles {
        assert!(err.contains(n), "rawsnoop {args:?}: no {n:?} in: {err}");
    }
    err
}

impl Tool {
    /// The `-v` line saying how the program attached (`attached with <kind> over <transport>`).
    pub fn attach_line(&self) -> String {
        loop {
            let l = self
                .stderr
                .recv_timeout(DEADLINE)
                .expect("verbose attach line on stderr");
            if l.contains("attached with") {
                return l;
            }
        }
    }

    /// Reads table lines until one for `pid`, and returns it.
    pub fn line_for_pid(&mut self, pid: u32, what: &str) -> String {
        loop {
            let line = self.next_line(what);
            if parse_table_line(&line).is_some_and(|(_, _, p, _, _)| p == pid) {
                return line;
            }
        }
    }
}
