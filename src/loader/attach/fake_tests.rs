//! Tracepoint attach against a faked kernel and tracefs (`crate::sys::fake`): the id lookup,
//! the perf event it opens, the two ways a program goes onto it (a BPF link, or SET_BPF +
//! ENABLE) and how refusals are reported. No privilege needed; the real-kernel tests in tests/
//! stay as they are.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use super::{attach, attach_tracepoint, AttachError, Link};
use crate::loader::core::BtfSource;
use crate::loader::load::{LoadOptions, Object};
use crate::loader::ObjectSpec;
use crate::sys::fake::kernel::{
    Call, FakeKernel, PERF_EVENT_IOC_DISABLE, PERF_EVENT_IOC_ENABLE, PERF_EVENT_IOC_SET_BPF,
};
use crate::sys::perf::{PERF_FLAG_FD_CLOEXEC, PERF_TYPE_TRACEPOINT};
use crate::sys::uapi::BPF_PERF_EVENT;

/// The built-in ringbuf object's `handle_exec` (tp/sched/sched_process_exec), loaded into
/// `fake`.
fn exec_object() -> Object {
    let spec = ObjectSpec::parse(crate::objects::RINGBUF_RESERVE).unwrap();
    let opts = LoadOptions {
        btf: BtfSource::None,
        ..LoadOptions::default()
    }
    .only_program("handle_exec");
    Object::load_with(&spec, &opts).expect("load against the fake kernel")
}

/// The calls after the load (from the first perf_event_open on).
fn attach_calls(k: &FakeKernel) -> Vec<Call> {
    let calls = k.calls();
    let first = calls
        .iter()
        .position(|c| matches!(c, Call::PerfEventOpen { .. }))
        .expect("a perf event was opened");
    calls[first..].to_vec()
}

fn perf_fd(calls: &[Call]) -> RawFd {
    match &calls[0] {
        Call::PerfEventOpen {
            attr,
            pid,
            cpu,
            group_fd,
            flags,
            fd,
        } => {
            // The tracepoint's id from tracefs, one sample per hit, all processes, CPU 0.
            assert_eq!(attr.type_, PERF_TYPE_TRACEPOINT);
            assert_eq!(attr.config, 365, "events/sched/sched_process_exec/id");
            assert_eq!(attr.sample_period, 1);
            assert_eq!(attr.size, crate::sys::perf::PERF_ATTR_SIZE_VER8);
            assert_eq!((*pid, *cpu, *group_fd), (-1, 0, -1));
            assert_eq!(*flags, PERF_FLAG_FD_CLOEXEC);
            *fd
        }
        other => panic!("expected perf_event_open first, got {other:?}"),
    }
}

#[test]
fn tracepoint_without_perf_links_opens_the_event_then_set_bpf_then_enable() {
    let k = FakeKernel::new();
    k.state.borrow_mut().perf_link = false;
    let obj = exec_object();
    let prog = obj.program("handle_exec").unwrap();
    let link = attach(prog).expect("attach against the fake");
    assert_eq!(link.kind(), "perf_event_ioctl");
    let calls = attach_calls(&k);
    let pfd = perf_fd(&calls);
    let ioctls: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::PerfIoctl { fd, request, arg } => Some((*fd, *request, *arg)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ioctls,
        [
            (
                pfd,
                PERF_EVENT_IOC_SET_BPF,
                prog.fd().as_raw_fd() as libc::c_ulong
            ),
            (pfd, PERF_EVENT_IOC_ENABLE, 0),
        ]
    );
    assert!(
        !calls
            .iter()
            .any(|c| matches!(c, Call::LinkCreate { target_fd, .. } if *target_fd != -1)),
        "no BPF link without kernel support: {calls:#?}"
    );
    // Detaching disables the event before its fd closes.
    drop(link);
    assert!(matches!(
        k.calls().last(),
        Some(Call::PerfIoctl { fd, request: PERF_EVENT_IOC_DISABLE, .. }) if *fd == pfd
    ));
}

#[test]
fn tracepoint_with_perf_links_makes_a_bpf_link_on_the_event() {
    let k = FakeKernel::new();
    let obj = exec_object();
    let prog = obj.program("handle_exec").unwrap();
    let link = attach_tracepoint(prog, "sched", "sched_process_exec").expect("attach");
    assert!(matches!(link, Link::Bpf { .. }), "{link:?}");
    let calls = attach_calls(&k);
    let pfd = perf_fd(&calls);
    let links: Vec<_> = calls
        .iter()
        .filter_map(|c| match c {
            Call::LinkCreate {
                prog_fd,
                target_fd,
                attach_type,
            } if *target_fd != -1 => Some((*prog_fd, *target_fd, *attach_type)),
            _ => None,
        })
        .collect();
    assert_eq!(links, [(prog.fd().as_raw_fd(), pfd, BPF_PERF_EVENT)]);
    assert!(
        !calls.iter().any(|c| matches!(c, Call::PerfIoctl { .. })),
        "{calls:#?}"
    );
}

#[test]
fn a_missing_tracepoint_names_it_and_says_where_to_look() {
    let k = FakeKernel::new();
    let obj = exec_object();
    k.tracefs.remove_event("sched", "sched_process_exec");
    let before = k.calls().len();
    let err = attach(obj.program("handle_exec").unwrap()).expect_err("no such tracepoint");
    assert!(matches!(err, AttachError::NoTracepoint { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("tracepoint sched/sched_process_exec does not exist"),
        "{text}"
    );
    let events = k.tracefs.root().join("events").join("sched");
    assert!(
        text.contains(&format!("check `ls {}`", events.display())),
        "{text}"
    );
    // Nothing was opened for it.
    assert_eq!(k.calls().len(), before, "{:#?}", &k.calls()[before..]);
}

#[test]
fn a_refused_perf_event_is_a_privilege_error() {
    for errno in [libc::EACCES, libc::EPERM] {
        let k = FakeKernel::new();
        let obj = exec_object();
        k.fail(move |c| {
            matches!(c, Call::PerfEventOpen { .. }).then(|| io::Error::from_raw_os_error(errno))
        });
        match attach(obj.program("handle_exec").unwrap()) {
            Err(e @ AttachError::Permission(_)) => {
                assert!(e.to_string().contains("sched/sched_process_exec"), "{e}");
                assert!(e.to_string().contains("run as root"), "{e}");
            }
            other => panic!("errno {errno}: expected a permission error, got {other:?}"),
        }
    }
}

#[test]
fn set_bpf_refused_with_eacces_points_at_the_format_file() {
    let k = FakeKernel::new();
    k.state.borrow_mut().perf_link = false;
    let obj = exec_object();
    k.fail(|c| {
        matches!(
            c,
            Call::PerfIoctl {
                request: PERF_EVENT_IOC_SET_BPF,
                ..
            }
        )
        .then(|| io::Error::from_raw_os_error(libc::EACCES))
    });
    let err = attach(obj.program("handle_exec").unwrap()).expect_err("refused");
    let AttachError::CtxPastRecord { format, .. } = &err else {
        panic!("expected CtxPastRecord, got {err:?}");
    };
    let want = k
        .tracefs
        .root()
        .join("events/sched/sched_process_exec/format");
    assert_eq!(format, &want.display().to_string());
    assert!(err.to_string().contains("fix the context struct"), "{err}");
    // ENABLE never followed the refused SET_BPF.
    assert!(!k.calls().iter().any(|c| matches!(
        c,
        Call::PerfIoctl {
            request: PERF_EVENT_IOC_ENABLE,
            ..
        }
    )));
}

#[test]
fn other_attach_failures_keep_their_cause() {
    let k = FakeKernel::new();
    let obj = exec_object();
    k.fail(|c| {
        matches!(c, Call::LinkCreate { target_fd, .. } if *target_fd != -1)
            .then(|| io::Error::from_raw_os_error(libc::EBUSY))
    });
    match attach(obj.program("handle_exec").unwrap()) {
        Err(AttachError::Attach {
            program,
            target,
            source,
        }) => {
            assert_eq!(program, "handle_exec");
            assert_eq!(target, "sched/sched_process_exec");
            assert_eq!(source.raw_os_error(), Some(libc::EBUSY));
        }
        other => panic!("expected an attach error, got {other:?}"),
    }
}

#[test]
fn raw_tp_and_tp_btf_links_probe_the_kernel_by_trying() {
    use crate::loader::attach_raw::{open_raw_tp, open_tp_btf};
    use crate::sys::uapi::BPF_TRACE_RAW_TP;
    let k = FakeKernel::new();
    let obj = exec_object();
    let prog = obj.program("handle_exec").unwrap().fd();
    let after = |k: &FakeKernel, n: usize| k.calls()[n..].to_vec();
    // raw_tp: BPF_RAW_TRACEPOINT_OPEN with the tracepoint's name.
    let n = k.calls().len();
    open_raw_tp("sched_process_exec", prog).expect("raw_tp");
    assert!(matches!(&after(&k, n)[..],
        [Call::RawTracepointOpen { name: Some(t) }] if t == "sched_process_exec"));
    // tp_btf on a kernel with tracing links (6.10+): one BPF_LINK_CREATE.
    let n = k.calls().len();
    open_tp_btf(prog).expect("tp_btf by link");
    assert!(matches!(
        &after(&k, n)[..],
        [Call::LinkCreate {
            attach_type: BPF_TRACE_RAW_TP,
            ..
        }]
    ));
    // Before: EINVAL, then BPF_RAW_TRACEPOINT_OPEN without a name (the target is the
    // program's attach_btf_id).
    k.state.borrow_mut().perf_link = false;
    let n = k.calls().len();
    open_tp_btf(prog).expect("tp_btf by raw tracepoint");
    assert!(matches!(
        &after(&k, n)[..],
        [
            Call::LinkCreate { .. },
            Call::RawTracepointOpen { name: None }
        ]
    ));
    // Any other refusal is not a missing feature: no fallback.
    k.state.borrow_mut().perf_link = true;
    k.fail(|c| {
        matches!(c, Call::LinkCreate { .. }).then(|| io::Error::from_raw_os_error(libc::EPERM))
    });
    let n = k.calls().len();
    let e = open_tp_btf(prog).expect_err("refused");
    assert_eq!(e.raw_os_error(), Some(libc::EPERM));
    assert_eq!(after(&k, n).len(), 1);
}
