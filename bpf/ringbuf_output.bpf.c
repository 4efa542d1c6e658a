// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Exec tracer, BPF ring buffer with bpf_ringbuf_output: the record is built
 * in a per-CPU scratch slot (`heap`, struct event is too big for the 512-byte
 * stack) and copied into the ring.  Needs Linux >= 5.8.
 */
#include "rawsnoop.h"
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
	bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), exec_filename(ctx));

	if (bpf_ringbuf_output(&rb, e, sizeof(*e), 0) < 0)
		record_drop();
	return 0;
}
