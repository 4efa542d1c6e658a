// CO-RE edge cases: loads and stores whose size or kind differs between local and kernel.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile __u64 out[64];
#define O(i, v) out[i] = (__u64)(v)
#define bpf_core_field_signed(type, field) __builtin_preserve_field_info(((type *)0)->field, 3)

/* local non-bitfield read of a kernel bitfield */
struct linux_binprm___nb { unsigned int secureexec; } __attribute__((preserve_access_index));
/* stores of different sizes */
struct task_struct___st4 { unsigned int start_time; unsigned short policy; unsigned char throttled; unsigned long long exit_code; } __attribute__((preserve_access_index));
/* kinds: enum local vs int kernel, long local vs pointer kernel, pointer local vs pointer kernel */
enum pol___e { POL_A = 0 };
struct task_struct___k { enum pol___e policy; long mm; void *active_mm; _Bool throttled; char comm[8]; } __attribute__((preserve_access_index));
/* bigger local int than kernel (u64 local, u32 kernel) */
struct task_struct___big { unsigned long long policy; long long exit_code; } __attribute__((preserve_access_index));

SEC("tp_btf/sys_enter")
int BPF_PROG(edge4, struct pt_regs *regs, long id)
{
	struct linux_binprm___nb *b = (void *)id;
	struct task_struct___st4 *s = (void *)regs;
	struct task_struct___k *k = (void *)regs;
	struct task_struct___big *g = (void *)regs;

	O(0, b->secureexec);
	s->start_time = 7;
	s->policy = 3;
	s->throttled = 1;
	s->exit_code = 9;
	s->start_time = (unsigned int)id;
	s->policy = (unsigned short)id;
	O(1, s->policy);
	O(2, s->throttled);
	O(3, s->exit_code);
	O(4, k->policy);
	O(5, bpf_core_field_exists(struct task_struct___k, policy));
	O(6, bpf_core_field_exists(struct task_struct___k, mm));
	O(7, (long)k->active_mm);
	O(8, k->throttled);
	O(9, k->comm[3]);
	O(10, bpf_core_field_size(struct task_struct___k, comm));
	O(11, g->policy);
	O(12, g->exit_code);
	O(13, bpf_core_field_size(struct task_struct___big, policy));
	O(14, bpf_core_field_signed(struct task_struct___big, exit_code));
	return 0;
}
