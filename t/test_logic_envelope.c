/* Check suite for common/envelope: the Redis push envelope codec. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "common/envelope.h"

static msgpack_unpacked scratch;

static void
setup(void)
{
	msgpack_unpacked_init(&scratch);
}

static void
teardown(void)
{
	msgpack_unpacked_destroy(&scratch);
}

static int
decode(const msgpack_sbuffer *sb, struct envelope *e, char *err)
{
	return envelope_decode(sb->data, sb->size, &scratch, e, err, 128);
}

START_TEST(push_round_trip)
{
	const char *keys[] = {"k1", "key-two", "3"};
	struct envelope in = {.type = ENVELOPE_PUSH,
	                      .operation = 1000,
	                      .server = "node-a",
	                      .server_len = 6,
	                      .key_list = keys,
	                      .nkeys = 3,
	                      .msg = (const uint8_t *)"hello\0world",
	                      .msg_len = 11,
	                      .id = UINT64_MAX,
	                      .ts = 1700000000000ULL};
	struct envelope out;
	msgpack_sbuffer sb, sb2;
	char err[128];

	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(envelope_encode(&sb, &in), 0);
	ck_assert_int_eq(decode(&sb, &out, err), 0);
	ck_assert_int_eq(out.type, ENVELOPE_PUSH);
	ck_assert_int_eq(out.operation, 1000);
	ck_assert_int_eq(out.speed, 0);
	ck_assert_uint_eq(out.server_len, 6);
	ck_assert(memcmp(out.server, "node-a", 6) == 0);
	ck_assert_uint_eq(out.nkeys, 3);
	ck_assert_ptr_nonnull(out.keys);
	ck_assert_uint_eq(out.keys->via.array.ptr[1].via.str.size, 7);
	ck_assert(
	    memcmp(out.keys->via.array.ptr[1].via.str.ptr, "key-two", 7) == 0);
	ck_assert_uint_eq(out.msg_len, 11);
	ck_assert(memcmp(out.msg, "hello\0world", 11) == 0);
	ck_assert(out.id == UINT64_MAX);
	ck_assert(out.ts == 1700000000000ULL);
	ck_assert_ptr_null(out.room);

	/* Re-encoding a decoded envelope (keys as an object) is identical. */
	msgpack_sbuffer_init(&sb2);
	ck_assert_int_eq(envelope_encode(&sb2, &out), 0);
	ck_assert_uint_eq(sb2.size, sb.size);
	ck_assert(memcmp(sb.data, sb2.data, sb.size) == 0);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&sb2);
}
END_TEST

START_TEST(room_and_broadcast_round_trip)
{
	struct envelope room = {.type = ENVELOPE_ROOM,
	                        .operation = -5,
	                        .room = "live://1000",
	                        .room_len = 11,
	                        .msg = (const uint8_t *)"",
	                        .msg_len = 0};
	struct envelope all = {.type = ENVELOPE_BROADCAST,
	                       .operation = INT32_MAX,
	                       .speed = 40,
	                       .msg = (const uint8_t *)"x",
	                       .msg_len = 1};
	struct envelope out;
	msgpack_sbuffer sb;
	char err[128];

	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(envelope_encode(&sb, &room), 0);
	ck_assert_int_eq(decode(&sb, &out, err), 0);
	ck_assert_int_eq(out.type, ENVELOPE_ROOM);
	ck_assert_int_eq(out.operation, -5);
	ck_assert_uint_eq(out.room_len, 11);
	ck_assert(memcmp(out.room, "live://1000", 11) == 0);
	ck_assert_uint_eq(out.msg_len, 0);
	ck_assert_ptr_null(out.server);
	msgpack_sbuffer_destroy(&sb);

	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(envelope_encode(&sb, &all), 0);
	ck_assert_int_eq(decode(&sb, &out, err), 0);
	ck_assert_int_eq(out.type, ENVELOPE_BROADCAST);
	ck_assert_int_eq(out.operation, INT32_MAX);
	ck_assert_int_eq(out.speed, 40);
	ck_assert_uint_eq(out.msg_len, 1);
	msgpack_sbuffer_destroy(&sb);
}
END_TEST

START_TEST(encode_refuses_invalid)
{
	const char *keys[] = {"k"};
	struct envelope e;
	msgpack_sbuffer sb;
	char big[ENVELOPE_NAME_MAX + 2];

	memset(big, 'r', sizeof(big));
	big[sizeof(big) - 1] = '\0';
	msgpack_sbuffer_init(&sb);
	e = (struct envelope){
	    .type = ENVELOPE_PUSH, .key_list = keys, .nkeys = 1};
	ck_assert_int_eq(envelope_encode(&sb, &e), -1); /* no server */
	e = (struct envelope){
	    .type = ENVELOPE_PUSH, .server = "s", .server_len = 1};
	ck_assert_int_eq(envelope_encode(&sb, &e), -1); /* no keys */
	e = (struct envelope){.type = ENVELOPE_ROOM};
	ck_assert_int_eq(envelope_encode(&sb, &e), -1); /* no room */
	e = (struct envelope){
	    .type = ENVELOPE_ROOM, .room = big, .room_len = strlen(big)};
	ck_assert_int_eq(envelope_encode(&sb, &e), -1); /* room too long */
	e = (struct envelope){.type = 3};
	ck_assert_int_eq(envelope_encode(&sb, &e), -1);
	e = (struct envelope){.type = ENVELOPE_BROADCAST, .msg_len = 3};
	ck_assert_int_eq(envelope_encode(&sb, &e), -1); /* len, no data */
	ck_assert_uint_eq(sb.size, 0);
	msgpack_sbuffer_destroy(&sb);
}
END_TEST

/* A map built field by field, to feed the decoder wrong shapes. */
struct mb {
	msgpack_sbuffer sb;
	msgpack_packer pk;
};

static void
mb_init(struct mb *m, size_t fields)
{
	msgpack_sbuffer_init(&m->sb);
	msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
	msgpack_pack_map(&m->pk, fields);
}

static void
mb_key(struct mb *m, const char *k)
{
	msgpack_pack_str(&m->pk, strlen(k));
	msgpack_pack_str_body(&m->pk, k, strlen(k));
}

static void
mb_str(struct mb *m, const char *k, const char *v)
{
	mb_key(m, k);
	msgpack_pack_str(&m->pk, strlen(v));
	msgpack_pack_str_body(&m->pk, v, strlen(v));
}

static void
mb_int(struct mb *m, const char *k, int64_t v)
{
	mb_key(m, k);
	msgpack_pack_int64(&m->pk, v);
}

static void
mb_msg(struct mb *m)
{
	mb_key(m, "msg");
	msgpack_pack_bin(&m->pk, 2);
	msgpack_pack_bin_body(&m->pk, "hi", 2);
}

static void
expect_fail(struct mb *m, const char *why)
{
	struct envelope e;
	char err[128] = "";

	ck_assert_msg(decode(&m->sb, &e, err) == -1, "accepted: %s", why);
	ck_assert_msg(err[0] != '\0', "no reason for %s", why);
	msgpack_sbuffer_destroy(&m->sb);
}

START_TEST(decode_validation)
{
	struct mb m;
	struct envelope e;
	char err[128];

	/* A minimal valid one, plus an unknown field that is ignored. */
	mb_init(&m, 4);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 9);
	mb_msg(&m);
	mb_str(&m, "future", "ignored");
	ck_assert_int_eq(decode(&m.sb, &e, err), 0);
	ck_assert_int_eq(e.type, ENVELOPE_BROADCAST);
	msgpack_sbuffer_destroy(&m.sb);

	/* A BROADCAST carrying PUSH and ROOM fields: they are ignored. */
	mb_init(&m, 6);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 9);
	mb_str(&m, "server", "s");
	mb_str(&m, "room", "r");
	mb_key(&m, "keys");
	msgpack_pack_array(&m.pk, 1);
	msgpack_pack_str(&m.pk, 1);
	msgpack_pack_str_body(&m.pk, "k", 1);
	mb_msg(&m);
	ck_assert_int_eq(decode(&m.sb, &e, err), 0);
	ck_assert_ptr_null(e.server);
	ck_assert_ptr_null(e.room);
	ck_assert_ptr_null(e.keys);
	ck_assert_uint_eq(e.nkeys, 0);
	msgpack_sbuffer_destroy(&m.sb);

	mb_init(&m, 2);
	mb_int(&m, "operation", 9);
	mb_msg(&m);
	expect_fail(&m, "no type");

	mb_init(&m, 2);
	mb_int(&m, "type", 2);
	mb_msg(&m);
	expect_fail(&m, "no operation");

	mb_init(&m, 2);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 9);
	expect_fail(&m, "no msg");

	mb_init(&m, 3);
	mb_int(&m, "type", 7);
	mb_int(&m, "operation", 9);
	mb_msg(&m);
	expect_fail(&m, "unknown type");

	mb_init(&m, 3);
	mb_str(&m, "type", "2");
	mb_int(&m, "operation", 9);
	mb_msg(&m);
	expect_fail(&m, "type as str");

	mb_init(&m, 3);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", (int64_t)INT32_MAX + 1);
	mb_msg(&m);
	expect_fail(&m, "operation over int32");

	mb_init(&m, 4);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 1);
	mb_int(&m, "speed", INT64_MIN);
	mb_msg(&m);
	expect_fail(&m, "speed under int32");

	mb_init(&m, 3);
	mb_int(&m, "type", 1);
	mb_int(&m, "operation", 1);
	mb_msg(&m);
	expect_fail(&m, "ROOM without room");

	mb_init(&m, 4);
	mb_int(&m, "type", 1);
	mb_int(&m, "operation", 1);
	mb_int(&m, "room", 5);
	mb_msg(&m);
	expect_fail(&m, "room as int");

	mb_init(&m, 4);
	mb_int(&m, "type", 0);
	mb_int(&m, "operation", 1);
	mb_str(&m, "server", "s");
	mb_msg(&m);
	expect_fail(&m, "PUSH without keys");

	mb_init(&m, 5);
	mb_int(&m, "type", 0);
	mb_int(&m, "operation", 1);
	mb_str(&m, "server", "s");
	mb_key(&m, "keys");
	msgpack_pack_array(&m.pk, 0);
	mb_msg(&m);
	expect_fail(&m, "PUSH with empty keys");

	mb_init(&m, 5);
	mb_int(&m, "type", 0);
	mb_int(&m, "operation", 1);
	mb_str(&m, "server", "s");
	mb_key(&m, "keys");
	msgpack_pack_array(&m.pk, 2);
	msgpack_pack_str(&m.pk, 1);
	msgpack_pack_str_body(&m.pk, "a", 1);
	msgpack_pack_int(&m.pk, 3);
	mb_msg(&m);
	expect_fail(&m, "non-str key");

	mb_init(&m, 4);
	mb_int(&m, "type", 0);
	mb_int(&m, "operation", 1);
	mb_key(&m, "keys");
	msgpack_pack_array(&m.pk, 1);
	msgpack_pack_str(&m.pk, 1);
	msgpack_pack_str_body(&m.pk, "a", 1);
	mb_msg(&m);
	expect_fail(&m, "PUSH without server");

	mb_init(&m, 4);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 1);
	mb_str(&m, "id", "x");
	mb_msg(&m);
	expect_fail(&m, "id as str");

	mb_init(&m, 4);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 1);
	mb_int(&m, "ts", -1);
	mb_msg(&m);
	expect_fail(&m, "negative ts");

	/* Not a map. */
	msgpack_sbuffer_init(&m.sb);
	msgpack_packer_init(&m.pk, &m.sb, msgpack_sbuffer_write);
	msgpack_pack_array(&m.pk, 0);
	expect_fail(&m, "array");
}
END_TEST

/* src and seq: written when set, optional on decode, uint64 only. */
START_TEST(src_seq)
{
	struct envelope in = {.type = ENVELOPE_ROOM,
	                      .operation = 1000,
	                      .room = "live://1",
	                      .room_len = 8,
	                      .msg = (const uint8_t *)"m",
	                      .msg_len = 1,
	                      .src = UINT64_MAX - 1,
	                      .seq = 1};
	struct envelope out;
	msgpack_sbuffer sb, plain;
	struct mb m;
	char err[128];

	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(envelope_encode(&sb, &in), 0);
	ck_assert_int_eq(decode(&sb, &out, err), 0);
	ck_assert(out.src == UINT64_MAX - 1);
	ck_assert(out.seq == 1);

	/* 0 = absent: not written, two fields fewer, decoded as 0. */
	in.src = 0;
	in.seq = 0;
	msgpack_sbuffer_init(&plain);
	ck_assert_int_eq(envelope_encode(&plain, &in), 0);
	ck_assert_uint_eq(plain.size + 2 * 4 + 9 + 1, sb.size);
	ck_assert_ptr_null(memmem(plain.data, plain.size, "\xa3src", 4));
	ck_assert_ptr_null(memmem(plain.data, plain.size, "\xa3seq", 4));
	out.src = out.seq = 7;
	ck_assert_int_eq(decode(&plain, &out, err), 0);
	ck_assert(out.src == 0 && out.seq == 0);
	msgpack_sbuffer_destroy(&sb);
	msgpack_sbuffer_destroy(&plain);

	/* One without the other is fine: no gap accounting then. */
	in.seq = UINT64_MAX;
	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(envelope_encode(&sb, &in), 0);
	ck_assert_int_eq(decode(&sb, &out, err), 0);
	ck_assert(out.src == 0 && out.seq == UINT64_MAX);
	msgpack_sbuffer_destroy(&sb);

	/* A third-party publisher's envelope with src and seq as fixints. */
	mb_init(&m, 5);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 9);
	mb_msg(&m);
	mb_int(&m, "src", 42);
	mb_int(&m, "seq", 3);
	ck_assert_int_eq(decode(&m.sb, &out, err), 0);
	ck_assert(out.src == 42 && out.seq == 3);
	msgpack_sbuffer_destroy(&m.sb);

	mb_init(&m, 4);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 9);
	mb_msg(&m);
	mb_int(&m, "src", -1);
	expect_fail(&m, "negative src");

	mb_init(&m, 4);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 9);
	mb_msg(&m);
	mb_str(&m, "seq", "1");
	expect_fail(&m, "seq as str");

	mb_init(&m, 4);
	mb_int(&m, "type", 2);
	mb_int(&m, "operation", 9);
	mb_msg(&m);
	mb_key(&m, "seq");
	msgpack_pack_double(&m.pk, 1.0);
	expect_fail(&m, "seq as float");
}
END_TEST

START_TEST(decode_malformed_bytes)
{
	static const struct {
		const char *b;
		size_t n;
	} cases[] = {
	    {"", 0},
	    {"\x81", 1},                     /* map of 1, nothing after */
	    {"\xc1", 1},                     /* never-used byte */
	    {"\xdf\xff\xff\xff\xff", 5},     /* map32 of 4G entries */
	    {"\xdd\x7f\xff\xff\xff\x00", 6}, /* array32 claiming 2G */
	    {"\xc6\xff\xff\xff\xff", 5},     /* bin32 of 4G bytes */
	    {"\x80\x80", 2},                 /* trailing bytes */
	    {"\xda\x00", 2},                 /* truncated str16 header */
	};
	struct envelope e;
	char err[128];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		ck_assert_msg(envelope_decode(cases[i].b, cases[i].n, &scratch,
		                              &e, err, sizeof(err)) == -1,
		              "case %zu accepted", i);
}
END_TEST

START_TEST(decode_byte_at_a_time_prefixes)
{
	/* Every strict prefix of a valid envelope is refused, never read
	 * past its end (ASan watches). */
	const char *keys[] = {"alpha", "beta"};
	struct envelope in = {.type = ENVELOPE_PUSH,
	                      .operation = 7,
	                      .server = "n1",
	                      .server_len = 2,
	                      .key_list = keys,
	                      .nkeys = 2,
	                      .msg = (const uint8_t *)"body",
	                      .msg_len = 4};
	struct envelope out;
	msgpack_sbuffer sb;
	char err[128];

	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(envelope_encode(&sb, &in), 0);
	for (size_t n = 0; n < sb.size; n++) {
		char *copy = malloc(n + 1);

		memcpy(copy, sb.data, n);
		ck_assert_msg(envelope_decode(copy, n, &scratch, &out, err,
		                              sizeof(err)) == -1,
		              "prefix %zu accepted", n);
		free(copy);
	}
	ck_assert_int_eq(
	    envelope_decode(sb.data, sb.size, &scratch, &out, err, sizeof(err)),
	    0);
	msgpack_sbuffer_destroy(&sb);
}
END_TEST

START_TEST(depth_and_limits)
{
	char buf[64], err[128];
	struct envelope e;
	size_t n = 0;

	/* {"x": [[[[[[[[[[]]]]]]]]]]}: deeper than the decoder allows. */
	buf[n++] = (char)0x81;
	buf[n++] = (char)0xa1;
	buf[n++] = 'x';
	for (int i = 0; i < 12; i++)
		buf[n++] = (char)0x91;
	buf[n++] = (char)0x90;
	ck_assert_int_eq(
	    envelope_decode(buf, n, &scratch, &e, err, sizeof(err)), -1);
	ck_assert_int_eq(envelope_msgpack_check(buf, n, 64, err, sizeof(err)),
	                 0);
	/* The map and twelve arrays: thirteen levels. */
	ck_assert_int_eq(envelope_msgpack_check(buf, n, 12, err, sizeof(err)),
	                 -1);
	ck_assert_int_eq(envelope_msgpack_check(buf, n, 13, err, sizeof(err)),
	                 0);
	/* Larger than ENVELOPE_MAX_SIZE: refused before parsing. */
	ck_assert_int_eq(envelope_decode(buf, (size_t)ENVELOPE_MAX_SIZE + 1,
	                                 &scratch, &e, err, sizeof(err)),
	                 -1);
}
END_TEST

START_TEST(max_keys)
{
	const char **keys = calloc(ENVELOPE_MAX_KEYS + 1, sizeof(*keys));
	struct envelope in = {.type = ENVELOPE_PUSH,
	                      .operation = 1,
	                      .server = "s",
	                      .server_len = 1,
	                      .key_list = keys,
	                      .msg = (const uint8_t *)"m",
	                      .msg_len = 1};
	struct envelope out;
	msgpack_sbuffer sb;
	char err[128];

	for (size_t i = 0; i <= ENVELOPE_MAX_KEYS; i++)
		keys[i] = "k";
	in.nkeys = ENVELOPE_MAX_KEYS;
	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(envelope_encode(&sb, &in), 0);
	ck_assert_int_eq(decode(&sb, &out, err), 0);
	ck_assert_uint_eq(out.nkeys, ENVELOPE_MAX_KEYS);
	msgpack_sbuffer_destroy(&sb);
	in.nkeys = ENVELOPE_MAX_KEYS + 1;
	msgpack_sbuffer_init(&sb);
	ck_assert_int_eq(envelope_encode(&sb, &in), -1);
	msgpack_sbuffer_destroy(&sb);
	free(keys);
}
END_TEST

START_TEST(channels)
{
	char out[32];

	ck_assert_int_eq(envelope_channel(out, sizeof(out), "imgate",
	                                  ENVELOPE_PUSH, "node-1"),
	                 0);
	ck_assert_str_eq(out, "imgate:node:node-1");
	ck_assert_int_eq(envelope_channel(out, sizeof(out), "p", ENVELOPE_ROOM,
	                                  "live://1000"),
	                 0);
	ck_assert_str_eq(out, "p:room:live://1000");
	ck_assert_int_eq(envelope_channel(out, sizeof(out), "imgate",
	                                  ENVELOPE_BROADCAST, NULL),
	                 0);
	ck_assert_str_eq(out, "imgate:all");
	ck_assert_int_eq(
	    envelope_channel(out, sizeof(out), "imgate", ENVELOPE_ROOM, ""),
	    -1);
	ck_assert_int_eq(
	    envelope_channel(out, sizeof(out), "imgate", ENVELOPE_PUSH, NULL),
	    -1);
	ck_assert_int_eq(envelope_channel(out, sizeof(out), "imgate", 9, "x"),
	                 -1);
	/* Exactly fitting, then one byte short. */
	ck_assert_int_eq(
	    envelope_channel(out, 11, "imgate", ENVELOPE_BROADCAST, NULL), 0);
	ck_assert_int_eq(
	    envelope_channel(out, 10, "imgate", ENVELOPE_BROADCAST, NULL), -1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("envelope");
	TCase *tc = tcase_create("codec");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, push_round_trip);
	tcase_add_test(tc, room_and_broadcast_round_trip);
	tcase_add_test(tc, encode_refuses_invalid);
	tcase_add_test(tc, decode_validation);
	tcase_add_test(tc, src_seq);
	tcase_add_test(tc, decode_malformed_bytes);
	tcase_add_test(tc, decode_byte_at_a_time_prefixes);
	tcase_add_test(tc, depth_and_limits);
	tcase_add_test(tc, max_keys);
	tcase_add_test(tc, channels);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
