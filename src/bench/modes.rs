//! [`BenchMode`], and the one-thread arrangements of the benchmark, which isolate the
//! consumer's cost:
//! - back to back: trigger one batch, then poll the consumer, repeat (what the kernel's
//!   `bench_ringbufs --rb-b2b` does); records/s is 1 / (produce + consume cost per record);
//! - drain: fill the buffer while the consumer is idle, then time only the consumer emptying
//!   it, repeat; records/s is the consumer's pure drain rate.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use super::{io, BenchError, BenchOptions, BenchResult, Consumer, Transport};
use crate::consumer::Record;
use crate::sys::cpus;

/// How producer and consumer are arranged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BenchMode {
    /// A producer thread and a consumer thread, each pinned to its own CPU (a tracer beside
    /// the traced workload). Records/s is bounded by the slower of the two.
    #[default]
    Concurrent,
    /// One thread triggers a batch, then polls the consumer, and again (the kernel's
    /// `bench_ringbufs --rb-b2b`): records/s is 1 / (produce + consume cost per record), and
    /// the CPU time covers both.
    BackToBack,
    /// One thread fills about 3/4 of the buffer with the consumer idle, then times only the
    /// consumer emptying it, and again: records/s and CPU time are the consumer's alone.
    Drain,
}

impl BenchMode {
    /// All three, in the order they are documented.
    pub const ALL: [BenchMode; 3] = [
        BenchMode::Concurrent,
        BenchMode::BackToBack,
        BenchMode::Drain,
    ];

    /// `concurrent`, `back-to-back` or `drain`.
    pub fn name(self) -> &'static str {
        match self {
            BenchMode::Concurrent => "concurrent",
            BenchMode::BackToBack => "back-to-back",
            BenchMode::Drain => "drain",
        }
    }

    /// Parses a name from [`BenchMode::name`].
    pub fn from_name(s: &str) -> Option<BenchMode> {
        BenchMode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// What the benchmark's callbacks do with each record: count it and read its sequence number
/// (the first 8 bytes), as a real consumer touches its data. Shared by every mode so they all
/// pay the same per-record work.
#[derive(Debug, Default)]
pub(super) struct Counter {
    pub records: u64,
    checksum: u64,
}

impl Counter {
    #[inline]
    pub(super) fn ring(&mut self, rec: &[u8]) -> ControlFlow<()> {
        self.records += 1;
        if let Some(b) = rec.get(..8) {
            self.checksum = self
                .checksum
                .wrapping_add(b.iter().map(|&x| u64::from(x)).sum());
        }
        ControlFlow::Continue(())
    }

    #[inline]
    pub(super) fn record(&mut self, r: Record<'_>) -> ControlFlow<()> {
        match r {
            Record::Sample { data, .. } => self.ring(data),
            Record::Lost { .. } => ControlFlow::Continue(()),
        }
    }

    /// Keeps the checksum (and so the reads) alive.
    pub(super) fn finish(&self) {
        std::hint::black_box(self.checksum);
    }
}

/// Record size as the bench program rounds it (8, 16, ..., 4096).
fn program_record_size(size: u32) -> u64 {
    u64::from(size.clamp(8, 4096).next_power_of_two())
}

/// Bytes per record in the buffer and the payload's offset in it: the ringbuf header (8)
/// then the payload; perf: the perf header (8) and the u32 raw size, payload padded to 8.
pub(super) fn slot_layout(t: Transport, opts: &BenchOptions) -> (u64, u64) {
    let payload = program_record_size(opts.record_size);
    match t {
        Transport::Perfbuf => (8 + (payload + 4).div_ceil(8) * 8, 12),
        _ => (8 + payload, 8),
    }
}

/// Batches that fill about 3/4 of the buffer one record lands in (the ring buffer, or one
/// CPU's perf ring), at least one. Bytes per record: the 8-byte ringbuf header plus the
/// payload; for perf, the 8-byte perf header, the u32 raw size and the payload padded to 8.
pub(super) fn fill_batches(t: Transport, opts: &BenchOptions, buffer_bytes: u64) -> u64 {
    let per_record = slot_layout(t, opts).0;
    let per_batch = per_record.saturating_mul(u64::from(opts.batch.clamp(1, 10_000)));
    (buffer_bytes.saturating_mul(3) / 4 / per_batch.max(1)).max(1)
}

fn consume_all(t: Transport, c: &mut Consumer, n: &mut Counter) -> Result<(), BenchError> {
    let err = |source| BenchError::Consumer {
        transport: t.name(),
        source,
    };
    while c.consume(|r| n.record(r)).map_err(err)? > 0 {}
    Ok(())
}

fn poll_once(t: Transport, c: &mut Consumer, n: &mut Counter) -> Result<(), BenchError> {
    let tick = Some(Duration::from_millis(50));
    match c.poll(tick, |r| n.record(r)) {
        Err(e) if !e.is_interrupted() => Err(BenchError::Consumer {
            transport: t.name(),
            source: e,
        }),
        _ => Ok(()),
    }
}

fn wakeups(c: &Consumer) -> u64 {
    c.wakeups()
}

/// Runs `body` on a thread pinned to `cpu` (so the caller's affinity is left alone).
fn pinned<T: Send>(
    cpu: Option<u32>,
    body: impl FnOnce() -> Result<T, BenchError> + Send,
) -> Result<T, BenchError> {
    std::thread::scope(|s| {
        s.spawn(|| {
            if let Some(c) = cpu {
                let _ = cpus::pin_current_thread(c);
            }
            body()
        })
        .join()
    })
    .map_err(|_| BenchError::ConsumerPanicked("one-thread bench"))?
}

fn result(t: Transport, opts: &BenchOptions) -> BenchResult {
    BenchResult {
        transport: t,
        wakeup: opts.wakeup,
        mode: opts.mode,
        produce_time: Duration::ZERO,
        consume_time: Duration::ZERO,
        produced: 0,
        consumed: 0,
        dropped: 0,
        consumer_cpu: Duration::ZERO,
        wakeups: 0,
        ceiling_mps: None,
        ceiling_fraction: None,
    }
}

/// Back to back on one thread pinned to `cpu`: `getpgid()` (one batch), then `poll`, for
/// `opts.duration`. The CPU time and the rates cover producing and consuming together.
pub(super) fn back_to_back(
    t: Transport,
    mut c: Consumer,
    opts: &BenchOptions,
    cpu: Option<u32>,
) -> Result<BenchResult, BenchError> {
    pinned(cpu, move || {
        let mut n = Counter::default();
        let cpu0 = cpus::thread_cpu_time().map_err(io("clock_gettime(CLOCK_THREAD_CPUTIME_ID)"))?;
        let t0 = Instant::now();
        while t0.elapsed() < opts.duration {
            for _ in 0..16 {
                cpus::getpgid_self().map_err(io("getpgid"))?;
                poll_once(t, &mut c, &mut n)?;
            }
        }
        consume_all(t, &mut c, &mut n)?;
        let elapsed = t0.elapsed();
        let cpu =
            cpus::thread_cpu_time().map_err(io("clock_gettime(CLOCK_THREAD_CPUTIME_ID)"))? - cpu0;
        n.finish();
        Ok(BenchResult {
            produce_time: elapsed,
            consume_time: elapsed,
            consumed: n.records,
            consumer_cpu: cpu,
            wakeups: wakeups(&c),
            ..result(t, opts)
        })
    })
}

/// Drain rounds on one thread pinned to `cpu` until `opts.duration` has passed: trigger
/// `fill` batches with the consumer idle, then time `consume` until it finds nothing. The
/// consume time and CPU time cover only the draining.
pub(super) fn drain(
    t: Transport,
    mut c: Consumer,
    opts: &BenchOptions,
    cpu: Option<u32>,
    fill: u64,
) -> Result<BenchResult, BenchError> {
    let (stride, data_off) = slot_layout(t, opts);
    let slots = super::ceiling::Slots {
        stride: stride as usize,
        data_off: data_off as usize,
        count: usize::try_from(fill.saturating_mul(u64::from(opts.batch.clamp(1, 10_000))))
            .unwrap_or(usize::MAX),
    };
    pinned(cpu, move || {
        let mut n = Counter::default();
        let mut ceiling = super::ceiling::Ceiling::new(slots);
        let (mut busy, mut busy_cpu) = (Duration::ZERO, Duration::ZERO);
        let t0 = Instant::now();
        while t0.elapsed() < opts.duration {
            for _ in 0..fill {
                cpus::getpgid_self().map_err(io("getpgid"))?;
            }
            let cpu0 =
                cpus::thread_cpu_time().map_err(io("clock_gettime(CLOCK_THREAD_CPUTIME_ID)"))?;
            let before = n.records;
            let s = Instant::now();
            consume_all(t, &mut c, &mut n)?;
            let took = s.elapsed();
            busy += took;
            busy_cpu += cpus::thread_cpu_time()
                .map_err(io("clock_gettime(CLOCK_THREAD_CPUTIME_ID)"))?
                - cpu0;
            // The ceiling, alternating with the drain on the same CPU.
            ceiling.round(n.records - before, took);
        }
        n.finish();
        Ok(BenchResult {
            produce_time: t0.elapsed(),
            consume_time: busy,
            consumed: n.records,
            consumer_cpu: busy_cpu,
            wakeups: wakeups(&c),
            ceiling_mps: ceiling.mps(),
            ceiling_fraction: ceiling.fraction(),
            ..result(t, opts)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_targets_three_quarters_of_the_buffer() {
        let opts = BenchOptions::default(); // batch 100, 64-byte records
                                            // ringbuf: 72 bytes a record, 7200 a batch.
        let rb = fill_batches(Transport::RingbufReserve, &opts, 16 << 20);
        assert_eq!(rb, (16u64 << 20) * 3 / 4 / 7200);
        assert!(rb * 7200 <= 16 << 20);
        // perf: 8 + round8(4 + 64) = 80 bytes a record.
        let pb = fill_batches(Transport::Perfbuf, &opts, 4 << 20);
        assert_eq!(pb, (4u64 << 20) * 3 / 4 / 8000);
        // Sizes round like the program; a buffer smaller than a batch still gets one.
        let odd = BenchOptions {
            record_size: 65,
            ..BenchOptions::default()
        };
        assert_eq!(
            fill_batches(Transport::RingbufOutput, &odd, 1 << 20),
            (1u64 << 20) * 3 / 4 / 13600
        );
        assert_eq!(fill_batches(Transport::RingbufReserve, &opts, 4096), 1);
    }

    #[test]
    fn counter_counts_samples_not_lost_records() {
        let mut n = Counter::default();
        let _ = n.ring(&[1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let _ = n.record(Record::Sample {
            cpu: Some(0),
            data: &[1; 8],
        });
        let _ = n.record(Record::Lost { cpu: 0, count: 5 });
        assert_eq!(n.records, 2);
        assert_eq!(n.checksum, 36 + 8);
    }
}
