// More CO-RE edge cases for compare/core-diff (type compat, typedef roots, stores, ALU32, flex arrays).
// The last one (field_exists of comm[20], past the array) is refused by both sides.
// (bpf_core_field_offset(struct, comm[i]) with a variable index crashes clang 19: left out.)
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile __u64 out[128];
volatile __u32 out32[128];
#define O(i, v) out[i] = (__u64)(v)
#define W(i, v) out32[i] = (__u32)(v)

struct atomic_t___s { int counter; } __attribute__((preserve_access_index));
typedef long pid_t___l;
typedef struct { long long counter; } atomic_t___wide;
struct task_struct___st { int pid; unsigned int __state; char comm[16]; __u64 start_time; } __attribute__((preserve_access_index));
struct task_struct___ptrkind { void *pid; } __attribute__((preserve_access_index));
struct task_struct___u { union { int pid; }; } __attribute__((preserve_access_index));
struct cgroup___f { int level; struct cgroup *ancestors[]; } __attribute__((preserve_access_index));
enum pid_type___neg { PIDTYPE_TGID___neg = -1 };
struct sock_common___n { union { struct { __be32 skc_daddr; __be32 skc_rcv_saddr; }; }; } __attribute__((preserve_access_index));
struct sock___n { struct sock_common___n __sk_common; } __attribute__((preserve_access_index));
union bpf_attr___s { __u32 map_type; } __attribute__((preserve_access_index));

SEC("tp_btf/sys_enter")
int BPF_PROG(edge2, struct pt_regs *regs, long id)
{
	struct task_struct___st *t = (void *)bpf_get_current_task_btf();
	struct cgroup___f *cg = (void *)id;
	struct cgroup *kcg = (void *)id;
	atomic_t *a = (void *)regs;
	atomic_t___wide *aw = (void *)regs;
	struct sock___n *sk = (void *)regs;
	int i = id & 7;

	O(0, bpf_core_type_exists(struct atomic_t___s));
	O(1, bpf_core_type_size(struct atomic_t___s));
	O(2, bpf_core_type_exists(atomic_t));
	O(3, bpf_core_type_size(atomic_t));
	O(4, bpf_core_type_id_kernel(atomic_t));
	O(5, bpf_core_type_matches(atomic_t));
	O(6, bpf_core_field_offset(atomic_t, counter));
	O(7, BPF_CORE_READ(a, counter));
	O(8, bpf_core_type_exists(pid_t___l));
	O(9, bpf_core_type_size(pid_t___l));
	O(10, bpf_core_type_matches(pid_t___l));
	O(11, bpf_core_type_id_kernel(pid_t___l));
	O(12, bpf_core_type_size(atomic_t___wide));
	O(13, bpf_core_type_matches(atomic_t___wide));
	O(14, BPF_CORE_READ(aw, counter));
	O(15, bpf_core_field_size(atomic_t___wide, counter));
	O(16, bpf_core_field_exists(struct task_struct___ptrkind, pid));
	O(17, bpf_core_field_offset(struct task_struct___u, pid));
	O(18, bpf_core_field_offset(struct cgroup___f, ancestors[3]));
	O(19, bpf_core_field_offset(struct cgroup, ancestors[2]));
	O(20, bpf_core_field_size(struct cgroup, ancestors));
	O(21, bpf_core_field_size(struct cgroup___f, ancestors[1]));
	O(22, BPF_CORE_READ(kcg, ancestors[1], level));
	O(23, bpf_core_enum_value(enum pid_type___neg, PIDTYPE_TGID___neg));
	O(24, bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_MAX));
	O(25, bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_HV));
	O(26, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
	O(27, bpf_core_field_offset(struct sock___n, __sk_common.skc_daddr));
	O(28, bpf_core_type_matches(struct sock___n));
	O(29, bpf_core_type_matches(union bpf_attr___s));
	O(30, bpf_core_type_size(union bpf_attr___s));
	W(0, bpf_core_field_offset(struct task_struct___st, comm));
	W(2, t->comm[i]);
	W(3, t->comm[3]);
	t->pid = 5;
	t->__state = (__u32)id;
	t->start_time = id;
	t->comm[2] = 'x';
	O(31, t->start_time);
	O(32, bpf_core_field_exists(t->comm[20]));
	return 0;
}
