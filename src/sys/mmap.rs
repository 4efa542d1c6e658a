//! An owned shared memory mapping of a file descriptor at an exact offset, length and
//! protection, unmapped on drop. The `mmap(2)`/`munmap(2)` calls are `memmap2`'s
//! ([`memmap2::MmapRaw`]): every mapping rawsnoop makes is `MAP_SHARED` at a page-aligned
//! offset chosen by the kernel's layout (the ringbuf consumer page at 0, its producer page
//! and data at one page; a perf ring's metadata page and data at 0), which memmap2 expresses.
//! Even the ring buffer's double mapping needs nothing special here: the kernel lays the
//! data pages out twice in the ring's own vmap (`bpf_ringbuf_area_alloc`,
//! kernel/bpf/ringbuf.c) and its mmap handler maps that range as asked. What
//! memmap2 would add that we do not want is refused before calling it: it would silently
//! round an unaligned offset down (we return an error, as `mmap(2)` does) and map one byte
//! for a zero length.
//!
//! The mapping hands out raw pointers only: memory the kernel writes concurrently
//! (ring buffer pages) must be read through atomics or after an acquire load that
//! publishes it, never through a long-lived `&[u8]`. Those rules live with the
//! consumers (`ringbuf`, `perfbuf`); this type only owns the address range.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Page protection for [`Mmap::map`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prot {
    /// `PROT_READ`.
    Read,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// The system page size (`sysconf(_SC_PAGESIZE)`), 4096 if sysconf fails.
pub fn page_size() -> usize {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE) {
        Ok(Some(sz)) if sz > 0 => sz as usize,
        _ => 4096,
    }
}

/// An owned `mmap` of a file descriptor; `munmap`ped when dropped.
#[derive(Debug)]
pub struct Mmap {
    raw: memmap2::MmapRaw,
}

impl Mmap {
    /// Maps `len` bytes of `fd` at `offset` with `prot`; `flags` must be `libc::MAP_SHARED`
    /// (the only kind rawsnoop maps: the kernel and we share the pages).
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
        if flags != libc::MAP_SHARED {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "mmap: only MAP_SHARED mappings are supported",
            ));
        }
        if !offset.is_multiple_of(page_size() as u64) {
            // What mmap(2) itself says; memmap2 would round the offset down instead.
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        #[cfg(test)]
        if let Some(ret) = super::fake::call(super::fake::Syscall::Mmap {
            fd: fd.as_raw_fd(),
            offset,
            len,
            writable: prot == Prot::ReadWrite,
        }) {
            // The fake's seam: a fake fd cannot be mapped, so anonymous zeroed memory of the
            // asked length stands in (see `sys::fake`).
            ret?;
            let anon = memmap2::MmapOptions::new().len(len).map_anon()?;
            return Ok(Mmap { raw: anon.into() });
        }
        let mut opts = memmap2::MmapOptions::new();
        opts.offset(offset).len(len);
        let raw = match prot {
            Prot::Read => opts.map_raw_read_only(fd.as_raw_fd())?,
            Prot::ReadWrite => opts.map_raw(fd.as_raw_fd())?,
        };
        Ok(Mmap { raw })
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.raw.as_mut_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.raw.len()
    }

    /// Always false: zero-length mappings are refused by [`Mmap::map`].
    pub fn is_empty(&self) -> bool {
        self.raw.len() == 0
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
        // memfd_create stays libc here: nix has it only behind its `memfd` feature, which
        // this crate does not enable for one test.
        // SAFETY: memfd_create with a NUL-terminated name; result checked.
        let raw = unsafe { libc::memfd_create(c"rawsnoop-mmap-test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(raw >= 0, "memfd_create: {}", io::Error::last_os_error());
        // SAFETY: raw is a freshly created fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let ps = page_size();
        nix::unistd::ftruncate(&fd, (2 * ps) as libc::off_t).expect("ftruncate");
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
