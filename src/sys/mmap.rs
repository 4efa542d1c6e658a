//! An owned memory mapping made with raw `mmap(2)` at an exact offset, length,
//! protection and flags, unmapped on drop.
//!
//! The mapping hands out raw pointers only: memory the kernel writes concurrently
//! (ring buffer pages) must be read through atomics or after an acquire load that
//! publishes it, never through a long-lived `&[u8]`. Those rules live with the
//! consumers (`ringbuf`, `perfbuf`); this type only owns the address range.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// Page protection for [`Mmap::map`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prot {
    /// `PROT_READ`.
    Read,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

impl Prot {
    fn bits(self) -> libc::c_int {
        match self {
            Prot::Read => libc::PROT_READ,
            Prot::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        }
    }
}

/// The system page size (`sysconf(_SC_PAGESIZE)`), 4096 if sysconf fails.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions; it only reads a constant.
    let sz = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if sz > 0 {
        sz as usize
    } else {
        4096
    }
}

/// An owned `mmap` of a file descriptor; `munmap`ped when dropped.
#[derive(Debug)]
pub struct Mmap {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain process memory owned by this value; nothing about it is tied
// to the creating thread, so moving it (and unmapping it) on another thread is sound.
unsafe impl Send for Mmap {}
// SAFETY: `&Mmap` only exposes the address and length; any access through the pointer is the
// caller's business (and is done with atomics / raw reads by the consumers).
unsafe impl Sync for Mmap {}

impl Mmap {
    /// Maps `len` bytes of `fd` at `offset` with `prot` and `flags` (e.g. `libc::MAP_SHARED`).
    ///
    /// `offset` must be page aligned and `len` non-zero; the kernel decides whether the object
    /// behind `fd` supports the requested range (EINVAL / EPERM otherwise).
    pub fn map(
        fd: BorrowedFd<'_>,
        offset: u64,
        len: usize,
        prot: Prot,
        flags: libc::c_int,
    ) -> io::Result<Mmap> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mmap: length must be non-zero",
            ));
        }
        let off = libc::off_t::try_from(offset).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("mmap: offset {offset} does not fit off_t"),
            )
        })?;
        // SAFETY: a NULL hint lets the kernel choose a fresh address range, so no existing
        // Rust-visible memory is replaced; fd is a valid open descriptor for the duration of
        // the call (BorrowedFd); the result is checked against MAP_FAILED below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot.bits(),
                flags,
                fd.as_raw_fd(),
                off,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a NULL mapping"))?;
        Ok(Mmap { ptr, len })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: zero-length mappings are refused by [`Mmap::map`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mmap {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe exactly the range returned by our own successful mmap, and
        // no borrow of it can outlive `self` (only raw pointers are handed out, and their
        // users hold `&self`/`&mut self` of the owner while dereferencing them).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

/// Hints the CPU to start loading the cache line at `addr` into all cache levels. Safe for
/// any address: a prefetch has no architectural effect (it cannot fault and loads nothing
/// into registers), so it is also harmless on a line another agent (the kernel) is writing.
/// The ring consumers use it to run ahead of their chain of dependent header loads.
#[inline(always)]
pub fn prefetch(addr: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and has no effect on program state, whatever `addr`.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(addr.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsFd, FromRawFd, OwnedFd};

    #[test]
    fn page_size_is_power_of_two() {
        let p = page_size();
        assert!(p >= 4096 && p.is_power_of_two(), "page size {p}");
    }

    #[test]
    fn maps_a_memfd_and_sees_writes() {
        // SAFETY: memfd_create with a NUL-terminated name; result checked.
        let raw = unsafe { libc::memfd_create(c"rawsnoop-mmap-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: raw is a freshly created fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ps = page_size();
        // SAFETY: ftruncate on our own fd.
        let rc = unsafe { libc::ftruncate(fd.as_raw_fd(), (2 * ps) as libc::off_t) };
        assert_eq!(rc, 0);
        let rw = Mmap::map(fd.as_fd(), ps as u64, ps, Prot::ReadWrite, libc::MAP_SHARED).unwrap();
        let ro = Mmap::map(fd.as_fd(), ps as u64, ps, Prot::Read, libc::MAP_SHARED).unwrap();
        assert_eq!(rw.len(), ps);
        // SAFETY: both pointers are inside live mappings of at least `ps` bytes.
        unsafe {
            rw.as_ptr().add(7).write_volatile(0xAB);
            assert_eq!(ro.as_ptr().add(7).read_volatile(), 0xAB);
        }
        assert!(Mmap::map(fd.as_fd(), 0, 0, Prot::Read, libc::MAP_SHARED).is_err());
        assert!(Mmap::map(fd.as_fd(), 1, ps, Prot::Read, libc::MAP_SHARED).is_err());
    }
}
