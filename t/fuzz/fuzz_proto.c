/*
 * libFuzzer target for src/common/proto: the input is what a client sends,
 * fed to proto_peek over an evbuffer in chunks whose sizes the input also
 * picks, then walked with proto_iter as an op-9 body, then read as an op
 * list. Every frame returned must lie inside what was given.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_frame(const struct proto_frame *f, size_t max_body)
{
	if (f->pack_len < PROTO_HEADER_LEN ||
	    f->body_len != f->pack_len - PROTO_HEADER_LEN ||
	    f->body_len > max_body)
		abort();
}

static void
fuzz_stream(const uint8_t *data, size_t size, size_t max_body)
{
	struct evbuffer *in = evbuffer_new();
	struct proto_frame f;
	const char *why;
	size_t off = 0;
	uint8_t sink = 0;
	int rc = 0;

	if (in == NULL)
		return;
	while (off < size && rc != -1) {
		/* The first byte of each chunk picks its length. */
		size_t n = 1 + data[off] % 64;

		if (n > size - off)
			n = size - off;
		evbuffer_add(in, data + off, n);
		off += n;
		while ((rc = proto_peek(in, max_body, &f, &why)) == 1) {
			check_frame(&f, max_body);
			if (evbuffer_get_length(in) < f.pack_len)
				abort();
			/* Touch the whole body so ASan checks the range. */
			for (uint32_t i = 0; i < f.body_len; i++)
				sink ^= f.body[i];
			proto_consume(in, &f);
		}
		if (rc == -1 && why == NULL)
			abort();
	}
	(void)sink;
	evbuffer_free(in);
}

static void
fuzz_batch(const uint8_t *data, size_t size, size_t max_body)
{
	struct proto_iter it;
	struct proto_frame f;
	const char *why;
	size_t total = 0;
	int rc;

	proto_iter_init(&it, data, size, max_body);
	while ((rc = proto_iter_next(&it, &f, &why)) == 1) {
		check_frame(&f, max_body);
		if (f.body < data || f.body + f.body_len > data + size)
			abort();
		total += f.pack_len;
	}
	if (rc == 0 && total != size)
		abort();
	if (rc == -1 && proto_iter_next(&it, &f, &why) != -1)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int32_t ops[16];
	size_t n;

	fuzz_stream(data, size, PROTO_DEFAULT_MAX_BODY);
	fuzz_stream(data, size, 64);
	fuzz_batch(data, size, PROTO_DEFAULT_MAX_BODY);
	if (proto_parse_ops(data, size, ops, 16, &n) == 0 && n > 16)
		abort();
	return 0;
}
