/*
 * libFuzzer target: the WebSocket frame reader. The same client stream is
 * fed whole and in chunks of pseudo-random sizes; both runs must deliver
 * the same messages and end the same way.
 *
 * Input: byte 0 selects the mode and the chunking seed, byte 1 the
 * message limit. In raw mode the rest is the stream itself; in record
 * mode it is a list of {flags, length, payload} records turned into
 * masked frames, so the fuzzer reaches fragmentation and control frames
 * without having to discover the framing first.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 70000

struct run {
	uint64_t digest; /* FNV-1a over every delivered message */
	int count;
	int end_rc;
	int close_code;
};

static void
mix(uint64_t *h, const void *p, size_t n)
{
	const uint8_t *b = p;
	size_t i;

	for (i = 0; i < n; i++) {
		*h ^= b[i];
		*h *= 0x100000001b3ULL;
	}
}

/* Drain every complete message; 0 when more input is needed. */
static int
drain(struct ws_reader *r, struct evbuffer *in, struct evbuffer *out,
      size_t max, struct run *run)
{
	struct ws_message m;
	const char *why = NULL;
	int rc, cc = 0;

	while ((rc = ws_read_message(r, in, max, &m, &cc, &why)) > 0) {
		if (m.data == NULL || m.len > max + 125)
			abort();
		mix(&run->digest, &m.opcode, sizeof(m.opcode));
		mix(&run->digest, &m.close_code, sizeof(m.close_code));
		mix(&run->digest, m.data, m.len);
		run->count++;
		if (rc == 2 && ws_control_reply(out, &m) != 0)
			abort();
		ws_message_done(r, in, &m);
	}
	if (rc == -1) {
		if (why == NULL ||
		    (cc != WS_CLOSE_PROTOCOL && cc != WS_CLOSE_INVALID_DATA &&
		     cc != WS_CLOSE_TOO_BIG))
			abort();
		run->end_rc = -1;
		run->close_code = cc;
		if (ws_write_close(out, cc, why) != 0)
			abort();
		return -1;
	}
	return 0;
}

static void
feed(const uint8_t *s, size_t n, size_t max, uint32_t seed, int chunked,
     struct run *run)
{
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	struct ws_reader r;
	size_t off = 0, step;

	if (in == NULL || out == NULL)
		abort();
	memset(run, 0, sizeof(*run));
	run->digest = 0xcbf29ce484222325ULL;
	ws_reader_init(&r);
	while (off < n) {
		if (chunked) {
			seed = seed * 1103515245u + 12345u;
			step = 1 + (seed >> 16) % 37;
			if (step > n - off)
				step = n - off;
		} else {
			step = n;
		}
		evbuffer_add(in, s + off, step);
		off += step;
		if (drain(&r, in, out, max, run) == -1)
			break;
	}
	ws_reader_reset(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}

/* Record mode: {flags: fin<<7 | opcode, len, payload[len]}... */
static size_t
build(const uint8_t *d, size_t n, uint8_t *dst, size_t cap)
{
	static const uint8_t mask[4] = {0xa5, 0x01, 0x7e, 0x33};
	struct evbuffer *b = evbuffer_new();
	size_t off = 0, len, total;

	if (b == NULL)
		abort();
	while (off + 2 <= n) {
		uint8_t flags = d[off];

		len = d[off + 1];
		off += 2;
		if (len > n - off)
			len = n - off;
		/* Occasionally a big frame to cross the 16/64-bit lengths. */
		if ((flags & 0x70) == 0x70)
			len = len * 300 < n - off ? len * 300 : n - off;
		ws_write_masked_frame(b, flags & 0x0f, flags >> 7, d + off, len,
		                      mask);
		off += len;
	}
	total = evbuffer_get_length(b);
	if (total > cap)
		total = cap;
	evbuffer_remove(b, dst, total);
	evbuffer_free(b);
	return total;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t stream[MAX_INPUT * 2];
	struct run whole, chunks;
	const uint8_t *s;
	size_t n, max;

	if (size < 2 || size > MAX_INPUT)
		return 0;
	max = data[1] < 200 ? (size_t)data[1] * 4 : 65536;
	if (data[0] & 1) {
		n = build(data + 2, size - 2, stream, sizeof(stream));
		s = stream;
	} else {
		s = data + 2;
		n = size - 2;
	}
	feed(s, n, max, data[0], 0, &whole);
	feed(s, n, max, data[0], 1, &chunks);
	if (whole.digest != chunks.digest || whole.count != chunks.count ||
	    whole.end_rc != chunks.end_rc ||
	    whole.close_code != chunks.close_code)
		abort();
	return 0;
}
