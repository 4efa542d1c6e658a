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

/// What to trace with.
#[derive(Debug, Clone)]
pub struct TracerOptions {
    /// The transport and its own settings (ring size, or perf pages and wakeup).
    pub transport: TransportOptions,
    /// A user's object instead of the built-in one (`--object`).
    pub object: Option<Vec<u8>>,
    /// Report only execs by this user id (the program's `.rodata` `filter_uid`).
    pub uid: Option<u32>,
}

impl TracerOptions {
    pub fn new(transport: Transport) -> Self {
        TracerOptions {
            transport: transport.default_options(),
            object: None,
            uid: None,
        }
    }
}

/// Data the tracer could not deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lost {
    /// The kernel's perf ring on `cpu` was full: `count` samples dropped (PERF_RECORD_LOST).
    PerfRing { cpu: u32, count: u64 },
    /// The BPF program could not reserve/output `count` records (ring full), per its `drops` map.
    Bpf { count: u64 },
}

/// A running tracer. Dropping it detaches the program and frees everything.
pub struct Tracer {
    // Field order is drop order: detach first, then the consumer, then the maps.
    link: Link,
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
        let layout = match &spec.btf {
            Some(btf) => event::layout_from_btf(btf)?.unwrap_or(BUILTIN_LAYOUT),
            None => BUILTIN_LAYOUT,
        };
        if transport.uses_ringbuf()
            && !sys::probe::ringbuf_supported().map_err(TracerError::Probe)?
        {
            return Err(TracerError::NoRingbuf);
        }
        let mut load_opts = LoadOptions::default();
        if let Some(size) = opts.transport.ring().and_then(|r| r.size) {
            load_opts.max_entries.insert(map_name.clone(), size);
        }
        if let Some(uid) = opts.uid {
            let var = spec.global_var("filter_uid").filter(|v| v.size == 4).ok_or_else(|| {
                TracerError::Missing(
                    "`const volatile __u32 filter_uid` in .rodata, which --uid sets (the built-in objects have it)"
                        .into(),
                )
            })?;
            load_opts
                .data_patches
                .push((var.section, var.offset, uid.to_ne_bytes().to_vec()));
        }
        let object = Object::load_with(&spec, &load_opts)?;
        let map = object
            .map(&map_name)
            .ok_or_else(|| TracerError::Missing(format!("map {map_name}")))?;
        let reader = Reader::open(map.fd(), map.spec.max_entries, &opts.transport)?;
        let prog = object
            .program(&prog_name)
            .ok_or_else(|| TracerError::Missing(format!("program {prog_name}")))?;
        let link = attach::attach(prog)?;
        let warnings = object.warnings.clone();
        Ok(Tracer {
            link,
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
        self.link.kind()
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
