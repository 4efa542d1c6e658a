//! A fake kernel for unit tests, on top of [`super::override_syscall`]: it answers every call
//! `sys` makes the way a privileged, modern kernel would (fds for objects, map info for the
//! maps it created, anonymous memory for ring mappings), records each call in a typed
//! [`Call`], and refuses the ones a test's `fail` rule picks. With it comes a temporary tracefs
//! tree ([`TempTracefs`]) holding the exec tracer's tracepoints.
//!
//! It knows the `union bpf_attr` and `struct perf_event_attr` layouts only (include/uapi/linux/
//! bpf.h, perf_event.h): nothing above `sys`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{override_syscall, override_tracefs, Guard, Syscall};
use crate::sys::kernel::{CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN};
use crate::sys::uapi::{BPF_MAP_TYPE_PERCPU_ARRAY, BPF_MAP_TYPE_PERCPU_HASH};

// enum bpf_cmd.
pub(crate) const MAP_CREATE: u32 = 0;
pub(crate) const MAP_LOOKUP_ELEM: u32 = 1;
pub(crate) const MAP_UPDATE_ELEM: u32 = 2;
pub(crate) const PROG_LOAD: u32 = 5;
pub(crate) const OBJ_GET_INFO_BY_FD: u32 = 15;
pub(crate) const RAW_TRACEPOINT_OPEN: u32 = 17;
pub(crate) const BTF_LOAD: u32 = 18;
pub(crate) const LINK_CREATE: u32 = 28;

// Perf ioctls (_IO('$', 0), _IO('$', 1), _IOW('$', 8, __u32)).
pub(crate) const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
pub(crate) const PERF_EVENT_IOC_DISABLE: libc::c_ulong = 0x2401;
pub(crate) const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// `BPF_MAP_TYPE_LRU_PERCPU_HASH`, which has per-CPU values too.
const BPF_MAP_TYPE_LRU_PERCPU_HASH: u32 = 10;

/// Map ids handed out by every fake kernel of the process: unique, and far above the real
/// kernel's (the ring consumer claims rings by id process-wide).
static NEXT_ID: AtomicU32 = AtomicU32::new(1 << 30);

/// One call the fake kernel saw.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    MapCreate {
        name: String,
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
    },
    /// `key` and `value` as passed (value empty for per-CPU maps), into the map created with
    /// name `map` (a dup of its fd is the same map).
    MapUpdate {
        map: String,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    ProgLoad {
        name: String,
        prog_type: u32,
    },
    LinkCreate {
        prog_fd: RawFd,
        target_fd: i32,
        attach_type: u32,
    },
    RawTracepointOpen {
        name: Option<String>,
    },
    /// Any other `bpf(2)` command.
    Bpf(u32),
    PerfEventOpen {
        attr: crate::sys::perf::PerfEventAttr,
        pid: i32,
        cpu: i32,
        group_fd: i32,
        flags: libc::c_ulong,
        fd: RawFd,
    },
    PerfIoctl {
        fd: RawFd,
        request: libc::c_ulong,
        arg: libc::c_ulong,
    },
    /// `map`: the name of the map behind `fd` (a dup of a map fd counts), if it is one.
    Mmap {
        fd: RawFd,
        map: Option<String>,
        offset: u64,
        len: usize,
        writable: bool,
    },
    Capget,
}

/// Decides whether to refuse a call (after it was recorded).
pub(crate) type FailRule = Box<dyn FnMut(&Call) -> Option<io::Error>>;

/// A map the fake kernel made: its name and (map_type, id, key_size, value_size,
/// max_entries, map_flags), the words of `struct bpf_map_info`.
type FakeMap = (String, [u32; 6]);

/// What the fake kernel knows and saw.
pub(crate) struct State {
    /// Every call, in order.
    pub calls: Vec<Call>,
    /// The effective capabilities `capget` reports.
    pub caps: u64,
    /// Whether BPF links on perf events exist (5.15+): the probe's LINK_CREATE on fd -1 gets
    /// EBADF, else EINVAL (and tracepoints attach with SET_BPF + ENABLE).
    pub perf_link: bool,
    /// Refuses the calls it returns an error for.
    pub fail: Option<FailRule>,
    /// Maps by the inode of their fd, so a dup of a map fd is the same map, as in the kernel.
    maps: HashMap<u64, FakeMap>,
    /// The write ends of the pipes whose read ends are the fake fds: kept open, so a fake fd
    /// in an epoll set stays quiet (no EPOLLHUP).
    write_ends: Vec<OwnedFd>,
}

/// The inode of open descriptor `fd` (each fake fd is a pipe of its own: its own inode).
fn inode(fd: RawFd) -> Option<u64> {
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was passed to a faked syscall by its owner and stays open for the call.
    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
    nix::sys::stat::fstat(fd).ok().map(|st| st.st_ino)
}

impl State {
    /// A new fake descriptor: the read end of a fresh pipe (pollable, so an epoll set takes
    /// it, and with an inode of its own), and that inode.
    fn new_fd(&mut self) -> io::Result<(libc::c_long, u64)> {
        let flags = nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK;
        let (read, write) = nix::unistd::pipe2(flags)?;
        self.write_ends.push(write);
        let ino = nix::sys::stat::fstat(read.as_fd())?.st_ino;
        Ok((libc::c_long::from(read.into_raw_fd()), ino))
    }

    fn map(&self, fd: RawFd) -> Option<&FakeMap> {
        self.maps.get(&inode(fd)?)
    }

    /// The name the map behind `fd` was created with.
    pub fn map_name(&self, fd: RawFd) -> Option<String> {
        self.map(fd).map(|m| m.0.clone())
    }

    /// The (key, value) updates of the map created with `name`.
    pub fn updates_of(&self, name: &str) -> Vec<(&[u8], &[u8])> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::MapUpdate { map, key, value } if map == name => {
                    Some((key.as_slice(), value.as_slice()))
                }
                _ => None,
            })
            .collect()
    }

    /// The names of the programs loaded, in order (feature probes included).
    pub fn programs(&self) -> Vec<&str> {
        self.calls
            .iter()
            .filter_map(|c| match c {
                Call::ProgLoad { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The error the fail rule picks for the last call, if any.
    fn refuse(&mut self) -> Option<io::Error> {
        let call = self.calls.last()?;
        self.fail.as_mut().and_then(|f| f(call))
    }

    /// `Ok(ok)`, unless the fail rule refuses the last call; `fd` (made for the call) is
    /// closed then.
    fn finish(&mut self, ok: libc::c_long, fd: Option<libc::c_long>) -> io::Result<libc::c_long> {
        match self.refuse() {
            None => Ok(ok),
            Some(e) => {
                if let Some(fd) = fd {
                    // SAFETY: `fd` is the descriptor new_fd made for this call, owned by
                    // nobody else.
                    drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
                }
                Err(e)
            }
        }
    }

    /// A new fd for the call just recorded by `record`, unless refused.
    fn fd_call(&mut self, record: impl FnOnce(RawFd) -> Call) -> io::Result<libc::c_long> {
        let (fd, _) = self.new_fd()?;
        self.calls.push(record(fd as RawFd));
        self.finish(fd, Some(fd))
    }
}

/// A fake kernel installed on this thread until dropped, with its tracefs.
pub(crate) struct FakeKernel {
    pub state: Rc<RefCell<State>>,
    pub tracefs: TempTracefs,
    _guards: [Guard; 2],
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_ne_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_ne_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn name_at(b: &[u8], off: usize) -> String {
    let raw = &b[off..off + 16];
    let end = raw.iter().position(|&c| c == 0).unwrap_or(16);
    String::from_utf8_lossy(&raw[..end]).into_owned()
}

/// Copies `len` bytes from the user pointer `ptr` of a bpf attribute.
///
/// # Safety
/// `ptr` must point to `len` readable bytes (what the caller of the faked syscall promised
/// the kernel).
unsafe fn read_user(ptr: u64, len: usize) -> Vec<u8> {
    if ptr == 0 || len == 0 {
        return Vec::new();
    }
    // SAFETY: the caller guarantees `len` readable bytes at `ptr`.
    unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }.to_vec()
}

impl FakeKernel {
    /// A privileged kernel with perf links, and a tracefs holding the exec tracer's events.
    pub fn new() -> FakeKernel {
        let state = Rc::new(RefCell::new(State {
            calls: Vec::new(),
            caps: (1 << CAP_SYS_ADMIN) | (1 << CAP_BPF) | (1 << CAP_PERFMON),
            perf_link: true,
            fail: None,
            maps: HashMap::new(),
            write_ends: Vec::new(),
        }));
        let s = Rc::clone(&state);
        let syscalls = override_syscall(move |call| Some(answer(&mut s.borrow_mut(), call)));
        let tracefs = TempTracefs::exec_events();
        let fs = override_tracefs(tracefs.root().to_path_buf());
        FakeKernel {
            state,
            tracefs,
            _guards: [syscalls, fs],
        }
    }

    /// Refuse the calls `rule` returns an error for (replacing any earlier rule).
    pub fn fail(&self, rule: impl FnMut(&Call) -> Option<io::Error> + 'static) {
        self.state.borrow_mut().fail = Some(Box::new(rule));
    }

    /// A copy of the calls so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state.borrow().calls.clone()
    }
}

fn answer(st: &mut State, call: Syscall<'_>) -> io::Result<libc::c_long> {
    match call {
        Syscall::Bpf { cmd, attr } => bpf(st, cmd, attr),
        Syscall::PerfEventOpen {
            attr,
            pid,
            cpu,
            group_fd,
            flags,
        } => st.fd_call(|fd| Call::PerfEventOpen {
            attr: *attr,
            pid,
            cpu,
            group_fd,
            flags,
            fd,
        }),
        Syscall::PerfEventIoctl { fd, request, arg } => {
            st.calls.push(Call::PerfIoctl { fd, request, arg });
            st.finish(0, None)
        }
        Syscall::Mmap {
            fd,
            offset,
            len,
            writable,
        } => {
            let map = st.map_name(fd);
            st.calls.push(Call::Mmap {
                fd,
                map,
                offset,
                len,
                writable,
            });
            st.finish(0, None)
        }
        Syscall::Capget => {
            st.calls.push(Call::Capget);
            let caps = st.caps as libc::c_long;
            st.finish(caps, None)
        }
    }
}

fn bpf(st: &mut State, cmd: u32, attr: &mut [u8]) -> io::Result<libc::c_long> {
    match cmd {
        MAP_CREATE => {
            let (fd, ino) = st.new_fd()?;
            let name = name_at(attr, 28);
            let info = [
                u32_at(attr, 0),                         // map_type
                NEXT_ID.fetch_add(1, Ordering::Relaxed), // id
                u32_at(attr, 4),                         // key_size
                u32_at(attr, 8),                         // value_size
                u32_at(attr, 12),                        // max_entries
                u32_at(attr, 16),                        // map_flags
            ];
            st.calls.push(Call::MapCreate {
                name: name.clone(),
                map_type: info[0],
                key_size: info[2],
                value_size: info[3],
                max_entries: info[4],
                map_flags: info[5],
            });
            let r = st.finish(fd, Some(fd));
            if r.is_ok() {
                st.maps.insert(ino, (name, info));
            }
            r
        }
        MAP_UPDATE_ELEM | MAP_LOOKUP_ELEM => {
            let (map, [map_type, _, key_size, value_size, ..]) = st
                .map(u32_at(attr, 0) as RawFd)
                .cloned()
                .unwrap_or_default();
            let per_cpu = matches!(
                map_type,
                BPF_MAP_TYPE_PERCPU_ARRAY | BPF_MAP_TYPE_PERCPU_HASH | BPF_MAP_TYPE_LRU_PERCPU_HASH
            );
            if cmd == MAP_LOOKUP_ELEM {
                st.calls.push(Call::Bpf(cmd));
                let ptr = u64_at(attr, 16) as *mut u8;
                if !per_cpu && !ptr.is_null() {
                    // SAFETY: map_lookup_elem passes a writable value buffer of the map's
                    // value size (not a per-CPU map here), as the kernel requires.
                    unsafe { std::ptr::write_bytes(ptr, 0, value_size as usize) };
                }
                return st.finish(0, None);
            }
            // SAFETY: map_update_elem passes key and value buffers of the map's key and value
            // sizes (the kernel reads exactly those); per-CPU values are not read.
            let (key, value) = unsafe {
                (
                    read_user(u64_at(attr, 8), key_size as usize),
                    if per_cpu {
                        Vec::new()
                    } else {
                        read_user(u64_at(attr, 16), value_size as usize)
                    },
                )
            };
            st.calls.push(Call::MapUpdate { map, key, value });
            st.finish(0, None)
        }
        PROG_LOAD => {
            let (name, prog_type) = (name_at(attr, 48), u32_at(attr, 0));
            st.fd_call(|_| Call::ProgLoad { name, prog_type })
        }
        OBJ_GET_INFO_BY_FD => {
            st.calls.push(Call::Bpf(cmd));
            let (fd, len, ptr) = (
                u32_at(attr, 0) as RawFd,
                u32_at(attr, 4) as usize,
                u64_at(attr, 8),
            );
            // A map's info words; zeros (no recursion misses) for anything else.
            let mut info = vec![0u8; len];
            if let Some((_, words)) = st.map(fd) {
                for (slot, w) in info.chunks_exact_mut(4).zip(words) {
                    slot.copy_from_slice(&w.to_ne_bytes());
                }
            }
            if ptr != 0 {
                // SAFETY: obj_get_info passes a writable buffer of info_len bytes.
                unsafe { std::ptr::copy_nonoverlapping(info.as_ptr(), ptr as *mut u8, len) };
            }
            st.finish(0, None)
        }
        LINK_CREATE => {
            let target_fd = u32_at(attr, 4) as i32;
            st.calls.push(Call::LinkCreate {
                prog_fd: u32_at(attr, 0) as RawFd,
                target_fd,
                attach_type: u32_at(attr, 8),
            });
            if let Some(e) = st.refuse() {
                return Err(e);
            }
            match (st.perf_link, target_fd) {
                (false, _) => Err(io::Error::from_raw_os_error(libc::EINVAL)),
                (true, -1) => Err(io::Error::from_raw_os_error(libc::EBADF)),
                (true, _) => Ok(st.new_fd()?.0),
            }
        }
        RAW_TRACEPOINT_OPEN => {
            let ptr = u64_at(attr, 0) as *const libc::c_char;
            let name = (!ptr.is_null()).then(|| {
                // SAFETY: raw_tracepoint_open passes a live NUL-terminated name (or null).
                unsafe { std::ffi::CStr::from_ptr(ptr) }
                    .to_string_lossy()
                    .into_owned()
            });
            st.fd_call(|_| Call::RawTracepointOpen { name })
        }
        BTF_LOAD => st.fd_call(|_| Call::Bpf(cmd)),
        _ => {
            st.calls.push(Call::Bpf(cmd));
            st.finish(0, None)
        }
    }
}

/// A directory laid out like tracefs (`events/<category>/<name>/{id,format}`), removed on
/// drop.
pub(crate) struct TempTracefs {
    root: PathBuf,
}

/// The ids the exec tracer's tracepoints get in [`TempTracefs::exec_events`].
pub(crate) const EXEC_TRACEPOINTS: [(&str, &str, u64); 6] = [
    ("sched", "sched_process_exec", 365),
    ("sched", "sched_process_exit", 369),
    ("syscalls", "sys_enter_execve", 862),
    ("syscalls", "sys_enter_execveat", 860),
    ("syscalls", "sys_exit_execve", 861),
    ("syscalls", "sys_exit_execveat", 859),
];

/// `events/sched/sched_process_exec/format` of Linux 6.18.
pub(crate) const SCHED_PROCESS_EXEC_FORMAT: &str = "name: sched_process_exec\nID: 365\nformat:\n\
    \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
    \tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\
    \tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\
    \tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\
    \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n\
    \tfield:pid_t pid;\toffset:12;\tsize:4;\tsigned:1;\n\
    \tfield:pid_t old_pid;\toffset:16;\tsize:4;\tsigned:1;\n\n\
    print fmt: \"filename=%s pid=%d old_pid=%d\", __get_str(filename), REC->pid, REC->old_pid\n";

impl TempTracefs {
    /// An empty tree (`events/` only) in the temporary directory.
    pub fn new() -> TempTracefs {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "rawsnoop-fake-tracefs-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(root.join("events")).expect("creating a fake tracefs");
        TempTracefs { root }
    }

    /// The exec tracer's tracepoints ([`EXEC_TRACEPOINTS`]), sched_process_exec with its
    /// `format`.
    pub fn exec_events() -> TempTracefs {
        let t = TempTracefs::new();
        for (cat, name, id) in EXEC_TRACEPOINTS {
            let format = (name == "sched_process_exec").then_some(SCHED_PROCESS_EXEC_FORMAT);
            t.add_event(cat, name, id, format);
        }
        t
    }

    /// Adds `events/<category>/<name>/id` (and `format`).
    pub fn add_event(&self, category: &str, name: &str, id: u64, format: Option<&str>) {
        let dir = self.root.join("events").join(category).join(name);
        std::fs::create_dir_all(&dir).expect("creating a fake tracepoint");
        std::fs::write(dir.join("id"), format!("{id}\n")).expect("writing a fake id");
        if let Some(f) = format {
            std::fs::write(dir.join("format"), f).expect("writing a fake format");
        }
    }

    /// Removes `events/<category>/<name>`.
    pub fn remove_event(&self, category: &str, name: &str) {
        let _ = std::fs::remove_dir_all(self.root.join("events").join(category).join(name));
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

impl Drop for TempTracefs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
