//! Attaching loaded programs: tracepoints through a perf event, as a BPF link where the
//! kernel has perf links (probed, never guessed from the version), else with
//! PERF_EVENT_IOC_SET_BPF + ENABLE.
//!
//! Two steps, so a caller can find out that the tracepoint is missing or closed to it before
//! it loads anything: [`resolve`] (tracefs, the tracepoint's id) and [`attach_resolved`].

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::escape::escape_str;
use crate::loader::load::Program;
use crate::loader::spec::AttachPoint;
use crate::sys::{bpf, perf, tracefs};

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("program '{}' has no attach point we know (section '{}'); only tracepoints (tp/..., tracepoint/...), tp_btf/... and raw_tp/... attach", escape_str(.0), escape_str(.1))]
    Unsupported(String, String),
    #[error("cannot use tracefs")]
    Tracefs(#[source] io::Error),
    #[error(
        "tracepoint {}/{} does not exist on this kernel ({}); check `ls {}` or pick \
         another tracepoint", escape_str(.category), escape_str(.name), escape_str(.path),
        escape_str(.events)
    )]
    NoTracepoint {
        category: String,
        name: String,
        path: String,
        events: String,
        source: io::Error,
    },
    #[error(
        "tracepoint {}/{}: this process may not read {}: run as root, or let this user \
         read tracefs", escape_str(.category), escape_str(.name), escape_str(.path)
    )]
    TracepointDenied {
        category: String,
        name: String,
        path: String,
        source: io::Error,
    },
    #[error(
        "permission denied opening a perf event for tracepoint {}: run as root, or grant CAP_PERFMON and CAP_BPF",
        escape_str(.0)
    )]
    Permission(String),
    #[error(
        "the kernel refused to attach '{}' to tracepoint {} (EACCES): the program reads its \
         context past the end of the tracepoint's record; its fields and their offsets are in \
         {}: fix the context struct the program reads",
        escape_str(.program), escape_str(.target), escape_str(.format)
    )]
    CtxPastRecord {
        program: String,
        target: String,
        format: String,
        source: io::Error,
    },
    #[error("attaching '{}' to {} failed", escape_str(.program), escape_str(.target))]
    Attach {
        program: String,
        target: String,
        source: io::Error,
    },
}

/// How a program is attached; both forms detach when dropped.
#[derive(Debug)]
pub enum Link {
    /// A BPF link (kernel >= 5.15): closing the link fd detaches.
    Bpf { link: OwnedFd, _perf: OwnedFd },
    /// Legacy: the program is set on the perf event; disabling and closing it detaches.
    PerfEvent { perf: OwnedFd },
    /// A raw tracepoint / tp_btf link (see [`crate::loader::attach_raw`]).
    RawTp { link: OwnedFd },
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
    #[cfg(test)]
    if crate::sys::fake::active() {
        // A faked tracefs (sys::fake) is per thread: never cached.
        return tracefs::find_or_mount().map_err(AttachError::Tracefs);
    }
    static ROOT: OnceLock<Result<PathBuf, (io::ErrorKind, String)>> = OnceLock::new();
    ROOT.get_or_init(|| tracefs::find_or_mount().map_err(|e| (e.kind(), e.to_string())))
        .clone()
        .map_err(|(kind, text)| AttachError::Tracefs(io::Error::new(kind, text)))
}

/// Whether the kernel has BPF links on perf events (5.15+, or backported), probed once the way
/// libbpf does: a trivial tracepoint program linked to fd -1 gets EBADF when the kernel knows
/// the attach type, EINVAL when it does not.
pub fn perf_link_supported() -> bool {
    #[cfg(test)]
    if crate::sys::fake::active() {
        // A faked kernel (sys::fake) is per thread: ask it, and never cache its answer.
        return probe_perf_link();
    }
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(probe_perf_link)
}

fn probe_perf_link() -> bool {
    // r0 = 0; exit
    let insns: [u64; 2] = [
        u64::from_ne_bytes([0xb7, 0, 0, 0, 0, 0, 0, 0]),
        u64::from_ne_bytes([0x95, 0, 0, 0, 0, 0, 0, 0]),
    ];
    let attr = bpf::ProgLoad {
        prog_type: bpf::BPF_PROG_TYPE_TRACEPOINT,
        name: "rsnp_probe",
        insns: &insns,
        license: "GPL",
        ..Default::default()
    };
    let Ok(prog) = bpf::prog_load(&attr, None) else {
        return false;
    };
    match bpf::link_create_perf_event_raw(prog.as_fd(), -1) {
        Ok(_) => false, // cannot happen with fd -1; do not trust it
        Err(e) => e.raw_os_error() == Some(libc::EBADF),
    }
}

/// A tracepoint found in tracefs, ready for [`attach_resolved`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tracepoint {
    pub category: String,
    pub name: String,
    /// The tracepoint's id (`events/<category>/<name>/id`), for perf_event_open.
    pub id: u64,
    /// Its `format` file, for error messages.
    format: String,
}

/// Finds where a program with `attach` would attach, without loading anything: tracefs and
/// the tracepoint's id. `program` and `section` name it in errors.
pub fn resolve(
    attach: &AttachPoint,
    program: &str,
    section: &str,
) -> Result<Tracepoint, AttachError> {
    let AttachPoint::Tracepoint { category, name } = attach else {
        return Err(AttachError::Unsupported(program.into(), section.into()));
    };
    resolve_tracepoint(category, name)
}

/// Finds tracepoint `category/name` in tracefs (see [`resolve`]).
pub fn resolve_tracepoint(category: &str, name: &str) -> Result<Tracepoint, AttachError> {
    let root = tracefs_root()?;
    let dir = root.join("events").join(category).join(name);
    let path = dir.join("id").display().to_string();
    let id = tracefs::tracepoint_id(&root, category, name).map_err(|source| {
        if source.kind() == io::ErrorKind::PermissionDenied {
            AttachError::TracepointDenied {
                category: category.into(),
                name: name.into(),
                path: path.clone(),
                source,
            }
        } else {
            AttachError::NoTracepoint {
                category: category.into(),
                name: name.into(),
                path: path.clone(),
                events: root.join("events").join(category).display().to_string(),
                source,
            }
        }
    })?;
    Ok(Tracepoint {
        category: category.into(),
        name: name.into(),
        id,
        format: dir.join("format").display().to_string(),
    })
}

/// Attaches `prog` where its section says (`tp/<category>/<name>`, `tp_btf/<name>`, `raw_tp/<name>`).
pub fn attach(prog: &Program) -> Result<Link, AttachError> {
    use crate::loader::attach_raw::{open_raw_tp, open_tp_btf};
    let (target, link) = match &prog.attach {
        AttachPoint::TpBtf { name } => (format!("tp_btf/{name}"), open_tp_btf(prog.fd())),
        AttachPoint::RawTracepoint { name } => {
            (format!("raw_tp/{name}"), open_raw_tp(name, prog.fd()))
        }
        _ => return attach_resolved(prog, &resolve(&prog.attach, &prog.name, &prog.section)?),
    };
    link.map(|link| Link::RawTp { link })
        .map_err(|source| match source.raw_os_error() {
            Some(libc::EPERM) | Some(libc::EACCES) => AttachError::Permission(target),
            _ => AttachError::Attach {
                program: prog.name.clone(),
                target,
                source,
            },
        })
}

/// Attaches `prog` to tracepoint `category/name`.
pub fn attach_tracepoint(prog: &Program, category: &str, name: &str) -> Result<Link, AttachError> {
    attach_resolved(prog, &resolve_tracepoint(category, name)?)
}

/// Attaches `prog` to a tracepoint found by [`resolve`].
pub fn attach_resolved(prog: &Program, tp: &Tracepoint) -> Result<Link, AttachError> {
    let target = format!("{}/{}", tp.category, tp.name);
    let fail = |source: io::Error| {
        if source.raw_os_error() == Some(libc::EACCES) {
            // perf_event_set_bpf_prog: the program's max_ctx_offset is past the record.
            AttachError::CtxPastRecord {
                program: prog.name.clone(),
                target: target.clone(),
                format: tp.format.clone(),
                source,
            }
        } else {
            AttachError::Attach {
                program: prog.name.clone(),
                target: target.clone(),
                source,
            }
        }
    };
    let pfd = perf::open_tracepoint(tp.id).map_err(|e| match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => AttachError::Permission(target.clone()),
        _ => AttachError::Attach {
            program: prog.name.clone(),
            target: target.clone(),
            source: e,
        },
    })?;
    if perf_link_supported() {
        let link = bpf::link_create_perf_event(prog.fd(), pfd.as_fd()).map_err(fail)?;
        return Ok(Link::Bpf { link, _perf: pfd });
    }
    perf::ioc_set_bpf(pfd.as_fd(), prog.fd()).map_err(fail)?;
    perf::ioc_enable(pfd.as_fd()).map_err(fail)?;
    Ok(Link::PerfEvent { perf: pfd })
}

#[cfg(test)]
mod fake_tests;
