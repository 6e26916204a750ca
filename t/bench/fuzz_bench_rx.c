/*
 * libFuzzer target: imgate-bench's streaming reader on arbitrary server
 * bytes, in its three modes. The first byte picks the mode and a split
 * point; the input fed whole and fed in two pieces must give the same
 * events and the same verdict, since a peer chooses how its bytes arrive.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"

#define MAX_EVS 256

struct rec {
	size_t n;
	uint64_t sum; /* a digest of every event seen */
};

static int
record(void *arg, const struct bench_rx_ev *ev)
{
	struct rec *r = arg;

	r->n++;
	r->sum = r->sum * 31 + (uint64_t)ev->kind * 7 + (uint64_t)ev->op +
	         ev->len + ev->ts_us + (uint64_t)ev->has_ts + ev->u32;
	return r->n >= MAX_EVS ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bench_rx rx;
	struct rec a = {0, 0}, b = {0, 0};
	const char *wa = NULL, *wb = NULL;
	size_t split;
	int mode, ra, rb;

	if (size < 1)
		return 0;
	mode = data[0] % 3;
	split = size > 1 ? data[0] % (size - 1) : 0;
	data++;
	size--;

	bench_rx_init(&rx, mode, 4096);
	ra = bench_rx_feed(&rx, data, size, record, &a, &wa);

	bench_rx_init(&rx, mode, 4096);
	rb = bench_rx_feed(&rx, data, split, record, &b, &wb);
	if (rb == 0)
		rb = bench_rx_feed(&rx, data + split, size - split, record, &b,
		                   &wb);
	if (ra != rb || a.n != b.n || a.sum != b.sum)
		abort();
	if (ra == -1 && (wa == NULL) != (wb == NULL))
		abort();
	return 0;
}
