// SPDX-License-Identifier: GPL-2.0
// CO-RE fixture: an unguarded read of a field no kernel has. Loading must fail with the
// relocation named in words (type, field path, source line), never a bare verifier dump.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct trace_event_raw_sched_process_exec___rawsnoop {
	int __rawsnoop_missing;
} __attribute__((preserve_access_index));

__u32 seen = 0;

SEC("tp/sched/sched_process_exec")
int missing_field(struct trace_event_raw_sched_process_exec___rawsnoop *ctx)
{
	seen = ctx->__rawsnoop_missing;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
