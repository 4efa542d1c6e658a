//! A non-blocking `eventfd(2)`: a counter that is readable while non-zero. The consumers
//! register one in their epoll to keep it readable when they leave records behind. The calls
//! are `nix`'s ([`nix::sys::eventfd`]); this keeps the "already in that state is fine" rules.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use nix::errno::Errno;
use nix::sys::eventfd::{self as ev, EfdFlags};

/// An owned non-blocking, close-on-exec eventfd.
#[derive(Debug)]
pub struct EventFd {
    inner: ev::EventFd,
}

impl EventFd {
    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    pub fn new() -> io::Result<EventFd> {
        let inner =
            ev::EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
        Ok(EventFd { inner })
    }

    /// Adds 1 to the counter (the fd becomes readable).
    pub fn signal(&self) -> io::Result<()> {
        match self.inner.write(1) {
            Ok(_) => Ok(()),
            // EAGAIN: the counter is at its maximum, so the fd is readable anyway.
            Err(Errno::EAGAIN) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Resets the counter to 0 (the fd stops being readable).
    pub fn clear(&self) -> io::Result<()> {
        match self.inner.read() {
            Ok(_) => Ok(()),
            Err(Errno::EAGAIN) => Ok(()), // already 0
            Err(e) => Err(e.into()),
        }
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl AsRawFd for EventFd {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::epoll::Epoll;
    use std::time::Duration;

    #[test]
    fn readable_until_cleared() {
        let ev = EventFd::new().unwrap();
        let ep = Epoll::new().unwrap();
        ep.add_readable(ev.as_fd(), 5, false).unwrap();
        let mut t = Vec::new();
        assert_eq!(ep.wait(&mut t, Some(Duration::ZERO)).unwrap(), 0);
        ev.signal().unwrap();
        ev.signal().unwrap();
        assert_eq!(ep.wait(&mut t, Some(Duration::ZERO)).unwrap(), 1);
        assert_eq!(
            ep.wait(&mut t, Some(Duration::ZERO)).unwrap(),
            1,
            "level-triggered"
        );
        ev.clear().unwrap();
        ev.clear().unwrap();
        assert_eq!(ep.wait(&mut t, Some(Duration::ZERO)).unwrap(), 0);
    }
}
