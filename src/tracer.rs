//! The exec tracer: one of the built-in objects (or a user's) loaded, its consumer set up,
//! its tracepoint attached; `poll` hands out events and lost-data notices.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::consumer::{ConsumerError, NoObserver, Observer, Reader, Record};
use crate::event::{self, EventLayout, EventRef, BUILTIN_LAYOUT};
use crate::loader::attach::{self, AttachError, Link};
use crate::loader::load::{LoadError, LoadOptions, Object};
use crate::loader::spec::{AttachPoint, ObjectSpec, ParseError};
use crate::sys::{self, bpf};

/// How records travel from the BPF program to us (defined with the consumers).
pub use crate::consumer::Transport;

#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error("reading the BPF object")]
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
    #[error("--object (the demo's program) and --builtin-object (rawsnoop's) exclude each other")]
    TwoObjects,
    #[error("--attach tp_btf: {0}")]
    AttachMode(&'static str),
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
    #[error(
        "mapping the program's lost-record counters (.bss, BPF_F_MMAPABLE needs Linux >= 5.5)"
    )]
    Counters(#[source] std::io::Error),
    #[error("--cgroup {path}: {source}")]
    Cgroup {
        path: String,
        source: std::io::Error,
    },
    #[error("probing for BPF ring buffer support")]
    Probe(#[source] std::io::Error),
}

mod options;
pub use options::{CgroupFilter, RingWakeup, TracerOptions};

#[cfg(test)]
mod fake_tests;
mod kernel;
mod losses;
pub use kernel::{Clock, ExecAttach};
pub use losses::Lost;
use losses::{read_counter, Losses};

/// Where the program's lost-record counters are read.
enum Counters {
    /// The built-in objects: `lost_full` and `lost_other` in .bss, mmap'd read-only.
    Mapped {
        map: sys::mmap::Mmap,
        full: usize,
        other: usize,
    },
    /// A user's object with the demo-era `drops` array (one u64): a map lookup, at most
    /// once a second (a map syscall can make the kernel skip tracepoint programs).
    DropsMap,
    None,
}

/// How often the counters read by syscall (recursion misses, a user's `drops` map) are read.
const SYSCALL_COUNTERS_EVERY: Duration = Duration::from_millis(1000);

/// A running tracer. Dropping it detaches the program and frees everything.
pub struct Tracer {
    // Field order is drop order: detach first, then the consumer, then the maps.
    links: Vec<Link>,
    reader: Reader,
    object: Object,
    layout: EventLayout,
    counters: Counters,
    losses: Losses,
    /// Last reading of the syscall-read counters: (when, drops map, recursion misses).
    slow: (Option<std::time::Instant>, u64, u64),
    pub warnings: Vec<String>,
    /// How the exec program is attached: `tp_btf` or `tracepoint` (and why).
    exec_attach: String,
}

/// True when this process can load BPF and attach tracepoints.
pub fn has_privilege() -> bool {
    sys::kernel::has_bpf_privilege()
}

/// The built-in objects' tp_btf twin of `handle_exec`.
const EXEC_BTF: &str = "handle_exec_btf";

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
        let bytes: &[u8] = match (&opts.object, &opts.builtin_object) {
            (Some(_), Some(_)) => return Err(TracerError::TwoObjects),
            (Some(b), None) | (None, Some(b)) => b,
            (None, None) => transport.builtin_object(),
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
        if opts.object.is_some() && opts.needs_builtin() {
            return Err(TracerError::Missing(
                "rawsnoop's programs and event (--object takes the demo's program; --pid, \
                 --ppid, --cgroup, arguments, failed execs and --exit need the built-in objects)"
                    .into(),
            ));
        }
        // The programs the options need, EXEC last: an exec is then never seen by
        // handle_exec before its syscall entry was recorded.
        let want_args = opts.args || opts.failed;
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
        // Without kernel BTF the built-in programs' CO-RE resolves from tracefs formats.
        let no_btf = opts.object.is_none() && !kernel::has_kernel_btf(&opts.btf);
        let exec_btf = kernel::choose_exec(
            opts.attach,
            &spec,
            &prog_name,
            no_btf,
            !transport.uses_ringbuf(),
        )?;
        names.push(if exec_btf {
            EXEC_BTF.into()
        } else {
            prog_name.clone()
        });
        // Resolve the tracepoints before anything is loaded (a missing or closed tracefs is
        // reported first), and load only the programs we attach (None: tp_btf, by BTF id).
        let mut tracepoints = Vec::with_capacity(names.len());
        for name in &names {
            tracepoints.push(kernel::resolve(&spec, name)?);
        }
        let mut load_opts = LoadOptions {
            programs: Some(names.clone()),
            btf: if no_btf {
                crate::loader::core::BtfSource::None
            } else {
                opts.btf.clone()
            },
            ..LoadOptions::default()
        };
        if let Some(size) = opts.transport.ring().and_then(|r| r.size) {
            load_opts.max_entries.insert(map_name.clone(), size);
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
        // The cgroup directory is opened before anything is loaded (a bad path fails first).
        let cgroup_dir = match &opts.cgroup {
            Some(cg) => {
                set("filter_cgroup", 1u32.to_ne_bytes().to_vec(), true)?;
                Some(
                    std::fs::File::open(&cg.path).map_err(|source| TracerError::Cgroup {
                        path: cg.path.display().to_string(),
                        source,
                    })?,
                )
            }
            None => None,
        };
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
        if no_btf {
            warnings.push(kernel::NO_BTF_WARNING.into());
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
        let counter_vars = (spec.global_var("lost_full"), spec.global_var("lost_other"));
        if let (Some(v), Some(_)) = &counter_vars {
            load_opts.mmapable.push(v.section.clone());
        }
        let fallback = (exec_btf && opts.attach == ExecAttach::Auto).then_some(prog_name.as_str());
        let (object, exec_attach) = kernel::load(
            &spec,
            &mut load_opts,
            &mut names,
            &mut tracepoints,
            fallback,
        )?;
        let counters = match counter_vars {
            (Some(full), Some(other)) if full.size == 8 && other.size == 8 => {
                let map = object
                    .map(&full.section)
                    .ok_or_else(|| TracerError::Missing(format!("map {}", full.section)))?
                    .mmap_ro()
                    .map_err(TracerError::Counters)?;
                Counters::Mapped {
                    map,
                    full: full.offset,
                    other: other.offset,
                }
            }
            _ if object.map("drops").is_some() => Counters::DropsMap,
            _ => Counters::None,
        };
        if let Some(dir) = &cgroup_dir {
            use std::os::fd::AsRawFd;
            let m = object
                .map("cgroup_filter")
                .ok_or_else(|| TracerError::Missing("map cgroup_filter".into()))?;
            let fd = dir.as_raw_fd() as u32;
            bpf::map_update_elem(m.fd(), &0u32.to_ne_bytes(), &fd.to_ne_bytes(), 0).map_err(
                |source| TracerError::Cgroup {
                    path: opts
                        .cgroup
                        .as_ref()
                        .map(|c| c.path.display().to_string())
                        .unwrap_or_default(),
                    source,
                },
            )?;
        }
        let map = object
            .map(&map_name)
            .ok_or_else(|| TracerError::Missing(format!("map {map_name}")))?;
        let reader = Reader::open(map.fd(), map.spec.max_entries, &opts.transport)?;
        let mut links = Vec::with_capacity(names.len());
        for (name, tp) in names.iter().zip(&tracepoints) {
            let prog = object
                .program(name)
                .ok_or_else(|| TracerError::Missing(format!("program {name}")))?;
            links.push(match tp {
                Some(tp) => attach::attach_resolved(prog, tp)?,
                None => attach::attach(prog)?,
            });
        }
        // Dropped first: detach handle_exec before the syscall programs.
        links.reverse();
        warnings.extend(object.warnings.iter().cloned());
        Ok(Tracer {
            links,
            reader,
            object,
            layout,
            counters,
            losses: Losses::new(!transport.uses_ringbuf()),
            slow: (None, 0, 0),
            warnings,
            exec_attach,
        })
    }

    /// How the program is attached (`bpf_link` or `perf_event_ioctl`).
    pub fn link_kind(&self) -> &'static str {
        self.links.first().map_or("none", Link::kind)
    }

    /// How the exec program is attached: `tp_btf` or `tracepoint`, with why tp_btf was not.
    pub fn exec_attach(&self) -> &str {
        &self.exec_attach
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
        let losses = &mut self.losses;
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
                if let Some(l) = losses.on_perf_lost(cpu, count) {
                    on_lost(l);
                }
                ControlFlow::Continue(())
            }
        })?;
        if let Some(err) = bad {
            return Err(err.into());
        }
        self.report_counters(false, &mut on_lost);
        Ok(events)
    }

    /// Reports what the counters add since the last call: the program's (every call: an
    /// mmap read) and those read by syscall (at most once a second, or now with `force`).
    /// Call with `force` once more before exiting, so the last losses are told.
    pub fn report_counters<L: FnMut(Lost)>(&mut self, force: bool, on_lost: &mut L) {
        let now = std::time::Instant::now();
        let slow_due = force
            || self
                .slow
                .0
                .is_none_or(|t| now.duration_since(t) >= SYSCALL_COUNTERS_EVERY);
        if slow_due {
            self.slow.0 = Some(now);
            if matches!(self.counters, Counters::DropsMap) {
                self.slow.1 = self.drops_map();
            }
            self.slow.2 = self.recursion_misses();
        }
        let (full, other) = match &self.counters {
            Counters::Mapped { map, full, other } => {
                (read_counter(map, *full), read_counter(map, *other))
            }
            Counters::DropsMap => (self.slow.1, 0),
            Counters::None => (0, 0),
        };
        for l in self.losses.on_counters(full, other, self.slow.2) {
            on_lost(l);
        }
    }

    /// Everything reported lost so far.
    pub fn lost_total(&self) -> u64 {
        self.losses.total()
    }

    /// The `drops` map of a user's object (0 if unreadable).
    fn drops_map(&self) -> u64 {
        let Some(map) = self.object.map("drops") else {
            return 0;
        };
        let mut v = [0u8; 8];
        match bpf::map_lookup_elem(map.fd(), &0u32.to_ne_bytes(), &mut v) {
            Ok(()) => u64::from_ne_bytes(v),
            Err(_) => 0,
        }
    }

    /// How often the kernel skipped the programs that send events (0 before Linux 5.12).
    /// A skipped `handle_exec`/`handle_exit` is a lost event; a skipped syscall-exit program
    /// loses a failed exec if it was one. A skipped syscall-entry program loses only the
    /// arguments (the exec is still reported, with the kernel's filename), so it is not
    /// counted.
    pub fn recursion_misses(&self) -> u64 {
        self.object
            .programs()
            .iter()
            .filter(|p| !p.name.starts_with("handle_enter_"))
            .filter_map(|p| bpf::prog_recursion_misses(p.fd()).ok().flatten())
            .sum()
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
