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
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rawsnoop::consumer::{ConsumerError, PerfBuf, PerfOpts, PerfRecord, RingBuf, Wakeup};
use rawsnoop::sys::bpf;
use rawsnoop::sys::cpus;

/// Generous overall bound: a stuck consumer fails the test instead of hanging it.
const DEADLINE: Duration = Duration::from_secs(120);

// ---- a tiny BPF assembler -------------------------------------------------------------

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R5: u8 = 5;
const R6: u8 = 6;
const R7: u8 = 7;
const R9: u8 = 9;
const R10: u8 = 10;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst | (src << 4)) << 8
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}
fn mov64_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm)
}
/// 32-bit mov: zero-extends, so -1 becomes 0xffff_ffff (BPF_F_CURRENT_CPU).
fn mov32_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb4, dst, 0, 0, imm)
}
fn mov64_reg(dst: u8, src: u8) -> u64 {
    insn(0xbf, dst, src, 0, 0)
}
fn add64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x07, dst, 0, 0, imm)
}
fn and64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x57, dst, 0, 0, imm)
}
fn lsh64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x67, dst, 0, 0, imm)
}
fn mod64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x97, dst, 0, 0, imm)
}
fn st_w(dst: u8, off: i16, imm: i32) -> u64 {
    insn(0x62, dst, 0, off, imm)
}
fn stx_dw(dst: u8, off: i16, src: u8) -> u64 {
    insn(0x7b, dst, src, off, 0)
}
/// `lock *(u64 *)(dst + off) += src` (BPF_XADD: no fetch, so Linux 5.10 takes it too).
fn atomic_add_dw(dst: u8, off: i16, src: u8) -> u64 {
    insn(0xdb, dst, src, off, 0)
}
/// `dst = *(u64 *)(src + off)`.
fn ldx_dw(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x79, dst, src, off, 0)
}
fn jeq_imm(dst: u8, imm: i32, off: i16) -> u64 {
    insn(0x15, dst, 0, off, imm)
}
fn ja(off: i16) -> u64 {
    insn(0x05, 0, 0, off, 0)
}
fn call(helper: i32) -> u64 {
    insn(0x85, 0, 0, 0, helper)
}
fn exit() -> u64 {
    insn(0x95, 0, 0, 0, 0)
}
/// `ld_imm64 dst, map_fd` (BPF_PSEUDO_MAP_FD): two instruction slots.
fn ld_map_fd(dst: u8, fd: BorrowedFd<'_>) -> [u64; 2] {
    [insn(0x18, dst, 1, 0, fd.as_raw_fd()), 0]
}

const HELPER_MAP_LOOKUP: i32 = 1;
const HELPER_PERF_EVENT_OUTPUT: i32 = 25;
const HELPER_RINGBUF_OUTPUT: i32 = 130;
const HELPER_RINGBUF_RESERVE: i32 = 131;
const HELPER_RINGBUF_SUBMIT: i32 = 132;
const HELPER_RINGBUF_DISCARD: i32 = 133;

/// Appends `insns` and fixes up labels: every `ja`/`jeq` in the emitted code whose offset is
/// `i16::MIN` jumps to the final `r0 = 0; exit`.
struct Asm(Vec<u64>);
impl Asm {
    fn new() -> Asm {
        Asm(Vec::new())
    }
    fn push(&mut self, i: u64) -> &mut Asm {
        self.0.push(i);
        self
    }
    fn extend(&mut self, i: &[u64]) -> &mut Asm {
        self.0.extend_from_slice(i);
        self
    }
    /// Prologue: `r9 = ctx`; `r7 = &counter[0]` (exit if NULL); `r6 = slot0++`. A plain
    /// load/store is enough: BPF_PROG_TEST_RUN runs the program `repeat` times one after the
    /// other on one CPU, and each test has its own counter map (atomic fetch-add would need
    /// Linux 5.12).
    fn seq_prologue(&mut self, counter: BorrowedFd<'_>) -> &mut Asm {
        self.push(mov64_reg(R9, R1))
            .push(st_w(R10, -4, 0))
            .push(mov64_reg(R2, R10))
            .push(add64_imm(R2, -4))
            .extend(&ld_map_fd(R1, counter))
            .push(call(HELPER_MAP_LOOKUP))
            .push(jeq_imm(R0, 0, i16::MIN))
            .push(mov64_reg(R7, R0))
            .push(ldx_dw(R6, R7, 0))
            .push(mov64_reg(R1, R6))
            .push(add64_imm(R1, 1))
            .push(stx_dw(R7, 0, R1))
    }
    /// `if r0 != 0 { counter[1] += 1 }` after an output helper, then fall to exit.
    fn count_failure(&mut self) -> &mut Asm {
        self.push(jeq_imm(R0, 0, i16::MIN))
            .push(mov64_imm(R1, 1))
            .push(atomic_add_dw(R7, 8, R1))
    }
    fn finish(&mut self) -> Vec<u64> {
        let exit_at = self.0.len();
        self.push(mov64_imm(R0, 0)).push(exit());
        let mut out = self.0.clone();
        for (i, w) in out.iter_mut().enumerate() {
            let code = (*w & 0xff) as u8;
            let off = ((*w >> 16) & 0xffff) as u16 as i16;
            if (code == 0x05 || code == 0x15) && off == i16::MIN {
                let rel = (exit_at as i64 - i as i64 - 1) as i16;
                *w = (*w & !(0xffff << 16)) | (u64::from(rel as u16) << 16);
            }
        }
        out
    }
}

// ---- kernel objects ---------------------------------------------------------------------

fn require_bpf() -> bool {
    std::env::var("RAWSNOOP_REQUIRE_BPF").is_ok_and(|v| v == "1")
}

/// Creates the counter map, or reports why BPF is unavailable (skip / fail per the rules).
fn counter_map_or_skip(test: &str) -> Option<OwnedFd> {
    // Kernels before 5.11 charge maps to RLIMIT_MEMLOCK (64 KiB by default): raise it
    // there, as the tool does. A failure shows up as EPERM below.
    let _ = rawsnoop::sys::kernel::raise_memlock_if_needed();
    let r = bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 16,
        max_entries: 1,
        name: "stress_ctr",
        ..Default::default()
    });
    match r {
        Ok(fd) => Some(fd),
        Err(e) if !require_bpf() => {
            eprintln!("SKIPPED (needs root/CAP_BPF): {test}: cannot create a BPF map: {e}");
            None
        }
        Err(e) => panic!("{test}: RAWSNOOP_REQUIRE_BPF=1 but creating a BPF map failed: {e}"),
    }
}

/// (produced, failed outputs) from the counter map.
fn counters(map: &OwnedFd) -> (u64, u64) {
    let mut v = [0u8; 16];
    bpf::map_lookup_elem(map.as_fd(), &0u32.to_ne_bytes(), &mut v).expect("counter lookup");
    let w = |i: usize| u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
    (w(0), w(1))
}

fn ringbuf_map(size: u32) -> OwnedFd {
    bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_RINGBUF,
        max_entries: size,
        name: "stress_rb",
        ..Default::default()
    })
    .expect("create ringbuf map")
}

fn load(insns: &[u64]) -> OwnedFd {
    let spec = bpf::ProgLoad {
        prog_type: bpf::BPF_PROG_TYPE_SOCKET_FILTER,
        name: "stress_prod",
        insns,
        license: "GPL",
        ..Default::default()
    };
    match bpf::prog_load_with_log(&spec) {
        Ok(fd) => fd,
        Err((e, log)) => panic!("program load failed: {e}\n{log}"),
    }
}

/// Output via bpf_ringbuf_output: record = seq (u64) then bytes up to 8 + (seq & 3) * 4.
fn ringbuf_output_prog(counter: BorrowedFd<'_>, rb: BorrowedFd<'_>) -> OwnedFd {
    let insns = Asm::new()
        .seq_prologue(counter)
        .push(stx_dw(R10, -24, R6))
        .push(stx_dw(R10, -16, R6))
        .push(stx_dw(R10, -8, R6))
        .push(mov64_reg(R3, R6))
        .push(and64_imm(R3, 3))
        .push(lsh64_imm(R3, 2))
        .push(add64_imm(R3, 8))
        .extend(&ld_map_fd(R1, rb))
        .push(mov64_reg(R2, R10))
        .push(add64_imm(R2, -24))
        .push(mov64_imm(R4, 0))
        .push(call(HELPER_RINGBUF_OUTPUT))
        .count_failure()
        .finish();
    load(&insns)
}

/// Reserve 16 bytes, write seq twice, submit, except every 5th record which is discarded.
fn ringbuf_reserve_prog(counter: BorrowedFd<'_>, rb: BorrowedFd<'_>) -> OwnedFd {
    let insns = Asm::new()
        .seq_prologue(counter)
        .extend(&ld_map_fd(R1, rb))
        .push(mov64_imm(R2, 16))
        .push(mov64_imm(R3, 0))
        .push(call(HELPER_RINGBUF_RESERVE))
        .push(jeq_imm(R0, 0, 11)) // -> "r0 = 1" below, then count the failure
        .push(stx_dw(R0, 0, R6))
        .push(stx_dw(R0, 8, R6))
        .push(mov64_reg(R1, R0))
        .push(mov64_imm(R2, 0))
        .push(mov64_reg(R3, R6))
        .push(mod64_imm(R3, 5))
        .push(jeq_imm(R3, 0, 2))
        .push(call(HELPER_RINGBUF_SUBMIT))
        .push(ja(i16::MIN))
        .push(call(HELPER_RINGBUF_DISCARD))
        .push(ja(i16::MIN))
        .push(mov64_imm(R0, 1)) // reserve failed: fall into count_failure with r0 != 0
        .count_failure()
        .finish();
    load(&insns)
}

/// bpf_perf_event_output(ctx, pb, BPF_F_CURRENT_CPU, &seq, 8).
fn perf_output_prog(counter: BorrowedFd<'_>, pb: BorrowedFd<'_>) -> OwnedFd {
    let insns = Asm::new()
        .seq_prologue(counter)
        .push(stx_dw(R10, -8, R6))
        .push(mov64_reg(R1, R9))
        .extend(&ld_map_fd(R2, pb))
        .push(mov32_imm(R3, -1))
        .push(mov64_reg(R4, R10))
        .push(add64_imm(R4, -8))
        .push(mov64_imm(R5, 8))
        .push(call(HELPER_PERF_EVENT_OUTPUT))
        .count_failure()
        .finish();
    load(&insns)
}

/// Runs `prog` `n` times over a minimal Ethernet-sized packet.
fn produce(prog: &OwnedFd, n: u32) {
    bpf::prog_test_run(prog.as_fd(), &[0u8; 64], n).expect("BPF_PROG_TEST_RUN");
}

fn seq_of(rec: &[u8]) -> u64 {
    u64::from_ne_bytes(
        rec.get(..8)
            .expect("record shorter than 8 bytes")
            .try_into()
            .unwrap(),
    )
}

/// Waits until `done()` or the deadline; false on deadline.
fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

// ---- ringbuf --------------------------------------------------------------------------------

#[test]
fn ringbuf_bursts_with_idle_gaps_arrive_once_in_order() {
    let Some(counter) = counter_map_or_skip("ringbuf_bursts") else {
        return;
    };
    let rb_map = ringbuf_map(256 * 1024);
    let prog = ringbuf_output_prog(counter.as_fd(), rb_map.as_fd());
    let mut rb = RingBuf::new(rb_map.as_fd(), 256 * 1024).expect("RingBuf::new");
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
    let deadline = Instant::now() + DEADLINE;
    let mut produced = 0u64;
    for (i, &b) in bursts.iter().enumerate() {
        produce(&prog, b);
        produced += u64::from(b);
        assert!(
            wait_until(deadline, || received.load(Ordering::Acquire) >= produced
                || consumer.is_finished()),
            "consumer stuck at {} of {produced} records after burst {i}: lost wakeup?",
            received.load(Ordering::Acquire)
        );
        assert!(
            !consumer.is_finished(),
            "consumer ended early: {:?}",
            consumer.join()
        );
        // Idle gaps of 0..7 ms so the consumer is sometimes asleep, sometimes mid-drain.
        std::thread::sleep(Duration::from_millis(u64::from(b % 8)));
    }
    produce(&prog, 1); // sentinel
    assert!(
        wait_until(deadline, || consumer.is_finished()),
        "consumer never saw the sentinel"
    );
    let got = consumer.join().unwrap().expect("consumer");
    assert_eq!(got, total + 1);
    assert_eq!(
        counters(&counter),
        (total + 1, 0),
        "(produced, failed outputs)"
    );
}

#[test]
fn ringbuf_reserve_discard_and_break() {
    let Some(counter) = counter_map_or_skip("ringbuf_reserve_discard") else {
        return;
    };
    let rb_map = ringbuf_map(4096);
    let prog = ringbuf_reserve_prog(counter.as_fd(), rb_map.as_fd());
    let mut rb = RingBuf::new(rb_map.as_fd(), 4096).expect("RingBuf::new");
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

fn perf_map() -> OwnedFd {
    let possible = cpus::possible_cpus().expect("possible cpus");
    let n = possible.iter().max().map_or(1, |m| m + 1);
    bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: n,
        name: "stress_pb",
        ..Default::default()
    })
    .expect("create perf event array")
}

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
    let Some(counter) = counter_map_or_skip("perfbuf_bursts") else {
        return;
    };
    let pb_map = perf_map();
    let prog = perf_output_prog(counter.as_fd(), pb_map.as_fd());
    let opts = PerfOpts {
        pages: 16,
        wakeup: Wakeup::Events(1),
    };
    let mut pb = PerfBuf::new(pb_map.as_fd(), &opts).expect("PerfBuf::new");
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
    let deadline = Instant::now() + DEADLINE;
    let mut produced = 0u64;
    for (i, &b) in bursts.iter().enumerate() {
        produce(&prog, b);
        produced += u64::from(b);
        assert!(
            wait_until(deadline, || received.load(Ordering::Acquire) >= produced
                || consumer.is_finished()),
            "perf consumer stuck at {} of {produced} after burst {i}",
            received.load(Ordering::Acquire)
        );
        std::thread::sleep(Duration::from_millis(u64::from(b % 5)));
    }
    produce(&prog, 1);
    assert!(
        wait_until(deadline, || consumer.is_finished()),
        "perf consumer never finished"
    );
    let tally = consumer.join().unwrap().expect("perf consumer");
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
    let Some(counter) = counter_map_or_skip("perfbuf_overflow") else {
        return;
    };
    let pb_map = perf_map();
    let prog = perf_output_prog(counter.as_fd(), pb_map.as_fd());
    let opts = PerfOpts {
        pages: 1,
        wakeup: Wakeup::Events(1),
    };
    let mut pb = PerfBuf::new(pb_map.as_fd(), &opts).expect("PerfBuf::new");
    let cpu = *cpus::online_cpus().unwrap().last().unwrap();
    // Pin so every output (and the LOST record emitted on the next success) hits one ring.
    let (tally, produced, failed) = std::thread::scope(|s| {
        s.spawn(|| {
            cpus::pin_current_thread(cpu).expect("pin");
            let mut tally = PerfTally::default();
            produce(&prog, 1000); // a 4 KiB ring holds ~170 24-byte samples
            pb.consume(|r| tally.take(r)).unwrap();
            produce(&prog, 1); // emits LOST(count) before this sample
            pb.consume(|r| tally.take(r)).unwrap();
            let (produced, failed) = counters(&counter);
            (tally, produced, failed)
        })
        .join()
        .unwrap()
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
    let Some(counter) = counter_map_or_skip("perfbuf_watermark") else {
        return;
    };
    let pb_map = perf_map();
    let prog = perf_output_prog(counter.as_fd(), pb_map.as_fd());
    let opts = PerfOpts {
        pages: 8,
        wakeup: Wakeup::Watermark(16 * 1024),
    };
    let mut pb = PerfBuf::new(pb_map.as_fd(), &opts).expect("PerfBuf::new");
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
