// CO-RE against type names the kernel BTF has more than once (candidates that agree or not).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile __u64 out[64];
#define O(i, v) out[i] = (__u64)(v)


struct syscall_tp_t___l { int syscall_nr; } __attribute__((preserve_access_index));
struct syscall_tp_t___r { long ret; } __attribute__((preserve_access_index));
struct perf_aux_event___m { struct perf_event_header header; } __attribute__((preserve_access_index));
struct irq_info___i { int irq; } __attribute__((preserve_access_index));
struct elf_thread_core_info___n { int notes; } __attribute__((preserve_access_index));
struct dir_entry___n { unsigned short name_len; } __attribute__((preserve_access_index));

SEC("tp_btf/sys_enter")
int BPF_PROG(edge3, struct pt_regs *regs, long id)
{
#if !defined(ONLY)
	O(0, bpf_core_field_offset(struct syscall_tp_t___l, syscall_nr));
	O(1, bpf_core_type_exists(struct syscall_tp_t___l));
	O(2, bpf_core_type_matches(struct syscall_tp_t___l));
	O(3, bpf_core_type_matches(struct syscall_tp_t___r));
	O(4, bpf_core_field_offset(struct syscall_tp_t___r, ret));
	O(5, bpf_core_field_exists(struct syscall_tp_t___r, ret));
	O(6, bpf_core_field_offset(struct perf_aux_event___m, header));
	O(7, bpf_core_type_matches(struct perf_aux_event___m));
	O(8, bpf_core_field_offset(struct irq_info___i, irq));
	O(9, bpf_core_field_offset(struct dir_entry___n, name_len));
	O(10, bpf_core_type_exists(struct console));
#endif
#if defined(ONLY) && ONLY == 1
	O(20, bpf_core_type_size(struct syscall_tp_t___l));
#endif
#if defined(ONLY) && ONLY == 2
	O(21, bpf_core_type_id_kernel(struct syscall_tp_t___l));
#endif
#if defined(ONLY) && ONLY == 3
	O(22, bpf_core_field_offset(struct elf_thread_core_info___n, notes));
#endif
#if defined(ONLY) && ONLY == 4
	O(23, bpf_core_type_size(struct dir_entry___n));
#endif
	return 0;
}
