/*
 * msgpack-rpc codec: a bounded streaming decoder over msgpack-c's
 * msgpack_unpacker, and the packing and map helpers.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/mpscan.h"
#include "rpc/rpc_codec.h"
#include "rpc/rpc_int.h"

/*
 * Every byte goes through the framing scanner (common/mpscan.h) first, so
 * msgpack-c only ever sees bytes of messages that fit the limits and never
 * allocates for elements the peer has not sent.
 */
struct rpc_decoder {
	struct rpc_limits lim;
	msgpack_unpacker up;
	msgpack_unpacked result;
	int dead;
	char dead_err[128];

	struct mpscan scan;
	size_t complete; /* messages scanned but not yet handed out */
};

void
rpc_seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

struct rpc_limits
rpc_limits_resolve(const struct rpc_limits *l)
{
	struct rpc_limits r = RPC_LIMITS_DEFAULT;

	if (l == NULL)
		return r;
	if (l->max_message != 0)
		r.max_message = l->max_message;
	if (l->max_depth != 0)
		r.max_depth = l->max_depth > RPC_MAX_DEPTH_LIMIT
		                  ? RPC_MAX_DEPTH_LIMIT
		                  : l->max_depth;
	if (l->max_output != 0)
		r.max_output = l->max_output;
	if (l->max_inflight != 0)
		r.max_inflight = l->max_inflight;
	return r;
}

struct rpc_decoder *
rpc_decoder_new(const struct rpc_limits *limits)
{
	struct rpc_decoder *d;
	size_t initial;

	if ((d = calloc(1, sizeof(*d))) == NULL)
		return NULL;
	d->lim = rpc_limits_resolve(limits);
	/* msgpack-c's stack holds empty containers too. */
	mpscan_init(&d->scan, d->lim.max_message, d->lim.max_depth,
	            MPSCAN_EMPTY_NESTS);
	/* Small: most rpc messages are a few hundred bytes. */
	initial = d->lim.max_message < 8192 ? d->lim.max_message : 8192;
	if (!msgpack_unpacker_init(&d->up, initial)) {
		free(d);
		return NULL;
	}
	msgpack_unpacked_init(&d->result);
	return d;
}

void
rpc_decoder_free(struct rpc_decoder *d)
{
	if (d == NULL)
		return;
	msgpack_unpacked_destroy(&d->result);
	msgpack_unpacker_destroy(&d->up);
	free(d);
}

static int kill_stream(struct rpc_decoder *d, char *err, size_t errlen,
                       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int
kill_stream(struct rpc_decoder *d, char *err, size_t errlen, const char *fmt,
            ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d->dead_err, sizeof(d->dead_err), fmt, ap);
	va_end(ap);
	d->dead = 1;
	rpc_seterr(err, errlen, "%s", d->dead_err);
	return -1;
}

static int
scan_failed(struct rpc_decoder *d, char *err, size_t errlen)
{
	const struct mpscan *sc = &d->scan;

	switch (sc->error) {
	case MPSCAN_BAD_BYTE:
		return kill_stream(d, err, errlen,
		                   "invalid msgpack byte 0x%02x", sc->byte);
	case MPSCAN_TOO_DEEP:
		return kill_stream(d, err, errlen,
		                   "message nested deeper than %u",
		                   d->lim.max_depth);
	case MPSCAN_BIG_CONTAINER:
		return kill_stream(d, err, errlen,
		                   "message larger than %zu bytes (container "
		                   "of %llu elements)",
		                   d->lim.max_message,
		                   (unsigned long long)sc->size);
	case MPSCAN_BIG_VALUE:
		return kill_stream(d, err, errlen,
		                   "message larger than %zu bytes (%llu-byte "
		                   "value)",
		                   d->lim.max_message,
		                   (unsigned long long)sc->size);
	default:
		return kill_stream(d, err, errlen,
		                   "message larger than %zu bytes",
		                   d->lim.max_message);
	}
}

/* Count the messages that end in the bytes. */
static int
scan(struct rpc_decoder *d, const uint8_t *p, size_t len, char *err,
     size_t errlen)
{
	size_t used;
	int r;

	while (len > 0) {
		if ((r = mpscan_feed(&d->scan, p, len, &used)) == -1)
			return scan_failed(d, err, errlen);
		d->complete += (size_t)r;
		p += used;
		len -= used;
	}
	return 0;
}

int
rpc_decoder_feed(struct rpc_decoder *d, const void *data, size_t len, char *err,
                 size_t errlen)
{
	if (d->dead) {
		rpc_seterr(err, errlen, "%s", d->dead_err);
		return -1;
	}
	if (len == 0)
		return 0;
	if (scan(d, data, len, err, errlen) == -1)
		return -1;
	if (!msgpack_unpacker_reserve_buffer(&d->up, len))
		return kill_stream(d, err, errlen, "out of memory");
	memcpy(msgpack_unpacker_buffer(&d->up), data, len);
	msgpack_unpacker_buffer_consumed(&d->up, len);
	return 0;
}

static int
is_msgid(const msgpack_object *o)
{
	return o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
	       o->via.u64 <= UINT32_MAX;
}

int
rpc_decoder_next(struct rpc_decoder *d, struct rpc_message *m, char *err,
                 size_t errlen)
{
	const msgpack_object *o, *a;
	uint32_t n;

	if (d->dead) {
		rpc_seterr(err, errlen, "%s", d->dead_err);
		return -1;
	}
	if (d->complete == 0)
		return 0;
	switch (msgpack_unpacker_next(&d->up, &d->result)) {
	case MSGPACK_UNPACK_SUCCESS:
		d->complete--;
		break;
	case MSGPACK_UNPACK_NOMEM_ERROR:
		return kill_stream(d, err, errlen, "out of memory");
	case MSGPACK_UNPACK_CONTINUE:
		/* The scanner saw a whole message: they disagree. */
		return kill_stream(d, err, errlen, "msgpack framing mismatch");
	default:
		return kill_stream(d, err, errlen, "malformed msgpack");
	}

	memset(m, 0, sizeof(*m));
	o = &d->result.data;
	if (o->type != MSGPACK_OBJECT_ARRAY)
		return kill_stream(d, err, errlen, "message is not an array");
	n = o->via.array.size;
	a = o->via.array.ptr;
	if (n < 3 || n > 4)
		return kill_stream(d, err, errlen,
		                   "message array has %u elements", n);
	if (a[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER || a[0].via.u64 > 2)
		return kill_stream(d, err, errlen, "unknown message type");
	m->type = (int)a[0].via.u64;
	if (n != (m->type == RPC_NOTIFY ? 3u : 4u))
		return kill_stream(d, err, errlen,
		                   "message of type %d has %u elements",
		                   m->type, n);
	if (m->type != RPC_NOTIFY) {
		if (!is_msgid(&a[1]))
			return kill_stream(d, err, errlen,
			                   "msgid is not a uint32");
		m->msgid = (uint32_t)a[1].via.u64;
	}
	if (m->type == RPC_RESPONSE) {
		m->error = &a[2];
		m->result = &a[3];
		return 1;
	}
	a += m->type == RPC_REQUEST ? 2 : 1;
	if (a[0].type != MSGPACK_OBJECT_STR)
		return kill_stream(d, err, errlen, "method is not a str");
	if (a[1].type != MSGPACK_OBJECT_ARRAY)
		return kill_stream(d, err, errlen, "params is not an array");
	m->method = a[0].via.str.ptr;
	m->method_len = a[0].via.str.size;
	m->params = &a[1];
	return 1;
}

void
rpc_pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = s == NULL ? 0 : strlen(s);

	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s == NULL ? "" : s, n);
}

void
rpc_pack_request_head(msgpack_packer *pk, uint32_t msgid, const char *method)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint8(pk, RPC_REQUEST);
	msgpack_pack_uint32(pk, msgid);
	rpc_pack_str(pk, method);
}

void
rpc_pack_response_head(msgpack_packer *pk, uint32_t msgid, const char *error)
{
	msgpack_pack_array(pk, 4);
	msgpack_pack_uint8(pk, RPC_RESPONSE);
	msgpack_pack_uint32(pk, msgid);
	if (error == NULL)
		msgpack_pack_nil(pk);
	else
		rpc_pack_str(pk, error);
}

void
rpc_pack_notify_head(msgpack_packer *pk, const char *method)
{
	msgpack_pack_array(pk, 3);
	msgpack_pack_uint8(pk, RPC_NOTIFY);
	rpc_pack_str(pk, method);
}

int
rpc_obj_streq(const msgpack_object *o, const char *s)
{
	size_t n = strlen(s);

	if (o->type == MSGPACK_OBJECT_STR)
		return o->via.str.size == n &&
		       (n == 0 || memcmp(o->via.str.ptr, s, n) == 0);
	if (o->type == MSGPACK_OBJECT_BIN)
		return o->via.bin.size == n &&
		       (n == 0 || memcmp(o->via.bin.ptr, s, n) == 0);
	return 0;
}

const msgpack_object *
rpc_map_get(const msgpack_object *map, const char *key)
{
	if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object_kv *kv = &map->via.map.ptr[i];

		if (rpc_obj_streq(&kv->key, key))
			return &kv->val;
	}
	return NULL;
}

int
rpc_map_str(const msgpack_object *map, const char *key, const char **s,
            size_t *len)
{
	const msgpack_object *v = rpc_map_get(map, key);

	if (v == NULL)
		return -1;
	if (v->type == MSGPACK_OBJECT_STR) {
		*s = v->via.str.ptr;
		*len = v->via.str.size;
		return 0;
	}
	if (v->type == MSGPACK_OBJECT_BIN) {
		*s = v->via.bin.ptr;
		*len = v->via.bin.size;
		return 0;
	}
	return -1;
}

int
rpc_map_int(const msgpack_object *map, const char *key, int64_t *v)
{
	const msgpack_object *o = rpc_map_get(map, key);

	if (o == NULL)
		return -1;
	if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
	    o->via.u64 <= INT64_MAX) {
		*v = (int64_t)o->via.u64;
		return 0;
	}
	if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		*v = o->via.i64;
		return 0;
	}
	return -1;
}

int
rpc_map_uint(const msgpack_object *map, const char *key, uint64_t *v)
{
	const msgpack_object *o = rpc_map_get(map, key);

	if (o == NULL || o->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
		return -1;
	*v = o->via.u64;
	return 0;
}

int
rpc_map_bool(const msgpack_object *map, const char *key, int *v)
{
	const msgpack_object *o = rpc_map_get(map, key);

	if (o == NULL || o->type != MSGPACK_OBJECT_BOOLEAN)
		return -1;
	*v = o->via.boolean ? 1 : 0;
	return 0;
}

const msgpack_object *
rpc_map_array(const msgpack_object *map, const char *key)
{
	const msgpack_object *o = rpc_map_get(map, key);

	return o != NULL && o->type == MSGPACK_OBJECT_ARRAY ? o : NULL;
}

const msgpack_object *
rpc_params_map(const msgpack_object *params)
{
	if (params == NULL || params->type != MSGPACK_OBJECT_ARRAY ||
	    params->via.array.size != 1 ||
	    params->via.array.ptr[0].type != MSGPACK_OBJECT_MAP)
		return NULL;
	return &params->via.array.ptr[0];
}
