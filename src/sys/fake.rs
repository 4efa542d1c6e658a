//! The `bpf(2)` call faked for unit tests that need no privilege, in the way aya's
//! `sys/fake.rs` does it: [`sys_bpf`](super::bpf) asks [`call`] first, in test builds only,
//! and a test that installed a handler with [`override_bpf`] answers instead of the kernel.
//! The override is per thread (tests run in parallel) and removed when the guard drops.
//!
//! A handler sees the command and the attribute bytes (mutable: it may write what the kernel
//! writes, e.g. a verifier log through `log_buf`) and returns what the syscall would: a
//! value (for fd-returning commands, a descriptor the handler owns no longer; see
//! [`fresh_fd`]) or an `io::Error`.

use std::cell::RefCell;
use std::io;
use std::os::fd::{IntoRawFd, OwnedFd};

/// A fake `bpf(cmd, attr, size)`.
pub(crate) type Handler = Box<dyn FnMut(u32, &mut [u8]) -> io::Result<libc::c_long>>;

thread_local! {
    static HANDLER: RefCell<Option<Handler>> = const { RefCell::new(None) };
}

/// Removes the override when dropped.
pub(crate) struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        HANDLER.with(|h| h.borrow_mut().take());
    }
}

/// Routes this thread's `bpf(2)` calls to `handler` until the guard drops.
pub(crate) fn override_bpf(
    handler: impl FnMut(u32, &mut [u8]) -> io::Result<libc::c_long> + 'static,
) -> Guard {
    HANDLER.with(|h| *h.borrow_mut() = Some(Box::new(handler)));
    Guard(())
}

/// The fake's answer, or `None` when no override is installed (the real call happens).
pub(crate) fn call(cmd: u32, attr: &mut [u8]) -> Option<io::Result<libc::c_long>> {
    HANDLER.with(|h| h.borrow_mut().as_mut().map(|f| f(cmd, attr)))
}

/// A new descriptor (`/dev/null`) to return from a faked fd-returning command: the caller
/// wraps it in an `OwnedFd` and closes it.
pub(crate) fn fresh_fd() -> libc::c_long {
    let fd: OwnedFd = std::fs::File::open("/dev/null")
        .expect("/dev/null for a fake bpf fd")
        .into();
    libc::c_long::from(fd.into_raw_fd())
}
