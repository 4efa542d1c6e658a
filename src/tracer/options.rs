//! What to trace with: [`TracerOptions`] and the settings it carries.

use std::time::Duration;

use super::{ExecAttach, Transport};
use crate::consumer::TransportOptions;

/// When a ring buffer record wakes the consumer (`bpf/ringbuf_wakeup.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingWakeup {
    /// Flags 0: the kernel wakes us for a record when we had read everything before it.
    Kernel,
    /// `BPF_RB_NO_WAKEUP` unless `threshold` bytes wait or the last wakeup is older than
    /// `interval`; then `BPF_RB_FORCE_WAKEUP`.
    Adaptive { threshold: u64, interval: Duration },
}

/// A cgroup v2 to trace: its directory (the kernel checks "in it or below it").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupFilter {
    pub path: std::path::PathBuf,
}

/// What to trace with.
#[derive(Debug, Clone)]
pub struct TracerOptions {
    /// The transport and its own settings (ring size, or perf pages and wakeup).
    pub transport: TransportOptions,
    /// A user's object instead of the built-in one (`--object`).
    pub object: Option<Vec<u8>>,
    /// rawsnoop's own programs built elsewhere (`--builtin-object`: e.g. against another
    /// header) instead of the embedded object of the transport; every feature as with that.
    pub builtin_object: Option<Vec<u8>>,
    /// Report only execs by this user id (the program's `.rodata` `filter_uid`).
    pub uid: Option<u32>,
    /// Only this process (tgid) / the children of this one.
    pub pid: Option<u32>,
    pub ppid: Option<u32>,
    /// Only tasks in this cgroup v2 or below it.
    pub cgroup: Option<CgroupFilter>,
    /// Read the arguments at sys_enter_execve(at).
    pub args: bool,
    /// Report failed execs (from sys_exit_execve(at)); implies reading the arguments.
    pub failed: bool,
    /// Report process exits.
    pub exit: bool,
    /// Arguments read per exec, 1..=60 (execsnoop's --max-args).
    pub max_args: u32,
    /// Ring buffer wakeups (the perf buffer uses `perf_wakeup`).
    pub ring_wakeup: RingWakeup,
    /// BTF that CO-RE relocations resolve against (`--btf`).
    pub btf: crate::loader::core::BtfSource,
    /// How the built-in exec program attaches (`--attach`).
    pub attach: ExecAttach,
}

impl TracerOptions {
    pub fn new(transport: Transport) -> Self {
        TracerOptions {
            transport: transport.default_options(),
            object: None,
            builtin_object: None,
            uid: None,
            pid: None,
            ppid: None,
            cgroup: None,
            args: false,
            failed: false,
            exit: false,
            max_args: 20,
            ring_wakeup: RingWakeup::Kernel,
            btf: crate::loader::core::BtfSource::Kernel,
            attach: ExecAttach::Auto,
        }
    }

    /// True when these options need rawsnoop's own programs (not a user's demo object).
    pub(super) fn needs_builtin(&self) -> bool {
        self.pid.is_some()
            || self.ppid.is_some()
            || self.cgroup.is_some()
            || self.args
            || self.failed
            || self.exit
    }
}
