/* check suite for rpc/ codec: decoder limits and shapes, packing, maps. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rpc/rpc_codec.h"

/* A growable byte string the tests pack into. */
struct buf {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void
buf_init(struct buf *b)
{
	msgpack_sbuffer_init(&b->sb);
	msgpack_packer_init(&b->pk, &b->sb, msgpack_sbuffer_write);
}

static void
buf_raw(struct buf *b, const void *p, size_t n)
{
	msgpack_sbuffer_write(&b->sb, p, n);
}

static void
buf_free(struct buf *b)
{
	msgpack_sbuffer_destroy(&b->sb);
}

static void
pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
	rpc_pack_str(pk, k);
	rpc_pack_str(pk, v);
}

/* [0, msgid, method, [{"key": key, "mid": mid}]] */
static void
pack_request(struct buf *b, uint32_t msgid, const char *method, const char *key,
             int64_t mid)
{
	rpc_pack_request_head(&b->pk, msgid, method);
	msgpack_pack_array(&b->pk, 1);
	msgpack_pack_map(&b->pk, 2);
	pack_kv_str(&b->pk, "key", key);
	rpc_pack_str(&b->pk, "mid");
	msgpack_pack_int64(&b->pk, mid);
}

static int
streq(const char *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

/* Feed all of b at once; expect exactly one message and return it. */
static struct rpc_decoder *
decode_one(const struct buf *b, struct rpc_message *m)
{
	struct rpc_decoder *d = rpc_decoder_new(NULL);
	char err[128] = "";

	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(
	    rpc_decoder_feed(d, b->sb.data, b->sb.size, err, sizeof(err)), 0);
	ck_assert_int_eq(rpc_decoder_next(d, m, err, sizeof(err)), 1);
	return d;
}

/* Feed all of b; the message must be refused by feed or by next. */
static void
expect_malformed(const struct buf *b, const struct rpc_limits *lim,
                 const char *why)
{
	struct rpc_decoder *d = rpc_decoder_new(lim);
	struct rpc_message m;
	char err[128] = "";
	int r;

	r = rpc_decoder_feed(d, b->sb.data, b->sb.size, err, sizeof(err));
	if (r == 0)
		r = rpc_decoder_next(d, &m, err, sizeof(err));
	ck_assert_msg(r == -1, "%s: accepted", why);
	ck_assert_msg(strstr(err, why) != NULL, "error \"%s\" lacks \"%s\"",
	              err, why);
	/* The stream stays dead. */
	ck_assert_int_eq(rpc_decoder_feed(d, "\x90", 1, NULL, 0), -1);
	ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), -1);
	rpc_decoder_free(d);
}

START_TEST(test_request_roundtrip)
{
	struct buf b;
	struct rpc_message m;
	struct rpc_decoder *d;
	const msgpack_object *map;
	const char *s;
	size_t n;
	int64_t v;

	buf_init(&b);
	pack_request(&b, 4000000000u, "Connect", "k-1", -7);
	d = decode_one(&b, &m);
	ck_assert_int_eq(m.type, RPC_REQUEST);
	ck_assert_uint_eq(m.msgid, 4000000000u);
	ck_assert(streq(m.method, m.method_len, "Connect"));
	ck_assert_ptr_null(m.error);
	ck_assert_ptr_null(m.result);
	map = rpc_params_map(m.params);
	ck_assert_ptr_nonnull(map);
	ck_assert_int_eq(rpc_map_str(map, "key", &s, &n), 0);
	ck_assert(streq(s, n, "k-1"));
	ck_assert_int_eq(rpc_map_int(map, "mid", &v), 0);
	ck_assert_int_eq(v, -7);
	ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 0);
	rpc_decoder_free(d);
	buf_free(&b);
}
END_TEST

START_TEST(test_response_roundtrip)
{
	struct buf b;
	struct rpc_message m;
	struct rpc_decoder *d;
	int64_t v;

	buf_init(&b);
	rpc_pack_response_head(&b.pk, 9, NULL);
	msgpack_pack_map(&b.pk, 1);
	rpc_pack_str(&b.pk, "hb");
	msgpack_pack_uint32(&b.pk, 240);
	d = decode_one(&b, &m);
	ck_assert_int_eq(m.type, RPC_RESPONSE);
	ck_assert_uint_eq(m.msgid, 9);
	ck_assert_int_eq(m.error->type, MSGPACK_OBJECT_NIL);
	ck_assert_int_eq(rpc_map_int(m.result, "hb", &v), 0);
	ck_assert_int_eq(v, 240);
	ck_assert_ptr_null(m.method);
	ck_assert_ptr_null(m.params);
	rpc_decoder_free(d);
	buf_free(&b);

	buf_init(&b);
	rpc_pack_response_head(&b.pk, 10, "no such key");
	msgpack_pack_nil(&b.pk);
	d = decode_one(&b, &m);
	ck_assert_int_eq(m.type, RPC_RESPONSE);
	ck_assert_uint_eq(m.msgid, 10);
	ck_assert(rpc_obj_streq(m.error, "no such key"));
	ck_assert_int_eq(m.result->type, MSGPACK_OBJECT_NIL);
	rpc_decoder_free(d);
	buf_free(&b);
}
END_TEST

START_TEST(test_notify_roundtrip)
{
	struct buf b;
	struct rpc_message m;
	struct rpc_decoder *d;

	buf_init(&b);
	rpc_pack_notify_head(&b.pk, "Ping");
	msgpack_pack_array(&b.pk, 0);
	d = decode_one(&b, &m);
	ck_assert_int_eq(m.type, RPC_NOTIFY);
	ck_assert(streq(m.method, m.method_len, "Ping"));
	ck_assert_int_eq(m.params->type, MSGPACK_OBJECT_ARRAY);
	ck_assert_uint_eq(m.params->via.array.size, 0);
	ck_assert_ptr_null(rpc_params_map(m.params));
	rpc_decoder_free(d);
	buf_free(&b);

	/* A NULL method packs as "". */
	buf_init(&b);
	rpc_pack_notify_head(&b.pk, NULL);
	msgpack_pack_array(&b.pk, 0);
	d = decode_one(&b, &m);
	ck_assert_uint_eq(m.method_len, 0);
	rpc_decoder_free(d);
	buf_free(&b);
}
END_TEST

/* Three messages back to back, checked in order. */
static void
pack_three(struct buf *b)
{
	pack_request(b, 1, "Heartbeat", "a", 1);
	rpc_pack_response_head(&b->pk, 2, "oops");
	msgpack_pack_nil(&b->pk);
	rpc_pack_notify_head(&b->pk, "Disconnect");
	msgpack_pack_array(&b->pk, 1);
	msgpack_pack_map(&b->pk, 1);
	pack_kv_str(&b->pk, "key", "zz");
}

static void
check_three(const struct rpc_message *m, int i)
{
	const char *s;
	size_t n;

	switch (i) {
	case 0:
		ck_assert_int_eq(m->type, RPC_REQUEST);
		ck_assert_uint_eq(m->msgid, 1);
		ck_assert(streq(m->method, m->method_len, "Heartbeat"));
		break;
	case 1:
		ck_assert_int_eq(m->type, RPC_RESPONSE);
		ck_assert_uint_eq(m->msgid, 2);
		ck_assert(rpc_obj_streq(m->error, "oops"));
		break;
	case 2:
		ck_assert_int_eq(m->type, RPC_NOTIFY);
		ck_assert(streq(m->method, m->method_len, "Disconnect"));
		ck_assert_int_eq(
		    rpc_map_str(rpc_params_map(m->params), "key", &s, &n), 0);
		ck_assert(streq(s, n, "zz"));
		break;
	default:
		ck_abort_msg("more messages than sent");
	}
}

START_TEST(test_byte_at_a_time)
{
	struct buf b;
	struct rpc_decoder *d = rpc_decoder_new(NULL);
	struct rpc_message m;
	int got = 0, r;

	buf_init(&b);
	pack_three(&b);
	for (size_t i = 0; i < b.sb.size; i++) {
		ck_assert_int_eq(rpc_decoder_feed(d, b.sb.data + i, 1, NULL, 0),
		                 0);
		while ((r = rpc_decoder_next(d, &m, NULL, 0)) == 1)
			check_three(&m, got++);
		ck_assert_int_eq(r, 0);
	}
	ck_assert_int_eq(got, 3);
	rpc_decoder_free(d);
	buf_free(&b);
}
END_TEST

START_TEST(test_many_in_one_feed)
{
	struct buf b;
	struct rpc_decoder *d = rpc_decoder_new(NULL);
	struct rpc_message m;
	int got = 0, r;

	buf_init(&b);
	pack_three(&b);
	ck_assert_int_eq(rpc_decoder_feed(d, b.sb.data, b.sb.size, NULL, 0), 0);
	while ((r = rpc_decoder_next(d, &m, NULL, 0)) == 1)
		check_three(&m, got++);
	ck_assert_int_eq(r, 0);
	ck_assert_int_eq(got, 3);
	/* And again on the same decoder, split in two uneven halves. */
	ck_assert_int_eq(rpc_decoder_feed(d, b.sb.data, 7, NULL, 0), 0);
	ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 0);
	ck_assert_int_eq(
	    rpc_decoder_feed(d, b.sb.data + 7, b.sb.size - 7, NULL, 0), 0);
	for (got = 0; (r = rpc_decoder_next(d, &m, NULL, 0)) == 1;)
		check_three(&m, got++);
	ck_assert_int_eq(got, 3);
	rpc_decoder_free(d);
	buf_free(&b);
}
END_TEST

START_TEST(test_truncated)
{
	struct buf b;
	struct rpc_decoder *d = rpc_decoder_new(NULL);
	struct rpc_message m;
	char err[128] = "";

	buf_init(&b);
	pack_request(&b, 3, "Receive", "key", 1);
	ck_assert_int_eq(
	    rpc_decoder_feed(d, b.sb.data, b.sb.size - 1, err, sizeof(err)), 0);
	ck_assert_int_eq(rpc_decoder_next(d, &m, err, sizeof(err)), 0);
	ck_assert_str_eq(err, "");
	ck_assert_int_eq(
	    rpc_decoder_feed(d, b.sb.data + b.sb.size - 1, 1, err, sizeof(err)),
	    0);
	ck_assert_int_eq(rpc_decoder_next(d, &m, err, sizeof(err)), 1);
	ck_assert_uint_eq(m.msgid, 3);
	/* Empty feeds are harmless. */
	ck_assert_int_eq(rpc_decoder_feed(d, "", 0, NULL, 0), 0);
	ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 0);
	rpc_decoder_free(d);
	buf_free(&b);
}
END_TEST

START_TEST(test_wrong_shapes)
{
	struct buf b;

#define CASE(why, ...)                           \
	do {                                     \
		buf_init(&b);                    \
		__VA_ARGS__;                     \
		expect_malformed(&b, NULL, why); \
		buf_free(&b);                    \
	} while (0)

	CASE("not an array", msgpack_pack_map(&b.pk, 0));
	CASE("not an array", msgpack_pack_int(&b.pk, 5));
	CASE("not an array", rpc_pack_str(&b.pk, "hello"));
	CASE("has 2 elements", msgpack_pack_array(&b.pk, 2);
	     msgpack_pack_int(&b.pk, 2); rpc_pack_str(&b.pk, "m"));
	CASE("has 5 elements", msgpack_pack_array(&b.pk, 5);
	     for (int i = 0; i < 5; i++) msgpack_pack_int(&b.pk, 0));
	/* A request with a notification's length, and the reverse. */
	CASE("type 0 has 3 elements", msgpack_pack_array(&b.pk, 3);
	     msgpack_pack_int(&b.pk, 0); rpc_pack_str(&b.pk, "m");
	     msgpack_pack_array(&b.pk, 0));
	CASE("type 2 has 4 elements", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, 2); msgpack_pack_int(&b.pk, 1);
	     rpc_pack_str(&b.pk, "m"); msgpack_pack_array(&b.pk, 0));
	CASE("type 1 has 3 elements", msgpack_pack_array(&b.pk, 3);
	     msgpack_pack_int(&b.pk, 1); msgpack_pack_int(&b.pk, 1);
	     msgpack_pack_nil(&b.pk));
	CASE("unknown message type", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, 3); msgpack_pack_int(&b.pk, 1);
	     msgpack_pack_nil(&b.pk); msgpack_pack_nil(&b.pk));
	CASE("unknown message type", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, -1); msgpack_pack_int(&b.pk, 1);
	     msgpack_pack_nil(&b.pk); msgpack_pack_nil(&b.pk));
	CASE("unknown message type", msgpack_pack_array(&b.pk, 4);
	     rpc_pack_str(&b.pk, "0"); msgpack_pack_int(&b.pk, 1);
	     msgpack_pack_nil(&b.pk); msgpack_pack_nil(&b.pk));
	CASE("msgid is not a uint32", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, 0); rpc_pack_str(&b.pk, "1");
	     rpc_pack_str(&b.pk, "m"); msgpack_pack_array(&b.pk, 0));
	CASE("msgid is not a uint32", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, 0); msgpack_pack_int(&b.pk, -1);
	     rpc_pack_str(&b.pk, "m"); msgpack_pack_array(&b.pk, 0));
	CASE("msgid is not a uint32", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, 1);
	     msgpack_pack_uint64(&b.pk, (uint64_t)UINT32_MAX + 1);
	     msgpack_pack_nil(&b.pk); msgpack_pack_nil(&b.pk));
	CASE("msgid is not a uint32", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, 1); msgpack_pack_double(&b.pk, 1.0);
	     msgpack_pack_nil(&b.pk); msgpack_pack_nil(&b.pk));
	CASE("method is not a str", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, 0); msgpack_pack_int(&b.pk, 1);
	     msgpack_pack_int(&b.pk, 7); msgpack_pack_array(&b.pk, 0));
	CASE("method is not a str", msgpack_pack_array(&b.pk, 3);
	     msgpack_pack_int(&b.pk, 2); msgpack_pack_bin(&b.pk, 1);
	     msgpack_pack_bin_body(&b.pk, "m", 1);
	     msgpack_pack_array(&b.pk, 0));
	CASE("params is not an array", msgpack_pack_array(&b.pk, 4);
	     msgpack_pack_int(&b.pk, 0); msgpack_pack_int(&b.pk, 1);
	     rpc_pack_str(&b.pk, "m"); msgpack_pack_map(&b.pk, 0));
	CASE("params is not an array", msgpack_pack_array(&b.pk, 3);
	     msgpack_pack_int(&b.pk, 2); rpc_pack_str(&b.pk, "m");
	     msgpack_pack_nil(&b.pk));
	CASE("invalid msgpack byte 0xc1", buf_raw(&b, "\x94\x00\x01\xc1", 4));
#undef CASE
}
END_TEST

/* A request whose params are [bin of n bytes]; size of the whole. */
static size_t
pack_sized(struct buf *b, size_t n)
{
	char *p = calloc(1, n + 1);

	rpc_pack_request_head(&b->pk, 1, "m");
	msgpack_pack_array(&b->pk, 1);
	msgpack_pack_bin(&b->pk, n);
	msgpack_pack_bin_body(&b->pk, p, n);
	free(p);
	return b->sb.size;
}

START_TEST(test_max_message)
{
	struct rpc_limits lim = {.max_message = 1024};
	struct rpc_decoder *d;
	struct rpc_message m;
	struct buf b;
	size_t over;
	char err[128];

	/* Find the bin size that makes the message exactly 1024 bytes. */
	buf_init(&b);
	over = pack_sized(&b, 1000) - 1000;
	buf_free(&b);
	buf_init(&b);
	ck_assert_uint_eq(pack_sized(&b, 1024 - over), 1024);
	d = rpc_decoder_new(&lim);
	/* Twice: the limit is per message, not per stream. */
	for (int i = 0; i < 2; i++) {
		ck_assert_int_eq(
		    rpc_decoder_feed(d, b.sb.data, b.sb.size, NULL, 0), 0);
		ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 1);
	}
	rpc_decoder_free(d);
	buf_free(&b);

	/* One byte more is refused as soon as the bin header is seen. */
	buf_init(&b);
	ck_assert_uint_eq(pack_sized(&b, 1025 - over), 1025);
	d = rpc_decoder_new(&lim);
	ck_assert_int_eq(rpc_decoder_feed(d, b.sb.data, over, err, sizeof(err)),
	                 -1);
	ck_assert_ptr_nonnull(strstr(err, "larger than 1024"));
	rpc_decoder_free(d);
	expect_malformed(&b, &lim, "larger than 1024");
	buf_free(&b);

	/* Headers that declare more than the limit allows, each alone. */
	buf_init(&b);
	buf_raw(&b, "\xdd\xff\xff\xff\xff", 5); /* array32 of 4G */
	expect_malformed(&b, &lim, "larger than 1024");
	buf_free(&b);
	buf_init(&b);
	buf_raw(&b, "\x94\x00\x01\xa1m\x91\xdf\x00\x00\x02\x00", 11);
	expect_malformed(&b, &lim, "larger than 1024"); /* map32 of 512 */
	buf_free(&b);
	buf_init(&b);
	buf_raw(&b, "\x94\x00\x01\xa1m\x91\xdb\x00\x00\x04\x00", 11);
	expect_malformed(&b, &lim, "larger than 1024"); /* str32 of 1024 */
	buf_free(&b);
	buf_init(&b);
	buf_raw(&b, "\x94\x00\x01\xa1m\x91\xc9\x00\x00\x03\xf8", 11);
	expect_malformed(&b, &lim, "larger than 1024"); /* ext32 + type */
	buf_free(&b);

	/*
	 * Counts that each fit but together do not: two arrays of 600
	 * elements. Refused at the second header, long before 1024 bytes.
	 */
	buf_init(&b);
	buf_raw(&b, "\x94\x00\x01\xa1m\x92\xdc\x02\x58", 9);
	d = rpc_decoder_new(&lim);
	ck_assert_int_eq(rpc_decoder_feed(d, b.sb.data, b.sb.size, NULL, 0), 0);
	for (int i = 0; i < 600; i++)
		ck_assert_int_eq(rpc_decoder_feed(d, "\x01", 1, NULL, 0), 0);
	ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 0);
	ck_assert_int_eq(rpc_decoder_feed(d, "\xdc\x02\x58", 3, NULL, 0), -1);
	rpc_decoder_free(d);
	buf_free(&b);
}
END_TEST

/* A request whose params nest to a total depth of depth. */
static void
pack_deep(struct buf *b, unsigned depth)
{
	rpc_pack_request_head(&b->pk, 1, "m");
	for (unsigned i = 2; i <= depth; i++)
		msgpack_pack_array(&b->pk, i == depth ? 0 : 1);
}

START_TEST(test_max_depth)
{
	struct rpc_limits lim = {.max_depth = 0}; /* default 16 */
	struct rpc_decoder *d;
	struct rpc_message m;
	struct buf b;

	buf_init(&b);
	pack_deep(&b, 16);
	d = decode_one(&b, &m);
	rpc_decoder_free(d);
	buf_free(&b);
	buf_init(&b);
	pack_deep(&b, 17);
	expect_malformed(&b, &lim, "nested deeper than 16");
	buf_free(&b);

	/* Maps count too: [0,1,"m",[{"a":{"b":1}}]] is 4 deep. */
	lim.max_depth = 3;
	buf_init(&b);
	rpc_pack_request_head(&b.pk, 1, "m");
	msgpack_pack_array(&b.pk, 1);
	msgpack_pack_map(&b.pk, 1);
	rpc_pack_str(&b.pk, "a");
	msgpack_pack_map(&b.pk, 1);
	rpc_pack_str(&b.pk, "b");
	msgpack_pack_int(&b.pk, 1);
	expect_malformed(&b, &lim, "nested deeper than 3");
	buf_free(&b);

	/* The most msgpack-c can take is the most a caller gets. */
	lim.max_depth = 1000;
	buf_init(&b);
	pack_deep(&b, RPC_MAX_DEPTH_LIMIT);
	d = rpc_decoder_new(&lim);
	ck_assert_int_eq(rpc_decoder_feed(d, b.sb.data, b.sb.size, NULL, 0), 0);
	ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 1);
	rpc_decoder_free(d);
	buf_free(&b);
	buf_init(&b);
	pack_deep(&b, RPC_MAX_DEPTH_LIMIT + 1);
	expect_malformed(&b, &lim, "nested deeper than 32");
	buf_free(&b);
}
END_TEST

/*
 * Every msgpack format, in its longest encodings too, inside params: the
 * framing scanner must agree with msgpack-c on each, whole and split.
 */
static const uint8_t all_formats[] =
    {
        0x94, 0x00, 0x05, 0xa1, 'm',  0xdc, 0x00, 0x2c, /* array16 of 44 */
        0x00, 0x7f, 0xe0, 0xff, 0xc0, 0xc2, 0xc3, /* fixints, nil, bools */
        0x80, 0x90, 0xa0, /* empty fixmap, fixarray, fixstr */
        0xcc, 0x01, 0xcd, 0x01, 0x02, 0xce, 0,    0,    0,    1, /* uint 8/16/32
                                                                  */
        0xcf, 0,    0,    0,    0,    0,    0,    0,    1,       /* uint 64 */
        0xd0, 0x80, 0xd1, 0x80, 0x00, 0xd2, 0x80, 0,    0,    0, /* int 8/16/32
                                                                  */
        0xd3, 0x80, 0,    0,    0,    0,    0,    0,    0,       /* int 64 */
        0xca, 0x3f, 0x80, 0,    0,    0xcb, 0x3f, 0xf0, 0,    0,    0,
        0,    0,    0, /* floats */
        0xd9, 0x01, 'a',  0xda, 0x00, 0x01, 'b',  0xdb, 0,    0,    0,
        1,    'c', /* str */
        0xc4, 0x01, 'a',  0xc5, 0x00, 0x01, 'b',  0xc6, 0,    0,    0,
        1,    'c',                                           /* bin */
        0xc7, 0x01, 0x05, 'x',  0xc8, 0x00, 0x01, 0x05, 'y', /* ext 8/16 */
        0xc9, 0,    0,    0,    1,    0x05, 'z',             /* ext 32 */
        0xd4, 0x01, 'a',  0xd5, 0x01, 'a',  'b',             /* fixext 1, 2 */
        0xd6, 0x01, 1,    2,    3,    4,                     /* fixext 4 */
        0xd7, 0x01, 1,    2,    3,    4,    5,    6,    7,    8, /* fixext 8 */
        0xd8, 0x01, 1,    2,    3,    4,    5,    6,    7,    8,    9,
        10,   11,   12,   13,   14,   15,   16,   0xdc, 0x00, 0x01, 0x01,
        0xdd, 0,    0,    0,    1,    0x02,             /* array 16/32 */
        0xde, 0x00, 0x01, 0xa1, 'k',  0x01,             /* map16 */
        0xdf, 0,    0,    0,    1,    0xa1, 'k',  0x02, /* map32 */
        0x81, 0xa1, 'k',  0x91, 0x80,                   /* {"k": [{}]} */
        0xc4, 0x00, 0xd9, 0x00, 0xc7, 0x00, 0x01,    /* empty bin, str, ext */
        0xdc, 0x00, 0x00, 0xdf, 0,    0,    0,    0, /* empty array16, map32 */
};

START_TEST(test_all_formats)
{
	struct rpc_decoder *d;
	struct rpc_message m;
	size_t n = sizeof(all_formats);

	for (size_t split = 0; split <= n; split++) {
		d = rpc_decoder_new(NULL);
		ck_assert_int_eq(
		    rpc_decoder_feed(d, all_formats, split, NULL, 0), 0);
		if (split < n) {
			ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 0);
			ck_assert_int_eq(rpc_decoder_feed(d,
			                                  all_formats + split,
			                                  n - split, NULL, 0),
			                 0);
		}
		ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 1);
		ck_assert_uint_eq(m.msgid, 5);
		ck_assert_uint_eq(m.params->via.array.size, 44);
		ck_assert_int_eq(rpc_decoder_next(d, &m, NULL, 0), 0);
		rpc_decoder_free(d);
	}
}
END_TEST

START_TEST(test_map_helpers)
{
	struct buf b;
	struct rpc_message m;
	struct rpc_decoder *d;
	const msgpack_object *map, *arr;
	const char *s;
	size_t n;
	int64_t v;
	uint64_t u;
	int bl;

	buf_init(&b);
	rpc_pack_request_head(&b.pk, 1, "m");
	msgpack_pack_array(&b.pk, 1);
	msgpack_pack_map(&b.pk, 9);
	pack_kv_str(&b.pk, "s", "str");
	msgpack_pack_bin(&b.pk, 3); /* a bin key */
	msgpack_pack_bin_body(&b.pk, "bin", 3);
	msgpack_pack_bin(&b.pk, 2);
	msgpack_pack_bin_body(&b.pk, "\x00\x01", 2);
	rpc_pack_str(&b.pk, "pos");
	msgpack_pack_uint64(&b.pk, 123);
	rpc_pack_str(&b.pk, "neg");
	msgpack_pack_int64(&b.pk, INT64_MIN);
	rpc_pack_str(&b.pk, "huge");
	msgpack_pack_uint64(&b.pk, UINT64_MAX);
	rpc_pack_str(&b.pk, "t");
	msgpack_pack_true(&b.pk);
	rpc_pack_str(&b.pk, "arr");
	msgpack_pack_array(&b.pk, 2);
	msgpack_pack_int(&b.pk, 1);
	msgpack_pack_int(&b.pk, 2);
	rpc_pack_str(&b.pk, "f");
	msgpack_pack_double(&b.pk, 1.5);
	rpc_pack_str(&b.pk, "");
	msgpack_pack_nil(&b.pk);
	d = decode_one(&b, &m);
	map = rpc_params_map(m.params);
	ck_assert_ptr_nonnull(map);

	ck_assert_int_eq(rpc_map_str(map, "s", &s, &n), 0);
	ck_assert(streq(s, n, "str"));
	ck_assert_int_eq(rpc_map_str(map, "bin", &s, &n), 0);
	ck_assert_uint_eq(n, 2);
	ck_assert_int_eq(memcmp(s, "\x00\x01", 2), 0);
	ck_assert_int_eq(rpc_map_str(map, "pos", &s, &n), -1);
	ck_assert_int_eq(rpc_map_str(map, "missing", &s, &n), -1);

	ck_assert_int_eq(rpc_map_int(map, "pos", &v), 0);
	ck_assert_int_eq(v, 123);
	ck_assert_int_eq(rpc_map_int(map, "neg", &v), 0);
	ck_assert(v == INT64_MIN);
	v = 5;
	ck_assert_int_eq(rpc_map_int(map, "huge", &v), -1);
	ck_assert_int_eq(rpc_map_int(map, "s", &v), -1);
	ck_assert_int_eq(rpc_map_int(map, "f", &v), -1);
	ck_assert_int_eq(v, 5);

	ck_assert_int_eq(rpc_map_uint(map, "huge", &u), 0);
	ck_assert(u == UINT64_MAX);
	ck_assert_int_eq(rpc_map_uint(map, "neg", &u), -1);

	ck_assert_int_eq(rpc_map_bool(map, "t", &bl), 0);
	ck_assert_int_eq(bl, 1);
	ck_assert_int_eq(rpc_map_bool(map, "pos", &bl), -1);

	arr = rpc_map_array(map, "arr");
	ck_assert_ptr_nonnull(arr);
	ck_assert_uint_eq(arr->via.array.size, 2);
	ck_assert_ptr_null(rpc_map_array(map, "s"));

	ck_assert_ptr_nonnull(rpc_map_get(map, ""));
	ck_assert_int_eq(rpc_map_get(map, "")->type, MSGPACK_OBJECT_NIL);
	ck_assert_ptr_null(rpc_map_get(map, "st")); /* prefix only */
	ck_assert_ptr_null(rpc_map_get(NULL, "s"));
	ck_assert_ptr_null(rpc_map_get(arr, "s")); /* not a map */
	ck_assert_ptr_null(rpc_params_map(NULL));
	ck_assert_ptr_null(rpc_params_map(map));
	rpc_decoder_free(d);
	buf_free(&b);
}
END_TEST

START_TEST(test_limits_resolve)
{
	struct rpc_limits l = {.max_message = 10};
	struct rpc_limits r = rpc_limits_resolve(&l);

	ck_assert_uint_eq(r.max_message, 10);
	ck_assert_uint_eq(r.max_depth, RPC_MAX_DEPTH_DEFAULT);
	ck_assert_uint_eq(r.max_output, RPC_MAX_OUTPUT_DEFAULT);
	ck_assert_uint_eq(r.max_inflight, RPC_MAX_INFLIGHT_DEFAULT);
	r = rpc_limits_resolve(NULL);
	ck_assert_uint_eq(r.max_message, RPC_MAX_MESSAGE_DEFAULT);
	rpc_decoder_free(NULL);
}
END_TEST

static Suite *
rpc_codec_suite(void)
{
	Suite *s = suite_create("rpc_codec");
	TCase *tc = tcase_create("codec");

	tcase_add_test(tc, test_request_roundtrip);
	tcase_add_test(tc, test_response_roundtrip);
	tcase_add_test(tc, test_notify_roundtrip);
	tcase_add_test(tc, test_byte_at_a_time);
	tcase_add_test(tc, test_many_in_one_feed);
	tcase_add_test(tc, test_truncated);
	tcase_add_test(tc, test_wrong_shapes);
	tcase_add_test(tc, test_max_message);
	tcase_add_test(tc, test_max_depth);
	tcase_add_test(tc, test_all_formats);
	tcase_add_test(tc, test_map_helpers);
	tcase_add_test(tc, test_limits_resolve);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(rpc_codec_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
