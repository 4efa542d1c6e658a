//! The kernel's system calls faked for unit tests that need no privilege, in the way aya's
//! `sys/fake.rs` does it: every raw call in `sys` (`bpf(2)`, `perf_event_open(2)` and its
//! ioctls, the `mmap(2)` of a ring, `capget(2)`) asks [`call`] first, in test builds only, and a
//! test that installed a handler with [`override_syscall`] (or [`override_bpf`] for `bpf(2)`
//! alone) answers instead of the kernel. tracefs is faked by pointing its root at a directory
//! laid out like it ([`override_tracefs`]; [`kernel::TempTracefs`] builds one), so the
//! tracepoint id and `format` reads are ordinary file reads of that tree.
//!
//! Overrides are per thread (tests run in parallel) and removed when their guard drops; they
//! do not nest (a second override replaces the first, and either guard removes it). While
//! one is installed, the per-process caches above `sys` (tracefs root, perf link and BTF
//! feature probes) are bypassed, so a fake never leaks into a real-kernel test of the same
//! binary (see [`active`]).
//!
//! A handler sees the call and returns `Some` of what the syscall would (for fd-returning
//! calls a descriptor the handler owns no longer: see [`fresh_fd`]), or `None` to let the real
//! call happen. For [`Syscall::Mmap`] an `Ok` answer means "map anonymous memory of that
//! length instead": a fake fd cannot be mapped, and an anonymous zeroed mapping has the shape
//! the consumers expect (a ring with both positions 0; a perf metadata page whose
//! `data_offset`/`data_size` are 0, read as "data at the second page").

pub(crate) mod kernel;

use std::cell::RefCell;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use super::perf::PerfEventAttr;

/// One raw call `sys` is about to make.
#[derive(Debug)]
pub(crate) enum Syscall<'a> {
    /// `bpf(cmd, attr, attr.len())`; `attr` is mutable: the fake may write what the kernel
    /// writes (a verifier log through `log_buf`, `info_len`, a test run's `retval`).
    Bpf { cmd: u32, attr: &'a mut [u8] },
    /// `perf_event_open(attr, pid, cpu, group_fd, flags)`.
    PerfEventOpen {
        attr: &'a PerfEventAttr,
        pid: i32,
        cpu: i32,
        group_fd: i32,
        flags: libc::c_ulong,
    },
    /// `ioctl(fd, request, arg)` on a perf event (ENABLE, DISABLE, SET_BPF).
    PerfEventIoctl {
        fd: RawFd,
        request: libc::c_ulong,
        arg: libc::c_ulong,
    },
    /// `mmap(NULL, len, PROT_READ[|PROT_WRITE], MAP_SHARED, fd, offset)`: `Ok` maps anonymous
    /// memory of `len` bytes instead.
    Mmap {
        fd: RawFd,
        offset: u64,
        len: usize,
        writable: bool,
    },
    /// `capget(2)` of this process: `Ok` is the effective capability set as a bit mask.
    Capget,
}

/// A fake system call: `Some(answer)`, or `None` for the real call.
pub(crate) type Handler = Box<dyn FnMut(Syscall<'_>) -> Option<io::Result<libc::c_long>>>;

#[derive(Default)]
struct Fakes {
    handler: Option<Handler>,
    tracefs: Option<PathBuf>,
}

thread_local! {
    static FAKES: RefCell<Fakes> = RefCell::new(Fakes::default());
}

/// What a [`Guard`] removes when it drops.
enum Part {
    Syscalls,
    Tracefs,
}

/// Removes its override when dropped.
pub(crate) struct Guard(Part);

impl Drop for Guard {
    fn drop(&mut self) {
        FAKES.with(|f| {
            let mut f = f.borrow_mut();
            match self.0 {
                Part::Syscalls => drop(f.handler.take()),
                Part::Tracefs => f.tracefs = None,
            }
        });
    }
}

/// Routes this thread's system calls in `sys` to `handler` until the guard drops.
pub(crate) fn override_syscall(
    handler: impl FnMut(Syscall<'_>) -> Option<io::Result<libc::c_long>> + 'static,
) -> Guard {
    FAKES.with(|f| f.borrow_mut().handler = Some(Box::new(handler)));
    Guard(Part::Syscalls)
}

/// Routes this thread's `bpf(2)` calls (only) to `handler` until the guard drops.
pub(crate) fn override_bpf(
    mut handler: impl FnMut(u32, &mut [u8]) -> io::Result<libc::c_long> + 'static,
) -> Guard {
    override_syscall(move |call| match call {
        Syscall::Bpf { cmd, attr } => Some(handler(cmd, attr)),
        _ => None,
    })
}

/// Makes `root` this thread's tracefs (what `tracefs::find_or_mount` returns) until the guard
/// drops.
pub(crate) fn override_tracefs(root: PathBuf) -> Guard {
    FAKES.with(|f| f.borrow_mut().tracefs = Some(root));
    Guard(Part::Tracefs)
}

/// The fake's answer, or `None` when no override is installed or it passes (the real call
/// happens).
pub(crate) fn call(syscall: Syscall<'_>) -> Option<io::Result<libc::c_long>> {
    // The handler is taken out while it runs, so a handler that itself calls into `sys`
    // (e.g. to make a descriptor) reaches the real kernel instead of a RefCell panic.
    let mut handler = FAKES.with(|f| f.borrow_mut().handler.take())?;
    let answer = handler(syscall);
    FAKES.with(|f| {
        let mut f = f.borrow_mut();
        if f.handler.is_none() {
            f.handler = Some(handler);
        }
    });
    answer
}

/// This thread's fake tracefs root, if one is installed.
pub(crate) fn tracefs_root() -> Option<PathBuf> {
    FAKES.with(|f| f.borrow().tracefs.clone())
}

/// True while this thread has any override installed: process-wide caches of kernel facts
/// must neither answer from nor store into their cache then.
pub(crate) fn active() -> bool {
    FAKES.with(|f| {
        let f = f.borrow();
        f.handler.is_some() || f.tracefs.is_some()
    })
}

/// A new descriptor to return from a faked fd-returning call: a non-blocking eventfd, which
/// (unlike `/dev/null`) an epoll instance accepts, so consumers can register it. The caller
/// wraps it in an `OwnedFd` and closes it.
pub(crate) fn fresh_fd() -> libc::c_long {
    let ev = nix::sys::eventfd::EventFd::from_value_and_flags(
        0,
        nix::sys::eventfd::EfdFlags::EFD_NONBLOCK | nix::sys::eventfd::EfdFlags::EFD_CLOEXEC,
    )
    .expect("eventfd for a fake fd");
    let fd: OwnedFd = ev.into();
    libc::c_long::from(fd.into_raw_fd())
}
