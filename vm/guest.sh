#!/bin/bash
# Runs inside a vng guest (PID 1 is virtme-ng-init; we are root; the host root is
# shared read-only over 9p). Usage: guest.sh RESULTS_DIR
#
# RESULTS_DIR is shared read-write with the host (vng --rwdir). It holds:
#   in:  repo       the repository root (the tests' working directory)
#        tests      one "name<TAB>executable" line per test binary
#        args       extra arguments for every test binary, one per line
#        timeout    seconds each test binary may run
#        cmd        optional: a shell command to run instead of the tests
#   out: uname, mounts-before, mounts-tests, <name>.out, <name>.rc, dmesg, done
set -u
R=$1
cd "$R" || exit 90

uname -r > uname
cat /proc/mounts > mounts-before

if [ -s cmd ]; then
    bash -c "$(cat cmd)" > cmd.out 2>&1
    echo $? > cmd.rc
    dmesg > dmesg 2>/dev/null
    echo ok > done
    exit 0
fi

# A fresh system has neither tracefs, debugfs nor bpffs mounted; virtme-ng-init
# mounts debugfs and tracefs. Undo that so the tests see what users see.
for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug /sys/fs/bpf; do
    while grep -q " $m " /proc/mounts; do umount "$m" 2>/dev/null || umount -l "$m" || break; done
done
cat /proc/mounts > mounts-tests

# The host's files reach the guest over 9p without a page cache, so every exec of a test
# binary or of rawsnoop (the CLI tests start it ~15 times) reads tens of MB again. Serve
# them from guest memory: a copy on a tmpfs, bind-mounted over the original path so the
# paths compiled into the tests still work. Best effort: on failure the originals are used.
# Within a budget of a quarter of the guest's available memory: the debug binaries are
# ~25 MB each, and copying all of them into a 1 GiB guest's tmpfs starved the tests of
# memory (test binaries died with SIGBUS on 6.1). rawsnoop itself (exec'd most) goes first;
# what does not fit runs from 9p.
exe_dir=$(mktemp -d /dev/shm/rawsnoop-exe.XXXXXX 2>/dev/null || mktemp -d)
budget=$(( $(awk '/^MemAvailable:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0) * 1024 / 4 ))
used=0
i=0
copied=0
copy_in() {
    local f=$1 size
    [ -f "$f" ] || return 0
    grep -q " $f " /proc/mounts && return 0
    size=$(stat -c %s "$f" 2>/dev/null) || return 0
    [ $((used + size)) -le "$budget" ] || return 0
    if cp "$f" "$exe_dir/$i" 2>/dev/null && mount --bind "$exe_dir/$i" "$f" 2>/dev/null; then
        used=$((used + size))
        copied=$((copied + 1))
    else
        rm -f "$exe_dir/$i"
    fi
    i=$((i + 1))
}
first=$(head -n 1 tests | cut -f 2)
[ -n "$first" ] && copy_in "$(dirname "$(dirname "$first")")/rawsnoop"
while IFS=$'\t' read -r name exe; do
    [ -n "$name" ] || continue
    copy_in "$exe"
done < tests
echo "served from tmpfs: $copied file(s), $((used / 1048576)) MiB of a $((budget / 1048576)) MiB budget" > exe-cache

repo=$(cat repo)
limit=$(cat timeout)
mapfile -t extra < args
echo "rawsnoop-vm: tests start" > /dev/kmsg 2>/dev/null

while IFS=$'\t' read -r name exe; do
    [ -n "$name" ] || continue
    start=$(date +%s.%N)
    (
        cd "$repo" &&
            RAWSNOOP_REQUIRE_BPF=1 RAWSNOOP_FOREIGN_PREBUILT=1 RUST_BACKTRACE=1 exec timeout -k 10 "$limit" \
                "$exe" --test-threads=1 --show-output "${extra[@]}"
    ) > "$name.out" 2>&1 < /dev/null
    echo $? > "$name.rc"
    end=$(date +%s.%N)
    echo "$start $end" > "$name.time"
done < tests

echo "rawsnoop-vm: tests end" > /dev/kmsg 2>/dev/null
dmesg > dmesg 2>/dev/null
sync
echo ok > done
