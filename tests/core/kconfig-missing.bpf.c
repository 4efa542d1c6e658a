// SPDX-License-Identifier: GPL-2.0
// A non-weak .kconfig extern no kernel has: loading must fail naming it (never a silent 0).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

extern bool CONFIG_RAWSNOOP_NOPE __kconfig;

__u64 seen;

SEC("tp/sched/sched_process_exec")
int kconfig_missing(void *ctx)
{
	seen = CONFIG_RAWSNOOP_NOPE;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
