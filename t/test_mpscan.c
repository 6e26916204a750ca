/*
 * check suite for src/common/mpscan: message boundaries of every msgpack
 * format, fed whole, split anywhere and byte at a time; each limit at its
 * edge; malformed input.
 */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "common/mpscan.h"

static msgpack_sbuffer sb;
static msgpack_packer pk;

static void
setup(void)
{
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
}

static void
teardown(void)
{
	msgpack_sbuffer_destroy(&sb);
}

static void
pack_raw_kinds(size_t n, const char *fill)
{
	msgpack_pack_str(&pk, n);
	msgpack_pack_str_body(&pk, fill, n);
	msgpack_pack_bin(&pk, n);
	msgpack_pack_bin_body(&pk, fill, n);
	msgpack_pack_ext(&pk, n, 7);
	msgpack_pack_ext_body(&pk, fill, n);
}

/* One array holding every format, in its shortest and longest forms. */
static void
pack_every_format(void)
{
	static char fill[70000];
	static const size_t raw[] = {0, 1, 2, 4, 8, 16, 31, 200, 70000};
	static const int64_t ints[] = {
	    0,     5,      -5,         127,         -32,       200,      -100,
	    60000, -30000, 4000000000, -2000000000, INT64_MAX, INT64_MIN};

	memset(fill, 'x', sizeof(fill));
	msgpack_pack_array(&pk, 3 + 13 + 2 + 3 * 9 + 4);
	msgpack_pack_nil(&pk);
	msgpack_pack_true(&pk);
	msgpack_pack_false(&pk);
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++)
		msgpack_pack_int64(&pk, ints[i]);
	msgpack_pack_float(&pk, 1.5f);
	msgpack_pack_double(&pk, 2.5);
	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++)
		pack_raw_kinds(raw[i], fill);
	/* Containers: fix, 16 and 32 forms (empty, 20, 70000 elements). */
	msgpack_pack_array(&pk, 0);
	msgpack_pack_map(&pk, 20);
	for (int i = 0; i < 20; i++) {
		msgpack_pack_int(&pk, i);
		msgpack_pack_array(&pk, 1);
		msgpack_pack_nil(&pk);
	}
	msgpack_pack_array(&pk, 70000);
	for (int i = 0; i < 70000; i++)
		msgpack_pack_int(&pk, 1);
	msgpack_pack_map(&pk, 70000);
	for (int i = 0; i < 70000; i++) {
		msgpack_pack_int(&pk, 1);
		msgpack_pack_map(&pk, 0);
	}
}

static void
init(struct mpscan *s)
{
	mpscan_init(s, 1 << 20, 8, MPSCAN_EMPTY_NESTS);
}

START_TEST(test_every_format_whole_and_split)
{
	struct mpscan s;
	size_t used, steps[] = {1, 2, 3, 7, 4096};

	pack_every_format();
	init(&s);
	ck_assert_int_eq(mpscan_feed(&s, sb.data, sb.size, &used), 1);
	ck_assert_uint_eq(used, sb.size);
	ck_assert(!mpscan_in_message(&s));

	/* In pieces of every size: the end is found at the last byte. */
	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		size_t off = 0;

		init(&s);
		while (off < sb.size) {
			size_t n =
			    sb.size - off < steps[k] ? sb.size - off : steps[k];
			int r = mpscan_feed(&s, sb.data + off, n, &used);

			off += used;
			if (off < sb.size) {
				ck_assert_int_eq(r, 0);
				ck_assert_uint_eq(used, n);
				ck_assert(mpscan_in_message(&s));
			} else {
				ck_assert_int_eq(r, 1);
			}
		}
	}
}
END_TEST

START_TEST(test_split_everywhere)
{
	char body[300];
	struct mpscan s;
	size_t used;

	memset(body, 'b', sizeof(body));
	msgpack_pack_map(&pk, 2);
	msgpack_pack_str(&pk, 3);
	msgpack_pack_str_body(&pk, "abc", 3);
	msgpack_pack_array(&pk, 2);
	msgpack_pack_uint32(&pk, 70000);
	msgpack_pack_bin(&pk, sizeof(body));
	msgpack_pack_bin_body(&pk, body, sizeof(body));
	msgpack_pack_int(&pk, -1);
	msgpack_pack_double(&pk, 0.5);
	for (size_t cut = 0; cut <= sb.size; cut++) {
		init(&s);
		ck_assert_int_eq(mpscan_feed(&s, sb.data, cut, &used),
		                 cut == sb.size);
		ck_assert_uint_eq(used, cut);
		if (cut < sb.size) {
			ck_assert_int_eq(mpscan_feed(&s, sb.data + cut,
			                             sb.size - cut, &used),
			                 1);
			ck_assert_uint_eq(used, sb.size - cut);
		}
	}
}
END_TEST

START_TEST(test_back_to_back)
{
	struct mpscan s;
	const char *p;
	size_t used, left;
	int n = 0;

	for (int i = 0; i < 5; i++) {
		msgpack_pack_array(&pk, 2);
		msgpack_pack_int(&pk, i);
		msgpack_pack_str(&pk, (size_t)i);
		msgpack_pack_str_body(&pk, "xxxxx", (size_t)i);
	}
	msgpack_pack_nil(&pk); /* a message of one byte */
	init(&s);
	p = sb.data;
	left = sb.size;
	while (left > 0) {
		ck_assert_int_eq(mpscan_feed(&s, p, left, &used), 1);
		ck_assert_uint_gt(used, 0);
		p += used;
		left -= used;
		n++;
	}
	ck_assert_int_eq(n, 6);
	ck_assert_int_eq(mpscan_feed(&s, p, 0, &used), 0);
	ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(test_bad_byte_kills)
{
	struct mpscan s;
	size_t used;

	init(&s);
	ck_assert_int_eq(mpscan_feed(&s, "\x92\x01\xc1\x02", 4, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BAD_BYTE);
	ck_assert_uint_eq(s.byte, 0xc1);
	/* Dead: even valid bytes are refused now. */
	ck_assert_int_eq(mpscan_feed(&s, "\x01", 1, &used), -1);
	ck_assert_uint_eq(used, 0);
}
END_TEST

START_TEST(test_declared_counts)
{
	struct mpscan s;
	size_t used;

	/* array32 of 4G-1 elements: refused at its header. */
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xdd\xff\xff\xff\xff", 5, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BIG_CONTAINER);
	ck_assert_uint_eq(s.size, 0xffffffffu);
	/* map32: two elements an entry. */
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xdf\x00\x00\x02\x00", 5, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BIG_CONTAINER);
	ck_assert_uint_eq(s.size, 1024);
	/* The most that fits: 1 + 4 + 1019 one-byte elements = 1024. */
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xdd\x00\x00\x03\xfb", 5, &used), 0);
	for (int i = 0; i < 1018; i++)
		ck_assert_int_eq(mpscan_feed(&s, "\x00", 1, &used), 0);
	ck_assert_int_eq(mpscan_feed(&s, "\x00", 1, &used), 1);
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xdd\x00\x00\x03\xfc", 5, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BIG_CONTAINER);
	/* The sibling still owed counts too: [[x 1020], 1] cannot fit,
	 * where [x 1020] alone (3 + 1020 bytes) would. */
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xdc\x03\xfc", 3, &used), 0);
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\x92\xdc\x03\xfc", 4, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BIG_CONTAINER);
}
END_TEST

START_TEST(test_declared_lengths)
{
	struct mpscan s;
	size_t used;

	/* str32 of 4G-1 bytes. */
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xdb\xff\xff\xff\xff", 5, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BIG_VALUE);
	ck_assert_uint_eq(s.size, 0xffffffffu);
	/* ext32: the type byte counts. 5 + 1 + 1018 = 1024 fits. */
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xc9\x00\x00\x03\xfa", 5, &used), 0);
	ck_assert(mpscan_in_message(&s)); /* skipping the payload */
	mpscan_init(&s, 1024, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xc9\x00\x00\x03\xfb", 5, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BIG_VALUE);
	ck_assert_uint_eq(s.size, 1020);
	/* No room even for the length field. */
	mpscan_init(&s, 3, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xc6", 1, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BIG_HEAD);
	/* A fixed-size value past the limit. */
	mpscan_init(&s, 8, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xcb", 1, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_BIG_VALUE);
	ck_assert_uint_eq(s.size, 8);
	mpscan_init(&s, 9, 8, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\xcb\0\0\0\0\0\0\0\0", 9, &used), 1);
}
END_TEST

/* depth arrays, each in the one before; the innermost empty. */
static void
pack_nested(unsigned depth)
{
	for (unsigned i = 1; i <= depth; i++)
		msgpack_pack_array(&pk, i == depth ? 0 : 1);
}

START_TEST(test_depth)
{
	struct mpscan s;
	size_t used;

	pack_nested(5);
	/* Counting the empty innermost array: five levels. */
	mpscan_init(&s, 1024, 5, MPSCAN_EMPTY_NESTS);
	ck_assert_int_eq(mpscan_feed(&s, sb.data, sb.size, &used), 1);
	mpscan_init(&s, 1024, 4, MPSCAN_EMPTY_NESTS);
	ck_assert_int_eq(mpscan_feed(&s, sb.data, sb.size, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_TOO_DEEP);
	/* Without: only the four that hold something. */
	mpscan_init(&s, 1024, 4, 0);
	ck_assert_int_eq(mpscan_feed(&s, sb.data, sb.size, &used), 1);
	mpscan_init(&s, 1024, 3, 0);
	ck_assert_int_eq(mpscan_feed(&s, sb.data, sb.size, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_TOO_DEEP);
	/* Maps nest like arrays. */
	mpscan_init(&s, 1024, 1, 0);
	ck_assert_int_eq(mpscan_feed(&s, "\x81\x01\x81\x01\x01", 5, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_TOO_DEEP);
	/* The cap. */
	mpscan_init(&s, 1024, 1000, 0);
	ck_assert_uint_eq(s.max_depth, MPSCAN_DEPTH_MAX);
	msgpack_sbuffer_clear(&sb);
	pack_nested(MPSCAN_DEPTH_MAX + 1);
	ck_assert_int_eq(mpscan_feed(&s, sb.data, sb.size, &used), 1);
	mpscan_init(&s, 1024, 1000, MPSCAN_EMPTY_NESTS);
	ck_assert_int_eq(mpscan_feed(&s, sb.data, sb.size, &used), -1);
	ck_assert_int_eq(s.error, MPSCAN_TOO_DEEP);
}
END_TEST

/* Whatever the scanner passes, msgpack-c reads as one whole object. */
START_TEST(test_agrees_with_msgpack_c)
{
	static const uint8_t seed[] = {0x93, 0xa3, 'a',  'b',  'c',  0xc4,
	                               0x02, 0x00, 0x01, 0x82, 0x01, 0xc0,
	                               0x02, 0x91, 0xcf, 1,    2,    3,
	                               4,    5,    6,    7,    8};
	uint8_t buf[sizeof(seed)];
	msgpack_unpacked u;
	struct mpscan s;
	size_t used, off;
	unsigned x = 1;

	msgpack_unpacked_init(&u);
	for (int round = 0; round < 20000; round++) {
		memcpy(buf, seed, sizeof(buf));
		/* Flip a few bytes, pseudo-randomly. */
		for (int k = 0; k < 3; k++) {
			x = x * 1103515245u + 12345u;
			buf[(x >> 8) % sizeof(buf)] = (uint8_t)(x >> 20);
		}
		mpscan_init(&s, sizeof(buf), 8, MPSCAN_EMPTY_NESTS);
		if (mpscan_feed(&s, buf, sizeof(buf), &used) != 1)
			continue;
		off = 0;
		ck_assert_int_eq(
		    msgpack_unpack_next(&u, (const char *)buf, used, &off),
		    MSGPACK_UNPACK_SUCCESS);
		ck_assert_uint_eq(off, used);
	}
	msgpack_unpacked_destroy(&u);
}
END_TEST

static Suite *
mpscan_suite(void)
{
	Suite *s = suite_create("mpscan");
	TCase *tc = tcase_create("scan");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_every_format_whole_and_split);
	tcase_add_test(tc, test_split_everywhere);
	tcase_add_test(tc, test_back_to_back);
	tcase_add_test(tc, test_bad_byte_kills);
	tcase_add_test(tc, test_declared_counts);
	tcase_add_test(tc, test_declared_lengths);
	tcase_add_test(tc, test_depth);
	tcase_add_test(tc, test_agrees_with_msgpack_c);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(mpscan_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
