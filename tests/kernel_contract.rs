//! What rawsnoop's consumers rely on the kernel to do, checked against the real kernel, one
//! behaviour per test, each failing with a message that names the behaviour that broke:
//!
//! - a ringbuf commit wakes a consumer that sleeps on the ring's epoll fd;
//! - a ringbuf record header holds the record's length (the consumer refuses an impossible
//!   one instead of handing out bytes past the record);
//! - a perf buffer that drops samples for lack of space says so with PERF_RECORD_LOST.
//!
//! vm/patches/ holds kernel patches that break each of these on purpose; `vm/run --source
//! 6.12 --patch vm/patches/<name>.patch` shows the matching test red (and only it). Producers
//! are SOCKET_FILTER programs written as raw instructions and run with BPF_PROG_TEST_RUN, so
//! no tracepoint or tracefs is needed. No timing assertions: the waits are generous bounds.

mod bpf_producers;
mod common;

use bpf_producers::*;

use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rawsnoop::consumer::{PerfOpts, Wakeup};
use rawsnoop::perfbuf::{PerfBuf, PerfRecord};
use rawsnoop::ringbuf::RingBuf;

/// How long a woken consumer may take to see the wakeup. The kernel wakes it through an
/// irq_work right after the commit; 10 s is a hang guard for TCG, not a latency bound.
const WAKEUP_WAIT: Duration = Duration::from_secs(10);

// ---- producers and kernel objects: tests/bpf_producers (the library's assembler) ----------

/// bpf_ringbuf_reserve(rb, 16); store seq twice; bpf_ringbuf_submit(rec, 0): every record is
/// committed (`bpf_producers::ringbuf_reserve_prog` discards every fifth).
fn reserve_submit_prog(counter: BorrowedFd<'_>, rb: BorrowedFd<'_>) -> OwnedFd {
    ringbuf_reserve_discarding(counter, rb, 0)
}

/// The counter map (slot 0: records produced, slot 1: outputs that failed), or None when
/// the test may not use BPF (a loud skip; a failure under RAWSNOOP_REQUIRE_BPF=1).
fn counter_map(test: &str) -> Option<OwnedFd> {
    if !common::bpf_allowed(test) {
        return None;
    }
    counter_map_or_skip(test)
}

/// True if `fd` (an epoll fd) becomes readable within `wait`. Polling an epoll fd looks
/// only at its ready list, which the ring's wait-queue wakeup fills: readiness here means
/// the kernel woke the ring's waiters, exactly what a sleeping consumer needs.
fn readable_within(fd: RawFd, wait: Duration) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(wait.as_millis()).unwrap_or(libc::c_int::MAX);
    loop {
        // SAFETY: `p` is one valid, initialised pollfd that lives across the call.
        let r = unsafe { libc::poll(&mut p, 1, ms) };
        if r >= 0 {
            return r > 0;
        }
        let e = std::io::Error::last_os_error();
        assert_eq!(e.kind(), std::io::ErrorKind::Interrupted, "poll: {e}");
    }
}

// ---- the contract ---------------------------------------------------------------------------

#[test]
fn ringbuf_commit_wakes_a_sleeping_consumer() {
    let Some(counter) = counter_map("ringbuf_commit_wakes_a_sleeping_consumer") else {
        return;
    };
    let rb_map = ringbuf_map(64 * 1024);
    let prog = reserve_submit_prog(counter.as_fd(), rb_map.as_fd());
    let mut rb = RingBuf::new(rb_map.as_fd(), 64 * 1024).expect("RingBuf::new");
    // Two rounds: the second starts from a consumer that has caught up (consumer_pos ==
    // producer_pos), the state in which the kernel must wake it on the next commit.
    for round in 1..=2u64 {
        assert!(
            !readable_within(rb.as_raw_fd(), Duration::ZERO),
            "round {round}: the empty ring already reads as ready"
        );
        produce(&prog, 40);
        let woken = readable_within(rb.as_raw_fd(), WAKEUP_WAIT);
        let mut seqs = Vec::new();
        rb.consume(|rec| {
            seqs.push(seq_of(rec));
            ControlFlow::Continue(())
        })
        .expect("consume");
        assert!(
            woken,
            "consumer was never woken: 0 wakeups in {} s with {} records pending \
             (bpf_ringbuf_commit must wake the ring's epoll waiters when it commits the \
             record at consumer_pos)",
            WAKEUP_WAIT.as_secs(),
            seqs.len()
        );
        let first = (round - 1) * 40;
        assert_eq!(
            seqs,
            (first..first + 40).collect::<Vec<_>>(),
            "round {round}: records"
        );
    }
    assert_eq!(counters(&counter), (80, 0), "(produced, failed outputs)");
}

#[test]
fn ringbuf_header_length_matches_the_record() {
    let Some(counter) = counter_map("ringbuf_header_length_matches_the_record") else {
        return;
    };
    let rb_map = ringbuf_map(64 * 1024);
    let reserve = reserve_submit_prog(counter.as_fd(), rb_map.as_fd());
    let output = ringbuf_output_prog(counter.as_fd(), rb_map.as_fd());
    let mut rb = RingBuf::new(rb_map.as_fd(), 64 * 1024).expect("RingBuf::new");
    produce(&reserve, 20);
    produce(&output, 20);
    let mut got = Vec::new();
    let r = rb.consume(|rec| {
        got.push((seq_of(rec), rec.len()));
        ControlFlow::Continue(())
    });
    if let Err(e) = r {
        panic!(
            "the kernel wrote a wrong record length into a ringbuf header and the consumer \
             refused it after {} good records: {e}",
            got.len()
        );
    }
    let want: Vec<(u64, usize)> = (0..20)
        .map(|s| (s, 16))
        .chain((20..40).map(|s| (s, 8 + (s as usize & 3) * 4)))
        .collect();
    assert_eq!(got, want, "(seq, record length) of each record");
    assert_eq!(counters(&counter), (40, 0), "(produced, failed outputs)");
}

#[test]
fn perfbuf_reports_lost_samples() {
    let Some(counter) = counter_map("perfbuf_reports_lost_samples") else {
        return;
    };
    let pb_map = perf_map();
    let prog = perf_output_prog(counter.as_fd(), pb_map.as_fd());
    let opts = PerfOpts {
        pages: 1,
        wakeup: Wakeup::Events(1),
    };
    let mut pb = PerfBuf::new(pb_map.as_fd(), &opts).expect("PerfBuf::new");
    // One CPU, one ring: the overflow and the next sample's LOST record land together.
    let (samples, lost_records, lost) = on_cpu(last_online_cpu(), || {
        let (mut samples, mut lost_records, mut lost) = (0u64, 0u64, 0u64);
        let mut take = |r: PerfRecord<'_>| {
            match r {
                PerfRecord::Sample { .. } => samples += 1,
                PerfRecord::Lost { count, .. } => {
                    lost_records += 1;
                    lost += count;
                }
            }
            ControlFlow::Continue(())
        };
        produce(&prog, 1000); // a 4 KiB ring holds ~170 of these 24-byte samples
        pb.consume(&mut take).expect("consume");
        produce(&prog, 1); // the kernel writes LOST(count) before this sample
        pb.consume(&mut take).expect("consume");
        (samples, lost_records, lost)
    });
    let (produced, dropped) = counters(&counter);
    assert_eq!(produced, 1001);
    assert!(dropped > 0, "1000 samples cannot fit a one-page ring");
    assert!(
        lost_records > 0,
        "perf buffer never reported its losses: {dropped} samples dropped for lack of space, \
         {samples} delivered, and no PERF_RECORD_LOST (perf_output_begin must write one \
         before the next sample)"
    );
    assert_eq!(
        lost, dropped,
        "PERF_RECORD_LOST counts equal the dropped samples"
    );
    assert_eq!(
        samples + lost,
        produced,
        "every sample delivered or counted lost"
    );
}
