/* Check suite for logic/chanseq: the per-channel seq of envelopes. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <string.h>

#include "logic/chanseq.h"

static uint64_t
next(struct chanseq *cs, const char *ch, uint64_t now)
{
	return chanseq_next(cs, ch, strlen(ch), now);
}

START_TEST(counts_per_channel)
{
	struct chanseq *cs = chanseq_new(100, 1000);

	ck_assert_ptr_nonnull(cs);
	ck_assert_uint_eq(next(cs, "p:room:a", 1), 1);
	ck_assert_uint_eq(next(cs, "p:room:a", 2), 2);
	ck_assert_uint_eq(next(cs, "p:room:b", 2), 1);
	ck_assert_uint_eq(next(cs, "p:room:a", 3), 3);
	/* Names are compared by length too: a prefix is another channel. */
	ck_assert_uint_eq(chanseq_next(cs, "p:room:ab", 8, 3), 4);
	ck_assert_uint_eq(next(cs, "p:room:ab", 3), 1);
	/* Binary-safe: a name with a NUL inside. */
	ck_assert_uint_eq(chanseq_next(cs, "x\0y", 3, 3), 1);
	ck_assert_uint_eq(chanseq_next(cs, "x\0z", 3, 3), 1);
	ck_assert_uint_eq(chanseq_next(cs, "x\0y", 3, 3), 2);
	ck_assert_uint_eq(chanseq_count(cs), 5);
	chanseq_free(cs);
	chanseq_free(NULL);
}
END_TEST

START_TEST(idle_channels_forgotten)
{
	struct chanseq *cs = chanseq_new(100, 1000);

	ck_assert_uint_eq(next(cs, "a", 0), 1);
	ck_assert_uint_eq(next(cs, "b", 500), 1);
	ck_assert_uint_eq(next(cs, "a", 1000), 2); /* idle exactly 1000 */
	ck_assert_uint_eq(next(cs, "b", 1600), 1); /* idle 1100: starts over */
	ck_assert_uint_eq(next(cs, "a", 1700), 3);
	ck_assert_uint_eq(chanseq_count(cs), 2);
	/* Everything idle goes on the next call. */
	ck_assert_uint_eq(next(cs, "c", 5000), 1);
	ck_assert_uint_eq(chanseq_count(cs), 1);
	/* A clock that steps back forgets nothing. */
	ck_assert_uint_eq(next(cs, "c", 10), 2);
	ck_assert_uint_eq(next(cs, "d", 20), 1);
	ck_assert_uint_eq(chanseq_count(cs), 2);
	chanseq_free(cs);
}
END_TEST

START_TEST(bounded_lru)
{
	struct chanseq *cs = chanseq_new(3, 1000000);

	next(cs, "a", 1);
	next(cs, "b", 2);
	next(cs, "c", 3);
	ck_assert_uint_eq(next(cs, "a", 4), 2); /* a is now the newest */
	ck_assert_uint_eq(next(cs, "d", 5), 1); /* b, the oldest, goes */
	ck_assert_uint_eq(chanseq_count(cs), 3);
	ck_assert_uint_eq(next(cs, "a", 6), 3);
	ck_assert_uint_eq(next(cs, "c", 7), 2);
	ck_assert_uint_eq(next(cs, "b", 8), 1); /* forgotten: starts over */
	ck_assert_uint_eq(chanseq_count(cs), 3);
	chanseq_free(cs);
}
END_TEST

START_TEST(many_channels_grow)
{
	struct chanseq *cs = chanseq_new(100000, 1000000);
	char name[32];

	for (int round = 1; round <= 3; round++)
		for (int i = 0; i < 5000; i++) {
			snprintf(name, sizeof(name), "imgate:room:live://%d",
			         i);
			ck_assert_uint_eq(next(cs, name, (uint64_t)round),
			                  (uint64_t)round);
		}
	ck_assert_uint_eq(chanseq_count(cs), 5000);
	chanseq_free(cs);
}
END_TEST

START_TEST(undo)
{
	struct chanseq *cs = chanseq_new(10, 1000);
	uint64_t s;

	ck_assert_uint_eq(next(cs, "a", 1), 1);
	s = next(cs, "a", 1);
	ck_assert_uint_eq(s, 2);
	chanseq_undo(cs, "a", 1, s);
	ck_assert_uint_eq(next(cs, "a", 1), 2);
	/* Only the seq just handed out is given back. */
	chanseq_undo(cs, "a", 1, 1);
	ck_assert_uint_eq(next(cs, "a", 1), 3);
	chanseq_undo(cs, "zz", 2, 1);
	chanseq_undo(cs, "a", 1, 0);
	ck_assert_uint_eq(next(cs, "a", 1), 4);
	/* A new channel undone starts at 1 again. */
	s = next(cs, "n", 1);
	chanseq_undo(cs, "n", 1, s);
	ck_assert_uint_eq(next(cs, "n", 1), 1);
	chanseq_free(cs);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("logic_chanseq");
	TCase *tc = tcase_create("chanseq");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, counts_per_channel);
	tcase_add_test(tc, idle_channels_forgotten);
	tcase_add_test(tc, bounded_lru);
	tcase_add_test(tc, many_channels_grow);
	tcase_add_test(tc, undo);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
