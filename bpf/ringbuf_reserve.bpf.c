// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * Exec tracer, BPF ring buffer with reserve/submit: the record is written in place
 * inside the ring, no copy.  Needs Linux >= 5.8.
 *
 * The trade-off: bpf_ringbuf_reserve() needs a size the verifier knows when it loads the
 * program, but an exec's arguments are anything from a few bytes to 7.5 KiB. Reserving the
 * largest size for every exec would fit only 31 events in the default 256 KiB ring. So an
 * event without arguments (the demo's columns, EXIT) is reserved at its header size and
 * written in place; an event with arguments was already assembled at syscall entry in the
 * `execs` map, and is copied into the smallest of four constant size classes that holds it
 * (header + 256, 1024, 2048 or 7680 bytes of arguments). bpf_ringbuf_output (ringbuf_output.bpf.c)
 * and the perf buffer send exactly header + args_size bytes instead.
 */
#include "rawsnoop.h"

#define READ_KERNEL bpf_probe_read_kernel
#define READ_KERNEL_STR bpf_probe_read_kernel_str
#define READ_USER bpf_probe_read_user
#define READ_USER_STR bpf_probe_read_user_str

#include "event.h"
#include "tracer.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, int);
	__type(value, struct event);
} heap SEC(".maps");

#include "ringbuf_wakeup.h"

static __always_inline struct event *event_start(void)
{
	struct event *e = bpf_ringbuf_reserve(&rb, EVENT_HDR_SIZE, 0);

	if (!e) /* ring full: count it, never lose it silently */
		record_drop(0);
	return e;
}

static __always_inline void event_commit(void *ctx, struct event *e)
{
	bpf_ringbuf_submit(e, wakeup_flags());
}

/* Reserve header + ARGS bytes (a constant), copy the event in, submit. */
#define SEND_CLASS(ARGS)                                                                   \
	do {                                                                               \
		void *r = bpf_ringbuf_reserve(&rb, EVENT_HDR_SIZE + (ARGS), 0);            \
		if (!r) {                                                                  \
			record_drop(0);                                                    \
			return;                                                            \
		}                                                                          \
		bpf_probe_read_kernel(r, EVENT_HDR_SIZE + (ARGS), b);                      \
		bpf_ringbuf_submit(r, wakeup_flags());                                     \
		return;                                                                    \
	} while (0)

static __always_inline void event_send(void *ctx, struct event *b)
{
	__u32 size = b->args_size;

	if (size <= 256)
		SEND_CLASS(256);
	if (size <= 1024)
		SEND_CLASS(1024);
	if (size <= 2048)
		SEND_CLASS(2048);
	SEND_CLASS(FULL_MAX_ARGS_ARR);
}

#include "exec_progs.h"
