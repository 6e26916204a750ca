/*
 * check suite for shm/: the bucket tables, rooms, worker slots, kick
 * mailboxes, attach validation, crash recovery and a multi-process stress
 * run. Every test works on its own segments
 * "/imgate-test-<runner pid>-<test pid>-<n>", unlinked by the teardown.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <check.h>
#include <xxhash.h>

#include "shm/shm.h"
#include "shm/shm_test.h"
#include "t/lib/shmtest.h"

#define MAX_SEGS 8

static char names[MAX_SEGS][64];
static int nnames;
static struct shm_seg *seg; /* the fixture's segment */
static char err[256];
static pid_t runner_pid;

static const struct shm_geometry small_geom = {
    .buckets = 4,
    .channels_per_bucket = 8,
    .rooms_per_bucket = 8,
    .max_workers = 4,
};

/* A fresh unique name, remembered for the teardown. */
static const char *
new_name(void)
{
	ck_assert_int_lt(nnames, MAX_SEGS);
	snprintf(names[nnames], sizeof(names[0]), "/imgate-test-%ld-%ld-%d",
	         (long)runner_pid, (long)getpid(), nnames);
	return names[nnames++];
}

static struct shm_seg *
make_seg(const struct shm_geometry *g)
{
	struct shm_seg *s;

	if (shm_seg_create(new_name(), g, &s, err, sizeof(err)) == -1)
		ck_abort_msg("shm_seg_create: %s", err);
	return s;
}

static void
setup(void)
{
	nnames = 0;
	seg = make_seg(&small_geom);
}

static void
teardown(void)
{
	shm_seg_detach(seg);
	seg = NULL;
	for (int i = 0; i < nnames; i++)
		shm_seg_unlink(names[i]);
	nnames = 0;
}

/*
 * Every field derived from (key, worker, conn_id), so a copy mixing two
 * writes, or a stray byte, fails chan_consistent().
 */
static void
chan_make(struct shm_channel *c, const char *key, uint16_t worker,
          uint32_t conn_id)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->key, sizeof(c->key), "%s", key);
	if (conn_id % 3 != 0)
		snprintf(c->room, sizeof(c->room), "room-%u", conn_id % 8);
	snprintf(c->remote, sizeof(c->remote), "10.0.%u.%u:%u", worker,
	         conn_id % 256, conn_id);
	c->mid = (int64_t)(XXH3_64bits(key, strlen(key)) >> 1);
	c->connected_ms = (uint64_t)conn_id * 3 + worker;
	c->heartbeat_ms = c->connected_ms + 1;
	c->conn_id = conn_id;
	c->worker = worker;
	c->naccepts = conn_id % (SHM_ACCEPTS_MAX + 1);
	for (int i = 0; i < c->naccepts; i++)
		c->accepts[i] = (int32_t)(conn_id + (uint32_t)i);
}

static int
chan_consistent(const struct shm_channel *c)
{
	struct shm_channel want;

	chan_make(&want, c->key, c->worker, c->conn_id);
	return memcmp(&want, c, sizeof(want)) == 0;
}

/* n distinct keys "<prefix><i>" that all hash to bucket b. */
static void
keys_in_bucket(const struct shm_seg *s, uint32_t b, const char *prefix, int n,
               char out[][SHM_KEY_MAX])
{
	int found = 0;

	for (int i = 0; found < n && i < 1000000; i++) {
		snprintf(out[found], SHM_KEY_MAX, "%s%d", prefix, i);
		if (shm_test_bucket_of(s, out[found]) == b)
			found++;
	}
	ck_assert_int_eq(found, n);
}

static void
check_all_buckets(const struct shm_seg *s)
{
	for (uint32_t b = 0; b < shm_seg_geometry(s)->buckets; b++)
		if (shm_test_check_bucket(s, b, err, sizeof(err)) == -1)
			ck_abort_msg("bucket %u: %s", b, err);
}

static uint64_t
nchannels(const struct shm_seg *s)
{
	uint64_t c;

	shm_seg_usage(s, &c, NULL);
	return c;
}

static uint64_t
nrooms(const struct shm_seg *s)
{
	uint64_t r;

	shm_seg_usage(s, NULL, &r);
	return r;
}

START_TEST(test_put_get_replace)
{
	struct shm_channel a, b, got, old;

	chan_make(&a, "user-1", 0, 7);
	ck_assert_int_eq(shm_channel_put(seg, &a, &old), 0);
	ck_assert_int_eq(shm_channel_get(seg, "user-1", &got), 0);
	ck_assert_mem_eq(&got, &a, sizeof(a));
	ck_assert_int_eq(shm_channel_get(seg, "user-2", &got), 1);
	ck_assert_uint_eq(nchannels(seg), 1);

	/* Same key on another worker: replaces, hands back the old one. */
	chan_make(&b, "user-1", 2, 99);
	memset(&old, 0, sizeof(old));
	ck_assert_int_eq(shm_channel_put(seg, &b, &old), 1);
	ck_assert_mem_eq(&old, &a, sizeof(a));
	ck_assert_int_eq(shm_channel_get(seg, "user-1", &got), 0);
	ck_assert_mem_eq(&got, &b, sizeof(b));
	ck_assert_uint_eq(nchannels(seg), 1);

	/* replaced may be NULL. */
	ck_assert_int_eq(shm_channel_put(seg, &a, NULL), 1);
	ck_assert_int_eq(shm_channel_get(seg, "user-1", &got), 0);
	ck_assert_int_eq(got.worker, 0);
	check_all_buckets(seg);
}
END_TEST

START_TEST(test_del_compare)
{
	struct shm_channel a, got;

	chan_make(&a, "k", 1, 5);
	ck_assert_int_eq(shm_channel_put(seg, &a, NULL), 0);
	ck_assert_int_eq(shm_channel_del(seg, "k", 0, 5), 1); /* worker */
	ck_assert_int_eq(shm_channel_del(seg, "k", 1, 6), 1); /* conn id */
	ck_assert_int_eq(shm_channel_get(seg, "k", &got), 0);
	ck_assert_int_eq(shm_channel_del(seg, "other", 1, 5), 1);
	ck_assert_int_eq(shm_channel_del(seg, "k", 1, 5), 0);
	ck_assert_int_eq(shm_channel_get(seg, "k", &got), 1);
	ck_assert_int_eq(shm_channel_del(seg, "k", 1, 5), 1);
	ck_assert_uint_eq(nchannels(seg), 0);

	/* A late delete of a replaced connection leaves the new one. */
	ck_assert_int_eq(shm_channel_put(seg, &a, NULL), 0);
	chan_make(&a, "k", 2, 1);
	ck_assert_int_eq(shm_channel_put(seg, &a, NULL), 1);
	ck_assert_int_eq(shm_channel_del(seg, "k", 1, 5), 1);
	ck_assert_int_eq(shm_channel_get(seg, "k", &got), 0);
	ck_assert_int_eq(got.worker, 2);
	check_all_buckets(seg);
}
END_TEST

START_TEST(test_update_fields)
{
	struct shm_channel a, got;
	int32_t acc[SHM_ACCEPTS_MAX + 1];
	char longroom[SHM_ROOM_MAX + 1];

	for (int i = 0; i <= SHM_ACCEPTS_MAX; i++)
		acc[i] = 1000 + i;
	chan_make(&a, "u", 3, 42);
	ck_assert_int_eq(shm_channel_put(seg, &a, NULL), 0);

	ck_assert_int_eq(shm_channel_set_room(seg, "u", 3, 42, "live://1"), 0);
	ck_assert_int_eq(shm_channel_get(seg, "u", &got), 0);
	ck_assert_str_eq(got.room, "live://1");
	ck_assert_int_eq(shm_channel_set_room(seg, "u", 3, 42, ""), 0);
	ck_assert_int_eq(shm_channel_get(seg, "u", &got), 0);
	ck_assert_str_eq(got.room, "");
	ck_assert_int_eq(shm_channel_set_room(seg, "u", 3, 42, NULL), 0);
	ck_assert_int_eq(shm_channel_set_room(seg, "u", 2, 42, "x"), 1);
	ck_assert_int_eq(shm_channel_set_room(seg, "nope", 3, 42, "x"), 1);
	memset(longroom, 'r', SHM_ROOM_MAX);
	longroom[SHM_ROOM_MAX] = '\0';
	errno = 0;
	ck_assert_int_eq(shm_channel_set_room(seg, "u", 3, 42, longroom), -1);
	ck_assert_int_eq(errno, EINVAL);
	longroom[SHM_ROOM_MAX - 1] = '\0'; /* 63 bytes: the longest allowed */
	ck_assert_int_eq(shm_channel_set_room(seg, "u", 3, 42, longroom), 0);
	ck_assert_int_eq(shm_channel_get(seg, "u", &got), 0);
	ck_assert_str_eq(got.room, longroom);

	ck_assert_int_eq(
	    shm_channel_set_accepts(seg, "u", 3, 42, acc, SHM_ACCEPTS_MAX), 0);
	ck_assert_int_eq(shm_channel_get(seg, "u", &got), 0);
	ck_assert_int_eq(got.naccepts, SHM_ACCEPTS_MAX);
	ck_assert_mem_eq(got.accepts, acc, sizeof(got.accepts));
	ck_assert_int_eq(shm_channel_set_accepts(seg, "u", 3, 42, acc, 2), 0);
	ck_assert_int_eq(shm_channel_get(seg, "u", &got), 0);
	ck_assert_int_eq(got.naccepts, 2);
	ck_assert_int_eq(got.accepts[1], 1001);
	ck_assert_int_eq(got.accepts[2], 0);
	errno = 0;
	ck_assert_int_eq(
	    shm_channel_set_accepts(seg, "u", 3, 42, acc, SHM_ACCEPTS_MAX + 1),
	    -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_int_eq(shm_channel_set_accepts(seg, "u", 3, 41, acc, 1), 1);

	ck_assert_int_eq(shm_channel_touch(seg, "u", 3, 42, 123456789), 0);
	ck_assert_int_eq(shm_channel_get(seg, "u", &got), 0);
	ck_assert_uint_eq(got.heartbeat_ms, 123456789);
	ck_assert_int_eq(shm_channel_touch(seg, "u", 0, 42, 1), 1);
	ck_assert_int_eq(shm_channel_get(seg, "u", &got), 0);
	ck_assert_uint_eq(got.heartbeat_ms, 123456789);
	/* The rest of the record is untouched by the updates. */
	ck_assert_uint_eq(got.connected_ms, a.connected_ms);
	ck_assert_str_eq(got.remote, a.remote);
	ck_assert_int_eq(got.mid, a.mid);
	check_all_buckets(seg);
}
END_TEST

struct room_seen {
	int n;
	struct shm_room r[16];
	uint32_t w[16][4];
};

static int
collect_room(const struct shm_room *r, void *arg)
{
	struct room_seen *s = arg;

	ck_assert_int_lt(s->n, 16);
	s->r[s->n] = *r;
	ck_assert_uint_eq(r->nworkers, 4);
	memcpy(s->w[s->n], r->workers, sizeof(s->w[0]));
	s->r[s->n].workers = NULL;
	s->n++;
	return 0;
}

START_TEST(test_rooms)
{
	struct room_seen seen = {0};

	ck_assert_uint_eq(shm_room_online(seg, "r1"), 0);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(shm_room_add(seg, "r1", 0, 1), 0);
	ck_assert_int_eq(shm_room_add(seg, "r1", 1, 2), 0);
	ck_assert_int_eq(shm_room_add(seg, "r1", 3, 1), 0);
	ck_assert_uint_eq(shm_room_online(seg, "r1"), 6);
	ck_assert_int_eq(shm_room_add(seg, "r1", 2, 0), 0);
	ck_assert_uint_eq(nrooms(seg), 1);

	ck_assert_uint_eq(shm_each_room(seg, collect_room, &seen), 0);
	ck_assert_int_eq(seen.n, 1);
	ck_assert_str_eq(seen.r[0].name, "r1");
	ck_assert_uint_eq(seen.r[0].online, 6);
	ck_assert_uint_eq(seen.w[0][0], 3);
	ck_assert_uint_eq(seen.w[0][1], 2);
	ck_assert_uint_eq(seen.w[0][2], 0);
	ck_assert_uint_eq(seen.w[0][3], 1);

	/* Below zero for one worker: refused, nothing changed. */
	errno = 0;
	ck_assert_int_eq(shm_room_add(seg, "r1", 1, -3), -1);
	ck_assert_int_eq(errno, ERANGE);
	ck_assert_uint_eq(shm_room_online(seg, "r1"), 6);
	errno = 0;
	ck_assert_int_eq(shm_room_add(seg, "r1", 2, -1), -1);
	ck_assert_int_eq(errno, ERANGE);
	errno = 0;
	ck_assert_int_eq(shm_room_add(seg, "ghost", 0, -1), -1);
	ck_assert_int_eq(errno, ERANGE);
	ck_assert_uint_eq(nrooms(seg), 1);
	errno = 0;
	ck_assert_int_eq(shm_room_add(seg, "r1", 4, 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	errno = 0;
	ck_assert_int_eq(shm_room_add(seg, "", 0, 1), -1);
	ck_assert_int_eq(errno, EINVAL);

	/* Leaving one by one; the room goes away at 0. */
	ck_assert_int_eq(shm_room_add(seg, "r1", 0, -3), 0);
	ck_assert_int_eq(shm_room_add(seg, "r1", 1, -1), 0);
	ck_assert_uint_eq(shm_room_online(seg, "r1"), 2);
	ck_assert_int_eq(shm_room_add(seg, "r1", 1, -1), 0);
	ck_assert_int_eq(shm_room_add(seg, "r1", 3, -1), 0);
	ck_assert_uint_eq(shm_room_online(seg, "r1"), 0);
	ck_assert_uint_eq(nrooms(seg), 0);
	seen.n = 0;
	shm_each_room(seg, collect_room, &seen);
	ck_assert_int_eq(seen.n, 0);
	check_all_buckets(seg);
}
END_TEST

START_TEST(test_room_cluster)
{
	ck_assert_int_eq(shm_room_set_cluster(seg, "r", 100), 1);
	ck_assert_uint_eq(shm_room_cluster(seg, "r"), 0);
	ck_assert_uint_eq(nrooms(seg), 0);
	ck_assert_int_eq(shm_room_add(seg, "r", 2, 1), 0);
	ck_assert_uint_eq(shm_room_cluster(seg, "r"), 0);
	ck_assert_int_eq(shm_room_set_cluster(seg, "r", 12345), 0);
	ck_assert_uint_eq(shm_room_cluster(seg, "r"), 12345);
	ck_assert_uint_eq(shm_room_online(seg, "r"), 1);
	/* Joining keeps the cluster figure until logic reports again. */
	ck_assert_int_eq(shm_room_add(seg, "r", 1, 1), 0);
	ck_assert_uint_eq(shm_room_cluster(seg, "r"), 12345);
	ck_assert_int_eq(shm_room_add(seg, "r", 1, -1), 0);
	ck_assert_int_eq(shm_room_add(seg, "r", 2, -1), 0);
	/* A room that emptied forgets it; a new one starts unknown. */
	ck_assert_uint_eq(shm_room_cluster(seg, "r"), 0);
	ck_assert_int_eq(shm_room_add(seg, "r", 2, 1), 0);
	ck_assert_uint_eq(shm_room_cluster(seg, "r"), 0);
	errno = 0;
	ck_assert_int_eq(shm_room_set_cluster(seg, "", 1), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

START_TEST(test_full_bucket)
{
	char keys[9][SHM_KEY_MAX];
	struct shm_channel c, got;
	uint64_t before;

	/* Other buckets hold something too: they must not be disturbed. */
	keys_in_bucket(seg, 0, "elsewhere-", 1, keys);
	chan_make(&c, keys[0], 0, 1);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	keys_in_bucket(seg, 2, "full-", 9, keys);
	for (int i = 0; i < 8; i++) {
		chan_make(&c, keys[i], 1, (uint32_t)i);
		ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	}
	before = nchannels(seg);
	chan_make(&c, keys[8], 1, 8);
	errno = 0;
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), -1);
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_uint_eq(nchannels(seg), before);
	ck_assert_int_eq(shm_channel_get(seg, keys[8], &got), 1);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(shm_channel_get(seg, keys[i], &got), 0);
		ck_assert(chan_consistent(&got));
		ck_assert_uint_eq(got.conn_id, i);
	}
	check_all_buckets(seg);

	/* A full bucket still takes a replacement of a key it holds. */
	chan_make(&c, keys[5], 2, 500);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 1);
	/* And has room again after a delete. */
	ck_assert_int_eq(shm_channel_del(seg, keys[0], 1, 0), 0);
	chan_make(&c, keys[8], 1, 8);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	for (int i = 1; i < 9; i++)
		ck_assert_int_eq(shm_channel_get(seg, keys[i], &got), 0);
	check_all_buckets(seg);

	/* Rooms: same refusal. */
	keys_in_bucket(seg, 3, "room-full-", 9, keys);
	for (int i = 0; i < 8; i++)
		ck_assert_int_eq(shm_room_add(seg, keys[i], 0, 1), 0);
	errno = 0;
	ck_assert_int_eq(shm_room_add(seg, keys[8], 0, 1), -1);
	ck_assert_int_eq(errno, ENOSPC);
	ck_assert_int_eq(shm_room_add(seg, keys[3], 1, 1), 0);
	for (int i = 0; i < 8; i++)
		ck_assert_uint_eq(shm_room_online(seg, keys[i]),
		                  i == 3 ? 2 : 1);
	ck_assert_uint_eq(shm_room_online(seg, keys[8]), 0);
	check_all_buckets(seg);
}
END_TEST

START_TEST(test_limits)
{
	struct shm_channel c, got;
	char key[SHM_KEY_MAX + 1];

	memset(key, 'k', sizeof(key));
	key[SHM_KEY_MAX - 1] = '\0'; /* 63 bytes: fits */
	chan_make(&c, key, 0, 1);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	ck_assert_int_eq(shm_channel_get(seg, key, &got), 0);
	ck_assert_str_eq(got.key, key);

	/* No NUL within SHM_KEY_MAX bytes. */
	memset(c.key, 'k', sizeof(c.key));
	errno = 0;
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);
	key[SHM_KEY_MAX - 1] = 'k';
	key[SHM_KEY_MAX] = '\0';
	ck_assert_int_eq(shm_channel_get(seg, key, &got), 1);
	ck_assert_int_eq(shm_channel_del(seg, key, 0, 1), 1);
	ck_assert_int_eq(shm_channel_touch(seg, key, 0, 1, 5), 1);

	chan_make(&c, "", 0, 1);
	errno = 0;
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);

	chan_make(&c, "ok", 0, 1);
	memset(c.room, 'r', sizeof(c.room));
	errno = 0;
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);

	chan_make(&c, "ok", 0, 1);
	memset(c.remote, '1', sizeof(c.remote));
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), -1);

	chan_make(&c, "ok", 4, 1); /* max_workers is 4 */
	errno = 0;
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), -1);
	ck_assert_int_eq(errno, EINVAL);

	chan_make(&c, "ok", 0, 1);
	c.naccepts = SHM_ACCEPTS_MAX + 1;
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), -1);
	ck_assert_uint_eq(nchannels(seg), 1);

	memset(key, 'r', sizeof(key));
	key[SHM_ROOM_MAX] = '\0';
	errno = 0;
	ck_assert_int_eq(shm_room_add(seg, key, 0, 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	key[SHM_ROOM_MAX - 1] = '\0';
	ck_assert_int_eq(shm_room_add(seg, key, 0, 1), 0);
	ck_assert_uint_eq(shm_room_online(seg, key), 1);
	check_all_buckets(seg);
}
END_TEST

/*
 * Random puts and deletes in one small table against a plain model: the
 * probing and backward-shift code must agree with it after every step,
 * through wrap-around and a full table.
 */
START_TEST(test_table_model)
{
	const struct shm_geometry g = {1, 16, 16, 2};
	struct shm_seg *s = make_seg(&g);
	int present[40] = {0};
	int room[40] = {0};
	unsigned seed = 12345;

	for (int step = 0; step < 4000; step++) {
		int k = (int)(rand_r(&seed) % 40),
		    op = (int)(rand_r(&seed) % 4);
		char key[16];
		struct shm_channel c, got;
		int n = 0, r;

		for (int i = 0; i < 40; i++)
			n += present[i];
		snprintf(key, sizeof(key), "m%d", k);
		if (op < 2) {
			chan_make(&c, key, 0, (uint32_t)k);
			r = shm_channel_put(s, &c, NULL);
			if (present[k])
				ck_assert_int_eq(r, 1);
			else if (n == 16)
				ck_assert_int_eq(r, -1);
			else
				ck_assert_int_eq(r, 0);
			if (r == 0)
				present[k] = 1;
		} else if (op == 2) {
			r = shm_channel_del(s, key, 0, (uint32_t)k);
			ck_assert_int_eq(r, present[k] ? 0 : 1);
			present[k] = 0;
		} else {
			int n_rooms = 0;

			for (int i = 0; i < 40; i++)
				n_rooms += room[i] > 0;
			if (room[k] > 0 && rand_r(&seed) % 2) {
				ck_assert_int_eq(shm_room_add(s, key, 1, -1),
				                 0);
				room[k]--;
			} else {
				r = shm_room_add(s, key, 1, 1);
				if (room[k] == 0 && n_rooms == 16)
					ck_assert_int_eq(r, -1);
				else {
					ck_assert_int_eq(r, 0);
					room[k]++;
				}
			}
		}
		for (int i = 0; i < 40; i++) {
			snprintf(key, sizeof(key), "m%d", i);
			ck_assert_int_eq(shm_channel_get(s, key, &got),
			                 present[i] ? 0 : 1);
			ck_assert_uint_eq(shm_room_online(s, key), room[i]);
		}
		if (shm_test_check_bucket(s, 0, err, sizeof(err)) == -1)
			ck_abort_msg("step %d: %s", step, err);
	}
	shm_seg_detach(s);
}
END_TEST

START_TEST(test_reclaim)
{
	struct shm_worker *w1 = shm_worker_slot(seg, 1);
	struct shm_channel c, got;
	uint32_t ids[4];
	char key[32];
	int n1 = 0, n = 0, in[20] = {0};

	/* Some buckets fill up: keep track of what got in. */
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "rc-%d", i);
		chan_make(&c, key, (uint16_t)(i % 3), (uint32_t)i);
		if (shm_channel_put(seg, &c, NULL) == 0) {
			in[i] = 1;
			n++;
			n1 += i % 3 == 1;
		}
	}
	ck_assert_int_gt(n1, 2);
	ck_assert_int_eq(shm_room_add(seg, "only-w1", 1, 4), 0);
	ck_assert_int_eq(shm_room_add(seg, "mixed", 1, 2), 0);
	ck_assert_int_eq(shm_room_add(seg, "mixed", 2, 3), 0);
	ck_assert_int_eq(shm_room_add(seg, "no-w1", 0, 1), 0);
	ck_assert_int_eq(shm_worker_kick(seg, 1, 77), 0);
	shm_counter_add(w1, SHM_C_CONN_CURRENT, 9);
	shm_counter_add(w1, SHM_C_CONN_ACCEPTED, 9);

	ck_assert_uint_eq(shm_worker_reclaim(seg, 1), n1);
	for (int i = 0; i < 20; i++) {
		snprintf(key, sizeof(key), "rc-%d", i);
		ck_assert_int_eq(shm_channel_get(seg, key, &got),
		                 in[i] && i % 3 != 1 ? 0 : 1);
		if (in[i] && i % 3 != 1)
			ck_assert(chan_consistent(&got));
	}
	ck_assert_uint_eq(nchannels(seg), n - n1);
	ck_assert_uint_eq(shm_room_online(seg, "only-w1"), 0);
	ck_assert_uint_eq(shm_room_online(seg, "mixed"), 3);
	ck_assert_uint_eq(shm_room_online(seg, "no-w1"), 1);
	ck_assert_uint_eq(nrooms(seg), 2);
	ck_assert_uint_eq(shm_worker_take_kicks(seg, 1, ids, 4), 0);
	ck_assert_uint_eq(shm_counter_sum(seg, SHM_C_CONN_CURRENT), 0);
	ck_assert_uint_eq(shm_counter_sum(seg, SHM_C_CONN_ACCEPTED), 9);
	ck_assert_uint_eq(shm_worker_reclaim(seg, 1), 0);
	ck_assert_uint_eq(shm_worker_reclaim(seg, 4), 0); /* out of range */
	check_all_buckets(seg);
}
END_TEST

START_TEST(test_kick_mailbox)
{
	uint32_t ids[SHM_KICK_MAX + 1];
	uint32_t next_in = 0, next_out = 0;

	/* Several rounds, so the ring indices wrap the array. */
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < SHM_KICK_MAX; i++)
			ck_assert_int_eq(shm_worker_kick(seg, 2, next_in++), 0);
		errno = 0;
		ck_assert_int_eq(shm_worker_kick(seg, 2, 999999), -1);
		ck_assert_int_eq(errno, ENOSPC);
		ck_assert_uint_eq(shm_worker_take_kicks(seg, 2, ids, 100), 100);
		for (int i = 0; i < 100; i++)
			ck_assert_uint_eq(ids[i], next_out++);
		ck_assert_int_eq(shm_worker_kick(seg, 2, next_in++), 0);
		ck_assert_uint_eq(
		    shm_worker_take_kicks(seg, 2, ids, SHM_KICK_MAX + 1),
		    SHM_KICK_MAX - 100 + 1);
		for (int i = 0; i < SHM_KICK_MAX - 100 + 1; i++)
			ck_assert_uint_eq(ids[i], next_out++);
		ck_assert_uint_eq(shm_worker_take_kicks(seg, 2, ids, 8), 0);
	}
	/* Mailboxes are per worker. */
	ck_assert_int_eq(shm_worker_kick(seg, 0, 5), 0);
	ck_assert_uint_eq(shm_worker_take_kicks(seg, 1, ids, 8), 0);
	ck_assert_uint_eq(shm_worker_take_kicks(seg, 0, ids, 0), 0);
	ck_assert_uint_eq(shm_worker_take_kicks(seg, 0, ids, 8), 1);
	ck_assert_uint_eq(ids[0], 5);
	errno = 0;
	ck_assert_int_eq(shm_worker_kick(seg, 4, 1), -1);
	ck_assert_int_eq(errno, EINVAL);
	ck_assert_uint_eq(shm_worker_take_kicks(seg, 4, ids, 8), 0);
}
END_TEST

START_TEST(test_workers_counters)
{
	struct shm_worker *w0 = shm_worker_slot(seg, 0);
	struct shm_worker *w3 = shm_worker_slot(seg, 3);
	struct shm_worker snap;

	ck_assert_ptr_nonnull(w0);
	ck_assert_ptr_null(shm_worker_slot(seg, 4));
	ck_assert_ptr_null(shm_worker_slot_ro(seg, 4));
	ck_assert_ptr_eq(shm_worker_slot_ro(seg, 3), w3);
	/* Slots do not share cache lines. */
	ck_assert_uint_eq(((uintptr_t)w0 % 64), 0);
	ck_assert_uint_eq(((uintptr_t)w3 % 64), 0);

	w3->pid = 4242;
	w3->state = SHM_WORKER_RUNNING;
	w3->generation = 2;
	shm_counter_add(w0, SHM_C_BYTES_IN, 100);
	shm_counter_add(w3, SHM_C_BYTES_IN, 23);
	shm_counter_add(w3, SHM_C_CONN_CURRENT, 5);
	shm_counter_add(w3, SHM_C_CONN_CURRENT, -2);
	shm_counter_add(w3, SHM_C__COUNT, 1); /* ignored */
	shm_counter_add(NULL, SHM_C_BYTES_IN, 1);
	ck_assert_uint_eq(shm_counter_sum(seg, SHM_C_BYTES_IN), 123);
	ck_assert_uint_eq(shm_counter_sum(seg, SHM_C_CONN_CURRENT), 3);
	ck_assert_uint_eq(shm_counter_sum(seg, SHM_C__COUNT), 0);

	ck_assert_int_eq(shm_worker_snapshot(seg, 3, &snap), 0);
	ck_assert_int_eq(snap.pid, 4242);
	ck_assert_uint_eq(snap.state, SHM_WORKER_RUNNING);
	ck_assert_uint_eq(snap.generation, 2);
	ck_assert_uint_eq(snap.counters[SHM_C_BYTES_IN], 23);
	ck_assert_int_eq(shm_worker_snapshot(seg, 4, &snap), -1);

	for (int c = 0; c < SHM_C__COUNT; c++) {
		ck_assert_ptr_nonnull(shm_counter_name((enum shm_counter)c));
		for (int d = 0; d < c; d++)
			ck_assert_str_ne(shm_counter_name((enum shm_counter)c),
			                 shm_counter_name((enum shm_counter)d));
	}
	ck_assert_str_eq(shm_counter_name(SHM_C_CONN_ACCEPTED),
	                 "conn_accepted");
	ck_assert_ptr_null(shm_counter_name(SHM_C__COUNT));
	ck_assert_ptr_null(shm_counter_name((enum shm_counter) - 1));
	/* Added last, with the layout version that knows it. */
	ck_assert_int_eq(SHM_C_DROP_GAP, SHM_C__COUNT - 1);
	ck_assert_str_eq(shm_counter_name(SHM_C_DROP_GAP), "drop_gap");
	/*
	 * 3: struct shm_worker gained alive_ms; 4: bucket tables became an
	 * index and a dense pool.
	 */
	ck_assert_int_eq(SHM_VERSION, 4);
}
END_TEST

START_TEST(test_geometry_and_header)
{
	struct shm_geometry g = small_geom;
	struct shm_seg *s;
	const char *name;

	ck_assert_uint_gt(shm_seg_size(&g), 0);
	ck_assert_uint_le(shm_seg_size(&g), shm_seg_bytes(seg));
	ck_assert_int_eq(shm_geometry_check(&g, err, sizeof(err)), 0);
	ck_assert_int_eq(shm_seg_master_pid(seg), getpid());
	ck_assert_int_eq(shm_seg_master_alive(seg), 1);
	ck_assert_uint_gt(shm_seg_created_ms(seg), 1600000000000ULL);
	ck_assert_mem_eq(shm_seg_geometry(seg), &small_geom, sizeof(g));
	ck_assert_str_eq(shm_seg_name(seg), names[0]);

	const struct shm_geometry bad[] = {
	    {0, 8, 8, 4},
	    {4, 0, 8, 4},
	    {4, 8, 0, 4},
	    {4, 8, 8, 0},
	    {(1u << 20) + 1, 8, 8, 4},
	    {4, 65537, 8, 4},
	    {4, 8, 65537, 4},
	    {4, 8, 8, 4097},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_uint_eq(shm_seg_size(&bad[i]), 0);
		ck_assert_int_eq(shm_geometry_check(&bad[i], err, sizeof(err)),
		                 -1);
		ck_assert_str_ne(err, "");
		name = new_name();
		errno = 0;
		ck_assert_int_eq(
		    shm_seg_create(name, &bad[i], &s, err, sizeof(err)), -1);
		ck_assert_int_eq(errno, EINVAL);
		ck_assert_ptr_null(s);
		ck_assert_int_eq(shm_seg_attach(name, 1, &s, err, sizeof(err)),
		                 -1);
		nnames--;
	}
	/* Bad names. */
	ck_assert_int_eq(shm_seg_create("noslash", &g, &s, err, sizeof(err)),
	                 -1);
	ck_assert_ptr_nonnull(strstr(err, "bad shm name"));
	ck_assert_int_eq(shm_seg_create("/a/b", &g, &s, err, sizeof(err)), -1);
	ck_assert_int_eq(shm_seg_create("/", &g, &s, err, sizeof(err)), -1);
	ck_assert_int_eq(shm_seg_attach(NULL, 1, &s, err, sizeof(err)), -1);
	shm_seg_detach(NULL);
}
END_TEST

/* Write raw bytes as a segment, the way a foreign program might. */
static void
raw_segment(const char *name, const void *data, size_t len, size_t size)
{
	int fd = shm_open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);

	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
}

START_TEST(test_attach_errors)
{
	struct shm_seg *s = NULL;
	char junk[4096];
	const char *name;

	name = new_name();
	ck_assert_int_eq(shm_seg_attach(name, 1, &s, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, ENOENT);
	ck_assert_ptr_nonnull(strstr(err, "no shm segment"));
	ck_assert_ptr_null(s);

	memset(junk, 'x', sizeof(junk));
	raw_segment(name, junk, sizeof(junk), sizeof(junk));
	ck_assert_int_eq(shm_seg_attach(name, 1, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not an imgate segment"));

	raw_segment(name, junk, 10, 10);
	ck_assert_int_eq(shm_seg_attach(name, 0, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not an imgate segment"));

	memset(junk, 0, sizeof(junk));
	raw_segment(name, junk, sizeof(junk), sizeof(junk));
	ck_assert_int_eq(shm_seg_attach(name, 1, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "not initialised"));

	/* Right magic and version, geometry nonsense. */
	memcpy(junk, SHM_MAGIC, 8);
	junk[8] = SHM_VERSION;
	raw_segment(name, junk, sizeof(junk), sizeof(junk));
	ck_assert_int_eq(shm_seg_attach(name, 1, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "layout"));

	/* A real segment from another version, older or newer. */
	shm_test_set_version(seg, SHM_VERSION + 1);
	ck_assert_int_eq(shm_seg_attach(names[0], 1, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "version"));
	shm_test_set_version(seg, 1); /* fewer counters per worker */
	ck_assert_int_eq(shm_seg_attach(names[0], 0, &s, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "version 1"));
	shm_test_set_version(seg, SHM_VERSION);
	ck_assert_msg(shm_seg_attach(names[0], 1, &s, err, sizeof(err)) == 0,
	              "%s", err);
	shm_seg_detach(s);
}
END_TEST

static int
count_chan(const struct shm_channel *c, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

static int
count_torn(const struct shm_channel *c, void *arg)
{
	*(int *)arg += !chan_consistent(c);
	return 0;
}

static int
stop_at_first(const struct shm_channel *c, void *arg)
{
	(*(int *)arg)++;
	return 1;
}

START_TEST(test_readonly)
{
	struct shm_channel c, got;
	struct shm_seg *ro;
	uint32_t ids[2];
	int n = 0;

	chan_make(&c, "a", 0, 1);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	chan_make(&c, "b", 1, 2);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	ck_assert_int_eq(shm_room_add(seg, "r", 0, 2), 0);
	ck_assert_int_eq(shm_seg_attach(names[0], 1, &ro, err, sizeof(err)), 0);

	ck_assert_int_eq(shm_channel_get(ro, "a", &got), 0);
	ck_assert(chan_consistent(&got));
	ck_assert_uint_eq(shm_room_online(ro, "r"), 2);
	ck_assert_uint_eq(shm_each_channel(ro, count_chan, &n), 0);
	ck_assert_int_eq(n, 2);
	n = 0;
	shm_each_channel(ro, stop_at_first, &n);
	ck_assert_int_eq(n, 1);
	ck_assert_ptr_nonnull(shm_worker_slot_ro(ro, 0));
	ck_assert_ptr_null(shm_worker_slot(ro, 0));

	errno = 0;
	ck_assert_int_eq(shm_channel_put(ro, &c, NULL), -1);
	ck_assert_int_eq(errno, EROFS);
	ck_assert_int_eq(shm_channel_del(ro, "a", 0, 1), -1);
	ck_assert_int_eq(shm_channel_touch(ro, "a", 0, 1, 5), -1);
	ck_assert_int_eq(shm_room_add(ro, "r", 0, 1), -1);
	ck_assert_int_eq(shm_room_set_cluster(ro, "r", 1), -1);
	ck_assert_int_eq(shm_worker_kick(ro, 0, 1), -1);
	ck_assert_int_eq(errno, EROFS);
	ck_assert_uint_eq(shm_worker_take_kicks(ro, 0, ids, 2), 0);
	ck_assert_uint_eq(shm_worker_reclaim(ro, 0), 0);
	ck_assert_int_eq(shm_channel_get(seg, "a", &got), 0);

	/* A writer's update shows through the read-only mapping. */
	ck_assert_int_eq(shm_channel_touch(seg, "a", 0, 1, 777), 0);
	ck_assert_int_eq(shm_channel_get(ro, "a", &got), 0);
	ck_assert_uint_eq(got.heartbeat_ms, 777);
	shm_seg_detach(ro);
}
END_TEST

START_TEST(test_create_replaces_stale)
{
	struct shm_seg *s, *again;
	struct shm_channel c, got;
	pid_t pid;
	int pfd[2], status;
	char ch;

	/* Our own segment (same master pid) may be recreated: it is emptied. */
	chan_make(&c, "x", 0, 1);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	ck_assert_int_eq(
	    shm_seg_create(names[0], &small_geom, &again, err, sizeof(err)), 0);
	ck_assert_int_eq(shm_channel_get(again, "x", &got), 1);
	shm_seg_detach(again);

	/* A live master's segment is refused, a dead one's replaced. */
	const char *name = new_name();
	ck_assert_int_eq(pipe(pfd), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		if (shm_seg_create(name, &small_geom, &s, NULL, 0) == -1)
			_exit(1);
		write(pfd[1], "r", 1);
		alarm(30); /* never outlive a failed test */
		pause();
		_exit(0);
	}
	ck_assert_int_eq(read(pfd[0], &ch, 1), 1);
	errno = 0;
	ck_assert_int_eq(
	    shm_seg_create(name, &small_geom, &s, err, sizeof(err)), -1);
	ck_assert_int_eq(errno, EBUSY);
	ck_assert_ptr_nonnull(strstr(err, "running master"));
	kill(pid, SIGKILL);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(shm_seg_attach(name, 1, &s, err, sizeof(err)), 0);
	ck_assert_int_eq(shm_seg_master_alive(s), 0);
	shm_seg_detach(s);
	ck_assert_int_eq(
	    shm_seg_create(name, &small_geom, &s, err, sizeof(err)), 0);
	ck_assert_int_eq(shm_seg_master_pid(s), getpid());
	ck_assert_int_eq(shm_seg_master_alive(s), 1);

	/* A live process holding the pid, started at another time. */
	shm_test_set_master_pid(s, 1);
	ck_assert_int_eq(shm_seg_master_alive(s), 0);
	ck_assert_int_eq(
	    shm_seg_create(name, &small_geom, &again, err, sizeof(err)), 0);
	shm_seg_detach(again);
	shm_seg_detach(s);
	close(pfd[0]);
	close(pfd[1]);
}
END_TEST

/* Fork a child that runs fn(arg) and then dies with SIGKILL. */
static void
die_in_child(int (*fn)(struct shm_seg *, const char *), const char *key)
{
	int status;
	pid_t pid = fork();

	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		if (fn(seg, key) == -1)
			_exit(1);
		raise(SIGKILL);
		_exit(2);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));
	ck_assert_int_eq(WTERMSIG(status), SIGKILL);
}

static int
lock_bucket_of(struct shm_seg *s, const char *key)
{
	return shm_test_lock_bucket(s, shm_test_bucket_of(s, key));
}

START_TEST(test_crash_while_locked)
{
	char keys[4][SHM_KEY_MAX];
	struct shm_channel c, got;
	uint32_t b = 1;

	keys_in_bucket(seg, b, "cl-", 4, keys);
	for (int i = 0; i < 3; i++) {
		chan_make(&c, keys[i], 0, (uint32_t)i);
		ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	}
	die_in_child(lock_bucket_of, keys[0]);
	ck_assert_uint_eq(shm_test_bucket_recoveries(seg, b), 0);

	/* Lock-free readers are not held up by the dead owner's lock. */
	ck_assert_int_eq(shm_channel_get(seg, keys[1], &got), 0);

	chan_make(&c, keys[3], 1, 3);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	ck_assert_uint_eq(shm_test_bucket_recoveries(seg, b), 1);
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(shm_channel_get(seg, keys[i], &got), 0);
		ck_assert(chan_consistent(&got));
	}
	ck_assert_uint_eq(nchannels(seg), 4);
	check_all_buckets(seg);
	/* And the lock works normally afterwards. */
	ck_assert_int_eq(shm_channel_del(seg, keys[3], 1, 3), 0);
	ck_assert_uint_eq(shm_test_bucket_recoveries(seg, b), 1);
	check_all_buckets(seg);
}
END_TEST

START_TEST(test_crash_mid_write)
{
	char keys[5][SHM_KEY_MAX];
	struct shm_channel c, got;
	struct shm_seg *ro;
	struct timespec t0, t1;
	uint32_t b = 2;

	keys_in_bucket(seg, b, "cw-", 5, keys);
	for (int i = 0; i < 3; i++) {
		chan_make(&c, keys[i], 0, (uint32_t)i);
		ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	}
	ck_assert_int_eq(shm_room_add(seg, keys[4], 1, 2), 0);
	/* A new key half written, then an existing one half rewritten. */
	die_in_child(shm_test_torn_put, keys[3]);

	/* A read-only reader gives up on the bucket, in bounded time. */
	ck_assert_int_eq(shm_seg_attach(names[0], 1, &ro, err, sizeof(err)), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	errno = 0;
	ck_assert_int_eq(shm_channel_get(ro, keys[0], &got), -1);
	ck_assert_int_eq(errno, EAGAIN);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ck_assert_int_lt(t1.tv_sec - t0.tv_sec, 5);
	ck_assert_uint_eq(shm_each_channel(ro, count_chan, &(int){0}), 1);

	/* A writable reader falls back to the lock, which repairs. */
	ck_assert_int_eq(shm_channel_get(seg, keys[0], &got), 0);
	ck_assert(chan_consistent(&got));
	ck_assert_uint_eq(shm_test_bucket_recoveries(seg, b), 1);
	ck_assert_int_eq(shm_channel_get(seg, keys[3], &got), 1);
	ck_assert_uint_eq(nchannels(seg), 3);
	ck_assert_uint_eq(shm_room_online(seg, keys[4]), 2);
	check_all_buckets(seg);
	ck_assert_int_eq(shm_channel_get(ro, keys[1], &got), 0);
	ck_assert_uint_eq(shm_each_channel(ro, count_chan, &(int){0}), 0);

	/* The torn write was over an existing record: that record is lost. */
	die_in_child(shm_test_torn_put, keys[1]);
	chan_make(&c, keys[3], 1, 3);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	ck_assert_uint_eq(shm_test_bucket_recoveries(seg, b), 2);
	ck_assert_int_eq(shm_channel_get(seg, keys[1], &got), 1);
	for (int i = 0; i < 4; i++)
		if (i != 1) {
			ck_assert_int_eq(shm_channel_get(seg, keys[i], &got),
			                 0);
			ck_assert(chan_consistent(&got));
		}
	ck_assert_uint_eq(nchannels(seg), 3);
	check_all_buckets(seg);
	shm_seg_detach(ro);
}
END_TEST

static int
exit_with_torn_del(struct shm_seg *s, const char *key)
{
	_exit(shm_test_torn_del(s, key) == 1 ? 0 : 1);
}

/* A delete killed half-way through its shift leaves one record twice. */
START_TEST(test_crash_mid_shift)
{
	char keys[8][SHM_KEY_MAX];
	struct shm_channel c, got;
	int victim = -1, status;
	uint32_t b = 3;

	keys_in_bucket(seg, b, "sh-", 8, keys);
	for (int i = 0; i < 8; i++) {
		chan_make(&c, keys[i], 1, (uint32_t)i);
		ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	}
	/* A full table: some record is displaced behind another. */
	for (int i = 0; i < 8 && victim < 0; i++) {
		pid_t pid = fork();

		ck_assert_int_ne(pid, -1);
		if (pid == 0)
			exit_with_torn_del(seg, keys[i]);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);
		ck_assert(WIFEXITED(status));
		if (WEXITSTATUS(status) == 0)
			victim = i;
	}
	ck_assert_int_ge(victim, 0);
	ck_assert_uint_eq(nchannels(seg), 8);

	/* The next locker repairs: the victim gone, no record twice. */
	ck_assert_int_eq(shm_channel_touch(seg, keys[(victim + 1) % 8], 1,
	                                   (uint32_t)(victim + 1) % 8, 5),
	                 0);
	ck_assert_uint_eq(shm_test_bucket_recoveries(seg, b), 1);
	ck_assert_uint_eq(nchannels(seg), 7);
	check_all_buckets(seg);
	for (int i = 0; i < 8; i++) {
		ck_assert_int_eq(shm_channel_get(seg, keys[i], &got),
		                 i == victim ? 1 : 0);
		if (i != victim)
			ck_assert_uint_eq(got.conn_id, i);
	}
	ck_assert_int_eq(shm_channel_del(seg, keys[(victim + 2) % 8], 1,
	                                 (uint32_t)(victim + 2) % 8),
	                 0);
	ck_assert_int_eq(shm_channel_get(seg, keys[(victim + 2) % 8], &got), 1);
	check_all_buckets(seg);
}
END_TEST

/*
 * Real crashes: a child hammers one bucket and is SIGKILLed at a random
 * moment, maybe inside a write. Whatever it left, the next writer finds a
 * consistent table of whole records.
 */
START_TEST(test_crash_random_kill)
{
	const struct shm_geometry g = {1, 64, 8, 2};
	struct shm_seg *s = make_seg(&g);
	unsigned seed = 7;

	for (int round = 0; round < 60; round++) {
		struct shm_channel c;
		struct timespec ts = {0,
		                      200000 + (long)(rand_r(&seed) % 800000)};
		int status;
		pid_t pid = fork();

		ck_assert_int_ne(pid, -1);
		if (pid == 0) {
			unsigned cs = (unsigned)round;

			alarm(30); /* never outlive a failed test */

			for (uint32_t i = 0;; i++) {
				char key[16];

				snprintf(key, sizeof(key), "rk-%u",
				         rand_r(&cs) % 48);
				chan_make(&c, key, 1, i);
				if (i % 3 == 0)
					shm_channel_del(s, key, 1, i - 3);
				else
					shm_channel_put(s, &c, NULL);
				shm_room_add(s, "rk-room", 1, i % 2 ? -1 : 1);
			}
		}
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		ck_assert_int_eq(waitpid(pid, &status, 0), pid);

		chan_make(&c, "parent", 0, (uint32_t)round);
		ck_assert_int_ge(shm_channel_put(s, &c, NULL), 0);
		if (shm_test_check_bucket(s, 0, err, sizeof(err)) == -1)
			ck_abort_msg("round %d: %s", round, err);
		{
			int bad = 0;

			shm_each_channel(s, count_torn, &bad);
			ck_assert_int_eq(bad, 0);
		}
	}
	shm_seg_detach(s);
}
END_TEST

START_TEST(test_reclaim_repairs)
{
	struct shm_channel c;

	chan_make(&c, "z", 3, 1);
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	die_in_child(shm_test_torn_put, "y");
	/* The master's reclaim takes every bucket lock, repairing on the way.
	 */
	ck_assert_uint_eq(shm_worker_reclaim(seg, 3), 1);
	ck_assert_uint_eq(nchannels(seg), 0);
	check_all_buckets(seg);
}
END_TEST

/* n keys "<prefix><i>" whose index probe starts at cell home. */
static void
keys_at_home(const struct shm_seg *s, uint32_t home, const char *prefix, int n,
             char out[][SHM_KEY_MAX])
{
	int found = 0;

	for (int i = 0; found < n && i < 1000000; i++) {
		snprintf(out[found], SHM_KEY_MAX, "%s%d", prefix, i);
		if (shm_test_home_of(s, out[found]) == home)
			found++;
	}
	ck_assert_int_eq(found, n);
}

static void
expect_keys(const struct shm_seg *s, char keys[][SHM_KEY_MAX], int n,
            const int *present)
{
	struct shm_channel got;

	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(shm_channel_get(s, keys[i], &got),
		                 present[i] ? 0 : 1);
		if (present[i]) {
			ck_assert(chan_consistent(&got));
			ck_assert_uint_eq(got.conn_id, i);
		}
	}
	if (shm_test_check_bucket(s, 0, err, sizeof(err)) == -1)
		ck_abort_msg("%s", err);
}

/*
 * A delete moves the pool's last record into the hole and repoints its
 * index cell: the last record itself, a moved record whose cell wrapped
 * around the end of the index, and a victim whose cell wrapped.
 */
START_TEST(test_delete_moves)
{
	const struct shm_geometry g = {1, 8, 8, 2};
	struct shm_seg *s = make_seg(&g);
	/* keys[0..2] start at the last cell, keys[3] one before it. */
	char keys[4][SHM_KEY_MAX];
	int present[4] = {0};
	struct shm_channel c;

	keys_at_home(s, 7, "wrap-", 3, keys);
	keys_at_home(s, 6, "six-", 1, keys + 3);
	for (int i = 0; i < 3; i++) {
		chan_make(&c, keys[i], 0, (uint32_t)i);
		ck_assert_int_eq(shm_channel_put(s, &c, NULL), 0);
		present[i] = 1;
	}
	/* keys[1] and keys[2] sit in cells 0 and 1, wrapped. */
	expect_keys(s, keys, 4, present);

	/* The last record: nothing moves. */
	ck_assert_int_eq(shm_channel_del(s, keys[2], 0, 2), 0);
	present[2] = 0;
	expect_keys(s, keys, 4, present);
	chan_make(&c, keys[2], 0, 2);
	ck_assert_int_eq(shm_channel_put(s, &c, NULL), 0);
	present[2] = 1;

	/* The first: keys[2] (wrapped cell) moves into entry 0. */
	ck_assert_int_eq(shm_channel_del(s, keys[0], 0, 0), 0);
	present[0] = 0;
	expect_keys(s, keys, 4, present);

	/* A victim in a wrapped cell, with a record behind it. */
	chan_make(&c, keys[3], 0, 3);
	ck_assert_int_eq(shm_channel_put(s, &c, NULL), 0);
	present[3] = 1;
	chan_make(&c, keys[0], 0, 0);
	ck_assert_int_eq(shm_channel_put(s, &c, NULL), 0);
	present[0] = 1;
	expect_keys(s, keys, 4, present);
	ck_assert_int_eq(shm_channel_del(s, keys[1], 0, 1), 0);
	present[1] = 0;
	expect_keys(s, keys, 4, present);
	ck_assert_int_eq(shm_channel_del(s, keys[3], 0, 3), 0);
	present[3] = 0;
	expect_keys(s, keys, 4, present);

	/* Down to empty and back. */
	ck_assert_int_eq(shm_channel_del(s, keys[2], 0, 2), 0);
	ck_assert_int_eq(shm_channel_del(s, keys[0], 0, 0), 0);
	memset(present, 0, sizeof(present));
	expect_keys(s, keys, 4, present);
	ck_assert_uint_eq(nchannels(s), 0);
	for (int i = 3; i >= 0; i--) {
		chan_make(&c, keys[i], 0, (uint32_t)i);
		ck_assert_int_eq(shm_channel_put(s, &c, NULL), 0);
		present[i] = 1;
		expect_keys(s, keys, 4, present);
	}
	shm_seg_detach(s);
}
END_TEST

/* Bytes of the segment name that are in memory (mincore on a fresh map). */
static size_t
resident_bytes(const char *name)
{
	long page = sysconf(_SC_PAGESIZE);
	unsigned char *vec;
	size_t npages, n = 0;
	struct stat st;
	void *p;
	int fd;

	ck_assert_int_ne(fd = shm_open(name, O_RDONLY, 0), -1);
	ck_assert_int_eq(fstat(fd, &st), 0);
	npages = ((size_t)st.st_size + (size_t)page - 1) / (size_t)page;
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
	ck_assert(p != MAP_FAILED);
	close(fd);
	ck_assert_ptr_nonnull(vec = malloc(npages));
	ck_assert_int_eq(mincore(p, (size_t)st.st_size, vec), 0);
	for (size_t i = 0; i < npages; i++)
		n += vec[i] & 1;
	free(vec);
	munmap(p, (size_t)st.st_size);
	return n * (size_t)page;
}

#define MEM_N 4000

/*
 * The point of the dense pools: a table sized for far more than it holds
 * has the memory of what it holds. Records plus the index, never the
 * capacity, and churn does not spread records over more pages.
 */
START_TEST(test_memory_follows_use)
{
	const struct shm_geometry g = {8, 16384, 8, 4};
	/* A record is the channel plus its state and hash. */
	const size_t entry = sizeof(struct shm_channel) + 16,
	             index = (size_t)g.buckets * g.channels_per_bucket * 4,
	             slack = (size_t)g.buckets * 2 * 4096;
	const char *name = new_name();
	size_t base, full, churned;
	struct shm_channel c, got;
	struct shm_seg *s;
	char key[32];
	int n = 0;

	if (shm_seg_create(name, &g, &s, err, sizeof(err)) == -1)
		ck_abort_msg("shm_seg_create: %s", err);
	base = resident_bytes(name);
	for (uint32_t i = 0; i < MEM_N; i++) {
		snprintf(key, sizeof(key), "mem-%u", i);
		chan_make(&c, key, 1, i);
		ck_assert_int_eq(shm_channel_put(s, &c, NULL), 0);
	}
	/* Readers and snapshots only touch what is in use. */
	ck_assert_uint_eq(shm_each_channel(s, count_chan, &n), 0);
	ck_assert_int_eq(n, MEM_N);
	for (uint32_t i = 0; i < MEM_N; i++) {
		snprintf(key, sizeof(key), "absent-%u", i);
		ck_assert_int_eq(shm_channel_get(s, key, &got), 1);
	}
	full = resident_bytes(name);
	printf("shm: %d records of %zu bytes in a table of %zu: %zu bytes "
	       "resident (%zu per record, %zu with the index), capacity x "
	       "record would be %zu\n",
	       MEM_N, entry, (size_t)g.buckets * g.channels_per_bucket,
	       full - base, (full - base - index) / MEM_N,
	       (full - base) / MEM_N,
	       (size_t)g.buckets * g.channels_per_bucket * entry);
	ck_assert_uint_le(full - base, MEM_N * entry + index + slack);
	ck_assert_uint_ge(full - base, MEM_N * entry);
	ck_assert_uint_lt(full, shm_seg_bytes(s) / 10);

	/* Churn: half out, as many new in; the pools stay where they were. */
	for (uint32_t i = 0; i < MEM_N; i += 2) {
		snprintf(key, sizeof(key), "mem-%u", i);
		ck_assert_int_eq(shm_channel_del(s, key, 1, i), 0);
	}
	for (uint32_t i = 0; i < MEM_N; i += 2) {
		snprintf(key, sizeof(key), "new-%u", i);
		chan_make(&c, key, 1, i);
		ck_assert_int_eq(shm_channel_put(s, &c, NULL), 0);
	}
	churned = resident_bytes(name);
	ck_assert_uint_le(churned, full + slack);
	ck_assert_uint_eq(nchannels(s), MEM_N);
	check_all_buckets(s);
	shm_seg_detach(s);
}
END_TEST

/* --- multi-process stress --- */

#define ST_WRITERS 4
#define ST_ITERS   60000
#define ST_SHARED  64
#define ST_OWN     100
#define ST_ROOMS   8
#define ST_BUCKETS 1
#define ST_SLOTS   480

struct stress_result {
	volatile int done;
	int own[ST_WRITERS];
	int rooms[ST_WRITERS][ST_ROOMS];
	long snapshots;
	long gets;
	char failure[ST_WRITERS + 1][200];
};

static struct stress_result *res;

static void
stress_writer(int w)
{
	char key[32], *fail = res->failure[w];
	int present[ST_OWN] = {0};
	uint32_t conn_of[ST_OWN] = {0}, last_shared[ST_SHARED] = {0};
	int rooms[ST_ROOMS] = {0};
	unsigned seed = (unsigned)w * 7919 + 1;
	struct shm_channel c, old;

	for (uint32_t i = 1; i <= ST_ITERS; i++) {
		int op = (int)(rand_r(&seed) % 10);
		int k = (int)(rand_r(&seed) % ST_OWN);
		int r;

		if (op < 4) {
			k %= ST_SHARED;
			snprintf(key, sizeof(key), "shared-%d", k);
			chan_make(&c, key, (uint16_t)w, i);
			r = shm_channel_put(seg, &c, &old);
			if (r == -1 || (r == 1 && !chan_consistent(&old))) {
				snprintf(fail, 200, "shared put %s: %d", key,
				         r);
				_exit(1);
			}
			last_shared[k] = i;
		} else if (op == 4) {
			k %= ST_SHARED;
			snprintf(key, sizeof(key), "shared-%d", k);
			if (shm_channel_del(seg, key, (uint16_t)w,
			                    last_shared[k]) == -1) {
				snprintf(fail, 200, "shared del %s", key);
				_exit(1);
			}
		} else if (op < 7) {
			snprintf(key, sizeof(key), "w%d-%d", w, k);
			chan_make(&c, key, (uint16_t)w, i);
			r = shm_channel_put(seg, &c, &old);
			if (r != present[k] ||
			    (r == 1 && (old.conn_id != conn_of[k] ||
			                !chan_consistent(&old)))) {
				snprintf(fail, 200, "own put %s: %d", key, r);
				_exit(1);
			}
			present[k] = 1;
			conn_of[k] = i;
		} else if (op == 7) {
			snprintf(key, sizeof(key), "w%d-%d", w, k);
			r = shm_channel_del(seg, key, (uint16_t)w, conn_of[k]);
			if (r != (present[k] ? 0 : 1)) {
				snprintf(fail, 200, "own del %s: %d", key, r);
				_exit(1);
			}
			present[k] = 0;
		} else {
			k %= ST_ROOMS;
			snprintf(key, sizeof(key), "room-%d", k);
			if (op == 9 && rooms[k] > 0) {
				r = shm_room_add(seg, key, (uint16_t)w, -1);
				rooms[k]--;
			} else {
				r = shm_room_add(seg, key, (uint16_t)w, 1);
				rooms[k]++;
			}
			if (r != 0) {
				snprintf(fail, 200, "room add %s: %d", key, r);
				_exit(1);
			}
		}
	}
	for (int k = 0; k < ST_OWN; k++)
		res->own[w] += present[k];
	memcpy(res->rooms[w], rooms, sizeof(rooms));
	_exit(0);
}

struct snap_check {
	unsigned char seen[ST_SHARED + ST_WRITERS * ST_OWN];
	int own[ST_WRITERS];
	int shared;
	int bad;
	char why[200];
};

static int
snap_channel(const struct shm_channel *c, void *arg)
{
	struct snap_check *sc = arg;
	int w, k, idx = -1;

	if (!chan_consistent(c)) {
		snprintf(sc->why, sizeof(sc->why), "torn record %s", c->key);
		sc->bad = 1;
		return 1;
	}
	if (sscanf(c->key, "shared-%d", &k) == 1 && k >= 0 && k < ST_SHARED) {
		idx = k;
		sc->shared++;
	} else if (sscanf(c->key, "w%d-%d", &w, &k) == 2 && w >= 0 &&
	           w < ST_WRITERS && k >= 0 && k < ST_OWN) {
		if (c->worker != w) {
			snprintf(sc->why, sizeof(sc->why), "%s on worker %d",
			         c->key, c->worker);
			sc->bad = 1;
			return 1;
		}
		idx = ST_SHARED + w * ST_OWN + k;
		sc->own[w]++;
	}
	if (idx < 0 || sc->seen[idx]++) {
		snprintf(sc->why, sizeof(sc->why), "unexpected or twice: %s",
		         c->key);
		sc->bad = 1;
		return 1;
	}
	return 0;
}

static int
snap_room(const struct shm_room *r, void *arg)
{
	struct snap_check *sc = arg;
	uint64_t sum = 0;

	for (uint32_t w = 0; w < r->nworkers; w++)
		sum += r->workers[w];
	if (sum != r->online || sum == 0) {
		snprintf(sc->why, sizeof(sc->why), "room %s: %u vs %llu",
		         r->name, r->online, (unsigned long long)sum);
		sc->bad = 1;
		return 1;
	}
	return 0;
}

static void
stress_reader(void)
{
	struct shm_seg *ro;
	struct shm_channel c;
	char *fail = res->failure[ST_WRITERS];
	unsigned seed = 99;
	char key[32];

	alarm(120); /* never outlive a failed test */
	if (shm_seg_attach(names[0], 1, &ro, err, sizeof(err)) == -1) {
		snprintf(fail, 200, "attach: %.150s", err);
		_exit(1);
	}
	do {
		struct snap_check sc = {0};

		shm_each_channel(ro, snap_channel, &sc);
		if (!sc.bad)
			shm_each_room(ro, snap_room, &sc);
		if (sc.bad) {
			snprintf(fail, 200, "%s", sc.why);
			_exit(1);
		}
		res->snapshots++;
		for (int i = 0; i < 50; i++) {
			snprintf(key, sizeof(key), "shared-%u",
			         rand_r(&seed) % ST_SHARED);
			if (shm_channel_get(ro, key, &c) == 0) {
				res->gets++;
				if (strcmp(c.key, key) != 0 ||
				    !chan_consistent(&c)) {
					snprintf(fail, 200, "torn get %s", key);
					_exit(1);
				}
			}
		}
	} while (!res->done);
	shm_seg_detach(ro);
	_exit(0);
}

START_TEST(test_stress)
{
	const struct shm_geometry g = {ST_BUCKETS, ST_SLOTS, ST_ROOMS,
	                               ST_WRITERS};
	pid_t pids[ST_WRITERS + 1];
	struct snap_check sc = {0};
	int status;

	/* The fixture's segment is replaced by a roomier one. */
	shm_seg_detach(seg);
	ck_assert_int_eq(shm_seg_create(names[0], &g, &seg, err, sizeof(err)),
	                 0);
	res = mmap(NULL, sizeof(*res), PROT_READ | PROT_WRITE,
	           MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(res, MAP_FAILED);
	memset(res, 0, sizeof(*res));

	for (int i = 0; i <= ST_WRITERS; i++) {
		pids[i] = fork();
		ck_assert_int_ne(pids[i], -1);
		if (pids[i] == 0) {
			if (i == ST_WRITERS)
				stress_reader();
			stress_writer(i);
		}
	}
	for (int i = 0; i < ST_WRITERS; i++) {
		ck_assert_int_eq(waitpid(pids[i], &status, 0), pids[i]);
		ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
		              "writer %d: %s", i, res->failure[i]);
	}
	res->done = 1;
	ck_assert_int_eq(waitpid(pids[ST_WRITERS], &status, 0),
	                 pids[ST_WRITERS]);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "reader: %s", res->failure[ST_WRITERS]);
	ck_assert_int_gt(res->snapshots, 0);

	/* Exact counts at the end. */
	ck_assert_uint_eq(shm_each_channel(seg, snap_channel, &sc), 0);
	ck_assert_msg(!sc.bad, "%s", sc.why);
	for (int w = 0; w < ST_WRITERS; w++)
		ck_assert_int_eq(sc.own[w], res->own[w]);
	ck_assert_int_le(sc.shared, ST_SHARED);
	ck_assert_uint_eq(nchannels(seg),
	                  (uint64_t)(sc.shared + sc.own[0] + sc.own[1] +
	                             sc.own[2] + sc.own[3]));
	for (int k = 0; k < ST_ROOMS; k++) {
		char room[16];
		uint32_t want = 0;

		snprintf(room, sizeof(room), "room-%d", k);
		for (int w = 0; w < ST_WRITERS; w++)
			want += (uint32_t)res->rooms[w][k];
		ck_assert_uint_eq(shm_room_online(seg, room), want);
	}
	check_all_buckets(seg);
	munmap(res, sizeof(*res));
}
END_TEST

static Suite *
shm_suite(void)
{
	Suite *s = suite_create("shm");
	TCase *tc = tcase_create("tables");
	TCase *crash = tcase_create("crash");
	TCase *stress = tcase_create("stress");

	/* Generous: sanitizer builds on a shared, busy machine. */
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_put_get_replace);
	tcase_add_test(tc, test_del_compare);
	tcase_add_test(tc, test_update_fields);
	tcase_add_test(tc, test_rooms);
	tcase_add_test(tc, test_room_cluster);
	tcase_add_test(tc, test_full_bucket);
	tcase_add_test(tc, test_limits);
	tcase_add_test(tc, test_table_model);
	tcase_add_test(tc, test_delete_moves);
	tcase_add_test(tc, test_memory_follows_use);
	tcase_add_test(tc, test_reclaim);
	tcase_add_test(tc, test_kick_mailbox);
	tcase_add_test(tc, test_workers_counters);
	tcase_add_test(tc, test_geometry_and_header);
	tcase_add_test(tc, test_attach_errors);
	tcase_add_test(tc, test_readonly);
	tcase_add_test(tc, test_create_replaces_stale);
	suite_add_tcase(s, tc);

	tcase_add_checked_fixture(crash, setup, teardown);
	tcase_add_test(crash, test_crash_while_locked);
	tcase_add_test(crash, test_crash_mid_write);
	tcase_add_test(crash, test_crash_mid_shift);
	tcase_add_test(crash, test_crash_random_kill);
	tcase_add_test(crash, test_reclaim_repairs);
	tcase_set_timeout(crash, 60);
	suite_add_tcase(s, crash);

	tcase_add_checked_fixture(stress, setup, teardown);
	tcase_add_test(stress, test_stress);
	tcase_set_timeout(stress, 120);
	suite_add_tcase(s, stress);
	return s;
}

int
main(void)
{
	/* Segment names carry it: see shmtest.h. */
	runner_pid = getpid();
	return shmtest_run(shm_suite(), "imgate-test");
}
