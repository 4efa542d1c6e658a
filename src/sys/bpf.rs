//! The `bpf(2)` system call: one typed attribute struct per command we use, laid out as
//! `union bpf_attr` in include/uapi/linux/bpf.h, with explicit padding so no byte we pass is
//! uninitialised. Every function returns `io::Result`; callers add context.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// Commands (enum bpf_cmd).
const BPF_MAP_CREATE: u32 = 0;
const BPF_MAP_LOOKUP_ELEM: u32 = 1;
const BPF_MAP_UPDATE_ELEM: u32 = 2;
const BPF_MAP_DELETE_ELEM: u32 = 3;
const BPF_PROG_LOAD: u32 = 5;
const BPF_PROG_TEST_RUN: u32 = 10;
const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
const BPF_BTF_LOAD: u32 = 18;
const BPF_BTF_GET_FD_BY_ID: u32 = 19;
const BPF_BTF_GET_NEXT_ID: u32 = 23;
const BPF_MAP_FREEZE: u32 = 22;
const BPF_LINK_CREATE: u32 = 28;
const BPF_RAW_TRACEPOINT_OPEN: u32 = 17;

pub use super::uapi::*;

fn sys_bpf<T>(cmd: u32, attr: &mut T) -> io::Result<libc::c_long> {
    #[cfg(test)]
    {
        // SAFETY: `attr` is a live, exclusively borrowed repr(C) attribute struct of plain
        // integers (explicit padding, no uninitialised bytes); viewing it as its
        // size_of::<T>() bytes for the duration of the fake's call is sound.
        let bytes = unsafe {
            std::slice::from_raw_parts_mut((attr as *mut T).cast::<u8>(), std::mem::size_of::<T>())
        };
        if let Some(ret) = super::fake::call(super::fake::Syscall::Bpf { cmd, attr: bytes }) {
            return ret;
        }
    }
    // SAFETY: `attr` is a live, exclusively borrowed repr(C) struct whose layout is a prefix
    // of `union bpf_attr` for `cmd`, and we pass its exact size; the kernel reads (and for
    // some commands writes) only within that size. Pointers inside it are valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn fd_from_ret(ret: libc::c_long) -> OwnedFd {
    // SAFETY: the bpf commands this is used for return a new file descriptor that nothing
    // else owns; wrapping it gives it exactly one owner that closes it on drop.
    unsafe { OwnedFd::from_raw_fd(ret as i32) }
}

fn obj_name(name: &str) -> [u8; 16] {
    // The kernel accepts only [A-Za-z0-9_.] in names: anything else would fail the whole
    // command, so replace it; names are for humans (bpftool), not for lookup.
    let mut out = [0u8; 16];
    for (slot, b) in out.iter_mut().zip(name.bytes().take(OBJ_NAME_MAX)) {
        *slot = if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' {
            b
        } else {
            b'_'
        };
    }
    out
}

/// What `BPF_MAP_CREATE` needs.
#[derive(Debug, Clone, Default)]
pub struct MapCreate<'a> {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
    pub name: &'a str,
    pub btf_fd: Option<BorrowedFd<'a>>,
    pub btf_key_type_id: u32,
    pub btf_value_type_id: u32,
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}

/// `BPF_MAP_CREATE`.
pub fn map_create(spec: &MapCreate<'_>) -> io::Result<OwnedFd> {
    let mut attr = MapCreateAttr {
        map_type: spec.map_type,
        key_size: spec.key_size,
        value_size: spec.value_size,
        max_entries: spec.max_entries,
        map_flags: spec.map_flags,
        map_name: obj_name(spec.name),
        ..Default::default()
    };
    if let Some(btf) = spec.btf_fd {
        attr.btf_fd = btf.as_raw_fd() as u32;
        attr.btf_key_type_id = spec.btf_key_type_id;
        attr.btf_value_type_id = spec.btf_value_type_id;
    }
    sys_bpf(BPF_MAP_CREATE, &mut attr).map(fd_from_ret)
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// `BPF_MAP_UPDATE_ELEM`. `key` and `value` must be exactly the map's key and value sizes
/// (for per-CPU maps, `value` holds one 8-byte-aligned slot per possible CPU).
pub fn map_update_elem(
    map: BorrowedFd<'_>,
    key: &[u8],
    value: &[u8],
    flags: u64,
) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        flags,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// `BPF_MAP_LOOKUP_ELEM` into `value` (which must be the map's value size, or per-CPU sized).
pub fn map_lookup_elem(map: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map(drop)
}

/// `BPF_MAP_DELETE_ELEM`.
pub fn map_delete_elem(map: BorrowedFd<'_>, key: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr).map(drop)
}

/// `BPF_MAP_FREEZE`: no more writes from user space (kernel >= 5.2).
pub fn map_freeze(map: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map.as_raw_fd() as u32,
        ..Default::default()
    };
    sys_bpf(BPF_MAP_FREEZE, &mut attr).map(drop)
}

/// What `BPF_PROG_LOAD` needs. `insns` are raw 8-byte instructions.
#[derive(Debug, Clone, Default)]
pub struct ProgLoad<'a> {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub name: &'a str,
    pub insns: &'a [u64],
    pub license: &'a str,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub btf_fd: Option<BorrowedFd<'a>>,
    /// Raw `bpf_func_info` records, `func_info_rec_size` bytes each.
    pub func_info: &'a [u8],
    pub func_info_rec_size: u32,
    /// Raw `bpf_line_info` records, `line_info_rec_size` bytes each.
    pub line_info: &'a [u8],
    pub line_info_rec_size: u32,
    /// BTF id of the attach target in vmlinux (tp_btf, fentry, ...); 0 for none.
    pub attach_btf_id: u32,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
    prog_btf_fd: u32,
    func_info_rec_size: u32,
    func_info: u64,
    func_info_cnt: u32,
    line_info_rec_size: u32,
    line_info: u64,
    line_info_cnt: u32,
    attach_btf_id: u32,
    attach_prog_fd: u32,
    core_relo_cnt: u32,
    fd_array: u64,
    core_relos: u64,
    core_relo_rec_size: u32,
    log_true_size: u32,
}

/// `BPF_PROG_LOAD`. With `log`, the verifier writes its log (level 1) into the buffer's
/// capacity; on ENOSPC the caller should grow it and retry (see [`prog_load_with_log`]).
pub fn prog_load(spec: &ProgLoad<'_>, log: Option<&mut Vec<u8>>) -> io::Result<OwnedFd> {
    let license = std::ffi::CString::new(spec.license.replace('\0', ""))
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut attr = ProgLoadAttr {
        prog_type: spec.prog_type,
        insn_cnt: u32::try_from(spec.insns.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        insns: spec.insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        kern_version: spec.kern_version,
        prog_flags: spec.prog_flags,
        prog_name: obj_name(spec.name),
        expected_attach_type: spec.expected_attach_type,
        attach_btf_id: spec.attach_btf_id,
        ..Default::default()
    };
    if let Some(btf) = spec.btf_fd {
        attr.prog_btf_fd = btf.as_raw_fd() as u32;
        if spec.func_info_rec_size > 0 && !spec.func_info.is_empty() {
            attr.func_info_rec_size = spec.func_info_rec_size;
            attr.func_info = spec.func_info.as_ptr() as u64;
            attr.func_info_cnt = (spec.func_info.len() / spec.func_info_rec_size as usize) as u32;
        }
        if spec.line_info_rec_size > 0 && !spec.line_info.is_empty() {
            attr.line_info_rec_size = spec.line_info_rec_size;
            attr.line_info = spec.line_info.as_ptr() as u64;
            attr.line_info_cnt = (spec.line_info.len() / spec.line_info_rec_size as usize) as u32;
        }
    }
    let mut log = log;
    if let Some(buf) = log.as_deref_mut() {
        buf.clear();
        buf.resize(buf.capacity().max(1), 0);
        attr.log_level = 1;
        attr.log_size = buf.len().min(u32::MAX as usize >> 8) as u32;
        attr.log_buf = buf.as_ptr() as u64;
    }
    let res = sys_bpf(BPF_PROG_LOAD, &mut attr).map(fd_from_ret);
    if let Some(buf) = log {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
    }
    res
}

/// `BPF_PROG_LOAD`, first without a log (cheap), then on failure again with a verifier log
/// that grows on ENOSPC up to 64 MiB. Returns the error with the log text.
pub fn prog_load_with_log(spec: &ProgLoad<'_>) -> Result<OwnedFd, (io::Error, String)> {
    match prog_load(spec, None) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => return Err((e, String::new())),
        Err(_) => {}
    }
    let mut size = 1 << 16;
    loop {
        let mut log = Vec::with_capacity(size);
        match prog_load(spec, Some(&mut log)) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && size < (64 << 20) => size *= 4,
            Err(e) => return Err((e, String::from_utf8_lossy(&log).into_owned())),
        }
    }
}

#[repr(C)]
#[derive(Default)]
struct BtfLoadAttr {
    btf: u64,
    btf_log_buf: u64,
    btf_size: u32,
    btf_log_size: u32,
    btf_log_level: u32,
    btf_log_true_size: u32,
}

/// `BPF_BTF_LOAD`. With `log`, the kernel's BTF verifier log goes into the buffer's capacity.
pub fn btf_load(data: &[u8], log: Option<&mut Vec<u8>>) -> io::Result<OwnedFd> {
    let mut attr = BtfLoadAttr {
        btf: data.as_ptr() as u64,
        btf_size: u32::try_from(data.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        ..Default::default()
    };
    let mut log = log;
    if let Some(buf) = log.as_deref_mut() {
        buf.clear();
        buf.resize(buf.capacity().max(1), 0);
        attr.btf_log_level = 1;
        attr.btf_log_size = buf.len().min(u32::MAX as usize >> 8) as u32;
        attr.btf_log_buf = buf.as_ptr() as u64;
    }
    let res = sys_bpf(BPF_BTF_LOAD, &mut attr).map(fd_from_ret);
    if let Some(buf) = log {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        buf.truncate(end);
    }
    res
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    bpf_cookie: u64,
    _pad: [u64; 2],
}

/// `BPF_LINK_CREATE` for a program on a perf event (tracepoint, kprobe): kernel >= 5.15.
/// The link detaches the program when its fd closes.
pub fn link_create_perf_event(
    prog: BorrowedFd<'_>,
    perf_event: BorrowedFd<'_>,
) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: perf_event.as_raw_fd() as u32,
        attach_type: BPF_PERF_EVENT,
        ..Default::default()
    };
    sys_bpf(BPF_LINK_CREATE, &mut attr).map(fd_from_ret)
}

/// `BPF_LINK_CREATE` for a BTF-typed raw tracepoint program (`tp_btf`, attach type
/// `BPF_TRACE_RAW_TP`, target from its attach_btf_id): kernel >= 6.10; older kernels answer
/// EINVAL and [`raw_tracepoint_open`] is the way.
pub fn link_create_tracing(prog: BorrowedFd<'_>, attach_type: u32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        attach_type,
        ..Default::default()
    };
    sys_bpf(BPF_LINK_CREATE, &mut attr).map(fd_from_ret)
}

/// `BPF_LINK_CREATE` with attach type `BPF_PERF_EVENT` on a raw target fd, for the perf link
/// probe: with `target_fd` -1 a kernel with perf links answers EBADF, one without EINVAL.
pub fn link_create_perf_event_raw(prog: BorrowedFd<'_>, target_fd: i32) -> io::Result<OwnedFd> {
    let mut attr = LinkCreateAttr {
        prog_fd: prog.as_raw_fd() as u32,
        target_fd: target_fd as u32,
        attach_type: BPF_PERF_EVENT,
        ..Default::default()
    };
    sys_bpf(BPF_LINK_CREATE, &mut attr).map(fd_from_ret)
}

#[repr(C)]
#[derive(Default)]
struct RawTracepointOpenAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
    cookie: u64,
}

/// `BPF_RAW_TRACEPOINT_OPEN`: attaches a raw tracepoint program to tracepoint `name`, or a
/// tp_btf program (name `None`: the target comes from its attach_btf_id). Returns a link fd.
pub fn raw_tracepoint_open(name: Option<&str>, prog: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let cname = name
        .map(|n| {
            std::ffi::CString::new(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
        })
        .transpose()?;
    let mut attr = RawTracepointOpenAttr {
        name: cname.as_ref().map_or(0, |c| c.as_ptr() as u64),
        prog_fd: prog.as_raw_fd() as u32,
        ..Default::default()
    };
    sys_bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr).map(fd_from_ret)
}

#[repr(C)]
#[derive(Default)]
struct TestRunAttr {
    prog_fd: u32,
    retval: u32,
    data_size_in: u32,
    data_size_out: u32,
    data_in: u64,
    data_out: u64,
    repeat: u32,
    duration: u32,
    ctx_size_in: u32,
    ctx_size_out: u32,
    ctx_in: u64,
    ctx_out: u64,
    flags: u32,
    cpu: u32,
    batch_size: u32,
    _pad: u32,
}

/// `BPF_PROG_TEST_RUN`: run `prog` `repeat` times (0 means once) over `data_in` and return
/// its last return value. Lets tests produce ringbuf/perf records without a tracepoint.
pub fn prog_test_run(prog: BorrowedFd<'_>, data_in: &[u8], repeat: u32) -> io::Result<u32> {
    let mut attr = TestRunAttr {
        prog_fd: prog.as_raw_fd() as u32,
        data_size_in: u32::try_from(data_in.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        data_in: data_in.as_ptr() as u64,
        repeat,
        ..Default::default()
    };
    sys_bpf(BPF_PROG_TEST_RUN, &mut attr)?;
    Ok(attr.retval)
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// `BPF_OBJ_GET_INFO_BY_FD`: fills `info` (a `bpf_map_info`/`bpf_prog_info`/... prefix) and
/// returns how many bytes the kernel wrote.
pub fn obj_get_info(fd: BorrowedFd<'_>, info: &mut [u8]) -> io::Result<u32> {
    let mut attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: u32::try_from(info.len())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?,
        info: info.as_mut_ptr() as u64,
    };
    sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(attr.info_len)
}

/// The `union bpf_attr` member of `BPF_*_GET_NEXT_ID` and `BPF_*_GET_FD_BY_ID`.
#[repr(C)]
#[derive(Default)]
struct GetIdAttr {
    /// start_id (GET_NEXT_ID) or the object id (GET_FD_BY_ID).
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// `BPF_BTF_GET_NEXT_ID`: the id of the first BTF object after `start` (ENOENT past the last).
pub fn btf_get_next_id(start: u32) -> io::Result<u32> {
    let mut attr = GetIdAttr {
        id: start,
        ..Default::default()
    };
    sys_bpf(BPF_BTF_GET_NEXT_ID, &mut attr)?;
    Ok(attr.next_id)
}

/// `BPF_BTF_GET_FD_BY_ID`: a file descriptor for BTF object `id` (needs CAP_SYS_ADMIN).
pub fn btf_get_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetIdAttr {
        id,
        ..Default::default()
    };
    sys_bpf(BPF_BTF_GET_FD_BY_ID, &mut attr).map(fd_from_ret)
}

/// `bpf_prog_info.recursion_misses`: how often the kernel skipped the program because a BPF
/// program was already running on that CPU (Linux >= 5.12; `None` before).
pub fn prog_recursion_misses(prog: BorrowedFd<'_>) -> io::Result<Option<u64>> {
    // offsetof(struct bpf_prog_info, recursion_misses) == 208 (include/uapi/linux/bpf.h)
    const OFF: usize = 208;
    let mut raw = [0u8; OFF + 8];
    let len = obj_get_info(prog, &mut raw)? as usize;
    if len < OFF + 8 {
        return Ok(None);
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[OFF..OFF + 8]);
    Ok(Some(u64::from_ne_bytes(b)))
}

/// The fields of `struct bpf_map_info` we read.
#[derive(Debug, Clone, Copy)]
pub struct MapInfo {
    pub map_type: u32,
    pub id: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    pub map_flags: u32,
}

/// The map's type and sizes as the kernel sees them.
pub fn map_info(map: BorrowedFd<'_>) -> io::Result<MapInfo> {
    let mut raw = [0u8; 24];
    obj_get_info(map, &mut raw)?;
    let word =
        |i: usize| u32::from_ne_bytes([raw[i * 4], raw[i * 4 + 1], raw[i * 4 + 2], raw[i * 4 + 3]]);
    Ok(MapInfo {
        map_type: word(0),
        id: word(1),
        key_size: word(2),
        value_size: word(3),
        max_entries: word(4),
        map_flags: word(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_uapi_offsets() {
        // Offsets from include/uapi/linux/bpf.h (union bpf_attr).
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_name), 28);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, btf_fd), 48);
        assert_eq!(std::mem::offset_of!(MapCreateAttr, map_extra), 64);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, func_info), 80);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, line_info), 96);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, fd_array), 120);
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 144);
        assert_eq!(std::mem::offset_of!(TestRunAttr, repeat), 32);
        assert_eq!(std::mem::offset_of!(TestRunAttr, ctx_in), 48);
        assert_eq!(std::mem::size_of::<BtfLoadAttr>(), 32);
        assert_eq!(std::mem::size_of::<GetIdAttr>(), 12);
    }

    #[test]
    fn names_are_sanitised_and_truncated() {
        let n = obj_name("a-very-long-map-name.with:stuff");
        assert_eq!(&n[..15], b"a_very_long_map");
        assert_eq!(n[15], 0);
    }
}
