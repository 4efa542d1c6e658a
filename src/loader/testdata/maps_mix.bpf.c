/* Loader test object: BTF maps of several kinds, global data, a bpf-to-bpf call, two programs in one section
 * plus one in another. Rebuild: clang -target bpf -O2 -g -c maps_mix.bpf.c -o maps_mix.bpf.o */
#include "rs_bpf.h"

struct event {
	__u32 pid;
	__u32 cpu;
	__u64 ts;
	char comm[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct event);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} by_pid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 8);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 128);
	__type(key, __u64);
	__type(value, __u64);
	__uint(pinning, 1);
} lru_with_a_rather_long_name SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} perf_out SEC(".maps");

const volatile __u32 target_pid = 0;
const volatile __u64 min_ns = 1000;
__u64 seen = 7;
__u64 dropped;
__u32 scratch[4];

char LICENSE[] SEC("license") = "Dual MIT/GPL";

__noinline int bump(__u32 idx)
{
	__u64 *v = (__u64 *)bpf_map_lookup_elem(&counters, &idx);
	if (v) {
		*v += 1;
		return 1;
	}
	dropped++;
	return 0;
}

static __noinline int fill(struct event *e)
{
	__u64 id = bpf_get_current_pid_tgid();
	e->pid = id >> 32;
	e->ts = bpf_ktime_get_ns();
	return bump(1);
}

SEC("tp/sched/sched_process_exec")
int on_exec(void *ctx)
{
	struct event e = {};
	__u32 pid = bpf_get_current_pid_tgid() >> 32;

	if (target_pid && pid != target_pid)
		return 0;
	fill(&e);
	bpf_map_update_elem(&by_pid, &pid, &e, 0);
	bpf_ringbuf_output(&events, &e, sizeof(e), 0);
	seen++;
	return 0;
}

SEC("tp/sched/sched_process_exec")
int on_exec_second(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	scratch[pid & 3] = pid;
	return bump(0);
}

SEC("tracepoint/syscalls/sys_enter_execve")
int on_execve(void *ctx)
{
	__u64 k = bpf_ktime_get_ns();
	__u64 *v = (__u64 *)bpf_map_lookup_elem(&lru_with_a_rather_long_name, &k);
	if (v && *v > min_ns)
		return 1;
	return bump(2) + bump(3);
}

SEC("kprobe/do_sys_openat2")
int on_open(void *ctx)
{
	return 0;
}
