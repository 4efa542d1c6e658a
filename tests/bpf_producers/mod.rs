//! Shared by the real-kernel consumer tests: SOCKET_FILTER producers assembled with the
//! library's instruction builders (`rawsnoop::lab::asm`) and run with BPF_PROG_TEST_RUN (see
//! tests/consumer_stress.rs for the scheme), and the rigs the tests set up around them: a
//! counter map, a ring or perf buffer map, a producer and its consumer.
#![allow(dead_code, reason = "each test crate uses a different subset")]

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rawsnoop::consumer::{PerfBuf, PerfOpts, RingBuf, Wakeup};
use rawsnoop::sys::bpf;
use rawsnoop::sys::cpus;

/// Generous overall bound: a stuck consumer fails the test instead of hanging it.
pub const DEADLINE: Duration = Duration::from_secs(120);

// ---- the BPF assembler: the library's instruction builders --------------------------------

pub use rawsnoop::lab::asm::{
    add64_imm, and64_imm, atomic_add_dw, call, exit, ja, jeq_imm, ld_map_fd, ldx_dw, lsh64_imm,
    mod64_imm, mov32_imm, mov64_imm, mov64_reg, st_w, stx_dw, HELPER_MAP_LOOKUP,
    HELPER_PERF_EVENT_OUTPUT, HELPER_RINGBUF_DISCARD, HELPER_RINGBUF_OUTPUT,
    HELPER_RINGBUF_RESERVE, HELPER_RINGBUF_SUBMIT, R0, R1, R10, R2, R3, R4, R5, R6, R7, R9,
};

/// Appends `insns` and fixes up labels: every `ja`/`jeq` in the emitted code whose offset is
/// `i16::MIN` jumps to the final `r0 = 0; exit`.
pub struct Asm(Vec<u64>);
impl Asm {
    pub fn new() -> Asm {
        Asm(Vec::new())
    }
    pub fn push(&mut self, i: u64) -> &mut Asm {
        self.0.push(i);
        self
    }
    pub fn extend(&mut self, i: &[u64]) -> &mut Asm {
        self.0.extend_from_slice(i);
        self
    }
    /// Prologue: `r9 = ctx`; `r7 = &counter[0]` (exit if NULL); `r6 = slot0++`. A plain
    /// load/store is enough: BPF_PROG_TEST_RUN runs the program `repeat` times one after the
    /// other on one CPU, and each test has its own counter map (atomic fetch-add would need
    /// Linux 5.12).
    pub fn seq_prologue(&mut self, counter: BorrowedFd<'_>) -> &mut Asm {
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
    pub fn count_failure(&mut self) -> &mut Asm {
        self.push(jeq_imm(R0, 0, i16::MIN))
            .push(mov64_imm(R1, 1))
            .push(atomic_add_dw(R7, 8, R1))
    }
    pub fn finish(&mut self) -> Vec<u64> {
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

pub fn require_bpf() -> bool {
    std::env::var("RAWSNOOP_REQUIRE_BPF").is_ok_and(|v| v == "1")
}

/// Creates the counter map, or reports why BPF is unavailable (skip / fail per the rules).
pub fn counter_map_or_skip(test: &str) -> Option<OwnedFd> {
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
pub fn counters(map: &OwnedFd) -> (u64, u64) {
    let mut v = [0u8; 16];
    bpf::map_lookup_elem(map.as_fd(), &0u32.to_ne_bytes(), &mut v).expect("counter lookup");
    let w = |i: usize| u64::from_ne_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
    (w(0), w(1))
}

pub fn ringbuf_map(size: u32) -> OwnedFd {
    bpf::map_create(&bpf::MapCreate {
        map_type: bpf::BPF_MAP_TYPE_RINGBUF,
        max_entries: size,
        name: "stress_rb",
        ..Default::default()
    })
    .expect("create ringbuf map")
}

pub fn load(insns: &[u64]) -> OwnedFd {
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
pub fn ringbuf_output_prog(counter: BorrowedFd<'_>, rb: BorrowedFd<'_>) -> OwnedFd {
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
pub fn ringbuf_reserve_prog(counter: BorrowedFd<'_>, rb: BorrowedFd<'_>) -> OwnedFd {
    ringbuf_reserve_discarding(counter, rb, 5)
}

/// Reserve 16 bytes, write seq twice, submit; with `discard_every` n > 0 the records whose
/// seq is a multiple of n are discarded instead (0: every record is submitted). A failed
/// reservation counts as a failed output.
pub fn ringbuf_reserve_discarding(
    counter: BorrowedFd<'_>,
    rb: BorrowedFd<'_>,
    discard_every: i32,
) -> OwnedFd {
    let mut commit = vec![
        stx_dw(R0, 0, R6),
        stx_dw(R0, 8, R6),
        mov64_reg(R1, R0),
        mov64_imm(R2, 0),
    ];
    if discard_every > 0 {
        commit.extend([
            mov64_reg(R3, R6),
            mod64_imm(R3, discard_every),
            jeq_imm(R3, 0, 2),
            call(HELPER_RINGBUF_SUBMIT),
            ja(i16::MIN),
            call(HELPER_RINGBUF_DISCARD),
        ]);
    } else {
        commit.push(call(HELPER_RINGBUF_SUBMIT)); // returns void
    }
    commit.push(ja(i16::MIN)); // done
    let insns = Asm::new()
        .seq_prologue(counter)
        .extend(&ld_map_fd(R1, rb))
        .push(mov64_imm(R2, 16))
        .push(mov64_imm(R3, 0))
        .push(call(HELPER_RINGBUF_RESERVE))
        .push(jeq_imm(R0, 0, commit.len() as i16)) // -> "r0 = 1" below
        .extend(&commit)
        .push(mov64_imm(R0, 1)) // reserve failed: fall into count_failure with r0 != 0
        .count_failure()
        .finish();
    load(&insns)
}

/// bpf_perf_event_output(ctx, pb, BPF_F_CURRENT_CPU, &seq, 8).
pub fn perf_output_prog(counter: BorrowedFd<'_>, pb: BorrowedFd<'_>) -> OwnedFd {
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
pub fn produce(prog: &OwnedFd, n: u32) {
    bpf::prog_test_run(prog.as_fd(), &[0u8; 64], n).expect("BPF_PROG_TEST_RUN");
}

pub fn seq_of(rec: &[u8]) -> u64 {
    u64::from_ne_bytes(
        rec.get(..8)
            .expect("record shorter than 8 bytes")
            .try_into()
            .unwrap(),
    )
}

/// Waits until `done()` or the deadline; false on deadline.
pub fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

pub fn perf_map() -> OwnedFd {
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

// ---- rigs: a producer and its consumer ----------------------------------------------------

/// A ring buffer map fed by a producer, with its consumer.
pub struct RingRig {
    /// The producer's counters (see [`counters`]).
    pub counter: OwnedFd,
    /// The RINGBUF map (the consumer holds a dup of it).
    pub map: OwnedFd,
    /// The producer: run it with [`produce`].
    pub prog: OwnedFd,
    pub rb: RingBuf,
}

/// A `size`-byte ring buffer, the producer `make` builds for it, and a [`RingBuf`] over it;
/// `None` when `test` may not use BPF (see [`counter_map_or_skip`]).
pub fn ring_rig(
    test: &str,
    size: u32,
    make: fn(BorrowedFd<'_>, BorrowedFd<'_>) -> OwnedFd,
) -> Option<RingRig> {
    let counter = counter_map_or_skip(test)?;
    let map = ringbuf_map(size);
    let prog = make(counter.as_fd(), map.as_fd());
    let rb = RingBuf::new(map.as_fd(), size).expect("RingBuf::new");
    Some(RingRig {
        counter,
        map,
        prog,
        rb,
    })
}

/// A perf event array fed by [`perf_output_prog`], with its consumer.
pub struct PerfRig {
    /// The producer's counters (see [`counters`]).
    pub counter: OwnedFd,
    /// The PERF_EVENT_ARRAY map (the consumer holds a dup of it).
    pub map: OwnedFd,
    /// The producer: run it with [`produce`] (on a pinned thread: [`on_cpu`]).
    pub prog: OwnedFd,
    pub pb: PerfBuf,
}

/// A perf event array, [`perf_output_prog`] for it, and a [`PerfBuf`] of `pages` data pages
/// per CPU waking as `wakeup` says; `None` when `test` may not use BPF.
pub fn perf_rig(test: &str, pages: usize, wakeup: Wakeup) -> Option<PerfRig> {
    let counter = counter_map_or_skip(test)?;
    let map = perf_map();
    let prog = perf_output_prog(counter.as_fd(), map.as_fd());
    let pb = PerfBuf::new(map.as_fd(), &PerfOpts { pages, wakeup }).expect("PerfBuf::new");
    Some(PerfRig {
        counter,
        map,
        prog,
        pb,
    })
}

/// The highest online CPU (a perf test pins its producer there).
pub fn last_online_cpu() -> u32 {
    *cpus::online_cpus()
        .expect("online cpus")
        .last()
        .expect("an online cpu")
}

/// Runs `f` on a thread pinned to `cpu` (so every sample it produces lands in that CPU's
/// perf ring) and returns its result.
pub fn on_cpu<T: Send>(cpu: u32, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            cpus::pin_current_thread(cpu).expect("pin to the CPU");
            f()
        })
        .join()
        .expect("the pinned thread panicked")
    })
}
