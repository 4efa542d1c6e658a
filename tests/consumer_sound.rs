//! Real-kernel tests for the consumers' soundness and wakeup rows of issue 11: every public
//! way to consume is safe against lost wakeups (also with edge-triggered epoll on `as_fd`,
//! also after a callback `Break`), one consumer per ring, a reused ring's start position is
//! checked, overwrite rings are refused, space is released while a callback blocks, and perf
//! rings follow CPUs that come online. Producers: see tests/bpf_producers.

use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rawsnoop::consumer::{ConsumerError, PerfBuf, PerfOpts, PerfRecord, Reader, RingBuf, Wakeup};
use rawsnoop::sys::epoll::Epoll;
use rawsnoop::sys::mmap::{page_size, Mmap, Prot};
use rawsnoop::sys::{bpf, cpus};

mod bpf_producers;
use bpf_producers::*;

/// The caller's own epoll over a consumer's fd, as a program multiplexing sources would.
fn user_epoll(fd: BorrowedFd<'_>, edge: bool) -> Epoll {
    let ep = Epoll::new().unwrap();
    ep.add_readable(fd, 1, edge).unwrap();
    ep
}

fn ready(ep: &Epoll, ms: u64) -> bool {
    let mut t = Vec::new();
    ep.wait(&mut t, Some(Duration::from_millis(ms))).unwrap() > 0
}

#[test]
fn edge_triggered_as_fd_wakes_again_after_a_break() {
    let Some(RingRig {
        counter,
        prog,
        mut rb,
        map: _map,
    }) = ring_rig("edge_after_break", 64 * 1024, ringbuf_output_prog)
    else {
        return;
    };
    let ep = user_epoll(rb.as_fd(), true);
    produce(&prog, 10);
    assert!(ready(&ep, 5000), "first records announced");
    let n = rb.consume(|_| ControlFlow::Break(())).unwrap();
    assert_eq!(n, 1);
    // Nine records remain and no commit will ever be at consumer_pos again until we read
    // them: the fd must stay readable, or an edge-triggered caller sleeps forever.
    assert!(
        ready(&ep, 1000),
        "records left after Break must keep the fd readable"
    );
    let mut seqs = Vec::new();
    rb.consume(|r| {
        seqs.push(seq_of(r));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seqs, (1..10).collect::<Vec<u64>>());
    assert!(!ready(&ep, 100), "nothing left, nothing announced");

    // The same through the Reader over a perf buffer.
    let pb_map = perf_map();
    let pprog = perf_output_prog(counter.as_fd(), pb_map.as_fd());
    let opts = PerfOpts {
        pages: 4,
        wakeup: Wakeup::Events(1),
    };
    let mut reader = Reader::from(PerfBuf::new(pb_map.as_fd(), &opts).unwrap());
    let ep = user_epoll(reader.as_fd(), true);
    produce(&pprog, 5);
    assert!(ready(&ep, 5000));
    assert_eq!(reader.consume(|_| ControlFlow::Break(())).unwrap(), 1);
    assert!(
        ready(&ep, 1000),
        "perf records left after Break keep the fd readable"
    );
    let mut n = 0;
    reader
        .consume(|_| {
            n += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(n, 4);
}

#[test]
fn level_triggered_as_fd_does_not_spin_after_consume() {
    let Some(RingRig {
        counter: _counter,
        prog,
        mut rb,
        map: _map,
    }) = ring_rig("level_no_spin", 64 * 1024, ringbuf_output_prog)
    else {
        return;
    };
    let ep = user_epoll(rb.as_fd(), false);
    produce(&prog, 5);
    assert!(ready(&ep, 5000));
    assert_eq!(rb.consume(|_| ControlFlow::Continue(())).unwrap(), 5);
    assert!(
        !ready(&ep, 100),
        "after consume() took everything the fd must not stay readable (a busy loop)"
    );
    assert_eq!(rb.wakeups(), 1, "consume() counts the wakeup it took");
    produce(&prog, 1);
    assert!(ready(&ep, 5000), "the next record wakes the caller again");
}

/// Many small bursts against a consumer that sleeps in its own edge-triggered epoll on
/// `as_fd` and calls `consume()`: a lost wakeup shows up as a wait that times out while
/// records sit in the ring.
#[test]
fn consume_with_edge_triggered_epoll_never_loses_a_wakeup() {
    let Some(RingRig {
        counter,
        prog,
        mut rb,
        map: _map,
    }) = ring_rig("edge_no_lost_wakeup", 256 * 1024, ringbuf_output_prog)
    else {
        return;
    };
    const TOTAL: u64 = 20_000;
    let done = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let (d2, r2) = (done.clone(), received.clone());
    let consumer = std::thread::spawn(move || -> Result<u64, String> {
        let ep = user_epoll(rb.as_fd(), true);
        let mut next = 0u64;
        let mut t = Vec::new();
        while next < TOTAL {
            let got = ep.wait(&mut t, Some(Duration::from_secs(5))).unwrap();
            if got == 0 {
                return Err(format!(
                    "slept 5 s with {} bytes unread at record {next}: lost wakeup",
                    rb.available()
                ));
            }
            rb.consume(|r| {
                assert_eq!(seq_of(r), next, "order");
                next += 1;
                ControlFlow::Continue(())
            })
            .map_err(|e| e.to_string())?;
            r2.store(next, Ordering::Release);
        }
        d2.store(true, Ordering::Release);
        Ok(next)
    });
    let mut produced = 0u64;
    let mut i = 0u64;
    while produced < TOTAL && !consumer.is_finished() {
        let n = (1 + i % 3).min(TOTAL - produced);
        produce(&prog, n as u32);
        produced += n;
        i += 1;
        if i.is_multiple_of(7) {
            std::thread::sleep(Duration::from_micros(50));
        }
        // Keep the ring from filling: stay within 2000 records of the consumer.
        while produced - received.load(Ordering::Acquire) > 2000 && !consumer.is_finished() {
            std::thread::yield_now();
        }
    }
    let got = consumer.join().unwrap().expect("consumer");
    assert_eq!(got, TOTAL);
    assert!(done.load(Ordering::Acquire));
    assert_eq!(counters(&counter), (TOTAL, 0));
}

#[test]
fn one_consumer_per_ring() {
    let Some(_counter) = counter_map_or_skip("one_consumer_per_ring") else {
        return;
    };
    let rb_map = ringbuf_map(8192);
    let a = RingBuf::new(rb_map.as_fd(), 8192).unwrap();
    // Another fd of the same map is the same ring.
    let other = rb_map.as_fd().try_clone_to_owned().unwrap();
    match RingBuf::new(other.as_fd(), 8192) {
        Err(e @ ConsumerError::RingInUse { .. }) => {
            assert!(e.to_string().contains("already has a consumer"), "{e}")
        }
        other => panic!("a second consumer of one ring must be refused, got {other:?}"),
    }
    drop(a);
    RingBuf::new(other.as_fd(), 8192).expect("free again once the first is dropped");
}

#[test]
fn reused_ring_start_position_is_checked() {
    let Some(counter) = counter_map_or_skip("start_pos_checked") else {
        return;
    };
    let rb_map = ringbuf_map(8192);
    let prog = ringbuf_output_prog(counter.as_fd(), rb_map.as_fd());
    produce(&prog, 3); // producer_pos = 16 + 24 + 24 = 64
    let page = Mmap::map(
        rb_map.as_fd(),
        0,
        page_size(),
        Prot::ReadWrite,
        libc::MAP_SHARED,
    )
    .expect("mmap consumer page");
    let cons = page.as_ptr().cast::<AtomicU64>();
    for bad in [3u64, 20, 72, 4096] {
        // SAFETY: the consumer page is mapped read-write, 8-aligned, and alive; no RingBuf
        // of this map exists while we write it.
        unsafe { (*cons).store(bad, Ordering::Release) };
        match RingBuf::new(rb_map.as_fd(), 8192) {
            Err(ConsumerError::BadStartPos { consumer_pos, .. }) => assert_eq!(consumer_pos, bad),
            other => panic!("consumer_pos {bad}: expected BadStartPos, got {other:?}"),
        }
    }
    // A record boundary is fine: the walk resumes there (record 1 starts at 16).
    // SAFETY: as above.
    unsafe { (*cons).store(16, Ordering::Release) };
    let mut rb = RingBuf::new(rb_map.as_fd(), 8192).expect("aligned start");
    let mut seqs = Vec::new();
    rb.consume(|r| {
        seqs.push(seq_of(r));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert_eq!(seqs, vec![1, 2]);
}

#[test]
fn overwrite_rings_are_refused_with_an_explanation() {
    let Some(_counter) = counter_map_or_skip("overwrite_refused") else {
        return;
    };
    let created = bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_RINGBUF,
        max_entries: 8192,
        map_flags: rawsnoop::sys::probe::BPF_F_RB_OVERWRITE,
        name: "ovw_rb",
        ..Default::default()
    });
    match created {
        // Linux 6.19+: the kernel made it; we must refuse to read it, saying why.
        Ok(fd) => match RingBuf::new(fd.as_fd(), 8192) {
            Err(e @ ConsumerError::Overwrite) => {
                assert!(e.to_string().contains("BPF_F_RB_OVERWRITE"), "{e}")
            }
            other => panic!("overwrite ring must be refused, got {other:?}"),
        },
        // Older kernels refuse the flag themselves: no such ring can reach us.
        Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e}"),
    }
}

/// A callback that blocks (a blocked stdout) in the middle of a drain of a full ring: the
/// records before it are released, so the producer finds space. libbpf releases after
/// every record; we release every RELEASE_BYTES (4 KiB), so at most that much more is held.
#[test]
fn a_blocked_callback_holds_little_of_the_ring() {
    const SIZE: u32 = 64 * 1024;
    let Some(RingRig {
        counter,
        prog,
        mut rb,
        map: _map,
    }) = ring_rig("blocked_callback", SIZE, ringbuf_output_prog)
    else {
        return;
    };
    // Fill the ring until the kernel refuses a record.
    produce(&prog, 5000);
    let (made, failed) = counters(&counter);
    assert!(failed > 0, "ring must be full");
    let filled = made - failed;
    // Record sizes: 8 + (seq & 3) * 4 bytes of payload, 8 of header, rounded to 8.
    let total = |seq: u64| (8 + (seq & 3) * 4 + 8 + 7) & !7;
    let block_at = filled / 2;
    let bytes_before: u64 = (0..block_at).map(total).sum();
    let mut fit = 0u64;
    rb.consume(|r| {
        if seq_of(r) == block_at {
            // "Blocked" here: meanwhile the producer keeps going.
            let before = counters(&counter);
            produce(&prog, 5000);
            let after = counters(&counter);
            fit = (after.0 - before.0) - (after.1 - before.1);
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    // Records that fit into the space released so far; libbpf's per-record release would
    // free `bytes_before` (about `per_record` records of 24 bytes each).
    let avg = bytes_before as f64 / block_at as f64;
    let libbpf_fit = (bytes_before as f64 / avg) as u64;
    eprintln!(
        "blocked callback at record {block_at} of {filled}: {fit} new records fit \
         (libbpf's per-record release: about {libbpf_fit}; today's main before this change: 0)"
    );
    let held = bytes_before.saturating_sub((fit as f64 * avg) as u64);
    assert!(
        held <= 4096 + 64,
        "{held} bytes held by a blocked callback (fit {fit}, released-before {bytes_before})"
    );
}

#[test]
fn perf_rings_follow_cpus_that_come_online() {
    let Some(counter) = counter_map_or_skip("perf_hotplug") else {
        return;
    };
    let online = cpus::online_cpus().unwrap();
    let pb_map = perf_map();
    let prog = perf_output_prog(counter.as_fd(), pb_map.as_fd());
    let opts = PerfOpts {
        pages: 2,
        wakeup: Wakeup::Events(1),
    };
    // As if only the first CPU had been online at start.
    let mut pb = PerfBuf::with_cpus(pb_map.as_fd(), &opts, &online[..1]).unwrap();
    assert_eq!(pb.cpus(), online[..1].to_vec());
    let added = pb.add_online_cpus().unwrap();
    assert_eq!(added, online[1..].to_vec());
    assert_eq!(
        pb.add_online_cpus().unwrap(),
        Vec::<u32>::new(),
        "only once"
    );
    let last = *online.last().unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            cpus::pin_current_thread(last).unwrap();
            produce(&prog, 3);
        });
    });
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.len() < 3 && Instant::now() < deadline {
        pb.poll(Some(Duration::from_millis(100)), |r| {
            if let PerfRecord::Sample { cpu, data } = r {
                got.push((cpu, seq_of(data)));
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    }
    assert_eq!(got, vec![(last, 0), (last, 1), (last, 2)]);
    assert_eq!(
        counters(&counter),
        (3, 0),
        "no output failed for want of a ring"
    );
    let _ = pb.as_fd().as_raw_fd();
}
