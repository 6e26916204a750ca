/*
 * proto: the goim v2 client frame. Every frame is a 16-byte big-endian
 * header followed by its body:
 *
 *   offset 0  packLen   int32  whole frame, header included
 *          4  headerLen int16  always 16
 *          6  ver       int16
 *          8  op        int32
 *         12  seq       int32
 *         16  body      packLen - 16 bytes
 *
 * goim trusted packLen and headerLen; here every inbound frame is checked
 * as soon as its header is readable, before any of its body is waited for,
 * so a peer can never make us buffer more than one header plus max_body.
 *
 * Op 9 (PROTO_OP_RAW) carries a batch of frames. On TCP a batch is sent as
 * the plain concatenation of its inner frames (no outer header, as goim
 * writes OpRaw bodies raw). On WebSocket it is one binary message: an outer
 * op-9 header whose packLen is 16 + the inner bytes, then the inner frames.
 * A sender builds the inner bytes once and uses them for both.
 *
 * Pure codec: no logging, no allocation besides the caller's evbuffers.
 */
#ifndef IMGATE_PROTO_H
#define IMGATE_PROTO_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define PROTO_HEADER_LEN       16
#define PROTO_DEFAULT_MAX_BODY 4096
/* packLen is an int32 on the wire. */
#define PROTO_MAX_PACK INT32_MAX
#define PROTO_MAX_BODY (PROTO_MAX_PACK - PROTO_HEADER_LEN)
/* Server pushes carry ver 1 and seq 0; replies echo the request's. */
#define PROTO_PUSH_VER 1
/* Heartbeat reply body: the room's online count, uint32 big-endian. */
#define PROTO_HEARTBEAT_BODY_LEN 4

/* Operation codes, as goim's api/protocol/operation.go numbers them. */
enum proto_op {
	PROTO_OP_HANDSHAKE = 0,
	PROTO_OP_HANDSHAKE_REPLY = 1,
	PROTO_OP_HEARTBEAT = 2,
	PROTO_OP_HEARTBEAT_REPLY = 3,
	PROTO_OP_SEND_MSG = 4,
	PROTO_OP_SEND_MSG_REPLY = 5,
	PROTO_OP_DISCONNECT_REPLY = 6,
	PROTO_OP_AUTH = 7,
	PROTO_OP_AUTH_REPLY = 8,
	PROTO_OP_RAW = 9,
	PROTO_OP_PROTO_READY = 10,
	PROTO_OP_PROTO_FINISH = 11,
	PROTO_OP_CHANGE_ROOM = 12,
	PROTO_OP_CHANGE_ROOM_REPLY = 13,
	PROTO_OP_SUB = 14,
	PROTO_OP_SUB_REPLY = 15,
	PROTO_OP_UNSUB = 16,
	PROTO_OP_UNSUB_REPLY = 17,
};

/*
 * A decoded frame. body points into the caller's memory (or the evbuffer
 * given to proto_peek) and is not NUL-terminated; when body_len is 0 it
 * must not be dereferenced.
 */
struct proto_frame {
	uint32_t pack_len; /* bytes the whole frame occupies */
	int16_t ver;
	int32_t op;
	int32_t seq;
	const uint8_t *body;
	uint32_t body_len;
};

/*
 * Decode one frame from the start of buf[0..len).
 * Returns 1 with *f filled (the frame is f->pack_len bytes; more may
 * follow), 0 when more bytes are needed, or -1 when the header is invalid,
 * with *why set to a short static reason. A header is judged as soon as
 * its 16 bytes are present, whatever follows.
 * why may be NULL.
 */
int proto_parse(const void *buf, size_t len, size_t max_body,
                struct proto_frame *f, const char **why);

/*
 * The same on a libevent input buffer. Only the 16 header bytes are copied
 * out to be judged; the buffer is made contiguous (evbuffer_pullup) only
 * once the whole frame is there. On 1, f->body points into in and stays
 * valid until proto_consume(in, f) or any other change to in. Nothing is
 * drained: on 0 or -1 the buffer is as it was.
 */
int proto_peek(struct evbuffer *in, size_t max_body, struct proto_frame *f,
               const char **why);

/* Drain the frame proto_peek returned (f->pack_len bytes). */
void proto_consume(struct evbuffer *in, const struct proto_frame *f);

/*
 * Write a 16-byte header for a body of body_len bytes. body_len must be at
 * most PROTO_MAX_BODY; ver is truncated to 16 bits as on the wire.
 */
void proto_header_write(uint8_t hdr[PROTO_HEADER_LEN], size_t body_len, int ver,
                        int op, int seq);

/*
 * Append one whole frame to out. body may be NULL when len is 0.
 * Returns 0, or -1 when len exceeds PROTO_MAX_BODY or out refused the
 * bytes (out then holds none of them).
 */
int proto_encode(struct evbuffer *out, int ver, int op, int seq,
                 const void *body, size_t len);

/*
 * The outer header that turns inner_len bytes of concatenated frames into
 * a WebSocket op-9 message: proto_header_write with op PROTO_OP_RAW. On TCP
 * the inner bytes are sent alone.
 */
void proto_batch_header(uint8_t hdr[PROTO_HEADER_LEN], size_t inner_len,
                        int ver, int seq);

/*
 * Walk the frames inside an op-9 body (or any run of concatenated frames),
 * each judged as proto_parse judges them. The body must outlive the walk.
 */
struct proto_iter {
	const uint8_t *p;
	size_t left;
	size_t max_body;
};

void proto_iter_init(struct proto_iter *it, const void *body, size_t len,
                     size_t max_body);

/*
 * 1 with the next frame in *f, 0 at the exact end of the body, -1 when the
 * next frame is invalid or cut short (*why says which). The walk never
 * moves past an invalid frame: every later call returns -1 again, so a bad
 * batch is never mistaken for a finished one.
 */
int proto_iter_next(struct proto_iter *it, struct proto_frame *f,
                    const char **why);

/*
 * Parse goim's op 14/16 body: a comma-separated list of decimal int32 ops,
 * "1000,1001". Spaces and tabs around items are tolerated and empty items
 * skipped. Stores up to max ops in ops[] and their number in *n.
 * Returns 0, or -1 on anything else or on more than max ops (*n is then 0).
 */
int proto_parse_ops(const uint8_t *body, size_t len, int32_t *ops, size_t max,
                    size_t *n);

/* Big-endian 32-bit store and load, for the heartbeat reply's count. */
void proto_put_u32(uint8_t b[4], uint32_t v);
uint32_t proto_get_u32(const uint8_t b[4]);

#endif
