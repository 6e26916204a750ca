/*
 * libFuzzer target for the rpc decoder: the input is fed in chunks whose
 * sizes come from the input's first byte, every message is walked with
 * the map helpers, and the outcome must match feeding it all at once.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "rpc/rpc_codec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile size_t sink;

/* Depth is bounded by the decoder's max_depth, so recursion is bounded. */
static void
walk(const msgpack_object *o)
{
	static const char *const keys[] = {
	    "key", "mid", "room_id", "server", "cookie", "token", "hb", ""};
	const char *s;
	size_t n;
	int64_t v;
	uint64_t u;
	int b;

	switch (o->type) {
	case MSGPACK_OBJECT_ARRAY:
		sink += rpc_params_map(o) != NULL;
		for (uint32_t i = 0; i < o->via.array.size; i++)
			walk(&o->via.array.ptr[i]);
		break;
	case MSGPACK_OBJECT_MAP:
		for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
			sink += rpc_map_get(o, keys[k]) != NULL;
			if (rpc_map_str(o, keys[k], &s, &n) == 0 && n > 0)
				sink += (uint8_t)s[n - 1];
			if (rpc_map_int(o, keys[k], &v) == 0)
				sink += (size_t)v;
			if (rpc_map_uint(o, keys[k], &u) == 0)
				sink += (size_t)u;
			if (rpc_map_bool(o, keys[k], &b) == 0)
				sink += (size_t)b;
			sink += rpc_map_array(o, keys[k]) != NULL;
		}
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			walk(&o->via.map.ptr[i].key);
			walk(&o->via.map.ptr[i].val);
		}
		break;
	case MSGPACK_OBJECT_STR:
		sink += rpc_obj_streq(o, "Connect");
		break;
	default:
		break;
	}
}

static void
walk_message(const struct rpc_message *m)
{
	if (m->type == RPC_RESPONSE) {
		walk(m->error);
		walk(m->result);
	} else {
		if (m->method_len > 0)
			sink += (uint8_t)m->method[m->method_len - 1];
		walk(m->params);
	}
}

/* Decode everything; returns the message count, or -1 on error. */
static long
run(const uint8_t *data, size_t size, unsigned seed, int chunked)
{
	struct rpc_limits lim = {.max_message = 4096, .max_depth = 8};
	struct rpc_decoder *d = rpc_decoder_new(&lim);
	struct rpc_message m;
	long count = 0;
	size_t off = 0;
	int r = 0;

	if (d == NULL)
		abort();
	while (off < size && r != -1) {
		size_t n = size - off;

		if (chunked) {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 16) % 64;
			if (n > size - off)
				n = size - off;
		}
		if (rpc_decoder_feed(d, data + off, n, NULL, 0) == -1) {
			r = -1;
			break;
		}
		off += n;
		while ((r = rpc_decoder_next(d, &m, NULL, 0)) == 1) {
			walk_message(&m);
			count++;
		}
	}
	rpc_decoder_free(d);
	return r == -1 ? -1 : count;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	long whole, chunked;

	if (size < 1)
		return 0;
	chunked = run(data + 1, size - 1, data[0], 1);
	whole = run(data + 1, size - 1, 0, 0);
	/* Chunking must not change whether the stream is valid, nor what. */
	if ((whole == -1) != (chunked == -1) ||
	    (whole != -1 && whole != chunked))
		abort();
	return 0;
}
