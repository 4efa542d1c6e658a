/* Loader test object: nested .text calls (static -> static -> global), a callback passed by address
 * (ld_imm64 of a function: BPF_PSEUDO_FUNC), and a string literal in .rodata.str1.1.
 * Rebuild: clang -target bpf -O2 -g -c calls.bpf.c -o calls.bpf.o */
#include "rs_bpf.h"

static long (*bpf_trace_printk)(const char *fmt, __u32 fmt_size, ...) = (void *) 6;
static long (*bpf_loop)(__u32 nr_loops, void *callback_fn, void *callback_ctx, __u64 flags) = (void *) 181;

char LICENSE[] SEC("license") = "GPL";

__u64 total;

__noinline int leaf(int x)
{
	total += x;
	return x + 1;
}

static __noinline int middle(int x)
{
	return leaf(x) * 2;
}

static __noinline int outer(int x)
{
	return middle(x) + leaf(x);
}

static long step(__u32 index, void *ctx)
{
	total += index;
	return 0;
}

SEC("raw_tp/sched_switch")
int nested(void *ctx)
{
	return outer(3);
}

SEC("tp/syscalls/sys_enter_getpid")
int looper(void *ctx)
{
	static const char fmt[] = "loop %d\n";
	bpf_loop(4, step, 0, 0);
	bpf_trace_printk(fmt, sizeof(fmt), 1);
	bpf_trace_printk("literal %d\n", 12, leaf(1));
	return 0;
}
