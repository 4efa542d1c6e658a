//! Consumer of a `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: one `PERF_COUNT_SW_BPF_OUTPUT` event and
//! ring per online CPU, stored into the map at key = cpu, read through epoll.
//!
//! See [`ring`] for the per-CPU ring layout and record walking.

mod ring;

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::sys::bpf;
use crate::sys::cpus;
use crate::sys::epoll::Epoll;
use crate::sys::mmap::{page_size, Mmap, Prot};
use crate::sys::perf::{self, mmap_page};

pub use crate::sys::perf::Wakeup;
use ring::PerfRingView;

/// How the per-CPU rings are set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfBufOptions {
    /// Data pages per CPU ring, a power of two (plus one metadata page each).
    pub pages_per_cpu: usize,
    /// When the kernel wakes the reader. With `Events(n > 1)` or a watermark, up to n-1
    /// records (or up to the watermark's bytes) can sit unannounced; [`PerfBuf::poll`] still
    /// delivers them when its timeout expires, because it drains every ring after each wait.
    pub wakeup: Wakeup,
}

impl Default for PerfBufOptions {
    fn default() -> Self {
        PerfBufOptions {
            pages_per_cpu: 64,
            wakeup: Wakeup::Events(1),
        }
    }
}

/// One record from a CPU's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerfRecord<'a> {
    /// A `bpf_perfevent_output` payload (the kernel pads it to 8 bytes minus 4: expect up to
    /// 7 trailing bytes after what the program wrote). Borrowed for the callback only.
    Sample { cpu: u32, data: &'a [u8] },
    /// The kernel dropped `count` samples on `cpu` because its ring was full.
    Lost { cpu: u32, count: u64 },
}

/// Errors from setting up or reading perf buffers.
#[derive(Debug, thiserror::Error)]
pub enum PerfBufError {
    #[error("perfbuf: pages_per_cpu {0} must be a non-zero power of two")]
    BadPages(usize),
    #[error(
        "perfbuf: map is not a PERF_EVENT_ARRAY (kernel says type {0}); pass the perf event \
         array map's fd"
    )]
    WrongMap(u32),
    #[error(
        "perfbuf: CPU {cpu} is online but the PERF_EVENT_ARRAY has only {max_entries} entries; \
         size the map to the number of possible CPUs"
    )]
    CpuOutOfRange { cpu: u32, max_entries: u32 },
    #[error("perfbuf: {what} failed")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("perfbuf: {what} for CPU {cpu} failed")]
    CpuIo {
        what: &'static str,
        cpu: u32,
        #[source]
        source: io::Error,
    },
    #[error(
        "perfbuf: CPU {cpu} ring has an unexpected data layout (offset {offset}, size {size})"
    )]
    BadLayout { cpu: u32, offset: u64, size: u64 },
    #[error(
        "perfbuf: corrupt record on CPU {cpu} at position {pos} (size {size}): {what}; the ring \
         cannot be read further"
    )]
    Corrupt {
        cpu: u32,
        pos: u64,
        size: usize,
        what: &'static str,
    },
}

impl PerfBufError {
    /// True when a wait was interrupted by a signal (`EINTR`).
    pub fn is_interrupted(&self) -> bool {
        matches!(self, PerfBufError::Io { source, .. } if source.kind() == io::ErrorKind::Interrupted)
    }
}

struct CpuRing {
    // Points into `_mmap`; declared first.
    view: PerfRingView,
    _mmap: Mmap,
    event: OwnedFd,
}

/// Per-CPU perf buffers over a PERF_EVENT_ARRAY map. Dropping it removes its events from the
/// map and closes them.
pub struct PerfBuf {
    rings: Vec<CpuRing>,
    epoll: Epoll,
    map: OwnedFd,
    scratch: Vec<u8>,
    tokens: Vec<u64>,
    wakeups: u64,
}

// SAFETY: each ring's raw pointers point into the mapping owned by the same CpuRing inside
// this value, so moving the PerfBuf to another thread keeps them valid. Not Sync: reading
// takes `&mut self`.
unsafe impl Send for PerfBuf {}

impl std::fmt::Debug for PerfBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cpus: Vec<u32> = self.rings.iter().map(|r| r.view.cpu()).collect();
        f.debug_struct("PerfBuf").field("cpus", &cpus).finish()
    }
}

impl PerfBuf {
    /// Opens a BPF output event on every online CPU (possible CPUs that are offline are
    /// skipped: their key stays empty), maps `1 + pages_per_cpu` pages for each and stores
    /// the event fds into `map` at key = cpu. The map fd is duplicated.
    pub fn new(map: BorrowedFd<'_>, opts: &PerfBufOptions) -> Result<PerfBuf, PerfBufError> {
        let pages = opts.pages_per_cpu;
        if pages == 0 || !pages.is_power_of_two() {
            return Err(PerfBufError::BadPages(pages));
        }
        let ps = page_size();
        let data_len = pages
            .checked_mul(ps)
            .filter(|l| *l <= u32::MAX as usize)
            .ok_or(PerfBufError::BadPages(pages))?;
        let info = bpf::map_info(map).map_err(|source| PerfBufError::Io {
            what: "reading map info (BPF_OBJ_GET_INFO_BY_FD)",
            source,
        })?;
        if info.map_type != bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY {
            return Err(PerfBufError::WrongMap(info.map_type));
        }
        let io = |what| move |source| PerfBufError::Io { what, source };
        let map = map
            .try_clone_to_owned()
            .map_err(io("duplicating the map fd"))?;
        let possible = cpus::possible_cpus().map_err(io("reading possible CPUs"))?;
        let online = cpus::online_cpus().map_err(io("reading online CPUs"))?;
        let epoll = Epoll::new().map_err(io("epoll_create1"))?;
        let mut buf = PerfBuf {
            rings: Vec::with_capacity(online.len()),
            epoll,
            map,
            scratch: Vec::new(),
            tokens: Vec::new(),
            wakeups: 0,
        };
        for cpu in possible.into_iter().filter(|c| online.contains(c)) {
            if cpu >= info.max_entries {
                return Err(PerfBufError::CpuOutOfRange {
                    cpu,
                    max_entries: info.max_entries,
                });
            }
            let ring = open_cpu_ring(cpu, opts.wakeup, ps, data_len)?;
            let cio = |what| move |source| PerfBufError::CpuIo { what, cpu, source };
            let token = buf.rings.len() as u64;
            buf.epoll
                .add_readable(ring.event.as_fd(), token, false)
                .map_err(cio("epoll_ctl(ADD) of the perf event"))?;
            let fd = ring.event.as_raw_fd();
            buf.rings.push(ring);
            bpf::map_update_elem(
                buf.map.as_fd(),
                &cpu.to_ne_bytes(),
                &fd.to_ne_bytes(),
                bpf::BPF_ANY,
            )
            .map_err(cio("storing the perf event fd into the PERF_EVENT_ARRAY"))?;
        }
        Ok(buf)
    }

    /// Drains every CPU ring once, without sleeping. Returns the records handed to `f`.
    pub fn consume<F>(&mut self, mut f: F) -> Result<usize, PerfBufError>
    where
        F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
    {
        self.drain_all(&mut f).map(|(n, _)| n)
    }

    fn drain_all<F>(&mut self, f: &mut F) -> Result<(usize, bool), PerfBufError>
    where
        F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
    {
        let mut total = 0;
        for r in &self.rings {
            let d = r.view.drain(&mut self.scratch, f)?;
            total += d.delivered;
            if d.broke {
                return Ok((total, true));
            }
        }
        Ok((total, false))
    }

    /// Drains all rings; if nothing was there, waits for a wakeup (at most `timeout`, `None` =
    /// forever) and drains ALL rings again, not just the ones that signalled: records below a
    /// wakeup watermark (or below `wakeupevents`) never signal, and this way a caller polling
    /// with a timeout (say 100 ms) still gets them within one timeout. Returns the records
    /// delivered (0 on timeout).
    pub fn poll<F>(&mut self, timeout: Option<Duration>, mut f: F) -> Result<usize, PerfBufError>
    where
        F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
    {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut waited = false;
        loop {
            let (n, broke) = self.drain_all(&mut f)?;
            if n > 0 || broke {
                return Ok(n);
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if waited && remaining == Some(Duration::ZERO) {
                return Ok(0);
            }
            // No lost-wakeup race here: each event's wakeup is recorded in the event itself
            // (rb->poll) and in the epoll ready list, whether or not we are asleep yet.
            let ready = self
                .epoll
                .wait(&mut self.tokens, remaining)
                .map_err(|source| PerfBufError::Io {
                    what: "epoll_wait on the perf events",
                    source,
                })?;
            if ready > 0 {
                self.wakeups += 1;
            }
            waited = true;
        }
    }

    /// How many times `poll` slept and was woken by the kernel (not by its timeout).
    pub fn wakeups(&self) -> u64 {
        self.wakeups
    }

    /// The epoll fd covering every CPU's event, to poll several sources at once; after it
    /// fires call [`PerfBuf::consume`].
    pub fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// The CPUs with a ring, in key order.
    pub fn cpus(&self) -> Vec<u32> {
        self.rings.iter().map(|r| r.view.cpu()).collect()
    }

    /// Unread bytes over all rings.
    pub fn available(&self) -> u64 {
        self.rings.iter().map(|r| r.view.available()).sum()
    }
}

impl AsRawFd for PerfBuf {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}

impl Drop for PerfBuf {
    fn drop(&mut self) {
        for r in &self.rings {
            // Best effort: a program keeps writing into a key whose event is gone otherwise.
            let _ = bpf::map_delete_elem(self.map.as_fd(), &r.view.cpu().to_ne_bytes());
        }
    }
}

fn open_cpu_ring(
    cpu: u32,
    wakeup: Wakeup,
    ps: usize,
    data_len: usize,
) -> Result<CpuRing, PerfBufError> {
    let cio = |what| move |source| PerfBufError::CpuIo { what, cpu, source };
    let event = perf::open_bpf_output(cpu, wakeup)
        .map_err(cio("perfevent_open(PERF_COUNT_SW_BPF_OUTPUT)"))?;
    let len = data_len + ps;
    let mmap = Mmap::map(event.as_fd(), 0, len, Prot::ReadWrite, libc::MAP_SHARED)
        .map_err(cio("mmap of the perf ring"))?;
    let base = mmap.as_ptr();
    // data_offset / data_size are set by the kernel at mmap time and never change; 0 on
    // kernels before 4.1, where the data starts at the second page.
    // SAFETY: both fields are inside the first (metadata) page of our live mapping, 8-aligned.
    let (mut offset, mut size) = unsafe {
        (
            base.add(mmap_page::DATA_OFFSET)
                .cast::<u64>()
                .read_volatile(),
            base.add(mmap_page::DATA_SIZE).cast::<u64>().read_volatile(),
        )
    };
    if offset == 0 && size == 0 {
        (offset, size) = (ps as u64, data_len as u64);
    }
    let fits = offset
        .checked_add(size)
        .is_some_and(|end| end <= len as u64);
    if !fits || !size.is_power_of_two() || !offset.is_multiple_of(8) {
        return Err(PerfBufError::BadLayout { cpu, offset, size });
    }
    // SAFETY: base is the live metadata page of this mapping (kept in the CpuRing next to the
    // view), writable (data_tail); [offset, offset + size) is inside the mapping (checked);
    // size is a power of two; this PerfBuf is the only reader of this fresh event's ring.
    let view = unsafe { PerfRingView::new(base, base.add(offset as usize), size, cpu) };
    Ok(CpuRing {
        view,
        _mmap: mmap,
        event,
    })
}
