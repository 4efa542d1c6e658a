//! What the tracer asks of the running kernel besides events: how the exec program
//! attaches (tp_btf or tracepoint), and its clock.

use super::TracerError;
use crate::loader::attach::{self, Tracepoint};
use crate::loader::core::BtfSource;
use crate::loader::load::{LoadOptions, Object};
use crate::loader::spec::{AttachPoint, ObjectSpec};
use crate::sys;

/// How the exec program attaches (`--attach`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExecAttach {
    /// tp_btf where the kernel loads it, else the classic tracepoint.
    #[default]
    Auto,
    /// tp_btf/sched_process_exec: per-program recursion protection (needs kernel BTF).
    TpBtf,
    /// The classic tracepoint sched/sched_process_exec, as the C demo.
    Tracepoint,
}

impl std::str::FromStr for ExecAttach {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ExecAttach::Auto),
            "tp_btf" => Ok(ExecAttach::TpBtf),
            "tracepoint" => Ok(ExecAttach::Tracepoint),
            _ => Err("use auto, tp_btf or tracepoint".into()),
        }
    }
}

/// True when CO-RE can use kernel BTF: `--btf none` cannot, the default needs
/// /sys/kernel/btf/vmlinux, a `--btf` file can.
pub(super) fn has_kernel_btf(source: &BtfSource) -> bool {
    match source {
        BtfSource::None => false,
        BtfSource::Kernel => std::path::Path::new("/sys/kernel/btf/vmlinux").exists(),
        BtfSource::File(_) => true,
    }
}

/// Whether to try the tp_btf exec program (`handle_exec_btf`) instead of `classic`: only the
/// built-in objects have it, and it needs kernel BTF (its attach id is a vmlinux type).
/// Auto keeps the perf buffer on the classic tracepoint: measured on Debian's 7.2 (lazy
/// preemption, VM), a perf buffer storm from tp_btf printed 38 of 40 execs (a tracing
/// program's bpf_perf_event_output goes through per-CPU nesting slots shared by every
/// raw_tp/tp_btf program); from the classic tracepoint, 40 of 40.
pub(super) fn choose_exec(
    mode: ExecAttach,
    spec: &ObjectSpec,
    classic: &str,
    no_btf: bool,
    perfbuf: bool,
) -> Result<bool, TracerError> {
    let has = classic == "handle_exec" && spec.program(super::EXEC_BTF).is_some();
    let kernel = std::path::Path::new("/sys/kernel/btf/vmlinux").exists();
    match mode {
        ExecAttach::Tracepoint => Ok(false),
        // Measured in the 7.2 VM storm (40 execs, 1 vCPU): tp_btf printed 39/40 on the
        // ringbuf too, the classic tracepoint 40/40; so auto stays classic for now.
        ExecAttach::Auto => Ok(has && kernel && !no_btf && !perfbuf && AUTO_TP_BTF),
        ExecAttach::TpBtf if !has => Err(TracerError::AttachMode(
            "only the built-in objects have a tp_btf exec program; use --attach tracepoint \
             with --object",
        )),
        ExecAttach::TpBtf if !kernel || no_btf => Err(TracerError::AttachMode(
            "needs kernel BTF (/sys/kernel/btf/vmlinux, and not --btf none); use --attach \
             tracepoint",
        )),
        ExecAttach::TpBtf => Ok(true),
    }
}

/// Whether auto mode picks tp_btf (see choose_exec): off until the 7.2 storm loss is understood.
const AUTO_TP_BTF: bool = false;

/// Said when the built-in programs run without kernel BTF.
pub(super) const NO_BTF_WARNING: &str = "no kernel BTF (/sys/kernel/btf/vmlinux, or --btf none): \
     parent pids and exit codes are unknown (shown as -1)";

/// Loads the programs `names` (the exec program last) and says how the exec program attaches.
/// tp_btf is probed by loading it: with `fallback` (auto mode), a refusal loads the classic
/// tracepoint program `fallback` instead.
pub(super) fn load(
    spec: &ObjectSpec,
    load_opts: &mut LoadOptions,
    names: &mut [String],
    tracepoints: &mut [Option<Tracepoint>],
    fallback: Option<&str>,
) -> Result<(Object, String), TracerError> {
    let btf = names.last().is_some_and(|n| n == super::EXEC_BTF);
    let label = if btf { "tp_btf" } else { "tracepoint" };
    match (Object::load_with(spec, load_opts), fallback) {
        (Ok(object), _) => Ok((object, label.into())),
        (Err(e), Some(classic)) if btf => {
            let why = format!("tracepoint (tp_btf refused: {e})");
            if let (Some(n), Some(tp)) = (names.last_mut(), tracepoints.last_mut()) {
                *n = classic.to_string();
                *tp = resolve(spec, classic)?;
            }
            load_opts.programs = Some(names.to_vec());
            Ok((Object::load_with(spec, load_opts)?, why))
        }
        (Err(e), _) => Err(e.into()),
    }
}

/// The tracepoint of program `name` found in tracefs, or `None` for a tp_btf program
/// (attached by BTF id).
pub(super) fn resolve(spec: &ObjectSpec, name: &str) -> Result<Option<Tracepoint>, TracerError> {
    let p = spec
        .program(name)
        .ok_or_else(|| TracerError::Missing(format!("program {name}")))?;
    if matches!(p.attach, AttachPoint::TpBtf { .. }) {
        return Ok(None);
    }
    Ok(Some(attach::resolve(&p.attach, &p.name, &p.section)?))
}

/// Kernel timestamps (CLOCK_MONOTONIC ns) to wall-clock time.
pub struct Clock {
    start_mono: u64,
    /// CLOCK_REALTIME - CLOCK_MONOTONIC at the start, in ns.
    offset: i128,
    /// The last HH:MM:SS made, by Unix second.
    cached: (i64, String),
}

impl Clock {
    /// Takes the clocks now (call before tracing starts: `-t` counts from here).
    pub fn new() -> Clock {
        let mono = sys::time::monotonic_ns();
        let real = sys::time::realtime_ns();
        Clock {
            start_mono: mono,
            offset: real as i128 - mono as i128,
            cached: (i64::MIN, String::new()),
        }
    }
    /// Unix time of a kernel timestamp (now for an event without one).
    pub fn unix_ns(&self, ts: Option<u64>) -> i128 {
        match ts {
            Some(ts) => ts as i128 + self.offset,
            None => sys::time::realtime_ns() as i128,
        }
    }
    /// HH:MM:SS (local time) of a kernel timestamp, made once per second.
    pub fn hms(&mut self, ts: Option<u64>) -> &str {
        let secs = (self.unix_ns(ts) / 1_000_000_000) as i64;
        if self.cached.0 != secs {
            self.cached = (secs, sys::time::local_hms_at(secs));
        }
        &self.cached.1
    }
    /// Seconds from [`Clock::new`] to a kernel timestamp.
    pub fn since_start(&self, ts: Option<u64>) -> f64 {
        let now = ts.unwrap_or_else(sys::time::monotonic_ns);
        now.saturating_sub(self.start_mono) as f64 / 1e9
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
