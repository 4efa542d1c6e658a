/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * exec_progs.h: the programs every exec tracer has, written once. A tracer defines how
 * an event travels before including this file:
 *
 *   struct event *event_start(void)          room for an event without args (NULL: lost)
 *   void event_commit(void *ctx, struct event *e)    send what event_start gave
 *   void event_send(void *ctx, struct event *b)      send a complete event built in map
 *                                                    memory (args included)
 *
 * and provides a per-CPU `heap` map of one struct event (8 KiB: too big for the stack).
 *
 * Programs (user space attaches only the ones the options need):
 *   handle_exec          sched/sched_process_exec: every successful exec, also fexecve and
 *                        execveat; the args saved at syscall entry are joined by thread id
 *                        (the tracepoint's old_pid: a multi-threaded exec changes the tid)
 *   handle_exec_btf      the same as tp_btf (user space attaches one of the two)
 *   handle_enter_execve(at)  syscalls/sys_enter_execve(at): save path, argv, uid, ppid
 *   handle_exit_execve(at)   syscalls/sys_exit_execve(at): a failed exec is reported here
 *   handle_exit          sched/sched_process_exit: EXIT with the wait status and duration
 */
#ifndef RAWSNOOP_EXEC_PROGS_H
#define RAWSNOOP_EXEC_PROGS_H

/*
 * Execs between syscall entry and exec/exit, by thread id. Preallocated (kernels before
 * 6.1 warn about, and newer ones restrict, run-time allocation in tracing programs), so
 * kept small: 1024 x 8 KiB. LRU: an entry whose syscall exit never came (a task killed
 * in the middle of exec) is recycled instead of filling the map.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct event);
} execs SEC(".maps");

/* When each process exec'd (by tgid), for the duration on EXIT; LRU for the same reason. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} exec_start SEC(".maps");

static __always_inline struct event *scratch(void)
{
	int zero = 0;

	return bpf_map_lookup_elem(&heap, &zero);
}

/* The exec'd path, then argv[1..max_args-1], each NUL-terminated, as execsnoop reads them. */
static __always_inline void read_args(struct event *e, const char *filename,
				      const char *const *argv)
{
	const char *argp = NULL;
	long ret;
	int i;

	e->args_count = 1;
	ret = READ_USER_STR(e->args, ARGSIZE, filename);
	if (ret > 0 && ret <= ARGSIZE) {
		e->args_size = ret;
	} else {
		e->args[0] = '\0';
		e->args_size = 1;
	}
#pragma unroll
	for (i = 1; i < TOTAL_MAX_ARGS; i++) {
		__u32 off;

		if (i >= max_args)
			break;
		if (READ_USER(&argp, sizeof(argp), &argv[i]) < 0 || !argp)
			return;
		off = e->args_size;
		if (off > LAST_ARG)
			return;
		ret = READ_USER_STR(&e->args[off], ARGSIZE, argp);
		if (ret == 0) {
			/* An empty argument: 5.10 returns 0 for "" where newer kernels count its
			 * NUL (1). Keep it, and everything after it. */
			e->args[off] = '\0';
			ret = 1;
		}
		if (ret < 0 || ret > ARGSIZE)
			return;
		e->args_count++;
		e->args_size = off + ret;
	}
	if (max_args >= TOTAL_MAX_ARGS)
		return;
	/* one more pointer that is not NULL: some were left out (shown as "...") */
	if (READ_USER(&argp, sizeof(argp), &argv[max_args & 63]) == 0 && argp)
		e->args_count++;
}

static __always_inline int on_enter(const char *filename, const char *const *argv)
{
	struct event *e;
	__u32 tid;

	if (filtered_out())
		return 0;
	e = scratch();
	if (!e)
		return 0;
	e->flags = EVENT_F_ARGS;
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ppid = current_ppid();
	e->filename[0] = '\0';
	READ_USER_STR(e->filename, sizeof(e->filename), filename);
	read_args(e, filename, argv);
	tid = (__u32)bpf_get_current_pid_tgid();
	bpf_map_update_elem(&execs, &tid, e, BPF_ANY);
	return 0;
}

/*
 * The syscall programs stay classic tracepoints with fixed-layout records: the per-syscall
 * records (syscalls/sys_enter_execve, ...) have no type in kernel BTF to relocate against
 * (the kernel builds their format at run time), and their layout (8-byte header, nr, args
 * from offset 16) is ABI. Skipping one of them loses only arguments (the exec is still
 * reported by handle_exec) or a failed exec, which recursion_misses counts.
 */
SEC("tp/syscalls/sys_enter_execve")
int handle_enter_execve(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter((const char *)ctx->args[0], (const char *const *)ctx->args[1]);
}

SEC("tp/syscalls/sys_enter_execveat")
int handle_enter_execveat(struct trace_event_raw_sys_enter *ctx)
{
	return on_enter((const char *)ctx->args[1], (const char *const *)ctx->args[2]);
}

static __always_inline int on_exit_syscall(void *ctx, long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct event *e = bpf_map_lookup_elem(&execs, &tid);

	if (!e)
		return 0;
	/* a successful exec was reported (and its entry removed) by handle_exec */
	if (ret < 0 && want_failed) {
		e->kind = EVENT_EXEC;
		e->pid = id >> 32;
		e->ret = ret;
		e->ts = bpf_ktime_get_ns();
		e->cgroup = bpf_get_current_cgroup_id();
		e->duration_ns = 0;
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
		event_send(ctx, e);
	}
	bpf_map_delete_elem(&execs, &tid);
	return 0;
}

SEC("tp/syscalls/sys_exit_execve")
int handle_exit_execve(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit_syscall(ctx, ctx->ret);
}

SEC("tp/syscalls/sys_exit_execveat")
int handle_exit_execveat(struct trace_event_raw_sys_exit *ctx)
{
	return on_exit_syscall(ctx, ctx->ret);
}

/* The fields every exec event has, whichever way it travels. */
static __always_inline void fill_exec(struct event *e, __u64 id, __u64 now)
{
	e->kind = EVENT_EXEC;
	e->pid = id >> 32;
	e->ppid = current_ppid();
	e->uid = (__u32)bpf_get_current_uid_gid();
	e->ret = 0;
	e->ts = now;
	e->cgroup = bpf_get_current_cgroup_id();
	e->duration_ns = 0;
	bpf_get_current_comm(&e->comm, sizeof(e->comm));
}

/* EXEC for every successful exec; `filename` is a kernel string. */
static __always_inline int on_exec(void *ctx, __u32 old_tid, const void *filename)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = id >> 32;
	struct event *e = NULL;

	if (want_args)
		e = bpf_map_lookup_elem(&execs, &old_tid);
	if (filtered_out()) {
		if (e)
			bpf_map_delete_elem(&execs, &old_tid);
		return 0;
	}
	if (want_exit)
		bpf_map_update_elem(&exec_start, &tgid, &now, BPF_ANY);
	if (e) {
		fill_exec(e, id, now);
		READ_KERNEL_STR(&e->filename, sizeof(e->filename), filename);
		event_send(ctx, e);
		bpf_map_delete_elem(&execs, &old_tid);
		return 0;
	}
	/* no entry: args not wanted, or an exec the syscall tracepoints did not see */
	e = event_start();
	if (!e)
		return 0;
	fill_exec(e, id, now);
	e->flags = 0;
	e->args_count = 0;
	e->args_size = 0;
	READ_KERNEL_STR(&e->filename, sizeof(e->filename), filename);
	event_commit(ctx, e);
	return 0;
}

/* The classic tracepoint: the record's fields through CO-RE (tracefs formats without BTF). */
SEC("tp/sched/sched_process_exec")
int handle_exec(struct trace_event_raw_sched_process_exec___core *ctx)
{
	return on_exec(ctx, ctx->old_pid, exec_filename(ctx));
}

/*
 * The same event through BTF (Linux >= 5.5 with kernel BTF): the tracepoint's own arguments
 * (struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm). User space prefers it
 * (--attach auto): a tracing program has its own recursion protection, while a classic
 * tracepoint program is skipped whenever the CPU's bpf_prog_active is held (by any task
 * preempted inside a map syscall), which loses execs.
 */
SEC("tp_btf/sched_process_exec")
int handle_exec_btf(__u64 *ctx)
{
	struct linux_binprm *bprm = (struct linux_binprm *)ctx[2];
	const char *filename = NULL;

	READ_KERNEL(&filename, sizeof(filename), &bprm->filename);
	return on_exec(ctx, (__u32)ctx[1], filename);
}

SEC("tp/sched/sched_process_exit")
int handle_exit(struct trace_event_raw_sched_process_template *ctx)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u64 now = bpf_ktime_get_ns();
	__u32 tgid = id >> 32;
	__u64 *start;
	struct event *e;

	/* a thread that is not the group leader: the process lives on */
	if ((__u32)id != tgid)
		return 0;
	start = bpf_map_lookup_elem(&exec_start, &tgid);
	if (filtered_out()) {
		if (start)
			bpf_map_delete_elem(&exec_start, &tgid);
		return 0;
	}
	e = event_start();
	if (e) {
		e->kind = EVENT_EXIT;
		e->pid = tgid;
		e->ppid = current_ppid();
		e->uid = (__u32)bpf_get_current_uid_gid();
		e->ret = current_exit_code();
		e->ts = now;
		e->cgroup = bpf_get_current_cgroup_id();
		e->duration_ns = start ? now - *start : 0;
		e->flags = 0;
		e->args_count = 0;
		e->args_size = 0;
		e->filename[0] = '\0';
		bpf_get_current_comm(&e->comm, sizeof(e->comm));
		event_commit(ctx, e);
	}
	if (start)
		bpf_map_delete_elem(&exec_start, &tgid);
	return 0;
}

#endif /* RAWSNOOP_EXEC_PROGS_H */
