//! One consumer interface over both rings: the [`Transport`] and its typed options, and the
//! [`Reader`] that the tracer, `bench` and the ring view all use.
//!
//! The two consumers underneath are [`RingBuf`] (`BPF_MAP_TYPE_RINGBUF`) and [`PerfBuf`]
//! (`BPF_MAP_TYPE_PERF_EVENT_ARRAY`); they share their verbs (`consume`, `poll`, `wakeups`,
//! `available`, `as_fd`), their error type ([`ConsumerError`]), their wait loop (one fence
//! and re-check protocol, see `wait.rs`) and their [`Observer`] hooks.

#![deny(missing_docs)]

mod error;
pub mod observer;
mod wait;

use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

pub(crate) use error::io_err;
pub use error::ConsumerError;
pub use observer::{NoObserver, Observer};
pub(crate) use wait::Waiter;

pub use crate::perfbuf::{PerfBuf, PerfRecord};
pub use crate::ringbuf::RingBuf;
pub use crate::sys::perf::Wakeup;

/// What one drain pass over a ring did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Drain {
    /// Records handed to the callback (discarded and skipped records are not counted).
    pub delivered: usize,
    /// The callback returned `Break`; committed records may remain.
    pub broke: bool,
}

/// How records travel from the BPF program to us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `bpf_ringbuf_reserve()` + `bpf_ringbuf_submit()`: written in place, no copy.
    RingbufReserve,
    /// `bpf_ringbuf_output()`: built in a per-CPU scratch map, then copied in.
    RingbufOutput,
    /// `bpf_perf_event_output()`: one perf ring per CPU.
    Perfbuf,
}

impl Transport {
    /// Every transport, in the CLI's order.
    pub const ALL: [Transport; 3] = [
        Transport::RingbufReserve,
        Transport::RingbufOutput,
        Transport::Perfbuf,
    ];

    /// The CLI flag without its dashes.
    pub fn name(self) -> &'static str {
        match self {
            Transport::RingbufReserve => "ringbuf-reserve",
            Transport::RingbufOutput => "ringbuf",
            Transport::Perfbuf => "perfbuf",
        }
    }

    /// Parses a name from [`Transport::name`].
    pub fn from_name(s: &str) -> Option<Transport> {
        Transport::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The built-in exec tracer object for this transport.
    pub fn builtin_object(self) -> &'static [u8] {
        match self {
            Transport::RingbufReserve => crate::objects::RINGBUF_RESERVE,
            Transport::RingbufOutput => crate::objects::RINGBUF_OUTPUT,
            Transport::Perfbuf => crate::objects::PERFBUF_OUTPUT,
        }
    }

    /// True for the two ring buffer transports.
    pub fn uses_ringbuf(self) -> bool {
        self != Transport::Perfbuf
    }

    /// This transport with its default options.
    pub fn default_options(self) -> TransportOptions {
        match self {
            Transport::RingbufReserve => TransportOptions::RingbufReserve(RingOpts::default()),
            Transport::RingbufOutput => TransportOptions::RingbufOutput(RingOpts::default()),
            Transport::Perfbuf => TransportOptions::Perfbuf(PerfOpts::default()),
        }
    }
}

/// Ring buffer settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RingOpts {
    /// Data area size in bytes (`--ringbuf-size`; a power of two and a page multiple);
    /// `None`: the map definition's `max_entries`.
    pub size: Option<u32>,
}

/// Perf buffer settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerfOpts {
    /// Data pages per CPU ring (`--perf-pages`), a power of two; one metadata page is added.
    pub pages: usize,
    /// When the kernel wakes the reader (`--perf-watermark` sets a byte watermark).
    pub wakeup: Wakeup,
}

impl PerfOpts {
    /// The one default of `--perf-pages`: the demo's 8 pages per CPU.
    pub const DEFAULT_PAGES: usize = 8;

    /// The largest `pages` for this page size: the data area's size must fit a `u32`
    /// (2^19 pages, 2 GiB, with 4 KiB pages).
    pub fn max_pages(page_size: usize) -> usize {
        let max_bytes = 1usize << 31;
        (max_bytes / page_size.max(1)).max(1)
    }

    /// Checks `pages` and the watermark against each other and the page size.
    pub fn validate(&self, page_size: usize) -> Result<(), ConsumerError> {
        let max = Self::max_pages(page_size);
        if self.pages == 0 || !self.pages.is_power_of_two() || self.pages > max {
            return Err(ConsumerError::PerfPages {
                pages: self.pages,
                max,
            });
        }
        if let Wakeup::Watermark(w) = self.wakeup {
            let ring = (self.pages * page_size) as u64;
            if u64::from(w) > ring {
                return Err(ConsumerError::PerfWatermark { watermark: w, ring });
            }
        }
        Ok(())
    }
}

impl Default for PerfOpts {
    fn default() -> Self {
        PerfOpts {
            pages: PerfOpts::DEFAULT_PAGES,
            wakeup: Wakeup::Events(1),
        }
    }
}

/// A transport with the settings only it has: a ring size cannot reach a perf array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportOptions {
    /// [`Transport::RingbufReserve`] with its ring settings.
    RingbufReserve(RingOpts),
    /// [`Transport::RingbufOutput`] with its ring settings.
    RingbufOutput(RingOpts),
    /// [`Transport::Perfbuf`] with its perf settings.
    Perfbuf(PerfOpts),
}

impl TransportOptions {
    /// Which transport.
    pub fn transport(&self) -> Transport {
        match self {
            TransportOptions::RingbufReserve(_) => Transport::RingbufReserve,
            TransportOptions::RingbufOutput(_) => Transport::RingbufOutput,
            TransportOptions::Perfbuf(_) => Transport::Perfbuf,
        }
    }

    /// The ring buffer settings, for the two ring buffer transports.
    pub fn ring(&self) -> Option<&RingOpts> {
        match self {
            TransportOptions::RingbufReserve(r) | TransportOptions::RingbufOutput(r) => Some(r),
            TransportOptions::Perfbuf(_) => None,
        }
    }

    /// The perf buffer settings, for `Perfbuf`.
    pub fn perf(&self) -> Option<&PerfOpts> {
        match self {
            TransportOptions::Perfbuf(p) => Some(p),
            _ => None,
        }
    }

    /// Checks the settings before anything is loaded.
    ///
    /// # Errors
    /// [`ConsumerError::PerfPages`] or [`ConsumerError::PerfWatermark`] for bad perf
    /// settings, [`ConsumerError::RingSize`] for a ring size that is not a power of two and
    /// a page multiple.
    ///
    /// ```
    /// use rawsnoop::consumer::{PerfOpts, RingOpts, Transport, TransportOptions};
    ///
    /// assert!(Transport::Perfbuf.default_options().validate().is_ok());
    /// let three_pages = TransportOptions::Perfbuf(PerfOpts { pages: 3, ..PerfOpts::default() });
    /// assert!(three_pages.validate().is_err());
    /// let one_mib = TransportOptions::RingbufReserve(RingOpts { size: Some(1 << 20) });
    /// assert!(one_mib.validate().is_ok());
    /// let odd = TransportOptions::RingbufOutput(RingOpts { size: Some(1000) });
    /// assert!(odd.validate().is_err());
    /// // A ring size cannot reach a perf event array: `TransportOptions::Perfbuf` holds only
    /// // `PerfOpts`.
    /// assert_eq!(three_pages.ring(), None);
    /// ```
    pub fn validate(&self) -> Result<(), ConsumerError> {
        let ps = crate::sys::mmap::page_size();
        match self {
            TransportOptions::Perfbuf(p) => p.validate(ps),
            TransportOptions::RingbufReserve(r) | TransportOptions::RingbufOutput(r) => {
                match r.size {
                    Some(s) if !s.is_power_of_two() || !(s as usize).is_multiple_of(ps) => {
                        Err(ConsumerError::RingSize {
                            max_entries: s,
                            page_size: ps,
                        })
                    }
                    _ => Ok(()),
                }
            }
        }
    }
}

/// One record from either ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    /// A record's payload, borrowed for the callback only. `cpu` is the perf ring's CPU
    /// (`None` for the ring buffer, which is shared by all CPUs). Perf samples carry the
    /// kernel's padding: up to 7 bytes after what the program wrote.
    Sample {
        /// The perf ring's CPU; `None` for the ring buffer.
        cpu: Option<u32>,
        /// The payload.
        data: &'a [u8],
    },
    /// The kernel dropped `count` samples on `cpu` because its perf ring was full
    /// (`PERF_RECORD_LOST`, written in front of the next record that fit).
    Lost {
        /// The CPU whose perf ring overflowed.
        cpu: u32,
        /// Samples dropped.
        count: u64,
    },
}

/// The reader over whichever ring the transport uses. All verbs are the same for both.
#[derive(Debug)]
pub enum Reader {
    /// Over a `BPF_MAP_TYPE_RINGBUF`.
    Ring(RingBuf),
    /// Over the per-CPU rings of a `BPF_MAP_TYPE_PERF_EVENT_ARRAY`.
    Perf(PerfBuf),
}

impl From<RingBuf> for Reader {
    fn from(r: RingBuf) -> Self {
        Reader::Ring(r)
    }
}

impl From<PerfBuf> for Reader {
    fn from(p: PerfBuf) -> Self {
        Reader::Perf(p)
    }
}

impl Reader {
    /// Opens the reader `opts` asks for on `map` (a RINGBUF map for the ring buffer
    /// transports, whose data area is `max_entries` bytes; a PERF_EVENT_ARRAY for `Perfbuf`).
    ///
    /// # Errors
    /// What [`TransportOptions::validate`] returns; [`ConsumerError::WrongRingMap`] or
    /// [`ConsumerError::WrongPerfMap`] when `map` is not the kind `opts` names;
    /// [`ConsumerError::RingInUse`], [`ConsumerError::Overwrite`] for rings we refuse;
    /// [`ConsumerError::Io`]/[`ConsumerError::CpuIo`] when mmap, perf_event_open or epoll
    /// fails.
    pub fn open(
        map: BorrowedFd<'_>,
        max_entries: u32,
        opts: &TransportOptions,
    ) -> Result<Reader, ConsumerError> {
        opts.validate()?;
        Ok(match opts {
            TransportOptions::Perfbuf(p) => Reader::Perf(PerfBuf::new(map, p)?),
            TransportOptions::RingbufReserve(_) | TransportOptions::RingbufOutput(_) => {
                Reader::Ring(RingBuf::new(map, max_entries)?)
            }
        })
    }

    /// Hands every record present now to `f` (in order per ring), without sleeping; stops
    /// early on `Break`. Safe to call after the epoll fd ([`Reader::as_fd`]) fired, however
    /// it is watched (level- or edge-triggered): it fences and re-checks after releasing, and
    /// keeps the fd readable if it leaves records behind. Returns the records delivered.
    pub fn consume<F>(&mut self, f: F) -> Result<usize, ConsumerError>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        self.consume_observed(&mut NoObserver, f)
    }

    /// [`Reader::consume`] reporting each step to `obs`.
    pub fn consume_observed<O, F>(&mut self, obs: &mut O, mut f: F) -> Result<usize, ConsumerError>
    where
        O: Observer,
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        match self {
            Reader::Ring(rb) => {
                rb.consume_observed(obs, |data| f(Record::Sample { cpu: None, data }))
            }
            Reader::Perf(pb) => pb.consume_observed(obs, |r| f(perf_record(r))),
        }
    }

    /// Drains; if nothing was there, sleeps up to `timeout` (`None`: forever) for a kernel
    /// wakeup and drains again. Returns the records delivered (0 on timeout). A signal
    /// interrupts the wait with an error whose [`ConsumerError::is_interrupted`] is true.
    pub fn poll<F>(&mut self, timeout: Option<Duration>, f: F) -> Result<usize, ConsumerError>
    where
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        self.poll_observed(timeout, &mut NoObserver, f)
    }

    /// [`Reader::poll`] reporting each step to `obs`.
    pub fn poll_observed<O, F>(
        &mut self,
        timeout: Option<Duration>,
        obs: &mut O,
        mut f: F,
    ) -> Result<usize, ConsumerError>
    where
        O: Observer,
        F: FnMut(Record<'_>) -> ControlFlow<()>,
    {
        match self {
            Reader::Ring(rb) => {
                rb.poll_observed(timeout, obs, |data| f(Record::Sample { cpu: None, data }))
            }
            Reader::Perf(pb) => pb.poll_observed(timeout, obs, |r| f(perf_record(r))),
        }
    }

    /// Kernel wakeups so far (epoll waits ended by the kernel, not by a timeout).
    pub fn wakeups(&self) -> u64 {
        match self {
            Reader::Ring(rb) => rb.wakeups(),
            Reader::Perf(pb) => pb.wakeups(),
        }
    }

    /// Unread bytes (ring buffer: including BUSY and discarded records; perf: over all CPUs).
    pub fn available(&self) -> u64 {
        match self {
            Reader::Ring(rb) => rb.available(),
            Reader::Perf(pb) => pb.available(),
        }
    }

    /// Which kind of ring this reads.
    pub fn is_ringbuf(&self) -> bool {
        matches!(self, Reader::Ring(_))
    }
}

fn perf_record(r: PerfRecord<'_>) -> Record<'_> {
    match r {
        PerfRecord::Sample { cpu, data } => Record::Sample {
            cpu: Some(cpu),
            data,
        },
        PerfRecord::Lost { cpu, count } => Record::Lost { cpu, count },
    }
}

/// The epoll fd: readable when there is something to consume. Watch it with your own epoll
/// or poll (level- or edge-triggered), then call [`Reader::consume`].
impl AsFd for Reader {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Reader::Ring(rb) => rb.as_fd(),
            Reader::Perf(pb) => pb.as_fd(),
        }
    }
}

impl AsRawFd for Reader {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_typed_and_validated() {
        for t in Transport::ALL {
            assert_eq!(Transport::from_name(t.name()), Some(t));
            let o = t.default_options();
            assert_eq!(o.transport(), t);
            assert_eq!(o.ring().is_some(), t.uses_ringbuf());
            assert_eq!(o.perf().is_some(), !t.uses_ringbuf());
            o.validate().unwrap();
        }
        assert_eq!(Transport::from_name("nope"), None);
        let ps = 4096;
        let perf = |pages, wakeup| PerfOpts { pages, wakeup };
        assert!(perf(8, Wakeup::Events(1)).validate(ps).is_ok());
        // 2^20 pages is a power of two: the error must say the range, not "power of two".
        let e = perf(1 << 20, Wakeup::Events(1)).validate(ps).unwrap_err();
        assert!(
            matches!(e, ConsumerError::PerfPages { max, .. } if max == 1 << 19),
            "{e}"
        );
        assert!(e.to_string().contains("from 1 to 524288"), "{e}");
        assert!(perf(1 << 19, Wakeup::Events(1)).validate(ps).is_ok());
        assert!(perf(0, Wakeup::Events(1)).validate(ps).is_err());
        assert!(perf(3, Wakeup::Events(1)).validate(ps).is_err());
        // An oversized watermark is refused, an exact one is not.
        assert!(matches!(
            perf(1, Wakeup::Watermark(4097)).validate(ps),
            Err(ConsumerError::PerfWatermark { .. })
        ));
        assert!(perf(1, Wakeup::Watermark(4096)).validate(ps).is_ok());
        let ring = |size| TransportOptions::RingbufOutput(RingOpts { size: Some(size) });
        assert!(ring(12288).validate().is_err());
        assert!(ring(1 << 20).validate().is_ok());
    }
}
