/* A program the verifier would reject, on a tracepoint no kernel has: rawsnoop resolves the
 * tracepoint before it loads anything, so the user hears about the tracepoint, not the
 * verifier. Test input only. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

SEC("tp/rawsnoop_no_such_category/no_such_event")
int handle_exec(void *ctx)
{
	struct event *e = bpf_ringbuf_reserve(&rb, sizeof(*e), 0);

	e->pid = bpf_get_current_pid_tgid() >> 32; /* no NULL check: the verifier would reject */
	bpf_ringbuf_submit(e, 0);
	return 0;
}
