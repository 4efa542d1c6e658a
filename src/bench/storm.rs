//! `rawsnoop bench --mode storm`: what a user of the tracer feels in an exec storm.
//!
//! A tracer command (rawsnoop itself per transport and wakeup policy, or any other tracer,
//! e.g. libbpf-tools `execsnoop`) runs as a child process with its stdout on a pipe we read.
//! Then, in order:
//! 1. **start-up**: a tiny static probe is exec'd every 2 ms until the first line naming it
//!    arrives; launch to that line is the start-up time;
//! 2. **storm**: `workers` threads exec the probe `execs` times in all, as fast as they can;
//!    we count the lines naming those pids (capture rate) and read the tracer's CPU time
//!    (`/proc/PID/task/*/schedstat`, ns; and `utime+stime` ticks from `/proc/PID/stat`) and
//!    its voluntary context switches (each one a sleep it was woken from: wakeups) before
//!    and after, until every exec was printed or nothing more came for a second;
//! 3. **sparse**: `sparse` execs `sparse_gap` apart, for the latency of a quiet system.
//!
//! Latency is exec-to-line: the monotonic time just before the spawn of a probe against the
//! time its line was read from the tracer's stdout (so it includes the fork, the exec, the
//! BPF program, the wakeup, the tracer's formatting and write, and the pipe). It needs no
//! kernel timestamp in the tracer's output, so it measures any tracer the same way.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::BenchError;
use crate::sys::time::monotonic_ns;

mod probe;
#[cfg(target_arch = "x86_64")]
pub use probe::tiny_exit0_elf;
use probe::Probe;

/// One tracer to storm: a label for the reports and the command that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormTracer {
    /// e.g. `rawsnoop`, `execsnoop`.
    pub tracer: String,
    /// Transport name (`ringbuf-reserve`, `ringbuf`, `perfbuf`) or `-` for other tracers.
    pub transport: String,
    /// Wakeup policy name (`per-record`, `sampled`, ...) or `-` for other tracers.
    pub wakeup: String,
    /// Program and arguments.
    pub argv: Vec<OsString>,
}

/// What to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StormOptions {
    pub tracers: Vec<StormTracer>,
    /// Execs in the storm.
    pub execs: u64,
    /// Threads exec'ing at once.
    pub workers: usize,
    /// Execs in the sparse phase (0: none).
    pub sparse: u64,
    /// Time between sparse execs.
    pub sparse_gap: Duration,
    /// Longest wait for the tracer's first line.
    pub startup_timeout: Duration,
}

impl Default for StormOptions {
    fn default() -> Self {
        StormOptions {
            tracers: Vec::new(),
            execs: 20_000,
            workers: 4,
            sparse: 40,
            sparse_gap: Duration::from_millis(20),
            startup_timeout: Duration::from_secs(30),
        }
    }
}

/// p50, p95, p99 of a set of durations (zero when empty).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Percentiles {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub count: usize,
}

impl Percentiles {
    /// Nearest-rank percentiles.
    pub fn of(mut v: Vec<Duration>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_unstable();
        let at = |p: usize| v[((v.len() * p).div_ceil(100)).clamp(1, v.len()) - 1];
        Percentiles {
            p50: at(50),
            p95: at(95),
            p99: at(99),
            count: v.len(),
        }
    }
}

/// What one storm against one tracer measured.
#[derive(Debug, Clone, PartialEq)]
pub struct StormResult {
    pub tracer: String,
    pub transport: String,
    pub wakeup: String,
    /// Launch to the first line naming the probe.
    pub startup: Duration,
    /// Execs in the storm, and how many of them the tracer printed.
    pub execs: u64,
    pub captured: u64,
    /// First spawn to the last line (or to the quiet timeout).
    pub storm_time: Duration,
    /// Tracer CPU time during the storm (schedstat, ns resolution; zero where the kernel
    /// has no schedstat), and the same in clock ticks (utime + stime, USER_HZ).
    pub cpu: Duration,
    pub cpu_ticks: u64,
    /// The tracer's whole life, start-up and exit included (wait4), in ticks.
    pub total_ticks: u64,
    /// Voluntary context switches of the tracer during the storm: sleeps it was woken from.
    pub wakeups: u64,
    /// Exec-to-line latency in the storm and in the sparse phase.
    pub storm_latency: Percentiles,
    pub sparse_latency: Percentiles,
    pub sparse_execs: u64,
    pub sparse_captured: u64,
    /// Event's kernel timestamp to line read, where the tracer prints the timestamp
    /// (rawsnoop `--json`: `ktime_ns`); empty otherwise.
    pub storm_kernel_latency: Percentiles,
    pub sparse_kernel_latency: Percentiles,
}

impl StormResult {
    pub fn capture_rate(&self) -> f64 {
        if self.execs == 0 {
            0.0
        } else {
            self.captured as f64 / self.execs as f64
        }
    }
    /// Tracer CPU ns per captured event (schedstat; ticks when schedstat is missing).
    pub fn cpu_ns_per_event(&self) -> f64 {
        if self.captured == 0 {
            return 0.0;
        }
        let ns = if self.cpu.is_zero() {
            self.cpu_ticks as f64 * 1e9 / clock_ticks_per_s()
        } else {
            self.cpu.as_nanos() as f64
        };
        ns / self.captured as f64
    }
    /// CPU clock ticks during the storm, scaled to 20,000 execs (the unit).
    pub fn ticks_per_20k(&self) -> f64 {
        if self.execs == 0 {
            0.0
        } else {
            self.cpu_ticks as f64 * 20_000.0 / self.execs as f64
        }
    }
    pub fn wakeups_per_event(&self) -> f64 {
        if self.captured == 0 {
            0.0
        } else {
            self.wakeups as f64 / self.captured as f64
        }
    }
}

fn clock_ticks_per_s() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as f64,
        _ => 100.0,
    }
}

/// Per-process counters read from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStat {
    sched_ns: u64,
    ticks: u64,
    voluntary: u64,
}

fn proc_stat(pid: u32) -> ProcStat {
    let mut s = ProcStat::default();
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Fields after the parenthesised comm: state is field 3, utime 14, stime 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            let num = |i: usize| f.get(i).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            s.ticks = num(11) + num(12);
        }
    }
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path();
            if let Ok(ss) = std::fs::read_to_string(p.join("schedstat")) {
                s.sched_ns += ss
                    .split_whitespace()
                    .next()
                    .and_then(|x| x.parse::<u64>().ok())
                    .unwrap_or(0);
            }
            if let Ok(st) = std::fs::read_to_string(p.join("status")) {
                s.voluntary += st
                    .lines()
                    .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .unwrap_or(0);
            }
        }
    }
    s
}

/// The pids in a line: every run of digits (the caller keeps those that are its probes').
fn digit_runs(line: &str) -> impl Iterator<Item = u32> + '_ {
    line.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty() && s.len() <= 10)
        .filter_map(|s| s.parse().ok())
}

/// The event's kernel timestamp where the line carries one (rawsnoop's JSON `ktime_ns`,
/// from `bpf_ktime_get_ns()`: CLOCK_MONOTONIC).
fn ktime_ns(line: &str) -> Option<u64> {
    json_u64(line, "ktime_ns")
}

/// The unsigned integer value of `"key":` in a JSON line.
fn json_u64(line: &str, key: &str) -> Option<u64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: &str = &line[at..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// Lines naming the probe, with the time each was read and, where the line has the event's
/// kernel timestamp, the time from that to the read.
struct Lines {
    rx: mpsc::Receiver<(Instant, Option<Duration>, String)>,
}

impl Lines {
    fn spawn(child: &mut Child, marker: String) -> Result<Lines, BenchError> {
        let out = child
            .stdout
            .take()
            .ok_or_else(|| BenchError::Options("the tracer has no stdout pipe".into()))?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::with_capacity(1 << 16, out);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let now = Instant::now();
                let line = String::from_utf8_lossy(&buf);
                if !line.contains(&marker) {
                    continue;
                }
                let klat = ktime_ns(&line)
                    .and_then(|k| monotonic_ns().checked_sub(k))
                    .map(Duration::from_nanos);
                if tx.send((now, klat, line.into_owned())).is_err() {
                    break;
                }
            }
        });
        Ok(Lines { rx })
    }
}

/// Matches lines to probe pids: the first digit run of a line that is a pid we spawned and
/// have not seen yet.
#[derive(Default)]
struct Matcher {
    spawned: HashMap<u32, Instant>,
    seen: HashMap<u32, Instant>,
    /// Kernel timestamp to line read, for lines that carry one.
    kernel: HashMap<u32, Duration>,
    unmatched: Vec<(Instant, Option<Duration>, String)>,
}

impl Matcher {
    fn line(&mut self, at: Instant, klat: Option<Duration>, line: String) -> bool {
        // A JSON line's "pid" first, then every digit run.
        let json_pid = json_u64(&line, "pid").and_then(|p| u32::try_from(p).ok());
        for pid in json_pid.into_iter().chain(digit_runs(&line)) {
            if self.spawned.contains_key(&pid) && !self.seen.contains_key(&pid) {
                self.seen.insert(pid, at);
                if let Some(k) = klat {
                    self.kernel.insert(pid, k);
                }
                return true;
            }
        }
        // The line may come before the spawner recorded the pid: try again later.
        self.unmatched.push((at, klat, line));
        false
    }

    fn add_spawned(&mut self, pids: impl IntoIterator<Item = (u32, Instant)>) {
        self.spawned.extend(pids);
        for (at, klat, line) in std::mem::take(&mut self.unmatched) {
            self.line(at, klat, line);
        }
    }

    /// Kernel timestamp to line read, for the given pids' lines that carried one.
    fn kernel_latencies(&self, pids: &[(u32, Instant)]) -> Vec<Duration> {
        pids.iter()
            .filter_map(|(pid, _)| self.kernel.get(pid).copied())
            .collect()
    }

    fn latencies(&self, pids: &[(u32, Instant)]) -> (u64, Vec<Duration>) {
        let lat: Vec<Duration> = pids
            .iter()
            .filter_map(|(pid, t0)| {
                self.seen
                    .get(pid)
                    .map(|at| at.saturating_duration_since(*t0))
            })
            .collect();
        (lat.len() as u64, lat)
    }
}

/// Reads the tracer's stderr on a thread (so a chatty tracer never blocks on a full pipe),
/// keeping the last 4 KiB for error messages.
fn collect_stderr(child: &mut Child) -> Arc<Mutex<Vec<u8>>> {
    let keep = Arc::new(Mutex::new(Vec::new()));
    if let Some(mut e) = child.stderr.take() {
        let k = keep.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut v = k.lock().unwrap_or_else(|e| e.into_inner());
                v.extend_from_slice(&buf[..n]);
                let excess = v.len().saturating_sub(4096);
                v.drain(..excess);
            }
        });
    }
    keep
}

/// SIGINT to the tracer, then its whole-life CPU ticks (it is reaped here).
///
/// The ticks are what `wait4`'s rusage of this child said before (user + system time of the
/// tracer and of its own waited-for children), measured with nix as the growth of
/// `getrusage(RUSAGE_CHILDREN)` across the `waitpid` that reaps it: the kernel adds exactly
/// that child's totals to RUSAGE_CHILDREN when it is reaped. The storm's probes are all
/// reaped before this runs, so the delta is this child's alone unless another thread of this
/// process reaps children at the same moment (the CLI never does; parallel tests might, and
/// nothing asserts on this figure).
fn stop(child: &mut Child) -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let cpu_s = |u: &nix::sys::resource::Usage| {
        let tv = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        tv(u.user_time()) + tv(u.system_time())
    };
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    // Our own child, not yet reaped: the pid cannot name another process.
    let _ = kill(pid, Signal::SIGINT);
    let before = getrusage(UsageWho::RUSAGE_CHILDREN).ok();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) if Instant::now() <= deadline => {}
            Ok(WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                let after = getrusage(UsageWho::RUSAGE_CHILDREN).ok();
                return match (before, after) {
                    (Some(b), Some(a)) => {
                        ((cpu_s(&a) - cpu_s(&b)).max(0.0) * clock_ticks_per_s()).round() as u64
                    }
                    _ => 0,
                };
            }
            // Stopped/continued: not gone yet.
            Ok(_) if Instant::now() <= deadline => {}
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return 0;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the storm against each tracer in turn.
pub fn run(opts: &StormOptions) -> Result<Vec<StormResult>, BenchError> {
    if opts.execs == 0 || opts.workers == 0 {
        return Err(BenchError::Options(
            "storm: --execs and --workers must be non-zero".into(),
        ));
    }
    let probe = Probe::new()?;
    opts.tracers
        .iter()
        .map(|t| run_one(&probe, t, opts))
        .collect()
}

fn run_one(probe: &Probe, t: &StormTracer, opts: &StormOptions) -> Result<StormResult, BenchError> {
    let (prog, args) = t
        .argv
        .split_first()
        .ok_or_else(|| BenchError::Options("storm: an empty tracer command".into()))?;
    let launched = Instant::now();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| BenchError::Spawn {
            cmd: crate::output::escape(t.argv_display().as_bytes()),
            source,
        })?;
    let lines = Lines::spawn(&mut child, probe.marker.clone())?;
    let mut m = Matcher::default();
    let stderr = collect_stderr(&mut child);
    let tracer_died = |child: &mut Child, what: &'static str| {
        let _ = child.kill();
        let _ = child.wait();
        // Give the stderr reader a moment to see the end of the pipe.
        std::thread::sleep(Duration::from_millis(50));
        let err = {
            let v = stderr.lock().unwrap_or_else(|e| e.into_inner());
            crate::output::escape(String::from_utf8_lossy(&v).trim().as_bytes())
        };
        BenchError::Tracer {
            cmd: crate::output::escape(t.argv_display().as_bytes()),
            what,
            stderr: if err.is_empty() {
                "(empty)".into()
            } else {
                err
            },
        }
    };

    // 1. Start-up: probe every 2 ms until a line names one of them.
    let startup = loop {
        if launched.elapsed() > opts.startup_timeout {
            return Err(tracer_died(
                &mut child,
                "printed no line naming an exec'd probe within the start-up timeout (it must \
                 print each exec's pid and program name, one line each, to stdout)",
            ));
        }
        if let Ok(Some(_)) = child.try_wait() {
            return Err(tracer_died(&mut child, "exited early"));
        }
        let p = probe.exec()?;
        m.add_spawned([p]);
        let mut first = None;
        while let Ok((at, klat, line)) = lines.rx.try_recv() {
            if m.line(at, klat, line) && first.is_none() {
                first = Some(at);
            }
        }
        if let Some(at) = first {
            break at.saturating_duration_since(launched);
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    // Let the warm-up lines settle.
    std::thread::sleep(Duration::from_millis(100));
    while let Ok((at, klat, line)) = lines.rx.try_recv() {
        m.line(at, klat, line);
    }

    // 2. The storm.
    let before = proc_stat(child.id());
    let storm_start = Instant::now();
    let next = Arc::new(Mutex::new(0u64));
    let spawned: Vec<(u32, Instant)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..opts.workers)
            .map(|_| {
                let next = next.clone();
                s.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        {
                            let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                            if *n >= opts.execs {
                                break;
                            }
                            *n += 1;
                        }
                        mine.push(probe.exec()?);
                    }
                    Ok::<_, BenchError>(mine)
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in hs {
            match h.join() {
                Ok(r) => all.extend(r?),
                Err(_) => return Err(BenchError::ConsumerPanicked("storm worker")),
            }
        }
        Ok(all)
    })?;
    m.add_spawned(spawned.iter().copied());
    let mut last = storm_start;
    let want = m.seen.len()
        + spawned
            .iter()
            .filter(|(p, _)| !m.seen.contains_key(p))
            .count();
    while m.seen.len() < want {
        match lines.rx.recv_timeout(Duration::from_secs(1)) {
            Ok((at, klat, line)) => {
                if m.line(at, klat, line) {
                    last = at;
                }
            }
            Err(_) => break,
        }
    }
    let after = proc_stat(child.id());

    // 3. Sparse execs.
    let mut sparse = Vec::new();
    for _ in 0..opts.sparse {
        std::thread::sleep(opts.sparse_gap);
        let p = probe.exec()?;
        m.add_spawned([p]);
        sparse.push(p);
        while let Ok((at, klat, line)) = lines.rx.try_recv() {
            m.line(at, klat, line);
        }
    }
    // Stop, then read what is left (a tracer that buffers its stdout writes it at exit).
    std::thread::sleep(Duration::from_millis(200));
    let total_ticks = stop(&mut child);
    while let Ok((at, klat, line)) = lines.rx.recv_timeout(Duration::from_secs(2)) {
        m.line(at, klat, line);
    }
    let (captured, storm_lat) = m.latencies(&spawned);
    let (sparse_captured, sparse_lat) = m.latencies(&sparse);
    Ok(StormResult {
        tracer: t.tracer.clone(),
        transport: t.transport.clone(),
        wakeup: t.wakeup.clone(),
        startup,
        execs: spawned.len() as u64,
        captured,
        storm_time: last.saturating_duration_since(storm_start),
        cpu: Duration::from_nanos(after.sched_ns.saturating_sub(before.sched_ns)),
        cpu_ticks: after.ticks.saturating_sub(before.ticks),
        total_ticks,
        wakeups: after.voluntary.saturating_sub(before.voluntary),
        storm_latency: Percentiles::of(storm_lat),
        sparse_latency: Percentiles::of(sparse_lat),
        sparse_execs: sparse.len() as u64,
        sparse_captured,
        storm_kernel_latency: Percentiles::of(m.kernel_latencies(&spawned)),
        sparse_kernel_latency: Percentiles::of(m.kernel_latencies(&sparse)),
    })
}

impl StormTracer {
    fn argv_display(&self) -> String {
        self.argv
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests;
