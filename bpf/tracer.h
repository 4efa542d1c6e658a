/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * tracer.h: what the three exec tracers share besides struct event: the lost-record
 * counters, the filters and options user space writes into .rodata before load, and
 * the reads of the current task_struct (CO-RE).
 *
 * Before including it, a program defines READ_KERNEL / READ_USER / READ_USER_STR (the
 * ringbuf tracers use the exact helpers of Linux >= 5.5, the perf buffer tracer the old
 * generic ones so it keeps older kernels).
 */
#ifndef RAWSNOOP_TRACER_H
#define RAWSNOOP_TRACER_H

#include "rawsnoop.h"
#include "event.h"

/*
 * Records the kernel refused, by cause, in .bss: user space reads them through a read-only
 * mmap of the .bss map (created BPF_F_MMAPABLE), so counting losses costs it no map
 * syscall. (A map syscall holds the CPU's bpf_prog_active; if the task is preempted there,
 * classic tracepoint programs on that CPU are skipped: the syscall would cause the very
 * misses it reports.)
 *   lost_full:  the ring (or this CPU's perf ring) was full. For the perf buffer the kernel
 *               also writes a PERF_RECORD_LOST for these, later: user space reconciles.
 *   lost_other: any other refusal (no perf ring open on this CPU, ...).
 */
__u64 lost_full = 0;
__u64 lost_other = 0;

#define RAWSNOOP_ENOSPC 28
#define RAWSNOOP_EAGAIN 11

/* Count one lost record (atomic: several CPUs may drop at once). err: the helper's return;
 * 0 for a failed bpf_ringbuf_reserve. */
static __always_inline void record_drop(long err)
{
	if (err == 0 || err == -RAWSNOOP_ENOSPC || err == -RAWSNOOP_EAGAIN)
		__sync_fetch_and_add(&lost_full, 1);
	else
		__sync_fetch_and_add(&lost_other, 1);
}

/* The cgroup of --cgroup (see filter_cgroup). */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} cgroup_filter SEC(".maps");

/*
 * Filters and options user space sets before loading. `const volatile` puts them in
 * .rodata, which the loader turns into a one-entry array map, writes, then freezes; the
 * verifier then knows the values and drops the branches they rule out.
 * FILTER_NONE means "no filter".
 */
#define FILTER_NONE ((__u32)-1)
const volatile __u32 filter_uid = FILTER_NONE;
const volatile __u32 filter_pid = FILTER_NONE;	/* tgid */
const volatile __u32 filter_ppid = FILTER_NONE;	/* tgid of the real parent */
/*
 * cgroup v2: 1 = only tasks in the cgroup user space puts in cgroup_filter[0] (a directory
 * fd), or below it. bpf_current_task_under_cgroup works for tracepoints on every kernel we
 * support (bpf_get_current_ancestor_cgroup_id does not on 5.10).
 */
const volatile __u32 filter_cgroup = 0;
/* what to trace besides successful execs */
const volatile __u32 want_args = 0;	/* argv read at sys_enter_execve(at) */
const volatile __u32 want_failed = 0;	/* failed execs, from sys_exit_execve(at) */
const volatile __u32 want_exit = 0;	/* remember exec times for EXIT durations */
const volatile __u32 max_args = DEFAULT_MAXARGS;
/*
 * Kernel structs, read through CO-RE: clang records every access to a field of a
 * `preserve_access_index` struct, and the loader rewrites the offset for the running
 * kernel's BTF (or, with no kernel BTF, for tracepoint records, the tracefs format files).
 * Only the fields read are declared; their order and offsets here do not matter.
 */
#define __rs_core __attribute__((preserve_access_index))
/* libbpf's bpf_core_field_exists: 1 if the running kernel has the field (BPF_FIELD_EXISTS) */
#define CORE_FIELD_EXISTS(field) __builtin_preserve_field_info(field, 2)
/*
 * -DRAWSNOOP_PERTURB (tests/core_objects/builtin_perturbed.rs only, never the shipped
 * objects): padding no kernel has, before every field the programs read, so the offsets
 * compiled in are wrong for every kernel and only the loader's relocation makes the programs
 * read the right bytes.
 */
#ifdef RAWSNOOP_PERTURB
#define RS_PAD(n) __u64 __rawsnoop_pad##n[3];
#else
#define RS_PAD(n)
#endif

struct task_struct {
	RS_PAD(0)
	struct task_struct *real_parent;
	RS_PAD(1)
	int tgid;
	RS_PAD(2)
	int exit_code;
} __rs_core;

struct linux_binprm {
	RS_PAD(3)
	const char *filename;
} __rs_core;

/*
 * sched/sched_process_exec's record, relocated (the ___core flavour keeps rawsnoop.h's
 * fixed-layout struct for the objects that do not use CO-RE).
 */
struct trace_event_raw_sched_process_exec___core {
	struct trace_entry ent;
	RS_PAD(4)
	__u32 __data_loc_filename;
	RS_PAD(5)
	int pid;
	RS_PAD(6)
	int old_pid;
} __rs_core;

/*
 * The real parent's tgid, or -1 when the kernel's task_struct is unknown (no kernel BTF:
 * the loader then resolves the existence checks to 0, and the reads they guard, whose
 * offsets it cannot compute, are dead code the verifier never reaches).
 */
static __always_inline int current_ppid(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct task_struct *parent = NULL;
	int ppid = -1;

	if (!CORE_FIELD_EXISTS(task->real_parent) || !CORE_FIELD_EXISTS(task->tgid))
		return -1;
	READ_KERNEL(&parent, sizeof(parent), &task->real_parent);
	if (parent)
		READ_KERNEL(&ppid, sizeof(ppid), &parent->tgid);
	return ppid;
}

/* The current task's exit_code (code << 8 | signal), or -1 when unknown. */
static __always_inline int current_exit_code(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	int code = -1;

	if (!CORE_FIELD_EXISTS(task->exit_code))
		return -1;
	READ_KERNEL(&code, sizeof(code), &task->exit_code);
	return code;
}

/* True when the current task should not be reported. */
static __always_inline int filtered_out(void)
{
	if (filter_uid != FILTER_NONE && (__u32)bpf_get_current_uid_gid() != filter_uid)
		return 1;
	if (filter_pid != FILTER_NONE && (__u32)(bpf_get_current_pid_tgid() >> 32) != filter_pid)
		return 1;
	if (filter_ppid != FILTER_NONE && (__u32)current_ppid() != filter_ppid)
		return 1;
	if (filter_cgroup && bpf_current_task_under_cgroup(&cgroup_filter, 0) != 1)
		return 1;
	return 0;
}

/* The offset of the filename string inside the tracepoint record. */
static __always_inline const void *
exec_filename(const struct trace_event_raw_sched_process_exec___core *ctx)
{
	/* __data_loc: low 16 bits are the offset from the record start */
	return (const void *)ctx + (ctx->__data_loc_filename & 0xFFFF);
}

#endif /* RAWSNOOP_TRACER_H */
