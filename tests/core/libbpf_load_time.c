// The libbpf side of tests/core/timing.sh: open, load (libbpf applies CO-RE against
// /sys/kernel/btf/vmlinux) and attach every program of OBJECT, timing each phase like
// examples/load_time.rs. Build: cc -O2 libbpf_load_time.c -lbpf -o libbpf_load_time
#include <stdio.h>
#include <time.h>
#include <bpf/libbpf.h>

static long long us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

int main(int argc, char **argv)
{
	struct bpf_object *obj;
	struct bpf_program *prog;
	long long t0, t1, t2, t3;
	int links = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s OBJECT\n", argv[0]);
		return 2;
	}
	t0 = us();
	obj = bpf_object__open_file(argv[1], NULL);
	if (!obj)
		return 1;
	t1 = us();
	if (bpf_object__load(obj))
		return 1;
	t2 = us();
	bpf_object__for_each_program(prog, obj) {
		if (!bpf_program__attach(prog))
			return 1;
		links++;
	}
	t3 = us();
	printf("parse_us=%lld load_us=%lld attach_us=%lld total_us=%lld links=%d\n",
	       t1 - t0, t2 - t1, t3 - t2, t3 - t0, links);
	return 0;
}
