#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/sds.h>
#include <openssl/evp.h>

#include "logic/logic.h"
#include "logic/store.h"

struct store {
	struct event_base *base;
	char host[256];
	int port;
	char password[1024];
	int db;
	long timeout_ms;
	long backoff_min_ms;
	long backoff_max_ms;

	struct store_script **scripts;
	store_status_cb scb;
	void *sarg;

	redisAsyncContext *ac; /* NULL while down */
	int connected;
	int ever_connected;
	int stopping;
	long backoff_ms;
	unsigned pending; /* commands sent, not yet answered */
	/*
	 * Bytes of commands handed to queued_ac since it was created; what
	 * is still in its output buffer was never written. That tells a
	 * command Redis may have run from one it cannot have run, when the
	 * connection goes away before the reply.
	 */
	uint64_t queued;
	const redisAsyncContext *queued_ac;
	int cur_unknown;        /* for store_reply_unknown, during a callback */
	uint64_t progress_ms;   /* last reply, or connect start */
	struct event *retry_ev; /* next connect attempt */
	struct event *tick_ev;  /* the watchdog */
};

struct store_req {
	struct store *st;
	store_cb cb;
	void *arg;
	uint64_t end; /* st->queued once this command was queued */
};

static void store_connect(struct store *st);

static void
status(struct store *st, int up, const char *why)
{
	if (st->scb != NULL)
		st->scb(up, why, st->sarg);
}

static void
schedule_retry(struct store *st)
{
	struct timeval tv;
	long d;

	if (st->stopping || evtimer_pending(st->retry_ev, NULL))
		return;
	/* Jitter in [d/2, d]: logic nodes restarted together spread out. */
	d = st->backoff_ms / 2 + random() % (st->backoff_ms / 2 + 1);
	st->backoff_ms *= 2;
	if (st->backoff_ms > st->backoff_max_ms)
		st->backoff_ms = st->backoff_max_ms;
	tv.tv_sec = d / 1000;
	tv.tv_usec = (d % 1000) * 1000;
	evtimer_add(st->retry_ev, &tv);
}

/* Give up on the current connection; pending callbacks get NULL. */
static void
drop(struct store *st, const char *why)
{
	redisAsyncContext *ac = st->ac;
	int was = st->connected;

	if (ac == NULL)
		return;
	st->ac = NULL;
	st->connected = 0;
	/* Deferred by hiredis when called from one of its callbacks. */
	redisAsyncFree(ac);
	status(st, was ? 0 : -1, why);
	schedule_retry(st);
}

static void
on_reply(redisAsyncContext *ac, void *r, void *priv)
{
	struct store_req *req = priv;
	struct store *st = req->st;
	const redisReply *reply = r;

	st->pending--;
	st->progress_ms = logic_now_ms();
	if (reply == NULL) {
		/*
		 * hiredis runs these callbacks before it frees the context, so
		 * its output buffer still holds what was never written. Only
		 * a command written whole can have been run by Redis.
		 */
		uint64_t unsent = ac->c.obuf != NULL ? sdslen(ac->c.obuf) : 0;

		st->cur_unknown = ac != st->queued_ac || unsent > st->queued ||
		                  req->end <= st->queued - unsent;
	}
	if (reply != NULL && reply->type == REDIS_REPLY_ERROR &&
	    strncmp(reply->str, "NOSCRIPT", 8) == 0 && st->ac == ac) {
		/* SCRIPT FLUSH behind our back: start over cleanly. */
		drop(st, "scripts flushed on the server");
	}
	if (req->cb != NULL)
		req->cb(reply, req->arg);
	st->cur_unknown = 0;
	free(req);
}

static int
send_argv(struct store *st, store_cb cb, void *arg, int argc, const char **argv,
          const size_t *argvlen)
{
	struct store_req *req;
	size_t before, after;

	if (st->ac == NULL)
		return -1;
	req = malloc(sizeof(*req));
	if (req == NULL)
		return -1;
	req->st = st;
	req->cb = cb;
	req->arg = arg;
	/* hiredis only appends here; it writes from the loop. */
	before = st->ac->c.obuf != NULL ? sdslen(st->ac->c.obuf) : 0;
	if (redisAsyncCommandArgv(st->ac, on_reply, req, argc, argv, argvlen) !=
	    REDIS_OK) {
		free(req);
		return -1;
	}
	after = st->ac->c.obuf != NULL ? sdslen(st->ac->c.obuf) : 0;
	st->queued += after > before ? after - before : 0;
	req->end = st->queued;
	if (st->pending++ == 0)
		st->progress_ms = logic_now_ms();
	return 0;
}

/* Replies to the commands sent on connect: any error drops the link. */
static void
on_setup_reply(const redisReply *r, void *arg)
{
	struct store *st = arg;
	char why[512];

	if (r == NULL || r->type != REDIS_REPLY_ERROR)
		return;
	snprintf(why, sizeof(why), "connection setup failed: %.250s", r->str);
	drop(st, why);
}

static void
on_connect(const redisAsyncContext *ac, int st_code)
{
	struct store *st = ac->data;
	char why[512];

	if (ac != st->ac)
		return;
	if (st_code != REDIS_OK) {
		/* hiredis frees ac after this callback returns. */
		st->ac = NULL;
		snprintf(why, sizeof(why), "connect %s:%d: %.200s", st->host,
		         st->port, ac->errstr);
		status(st, -1, why);
		schedule_retry(st);
		return;
	}
	st->connected = 1;
	st->backoff_ms = st->backoff_min_ms;
	st->progress_ms = logic_now_ms();
	status(st, 1, st->ever_connected ? "reconnected" : "connected");
	st->ever_connected = 1;
}

static void
on_disconnect(const redisAsyncContext *ac, int st_code)
{
	struct store *st = ac->data;
	char why[512];

	if (ac != st->ac)
		return;
	st->ac = NULL;
	st->connected = 0;
	snprintf(why, sizeof(why), "connection lost: %.200s",
	         st_code == REDIS_OK ? "closed" : ac->errstr);
	status(st, 0, why);
	schedule_retry(st);
}

static void
store_connect(struct store *st)
{
	redisAsyncContext *ac;
	char dbs[16], why[512];

	if (st->stopping || st->ac != NULL)
		return;
	ac = redisAsyncConnect(st->host, st->port);
	if (ac == NULL || ac->err) {
		snprintf(why, sizeof(why), "connect %s:%d: %.200s", st->host,
		         st->port, ac != NULL ? ac->errstr : "out of memory");
		if (ac != NULL)
			redisAsyncFree(ac);
		status(st, -1, why);
		schedule_retry(st);
		return;
	}
	ac->data = st;
	st->ac = ac;
	st->queued = 0;
	st->queued_ac = ac;
	st->progress_ms = logic_now_ms();
	redisLibeventAttach(ac, st->base);
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);

	/* Queued before anything a caller sends once we are connected. */
	if (st->password[0] != '\0') {
		const char *argv[] = {"AUTH", st->password};

		send_argv(st, on_setup_reply, st, 2, argv, NULL);
	}
	if (st->db != 0) {
		const char *argv[] = {"SELECT", dbs};

		snprintf(dbs, sizeof(dbs), "%d", st->db);
		send_argv(st, on_setup_reply, st, 2, argv, NULL);
	}
	for (size_t i = 0; st->scripts != NULL && st->scripts[i] != NULL; i++) {
		const char *argv[] = {"SCRIPT", "LOAD", st->scripts[i]->src};

		send_argv(st, on_setup_reply, st, 3, argv, NULL);
	}
}

static void
on_retry(evutil_socket_t fd, short what, void *arg)
{
	store_connect(arg);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	struct store *st = arg;
	uint64_t now = logic_now_ms();

	if (st->ac == NULL)
		return;
	if (!st->connected && now - st->progress_ms > (uint64_t)st->timeout_ms)
		drop(st, "connect timed out");
	else if (st->connected && st->pending > 0 &&
	         now - st->progress_ms > (uint64_t)st->timeout_ms)
		drop(st, "no reply within the timeout");
}

static void
set_opts(struct store *st, const struct store_opts *o)
{
	snprintf(st->host, sizeof(st->host), "%s", o->host);
	st->port = o->port;
	snprintf(st->password, sizeof(st->password), "%s",
	         o->password != NULL ? o->password : "");
	st->db = o->db;
	st->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : 2000;
	st->backoff_min_ms = o->backoff_min_ms > 0 ? o->backoff_min_ms : 100;
	st->backoff_max_ms = o->backoff_max_ms >= st->backoff_min_ms
	                         ? o->backoff_max_ms
	                         : st->backoff_min_ms;
	st->backoff_ms = st->backoff_min_ms;
}

static void
script_sha(struct store_script *s)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	EVP_Digest(s->src, strlen(s->src), md, &n, EVP_sha1(), NULL);
	for (unsigned int i = 0; i < n && i < 20; i++)
		snprintf(s->sha + 2 * i, 3, "%02x", md[i]);
}

struct store *
store_new(struct event_base *base, const struct store_opts *o,
          struct store_script **scripts, store_status_cb scb, void *sarg,
          char *err, size_t errlen)
{
	struct store *st;
	struct timeval tv;
	long tick;

	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	st->base = base;
	set_opts(st, o);
	st->scripts = scripts;
	for (size_t i = 0; scripts != NULL && scripts[i] != NULL; i++)
		script_sha(scripts[i]);
	st->scb = scb;
	st->sarg = sarg;
	st->retry_ev = evtimer_new(base, on_retry, st);
	st->tick_ev = event_new(base, -1, EV_PERSIST, on_tick, st);
	if (st->retry_ev == NULL || st->tick_ev == NULL) {
		snprintf(err, errlen, "event_new failed");
		store_free(st);
		return NULL;
	}
	tick = st->timeout_ms / 4 > 10 ? st->timeout_ms / 4 : 10;
	if (tick > 1000)
		tick = 1000;
	tv.tv_sec = tick / 1000;
	tv.tv_usec = (tick % 1000) * 1000;
	event_add(st->tick_ev, &tv);
	store_connect(st);
	return st;
}

void
store_free(struct store *st)
{
	redisAsyncContext *ac;

	if (st == NULL)
		return;
	st->stopping = 1;
	ac = st->ac;
	st->ac = NULL;
	st->connected = 0;
	if (ac != NULL)
		redisAsyncFree(ac);
	if (st->retry_ev != NULL)
		event_free(st->retry_ev);
	if (st->tick_ev != NULL)
		event_free(st->tick_ev);
	free(st);
}

int
store_set_opts(struct store *st, const struct store_opts *o)
{
	set_opts(st, o);
	if (st->ac != NULL)
		drop(st, "new settings");
	evtimer_del(st->retry_ev);
	store_connect(st);
	return 0;
}

int
store_reply_unknown(const struct store *st)
{
	return st->cur_unknown;
}

int
store_connected(const struct store *st)
{
	return st->connected;
}

int
store_command(struct store *st, store_cb cb, void *arg, int argc,
              const char **argv, const size_t *argvlen)
{
	if (!st->connected)
		return -1;
	return send_argv(st, cb, arg, argc, argv, argvlen);
}

int
store_eval(struct store *st, const struct store_script *s, store_cb cb,
           void *arg, int nkeys, int argc, const char **argv,
           const size_t *argvlen)
{
	const char *small[32], **av = small;
	size_t smalll[32], *al = smalll;
	char nk[16];
	int r;

	if (!st->connected)
		return -1;
	if (argc + 3 > 32) {
		av = malloc(sizeof(*av) * (size_t)(argc + 3));
		al = malloc(sizeof(*al) * (size_t)(argc + 3));
		if (av == NULL || al == NULL) {
			free(av);
			free(al);
			return -1;
		}
	}
	snprintf(nk, sizeof(nk), "%d", nkeys);
	av[0] = "EVALSHA";
	al[0] = 7;
	av[1] = s->sha;
	al[1] = 40;
	av[2] = nk;
	al[2] = strlen(nk);
	for (int i = 0; i < argc; i++) {
		av[3 + i] = argv[i];
		al[3 + i] = argvlen != NULL ? argvlen[i] : strlen(argv[i]);
	}
	r = send_argv(st, cb, arg, argc + 3, av, al);
	if (av != small) {
		free(av);
		free(al);
	}
	return r;
}
