/*
 * envelope: the push messages imgate-logic PUBLISHes on Redis and the
 * comets' push layer decodes.
 *
 * Channels:
 *   "<prefix>:node:<server_id>"  key pushes for the comet node server_id
 *   "<prefix>:room:<room>"       room pushes (room = goim room key, e.g.
 *                                "live://1000")
 *   "<prefix>:all"               broadcasts
 * prefix is a config setting ("imgate" by default).
 *
 * Envelope: one msgpack map per PUBLISH, with goim's PushMsg field names:
 *   "type"       int    0 PUSH to keys, 1 ROOM, 2 BROADCAST
 *   "operation"  int32  the op the client sees
 *   "speed"      int32  broadcast pacing (0 = none); optional, default 0
 *   "server"     str    PUSH only: the comet node holding the keys
 *   "room"       str    ROOM only
 *   "keys"       [str]  PUSH only, at least one key
 *   "msg"        bin    the message body (str accepted too)
 *   "id"         uint   unique per publish, for tracing; optional
 *   "ts"         uint   ms since the epoch at publish; optional
 *   "src"        uint   the publishing process: random, non-zero, fixed
 *                       for the process's life; optional
 *   "seq"        uint   per channel and src: 1, 2, 3... one per PUBLISH
 *                       written to Redis (a seq whose PUBLISH never left
 *                       the publisher is reused); optional. A jump over
 *                       n values on a channel means Redis dropped n
 *                       messages (pub/sub does not queue for a
 *                       disconnected subscriber); a seq at or below the
 *                       last one means the publisher restarted or forgot
 *                       the channel. Without src or seq: no accounting.
 * Unknown fields are ignored; a known field of the wrong type is an error;
 * fields of another type (keys in a ROOM envelope) are checked, then
 * ignored.
 *
 * This is a library: it never logs.
 */
#ifndef IMGATE_ENVELOPE_H
#define IMGATE_ENVELOPE_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

enum envelope_type {
	ENVELOPE_PUSH = 0,
	ENVELOPE_ROOM = 1,
	ENVELOPE_BROADCAST = 2,
};

#define ENVELOPE_MAX_SIZE (8u << 20) /* one packed envelope */
#define ENVELOPE_MAX_KEYS 100000u    /* keys in one PUSH envelope */
#define ENVELOPE_NAME_MAX 255u       /* bytes of a server, room or key */

struct envelope {
	int type; /* enum envelope_type */
	int32_t operation;
	int32_t speed;
	const char *server; /* PUSH; not NUL-terminated after decode */
	size_t server_len;
	const char *room; /* ROOM; not NUL-terminated after decode */
	size_t room_len;
	/*
	 * PUSH keys. After decode: keys is the msgpack array (every element
	 * checked to be a str) and nkeys its size. To encode, set either keys
	 * or key_list/key_lens/nkeys (key_lens NULL = strlen of each).
	 */
	const msgpack_object *keys;
	const char *const *key_list;
	const size_t *key_lens;
	size_t nkeys;
	const uint8_t *msg;
	size_t msg_len;
	uint64_t id;
	uint64_t ts;
	uint64_t src; /* 0 = absent; written only when non-zero */
	uint64_t seq; /* 0 = absent; written only when non-zero */
};

/*
 * Decode one envelope from buf. scratch must be initialised
 * (msgpack_unpacked_init) and is reused; the pointers in *e stay valid
 * while scratch lives and is not reused. Strict: a buffer that is not
 * exactly one map, a known field of the wrong type, a field missing for the
 * type, a name or key list over the limits, an unknown type: -1 with the
 * reason in err. 0 on success.
 */
int envelope_decode(const void *buf, size_t len, msgpack_unpacked *scratch,
                    struct envelope *e, char *err, size_t errlen);

/*
 * Append the packed envelope to out. Fields that do not belong to e->type
 * are not written. 0, or -1 if e is not valid for its type (the same rules
 * as the decoder), in which case out is left as it was.
 */
int envelope_encode(msgpack_sbuffer *out, const struct envelope *e);

/*
 * Write the channel for type into out: name is the server id (PUSH) or the
 * room (ROOM) and is ignored for BROADCAST. -1 if it does not fit, the type
 * is unknown or name is missing.
 */
int envelope_channel(char *out, size_t outlen, const char *prefix, int type,
                     const char *name);

/*
 * Check that buf holds exactly one well-formed msgpack object whose
 * containers all claim no more elements than there are bytes left, and
 * that it nests at most max_depth deep. msgpack-c sizes a container's
 * allocation from its header before reading it, so this keeps a hostile
 * 10-byte input from asking for gigabytes. 0 or -1 with err.
 */
int envelope_msgpack_check(const void *buf, size_t len, unsigned max_depth,
                           char *err, size_t errlen);

#endif
