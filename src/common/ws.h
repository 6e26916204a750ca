/*
 * ws: the WebSocket protocol (RFC 6455) as imgate-comet speaks it, over
 * libevent evbuffers.
 *
 *  - the upgrade request: an incremental parser for the client's GET, the
 *    101 answer and short HTTP refusals;
 *  - client frames: an in-place decoder that reads frames straight from
 *    the connection's input evbuffer and keeps a 16-byte state per
 *    connection (an evbuffer exists only while a fragmented message is in
 *    flight);
 *  - server frames: unmasked frame headers and whole frames, so a push can
 *    be framed once and shared by reference across connections;
 *  - the client side (masked frames, the request, the 101 check) for tests
 *    and the benchmark client.
 *
 * goim clients send one goim frame (or one op-9 batch) per binary message.
 * No extension is negotiated, so RSV bits must be 0.
 *
 * This is a library: functions return a status and a static reason; they
 * never log or exit.
 */
#ifndef IMGATE_WS_H
#define IMGATE_WS_H

#include <stddef.h>
#include <stdint.h>

#include <event2/buffer.h>

enum ws_opcode {
	WS_OP_CONT = 0x0,
	WS_OP_TEXT = 0x1,
	WS_OP_BINARY = 0x2,
	WS_OP_CLOSE = 0x8,
	WS_OP_PING = 0x9,
	WS_OP_PONG = 0xa,
};

/* Close codes (RFC 6455 7.4.1). */
enum ws_close_code {
	WS_CLOSE_NORMAL = 1000,
	WS_CLOSE_GOING_AWAY = 1001,
	WS_CLOSE_PROTOCOL = 1002,
	WS_CLOSE_UNSUPPORTED = 1003,
	WS_CLOSE_NO_STATUS = 1005, /* never on the wire: "no code received" */
	WS_CLOSE_INVALID_DATA = 1007,
	WS_CLOSE_POLICY = 1008,
	WS_CLOSE_TOO_BIG = 1009,
	WS_CLOSE_INTERNAL = 1011,
};

#define WS_KEY_LEN          24  /* base64 of 16 bytes */
#define WS_ACCEPT_LEN       28  /* base64 of a SHA-1 digest */
#define WS_ADDR_MAX         46  /* INET6_ADDRSTRLEN */
#define WS_CONTROL_MAX      125 /* payload of a control frame */
#define WS_FRAME_HEADER_MAX 14  /* 2 + 8 (length) + 4 (mask) */

/*
 * The longest message ws_read_message accepts whatever max_message says:
 * a frame and its header must fit the reader's 32-bit bookkeeping.
 */
#define WS_MESSAGE_LIMIT (UINT32_MAX - WS_FRAME_HEADER_MAX)

/* -------------------------------------------------------------------------
 * Upgrade request (server side)
 */

/*
 * What a valid upgrade request left behind, plus the parser's resume point.
 * Zero it (or ws_handshake_init) before the first ws_handshake_parse and
 * keep it across calls until the parser returns 1 or -1.
 */
struct ws_handshake {
	uint32_t scanned; /* parser: bytes searched for the blank line */
	char key[WS_KEY_LEN + 1]; /* Sec-WebSocket-Key */
	char addr[WS_ADDR_MAX];   /* X-Real-IP, else first X-Forwarded-For;
	                             an IP literal or "" */
};

void ws_handshake_init(struct ws_handshake *hs);

/*
 * Parse the upgrade request at the head of in. path is the configured
 * path ("/sub"); the request target must equal it, optionally followed by
 * a query string. max_header bounds the request (request line, headers and
 * the blank line); it is refused with 431 as soon as more than that would
 * have to be buffered.
 *
 * Returns 1: a valid request; it has been drained from in (bytes after it,
 *   early frames, stay) and hs->key / hs->addr are set.
 * 0: incomplete; call again when more arrived.
 * -1: refused; *status is 400, 404, 405, 426 or 431 and *why a static
 *   reason. Nothing is drained; answer with ws_handshake_reject and close.
 *
 * Malformed input is refused as early as the bytes allow (a request line
 * that does not start with a method is refused on its first bytes).
 */
int ws_handshake_parse(struct evbuffer *in, size_t max_header, const char *path,
                       struct ws_handshake *hs, int *status, const char **why);

/* Write the 101 Switching Protocols answer. 0, or -1 (out of memory). */
int ws_handshake_accept(struct evbuffer *out, const struct ws_handshake *hs);

/*
 * Write a short HTTP error (status from ws_handshake_parse, why as the
 * body) with Connection: close; a 426 also names Sec-WebSocket-Version: 13.
 * 0, or -1.
 */
int ws_handshake_reject(struct evbuffer *out, int status, const char *why);

/*
 * Sec-WebSocket-Accept for key: base64(SHA-1(key + RFC 6455 GUID)).
 * accept receives WS_ACCEPT_LEN characters and a NUL. 0, or -1.
 */
int ws_accept_key(const char *key, char accept[WS_ACCEPT_LEN + 1]);

/* -------------------------------------------------------------------------
 * Client frames (server side decoder)
 */

/*
 * Per-connection decoder state: 16 bytes on LP64. partial holds the
 * fragments of a message in flight and is NULL otherwise.
 */
struct ws_reader {
	struct evbuffer *partial;
	uint32_t pending;   /* bytes of in the delivered frame occupies */
	uint8_t partial_op; /* opcode of the message in partial */
	uint8_t flags;      /* WS_READER_* in ws.c */
};

/*
 * A message or control frame handed out by ws_read_message.
 *
 * opcode: WS_OP_TEXT or WS_OP_BINARY (return 1), WS_OP_PING, WS_OP_PONG or
 *   WS_OP_CLOSE (return 2).
 * data, len: the unmasked payload, contiguous. It points into the input
 *   evbuffer (or the reader's partial buffer for a fragmented message) and
 *   stays valid until ws_message_done, the next ws_read_message or
 *   ws_reader_reset on the same reader, or any change to the input buffer,
 *   whichever comes first. For a close frame it is the reason (the code
 *   removed); data is never NULL, even for len 0.
 * close_code: for WS_OP_CLOSE the code received, WS_CLOSE_NO_STATUS when
 *   the frame carried none; 0 otherwise.
 */
struct ws_message {
	int opcode;
	const uint8_t *data;
	size_t len;
	int close_code;
};

void ws_reader_init(struct ws_reader *r);

/* Free a partial message and forget the delivered one. Idempotent. */
void ws_reader_reset(struct ws_reader *r);

/*
 * Read the next message from in (client frames: masked).
 *
 * Returns 1: a complete data message in *m (fragments assembled).
 * 2: a control frame in *m; answer it with ws_control_reply. After a
 *   close the caller sends the reply, flushes and closes; the reader
 *   returns 0 from then on.
 * 0: nothing complete yet; call again when more arrived. At most one
 *   frame (max_message + WS_FRAME_HEADER_MAX bytes) is waited for in in.
 * -1: protocol error; *close_code is WS_CLOSE_PROTOCOL (1002),
 *   WS_CLOSE_INVALID_DATA (1007: text or close reason not UTF-8) or
 *   WS_CLOSE_TOO_BIG (1009: message above max_message) and *why a static
 *   reason. Send ws_write_close(out, *close_code, *why) and close.
 *
 * Frames are consumed in place: a frame stays in in until the message it
 * completes is released (ws_message_done or the next call), so in must not
 * be drained by anyone else meanwhile. Fragments are moved into the
 * reader's partial buffer. max_message above WS_MESSAGE_LIMIT is clamped.
 */
int ws_read_message(struct ws_reader *r, struct evbuffer *in,
                    size_t max_message, struct ws_message *m, int *close_code,
                    const char **why);

/* Release the message last returned: drain its frame, free the partial. */
void ws_message_done(struct ws_reader *r, struct evbuffer *in,
                     struct ws_message *m);

/*
 * Answer a control frame: a pong with the ping's payload, a close echoing
 * the code (an empty close when none was received), nothing for a pong.
 * 0, or -1 (out of memory).
 */
int ws_control_reply(struct evbuffer *out, const struct ws_message *m);

/* -------------------------------------------------------------------------
 * Server frames (unmasked, FIN set)
 */

/*
 * Write the header of a final, unmasked frame into out and return its
 * length: 2, 4 or 10. Lets a caller put header and payload in one
 * allocation shared by many connections.
 */
size_t ws_frame_header(uint8_t out[10], int opcode, uint64_t payload_len);

/* Append one final frame. 0, or -1 (out of memory). */
int ws_write_frame(struct evbuffer *out, int opcode, const void *data,
                   size_t len);

/*
 * Append a close frame with code and reason (truncated to fit 125 bytes;
 * pass ASCII). code 0 or WS_CLOSE_NO_STATUS sends an empty close. 0, -1.
 */
int ws_write_close(struct evbuffer *out, int code, const char *reason);

/* -------------------------------------------------------------------------
 * Client side: tests and the benchmark client
 */

/*
 * Append a masked frame. opcode is written as given (its low 4 bits), so
 * tests can build invalid frames; fin is 0 or 1. 0, or -1.
 */
int ws_write_masked_frame(struct evbuffer *out, int opcode, int fin,
                          const void *data, size_t len, const uint8_t mask[4]);

/* A fresh random Sec-WebSocket-Key (OpenSSL RAND_bytes). 0, or -1. */
int ws_client_key(char key[WS_KEY_LEN + 1]);

/* Append the upgrade request for host ("host:port") and path. 0, or -1. */
int ws_client_request(struct evbuffer *out, const char *host, const char *path,
                      const char *key);

/*
 * Check the server's answer to a request sent with key. Returns 1 (a 101
 * with Upgrade, Connection and the right Sec-WebSocket-Accept; drained
 * from in), 0 (incomplete) or -1 with *why (refused, malformed, or longer
 * than max_header).
 */
int ws_client_response(struct evbuffer *in, size_t max_header, const char *key,
                       const char **why);

#endif
