//! The BPF objects built from `bpf/*.bpf.c` (by clang, or from the committed
//! `bpf/prebuilt/` copies: see `build.rs`), embedded in the binary.
//!
//! Each is a relocatable ELF for `EM_BPF`, 8-byte aligned in memory so an ELF
//! parser may read its 64-bit headers in place.
//!
//! | object | programs (all `tp/...`) | maps |
//! |---|---|---|
//! | [`RINGBUF_RESERVE`] | `handle_exec` | `rb` (ringbuf 256 KiB), `drops` |
//! | [`RINGBUF_OUTPUT`] | `handle_exec` | `rb`, `heap`, `drops` |
//! | [`PERFBUF_OUTPUT`] | `handle_exec` | `pb` (perf event array), `heap`, `drops` |
//! | [`BENCH`] | `bench_ringbuf_reserve`, `bench_ringbuf_output`, `bench_perfbuf` | `rb` (16 MiB), `pb`, `cfg`, `stats`, `heap`, `snap` |
//!
//! The tracers emit `struct event` (`bpf/event.h`) per exec and count records
//! the kernel refused in `drops[0]` (u64). The bench maps hold `struct
//! bench_cfg` / `struct bench_stats` (`bpf/bench.h`).

/// Forces the alignment of the bytes it wraps (`include_bytes!` gives 1).
#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

macro_rules! embed_object {
    ($file:literal) => {{
        static ALIGNED: &Aligned<[u8]> =
            &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/", $file)));
        &ALIGNED.0
    }};
}

/// Exec tracer over the BPF ring buffer, writing records in place
/// (`bpf_ringbuf_reserve`/`bpf_ringbuf_submit`). Linux >= 5.8.
pub static RINGBUF_RESERVE: &[u8] = embed_object!("ringbuf_reserve.bpf.o");

/// Exec tracer over the BPF ring buffer, copying records in
/// (`bpf_ringbuf_output`). Linux >= 5.8.
pub static RINGBUF_OUTPUT: &[u8] = embed_object!("ringbuf_output.bpf.o");

/// Exec tracer over per-CPU perf buffers (`bpf_perf_event_output`): the
/// fallback for kernels without the ring buffer.
pub static PERFBUF_OUTPUT: &[u8] = embed_object!("perfbuf_output.bpf.o");

/// Producers for `rawsnoop bench`, on `tp/syscalls/sys_enter_getpgid`.
/// Uses `may_goto`: Linux >= 6.9.
pub static BENCH: &[u8] = embed_object!("bench.bpf.o");

/// Every embedded object, as (name, ELF bytes); the name is the source's
/// `bpf/<name>.bpf.c` stem.
pub fn builtin() -> &'static [(&'static str, &'static [u8])] {
    static ALL: [(&str, &[u8]); 4] = [
        ("ringbuf_reserve", RINGBUF_RESERVE),
        ("ringbuf_output", RINGBUF_OUTPUT),
        ("perfbuf_output", PERFBUF_OUTPUT),
        ("bench", BENCH),
    ];
    &ALL
}
