//! Getting the running kernel's vmlinux BTF bytes as cheaply as the kernel allows, fastest first:
//!
//! 1. Linux 6.16+: a private read-only mapping of `/sys/kernel/btf/vmlinux` (no copy at all;
//!    [`Bytes::map_kernel_btf`]).
//! 2. Linux 5.11+ as root: one `BPF_OBJ_GET_INFO_BY_FD` on the kernel's own BTF object
//!    ("vmlinux", `kernel_btf` set) copies the same `.BTF` section in one call.
//! 3. Otherwise the sysfs file is read; kernfs hands it out one page per read(2), ~1350 calls.
//!
//! 2 and 3 copy into an anonymous mapping populated up front (`MAP_POPULATE`): faulting 5.5 MB in
//! page by page cost more than the copy itself on the development machine (probe, under load:
//! 3-15 ms into a fresh `Vec`, ~2 ms populated).

use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use crate::loader::btf::lazy::Bytes;
use crate::loader::object::MAX_OBJECT_BYTES;
use crate::sys::bpf;

/// The kernel's BTF from `path` (its sysfs file) by the cheapest way available, or the read
/// error of the last resort.
pub fn kernel_btf_bytes(path: &Path) -> std::io::Result<Bytes> {
    if let Some(b) = Bytes::map_kernel_btf(path) {
        return Ok(b);
    }
    if let Some(b) = from_btf_object() {
        return Ok(b);
    }
    read_populated(path)
}

/// A writable anonymous mapping of `len` bytes, populated (no page faults while it is filled).
fn populated(len: usize) -> std::io::Result<memmap2::MmapMut> {
    memmap2::MmapOptions::new().len(len).populate().map_anon()
}

/// Copies vmlinux BTF out of the kernel's BTF object named "vmlinux" (Linux 5.11+ give vmlinux BTF
/// an id, a name and `kernel_btf`). `None` where that is not possible (5.10 has no name field to
/// tell it apart, no CAP_SYS_ADMIN, none among the first 4096 BTF ids).
pub fn from_btf_object() -> Option<Bytes> {
    // struct bpf_btf_info (include/uapi/linux/bpf.h): btf (u64) @0, btf_size @8, id @12,
    // name (u64) @16, name_len @24, kernel_btf @28.
    fn put(b: &mut [u8; 32], at: usize, v: &[u8]) {
        b[at..at + v.len()].copy_from_slice(v);
    }
    let get32 =
        |b: &[u8; 32], at: usize| u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let mut id = 0;
    for _ in 0..4096 {
        id = bpf::btf_get_next_id(id).ok()?;
        let Ok(fd) = bpf::btf_get_fd_by_id(id) else {
            continue;
        };
        // Room for any module name (MODULE_NAME_LEN is 56): a shorter buffer is ENOSPC.
        let mut name = [0u8; 64];
        let mut info = [0u8; 32];
        put(&mut info, 16, &(name.as_mut_ptr() as u64).to_ne_bytes());
        put(&mut info, 24, &(name.len() as u32).to_ne_bytes());
        let written = match bpf::obj_get_info(fd.as_fd(), &mut info) {
            Ok(n) => n as usize,
            // Kernels without the name field (5.10) refuse the non-zero tail: no way to tell.
            Err(e) if e.raw_os_error() == Some(libc::E2BIG) => return None,
            Err(_) => continue,
        };
        if written < info.len() {
            return None;
        }
        if get32(&info, 28) == 0 || !name.starts_with(b"vmlinux\0") {
            continue;
        }
        let size = get32(&info, 8);
        if size == 0 || u64::from(size) > MAX_OBJECT_BYTES {
            return None;
        }
        let mut data = populated(size as usize).ok()?;
        let mut info = [0u8; 32];
        put(&mut info, 0, &(data.as_mut_ptr() as u64).to_ne_bytes());
        put(&mut info, 8, &size.to_ne_bytes());
        bpf::obj_get_info(fd.as_fd(), &mut info).ok()?;
        // The kernel reports the object's full size and copied min(that, ours) bytes.
        if get32(&info, 8) != size {
            return None;
        }
        return data.make_read_only().ok().map(Bytes::Mapped);
    }
    None
}

/// Reads the sysfs file (its size is known from stat; sysfs files do not change size) into a
/// populated mapping, refusing anything that is not exactly that long.
pub fn read_populated(path: &Path) -> std::io::Result<Bytes> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if !file.metadata()?.is_file() || len == 0 || len > MAX_OBJECT_BYTES {
        return Err(bad("not a regular file of a plausible BTF size"));
    }
    let mut data = populated(len as usize)?;
    let mut have = 0;
    while have < data.len() {
        match file.read(&mut data[have..]) {
            Ok(0) => return Err(bad("shorter than its size")),
            Ok(n) => have += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    if file.read(&mut [0u8; 1])? != 0 {
        return Err(bad("longer than its size"));
    }
    Ok(Bytes::Mapped(data.make_read_only()?))
}
