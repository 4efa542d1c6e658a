// SPDX-License-Identifier: GPL-2.0
// CO-RE against a type that lives in a kernel module's BTF (/sys/kernel/btf/9pnet, split on
// vmlinux): vmlinux has no candidate, so the loader searches module BTF, as libbpf does.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct p9_client___rawsnoop {
	unsigned int msize;
} __attribute__((preserve_access_index));

__u64 out[3];

SEC("tp/sched/sched_process_exec")
int module_type(void *ctx)
{
	out[0] = bpf_core_type_exists(struct p9_client___rawsnoop);
	out[1] = bpf_core_field_offset(struct p9_client___rawsnoop, msize);
	out[2] = bpf_core_type_size(struct p9_client___rawsnoop);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
