/* check suite: the session layer's hash table and local room lists. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comet/gap.h"
#include "comet/htab.h"
#include "comet/room.h"

struct item {
	struct htab_node node;
	uint32_t v;
};

static struct item *
find(struct htab *t, uint32_t v)
{
	uint64_t h = htab_hash_u32(v);
	struct htab_node *n;

	for (n = htab_first(t, h); n != NULL; n = htab_next(n, h))
		if (htab_entry(n, struct item, node)->v == v)
			return htab_entry(n, struct item, node);
	return NULL;
}

START_TEST(test_htab_grow_remove)
{
	enum { N = 5000 };
	struct item *items = calloc(N, sizeof(*items));
	struct htab t;
	uint32_t i;

	htab_init(&t);
	ck_assert_ptr_null(find(&t, 1));
	for (i = 0; i < N; i++) {
		items[i].v = i;
		ck_assert_int_eq(
		    htab_insert(&t, &items[i].node, htab_hash_u32(i)), 0);
	}
	ck_assert_uint_eq(t.count, N);
	ck_assert_uint_ge(t.nslots, N);
	for (i = 0; i < N; i++)
		ck_assert_ptr_eq(find(&t, i), &items[i]);
	ck_assert_ptr_null(find(&t, N));
	for (i = 0; i < N; i += 2)
		htab_remove(&t, &items[i].node);
	ck_assert_uint_eq(t.count, N / 2);
	for (i = 0; i < N; i++) {
		if (i % 2 == 0)
			ck_assert_ptr_null(find(&t, i));
		else
			ck_assert_ptr_eq(find(&t, i), &items[i]);
	}
	/* Removing an entry twice, or from an empty table, is harmless. */
	htab_remove(&t, &items[0].node);
	ck_assert_uint_eq(t.count, N / 2);
	htab_release(&t);
	htab_remove(&t, &items[1].node);
	ck_assert_uint_eq(t.count, 0);
	free(items);
}
END_TEST

START_TEST(test_htab_same_hash)
{
	struct item a = {.v = 1}, b = {.v = 2};
	struct htab t;
	struct htab_node *n;
	int seen = 0;

	/* Two entries with one hash: both reachable through the chain. */
	htab_init(&t);
	htab_insert(&t, &a.node, 42);
	htab_insert(&t, &b.node, 42);
	for (n = htab_first(&t, 42); n != NULL; n = htab_next(n, 42))
		seen |= (int)htab_entry(n, struct item, node)->v;
	ck_assert_int_eq(seen, 3);
	ck_assert_ptr_null(htab_first(&t, 43));
	ck_assert_uint_eq(htab_hash_str("abc", 3), htab_hash_str("abc", 3));
	ck_assert_uint_ne(htab_hash_str("abc", 3), htab_hash_str("abd", 3));
	htab_release(&t);
}
END_TEST

struct events {
	char first[8][64];
	char last[8][64];
	int nfirst, nlast;
};

static void
on_first(struct room *r, void *arg)
{
	struct events *ev = arg;

	snprintf(ev->first[ev->nfirst++ % 8], 64, "%s", r->name);
}

static void
on_last(struct room *r, void *arg)
{
	struct events *ev = arg;

	ck_assert_uint_eq(r->nmembers, 0);
	snprintf(ev->last[ev->nlast++ % 8], 64, "%s", r->name);
}

START_TEST(test_room_join_leave)
{
	struct events ev;
	struct room_set rs;
	struct room_member a = {0}, b = {0}, c = {0};
	struct room *r;

	memset(&ev, 0, sizeof(ev));
	room_set_init(&rs, on_first, on_last, &ev);
	ck_assert_int_eq(room_join(&rs, &a, "live://1"), 0);
	ck_assert_int_eq(ev.nfirst, 1);
	ck_assert_str_eq(ev.first[0], "live://1");
	ck_assert_int_eq(room_join(&rs, &b, "live://1"), 0);
	ck_assert_int_eq(ev.nfirst, 1); /* only the first member subscribes */
	r = room_find(&rs, "live://1");
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->nmembers, 2);
	ck_assert_ptr_eq(a.room, r);
	ck_assert_ptr_eq(TAILQ_FIRST(&r->members), &a);
	ck_assert_ptr_eq(TAILQ_NEXT(&a, link), &b);
	ck_assert_ptr_null(room_find(&rs, "live://2"));
	ck_assert_ptr_null(room_find(&rs, "live://"));

	/* Joining the room one is in changes nothing. */
	ck_assert_int_eq(room_join(&rs, &a, "live://1"), 0);
	ck_assert_uint_eq(r->nmembers, 2);

	/* Moving: leave the old room first. */
	ck_assert_int_eq(room_join(&rs, &c, "live://2"), 0);
	ck_assert_int_eq(room_join(&rs, &a, "live://2"), 0);
	ck_assert_uint_eq(room_count(&rs), 2);
	ck_assert_uint_eq(room_find(&rs, "live://1")->nmembers, 1);
	ck_assert_uint_eq(room_find(&rs, "live://2")->nmembers, 2);
	ck_assert_int_eq(ev.nlast, 0);

	room_leave(&rs, &b);
	ck_assert_ptr_null(b.room);
	ck_assert_int_eq(ev.nlast, 1);
	ck_assert_str_eq(ev.last[0], "live://1");
	ck_assert_ptr_null(room_find(&rs, "live://1"));
	ck_assert_uint_eq(room_count(&rs), 1);
	room_leave(&rs, &b); /* not in a room: no-op */
	ck_assert_int_eq(ev.nlast, 1);

	/* Release detaches the remaining members. */
	room_set_release(&rs);
	ck_assert_int_eq(ev.nlast, 2);
	ck_assert_ptr_null(a.room);
	ck_assert_ptr_null(c.room);
}
END_TEST

static void
count_room(struct room *r, void *arg)
{
	(*(int *)arg)++;
}

START_TEST(test_room_many)
{
	enum { N = 1000 };
	struct room_member *m = calloc(N, sizeof(*m));
	struct room_set rs;
	char name[32];
	int i, n = 0;

	room_set_init(&rs, NULL, NULL, NULL);
	for (i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "room-%d", i % 100);
		ck_assert_int_eq(room_join(&rs, &m[i], name), 0);
	}
	ck_assert_uint_eq(room_count(&rs), 100);
	room_each(&rs, count_room, &n);
	ck_assert_int_eq(n, 100);
	ck_assert_uint_eq(room_find(&rs, "room-7")->nmembers, 10);
	for (i = 0; i < N; i++)
		room_leave(&rs, &m[i]);
	ck_assert_uint_eq(room_count(&rs), 0);
	room_set_release(&rs);
	free(m);
}
END_TEST

START_TEST(test_gap_one_src)
{
	struct gap g;

	gap_reset(&g);
	/* The first message of a src says nothing about what came before. */
	ck_assert_uint_eq(gap_note(&g, 7, 5), 0);
	ck_assert_uint_eq(gap_note(&g, 7, 6), 0);
	ck_assert_uint_eq(gap_note(&g, 7, 7), 0);
	/* 8 and 9 were lost. */
	ck_assert_uint_eq(gap_note(&g, 7, 10), 2);
	ck_assert_uint_eq(gap_note(&g, 7, 11), 0);
	/* A lower or equal seq: logic restarted or forgot the channel. */
	ck_assert_uint_eq(gap_note(&g, 7, 1), 0);
	ck_assert_uint_eq(gap_note(&g, 7, 2), 0);
	ck_assert_uint_eq(gap_note(&g, 7, 2), 0);
	ck_assert_uint_eq(gap_note(&g, 7, 4), 1);
	/* Absent fields: not accounted, and the state is left alone. */
	ck_assert_uint_eq(gap_note(&g, 0, 100), 0);
	ck_assert_uint_eq(gap_note(&g, 7, 0), 0);
	ck_assert_uint_eq(gap_note(&g, 7, 5), 0);
	/* The largest jump there is. */
	ck_assert_uint_eq(gap_note(&g, 7, UINT64_MAX), UINT64_MAX - 6);
	ck_assert_uint_eq(gap_note(&g, 7, UINT64_MAX), 0);
	/* After a reset every src is new again. */
	gap_reset(&g);
	ck_assert_uint_eq(gap_note(&g, 7, 1000), 0);
	ck_assert_uint_eq(gap_note(&g, 7, 1003), 2);
}
END_TEST

START_TEST(test_gap_srcs_replaced)
{
	struct gap g;
	uint64_t src;

	memset(&g, 0, sizeof(g)); /* zeroed memory is a valid state */
	for (src = 1; src <= GAP_SRCS; src++)
		ck_assert_uint_eq(gap_note(&g, src, 10), 0);
	/* Every src is tracked on its own. */
	for (src = 1; src <= GAP_SRCS; src++)
		ck_assert_uint_eq(gap_note(&g, src, 10 + src), src - 1);
	/* src 1 is seen again; a new one replaces the least recent (2). */
	ck_assert_uint_eq(gap_note(&g, 1, 12), 0);
	ck_assert_uint_eq(gap_note(&g, 100, 50), 0);
	ck_assert_uint_eq(gap_note(&g, 100, 52), 1);
	ck_assert_uint_eq(gap_note(&g, 1, 14), 1);
	ck_assert_uint_eq(gap_note(&g, 3, 15), 1);
	/* 2 was forgotten: its next message is a first sighting. */
	ck_assert_uint_eq(gap_note(&g, 2, 20), 0);
	ck_assert_uint_eq(gap_note(&g, 2, 22), 1);
}
END_TEST

START_TEST(test_room_gap_fresh)
{
	struct room_set rs;
	struct room_member a = {0};
	struct room *r;

	room_set_init(&rs, NULL, NULL, NULL);
	ck_assert_int_eq(room_join(&rs, &a, "live://g"), 0);
	r = room_find(&rs, "live://g");
	ck_assert_uint_eq(gap_note(&r->gap, 9, 1), 0);
	ck_assert_uint_eq(gap_note(&r->gap, 9, 3), 1);
	/* The last member left: a new room's state starts empty. */
	room_leave(&rs, &a);
	ck_assert_int_eq(room_join(&rs, &a, "live://g"), 0);
	r = room_find(&rs, "live://g");
	ck_assert_uint_eq(gap_note(&r->gap, 9, 10), 0);
	room_set_release(&rs);
}
END_TEST

static Suite *
room_suite(void)
{
	Suite *s = suite_create("comet_room");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, test_htab_grow_remove);
	tcase_add_test(tc, test_htab_same_hash);
	tcase_add_test(tc, test_room_join_leave);
	tcase_add_test(tc, test_room_many);
	tcase_add_test(tc, test_gap_one_src);
	tcase_add_test(tc, test_gap_srcs_replaced);
	tcase_add_test(tc, test_room_gap_fresh);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(room_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
