/*
 * online: the cluster-wide room counts, cached.
 *
 * Summing every comet's room counts walks all of P:online:* in Redis; with
 * every comet renewing every few seconds that would be quadratic in the
 * number of nodes. So the sum is fetched at most once per online_cache
 * period (a setting; 0 = on every request) and shared by RenewOnline
 * replies and the online HTTP routes. Requests that arrive while a fetch is
 * in flight wait for it instead of starting their own.
 */
#ifndef IMGATE_LOGIC_ONLINE_H
#define IMGATE_LOGIC_ONLINE_H

#include <stddef.h>

#include "logic/logic.h"

struct online_room {
	char *room;
	long long count;
};

struct online_totals {
	struct online_room *rooms; /* sorted by room */
	size_t n;
};

/* totals NULL: Redis failed. totals is valid only during the callback. */
typedef void (*online_cb)(const struct online_totals *totals, void *arg);

struct online *online_new(struct logic *l);
/* Waiters still pending get NULL. */
void online_free(struct online *o);

/*
 * Call cb with the totals: at once when the cache is fresh, else when the
 * fetch answers. 0, or -1 when Redis is down (cb is never called).
 */
int online_get(struct online *o, online_cb cb, void *arg);

/* The count of room, 0 when unknown. */
long long online_count(const struct online_totals *t, const char *room);

#endif
