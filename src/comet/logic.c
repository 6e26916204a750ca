#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "comet/conn.h"
#include "comet/logic.h"
#include "rpc/rpc.h"

struct logic {
	struct sess_worker *sw;
	struct rpc_client *rpc;
	logic_connect_fn connect_cb;
	struct event *renew; /* worker 0 only */
	uint32_t renew_msgid;
	int renew_pending;
};

static void logic_renew_cb(evutil_socket_t fd, short what, void *arg);

static void
logic_opts(const struct comet_conf *conf, struct rpc_client_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->host = conf->logic.host[0] ? conf->logic.host : "127.0.0.1";
	o->port = conf->logic.port;
	o->connect_timeout_ms = conf->rpc_timeout_ms;
	o->call_timeout_ms = conf->rpc_timeout_ms;
	o->backoff_min_ms = 100;
	o->backoff_max_ms = 5000;
	o->max_pending = 65536;
	o->limits = RPC_LIMITS_DEFAULT;
}

static void
logic_renew_arm(struct logic *lg)
{
	struct timeval tv;
	long ms = lg->sw->w->conf->renew_interval_ms;

	if (ms <= 0)
		ms = 10000;
	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	evtimer_add(lg->renew, &tv);
}

struct logic *
logic_new(struct sess_worker *sw, logic_connect_fn connect_cb, char *err,
          size_t errlen)
{
	struct rpc_client_opts o;
	struct logic *lg;

	if ((lg = calloc(1, sizeof(*lg))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	lg->sw = sw;
	lg->connect_cb = connect_cb;
	logic_opts(sw->w->conf, &o);
	if ((lg->rpc = rpc_client_new(sw->w->base, &o, err, errlen)) == NULL)
		goto err;
	if (sw->w->id == 0) {
		lg->renew = evtimer_new(sw->w->base, logic_renew_cb, lg);
		if (lg->renew == NULL) {
			snprintf(err, errlen, "evtimer_new failed");
			goto err;
		}
		/* A first report soon, so heartbeat counts are known early. */
		struct timeval tv = {0, 200 * 1000};
		evtimer_add(lg->renew, &tv);
	}
	return lg;
err:
	logic_free(lg);
	return NULL;
}

void
logic_free(struct logic *lg)
{
	if (lg == NULL)
		return;
	if (lg->renew != NULL)
		event_free(lg->renew);
	if (lg->renew_pending)
		rpc_client_cancel(lg->rpc, lg->renew_msgid);
	rpc_client_free(lg->rpc);
	free(lg);
}

void
logic_reload(struct logic *lg, const struct comet_conf *old)
{
	const struct comet_conf *c = lg->sw->w->conf;

	if (strcmp(c->logic.host, old->logic.host) != 0 ||
	    c->logic.port != old->logic.port) {
		if (rpc_client_set_target(
		        lg->rpc, c->logic.host[0] ? c->logic.host : "127.0.0.1",
		        c->logic.port) == -1)
			log_warn("logic: cannot switch to %s:%d", c->logic.host,
			         c->logic.port);
		else
			log_notice("logic: now %s:%d", c->logic.host,
			           c->logic.port);
	}
	if (lg->renew != NULL && c->renew_interval_ms != old->renew_interval_ms)
		logic_renew_arm(lg);
}

/* Start a params array holding one map of n entries. */
static void
logic_params_head(msgpack_packer *pk, size_t n)
{
	msgpack_pack_array(pk, 1);
	msgpack_pack_map(pk, n);
}

static void
logic_pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
	rpc_pack_str(pk, k);
	rpc_pack_str(pk, v);
}

static void
logic_pack_kv_int(msgpack_packer *pk, const char *k, int64_t v)
{
	rpc_pack_str(pk, k);
	msgpack_pack_int64(pk, v);
}

static int
logic_call(struct logic *lg, const char *method, msgpack_sbuffer *sb,
           rpc_result_fn cb, void *arg, uint32_t *msgid)
{
	uint32_t id;
	int rc;

	sess_count_add(lg->sw, SHM_C_RPC_CALLS, 1);
	rc = rpc_client_call(lg->rpc, method, sb->data, sb->size, cb, arg, &id);
	msgpack_sbuffer_destroy(sb);
	if (rc == -1) {
		sess_count_add(lg->sw, SHM_C_RPC_ERRORS, 1);
		return -1;
	}
	if (msgid != NULL)
		*msgid = id;
	return 0;
}

/* Parse the accepts array: ints, at most SHM_ACCEPTS_MAX kept. */
static void
logic_parse_accepts(const msgpack_object *arr, struct logic_auth *a)
{
	uint32_t i;
	const msgpack_object *o;

	a->naccepts = 0;
	if (arr == NULL || arr->type != MSGPACK_OBJECT_ARRAY)
		return;
	for (i = 0; i < arr->via.array.size; i++) {
		o = &arr->via.array.ptr[i];
		if (a->naccepts == SHM_ACCEPTS_MAX)
			break;
		if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
		    o->via.u64 <= INT32_MAX)
			a->accepts[a->naccepts++] = (int32_t)o->via.u64;
		else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER &&
		         o->via.i64 >= INT32_MIN)
			a->accepts[a->naccepts++] = (int32_t)o->via.i64;
	}
}

/* One Connect in flight; arg is NULL once its connection went away. */
struct logic_ticket {
	struct logic *lg;
	void *arg;
};

static int logic_session_call(struct logic *lg, const char *method, int64_t mid,
                              const char *key, rpc_result_fn cb);
static void logic_ignore_result(enum rpc_status st, const msgpack_object *error,
                                const msgpack_object *result, void *arg);

/*
 * Connect succeeded for a client that left meanwhile: undo the session,
 * unless the key is registered again by now (a newer connection owns it).
 */
static void
logic_connect_orphan(struct logic *lg, const msgpack_object *result)
{
	struct shm_channel ch;
	const char *k;
	char *key;
	size_t klen;
	int64_t mid;

	if (result == NULL || rpc_map_int(result, "mid", &mid) == -1 ||
	    rpc_map_str(result, "key", &k, &klen) == -1 || klen == 0 ||
	    memchr(k, '\0', klen) != NULL || (key = strndup(k, klen)) == NULL)
		return;
	/* A key too long for shm is registered nowhere on this node. */
	if (klen >= SHM_KEY_MAX ||
	    shm_channel_get(lg->sw->w->shm, key, &ch) != 0)
		logic_session_call(lg, "Disconnect", mid, key,
		                   logic_ignore_result);
	free(key);
}

/*
 * Whether a Connect error is logic's verdict on the token. imgate-logic
 * says "auth: <why>" for those; anything else ("redis unavailable", "redis
 * error", a replacement server's own failures) is a failure on its side,
 * and the client is not to blame.
 */
static int
logic_is_refusal(const msgpack_object *error)
{
	static const char prefix[] = "auth: ";
	const char *s;
	size_t len;

	if (error == NULL)
		return 0;
	if (error->type == MSGPACK_OBJECT_STR) {
		s = error->via.str.ptr;
		len = error->via.str.size;
	} else if (error->type == MSGPACK_OBJECT_BIN) {
		s = error->via.bin.ptr;
		len = error->via.bin.size;
	} else
		return 0;
	return len >= sizeof(prefix) - 1 &&
	       memcmp(s, prefix, sizeof(prefix) - 1) == 0;
}

static void
logic_connect_result(enum rpc_status st, const msgpack_object *error,
                     const msgpack_object *result, void *arg)
{
	struct logic_ticket *t = arg;
	struct logic *lg = t->lg;
	struct logic_auth a;
	int64_t hb = 0;
	void *carg = t->arg;

	free(t);
	if (carg == NULL) {
		if (st == RPC_OK)
			logic_connect_orphan(lg, result);
		return;
	}
	memset(&a, 0, sizeof(a));
	if (st == RPC_EREMOTE && logic_is_refusal(error)) {
		lg->connect_cb(LOGIC_REFUSED, "auth failed", NULL, carg);
		return;
	}
	if (st != RPC_OK) {
		/* Redis down behind logic, a timeout: the client may retry. */
		sess_count_add(lg->sw, SHM_C_RPC_ERRORS, 1);
		lg->connect_cb(LOGIC_UNAVAILABLE, "logic unavailable", NULL,
		               carg);
		return;
	}
	/* The key's length is the caller's to check (a reason of its own). */
	if (result == NULL || rpc_map_int(result, "mid", &a.mid) == -1 ||
	    rpc_map_str(result, "key", &a.key, &a.key_len) == -1 ||
	    a.key_len == 0 || memchr(a.key, '\0', a.key_len) != NULL) {
		sess_count_add(lg->sw, SHM_C_RPC_ERRORS, 1);
		lg->connect_cb(LOGIC_BAD_REPLY, "bad logic reply", NULL, carg);
		return;
	}
	if (rpc_map_str(result, "room_id", &a.room, &a.room_len) == -1 &&
	    rpc_map_str(result, "roomID", &a.room, &a.room_len) == -1) {
		a.room = "";
		a.room_len = 0;
	}
	if (a.room_len >= SHM_ROOM_MAX ||
	    memchr(a.room, '\0', a.room_len) != NULL) {
		sess_count_add(lg->sw, SHM_C_RPC_ERRORS, 1);
		lg->connect_cb(LOGIC_BAD_REPLY, "room id too long", NULL, carg);
		return;
	}
	logic_parse_accepts(rpc_map_array(result, "accepts"), &a);
	/* Seconds, as imgate-logic answers; clamped to a day. */
	if (rpc_map_int(result, "heartbeat", &hb) == 0 && hb > 0)
		a.heartbeat_ms = hb > 86400 ? 86400000u : (uint32_t)hb * 1000;
	lg->connect_cb(LOGIC_OK, NULL, &a, carg);
}

struct logic_ticket *
logic_connect(struct logic *lg, const void *token, size_t token_len, void *arg)
{
	struct logic_ticket *t;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if ((t = malloc(sizeof(*t))) == NULL)
		return NULL;
	t->lg = lg;
	t->arg = arg;
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	logic_params_head(&pk, 3);
	logic_pack_kv_str(&pk, "server", lg->sw->w->conf->server_id);
	logic_pack_kv_str(&pk, "cookie", "");
	rpc_pack_str(&pk, "token");
	msgpack_pack_bin(&pk, token_len);
	msgpack_pack_bin_body(&pk, token, token_len);
	if (logic_call(lg, "Connect", &sb, logic_connect_result, t, NULL) ==
	    -1) {
		free(t);
		return NULL;
	}
	return t;
}

void
logic_abandon(struct logic_ticket *t)
{
	t->arg = NULL;
}

int
logic_connected(const struct logic *lg)
{
	return rpc_client_connected(lg->rpc);
}

static void
logic_ignore_result(enum rpc_status st, const msgpack_object *error,
                    const msgpack_object *result, void *arg)
{
	struct logic *lg = arg;

	if (st != RPC_OK)
		sess_count_add(lg->sw, SHM_C_RPC_ERRORS, 1);
}

static void
logic_disconnect_result(enum rpc_status st, const msgpack_object *error,
                        const msgpack_object *result, void *arg)
{
	struct logic *lg = arg;

	if (st != RPC_OK)
		sess_count_add(lg->sw, SHM_C_RPC_ERRORS, 1);
	sess_disconnect_done(lg->sw);
}

static int
logic_session_call(struct logic *lg, const char *method, int64_t mid,
                   const char *key, rpc_result_fn cb)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	logic_params_head(&pk, 3);
	logic_pack_kv_int(&pk, "mid", mid);
	logic_pack_kv_str(&pk, "key", key);
	logic_pack_kv_str(&pk, "server", lg->sw->w->conf->server_id);
	return logic_call(lg, method, &sb, cb, lg, NULL);
}

int
logic_disconnect(struct logic *lg, int64_t mid, const char *key)
{
	return logic_session_call(lg, "Disconnect", mid, key,
	                          logic_disconnect_result);
}

int
logic_heartbeat(struct logic *lg, int64_t mid, const char *key)
{
	return logic_session_call(lg, "Heartbeat", mid, key,
	                          logic_ignore_result);
}

int
logic_receive(struct logic *lg, int64_t mid, const char *key, int32_t op,
              const void *body, size_t len)
{
	msgpack_sbuffer sb;
	msgpack_packer pk;

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	logic_params_head(&pk, 5);
	logic_pack_kv_int(&pk, "mid", mid);
	logic_pack_kv_str(&pk, "key", key);
	logic_pack_kv_str(&pk, "server", lg->sw->w->conf->server_id);
	logic_pack_kv_int(&pk, "op", op);
	rpc_pack_str(&pk, "body");
	msgpack_pack_bin(&pk, len);
	msgpack_pack_bin_body(&pk, body, len);
	return logic_call(lg, "Receive", &sb, logic_ignore_result, lg, NULL);
}

/* RenewOnline ------------------------------------------------------------ */

static void
logic_renew_result(enum rpc_status st, const msgpack_object *error,
                   const msgpack_object *result, void *arg)
{
	struct logic *lg = arg;
	const msgpack_object *m;
	const msgpack_object_kv *kv;
	char room[SHM_ROOM_MAX];
	uint32_t i, len;
	uint64_t v;

	lg->renew_pending = 0;
	if (st != RPC_OK) {
		sess_count_add(lg->sw, SHM_C_RPC_ERRORS, 1);
		log_debug("logic: RenewOnline failed (%d)", (int)st);
		return;
	}
	m = rpc_map_get(result, "all_room_count");
	if (m == NULL)
		m = rpc_map_get(result, "allRoomCount");
	if (m == NULL || m->type != MSGPACK_OBJECT_MAP)
		return;
	for (i = 0; i < m->via.map.size; i++) {
		kv = &m->via.map.ptr[i];
		if (kv->key.type == MSGPACK_OBJECT_STR) {
			len = kv->key.via.str.size;
			if (len >= sizeof(room))
				continue;
			memcpy(room, kv->key.via.str.ptr, len);
		} else if (kv->key.type == MSGPACK_OBJECT_BIN) {
			len = kv->key.via.bin.size;
			if (len >= sizeof(room))
				continue;
			memcpy(room, kv->key.via.bin.ptr, len);
		} else
			continue;
		room[len] = '\0';
		if (kv->val.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
			continue;
		v = kv->val.via.u64;
		shm_room_set_cluster(lg->sw->w->shm, room,
		                     v > UINT32_MAX ? UINT32_MAX : (uint32_t)v);
	}
}

/* One room of the node, copied out of shm for the report. */
struct logic_room {
	char name[SHM_ROOM_MAX];
	uint32_t online;
};

struct logic_rooms {
	struct logic_room *v;
	size_t n, cap;
};

static int
logic_room_each(const struct shm_room *r, void *arg)
{
	struct logic_rooms *lr = arg;
	struct logic_room *nv;
	size_t ncap;

	if (r->online == 0)
		return 0;
	if (lr->n == lr->cap) {
		ncap = lr->cap ? lr->cap * 2 : 64;
		if ((nv = realloc(lr->v, ncap * sizeof(*nv))) == NULL)
			return 1;
		lr->v = nv;
		lr->cap = ncap;
	}
	memcpy(lr->v[lr->n].name, r->name, sizeof(r->name));
	lr->v[lr->n].name[SHM_ROOM_MAX - 1] = '\0';
	lr->v[lr->n].online = r->online;
	lr->n++;
	return 0;
}

static void
logic_renew_cb(evutil_socket_t fd, short what, void *arg)
{
	struct logic *lg = arg;
	const struct comet_conf *c = lg->sw->w->conf;
	struct logic_rooms lr = {NULL, 0, 0};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	size_t i;
	int rc;

	logic_renew_arm(lg);
	if (lg->renew_pending || !rpc_client_connected(lg->rpc))
		return;
	shm_each_room(lg->sw->w->shm, logic_room_each, &lr);

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	logic_params_head(&pk, 7);
	logic_pack_kv_str(&pk, "server", c->server_id);
	rpc_pack_str(&pk, "room_count");
	msgpack_pack_map(&pk, lr.n);
	for (i = 0; i < lr.n; i++) {
		rpc_pack_str(&pk, lr.v[i].name);
		msgpack_pack_uint32(&pk, lr.v[i].online);
	}
	free(lr.v);
	rpc_pack_str(&pk, "addrs");
	if (c->listen[LISTENER_TCP].host[0] != '\0') {
		msgpack_pack_array(&pk, 1);
		rpc_pack_str(&pk, c->listen[LISTENER_TCP].host);
	} else
		msgpack_pack_array(&pk, 0);
	logic_pack_kv_int(&pk, "tcp_port", c->listen[LISTENER_TCP].port);
	logic_pack_kv_int(&pk, "ws_port", c->listen[LISTENER_WS].port);
	logic_pack_kv_int(&pk, "wss_port", c->listen[LISTENER_WSS].port);
	logic_pack_kv_int(
	    &pk, "conn_count",
	    (int64_t)shm_counter_sum(lg->sw->w->shm, SHM_C_CONN_CURRENT));
	rc = logic_call(lg, "RenewOnline", &sb, logic_renew_result, lg,
	                &lg->renew_msgid);
	lg->renew_pending = rc == 0;
}
