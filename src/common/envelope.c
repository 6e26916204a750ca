#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/envelope.h"
#include "common/mpscan.h"

/* The whole envelope is in buf: no count may claim more than it holds. */
int
envelope_msgpack_check(const void *buf, size_t len, unsigned max_depth,
                       char *err, size_t errlen)
{
	struct mpscan sc;
	size_t used;

	mpscan_init(&sc, len, max_depth, 0);
	switch (mpscan_feed(&sc, buf, len, &used)) {
	case 0:
		snprintf(err, errlen, "truncated msgpack");
		return -1;
	case 1:
		if (used == len)
			return 0;
		snprintf(err, errlen, "%zu trailing bytes after the envelope",
		         len - used);
		return -1;
	}
	switch (sc.error) {
	case MPSCAN_BAD_BYTE:
		snprintf(err, errlen, "invalid msgpack byte 0x%02x", sc.byte);
		break;
	case MPSCAN_TOO_DEEP:
		snprintf(err, errlen, "msgpack nested deeper than %u",
		         sc.max_depth);
		break;
	case MPSCAN_BIG_CONTAINER:
		snprintf(err, errlen,
		         "msgpack container claims %" PRIu64
		         " elements, more than the input holds",
		         sc.size);
		break;
	default:
		snprintf(err, errlen, "truncated msgpack");
	}
	return -1;
}

static int
key_is(const msgpack_object *k, const char *name)
{
	size_t n = strlen(name);

	return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
	       memcmp(k->via.str.ptr, name, n) == 0;
}

static int
get_int(const msgpack_object *v, int64_t min, int64_t max, int64_t *out)
{
	if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
		if (v->via.u64 > (uint64_t)max)
			return -1;
		*out = (int64_t)v->via.u64;
	} else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
		if (v->via.i64 < min)
			return -1;
		*out = v->via.i64;
	} else {
		return -1;
	}
	return 0;
}

static int
get_str(const msgpack_object *v, const char **s, size_t *len)
{
	if (v->type == MSGPACK_OBJECT_STR) {
		*s = v->via.str.ptr;
		*len = v->via.str.size;
	} else if (v->type == MSGPACK_OBJECT_BIN) {
		*s = v->via.bin.ptr;
		*len = v->via.bin.size;
	} else {
		return -1;
	}
	return 0;
}

/* The rules shared by the decoder and the encoder. */
static int
validate(const struct envelope *e, char *err, size_t errlen)
{
	switch (e->type) {
	case ENVELOPE_PUSH:
		if (e->server == NULL || e->server_len == 0) {
			snprintf(err, errlen, "PUSH envelope without server");
			return -1;
		}
		if (e->server_len > ENVELOPE_NAME_MAX) {
			snprintf(err, errlen, "server longer than %u bytes",
			         ENVELOPE_NAME_MAX);
			return -1;
		}
		if (e->nkeys == 0 || (e->keys == NULL && e->key_list == NULL)) {
			snprintf(err, errlen, "PUSH envelope without keys");
			return -1;
		}
		if (e->nkeys > ENVELOPE_MAX_KEYS) {
			snprintf(err, errlen, "%zu keys, limit %u", e->nkeys,
			         ENVELOPE_MAX_KEYS);
			return -1;
		}
		break;
	case ENVELOPE_ROOM:
		if (e->room == NULL || e->room_len == 0) {
			snprintf(err, errlen, "ROOM envelope without room");
			return -1;
		}
		if (e->room_len > ENVELOPE_NAME_MAX) {
			snprintf(err, errlen, "room longer than %u bytes",
			         ENVELOPE_NAME_MAX);
			return -1;
		}
		break;
	case ENVELOPE_BROADCAST:
		break;
	default:
		snprintf(err, errlen, "unknown envelope type %d", e->type);
		return -1;
	}
	if (e->msg == NULL && e->msg_len > 0) {
		snprintf(err, errlen, "msg length without data");
		return -1;
	}
	return 0;
}

static int
decode_keys(const msgpack_object *v, struct envelope *e, char *err,
            size_t errlen)
{
	if (v->type != MSGPACK_OBJECT_ARRAY) {
		snprintf(err, errlen, "keys is not an array");
		return -1;
	}
	for (uint32_t i = 0; i < v->via.array.size; i++) {
		const msgpack_object *k = &v->via.array.ptr[i];

		if (k->type != MSGPACK_OBJECT_STR) {
			snprintf(err, errlen, "keys[%u] is not a string", i);
			return -1;
		}
		if (k->via.str.size == 0 ||
		    k->via.str.size > ENVELOPE_NAME_MAX) {
			snprintf(err, errlen, "keys[%u] has length %u", i,
			         k->via.str.size);
			return -1;
		}
	}
	e->keys = v;
	e->nkeys = v->via.array.size;
	return 0;
}

int
envelope_decode(const void *buf, size_t len, msgpack_unpacked *scratch,
                struct envelope *e, char *err, size_t errlen)
{
	const msgpack_object *root;
	msgpack_unpack_return ret;
	int seen_type = 0, seen_op = 0, seen_msg = 0;
	size_t off = 0;

	memset(e, 0, sizeof(*e));
	if (len > ENVELOPE_MAX_SIZE) {
		snprintf(err, errlen, "envelope of %zu bytes, limit %u", len,
		         ENVELOPE_MAX_SIZE);
		return -1;
	}
	/* Depth 3 is map -> keys array -> key; allow slack for extensions. */
	if (envelope_msgpack_check(buf, len, 8, err, errlen) == -1)
		return -1;
	ret = msgpack_unpack_next(scratch, buf, len, &off);
	if (ret != MSGPACK_UNPACK_SUCCESS) {
		snprintf(err, errlen, "msgpack decode failed (%d)", (int)ret);
		return -1;
	}
	root = &scratch->data;
	if (root->type != MSGPACK_OBJECT_MAP) {
		snprintf(err, errlen, "envelope is not a map");
		return -1;
	}
	for (uint32_t i = 0; i < root->via.map.size; i++) {
		const msgpack_object *k = &root->via.map.ptr[i].key;
		const msgpack_object *v = &root->via.map.ptr[i].val;
		int64_t n;

		if (key_is(k, "type")) {
			if (get_int(v, 0, 2, &n) == -1) {
				snprintf(err, errlen, "bad type");
				return -1;
			}
			e->type = (int)n;
			seen_type = 1;
		} else if (key_is(k, "operation")) {
			if (get_int(v, INT32_MIN, INT32_MAX, &n) == -1) {
				snprintf(err, errlen, "bad operation");
				return -1;
			}
			e->operation = (int32_t)n;
			seen_op = 1;
		} else if (key_is(k, "speed")) {
			if (get_int(v, INT32_MIN, INT32_MAX, &n) == -1) {
				snprintf(err, errlen, "bad speed");
				return -1;
			}
			e->speed = (int32_t)n;
		} else if (key_is(k, "server")) {
			if (v->type != MSGPACK_OBJECT_STR ||
			    get_str(v, &e->server, &e->server_len) == -1) {
				snprintf(err, errlen, "server is not a string");
				return -1;
			}
		} else if (key_is(k, "room")) {
			if (v->type != MSGPACK_OBJECT_STR ||
			    get_str(v, &e->room, &e->room_len) == -1) {
				snprintf(err, errlen, "room is not a string");
				return -1;
			}
		} else if (key_is(k, "keys")) {
			if (decode_keys(v, e, err, errlen) == -1)
				return -1;
		} else if (key_is(k, "msg")) {
			const char *s;

			if (get_str(v, &s, &e->msg_len) == -1) {
				snprintf(err, errlen, "msg is not bin");
				return -1;
			}
			e->msg = (const uint8_t *)s;
			seen_msg = 1;
		} else if (key_is(k, "id")) {
			if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
				snprintf(err, errlen, "bad id");
				return -1;
			}
			e->id = v->via.u64;
		} else if (key_is(k, "ts")) {
			if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
				snprintf(err, errlen, "bad ts");
				return -1;
			}
			e->ts = v->via.u64;
		} else if (key_is(k, "src")) {
			if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
				snprintf(err, errlen, "bad src");
				return -1;
			}
			e->src = v->via.u64;
		} else if (key_is(k, "seq")) {
			if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
				snprintf(err, errlen, "bad seq");
				return -1;
			}
			e->seq = v->via.u64;
		}
	}
	if (!seen_type || !seen_op) {
		snprintf(err, errlen, "envelope without %s",
		         seen_type ? "operation" : "type");
		return -1;
	}
	if (!seen_msg) {
		snprintf(err, errlen, "envelope without msg");
		return -1;
	}
	/* Fields of another type were type-checked, then are ignored. */
	if (e->type != ENVELOPE_PUSH) {
		e->server = NULL;
		e->server_len = 0;
		e->keys = NULL;
		e->nkeys = 0;
	}
	if (e->type != ENVELOPE_ROOM) {
		e->room = NULL;
		e->room_len = 0;
	}
	return validate(e, err, errlen);
}

static void
pack_str(msgpack_packer *pk, const char *s, size_t n)
{
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

static void
pack_key(msgpack_packer *pk, const char *name)
{
	pack_str(pk, name, strlen(name));
}

int
envelope_encode(msgpack_sbuffer *out, const struct envelope *e)
{
	msgpack_packer pk;
	char err[128];
	size_t fields = 6; /* type operation speed msg id ts */

	if (validate(e, err, sizeof(err)) == -1)
		return -1;
	if (e->type == ENVELOPE_PUSH) {
		if (e->keys != NULL && (e->keys->type != MSGPACK_OBJECT_ARRAY ||
		                        e->keys->via.array.size != e->nkeys))
			return -1;
		fields += 2;
	} else if (e->type == ENVELOPE_ROOM) {
		fields += 1;
	}
	/* 0 means absent, so it is not written: the decoder gives back
	 * exactly what the encoder was given. */
	fields += (e->src != 0) + (e->seq != 0);
	msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
	msgpack_pack_map(&pk, fields);
	pack_key(&pk, "type");
	msgpack_pack_int(&pk, e->type);
	pack_key(&pk, "operation");
	msgpack_pack_int32(&pk, e->operation);
	pack_key(&pk, "speed");
	msgpack_pack_int32(&pk, e->speed);
	if (e->type == ENVELOPE_PUSH) {
		pack_key(&pk, "server");
		pack_str(&pk, e->server, e->server_len);
		pack_key(&pk, "keys");
		msgpack_pack_array(&pk, e->nkeys);
		for (size_t i = 0; i < e->nkeys; i++) {
			const char *k;
			size_t n;

			if (e->keys != NULL) {
				k = e->keys->via.array.ptr[i].via.str.ptr;
				n = e->keys->via.array.ptr[i].via.str.size;
			} else {
				k = e->key_list[i];
				n = e->key_lens != NULL ? e->key_lens[i]
				                        : strlen(k);
			}
			pack_str(&pk, k, n);
		}
	} else if (e->type == ENVELOPE_ROOM) {
		pack_key(&pk, "room");
		pack_str(&pk, e->room, e->room_len);
	}
	pack_key(&pk, "msg");
	msgpack_pack_bin(&pk, e->msg_len);
	if (e->msg_len > 0)
		msgpack_pack_bin_body(&pk, e->msg, e->msg_len);
	pack_key(&pk, "id");
	msgpack_pack_uint64(&pk, e->id);
	pack_key(&pk, "ts");
	msgpack_pack_uint64(&pk, e->ts);
	if (e->src != 0) {
		pack_key(&pk, "src");
		msgpack_pack_uint64(&pk, e->src);
	}
	if (e->seq != 0) {
		pack_key(&pk, "seq");
		msgpack_pack_uint64(&pk, e->seq);
	}
	return 0;
}

int
envelope_channel(char *out, size_t outlen, const char *prefix, int type,
                 const char *name)
{
	int n;

	switch (type) {
	case ENVELOPE_PUSH:
	case ENVELOPE_ROOM:
		if (name == NULL || *name == '\0')
			return -1;
		n = snprintf(out, outlen, "%s:%s:%s", prefix,
		             type == ENVELOPE_PUSH ? "node" : "room", name);
		break;
	case ENVELOPE_BROADCAST:
		n = snprintf(out, outlen, "%s:all", prefix);
		break;
	default:
		return -1;
	}
	if (n < 0 || (size_t)n >= outlen)
		return -1;
	return 0;
}
