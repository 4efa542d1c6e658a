// compare/core-diff/core-diff: let libbpf (1.1) CO-RE-relocate one BPF object and print its
// debug lines about CO-RE ("sec '...': found N CO-RE relocations", "prog '...': relo #N: ...").
// Built on demand only (`make -C compare/core-diff`); rawsnoop never links libbpf and its tests
// never need this. Maps are not created (bpf_map__set_autocreate false): bpf_object__load runs
// CO-RE relocation first and fails later, which is fine; only the relocation lines matter.
//
// Usage: core-diff OBJ [BTF]   (BTF: a target BTF file instead of /sys/kernel/btf/vmlinux)
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <bpf/libbpf.h>

static int print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	char buf[4096];

	vsnprintf(buf, sizeof(buf), fmt, args);
	if (strstr(buf, "CO-RE") || strstr(buf, "relo #") || strstr(buf, "failed to relocate") ||
	    strstr(buf, "failed to patch"))
		fputs(buf, stdout);
	return 0;
}

int main(int argc, char **argv)
{
	LIBBPF_OPTS(bpf_object_open_opts, opts);
	struct bpf_object *obj;
	struct bpf_map *map;
	int err;

	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: %s OBJ [BTF]\n", argv[0]);
		return 2;
	}
	if (argc == 3)
		opts.btf_custom_path = argv[2];
	libbpf_set_print(print_fn);
	obj = bpf_object__open_file(argv[1], &opts);
	if (!obj) {
		fprintf(stderr, "core-diff: cannot open %s\n", argv[1]);
		return 1;
	}
	bpf_object__for_each_map(map, obj)
		bpf_map__set_autocreate(map, false);
	err = bpf_object__load(obj);
	printf("core-diff: load returned %d\n", err);
	bpf_object__close(obj);
	return 0;
}
