/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * event.h: the record every exec tracer program emits, one per exec (and one per
 * process exit with --exit). Userspace (src/event.rs) reads exactly this layout.
 *
 * The demo's three fields come first, at the demo's offsets (pid 0, comm 4, filename 20),
 * so a reader of the demo's 532-byte `struct event` still reads them right. rawsnoop's
 * additions follow, then the arguments, which are variable length: `args_size` bytes of
 * NUL-terminated strings (the exec'd path first, then argv[1..], like libbpf-tools
 * execsnoop). A record is EVENT_HDR_SIZE + args_size bytes long when the transport can
 * send a variable length (bpf_ringbuf_output, bpf_perf_event_output), and one of a few
 * constant sizes with bpf_ringbuf_reserve (see ringbuf_reserve.bpf.c).
 */
#ifndef RAWSNOOP_EVENT_H
#define RAWSNOOP_EVENT_H

#define TASK_COMM_LEN 16
#define MAX_FILENAME_LEN 512

/* execsnoop's limits: each argument up to ARGSIZE bytes with its NUL, at most 60 of them */
#define ARGSIZE 128
#define TOTAL_MAX_ARGS 60
#define DEFAULT_MAXARGS 20
#define FULL_MAX_ARGS_ARR (TOTAL_MAX_ARGS * ARGSIZE)
#define LAST_ARG (FULL_MAX_ARGS_ARR - ARGSIZE)

/* event kinds */
#define EVENT_EXEC 0
#define EVENT_EXIT 1

struct event {
	int pid;			/* tgid of the task that exec'd (or exited) */
	char comm[TASK_COMM_LEN];	/* its comm: after the exec; the caller's for a failed one */
	char filename[MAX_FILENAME_LEN];/* the path passed to exec, NUL-terminated */
	/* ---- rawsnoop's additions ---- */
	__u32 kind;			/* EVENT_EXEC or EVENT_EXIT */
	int ppid;			/* tgid of the real parent */
	__u32 uid;			/* real uid */
	int ret;			/* EXEC: 0 or -errno; EXIT: the wait status (code << 8 | signal) */
	__u32 args_count;		/* strings in args; max_args + 1 when some were left out */
	__u32 args_size;		/* bytes used in args */
	__u32 flags;			/* EVENT_F_* */
	__u64 ts;			/* bpf_ktime_get_ns() (CLOCK_MONOTONIC) when it happened */
	__u64 cgroup;			/* cgroup v2 id */
	__u64 duration_ns;		/* EXIT: time since the exec (0: exec not seen) */
	char args[FULL_MAX_ARGS_ARR];
};

/* flags */
#define EVENT_F_ARGS 1			/* args were read at syscall entry */

#define EVENT_HDR_SIZE 584

_Static_assert(__builtin_offsetof(struct event, args) == EVENT_HDR_SIZE, "args at 584");
_Static_assert(__builtin_offsetof(struct event, kind) == 532, "kind at 532");
_Static_assert(__builtin_offsetof(struct event, ts) == 560, "ts at 560");
_Static_assert(sizeof(struct event) == EVENT_HDR_SIZE + FULL_MAX_ARGS_ARR, "struct event size");

#endif /* RAWSNOOP_EVENT_H */
