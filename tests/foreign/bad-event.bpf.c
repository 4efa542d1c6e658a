/* A foreign object whose `struct event` does not match the demo's: `pid` is 8 bytes and
 * comes after comm. rawsnoop must refuse it with a clear error, not print garbage. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#define NO_DEMO_EVENT
#include "common.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct event {
	char comm[16];
	long long pid;
	char filename[512];
};

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

	e = bpf_map_lookup_elem(&heap, &zero);
	if (!e)
		return 0;
	e->pid = bpf_get_current_pid_tgid() >> 32;
	bpf_ringbuf_output(&rb, e, sizeof(*e), 0);
	return 0;
}
