//! Shared by the real-kernel consumer tests: a tiny BPF assembler and SOCKET_FILTER producers
//! run with BPF_PROG_TEST_RUN (see tests/consumer_stress.rs for the scheme).
#![allow(dead_code, reason = "each test crate uses a different subset")]

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rawsnoop::sys::bpf;
use rawsnoop::sys::cpus;

/// Generous overall bound: a stuck consumer fails the test instead of hanging it.
pub const DEADLINE: Duration = Duration::from_secs(120);

// ---- a tiny BPF assembler -------------------------------------------------------------

pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R5: u8 = 5;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R9: u8 = 9;
pub const R10: u8 = 10;

pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | u64::from(dst | (src << 4)) << 8
        | u64::from(off as u16) << 16
        | u64::from(imm as u32) << 32
}
pub fn mov64_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm)
}
/// 32-bit mov: zero-extends, so -1 becomes 0xffff_ffff (BPF_F_CURRENT_CPU).
pub fn mov32_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb4, dst, 0, 0, imm)
}
pub fn mov64_reg(dst: u8, src: u8) -> u64 {
    insn(0xbf, dst, src, 0, 0)
}
pub fn add64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x07, dst, 0, 0, imm)
}
pub fn and64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x57, dst, 0, 0, imm)
}
pub fn lsh64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x67, dst, 0, 0, imm)
}
pub fn mod64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x97, dst, 0, 0, imm)
}
pub fn st_w(dst: u8, off: i16, imm: i32) -> u64 {
    insn(0x62, dst, 0, off, imm)
}
pub fn stx_dw(dst: u8, off: i16, src: u8) -> u64 {
    insn(0x7b, dst, src, off, 0)
}
/// `lock *(u64 *)(dst + off) += src` (BPF_XADD: no fetch, so Linux 5.10 takes it too).
pub fn atomic_add_dw(dst: u8, off: i16, src: u8) -> u64 {
    insn(0xdb, dst, src, off, 0)
}
/// `dst = *(u64 *)(src + off)`.
pub fn ldx_dw(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x79, dst, src, off, 0)
}
pub fn jeq_imm(dst: u8, imm: i32, off: i16) -> u64 {
    insn(0x15, dst, 0, off, imm)
}
pub fn ja(off: i16) -> u64 {
    insn(0x05, 0, 0, off, 0)
}
pub fn call(helper: i32) -> u64 {
    insn(0x85, 0, 0, 0, helper)
}
pub fn exit() -> u64 {
    insn(0x95, 0, 0, 0, 0)
}
/// `ld_imm64 dst, map_fd` (BPF_PSEUDO_MAP_FD): two instruction slots.
pub fn ld_map_fd(dst: u8, fd: BorrowedFd<'_>) -> [u64; 2] {
    [insn(0x18, dst, 1, 0, fd.as_raw_fd()), 0]
}

pub const HELPER_MAP_LOOKUP: i32 = 1;
pub const HELPER_PERF_EVENT_OUTPUT: i32 = 25;
pub const HELPER_RINGBUF_OUTPUT: i32 = 130;
pub const HELPER_RINGBUF_RESERVE: i32 = 131;
pub const HELPER_RINGBUF_SUBMIT: i32 = 132;
pub const HELPER_RINGBUF_DISCARD: i32 = 133;

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
