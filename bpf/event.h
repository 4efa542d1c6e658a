/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * event.h: the record every exec tracer program emits, one per exec.
 * Userspace (src/event.rs) reads exactly this layout: 4 + 16 + 512 = 532 bytes,
 * no padding (alignment 4).
 */
#ifndef RAWSNOOP_EVENT_H
#define RAWSNOOP_EVENT_H

#define TASK_COMM_LEN 16
#define MAX_FILENAME_LEN 512

struct event {
	int pid;			/* tgid of the task that exec'd */
	char comm[TASK_COMM_LEN];	/* its comm after the exec */
	char filename[MAX_FILENAME_LEN];/* the path passed to exec, NUL-terminated */
};

_Static_assert(sizeof(struct event) == 532, "struct event is 532 bytes");

#endif /* RAWSNOOP_EVENT_H */
