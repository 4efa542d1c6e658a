//! The exec tracer: one of the built-in objects (or a user's) loaded, its consumer set up,
//! its tracepoint attached; `poll` hands out events and lost-data notices.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::consumer::{ConsumerError, NoObserver, Observer, Reader, Record, TransportOptions};
use crate::event::{self, EventLayout, EventRef, BUILTIN_LAYOUT};
use crate::loader::attach::{self, AttachError, Link};
use crate::loader::load::{LoadError, LoadOptions, Object};
use crate::loader::spec::{AttachPoint, ObjectSpec, ParseError};
use crate::sys::{self, bpf};

/// How records travel from the BPF program to us (defined with the consumers).
pub use crate::consumer::Transport;

#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error("reading the BPF object: {0}")]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    #[error(transparent)]
    Event(#[from] event::EventError),
    #[error("the object has no {0}")]
    Missing(String),
    #[error(
        "rawsnoop needs root, or the capabilities CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on \
         kernels before 5.8): run it with sudo"
    )]
    NoPrivilege,
    #[error(
        "this kernel has no BPF ring buffer (creating a BPF_MAP_TYPE_RINGBUF map was refused; \
         it came in Linux 5.8): use --perfbuf"
    )]
    NoRingbuf,
    #[error("probing for BPF ring buffer support")]
    Probe(#[source] std::io::Error),
}

/// When a ring buffer record wakes the consumer (`bpf/ringbuf_wakeup.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingWakeup {
    /// Flags 0: the kernel wakes us for a record when we had read everything before it.
    Kernel,
    /// `BPF_RB_NO_WAKEUP` unless `threshold` bytes wait or the last wakeup is older than
    /// `interval`; then `BPF_RB_FORCE_WAKEUP`.
    Adaptive { threshold: u64, interval: Duration },
}

/// A cgroup v2 to trace: its id (the directory's inode number) and depth below the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CgroupFilter {
    pub id: u64,
    pub level: u32,
}

/// What to trace with.
#[derive(Debug, Clone)]
pub struct TracerOptions {
    /// The transport and its own settings (ring size, or perf pages and wakeup).
    pub transport: TransportOptions,
    /// A user's object instead of the built-in one (`--object`).
    pub object: Option<Vec<u8>>,
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
}

impl TracerOptions {
    pub fn new(transport: Transport) -> Self {
        TracerOptions {
            transport: transport.default_options(),
            object: None,
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
        }
    }

    /// True when these options need rawsnoop's own programs (not a user's demo object).
    fn needs_builtin(&self) -> bool {
        self.pid.is_some()
            || self.ppid.is_some()
            || self.cgroup.is_some()
            || self.args
            || self.failed
            || self.exit
    }
}

/// Offsets of `real_parent`, `tgid` and `exit_code` in the running kernel's `struct
/// task_struct`, from /sys/kernel/btf/vmlinux (`None` without kernel BTF).
pub fn task_offsets() -> Option<(u32, u32, u32)> {
    use crate::loader::btf::{Btf, BtfKind, BtfType};
    static CACHE: std::sync::OnceLock<Option<(u32, u32, u32)>> = std::sync::OnceLock::new();
    *CACHE.get_or_init(|| {
        let bytes = std::fs::read("/sys/kernel/btf/vmlinux").ok()?;
        let btf = Btf::parse(&bytes).ok()?;
        let id = btf.find_by_name("task_struct", BtfKind::Struct)?;
        let Ok(BtfType::Struct { members, .. }) = btf.type_by_id(id) else {
            return None;
        };
        let off = |name: &str| {
            members
                .iter()
                .find(|m| btf.string_at(m.name_off).ok() == Some(name))
                .filter(|m| m.bitfield_size == 0 && m.offset_bits % 8 == 0)
                .map(|m| m.offset_bits / 8)
        };
        Some((off("real_parent")?, off("tgid")?, off("exit_code")?))
    })
}

/// Data the tracer could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The kernel's perf ring on `cpu` was full: `count` samples dropped (PERF_RECORD_LOST).
    PerfRing { cpu: u32, count: u64 },
    /// The BPF program could not reserve/output `count` records (ring full), per its `drops` map.
    Bpf { count: u64 },
}

impl Lost {
    /// How many records this notice stands for.
    pub fn count(&self) -> u64 {
        match *self {
            Lost::PerfRing { count, .. } | Lost::Bpf { count } => count,
        }
    }
}

/// A running tracer. Dropping it detaches the program and frees everything.
pub struct Tracer {
    // Field order is drop order: detach first, then the consumer, then the maps.
    links: Vec<Link>,
    reader: Reader,
    object: Object,
    layout: EventLayout,
    drops_reported: u64,
    perf_lost: u64,
    pub warnings: Vec<String>,
}

/// True when this process can load BPF and attach tracepoints.
pub fn has_privilege() -> bool {
    use sys::kernel::{has_capability, CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};
    has_capability(CAP_SYS_ADMIN) || (has_capability(CAP_BPF) && has_capability(CAP_PERFMON))
}

fn find_program(spec: &ObjectSpec) -> Option<&str> {
    let exec = spec.programs.iter().find(|p| {
        p.attach
            == AttachPoint::Tracepoint {
                category: "sched".into(),
                name: "sched_process_exec".into(),
            }
    });
    exec.or_else(|| {
        spec.programs
            .iter()
            .find(|p| matches!(p.attach, AttachPoint::Tracepoint { .. }))
    })
    .map(|p| p.name.as_str())
}

fn find_map<'a>(spec: &'a ObjectSpec, map_type: u32, preferred: &str) -> Option<&'a str> {
    let of_type = || spec.maps.iter().filter(|m| m.map_type == map_type);
    of_type()
        .find(|m| m.name == preferred)
        .or_else(|| of_type().next())
        .map(|m| m.name.as_str())
}

impl Tracer {
    /// Loads, sets up the consumer, then attaches (so no early event is lost).
    pub fn open(opts: &TracerOptions) -> Result<Tracer, TracerError> {
        if !has_privilege() {
            return Err(TracerError::NoPrivilege);
        }
        opts.transport.validate()?;
        let transport = opts.transport.transport();
        let bytes: &[u8] = match &opts.object {
            Some(b) => b,
            None => transport.builtin_object(),
        };
        let spec = ObjectSpec::parse(bytes)?;
        let prog_name = find_program(&spec)
            .ok_or_else(|| {
                TracerError::Missing(
                    "tracepoint program (SEC(\"tp/sched/sched_process_exec\"))".into(),
                )
            })?
            .to_string();
        let (map_type, preferred) = if transport.uses_ringbuf() {
            (bpf::BPF_MAP_TYPE_RINGBUF, "rb")
        } else {
            (bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY, "pb")
        };
        let map_name = find_map(&spec, map_type, preferred)
            .ok_or_else(|| {
                TracerError::Missing(format!(
                    "{} map for --{}",
                    if transport.uses_ringbuf() {
                        "BPF_MAP_TYPE_RINGBUF"
                    } else {
                        "BPF_MAP_TYPE_PERF_EVENT_ARRAY"
                    },
                    transport.name()
                ))
            })?
            .to_string();
        // Without a BTF `struct event`: ours for the built-in objects, the demo's otherwise.
        let fallback = if opts.object.is_some() {
            event::DEMO_LAYOUT
        } else {
            BUILTIN_LAYOUT
        };
        let layout = match &spec.btf {
            Some(btf) => event::layout_from_btf(btf)?.unwrap_or(fallback),
            None => fallback,
        };
        if transport.uses_ringbuf()
            && !sys::probe::ringbuf_supported().map_err(TracerError::Probe)?
        {
            return Err(TracerError::NoRingbuf);
        }
        // Resolve the tracepoint before anything is loaded (a missing or closed tracefs is
        // reported first), and load only the program we attach.
        let prog_spec = spec
            .program(&prog_name)
            .ok_or_else(|| TracerError::Missing(format!("program {prog_name}")))?;
        let tracepoint = attach::resolve(&prog_spec.attach, &prog_spec.name, &prog_spec.section)?;
        let mut load_opts = LoadOptions::default();
        load_opts.btf = opts.btf.clone();
        if let Some(size) = opts.transport.ring().and_then(|r| r.size) {
            load_opts.max_entries.insert(map_name.clone(), size);
        }
        if opts.object.is_some() && opts.needs_builtin() {
            return Err(TracerError::Missing(
                "rawsnoop's programs and event (--object takes the demo's program; --pid, \
                 --ppid, --cgroup, arguments, failed execs and --exit need the built-in objects)"
                    .into(),
            ));
        }
        // `.rodata` configuration: (name, bytes); a missing variable is an error only
        // when the user asked for what it does.
        let mut set = |name: &str, bytes: Vec<u8>, required: bool| -> Result<(), TracerError> {
            match spec.global_var(name).filter(|v| v.size == bytes.len()) {
                Some(var) => {
                    load_opts.data_patches.push((var.section, var.offset, bytes));
                    Ok(())
                }
                None if required => Err(TracerError::Missing(format!(
                    "`const volatile` `{name}` ({} bytes) in .rodata (the built-in objects have it)",
                    bytes.len()
                ))),
                None => Ok(()),
            }
        };
        if let Some(uid) = opts.uid {
            set("filter_uid", uid.to_ne_bytes().to_vec(), true)?;
        }
        if let Some(pid) = opts.pid {
            set("filter_pid", pid.to_ne_bytes().to_vec(), true)?;
        }
        if let Some(ppid) = opts.ppid {
            set("filter_ppid", ppid.to_ne_bytes().to_vec(), true)?;
        }
        if let Some(cg) = opts.cgroup {
            set("filter_cgroup_id", cg.id.to_ne_bytes().to_vec(), true)?;
            set("filter_cgroup_level", cg.level.to_ne_bytes().to_vec(), true)?;
        }
        let want_args = opts.args || opts.failed;
        set(
            "want_args",
            u32::from(want_args).to_ne_bytes().to_vec(),
            want_args,
        )?;
        set(
            "want_failed",
            u32::from(opts.failed).to_ne_bytes().to_vec(),
            opts.failed,
        )?;
        set(
            "want_exit",
            u32::from(opts.exit).to_ne_bytes().to_vec(),
            opts.exit,
        )?;
        set("max_args", opts.max_args.to_ne_bytes().to_vec(), want_args)?;
        let mut warnings = Vec::new();
        if opts.object.is_none() {
            match task_offsets() {
                Some((parent, tgid, code)) => {
                    set("task_real_parent_off", parent.to_ne_bytes().to_vec(), false)?;
                    set("task_tgid_off", tgid.to_ne_bytes().to_vec(), false)?;
                    set("task_exit_code_off", code.to_ne_bytes().to_vec(), false)?;
                }
                None => warnings.push(
                    "no kernel BTF (/sys/kernel/btf/vmlinux): parent pids and exit codes are \
                     unknown (shown as -1)"
                        .to_string(),
                ),
            }
        }
        if let RingWakeup::Adaptive {
            threshold,
            interval,
        } = opts.ring_wakeup
        {
            if transport.uses_ringbuf() {
                let ns = u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX);
                // A user's object without these keeps the kernel's policy.
                set("wakeup_policy", 1u32.to_ne_bytes().to_vec(), false)?;
                set("wakeup_threshold", threshold.to_ne_bytes().to_vec(), false)?;
                set("wakeup_interval_ns", ns.to_ne_bytes().to_vec(), false)?;
            }
        }
        // The programs the options need, EXEC last: an exec is then never seen by
        // handle_exec before its syscall entry was recorded. Only these are loaded.
        let mut names: Vec<String> = Vec::new();
        if want_args {
            names.extend(
                [
                    "handle_enter_execve",
                    "handle_enter_execveat",
                    "handle_exit_execve",
                    "handle_exit_execveat",
                ]
                .map(String::from),
            );
        }
        if opts.exit {
            names.push("handle_exit".into());
        }
        names.push(prog_name.clone());
        load_opts.programs = Some(names.clone());
        let object = Object::load_with(&spec, &load_opts)?;
        let map = object
            .map(&map_name)
            .ok_or_else(|| TracerError::Missing(format!("map {map_name}")))?;
        let reader = Reader::open(map.fd(), map.spec.max_entries, &opts.transport)?;
        let mut links = Vec::with_capacity(names.len());
        for name in &names {
            let prog = object
                .program(name)
                .ok_or_else(|| TracerError::Missing(format!("program {name}")))?;
            // The exec program's tracepoint was resolved before anything was loaded.
            links.push(if *name == prog_name {
                attach::attach_resolved(prog, &tracepoint)?
            } else {
                attach::attach(prog)?
            });
        }
        links.reverse();
        warnings.extend(object.warnings.iter().cloned());
        Ok(Tracer {
            links,
            reader,
            object,
            layout,
            drops_reported: 0,
            perf_lost: 0,
            warnings,
        })
    }

    /// How the program is attached (`bpf_link` or `perf_event_ioctl`).
    pub fn link_kind(&self) -> &'static str {
        self.links.first().map_or("none", Link::kind)
    }

    pub fn object(&self) -> &Object {
        &self.object
    }

    /// Waits up to `timeout` for data, hands every event to `on_event` and every loss to
    /// `on_lost`. Returns how many events were delivered. `on_event` may stop early with
    /// `ControlFlow::Break`; what it did not see stays in the ring for the next call.
    pub fn poll<E, L>(
        &mut self,
        timeout: Option<Duration>,
        on_event: E,
        on_lost: L,
    ) -> Result<usize, TracerError>
    where
        E: FnMut(EventRef<'_>) -> ControlFlow<()>,
        L: FnMut(Lost),
    {
        self.poll_observed(timeout, &mut NoObserver, on_event, on_lost)
    }

    /// [`Tracer::poll`] with the consumer's steps reported to `obs` (the ring view, stats).
    pub fn poll_observed<O, E, L>(
        &mut self,
        timeout: Option<Duration>,
        obs: &mut O,
        mut on_event: E,
        mut on_lost: L,
    ) -> Result<usize, TracerError>
    where
        O: Observer,
        E: FnMut(EventRef<'_>) -> ControlFlow<()>,
        L: FnMut(Lost),
    {
        let layout = self.layout;
        let mut bad: Option<event::EventError> = None;
        let mut events = 0usize;
        let perf_lost = &mut self.perf_lost;
        self.reader.poll_observed(timeout, obs, |rec| match rec {
            Record::Sample { data, .. } => match EventRef::parse(data, &layout) {
                Ok(e) => {
                    events += 1;
                    on_event(e)
                }
                Err(err) => {
                    bad = Some(err);
                    ControlFlow::Break(())
                }
            },
            Record::Lost { cpu, count } => {
                *perf_lost += count;
                on_lost(Lost::PerfRing { cpu, count });
                ControlFlow::Continue(())
            }
        })?;
        if let Some(err) = bad {
            return Err(err.into());
        }
        // Losses the BPF program counted. For the perf buffer, ring-full losses already
        // came as PERF_RECORD_LOST: report only what goes beyond those.
        let counted = self.bpf_drops();
        let already = if self.reader.is_ringbuf() {
            0
        } else {
            self.perf_lost
        };
        let new = counted
            .saturating_sub(already)
            .saturating_sub(self.drops_reported);
        if new > 0 {
            self.drops_reported += new;
            on_lost(Lost::Bpf { count: new });
        }
        Ok(events)
    }

    /// Total the BPF program failed to submit, from its `drops` map (0 if it has none).
    pub fn bpf_drops(&self) -> u64 {
        let Some(map) = self.object.map("drops") else {
            return 0;
        };
        let mut v = [0u8; 8];
        match bpf::map_lookup_elem(map.fd(), &0u32.to_ne_bytes(), &mut v) {
            Ok(()) => u64::from_ne_bytes(v),
            Err(_) => 0,
        }
    }

    /// The consumer's epoll fd, to wait on several sources at once.
    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.reader)
    }

    /// The consumer, for its counters (wakeups, unread bytes).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }
}
