/*
 * conn: the session layer's hooks (sess_*) and the client connection state
 * machine; see conn.h.
 */
#include "config.h"

#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

#include "comet/conn.h"
#include "comet/logic.h"
#include "comet/push.h"
#include "comet/tls.h"
#include "common/proto.h"
#include "common/ws.h"

/* How long a closing connection may take to flush its op 6. */
#define SESS_LINGER_MS 2000
/* Room for an op 6 or a short reply body. */
#define SESS_REPLY_MAX 256

static void conn_input(struct cio *io, struct evbuffer *in);
static void conn_io_event(struct cio *io, int what);
static void conn_free(struct conn *c);
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg);
static void conn_unwait(struct conn *c);

static const struct cio_handler conn_io_handler = {
    .input = conn_input,
    .event = conn_io_event,
};

#define conn_of(p) ((struct conn *)((char *)(p)-offsetof(struct conn, io)))

/*
 * Lines any peer can cause once per connection, limited per worker process
 * so a flood of bad clients cannot flood the log; the counters (bad_frame,
 * auth_fail...) stay exact.
 */
static struct log_ratelimit rl_bad_frame = {.interval_ms = 1000};
static struct log_ratelimit rl_bad_ws_frame = {.interval_ms = 1000};
static struct log_ratelimit rl_upgrade = {.interval_ms = 1000};
static struct log_ratelimit rl_auth = {.interval_ms = 1000};

/* Clocks, counters ------------------------------------------------------- */

/* Milliseconds of clock id. */
static uint64_t
sess_clock_ms(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
sess_mono_ms(void)
{
	return sess_clock_ms(CLOCK_MONOTONIC);
}

uint64_t
sess_wall_ms(void)
{
	return sess_clock_ms(CLOCK_REALTIME);
}

void
sess_alive(struct sess_worker *sw)
{
	/* The coarse clock: a vDSO read, cheap enough for every callback. */
	if (sw->w->slot != NULL)
		__atomic_store_n(&sw->w->slot->alive_ms,
		                 sess_clock_ms(CLOCK_MONOTONIC_COARSE),
		                 __ATOMIC_RELAXED);
}

void
sess_count_add(struct sess_worker *sw, enum shm_counter c, int64_t d)
{
	if (sw->w->slot != NULL)
		shm_counter_add(sw->w->slot, c, d);
}

/* A common timeout for ms, or NULL when too many distinct ones exist. */
static const struct timeval *
sess_common_tv(struct sess_worker *sw, uint32_t ms)
{
	struct timeval tv;
	size_t i;

	for (i = 0; i < SESS_HB_CACHE; i++) {
		if (sw->hb_tv[i].tv == NULL) {
			tv.tv_sec = ms / 1000;
			tv.tv_usec = (ms % 1000) * 1000;
			sw->hb_tv[i].tv =
			    event_base_init_common_timeout(sw->w->base, &tv);
			sw->hb_tv[i].ms = ms;
			return sw->hb_tv[i].tv;
		}
		if (sw->hb_tv[i].ms == ms)
			return sw->hb_tv[i].tv;
	}
	return NULL;
}

/*
 * An authenticated connection needs no timer of its own: its read
 * deadline (a common timeout, restarted by every read) is the heartbeat
 * deadline. Starting it also hands over input that waited for the
 * authentication.
 */
static void
conn_read_deadline(struct conn *c, uint32_t ms)
{
	const struct timeval *ctv = sess_common_tv(c->sw, ms);
	struct timeval tv;

	if (ctv == NULL) {
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		ctv = &tv;
	}
	cio_read_start(&c->io, ctv);
}

/* Lookups ---------------------------------------------------------------- */

struct conn *
conn_by_id(struct sess_worker *sw, uint32_t id)
{
	uint64_t h = htab_hash_u32(id);
	struct htab_node *n;
	struct conn *c;

	for (n = htab_first(&sw->by_id, h); n != NULL; n = htab_next(n, h)) {
		c = htab_entry(n, struct conn, by_id);
		if (c->id == id)
			return c;
	}
	return NULL;
}

struct conn *
conn_by_key(struct sess_worker *sw, const char *key)
{
	uint64_t h = htab_hash_str(key, strlen(key));
	struct htab_node *n;
	struct conn *c;

	for (n = htab_first(&sw->by_key, h); n != NULL; n = htab_next(n, h)) {
		c = htab_entry(n, struct conn, by_key);
		if (strcmp(c->key, key) == 0)
			return c;
	}
	return NULL;
}

int
conn_watches(const struct conn *c, int32_t op)
{
	uint8_t i;

	for (i = 0; i < c->naccepts; i++)
		if (c->accepts[i] == op)
			return 1;
	return 0;
}

static int
sess_traced(const struct sess_worker *sw, int64_t mid)
{
	size_t i;

	for (i = 0; i < sw->ntrace; i++)
		if (sw->trace[i] == mid)
			return 1;
	return 0;
}

/* Output ----------------------------------------------------------------- */

static void
sbuf_cleanup(const void *data, size_t len, void *arg)
{
	sbuf_unref(arg);
}

/* Send one goim frame built here (replies, op 6): no output bound. */
static int
conn_write_frame(struct conn *c, int ver, int op, int seq, const void *body,
                 size_t len)
{
	uint8_t buf[4 + PROTO_HEADER_LEN + SESS_REPLY_MAX];
	size_t hl = 0;

	if (len > SESS_REPLY_MAX)
		return -1;
	/* A WebSocket header for this size is 4 bytes at most. */
	if (c->flags & CONN_F_WS)
		hl = ws_frame_header(buf, WS_OP_BINARY, PROTO_HEADER_LEN + len);
	proto_header_write(buf + hl, len, ver, op, seq);
	if (len > 0)
		memcpy(buf + hl + PROTO_HEADER_LEN, body, len);
	if (cio_send(&c->io, buf, hl + PROTO_HEADER_LEN + len) == -1)
		return -1;
	sess_count_add(c->sw, SHM_C_FRAMES_OUT, 1);
	sess_count_add(c->sw, SHM_C_BYTES_OUT,
	               (int64_t)(PROTO_HEADER_LEN + len));
	return 0;
}

static int
conn_over_limit(struct conn *c, size_t more)
{
	size_t limit = c->sw->w->conf->output_limit;

	return limit > 0 && cio_output_length(&c->io) + more > limit;
}

/* A reply to the client's request: a client that never reads is slow too. */
static void
conn_reply(struct conn *c, int ver, int op, int seq, const void *body,
           size_t len)
{
	if (conn_over_limit(c, PROTO_HEADER_LEN + len)) {
		conn_close(c, "slow", SHM_C_SLOW_DISCONNECT);
		return;
	}
	if (conn_write_frame(c, ver, op, seq, body, len) == -1)
		conn_close(c, NULL, SHM_C__COUNT);
}

int
conn_send_shared(struct conn *c, struct sbuf *b, unsigned nframes)
{
	if (c->state != CONN_ACTIVE)
		return -1;
	if (conn_over_limit(c, b->len)) {
		sess_count_add(c->sw, SHM_C_DROP_SLOW, 1);
		conn_close(c, "slow", SHM_C_SLOW_DISCONNECT);
		return -1;
	}
	sbuf_ref(b);
	if (cio_send_ref(&c->io, b->data, b->len, sbuf_cleanup, b) == -1) {
		sbuf_unref(b);
		sess_count_add(c->sw, SHM_C_DROP_SLOW, 1);
		conn_close(c, NULL, SHM_C__COUNT);
		return -1;
	}
	sess_count_add(c->sw, SHM_C_DELIVERED, nframes);
	sess_count_add(c->sw, SHM_C_FRAMES_OUT, nframes);
	sess_count_add(c->sw, SHM_C_BYTES_OUT, b->len);
	return 0;
}

/* Waiting for logic ------------------------------------------------------ */

static void
conn_unwait(struct conn *c)
{
	struct conn **pp;

	for (pp = &c->sw->waiting; *pp != NULL; pp = &(*pp)->dead_next) {
		if (*pp == c) {
			*pp = c->dead_next;
			break;
		}
	}
	c->dead_next = NULL;
	c->flags &= ~CONN_F_WAITING;
	sbuf_unref(c->u.token);
	c->u.token = NULL;
}

static void
sess_retry_arm(struct sess_worker *sw)
{
	struct timeval tv = {0, 100 * 1000};

	if (!evtimer_pending(sw->retry, NULL))
		evtimer_add(sw->retry, &tv);
}

/*
 * While the logic connection is down (starting up, logic restarting), an
 * op 7 waits up to rpc_timeout for it instead of failing at once.
 */
static void
sess_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sess_worker *sw = arg;
	uint64_t now = sess_mono_ms();
	long limit = sw->w->conf->rpc_timeout_ms;
	struct conn *c, *next;

	for (c = sw->waiting; c != NULL; c = next) {
		next = c->dead_next;
		c->ticket = logic_connect(sw->logic, c->u.token->data,
		                          c->u.token->len, c);
		if (c->ticket != NULL) {
			conn_unwait(c);
			c->flags |= CONN_F_RPC_PENDING;
			continue;
		}
		/* Each failed attempt counted an rpc error already. */
		if (now - c->logic_hb_ms >= (uint64_t)limit)
			conn_close(c, "logic unavailable", SHM_C__COUNT);
	}
	if (sw->waiting != NULL)
		sess_retry_arm(sw);
}

static void
sess_resync_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sess_worker *sw = arg;
	uint64_t now = sess_mono_ms();
	struct conn *c;
	size_t n = 0, failed = 0;

	LIST_FOREACH(c, &sw->conns, all)
	{
		if (c->state != CONN_ACTIVE)
			continue;
		/* logic's Heartbeat restores a session Redis lost. */
		if (logic_heartbeat(sw->logic, c->mid, c->key) == 0) {
			c->logic_hb_ms = now;
			n++;
		} else {
			/* Retried at the client's next heartbeat. */
			c->logic_hb_ms = now - c->hb_ms;
			failed++;
		}
	}
	if (n + failed > 0)
		log_info("sessions renewed with logic after a Redis outage: "
		         "%zu sent, %zu deferred",
		         n, failed);
}

void
sess_resync(struct sess_worker *sw)
{
	/* Give logic a moment to reconnect to the same Redis first. */
	struct timeval tv = {1, 0};

	evtimer_add(sw->resync, &tv);
}

/* Closing ---------------------------------------------------------------- */

static void
conn_close_code(struct conn *c, const char *reason, enum shm_counter counter,
                int ws_code)
{
	struct sess_worker *sw = c->sw;
	char body[SESS_REPLY_MAX];
	int n;

	if (c->state == CONN_CLOSING)
		return;
	if (counter != SHM_C__COUNT)
		sess_count_add(sw, counter, 1);
	conn_trace(c, "closing: %s", reason ? reason : "by the client");
	if (reason != NULL && !(c->flags & CONN_F_IO_DEAD) &&
	    c->state != CONN_WS_HANDSHAKE) {
		n = snprintf(body, sizeof(body), "{\"reason\":\"%s\"}", reason);
		if (n > 0 && (size_t)n < sizeof(body))
			conn_write_frame(c, PROTO_PUSH_VER,
			                 PROTO_OP_DISCONNECT_REPLY, 0, body,
			                 (size_t)n);
	}
	if ((c->flags & CONN_F_WS) &&
	    !(c->flags & (CONN_F_WS_CLOSED | CONN_F_IO_DEAD))) {
		struct evbuffer *out = cio_output(&c->io);

		if (out != NULL)
			ws_write_close(out, ws_code, reason ? reason : "");
		c->flags |= CONN_F_WS_CLOSED;
	}
	if (c->flags & CONN_F_RPC_PENDING) {
		logic_abandon(c->ticket);
		c->ticket = NULL;
		c->flags &= ~CONN_F_RPC_PENDING;
	}
	if (c->flags & CONN_F_WAITING)
		conn_unwait(c);
	if (c->flags & CONN_F_KEYED) {
		htab_remove(&sw->by_key, &c->by_key);
		c->flags &= ~CONN_F_KEYED;
	}
	c->state = CONN_CLOSING;
	cio_read_stop(&c->io);
	if (c->timer != NULL)
		evtimer_del(c->timer);
	c->flags |= CONN_F_QUEUED;
	c->dead_next = sw->dead;
	sw->dead = c;
	event_active(sw->reaper, EV_TIMEOUT, 0);
}

void
conn_close(struct conn *c, const char *reason, enum shm_counter counter)
{
	conn_close_code(c, reason, counter, WS_CLOSE_NORMAL);
}

/* Give back shm entries and room membership; tell logic once. */
static void
conn_release(struct conn *c)
{
	struct sess_worker *sw = c->sw;
	struct room *r = c->room.room;

	if (c->flags & CONN_F_RELEASED)
		return;
	c->flags |= CONN_F_RELEASED;
	if (c->key != NULL)
		shm_channel_del(sw->w->shm, c->key, sw->w->id, c->id);
	if (r != NULL) {
		if (c->flags & CONN_F_SHM_ROOM)
			shm_room_add(sw->w->shm, r->name, sw->w->id, -1);
		c->flags &= ~CONN_F_SHM_ROOM;
		room_leave(&sw->rooms, &c->room);
	}
	/* A replaced session belongs to the newer connection now. */
	if (c->key != NULL && !(c->flags & CONN_F_REPLACED)) {
		if (logic_disconnect(sw->logic, c->mid, c->key) == 0)
			sw->disconnects_pending++;
		else
			log_info(
			    "conn %u: logic Disconnect for key %s not sent",
			    c->id, c->key);
		conn_trace(c, "Disconnect sent to logic");
	}
}

static void
sess_check_drained(struct sess_worker *sw)
{
	void (*done)(struct worker *);

	if (sw->draining && sw->nconns == 0 && sw->disconnects_pending == 0 &&
	    sw->drain_done != NULL) {
		done = sw->drain_done;
		sw->drain_done = NULL;
		done(sw->w);
	}
}

void
sess_disconnect_done(struct sess_worker *sw)
{
	if (sw->disconnects_pending > 0)
		sw->disconnects_pending--;
	sess_check_drained(sw);
}

static void
conn_free(struct conn *c)
{
	struct sess_worker *sw = c->sw;

	conn_release(c);
	if (c->flags & CONN_F_RPC_PENDING)
		logic_abandon(c->ticket);
	if (c->flags & CONN_F_KEYED)
		htab_remove(&sw->by_key, &c->by_key);
	htab_remove(&sw->by_id, &c->by_id);
	LIST_REMOVE(c, all);
	sw->nconns--;
	if (c->timer != NULL)
		event_free(c->timer);
	cio_close(&c->io);
	ws_reader_reset(&c->ws);
	if (c->flags & CONN_F_WAITING)
		conn_unwait(c);
	else
		free(c->u.hs);
	free(c->fwd);
	free(c->key);
	free(c);
	sess_count_add(sw, SHM_C_CONN_CLOSED, 1);
	sess_count_add(sw, SHM_C_CONN_CURRENT, -1);
	sess_check_drained(sw);
}

static void
sess_reaper_cb(evutil_socket_t fd, short what, void *arg)
{
	struct sess_worker *sw = arg;
	struct conn *c;

	while ((c = sw->dead) != NULL) {
		sw->dead = c->dead_next;
		c->dead_next = NULL;
		c->flags &= ~CONN_F_QUEUED;
		conn_release(c);
		if ((c->flags & CONN_F_IO_DEAD) || cio_finish(&c->io) == 1) {
			conn_free(c);
			continue;
		}
		/*
		 * Flushing the op 6 and waiting for the peer's FIN has a hard
		 * deadline: a peer that keeps trickling bytes or reads a byte
		 * at a time does not keep the fd.
		 */
		if (c->timer == NULL &&
		    (c->timer = evtimer_new(sw->w->base, conn_timer_cb, c)) ==
		        NULL) {
			conn_free(c);
			continue;
		}
		event_add(c->timer, sw->linger_tv);
	}
}

static void
conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;

	switch (c->state) {
	case CONN_WS_HANDSHAKE:
		conn_close(c, NULL, SHM_C_HANDSHAKE_TIMEOUT);
		break;
	case CONN_CONNECTING:
		if (c->flags & CONN_F_WAITING) {
			/* The client did its part; logic never came back. */
			conn_close(c, "logic unavailable", SHM_C__COUNT);
			break;
		}
		/* FALLTHROUGH */
	case CONN_WAIT_AUTH:
		conn_close(c, "handshake timeout", SHM_C_HANDSHAKE_TIMEOUT);
		break;
	case CONN_CLOSING:
		/* The linger is over. */
		if (!(c->flags & CONN_F_QUEUED))
			conn_free(c);
		break;
	default:
		/* An active connection's deadline is its read timeout. */
		break;
	}
}

static void
conn_io_event(struct cio *io, int what)
{
	struct conn *c = conn_of(io);

	if ((what & CIO_TIMEOUT) && c->state == CONN_ACTIVE) {
		conn_close(c, "heartbeat timeout", SHM_C_HEARTBEAT_TIMEOUT);
		return;
	}
	c->flags |= CONN_F_IO_DEAD;
	if (c->state == CONN_CLOSING) {
		if (!(c->flags & CONN_F_QUEUED))
			conn_free(c);
		return;
	}
	conn_close(c, NULL, SHM_C__COUNT);
}

/* Authentication --------------------------------------------------------- */

static void
conn_remote(struct conn *c, char *out, size_t outlen)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 16];
	size_t n;

	out[0] = '\0';
	buf[0] = '\0';
	if (c->fwd != NULL)
		snprintf(buf, sizeof(buf), "%s", c->fwd);
	else if (getpeername(cio_fd(&c->io), (struct sockaddr *)&ss, &sl) == -1)
		return;
	else if (ss.ss_family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(buf, sizeof(buf), "%s:%d", ip, ntohs(sin->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, sizeof(buf), "[%s]:%d", ip,
		         ntohs(sin6->sin6_port));
	}
	/* A long IPv6 address and port may not fit shm's field: cut it. */
	n = strnlen(buf, outlen - 1);
	memcpy(out, buf, n);
	out[n] = '\0';
}

/* The other connection that held this key must go (no Disconnect). */
static void
conn_replace_old(struct conn *c, const struct shm_channel *old)
{
	struct sess_worker *sw = c->sw;
	struct conn *o;

	if (old->worker == sw->w->id) {
		o = conn_by_id(sw, old->conn_id);
		if (o != NULL && o != c) {
			o->flags |= CONN_F_REPLACED;
			conn_close(o, "kicked", SHM_C_KICKED);
		}
		return;
	}
	if (shm_worker_kick(sw->w->shm, old->worker, old->conn_id) == -1)
		log_warn("conn %u: kick mailbox of worker %u full", c->id,
		         old->worker);
	worker_wake(old->worker);
}

/* Join room (shm count, then local list). "" = none. */
static void
conn_join_room(struct conn *c, const char *room)
{
	struct sess_worker *sw = c->sw;

	if (room[0] == '\0')
		return;
	if (shm_room_add(sw->w->shm, room, sw->w->id, 1) == 0)
		c->flags |= CONN_F_SHM_ROOM;
	else {
		sess_count_add(sw, SHM_C_TABLE_FULL, 1);
		log_warn("conn %u: shm room table full, room %s not counted",
		         c->id, room);
	}
	if (room_join(&sw->rooms, &c->room, room) == -1)
		log_error("conn %u: out of memory joining room %s", c->id,
		          room);
}

static void
conn_leave_room(struct conn *c)
{
	struct sess_worker *sw = c->sw;

	if (c->room.room == NULL)
		return;
	if (c->flags & CONN_F_SHM_ROOM)
		shm_room_add(sw->w->shm, c->room.room->name, sw->w->id, -1);
	c->flags &= ~CONN_F_SHM_ROOM;
	room_leave(&sw->rooms, &c->room);
}

/*
 * logic granted a session this node cannot take: hand it back, so that
 * logic does not count the user online until the session expires.
 */
static void
conn_disconnect_unused(struct conn *c, const struct logic_auth *a)
{
	struct sess_worker *sw = c->sw;
	char *key;

	if ((key = strndup(a->key, a->key_len)) == NULL)
		return;
	if (logic_disconnect(sw->logic, a->mid, key) == 0)
		sw->disconnects_pending++;
	free(key);
}

static void
conn_auth_cb(enum logic_status st, const char *reason,
             const struct logic_auth *a, void *arg)
{
	struct conn *c = arg, *o;
	struct sess_worker *sw = c->sw;
	const struct comet_conf *conf = sw->w->conf;
	struct shm_channel ch, old;
	char room[SHM_ROOM_MAX];
	int rc;

	c->flags &= ~CONN_F_RPC_PENDING;
	c->ticket = NULL; /* freed by logic.c */
	if (c->state != CONN_CONNECTING)
		return;
	if (st != LOGIC_OK) {
		/* Only a refusal is the client's: the rest are rpc errors. */
		log_msg_limited(
		    &rl_auth, LOG_LVL_INFO, "conn %u: %s: %s", c->id,
		    st == LOGIC_REFUSED ? "auth refused" : "Connect failed",
		    reason);
		conn_close(c, reason,
		           st == LOGIC_REFUSED ? SHM_C_AUTH_FAIL
		                               : SHM_C__COUNT);
		return;
	}
	/*
	 * shm holds keys of up to SHM_KEY_MAX - 1 bytes. Checked here so that
	 * a long key is a refusal of its own, not a full table.
	 */
	if (a->key_len >= SHM_KEY_MAX) {
		log_info("conn %u: key of %zu bytes refused (at most %d)",
		         c->id, a->key_len, SHM_KEY_MAX - 1);
		conn_disconnect_unused(c, a);
		conn_close(c, "key too long", SHM_C_AUTH_FAIL);
		return;
	}
	if ((c->key = strndup(a->key, a->key_len)) == NULL) {
		conn_close(c, "server error", SHM_C_AUTH_FAIL);
		return;
	}
	c->mid = a->mid;
	if (sess_traced(sw, c->mid))
		c->flags |= CONN_F_TRACE;
	memcpy(room, a->room, a->room_len);
	room[a->room_len] = '\0';
	c->naccepts = (uint8_t)a->naccepts;
	memcpy(c->accepts, a->accepts, a->naccepts * sizeof(int32_t));
	c->hb_ms = a->heartbeat_ms ? a->heartbeat_ms
	                           : (uint32_t)conf->heartbeat_timeout_ms;
	conn_trace(c,
	           "Connect ok: room \"%s\", %u accepted ops, heartbeat %u ms",
	           room, c->naccepts, c->hb_ms);

	memset(&ch, 0, sizeof(ch));
	memcpy(ch.key, c->key, a->key_len + 1);
	memcpy(ch.room, room, a->room_len + 1);
	conn_remote(c, ch.remote, sizeof(ch.remote));
	ch.mid = c->mid;
	ch.connected_ms = ch.heartbeat_ms = sess_wall_ms();
	ch.conn_id = c->id;
	ch.worker = sw->w->id;
	ch.naccepts = c->naccepts;
	memcpy(ch.accepts, c->accepts, c->naccepts * sizeof(int32_t));
	rc = shm_channel_put(sw->w->shm, &ch, &old);
	if (rc == -1 && errno == ENOSPC) {
		sess_count_add(sw, SHM_C_TABLE_FULL, 1);
		log_warn("conn %u: channel table full, refusing key %s", c->id,
		         c->key);
		conn_close(c, "server full", SHM_C_AUTH_FAIL);
		return;
	}
	if (rc == -1) {
		/* Everything shm checks was checked above: a bug if seen. */
		log_error("conn %u: shm refused key %s: %s", c->id, c->key,
		          strerror(errno));
		conn_close(c, "server error", SHM_C_AUTH_FAIL);
		return;
	}
	if (rc == 1) {
		conn_trace(c, "replaces conn %u on worker %u", old.conn_id,
		           old.worker);
		conn_replace_old(c, &old);
	}
	if ((o = conn_by_key(sw, c->key)) != NULL && o != c) {
		o->flags |= CONN_F_REPLACED;
		conn_close(o, "kicked", SHM_C_KICKED);
	}
	htab_insert(&sw->by_key, &c->by_key, htab_hash_str(c->key, a->key_len));
	c->flags |= CONN_F_KEYED;
	conn_join_room(c, room);

	c->state = CONN_ACTIVE;
	c->logic_hb_ms = sess_mono_ms();
	sess_count_add(sw, SHM_C_AUTH_OK, 1);
	conn_write_frame(c, c->auth_ver, PROTO_OP_AUTH_REPLY, c->auth_seq, NULL,
	                 0);
	event_free(c->timer);
	c->timer = NULL;
	/* Frames the client sent right behind its op 7 come next. */
	conn_read_deadline(c, c->hb_ms);
}

/* Frames ----------------------------------------------------------------- */

static void
conn_heartbeat(struct conn *c, const struct proto_frame *f)
{
	struct sess_worker *sw = c->sw;
	uint8_t body[PROTO_HEARTBEAT_BODY_LEN];
	uint32_t online = 0, node;
	uint64_t now = sess_mono_ms();

	if (c->room.room != NULL) {
		/* Cluster count from RenewOnline; this node's if fresher. */
		online = shm_room_cluster(sw->w->shm, c->room.room->name);
		node = shm_room_online(sw->w->shm, c->room.room->name);
		if (node > online)
			online = node;
	}
	proto_put_u32(body, online);
	shm_channel_touch(sw->w->shm, c->key, sw->w->id, c->id, sess_wall_ms());
	/*
	 * logic's session TTL is at least twice the heartbeat timeout it
	 * hands out, so one Heartbeat call per timeout period renews it in
	 * time while clients beat several times per period.
	 */
	if (now - c->logic_hb_ms >= c->hb_ms &&
	    logic_heartbeat(sw->logic, c->mid, c->key) == 0) {
		c->logic_hb_ms = now;
		conn_trace(c, "Heartbeat sent to logic");
	}
	conn_trace(c, "heartbeat, room online %u", online);
	conn_reply(c, f->ver, PROTO_OP_HEARTBEAT_REPLY, f->seq, body,
	           sizeof(body));
}

static void
conn_change_room(struct conn *c, const struct proto_frame *f)
{
	struct sess_worker *sw = c->sw;
	char room[SHM_ROOM_MAX];

	if (f->body_len >= sizeof(room) ||
	    (f->body_len > 0 && memchr(f->body, '\0', f->body_len) != NULL)) {
		conn_close(c, "bad room", SHM_C_BAD_FRAME);
		return;
	}
	if (f->body_len > 0)
		memcpy(room, f->body, f->body_len);
	room[f->body_len] = '\0';
	if (c->room.room == NULL || strcmp(c->room.room->name, room) != 0) {
		conn_leave_room(c);
		shm_channel_set_room(sw->w->shm, c->key, sw->w->id, c->id,
		                     room);
		conn_join_room(c, room);
		conn_trace(c, "changed room to \"%s\"", room);
	}
	conn_reply(c, f->ver, PROTO_OP_CHANGE_ROOM_REPLY, f->seq, NULL, 0);
}

static void
conn_watch(struct conn *c, const struct proto_frame *f, int add)
{
	struct sess_worker *sw = c->sw;
	int32_t ops[SHM_ACCEPTS_MAX * 4];
	size_t n, i;
	uint8_t j;

	if (proto_parse_ops(f->body, f->body_len, ops,
	                    sizeof(ops) / sizeof(ops[0]), &n) == -1) {
		conn_close(c, "bad op list", SHM_C_BAD_FRAME);
		return;
	}
	for (i = 0; i < n; i++) {
		for (j = 0; j < c->naccepts; j++)
			if (c->accepts[j] == ops[i])
				break;
		if (add && j == c->naccepts) {
			if (c->naccepts == SHM_ACCEPTS_MAX) {
				log_info("conn %u: watches %d ops, %d ignored",
				         c->id, SHM_ACCEPTS_MAX, ops[i]);
				continue;
			}
			c->accepts[c->naccepts++] = ops[i];
		} else if (!add && j < c->naccepts) {
			c->accepts[j] = c->accepts[--c->naccepts];
		}
	}
	shm_channel_set_accepts(sw->w->shm, c->key, sw->w->id, c->id,
	                        c->accepts, c->naccepts);
	conn_trace(c, "%s %zu op(s), now %u", add ? "watch" : "unwatch", n,
	           c->naccepts);
	conn_reply(c, f->ver, add ? PROTO_OP_SUB_REPLY : PROTO_OP_UNSUB_REPLY,
	           f->seq, NULL, 0);
}

static void
conn_handle_frame(struct conn *c, const struct proto_frame *f)
{
	struct sess_worker *sw = c->sw;

	sess_count_add(sw, SHM_C_FRAMES_IN, 1);
	sess_count_add(sw, SHM_C_BYTES_IN, f->pack_len);
	if (c->state == CONN_WAIT_AUTH) {
		/* As goim: anything before op 7 is ignored. */
		if (f->op != PROTO_OP_AUTH)
			return;
		c->auth_seq = f->seq;
		c->auth_ver = f->ver;
		if ((c->ticket = logic_connect(sw->logic, f->body, f->body_len,
		                               c)) != NULL)
			c->flags |= CONN_F_RPC_PENDING;
		else if (!logic_connected(sw->logic) &&
		         (c->u.token = sbuf_new(f->body_len)) != NULL) {
			memcpy(c->u.token->data, f->body, f->body_len);
			c->flags |= CONN_F_WAITING;
			c->logic_hb_ms = sess_mono_ms();
			c->dead_next = sw->waiting;
			sw->waiting = c;
			sess_retry_arm(sw);
		} else {
			/* Not the client's fault: logic_call counted it. */
			conn_close(c, "logic unavailable", SHM_C__COUNT);
			return;
		}
		c->state = CONN_CONNECTING;
		/*
		 * One request at a time until authenticated, as goim: later
		 * frames wait in the input (bounded by its watermark), while
		 * reading goes on so a client leaving is noticed at once.
		 */
		return;
	}
	switch (f->op) {
	case PROTO_OP_HEARTBEAT:
		conn_heartbeat(c, f);
		break;
	case PROTO_OP_CHANGE_ROOM:
		conn_change_room(c, f);
		break;
	case PROTO_OP_SUB:
		conn_watch(c, f, 1);
		break;
	case PROTO_OP_UNSUB:
		conn_watch(c, f, 0);
		break;
	default:
		/* goim forwards the rest and answers the same op, no body. */
		if (logic_receive(sw->logic, c->mid, c->key, f->op, f->body,
		                  f->body_len) == -1)
			log_info("conn %u: Receive op %d not sent to logic",
			         c->id, f->op);
		conn_trace(c, "op %d (%u bytes) to logic Receive", f->op,
		           f->body_len);
		conn_reply(c, f->ver, f->op, f->seq, NULL, 0);
		break;
	}
}

static int
conn_readable(const struct conn *c)
{
	return c->state == CONN_WAIT_AUTH || c->state == CONN_ACTIVE;
}

static void
conn_process_tcp(struct conn *c, struct evbuffer *in)
{
	struct proto_frame f;
	const char *why;
	int rc;

	while (conn_readable(c)) {
		rc = proto_peek(in, c->sw->w->conf->max_body, &f, &why);
		if (rc == 0)
			return;
		if (rc == -1) {
			log_msg_limited(&rl_bad_frame, LOG_LVL_INFO,
			                "conn %u: bad frame: %s", c->id, why);
			conn_close(c, "bad frame", SHM_C_BAD_FRAME);
			return;
		}
		conn_handle_frame(c, &f);
		proto_consume(in, &f);
	}
}

static void
conn_process_ws(struct conn *c, struct evbuffer *in)
{
	const struct comet_conf *conf = c->sw->w->conf;
	struct ws_message m;
	struct proto_frame f;
	const char *why;
	int rc, code;

	while (conn_readable(c)) {
		rc = ws_read_message(&c->ws, in, conf->max_ws_message, &m,
		                     &code, &why);
		if (rc == 0)
			return;
		if (rc == -1) {
			log_msg_limited(&rl_bad_ws_frame, LOG_LVL_INFO,
			                "conn %u: bad WebSocket frame: %s",
			                c->id, why);
			conn_close_code(c, "bad frame", SHM_C_BAD_FRAME, code);
			return;
		}
		if (rc == 2) {
			struct evbuffer *out = cio_output(&c->io);

			if (out != NULL)
				ws_control_reply(out, &m);
			/* Pongs to a client that never reads count too. */
			if (conn_over_limit(c, 0)) {
				ws_message_done(&c->ws, in, &m);
				conn_close(c, "slow", SHM_C_SLOW_DISCONNECT);
				return;
			}
			if (m.opcode == WS_OP_CLOSE) {
				c->flags |= CONN_F_WS_CLOSED;
				ws_message_done(&c->ws, in, &m);
				conn_close(c, NULL, SHM_C__COUNT);
				return;
			}
			ws_message_done(&c->ws, in, &m);
			continue;
		}
		rc = proto_parse(m.data, m.len, conf->max_body, &f, &why);
		if (rc == 1 && f.pack_len != m.len) {
			rc = -1;
			why = "message holds more than one frame";
		} else if (rc == 0) {
			rc = -1;
			why = "short frame";
		}
		if (rc == -1) {
			ws_message_done(&c->ws, in, &m);
			log_msg_limited(&rl_bad_frame, LOG_LVL_INFO,
			                "conn %u: bad frame: %s", c->id, why);
			conn_close_code(c, "bad frame", SHM_C_BAD_FRAME,
			                WS_CLOSE_PROTOCOL);
			return;
		}
		conn_handle_frame(c, &f);
		ws_message_done(&c->ws, in, &m);
	}
}

static void
conn_upgrade(struct conn *c, struct evbuffer *in)
{
	struct sess_worker *sw = c->sw;
	const struct comet_conf *conf = sw->w->conf;
	struct evbuffer *out = cio_output(&c->io);
	const char *why;
	int rc, status;

	if (out == NULL) {
		conn_close(c, NULL, SHM_C__COUNT);
		return;
	}
	rc = ws_handshake_parse(in, conf->max_http_header,
	                        conf->ws_path[0] ? conf->ws_path : "/sub",
	                        c->u.hs, &status, &why);
	if (rc == 0)
		return;
	if (rc == -1) {
		log_msg_limited(&rl_upgrade, LOG_LVL_INFO,
		                "conn %u: upgrade refused (%d): %s", c->id,
		                status, why);
		ws_handshake_reject(out, status, why);
		conn_close(c, NULL, SHM_C_BAD_FRAME);
		return;
	}
	if (ws_handshake_accept(out, c->u.hs) == -1) {
		conn_close(c, NULL, SHM_C__COUNT);
		return;
	}
	if (c->u.hs->addr[0] != '\0')
		c->fwd = strdup(c->u.hs->addr);
	free(c->u.hs);
	c->u.hs = NULL;
	ws_reader_init(&c->ws);
	c->flags |= CONN_F_WS;
	c->state = CONN_WAIT_AUTH;
}

static void
conn_input(struct cio *io, struct evbuffer *in)
{
	struct conn *c = conn_of(io);

	sess_alive(c->sw);
	if (c->state == CONN_WS_HANDSHAKE)
		conn_upgrade(c, in);
	if (c->state == CONN_WS_HANDSHAKE || c->state == CONN_CLOSING) {
		/* A closing connection's input is of no use. */
		if (c->state == CONN_CLOSING)
			evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	if (c->flags & CONN_F_WS)
		conn_process_ws(c, in);
	else
		conn_process_tcp(c, in);
	if (c->state == CONN_CLOSING)
		evbuffer_drain(in, evbuffer_get_length(in));
}

/* Hooks ------------------------------------------------------------------ */

static uint32_t
sess_next_id(struct sess_worker *sw)
{
	/* Ids are not reused while in use, so a late kick cannot misfire. */
	do {
		if (++sw->next_id == 0)
			sw->next_id = 1;
	} while (conn_by_id(sw, sw->next_id) != NULL);
	return sw->next_id;
}

static size_t
sess_input_bound(const struct comet_conf *conf)
{
	size_t m = conf->max_body + PROTO_HEADER_LEN;

	if (conf->max_ws_message + WS_FRAME_HEADER_MAX > m)
		m = conf->max_ws_message + WS_FRAME_HEADER_MAX;
	if (conf->max_http_header > m)
		m = conf->max_http_header;
	/* One whole frame, plus a read's worth behind it. */
	return m + 16384;
}

void
sess_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa,
            socklen_t salen, enum listener_kind kind)
{
	struct sess_worker *sw = w->sess;
	struct conn *c;
	SSL *ssl;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		log_error("sess_accept: out of memory");
		evutil_closesocket(fd);
		return;
	}
	/*
	 * A bounded kernel buffer: output_limit then says when a client that
	 * stopped reading is slow, not the kernel's autotuning (up to 4 MiB).
	 */
	if (w->conf->sndbuf > 0) {
		int v = (int)w->conf->sndbuf;

		setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof(v));
	}
	c->sw = sw;
	c->kind = (uint8_t)kind;
	ssl = NULL;
	if (kind == LISTENER_WSS) {
		if (sw->tls == NULL || (ssl = tls_ssl_new(sw->tls)) == NULL) {
			log_warn("sess_accept: no TLS context, closing");
			evutil_closesocket(fd);
			free(c);
			return;
		}
		c->flags |= CONN_F_SSL;
	}
	if (cio_open(&c->io, &sw->cio, fd, ssl) == -1) {
		log_error("sess_accept: out of memory");
		free(c);
		return;
	}
	c->timer = evtimer_new(w->base, conn_timer_cb, c);
	if (kind != LISTENER_TCP) {
		c->u.hs = calloc(1, sizeof(*c->u.hs));
		if (c->u.hs != NULL)
			ws_handshake_init(c->u.hs);
		c->state = CONN_WS_HANDSHAKE;
	} else
		c->state = CONN_WAIT_AUTH;
	if (c->timer == NULL || (kind != LISTENER_TCP && c->u.hs == NULL)) {
		log_error("sess_accept: out of memory");
		if (c->timer != NULL)
			event_free(c->timer);
		cio_close(&c->io);
		free(c->u.hs);
		free(c);
		return;
	}
	c->id = sess_next_id(sw);
	htab_insert(&sw->by_id, &c->by_id, htab_hash_u32(c->id));
	LIST_INSERT_HEAD(&sw->conns, c, all);
	sw->nconns++;
	sess_count_add(sw, SHM_C_CONN_CURRENT, 1);
	event_add(c->timer, sw->hs_tv);
}

void
sess_kick(struct worker *w, uint32_t conn_id)
{
	struct conn *c = conn_by_id(w->sess, conn_id);

	if (c == NULL || c->state == CONN_CLOSING)
		return;
	c->flags |= CONN_F_REPLACED;
	conn_close(c, "kicked", SHM_C_KICKED);
}

size_t
sess_count(const struct worker *w)
{
	return w->sess != NULL ? w->sess->nconns : 0;
}

static void
sess_parse_trace(struct sess_worker *sw, const char *list)
{
	const char *p = list;
	char *end;
	long long v;
	int64_t *nv;

	free(sw->trace);
	sw->trace = NULL;
	sw->ntrace = 0;
	while (*p != '\0') {
		while (*p == ',' || *p == ' ' || *p == '\t')
			p++;
		if (*p == '\0')
			break;
		errno = 0;
		v = strtoll(p, &end, 10);
		if (end == p || errno != 0) {
			log_warn("trace_mids: cannot parse \"%s\"", p);
			return;
		}
		p = end;
		nv = realloc(sw->trace, (sw->ntrace + 1) * sizeof(*nv));
		if (nv == NULL)
			return;
		sw->trace = nv;
		sw->trace[sw->ntrace++] = v;
	}
}

static void
sess_load_tls(struct sess_worker *sw)
{
	const struct comet_conf *c = sw->w->conf;
	char err[512];
	SSL_CTX *ctx;

	if (c->listen[LISTENER_WSS].port == 0)
		return;
	if ((ctx = tls_ctx_new(c->tls_cert, c->tls_key, err, sizeof(err))) ==
	    NULL) {
		log_error("tls: %s%s", err,
		          sw->tls ? "; keeping the previous certificate" : "");
		return;
	}
	SSL_CTX_free(sw->tls);
	sw->tls = ctx;
}

static void
sess_set_timeouts(struct sess_worker *sw)
{
	const struct comet_conf *c = sw->w->conf;
	struct timeval tv;

	tv.tv_sec = c->handshake_timeout_ms / 1000;
	tv.tv_usec = (c->handshake_timeout_ms % 1000) * 1000;
	sw->hs_tv = event_base_init_common_timeout(sw->w->base, &tv);
	sw->cio.input_bound = sess_input_bound(c);
}

int
sess_init(struct worker *w)
{
	struct sess_worker *sw;
	struct timeval tv = {SESS_LINGER_MS / 1000,
	                     (SESS_LINGER_MS % 1000) * 1000};
	char err[256];

	if ((sw = calloc(1, sizeof(*sw))) == NULL) {
		log_error("sess_init: out of memory");
		return -1;
	}
	w->sess = sw;
	sw->w = w;
	/*
	 * Ids start at a random point so a kick meant for a connection of this
	 * worker's previous incarnation cannot hit a new one.
	 */
	sw->next_id = (uint32_t)(sess_wall_ms() * 2654435761u) ^
	              ((uint32_t)getpid() << 16);
	LIST_INIT(&sw->conns);
	htab_init(&sw->by_id);
	htab_init(&sw->by_key);
	sess_parse_trace(sw, w->conf->trace_mids);
	if (cio_loop_init(&sw->cio, w->base, &conn_io_handler, 0) == -1) {
		log_error("sess_init: out of memory");
		return -1;
	}
	sess_set_timeouts(sw);
	sw->linger_tv = event_base_init_common_timeout(w->base, &tv);
	sw->reaper = event_new(w->base, -1, 0, sess_reaper_cb, sw);
	sw->retry = evtimer_new(w->base, sess_retry_cb, sw);
	sw->resync = evtimer_new(w->base, sess_resync_cb, sw);
	if (sw->hs_tv == NULL || sw->linger_tv == NULL || sw->reaper == NULL ||
	    sw->retry == NULL || sw->resync == NULL) {
		log_error("sess_init: libevent setup failed");
		return -1;
	}
	sess_load_tls(sw);
	if ((sw->logic = logic_new(sw, conn_auth_cb, err, sizeof(err))) ==
	    NULL) {
		log_error("sess_init: logic client: %s", err);
		return -1;
	}
	if ((sw->push = push_new(sw, err, sizeof(err))) == NULL) {
		log_error("sess_init: push: %s", err);
		return -1;
	}
	room_set_init(&sw->rooms, push_room_first, push_room_last, sw->push);
	return 0;
}

void
sess_reload(struct worker *w, const struct comet_conf *old)
{
	struct sess_worker *sw = w->sess;

	if (sw == NULL)
		return;
	sess_parse_trace(sw, w->conf->trace_mids);
	sess_set_timeouts(sw);
	sess_load_tls(sw);
	logic_reload(sw->logic, old);
	push_reload(sw->push, old);
}

void
sess_drain(struct worker *w, void (*done)(struct worker *w))
{
	struct sess_worker *sw = w->sess;
	struct conn *c;

	if (sw == NULL) {
		done(w);
		return;
	}
	sw->draining = 1;
	sw->drain_done = done;
	LIST_FOREACH(c, &sw->conns, all)
	{
		if (c->state != CONN_CLOSING)
			conn_close(c, "server shutting down", SHM_C__COUNT);
	}
	sess_check_drained(sw);
}

void
sess_free(struct worker *w)
{
	struct sess_worker *sw = w->sess;
	struct conn *c;

	if (sw == NULL)
		return;
	sw->drain_done = NULL;
	sw->dead = NULL;
	while ((c = LIST_FIRST(&sw->conns)) != NULL) {
		/* The loop is over: no Disconnect can be sent any more. */
		c->flags |= CONN_F_REPLACED;
		conn_free(c);
	}
	if (sw->push != NULL)
		room_set_release(&sw->rooms);
	push_free(sw->push);
	logic_free(sw->logic);
	htab_release(&sw->by_id);
	htab_release(&sw->by_key);
	if (sw->reaper != NULL)
		event_free(sw->reaper);
	if (sw->retry != NULL)
		event_free(sw->retry);
	if (sw->resync != NULL)
		event_free(sw->resync);
	SSL_CTX_free(sw->tls);
	cio_loop_release(&sw->cio);
	free(sw->trace);
	free(sw);
	w->sess = NULL;
	sbuf_pool_drain();
}
