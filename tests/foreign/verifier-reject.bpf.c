/* A program the verifier must reject (a ringbuf reservation used without its NULL check), to show
 * that rawsnoop prints the verifier's log with the C source lines from .BTF.ext. */
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
	struct event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);

	e->pid = bpf_get_current_pid_tgid() >> 32; /* no NULL check: rejected here */
	bpf_ringbuf_submit(e, 0);
	return 0;
}
