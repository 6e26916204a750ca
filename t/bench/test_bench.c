/*
 * Check suite for imgate-bench's library: the histogram, the RESULT line,
 * timestamps and the streaming reader.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "bench/bench.h"
#include "common/proto.h"

/* ---------------------------------------------------------------------- */
/* Histogram */

START_TEST(hist_buckets_cover_and_order)
{
	uint64_t v;
	size_t i, prev = 0;

	/* Every value lands in a bucket whose bounds contain it. */
	for (v = 0; v < 200000; v += (v < 1000 ? 1 : 7)) {
		i = bench_hist_index(v);
		ck_assert_uint_lt(i, BENCH_HIST_BUCKETS);
		ck_assert_uint_ge(i, prev);
		ck_assert_uint_le(v, bench_hist_bucket_high(i));
		if (i > 0)
			ck_assert_uint_gt(v, bench_hist_bucket_high(i - 1));
		prev = i;
	}
	ck_assert_uint_eq(bench_hist_index(UINT64_MAX), BENCH_HIST_BUCKETS - 1);
	ck_assert_uint_eq(bench_hist_bucket_high(BENCH_HIST_BUCKETS - 1),
	                  UINT64_MAX);
	for (v = 1; v < (1ull << 62); v = v * 3 + 1) {
		i = bench_hist_index(v);
		ck_assert_uint_le(v, bench_hist_bucket_high(i));
		ck_assert_uint_gt(v, bench_hist_bucket_high(i - 1));
	}
}
END_TEST

START_TEST(hist_resolution)
{
	uint64_t v, hi;

	/* A bucket is never wider than 1/64 of its lower bound. */
	for (v = 128; v < 100000000; v = v * 5 / 4) {
		hi = bench_hist_bucket_high(bench_hist_index(v));
		ck_assert_uint_le(hi - v, v / 64);
	}
	/* Below 128, exact. */
	for (v = 0; v < 128; v++)
		ck_assert_uint_eq(bench_hist_bucket_high(bench_hist_index(v)),
		                  v);
}
END_TEST

START_TEST(hist_percentiles)
{
	struct bench_hist h;
	uint64_t v, p;

	bench_hist_init(&h);
	ck_assert_uint_eq(bench_hist_percentile(&h, 50), 0);
	for (v = 1; v <= 100; v++)
		bench_hist_add(&h, v);
	ck_assert_uint_eq(h.n, 100);
	ck_assert_uint_eq(h.min, 1);
	ck_assert_uint_eq(h.max, 100);
	ck_assert_uint_eq(h.sum, 5050);
	ck_assert_uint_eq(bench_hist_percentile(&h, 50), 50);
	ck_assert_uint_eq(bench_hist_percentile(&h, 90), 90);
	ck_assert_uint_eq(bench_hist_percentile(&h, 99), 99);
	ck_assert_uint_eq(bench_hist_percentile(&h, 100), 100);
	ck_assert_uint_eq(bench_hist_percentile(&h, 0), 1);

	/* 1000 samples at 10 ms, 10 at 1 s: p99 stays at 10 ms. */
	bench_hist_init(&h);
	for (v = 0; v < 1000; v++)
		bench_hist_add(&h, 10000);
	for (v = 0; v < 10; v++)
		bench_hist_add(&h, 1000000);
	p = bench_hist_percentile(&h, 99);
	ck_assert_uint_ge(p, 10000);
	ck_assert_uint_le(p, 10000 + 10000 / 64);
	p = bench_hist_percentile(&h, 99.9);
	ck_assert_uint_ge(p, 1000000);
	ck_assert_uint_eq(bench_hist_percentile(&h, 100), 1000000);
	/* Never above the largest sample, though its bucket is wider. */
	bench_hist_init(&h);
	bench_hist_add(&h, 1000001);
	ck_assert_uint_eq(bench_hist_percentile(&h, 50), 1000001);
}
END_TEST

START_TEST(hist_merge)
{
	struct bench_hist a, b;
	uint64_t v;

	bench_hist_init(&a);
	bench_hist_init(&b);
	for (v = 1; v <= 50; v++)
		bench_hist_add(&a, v);
	for (v = 51; v <= 100; v++)
		bench_hist_add(&b, v);
	bench_hist_merge(&a, &b);
	ck_assert_uint_eq(a.n, 100);
	ck_assert_uint_eq(a.min, 1);
	ck_assert_uint_eq(a.max, 100);
	ck_assert_uint_eq(bench_hist_percentile(&a, 50), 50);
	/* An empty histogram changes nothing, min included. */
	bench_hist_init(&b);
	bench_hist_merge(&a, &b);
	ck_assert_uint_eq(a.min, 1);
	ck_assert_uint_eq(a.n, 100);
	bench_hist_merge(&b, &a);
	ck_assert_uint_eq(b.min, 1);
	ck_assert_uint_eq(b.max, 100);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Counters and the RESULT line */

static const char *
field(const char *line, const char *name, char *out, size_t len)
{
	char key[64];
	const char *p;
	size_t n;

	snprintf(key, sizeof(key), " %s=", name);
	p = strstr(line, key);
	if (p == NULL)
		return NULL;
	p += strlen(key);
	n = strcspn(p, " ");
	if (n >= len)
		n = len - 1;
	memcpy(out, p, n);
	out[n] = '\0';
	return out;
}

START_TEST(result_line)
{
	struct bench_stats s, t;
	char line[2048], v[64];
	uint64_t i;
	int n;

	bench_stats_init(&s);
	s.c.up = 10;
	s.c.up_total = 10;
	s.c.deliveries = 1000;
	s.c.t_start = 1000000;
	s.c.t_last_up = 2000000;
	s.c.t_first_delivery = 5000000;
	s.c.t_last_delivery = 7000000;
	s.c.fail[BENCH_FAIL_REFUSED] = 3;
	s.c.fail[BENCH_FAIL_KICKED] = 2;
	for (i = 1; i <= 100; i++)
		bench_hist_add(&s.lat, i * 100);
	bench_hist_add(&s.connect, 42);

	n = bench_result_format(line, sizeof(line), "recv", &s, 9.5);
	ck_assert_int_eq(n, (int)strlen(line));
	ck_assert(strncmp(line, "RESULT mode=recv ", 17) == 0);
	ck_assert_str_eq(field(line, "conns", v, sizeof(v)), "10");
	ck_assert_str_eq(field(line, "deliveries", v, sizeof(v)), "1000");
	/* 1000 deliveries over the 2 s between the first and the last. */
	ck_assert_str_eq(field(line, "rate", v, sizeof(v)), "500.0");
	/* Within one bucket (1/64) above the exact 5000. */
	ck_assert_uint_ge(
	    strtoull(field(line, "p50_us", v, sizeof(v)), NULL, 10), 5000);
	ck_assert_uint_le(strtoull(v, NULL, 10), 5000 + 5000 / 64);
	ck_assert_str_eq(field(line, "max_us", v, sizeof(v)), "10000");
	ck_assert_str_eq(field(line, "failures", v, sizeof(v)), "5");
	ck_assert_str_eq(field(line, "fail_refused", v, sizeof(v)), "3");
	ck_assert_str_eq(field(line, "fail_kicked", v, sizeof(v)), "2");
	ck_assert_ptr_null(field(line, "fail_timeout", v, sizeof(v)));
	ck_assert_str_eq(field(line, "connect_rate", v, sizeof(v)), "10.0");
	ck_assert_str_eq(field(line, "connect_p50_us", v, sizeof(v)), "42");
	ck_assert_str_eq(field(line, "elapsed_s", v, sizeof(v)), "9.500");
	s.c.cpu_us = 1250000;
	bench_result_format(line, sizeof(line), "recv", &s, 9.5);
	ck_assert_str_eq(field(line, "cpu_s", v, sizeof(v)), "1.25");

	/* hold reports the connect rate; pub the 2xx answers per second. */
	bench_result_format(line, sizeof(line), "hold", &s, 9.5);
	ck_assert_str_eq(field(line, "rate", v, sizeof(v)), "10.0");
	s.c.ok = 50;
	bench_result_format(line, sizeof(line), "pub", &s, 5);
	ck_assert_str_eq(field(line, "rate", v, sizeof(v)), "10.0");

	/* Truncation: the length of the whole line is still returned. */
	n = bench_result_format(line, 20, "recv", &s, 1);
	ck_assert_int_gt(n, 19);
	ck_assert_uint_eq(strlen(line), 19);

	/* Merging two processes. */
	bench_stats_init(&t);
	t.c.up = 5;
	t.c.deliveries = 500;
	t.c.t_start = 500000;
	t.c.t_first_delivery = 4000000;
	t.c.t_last_delivery = 6000000;
	t.c.fail[BENCH_FAIL_REFUSED] = 1;
	bench_hist_add(&t.lat, 1);
	t.c.cpu_us = 750000;
	bench_stats_merge(&t, &s);
	ck_assert_uint_eq(t.c.up, 15);
	ck_assert_uint_eq(t.c.deliveries, 1500);
	ck_assert_uint_eq(t.c.t_start, 500000);
	ck_assert_uint_eq(t.c.t_first_delivery, 4000000);
	ck_assert_uint_eq(t.c.t_last_delivery, 7000000);
	ck_assert_uint_eq(t.c.fail[BENCH_FAIL_REFUSED], 4);
	ck_assert_uint_eq(t.c.cpu_us, 2000000);
	ck_assert_uint_eq(bench_failures(&t.c), 6);
	ck_assert_uint_eq(t.lat.n, 101);
	ck_assert_uint_eq(t.lat.min, 1);
	ck_assert_str_eq(bench_fail_name(BENCH_FAIL_ADDR), "addr");
	ck_assert_str_eq(bench_fail_name(-1), "unknown");
	ck_assert_str_eq(bench_fail_name(BENCH_FAIL__COUNT), "unknown");
}
END_TEST

/* ---------------------------------------------------------------------- */
/* Timestamps */

START_TEST(timestamps)
{
	char buf[64];
	uint64_t ts;

	ck_assert_int_eq(bench_ts_parse("1732579200123456 xx", 19, &ts), 1);
	ck_assert_uint_eq(ts, 1732579200123456ull);
	ck_assert_int_eq(bench_ts_parse("42", 2, &ts), 1);
	ck_assert_uint_eq(ts, 42);
	ck_assert_int_eq(bench_ts_parse("42", 1, &ts), 1);
	ck_assert_uint_eq(ts, 4);
	ck_assert_int_eq(bench_ts_parse("x42", 3, &ts), 0);
	ck_assert_int_eq(bench_ts_parse("", 0, &ts), 0);
	ck_assert_int_eq(bench_ts_parse("1234567890123456789", 19, &ts), 1);
	ck_assert_uint_eq(ts, 1234567890123456789ull);
	ck_assert_int_eq(bench_ts_parse("12345678901234567890", 20, &ts), 0);

	ck_assert_uint_eq(bench_ts_message(buf, 30, 1732579200123456ull), 30);
	ck_assert(memcmp(buf, "1732579200123456 xxxxxxxxxxxxx", 30) == 0);
	ck_assert_int_eq(bench_ts_parse(buf, 30, &ts), 1);
	ck_assert_uint_eq(ts, 1732579200123456ull);
	ck_assert_uint_eq(bench_ts_message(buf, 17, 1732579200123456ull), 0);
	ck_assert_uint_eq(bench_ts_message(buf, 18, 1732579200123456ull), 18);
	ck_assert_uint_eq(bench_ts_message(buf, 0, 1), 0);
	ck_assert_uint_gt(bench_now_us(), 1500000000000000ull);
}
END_TEST

/* ---------------------------------------------------------------------- */
/* The streaming reader */

#define MAX_EVS 64

struct rec {
	int n;
	struct bench_rx_ev ev[MAX_EVS];
	int stop_at; /* return -1 on this event (1-based); 0 = never */
};

static int
record(void *arg, const struct bench_rx_ev *ev)
{
	struct rec *r = arg;

	ck_assert_int_lt(r->n, MAX_EVS);
	r->ev[r->n++] = *ev;
	return r->n == r->stop_at ? -1 : 0;
}

/* Feed buf whole, then byte by byte, then in 7-byte pieces: same events. */
static int
feed_ways(int mode, const uint8_t *buf, size_t len, struct rec *out,
          const char **why)
{
	struct bench_rx rx;
	struct rec a, b;
	size_t i, k;
	int rc, rc1 = 0, rc2 = 0;
	const char *w1 = NULL, *w2 = NULL;

	memset(out, 0, sizeof(*out));
	bench_rx_init(&rx, mode, 4096);
	rc = bench_rx_feed(&rx, buf, len, record, out, why);

	memset(&a, 0, sizeof(a));
	bench_rx_init(&rx, mode, 4096);
	for (i = 0; i < len && rc1 == 0; i++)
		rc1 = bench_rx_feed(&rx, buf + i, 1, record, &a, &w1);
	memset(&b, 0, sizeof(b));
	bench_rx_init(&rx, mode, 4096);
	for (i = 0; i < len && rc2 == 0; i += k) {
		k = len - i < 7 ? len - i : 7;
		rc2 = bench_rx_feed(&rx, buf + i, k, record, &b, &w2);
	}
	ck_assert_int_eq(rc1, rc);
	ck_assert_int_eq(rc2, rc);
	ck_assert_int_eq(a.n, out->n);
	ck_assert_int_eq(b.n, out->n);
	ck_assert(memcmp(a.ev, out->ev, sizeof(a.ev[0]) * (size_t)a.n) == 0);
	ck_assert(memcmp(b.ev, out->ev, sizeof(b.ev[0]) * (size_t)b.n) == 0);
	if (rc == -1) {
		ck_assert_str_eq(w1, *why);
		ck_assert_str_eq(w2, *why);
	}
	return rc;
}

static size_t
goim(uint8_t *p, int ver, int op, int seq, const char *body, size_t len)
{
	proto_header_write(p, len, ver, op, seq);
	memcpy(p + PROTO_HEADER_LEN, body, len);
	return PROTO_HEADER_LEN + len;
}

/* An unmasked server frame header. */
static size_t
wsh(uint8_t *p, int fin, int op, uint64_t len)
{
	size_t n = 2;
	int i;

	p[0] = (uint8_t)((fin ? 0x80 : 0) | op);
	if (len < 126) {
		p[1] = (uint8_t)len;
	} else if (len <= 0xffff) {
		p[1] = 126;
		p[2] = (uint8_t)(len >> 8);
		p[3] = (uint8_t)len;
		n = 4;
	} else {
		p[1] = 127;
		for (i = 0; i < 8; i++)
			p[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		n = 10;
	}
	return n;
}

START_TEST(rx_goim_tcp)
{
	uint8_t buf[8192];
	uint8_t cnt[4] = {0, 0, 0x30, 0x39};
	struct rec r;
	const char *why = NULL;
	size_t n = 0;

	n += goim(buf + n, 1, PROTO_OP_AUTH_REPLY, 1, "", 0);
	n += goim(buf + n, 1, PROTO_OP_HEARTBEAT_REPLY, 7, (char *)cnt, 4);
	n += goim(buf + n, 1, 1000, 0, "1732579200123456 hello", 22);
	n += goim(buf + n, 1, 1000, 0, "no stamp", 8);
	/* A TCP batch as goim writes it: the inner frames alone. */
	n += goim(buf + n, 1, 1001, 0, "12", 2);
	/* An op-9 container on TCP is opened too. */
	proto_batch_header(buf + n, 2 * PROTO_HEADER_LEN + 3, 1, 0);
	n += PROTO_HEADER_LEN;
	n += goim(buf + n, 1, 1002, 0, "9", 1);
	n += goim(buf + n, 1, 1003, 0, "88", 2);
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_TCP, buf, n, &r, &why), 0);
	ck_assert_int_eq(r.n, 7);
	ck_assert_int_eq(r.ev[0].kind, BENCH_RX_FRAME);
	ck_assert_int_eq(r.ev[0].op, PROTO_OP_AUTH_REPLY);
	ck_assert_int_eq(r.ev[0].seq, 1);
	ck_assert_int_eq(r.ev[0].len, 0);
	ck_assert_int_eq(r.ev[0].has_ts, 0);
	ck_assert_int_eq(r.ev[1].op, PROTO_OP_HEARTBEAT_REPLY);
	ck_assert_int_eq(r.ev[1].seq, 7);
	ck_assert_uint_eq(r.ev[1].u32, 12345);
	ck_assert_int_eq(r.ev[2].op, 1000);
	ck_assert_int_eq(r.ev[2].ver, 1);
	ck_assert_int_eq(r.ev[2].has_ts, 1);
	ck_assert_uint_eq(r.ev[2].ts_us, 1732579200123456ull);
	ck_assert_int_eq(r.ev[2].len, 22);
	ck_assert_int_eq(r.ev[3].has_ts, 0);
	ck_assert_int_eq(r.ev[4].has_ts, 1);
	ck_assert_uint_eq(r.ev[4].ts_us, 12);
	ck_assert_uint_eq(r.ev[4].u32, 0); /* fewer than 4 bytes */
	ck_assert_int_eq(r.ev[5].op, 1002);
	ck_assert_uint_eq(r.ev[5].ts_us, 9);
	ck_assert_int_eq(r.ev[6].op, 1003);
	ck_assert_uint_eq(r.ev[6].ts_us, 88);
}
END_TEST

START_TEST(rx_goim_tcp_invalid)
{
	uint8_t buf[64];
	struct rec r;
	const char *why = NULL;

	/* headerLen other than 16 */
	goim(buf, 1, 1000, 0, "abc", 3);
	buf[5] = 17;
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_TCP, buf, 19, &r, &why), -1);
	ck_assert_str_eq(why, "bad header length");
	ck_assert_int_eq(r.n, 0);
	/* packLen below 16 */
	goim(buf, 1, 1000, 0, "", 0);
	buf[3] = 15;
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_TCP, buf, 16, &r, &why), -1);
	ck_assert_str_eq(why, "short pack length");
	/* negative packLen */
	goim(buf, 1, 1000, 0, "", 0);
	buf[0] = 0x80;
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_TCP, buf, 16, &r, &why), -1);
	ck_assert_str_eq(why, "negative pack length");
	/* body above the limit (4096 here): judged on the header alone */
	proto_header_write(buf, 4097, 1, 1000, 0);
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_TCP, buf, 16, &r, &why), -1);
	ck_assert_str_eq(why, "body too large");
	/* exactly at the limit: waits for the body */
	proto_header_write(buf, 4096, 1, 1000, 0);
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_TCP, buf, 16, &r, &why), 0);
	ck_assert_int_eq(r.n, 0);
}
END_TEST

START_TEST(rx_stop)
{
	uint8_t buf[256];
	struct bench_rx rx;
	struct rec r;
	const char *why = "unset";
	size_t n = 0;

	n += goim(buf + n, 1, 1000, 0, "1", 1);
	n += goim(buf + n, 1, 1000, 0, "2", 1);
	n += goim(buf + n, 1, 1000, 0, "3", 1);
	memset(&r, 0, sizeof(r));
	r.stop_at = 2;
	bench_rx_init(&rx, BENCH_RX_GOIM_TCP, 4096);
	ck_assert_int_eq(bench_rx_feed(&rx, buf, n, record, &r, &why), -1);
	ck_assert_ptr_null(why);
	ck_assert_int_eq(r.n, 2);
}
END_TEST

START_TEST(rx_goim_ws)
{
	uint8_t buf[8192], inner[256];
	struct rec r;
	const char *why = NULL;
	size_t n = 0, k = 0, m;

	/* auth reply: one frame in one binary message */
	m = goim(inner, 1, PROTO_OP_AUTH_REPLY, 1, "", 0);
	n += wsh(buf + n, 1, 2, m);
	memcpy(buf + n, inner, m);
	n += m;
	/* a batch: outer op-9 header + two pushes */
	k = PROTO_HEADER_LEN;
	k += goim(inner + k, 1, 1000, 0, "1700000000000001 a", 18);
	k += goim(inner + k, 1, 1000, 0, "1700000000000002 b", 18);
	proto_batch_header(inner, k - PROTO_HEADER_LEN, 1, 0);
	n += wsh(buf + n, 1, 2, k);
	memcpy(buf + n, inner, k);
	n += k;
	/* a push split over two fragments with a ping between them */
	m = goim(inner, 1, 1000, 0, "1700000000000003", 16);
	n += wsh(buf + n, 0, 2, 10);
	memcpy(buf + n, inner, 10);
	n += 10;
	n += wsh(buf + n, 1, 9, 3);
	memcpy(buf + n, "abc", 3);
	n += 3;
	n += wsh(buf + n, 1, 0, m - 10);
	memcpy(buf + n, inner + 10, m - 10);
	n += m - 10;
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_WS, buf, n, &r, &why), 0);
	ck_assert_int_eq(r.n, 5);
	ck_assert_int_eq(r.ev[0].op, PROTO_OP_AUTH_REPLY);
	ck_assert_int_eq(r.ev[1].op, 1000);
	ck_assert_uint_eq(r.ev[1].ts_us, 1700000000000001ull);
	ck_assert_uint_eq(r.ev[2].ts_us, 1700000000000002ull);
	ck_assert_int_eq(r.ev[3].kind, BENCH_RX_PING);
	ck_assert_int_eq(r.ev[4].kind, BENCH_RX_FRAME);
	ck_assert_uint_eq(r.ev[4].ts_us, 1700000000000003ull);

	/* a goim frame cut by the end of its message */
	m = goim(inner, 1, 1000, 0, "12345", 5);
	n = wsh(buf, 1, 2, m - 2);
	memcpy(buf + n, inner, m - 2);
	n += m - 2;
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_WS, buf, n, &r, &why), -1);
	ck_assert_str_eq(why, "goim frame cut at a message end");
	ck_assert_int_eq(r.n, 0);
}
END_TEST

START_TEST(rx_ws_plain)
{
	static uint8_t buf[200000];
	struct rec r;
	const char *why = NULL;
	size_t n = 0;

	n += wsh(buf + n, 1, 1, 20);
	memcpy(buf + n, "1732579200123456 abc", 20);
	n += 20;
	/* 16-bit length, binary, no stamp */
	n += wsh(buf + n, 1, 2, 300);
	memset(buf + n, 'y', 300);
	n += 300;
	/* 64-bit length, text, fragmented, a pong and a ping between */
	n += wsh(buf + n, 0, 1, 3);
	memcpy(buf + n, "123", 3);
	n += 3;
	n += wsh(buf + n, 1, 10, 0);
	n += wsh(buf + n, 1, 9, 0);
	n += wsh(buf + n, 1, 0, 70000);
	memset(buf + n, '4', 2);
	memset(buf + n + 2, ' ', 70000 - 2);
	n += 70000;
	/* an empty message, then a close */
	n += wsh(buf + n, 1, 2, 0);
	n += wsh(buf + n, 1, 8, 2);
	buf[n++] = 0x03;
	buf[n++] = 0xe8;
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, n, &r, &why), 0);
	ck_assert_int_eq(r.n, 6);
	ck_assert_int_eq(r.ev[0].kind, BENCH_RX_MESSAGE);
	ck_assert_int_eq(r.ev[0].op, 1);
	ck_assert_int_eq(r.ev[0].len, 20);
	ck_assert_int_eq(r.ev[0].has_ts, 1);
	ck_assert_uint_eq(r.ev[0].ts_us, 1732579200123456ull);
	ck_assert_int_eq(r.ev[1].op, 2);
	ck_assert_int_eq(r.ev[1].len, 300);
	ck_assert_int_eq(r.ev[1].has_ts, 0);
	ck_assert_int_eq(r.ev[2].kind, BENCH_RX_PING);
	ck_assert_int_eq(r.ev[3].kind, BENCH_RX_MESSAGE);
	ck_assert_int_eq(r.ev[3].op, 1);
	ck_assert_int_eq(r.ev[3].len, 70003);
	ck_assert_int_eq(r.ev[3].has_ts, 1);
	ck_assert_uint_eq(r.ev[3].ts_us, 12344);
	ck_assert_int_eq(r.ev[4].len, 0);
	ck_assert_int_eq(r.ev[4].has_ts, 0);
	ck_assert_int_eq(r.ev[5].kind, BENCH_RX_CLOSE);
}
END_TEST

START_TEST(rx_ws_invalid)
{
	uint8_t buf[64];
	struct rec r;
	const char *why = NULL;
	size_t n;

	/* masked by the server */
	buf[0] = 0x81;
	buf[1] = 0x80 | 1;
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, 2, &r, &why), -1);
	ck_assert_str_eq(why, "masked frame from the server");
	/* reserved bits */
	buf[0] = 0xc1;
	buf[1] = 0;
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, 2, &r, &why), -1);
	ck_assert_str_eq(why, "reserved bits set");
	/* unknown opcode */
	n = wsh(buf, 1, 3, 0);
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, n, &r, &why), -1);
	ck_assert_str_eq(why, "unknown opcode");
	/* continuation first */
	n = wsh(buf, 1, 0, 0);
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, n, &r, &why), -1);
	ck_assert_str_eq(why, "continuation without a message");
	/* a new message inside a fragmented one */
	n = wsh(buf, 0, 1, 0);
	n += wsh(buf + n, 1, 2, 0);
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, n, &r, &why), -1);
	ck_assert_str_eq(why, "new message inside a fragmented one");
	/* fragmented or long control frames */
	n = wsh(buf, 0, 9, 0);
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, n, &r, &why), -1);
	ck_assert_str_eq(why, "bad control frame");
	n = wsh(buf, 1, 9, 126);
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, n, &r, &why), -1);
	ck_assert_str_eq(why, "bad control frame");
	/* a 64-bit length with the top bit set */
	n = wsh(buf, 1, 2, 1ull << 63);
	ck_assert_int_eq(feed_ways(BENCH_RX_WS_PLAIN, buf, n, &r, &why), -1);
	ck_assert_str_eq(why, "frame length overflow");
	/* invalid goim inside a valid WebSocket message */
	n = wsh(buf, 1, 2, 16);
	proto_header_write(buf + n, 0, 1, 1000, 0);
	buf[n + 5] = 20;
	ck_assert_int_eq(feed_ways(BENCH_RX_GOIM_WS, buf, n + 16, &r, &why),
	                 -1);
	ck_assert_str_eq(why, "bad header length");
}
END_TEST

static Suite *
bench_suite(void)
{
	Suite *s = suite_create("bench");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, hist_buckets_cover_and_order);
	tcase_add_test(tc, hist_resolution);
	tcase_add_test(tc, hist_percentiles);
	tcase_add_test(tc, hist_merge);
	tcase_add_test(tc, result_line);
	tcase_add_test(tc, timestamps);
	tcase_add_test(tc, rx_goim_tcp);
	tcase_add_test(tc, rx_goim_tcp_invalid);
	tcase_add_test(tc, rx_stop);
	tcase_add_test(tc, rx_goim_ws);
	tcase_add_test(tc, rx_ws_plain);
	tcase_add_test(tc, rx_ws_invalid);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(bench_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
