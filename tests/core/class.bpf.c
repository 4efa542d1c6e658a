// SPDX-License-Identifier: GPL-2.0
// CO-RE fixture for tracepoint event classes: programs that declare their context as the
// class's struct (`trace_event_raw_<class>`), as libbpf users do for events that share one.
// tracefs has no format file for a class, so without kernel BTF (`--btf none`) each program's
// class resolves from the format of the event it is attached to.
//
// sched_wakeup_new uses sched_wakeup_template on every kernel. sched_process_exit used
// sched_process_template (real programs still declare it so) until a recent kernel gave it its
// own record with group_dead (6.18 has it; its template's comm became a __data_loc string): on
// such a kernel the class's layout is no longer the record's, and only the event's own format
// says where pid and prio are.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct seen {
	__s32 pid;
	__s32 prio;
	__u32 hits;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct seen);
} seen SEC(".maps");

/* Only this process: the test's shell. */
const volatile __u32 target_tgid = 0;

static __always_inline void record(__u32 slot, int pid, int prio)
{
	struct seen *s = bpf_map_lookup_elem(&seen, &slot);

	if (!s)
		return;
	s->pid = pid;
	s->prio = prio;
	s->hits++;
}

/* The exiting task: pid and prio are its own. */
SEC("tp/sched/sched_process_exit")
int class_exit(struct trace_event_raw_sched_process_template *ctx)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	record(0, ctx->pid, ctx->prio);
	return 0;
}

/* Called in the parent after fork: pid and prio are the new child's. */
SEC("tp/sched/sched_wakeup_new")
int class_wakeup_new(struct trace_event_raw_sched_wakeup_template *ctx)
{
	if ((__u32)(bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return 0;
	record(1, ctx->pid, ctx->prio);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
