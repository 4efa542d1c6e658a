//! The lab's producers: tiny `BPF_PROG_TYPE_SOCKET_FILTER` programs assembled here, one per
//! (operation, size, flags), with the size and flags as immediates.
//!
//! Why raw instructions and not C: `bpf_ringbuf_reserve()` takes its size as
//! `ARG_CONST_ALLOC_SIZE_OR_ZERO`, so the verifier wants a constant; generating the program for
//! the size the learner typed is the simplest way to reserve exactly that. Why SOCKET_FILTER:
//! its `BPF_PROG_TEST_RUN` (`bpf_prog_test_run_skb`) exists on every kernel we support, and the
//! ringbuf helpers reach it through `bpf_base_func_proto` (Linux >= 5.8), so the kernel runs
//! our program synchronously, on this CPU, with nothing attached anywhere.
//!
//! Every program returns what the helper said: 0 or a negative errno for the output helpers,
//! 0 (reserved and committed) or 1 (the reservation was refused) for reserve.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use crate::sys::bpf;

// ---- the instruction builders ------------------------------------------------------------
//
// Public: the real-kernel tests (tests/bpf_producers, tests/kernel_contract.rs) assemble
// their producers with these too. Each returns one 8-byte `struct bpf_insn` (include/uapi/
// linux/bpf.h: opcode, dst_reg:4 | src_reg:4, s16 off, s32 imm) as a native-endian u64, the
// form `sys::bpf::ProgLoad::insns` takes. Little-endian hosts only, like the rest of rawsnoop.

/// Register r0: return value of helpers and of the program.
pub const R0: u8 = 0;
/// Register r1: first helper argument; the context at program start.
pub const R1: u8 = 1;
/// Register r2: second helper argument.
pub const R2: u8 = 2;
/// Register r3: third helper argument.
pub const R3: u8 = 3;
/// Register r4: fourth helper argument.
pub const R4: u8 = 4;
/// Register r5: fifth helper argument.
pub const R5: u8 = 5;
/// Register r6 (callee-saved).
pub const R6: u8 = 6;
/// Register r7 (callee-saved).
pub const R7: u8 = 7;
/// Register r8 (callee-saved).
pub const R8: u8 = 8;
/// Register r9 (callee-saved).
pub const R9: u8 = 9;
/// Register r10: the read-only frame pointer (stack grows down from it).
pub const R10: u8 = 10;

/// `BPF_FUNC_*` ids used here (include/uapi/linux/bpf.h).
pub const HELPER_MAP_LOOKUP: i32 = 1;
pub const HELPER_PERF_EVENT_OUTPUT: i32 = 25;
pub const HELPER_RINGBUF_OUTPUT: i32 = 130;
pub const HELPER_RINGBUF_RESERVE: i32 = 131;
pub const HELPER_RINGBUF_SUBMIT: i32 = 132;
pub const HELPER_RINGBUF_DISCARD: i32 = 133;

/// `BPF_RB_NO_WAKEUP` / `BPF_RB_FORCE_WAKEUP`.
pub const RB_NO_WAKEUP: u64 = 1;
pub const RB_FORCE_WAKEUP: u64 = 2;

/// One instruction from its fields.
pub fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    u64::from(code)
        | (u64::from((dst & 0xf) | ((src & 0xf) << 4)) << 8)
        | (u64::from(off as u16) << 16)
        | (u64::from(imm as u32) << 32)
}
/// `dst = imm` (64-bit, sign-extended).
pub fn mov64_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb7, dst, 0, 0, imm)
}
/// `dst = (u32)imm` (32-bit: zero-extends, so -1 is 0xffff_ffff, e.g. `BPF_F_CURRENT_CPU`).
pub fn mov32_imm(dst: u8, imm: i32) -> u64 {
    insn(0xb4, dst, 0, 0, imm)
}
/// `dst = src`.
pub fn mov64_reg(dst: u8, src: u8) -> u64 {
    insn(0xbf, dst, src, 0, 0)
}
/// `dst += imm`.
pub fn add64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x07, dst, 0, 0, imm)
}
/// `dst &= imm`.
pub fn and64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x57, dst, 0, 0, imm)
}
/// `dst <<= imm`.
pub fn lsh64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x67, dst, 0, 0, imm)
}
/// `dst %= imm` (unsigned).
pub fn mod64_imm(dst: u8, imm: i32) -> u64 {
    insn(0x97, dst, 0, 0, imm)
}
/// `*(u32 *)(dst + off) = imm`.
pub fn st_w(dst: u8, off: i16, imm: i32) -> u64 {
    insn(0x62, dst, 0, off, imm)
}
/// `*(u64 *)(dst + off) = src`.
pub fn stx_dw(dst: u8, off: i16, src: u8) -> u64 {
    insn(0x7b, dst, src, off, 0)
}
/// `*(u8 *)(dst + off) = src`.
pub fn stx_b(dst: u8, off: i16, src: u8) -> u64 {
    insn(0x73, dst, src, off, 0)
}
/// `dst = *(u64 *)(src + off)`.
pub fn ldx_dw(dst: u8, src: u8, off: i16) -> u64 {
    insn(0x79, dst, src, off, 0)
}
/// `lock *(u64 *)(dst + off) += src` (BPF_XADD: no fetch, so Linux 5.10 takes it too).
pub fn atomic_add_dw(dst: u8, off: i16, src: u8) -> u64 {
    insn(0xdb, dst, src, off, 0)
}
/// `if dst == imm goto +off`.
pub fn jeq_imm(dst: u8, imm: i32, off: i16) -> u64 {
    insn(0x15, dst, 0, off, imm)
}
/// `if dst != imm goto +off`.
pub fn jne_imm(dst: u8, imm: i32, off: i16) -> u64 {
    insn(0x55, dst, 0, off, imm)
}
/// `goto +off`.
pub fn ja(off: i16) -> u64 {
    insn(0x05, 0, 0, off, 0)
}
/// `call helper`.
pub fn call(helper: i32) -> u64 {
    insn(0x85, 0, 0, 0, helper)
}
/// `exit` (returns r0).
pub fn exit() -> u64 {
    insn(0x95, 0, 0, 0, 0)
}
/// `dst = value` (`ld_imm64`, pseudo source `src`): two instruction slots.
pub fn ld_imm64(dst: u8, src: u8, value: u64) -> [u64; 2] {
    [
        insn(0x18, dst, src, 0, value as u32 as i32),
        insn(0, 0, 0, 0, (value >> 32) as u32 as i32),
    ]
}
/// `dst = &map` for the map behind `fd` (`ld_imm64` with `BPF_PSEUDO_MAP_FD`): two slots.
pub fn ld_map_fd(dst: u8, fd: BorrowedFd<'_>) -> [u64; 2] {
    ld_imm64(dst, 1, fd.as_raw_fd() as u32 as u64)
}

/// `r0 = &scratch[0]`, or `return 0` if the lookup fails (it cannot: key 0 of a 1-entry array).
fn scratch_lookup(p: &mut Vec<u64>, scratch: BorrowedFd<'_>) {
    p.push(st_w(R10, -4, 0));
    p.push(mov64_reg(R2, R10));
    p.push(add64_imm(R2, -4));
    p.extend(ld_map_fd(R1, scratch));
    p.push(call(HELPER_MAP_LOOKUP));
    p.push(jne_imm(R0, 0, 1));
    p.push(exit());
}

fn size_imm(size: u32) -> io::Result<i32> {
    i32::try_from(size).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `return bpf_ringbuf_output(&rb, &scratch[0], size, flags);`
pub fn ringbuf_output(
    rb: BorrowedFd<'_>,
    scratch: BorrowedFd<'_>,
    size: u32,
    flags: u64,
) -> io::Result<Vec<u64>> {
    let mut p = vec![mov64_reg(R6, R1)];
    scratch_lookup(&mut p, scratch);
    p.push(mov64_reg(R2, R0));
    p.extend(ld_map_fd(R1, rb));
    p.push(mov64_imm(R3, size_imm(size)?));
    p.push(mov64_imm(R4, flags as i32));
    p.push(call(HELPER_RINGBUF_OUTPUT));
    p.push(exit());
    Ok(p)
}

/// ```c
/// char *e = bpf_ringbuf_reserve(&rb, size, 0);
/// if (!e) return 1;
/// memset(e, fill, size);               /* unrolled stores */
/// bpf_ringbuf_submit(e, flags);        /* or bpf_ringbuf_discard(e, flags) */
/// return 0;
/// ```
pub fn ringbuf_reserve(
    rb: BorrowedFd<'_>,
    size: u32,
    discard: bool,
    flags: u64,
    fill: u8,
) -> io::Result<Vec<u64>> {
    let mut p = Vec::new();
    p.extend(ld_map_fd(R1, rb));
    p.push(mov64_imm(R2, size_imm(size)?));
    p.push(mov64_imm(R3, 0));
    p.push(call(HELPER_RINGBUF_RESERVE));
    p.push(jne_imm(R0, 0, 2));
    p.push(mov64_imm(R0, 1));
    p.push(exit());
    p.push(mov64_reg(R6, R0));
    p.extend(ld_imm64(R1, 0, u64::from_ne_bytes([fill; 8])));
    let words = size / 8;
    for i in 0..words {
        let off = i16::try_from(i * 8).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        p.push(stx_dw(R6, off, R1));
    }
    for b in words * 8..size {
        let off = i16::try_from(b).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        p.push(stx_b(R6, off, R1));
    }
    p.push(mov64_reg(R1, R6));
    p.push(mov64_imm(R2, flags as i32));
    p.push(call(if discard {
        HELPER_RINGBUF_DISCARD
    } else {
        HELPER_RINGBUF_SUBMIT
    }));
    p.push(mov64_imm(R0, 0));
    p.push(exit());
    Ok(p)
}

/// `return bpf_perf_event_output(skb, &pb, BPF_F_CURRENT_CPU, &scratch[0], size);`
pub fn perf_output(pb: BorrowedFd<'_>, scratch: BorrowedFd<'_>, size: u32) -> io::Result<Vec<u64>> {
    let mut p = vec![mov64_reg(R6, R1)];
    scratch_lookup(&mut p, scratch);
    p.push(mov64_reg(R4, R0));
    p.push(mov64_reg(R1, R6));
    p.extend(ld_map_fd(R2, pb));
    // 32-bit mov zero-extends: r3 = 0xffffffff = BPF_F_CURRENT_CPU.
    p.push(mov32_imm(R3, -1));
    p.push(mov64_imm(R5, size_imm(size)?));
    p.push(call(HELPER_PERF_EVENT_OUTPUT));
    p.push(exit());
    Ok(p)
}

/// Loads `insns` as a SOCKET_FILTER program; on a verifier rejection the error carries the
/// verifier's log.
pub fn load(name: &str, insns: &[u64]) -> io::Result<OwnedFd> {
    let spec = bpf::ProgLoad {
        prog_type: bpf::BPF_PROG_TYPE_SOCKET_FILTER,
        name,
        insns,
        license: "GPL",
        ..Default::default()
    };
    bpf::prog_load_with_log(&spec).map_err(|(e, log)| {
        if log.is_empty() {
            e
        } else {
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            io::Error::new(
                e.kind(),
                format!("{e}; the verifier said:\n{}", tail.join("\n")),
            )
        }
    })
}

/// Runs `prog` once over a minimal packet (SOCKET_FILTER's test run wants at least an Ethernet
/// header) and returns its return value as the signed value the program meant.
pub fn run(prog: BorrowedFd<'_>) -> io::Result<i64> {
    let ret = bpf::prog_test_run(prog, &[0u8; 64], 1)?;
    Ok(i64::from(ret as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_uapi() {
        // r0 = 0; exit
        assert_eq!(mov64_imm(R0, 0), 0xb7);
        assert_eq!(exit(), 0x95);
        // ld_imm64 r1, 0x1122334455667788: two slots, low half then high half.
        let [a, b] = ld_imm64(R1, 0, 0x1122_3344_5566_7788);
        assert_eq!(a, 0x5566_7788_0000_0118);
        assert_eq!(b, 0x1122_3344_0000_0000);
        // *(u64 *)(r6 + 8) = r1
        assert_eq!(stx_dw(R6, 8, R1), 0x0000_0000_0008_167b);
    }
}
