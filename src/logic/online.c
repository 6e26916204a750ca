#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "logic/online.h"
#include "logic/session.h"

struct waiter {
	online_cb cb;
	void *arg;
	struct waiter *next;
};

struct online {
	struct logic *l;
	struct online_totals t;
	uint64_t fetched_ms; /* 0 = never */
	int fetching;
	struct waiter *head, **tail;
};

static void
totals_clear(struct online_totals *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->rooms[i].room);
	free(t->rooms);
	t->rooms = NULL;
	t->n = 0;
}

static int
room_cmp(const void *a, const void *b)
{
	const struct online_room *x = a, *y = b;

	return strcmp(x->room, y->room);
}

/* Replace the cache with a flat room, count reply. -1 on a bad reply. */
static int
totals_load(struct online *o, const redisReply *r)
{
	struct online_totals t = {NULL, 0};

	if (r == NULL || r->type != REDIS_REPLY_ARRAY)
		return -1;
	t.rooms = calloc(r->elements / 2 + 1, sizeof(*t.rooms));
	if (t.rooms == NULL)
		return -1;
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *k = r->element[i], *v = r->element[i + 1];

		if (k->type != REDIS_REPLY_STRING ||
		    v->type != REDIS_REPLY_INTEGER)
			continue;
		t.rooms[t.n].room = strndup(k->str, k->len);
		if (t.rooms[t.n].room == NULL) {
			totals_clear(&t);
			return -1;
		}
		t.rooms[t.n++].count = v->integer;
	}
	qsort(t.rooms, t.n, sizeof(*t.rooms), room_cmp);
	totals_clear(&o->t);
	o->t = t;
	return 0;
}

static void
on_fetched(const redisReply *r, void *arg)
{
	struct online *o = arg;
	struct waiter *w = o->head, *next;
	int ok = totals_load(o, r) == 0;

	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		o->l->metrics.redis_errors++;
	o->fetching = 0;
	o->fetched_ms = ok ? logic_now_ms() : 0;
	/* Detach first: a callback may ask again and start a new fetch. */
	o->head = NULL;
	o->tail = &o->head;
	for (; w != NULL; w = next) {
		next = w->next;
		w->cb(ok ? &o->t : NULL, w->arg);
		free(w);
	}
}

struct online *
online_new(struct logic *l)
{
	struct online *o = calloc(1, sizeof(*o));

	if (o == NULL)
		return NULL;
	o->l = l;
	o->tail = &o->head;
	return o;
}

void
online_free(struct online *o)
{
	struct waiter *w, *next;

	if (o == NULL)
		return;
	for (w = o->head; w != NULL; w = next) {
		next = w->next;
		w->cb(NULL, w->arg);
		free(w);
	}
	totals_clear(&o->t);
	free(o);
}

int
online_get(struct online *o, online_cb cb, void *arg)
{
	uint64_t now = logic_now_ms();
	struct waiter *w;

	if (o->fetched_ms != 0 && !o->fetching &&
	    now - o->fetched_ms < (uint64_t)o->l->conf->online_cache_ms) {
		cb(&o->t, arg);
		return 0;
	}
	w = malloc(sizeof(*w));
	if (w == NULL)
		return -1;
	if (!o->fetching) {
		if (session_online(o->l, on_fetched, o) == -1) {
			free(w);
			return -1;
		}
		o->fetching = 1;
	}
	w->cb = cb;
	w->arg = arg;
	w->next = NULL;
	*o->tail = w;
	o->tail = &w->next;
	return 0;
}

long long
online_count(const struct online_totals *t, const char *room)
{
	struct online_room key = {.room = (char *)room}, *r;

	r = bsearch(&key, t->rooms, t->n, sizeof(*t->rooms), room_cmp);
	return r != NULL ? r->count : 0;
}
