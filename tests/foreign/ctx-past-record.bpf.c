/* A tracepoint program that reads its context past the end of the tracepoint's record: the
 * verifier accepts it, and the kernel refuses the attach (EACCES). rawsnoop must say why.
 * Test input only. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

SEC("tp/sched/sched_process_exec")
int handle_exec(void *ctx)
{
	struct event *e;

	e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);
	if (!e)
		return 0;
	/* Past the record (a few dozen bytes), inside what every verifier allows for a tracepoint
	 * context (2048 bytes before Linux 6.5): the kernel refuses the attach, not the load. */
	e->pid = *(unsigned int *)((char *)ctx + 1000);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
