// SPDX-License-Identifier: GPL-2.0
// CO-RE fixture: one value per relocation kind, written into `results` by a tp_btf and a raw_tp
// program on sys_enter for one process. Built against a bpftool vmlinux.h (tests/core/build.sh).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

#define NVALS 17

struct out {
	__u64 v[NVALS];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct out);
} results SEC(".maps");

const volatile __u32 target_tgid = 0;

/* A local flavour with a field no kernel has: existence checks must say 0. */
struct task_struct___rawsnoop {
	int tgid;
	int __rawsnoop_missing;
} __attribute__((preserve_access_index));

enum rawsnoop_missing_enum { RAWSNOOP_NOT_IN_KERNEL = 3 };

static __always_inline void fill(__u32 slot)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	struct out *o;
	__u32 k = slot;

	if ((bpf_get_current_pid_tgid() >> 32) != target_tgid)
		return;
	o = bpf_map_lookup_elem(&results, &k);
	if (!o)
		return;
	o->v[0] = bpf_core_field_offset(struct task_struct, tgid);
	o->v[1] = bpf_core_field_size(struct task_struct, comm);
	o->v[2] = bpf_core_field_exists(struct task_struct, tgid);
	o->v[3] = bpf_core_field_exists(struct task_struct___rawsnoop, __rawsnoop_missing);
	o->v[4] = bpf_core_type_exists(struct task_struct);
	o->v[5] = bpf_core_type_size(struct task_struct);
	o->v[6] = bpf_core_type_id_kernel(struct task_struct);
	o->v[7] = bpf_core_enum_value_exists(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	o->v[8] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	o->v[9] = BPF_CORE_READ(task, real_parent, tgid);
	o->v[10] = BPF_CORE_READ(task, tgid);
	o->v[11] = __builtin_preserve_field_info(task->sched_reset_on_fork, BPF_FIELD_LSHIFT_U64);
	o->v[12] = __builtin_preserve_field_info(task->sched_reset_on_fork, BPF_FIELD_RSHIFT_U64);
	o->v[13] = __builtin_preserve_field_info(task->pid, BPF_FIELD_SIGNED);
	o->v[14] = bpf_core_type_matches(struct list_head);
	o->v[15] = bpf_core_enum_value_exists(enum rawsnoop_missing_enum, RAWSNOOP_NOT_IN_KERNEL) + 100;
	o->v[16] = bpf_core_type_id_local(struct task_struct);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(core_tp_btf, struct pt_regs *regs, long id)
{
	fill(0);
	return 0;
}

SEC("raw_tp/sys_enter")
int core_raw_tp(void *ctx)
{
	fill(1);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
