/* SPDX-License-Identifier: (MIT OR Apache-2.0) */
/*
 * ringbuf_wakeup.h: when a ring buffer record wakes the consumer.
 *
 * With flags 0 the kernel wakes the consumer for a record when the consumer has read
 * everything before it: under a steady stream that a fast consumer keeps up with, that
 * is one wakeup (and one epoll round trip) per record. With wakeup_policy 1 ("adaptive",
 * `--wakeup adaptive`) a record is sent with BPF_RB_NO_WAKEUP unless the data waiting
 * passes wakeup_threshold bytes or the last wakeup is older than wakeup_interval_ns; then
 * it forces one. A lone exec is therefore always woken for (the last wakeup is old), and
 * user space polls with a short timeout after each drain that found data, so a record sent
 * without a wakeup at the end of a burst waits at most about that timeout.
 */
#ifndef RAWSNOOP_RINGBUF_WAKEUP_H
#define RAWSNOOP_RINGBUF_WAKEUP_H

const volatile __u32 wakeup_policy = 0;
const volatile __u64 wakeup_threshold = 0;
const volatile __u64 wakeup_interval_ns = 0;
/* .bss: when we last forced a wakeup. Racy across CPUs, which only costs a spare wakeup. */
__u64 last_wakeup_ns = 0;

static __always_inline __u64 wakeup_flags(void)
{
	__u64 now;

	if (!wakeup_policy)
		return 0;
	now = bpf_ktime_get_ns();
	if (now - last_wakeup_ns >= wakeup_interval_ns ||
	    bpf_ringbuf_query(&rb, BPF_RB_AVAIL_DATA) >= wakeup_threshold) {
		last_wakeup_ns = now;
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

#endif /* RAWSNOOP_RINGBUF_WAKEUP_H */
