#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "comet/conn.h"
#include "comet/gap.h"
#include "comet/push.h"
#include "common/envelope.h"
#include "common/proto.h"
#include "common/ws.h"

#define PUSH_BACKOFF_MIN_MS 100
/*
 * Capped low: while the subscriber is away, pushes to this node reach no
 * one, so it retries often (a connect to Redis is cheap).
 */
#define PUSH_BACKOFF_MAX_MS 1000
#define PUSH_PACE_TICK_MS   10
/*
 * Deliveries of a room push or broadcast per loop turn: past it the rest
 * waits for the next turn, so one message to a large room (18,000 members
 * per worker in a million-connection node) does not hold the loop for the
 * whole walk: heartbeats are read, the worker's watchdog stamp goes on.
 */
#ifndef PUSH_JOB_CHUNK
#define PUSH_JOB_CHUNK 2048
#endif
#define PUSH_CHANNEL_MAX (COMET_NAME_MAX + ENVELOPE_NAME_MAX + 16)

/*
 * A room push or broadcast to more connections than PUSH_JOB_CHUNK: the
 * ids of its recipients, delivered a chunk per loop turn. Jobs run one
 * after the other, so every connection gets a room's messages in order.
 */
struct push_job {
	TAILQ_ENTRY(push_job) link;
	struct sbuf *tcp, *ws;
	unsigned nframes;
	char room[SHM_ROOM_MAX]; /* recipients still in it; "" broadcast */
	uint32_t *ids;
	size_t n, pos;
};

/* A broadcast delivered at a bounded rate (envelope speed). */
struct push_pace {
	struct push_pace *next;
	struct sbuf *tcp, *ws;
	int32_t op;
	uint32_t *ids;
	size_t n, pos;
	size_t per_tick;
};

struct push {
	struct sess_worker *sw;
	redisAsyncContext *ac;
	int ready;      /* connected; subscriptions sent */
	int closing;    /* push_free in progress: do not reconnect */
	int was_ready;  /* connected before: a reconnect follows an outage */
	unsigned fails; /* connection attempts failed in a row */
	/*
	 * Loss accounting of the node and broadcast channels; a room's is in
	 * its struct room. Kept across Redis reconnects: what was published
	 * meanwhile shows up as a jump in seq.
	 */
	struct gap gap_node;
	struct gap gap_all;
	long backoff_ms;
	struct event *retry;
	struct event *flush;
	int flush_armed;
	TAILQ_HEAD(, room) dirty;
	struct push_pace *paces;
	struct event *pace;
	TAILQ_HEAD(, push_job) jobs;
	struct event *job_ev; /* next chunk, next loop turn */
	msgpack_unpacked scratch;
	char node_ch[PUSH_CHANNEL_MAX];
	char all_ch[PUSH_CHANNEL_MAX];
	char room_prefix[PUSH_CHANNEL_MAX]; /* "<prefix>:room:" */
	size_t room_prefix_len;
};

/*
 * What a peer (a publisher) can trigger is counted always and logged at
 * most once a second per kind: a worker is one process, so these are its.
 */
static struct log_ratelimit rl_bad_envelope = {.interval_ms = 1000};
static struct log_ratelimit rl_gap = {.interval_ms = 1000};

static void push_connect(struct push *p);
static void push_message_cb(redisAsyncContext *ac, void *r, void *privdata);

/* Shared buffers ---------------------------------------------------------- */

/*
 * Per-worker free lists of fixed-size buffers (goim's Round of Pools): a
 * worker is one thread, so no lock. Most pushes are small; their buffers
 * come back here instead of going through malloc for every message.
 * Larger ones are plain allocations.
 */
#define SBUF_CLASSES  3
#define SBUF_FREE_MAX 1024

static const size_t sbuf_class_size[SBUF_CLASSES] = {256, 1024, 4096};
/* Buffers kept per class: at most 1.25 MiB idle per worker. */
static const size_t sbuf_class_keep[SBUF_CLASSES] = {SBUF_FREE_MAX, 512, 128};

static struct sbuf_pool {
	void *free[SBUF_FREE_MAX];
	size_t nfree;
} sbuf_pools[SBUF_CLASSES];

struct sbuf *
sbuf_new(size_t len)
{
	struct sbuf *b = NULL;
	size_t total = sizeof(*b) + len;
	uint32_t cls;

	if (len > UINT32_MAX - sizeof(*b))
		return NULL;
	for (cls = 0; cls < SBUF_CLASSES; cls++)
		if (total <= sbuf_class_size[cls])
			break;
	if (cls < SBUF_CLASSES) {
		if (sbuf_pools[cls].nfree > 0)
			b = sbuf_pools[cls].free[--sbuf_pools[cls].nfree];
		else
			b = malloc(sbuf_class_size[cls]);
	} else
		b = malloc(total);
	if (b == NULL)
		return NULL;
	b->refs = 1;
	b->len = (uint32_t)len;
	b->cls = cls;
	return b;
}

void
sbuf_ref(struct sbuf *b)
{
	b->refs++;
}

void
sbuf_unref(struct sbuf *b)
{
	struct sbuf_pool *pl;

	if (b == NULL || --b->refs > 0)
		return;
	if (b->cls < SBUF_CLASSES) {
		pl = &sbuf_pools[b->cls];
		if (pl->nfree < sbuf_class_keep[b->cls]) {
			pl->free[pl->nfree++] = b;
			return;
		}
	}
	free(b);
}

void
sbuf_pool_drain(void)
{
	size_t i;

	for (i = 0; i < SBUF_CLASSES; i++)
		while (sbuf_pools[i].nfree > 0)
			free(sbuf_pools[i].free[--sbuf_pools[i].nfree]);
}

size_t
sbuf_pool_count(void)
{
	size_t i, n = 0;

	for (i = 0; i < SBUF_CLASSES; i++)
		n += sbuf_pools[i].nfree;
	return n;
}

int
push_frame(int32_t op, const void *body, size_t len, struct sbuf **tcp,
           struct sbuf **ws)
{
	uint8_t wh[10];
	size_t whl;

	*tcp = *ws = NULL;
	if (len > PROTO_MAX_BODY - 16)
		return -1;
	if ((*tcp = sbuf_new(PROTO_HEADER_LEN + len)) == NULL)
		return -1;
	proto_header_write((*tcp)->data, len, PROTO_PUSH_VER, op, 0);
	if (len > 0)
		memcpy((*tcp)->data + PROTO_HEADER_LEN, body, len);
	whl = ws_frame_header(wh, WS_OP_BINARY, (*tcp)->len);
	if ((*ws = sbuf_new(whl + (*tcp)->len)) == NULL) {
		sbuf_unref(*tcp);
		*tcp = NULL;
		return -1;
	}
	memcpy((*ws)->data, wh, whl);
	memcpy((*ws)->data + whl, (*tcp)->data, (*tcp)->len);
	return 0;
}

static int
push_send(struct conn *c, struct sbuf *tcp, struct sbuf *ws, unsigned nframes)
{
	return conn_send_shared(c, (c->flags & CONN_F_WS) ? ws : tcp, nframes);
}

/* Key pushes ------------------------------------------------------------- */

static void
push_keys(struct push *p, const struct envelope *e)
{
	struct sess_worker *sw = p->sw;
	struct sbuf *tcp = NULL, *ws = NULL;
	struct shm_channel ch;
	char key[SHM_KEY_MAX];
	const msgpack_object *k;
	struct conn *c;
	uint32_t i, len;
	const char *s;

	sess_count_add(sw, SHM_C_PUSH_KEY, 1);
	for (i = 0; i < e->keys->via.array.size; i++) {
		k = &e->keys->via.array.ptr[i];
		s = k->via.str.ptr;
		len = k->via.str.size;
		c = NULL;
		if (len < sizeof(key) && memchr(s, '\0', len) == NULL) {
			memcpy(key, s, len);
			key[len] = '\0';
			c = conn_by_key(sw, key);
		} else
			key[0] = '\0';
		if (c == NULL) {
			/*
			 * Every worker sees every key push: one of them counts
			 * a key nobody on the node holds.
			 */
			if (sw->w->id == 0 &&
			    (key[0] == '\0' ||
			     shm_channel_get(sw->w->shm, key, &ch) != 0))
				sess_count_add(sw, SHM_C_DROP_NO_KEY, 1);
			continue;
		}
		if (!conn_watches(c, e->operation)) {
			sess_count_add(sw, SHM_C_DROP_NOT_WATCH, 1);
			conn_trace(c, "push op %d not watched, dropped",
			           e->operation);
			continue;
		}
		if (tcp == NULL && push_frame(e->operation, e->msg, e->msg_len,
		                              &tcp, &ws) == -1) {
			log_error("push: out of memory framing a key push");
			return;
		}
		if (push_send(c, tcp, ws, 1) == 0)
			conn_trace(c,
			           "key push op %d (%zu bytes) queued, id %llu",
			           e->operation, e->msg_len,
			           (unsigned long long)e->id);
	}
	sbuf_unref(tcp);
	sbuf_unref(ws);
}

/* Delivery jobs ---------------------------------------------------------- */

static void
push_job_free(struct push_job *j)
{
	sbuf_unref(j->tcp);
	sbuf_unref(j->ws);
	free(j->ids);
	free(j);
}

static void
push_job_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push *p = arg;
	struct push_job *j;
	struct conn *c;
	size_t budget = PUSH_JOB_CHUNK;
	struct timeval now = {0, 0};

	sess_alive(p->sw);
	while (budget > 0 && (j = TAILQ_FIRST(&p->jobs)) != NULL) {
		for (; budget > 0 && j->pos < j->n; budget--) {
			c = conn_by_id(p->sw, j->ids[j->pos++]);
			if (c == NULL || c->state != CONN_ACTIVE)
				continue;
			/* A member that left the room since is not one. */
			if (j->room[0] != '\0' &&
			    (c->room.room == NULL ||
			     strcmp(c->room.room->name, j->room) != 0))
				continue;
			push_send(c, j->tcp, j->ws, j->nframes);
		}
		if (j->pos == j->n) {
			TAILQ_REMOVE(&p->jobs, j, link);
			push_job_free(j);
		}
	}
	/* A timer, not event_active: the rest waits for the next epoll. */
	if (!TAILQ_EMPTY(&p->jobs))
		evtimer_add(p->job_ev, &now);
}

/* Queue a job for ids[0..n) (taken); 0, or -1 when out of memory. */
static int
push_job_add(struct push *p, struct sbuf *tcp, struct sbuf *ws,
             unsigned nframes, const char *room, uint32_t *ids, size_t n)
{
	struct push_job *j = calloc(1, sizeof(*j));
	struct timeval now = {0, 0};

	if (j == NULL) {
		free(ids);
		return -1;
	}
	sbuf_ref(tcp);
	sbuf_ref(ws);
	j->tcp = tcp;
	j->ws = ws;
	j->nframes = nframes;
	if (room != NULL)
		snprintf(j->room, sizeof(j->room), "%s", room);
	j->ids = ids;
	j->n = n;
	if (TAILQ_EMPTY(&p->jobs))
		evtimer_add(p->job_ev, &now);
	TAILQ_INSERT_TAIL(&p->jobs, j, link);
	return 0;
}

/* Room pushes: batched per loop turn ------------------------------------- */

static void
push_room_clear(struct room *r)
{
	uint32_t i;

	for (i = 0; i < r->npending; i++)
		sbuf_unref(r->pending[i]);
	r->npending = 0;
	r->pending_bytes = 0;
}

static void
push_flush_room(struct push *p, struct room *r)
{
	struct sbuf *tcp = NULL, *ws = NULL;
	struct room_member *m;
	struct conn *c;
	uint8_t wh[10];
	size_t whl, off, inner = r->pending_bytes;
	uint32_t i;

	if (r->npending == 0)
		return;
	if (r->npending == 1) {
		tcp = r->pending[0];
		sbuf_ref(tcp);
	} else if ((tcp = sbuf_new(inner)) != NULL) {
		/* TCP: goim writes a batch as its inner frames, back to back.
		 */
		for (off = 0, i = 0; i < r->npending; i++) {
			memcpy(tcp->data + off, r->pending[i]->data,
			       r->pending[i]->len);
			off += r->pending[i]->len;
		}
	}
	if (tcp != NULL) {
		/* WebSocket: one message, an outer op-9 header when batched. */
		size_t payload =
		    inner + (r->npending > 1 ? PROTO_HEADER_LEN : 0);

		whl = ws_frame_header(wh, WS_OP_BINARY, payload);
		if ((ws = sbuf_new(whl + payload)) != NULL) {
			memcpy(ws->data, wh, whl);
			off = whl;
			if (r->npending > 1) {
				proto_batch_header(ws->data + off, inner,
				                   PROTO_PUSH_VER, 0);
				off += PROTO_HEADER_LEN;
			}
			memcpy(ws->data + off, tcp->data, inner);
		}
	}
	if (tcp == NULL || ws == NULL) {
		log_error("push: out of memory batching room %s", r->name);
		sbuf_unref(tcp);
		push_room_clear(r);
		return;
	}
	/*
	 * A large room, or any room while earlier jobs wait (its messages
	 * must not overtake theirs), goes through the job queue.
	 */
	if (r->nmembers > PUSH_JOB_CHUNK || !TAILQ_EMPTY(&p->jobs)) {
		uint32_t *ids = malloc((r->nmembers + 1) * sizeof(*ids));
		size_t n = 0;

		if (ids != NULL) {
			TAILQ_FOREACH(m, &r->members, link)
			{
				if (n < r->nmembers)
					ids[n++] =
					    htab_entry(m, struct conn, room)
					        ->id;
			}
		}
		if (ids == NULL || push_job_add(p, tcp, ws, r->npending,
		                                r->name, ids, n) == -1)
			log_error("push: out of memory queueing room %s",
			          r->name);
		sbuf_unref(tcp);
		sbuf_unref(ws);
		push_room_clear(r);
		return;
	}
	TAILQ_FOREACH(m, &r->members, link)
	{
		c = htab_entry(m, struct conn, room);
		if (c->state != CONN_ACTIVE)
			continue;
		if (push_send(c, tcp, ws, r->npending) == 0)
			conn_trace(c, "room %s: %u message(s) queued", r->name,
			           r->npending);
	}
	sbuf_unref(tcp);
	sbuf_unref(ws);
	push_room_clear(r);
}

static void
push_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push *p = arg;
	struct room *r;

	p->flush_armed = 0;
	while ((r = TAILQ_FIRST(&p->dirty)) != NULL) {
		TAILQ_REMOVE(&p->dirty, r, dirty_link);
		r->dirty = 0;
		push_flush_room(p, r);
	}
}

static void
push_room(struct push *p, const struct envelope *e)
{
	struct sess_worker *sw = p->sw;
	char name[SHM_ROOM_MAX];
	struct sbuf *tcp, *ws, **nv;
	struct room *r;
	uint32_t ncap;
	long win;

	sess_count_add(sw, SHM_C_PUSH_ROOM, 1);
	if (e->room_len >= sizeof(name) ||
	    memchr(e->room, '\0', e->room_len) != NULL)
		return;
	memcpy(name, e->room, e->room_len);
	name[e->room_len] = '\0';
	/* A late message for a room we just left: other workers deliver. */
	if ((r = room_find(&sw->rooms, name)) == NULL)
		return;
	if (r->npending == r->pending_cap) {
		ncap = r->pending_cap ? r->pending_cap * 2 : 4;
		if ((nv = realloc(r->pending, ncap * sizeof(*nv))) == NULL)
			goto oom;
		r->pending = nv;
		r->pending_cap = ncap;
	}
	/* Only the goim frame is kept; the WebSocket form is built per batch.
	 */
	if (push_frame(e->operation, e->msg, e->msg_len, &tcp, &ws) == -1)
		goto oom;
	sbuf_unref(ws);
	r->pending[r->npending++] = tcp;
	r->pending_bytes += tcp->len;
	if (!r->dirty) {
		r->dirty = 1;
		TAILQ_INSERT_TAIL(&p->dirty, r, dirty_link);
	}
	if (!p->flush_armed) {
		p->flush_armed = 1;
		win = sw->w->conf->batch_window_ms;
		if (win > 0) {
			struct timeval tv = {win / 1000, (win % 1000) * 1000};

			evtimer_add(p->flush, &tv);
		} else
			event_active(p->flush, EV_TIMEOUT, 0);
	}
	/* A batch over 1 MiB goes out now rather than growing. */
	if (r->pending_bytes > (1u << 20)) {
		TAILQ_REMOVE(&p->dirty, r, dirty_link);
		r->dirty = 0;
		push_flush_room(p, r);
	}
	return;
oom:
	log_error("push: out of memory queueing a room push for %s", name);
}

void
push_room_first(struct room *r, void *arg)
{
	struct push *p = arg;

	if (p->ready)
		redisAsyncCommand(p->ac, push_message_cb, p, "SUBSCRIBE %b%b",
		                  p->room_prefix, p->room_prefix_len, r->name,
		                  r->name_len);
}

void
push_room_last(struct room *r, void *arg)
{
	struct push *p = arg;

	if (r->dirty) {
		TAILQ_REMOVE(&p->dirty, r, dirty_link);
		r->dirty = 0;
	}
	push_room_clear(r);
	if (p->ready)
		redisAsyncCommand(p->ac, NULL, NULL, "UNSUBSCRIBE %b%b",
		                  p->room_prefix, p->room_prefix_len, r->name,
		                  r->name_len);
}

/* Broadcasts ------------------------------------------------------------- */

static void
push_pace_free(struct push_pace *pc)
{
	sbuf_unref(pc->tcp);
	sbuf_unref(pc->ws);
	free(pc->ids);
	free(pc);
}

static void
push_pace_cb(evutil_socket_t fd, short what, void *arg)
{
	struct push *p = arg;
	struct push_pace *pc, **pp;
	struct conn *c;
	size_t k;

	for (pp = &p->paces; (pc = *pp) != NULL;) {
		for (k = 0; k < pc->per_tick && pc->pos < pc->n; k++) {
			c = conn_by_id(p->sw, pc->ids[pc->pos++]);
			if (c != NULL && c->state == CONN_ACTIVE)
				push_send(c, pc->tcp, pc->ws, 1);
		}
		if (pc->pos == pc->n) {
			*pp = pc->next;
			push_pace_free(pc);
		} else
			pp = &pc->next;
	}
	if (p->paces != NULL) {
		struct timeval tv = {0, PUSH_PACE_TICK_MS * 1000};

		evtimer_add(p->pace, &tv);
	}
}

static uint32_t
push_running_workers(const struct sess_worker *sw)
{
	const struct shm_geometry *g = shm_seg_geometry(sw->w->shm);
	const struct shm_worker *s;
	uint32_t i, n = 0;

	for (i = 0; i < g->max_workers; i++) {
		s = shm_worker_slot_ro(sw->w->shm, i);
		if (s != NULL && (s->state == SHM_WORKER_RUNNING ||
		                  s->state == SHM_WORKER_DRAINING))
			n++;
	}
	return n ? n : 1;
}

/*
 * The ids of this worker's authenticated connections watching op, for a
 * broadcast delivered over several loop turns; NULL when out of memory.
 */
static uint32_t *
push_broadcast_ids(const struct sess_worker *sw, int32_t op, size_t *n)
{
	uint32_t *ids = malloc((sw->nconns + 1) * sizeof(*ids));
	struct conn *c;

	*n = 0;
	if (ids == NULL)
		return NULL;
	LIST_FOREACH(c, &sw->conns, all)
	{
		if (*n < sw->nconns && c->state == CONN_ACTIVE &&
		    conn_watches(c, op))
			ids[(*n)++] = c->id;
	}
	return ids;
}

static void
push_broadcast(struct push *p, const struct envelope *e)
{
	struct sess_worker *sw = p->sw;
	struct sbuf *tcp, *ws;
	struct push_pace *pc;
	struct conn *c;
	size_t n = 0, rate;

	sess_count_add(sw, SHM_C_PUSH_ALL, 1);
	if (push_frame(e->operation, e->msg, e->msg_len, &tcp, &ws) == -1) {
		log_error("push: out of memory framing a broadcast");
		return;
	}
	if (e->speed <= 0 && sw->nconns <= PUSH_JOB_CHUNK &&
	    TAILQ_EMPTY(&p->jobs)) {
		LIST_FOREACH(c, &sw->conns, all)
		{
			if (c->state == CONN_ACTIVE &&
			    conn_watches(c, e->operation))
				push_send(c, tcp, ws, 1);
		}
		sbuf_unref(tcp);
		sbuf_unref(ws);
		return;
	}
	if (e->speed <= 0) {
		uint32_t *ids = push_broadcast_ids(sw, e->operation, &n);

		if (ids == NULL ||
		    push_job_add(p, tcp, ws, 1, NULL, ids, n) == -1)
			log_error("push: out of memory queueing a broadcast");
		sbuf_unref(tcp);
		sbuf_unref(ws);
		return;
	}
	/*
	 * goim's speed is connections per second for the node; each worker
	 * takes its share and spreads it over short ticks.
	 */
	if ((pc = calloc(1, sizeof(*pc))) == NULL ||
	    (pc->ids = push_broadcast_ids(sw, e->operation, &n)) == NULL) {
		free(pc);
		sbuf_unref(tcp);
		sbuf_unref(ws);
		log_error("push: out of memory pacing a broadcast");
		return;
	}
	pc->n = n;
	pc->tcp = tcp;
	pc->ws = ws;
	pc->op = e->operation;
	rate = (size_t)e->speed / push_running_workers(sw);
	pc->per_tick = rate * PUSH_PACE_TICK_MS / 1000;
	if (pc->per_tick == 0)
		pc->per_tick = 1;
	pc->next = p->paces;
	p->paces = pc;
	if (!evtimer_pending(p->pace, NULL))
		push_pace_cb(-1, 0, p);
}

void
push_deliver(struct push *p, const struct envelope *e)
{
	switch (e->type) {
	case ENVELOPE_PUSH:
		push_keys(p, e);
		break;
	case ENVELOPE_ROOM:
		push_room(p, e);
		break;
	case ENVELOPE_BROADCAST:
		push_broadcast(p, e);
		break;
	}
}

/* Redis ------------------------------------------------------------------ */

static int
push_is_room_channel(struct push *p, const char *ch, size_t len,
                     const char **room, size_t *room_len)
{
	if (len < p->room_prefix_len ||
	    memcmp(ch, p->room_prefix, p->room_prefix_len) != 0)
		return 0;
	*room = ch + p->room_prefix_len;
	*room_len = len - p->room_prefix_len;
	return 1;
}

/* The loss accounting of channel ch, or NULL (not one we follow). */
static struct gap *
push_channel_gap(struct push *p, const char *ch, size_t len)
{
	char name[SHM_ROOM_MAX];
	const char *room;
	size_t room_len;
	struct room *r;

	if (len == strlen(p->node_ch) && memcmp(ch, p->node_ch, len) == 0)
		return &p->gap_node;
	if (len == strlen(p->all_ch) && memcmp(ch, p->all_ch, len) == 0)
		return &p->gap_all;
	if (!push_is_room_channel(p, ch, len, &room, &room_len) ||
	    room_len >= sizeof(name) || memchr(room, '\0', room_len) != NULL)
		return NULL;
	memcpy(name, room, room_len);
	name[room_len] = '\0';
	/* A late message for a room we left: its accounting went with it. */
	r = room_find(&p->sw->rooms, name);
	return r != NULL ? &r->gap : NULL;
}

/*
 * Nothing vanishes silently: pushes Redis dropped on the way to this
 * worker (published while it was reconnecting) show up as a jump in the
 * publisher's seq and are counted.
 */
static void
push_account_gap(struct push *p, const char *ch, size_t len,
                 const struct envelope *e)
{
	struct gap *g;
	uint64_t missed;

	if (e->src == 0 || e->seq == 0 ||
	    (g = push_channel_gap(p, ch, len)) == NULL)
		return;
	if ((missed = gap_note(g, e->src, e->seq)) == 0)
		return;
	sess_count_add(p->sw, SHM_C_DROP_GAP,
	               missed > INT64_MAX ? INT64_MAX : (int64_t)missed);
	log_msg_limited(&rl_gap, LOG_LVL_WARN,
	                "push: %llu message(s) on %.*s never reached this "
	                "worker (publisher %016llx, seq %llu)",
	                (unsigned long long)missed, (int)len, ch,
	                (unsigned long long)e->src, (unsigned long long)e->seq);
}

static void
push_message_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct push *p = privdata;
	redisReply *reply = r, *kind, *ch, *msg;
	struct envelope e;
	char err[128], name[SHM_ROOM_MAX];
	const char *room;
	size_t room_len;
	struct room *rm;

	if (reply == NULL || reply->type != REDIS_REPLY_ARRAY ||
	    reply->elements != 3)
		return;
	kind = reply->element[0];
	ch = reply->element[1];
	msg = reply->element[2];
	if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(kind->str, "unsubscribe") == 0) {
		/*
		 * hiredis forgets a channel's callback when its UNSUBSCRIBE is
		 * answered, even if the room was joined again meanwhile: then
		 * subscribe once more.
		 */
		if (p->ready &&
		    push_is_room_channel(p, ch->str, ch->len, &room,
		                         &room_len) &&
		    room_len < sizeof(name)) {
			memcpy(name, room, room_len);
			name[room_len] = '\0';
			if ((rm = room_find(&p->sw->rooms, name)) != NULL)
				push_room_first(rm, p);
		}
		return;
	}
	if (strcmp(kind->str, "message") != 0 ||
	    msg->type != REDIS_REPLY_STRING)
		return;
	if (envelope_decode(msg->str, msg->len, &p->scratch, &e, err,
	                    sizeof(err)) == -1) {
		sess_count_add(p->sw, SHM_C_DROP_BAD_ENVELOPE, 1);
		log_msg_limited(&rl_bad_envelope, LOG_LVL_WARN,
		                "push: bad envelope on %s: %s", ch->str, err);
		return;
	}
	push_account_gap(p, ch->str, ch->len, &e);
	push_deliver(p, &e);
}

static void
push_subscribe_room(struct room *r, void *arg)
{
	push_room_first(r, arg);
}

static void
push_retry_later(struct push *p)
{
	struct timeval tv;
	long ms = p->backoff_ms;

	/* Jitter in [ms/2, ms] keeps workers from reconnecting in step. */
	ms = ms / 2 + (ms > 1 ? random() % (ms / 2 + 1) : 0);
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(p->retry, &tv);
	p->backoff_ms *= 2;
	if (p->backoff_ms > PUSH_BACKOFF_MAX_MS)
		p->backoff_ms = PUSH_BACKOFF_MAX_MS;
}

static void
push_connect_cb(const redisAsyncContext *ac, int status)
{
	struct push *p = ac->data;
	const struct comet_conf *c = p->sw->w->conf;

	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback. */
		/* The first failure of an outage is worth a line; retries not.
		 */
		log_msg(p->fails++ == 0 ? LOG_LVL_WARN : LOG_LVL_DEBUG,
		        "push: redis %s:%d: %s (retrying)", c->redis.host,
		        c->redis.port, ac->errstr);
		p->ac = NULL;
		p->ready = 0;
		if (!p->closing)
			push_retry_later(p);
		return;
	}
	log_info("push: connected to redis %s:%d", c->redis.host,
	         c->redis.port);
	p->fails = 0;
	/* A subscriber only listens: keepalive notices a vanished host. */
	redisEnableKeepAlive(&p->ac->c);
	p->backoff_ms = PUSH_BACKOFF_MIN_MS;
	if (c->redis_password[0] != '\0')
		redisAsyncCommand(p->ac, NULL, NULL, "AUTH %s",
		                  c->redis_password);
	redisAsyncCommand(p->ac, push_message_cb, p, "SUBSCRIBE %s %s",
	                  p->node_ch, p->all_ch);
	p->ready = 1;
	room_each(&p->sw->rooms, push_subscribe_room, p);
	if (p->was_ready)
		sess_resync(p->sw);
	p->was_ready = 1;
}

static void
push_disconnect_cb(const redisAsyncContext *ac, int status)
{
	struct push *p = ac->data;

	p->ac = NULL;
	p->ready = 0;
	if (p->closing)
		return;
	log_warn("push: lost redis: %s",
	         status == REDIS_OK ? "closed" : ac->errstr);
	sess_count_add(p->sw, SHM_C_REDIS_RECONNECTS, 1);
	push_retry_later(p);
}

static void
push_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	push_connect(arg);
}

static void
push_connect(struct push *p)
{
	const struct comet_conf *c = p->sw->w->conf;
	const char *host = c->redis.host[0] ? c->redis.host : "127.0.0.1";

	p->ac = redisAsyncConnect(host, c->redis.port);
	if (p->ac == NULL || p->ac->err) {
		log_msg(p->fails++ == 0 ? LOG_LVL_WARN : LOG_LVL_DEBUG,
		        "push: redis %s:%d: %s (retrying)", host, c->redis.port,
		        p->ac ? p->ac->errstr : "out of memory");
		if (p->ac != NULL)
			redisAsyncFree(p->ac);
		p->ac = NULL;
		push_retry_later(p);
		return;
	}
	p->ac->data = p;
	/*
	 * hiredis's callbacks use the subscriber's own handlers: its replies
	 * are consumed here only, so its input is bounded by what Redis sends.
	 */
	redisLibeventAttach(p->ac, p->sw->w->base);
	redisAsyncSetConnectCallback(p->ac, push_connect_cb);
	redisAsyncSetDisconnectCallback(p->ac, push_disconnect_cb);
}

static int
push_channels(struct push *p, char *err, size_t errlen)
{
	const struct comet_conf *c = p->sw->w->conf;
	const char *pre = c->channel_prefix[0] ? c->channel_prefix : "imgate";
	int n;

	if (envelope_channel(p->node_ch, sizeof(p->node_ch), pre, ENVELOPE_PUSH,
	                     c->server_id) == -1 ||
	    envelope_channel(p->all_ch, sizeof(p->all_ch), pre,
	                     ENVELOPE_BROADCAST, NULL) == -1) {
		snprintf(err, errlen, "channel names too long");
		return -1;
	}
	n = snprintf(p->room_prefix, sizeof(p->room_prefix), "%s:room:", pre);
	if (n < 0 || (size_t)n >= sizeof(p->room_prefix)) {
		snprintf(err, errlen, "channel prefix too long");
		return -1;
	}
	p->room_prefix_len = (size_t)n;
	return 0;
}

struct push *
push_new(struct sess_worker *sw, char *err, size_t errlen)
{
	struct push *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->sw = sw;
	p->backoff_ms = PUSH_BACKOFF_MIN_MS;
	TAILQ_INIT(&p->dirty);
	TAILQ_INIT(&p->jobs);
	msgpack_unpacked_init(&p->scratch);
	if (push_channels(p, err, errlen) == -1)
		goto err;
	p->retry = evtimer_new(sw->w->base, push_retry_cb, p);
	p->flush = evtimer_new(sw->w->base, push_flush_cb, p);
	p->pace = evtimer_new(sw->w->base, push_pace_cb, p);
	p->job_ev = evtimer_new(sw->w->base, push_job_cb, p);
	if (p->retry == NULL || p->flush == NULL || p->pace == NULL ||
	    p->job_ev == NULL) {
		snprintf(err, errlen, "evtimer_new failed");
		goto err;
	}
	push_connect(p);
	return p;
err:
	push_free(p);
	return NULL;
}

void
push_free(struct push *p)
{
	struct push_pace *pc;
	struct push_job *j;
	struct room *r;

	if (p == NULL)
		return;
	p->closing = 1;
	if (p->ac != NULL)
		redisAsyncFree(p->ac);
	p->ac = NULL;
	while ((r = TAILQ_FIRST(&p->dirty)) != NULL) {
		TAILQ_REMOVE(&p->dirty, r, dirty_link);
		r->dirty = 0;
		push_room_clear(r);
	}
	while ((pc = p->paces) != NULL) {
		p->paces = pc->next;
		push_pace_free(pc);
	}
	while ((j = TAILQ_FIRST(&p->jobs)) != NULL) {
		TAILQ_REMOVE(&p->jobs, j, link);
		push_job_free(j);
	}
	if (p->job_ev != NULL)
		event_free(p->job_ev);
	if (p->retry != NULL)
		event_free(p->retry);
	if (p->flush != NULL)
		event_free(p->flush);
	if (p->pace != NULL)
		event_free(p->pace);
	msgpack_unpacked_destroy(&p->scratch);
	free(p);
}

static void
push_room_gap_reset(struct room *r, void *arg)
{
	gap_reset(&r->gap);
}

void
push_reload(struct push *p, const struct comet_conf *old)
{
	const struct comet_conf *c = p->sw->w->conf;
	char err[128];

	if (strcmp(c->redis.host, old->redis.host) == 0 &&
	    c->redis.port == old->redis.port &&
	    strcmp(c->redis_password, old->redis_password) == 0 &&
	    strcmp(c->channel_prefix, old->channel_prefix) == 0 &&
	    strcmp(c->server_id, old->server_id) == 0)
		return;
	if (push_channels(p, err, sizeof(err)) == -1) {
		log_error("push: %s; keeping the old subscriptions", err);
		return;
	}
	log_notice("push: redis settings changed, reconnecting");
	/* Other channels or another Redis: nothing to compare with. */
	gap_reset(&p->gap_node);
	gap_reset(&p->gap_all);
	room_each(&p->sw->rooms, push_room_gap_reset, NULL);
	p->closing = 1;
	if (p->ac != NULL)
		redisAsyncFree(p->ac);
	p->ac = NULL;
	p->ready = 0;
	p->closing = 0;
	evtimer_del(p->retry);
	p->backoff_ms = PUSH_BACKOFF_MIN_MS;
	push_connect(p);
}
