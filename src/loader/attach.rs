//! Attaching loaded programs: tracepoints through a perf event, as a BPF link where the
//! kernel has perf links (>= 5.15), else with PERF_EVENT_IOC_SET_BPF + ENABLE.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

use crate::loader::load::Program;
use crate::loader::spec::AttachPoint;
use crate::sys::{bpf, perf, tracefs};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("program '{0}' has no attach point we know (section '{1}'); only tracepoints (tp/..., tracepoint/...), tp_btf/... and raw_tp/... attach")]
    Unsupported(String, String),
    #[error("cannot find tracefs: {0}")]
    Tracefs(io::Error),
    #[error(
        "tracepoint {category}/{name} does not exist on this kernel ({path}: {source}); \
         check `ls {events}` or pick another tracepoint"
    )]
    NoTracepoint {
        category: String,
        name: String,
        path: String,
        events: String,
        source: io::Error,
    },
    #[error(
        "permission denied opening a perf event for tracepoint {0}: run as root, or grant CAP_PERFMON and CAP_BPF"
    )]
    Permission(String),
    #[error("attaching '{program}' to {target} failed: {source}")]
    Attach {
        program: String,
        target: String,
        source: io::Error,
    },
}

/// How a program is attached; both forms detach when dropped.
#[derive(Debug)]
pub enum Link {
    /// A raw tracepoint / tp_btf link (BPF_RAW_TRACEPOINT_OPEN or BPF_LINK_CREATE).
    RawTp { link: OwnedFd },
    /// A BPF link (kernel >= 5.15): closing the link fd detaches.
    Bpf { link: OwnedFd, _perf: OwnedFd },
    /// Legacy: the program is set on the perf event; disabling and closing it detaches.
    PerfEvent { perf: OwnedFd },
}

impl Link {
    /// Short name of the mechanism, for `-v` output and tests.
    pub fn kind(&self) -> &'static str {
        match self {
            Link::Bpf { .. } => "bpf_link",
            Link::PerfEvent { .. } => "perf_event_ioctl",
            Link::RawTp { .. } => "raw_tracepoint",
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Link::PerfEvent { perf } = self {
            // Best effort: stop events before the fd (and with it the program) goes away.
            let _ = perf::ioc_disable(perf.as_fd());
        }
    }
}

/// The tracefs root, found or mounted once per process.
pub fn tracefs_root() -> Result<PathBuf, AttachError> {
    static ROOT: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| tracefs::find_or_mount().map_err(|e| e.to_string()))
        .clone()
        .map_err(|e| AttachError::Tracefs(io::Error::other(e)))
}

/// Attaches `prog` where its section says (`tp/<category>/<name>`).
pub fn attach(prog: &Program) -> Result<Link, AttachError> {
    match &prog.attach {
        AttachPoint::Tracepoint { category, name } => attach_tracepoint(prog, category, name),
        AttachPoint::TpBtf { name } => attach_tp_btf(prog, name),
        AttachPoint::RawTracepoint { name } => attach_raw_tracepoint(prog, name),
        AttachPoint::None => Err(AttachError::Unsupported(
            prog.name.clone(),
            prog.section.clone(),
        )),
    }
}

/// Attaches `prog` to tracepoint `category/name`.
pub fn attach_tracepoint(prog: &Program, category: &str, name: &str) -> Result<Link, AttachError> {
    let root = tracefs_root()?;
    let id = tracefs::tracepoint_id(&root, category, name).map_err(|source| {
        AttachError::NoTracepoint {
            category: category.into(),
            name: name.into(),
            path: root
                .join("events")
                .join(category)
                .join(name)
                .join("id")
                .display()
                .to_string(),
            events: root.join("events").join(category).display().to_string(),
            source,
        }
    })?;
    let target = format!("{category}/{name}");
    let pfd = perf::open_tracepoint(id).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => AttachError::Permission(target.clone()),
        _ => AttachError::Attach {
            program: prog.name.clone(),
            target: target.clone(),
            source: e,
        },
    })?;
    match bpf::link_create_perf_event(prog.fd(), pfd.as_fd()) {
        Ok(link) => return Ok(Link::Bpf { link, _perf: pfd }),
        // Older kernels: no perf links (EINVAL for the unknown attach type or E2BIG for
        // the larger attr). Fall back to the ioctl.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::E2BIG) | Some(libc::EOPNOTSUPP)
            ) => {}
        Err(e) => {
            return Err(AttachError::Attach {
                program: prog.name.clone(),
                target,
                source: e,
            })
        }
    }
    let fail = |source| AttachError::Attach {
        program: prog.name.clone(),
        target: target.clone(),
        source,
    };
    perf::ioc_set_bpf(pfd.as_fd(), prog.fd()).map_err(fail)?;
    perf::ioc_enable(pfd.as_fd()).map_err(fail)?;
    Ok(Link::PerfEvent { perf: pfd })
}

fn attach_err(prog: &Program, target: String, source: io::Error) -> AttachError {
    match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => AttachError::Permission(target),
        _ => AttachError::Attach {
            program: prog.name.clone(),
            target,
            source,
        },
    }
}

/// Attaches a `tp_btf/<name>` program (loaded with attach_btf_id = `btf_trace_<name>`): a
/// BPF_LINK_CREATE tracing link where the kernel has one for raw tracepoints (>= 6.10), else
/// BPF_RAW_TRACEPOINT_OPEN without a name. Probed by trying, not by version.
pub fn attach_tp_btf(prog: &Program, name: &str) -> Result<Link, AttachError> {
    match bpf::link_create_tracing(prog.fd(), crate::sys::uapi::BPF_TRACE_RAW_TP) {
        Ok(link) => return Ok(Link::RawTp { link }),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::E2BIG) | Some(libc::EOPNOTSUPP)
            ) => {}
        Err(e) => return Err(attach_err(prog, format!("tp_btf/{name}"), e)),
    }
    bpf::raw_tracepoint_open(None, prog.fd())
        .map(|link| Link::RawTp { link })
        .map_err(|e| attach_err(prog, format!("tp_btf/{name}"), e))
}

/// Attaches a `raw_tp/<name>` program with BPF_RAW_TRACEPOINT_OPEN (every kernel we support).
pub fn attach_raw_tracepoint(prog: &Program, name: &str) -> Result<Link, AttachError> {
    bpf::raw_tracepoint_open(Some(name), prog.fd())
        .map(|link| Link::RawTp { link })
        .map_err(|e| attach_err(prog, format!("raw_tp/{name}"), e))
}
