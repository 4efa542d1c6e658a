#!/bin/sh
# Rebuilds the foreign test objects: the demo's programs against Debian's libbpf headers
# (apt-get install libbpf-dev clang-19). The .o files are committed so tests need neither.
set -eu
cd "$(dirname "$0")"
CLANG=${CLANG:-clang-19}
for src in *.bpf.c; do
	"$CLANG" -target bpf -O2 -g -D__TARGET_ARCH_x86 -I. -I/usr/include/x86_64-linux-gnu -c "$src" -o "${src%.c}.o"
done
