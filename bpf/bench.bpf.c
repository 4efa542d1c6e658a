// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * bench.bpf.c: producer side of `rawsnoop bench`.  Each program is attached
 * to the getpgid() syscall tracepoint; when the benchmark process (cfg.pid)
 * calls getpgid(), the attached program emits cfg.batch records of cfg.size
 * bytes through one of the three mechanisms, counting produced/dropped in
 * the per-CPU `stats`.  Userspace attaches one program at a time.
 *
 * The first 8 bytes of each record hold this CPU's running sequence number
 * (stats.produced before the record), so a consumer can check what it got.
 *
 * The record loop: cfg.batch is only known at run time, so the verifier
 * cannot unroll the loop up to BENCH_MAX_BATCH (10000 iterations, each with a
 * branch on the reserve/output result, is over its 8192 pending-branch
 * limit).  Every iteration therefore goes through `may_goto` (Linux >= 6.9),
 * which lets the verifier check the body once and prove the loop converges;
 * the loop itself stops at min(cfg.batch, BENCH_MAX_BATCH).
 */
#include "rawsnoop.h"
#include "bench.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 * 1024 * 1024);
} rb SEC(".maps");

/* max_entries 0: one slot per possible CPU, filled in by the loader */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(int));
	__uint(value_size, sizeof(int));
} pb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_cfg);
} cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_stats);
} stats SEC(".maps");

/* per-CPU staging buffer for the copying programs */
struct bench_buf {
	__u8 data[BENCH_MAX_SIZE];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_buf);
} heap SEC(".maps");

/*
 * `may_goto` jumps to `label` once the kernel's per-program loop budget is
 * spent (it never is here: 10000 << 8M) and lets the verifier prove the loop
 * ends without unrolling it.  clang >= 19 knows the mnemonic; older ones get
 * the instruction as bytes (opcode 0xe5, jump offset in instructions), laid
 * out for little-endian: the offset goes through a `.long` whose upper half
 * is 0 (with a `.short`, clang 14 misplaces the fixup).
 */
#if __clang_major__ >= 19
#define may_goto(label) asm volatile goto("may_goto %l[" #label "]" :::: label)
#elif __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define may_goto(label)                                                        \
	asm volatile goto("1: .byte 0xe5, 0\n"                                 \
			  " .long ((%l[" #label "] - 1b - 8) / 8) & 0xffff\n"  \
			  " .short 0\n" :::: label)
#else
#error "bench.bpf.c needs clang >= 19 on big-endian targets (may_goto)"
#endif

/*
 * Per-CPU snapshot of cfg[0], taken when a run starts (userspace may rewrite
 * cfg meanwhile).  It lives in map memory on purpose: the verifier does not
 * track what map values hold, so the clamped batch reaches the loop as an
 * unknown number.  Were it a constant (10000 after clamping), the loop test
 * `i < batch` would be decided at verification time, `i` would become
 * precise, and the verifier would unroll the loop instead of converging.
 * Tracepoint programs do not nest on a CPU, so one slot per CPU suffices.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_cfg);
} snap SEC(".maps");

/*
 * Start of a run: this CPU's snapshot of the configuration (batch clamped to
 * BENCH_MAX_BATCH) and its stats, or NULL when the caller is not cfg.pid.
 */
static __always_inline struct bench_cfg *bench_begin(struct bench_stats **st)
{
	struct bench_cfg *c, *s;
	__u32 zero = 0;

	c = bpf_map_lookup_elem(&cfg, &zero);
	if (!c)
		return NULL;
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != c->pid)
		return NULL;
	s = bpf_map_lookup_elem(&snap, &zero);
	if (!s)
		return NULL;
	*st = bpf_map_lookup_elem(&stats, &zero);
	if (!*st)
		return NULL;
	*s = *c;
	if (s->batch > BENCH_MAX_BATCH)
		s->batch = BENCH_MAX_BATCH;
	/* make clang read s->batch back from the map instead of reusing the
	 * constant it just stored (see `snap` above) */
	asm volatile("" ::: "memory");
	return s;
}

/* cfg.size rounded up to a supported record size (see struct bench_cfg). */
static __always_inline __u32 bench_size(__u32 size)
{
	if (size <= 8)
		return 8;
	if (size <= 16)
		return 16;
	if (size <= 32)
		return 32;
	if (size <= 64)
		return 64;
	if (size <= 128)
		return 128;
	if (size <= 256)
		return 256;
	if (size <= 512)
		return 512;
	if (size <= 1024)
		return 1024;
	if (size <= 2048)
		return 2048;
	return 4096;
}

/* Submit flags for the ring buffer programs (the kernel's own bench does the same). */
static __always_inline __u64 bench_wakeup_flags(const struct bench_cfg *c)
{
	if (c->wakeup_mode != BENCH_WAKEUP_SAMPLED)
		return 0;
	if (bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA) >= c->wakeup_threshold)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

/* bpf_ringbuf_reserve with a size the verifier sees as a constant. */
static __always_inline void *bench_reserve(__u32 size)
{
	switch (size) {
	case 8:
		return bpf_ringbuf_reserve(&rb, 8, 0);
	case 16:
		return bpf_ringbuf_reserve(&rb, 16, 0);
	case 32:
		return bpf_ringbuf_reserve(&rb, 32, 0);
	case 64:
		return bpf_ringbuf_reserve(&rb, 64, 0);
	case 128:
		return bpf_ringbuf_reserve(&rb, 128, 0);
	case 256:
		return bpf_ringbuf_reserve(&rb, 256, 0);
	case 512:
		return bpf_ringbuf_reserve(&rb, 512, 0);
	case 1024:
		return bpf_ringbuf_reserve(&rb, 1024, 0);
	case 2048:
		return bpf_ringbuf_reserve(&rb, 2048, 0);
	default:
		return bpf_ringbuf_reserve(&rb, 4096, 0);
	}
}

SEC("tp/syscalls/sys_enter_getpgid")
int bench_ringbuf_reserve(void *ctx)
{
	struct bench_stats *st;
	struct bench_cfg *c;
	__u32 i, batch, size;
	__u64 *rec;

	c = bench_begin(&st);
	if (!c)
		return 0;
	batch = c->batch;
	size = bench_size(c->size);

	for (i = 0; i < batch; i++) {
		may_goto(out);
		rec = bench_reserve(size);
		if (!rec) {
			st->dropped++;
			continue;
		}
		*rec = st->produced++;
		bpf_ringbuf_submit(rec, bench_wakeup_flags(c));
	}
out:
	return 0;
}

SEC("tp/syscalls/sys_enter_getpgid")
int bench_ringbuf_output(void *ctx)
{
	struct bench_stats *st;
	struct bench_buf *buf;
	struct bench_cfg *c;
	__u32 i, batch, size, zero = 0;

	c = bench_begin(&st);
	if (!c)
		return 0;
	buf = bpf_map_lookup_elem(&heap, &zero);
	if (!buf)
		return 0;
	batch = c->batch;
	size = bench_size(c->size);

	for (i = 0; i < batch; i++) {
		may_goto(out);
		*(__u64 *)buf->data = st->produced;
		if (bpf_ringbuf_output(&rb, buf->data, size, bench_wakeup_flags(c)) < 0)
			st->dropped++;
		else
			st->produced++;
	}
out:
	return 0;
}

SEC("tp/syscalls/sys_enter_getpgid")
int bench_perfbuf(void *ctx)
{
	struct bench_stats *st;
	struct bench_buf *buf;
	struct bench_cfg *c;
	__u32 i, batch, size, zero = 0;

	c = bench_begin(&st);
	if (!c)
		return 0;
	buf = bpf_map_lookup_elem(&heap, &zero);
	if (!buf)
		return 0;
	batch = c->batch;
	size = bench_size(c->size);

	for (i = 0; i < batch; i++) {
		may_goto(out);
		*(__u64 *)buf->data = st->produced;
		if (bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, buf->data, size) < 0)
			st->dropped++;
		else
			st->produced++;
	}
out:
	return 0;
}
