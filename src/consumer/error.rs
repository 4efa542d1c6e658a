//! The one error type of both consumers (ring buffer and perf buffer).

use std::io;

/// Errors from setting up or reading a ring buffer or a perf buffer.
///
/// Messages say what failed and what to do; a system call's `io::Error` is only the
/// [`source`](std::error::Error::source), never repeated in the message.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    /// `max_entries` is not usable as a ring size.
    #[error(
        "ringbuf size {max_entries} is invalid: it must be a power of two and a multiple of \
         the page size ({page_size}); fix max_entries in the map definition or --ringbuf-size"
    )]
    RingSize {
        /// The size asked for.
        max_entries: u32,
        /// This system's page size.
        page_size: usize,
    },
    /// The map behind the fd is not the ring buffer the caller said.
    #[error(
        "map is not a ringbuf of {expected} bytes (kernel says type {map_type}, max_entries \
         {max_entries}); pass the ringbuf map's fd and its max_entries"
    )]
    WrongRingMap {
        /// The data area size the caller passed.
        expected: u32,
        /// The map's type, as the kernel reports it.
        map_type: u32,
        /// The map's `max_entries`, as the kernel reports it.
        max_entries: u32,
    },
    /// The map behind the fd is not a `PERF_EVENT_ARRAY`.
    #[error(
        "map is not a PERF_EVENT_ARRAY (kernel says type {0}); pass the perf event array \
         map's fd"
    )]
    WrongPerfMap(
        /// The map's type, as the kernel reports it.
        u32,
    ),
    /// The ring was created with `BPF_F_RB_OVERWRITE` (Linux 6.19+).
    #[error(
        "ringbuf map was created with BPF_F_RB_OVERWRITE: in overwrite mode the kernel \
         reuses the oldest records without waiting for the consumer, so a zero-copy reader \
         could be handed bytes that are being overwritten; rawsnoop refuses such rings. \
         Create the map without the flag"
    )]
    Overwrite,
    /// Another consumer in this process already reads this ring.
    #[error(
        "ringbuf map id {map_id} already has a consumer in this process: two consumers of one \
         ring would release each other's records while they are being read; drop the first \
         reader (or share it) before creating another"
    )]
    RingInUse {
        /// The ring's kernel map id.
        map_id: u32,
    },
    /// A reused ring's consumer position is not where a record can start.
    #[error(
        "ringbuf consumer_pos {consumer_pos} (producer_pos {producer_pos}) is not a record \
         boundary: it must be 8-byte aligned and not ahead of producer_pos. Something else \
         wrote the consumer page; recreate the map"
    )]
    BadStartPos {
        /// The consumer position found on the page.
        consumer_pos: u64,
        /// The producer position at the same time.
        producer_pos: u64,
    },
    /// `pages` is not a usable perf ring size.
    #[error(
        "perf buffer pages {pages} is {}: it must be a power of two from 1 to {max} \
         (--perf-pages)",
        if pages > max { "too large" } else { "invalid" }
    )]
    PerfPages {
        /// The pages asked for.
        pages: usize,
        /// The largest allowed ([`crate::consumer::PerfOpts::max_pages`]).
        max: usize,
    },
    /// The wakeup watermark can never be reached.
    #[error(
        "perf buffer watermark {watermark} bytes is larger than a CPU's ring ({ring} bytes): \
         the kernel would never wake us for it; choose at most {ring} (--perf-watermark)"
    )]
    PerfWatermark {
        /// The watermark asked for, in bytes.
        watermark: u32,
        /// One CPU's ring size in bytes.
        ring: u64,
    },
    /// An online CPU has no slot in the perf event array.
    #[error(
        "CPU {cpu} is online but the PERF_EVENT_ARRAY has only {max_entries} entries; size \
         the map to the number of possible CPUs"
    )]
    CpuOutOfRange {
        /// The online CPU without a slot.
        cpu: u32,
        /// The array's size.
        max_entries: u32,
    },
    /// A system call failed.
    #[error("{what} failed")]
    Io {
        /// The call and its object, e.g. "mmap of the ringbuf data pages".
        what: &'static str,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
    /// A system call for one CPU's perf ring failed.
    #[error("{what} for CPU {cpu} failed")]
    CpuIo {
        /// The call, e.g. "perf_event_open".
        what: &'static str,
        /// The CPU whose ring it was for.
        cpu: u32,
        /// The system call's error.
        #[source]
        source: io::Error,
    },
    /// The kernel laid out a perf ring in a way we cannot read.
    #[error("perf ring of CPU {cpu} has an unexpected data layout (offset {offset}, size {size})")]
    PerfLayout {
        /// The CPU.
        cpu: u32,
        /// `data_offset` from the metadata page.
        offset: u64,
        /// `data_size` from the metadata page.
        size: u64,
    },
    /// A committed ring buffer record header describes a record that cannot be in the ring.
    #[error(
        "corrupt ringbuf record header at position {pos}: length {len} does not fit in the \
         {limit} bytes available; the ring cannot be read further"
    )]
    CorruptRing {
        /// The header's position (free-running).
        pos: u64,
        /// The length the header claims.
        len: u32,
        /// The bytes that could hold the record.
        limit: u64,
    },
    /// A perf record cannot be what its header says.
    #[error(
        "corrupt perf record on CPU {cpu} at position {pos} (size {size}): {what}; the ring \
         cannot be read further"
    )]
    CorruptPerf {
        /// The CPU.
        cpu: u32,
        /// The record's position (free-running).
        pos: u64,
        /// The size its header claims.
        size: usize,
        /// What is wrong with it.
        what: &'static str,
    },
}

impl ConsumerError {
    /// True when a wait was interrupted by a signal (`EINTR`): check your stop flag, poll again.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, ConsumerError::Io { source, .. } if source.kind() == io::ErrorKind::Interrupted)
    }
}

/// Maps an `io::Error` to [`ConsumerError::Io`] naming the call.
pub(crate) fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ConsumerError {
    move |source| ConsumerError::Io { what, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn io_errors_chain_without_repeating_and_know_eintr() {
        let e = io_err("epoll_wait on the ring")(io::Error::from_raw_os_error(libc::EINTR));
        assert!(e.is_interrupted());
        let text = e.to_string();
        let src = e.source().unwrap().to_string();
        assert!(!text.contains(&src), "{text} repeats {src}");
        let e = io_err("mmap")(io::Error::from_raw_os_error(libc::ENOMEM));
        assert!(!e.is_interrupted());
    }
}
