//! `perf_event_open(2)`, its attribute struct and the ioctls we use: enabling events,
//! attaching BPF programs to tracepoints, and `PERF_COUNT_SW_BPF_OUTPUT` events for
//! the per-CPU perf buffer.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `PERF_TYPE_SOFTWARE`.
pub const PERF_TYPE_SOFTWARE: u32 = 1;
/// `PERF_TYPE_TRACEPOINT`.
pub const PERF_TYPE_TRACEPOINT: u32 = 2;
/// `PERF_COUNT_SW_BPF_OUTPUT`: the event `bpf_perf_event_output` writes into.
pub const PERF_COUNT_SW_BPF_OUTPUT: u64 = 10;
/// `PERF_SAMPLE_RAW`: samples carry `u32 size` + raw bytes.
pub const PERF_SAMPLE_RAW: u64 = 1 << 10;
/// `PERF_FLAG_FD_CLOEXEC`.
pub const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 1 << 3;

/// `PERF_RECORD_LOST`: `{ header, u64 id, u64 lost }`.
pub const PERF_RECORD_LOST: u32 = 2;
/// `PERF_RECORD_SAMPLE`: with `PERF_SAMPLE_RAW` only, `{ header, u32 size, u8 data[size] }`.
pub const PERF_RECORD_SAMPLE: u32 = 9;

/// `PERF_ATTR_SIZE_VER8` (adds `config3`): the full struct below.
pub const PERF_ATTR_SIZE_VER8: u32 = 136;
/// `PERF_ATTR_SIZE_VER5`: the oldest size we could fall back to.
pub const PERF_ATTR_SIZE_VER5: u32 = 112;

// Bits of the attribute flag word (the C bitfield after `read_format`).
const ATTR_FLAG_DISABLED: u64 = 1 << 0;
const ATTR_FLAG_WATERMARK: u64 = 1 << 14;

// ioctl numbers: _IO('$', 0), _IO('$', 1), _IOW('$', 8, __u32).
const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// `struct perf_event_attr` as of `PERF_ATTR_SIZE_VER8` (136 bytes). Unions are named by
/// their first member; the bitfield word is `flags`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PerfEventAttr {
    pub type_: u32,
    pub size: u32,
    pub config: u64,
    /// Union `sample_period` / `sample_freq`.
    pub sample_period: u64,
    pub sample_type: u64,
    pub read_format: u64,
    /// The bitfield word: disabled (bit 0), inherit, pinned, ..., watermark (bit 14), ...
    pub flags: u64,
    /// Union `wakeup_events` / `wakeup_watermark` (bytes when the watermark flag is set).
    pub wakeup_events: u32,
    pub bp_type: u32,
    /// Union `bp_addr` / `kprobe_func` / `uprobe_path` / `config1`.
    pub config1: u64,
    /// Union `bp_len` / `kprobe_addr` / `probe_offset` / `config2`.
    pub config2: u64,
    pub branch_sample_type: u64,
    pub sample_regs_user: u64,
    pub sample_stack_user: u32,
    pub clockid: i32,
    pub sample_regs_intr: u64,
    pub aux_watermark: u32,
    pub sample_max_stack: u16,
    pub reserved_2: u16,
    pub aux_sample_size: u32,
    pub aux_action: u32,
    pub sig_data: u64,
    pub config3: u64,
}

const _: () = assert!(std::mem::size_of::<PerfEventAttr>() == PERF_ATTR_SIZE_VER8 as usize);

/// When the kernel wakes a reader of a BPF output perf ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wakeup {
    /// After every `n` samples (`wakeup_events = n`; 0 is treated as 1).
    Events(u32),
    /// When at least this many bytes are unread (`watermark` flag + `wakeup_watermark`).
    /// Records below the watermark wait for the next wakeup or a reader's timeout.
    Watermark(u32),
}

/// `perf_event_open(attr, pid, cpu, group_fd, flags)`. `attr.size` is set here.
pub fn perf_event_open(
    attr: &PerfEventAttr,
    pid: i32,
    cpu: i32,
    group_fd: i32,
    flags: libc::c_ulong,
) -> io::Result<OwnedFd> {
    let mut attr = *attr;
    attr.size = PERF_ATTR_SIZE_VER8;
    #[cfg(test)]
    if let Some(ret) = super::fake::call(super::fake::Syscall::PerfEventOpen {
        attr: &attr,
        pid,
        cpu,
        group_fd,
        flags,
    }) {
        return ret.and_then(owned_fd);
    }
    // SAFETY: `attr` is a live, fully initialised repr(C) perf_event_attr whose `size` field
    // states its true length, so the kernel reads no more than we own; it only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const PerfEventAttr,
            pid as libc::c_long,
            cpu as libc::c_long,
            group_fd as libc::c_long,
            flags,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    owned_fd(rc)
}

/// The descriptor a successful `perf_event_open` returned, owned.
fn owned_fd(rc: libc::c_long) -> io::Result<OwnedFd> {
    let raw = i32::try_from(rc)
        .ok()
        .filter(|&fd| fd >= 0)
        .ok_or_else(|| io::Error::other("perf_event_open: fd out of range"))?;
    // SAFETY: a non-negative return is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Opens tracepoint `tp_id` (from tracefs `events/<cat>/<name>/id`) for all processes on
/// CPU 0, one sample per hit, close-on-exec; ready for [`ioc_set_bpf`] + [`ioc_enable`].
pub fn open_tracepoint(tp_id: u64) -> io::Result<OwnedFd> {
    let attr = PerfEventAttr {
        type_: PERF_TYPE_TRACEPOINT,
        config: tp_id,
        sample_period: 1,
        wakeup_events: 1,
        ..Default::default()
    };
    perf_event_open(&attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
}

/// Opens a `PERF_COUNT_SW_BPF_OUTPUT` event on `cpu` (all processes) with raw samples and
/// the given wakeup policy; enabled on open. Its fd goes into a PERF_EVENT_ARRAY at key cpu.
pub fn open_bpf_output(cpu: u32, wakeup: Wakeup) -> io::Result<OwnedFd> {
    let cpu = i32::try_from(cpu).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("cpu {cpu} out of range"),
        )
    })?;
    let mut attr = PerfEventAttr {
        type_: PERF_TYPE_SOFTWARE,
        config: PERF_COUNT_SW_BPF_OUTPUT,
        sample_period: 1,
        sample_type: PERF_SAMPLE_RAW,
        ..Default::default()
    };
    match wakeup {
        Wakeup::Events(n) => attr.wakeup_events = n.max(1),
        Wakeup::Watermark(bytes) => {
            attr.flags |= ATTR_FLAG_WATERMARK;
            attr.wakeup_events = bytes.max(1);
        }
    }
    debug_assert_eq!(attr.flags & ATTR_FLAG_DISABLED, 0);
    perf_event_open(&attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC)
}

/// The OS error is returned as is (callers match on `raw_os_error()`, e.g. EACCES from
/// PERF_EVENT_IOC_SET_BPF for a program reading past the tracepoint's record); the caller's
/// error says which step failed.
fn ioctl(fd: BorrowedFd<'_>, req: libc::c_ulong, arg: libc::c_ulong) -> io::Result<()> {
    #[cfg(test)]
    if let Some(ret) = super::fake::call(super::fake::Syscall::PerfEventIoctl {
        fd: fd.as_raw_fd(),
        request: req,
        arg,
    }) {
        return ret.map(drop);
    }
    // SAFETY: the requests used here take an integer argument (or none); no pointer is
    // passed, and fd is valid for the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), req, arg) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `PERF_EVENT_IOC_ENABLE`.
pub fn ioc_enable(fd: BorrowedFd<'_>) -> io::Result<()> {
    ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)
}

/// `PERF_EVENT_IOC_DISABLE`.
pub fn ioc_disable(fd: BorrowedFd<'_>) -> io::Result<()> {
    ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)
}

/// `PERF_EVENT_IOC_SET_BPF`: attach BPF program `prog` to the perf event `fd`.
pub fn ioc_set_bpf(fd: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let prog = libc::c_ulong::try_from(prog.as_raw_fd())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "negative program fd"))?;
    ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog)
}

/// Byte offsets of the fields we use in `struct perf_event_mmap_page` (the first page of a
/// perf ring mapping).
pub mod mmap_page {
    /// `__u64 data_head`: written by the kernel (smp_store_release in perf_output_put_handle).
    pub const DATA_HEAD: usize = 1024;
    /// `__u64 data_tail`: written by the reader.
    pub const DATA_TAIL: usize = 1032;
    /// `__u64 data_offset`: where the data area starts (0 on kernels < 4.1: use page size).
    pub const DATA_OFFSET: usize = 1040;
    /// `__u64 data_size`: size of the data area (0 on kernels < 4.1).
    pub const DATA_SIZE: usize = 1048;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::offset_of;

    #[test]
    fn attr_layout_matches_uapi() {
        assert_eq!(offset_of!(PerfEventAttr, config), 8);
        assert_eq!(offset_of!(PerfEventAttr, flags), 40);
        assert_eq!(offset_of!(PerfEventAttr, wakeup_events), 48);
        assert_eq!(offset_of!(PerfEventAttr, config1), 56);
        assert_eq!(offset_of!(PerfEventAttr, sample_regs_intr), 96);
        assert_eq!(offset_of!(PerfEventAttr, aux_watermark), 104);
        assert_eq!(offset_of!(PerfEventAttr, sig_data), 120);
        assert_eq!(offset_of!(PerfEventAttr, config3), 128);
    }
}
