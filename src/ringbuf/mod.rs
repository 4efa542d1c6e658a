//! Consumer of a `BPF_MAP_TYPE_RINGBUF` map: maps its pages, walks records zero-copy,
//! and sleeps in epoll when the ring is empty without ever missing a wakeup.
//!
//! See `walk.rs` for the memory layout and record format, and the consumer module's wait loop
//! for the wakeup protocol (the fence and re-check after every `consumer_pos` store).
//!
//! Sound by construction: a `RingBuf` owns a dup of the map fd and claims the ring's map id
//! for as long as it lives, so no second `RingBuf` in this process can store `consumer_pos`
//! (and let the kernel overwrite records) while a callback of the first still borrows them.
//! The callback's `&[u8]` cannot escape the call, and the position past a record is only
//! stored after its callback returned.

mod walk;

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::Duration;

use crate::consumer::{io_err, ConsumerError, NoObserver, Observer, Waiter};
use crate::sys::bpf;
use crate::sys::mmap::{page_size, Mmap, Prot};
use crate::sys::probe::BPF_F_RB_OVERWRITE;

pub(crate) use walk::RingView;
pub use walk::{BUSY_BIT, DISCARD_BIT, HDR_SZ};

/// Map ids of the rings a `RingBuf` in this process currently consumes.
static CLAIMED: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

/// This process's claim on one ring (its map id); released on drop.
#[derive(Debug)]
struct Claim(u32);

impl Claim {
    fn take(map_id: u32) -> Result<Claim, ConsumerError> {
        let mut g = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
        if g.get_or_insert_with(HashSet::new).insert(map_id) {
            Ok(Claim(map_id))
        } else {
            Err(ConsumerError::RingInUse { map_id })
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut g = CLAIMED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = g.as_mut() {
            set.remove(&self.0);
        }
    }
}

/// A ring buffer consumer. Owns a dup of the map fd, the consumer-page mapping (read-write),
/// the producer-page + doubled data mapping (read-only), and the epoll instance watching the
/// map fd (edge-triggered). One per ring per process (see the module docs).
pub struct RingBuf {
    // `view` points into `_consumer_map` and `_producer_map`; it is declared first so it is
    // dropped first (it has no Drop, but keep the borrow order obvious).
    view: RingView,
    _consumer_map: Mmap,
    _producer_map: Mmap,
    waiter: Waiter,
    _claim: Claim,
    _map: OwnedFd,
}

// SAFETY: the raw pointers in `view` point into mappings owned by this same value, so moving
// the whole RingBuf to another thread keeps them valid; nothing is thread-affine. It is not
// Sync: `consume`/`poll` take `&mut self`, so one thread consumes at a time.
unsafe impl Send for RingBuf {}

impl std::fmt::Debug for RingBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingBuf")
            .field("size", &self.view.size())
            .field("consumer_pos", &self.view.consumer_pos())
            .field("producer_pos", &self.view.producer_pos())
            .finish()
    }
}

impl RingBuf {
    /// Maps the ring of `map` (a `BPF_MAP_TYPE_RINGBUF` fd; it is duplicated, the caller keeps
    /// its own) whose data area is `max_entries` bytes. Consumption resumes at the ring's
    /// current consumer position (a pinned ring that an earlier consumer used continues where
    /// it stopped; that position must be a record boundary).
    ///
    /// Errors: [`ConsumerError::RingSize`], [`ConsumerError::WrongRingMap`],
    /// [`ConsumerError::Overwrite`] (a `BPF_F_RB_OVERWRITE` ring),
    /// [`ConsumerError::RingInUse`] (another `RingBuf` of this process reads it),
    /// [`ConsumerError::BadStartPos`], [`ConsumerError::Io`].
    pub fn new(map: BorrowedFd<'_>, max_entries: u32) -> Result<RingBuf, ConsumerError> {
        let ps = page_size();
        if !max_entries.is_power_of_two() || !(max_entries as usize).is_multiple_of(ps) {
            return Err(ConsumerError::RingSize {
                max_entries,
                page_size: ps,
            });
        }
        let info =
            bpf::map_info(map).map_err(io_err("reading map info (BPF_OBJ_GET_INFO_BY_FD)"))?;
        if info.map_type != bpf::BPF_MAP_TYPE_RINGBUF || info.max_entries != max_entries {
            return Err(ConsumerError::WrongRingMap {
                expected: max_entries,
                map_type: info.map_type,
                max_entries: info.max_entries,
            });
        }
        if info.map_flags & BPF_F_RB_OVERWRITE != 0 {
            return Err(ConsumerError::Overwrite);
        }
        let claim = Claim::take(info.id)?;
        let map = map
            .try_clone_to_owned()
            .map_err(io_err("duplicating the map fd"))?;
        // Page 0: consumer_pos, the only page we may write.
        let consumer_map = Mmap::map(map.as_fd(), 0, ps, Prot::ReadWrite, libc::MAP_SHARED)
            .map_err(io_err("mmap of the ringbuf consumer page"))?;
        // Page 1 onwards: producer_pos, then the data area which the kernel maps twice in a
        // row, so we map page + 2 * max_entries bytes read-only.
        let producer_len = (max_entries as usize)
            .checked_mul(2)
            .and_then(|d| d.checked_add(ps))
            .ok_or(ConsumerError::RingSize {
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
        .map_err(io_err("mmap of the ringbuf producer page and data area"))?;
        let waiter = Waiter::new()?;
        waiter
            .epoll()
            .add_readable(map.as_fd(), 0, true)
            .map_err(io_err("epoll_ctl(ADD) of the ringbuf map fd"))?;
        let base = producer_map.as_ptr();
        // SAFETY: the consumer page is a live read-write page-aligned mapping of the kernel's
        // consumer_pos page; the producer mapping starts with producer_pos (page aligned) and
        // continues with 2 * max_entries bytes of data at offset one page, which the kernel
        // maps twice so byte i + size equals byte i. Both mappings live in `self` as long as
        // the view. max_entries >= page size >= 16 and is a power of two (checked above).
        // We are the only consumer writing consumer_pos in this process (the claim above).
        let view = unsafe {
            RingView::new(
                consumer_map.as_ptr().cast::<AtomicU64>(),
                base.cast::<AtomicU64>(),
                base.add(ps),
                u64::from(max_entries),
            )
        };
        let (cons, prod) = (view.consumer_pos(), view.producer_pos());
        if !cons.is_multiple_of(8) || cons > prod {
            return Err(ConsumerError::BadStartPos {
                consumer_pos: cons,
                producer_pos: prod,
            });
        }
        Ok(RingBuf {
            view,
            _consumer_map: consumer_map,
            _producer_map: producer_map,
            waiter,
            _claim: claim,
            _map: map,
        })
    }

    /// Hands every committed record present now to `f` (in order, zero-copy: the slice is
    /// valid only during the call), skipping discarded ones; stops early on `Break`. Never
    /// sleeps. Safe after the fd from [`RingBuf::as_fd`] fired, level- or edge-triggered:
    /// after storing `consumer_pos` it fences and re-checks (draining again if a commit raced
    /// with us), and if it returns with records left (a `Break`) it keeps the fd readable.
    /// Returns the number of records handed to `f`.
    pub fn consume<F>(&mut self, f: F) -> Result<usize, ConsumerError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        self.consume_observed(&mut NoObserver, f)
    }

    /// [`RingBuf::consume`] reporting each step to `obs`.
    pub fn consume_observed<O, F>(&mut self, obs: &mut O, mut f: F) -> Result<usize, ConsumerError>
    where
        O: Observer,
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        let view = &self.view;
        self.waiter.consume(
            obs,
            |obs: &mut O| view.drain(obs, &mut f),
            || view.head_committed(),
        )
    }

    /// Drains like [`RingBuf::consume`]; if that delivered nothing, waits for a wakeup (at most
    /// `timeout`, `None` = forever) and drains again. Returns the records delivered (0 on
    /// timeout). Interrupted waits return an error with [`ConsumerError::is_interrupted`].
    pub fn poll<F>(&mut self, timeout: Option<Duration>, f: F) -> Result<usize, ConsumerError>
    where
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        self.poll_observed(timeout, &mut NoObserver, f)
    }

    /// [`RingBuf::poll`] reporting each step to `obs`.
    pub fn poll_observed<O, F>(
        &mut self,
        timeout: Option<Duration>,
        obs: &mut O,
        mut f: F,
    ) -> Result<usize, ConsumerError>
    where
        O: Observer,
        F: FnMut(&[u8]) -> ControlFlow<()>,
    {
        let view = &self.view;
        self.waiter.poll(
            timeout,
            obs,
            |obs: &mut O| view.drain(obs, &mut f),
            || view.head_committed(),
        )
    }

    /// How many times the kernel woke us (not counting timeouts).
    pub fn wakeups(&self) -> u64 {
        self.waiter.wakeups()
    }

    /// Bytes between the consumer and producer positions (including records still BUSY and
    /// discarded ones not yet skipped).
    pub fn available(&self) -> u64 {
        self.view.available()
    }

    /// The data area size (`max_entries`).
    pub fn size(&self) -> u64 {
        self.view.size()
    }

    /// The consumer position now (where the next drain starts).
    pub fn consumer_pos(&self) -> u64 {
        self.view.consumer_pos()
    }

    /// The producer position now.
    pub fn producer_pos(&self) -> u64 {
        self.view.producer_pos()
    }
}

/// The epoll fd, readable when the ring has new data (or records were left behind); after it
/// fires call [`RingBuf::consume`].
impl AsFd for RingBuf {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.waiter.epoll().as_fd()
    }
}

impl AsRawFd for RingBuf {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}
