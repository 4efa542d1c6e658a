//! Hooks into the real consumers' walks, for the ring view (`--show-ring`) and `--stats`.
//!
//! The ring and perf walks take an `O: Observer` and call it at each step: what the learner
//! sees is what the consumer did. With [`NoObserver`] (what [`Reader::poll`] and
//! [`Reader::consume`] use) every hook is an empty inline function and the extra loads the
//! view needs (a record's `pg_off`) sit behind `if O::enabled()`, a constant `false`, so the
//! compiler removes them: the hooks cost nothing when off.
//!
//! [`Reader::poll`]: super::Reader::poll
//! [`Reader::consume`]: super::Reader::consume

/// Why a ring buffer drain stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// It reached `producer_pos`: everything reserved was read.
    Empty,
    /// The record at the head is still BUSY (reserved, not committed): records are consumed
    /// in order, so nothing after it may be read yet.
    Busy,
    /// The callback asked to stop (`ControlFlow::Break`).
    Break,
    /// A header that cannot be right (the drain returns an error).
    Corrupt,
}

impl Stopped {
    /// `empty`, `busy`, `break` or `corrupt`.
    pub fn name(self) -> &'static str {
        match self {
            Stopped::Empty => "empty",
            Stopped::Busy => "busy",
            Stopped::Break => "break",
            Stopped::Corrupt => "corrupt",
        }
    }
}

/// What made the consumer drain (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WokenBy {
    /// The kernel woke our epoll (a commit at consumer_pos, a forced wakeup, a perf
    /// wakeup_events/watermark crossing).
    Kernel,
    /// The epoll wait timed out.
    Timeout,
    /// Nothing: a drain at the start of `poll`/`consume`, or a re-drain after the fence and
    /// re-check found more data.
    None,
}

impl WokenBy {
    /// `kernel`, `timeout` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            WokenBy::Kernel => "kernel",
            WokenBy::Timeout => "timeout",
            WokenBy::None => "none",
        }
    }
}

/// One ring buffer record header as the walk read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingRecord {
    /// Its position (free-running byte counter; `pos & (size - 1)` is the offset).
    pub pos: u64,
    /// The raw header word (`len` with the BUSY and DISCARD bits).
    pub header: u32,
    /// The payload length (header word without the two bits).
    pub len: u32,
    /// Reserved, not yet committed: the walk stops here.
    pub busy: bool,
    /// Committed as discarded: skipped, but consumed.
    pub discard: bool,
    /// The header's second word: the record's page offset from the ring's start, which the
    /// kernel uses to find the ring from a record pointer in `bpf_ringbuf_submit`.
    pub pg_off: u32,
    /// The record runs past the end of the data area into its second mapping.
    pub wraps: bool,
}

/// One perf ring record header as the walk read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfRecordInfo {
    /// The CPU whose ring holds the record.
    pub cpu: u32,
    /// Its position (free-running; `offset & (size - 1)` is the offset in the data area).
    pub offset: u64,
    /// `PERF_RECORD_SAMPLE` (9), `PERF_RECORD_LOST` (2) or another type (skipped).
    pub rtype: u32,
    /// Bytes, header included.
    pub size: u16,
    /// It straddles the end of the data area (mapped once) and was copied to rejoin it.
    pub wraps: bool,
    /// Bytes copied to rejoin it (0 when read in place).
    pub copied: usize,
}

/// Hooks called by the consumers as they work. Every method has an empty default.
pub trait Observer {
    /// False only for [`NoObserver`]: the walks skip the loads the hooks alone need.
    #[inline(always)]
    fn enabled() -> bool
    where
        Self: Sized,
    {
        true
    }
    /// A ring buffer drain starts: the positions it read and the data area size.
    #[inline(always)]
    fn ring_drain_start(&mut self, _consumer_pos: u64, _producer_pos: u64, _size: u64) {}
    /// A header read by the walk (also the BUSY one it stops at).
    #[inline(always)]
    fn ring_record(&mut self, _rec: &RingRecord) {}
    /// `consumer_pos` was stored (`last`: the store at the end of the drain; otherwise a
    /// release in the middle, which gives space back to the producer early).
    #[inline(always)]
    fn ring_release(&mut self, _consumer_pos: u64, _last: bool) {}
    /// The drain ended.
    #[inline(always)]
    fn ring_drain_end(&mut self, _consumer_pos_after: u64, _stopped: Stopped) {}
    /// A perf ring drain on `cpu` starts.
    #[inline(always)]
    fn perf_drain_start(&mut self, _cpu: u32, _data_tail: u64, _data_head: u64, _size: u64) {}
    /// A perf record header read by the walk.
    #[inline(always)]
    fn perf_record(&mut self, _rec: &PerfRecordInfo) {}
    /// A perf ring drain ended; `data_tail` is now `data_tail_after`.
    #[inline(always)]
    fn perf_drain_end(&mut self, _cpu: u32, _data_tail_after: u64) {}
    /// After the last position store: `fence(SeqCst)`, then the re-check found more
    /// (`found`: drain again) or nothing (safe to sleep).
    #[inline(always)]
    fn recheck(&mut self, _found: bool) {}
    /// What the next drain follows.
    #[inline(always)]
    fn woken(&mut self, _by: WokenBy) {}
}

/// No hooks, no cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    #[inline(always)]
    fn enabled() -> bool {
        false
    }
}

/// Any `&mut` observer (also `&mut dyn Observer`) is an observer.
impl<T: Observer + ?Sized> Observer for &mut T {
    fn ring_drain_start(&mut self, c: u64, p: u64, s: u64) {
        (**self).ring_drain_start(c, p, s)
    }
    fn ring_record(&mut self, r: &RingRecord) {
        (**self).ring_record(r)
    }
    fn ring_release(&mut self, c: u64, last: bool) {
        (**self).ring_release(c, last)
    }
    fn ring_drain_end(&mut self, c: u64, s: Stopped) {
        (**self).ring_drain_end(c, s)
    }
    fn perf_drain_start(&mut self, cpu: u32, t: u64, h: u64, s: u64) {
        (**self).perf_drain_start(cpu, t, h, s)
    }
    fn perf_record(&mut self, r: &PerfRecordInfo) {
        (**self).perf_record(r)
    }
    fn perf_drain_end(&mut self, cpu: u32, t: u64) {
        (**self).perf_drain_end(cpu, t)
    }
    fn recheck(&mut self, found: bool) {
        (**self).recheck(found)
    }
    fn woken(&mut self, by: WokenBy) {
        (**self).woken(by)
    }
}
