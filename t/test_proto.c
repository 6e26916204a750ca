/* check suite for src/common/proto: goim v2 frames. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/proto.h"

/* A raw header with every field chosen, so invalid ones can be built. */
static void
raw_header(uint8_t h[16], uint32_t pack, uint16_t hlen, uint16_t ver,
           uint32_t op, uint32_t seq)
{
	proto_put_u32(h, pack);
	h[4] = hlen >> 8;
	h[5] = hlen & 0xff;
	h[6] = ver >> 8;
	h[7] = ver & 0xff;
	proto_put_u32(h + 8, op);
	proto_put_u32(h + 12, seq);
}

/* Drain an evbuffer into a malloc'd flat copy. */
static uint8_t *
flatten(struct evbuffer *b, size_t *len)
{
	uint8_t *p;

	*len = evbuffer_get_length(b);
	p = malloc(*len + 1);
	ck_assert_ptr_nonnull(p);
	ck_assert_int_eq(evbuffer_remove(b, p, *len), (int)*len);
	return p;
}

START_TEST(test_header_bytes)
{
	static const uint8_t want[16] = {0x00, 0x00, 0x00, 0x15, 0x00, 0x10,
	                                 0x00, 0x01, 0x00, 0x00, 0x00, 0x07,
	                                 0x00, 0x00, 0x01, 0x02};
	uint8_t h[16];

	proto_header_write(h, 5, 1, PROTO_OP_AUTH, 0x102);
	ck_assert_mem_eq(h, want, 16);

	proto_batch_header(h, 100, 1, 0);
	ck_assert_uint_eq(proto_get_u32(h), 116);
	ck_assert_uint_eq(proto_get_u32(h + 8), PROTO_OP_RAW);
}
END_TEST

START_TEST(test_op_values)
{
	/* The numbers goim clients send; a renumbering breaks them all. */
	ck_assert_int_eq(PROTO_OP_HANDSHAKE, 0);
	ck_assert_int_eq(PROTO_OP_HEARTBEAT, 2);
	ck_assert_int_eq(PROTO_OP_HEARTBEAT_REPLY, 3);
	ck_assert_int_eq(PROTO_OP_SEND_MSG_REPLY, 5);
	ck_assert_int_eq(PROTO_OP_DISCONNECT_REPLY, 6);
	ck_assert_int_eq(PROTO_OP_AUTH, 7);
	ck_assert_int_eq(PROTO_OP_AUTH_REPLY, 8);
	ck_assert_int_eq(PROTO_OP_RAW, 9);
	ck_assert_int_eq(PROTO_OP_PROTO_FINISH, 11);
	ck_assert_int_eq(PROTO_OP_CHANGE_ROOM, 12);
	ck_assert_int_eq(PROTO_OP_SUB, 14);
	ck_assert_int_eq(PROTO_OP_UNSUB_REPLY, 17);
	ck_assert_int_eq(PROTO_HEADER_LEN, 16);
	ck_assert_int_eq(PROTO_DEFAULT_MAX_BODY, 4096);
}
END_TEST

START_TEST(test_round_trip)
{
	static const struct {
		int ver, op, seq;
		const char *body;
	} cases[] = {
	    {1, PROTO_OP_AUTH, 1, "{\"mid\":123,\"room_id\":\"live://1000\"}"},
	    {1, PROTO_OP_HEARTBEAT, 2, ""},
	    {-1, -7, -2147483647 - 1, "x"},
	    {32767, 2147483647, 2147483647, "max"},
	    {0, 1000, 0, "custom op"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		struct proto_frame f;
		const char *why = NULL;
		size_t blen = strlen(cases[i].body), len;
		uint8_t *flat;

		ck_assert_int_eq(proto_encode(b, cases[i].ver, cases[i].op,
		                              cases[i].seq, cases[i].body,
		                              blen),
		                 0);
		flat = flatten(b, &len);
		ck_assert_uint_eq(len, 16 + blen);
		ck_assert_int_eq(proto_parse(flat, len, 4096, &f, &why), 1);
		ck_assert_ptr_null(why);
		ck_assert_uint_eq(f.pack_len, len);
		ck_assert_int_eq(f.ver, cases[i].ver);
		ck_assert_int_eq(f.op, cases[i].op);
		ck_assert_int_eq(f.seq, cases[i].seq);
		ck_assert_uint_eq(f.body_len, blen);
		ck_assert_ptr_eq(f.body, flat + 16);
		ck_assert_mem_eq(f.body, cases[i].body, blen);
		free(flat);
		evbuffer_free(b);
	}
}
END_TEST

START_TEST(test_encode_null_body_and_limits)
{
	struct evbuffer *b = evbuffer_new();

	ck_assert_int_eq(proto_encode(b, 1, PROTO_OP_AUTH_REPLY, 3, NULL, 0),
	                 0);
	ck_assert_uint_eq(evbuffer_get_length(b), 16);
	/* Refused before the body is read: len cannot fit in packLen. */
	ck_assert_int_eq(
	    proto_encode(b, 1, 4, 0, NULL, (size_t)PROTO_MAX_BODY + 1), -1);
	ck_assert_uint_eq(evbuffer_get_length(b), 16);
	/* A frozen buffer takes nothing: all or nothing. */
	evbuffer_freeze(b, 0);
	ck_assert_int_eq(proto_encode(b, 1, 4, 0, "abc", 3), -1);
	ck_assert_uint_eq(evbuffer_get_length(b), 16);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_heartbeat_body)
{
	struct evbuffer *b = evbuffer_new();
	uint8_t body[PROTO_HEARTBEAT_BODY_LEN], *flat;
	struct proto_frame f;
	size_t len;

	proto_put_u32(body, 0x01020304);
	ck_assert_uint_eq(body[0], 1);
	ck_assert_uint_eq(body[3], 4);
	ck_assert_uint_eq(proto_get_u32(body), 0x01020304);
	proto_put_u32(body, 4000000000u);
	ck_assert_int_eq(
	    proto_encode(b, 1, PROTO_OP_HEARTBEAT_REPLY, 9, body, sizeof(body)),
	    0);
	flat = flatten(b, &len);
	ck_assert_int_eq(proto_parse(flat, len, 4096, &f, NULL), 1);
	ck_assert_uint_eq(f.pack_len, 20);
	ck_assert_uint_eq(f.body_len, 4);
	ck_assert_uint_eq(proto_get_u32(f.body), 4000000000u);
	free(flat);
	evbuffer_free(b);
}
END_TEST

/* Every validation branch, in flat memory and on an evbuffer. */
static const struct {
	uint32_t pack;
	uint16_t hlen;
	size_t max_body;
	int rc; /* with a complete frame (or header only when invalid) */
	const char *why;
} vcases[] = {
    {16, 15, 4096, -1, "bad header length"},
    {16, 17, 4096, -1, "bad header length"},
    {16, 0, 4096, -1, "bad header length"},
    {16, 0xfff0, 4096, -1, "bad header length"},
    {15, 16, 4096, -1, "short pack length"},
    {0, 16, 4096, -1, "short pack length"},
    {0x80000000u, 16, 4096, -1, "negative pack length"},
    {0xffffffffu, 16, 4096, -1, "negative pack length"},
    {0x80000000u, 16, SIZE_MAX, -1, "negative pack length"},
    {16 + 4097, 16, 4096, -1, "body too large"},
    {16 + 11, 16, 10, -1, "body too large"},
    {17, 16, 0, -1, "body too large"},
    {0x7fffffffu, 16, 4096, -1, "body too large"},
    {16 + 4096, 16, 4096, 1, NULL}, /* exactly max */
    {16 + 10, 16, 10, 1, NULL},
    {16, 16, 0, 1, NULL}, /* empty body, even with max 0 */
    {16, 16, 4096, 1, NULL},
};

START_TEST(test_validation_flat)
{
	size_t i;

	for (i = 0; i < sizeof(vcases) / sizeof(vcases[0]); i++) {
		size_t body = vcases[i].rc == 1 ? vcases[i].pack - 16 : 0;
		uint8_t *buf = calloc(1, 16 + body);
		struct proto_frame f;
		const char *why = NULL;

		raw_header(buf, vcases[i].pack, vcases[i].hlen, 1, 4, 5);
		/* Only the header present: invalid ones are judged already. */
		ck_assert_int_eq(
		    proto_parse(buf, 16, vcases[i].max_body, &f, &why),
		    vcases[i].rc == 1 && body > 0 ? 0 : vcases[i].rc);
		if (vcases[i].rc == -1) {
			ck_assert_ptr_nonnull(why);
			ck_assert_str_eq(why, vcases[i].why);
		} else {
			ck_assert_ptr_null(why);
		}
		ck_assert_int_eq(
		    proto_parse(buf, 16 + body, vcases[i].max_body, &f, NULL),
		    vcases[i].rc);
		if (vcases[i].rc == 1) {
			ck_assert_uint_eq(f.pack_len, vcases[i].pack);
			ck_assert_uint_eq(f.body_len, body);
			ck_assert_int_eq(f.ver, 1);
			ck_assert_int_eq(f.op, 4);
			ck_assert_int_eq(f.seq, 5);
			/* One byte short of the frame: need more. */
			if (body > 0)
				ck_assert_int_eq(proto_parse(buf, 16 + body - 1,
				                             vcases[i].max_body,
				                             &f, NULL),
				                 0);
		}
		/* Fewer than 16 bytes can never be judged. */
		ck_assert_int_eq(
		    proto_parse(buf, 15, vcases[i].max_body, &f, NULL), 0);
		ck_assert_int_eq(
		    proto_parse(buf, 0, vcases[i].max_body, &f, NULL), 0);
		free(buf);
	}
}
END_TEST

START_TEST(test_validation_evbuffer)
{
	size_t i;

	for (i = 0; i < sizeof(vcases) / sizeof(vcases[0]); i++) {
		struct evbuffer *b = evbuffer_new();
		struct proto_frame f;
		const char *why = NULL;
		uint8_t h[16];

		raw_header(h, vcases[i].pack, vcases[i].hlen, 1, 4, 5);
		evbuffer_add(b, h, 15);
		ck_assert_int_eq(proto_peek(b, vcases[i].max_body, &f, &why),
		                 0);
		evbuffer_add(b, h + 15, 1);
		if (vcases[i].rc == -1) {
			/* The body never arrives: the header alone decides. */
			ck_assert_int_eq(
			    proto_peek(b, vcases[i].max_body, &f, &why), -1);
			ck_assert_str_eq(why, vcases[i].why);
			ck_assert_uint_eq(evbuffer_get_length(b), 16);
		} else {
			size_t body = vcases[i].pack - 16;
			uint8_t *zero = calloc(1, body + 1);

			if (body > 0) {
				ck_assert_int_eq(
				    proto_peek(b, vcases[i].max_body, &f, &why),
				    0);
				evbuffer_add(b, zero, body);
			}
			ck_assert_int_eq(
			    proto_peek(b, vcases[i].max_body, &f, &why), 1);
			ck_assert_uint_eq(f.body_len, body);
			ck_assert_mem_eq(f.body, zero, body);
			proto_consume(b, &f);
			ck_assert_uint_eq(evbuffer_get_length(b), 0);
			free(zero);
		}
		evbuffer_free(b);
	}
}
END_TEST

START_TEST(test_huge_pack_not_buffered)
{
	/*
	 * With an unbounded max a 2 GB packLen is a legal header and peek
	 * waits; with the configured max it is refused from 16 bytes.
	 */
	struct evbuffer *b = evbuffer_new();
	struct proto_frame f;
	const char *why = NULL;
	uint8_t h[16];

	raw_header(h, 0x7fffffffu, 16, 1, 4, 0);
	evbuffer_add(b, h, 16);
	evbuffer_add(b, "partial body", 12);
	ck_assert_int_eq(proto_peek(b, SIZE_MAX, &f, &why), 0);
	ck_assert_ptr_null(why);
	ck_assert_int_eq(proto_peek(b, PROTO_DEFAULT_MAX_BODY, &f, &why), -1);
	ck_assert_str_eq(why, "body too large");
	ck_assert_uint_eq(evbuffer_get_length(b), 28);
	evbuffer_free(b);
}
END_TEST

/* A stream of frames with varied sizes, and what it should decode to. */
#define NSTREAM 12

static struct evbuffer *
make_stream(void)
{
	struct evbuffer *b = evbuffer_new();
	char body[600];
	int i;

	for (i = 0; i < NSTREAM; i++) {
		size_t len = (size_t)(i * 47) % sizeof(body);

		memset(body, 'a' + i, len);
		ck_assert_int_eq(proto_encode(b, 1, 100 + i, i, body, len), 0);
	}
	return b;
}

static void
check_frame(const struct proto_frame *f, int i)
{
	size_t len = (size_t)(i * 47) % 600, k;

	ck_assert_int_eq(f->op, 100 + i);
	ck_assert_int_eq(f->seq, i);
	ck_assert_int_eq(f->ver, 1);
	ck_assert_uint_eq(f->body_len, len);
	for (k = 0; k < len; k++)
		ck_assert_uint_eq(f->body[k], (uint8_t)('a' + i));
}

/* Drain every complete frame in, checking it against the stream. */
static void
drain_frames(struct evbuffer *in, int *seen)
{
	struct proto_frame f;
	const char *why = NULL;
	int rc;

	while ((rc = proto_peek(in, 4096, &f, &why)) == 1) {
		ck_assert_int_lt(*seen, NSTREAM);
		check_frame(&f, *seen);
		proto_consume(in, &f);
		(*seen)++;
	}
	ck_assert_int_eq(rc, 0);
}

START_TEST(test_stream_one_buffer)
{
	struct evbuffer *in = make_stream();
	int seen = 0;

	drain_frames(in, &seen);
	ck_assert_int_eq(seen, NSTREAM);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	evbuffer_free(in);
}
END_TEST

START_TEST(test_stream_byte_at_a_time)
{
	struct evbuffer *src = make_stream(), *in = evbuffer_new();
	uint8_t *flat;
	size_t len, i;
	int seen = 0;

	flat = flatten(src, &len);
	for (i = 0; i < len; i++) {
		/* Separate chains, so frames straddle buffer segments. */
		evbuffer_add_reference(in, flat + i, 1, NULL, NULL);
		drain_frames(in, &seen);
	}
	ck_assert_int_eq(seen, NSTREAM);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	evbuffer_free(in);
	evbuffer_free(src);
	free(flat);
}
END_TEST

START_TEST(test_stream_random_splits)
{
	struct evbuffer *src = make_stream();
	uint8_t *flat;
	size_t len;
	int round;

	flat = flatten(src, &len);
	srandom(12345);
	for (round = 0; round < 200; round++) {
		struct evbuffer *in = evbuffer_new();
		size_t off = 0;
		int seen = 0;

		while (off < len) {
			size_t n = 1 + (size_t)random() % 700;

			if (n > len - off)
				n = len - off;
			if (round % 2)
				evbuffer_add_reference(in, flat + off, n, NULL,
				                       NULL);
			else
				evbuffer_add(in, flat + off, n);
			off += n;
			drain_frames(in, &seen);
		}
		ck_assert_int_eq(seen, NSTREAM);
		ck_assert_uint_eq(evbuffer_get_length(in), 0);
		evbuffer_free(in);
	}
	evbuffer_free(src);
	free(flat);
}
END_TEST

START_TEST(test_stream_stops_at_bad_frame)
{
	struct evbuffer *in = evbuffer_new();
	struct proto_frame f;
	const char *why = NULL;
	uint8_t h[16];

	proto_encode(in, 1, PROTO_OP_HEARTBEAT, 1, NULL, 0);
	raw_header(h, 16, 15, 1, 2, 2);
	evbuffer_add(in, h, 16);
	proto_encode(in, 1, PROTO_OP_HEARTBEAT, 3, NULL, 0);
	ck_assert_int_eq(proto_peek(in, 4096, &f, &why), 1);
	ck_assert_int_eq(f.seq, 1);
	proto_consume(in, &f);
	ck_assert_int_eq(proto_peek(in, 4096, &f, &why), -1);
	ck_assert_str_eq(why, "bad header length");
	ck_assert_uint_eq(evbuffer_get_length(in), 32);
	evbuffer_free(in);
}
END_TEST

/* The inner bytes of a batch: three frames as a room push would carry. */
static struct evbuffer *
make_inner(void)
{
	struct evbuffer *b = evbuffer_new();

	proto_encode(b, 1, PROTO_OP_SEND_MSG_REPLY, 0, "hello", 5);
	proto_encode(b, 1, PROTO_OP_SEND_MSG_REPLY, 0, NULL, 0);
	proto_encode(b, 1, 1000, 0, "world!", 6);
	return b;
}

static void
check_inner(const struct proto_frame *f, int i)
{
	static const char *bodies[] = {"hello", "", "world!"};
	static const int ops[] = {PROTO_OP_SEND_MSG_REPLY,
	                          PROTO_OP_SEND_MSG_REPLY, 1000};

	ck_assert_int_eq(f->op, ops[i]);
	ck_assert_int_eq(f->ver, 1);
	ck_assert_int_eq(f->seq, 0);
	ck_assert_uint_eq(f->body_len, strlen(bodies[i]));
	ck_assert_mem_eq(f->body, bodies[i], f->body_len);
}

START_TEST(test_batch_tcp)
{
	/* TCP: the inner bytes alone, read back as ordinary frames. */
	struct evbuffer *in = make_inner();
	struct proto_frame f;
	int i;

	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(proto_peek(in, 4096, &f, NULL), 1);
		check_inner(&f, i);
		proto_consume(in, &f);
	}
	ck_assert_int_eq(proto_peek(in, 4096, &f, NULL), 0);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	evbuffer_free(in);
}
END_TEST

START_TEST(test_batch_ws)
{
	/* WebSocket: one message, outer op-9 header + the same inner bytes. */
	struct evbuffer *inner = make_inner();
	size_t ilen, mlen;
	uint8_t *ibytes = flatten(inner, &ilen), *msg;
	struct proto_frame outer, f;
	struct proto_iter it;
	const char *why = NULL;
	int i;

	msg = malloc(16 + ilen);
	proto_batch_header(msg, ilen, 1, 0);
	memcpy(msg + 16, ibytes, ilen);
	mlen = 16 + ilen;

	ck_assert_int_eq(proto_parse(msg, mlen, 4096, &outer, &why), 1);
	ck_assert_int_eq(outer.op, PROTO_OP_RAW);
	ck_assert_uint_eq(outer.pack_len, mlen);
	ck_assert_uint_eq(outer.body_len, ilen);

	proto_iter_init(&it, outer.body, outer.body_len, 4096);
	for (i = 0; i < 3; i++) {
		ck_assert_int_eq(proto_iter_next(&it, &f, &why), 1);
		check_inner(&f, i);
	}
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 0);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 0);

	/* Empty batch. */
	proto_iter_init(&it, NULL, 0, 4096);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 0);

	free(msg);
	free(ibytes);
	evbuffer_free(inner);
}
END_TEST

START_TEST(test_batch_corrupt)
{
	struct evbuffer *inner = make_inner();
	size_t ilen;
	uint8_t *b = flatten(inner, &ilen);
	struct proto_iter it;
	struct proto_frame f;
	const char *why;

	/* Second frame (at 16 + 5) gets headerLen 17. */
	b[21 + 5] = 17;
	proto_iter_init(&it, b, ilen, 4096);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 1);
	check_inner(&f, 0);
	why = NULL;
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), -1);
	ck_assert_str_eq(why, "bad header length");
	/* Stays failed: never resyncs and never looks finished. */
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), -1);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), -1);
	b[21 + 5] = 16;

	/* Last frame cut one byte short. */
	proto_iter_init(&it, b, ilen - 1, 4096);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 1);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 1);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), -1);
	ck_assert_str_eq(why, "truncated frame");

	/* Trailing bytes shorter than a header. */
	proto_iter_init(&it, b, 16 + 5 + 3, 4096);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 1);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), -1);
	ck_assert_str_eq(why, "truncated frame");

	/* Inner body over the iterator's limit. */
	proto_iter_init(&it, b, ilen, 5);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 1);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), 1);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), -1);
	ck_assert_str_eq(why, "body too large");

	/* Inner packLen pointing past the batch. */
	proto_put_u32(b, 0x7fffff00u);
	proto_iter_init(&it, b, ilen, SIZE_MAX);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), -1);
	ck_assert_str_eq(why, "truncated frame");

	/* Inner negative packLen. */
	proto_put_u32(b, 0xfffffff0u);
	proto_iter_init(&it, b, ilen, SIZE_MAX);
	ck_assert_int_eq(proto_iter_next(&it, &f, &why), -1);
	ck_assert_str_eq(why, "negative pack length");

	free(b);
	evbuffer_free(inner);
}
END_TEST

static int
ops_of(const char *s, int32_t *ops, size_t max, size_t *n)
{
	return proto_parse_ops((const uint8_t *)s, strlen(s), ops, max, n);
}

START_TEST(test_parse_ops_good)
{
	int32_t ops[8];
	size_t n = 99;

	ck_assert_int_eq(ops_of("1000,1001", ops, 8, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(ops[0], 1000);
	ck_assert_int_eq(ops[1], 1001);

	ck_assert_int_eq(ops_of(" 1000 ,\t1001 , 7", ops, 8, &n), 0);
	ck_assert_uint_eq(n, 3);
	ck_assert_int_eq(ops[2], 7);

	ck_assert_int_eq(ops_of("1,,2,", ops, 8, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(ops[1], 2);

	ck_assert_int_eq(ops_of("", ops, 8, &n), 0);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(ops_of(" , ,", ops, 8, &n), 0);
	ck_assert_uint_eq(n, 0);

	ck_assert_int_eq(ops_of("2147483647,-2147483648,-5,0", ops, 8, &n), 0);
	ck_assert_uint_eq(n, 4);
	ck_assert_int_eq(ops[0], INT32_MAX);
	ck_assert_int_eq(ops[1], INT32_MIN);
	ck_assert_int_eq(ops[2], -5);
	ck_assert_int_eq(ops[3], 0);

	/* Exactly max items. */
	ck_assert_int_eq(ops_of("1,2,3", ops, 3, &n), 0);
	ck_assert_uint_eq(n, 3);

	/* The body is not NUL-terminated: len is the end. */
	ck_assert_int_eq(
	    proto_parse_ops((const uint8_t *)"12,34xyz", 4, ops, 8, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(ops[0], 12);
	ck_assert_int_eq(ops[1], 3);
}
END_TEST

START_TEST(test_parse_ops_bad)
{
	static const char *bad[] = {
	    "abc",        "1 2",
	    "1;2",        "-",
	    "1-",         "--1",
	    "+1",         "0x10",
	    "2147483648", "-2147483649",
	    "1,2,x",      "1.5",
	    "1\n",        "99999999999999999999999",
	    "1,- 2",
	};
	int32_t ops[8];
	size_t i, n;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		n = 99;
		ck_assert_msg(ops_of(bad[i], ops, 8, &n) == -1,
		              "accepted \"%s\"", bad[i]);
		ck_assert_uint_eq(n, 0);
	}
	/* More than max. */
	n = 99;
	ck_assert_int_eq(ops_of("1,2,3", ops, 2, &n), -1);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(ops_of("1", ops, 0, &n), -1);
	ck_assert_int_eq(ops_of("", ops, 0, &n), 0);
	/* An embedded NUL is junk, not an end. */
	ck_assert_int_eq(
	    proto_parse_ops((const uint8_t *)"1\0002", 3, ops, 8, &n), -1);
}
END_TEST

static Suite *
proto_suite(void)
{
	Suite *s = suite_create("proto");
	TCase *tc = tcase_create("core");

	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_header_bytes);
	tcase_add_test(tc, test_op_values);
	tcase_add_test(tc, test_round_trip);
	tcase_add_test(tc, test_encode_null_body_and_limits);
	tcase_add_test(tc, test_heartbeat_body);
	tcase_add_test(tc, test_validation_flat);
	tcase_add_test(tc, test_validation_evbuffer);
	tcase_add_test(tc, test_huge_pack_not_buffered);
	tcase_add_test(tc, test_stream_one_buffer);
	tcase_add_test(tc, test_stream_byte_at_a_time);
	tcase_add_test(tc, test_stream_random_splits);
	tcase_add_test(tc, test_stream_stops_at_bad_frame);
	tcase_add_test(tc, test_batch_tcp);
	tcase_add_test(tc, test_batch_ws);
	tcase_add_test(tc, test_batch_corrupt);
	tcase_add_test(tc, test_parse_ops_good);
	tcase_add_test(tc, test_parse_ops_bad);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(proto_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
