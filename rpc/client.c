/*
 * msgpack-rpc client on libevent: one connection, kept up with
 * exponential backoff; pending calls in a hash table by msgid, each with
 * its own timer on a libevent common timeout (all calls share one
 * duration, so the timers sit in a queue rather than the heap).
 *
 * Result callbacks may call back into the client, even free it or move
 * it to another server. Every entry from the event loop therefore holds
 * the client "busy"; rpc_client_free while busy only marks it, and the
 * last leave releases it. A decoder whose messages a callback may still be
 * reading is retired, not freed, until then.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/util.h>

#include "rpc/rpc.h"
#include "rpc/rpc_int.h"

#define READ_CHUNK 16384

enum cstate {
	C_IDLE = 0, /* waiting for the retry timer */
	C_CONNECTING,
	C_CONNECTED,
};

struct pending {
	LIST_ENTRY(pending) link;
	struct rpc_client *c;
	uint32_t msgid;
	rpc_result_fn cb;
	void *arg;
	struct event *timer;
};

LIST_HEAD(pending_list, pending);

struct rpc_client {
	struct event_base *base;
	char *host;
	int port;
	long connect_timeout_ms;
	long call_timeout_ms;
	long backoff_min_ms;
	long backoff_max_ms;
	size_t max_pending;
	struct rpc_limits lim;

	enum cstate state;
	struct bufferevent *bev;
	struct rpc_decoder *dec;
	struct rpc_decoder *dec_reading; /* the one read_cb walks */
	struct rpc_decoder *dec_retired; /* freed at the last leave */
	unsigned conn_gen;               /* bumped at every disconnect */
	unsigned attempts; /* failed connects since the last success */
	struct event *retry_ev;
	struct event *connect_ev;
	struct event *kill_ev; /* drop the connection from the loop */
	const struct timeval *call_tv;

	struct pending_list *buckets;
	size_t nbuckets; /* a power of two */
	size_t npending;
	uint32_t next_msgid;

	unsigned busy;
	int freeing;
};

static void client_connect(struct rpc_client *c);

const char *
rpc_status_str(enum rpc_status st)
{
	switch (st) {
	case RPC_OK:
		return "ok";
	case RPC_EREMOTE:
		return "remote error";
	case RPC_ETIMEOUT:
		return "timeout";
	case RPC_ECONN:
		return "connection lost";
	case RPC_ESHUTDOWN:
		return "shutdown";
	}
	return "unknown";
}

static void
really_free(struct rpc_client *c)
{
	for (size_t i = 0; c->buckets != NULL && i < c->nbuckets; i++) {
		struct pending *p;

		while ((p = LIST_FIRST(&c->buckets[i])) != NULL) {
			LIST_REMOVE(p, link);
			event_free(p->timer);
			free(p);
		}
	}
	if (c->bev != NULL)
		bufferevent_free(c->bev);
	rpc_decoder_free(c->dec);
	rpc_decoder_free(c->dec_retired);
	if (c->retry_ev != NULL)
		event_free(c->retry_ev);
	if (c->connect_ev != NULL)
		event_free(c->connect_ev);
	if (c->kill_ev != NULL)
		event_free(c->kill_ev);
	free(c->buckets);
	free(c->host);
	free(c);
}

static void
enter(struct rpc_client *c)
{
	c->busy++;
}

/* 1 when the client was released: the caller must not touch it. */
static int
leave(struct rpc_client *c)
{
	if (--c->busy > 0)
		return 0;
	rpc_decoder_free(c->dec_retired);
	c->dec_retired = NULL;
	if (c->freeing) {
		really_free(c);
		return 1;
	}
	return 0;
}

static struct pending_list *
bucket(struct rpc_client *c, uint32_t msgid)
{
	return &c->buckets[msgid & (c->nbuckets - 1)];
}

static struct pending *
pending_find(struct rpc_client *c, uint32_t msgid)
{
	struct pending *p;

	LIST_FOREACH(p, bucket(c, msgid), link)
	if (p->msgid == msgid)
		return p;
	return NULL;
}

/* Unlink p and free it; returns its callback and argument. */
static void
pending_take(struct rpc_client *c, struct pending *p, rpc_result_fn *cb,
             void **arg)
{
	*cb = p->cb;
	*arg = p->arg;
	LIST_REMOVE(p, link);
	c->npending--;
	event_free(p->timer);
	free(p);
}

/* Call back every pending call with st. Callbacks may add or cancel. */
static void
fail_all(struct rpc_client *c, enum rpc_status st)
{
	rpc_result_fn cb;
	void *arg;

	for (size_t i = 0; i < c->nbuckets; i++) {
		struct pending *p;

		while ((p = LIST_FIRST(&c->buckets[i])) != NULL) {
			pending_take(c, p, &cb, &arg);
			cb(st, NULL, NULL, arg);
		}
	}
}

static void
schedule_retry(struct rpc_client *c)
{
	long delay = c->backoff_min_ms;
	struct timeval tv;
	uint32_t rnd = 0;

	for (unsigned i = 0; i < c->attempts && delay < c->backoff_max_ms; i++)
		delay *= 2;
	if (delay > c->backoff_max_ms)
		delay = c->backoff_max_ms;
	/* Jitter in [delay/2, delay]: comets restarted together spread out. */
	evutil_secure_rng_get_bytes(&rnd, sizeof(rnd));
	delay = delay / 2 + (long)(rnd % (uint32_t)(delay / 2 + 1));
	c->attempts++;
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	evtimer_add(c->retry_ev, &tv);
}

/*
 * Drop the connection (if any), schedule the next attempt unless the
 * client is being freed, and fail the pending calls with st.
 */
static void
disconnect(struct rpc_client *c, enum rpc_status st, int retry)
{
	if (c->bev != NULL) {
		bufferevent_free(c->bev);
		c->bev = NULL;
	}
	if (c->dec != NULL) {
		if (c->dec == c->dec_reading) {
			rpc_decoder_free(c->dec_retired);
			c->dec_retired = c->dec;
		} else {
			rpc_decoder_free(c->dec);
		}
		c->dec = NULL;
	}
	event_del(c->connect_ev);
	event_del(c->kill_ev);
	event_del(c->retry_ev);
	c->state = C_IDLE;
	c->conn_gen++;
	if (retry && !c->freeing)
		schedule_retry(c);
	fail_all(c, st);
}

static void
handle_response(struct rpc_client *c, const struct rpc_message *m)
{
	struct pending *p = pending_find(c, m->msgid);
	rpc_result_fn cb;
	void *arg;

	if (p == NULL)
		return; /* cancelled or timed out */
	pending_take(c, p, &cb, &arg);
	if (m->error->type == MSGPACK_OBJECT_NIL)
		cb(RPC_OK, NULL, m->result, arg);
	else
		cb(RPC_EREMOTE, m->error, m->result, arg);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct rpc_client *c = arg;
	unsigned gen = c->conn_gen;
	struct rpc_message m;
	struct evbuffer_iovec v;
	int r;

	enter(c);
	c->dec_reading = c->dec;
	for (;;) {
		while ((r = rpc_decoder_next(c->dec, &m, NULL, 0)) == 1) {
			/* Requests and notifications from a server: ignored. */
			if (m.type != RPC_RESPONSE)
				continue;
			handle_response(c, &m);
			if (c->freeing || c->conn_gen != gen)
				goto out;
		}
		if (r == -1) {
			disconnect(c, RPC_ECONN, 1);
			goto out;
		}
		if (evbuffer_peek(bufferevent_get_input(c->bev), READ_CHUNK,
		                  NULL, &v, 1) < 1)
			goto out;
		if (v.iov_len > READ_CHUNK)
			v.iov_len = READ_CHUNK;
		r = rpc_decoder_feed(c->dec, v.iov_base, v.iov_len, NULL, 0);
		evbuffer_drain(bufferevent_get_input(c->bev), v.iov_len);
		if (r == -1) {
			disconnect(c, RPC_ECONN, 1);
			goto out;
		}
	}
out:
	c->dec_reading = NULL;
	leave(c);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct rpc_client *c = arg;

	enter(c);
	if (what & BEV_EVENT_CONNECTED) {
		event_del(c->connect_ev);
		rpc_sock_tune(bufferevent_getfd(bev));
		c->state = C_CONNECTED;
		c->attempts = 0;
	} else if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		disconnect(c, RPC_ECONN, 1);
	}
	leave(c);
}

static void
connect_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_client *c = arg;

	enter(c);
	disconnect(c, RPC_ECONN, 1);
	leave(c);
}

static void
kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_client *c = arg;

	enter(c);
	disconnect(c, RPC_ECONN, 1);
	leave(c);
}

static void
retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_client *c = arg;

	enter(c);
	client_connect(c);
	leave(c);
}

static void
call_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct rpc_client *c = p->c;
	rpc_result_fn cb;
	void *cbarg;

	enter(c);
	pending_take(c, p, &cb, &cbarg);
	cb(RPC_ETIMEOUT, NULL, NULL, cbarg);
	leave(c);
}

/* Start a connection attempt; on failure schedule the next one. */
static void
client_connect(struct rpc_client *c)
{
	struct evutil_addrinfo hints, *ai = NULL;
	struct timeval tv;
	char portstr[16];

	if (c->freeing || c->state != C_IDLE)
		return;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", c->port);
	if (evutil_getaddrinfo(c->host, portstr, &hints, &ai) != 0)
		goto fail;
	c->bev = bufferevent_socket_new(c->base, -1, BEV_OPT_CLOSE_ON_FREE);
	c->dec = rpc_decoder_new(&c->lim);
	if (c->bev == NULL || c->dec == NULL)
		goto fail;
	bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
	if (bufferevent_enable(c->bev, EV_READ) == -1)
		goto fail;
	/* Failures after this point arrive deferred, through event_cb. */
	if (bufferevent_socket_connect(c->bev, ai->ai_addr,
	                               (int)ai->ai_addrlen) == -1)
		goto fail;
	evutil_freeaddrinfo(ai);
	c->state = C_CONNECTING;
	tv.tv_sec = c->connect_timeout_ms / 1000;
	tv.tv_usec = (c->connect_timeout_ms % 1000) * 1000;
	evtimer_add(c->connect_ev, &tv);
	return;
fail:
	if (ai != NULL)
		evutil_freeaddrinfo(ai);
	disconnect(c, RPC_ECONN, 1);
}

struct rpc_client *
rpc_client_new(struct event_base *base, const struct rpc_client_opts *opts,
               char *err, size_t errlen)
{
	struct rpc_client *c;
	struct timeval tv;

	if (opts->host == NULL || *opts->host == '\0' || opts->port <= 0 ||
	    opts->port > 65535) {
		rpc_seterr(err, errlen, "rpc client: no address to connect to");
		return NULL;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto nomem;
	c->base = base;
	c->port = opts->port;
	c->connect_timeout_ms =
	    opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : 3000;
	c->call_timeout_ms =
	    opts->call_timeout_ms > 0 ? opts->call_timeout_ms : 5000;
	c->backoff_min_ms =
	    opts->backoff_min_ms > 0 ? opts->backoff_min_ms : 100;
	c->backoff_max_ms =
	    opts->backoff_max_ms > 0 ? opts->backoff_max_ms : 5000;
	if (c->backoff_max_ms < c->backoff_min_ms)
		c->backoff_max_ms = c->backoff_min_ms;
	c->max_pending = opts->max_pending > 0 ? opts->max_pending : 65536;
	c->lim = rpc_limits_resolve(&opts->limits);
	c->next_msgid = 1;
	for (c->nbuckets = 16;
	     c->nbuckets < c->max_pending / 4 && c->nbuckets < 16384;
	     c->nbuckets *= 2)
		;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	c->host = strdup(opts->host);
	c->retry_ev = evtimer_new(base, retry_cb, c);
	c->connect_ev = evtimer_new(base, connect_timeout_cb, c);
	c->kill_ev = event_new(base, -1, 0, kill_cb, c);
	if (c->buckets == NULL || c->host == NULL || c->retry_ev == NULL ||
	    c->connect_ev == NULL || c->kill_ev == NULL)
		goto nomem;
	for (size_t i = 0; i < c->nbuckets; i++)
		LIST_INIT(&c->buckets[i]);
	tv.tv_sec = c->call_timeout_ms / 1000;
	tv.tv_usec = (c->call_timeout_ms % 1000) * 1000;
	c->call_tv = event_base_init_common_timeout(base, &tv);
	if (c->call_tv == NULL)
		goto nomem;
	/* Connect from the loop, so that new() itself never blocks. */
	tv.tv_sec = tv.tv_usec = 0;
	evtimer_add(c->retry_ev, &tv);
	return c;
nomem:
	rpc_seterr(err, errlen, "out of memory");
	if (c != NULL)
		really_free(c);
	return NULL;
}

void
rpc_client_free(struct rpc_client *c)
{
	if (c == NULL || c->freeing)
		return;
	c->freeing = 1;
	enter(c);
	disconnect(c, RPC_ESHUTDOWN, 0);
	leave(c);
}

static int
send_msg(struct rpc_client *c, const msgpack_sbuffer *head, const void *body,
         size_t len)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);

	if (rpc_evbuffer_put(out, head->data, head->size, body, len) == -1) {
		/* Part of a message may be queued: drop the stream. */
		event_active(c->kill_ev, EV_TIMEOUT, 0);
		return -1;
	}
	return 0;
}

static int
can_send(const struct rpc_client *c)
{
	return !c->freeing && c->state == C_CONNECTED &&
	       evbuffer_get_length(bufferevent_get_output(c->bev)) <
	           c->lim.max_output;
}

int
rpc_client_call(struct rpc_client *c, const char *method, const void *params,
                size_t params_len, rpc_result_fn cb, void *arg,
                uint32_t *msgid_out)
{
	msgpack_sbuffer head;
	msgpack_packer pk;
	struct pending *p;
	uint32_t msgid;
	int r;

	if (!can_send(c) || c->npending >= c->max_pending)
		return -1;
	do
		msgid = c->next_msgid++;
	while (pending_find(c, msgid) != NULL);
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -1;
	if ((p->timer = evtimer_new(c->base, call_timeout_cb, p)) == NULL) {
		free(p);
		return -1;
	}
	msgpack_sbuffer_init(&head);
	msgpack_packer_init(&pk, &head, msgpack_sbuffer_write);
	rpc_pack_request_head(&pk, msgid, method);
	r = head.data == NULL ? -1 : send_msg(c, &head, params, params_len);
	msgpack_sbuffer_destroy(&head);
	if (r == -1) {
		event_free(p->timer);
		free(p);
		return -1;
	}
	p->c = c;
	p->msgid = msgid;
	p->cb = cb;
	p->arg = arg;
	LIST_INSERT_HEAD(bucket(c, msgid), p, link);
	c->npending++;
	evtimer_add(p->timer, c->call_tv);
	if (msgid_out != NULL)
		*msgid_out = msgid;
	return 0;
}

void
rpc_client_cancel(struct rpc_client *c, uint32_t msgid)
{
	struct pending *p = pending_find(c, msgid);
	rpc_result_fn cb;
	void *arg;

	if (p != NULL)
		pending_take(c, p, &cb, &arg);
}

int
rpc_client_notify(struct rpc_client *c, const char *method, const void *params,
                  size_t len)
{
	msgpack_sbuffer head;
	msgpack_packer pk;
	int r;

	if (!can_send(c))
		return -1;
	msgpack_sbuffer_init(&head);
	msgpack_packer_init(&pk, &head, msgpack_sbuffer_write);
	rpc_pack_notify_head(&pk, method);
	r = head.data == NULL ? -1 : send_msg(c, &head, params, len);
	msgpack_sbuffer_destroy(&head);
	return r;
}

int
rpc_client_connected(const struct rpc_client *c)
{
	return c->state == C_CONNECTED && !c->freeing;
}

size_t
rpc_client_pending(const struct rpc_client *c)
{
	return c->npending;
}

int
rpc_client_set_target(struct rpc_client *c, const char *host, int port)
{
	struct timeval tv = {0, 0};
	char *h;

	if (c->freeing)
		return -1;
	if (port == c->port && host != NULL && strcmp(host, c->host) == 0)
		return 0;
	if (host == NULL || *host == '\0' || port <= 0 || port > 65535 ||
	    (h = strdup(host)) == NULL)
		return -1;
	free(c->host);
	c->host = h;
	c->port = port;
	c->attempts = 0;
	enter(c);
	disconnect(c, RPC_ECONN, 0);
	if (!c->freeing)
		evtimer_add(c->retry_ev, &tv);
	leave(c);
	return 0;
}
