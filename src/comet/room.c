#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "comet/room.h"

void
room_set_init(struct room_set *rs, room_event_fn on_first,
              room_event_fn on_last, void *arg)
{
	htab_init(&rs->byname);
	rs->on_first = on_first;
	rs->on_last = on_last;
	rs->arg = arg;
}

static void
room_destroy(struct room_set *rs, struct room *r)
{
	if (rs->on_last != NULL)
		rs->on_last(r, rs->arg);
	htab_remove(&rs->byname, &r->node);
	free(r->pending);
	free(r);
}

void
room_set_release(struct room_set *rs)
{
	struct htab_node *n;
	struct room *r;
	struct room_member *m;
	size_t i;

	for (i = 0; i < rs->byname.nslots; i++) {
		while ((n = rs->byname.slots[i]) != NULL) {
			r = htab_entry(n, struct room, node);
			while ((m = TAILQ_FIRST(&r->members)) != NULL) {
				TAILQ_REMOVE(&r->members, m, link);
				m->room = NULL;
			}
			r->nmembers = 0;
			room_destroy(rs, r);
		}
	}
	htab_release(&rs->byname);
}

struct room *
room_find(const struct room_set *rs, const char *name)
{
	size_t len = strlen(name);
	uint64_t h = htab_hash_str(name, len);
	struct htab_node *n;
	struct room *r;

	for (n = htab_first(&rs->byname, h); n != NULL; n = htab_next(n, h)) {
		r = htab_entry(n, struct room, node);
		if (r->name_len == len && memcmp(r->name, name, len) == 0)
			return r;
	}
	return NULL;
}

int
room_join(struct room_set *rs, struct room_member *m, const char *name)
{
	struct room *r;
	size_t len;

	if (m->room != NULL) {
		if (strcmp(m->room->name, name) == 0)
			return 0;
		room_leave(rs, m);
	}
	if ((r = room_find(rs, name)) == NULL) {
		len = strlen(name);
		if ((r = calloc(1, sizeof(*r) + len + 1)) == NULL) {
			errno = ENOMEM;
			return -1;
		}
		memcpy(r->name, name, len + 1);
		r->name_len = len;
		TAILQ_INIT(&r->members);
		if (htab_insert(&rs->byname, &r->node,
		                htab_hash_str(name, len)) == -1 &&
		    rs->byname.nslots == 0) {
			free(r);
			errno = ENOMEM;
			return -1;
		}
	}
	TAILQ_INSERT_TAIL(&r->members, m, link);
	m->room = r;
	if (++r->nmembers == 1 && rs->on_first != NULL)
		rs->on_first(r, rs->arg);
	return 0;
}

void
room_leave(struct room_set *rs, struct room_member *m)
{
	struct room *r = m->room;

	if (r == NULL)
		return;
	TAILQ_REMOVE(&r->members, m, link);
	m->room = NULL;
	if (--r->nmembers == 0)
		room_destroy(rs, r);
}

size_t
room_count(const struct room_set *rs)
{
	return rs->byname.count;
}

void
room_each(const struct room_set *rs, room_event_fn fn, void *arg)
{
	struct htab_node *n;
	size_t i;

	for (i = 0; i < rs->byname.nslots; i++)
		for (n = rs->byname.slots[i]; n != NULL; n = n->next)
			fn(htab_entry(n, struct room, node), arg);
}
