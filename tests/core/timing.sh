#!/bin/sh
# Load-to-attach time, rawsnoop vs libbpf, with and without CO-RE, each run a fresh process (so
# rawsnoop parses /sys/kernel/btf/vmlinux every time, as a real start-up does). Prints the
# median of N runs per case. Needs root, cc and libbpf-dev. Usage: tests/core/timing.sh [N]
set -eu
cd "$(dirname "$0")/../.."
n=${1:-21}
cargo build -q --release --example load_time
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cc -O2 tests/core/libbpf_load_time.c -lbpf -o "$tmp/libbpf_load_time"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
run() { # label, command...: median wall time in-process, and CPU time of the whole process
	label=$1; shift
	for _ in $(seq "$n"); do "$@" | sed 's/.*total_us=\([0-9]*\).*/\1/'; done | median >"$tmp/m"
	cpu=""
	if command -v perf >/dev/null 2>&1; then
		cpu=$(perf stat -r "$n" -x, -e task-clock "$@" 2>&1 >/dev/null | awk -F, '/task-clock/ {print $1 " ms CPU"}')
	fi
	printf '%-46s %8s us wall  %s\n' "$label" "$(cat "$tmp/m")" "$cpu"
}
core=tests/core/perturbed.bpf.o      # tp/sched/sched_process_exec, 4 CO-RE relocations
plain=tests/foreign/ringbuf-output.bpf.o # the demo's tracepoint program, no CO-RE
run "rawsnoop, no CO-RE ($plain)" target/release/examples/load_time "$plain"
run "libbpf,   no CO-RE ($plain)" "$tmp/libbpf_load_time" "$plain"
run "rawsnoop, CO-RE ($core)" target/release/examples/load_time "$core"
run "libbpf,   CO-RE ($core)" "$tmp/libbpf_load_time" "$core"
# The same BTF given as a file (`--btf`) is read() into memory, never mapped.
run "rawsnoop, CO-RE, --btf FILE (read, not mapped)" target/release/examples/load_time "$core" --btf /sys/kernel/btf/vmlinux
run "rawsnoop, CO-RE --btf none (tracefs)" target/release/examples/load_time "$core" --btf none
