// SPDX-License-Identifier: GPL-2.0
// .ksyms externs as libbpf resolves them: a typed per-CPU kernel variable (BTF id,
// BPF_PSEUDO_BTF_ID), an untyped symbol (its /proc/kallsyms address), and a weak one no kernel has.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

/* Weak: kernels built without CONFIG_KALLSYMS_ALL cannot resolve data symbols (the kernel looks
 * typed ksyms up in kallsyms), and then it is 0. */
extern const struct rq runqueues __ksym __weak;
extern const void _stext __ksym;
extern const void rawsnoop_no_such_symbol __ksym __weak;

__u64 out[3];

SEC("tp/sched/sched_process_exec")
int ksym_values(void *ctx)
{
	struct rq *rq;

	out[0] = 1;
	if ((__u64)&runqueues != 0) {
		rq = bpf_per_cpu_ptr(&runqueues, 0);
		out[0] = rq ? rq->cpu + 100 : 2;
	}
	out[1] = (__u64)&_stext;
	out[2] = (__u64)&rawsnoop_no_such_symbol;
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
