// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * demo: the bpf-ringbuf-demo's ringbuf-reserve-submit user side, on a bpftool skeleton of
 * the demo's own object (tests/foreign/ringbuf-reserve-submit.bpf.o): the libbpf start-up
 * reference for `compare/run`. Prints the demo's columns, one line per exec, flushed per line.
 */
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <bpf/libbpf.h>
#include "demo.skel.h"

struct event {
	int pid;
	char comm[16];
	char filename[512];
};

static volatile sig_atomic_t exiting;
static void on_sig(int s) { (void)s; exiting = 1; }

static int handle_event(void *ctx, void *data, size_t len)
{
	const struct event *e = data;
	char ts[32];
	time_t t = time(NULL);
	(void)ctx; (void)len;
	strftime(ts, sizeof(ts), "%H:%M:%S", localtime(&t));
	printf("%-8s %-5s %-7d %-16s %s\n", ts, "EXEC", e->pid, e->comm, e->filename);
	return 0;
}

int main(void)
{
	setlinebuf(stdout);
	signal(SIGINT, on_sig);
	signal(SIGTERM, on_sig);
	struct ringbuf_reserve_submit_bpf *skel = ringbuf_reserve_submit_bpf__open_and_load();
	if (!skel) { fprintf(stderr, "demo: open/load failed\n"); return 1; }
	if (ringbuf_reserve_submit_bpf__attach(skel)) { fprintf(stderr, "demo: attach failed\n"); return 1; }
	struct ring_buffer *rb = ring_buffer__new(bpf_map__fd(skel->maps.rb), handle_event, NULL, NULL);
	if (!rb) { fprintf(stderr, "demo: ring_buffer__new failed\n"); return 1; }
	printf("%-8s %-5s %-7s %-16s %s\n", "TIME", "EVENT", "PID", "COMM", "FILENAME");
	while (!exiting) {
		int err = ring_buffer__poll(rb, 100);
		if (err < 0 && err != -4)
			break;
	}
	ring_buffer__free(rb);
	ringbuf_reserve_submit_bpf__destroy(skel);
	return 0;
}
