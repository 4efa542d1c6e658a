//! A thin owned `epoll(7)` instance: `epoll_create1(EPOLL_CLOEXEC)`, register descriptors
//! with a caller-chosen `u64` token (optionally edge-triggered), wait for ready tokens.
//! The system calls are `nix`'s ([`nix::sys::epoll`]); this keeps the token/timeout
//! conventions every consumer relies on.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use nix::sys::epoll::{self as ep, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};

/// Readable (`EPOLLIN`).
pub const EPOLLIN: u32 = libc::EPOLLIN as u32;
/// Edge-triggered (`EPOLLET`): report only transitions (wakeups), not the level.
pub const EPOLLET: u32 = libc::EPOLLET as u32;

/// How many events one `epoll_wait` call collects at most (more stay queued for the next call).
const MAX_EVENTS: usize = 64;

/// An owned epoll instance.
#[derive(Debug)]
pub struct Epoll {
    inner: ep::Epoll,
}

impl Epoll {
    /// `epoll_create1(EPOLL_CLOEXEC)`.
    pub fn new() -> io::Result<Epoll> {
        let inner = ep::Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        Ok(Epoll { inner })
    }

    /// Registers `fd` for `events` (e.g. `EPOLLIN | EPOLLET`); `token` comes back from
    /// [`Epoll::wait`] when it is ready. The caller keeps `fd` open while registered.
    pub fn add(&self, fd: BorrowedFd<'_>, events: u32, token: u64) -> io::Result<()> {
        // The bits are the kernel's EPOLL* values; none is lost in the conversion.
        let flags = EpollFlags::from_bits_retain(events as libc::c_int);
        self.inner.add(fd, EpollEvent::new(flags, token))?;
        Ok(())
    }

    /// Registers `fd` as readable with `token`, edge-triggered if `edge` is set.
    pub fn add_readable(&self, fd: BorrowedFd<'_>, token: u64, edge: bool) -> io::Result<()> {
        let events = if edge { EPOLLIN | EPOLLET } else { EPOLLIN };
        self.add(fd, events, token)
    }

    /// Waits up to `timeout` (`None`: forever; sub-millisecond timeouts round up to 1 ms so a
    /// short timeout never degrades into a busy loop) and replaces `tokens` with the tokens
    /// of the ready descriptors. Returns how many. `EINTR` surfaces as
    /// [`io::ErrorKind::Interrupted`] so callers can check for a stop request.
    pub fn wait(&self, tokens: &mut Vec<u64>, timeout: Option<Duration>) -> io::Result<usize> {
        tokens.clear();
        let ms = EpollTimeout::try_from(timeout_ms(timeout)).unwrap_or(EpollTimeout::NONE);
        let mut events = [EpollEvent::empty(); MAX_EVENTS];
        let n = self.inner.wait(&mut events, ms)?.min(MAX_EVENTS);
        tokens.extend(events.iter().take(n).map(EpollEvent::data));
        Ok(n)
    }
}

/// `None` -> -1 (infinite); otherwise milliseconds rounded up, clamped to `i32::MAX`.
fn timeout_ms(timeout: Option<Duration>) -> libc::c_int {
    match timeout {
        None => -1,
        Some(d) => {
            let ms = d.as_nanos().div_ceil(1_000_000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    }
}

impl AsFd for Epoll {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.0.as_fd()
    }
}

impl AsRawFd for Epoll {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    fn pipe() -> (OwnedFd, OwnedFd) {
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe2")
    }

    fn write1(fd: &OwnedFd) {
        assert_eq!(nix::unistd::write(fd, &[1u8]), Ok(1));
    }

    #[test]
    fn timeout_rounding() {
        assert_eq!(timeout_ms(None), -1);
        assert_eq!(timeout_ms(Some(Duration::ZERO)), 0);
        assert_eq!(timeout_ms(Some(Duration::from_micros(1))), 1);
        assert_eq!(timeout_ms(Some(Duration::from_millis(250))), 250);
        assert_eq!(timeout_ms(Some(Duration::from_secs(u64::MAX))), i32::MAX);
    }

    #[test]
    fn level_and_edge_triggered_tokens() {
        let ep = Epoll::new().unwrap();
        let (r1, w1) = pipe();
        let (r2, w2) = pipe();
        ep.add_readable(r1.as_fd(), 11, false).unwrap();
        ep.add_readable(r2.as_fd(), 22, true).unwrap();
        let mut toks = Vec::new();
        assert_eq!(ep.wait(&mut toks, Some(Duration::ZERO)).unwrap(), 0);
        write1(&w1);
        write1(&w2);
        ep.wait(&mut toks, Some(Duration::from_secs(5))).unwrap();
        toks.sort_unstable();
        assert_eq!(toks, vec![11, 22]);
        // Nothing was read: level-triggered reports again, edge-triggered does not.
        ep.wait(&mut toks, Some(Duration::ZERO)).unwrap();
        assert_eq!(toks, vec![11]);
        // A new write is a new edge.
        write1(&w2);
        ep.wait(&mut toks, Some(Duration::ZERO)).unwrap();
        toks.sort_unstable();
        assert_eq!(toks, vec![11, 22]);
    }
}
