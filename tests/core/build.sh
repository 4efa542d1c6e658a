#!/bin/sh
# Rebuilds the CO-RE test objects the way libbpf users build them: Debian's clang and libbpf
# headers (apt-get install libbpf-dev clang-19 bpftool) against a vmlinux.h dumped from the
# running kernel's BTF. The .o files are committed so tests need none of these; vmlinux.h is
# not (it is regenerated here). Usage: tests/core/build.sh [OUT_DIR]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here}
CLANG=${CLANG:-clang-19}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -n "${VMLINUX_H:-}" ]; then
	cp "$VMLINUX_H" "$tmp/vmlinux.h"
else
	bpftool btf dump file /sys/kernel/btf/vmlinux format c >"$tmp/vmlinux.h"
fi
for src in "$here"/*.bpf.c; do
	stem=$(basename "$src" .c)
	"$CLANG" -target bpf -O2 -g -D__TARGET_ARCH_x86 -I"$tmp" -I"$here" \
		-I/usr/include/x86_64-linux-gnu -c "$src" -o "$out/$stem.o"
	# DWARF is not needed (BTF and .BTF.ext carry types and source lines): keep objects small.
	if command -v "${STRIP:-llvm-strip-19}" >/dev/null 2>&1; then
		"${STRIP:-llvm-strip-19}" -g "$out/$stem.o"
	fi
done
