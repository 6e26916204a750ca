/*
 * hist: latency histogram and counters of imgate-bench. See bench.h.
 *
 * Hand-written: HdrHistogram has no Debian C package, and this needs only
 * add, merge and percentiles over a fixed bucket layout that can be sent
 * between processes as it is.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"

void
bench_hist_init(struct bench_hist *h)
{
	memset(h, 0, sizeof(*h));
	h->min = UINT64_MAX;
}

size_t
bench_hist_index(uint64_t v)
{
	int msb, shift;

	if (v < BENCH_HIST_LINEAR)
		return (size_t)v;
	msb = 63 - __builtin_clzll(v); /* >= 7 */
	shift = msb - 6;
	return BENCH_HIST_LINEAR + (size_t)(msb - 7) * BENCH_HIST_SUB +
	       (size_t)((v >> shift) - BENCH_HIST_SUB);
}

uint64_t
bench_hist_bucket_high(size_t i)
{
	size_t k;
	int msb, shift;
	uint64_t m;

	if (i < BENCH_HIST_LINEAR)
		return i;
	if (i >= BENCH_HIST_BUCKETS)
		return UINT64_MAX;
	k = i - BENCH_HIST_LINEAR;
	msb = 7 + (int)(k / BENCH_HIST_SUB);
	shift = msb - 6;
	m = BENCH_HIST_SUB + k % BENCH_HIST_SUB;
	if (m + 1 == 2 * BENCH_HIST_SUB && msb == 63)
		return UINT64_MAX;
	return ((m + 1) << shift) - 1;
}

void
bench_hist_add(struct bench_hist *h, uint64_t v)
{
	h->b[bench_hist_index(v)]++;
	h->n++;
	h->sum += v;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void
bench_hist_merge(struct bench_hist *into, const struct bench_hist *from)
{
	size_t i;

	if (from->n == 0)
		return;
	for (i = 0; i < BENCH_HIST_BUCKETS; i++)
		into->b[i] += from->b[i];
	into->n += from->n;
	into->sum += from->sum;
	if (from->min < into->min)
		into->min = from->min;
	if (from->max > into->max)
		into->max = from->max;
}

uint64_t
bench_hist_percentile(const struct bench_hist *h, double pct)
{
	uint64_t rank, seen = 0, v;
	size_t i;

	if (h->n == 0)
		return 0;
	if (pct <= 0)
		return h->min;
	if (pct >= 100)
		return h->max;
	/* The smallest rank r (1-based) with r >= pct% of n. */
	rank = (uint64_t)((double)h->n * pct / 100.0);
	if ((double)rank < (double)h->n * pct / 100.0)
		rank++;
	if (rank == 0)
		rank = 1;
	for (i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= rank)
			break;
	}
	v = bench_hist_bucket_high(i);
	if (v > h->max)
		v = h->max;
	if (v < h->min)
		v = h->min;
	return v;
}

static const char *const fail_names[BENCH_FAIL__COUNT] = {
    [BENCH_FAIL_REFUSED] = "refused", [BENCH_FAIL_CONNECT] = "connect",
    [BENCH_FAIL_ADDR] = "addr",       [BENCH_FAIL_FD] = "fd",
    [BENCH_FAIL_TIMEOUT] = "timeout", [BENCH_FAIL_HANDSHAKE] = "handshake",
    [BENCH_FAIL_AUTH] = "auth",       [BENCH_FAIL_CLOSED] = "closed",
    [BENCH_FAIL_KICKED] = "kicked",   [BENCH_FAIL_PROTO] = "proto",
    [BENCH_FAIL_WRITE] = "write",     [BENCH_FAIL_HTTP] = "http",
};

const char *
bench_fail_name(int reason)
{
	if (reason < 0 || reason >= BENCH_FAIL__COUNT)
		return "unknown";
	return fail_names[reason];
}

static void
merge_min(uint64_t *into, uint64_t from)
{
	if (from != 0 && (*into == 0 || from < *into))
		*into = from;
}

static void
merge_max(uint64_t *into, uint64_t from)
{
	if (from > *into)
		*into = from;
}

void
bench_counters_merge(struct bench_counters *into,
                     const struct bench_counters *from)
{
	int i;

	into->target += from->target;
	into->started += from->started;
	into->up += from->up;
	into->up_total += from->up_total;
	into->deliveries += from->deliveries;
	into->no_ts += from->no_ts;
	into->other_ops += from->other_ops;
	into->hb_sent += from->hb_sent;
	into->hb_replies += from->hb_replies;
	into->bytes_in += from->bytes_in;
	into->sent += from->sent;
	into->ok += from->ok;
	into->behind += from->behind;
	into->settled += from->settled;
	into->cpu_us += from->cpu_us;
	merge_min(&into->t_start, from->t_start);
	merge_min(&into->t_first_up, from->t_first_up);
	merge_max(&into->t_last_up, from->t_last_up);
	merge_min(&into->t_first_delivery, from->t_first_delivery);
	merge_max(&into->t_last_delivery, from->t_last_delivery);
	for (i = 0; i < BENCH_FAIL__COUNT; i++)
		into->fail[i] += from->fail[i];
}

void
bench_stats_init(struct bench_stats *s)
{
	memset(&s->c, 0, sizeof(s->c));
	bench_hist_init(&s->lat);
	bench_hist_init(&s->connect);
}

void
bench_stats_merge(struct bench_stats *into, const struct bench_stats *from)
{
	bench_counters_merge(&into->c, &from->c);
	bench_hist_merge(&into->lat, &from->lat);
	bench_hist_merge(&into->connect, &from->connect);
}

uint64_t
bench_failures(const struct bench_counters *c)
{
	uint64_t n = 0;
	int i;

	for (i = 0; i < BENCH_FAIL__COUNT; i++)
		n += c->fail[i];
	return n;
}

static double
per_second(uint64_t n, uint64_t from_us, uint64_t to_us)
{
	if (n == 0)
		return 0;
	if (from_us == 0 || to_us <= from_us)
		return (double)n; /* all within one clock tick */
	return (double)n * 1e6 / (double)(to_us - from_us);
}

int
bench_result_format(char *buf, size_t len, const char *mode,
                    const struct bench_stats *s, double elapsed_s)
{
	const struct bench_counters *c = &s->c;
	double rate, connect_rate;
	size_t off = 0;
	int n, i;

	/* Connections come up from the first connect on, not the first up. */
	connect_rate = per_second(c->up_total, c->t_start, c->t_last_up);
	if (strcmp(mode, "pub") == 0)
		rate = elapsed_s > 0 ? (double)c->ok / elapsed_s : 0;
	else if (strcmp(mode, "hold") == 0)
		rate = connect_rate;
	else
		rate = per_second(c->deliveries, c->t_first_delivery,
		                  c->t_last_delivery);
	n = snprintf(
	    buf, len,
	    "RESULT mode=%s conns=%llu deliveries=%llu rate=%.1f "
	    "p50_us=%llu p90_us=%llu p99_us=%llu max_us=%llu "
	    "failures=%llu connect_rate=%.1f connect_p50_us=%llu "
	    "connect_p99_us=%llu hb_sent=%llu hb_replies=%llu "
	    "no_ts=%llu sent=%llu ok=%llu behind=%llu elapsed_s=%.3f "
	    "cpu_s=%.2f",
	    mode, (unsigned long long)c->up, (unsigned long long)c->deliveries,
	    rate, (unsigned long long)bench_hist_percentile(&s->lat, 50),
	    (unsigned long long)bench_hist_percentile(&s->lat, 90),
	    (unsigned long long)bench_hist_percentile(&s->lat, 99),
	    (unsigned long long)s->lat.max,
	    (unsigned long long)bench_failures(c), connect_rate,
	    (unsigned long long)bench_hist_percentile(&s->connect, 50),
	    (unsigned long long)bench_hist_percentile(&s->connect, 99),
	    (unsigned long long)c->hb_sent, (unsigned long long)c->hb_replies,
	    (unsigned long long)c->no_ts, (unsigned long long)c->sent,
	    (unsigned long long)c->ok, (unsigned long long)c->behind, elapsed_s,
	    (double)c->cpu_us / 1e6);
	if (n < 0)
		return n;
	off = (size_t)n;
	for (i = 0; i < BENCH_FAIL__COUNT; i++) {
		if (c->fail[i] == 0)
			continue;
		n = snprintf(off < len ? buf + off : NULL,
		             off < len ? len - off : 0, " fail_%s=%llu",
		             bench_fail_name(i),
		             (unsigned long long)c->fail[i]);
		if (n < 0)
			return n;
		off += (size_t)n;
	}
	return (int)off;
}

int
bench_ts_parse(const void *buf, size_t len, uint64_t *ts_us)
{
	const uint8_t *p = buf;
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
		if (i == 19)
			return 0; /* would not fit: not ours */
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	if (i == 0)
		return 0;
	*ts_us = v;
	return 1;
}

size_t
bench_ts_message(char *buf, size_t size, uint64_t ts_us)
{
	int n;

	if (size == 0)
		return 0;
	n = snprintf(buf, size, "%llu ", (unsigned long long)ts_us);
	if (n < 0)
		return 0;
	if ((size_t)n >= size)
		return 0;
	memset(buf + n, 'x', size - (size_t)n);
	return size;
}

uint64_t
bench_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}
