//! Consumer of a `BPF_MAP_TYPE_RINGBUF` map: maps its pages, walks records zero-copy,
//! and sleeps in epoll when the ring is empty without ever missing a wakeup.
//!
//! See [`walk`] for the memory layout and record format. The wakeup protocol, which is the
//! subtle part, is documented on [`RingBuf::poll`].

mod walk;

use std::io;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::bpf;
use crate::sys::epoll::Epoll;
use crate::sys::mmap::{page_size, Mmap, Prot};

use walk::RingView;
pub use walk::{BUSY_BIT, DISCARD_BIT, HDR_SZ};

/// Errors from setting up or reading a ring buffer.
#[derive(Debug, thiserror::Error)]
pub enum RingBufError {
    /// `max_entries` is not usable as a ring size.
    #[error(
        "ringbuf size {max_entries} is invalid: it must be a power of two and a multiple of \
         the page size ({page_size}); fix max_entries in the map definition"
    )]
    BadSize { max_entries: u32, page_size: usize },
    /// The map behind the fd is not what the caller said.
    #[error(
        "map is not a ringbuf of {expected} bytes (kernel says type {map_type}, max_entries \
         {max_entries}); pass the ringbuf map's fd and its max_entries"
    )]
    WrongMap {
        expected: u32,
        map_type: u32,
        max_entries: u32,
    },
    /// A system call failed.
    #[error("ringbuf: {what} failed")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// A committed record header describes a record that cannot be in the ring.
    #[error(
        "corrupt ringbuf record header at position {pos}: length {len} does not fit in the \
         {limit} bytes available; the ring cannot be read further"
    )]
    CorruptHeader { pos: u64, len: u32, limit: u64 },
}

impl RingBufError {
    /// True when a wait was interrupted by a signal (`EINTR`): check your stop flag, poll again.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, RingBufError::Io { source, .. } if source.kind() == io::ErrorKind::Interrupted)
    }
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> RingBufError {
    move |source| RingBufError::Io { what, source }
}

/// How many times `poll` re-drains before sleeping when it keeps finding only discarded
/// records (bounds the loop if a producer discards without end).
const MAX_PRE_SLEEP_DRAINS: usize = 16;

/// A ring buffer consumer. Owns a dup of the map fd, the consumer-page mapping (read-write),
/// the producer-page + doubled data mapping (read-only) and an epoll instance watching the
/// map fd (edge-triggered). One consumer per ring: two consumers of one ring would race on
/// `consumer_pos`.
pub struct RingBuf {
    // `view` points into `_consumer_map` and `_producer_map`; it is declared first so it is
    // dropped first (it has no Drop, but keep the borrow order obvious).
    view: RingView,
    _consumer_map: Mmap,
    _producer_map: Mmap,
    epoll: Epoll,
    _map: OwnedFd,
    tokens: Vec<u64>,
    wakeups: u64,
    size: u64,
}

// SAFETY: the raw pointers in `view` point into mappings owned by this same value, so moving
// the whole RingBuf to another thread keeps them valid; nothing is thread-affine. It is not
// Sync: `consume`/`poll` take `&mut self`, so one thread consumes at a time.
unsafe impl Send for RingBuf {}

impl std::fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBuf")
            .field("size", &self.size)
            .field("consumer_pos", &self.view.consumer_pos())
            .field("producer_pos", &self.view.producer_pos())
            .finish()
    }
}

impl RingBuf {
    /// Maps the ring of `map` (a `BPF_MAP_TYPE_RINGBUF` fd; it is duplicated, the caller keeps
    /// its own) whose data area is `max_entries` bytes. Consumption resumes at the ring's
    /// current consumer position (read from the mapped page, so a pinned ring that an earlier
    /// consumer used continues where it stopped).
    pub fn new(map: BorrowedFd<'_>, max_entries: u32) -> Result<RingBuf, RingBufError> {
        let ps = page_size();
        if !max_entries.is_power_of_two() || !(max_entries as usize).is_multiple_of(ps) {
            return Err(RingBufError::BadSize {
                max_entries,
                page_size: ps,
            });
        }
        let info =
            bpf::map_info(map).map_err(io_err("reading map info (BPF_OBJ_GET_INFO_BY_FD)"))?;
        if info.map_type != bpf::BPF_MAP_TYPE_RINGBUF || info.max_entries != max_entries {
            return Err(RingBufError::WrongMap {
                expected: max_entries,
                map_type: info.map_type,
                max_entries: info.max_entries,
            });
        }
        let map = map
            .try_clone_to_owned()
            .map_err(io_err("duplicating the map fd"))?;
        // Page 0: consumer_pos, the only page we may write.
        let consumer_map = Mmap::map(map.as_fd(), 0, ps, Prot::ReadWrite, libc::MAP_SHARED)
            .map_err(io_err("mmap of the consumer page"))?;
        // Page 1 onwards: producer_pos, then the data area which the kernel maps twice in a
        // row, so we map page + 2 * max_entries bytes read-only.
        let producer_len = (max_entries as usize)
            .checked_mul(2)
            .and_then(|d| d.checked_add(ps))
            .ok_or(RingBufError::BadSize {
                max_entries,
                page_size: ps,
            })?;
        let producer_map = Mmap::map(
            map.as_fd(),
            ps as u64,
            producer_len,
            Prot::Read,
            libc::MAP_SHARED,
        )
        .map_err(io_err("mmap of the producer page and data area"))?;
        let epoll = Epoll::new().map_err(io_err("epoll_create1"))?;
        epoll
            .add_readable(map.as_fd(), 0, true)
            .map_err(io_err("epoll_ctl(ADD) of the ringbuf map fd"))?;
        let base = producer_map.as_ptr();
        // SAFETY: the consumer page is a live read-write page-aligned mapping of the kernel's
        // consumer_pos page; the producer mapping starts with producer_pos (page aligned) and
        // continues with 2 * max_entries bytes of data at offset one page, which the kernel
        // maps twice so byte i + size equals byte i. Both mappings live in `self` as long as
        // the view. max_entries >= page size >= 16 and is a power of two (checked above).
        // We are the only consumer writing consumer_pos (documented on the type).
        let view = unsafe {
            RingView::new(
                consumer_map.as_ptr().cast::<AtomicU64>(),
                base.cast::<AtomicU64>(),
                base.add(ps),
                u64::from(max_entries),
            )
        };
        Ok(RingBuf {
            view,
            _consumer_map: consumer_map,
            _producer_map: producer_map,
            epoll,
            _map: map,
            tokens: Vec::with_capacity(1),
            wakeups: 0,
            size: u64::from(max_entries),
        })
    }

    /// Hands every committed record present now to `f` (in order, zero-copy: the slice is
    /// valid only during the call), skipping discarded ones; stops early on `Break`. Never
    /// sleeps. Returns the number of records handed to `f`.
    pub fn consume<F>(&mut self, mut f: F) -> Result<usize, RingBufError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        self.view.drain(&mut f).map(|d| d.delivered)
    }

    /// Drains like [`RingBuf::consume`]; if that delivered nothing, waits for a wakeup (at most
    /// `timeout`, `None` = forever) and drains again. Returns the records delivered (0 on
    /// timeout). Interrupted waits return an error with [`RingBufError::is_interrupted`].
    ///
    /// Wakeup protocol: the kernel only wakes a sleeping consumer when it commits the record
    /// that sits exactly at `consumer_pos` (see `bpf_ringbuf_commit`), reading consumer_pos
    /// after its commit `xchg` (a full barrier). We store consumer_pos at the end of a drain,
    /// then re-check for data before sleeping. Without a full fence between that store and
    /// the re-check, both sides can read the other's stale value (a store-buffering race):
    /// the producer sees the old consumer_pos and skips the wakeup, we see no new data and
    /// sleep, and since later commits are not at consumer_pos either, nobody wakes us again.
    /// `fence(SeqCst)` here plus the kernel's full barrier guarantee at least one side sees
    /// the other. A record still BUSY at the head is fine to sleep on: its commit will find
    /// consumer_pos equal to its position and wake us.
    pub fn poll<F>(&mut self, timeout: Option<Duration>, mut f: F) -> Result<usize, RingBufError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut redrains = 0;
        let mut waited = false;
        loop {
            let d = self.view.drain(&mut f)?;
            if d.delivered > 0 || d.broke {
                return Ok(d.delivered);
            }
            // Full fence between our consumer_pos store (in drain, or an earlier one) and the
            // re-read of producer_pos / the head header below: pairs with the full barrier of
            // the kernel's xchg(&hdr->len) in bpf_ringbuf_commit, which precedes its
            // smp_load_acquire(&rb->consumer_pos). See the doc comment for the race.
            fence(Ordering::SeqCst);
            if self.view.head_committed() {
                // Data arrived (or only discarded records): drain again, do not sleep.
                redrains += 1;
                if redrains < MAX_PRE_SLEEP_DRAINS {
                    continue;
                }
                return Ok(0);
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if waited && remaining == Some(Duration::ZERO) {
                return Ok(0); // timed out
            }
            // A wakeup that arrived while we were draining leaves the fd ready, so this can
            // return at once with nothing new: we then drain, find nothing and wait again.
            let ready = self
                .epoll
                .wait(&mut self.tokens, remaining)
                .map_err(io_err("epoll_wait on the ringbuf"))?;
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

    /// The epoll fd (readable when the ring has new data), to poll several sources at once;
    /// after it fires call [`RingBuf::consume`] (or `poll` with a zero timeout).
    pub fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Bytes between the consumer and producer positions (including records still BUSY and
    /// discarded ones not yet skipped).
    pub fn available(&self) -> u64 {
        self.view.available()
    }

    /// The data area size (`max_entries`).
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl AsRawFd for RingBuf {
    fn as_raw_fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }
}
