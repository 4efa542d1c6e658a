// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Exec tracer, per-CPU perf buffers (BPF_MAP_TYPE_PERF_EVENT_ARRAY): the
 * fallback for kernels without the BPF ring buffer (< 5.8).  The record is
 * built in a per-CPU scratch slot and copied into this CPU's perf ring.
 * Uses bpf_probe_read_str (not _kernel_str, 5.5+) to keep old kernels.
 */
#include "rawsnoop.h"
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

SEC("tp/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct event *e;
	int zero = 0;
	if (filtered_out())
		return 0;

	e = bpf_map_lookup_elem(&heap, &zero);
	if (!e) /* cannot happen: index 0 of a 1-entry array */
		return 0;

	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_probe_read_str(&e->filename, sizeof(e->filename), exec_filename(ctx));

	/* < 0: no perf buffer open on this CPU, or its ring is full */
	if (bpf_perf_event_output(ctx, &pb, BPF_F_CURRENT_CPU, e, sizeof(*e)) < 0)
		record_drop();
	return 0;
}
