//! Real-kernel tests of the ringbuf and perf buffer consumers. Producers are SOCKET_FILTER
//! programs written as raw instructions and run with BPF_PROG_TEST_RUN, so no tracepoint or
//! tracefs is needed: `repeat = n` produces n records synchronously.
//!
//! Each record carries a sequence number from an atomic counter in an ARRAY map (slot 0);
//! failed outputs are counted in slot 1, so the tests can check that every produced record
//! arrives exactly once, in order, or is accounted for as dropped/lost.
//!
//! Needs root / CAP_BPF: otherwise prints `SKIPPED (needs root/CAP_BPF): ...` and returns,
//! unless RAWSNOOP_REQUIRE_BPF=1, in which case it fails.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rawsnoop::consumer::{ConsumerError, PerfRecord, RingBuf, Wakeup};
use rawsnoop::sys::cpus;

mod bpf_producers;
use bpf_producers::*;

/// Runs `prog` in `bursts`, each followed by an idle gap of `burst % gap_mod` ms, and waits
/// after each until the consumer thread (which stores what it has so far in `received`)
/// caught up; then one sentinel record, and the consumer's result once it finished.
fn drive_bursts<T>(
    prog: &std::os::fd::OwnedFd,
    bursts: &[u32],
    gap_mod: u32,
    received: &AtomicU64,
    consumer: std::thread::JoinHandle<Result<T, String>>,
    what: &str,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    let mut produced = 0u64;
    for (i, &b) in bursts.iter().enumerate() {
        produce(prog, b);
        produced += u64::from(b);
        assert!(
            wait_until(deadline, || received.load(Ordering::Acquire) >= produced
                || consumer.is_finished()),
            "{what} stuck at {} of {produced} records after burst {i}: lost wakeup?",
            received.load(Ordering::Acquire)
        );
        if consumer.is_finished() {
            let r = consumer.join().map(|r| r.map(drop));
            panic!("{what} ended early: {r:?}");
        }
        std::thread::sleep(Duration::from_millis(u64::from(b % gap_mod)));
    }
    produce(prog, 1); // sentinel
    assert!(
        wait_until(deadline, || consumer.is_finished()),
        "{what} never saw the sentinel"
    );
    consumer.join().unwrap().expect(what)
}

// ---- ringbuf --------------------------------------------------------------------------------

#[test]
fn ringbuf_bursts_with_idle_gaps_arrive_once_in_order() {
    let Some(RingRig {
        counter,
        prog,
        mut rb,
        map: _map,
    }) = ring_rig("ringbuf_bursts", 256 * 1024, ringbuf_output_prog)
    else {
        return;
    };
    let received = Arc::new(AtomicU64::new(0));
    let rx = received.clone();
    // Bursts of varying size; the last "sentinel" record (seq == total) ends the consumer.
    let bursts: Vec<u32> = (0..60u32).map(|i| 1 + (i * 977) % 4000).collect();
    let total: u64 = bursts.iter().map(|&b| u64::from(b)).sum();
    let consumer = std::thread::spawn(move || -> Result<u64, String> {
        let mut next = 0u64;
        loop {
            // A long timeout: a lost wakeup shows up as the producer's catch-up wait
            // expiring, not as a 100 ms hiccup that a short timeout would paper over.
            let r = rb.poll(Some(Duration::from_secs(30)), |rec| {
                let seq = seq_of(rec);
                let want_len = 8 + (seq & 3) as usize * 4;
                if seq != next || rec.len() != want_len {
                    next = u64::MAX; // poison: report below
                    return ControlFlow::Break(());
                }
                next += 1;
                ControlFlow::Continue(())
            });
            match r {
                Ok(_) if next == u64::MAX => return Err("out of order or wrong length".into()),
                Ok(_) => rx.store(next, Ordering::Release),
                Err(e) if e.is_interrupted() => {}
                Err(e) => return Err(e.to_string()),
            }
            if next > total {
                return Ok(next);
            }
        }
    });
    // Idle gaps of 0..7 ms so the consumer is sometimes asleep, sometimes mid-drain.
    let got = drive_bursts(&prog, &bursts, 8, &received, consumer, "consumer");
    assert_eq!(got, total + 1);
    assert_eq!(
        counters(&counter),
        (total + 1, 0),
        "(produced, failed outputs)"
    );
}

#[test]
fn ringbuf_reserve_discard_and_break() {
    let Some(RingRig {
        counter,
        prog,
        mut rb,
        map: _map,
    }) = ring_rig("ringbuf_reserve_discard", 4096, ringbuf_reserve_prog)
    else {
        return;
    };
    assert_eq!(
        rb.poll(Some(Duration::from_millis(20)), |_| ControlFlow::Continue(
            ()
        ))
        .unwrap(),
        0
    );
    // 4096 / 24 bytes = 170 records fit; produce 300 so the ring fills and reserves fail.
    produce(&prog, 300);
    let (produced, failed) = counters(&counter);
    assert_eq!(produced, 300);
    assert!(failed > 0, "a 4 KiB ring cannot hold 300 records");
    assert!(rb.available() > 0);
    // Break after the first record: exactly one delivered, the rest stays.
    let mut first = None;
    let n = rb
        .consume(|rec| {
            first = Some(seq_of(rec));
            ControlFlow::Break(())
        })
        .unwrap();
    assert_eq!((n, first), (1, Some(1)), "seq 0 is discarded (0 % 5 == 0)");
    let mut seqs = vec![1];
    rb.consume(|rec| {
        assert_eq!(rec.len(), 16);
        assert_eq!(rec[..8], rec[8..]);
        seqs.push(seq_of(rec));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(rb.available(), 0);
    let stored = produced - failed;
    let expect: Vec<u64> = (0..stored).filter(|s| s % 5 != 0).collect();
    assert_eq!(
        seqs, expect,
        "submitted records in order, discarded ones skipped"
    );
    // The ring is usable again after draining: positions wrapped around, records still whole.
    produce(&prog, 100);
    let mut more = Vec::new();
    rb.poll(Some(Duration::from_secs(5)), |rec| {
        more.push(seq_of(rec));
        ControlFlow::Continue(())
    })
    .unwrap();
    let expect: Vec<u64> = (300..400).filter(|s| s % 5 != 0).collect();
    assert_eq!(more, expect);
}

#[test]
fn ringbuf_rejects_bad_setup() {
    let Some(counter) = counter_map_or_skip("ringbuf_bad_setup") else {
        return;
    };
    let rb_map = ringbuf_map(8192);
    assert!(matches!(
        RingBuf::new(rb_map.as_fd(), 4096),
        Err(ConsumerError::WrongRingMap { .. })
    ));
    assert!(matches!(
        RingBuf::new(rb_map.as_fd(), 12288),
        Err(ConsumerError::RingSize { .. })
    ));
    assert!(matches!(
        RingBuf::new(counter.as_fd(), 8192),
        Err(ConsumerError::WrongRingMap { .. })
    ));
    // A second consumer of a reused ring starts where the first stopped.
    let prog = ringbuf_output_prog(counter.as_fd(), rb_map.as_fd());
    produce(&prog, 10);
    let mut a = RingBuf::new(rb_map.as_fd(), 8192).unwrap();
    let mut n = 0;
    a.consume(|_| {
        n += 1;
        if n == 4 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    drop(a);
    let mut b = RingBuf::new(rb_map.as_fd(), 8192).unwrap();
    let mut seqs = Vec::new();
    b.consume(|rec| {
        seqs.push(seq_of(rec));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seqs, (4..10).collect::<Vec<u64>>());
}

// ---- perf buffer ----------------------------------------------------------------------------

#[derive(Default)]
struct PerfTally {
    by_cpu: BTreeMap<u32, Vec<u64>>,
    lost: u64,
}

impl PerfTally {
    fn take(&mut self, r: PerfRecord<'_>) -> ControlFlow<()> {
        match r {
            PerfRecord::Sample { cpu, data } => {
                self.by_cpu.entry(cpu).or_default().push(seq_of(data));
            }
            PerfRecord::Lost { count, .. } => self.lost += count,
        }
        ControlFlow::Continue(())
    }
    fn received(&self) -> u64 {
        self.by_cpu.values().map(|v| v.len() as u64).sum()
    }
}

#[test]
fn perfbuf_bursts_all_arrive() {
    let Some(PerfRig {
        counter,
        prog,
        mut pb,
        map: _map,
    }) = perf_rig("perfbuf_bursts", 16, Wakeup::Events(1))
    else {
        return;
    };
    assert_eq!(pb.cpus(), cpus::online_cpus().unwrap());
    let received = Arc::new(AtomicU64::new(0));
    let rx = received.clone();
    let bursts: Vec<u32> = (0..40u32).map(|i| 1 + (i * 331) % 1500).collect();
    let total: u64 = bursts.iter().map(|&b| u64::from(b)).sum();
    let consumer = std::thread::spawn(move || -> Result<PerfTally, String> {
        let mut tally = PerfTally::default();
        while tally.received() + tally.lost <= total {
            match pb.poll(Some(Duration::from_secs(30)), |r| tally.take(r)) {
                Ok(_) => rx.store(tally.received() + tally.lost, Ordering::Release),
                Err(e) if e.is_interrupted() => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(tally)
    });
    let tally = drive_bursts(&prog, &bursts, 5, &received, consumer, "perf consumer");
    assert_eq!(tally.lost, 0, "16 pages per CPU hold a 1500-record burst");
    let mut all: Vec<u64> = tally.by_cpu.values().flatten().copied().collect();
    for (cpu, seqs) in &tally.by_cpu {
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "CPU {cpu} out of order"
        );
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..=total).collect::<Vec<u64>>(),
        "each record exactly once"
    );
    assert_eq!(counters(&counter), (total + 1, 0));
}

#[test]
fn perfbuf_overflow_reports_lost_count() {
    let Some(PerfRig {
        counter,
        prog,
        mut pb,
        map: _map,
    }) = perf_rig("perfbuf_overflow", 1, Wakeup::Events(1))
    else {
        return;
    };
    let cpu = last_online_cpu();
    // Pin so every output (and the LOST record emitted on the next success) hits one ring.
    let (tally, produced, failed) = on_cpu(cpu, || {
        let mut tally = PerfTally::default();
        produce(&prog, 1000); // a 4 KiB ring holds ~170 24-byte samples
        pb.consume(|r| tally.take(r)).unwrap();
        produce(&prog, 1); // emits LOST(count) before this sample
        pb.consume(|r| tally.take(r)).unwrap();
        let (produced, failed) = counters(&counter);
        (tally, produced, failed)
    });
    assert_eq!(produced, 1001);
    assert!(tally.lost > 0, "1000 samples cannot fit a one-page ring");
    assert_eq!(
        tally.lost, failed,
        "LOST count equals the program's failed outputs"
    );
    assert_eq!(tally.received() + tally.lost, produced);
    assert_eq!(tally.by_cpu.keys().copied().collect::<Vec<_>>(), vec![cpu]);
}

#[test]
fn perfbuf_watermark_records_arrive_on_timeout() {
    let Some(PerfRig {
        counter: _counter,
        prog,
        mut pb,
        map: _map,
    }) = perf_rig("perfbuf_watermark", 8, Wakeup::Watermark(16 * 1024))
    else {
        return;
    };
    produce(&prog, 5); // 120 bytes: far below the watermark, no wakeup
    let mut tally = PerfTally::default();
    let deadline = Instant::now() + DEADLINE;
    while tally.received() < 5 && Instant::now() < deadline {
        pb.poll(Some(Duration::from_millis(50)), |r| tally.take(r))
            .unwrap();
    }
    let all: Vec<u64> = tally.by_cpu.values().flatten().copied().collect();
    assert_eq!(all, vec![0, 1, 2, 3, 4]);
    assert_eq!(pb.available(), 0);
}
