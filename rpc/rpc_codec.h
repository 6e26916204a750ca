/*
 * rpc_codec: the msgpack-rpc wire format, without I/O.
 *
 * Messages are msgpack arrays streamed back to back:
 *   request      [0, msgid, method, params]
 *   response     [1, msgid, error, result]
 *   notification [2, method, params]
 * msgid is a uint32, method a str, params an array (imgate puts exactly
 * one map in it, with goim's field names); error is nil on success.
 *
 * The decoder takes bytes as they arrive and hands out whole messages. A
 * peer cannot make it buffer more than max_message bytes for one message,
 * nor nest containers deeper than max_depth, nor make msgpack-c allocate
 * for elements it has not sent: every such input is refused by
 * rpc_decoder_feed before it is buffered.
 *
 * This is a library: functions fill an error buffer and never log.
 */
#ifndef IMGATE_RPC_CODEC_H
#define IMGATE_RPC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#define RPC_MAX_MESSAGE_DEFAULT (1024 * 1024)
#define RPC_MAX_DEPTH_DEFAULT   16
/* msgpack-c's C unpacker refuses deeper input (MSGPACK_EMBED_STACK_SIZE). */
#define RPC_MAX_DEPTH_LIMIT 32

/*
 * Limits on what a peer may send. 0 in any field means its default.
 * max_message: bytes of one message; max_depth: nesting of containers,
 * the message's own array counting as 1 (a request's params map is at 3).
 * max_output and max_inflight are used by the server only (per
 * connection): unsent reply bytes, and requests handed to the handler but
 * not yet replied to. Past either, the server stops reading from that
 * connection until it drains.
 */
struct rpc_limits {
	size_t max_message;
	unsigned max_depth;
	size_t max_output;
	unsigned max_inflight;
};

#define RPC_MAX_OUTPUT_DEFAULT   (16 * 1024 * 1024)
#define RPC_MAX_INFLIGHT_DEFAULT 65536

#define RPC_LIMITS_DEFAULT                                           \
	((struct rpc_limits){.max_message = RPC_MAX_MESSAGE_DEFAULT, \
	                     .max_depth = RPC_MAX_DEPTH_DEFAULT,     \
	                     .max_output = RPC_MAX_OUTPUT_DEFAULT,   \
	                     .max_inflight = RPC_MAX_INFLIGHT_DEFAULT})

/* l with zero fields replaced by defaults (l may be NULL: all defaults). */
struct rpc_limits rpc_limits_resolve(const struct rpc_limits *l);

enum rpc_type {
	RPC_REQUEST = 0,
	RPC_RESPONSE = 1,
	RPC_NOTIFY = 2,
};

/*
 * One decoded message. Pointers point into the decoder and stay valid
 * until the next rpc_decoder_next/feed/free call. method is NOT
 * NUL-terminated: use method_len. Fields not part of the type are 0/NULL.
 */
struct rpc_message {
	int type; /* enum rpc_type */
	uint32_t msgid;
	const char *method; /* request, notification */
	size_t method_len;
	const msgpack_object *params; /* request, notification: an array */
	const msgpack_object *error;  /* response: nil on success */
	const msgpack_object *result; /* response */
};

struct rpc_decoder;

/* NULL on allocation failure. limits may be NULL (defaults). */
struct rpc_decoder *rpc_decoder_new(const struct rpc_limits *limits);
void rpc_decoder_free(struct rpc_decoder *d);

/*
 * Append len bytes. 0, or -1 with err filled when the bytes break a limit
 * or are not msgpack; then the stream is dead and every later call fails:
 * close the connection.
 */
int rpc_decoder_feed(struct rpc_decoder *d, const void *data, size_t len,
                     char *err, size_t errlen);

/*
 * The next message: 1 and *m filled (valid until the next call), 0 when
 * more bytes are needed, -1 with err filled when the stream is malformed
 * (not an array of the right shape, wrong types, unknown type, or a limit
 * broken): close the connection.
 */
int rpc_decoder_next(struct rpc_decoder *d, struct rpc_message *m, char *err,
                     size_t errlen);

/*
 * Packing. Each writes the head of a message; the caller then packs the
 * rest: a request's or notification's params array, a response's result
 * (nil when error != NULL).
 */
void rpc_pack_request_head(msgpack_packer *pk, uint32_t msgid,
                           const char *method);
/* error NULL packs nil. */
void rpc_pack_response_head(msgpack_packer *pk, uint32_t msgid,
                            const char *error);
void rpc_pack_notify_head(msgpack_packer *pk, const char *method);

/* Pack s as a str, "" for NULL. */
void rpc_pack_str(msgpack_packer *pk, const char *s);

/*
 * Access to goim-style maps (str keys). Keys may be str or bin on the
 * wire. Each returns NULL / -1 when map is not a map, the key is absent,
 * or the value has another type.
 */
const msgpack_object *rpc_map_get(const msgpack_object *map, const char *key);
/* str or bin; *s is NOT NUL-terminated. */
int rpc_map_str(const msgpack_object *map, const char *key, const char **s,
                size_t *len);
/* Positive or negative int that fits int64_t. */
int rpc_map_int(const msgpack_object *map, const char *key, int64_t *v);
/* Non-negative int. */
int rpc_map_uint(const msgpack_object *map, const char *key, uint64_t *v);
int rpc_map_bool(const msgpack_object *map, const char *key, int *v);
/* An array (the object is returned). */
const msgpack_object *rpc_map_array(const msgpack_object *map, const char *key);

/* The single map of a params array, or NULL if params is not [map]. */
const msgpack_object *rpc_params_map(const msgpack_object *params);

/* Whether the str or bin o equals s. */
int rpc_obj_streq(const msgpack_object *o, const char *s);

#endif
