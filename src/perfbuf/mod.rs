//! Consumer of a `BPF_MAP_TYPE_PERF_EVENT_ARRAY`: one `PERF_COUNT_SW_BPF_OUTPUT` event and
//! ring per online CPU, stored into the map at key = cpu, read through epoll.
//!
//! See `ring.rs` for the per-CPU ring layout and record walking. CPUs that come online after
//! start get their ring at the next `poll` (checked about once a second) or an explicit
//! [`PerfBuf::add_online_cpus`]; until then a BPF program on such a CPU finds no event in the
//! map (`bpf_perf_event_output` returns `-ENOENT`, not a full ring).

mod ring;

use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::consumer::{io_err, ConsumerError, NoObserver, Observer, PerfOpts, Waiter};
use crate::sys::bpf;
use crate::sys::cpus;
use crate::sys::mmap::{page_size, Mmap, Prot};
use crate::sys::perf::{self, mmap_page};

pub use crate::sys::perf::Wakeup;
use ring::PerfRingView;

/// How often `poll` looks for CPUs that came online.
const CPU_CHECK_EVERY: Duration = Duration::from_secs(1);

/// One record from a CPU's ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PerfRecord<'a> {
    /// A `bpf_perf_event_output` payload (the kernel pads it to 8 bytes minus 4: expect up to
    /// 7 trailing bytes after what the program wrote). Borrowed for the callback only.
    Sample { cpu: u32, data: &'a [u8] },
    /// The kernel dropped `count` samples on `cpu` because its ring was full. It writes this
    /// record in front of the next sample that fits, so it arrives late, not at the drop.
    Lost { cpu: u32, count: u64 },
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
    waiter: Waiter,
    map: OwnedFd,
    max_entries: u32,
    opts: PerfOpts,
    scratch: Vec<u8>,
    cpu_checked: Instant,
}

// SAFETY: each ring's raw pointers point into the mapping owned by the same CpuRing inside
// this value, so moving the PerfBuf to another thread keeps them valid. Not Sync: reading
// takes `&mut self`.
unsafe impl Send for PerfBuf {}

impl std::fmt::Debug for PerfBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerfBuf")
            .field("cpus", &self.cpus())
            .finish()
    }
}

impl PerfBuf {
    /// Opens a BPF output event on every online CPU (possible CPUs that are offline get one
    /// when they come online, see the module docs), maps `1 + opts.pages` pages for each and
    /// stores the event fds into `map` at key = cpu. The map fd is duplicated.
    ///
    /// Errors: [`ConsumerError::PerfPages`], [`ConsumerError::PerfWatermark`],
    /// [`ConsumerError::WrongPerfMap`], [`ConsumerError::CpuOutOfRange`],
    /// [`ConsumerError::Io`], [`ConsumerError::CpuIo`], [`ConsumerError::PerfLayout`].
    pub fn new(map: BorrowedFd<'_>, opts: &PerfOpts) -> Result<PerfBuf, ConsumerError> {
        let online = cpus::online_cpus().map_err(io_err("reading online CPUs"))?;
        Self::with_cpus(map, opts, &online)
    }

    /// Like [`PerfBuf::new`] but opens rings only on `cpus` (each must be online).
    pub fn with_cpus(
        map: BorrowedFd<'_>,
        opts: &PerfOpts,
        cpus: &[u32],
    ) -> Result<PerfBuf, ConsumerError> {
        opts.validate(page_size())?;
        let info =
            bpf::map_info(map).map_err(io_err("reading map info (BPF_OBJ_GET_INFO_BY_FD)"))?;
        if info.map_type != bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY {
            return Err(ConsumerError::WrongPerfMap(info.map_type));
        }
        let map = map
            .try_clone_to_owned()
            .map_err(io_err("duplicating the map fd"))?;
        let mut buf = PerfBuf {
            rings: Vec::with_capacity(cpus.len()),
            waiter: Waiter::new()?,
            map,
            max_entries: info.max_entries,
            opts: *opts,
            scratch: Vec::new(),
            cpu_checked: Instant::now(),
        };
        for &cpu in cpus {
            buf.add_cpu(cpu)?;
        }
        Ok(buf)
    }

    fn add_cpu(&mut self, cpu: u32) -> Result<(), ConsumerError> {
        if cpu >= self.max_entries {
            return Err(ConsumerError::CpuOutOfRange {
                cpu,
                max_entries: self.max_entries,
            });
        }
        let ring = open_cpu_ring(cpu, &self.opts)?;
        let cio = |what| move |source| ConsumerError::CpuIo { what, cpu, source };
        let token = self.rings.len() as u64;
        self.waiter
            .epoll()
            .add_readable(ring.event.as_fd(), token, false)
            .map_err(cio("epoll_ctl(ADD) of the perf event"))?;
        let fd = ring.event.as_raw_fd();
        self.rings.push(ring);
        bpf::map_update_elem(
            self.map.as_fd(),
            &cpu.to_ne_bytes(),
            &fd.to_ne_bytes(),
            bpf::BPF_ANY,
        )
        .map_err(cio("storing the perf event fd into the PERF_EVENT_ARRAY"))
    }

    /// Opens rings on online CPUs that have none (they came online after start). Returns the
    /// CPUs added. A CPU that went offline keeps its ring (the kernel keeps the event).
    pub fn add_online_cpus(&mut self) -> Result<Vec<u32>, ConsumerError> {
        self.cpu_checked = Instant::now();
        let online = cpus::online_cpus().map_err(io_err("reading online CPUs"))?;
        let have = self.cpus();
        let mut added = Vec::new();
        for cpu in online.into_iter().filter(|c| !have.contains(c)) {
            self.add_cpu(cpu)?;
            added.push(cpu);
        }
        Ok(added)
    }

    /// Drains every CPU ring once (and again while the re-check finds more), without
    /// sleeping. Safe after the fd from [`PerfBuf::as_fd`] fired, however it is watched.
    /// Returns the records handed to `f`.
    pub fn consume<F>(&mut self, f: F) -> Result<usize, ConsumerError>
    where
        F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
    {
        self.consume_observed(&mut NoObserver, f)
    }

    /// [`PerfBuf::consume`] reporting each step to `obs`.
    pub fn consume_observed<O, F>(&mut self, obs: &mut O, mut f: F) -> Result<usize, ConsumerError>
    where
        O: Observer,
        F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
    {
        let (rings, scratch) = (&self.rings, &mut self.scratch);
        self.waiter.consume(
            obs,
            |obs: &mut O| drain_all(rings, scratch, obs, &mut f),
            || rings.iter().any(|r| r.view.available() > 0),
        )
    }

    /// Drains all rings; if nothing was there, waits for a wakeup (at most `timeout`, `None` =
    /// forever) and drains ALL rings again, not just the ones that signalled: records below a
    /// wakeup watermark (or below `wakeup_events`) never signal, and this way a caller polling
    /// with a timeout (say 100 ms) still gets them within one timeout. Returns the records
    /// delivered (0 on timeout).
    pub fn poll<F>(&mut self, timeout: Option<Duration>, f: F) -> Result<usize, ConsumerError>
    where
        F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
    {
        self.poll_observed(timeout, &mut NoObserver, f)
    }

    /// [`PerfBuf::poll`] reporting each step to `obs`.
    pub fn poll_observed<O, F>(
        &mut self,
        timeout: Option<Duration>,
        obs: &mut O,
        mut f: F,
    ) -> Result<usize, ConsumerError>
    where
        O: Observer,
        F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
    {
        if self.cpu_checked.elapsed() >= CPU_CHECK_EVERY {
            // A CPU that comes and goes between the sysfs read and perf_event_open fails
            // here; the data already flowing must not stop for it: try again next time.
            let _ = self.add_online_cpus();
        }
        let (rings, scratch) = (&self.rings, &mut self.scratch);
        self.waiter.poll(
            timeout,
            obs,
            |obs: &mut O| drain_all(rings, scratch, obs, &mut f),
            || rings.iter().any(|r| r.view.available() > 0),
        )
    }

    /// How many times the kernel woke us (not counting timeouts).
    pub fn wakeups(&self) -> u64 {
        self.waiter.wakeups()
    }

    /// The CPUs with a ring, in the order they were opened.
    pub fn cpus(&self) -> Vec<u32> {
        self.rings.iter().map(|r| r.view.cpu()).collect()
    }

    /// Unread bytes over all rings.
    pub fn available(&self) -> u64 {
        self.rings.iter().map(|r| r.view.available()).sum()
    }
}

fn drain_all<O, F>(
    rings: &[CpuRing],
    scratch: &mut Vec<u8>,
    obs: &mut O,
    f: &mut F,
) -> Result<crate::consumer::Drain, ConsumerError>
where
    O: Observer,
    F: FnMut(PerfRecord<'_>) -> ControlFlow<()>,
{
    let mut total = crate::consumer::Drain::default();
    for r in rings {
        let d = r.view.drain(scratch, obs, f)?;
        total.delivered += d.delivered;
        if d.broke {
            total.broke = true;
            break;
        }
    }
    Ok(total)
}

/// The epoll fd covering every CPU's event; after it fires call [`PerfBuf::consume`].
impl AsFd for PerfBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.waiter.epoll().as_fd()
    }
}

impl AsRawFd for PerfBuf {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
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

fn open_cpu_ring(cpu: u32, opts: &PerfOpts) -> Result<CpuRing, ConsumerError> {
    let ps = page_size();
    let data_len = opts.pages * ps; // validated: fits 2 GiB
    let cio = |what| move |source| ConsumerError::CpuIo { what, cpu, source };
    let event = perf::open_bpf_output(cpu, opts.wakeup)
        .map_err(cio("perf_event_open(PERF_COUNT_SW_BPF_OUTPUT)"))?;
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
        return Err(ConsumerError::PerfLayout { cpu, offset, size });
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
