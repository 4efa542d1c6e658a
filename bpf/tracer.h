/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * tracer.h: what the three exec tracers share besides struct event: the
 * `drops` counter, so that a record the kernel could not take (ring full,
 * no perf buffer on this CPU, ...) is counted instead of silently lost.
 * Userspace reads drops[0] and reports it.
 */
#ifndef RAWSNOOP_TRACER_H
#define RAWSNOOP_TRACER_H

#include "rawsnoop.h"
#include "event.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

/* Count one lost record in drops[0] (atomic: several CPUs may drop at once). */
static __always_inline void record_drop(void)
{
	__u32 zero = 0;
	__u64 *count = bpf_map_lookup_elem(&drops, &zero);

	if (count)
		__sync_fetch_and_add(count, 1);
}

/*
 * Filters user space sets before loading. `const volatile` puts them in .rodata,
 * which the loader turns into a one-entry array map, writes, then freezes; the
 * verifier then knows the values and drops the branches they rule out.
 * FILTER_NONE means "no filter".
 */
#define FILTER_NONE ((__u32)-1)
const volatile __u32 filter_uid = FILTER_NONE;

/* True when this exec should not be reported. */
static __always_inline int filtered_out(void)
{
	if (filter_uid != FILTER_NONE && (__u32)bpf_get_current_uid_gid() != filter_uid)
		return 1;
	return 0;
}

/* The offset of the filename string inside the tracepoint record. */
static __always_inline const void *
exec_filename(const struct trace_event_raw_sched_process_exec *ctx)
{
	/* __data_loc: low 16 bits are the offset from the record start */
	return (const void *)ctx + (ctx->__data_loc_filename & 0xFFFF);
}

#endif /* RAWSNOOP_TRACER_H */
