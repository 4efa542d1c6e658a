// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Exec tracer, BPF ring buffer with reserve/submit: the record is written in
 * place inside the ring, no copy.  Needs Linux >= 5.8.
 */
#include "rawsnoop.h"
#include "event.h"
#include "tracer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

SEC("tp/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec *ctx)
{
	struct event *e;
	if (filtered_out())
		return 0;

	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e) {
		/* ring full: count it, never lose it silently */
		record_drop();
		return 0;
	}

	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
	bpf_probe_read_kernel_str(&e->filename, sizeof(e->filename), exec_filename(ctx));

	bpf_ringbuf_submit(e, 0);
	return 0;
}
