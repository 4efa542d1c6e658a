//! A non-blocking `eventfd(2)`: a counter that is readable while non-zero. The consumers
//! register one in their epoll to keep it readable when they leave records behind.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// An owned non-blocking, close-on-exec eventfd.
#[derive(Debug)]
pub struct EventFd {
    fd: OwnedFd,
}

impl EventFd {
    /// `eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)`.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd takes an initial value and flags only; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(EventFd { fd })
    }

    /// Adds 1 to the counter (the fd becomes readable).
    pub fn signal(&self) -> io::Result<()> {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our own fd.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), 8) };
        if n == 8 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // EAGAIN: the counter is at its maximum, so the fd is readable anyway.
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(());
        }
        Err(e)
    }

    /// Resets the counter to 0 (the fd stops being readable).
    pub fn clear(&self) -> io::Result<()> {
        let mut buf = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live 8-byte buffer from our own fd.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
        if n == 8 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(()); // already 0
        }
        Err(e)
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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
