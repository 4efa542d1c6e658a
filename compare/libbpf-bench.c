// SPDX-License-Identifier: (MIT OR Apache-2.0)
/*
 * libbpf-bench: libbpf's own consumers on rawsnoop's bench object, the reference that
 * `compare/run` puts beside `rawsnoop bench`. Not part of rawsnoop (which has no libbpf);
 * built on demand by compare/Makefile where libbpf-dev is installed.
 *
 * Same producer (bpf/prebuilt/bench.bpf.o, one program attached to the getpgid
 * tracepoint), same ring size, record size, batch and wakeup policy as `rawsnoop bench`,
 * and a callback that reads the first 8 bytes of each record. Prints one JSON line with
 * rawsnoop bench's keys.
 *
 *   libbpf-bench --mode drain|concurrent --transport ringbuf-reserve|ringbuf|perfbuf
 *                --wakeup per-record|sampled [--duration S] [--batch N] [--size B]
 *                [--threshold BYTES] [--perf-pages N] [--obj PATH]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <linux/perf_event.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

struct bench_cfg {
	uint32_t pid, batch, size, wakeup_mode;
	uint64_t wakeup_threshold;
};

static const char *mode = "concurrent", *transport = "ringbuf-reserve", *wakeup = "per-record";
static const char *obj_path = "bpf/prebuilt/bench.bpf.o";
static double duration = 2.0;
static uint32_t batch = 100, size = 64, threshold = 256 * 1024, rb_size = 16 * 1024 * 1024;
static int perf_pages = 1024;

struct counter {
	uint64_t records, sum, wakeups;
};

static int ring_cb(void *ctx, void *data, size_t len)
{
	struct counter *c = ctx;
	c->records++;
	if (len >= 8)
		c->sum += *(const uint64_t *)data;
	return 0;
}

static void perf_cb(void *ctx, int cpu, void *data, uint32_t len)
{
	(void)cpu;
	ring_cb(ctx, data, len);
}

static void lost_cb(void *ctx, int cpu, __u64 n)
{
	(void)ctx; (void)cpu; (void)n;
}

/* perf_buffer__new_raw's callback (sampled wakeups: a watermark needs the raw API). */
static enum bpf_perf_event_ret raw_cb(void *ctx, int cpu, struct perf_event_header *h)
{
	(void)cpu;
	if (h->type == PERF_RECORD_SAMPLE) {
		uint32_t len = *(uint32_t *)(h + 1);
		ring_cb(ctx, (char *)(h + 1) + 4, len);
	}
	return LIBBPF_PERF_EVENT_CONT;
}

static double now(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
	cpu_set_t s;
	CPU_ZERO(&s);
	CPU_SET(cpu, &s);
	sched_setaffinity(0, sizeof(s), &s);
}

static int online_cpu(int nth)
{
	cpu_set_t s;
	int seen = 0;
	if (sched_getaffinity(0, sizeof(s), &s))
		return 0;
	for (int i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &s) && seen++ == nth)
			return i;
	return 0;
}

static int is_perf(void) { return !strcmp(transport, "perfbuf"); }
static int sampled(void) { return !strcmp(wakeup, "sampled"); }

static struct ring_buffer *rb;
static struct perf_buffer *pb;
static struct counter cnt;

static void consume_all(void)
{
	uint64_t before;
	do {
		before = cnt.records;
		if (is_perf())
			perf_buffer__consume(pb);
		else
			ring_buffer__consume(rb);
	} while (cnt.records != before);
}

static atomic_int stop;
static double cons_cpu, cons_wall;

static void *consumer(void *arg)
{
	int cpu = *(int *)arg;
	pin(cpu);
	double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
	while (!atomic_load(&stop)) {
		int n = is_perf() ? perf_buffer__poll(pb, 50) : ring_buffer__poll(rb, 50);
		if (n > 0)
			cnt.wakeups++;
	}
	consume_all();
	cons_cpu = now(CLOCK_THREAD_CPUTIME_ID) - c0;
	cons_wall = now(CLOCK_MONOTONIC) - w0;
	return NULL;
}

int main(int argc, char **argv)
{
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];
		if (!strcmp(k, "--mode")) mode = v;
		else if (!strcmp(k, "--transport")) transport = v;
		else if (!strcmp(k, "--wakeup")) wakeup = v;
		else if (!strcmp(k, "--duration")) duration = atof(v);
		else if (!strcmp(k, "--batch")) batch = atoi(v);
		else if (!strcmp(k, "--size")) size = atoi(v);
		else if (!strcmp(k, "--threshold")) threshold = atoi(v);
		else if (!strcmp(k, "--perf-pages")) perf_pages = atoi(v);
		else if (!strcmp(k, "--obj")) obj_path = v;
		else { fprintf(stderr, "libbpf-bench: unknown option %s\n", k); return 2; }
	}
	const char *prog_name = !strcmp(transport, "ringbuf-reserve") ? "bench_ringbuf_reserve"
			      : !strcmp(transport, "ringbuf")	       ? "bench_ringbuf_output"
			      : !strcmp(transport, "perfbuf")	       ? "bench_perfbuf"
								       : NULL;
	if (!prog_name || (strcmp(mode, "drain") && strcmp(mode, "concurrent"))) {
		fprintf(stderr, "libbpf-bench: bad --transport or --mode\n");
		return 2;
	}
	struct bpf_object *obj = bpf_object__open_file(obj_path, NULL);
	if (!obj) { fprintf(stderr, "libbpf-bench: opening %s failed\n", obj_path); return 1; }
	bpf_map__set_max_entries(bpf_object__find_map_by_name(obj, "rb"), rb_size);
	if (bpf_object__load(obj)) { fprintf(stderr, "libbpf-bench: load failed\n"); return 1; }
	int cfg_fd = bpf_object__find_map_fd_by_name(obj, "cfg");
	int stats_fd = bpf_object__find_map_fd_by_name(obj, "stats");
	int ncpu = libbpf_num_possible_cpus();
	uint64_t *stats = calloc(ncpu, 16);
	uint32_t zero = 0;
	struct bench_cfg cfg = { getpid(), batch, size, sampled(), threshold };
	bpf_map_update_elem(cfg_fd, &zero, &cfg, 0);
	bpf_map_update_elem(stats_fd, &zero, stats, 0);

	if (is_perf()) {
		int fd = bpf_object__find_map_fd_by_name(obj, "pb");
		if (sampled()) {
			struct perf_event_attr a = {
				.type = PERF_TYPE_SOFTWARE,
				.config = PERF_COUNT_SW_BPF_OUTPUT,
				.sample_type = PERF_SAMPLE_RAW,
				.watermark = 1,
				.wakeup_watermark = threshold,
			};
			pb = perf_buffer__new_raw(fd, perf_pages, &a, raw_cb, &cnt, NULL);
		} else {
			pb = perf_buffer__new(fd, perf_pages, perf_cb, lost_cb, &cnt, NULL);
		}
		if (!pb) { fprintf(stderr, "libbpf-bench: perf_buffer__new: %s\n", strerror(errno)); return 1; }
	} else {
		rb = ring_buffer__new(bpf_object__find_map_fd_by_name(obj, "rb"), ring_cb, &cnt, NULL);
		if (!rb) { fprintf(stderr, "libbpf-bench: ring_buffer__new: %s\n", strerror(errno)); return 1; }
	}
	struct bpf_link *link = bpf_program__attach(bpf_object__find_program_by_name(obj, prog_name));
	if (!link) { fprintf(stderr, "libbpf-bench: attach failed\n"); return 1; }

	int prod_cpu = online_cpu(0), cons = online_cpu(1);
	double produce_time, consume_time, cpu;
	if (!strcmp(mode, "drain")) {
		/* fill 3/4 of the buffer one record lands in, then time only the consumer */
		uint32_t payload = 8;
		while (payload < size && payload < 4096) payload *= 2;
		uint64_t per_rec = is_perf() ? 8 + (payload + 4 + 7) / 8 * 8 : 8 + payload;
		uint64_t bytes = is_perf() ? (uint64_t)perf_pages * getpagesize() : rb_size;
		uint64_t fill = bytes * 3 / 4 / (per_rec * batch);
		if (!fill) fill = 1;
		pin(cons);
		double t0 = now(CLOCK_MONOTONIC), busy = 0, busy_cpu = 0;
		while (now(CLOCK_MONOTONIC) - t0 < duration) {
			for (uint64_t i = 0; i < fill; i++)
				getpgid(0);
			double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC);
			consume_all();
			busy += now(CLOCK_MONOTONIC) - w0;
			busy_cpu += now(CLOCK_THREAD_CPUTIME_ID) - c0;
		}
		produce_time = now(CLOCK_MONOTONIC) - t0;
		consume_time = busy;
		cpu = busy_cpu;
	} else {
		pthread_t th;
		pthread_create(&th, NULL, consumer, &cons);
		pin(prod_cpu);
		double t0 = now(CLOCK_MONOTONIC);
		while (now(CLOCK_MONOTONIC) - t0 < duration)
			for (int i = 0; i < 16; i++)
				getpgid(0);
		produce_time = now(CLOCK_MONOTONIC) - t0;
		atomic_store(&stop, 1);
		pthread_join(th, NULL);
		consume_time = cons_wall;
		cpu = cons_cpu;
	}
	bpf_link__destroy(link);
	bpf_map_lookup_elem(stats_fd, &zero, stats);
	uint64_t produced = 0, dropped = 0;
	for (int i = 0; i < ncpu; i++) {
		produced += stats[2 * i];
		dropped += stats[2 * i + 1];
	}
	printf("{\"consumer\":\"libbpf\",\"transport\":\"%s\",\"wakeup\":\"%s\",\"mode\":\"%s\","
	       "\"produced_mps\":%.6f,\"consumed_mps\":%.6f,\"dropped_mps\":%.6f,"
	       "\"consumer_ns_per_record\":%.6f,\"wakeups_per_s\":%.6f,\"checksum\":%llu}\n",
	       transport, wakeup, mode, produced / produce_time / 1e6,
	       consume_time > 0 ? cnt.records / consume_time / 1e6 : 0, dropped / produce_time / 1e6,
	       cnt.records ? cpu * 1e9 / cnt.records : 0,
	       consume_time > 0 && strcmp(mode, "drain") ? cnt.wakeups / consume_time : 0,
	       (unsigned long long)(cnt.sum & 0xffff));
	ring_buffer__free(rb);
	perf_buffer__free(pb);
	bpf_object__close(obj);
	return cnt.records == produced ? 0 : 3;
}
