/*
 * room: a worker's local room member lists. A room push walks only the
 * members this worker holds; the node-wide counts live in shm.
 *
 * A connection embeds a struct room_member. The first member joining a
 * room and the last one leaving it are reported through callbacks so the
 * push layer can subscribe to and unsubscribe from the room's channel.
 */
#ifndef IMGATE_COMET_ROOM_H
#define IMGATE_COMET_ROOM_H

#include <sys/queue.h>

#include <stddef.h>
#include <stdint.h>

#include "comet/gap.h"
#include "comet/htab.h"

struct sbuf;
struct room;

struct room_member {
	TAILQ_ENTRY(room_member) link;
	struct room *room; /* NULL when in no room */
};

TAILQ_HEAD(room_members, room_member);

struct room {
	struct htab_node node;
	struct room_members members;
	uint32_t nmembers;
	/* Pushes waiting for the next batch flush (owned by push.c). */
	TAILQ_ENTRY(room) dirty_link;
	int dirty;
	struct sbuf **pending;
	uint32_t npending;
	uint32_t pending_cap;
	size_t pending_bytes;
	/*
	 * Loss accounting of the room's channel (push.c): it lives and dies
	 * with the subscription, so a later one starts afresh.
	 */
	struct gap gap;
	size_t name_len;
	char name[];
};

typedef void (*room_event_fn)(struct room *r, void *arg);

struct room_set {
	struct htab byname;
	room_event_fn on_first; /* after the first member joined */
	room_event_fn on_last;  /* after the last member left, before free */
	void *arg;
};

void room_set_init(struct room_set *rs, room_event_fn on_first,
                   room_event_fn on_last, void *arg);
/* Frees every room (on_last is called for each; members are detached). */
void room_set_release(struct room_set *rs);

/* m joins room name (leaving its current one first). 0, or -1 (ENOMEM). */
int room_join(struct room_set *rs, struct room_member *m, const char *name);
/* m leaves its room; no-op when in none. */
void room_leave(struct room_set *rs, struct room_member *m);

struct room *room_find(const struct room_set *rs, const char *name);
size_t room_count(const struct room_set *rs);

/* Calls fn for every room; fn must not join or leave. */
void room_each(const struct room_set *rs, room_event_fn fn, void *arg);

#endif
