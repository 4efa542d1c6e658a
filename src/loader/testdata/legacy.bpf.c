/* Loader test object: a legacy `maps` section (struct bpf_map_def records), no BTF maps.
 * Rebuild: clang -target bpf -O2 -g -c legacy.bpf.c -o legacy.bpf.o */
#include "rs_bpf.h"

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") legacy_hash = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(__u32),
	.value_size = sizeof(__u64),
	.max_entries = 64,
};

struct bpf_map_def SEC("maps") legacy_array = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(__u32),
	.value_size = 16,
	.max_entries = 2,
	.map_flags = 0,
};

char _license[] SEC("license") = "GPL";
__u32 _version SEC("version") = 0x060000;

SEC("socket")
int sock_prog(void *skb)
{
	__u32 k = 1;
	__u64 *v = (__u64 *)bpf_map_lookup_elem(&legacy_hash, &k);
	if (v)
		return 1;
	return bpf_map_lookup_elem(&legacy_array, &k) != 0;
}

SEC("xdp")
int xdp_prog(void *ctx)
{
	return 2;
}
