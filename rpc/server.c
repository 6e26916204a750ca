/*
 * msgpack-rpc server on libevent: one bufferevent per connection, a
 * decoder per connection, requests handed to the handler as rpc_calls
 * that are answered whenever the handler likes.
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "rpc/rpc.h"
#include "rpc/rpc_int.h"

#define READ_CHUNK     16384 /* bytes fed to the decoder at a time */
#define RELISTEN_DELAY 100   /* ms before accepting again after EMFILE */
#define PEER_MAX       64

/*
 * A connection lives as long as the socket is open or a call refers to it:
 * refs = 1 while open + 1 per call not yet answered. Closing releases the
 * socket and the decoder at once; the struct goes when the last call is
 * answered, so a late rpc_call_reply finds "closed" instead of freed
 * memory.
 */
struct conn {
	TAILQ_ENTRY(conn) link;
	struct rpc_server *srv; /* NULL once closed */
	struct bufferevent *bev;
	struct rpc_decoder *dec;
	struct event *resume_ev;
	unsigned refs;
	unsigned inflight;
	int paused;
	char peer[PEER_MAX];
};

struct rpc_call {
	struct conn *conn;
	uint32_t msgid;
};

struct rpc_server {
	struct event_base *base;
	struct evconnlistener *lev;
	struct event *relisten_ev;
	struct rpc_limits lim;
	rpc_handler_fn handler;
	void *arg;
	TAILQ_HEAD(, conn) conns;
	size_t nconns;
	int port;
};

static void conn_process(struct conn *cn);

static void
conn_unref(struct conn *cn)
{
	if (--cn->refs == 0)
		free(cn);
}

static void
conn_close(struct conn *cn)
{
	struct rpc_server *srv = cn->srv;

	if (srv == NULL)
		return;
	TAILQ_REMOVE(&srv->conns, cn, link);
	srv->nconns--;
	cn->srv = NULL;
	bufferevent_free(cn->bev);
	cn->bev = NULL;
	rpc_decoder_free(cn->dec);
	cn->dec = NULL;
	event_free(cn->resume_ev);
	cn->resume_ev = NULL;
	conn_unref(cn);
}

static int
conn_should_pause(const struct conn *cn)
{
	const struct rpc_limits *lim = &cn->srv->lim;

	return cn->inflight >= lim->max_inflight ||
	       evbuffer_get_length(bufferevent_get_output(cn->bev)) >=
	           lim->max_output;
}

/* Called where the handler may be on the stack: resume from the loop. */
static void
conn_maybe_resume(struct conn *cn)
{
	if (cn->srv != NULL && cn->paused && !conn_should_pause(cn))
		event_active(cn->resume_ev, EV_TIMEOUT, 0);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *cn = arg;

	if (!cn->paused || conn_should_pause(cn))
		return;
	cn->paused = 0;
	bufferevent_enable(cn->bev, EV_READ);
	conn_process(cn);
}

static int
send_reply(struct conn *cn, uint32_t msgid, const char *error,
           const void *result, size_t result_len)
{
	static const uint8_t nil = 0xc0;
	msgpack_sbuffer head;
	msgpack_packer pk;
	int r;

	msgpack_sbuffer_init(&head);
	msgpack_packer_init(&pk, &head, msgpack_sbuffer_write);
	rpc_pack_response_head(&pk, msgid, error);
	if (error != NULL || result == NULL || result_len == 0) {
		result = &nil;
		result_len = 1;
	}
	r = head.data == NULL
	        ? -1
	        : rpc_evbuffer_put(bufferevent_get_output(cn->bev), head.data,
	                           head.size, result, result_len);
	msgpack_sbuffer_destroy(&head);
	return r;
}

static void
dispatch(struct conn *cn, const struct rpc_message *m)
{
	struct rpc_server *srv = cn->srv;
	struct rpc_call *call;

	switch (m->type) {
	case RPC_NOTIFY:
		srv->handler(NULL, m->method, m->method_len, m->params,
		             srv->arg);
		return;
	case RPC_RESPONSE:
		/* We never call the peer: nothing can be waiting for it. */
		return;
	}
	if ((call = malloc(sizeof(*call))) == NULL) {
		if (send_reply(cn, m->msgid, "server out of memory", NULL, 0) ==
		    -1)
			conn_close(cn);
		return;
	}
	call->conn = cn;
	call->msgid = m->msgid;
	cn->refs++;
	cn->inflight++;
	srv->handler(call, m->method, m->method_len, m->params, srv->arg);
}

/*
 * Hand out every whole message, feeding the decoder a chunk at a time so
 * it holds at most one chunk beyond a message; stop while over the
 * in-flight or output bound (the rest waits in the socket buffer).
 */
static void
conn_process(struct conn *cn)
{
	struct rpc_message m;
	struct evbuffer *in;
	struct evbuffer_iovec v;
	int r;

	cn->refs++; /* the handler may close us (rpc_server_free) */
	for (;;) {
		while (!conn_should_pause(cn)) {
			r = rpc_decoder_next(cn->dec, &m, NULL, 0);
			if (r == 0)
				break;
			if (r == -1) {
				conn_close(cn);
				goto out;
			}
			dispatch(cn, &m);
			if (cn->srv == NULL)
				goto out;
		}
		if (conn_should_pause(cn)) {
			cn->paused = 1;
			bufferevent_disable(cn->bev, EV_READ);
			goto out;
		}
		in = bufferevent_get_input(cn->bev);
		if (evbuffer_peek(in, READ_CHUNK, NULL, &v, 1) < 1)
			goto out;
		if (v.iov_len > READ_CHUNK)
			v.iov_len = READ_CHUNK;
		r = rpc_decoder_feed(cn->dec, v.iov_base, v.iov_len, NULL, 0);
		evbuffer_drain(in, v.iov_len);
		if (r == -1) {
			conn_close(cn);
			goto out;
		}
	}
out:
	conn_unref(cn);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	conn_process(arg);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	conn_maybe_resume(arg);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		conn_close(arg);
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
	struct rpc_server *srv = arg;
	struct conn *cn;

	if ((cn = calloc(1, sizeof(*cn))) == NULL)
		goto err;
	cn->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (cn->bev == NULL)
		goto err;
	fd = -1; /* the bufferevent owns it now */
	cn->dec = rpc_decoder_new(&srv->lim);
	cn->resume_ev = event_new(srv->base, -1, 0, resume_cb, cn);
	if (cn->dec == NULL || cn->resume_ev == NULL)
		goto err;
	rpc_format_addr(sa, cn->peer, sizeof(cn->peer));
	rpc_sock_tune(bufferevent_getfd(cn->bev));
	cn->srv = srv;
	cn->refs = 1;
	bufferevent_setcb(cn->bev, read_cb, write_cb, event_cb, cn);
	/* write_cb runs once output drains to half the bound. */
	bufferevent_setwatermark(cn->bev, EV_WRITE, srv->lim.max_output / 2, 0);
	if (bufferevent_enable(cn->bev, EV_READ | EV_WRITE) == -1)
		goto err;
	TAILQ_INSERT_TAIL(&srv->conns, cn, link);
	srv->nconns++;
	return;
err:
	if (cn != NULL) {
		if (cn->bev != NULL)
			bufferevent_free(cn->bev);
		rpc_decoder_free(cn->dec);
		if (cn->resume_ev != NULL)
			event_free(cn->resume_ev);
		free(cn);
	}
	if (fd != -1)
		evutil_closesocket(fd);
}

static void
relisten_cb(evutil_socket_t fd, short what, void *arg)
{
	struct rpc_server *srv = arg;

	evconnlistener_enable(srv->lev);
}

/*
 * accept failed with something other than EAGAIN (EMFILE, ENFILE,
 * ENOBUFS): the listening socket stays readable, so accepting again at
 * once would spin. Pause briefly instead.
 */
static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	struct rpc_server *srv = arg;
	struct timeval tv = {0, RELISTEN_DELAY * 1000};

	evconnlistener_disable(lev);
	evtimer_add(srv->relisten_ev, &tv);
}

struct rpc_server *
rpc_server_new(struct event_base *base, const char *host, int port,
               const struct rpc_limits *limits, rpc_handler_fn handler,
               void *arg, char *err, size_t errlen)
{
	struct rpc_server *srv;
	struct evutil_addrinfo hints, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sslen = sizeof(ss);
	char portstr[16];
	int r;

	if (port < 0 || port > 65535) {
		rpc_seterr(err, errlen, "invalid port %d", port);
		return NULL;
	}
	if ((srv = calloc(1, sizeof(*srv))) == NULL) {
		rpc_seterr(err, errlen, "out of memory");
		return NULL;
	}
	srv->base = base;
	srv->lim = rpc_limits_resolve(limits);
	srv->handler = handler;
	srv->arg = arg;
	TAILQ_INIT(&srv->conns);
	if ((srv->relisten_ev = evtimer_new(base, relisten_cb, srv)) == NULL) {
		rpc_seterr(err, errlen, "out of memory");
		goto err;
	}

	if (host == NULL || *host == '\0')
		host = "0.0.0.0";
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = EVUTIL_AI_PASSIVE | EVUTIL_AI_NUMERICSERV;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if ((r = evutil_getaddrinfo(host, portstr, &hints, &ai)) != 0) {
		rpc_seterr(err, errlen, "resolve %s: %s", host,
		           evutil_gai_strerror(r));
		goto err;
	}
	srv->lev = evconnlistener_new_bind(
	    base, accept_cb, srv,
	    LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	    1024, ai->ai_addr, (int)ai->ai_addrlen);
	if (srv->lev == NULL) {
		rpc_seterr(err, errlen, "listen on %s:%d: %s", host, port,
		           strerror(errno));
		goto err;
	}
	evconnlistener_set_error_cb(srv->lev, accept_error_cb);
	if (getsockname(evconnlistener_get_fd(srv->lev), (void *)&ss, &sslen) ==
	    -1) {
		rpc_seterr(err, errlen, "getsockname: %s", strerror(errno));
		goto err;
	}
	srv->port = ntohs(ss.ss_family == AF_INET6
	                      ? ((struct sockaddr_in6 *)&ss)->sin6_port
	                      : ((struct sockaddr_in *)&ss)->sin_port);
	evutil_freeaddrinfo(ai);
	return srv;
err:
	if (ai != NULL)
		evutil_freeaddrinfo(ai);
	rpc_server_free(srv);
	return NULL;
}

void
rpc_server_free(struct rpc_server *srv)
{
	struct conn *cn;

	if (srv == NULL)
		return;
	if (srv->lev != NULL)
		evconnlistener_free(srv->lev);
	if (srv->relisten_ev != NULL)
		event_free(srv->relisten_ev);
	while ((cn = TAILQ_FIRST(&srv->conns)) != NULL)
		conn_close(cn);
	free(srv);
}

int
rpc_server_port(const struct rpc_server *srv)
{
	return srv->port;
}

size_t
rpc_server_connections(const struct rpc_server *srv)
{
	return srv->nconns;
}

int
rpc_call_reply(struct rpc_call *call, const char *error, const void *result,
               size_t result_len)
{
	struct conn *cn = call->conn;
	uint32_t msgid = call->msgid;
	int r = -1;

	free(call);
	cn->inflight--;
	if (cn->srv != NULL) {
		r = send_reply(cn, msgid, error, result, result_len);
		if (r == -1)
			conn_close(cn);
		else
			conn_maybe_resume(cn);
	}
	conn_unref(cn);
	return r;
}

const char *
rpc_call_peer(const struct rpc_call *call)
{
	return call->conn->peer;
}

uint32_t
rpc_call_msgid(const struct rpc_call *call)
{
	return call->msgid;
}
