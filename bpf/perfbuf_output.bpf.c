// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Exec tracer, per-CPU perf buffers (BPF_MAP_TYPE_PERF_EVENT_ARRAY): the fallback for
 * kernels without the BPF ring buffer (< 5.8).  The record is built in a per-CPU scratch
 * slot (or, with arguments, in the `execs` entry made at syscall entry) and copied into
 * this CPU's perf ring, exactly header + args_size bytes.
 * Uses bpf_probe_read / bpf_probe_read_str (not the _user/_kernel ones of 5.5+) to keep
 * old kernels.
 */
#include "rawsnoop.h"

#define READ_KERNEL bpf_probe_read
#define READ_KERNEL_STR bpf_probe_read_str
#define READ_USER bpf_probe_read
#define READ_USER_STR bpf_probe_read_str

#include "event.h"
#include "tracer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/*
 * No max_entries: 0 means "one slot per possible CPU"; the loader fills in
 * the number of possible CPUs before creating the map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(int));
	__uint(value_size, sizeof(int));
} pb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct event);
} heap SEC(".maps");

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
	/* -ENOSPC: this CPU's ring is full; -ENOENT: no perf buffer open on this CPU */
	long err = bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, b, EVENT_HDR_SIZE + size);

	if (err < 0)
		record_drop(err);
}

static __always_inline void event_commit(void *ctx, struct event *e)
{
	event_send(ctx, e);
}

#include "exec_progs.h"
