/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * rawsnoop.h: the project's own minimal BPF header.
 *
 * No libbpf headers, no vmlinux.h, no system headers: everything the BPF
 * programs in this folder need is declared here, by us, from the kernel's
 * stable UAPI numbers (include/uapi/linux/bpf.h).  Keeping it self-contained
 * means the programs build on any host with a clang that has the BPF target.
 */
#ifndef RAWSNOOP_H
#define RAWSNOOP_H

/* ---- integer types (same spelling as <linux/types.h>) ------------------ */
typedef signed char __s8;
typedef unsigned char __u8;
typedef short __s16;
typedef unsigned short __u16;
typedef int __s32;
typedef unsigned int __u32;
typedef long long __s64;
typedef unsigned long long __u64;

/* ---- section / map-definition / inlining macros ------------------------ */
#define SEC(name) __attribute__((section(name), used))

/*
 * BTF-defined map attributes: the loader reads the numbers back from the
 * BTF of the `.maps` section (an array dimension carries an integer, a
 * pointer target carries a type).
 */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define NULL ((void *)0)

/* ---- map types (enum bpf_map_type) ------------------------------------- */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_PERF_EVENT_ARRAY 4
#define BPF_MAP_TYPE_PERCPU_HASH 5
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_CGROUP_ARRAY 8
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_RINGBUF 27


/* ---- flags ------------------------------------------------------------- */
/* bpf_map_update_elem */
#define BPF_ANY 0
#define BPF_NOEXIST 1
/* bpf_perf_event_output: "the CPU this program runs on" */
#define BPF_F_CURRENT_CPU 0xffffffffULL
/* bpf_ringbuf_output / bpf_ringbuf_submit / bpf_ringbuf_discard */
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#define BPF_RB_FORCE_WAKEUP (1ULL << 1)
/* bpf_ringbuf_query */
#define BPF_RB_AVAIL_DATA 0
#define BPF_RB_RING_SIZE 1
#define BPF_RB_CONS_POS 2
#define BPF_RB_PROD_POS 3

/* ---- helpers, by their kernel IDs (enum bpf_func_id) -------------------- */
/* 1 */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
/* 2 */
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value,
				   __u64 flags) = (void *)2;
/* 3 */
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
/* 4: any address (x86 has non-overlapping address spaces); for kernels before 5.5 */
static long (*bpf_probe_read)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)4;
/* 5: CLOCK_MONOTONIC, in ns */
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
/* 8 */
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
/* 14: tgid in the upper 32 bits, pid (thread id) in the lower 32 */
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
/* 15: gid in the upper 32 bits, uid in the lower 32 */
static __u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
/* 35: the current task_struct, as an opaque kernel address */
static __u64 (*bpf_get_current_task)(void) = (void *)35;
/* 80: the cgroup v2 id (kernfs inode number) of the current task, Linux >= 4.18 */
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
/* 112..114: user / kernel memory, Linux >= 5.5 */
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static long (*bpf_probe_read_user_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)114;
/* 37: 1 if the current task is in the cgroup at map[index] or below it, 0 if not */
static long (*bpf_current_task_under_cgroup)(void *map, __u32 index) = (void *)37;
/* 16 */
static long (*bpf_get_current_comm)(void *buf, __u32 size_of_buf) = (void *)16;
/* 25 */
static long (*bpf_perf_event_output)(void *ctx, void *map, __u64 flags, void *data,
				     __u64 size) = (void *)25;
/* 45: works on kernels older than 5.5 (x86 has non-overlapping address spaces) */
static long (*bpf_probe_read_str)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)45;
/* 115: the exact helper for kernel memory, Linux >= 5.5 */
static long (*bpf_probe_read_kernel_str)(void *dst, __u32 size,
					 const void *unsafe_ptr) = (void *)115;
/* 130..134: BPF ring buffer, Linux >= 5.8 */
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) =
	(void *)130;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static void (*bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)133;
static __u64 (*bpf_ringbuf_query)(void *ringbuf, __u64 flags) = (void *)134;

/* ---- tracepoint contexts ------------------------------------------------ */
/*
 * The common header of every trace event (include/linux/trace_events.h),
 * as /sys/kernel/tracing/events/<sys>/<event>/format prints it:
 *   common_type offset 0 size 2, common_flags 2/1,
 *   common_preempt_count 3/1, common_pid 4/4.
 */
struct trace_entry {
	unsigned short type;
	unsigned char flags;
	unsigned char preempt_count;
	int pid;
};

/*
 * sched/sched_process_exec, checked against its format file (Linux 6.18):
 *   __data_loc char[] filename  offset 8  size 4
 *   pid_t pid                   offset 12 size 4
 *   pid_t old_pid               offset 16 size 4
 * A __data_loc field holds (length << 16) | offset-from-the-record-start.
 */
struct trace_event_raw_sched_process_exec {
	struct trace_entry ent;
	__u32 __data_loc_filename;
	int pid;
	int old_pid;
};

_Static_assert(sizeof(struct trace_entry) == 8, "trace_entry is 8 bytes");
_Static_assert(__builtin_offsetof(struct trace_event_raw_sched_process_exec,
				  __data_loc_filename) == 8,
	       "filename __data_loc at offset 8");
_Static_assert(__builtin_offsetof(struct trace_event_raw_sched_process_exec, pid) == 12,
	       "pid at offset 12");
_Static_assert(__builtin_offsetof(struct trace_event_raw_sched_process_exec, old_pid) == 16,
	       "old_pid at offset 16");

/*
 * syscalls/sys_enter_execve and sys_enter_execveat (Linux 5.10 .. 7.3 agree):
 *   int __syscall_nr offset 8; then each argument as 8 bytes from offset 16.
 * execve(filename, argv, envp): args[0], args[1], args[2].
 * execveat(fd, filename, argv, envp, flags): args[0] .. args[4].
 */
struct trace_event_raw_sys_enter {
	struct trace_entry ent;
	int __syscall_nr;
	int __pad;
	unsigned long args[6];
};

/* syscalls/sys_exit_*: int __syscall_nr offset 8, long ret offset 16. */
struct trace_event_raw_sys_exit {
	struct trace_entry ent;
	int __syscall_nr;
	int __pad;
	long ret;
};

/*
 * sched/sched_process_exit: char comm[16] offset 8, pid_t pid offset 24 (5.10 .. 7.3; 6.16+
 * appends group_dead, which we do not read).
 */
struct trace_event_raw_sched_process_template {
	struct trace_entry ent;
	char comm[16];
	int pid;
};

_Static_assert(__builtin_offsetof(struct trace_event_raw_sys_enter, args) == 16,
	       "sys_enter args at offset 16");
_Static_assert(__builtin_offsetof(struct trace_event_raw_sys_exit, ret) == 16,
	       "sys_exit ret at offset 16");
_Static_assert(__builtin_offsetof(struct trace_event_raw_sched_process_template, pid) == 24,
	       "sched_process_exit pid at offset 24");

#endif /* RAWSNOOP_H */
