// Edge cases of CO-RE relocation for compare/core-diff: shapes libbpf-tools do not use.
// Case 14 (signed of an array element) is refused by libbpf, which then relocates nothing
// more: the Makefile builds it alone (-DONLY=14) and the rest without it (-DSKIP_14).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

volatile __u64 out[128];
#define O(i, v) out[i] = (__u64)(v)
#define FI(type, field, kind) __builtin_preserve_field_info(((type *)0)->field, kind)
#define bpf_core_field_signed(type, field) FI(type, field, 3)
#define bpf_core_field_lshift(type, field) FI(type, field, 4)
#define bpf_core_field_rshift(type, field) FI(type, field, 5)

/* size mismatch: kernel start_time is u64, local u32 (LDX narrowed/widened) */
struct task_struct___sz { unsigned int start_time; int pid; long long tgid; } __attribute__((preserve_access_index));
/* signed local of a kernel unsigned field with different size */
struct task_struct___sg { int start_time; } __attribute__((preserve_access_index));
/* type matches: subset of members */
struct task_struct___m { int pid; int tgid; } __attribute__((preserve_access_index));
struct task_struct___nm { long pid; } __attribute__((preserve_access_index));
/* missing field, exists check and offset */
struct task_struct___miss { int not_a_field_here; int pid; } __attribute__((preserve_access_index));
/* field of a different kind: kernel comm is char[16], local is int */
struct task_struct___kind { int comm; } __attribute__((preserve_access_index));
/* smaller array: kernel comm[16] */
struct task_struct___arr { char comm[8]; } __attribute__((preserve_access_index));
/* union root */
union bpf_attr___u { struct { __u32 map_type; __u32 key_size; }; } __attribute__((preserve_access_index));
/* enum flavours */
enum pid_type___f { PIDTYPE_PGID___f = 7, PIDTYPE_NOPE___f = 9 };
enum perf_callchain_context___f { PERF_CONTEXT_USER___f = 1, PERF_CONTEXT_MAX___f = 2 };
/* dir_entry exists twice in vmlinux: only one has `name` */
struct dir_entry___a { char *name; __u16 name_len; } __attribute__((preserve_access_index));
/* bitfields */
struct linux_binprm___b { unsigned int secureexec: 1; unsigned int point_of_no_return: 1; } __attribute__((preserve_access_index));
/* a plain-int local read as a kernel bitfield */
struct linux_binprm___c { unsigned int secureexec; } __attribute__((preserve_access_index));
/* typedef root */
typedef int pid_t___t;

static __noinline int sub(struct task_struct *t)
{
	return BPF_CORE_READ(t, real_parent, tgid) + bpf_core_field_offset(struct task_struct, mm);
}

SEC("tp_btf/sys_enter")
int BPF_PROG(edge, struct pt_regs *regs, long id)
{
	struct task_struct *t = (void *)bpf_get_current_task_btf();
	struct task_struct___sz *sz = (void *)t;
	struct task_struct___sg *sg = (void *)t;
	struct linux_binprm___b *b = (void *)id;
	struct task_struct *arr = (void *)t;
	union bpf_attr *attr = (void *)regs;

#if !defined(SKIP_0) && (!defined(ONLY) || ONLY == 0)
	O(0, sz->start_time);
#endif
#if !defined(SKIP_1) && (!defined(ONLY) || ONLY == 1)
	O(1, sz->pid);
#endif
#if !defined(SKIP_2) && (!defined(ONLY) || ONLY == 2)
	O(2, sz->tgid);
#endif
#if !defined(SKIP_3) && (!defined(ONLY) || ONLY == 3)
	O(3, sg->start_time);
#endif
#if !defined(SKIP_4) && (!defined(ONLY) || ONLY == 4)
	O(4, bpf_core_type_matches(struct task_struct___m));
#endif
#if !defined(SKIP_5) && (!defined(ONLY) || ONLY == 5)
	O(5, bpf_core_type_matches(struct task_struct___nm));
#endif
#if !defined(SKIP_6) && (!defined(ONLY) || ONLY == 6)
	O(6, bpf_core_field_exists(struct task_struct___miss, not_a_field_here));
#endif
#if !defined(SKIP_7) && (!defined(ONLY) || ONLY == 7)
	O(7, bpf_core_field_offset(struct task_struct___miss, pid));
#endif
#if !defined(SKIP_8) && (!defined(ONLY) || ONLY == 8)
	O(8, bpf_core_field_exists(struct task_struct___kind, comm));
#endif
#if !defined(SKIP_9) && (!defined(ONLY) || ONLY == 9)
	O(9, bpf_core_field_size(struct task_struct___arr, comm));
#endif
#if !defined(SKIP_10) && (!defined(ONLY) || ONLY == 10)
	O(10, bpf_core_field_offset(struct task_struct___arr, comm[3]));
#endif
#if !defined(SKIP_11) && (!defined(ONLY) || ONLY == 11)
	O(11, bpf_core_field_offset(struct task_struct, comm[5]));
#endif
#if !defined(SKIP_12) && (!defined(ONLY) || ONLY == 12)
	O(12, bpf_core_field_size(struct task_struct, comm[5]));
#endif
#if !defined(SKIP_13) && (!defined(ONLY) || ONLY == 13)
	O(13, bpf_core_field_size(struct task_struct, comm));
#endif
#if !defined(SKIP_14) && (!defined(ONLY) || ONLY == 14)
	O(14, bpf_core_field_signed(struct task_struct, comm[1]));
#endif
#if !defined(SKIP_15) && (!defined(ONLY) || ONLY == 15)
	O(15, bpf_core_field_signed(struct task_struct, pid));
#endif
#if !defined(SKIP_16) && (!defined(ONLY) || ONLY == 16)
	O(16, bpf_core_field_signed(struct task_struct, start_time));
#endif
#if !defined(SKIP_17) && (!defined(ONLY) || ONLY == 17)
	O(17, bpf_core_field_size(struct task_struct, real_parent));
#endif
#if !defined(SKIP_18) && (!defined(ONLY) || ONLY == 18)
	O(18, bpf_core_field_offset(struct task_struct, thread_info.flags));
#endif
#if !defined(SKIP_19) && (!defined(ONLY) || ONLY == 19)
	O(19, bpf_core_field_offset(union bpf_attr, map_type));
#endif
#if !defined(SKIP_20) && (!defined(ONLY) || ONLY == 20)
	O(20, bpf_core_field_offset(union bpf_attr, btf_fd));
#endif
#if !defined(SKIP_21) && (!defined(ONLY) || ONLY == 21)
	O(21, bpf_core_field_offset(union bpf_attr___u, key_size));
#endif
#if !defined(SKIP_22) && (!defined(ONLY) || ONLY == 22)
	O(22, bpf_core_enum_value_exists(enum pid_type___f, PIDTYPE_PGID___f));
#endif
#if !defined(SKIP_23) && (!defined(ONLY) || ONLY == 23)
	O(23, bpf_core_enum_value_exists(enum pid_type___f, PIDTYPE_NOPE___f));
#endif
#if !defined(SKIP_24) && (!defined(ONLY) || ONLY == 24)
	O(24, bpf_core_enum_value(enum pid_type___f, PIDTYPE_PGID___f));
#endif
#if !defined(SKIP_25) && (!defined(ONLY) || ONLY == 25)
	O(25, bpf_core_enum_value(enum pid_type, PIDTYPE_SID));
#endif
#if !defined(SKIP_26) && (!defined(ONLY) || ONLY == 26)
	O(26, bpf_core_enum_value(enum perf_callchain_context, PERF_CONTEXT_USER));
#endif
#if !defined(SKIP_27) && (!defined(ONLY) || ONLY == 27)
	O(27, bpf_core_enum_value(enum perf_callchain_context___f, PERF_CONTEXT_MAX___f));
#endif
#if !defined(SKIP_28) && (!defined(ONLY) || ONLY == 28)
	O(28, bpf_core_enum_value_exists(enum perf_callchain_context___f, PERF_CONTEXT_USER___f));
#endif
#if !defined(SKIP_29) && (!defined(ONLY) || ONLY == 29)
	O(29, bpf_core_field_offset(struct dir_entry___a, name));
#endif
#if !defined(SKIP_30) && (!defined(ONLY) || ONLY == 30)
	O(30, bpf_core_field_exists(struct dir_entry___a, name_len));
#endif
#if !defined(SKIP_31) && (!defined(ONLY) || ONLY == 31)
	O(31, BPF_CORE_READ_BITFIELD_PROBED(b, secureexec));
#endif
#if !defined(SKIP_32) && (!defined(ONLY) || ONLY == 32)
	O(32, BPF_CORE_READ_BITFIELD_PROBED(b, point_of_no_return));
#endif
#if !defined(SKIP_33) && (!defined(ONLY) || ONLY == 33)
	O(33, BPF_CORE_READ_BITFIELD(b, point_of_no_return));
#endif
#if !defined(SKIP_34) && (!defined(ONLY) || ONLY == 34)
	O(34, bpf_core_field_lshift(struct linux_binprm___c, secureexec));
#endif
#if !defined(SKIP_35) && (!defined(ONLY) || ONLY == 35)
	O(35, bpf_core_field_rshift(struct linux_binprm___c, secureexec));
#endif
#if !defined(SKIP_36) && (!defined(ONLY) || ONLY == 36)
	O(36, bpf_core_field_size(struct linux_binprm___c, secureexec));
#endif
#if !defined(SKIP_37) && (!defined(ONLY) || ONLY == 37)
	O(37, bpf_core_field_offset(struct linux_binprm___c, secureexec));
#endif
#if !defined(SKIP_38) && (!defined(ONLY) || ONLY == 38)
	O(38, bpf_core_type_exists(pid_t));
#endif
#if !defined(SKIP_39) && (!defined(ONLY) || ONLY == 39)
	O(39, bpf_core_type_size(pid_t));
#endif
#if !defined(SKIP_40) && (!defined(ONLY) || ONLY == 40)
	O(40, bpf_core_type_id_kernel(pid_t));
#endif
#if !defined(SKIP_41) && (!defined(ONLY) || ONLY == 41)
	O(41, bpf_core_type_matches(pid_t));
#endif
#if !defined(SKIP_42) && (!defined(ONLY) || ONLY == 42)
	O(42, bpf_core_type_exists(pid_t___t));
#endif
#if !defined(SKIP_43) && (!defined(ONLY) || ONLY == 43)
	O(43, bpf_core_type_size(union bpf_attr));
#endif
#if !defined(SKIP_44) && (!defined(ONLY) || ONLY == 44)
	O(44, bpf_core_type_id_kernel(struct task_struct));
#endif
#if !defined(SKIP_45) && (!defined(ONLY) || ONLY == 45)
	O(45, bpf_core_type_id_local(struct task_struct___sz));
#endif
#if !defined(SKIP_46) && (!defined(ONLY) || ONLY == 46)
	O(46, bpf_core_type_exists(struct task_struct___nm));
#endif
#if !defined(SKIP_47) && (!defined(ONLY) || ONLY == 47)
	O(47, bpf_core_type_size(struct task_struct___nm));
#endif
#if !defined(SKIP_48) && (!defined(ONLY) || ONLY == 48)
	O(48, bpf_core_type_matches(union bpf_attr___u));
#endif
#if !defined(SKIP_49) && (!defined(ONLY) || ONLY == 49)
	O(49, bpf_core_type_matches(enum pid_type___f));
#endif
#if !defined(SKIP_50) && (!defined(ONLY) || ONLY == 50)
	O(50, bpf_core_type_matches(enum pid_type));
#endif
#if !defined(SKIP_51) && (!defined(ONLY) || ONLY == 51)
	O(51, bpf_core_type_exists(enum perf_callchain_context___f));
#endif
#if !defined(SKIP_52) && (!defined(ONLY) || ONLY == 52)
	O(52, bpf_core_type_size(enum perf_callchain_context___f));
#endif
#if !defined(SKIP_53) && (!defined(ONLY) || ONLY == 53)
	O(53, bpf_core_type_matches(enum perf_callchain_context___f));
#endif
#if !defined(SKIP_54) && (!defined(ONLY) || ONLY == 54)
	O(54, bpf_core_field_offset(arr[2].pid));
#endif
#if !defined(SKIP_55) && (!defined(ONLY) || ONLY == 55)
	O(55, bpf_core_field_size(struct css_set, subsys[3]));
#endif
#if !defined(SKIP_56) && (!defined(ONLY) || ONLY == 56)
	O(56, bpf_core_field_offset(struct css_set, subsys[3]));
#endif
#if !defined(SKIP_57) && (!defined(ONLY) || ONLY == 57)
	O(57, bpf_core_type_matches(struct linux_binprm___b));
#endif
#if !defined(SKIP_58) && (!defined(ONLY) || ONLY == 58)
	O(58, bpf_core_type_matches(struct linux_binprm___c));
#endif
#if !defined(SKIP_59) && (!defined(ONLY) || ONLY == 59)
	O(59, bpf_core_type_size(struct dir_entry___a));
#endif
#if !defined(SKIP_60) && (!defined(ONLY) || ONLY == 60)
	O(60, bpf_core_type_matches(struct dir_entry___a));
#endif
#if !defined(SKIP_61) && (!defined(ONLY) || ONLY == 61)
	O(61, BPF_CORE_READ(attr, map_type));
#endif
#if !defined(SKIP_62) && (!defined(ONLY) || ONLY == 62)
	O(62, bpf_core_type_exists(struct task_struct___kind));
#endif
#if !defined(SKIP_63) && (!defined(ONLY) || ONLY == 63)
	O(63, bpf_core_type_matches(struct task_struct___arr));
#endif
#if !defined(SKIP_64) && (!defined(ONLY) || ONLY == 64)
	O(64, bpf_core_field_signed(struct task_struct, __state));
#endif
#if !defined(SKIP_65) && (!defined(ONLY) || ONLY == 65)
	O(65, bpf_core_field_signed(struct task_struct___sg, start_time));
#endif
#if !defined(SKIP_66) && (!defined(ONLY) || ONLY == 66)
	O(66, sub(t));
#endif
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(edge2, struct pt_regs *regs, long ret)
{
	struct task_struct *t = (void *)bpf_get_current_task_btf();
#if !defined(SKIP_100) && (!defined(ONLY) || ONLY == 100)
	O(100, sub(t));
#endif
#if !defined(SKIP_101) && (!defined(ONLY) || ONLY == 101)
	O(101, bpf_core_field_offset(struct task_struct___miss, not_a_field_here));
#endif
	return 0;
}
