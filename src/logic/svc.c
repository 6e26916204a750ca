#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "common/envelope.h"
#include "logic/api.h"
#include "logic/auth.h"
#include "logic/online.h"
#include "logic/session.h"
#include "logic/svc.h"
#include "logic/webhook.h"
#include "rpc/rpc.h"

#define ROOMS_MAX 100000 /* rooms in one RenewOnline */
#define ADDRS_MAX 64

struct svc {
	struct logic *l;
	struct rpc_server *srv;
};

static const char *const method_names[METHOD__COUNT] = {
    "Connect", "Disconnect", "Heartbeat", "RenewOnline",
    "Receive", "Nodes",      "Ping",      NULL};

/* One call waiting for Redis. */
struct call_ctx {
	struct svc *s;
	struct rpc_call *call;
	enum svc_method method;
	struct auth_result auth; /* Connect */
};

static void
reply_error(struct svc *s, struct rpc_call *call, enum svc_method m,
            const char *error)
{
	s->l->metrics.rpc_errors[m]++;
	log_debug("rpc %s from %s: %s", method_names[m] ? method_names[m] : "?",
	          rpc_call_peer(call), error);
	rpc_call_reply(call, error, NULL, 0);
}

static void
reply_sbuf(struct rpc_call *call, msgpack_sbuffer *sb)
{
	rpc_call_reply(call, NULL, sb->data, sb->size);
	msgpack_sbuffer_destroy(sb);
}

static void
reply_empty(struct rpc_call *call)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 0);
	reply_sbuf(call, &sb);
}

static void
reply_has(struct rpc_call *call, int has)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	rpc_pack_str(&pk, "has");
	if (has)
		msgpack_pack_true(&pk);
	else
		msgpack_pack_false(&pk);
	reply_sbuf(call, &sb);
}

/*
 * 1 when s is 1 to max bytes without NUL or other control characters:
 * keys and rooms end up in C strings and fixed-size shm entries, where a
 * NUL would cut them short and make them name someone else.
 */
static int
name_ok(const char *s, size_t len, size_t max)
{
	if (len == 0 || len > max)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return 0;
	return 1;
}

/* A string field of name_ok() bytes; absent or "" is fine if optional. */
static int
name_field(const msgpack_object *map, const char *key, size_t max, int required,
           const char **s, size_t *len)
{
	*s = "";
	*len = 0;
	if (rpc_map_str(map, key, s, len) == -1)
		return required || rpc_map_get(map, key) != NULL ? -1 : 0;
	if (!required && *len == 0)
		return 0;
	return name_ok(*s, *len, max) ? 0 : -1;
}

/* Redis reply check shared by the callbacks: 0 usable, -1 answered. */
static int
redis_reply_ok(struct call_ctx *c, const redisReply *r, int type)
{
	if (r != NULL && r->type == type)
		return 0;
	if (r != NULL && r->type == REDIS_REPLY_ERROR)
		c->s->l->metrics.redis_errors++;
	reply_error(c->s, c->call, c->method,
	            r == NULL ? "redis unavailable" : "redis error");
	free(c);
	return -1;
}

static struct call_ctx *
ctx_new(struct svc *s, struct rpc_call *call, enum svc_method m)
{
	struct call_ctx *c = calloc(1, sizeof(*c));

	if (c == NULL) {
		reply_error(s, call, m, "out of memory");
		return NULL;
	}
	c->s = s;
	c->call = call;
	c->method = m;
	return c;
}

/* The store refused the command: Redis is down. */
static void
ctx_unsent(struct call_ctx *c)
{
	reply_error(c->s, c->call, c->method, "redis unavailable");
	free(c);
}

/* ---- Connect ----------------------------------------------------------- */

static void
on_connect_stored(const redisReply *r, void *arg)
{
	struct call_ctx *c = arg;
	const struct auth_result *a = &c->auth;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (redis_reply_ok(c, r, REDIS_REPLY_INTEGER) == -1)
		return;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 6);
	rpc_pack_str(&pk, "mid");
	msgpack_pack_int64(&pk, a->mid);
	rpc_pack_str(&pk, "key");
	rpc_pack_str(&pk, a->key);
	rpc_pack_str(&pk, "room_id");
	rpc_pack_str(&pk, a->room_id);
	rpc_pack_str(&pk, "platform");
	rpc_pack_str(&pk, a->platform);
	rpc_pack_str(&pk, "accepts");
	msgpack_pack_array(&pk, a->naccepts);
	for (size_t i = 0; i < a->naccepts; i++)
		msgpack_pack_int32(&pk, a->accepts[i]);
	rpc_pack_str(&pk, "heartbeat");
	msgpack_pack_int64(&pk,
	                   (c->s->l->conf->heartbeat_timeout_ms + 999) / 1000);
	reply_sbuf(c->call, &sb);
	free(c);
}

static void
do_connect(struct svc *s, struct rpc_call *call, const msgpack_object *p)
{
	const struct logic_conf *cf = s->l->conf;
	const char *server, *token;
	size_t slen, tlen;
	struct call_ctx *c;
	char err[160], why[200];

	if (name_field(p, "server", ENVELOPE_NAME_MAX, 1, &server, &slen) ==
	        -1 ||
	    rpc_map_str(p, "token", &token, &tlen) == -1) {
		reply_error(s, call, METHOD_CONNECT,
		            "bad params: server and token required");
		return;
	}
	c = ctx_new(s, call, METHOD_CONNECT);
	if (c == NULL)
		return;
	if (auth_token_parse(token, tlen, cf->jwt_secret, cf->jwt_secret_len,
	                     cf->jwt_leeway_ms / 1000,
	                     (int64_t)(logic_now_ms() / 1000), &c->auth, err,
	                     sizeof(err)) == -1) {
		s->l->metrics.auth_failures++;
		snprintf(why, sizeof(why), "auth: %s", err);
		log_info("Connect from %s refused: %s", rpc_call_peer(call),
		         err);
		reply_error(s, call, METHOD_CONNECT, why);
		free(c);
		return;
	}
	if (session_add(s->l, c->auth.mid, c->auth.key, strlen(c->auth.key),
	                server, slen, on_connect_stored, c) == -1)
		ctx_unsent(c);
}

/* ---- Disconnect, Heartbeat --------------------------------------------- */

static void
on_mapping(const redisReply *r, void *arg)
{
	struct call_ctx *c = arg;

	if (redis_reply_ok(c, r, REDIS_REPLY_INTEGER) == -1)
		return;
	reply_has(c->call, r->integer != 0);
	free(c);
}

static void
do_mapping(struct svc *s, struct rpc_call *call, enum svc_method m,
           const msgpack_object *p)
{
	const char *key, *server;
	size_t klen, slen;
	struct call_ctx *c;
	int64_t mid = 0;
	int r;

	if (name_field(p, "server", ENVELOPE_NAME_MAX, 1, &server, &slen) ==
	        -1 ||
	    name_field(p, "key", AUTH_KEY_MAX - 1, 1, &key, &klen) == -1 ||
	    (rpc_map_get(p, "mid") != NULL &&
	     rpc_map_int(p, "mid", &mid) == -1)) {
		reply_error(s, call, m, "bad params: mid, key, server");
		return;
	}
	c = ctx_new(s, call, m);
	if (c == NULL)
		return;
	if (m == METHOD_DISCONNECT)
		r = session_del(s->l, mid, key, klen, server, slen, on_mapping,
		                c);
	else
		r = session_touch(s->l, mid, key, klen, server, slen,
		                  on_mapping, c);
	if (r == -1)
		ctx_unsent(c);
}

/* ---- RenewOnline ------------------------------------------------------- */

static void
on_totals(const struct online_totals *t, void *arg)
{
	struct call_ctx *c = arg;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (t == NULL) {
		reply_error(c->s, c->call, c->method, "redis unavailable");
		free(c);
		return;
	}
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, 1);
	rpc_pack_str(&pk, "all_room_count");
	msgpack_pack_map(&pk, t->n);
	for (size_t i = 0; i < t->n; i++) {
		rpc_pack_str(&pk, t->rooms[i].room);
		msgpack_pack_int64(&pk, t->rooms[i].count);
	}
	reply_sbuf(c->call, &sb);
	free(c);
}

static void
on_renewed(const redisReply *r, void *arg)
{
	struct call_ctx *c = arg;

	if (redis_reply_ok(c, r, REDIS_REPLY_INTEGER) == -1)
		return;
	if (online_get(c->s->l->online, on_totals, c) == -1)
		ctx_unsent(c);
}

/* The node's entry for the nodes API, as JSON. NULL on bad params. */
static char *
node_info(const msgpack_object *p, const char *server, size_t slen)
{
	static const char *const ints[] = {"tcp_port", "ws_port", "wss_port",
	                                   "conn_count", "ip_count"};
	const msgpack_object *addrs = rpc_map_array(p, "addrs");
	json_t *o = json_object(), *a = json_array();
	char *out = NULL;

	if (o == NULL || a == NULL)
		goto out;
	json_object_set_new(o, "server", json_stringn(server, slen));
	if (rpc_map_get(p, "addrs") != NULL && addrs == NULL)
		goto out;
	for (uint32_t i = 0; addrs != NULL && i < addrs->via.array.size; i++) {
		const msgpack_object *e = &addrs->via.array.ptr[i];

		if (e->type != MSGPACK_OBJECT_STR || e->via.str.size == 0 ||
		    e->via.str.size > 255 || i >= ADDRS_MAX)
			goto out;
		json_array_append_new(
		    a, json_stringn(e->via.str.ptr, e->via.str.size));
	}
	json_object_set(o, "addrs", a);
	for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
		int64_t v = 0;

		if (rpc_map_get(p, ints[i]) != NULL &&
		    (rpc_map_int(p, ints[i], &v) == -1 || v < 0))
			goto out;
		json_object_set_new(o, ints[i], json_integer(v));
	}
	json_object_set_new(o, "updated",
	                    json_integer((json_int_t)logic_now_ms()));
	out = json_dumps(o, JSON_COMPACT);
out:
	json_decref(a);
	json_decref(o);
	return out;
}

static void
do_renew(struct svc *s, struct rpc_call *call, const msgpack_object *p)
{
	const msgpack_object *rc = rpc_map_get(p, "room_count");
	struct session_room *rooms = NULL;
	const char *server;
	size_t slen, n = 0;
	struct call_ctx *c;
	char *info = NULL;

	if (name_field(p, "server", ENVELOPE_NAME_MAX, 1, &server, &slen) ==
	        -1 ||
	    (rc != NULL && rc->type != MSGPACK_OBJECT_MAP &&
	     rc->type != MSGPACK_OBJECT_NIL)) {
		reply_error(s, call, METHOD_RENEW_ONLINE,
		            "bad params: server, room_count");
		return;
	}
	if (rc != NULL && rc->type == MSGPACK_OBJECT_MAP) {
		if (rc->via.map.size > ROOMS_MAX) {
			reply_error(s, call, METHOD_RENEW_ONLINE,
			            "bad params: too many rooms");
			return;
		}
		rooms = calloc(rc->via.map.size + 1, sizeof(*rooms));
		if (rooms == NULL) {
			reply_error(s, call, METHOD_RENEW_ONLINE,
			            "out of memory");
			return;
		}
		for (uint32_t i = 0; i < rc->via.map.size; i++) {
			const msgpack_object *k = &rc->via.map.ptr[i].key;
			const msgpack_object *v = &rc->via.map.ptr[i].val;

			if (k->type != MSGPACK_OBJECT_STR ||
			    !name_ok(k->via.str.ptr, k->via.str.size,
			             AUTH_ROOM_MAX - 1) ||
			    v->type != MSGPACK_OBJECT_POSITIVE_INTEGER ||
			    v->via.u64 > INT32_MAX) {
				free(rooms);
				reply_error(s, call, METHOD_RENEW_ONLINE,
				            "bad params: room_count entries "
				            "must be str -> uint");
				return;
			}
			rooms[n].room = k->via.str.ptr;
			rooms[n].len = k->via.str.size;
			rooms[n++].count = (int64_t)v->via.u64;
		}
	}
	info = node_info(p, server, slen);
	if (info == NULL) {
		free(rooms);
		reply_error(s, call, METHOD_RENEW_ONLINE,
		            "bad params: addrs or ports");
		return;
	}
	c = ctx_new(s, call, METHOD_RENEW_ONLINE);
	if (c != NULL && session_renew_online(s->l, server, slen, info, rooms,
	                                      n, on_renewed, c) == -1)
		ctx_unsent(c);
	free(info);
	free(rooms);
}

/* ---- Receive, Nodes ---------------------------------------------------- */

static void
do_receive(struct svc *s, struct rpc_call *call, const msgpack_object *p)
{
	const char *key = "", *body = "";
	size_t klen = 0, blen = 0;
	int64_t mid = 0, op;

	if (rpc_map_int(p, "op", &op) == -1 || op < INT32_MIN ||
	    op > INT32_MAX ||
	    name_field(p, "key", AUTH_KEY_MAX - 1, 0, &key, &klen) == -1 ||
	    (rpc_map_get(p, "mid") != NULL &&
	     rpc_map_int(p, "mid", &mid) == -1) ||
	    (rpc_map_get(p, "body") != NULL &&
	     rpc_map_str(p, "body", &body, &blen) == -1)) {
		reply_error(s, call, METHOD_RECEIVE,
		            "bad params: mid, key, op, body");
		return;
	}
	webhook_receive(s->l->webhook, mid, key, klen, (int32_t)op, body, blen);
	reply_empty(call);
}

static void
pack_json(msgpack_packer *pk, json_t *j)
{
	const char *k;
	json_t *v;
	size_t i;

	switch (json_typeof(j)) {
	case JSON_OBJECT:
		msgpack_pack_map(pk, json_object_size(j));
		json_object_foreach(j, k, v)
		{
			rpc_pack_str(pk, k);
			pack_json(pk, v);
		}
		break;
	case JSON_ARRAY:
		msgpack_pack_array(pk, json_array_size(j));
		json_array_foreach(j, i, v) pack_json(pk, v);
		break;
	case JSON_STRING:
		msgpack_pack_str(pk, json_string_length(j));
		msgpack_pack_str_body(pk, json_string_value(j),
		                      json_string_length(j));
		break;
	case JSON_INTEGER:
		msgpack_pack_int64(pk, json_integer_value(j));
		break;
	case JSON_REAL:
		msgpack_pack_double(pk, json_real_value(j));
		break;
	case JSON_TRUE:
		msgpack_pack_true(pk);
		break;
	case JSON_FALSE:
		msgpack_pack_false(pk);
		break;
	default:
		msgpack_pack_nil(pk);
	}
}

static void
on_nodes(const redisReply *r, void *arg)
{
	struct call_ctx *c = arg;
	json_t *j = api_nodes_reply(c->s->l, r);
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	pack_json(&pk, j);
	json_decref(j);
	reply_sbuf(c->call, &sb);
	free(c);
}

static void
do_nodes(struct svc *s, struct rpc_call *call)
{
	struct call_ctx *c = ctx_new(s, call, METHOD_NODES);

	/* Without Redis the configured domain is still a useful answer. */
	if (c != NULL && session_nodes(s->l, on_nodes, c) == -1)
		on_nodes(NULL, c);
}

static void
handle(struct rpc_call *call, const char *method, size_t method_len,
       const msgpack_object *params, void *arg)
{
	struct svc *s = arg;
	const msgpack_object *p;
	enum svc_method m = METHOD_UNKNOWN;

	for (int i = 0; i < METHOD_UNKNOWN; i++) {
		if (strlen(method_names[i]) == method_len &&
		    memcmp(method_names[i], method, method_len) == 0)
			m = i;
	}
	s->l->metrics.rpc_calls[m]++;
	if (call == NULL) {
		/* No notifications in this protocol: nothing to answer. */
		log_debug("rpc notification %.*s ignored", (int)method_len,
		          method);
		return;
	}
	if (m == METHOD_UNKNOWN) {
		reply_error(s, call, m, "unknown method");
		return;
	}
	p = rpc_params_map(params);
	if (p == NULL) {
		reply_error(s, call, m, "bad params: want [map]");
		return;
	}
	switch (m) {
	case METHOD_CONNECT:
		do_connect(s, call, p);
		break;
	case METHOD_DISCONNECT:
	case METHOD_HEARTBEAT:
		do_mapping(s, call, m, p);
		break;
	case METHOD_RENEW_ONLINE:
		do_renew(s, call, p);
		break;
	case METHOD_RECEIVE:
		do_receive(s, call, p);
		break;
	case METHOD_NODES:
		do_nodes(s, call);
		break;
	default: /* Ping */
		reply_empty(call);
	}
}

struct svc *
svc_new(struct logic *l, char *err, size_t errlen)
{
	struct rpc_limits lim = {.max_message = l->conf->rpc_max_message};
	struct svc *s = calloc(1, sizeof(*s));

	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->l = l;
	s->srv = rpc_server_new(l->base, l->conf->rpc_host, l->conf->rpc_port,
	                        &lim, handle, s, err, errlen);
	if (s->srv == NULL) {
		free(s);
		return NULL;
	}
	return s;
}

void
svc_free(struct svc *s)
{
	if (s == NULL)
		return;
	rpc_server_free(s->srv);
	free(s);
}

int
svc_port(const struct svc *s)
{
	return rpc_server_port(s->srv);
}
