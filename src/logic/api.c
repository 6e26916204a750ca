#include "config.h"

#include <sys/queue.h>
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "common/envelope.h"
#include "logic/api.h"
#include "logic/auth.h"
#include "logic/chanseq.h"
#include "logic/online.h"
#include "logic/session.h"

struct api {
	struct logic *l;
	struct evhttp *http;
};

static const char *const route_names[ROUTE__COUNT] = {"/goim/push/keys",
                                                      "/goim/push/mids",
                                                      "/goim/push/room",
                                                      "/goim/push/all",
                                                      "/goim/online/top",
                                                      "/goim/online/room",
                                                      "/goim/online/total",
                                                      "/goim/nodes/weighted",
                                                      "/goim/nodes/instances",
                                                      "/metrics",
                                                      "/healthz",
                                                      "/demo/",
                                                      "other"};

static const int code_values[CODE__COUNT] = {0, -400, -401, -500, -404, -504};

/* One request while Redis works on it. */
struct req_ctx {
	struct api *a;
	struct evhttp_request *req;
	enum api_route route;
	struct evkeyvalq q;
	char **targets; /* keys or rooms, NUL-terminated copies */
	size_t ntargets;
	int64_t *mids;
	size_t nmids;
	int32_t op;
	int32_t speed;
	long limit;
	const char *type; /* points into q */
	struct evbuffer *body;
	unsigned outstanding; /* PUBLISH commands not answered yet */
	unsigned failed;      /* certainly not published */
	unsigned unknown;     /* written to Redis, never answered */
	unsigned published;
	size_t matched; /* keys with a session */
};

static void
ctx_free(struct req_ctx *c)
{
	if (c == NULL)
		return;
	evhttp_clear_headers(&c->q);
	for (size_t i = 0; i < c->ntargets; i++)
		free(c->targets[i]);
	free(c->targets);
	free(c->mids);
	if (c->body != NULL)
		evbuffer_free(c->body);
	free(c);
}

static void
send_json(struct api *a, struct evhttp_request *req, enum api_route route,
          enum api_code code, const char *message, json_t *data)
{
	struct evbuffer *out = evbuffer_new();
	json_t *root;
	char *s;
	int http = 200;

	a->l->metrics.http[route][code]++;
	root = json_pack("{s:i, s:s, s:o}", "code", code_values[code],
	                 "message", message != NULL ? message : "", "data",
	                 data != NULL ? data : json_null());
	s = root != NULL ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (code == CODE_UNAUTHORIZED)
		http = 401;
	else if (code == CODE_NOT_FOUND)
		http = 404;
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "application/json");
	if (out != NULL && s != NULL)
		evbuffer_add_printf(out, "%s\n", s);
	evhttp_send_reply(req, http, http == 200 ? "OK" : "Error", out);
	free(s);
	if (out != NULL)
		evbuffer_free(out);
}

static void
ctx_reply(struct req_ctx *c, enum api_code code, const char *msg, json_t *data)
{
	send_json(c->a, c->req, c->route, code, msg, data);
	ctx_free(c);
}

/* A whole decimal integer in [min, max]. */
static int
parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
	char *end;
	long long v;

	if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int
get_i32(struct req_ctx *c, const char *name, int required, int32_t *out)
{
	const char *v = evhttp_find_header(&c->q, name);
	int64_t n;

	if (v == NULL || *v == '\0')
		return required ? -1 : 0;
	if (parse_i64(v, INT32_MIN, INT32_MAX, &n) == -1)
		return -1;
	*out = (int32_t)n;
	return 0;
}

/*
 * Every value of parameter name, comma-split when split is set, into
 * c->targets. -1 on a value longer than maxlen or more than max values.
 */
static int
collect(struct req_ctx *c, const char *name, int split, size_t maxlen,
        size_t max, char *why, size_t whylen)
{
	struct evkeyval *kv;

	TAILQ_FOREACH(kv, &c->q, next)
	{
		const char *p = kv->value, *e;

		if (strcmp(kv->key, name) != 0)
			continue;
		for (;;) {
			size_t n;
			char **t;

			e = split ? strchr(p, ',') : NULL;
			n = e != NULL ? (size_t)(e - p) : strlen(p);
			if (n > 0) {
				if (n > maxlen) {
					snprintf(
					    why, whylen,
					    "a %s value is longer than %zu "
					    "bytes",
					    name, maxlen);
					return -1;
				}
				if (c->ntargets >= max) {
					snprintf(why, whylen,
					         "more than %zu %s", max, name);
					return -1;
				}
				t = realloc(c->targets,
				            (c->ntargets + 1) * sizeof(*t));
				if (t == NULL)
					return -1;
				c->targets = t;
				t[c->ntargets] = strndup(p, n);
				if (t[c->ntargets] == NULL)
					return -1;
				c->ntargets++;
			}
			if (e == NULL)
				break;
			p = e + 1;
		}
	}
	if (c->ntargets == 0) {
		snprintf(why, whylen, "%s missing or empty", name);
		return -1;
	}
	return 0;
}

/* Bearer token check for push routes; constant time. */
static int
authorized(struct api *a, struct evhttp_request *req)
{
	const char *tok = a->l->conf->push_token, *h;
	size_t n = strlen(tok);

	if (n == 0)
		return 1;
	h = evhttp_find_header(evhttp_request_get_input_headers(req),
	                       "Authorization");
	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	return strlen(h) == n && CRYPTO_memcmp(h, tok, n) == 0;
}

/* ---- publishing ---------------------------------------------------- */

static void
push_done(struct req_ctx *c)
{
	json_t *data;

	/* Whether a retry is safe matters more than what else failed. */
	if (c->unknown > 0) {
		ctx_reply(c, CODE_TIMEOUT,
		          "publish timed out: it may have been delivered",
		          NULL);
		return;
	}
	if (c->failed > 0) {
		ctx_reply(c, CODE_SERVER_ERROR, "publish failed", NULL);
		return;
	}
	data = json_pack("{s:i, s:I}", "published", (int)c->published, "keys",
	                 (json_int_t)c->matched);
	ctx_reply(c, CODE_OK, "", data);
}

static void
on_published(const redisReply *r, void *arg)
{
	struct req_ctx *c = arg;
	struct logic *l = c->a->l;

	if (r == NULL && store_reply_unknown(l->store)) {
		c->unknown++;
		l->metrics.publish_unknown++;
	} else if (r == NULL || r->type != REDIS_REPLY_INTEGER) {
		c->failed++;
		l->metrics.publish_failures++;
	} else {
		c->published++;
		/* Accepted, and nobody anywhere was listening. */
		if (r->integer == 0 && c->route <= ROUTE_PUSH_ALL)
			l->metrics.publish_no_subscriber[c->route]++;
	}
	if (--c->outstanding == 0)
		push_done(c);
}

/*
 * Encode e and PUBLISH it on channel. 0 sent (outstanding counted), -1
 * failed (counted as a publish failure).
 */
static int
publish(struct req_ctx *c, struct envelope *e, const char *name)
{
	struct logic *l = c->a->l;
	char channel[600];
	msgpack_sbuffer sb;
	size_t clen = 0;
	int r = -1;

	e->id = logic_next_id(l);
	e->ts = logic_now_ms();
	e->msg = (const uint8_t *)evbuffer_pullup(c->body, -1);
	e->msg_len = evbuffer_get_length(c->body);
	e->src = l->src;
	e->seq = 0;
	msgpack_sbuffer_init(&sb);
	if (envelope_channel(channel, sizeof(channel), l->conf->prefix, e->type,
	                     name) == 0) {
		clen = strlen(channel);
		if (l->chanseq != NULL)
			e->seq = chanseq_next(l->chanseq, channel, clen, e->ts);
		if (envelope_encode(&sb, e) == 0 &&
		    session_publish(l, channel, sb.data, sb.size, on_published,
		                    c) == 0) {
			r = 0;
		} else if (l->chanseq != NULL) {
			/* Never handed to Redis: not a hole to count. */
			chanseq_undo(l->chanseq, channel, clen, e->seq);
		}
	}
	if (r == 0) {
		c->outstanding++;
		l->metrics.published[e->type]++;
	} else {
		c->failed++;
		l->metrics.publish_failures++;
	}
	msgpack_sbuffer_destroy(&sb);
	return r;
}

struct pair {
	const char *server;
	size_t server_len;
	const char *key;
	size_t key_len;
};

static int
pair_cmp(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	size_t n =
	    x->server_len < y->server_len ? x->server_len : y->server_len;
	int r = memcmp(x->server, y->server, n);

	if (r != 0)
		return r;
	return x->server_len < y->server_len   ? -1
	       : x->server_len > y->server_len ? 1
	                                       : 0;
}

/*
 * Group (server, key) pairs by server and publish one PUSH envelope per
 * server. Replies to the request when nothing was sent.
 */
static void
publish_pairs(struct req_ctx *c, struct pair *p, size_t n, size_t unknown)
{
	const char **keys = NULL;
	size_t *lens = NULL;
	char server[ENVELOPE_NAME_MAX + 1];

	c->matched = n;
	c->a->l->metrics.push_keys_unknown += unknown;
	if (n > 0) {
		keys = calloc(n, sizeof(*keys));
		lens = calloc(n, sizeof(*lens));
	}
	if (n > 0 && (keys == NULL || lens == NULL)) {
		c->failed++;
		n = 0;
	}
	qsort(p, n, sizeof(*p), pair_cmp);
	/* One reference held across the loop so replies cannot finish c. */
	c->outstanding++;
	for (size_t i = 0; i < n;) {
		struct envelope e = {.type = ENVELOPE_PUSH, .operation = c->op};
		size_t j = i, k = 0;

		while (j < n && pair_cmp(&p[i], &p[j]) == 0) {
			keys[k] = p[j].key;
			lens[k++] = p[j].key_len;
			j++;
		}
		if (p[i].server_len == 0 ||
		    p[i].server_len > ENVELOPE_NAME_MAX) {
			c->failed++;
		} else {
			memcpy(server, p[i].server, p[i].server_len);
			server[p[i].server_len] = '\0';
			e.server = server;
			e.server_len = p[i].server_len;
			e.key_list = keys;
			e.key_lens = lens;
			e.nkeys = k;
			publish(c, &e, server);
		}
		i = j;
	}
	free(keys);
	free(lens);
	if (--c->outstanding == 0)
		push_done(c);
}

static int
redis_failed(struct req_ctx *c, const redisReply *r, int want_type)
{
	if (r == NULL || r->type != want_type) {
		if (r != NULL && r->type == REDIS_REPLY_ERROR)
			c->a->l->metrics.redis_errors++;
		ctx_reply(c, CODE_SERVER_ERROR,
		          r == NULL ? "redis unavailable" : "redis error",
		          NULL);
		return 1;
	}
	return 0;
}

static void
on_keys_servers(const redisReply *r, void *arg)
{
	struct req_ctx *c = arg;
	struct pair *p;
	size_t n = 0;

	if (redis_failed(c, r, REDIS_REPLY_ARRAY))
		return;
	if (r->elements != c->ntargets) {
		ctx_reply(c, CODE_SERVER_ERROR, "redis error", NULL);
		return;
	}
	p = calloc(c->ntargets, sizeof(*p));
	if (p == NULL) {
		ctx_reply(c, CODE_SERVER_ERROR, "out of memory", NULL);
		return;
	}
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i];

		if (e->type != REDIS_REPLY_STRING)
			continue;
		p[n].server = e->str;
		p[n].server_len = e->len;
		p[n].key = c->targets[i];
		p[n].key_len = strlen(c->targets[i]);
		n++;
	}
	publish_pairs(c, p, n, c->ntargets - n);
	free(p);
}

static void
on_mids_keys(const redisReply *r, void *arg)
{
	struct req_ctx *c = arg;
	struct pair *p;
	unsigned char *found;
	size_t n = 0, unknown = 0;

	if (redis_failed(c, r, REDIS_REPLY_ARRAY))
		return;
	p = calloc(r->elements / 3 + 1, sizeof(*p));
	found = calloc(c->nmids, 1);
	if (p == NULL || found == NULL) {
		free(p);
		free(found);
		ctx_reply(c, CODE_SERVER_ERROR, "out of memory", NULL);
		return;
	}
	/* Triples: index of the mid (1-based), key, server. */
	for (size_t i = 0; i + 2 < r->elements; i += 3) {
		const redisReply *x = r->element[i], *k = r->element[i + 1],
		                 *s = r->element[i + 2];

		if (x->type != REDIS_REPLY_INTEGER || x->integer < 1 ||
		    (size_t)x->integer > c->nmids ||
		    k->type != REDIS_REPLY_STRING ||
		    s->type != REDIS_REPLY_STRING || k->len == 0 ||
		    k->len > ENVELOPE_NAME_MAX)
			continue;
		found[x->integer - 1] = 1;
		p[n].server = s->str;
		p[n].server_len = s->len;
		p[n].key = k->str;
		p[n].key_len = k->len;
		n++;
	}
	for (size_t i = 0; i < c->nmids; i++)
		unknown += !found[i];
	free(found);
	publish_pairs(c, p, n, unknown);
	free(p);
}

/* ---- route handlers ------------------------------------------------ */

static void
push_keys(struct req_ctx *c)
{
	char why[128];

	if (get_i32(c, "operation", 1, &c->op) == -1) {
		ctx_reply(c, CODE_BAD_REQUEST, "operation missing or invalid",
		          NULL);
		return;
	}
	if (collect(c, "keys", 1, AUTH_KEY_MAX - 1,
	            (size_t)c->a->l->conf->max_targets, why,
	            sizeof(why)) == -1) {
		ctx_reply(c, CODE_BAD_REQUEST, why, NULL);
		return;
	}
	c->a->l->metrics.pushes[ENVELOPE_PUSH]++;
	if (session_servers_by_keys(c->a->l, (const char *const *)c->targets,
	                            NULL, c->ntargets, on_keys_servers,
	                            c) == -1)
		ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable", NULL);
}

static void
push_mids(struct req_ctx *c)
{
	char why[128];

	if (get_i32(c, "operation", 1, &c->op) == -1) {
		ctx_reply(c, CODE_BAD_REQUEST, "operation missing or invalid",
		          NULL);
		return;
	}
	if (collect(c, "mids", 1, 20, (size_t)c->a->l->conf->max_targets, why,
	            sizeof(why)) == -1) {
		ctx_reply(c, CODE_BAD_REQUEST, why, NULL);
		return;
	}
	c->mids = calloc(c->ntargets, sizeof(*c->mids));
	if (c->mids == NULL) {
		ctx_reply(c, CODE_SERVER_ERROR, "out of memory", NULL);
		return;
	}
	for (size_t i = 0; i < c->ntargets; i++) {
		if (parse_i64(c->targets[i], INT64_MIN, INT64_MAX,
		              &c->mids[i]) == -1) {
			ctx_reply(c, CODE_BAD_REQUEST, "mids: not an integer",
			          NULL);
			return;
		}
	}
	c->nmids = c->ntargets;
	c->a->l->metrics.pushes[ENVELOPE_PUSH]++;
	if (session_keys_by_mids(c->a->l, c->mids, c->nmids, on_mids_keys, c) ==
	    -1)
		ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable", NULL);
}

/* "type://room" as goim builds room keys; the room alone without type. */
static int
room_key(char *out, size_t outlen, const char *type, const char *room)
{
	int n;

	if (type != NULL && *type != '\0')
		n = snprintf(out, outlen, "%s://%s", type, room);
	else
		n = snprintf(out, outlen, "%s", room);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

static void
push_room(struct req_ctx *c)
{
	const char *room = evhttp_find_header(&c->q, "room");
	char key[AUTH_ROOM_MAX];
	struct envelope e = {.type = ENVELOPE_ROOM};

	if (get_i32(c, "operation", 1, &c->op) == -1) {
		ctx_reply(c, CODE_BAD_REQUEST, "operation missing or invalid",
		          NULL);
		return;
	}
	if (room == NULL || *room == '\0') {
		ctx_reply(c, CODE_BAD_REQUEST, "room missing", NULL);
		return;
	}
	if (room_key(key, sizeof(key), evhttp_find_header(&c->q, "type"),
	             room) == -1) {
		ctx_reply(c, CODE_BAD_REQUEST, "room too long", NULL);
		return;
	}
	c->a->l->metrics.pushes[ENVELOPE_ROOM]++;
	if (!store_connected(c->a->l->store)) {
		ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable", NULL);
		return;
	}
	e.operation = c->op;
	e.room = key;
	e.room_len = strlen(key);
	c->matched = 0;
	c->outstanding++;
	publish(c, &e, key);
	if (--c->outstanding == 0)
		push_done(c);
}

static void
push_all(struct req_ctx *c)
{
	struct envelope e = {.type = ENVELOPE_BROADCAST};

	if (get_i32(c, "operation", 1, &c->op) == -1 ||
	    get_i32(c, "speed", 0, &c->speed) == -1 || c->speed < 0) {
		ctx_reply(c, CODE_BAD_REQUEST,
		          "operation or speed missing or invalid", NULL);
		return;
	}
	c->a->l->metrics.pushes[ENVELOPE_BROADCAST]++;
	if (!store_connected(c->a->l->store)) {
		ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable", NULL);
		return;
	}
	e.operation = c->op;
	e.speed = c->speed;
	c->outstanding++;
	publish(c, &e, NULL);
	if (--c->outstanding == 0)
		push_done(c);
}

struct top {
	const char *room;
	long long count;
};

static int
top_cmp(const void *a, const void *b)
{
	const struct top *x = a, *y = b;

	if (x->count != y->count)
		return x->count > y->count ? -1 : 1;
	return strcmp(x->room, y->room);
}

static void
on_online(const struct online_totals *tot, void *arg)
{
	struct req_ctx *c = arg;
	char prefix[AUTH_ROOM_MAX + 8], key[AUTH_ROOM_MAX + 8];
	size_t plen;
	json_t *data;

	if (tot == NULL) {
		ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable", NULL);
		return;
	}
	snprintf(prefix, sizeof(prefix), "%s://", c->type);
	plen = strlen(prefix);
	if (c->route == ROUTE_ONLINE_ROOM) {
		data = json_object();
		for (size_t i = 0; i < c->ntargets; i++) {
			room_key(key, sizeof(key), c->type, c->targets[i]);
			json_object_set_new(
			    data, c->targets[i],
			    json_integer(online_count(tot, key)));
		}
	} else {
		struct top *t = calloc(tot->n + 1, sizeof(*t));
		size_t n = 0;

		if (t == NULL) {
			ctx_reply(c, CODE_SERVER_ERROR, "out of memory", NULL);
			return;
		}
		for (size_t j = 0; j < tot->n; j++) {
			if (strncmp(tot->rooms[j].room, prefix, plen) != 0)
				continue;
			t[n].room = tot->rooms[j].room + plen;
			t[n++].count = tot->rooms[j].count;
		}
		qsort(t, n, sizeof(*t), top_cmp);
		data = json_array();
		for (size_t j = 0; j < n && j < (size_t)c->limit; j++)
			json_array_append_new(
			    data, json_pack("{s:s, s:I}", "room_id", t[j].room,
			                    "count", (json_int_t)t[j].count));
		free(t);
	}
	ctx_reply(c, CODE_OK, "", data);
}

static void
online_top(struct req_ctx *c)
{
	const char *lim = evhttp_find_header(&c->q, "limit");
	int64_t n;

	c->type = evhttp_find_header(&c->q, "type");
	if (c->type == NULL || *c->type == '\0' ||
	    strlen(c->type) >= AUTH_ROOM_MAX ||
	    parse_i64(lim, 1, 100000, &n) == -1) {
		ctx_reply(c, CODE_BAD_REQUEST,
		          "type or limit missing or invalid", NULL);
		return;
	}
	c->limit = (long)n;
	if (online_get(c->a->l->online, on_online, c) == -1)
		ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable", NULL);
}

static void
online_room(struct req_ctx *c)
{
	char why[128];

	c->type = evhttp_find_header(&c->q, "type");
	if (c->type == NULL || *c->type == '\0' ||
	    strlen(c->type) >= AUTH_ROOM_MAX) {
		ctx_reply(c, CODE_BAD_REQUEST, "type missing or invalid", NULL);
		return;
	}
	if (collect(c, "rooms", 0, AUTH_ROOM_MAX - 1,
	            (size_t)c->a->l->conf->max_targets, why,
	            sizeof(why)) == -1) {
		ctx_reply(c, CODE_BAD_REQUEST, why, NULL);
		return;
	}
	if (online_get(c->a->l->online, on_online, c) == -1)
		ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable", NULL);
}

/* The live nodes' info objects, parsed; NULL entries skipped. */
static json_t *
nodes_from(const redisReply *r)
{
	json_t *arr = json_array();

	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *v = r->element[i + 1];
		json_t *o;

		if (v->type != REDIS_REPLY_STRING)
			continue;
		o = json_loadb(v->str, v->len, 0, NULL);
		if (json_is_object(o))
			json_array_append_new(arr, o);
		else
			json_decref(o);
	}
	return arr;
}

static void
on_total(const redisReply *r, void *arg)
{
	struct req_ctx *c = arg;
	json_int_t ips = 0, conns = 0;
	json_t *nodes, *n;
	size_t i;

	if (redis_failed(c, r, REDIS_REPLY_ARRAY))
		return;
	nodes = nodes_from(r);
	json_array_foreach(nodes, i, n)
	{
		json_t *cc = json_object_get(n, "conn_count");
		json_t *ic = json_object_get(n, "ip_count");

		if (json_is_integer(cc))
			conns += json_integer_value(cc);
		ips += json_is_integer(ic)   ? json_integer_value(ic)
		       : json_is_integer(cc) ? json_integer_value(cc)
		                             : 0;
	}
	json_decref(nodes);
	ctx_reply(
	    c, CODE_OK, "",
	    json_pack("{s:I, s:I}", "ip_count", ips, "conn_count", conns));
}

static void
on_instances(const redisReply *r, void *arg)
{
	struct req_ctx *c = arg;

	if (redis_failed(c, r, REDIS_REPLY_ARRAY))
		return;
	ctx_reply(c, CODE_OK, "", nodes_from(r));
}

static int
conn_cmp(const void *a, const void *b)
{
	json_t *const *x = a, *const *y = b;
	json_int_t cx = json_integer_value(json_object_get(*x, "conn_count"));
	json_int_t cy = json_integer_value(json_object_get(*y, "conn_count"));

	return cx < cy ? -1 : cx > cy ? 1 : 0;
}

/*
 * goim's NodesReply. Addresses of live comets, least loaded first; the
 * configured domain when none is known (or Redis is down).
 */
json_t *
api_nodes_reply(struct logic *l, const redisReply *r)
{
	const struct logic_conf *cf = l->conf;
	json_t *list = json_array(), *nodes = NULL, *n, *addr;
	json_t **v = NULL;
	size_t i, j, cnt = 0;

	if (r != NULL && r->type == REDIS_REPLY_ARRAY) {
		nodes = nodes_from(r);
		cnt = json_array_size(nodes);
		v = calloc(cnt + 1, sizeof(*v));
	}
	if (v != NULL) {
		json_array_foreach(nodes, i, n) v[i] = n;
		qsort(v, cnt, sizeof(*v), conn_cmp);
		for (i = 0; i < cnt; i++) {
			json_array_foreach(json_object_get(v[i], "addrs"), j,
			                   addr)
			{
				int dup = 0;
				size_t k;
				json_t *o;

				if (!json_is_string(addr))
					continue;
				json_array_foreach(list, k, o) dup |=
				    json_equal(o, addr);
				if (!dup)
					json_array_append(list, addr);
			}
		}
	}
	free(v);
	json_decref(nodes);
	if (json_array_size(list) == 0)
		json_array_append_new(list, json_string(cf->node_domain));
	return json_pack(
	    "{s:s, s:i, s:i, s:i, s:I, s:i, s:o, s:{s:I, s:I, s:f, s:f}}",
	    "domain", cf->node_domain, "tcp_port", cf->node_tcp_port, "ws_port",
	    cf->node_ws_port, "wss_port", cf->node_wss_port, "heartbeat",
	    (json_int_t)(cf->node_heartbeat_ms / 1000), "heartbeat_max",
	    cf->node_heartbeat_max, "nodes", list, "backoff", "max_delay",
	    (json_int_t)cf->backoff_max_delay, "base_delay",
	    (json_int_t)cf->backoff_base_delay, "factor", cf->backoff_factor,
	    "jitter", cf->backoff_jitter);
}

static void
on_weighted(const redisReply *r, void *arg)
{
	struct req_ctx *c = arg;

	ctx_reply(c, CODE_OK, "", api_nodes_reply(c->a->l, r));
}

static void
metrics(struct api *a, struct evhttp_request *req)
{
	static const char *const types[] = {"push", "room", "broadcast"};
	static const char *const methods[METHOD__COUNT] = {
	    "Connect", "Disconnect", "Heartbeat", "RenewOnline",
	    "Receive", "Nodes",      "Ping",      "unknown"};
	const struct logic_metrics *m = &a->l->metrics;
	struct evbuffer *b = evbuffer_new();

	a->l->metrics.http[ROUTE_METRICS][CODE_OK]++;
	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	evbuffer_add_printf(b, "# TYPE imgate_logic_http_requests_total "
	                       "counter\n");
	for (int r = 0; r < ROUTE__COUNT; r++)
		for (int c = 0; c < CODE__COUNT; c++)
			if (m->http[r][c] > 0)
				evbuffer_add_printf(
				    b,
				    "imgate_logic_http_requests_total{route="
				    "\"%s\",code=\"%d\"} %" PRIu64 "\n",
				    route_names[r], code_values[c],
				    m->http[r][c]);
	evbuffer_add_printf(b, "# TYPE imgate_logic_pushes_total counter\n");
	for (int t = 0; t < 3; t++)
		evbuffer_add_printf(b,
		                    "imgate_logic_pushes_total{type=\"%s\"} "
		                    "%" PRIu64 "\n",
		                    types[t], m->pushes[t]);
	evbuffer_add_printf(b, "# TYPE imgate_logic_envelopes_published_total "
	                       "counter\n");
	for (int t = 0; t < 3; t++)
		evbuffer_add_printf(b,
		                    "imgate_logic_envelopes_published_total{"
		                    "type=\"%s\"} %" PRIu64 "\n",
		                    types[t], m->published[t]);
	evbuffer_add_printf(b,
	                    "# TYPE imgate_logic_publish_no_subscriber_total "
	                    "counter\n");
	for (int r = 0; r <= ROUTE_PUSH_ALL; r++)
		evbuffer_add_printf(b,
		                    "imgate_logic_publish_no_subscriber_total{"
		                    "type=\"%s\"} %" PRIu64 "\n",
		                    route_names[r] + sizeof("/goim/push/") - 1,
		                    m->publish_no_subscriber[r]);
	evbuffer_add_printf(b, "# TYPE imgate_logic_rpc_calls_total counter\n");
	for (int i = 0; i < METHOD__COUNT; i++)
		evbuffer_add_printf(
		    b,
		    "imgate_logic_rpc_calls_total{method=\"%s\"}"
		    " %" PRIu64 "\n",
		    methods[i], m->rpc_calls[i]);
	evbuffer_add_printf(b,
	                    "# TYPE imgate_logic_rpc_errors_total counter\n");
	for (int i = 0; i < METHOD__COUNT; i++)
		evbuffer_add_printf(
		    b,
		    "imgate_logic_rpc_errors_total{method=\"%s\""
		    "} %" PRIu64 "\n",
		    methods[i], m->rpc_errors[i]);
#define ONE(name, v)                                                 \
	evbuffer_add_printf(b,                                       \
	                    "# TYPE imgate_logic_" name " counter\n" \
	                    "imgate_logic_" name " %" PRIu64 "\n",   \
	                    (v))
	ONE("publish_failures_total", m->publish_failures);
	ONE("publish_unknown_total", m->publish_unknown);
	ONE("push_targets_unknown_total", m->push_keys_unknown);
	ONE("auth_failures_total", m->auth_failures);
	ONE("redis_reconnects_total", m->redis_reconnects);
	ONE("redis_errors_total", m->redis_errors);
	ONE("webhook_ok_total", m->webhook_ok);
	ONE("webhook_failures_total", m->webhook_failures);
	ONE("webhook_dropped_total", m->webhook_dropped);
#undef ONE
	evbuffer_add_printf(b,
	                    "# TYPE imgate_logic_redis_up gauge\n"
	                    "imgate_logic_redis_up %d\n",
	                    store_connected(a->l->store));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "text/plain; version=0.0.4");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

struct health {
	struct api *a;
	struct evhttp_request *req;
};

static void
health_reply(struct api *a, struct evhttp_request *req, int ok)
{
	struct evbuffer *b = evbuffer_new();

	a->l->metrics.http[ROUTE_HEALTHZ][ok ? CODE_OK : CODE_SERVER_ERROR]++;
	if (b != NULL)
		evbuffer_add_printf(b, ok ? "ok\n" : "redis unavailable\n");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "text/plain");
	evhttp_send_reply(req, ok ? 200 : 503, ok ? "OK" : "Unavailable", b);
	if (b != NULL)
		evbuffer_free(b);
}

static void
on_ping(const redisReply *r, void *arg)
{
	struct health *h = arg;

	health_reply(h->a, h->req, r != NULL && r->type == REDIS_REPLY_STATUS);
	free(h);
}

static void
healthz(struct api *a, struct evhttp_request *req)
{
	const char *argv[] = {"PING"};
	struct health *h = malloc(sizeof(*h));

	if (h == NULL) {
		health_reply(a, req, 0);
		return;
	}
	h->a = a;
	h->req = req;
	if (store_command(a->l->store, on_ping, h, 1, argv, NULL) == -1) {
		free(h);
		health_reply(a, req, 0);
	}
}

/* ---- CORS and the demo's static files ------------------------------ */

/*
 * With cors_origin set, the goim routes answer pages of that origin: the
 * header on every reply, and preflights (OPTIONS) answered here. 1 when
 * the request was answered.
 */
static int
cors(struct api *a, struct evhttp_request *req, enum evhttp_cmd_type cmd,
     enum api_route route)
{
	const char *origin = a->l->conf->cors_origin;
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	if (*origin == '\0')
		return 0;
	evhttp_add_header(h, "Access-Control-Allow-Origin", origin);
	if (strcmp(origin, "*") != 0)
		evhttp_add_header(h, "Vary", "Origin");
	if (cmd != EVHTTP_REQ_OPTIONS)
		return 0;
	evhttp_add_header(h, "Access-Control-Allow-Methods",
	                  route <= ROUTE_PUSH_ALL ? "POST, OPTIONS"
	                                          : "GET, HEAD, OPTIONS");
	evhttp_add_header(h, "Access-Control-Allow-Headers",
	                  "Authorization, Content-Type");
	evhttp_add_header(h, "Access-Control-Max-Age", "600");
	a->l->metrics.http[route][CODE_OK]++;
	evhttp_send_reply(req, 204, "No Content", NULL);
	return 1;
}

static void
demo_reply(struct api *a, struct evhttp_request *req, int status,
           const char *text)
{
	struct evbuffer *b = evbuffer_new();
	enum api_code code = status < 400    ? CODE_OK
	                     : status == 404 ? CODE_NOT_FOUND
	                     : status < 500  ? CODE_BAD_REQUEST
	                                     : CODE_SERVER_ERROR;

	a->l->metrics.http[ROUTE_DEMO][code]++;
	if (b != NULL)
		evbuffer_add_printf(b, "%s\n", text);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "text/plain; charset=utf-8");
	evhttp_send_reply(req, status, text, b);
	if (b != NULL)
		evbuffer_free(b);
}

static const char *
demo_type(const char *name)
{
	static const struct {
		const char *ext, *type;
	} types[] = {
	    {".html", "text/html; charset=utf-8"},
	    /* Browsers run an ES module only with a JavaScript type. */
	    {".js", "text/javascript; charset=utf-8"},
	    {".mjs", "text/javascript; charset=utf-8"},
	    {".css", "text/css; charset=utf-8"},
	    {".json", "application/json"},
	    {".map", "application/json"},
	    {".txt", "text/plain; charset=utf-8"},
	    {".svg", "image/svg+xml"},
	    {".png", "image/png"},
	    {".jpg", "image/jpeg"},
	    {".ico", "image/x-icon"},
	    {".woff2", "font/woff2"},
	};
	const char *dot = strrchr(name, '.');

	if (dot != NULL && strchr(dot, '/') == NULL)
		for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
			if (strcasecmp(dot, types[i].ext) == 0)
				return types[i].type;
	return "application/octet-stream";
}

/* What the page cannot know by itself: where the comet listens. */
static void
demo_config(struct api *a, struct evhttp_request *req)
{
	struct evbuffer *b = evbuffer_new();
	json_t *o = json_pack("{s:s}", "ws_url", a->l->conf->demo_ws_url);
	char *s = o != NULL ? json_dumps(o, JSON_COMPACT) : NULL;

	json_decref(o);
	if (b == NULL || s == NULL) {
		free(s);
		if (b != NULL)
			evbuffer_free(b);
		demo_reply(a, req, 500, "out of memory");
		return;
	}
	evbuffer_add_printf(b, "%s\n", s);
	free(s);
	a->l->metrics.http[ROUTE_DEMO][CODE_OK]++;
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "application/json");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Cache-Control", "no-cache");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/*
 * A request path below /demo/, percent-decoded, checked segment by
 * segment: NULL (with *status) for "." and ".." segments, empty segments,
 * NUL bytes and dot files. A trailing "/" names the directory's
 * index.html. The caller frees the result.
 */
static char *
demo_relpath(const char *raw, int *status)
{
	size_t n, len;
	char *dec, *out, *seg;

	*status = 400;
	dec = evhttp_uridecode(raw, 0, &len);
	if (dec == NULL) {
		*status = 500;
		return NULL;
	}
	if (strlen(dec) != len) {
		free(dec);
		return NULL;
	}
	n = len + sizeof("index.html");
	out = malloc(n);
	if (out == NULL) {
		free(dec);
		*status = 500;
		return NULL;
	}
	snprintf(out, n, "%s%s", dec,
	         len == 0 || dec[len - 1] == '/' ? "index.html" : "");
	free(dec);
	for (seg = out;; seg++) {
		size_t sl = strcspn(seg, "/");

		if (sl == 0 || (sl == 1 && seg[0] == '.') ||
		    (sl == 2 && seg[0] == '.' && seg[1] == '.')) {
			free(out);
			return NULL;
		}
		/* Dot files (.git, .htpasswd) are never part of a site. */
		if (seg[0] == '.') {
			free(out);
			*status = 404;
			return NULL;
		}
		seg += sl;
		if (*seg == '\0')
			break;
	}
	return out;
}

/*
 * GET /demo/... from [demo] dir. Only regular files whose real path lies
 * inside the directory's real path are served, so a symlink may point
 * within the directory but not out of it; anything refused looks like a
 * missing file. The directory is the operator's: what a client controls
 * is the request path, and realpath() resolves every link in it.
 */
static void
demo(struct api *a, struct evhttp_request *req, enum evhttp_cmd_type cmd,
     const char *path)
{
	const struct logic_conf *cf = a->l->conf;
	char root[PATH_MAX], file[PATH_MAX], real[PATH_MAX], clen[32];
	struct evbuffer *b;
	struct stat st;
	size_t rootlen;
	off_t left;
	char *rel;
	int fd, status, n, r;

	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Allow", "GET, HEAD");
		demo_reply(a, req, 405, "Method Not Allowed");
		return;
	}
	if (path[5] == '\0') {
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Location", "/demo/");
		demo_reply(a, req, 301, "Moved Permanently");
		return;
	}
	rel = demo_relpath(path + 6, &status);
	if (rel == NULL) {
		demo_reply(a, req, status,
		           status == 400   ? "Bad Request"
		           : status == 404 ? "Not Found"
		                           : "Internal Server Error");
		return;
	}
	if (strcmp(rel, "config.json") == 0) {
		free(rel);
		demo_config(a, req);
		return;
	}
	if (realpath(cf->demo_dir, root) == NULL) {
		log_warn("demo: dir %s: %s", cf->demo_dir, strerror(errno));
		free(rel);
		demo_reply(a, req, 404, "Not Found");
		return;
	}
	n = snprintf(file, sizeof(file), "%s/%s", root, rel);
	free(rel);
	rootlen = strlen(root);
	if (n < 0 || (size_t)n >= sizeof(file) ||
	    realpath(file, real) == NULL || strncmp(real, root, rootlen) != 0 ||
	    (real[rootlen] != '/' && strcmp(root, "/") != 0)) {
		demo_reply(a, req, 404, "Not Found");
		return;
	}
	/* O_NONBLOCK: a FIFO must not hang the loop before fstat says so. */
	fd = open(real, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1 || fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		if (fd != -1)
			close(fd);
		demo_reply(a, req, 404, "Not Found");
		return;
	}
	if ((uintmax_t)st.st_size > (uintmax_t)cf->demo_max_file) {
		log_warn("demo: %s is larger than [demo] max_file (%zu)", real,
		         cf->demo_max_file);
		close(fd);
		demo_reply(a, req, 500, "Internal Server Error");
		return;
	}
	/*
	 * Read, not evbuffer_add_file(): files are small (max_file), and
	 * keeping the descriptor ours keeps the error paths plain. evhttp
	 * sends neither body nor length for HEAD: the length is ours to say.
	 */
	b = evbuffer_new();
	left = cmd == EVHTTP_REQ_HEAD ? 0 : st.st_size;
	if (cmd == EVHTTP_REQ_HEAD) {
		snprintf(clen, sizeof(clen), "%jd", (intmax_t)st.st_size);
		evhttp_add_header(evhttp_request_get_output_headers(req),
		                  "Content-Length", clen);
	}
	for (; b != NULL && left > 0; left -= r) {
		r = evbuffer_read(b, fd, left > 65536 ? 65536 : (int)left);
		if (r <= 0)
			break;
	}
	close(fd);
	if (b == NULL || left != 0) {
		if (b != NULL)
			evbuffer_free(b);
		demo_reply(a, req, 500, "Internal Server Error");
		return;
	}
	a->l->metrics.http[ROUTE_DEMO][CODE_OK]++;
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", demo_type(real));
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "X-Content-Type-Options", "nosniff");
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Cache-Control", "no-cache");
	evhttp_send_reply(req, 200, "OK", b);
	evbuffer_free(b);
}

/* ---- dispatch ------------------------------------------------------ */

static void
dispatch(struct evhttp_request *req, void *arg)
{
	struct api *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	const char *path = evhttp_uri_get_path(uri), *query;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct req_ctx *c;
	int route = ROUTE_OTHER, is_push;

	if (path == NULL)
		path = "/";
	if (strncmp(path, "/demo", 5) == 0 &&
	    (path[5] == '\0' || path[5] == '/') &&
	    a->l->conf->demo_dir[0] != '\0') {
		demo(a, req, cmd, path);
		return;
	}
	for (int i = 0; i < ROUTE_DEMO; i++)
		if (strcmp(path, route_names[i]) == 0)
			route = i;
	if (route < ROUTE_METRICS && cors(a, req, cmd, route))
		return;
	if (route == ROUTE_METRICS) {
		metrics(a, req);
		return;
	}
	if (route == ROUTE_HEALTHZ) {
		healthz(a, req);
		return;
	}
	if (route == ROUTE_OTHER) {
		send_json(a, req, ROUTE_OTHER, CODE_NOT_FOUND, "not found",
		          NULL);
		return;
	}
	is_push = route <= ROUTE_PUSH_ALL;
	if (is_push ? cmd != EVHTTP_REQ_POST
	            : (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD)) {
		send_json(a, req, route, CODE_BAD_REQUEST,
		          is_push ? "use POST" : "use GET", NULL);
		return;
	}
	if (is_push && !authorized(a, req)) {
		send_json(a, req, route, CODE_UNAUTHORIZED, "unauthorized",
		          NULL);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		send_json(a, req, route, CODE_SERVER_ERROR, "out of memory",
		          NULL);
		return;
	}
	TAILQ_INIT(&c->q);
	c->a = a;
	c->req = req;
	c->route = route;
	query = evhttp_uri_get_query(uri);
	/* Decoded, %00 would cut a key or room short: "a%00b" names "a". */
	if (query != NULL && (strstr(query, "%00") != NULL ||
	                      evhttp_parse_query_str(query, &c->q) == -1)) {
		ctx_reply(c, CODE_BAD_REQUEST, "malformed query", NULL);
		return;
	}
	if (is_push) {
		/* Our own copy: the request may be gone when Redis answers. */
		c->body = evbuffer_new();
		if (c->body == NULL ||
		    evbuffer_add_buffer(
		        c->body, evhttp_request_get_input_buffer(req)) == -1) {
			ctx_reply(c, CODE_SERVER_ERROR, "out of memory", NULL);
			return;
		}
	}
	switch (route) {
	case ROUTE_PUSH_KEYS:
		push_keys(c);
		break;
	case ROUTE_PUSH_MIDS:
		push_mids(c);
		break;
	case ROUTE_PUSH_ROOM:
		push_room(c);
		break;
	case ROUTE_PUSH_ALL:
		push_all(c);
		break;
	case ROUTE_ONLINE_TOP:
		online_top(c);
		break;
	case ROUTE_ONLINE_ROOM:
		online_room(c);
		break;
	case ROUTE_ONLINE_TOTAL:
		if (session_nodes(a->l, on_total, c) == -1)
			ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable",
			          NULL);
		break;
	case ROUTE_NODES_WEIGHTED:
		if (session_nodes(a->l, on_weighted, c) == -1)
			on_weighted(NULL, c);
		break;
	case ROUTE_NODES_INSTANCES:
		if (session_nodes(a->l, on_instances, c) == -1)
			ctx_reply(c, CODE_SERVER_ERROR, "redis unavailable",
			          NULL);
		break;
	default:
		ctx_reply(c, CODE_NOT_FOUND, "not found", NULL);
	}
}

void
api_reload(struct api *a)
{
	const struct logic_conf *cf = a->l->conf;

	evhttp_set_max_body_size(a->http, (ev_ssize_t)cf->http_max_body);
	evhttp_set_max_headers_size(a->http, 16384);
	evhttp_set_timeout(a->http, (int)((cf->http_timeout_ms + 999) / 1000));
}

struct api *
api_new(struct logic *l, char *err, size_t errlen)
{
	struct api *a = calloc(1, sizeof(*a));
	const char *host;

	if (a == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->l = l;
	a->http = evhttp_new(l->base);
	if (a->http == NULL) {
		snprintf(err, errlen, "evhttp_new failed");
		free(a);
		return NULL;
	}
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
	                                        EVHTTP_REQ_HEAD |
	                                        EVHTTP_REQ_OPTIONS);
	evhttp_set_gencb(a->http, dispatch, a);
	api_reload(a);
	/* ":port" in the config means every interface. */
	host = l->conf->http_host[0] != '\0' ? l->conf->http_host : "0.0.0.0";
	if (evhttp_bind_socket_with_handle(
	        a->http, host, (ev_uint16_t)l->conf->http_port) == NULL) {
		snprintf(err, errlen, "http listen %s:%d: %s",
		         l->conf->http_host, l->conf->http_port,
		         strerror(errno));
		evhttp_free(a->http);
		free(a);
		return NULL;
	}
	return a;
}

void
api_free(struct api *a)
{
	if (a == NULL)
		return;
	evhttp_free(a->http);
	free(a);
}
