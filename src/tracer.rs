//! The exec tracer: one of the built-in objects (or a user's) loaded, its consumer set up,
//! its tracepoint attached; `poll` hands out events and lost-data notices.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::event::{self, EventLayout, EventRef, BUILTIN_LAYOUT};
use crate::loader::attach::{self, AttachError, Link};
use crate::loader::load::{LoadError, LoadOptions, Object};
use crate::loader::spec::{AttachPoint, ObjectSpec, ParseError};
use crate::perfbuf::{PerfBuf, PerfBufError, PerfBufOptions, PerfRecord, Wakeup};
use crate::ringbuf::{RingBuf, RingBufError};
use crate::sys::{self, bpf};

/// How records travel from the BPF program to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `bpf_ringbuf_reserve()` + `bpf_ringbuf_submit()`: written in place, no copy.
    RingbufReserve,
    /// `bpf_ringbuf_output()`: built in a per-CPU scratch map, then copied in.
    RingbufOutput,
    /// `bpf_perf_event_output()`: one perf ring per CPU.
    Perfbuf,
}

impl Transport {
    pub const ALL: [Transport; 3] = [
        Transport::RingbufReserve,
        Transport::RingbufOutput,
        Transport::Perfbuf,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Transport::RingbufReserve => "ringbuf-reserve",
            Transport::RingbufOutput => "ringbuf",
            Transport::Perfbuf => "perfbuf",
        }
    }

    /// Parses a name from [`Transport::name`] (the CLI flag without its dashes).
    pub fn from_name(s: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The built-in object for this transport.
    pub fn builtin_object(self) -> &'static [u8] {
        match self {
            Transport::RingbufReserve => crate::objects::RINGBUF_RESERVE,
            Transport::RingbufOutput => crate::objects::RINGBUF_OUTPUT,
            Transport::Perfbuf => crate::objects::PERFBUF_OUTPUT,
        }
    }

    fn uses_ringbuf(self) -> bool {
        self != Transport::Perfbuf
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error("reading the BPF object")]
    Parse(#[from] ParseError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Attach(#[from] AttachError),
    #[error("ring buffer")]
    RingBuf(#[from] RingBufError),
    #[error("perf buffer")]
    PerfBuf(#[from] PerfBufError),
    #[error(transparent)]
    Event(#[from] event::EventError),
    #[error("the object has no {0}")]
    Missing(String),
    #[error(
        "rawsnoop needs root, or the capabilities CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on \
         kernels before 5.8): run it with sudo"
    )]
    NoPrivilege,
    #[error("ringbuf needs Linux >= 5.8 and this kernel is {0}: use --perfbuf")]
    NoRingbuf(String),
}

/// What to trace with.
#[derive(Debug, Clone)]
pub struct TracerOptions {
    pub transport: Transport,
    /// A user's object instead of the built-in one (`--object`).
    pub object: Option<Vec<u8>>,
    /// Perf buffer pages per CPU (power of two); the demo's 8 by default.
    pub perf_pages: usize,
    /// When the kernel wakes us for perf buffer data.
    pub perf_wakeup: Wakeup,
    /// Ring buffer size in bytes instead of the object's (power of two, page multiple).
    pub ringbuf_size: Option<u32>,
    /// Report only execs by this user id (the program's `.rodata` `filter_uid`).
    pub uid: Option<u32>,
}

impl TracerOptions {
    pub fn new(transport: Transport) -> Self {
        TracerOptions {
            transport,
            object: None,
            perf_pages: 8,
            perf_wakeup: Wakeup::Events(1),
            ringbuf_size: None,
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

enum Source {
    Ring(RingBuf),
    Perf(PerfBuf),
}

/// A running tracer. Dropping it detaches the program and frees everything.
pub struct Tracer {
    // Field order is drop order: detach first, then the consumer, then the maps.
    link: Link,
    source: Source,
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
        let bytes: &[u8] = match &opts.object {
            Some(b) => b,
            None => opts.transport.builtin_object(),
        };
        let spec = ObjectSpec::parse(bytes)?;
        let prog_name = find_program(&spec)
            .ok_or_else(|| {
                TracerError::Missing(
                    "tracepoint program (SEC(\"tp/sched/sched_process_exec\"))".into(),
                )
            })?
            .to_string();
        let (map_type, preferred) = if opts.transport.uses_ringbuf() {
            (bpf::BPF_MAP_TYPE_RINGBUF, "rb")
        } else {
            (bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY, "pb")
        };
        let map_name = find_map(&spec, map_type, preferred)
            .ok_or_else(|| {
                TracerError::Missing(format!(
                    "{} map for --{}",
                    if opts.transport.uses_ringbuf() {
                        "BPF_MAP_TYPE_RINGBUF"
                    } else {
                        "BPF_MAP_TYPE_PERF_EVENT_ARRAY"
                    },
                    opts.transport.name()
                ))
            })?
            .to_string();
        let layout = match &spec.btf {
            Some(btf) => event::layout_from_btf(btf)?.unwrap_or(BUILTIN_LAYOUT),
            None => BUILTIN_LAYOUT,
        };
        if opts.transport.uses_ringbuf() {
            if let Some(v) =
                sys::kernel::version().filter(|v| *v < sys::kernel::KernelVersion(5, 8, 0))
            {
                return Err(TracerError::NoRingbuf(v.to_string()));
            }
        }
        // Resolve the tracepoint before anything is loaded (a missing or closed tracefs is
        // reported first), and load only the program we attach.
        let prog_spec = spec
            .program(&prog_name)
            .ok_or_else(|| TracerError::Missing(format!("program {prog_name}")))?;
        let tracepoint = attach::resolve(&prog_spec.attach, &prog_spec.name, &prog_spec.section)?;
        let mut load_opts = LoadOptions::default().only_program(&prog_name);
        if let Some(size) = opts.ringbuf_size {
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
        let source = if opts.transport.uses_ringbuf() {
            Source::Ring(RingBuf::new(map.fd(), map.spec.max_entries)?)
        } else {
            Source::Perf(PerfBuf::new(
                map.fd(),
                &PerfBufOptions {
                    pages_per_cpu: opts.perf_pages,
                    wakeup: opts.perf_wakeup,
                },
            )?)
        };
        let prog = object
            .program(&prog_name)
            .ok_or_else(|| TracerError::Missing(format!("program {prog_name}")))?;
        let link = attach::attach_resolved(prog, &tracepoint)?;
        let warnings = object.warnings.clone();
        Ok(Tracer {
            link,
            source,
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
        mut on_event: E,
        mut on_lost: L,
    ) -> Result<usize, TracerError>
    where
        E: FnMut(EventRef<'_>) -> ControlFlow<()>,
        L: FnMut(Lost),
    {
        let layout = self.layout;
        let mut bad: Option<event::EventError> = None;
        let mut events = 0usize;
        // One record's bytes -> an event for the caller, or stop at a malformed one.
        let mut deliver = |raw: &[u8]| match EventRef::parse(raw, &layout) {
            Ok(e) => {
                events += 1;
                on_event(e)
            }
            Err(err) => {
                bad = Some(err);
                ControlFlow::Break(())
            }
        };
        match &mut self.source {
            Source::Ring(rb) => {
                rb.poll(timeout, deliver)?;
            }
            Source::Perf(pb) => {
                let perf_lost = &mut self.perf_lost;
                pb.poll(timeout, |rec| match rec {
                    PerfRecord::Sample { data, .. } => deliver(data),
                    PerfRecord::Lost { cpu, count } => {
                        *perf_lost += count;
                        on_lost(Lost::PerfRing { cpu, count });
                        ControlFlow::Continue(())
                    }
                })?;
            }
        }
        if let Some(err) = bad {
            return Err(err.into());
        }
        // Losses the BPF program counted. For the perf buffer, ring-full losses already
        // came as PERF_RECORD_LOST: report only what goes beyond those.
        let counted = self.bpf_drops();
        let already = if matches!(self.source, Source::Perf(_)) {
            self.perf_lost
        } else {
            0
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
    pub fn as_fd(&self) -> std::os::fd::RawFd {
        match &self.source {
            Source::Ring(rb) => rb.as_raw_fd(),
            Source::Perf(pb) => pb.as_raw_fd(),
        }
    }
}
