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

mod common;

use std::ops::ControlFlow;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use rawsnoop::consumer::{PerfOpts, Wakeup};
use rawsnoop::perfbuf::{PerfBuf, PerfRecord};
use rawsnoop::ringbuf::RingBuf;
use rawsnoop::sys::bpf;
use rawsnoop::sys::cpus;

/// How long a woken consumer may take to see the wakeup. The kernel wakes it through an
/// irq_work right after the commit; 10 s is a hang guard for TCG, not a latency bound.
const WAKEUP_WAIT: Duration = Duration::from_secs(10);

// ---- a tiny BPF assembler (the subset these producers need) ---------------------------

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

const HELPER_MAP_LOOKUP: i32 = 1;
const HELPER_PERF_EVENT_OUTPUT: i32 = 25;
const HELPER_RINGBUF_OUTPUT: i32 = 130;
const HELPER_RINGBUF_RESERVE: i32 = 131;
const HELPER_RINGBUF_SUBMIT: i32 = 132;

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from(dst & 0xf) << 8)
        | (u64::from(src & 0xf) << 12)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}
fn mov64_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm)
}
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
fn st_w(dst: u8, off: i16, imm: i32) -> u64 {
    insn(0x62, dst, 0, off, imm)
}
fn stx_dw(dst: u8, off: i16, src: u8) -> u64 {
    insn(0x7b, dst, src, off, 0)
}
fn ldx_dw(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x79, dst, src, off, 0)
}
/// `if dst == imm goto +off`; `off == i16::MIN` means "to the final exit" (see `finish`).
fn jeq_imm(dst: u8, imm: i32, off: i16) -> u64 {
    insn(0x15, dst, 0, off, imm)
}
fn call(helper: i32) -> u64 {
    insn(0x85, 0, 0, 0, helper)
}
fn exit() -> u64 {
    insn(0x95, 0, 0, 0, 0)
}
fn ld_map_fd(dst: u8, fd: BorrowedFd<'_>) -> [u64; 2] {
    [insn(0x18, dst, 1, 0, fd.as_raw_fd()), 0]
}

/// Prologue shared by every producer: `r9 = ctx`, `r7 = &counter[0]`, `r6 = counter[0]++`
/// (the record's sequence number). BPF_PROG_TEST_RUN runs the `repeat` iterations one
/// after the other, so a plain load/store counts exactly.
fn prologue(counter: BorrowedFd<'_>) -> Vec<u64> {
    let mut v = vec![
        mov64_reg(R9, R1),
        st_w(R10, -4, 0),
        mov64_reg(R2, R10),
        add64_imm(R2, -4),
    ];
    v.extend(ld_map_fd(R1, counter));
    v.extend([
        call(HELPER_MAP_LOOKUP),
        jeq_imm(R0, 0, i16::MIN),
        mov64_reg(R7, R0),
        ldx_dw(R6, R7, 0),
        mov64_reg(R1, R6),
        add64_imm(R1, 1),
        stx_dw(R7, 0, R1),
    ]);
    v
}

/// `if r0 != 0 { counter[1] += 1 }` (a failed output), then `r0 = 0; exit`; resolves the
/// `i16::MIN` jumps to that exit.
fn finish(mut v: Vec<u64>) -> Vec<u64> {
    v.extend([
        jeq_imm(R0, 0, i16::MIN),
        ldx_dw(R1, R7, 8),
        add64_imm(R1, 1),
        stx_dw(R7, 8, R1),
    ]);
    let exit_at = v.len();
    v.extend([mov64_imm(R0, 0), exit()]);
    for (i, w) in v.iter_mut().enumerate() {
        let off = ((*w >> 16) & 0xffff) as u16 as i16;
        if (*w & 0xff) == 0x15 && off == i16::MIN {
            let rel = (exit_at as i64 - i as i64 - 1) as i16;
            *w = (*w & !(0xffff << 16)) | (u64::from(rel as u16) << 16);
        }
    }
    v
}

fn load(insns: &[u64]) -> OwnedFd {
    let spec = bpf::ProgLoad {
        prog_type: bpf::BPF_PROG_TYPE_SOCKET_FILTER,
        name: "contract_prod",
        insns,
        license: "GPL",
        ..Default::default()
    };
    match bpf::prog_load_with_log(&spec) {
        Ok(fd) => fd,
        Err((e, log)) => panic!("program load failed: {e}\n{log}"),
    }
}

/// bpf_ringbuf_reserve(rb, 16); store seq twice; bpf_ringbuf_submit(rec, 0).
fn ringbuf_reserve_prog(counter: BorrowedFd<'_>, rb: BorrowedFd<'_>) -> OwnedFd {
    let mut v = prologue(counter);
    v.extend(ld_map_fd(R1, rb));
    v.extend([
        mov64_imm(R2, 16),
        mov64_imm(R3, 0),
        call(HELPER_RINGBUF_RESERVE),
        jeq_imm(R0, 0, 7), // reserve failed -> "r0 = 1": count the failure
        stx_dw(R0, 0, R6),
        stx_dw(R0, 8, R6),
        mov64_reg(R1, R0),
        mov64_imm(R2, 0),
        call(HELPER_RINGBUF_SUBMIT), // returns void
        mov64_imm(R0, 0),
        jeq_imm(R0, 0, i16::MIN), // always taken: done
        mov64_imm(R0, 1),
    ]);
    load(&finish(v))
}

/// bpf_ringbuf_output(rb, &seq, 8 + (seq & 3) * 4, 0): records of 8, 12, 16 and 20 bytes.
fn ringbuf_output_prog(counter: BorrowedFd<'_>, rb: BorrowedFd<'_>) -> OwnedFd {
    let mut v = prologue(counter);
    v.extend([
        stx_dw(R10, -24, R6),
        stx_dw(R10, -16, R6),
        stx_dw(R10, -8, R6),
        mov64_reg(R3, R6),
        and64_imm(R3, 3),
        lsh64_imm(R3, 2),
        add64_imm(R3, 8),
    ]);
    v.extend(ld_map_fd(R1, rb));
    v.extend([
        mov64_reg(R2, R10),
        add64_imm(R2, -24),
        mov64_imm(R4, 0),
        call(HELPER_RINGBUF_OUTPUT),
    ]);
    load(&finish(v))
}

/// bpf_perf_event_output(ctx, pb, BPF_F_CURRENT_CPU, &seq, 8).
fn perf_output_prog(counter: BorrowedFd<'_>, pb: BorrowedFd<'_>) -> OwnedFd {
    let mut v = prologue(counter);
    v.extend([stx_dw(R10, -8, R6), mov64_reg(R1, R9)]);
    v.extend(ld_map_fd(R2, pb));
    v.extend([
        mov32_imm(R3, -1),
        mov64_reg(R4, R10),
        add64_imm(R4, -8),
        mov64_imm(R5, 8),
        call(HELPER_PERF_EVENT_OUTPUT),
    ]);
    load(&finish(v))
}

// ---- kernel objects -----------------------------------------------------------------------

/// The counter map (slot 0: records produced, slot 1: outputs that failed), or None when
/// the test may not use BPF (a loud skip; a failure under RAWSNOOP_REQUIRE_BPF=1).
fn counter_map(test: &str) -> Option<OwnedFd> {
    if !common::bpf_allowed(test) {
        return None;
    }
    // Kernels before 5.11 charge maps to RLIMIT_MEMLOCK; failing to raise it shows below.
    let _ = rawsnoop::sys::kernel::raise_memlock_if_needed();
    let fd = bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_ARRAY,
        key_size: 4,
        value_size: 16,
        max_entries: 1,
        name: "contract_ctr",
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{test}: creating the counter map failed: {e}"));
    Some(fd)
}

/// (records produced, outputs that failed).
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
        name: "contract_rb",
        ..Default::default()
    })
    .expect("create ringbuf map")
}

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
    let prog = ringbuf_reserve_prog(counter.as_fd(), rb_map.as_fd());
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
    let reserve = ringbuf_reserve_prog(counter.as_fd(), rb_map.as_fd());
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
    let possible = cpus::possible_cpus().expect("possible cpus");
    let n = possible.iter().max().map_or(1, |m| m + 1);
    let pb_map = bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_PERF_EVENT_ARRAY,
        key_size: 4,
        value_size: 4,
        max_entries: n,
        name: "contract_pb",
        ..Default::default()
    })
    .expect("create perf event array");
    let prog = perf_output_prog(counter.as_fd(), pb_map.as_fd());
    let opts = PerfOpts {
        pages: 1,
        wakeup: Wakeup::Events(1),
    };
    let mut pb = PerfBuf::new(pb_map.as_fd(), &opts).expect("PerfBuf::new");
    let cpu = *cpus::online_cpus().unwrap().last().unwrap();
    let (samples, lost_records, lost) = std::thread::scope(|s| {
        s.spawn(|| {
            // One CPU, one ring: the overflow and the next sample's LOST record land together.
            cpus::pin_current_thread(cpu).expect("pin");
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
        })
        .join()
        .unwrap()
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
