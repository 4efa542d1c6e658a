/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * bench.h: the control and result records of bench.bpf.c, shared with the
 * userspace benchmark (which writes cfg[0] and sums stats[0] over CPUs).
 */
#ifndef RAWSNOOP_BENCH_H
#define RAWSNOOP_BENCH_H

#include "rawsnoop.h"

/* Upper bound on records per getpgid() call (larger batch values are clamped). */
#define BENCH_MAX_BATCH 10000
/* Smallest and largest record, in bytes. */
#define BENCH_MIN_SIZE 8
#define BENCH_MAX_SIZE 4096

/* wakeup_mode values */
#define BENCH_WAKEUP_EVERY 0   /* flags 0: the kernel wakes the consumer per record */
#define BENCH_WAKEUP_SAMPLED 1 /* BPF_RB_NO_WAKEUP until avail data >= wakeup_threshold */

/* cfg[0]: written by userspace before the run. 24 bytes, no padding. */
struct bench_cfg {
	/* only getpgid() calls by this tgid produce records */
	__u32 pid;
	/* records per getpgid() call, clamped to BENCH_MAX_BATCH */
	__u32 batch;
	/*
	 * bytes per record, rounded UP to the next of 8, 16, 32, ..., 4096
	 * (bpf_ringbuf_reserve needs a size the verifier knows; the other two
	 * programs use the same rounding so all three move the same bytes);
	 * 0..8 -> 8, > 4096 -> 4096
	 */
	__u32 size;
	/* BENCH_WAKEUP_EVERY or BENCH_WAKEUP_SAMPLED; ignored by bench_perfbuf
	 * (perf buffer wakeups are set by perf_event_attr.wakeup_events) */
	__u32 wakeup_mode;
	/* BENCH_WAKEUP_SAMPLED: force a wakeup once this many bytes are unread */
	__u64 wakeup_threshold;
};

/* stats[0], per CPU: userspace sums the per-CPU values. 16 bytes. */
struct bench_stats {
	/* records handed to the ring / perf buffer */
	__u64 produced;
	/* records the ring / perf buffer refused (full, or no reader on this CPU) */
	__u64 dropped;
};

_Static_assert(sizeof(struct bench_cfg) == 24, "struct bench_cfg is 24 bytes");
_Static_assert(sizeof(struct bench_stats) == 16, "struct bench_stats is 16 bytes");

#endif /* RAWSNOOP_BENCH_H */
