// SPDX-License-Identifier: GPL-2.0
// CO-RE fixture: the exec tracepoint context declared with a padding field the kernel does not
// have, before the fields the program reads. With CO-RE the kernel's real offsets are used, so the
// pid and filename printed are the real ones.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct trace_event_raw_sched_process_exec___perturbed {
	struct trace_entry ent;
	__u64 __rawsnoop_padding[3];
	__u32 __data_loc_filename;
	pid_t pid;
	pid_t old_pid;
} __attribute__((preserve_access_index));

struct seen {
	__u32 pid;
	__u32 old_pid;
	char filename[64];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct seen);
} last SEC(".maps");

const volatile __u32 target_pid = 0;

SEC("tp/sched/sched_process_exec")
int perturbed_exec(struct trace_event_raw_sched_process_exec___perturbed *ctx)
{
	__u32 k = 0;
	struct seen *s;
	__u32 loc;

	if (ctx->pid != target_pid)
		return 0;
	s = bpf_map_lookup_elem(&last, &k);
	if (!s)
		return 0;
	s->pid = ctx->pid;
	s->old_pid = ctx->old_pid;
	loc = ctx->__data_loc_filename;
	bpf_probe_read_kernel_str(s->filename, sizeof(s->filename), (void *)ctx + (loc & 0xffff));
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
