// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Exec tracer, BPF ring buffer with bpf_ringbuf_output: the record is built in a per-CPU
 * scratch slot (`heap`: struct event is too big for the 512-byte stack) or, with
 * arguments, in the `execs` entry made at syscall entry, and copied into the ring.
 * Needs Linux >= 5.8.
 *
 * Unlike bpf_ringbuf_reserve, bpf_ringbuf_output takes a size known only at run time, so
 * each record is exactly header + args_size bytes: the most events per ring, for one copy.
 */
#include "rawsnoop.h"

#define READ_KERNEL bpf_probe_read_kernel
#define READ_KERNEL_STR bpf_probe_read_kernel_str
#define READ_USER bpf_probe_read_user
#define READ_USER_STR bpf_probe_read_user_str

#include "event.h"
#include "tracer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct event);
} heap SEC(".maps");

#include "ringbuf_wakeup.h"

static __always_inline struct event *event_start(void)
{
	int zero = 0;

	return bpf_map_lookup_elem(&heap, &zero);
}

static __always_inline void event_send(void *ctx, struct event *b)
{
	__u32 size = b->args_size;

	if (size > FULL_MAX_ARGS_ARR)
		size = FULL_MAX_ARGS_ARR;
	long err = bpf_ringbuf_output(&rb, b, EVENT_HDR_SIZE + size, wakeup_flags());

	if (err < 0)
		record_drop(err); /* ring full: count it, never lose it silently */
}

static __always_inline void event_commit(void *ctx, struct event *e)
{
	event_send(ctx, e);
}

#include "exec_progs.h"
