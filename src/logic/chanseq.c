#include "config.h"

#include <sys/queue.h>

#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "logic/chanseq.h"

#define BUCKETS_MIN 64

struct chanseq_ent {
	LIST_ENTRY(chanseq_ent) hash;
	TAILQ_ENTRY(chanseq_ent) lru; /* least recently used first */
	uint64_t hv;
	uint64_t seq;
	uint64_t used_ms;
	size_t len;
	char name[]; /* len bytes, not NUL-terminated */
};

LIST_HEAD(chanseq_bucket, chanseq_ent);

struct chanseq {
	struct chanseq_bucket *b;
	size_t nb; /* a power of two */
	size_t n;
	size_t max;
	uint64_t idle_ms;
	TAILQ_HEAD(, chanseq_ent) lru;
};

struct chanseq *
chanseq_new(size_t max, uint64_t idle_ms)
{
	struct chanseq *cs = calloc(1, sizeof(*cs));

	if (cs == NULL)
		return NULL;
	cs->nb = BUCKETS_MIN;
	cs->b = calloc(cs->nb, sizeof(*cs->b));
	if (cs->b == NULL) {
		free(cs);
		return NULL;
	}
	cs->max = max > 0 ? max : 1;
	cs->idle_ms = idle_ms;
	TAILQ_INIT(&cs->lru);
	return cs;
}

void
chanseq_free(struct chanseq *cs)
{
	struct chanseq_ent *e;

	if (cs == NULL)
		return;
	while ((e = TAILQ_FIRST(&cs->lru)) != NULL) {
		TAILQ_REMOVE(&cs->lru, e, lru);
		free(e);
	}
	free(cs->b);
	free(cs);
}

static struct chanseq_ent *
find(const struct chanseq *cs, const char *name, size_t len, uint64_t hv)
{
	struct chanseq_ent *e;

	LIST_FOREACH(e, &cs->b[hv & (cs->nb - 1)], hash)
	{
		if (e->hv == hv && e->len == len &&
		    memcmp(e->name, name, len) == 0)
			return e;
	}
	return NULL;
}

static void
forget(struct chanseq *cs, struct chanseq_ent *e)
{
	LIST_REMOVE(e, hash);
	TAILQ_REMOVE(&cs->lru, e, lru);
	cs->n--;
	free(e);
}

/* Twice the buckets once there are more entries than buckets. */
static void
grow(struct chanseq *cs)
{
	struct chanseq_bucket *nb;
	struct chanseq_ent *e;
	size_t n = cs->nb * 2;

	nb = calloc(n, sizeof(*nb));
	if (nb == NULL)
		return; /* longer chains, still correct */
	TAILQ_FOREACH(e, &cs->lru, lru)
	{
		LIST_REMOVE(e, hash);
		LIST_INSERT_HEAD(&nb[e->hv & (n - 1)], e, hash);
	}
	free(cs->b);
	cs->b = nb;
	cs->nb = n;
}

uint64_t
chanseq_next(struct chanseq *cs, const char *name, size_t len, uint64_t now_ms)
{
	uint64_t hv = XXH3_64bits(name, len);
	struct chanseq_ent *e, *old;

	/* The LRU head is the oldest: expiry costs O(1) per call amortised. */
	while ((old = TAILQ_FIRST(&cs->lru)) != NULL &&
	       now_ms >= old->used_ms && now_ms - old->used_ms > cs->idle_ms)
		forget(cs, old);
	e = find(cs, name, len, hv);
	if (e == NULL) {
		if (cs->n >= cs->max)
			forget(cs, TAILQ_FIRST(&cs->lru));
		e = malloc(sizeof(*e) + len);
		if (e == NULL)
			return 0;
		e->hv = hv;
		e->seq = 0;
		e->len = len;
		memcpy(e->name, name, len);
		LIST_INSERT_HEAD(&cs->b[hv & (cs->nb - 1)], e, hash);
		TAILQ_INSERT_TAIL(&cs->lru, e, lru);
		if (++cs->n > cs->nb)
			grow(cs);
	} else {
		TAILQ_REMOVE(&cs->lru, e, lru);
		TAILQ_INSERT_TAIL(&cs->lru, e, lru);
	}
	e->used_ms = now_ms;
	/* 2^64 publishes do not happen; 0 stays "absent" regardless. */
	if (++e->seq == 0)
		e->seq = 1;
	return e->seq;
}

void
chanseq_undo(struct chanseq *cs, const char *name, size_t len, uint64_t seq)
{
	struct chanseq_ent *e;

	if (seq == 0)
		return;
	e = find(cs, name, len, XXH3_64bits(name, len));
	if (e != NULL && e->seq == seq)
		e->seq--;
}

size_t
chanseq_count(const struct chanseq *cs)
{
	return cs->n;
}
