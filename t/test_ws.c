/* check suite for src/common/ws: upgrade handshake, frame codec. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/ws.h"

#define RFC_KEY    "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};

static const char good_req[] = "GET /sub HTTP/1.1\r\n"
                               "Host: example.com\r\n"
                               "Upgrade: websocket\r\n"
                               "Connection: keep-alive, Upgrade\r\n"
                               "Sec-WebSocket-Key: " RFC_KEY "\r\n"
                               "Sec-WebSocket-Version: 13\r\n"
                               "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n"
                               "\r\n";

static struct evbuffer *
buf_of(const void *s, size_t n)
{
	struct evbuffer *b = evbuffer_new();

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(evbuffer_add(b, s, n), 0);
	return b;
}

/* Parse a whole request; returns rc, status and why through pointers. */
static int
parse_all(const char *req, size_t max, const char *path, int *status,
          const char **why, struct ws_handshake *hs)
{
	struct evbuffer *in = buf_of(req, strlen(req));
	int rc;

	ws_handshake_init(hs);
	*status = 0;
	*why = NULL;
	rc = ws_handshake_parse(in, max, path, hs, status, why);
	if (rc == 1)
		ck_assert_uint_eq(evbuffer_get_length(in), 0);
	else
		ck_assert_uint_eq(evbuffer_get_length(in), strlen(req));
	evbuffer_free(in);
	return rc;
}

/* Whole-buffer contents as a NUL-terminated string (caller frees). */
static char *
buf_str(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	evbuffer_copyout(b, s, n);
	s[n] = '\0';
	return s;
}

START_TEST(test_accept_key_rfc)
{
	char acc[WS_ACCEPT_LEN + 1];

	ck_assert_int_eq(ws_accept_key(RFC_KEY, acc), 0);
	ck_assert_str_eq(acc, RFC_ACCEPT);
}
END_TEST

START_TEST(test_handshake_good)
{
	struct ws_handshake hs;
	struct evbuffer *in, *out;
	const char *why = NULL;
	int status = 0;
	char *s;

	/* Bytes after the request (an early frame) must stay. */
	in = buf_of(good_req, strlen(good_req));
	evbuffer_add(in, "XYZ", 3);
	ws_handshake_init(&hs);
	ck_assert_int_eq(
	    ws_handshake_parse(in, 8192, "/sub", &hs, &status, &why), 1);
	ck_assert_uint_eq(evbuffer_get_length(in), 3);
	ck_assert_str_eq(hs.key, RFC_KEY);
	ck_assert_str_eq(hs.addr, "10.0.0.1");

	out = evbuffer_new();
	ck_assert_int_eq(ws_handshake_accept(out, &hs), 0);
	s = buf_str(out);
	ck_assert_ptr_nonnull(
	    strstr(s, "HTTP/1.1 101 Switching Protocols\r\n"));
	ck_assert_ptr_nonnull(
	    strstr(s, "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "Upgrade: websocket\r\n"));
	ck_assert_str_eq(s + strlen(s) - 4, "\r\n\r\n");
	free(s);
	ck_assert_int_eq(ws_client_response(out, 4096, RFC_KEY, &why), 1);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_handshake_byte_at_a_time)
{
	struct ws_handshake hs;
	struct evbuffer *in = evbuffer_new();
	const char *why = NULL;
	size_t i, n = strlen(good_req);
	int status = 0, rc;

	ws_handshake_init(&hs);
	for (i = 0; i < n; i++) {
		evbuffer_add(in, good_req + i, 1);
		rc = ws_handshake_parse(in, 8192, "/sub", &hs, &status, &why);
		if (i + 1 < n) {
			ck_assert_msg(rc == 0, "rc %d at byte %zu (%s)", rc, i,
			              why ? why : "");
			ck_assert_uint_eq(evbuffer_get_length(in), i + 1);
			/* The search resumes near the end, not at 0. */
			if (i + 2 == n)
				ck_assert_uint_ge(hs.scanned, n - 4);
		} else {
			ck_assert_int_eq(rc, 1);
		}
	}
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	ck_assert_str_eq(hs.key, RFC_KEY);
	evbuffer_free(in);
}
END_TEST

START_TEST(test_handshake_lf_only_and_query)
{
	struct ws_handshake hs;
	const char *why;
	int status;

	ck_assert_int_eq(parse_all("GET /sub?platform=web&x=1 HTTP/1.1\n"
	                           "Host: h\n"
	                           "upgrade: WebSocket\n"
	                           "CONNECTION: upgrade\n"
	                           "sec-websocket-key: " RFC_KEY "\n"
	                           "Sec-WebSocket-Version: 13\n"
	                           "X-Real-IP: 2001:db8::1\n"
	                           "X-Forwarded-For: 10.0.0.9\n"
	                           "\n",
	                           4096, "/sub", &status, &why, &hs),
	                 1);
	ck_assert_str_eq(hs.addr, "2001:db8::1");
	/* A header value that is not an IP literal is not kept. */
	ck_assert_int_eq(parse_all("GET /sub HTTP/1.1\r\nHost: h\r\n"
	                           "Upgrade: websocket\r\n"
	                           "Connection: Upgrade\r\n"
	                           "Sec-WebSocket-Key: " RFC_KEY "\r\n"
	                           "Sec-WebSocket-Version: 13\r\n"
	                           "X-Real-IP: <script>\r\n"
	                           "X-Forwarded-For: 192.0.2.7\r\n\r\n",
	                           4096, "/sub", &status, &why, &hs),
	                 1);
	ck_assert_str_eq(hs.addr, "192.0.2.7");
	ck_assert_int_eq(parse_all("GET /sub HTTP/1.1\r\nHost: h\r\n"
	                           "Upgrade: websocket\r\n"
	                           "Connection: Upgrade\r\n"
	                           "Sec-WebSocket-Key: " RFC_KEY "\r\n"
	                           "Sec-WebSocket-Version: 13\r\n\r\n",
	                           4096, "/sub", &status, &why, &hs),
	                 1);
	ck_assert_str_eq(hs.addr, "");
}
END_TEST

struct reject_case {
	const char *req;
	int status;
};

#define REQ(line, headers) line "\r\n" headers "\r\n"
#define H_HOST             "Host: h\r\n"
#define H_UPG              "Upgrade: websocket\r\n"
#define H_CONN             "Connection: Upgrade\r\n"
#define H_KEY              "Sec-WebSocket-Key: " RFC_KEY "\r\n"
#define H_VER              "Sec-WebSocket-Version: 13\r\n"
#define H_ALL              H_HOST H_UPG H_CONN H_KEY H_VER

static const struct reject_case rejects[] = {
    {REQ("POST /sub HTTP/1.1", H_ALL), 405},
    {REQ("get /sub HTTP/1.1", H_ALL), 405},
    {REQ("OPTIONSXX /sub HTTP/1.1", H_ALL), 405},
    {REQ("GET /sub HTTP/1.0", H_ALL), 400},
    {REQ("GET /sub HTTP/2", H_ALL), 400},
    {REQ("GET /sub", H_ALL), 400},
    {REQ("GET  /sub HTTP/1.1", H_ALL), 400},
    {REQ("GET /sub HTTP/1.1 ", H_ALL), 400},
    {REQ(" GET /sub HTTP/1.1", H_ALL), 400},
    {REQ("GET /pub HTTP/1.1", H_ALL), 404},
    {REQ("GET /subx HTTP/1.1", H_ALL), 404},
    {REQ("GET /sub/ HTTP/1.1", H_ALL), 404},
    {REQ("GET / HTTP/1.1", H_ALL), 404},
    {REQ("GET /su HTTP/1.1", H_ALL), 404},
    {REQ("GET /sub HTTP/1.1", H_UPG H_CONN H_KEY H_VER), 400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_HOST H_UPG H_CONN H_KEY H_VER), 400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_CONN H_KEY H_VER), 400},
    {REQ("GET /sub HTTP/1.1", H_HOST "Upgrade: h2c\r\n" H_CONN H_KEY H_VER),
     400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_UPG H_KEY H_VER), 400},
    {REQ("GET /sub HTTP/1.1",
         H_HOST H_UPG "Connection: keep-alive\r\n" H_KEY H_VER),
     400},
    {REQ("GET /sub HTTP/1.1",
         H_HOST H_UPG "Connection: upgrader\r\n" H_KEY H_VER),
     400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_UPG H_CONN H_KEY), 426},
    {REQ("GET /sub HTTP/1.1",
         H_HOST H_UPG H_CONN H_KEY "Sec-WebSocket-Version: 8\r\n"),
     426},
    {REQ("GET /sub HTTP/1.1",
         H_HOST H_UPG H_CONN H_KEY "Sec-WebSocket-Version: 130\r\n"),
     426},
    {REQ("GET /sub HTTP/1.1", H_HOST H_UPG H_CONN H_VER), 400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_UPG H_CONN H_KEY H_KEY H_VER), 400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_UPG H_CONN
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ\r\n" H_VER),
     400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_UPG H_CONN
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=\r\n" H_VER),
     400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_UPG H_CONN
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25j*Q==\r\n" H_VER),
     400},
    {REQ("GET /sub HTTP/1.1", H_HOST H_UPG H_CONN
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==AA\r\n" H_VER),
     400},
    {REQ("GET /sub HTTP/1.1",
         H_HOST H_UPG H_CONN "Sec-WebSocket-Key:\r\n" H_VER),
     400},
    /* Folded line, missing colon, space before colon, bad name chars. */
    {REQ("GET /sub HTTP/1.1", H_ALL " folded\r\n"), 400},
    {REQ("GET /sub HTTP/1.1", H_ALL "NoColon\r\n"), 400},
    {REQ("GET /sub HTTP/1.1", H_ALL "Bad Name: x\r\n"), 400},
    {REQ("GET /sub HTTP/1.1", H_ALL ": empty\r\n"), 400},
    {REQ("GET /sub HTTP/1.1", H_ALL "X-A: a\x01z\r\n"), 400},
    {REQ("GET /sub HTTP/1.1", H_ALL "X-A: a\rz\r\n"), 400},
    {REQ("GET /s\x7fub HTTP/1.1", H_ALL), 400},
    {"\r\nGET /sub HTTP/1.1\r\n" H_ALL "\r\n", 400},
};

START_TEST(test_handshake_rejects)
{
	const struct reject_case *rc = &rejects[_i];
	struct ws_handshake hs;
	const char *why = NULL;
	int status = 0;

	ck_assert_msg(parse_all(rc->req, 8192, "/sub", &status, &why, &hs) ==
	                  -1,
	              "case %d accepted", _i);
	ck_assert_msg(status == rc->status, "case %d: status %d (%s), want %d",
	              _i, status, why ? why : "", rc->status);
	ck_assert_ptr_nonnull(why);
	ck_assert_uint_gt(strlen(why), 0);
}
END_TEST

START_TEST(test_handshake_early_reject)
{
	struct ws_handshake hs;
	struct evbuffer *in;
	const char *why = NULL;
	int status = 0;
	/* A goim TCP frame header on the WebSocket port. */
	static const uint8_t goim[] = {0, 0, 0, 0x20, 0, 0x10, 0, 1};

	in = buf_of(goim, 1);
	ws_handshake_init(&hs);
	ck_assert_int_eq(
	    ws_handshake_parse(in, 8192, "/sub", &hs, &status, &why), -1);
	ck_assert_int_eq(status, 400);
	evbuffer_free(in);

	/* The method is judged when its space arrives. */
	in = buf_of("POST", 4);
	ws_handshake_init(&hs);
	ck_assert_int_eq(
	    ws_handshake_parse(in, 8192, "/sub", &hs, &status, &why), 0);
	evbuffer_add(in, " ", 1);
	ck_assert_int_eq(
	    ws_handshake_parse(in, 8192, "/sub", &hs, &status, &why), -1);
	ck_assert_int_eq(status, 405);
	evbuffer_free(in);

	in = buf_of("GE", 2);
	ws_handshake_init(&hs);
	ck_assert_int_eq(
	    ws_handshake_parse(in, 8192, "/sub", &hs, &status, &why), 0);
	evbuffer_free(in);
}
END_TEST

START_TEST(test_handshake_too_large)
{
	struct ws_handshake hs;
	struct evbuffer *in = evbuffer_new();
	const char *why = NULL;
	size_t n = strlen(good_req), i;
	int status = 0, rc = 0;

	/* Exactly max_header bytes: accepted. */
	ck_assert_int_eq(parse_all(good_req, n, "/sub", &status, &why, &hs), 1);
	/* One byte less: refused once max_header bytes are buffered. */
	ws_handshake_init(&hs);
	for (i = 0; i < n; i++) {
		evbuffer_add(in, good_req + i, 1);
		rc = ws_handshake_parse(in, n - 1, "/sub", &hs, &status, &why);
		if (rc != 0)
			break;
	}
	ck_assert_int_eq(rc, -1);
	ck_assert_int_eq(status, 431);
	ck_assert_uint_eq(i + 1, n - 1);
	evbuffer_free(in);

	/* A stream of header lines that never ends. */
	in = evbuffer_new();
	evbuffer_add_printf(in, "GET /sub HTTP/1.1\r\n");
	for (i = 0; i < 1000; i++)
		evbuffer_add_printf(in, "X-Pad-%zu: yyyyyyyyyyyyyyyy\r\n", i);
	ws_handshake_init(&hs);
	ck_assert_int_eq(
	    ws_handshake_parse(in, 4096, "/sub", &hs, &status, &why), -1);
	ck_assert_int_eq(status, 431);
	evbuffer_free(in);
}
END_TEST

START_TEST(test_handshake_reject_response)
{
	struct evbuffer *out = evbuffer_new();
	char *s;

	ck_assert_int_eq(ws_handshake_reject(out, 426, "version 13 only"), 0);
	s = buf_str(out);
	ck_assert_ptr_nonnull(strstr(s, "HTTP/1.1 426 Upgrade Required\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "Sec-WebSocket-Version: 13\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "Connection: close\r\n"));
	ck_assert_ptr_nonnull(strstr(s, "Content-Length: 16\r\n"));
	ck_assert_str_eq(strstr(s, "\r\n\r\n") + 4, "version 13 only\n");
	free(s);
	evbuffer_drain(out, evbuffer_get_length(out));

	ck_assert_int_eq(ws_handshake_reject(out, 404, "not found"), 0);
	s = buf_str(out);
	ck_assert_ptr_nonnull(strstr(s, "HTTP/1.1 404 Not Found\r\n"));
	ck_assert_ptr_null(strstr(s, "Sec-WebSocket-Version"));
	ck_assert_ptr_nonnull(strstr(s, "Connection: close\r\n"));
	free(s);
	evbuffer_drain(out, evbuffer_get_length(out));

	ck_assert_int_eq(ws_handshake_reject(out, 431, NULL), 0);
	s = buf_str(out);
	ck_assert_ptr_nonnull(
	    strstr(s, "HTTP/1.1 431 Request Header Fields Too Large\r\n"));
	free(s);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_client_side)
{
	struct ws_handshake hs;
	struct evbuffer *b = evbuffer_new(), *out = evbuffer_new();
	const char *why = NULL;
	char key[WS_KEY_LEN + 1], key2[WS_KEY_LEN + 1], *resp;
	int status = 0;
	size_t n, i;

	ck_assert_int_eq(ws_client_key(key), 0);
	ck_assert_int_eq(ws_client_key(key2), 0);
	ck_assert_uint_eq(strlen(key), WS_KEY_LEN);
	ck_assert_str_ne(key, key2);
	ck_assert_int_eq(ws_client_request(b, "127.0.0.1:3102", "/sub", key),
	                 0);
	ws_handshake_init(&hs);
	ck_assert_int_eq(
	    ws_handshake_parse(b, 4096, "/sub", &hs, &status, &why), 1);
	ck_assert_str_eq(hs.key, key);
	ck_assert_int_eq(ws_handshake_accept(out, &hs), 0);

	/* The client reads the 101 byte by byte; a frame may follow it. */
	evbuffer_add(out, "\x82\x00", 2);
	n = evbuffer_get_length(out);
	resp = malloc(n);
	evbuffer_copyout(out, resp, n);
	for (i = 0; i < n - 2; i++) {
		evbuffer_drain(b, evbuffer_get_length(b));
		evbuffer_add(b, resp, i);
		ck_assert_int_eq(ws_client_response(b, 4096, key, &why), 0);
	}
	free(resp);
	ck_assert_int_eq(ws_client_response(out, 4096, key, &why), 1);
	ck_assert_uint_eq(evbuffer_get_length(out), 2);
	evbuffer_drain(out, 2);

	/* Wrong accept, refusals, garbage. */
	evbuffer_add_printf(out,
	                    "HTTP/1.1 101 Switching Protocols\r\n"
	                    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	                    "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n");
	ck_assert_int_eq(ws_client_response(out, 4096, key, &why), -1);
	ck_assert_int_eq(ws_client_response(out, 4096, RFC_KEY, &why), 1);
	evbuffer_add_printf(out,
	                    "HTTP/1.1 101 Switching Protocols\r\n"
	                    "Connection: Upgrade\r\n"
	                    "Sec-WebSocket-Accept: " RFC_ACCEPT "\r\n\r\n");
	ck_assert_int_eq(ws_client_response(out, 4096, RFC_KEY, &why), -1);
	evbuffer_drain(out, evbuffer_get_length(out));
	ck_assert_int_eq(ws_handshake_reject(out, 404, "not found"), 0);
	ck_assert_int_eq(ws_client_response(out, 4096, RFC_KEY, &why), -1);
	ck_assert_int_eq(ws_client_response(out, 10, RFC_KEY, &why), -1);
	evbuffer_free(b);
	evbuffer_free(out);
}
END_TEST

/* -------------------------------------------------------------------------
 * Frames
 */

static int
rd(struct ws_reader *r, struct evbuffer *in, size_t max, struct ws_message *m,
   int *cc)
{
	const char *why = NULL;
	int rc;

	*cc = 0;
	rc = ws_read_message(r, in, max, m, cc, &why);
	if (rc == -1)
		ck_assert_ptr_nonnull(why);
	return rc;
}

/* Expect one protocol error with close code cc from the bytes given. */
static void
expect_error(const void *bytes, size_t n, size_t max, int want)
{
	struct ws_reader r;
	struct ws_message m;
	struct evbuffer *in = buf_of(bytes, n);
	int cc;

	ws_reader_init(&r);
	ck_assert_int_eq(rd(&r, in, max, &m, &cc), -1);
	ck_assert_int_eq(cc, want);
	ws_reader_reset(&r);
	evbuffer_free(in);
}

START_TEST(test_reader_is_small)
{
	ck_assert_uint_le(sizeof(struct ws_reader), 16);
}
END_TEST

static const size_t sizes[] = {0, 1, 125, 126, 65535, 65536, 100000};

START_TEST(test_frame_round_trip)
{
	size_t n = sizes[_i], hl, i;
	uint8_t *payload = malloc(n + 1), h[10], raw[14];
	struct evbuffer *in = evbuffer_new();
	struct ws_reader r;
	struct ws_message m;
	int cc;

	for (i = 0; i < n; i++)
		payload[i] = (uint8_t)(i * 7 + 3);
	ck_assert_int_eq(
	    ws_write_masked_frame(in, WS_OP_BINARY, 1, payload, n, mask), 0);
	hl = ws_frame_header(h, WS_OP_BINARY, n);
	ck_assert_uint_eq(hl, n < 126 ? 2 : n <= 65535 ? 4 : 10);
	ck_assert_uint_eq(evbuffer_get_length(in), hl + 4 + n);
	/* The masked header is the server header with the mask bit. */
	evbuffer_copyout(in, raw, hl + 4);
	ck_assert_int_eq(raw[0], h[0]);
	ck_assert_int_eq(raw[1], h[1] | 0x80);
	ck_assert_mem_eq(raw + 2, h + 2, hl - 2);
	ck_assert_mem_eq(raw + hl, mask, 4);

	ws_reader_init(&r);
	ck_assert_int_eq(rd(&r, in, 100000, &m, &cc), 1);
	ck_assert_int_eq(m.opcode, WS_OP_BINARY);
	ck_assert_uint_eq(m.len, n);
	ck_assert_ptr_nonnull(m.data);
	if (n > 0)
		ck_assert_mem_eq(m.data, payload, n);
	ck_assert_ptr_null(r.partial);
	ws_message_done(&r, in, &m);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	ck_assert_int_eq(rd(&r, in, 100000, &m, &cc), 0);
	ws_reader_reset(&r);
	evbuffer_free(in);
	free(payload);
}
END_TEST

START_TEST(test_frame_header_bytes)
{
	uint8_t h[10];
	static const uint8_t h64k[10] = {0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0};
	struct evbuffer *out = evbuffer_new();
	uint8_t b[8];

	ck_assert_uint_eq(ws_frame_header(h, WS_OP_TEXT, 5), 2);
	ck_assert_int_eq(h[0], 0x81);
	ck_assert_int_eq(h[1], 5);
	ck_assert_uint_eq(ws_frame_header(h, WS_OP_BINARY, 126), 4);
	ck_assert_int_eq(h[1], 126);
	ck_assert_int_eq(h[2], 0);
	ck_assert_int_eq(h[3], 126);
	ck_assert_uint_eq(ws_frame_header(h, WS_OP_BINARY, 65535), 4);
	ck_assert_int_eq(h[2], 0xff);
	ck_assert_int_eq(h[3], 0xff);
	ck_assert_uint_eq(ws_frame_header(h, WS_OP_BINARY, 65536), 10);
	ck_assert_mem_eq(h, h64k, 10);

	ck_assert_int_eq(ws_write_frame(out, WS_OP_BINARY, "abc", 3), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 5);
	evbuffer_remove(out, b, 5);
	ck_assert_mem_eq(b,
	                 "\x82\x03"
	                 "abc",
	                 5);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_fragmented)
{
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	struct ws_reader r;
	struct ws_message m;
	uint8_t big[300], b[8];
	int cc;

	memset(big, 'x', sizeof(big));
	ws_write_masked_frame(in, WS_OP_TEXT, 0, "Hel", 3, mask);
	ws_write_masked_frame(in, WS_OP_PING, 1, "p", 1, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 0, "", 0, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 0, big, sizeof(big), mask);
	ws_write_masked_frame(in, WS_OP_CONT, 1, "lo", 2, mask);
	ws_write_masked_frame(in, WS_OP_BINARY, 1, "next", 4, mask);
	ws_reader_init(&r);

	/* A control frame may arrive between fragments. */
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 2);
	ck_assert_int_eq(m.opcode, WS_OP_PING);
	ck_assert_uint_eq(m.len, 1);
	ck_assert_ptr_nonnull(r.partial);
	ck_assert_int_eq(ws_control_reply(out, &m), 0);
	evbuffer_remove(out, b, 8);
	ck_assert_mem_eq(b, "\x8a\x01p", 3);
	ws_message_done(&r, in, &m);

	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 1);
	ck_assert_int_eq(m.opcode, WS_OP_TEXT);
	ck_assert_uint_eq(m.len, 3 + sizeof(big) + 2);
	ck_assert_mem_eq(m.data, "Hel", 3);
	ck_assert_mem_eq(m.data + 3, big, sizeof(big));
	ck_assert_mem_eq(m.data + 3 + sizeof(big), "lo", 2);
	ws_message_done(&r, in, &m);
	ck_assert_ptr_null(r.partial);

	/* Without ws_message_done, the next call releases the last one. */
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 1);
	ck_assert_int_eq(m.opcode, WS_OP_BINARY);
	ck_assert_mem_eq(m.data, "next", 4);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 0);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);

	/* An empty fragmented message. */
	ws_write_masked_frame(in, WS_OP_BINARY, 0, "", 0, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 1, "", 0, mask);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 1);
	ck_assert_uint_eq(m.len, 0);
	ck_assert_ptr_nonnull(m.data);
	ws_message_done(&r, in, &m);

	/* A message in flight is freed by reset. */
	ws_write_masked_frame(in, WS_OP_BINARY, 0, "abc", 3, mask);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 0);
	ck_assert_ptr_nonnull(r.partial);
	ws_reader_reset(&r);
	ck_assert_ptr_null(r.partial);
	ws_reader_reset(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_max_message)
{
	struct evbuffer *in = evbuffer_new(), *tmp = evbuffer_new();
	struct ws_reader r;
	struct ws_message m;
	uint8_t buf[200] = {0};
	uint8_t hdr[8] = {0x82, 0x80 | 126, 0x10, 0x00, 1, 2, 3, 4};
	int cc;

	/* Exactly the limit passes. */
	ws_reader_init(&r);
	ws_write_masked_frame(in, WS_OP_BINARY, 1, buf, 100, mask);
	ck_assert_int_eq(rd(&r, in, 100, &m, &cc), 1);
	ws_message_done(&r, in, &m);

	/* One byte over: 1009 from the header alone, before the payload. */
	ws_write_masked_frame(tmp, WS_OP_BINARY, 1, buf, 101, mask);
	evbuffer_remove_buffer(tmp, in, 2);
	ck_assert_uint_eq(evbuffer_get_length(in), 2);
	ck_assert_int_eq(rd(&r, in, 100, &m, &cc), -1);
	ck_assert_int_eq(cc, WS_CLOSE_TOO_BIG);
	ws_reader_reset(&r);
	evbuffer_drain(in, evbuffer_get_length(in));

	evbuffer_add(in, hdr, sizeof(hdr)); /* claims 4096 bytes */
	ck_assert_int_eq(rd(&r, in, 4095, &m, &cc), -1);
	ck_assert_int_eq(cc, WS_CLOSE_TOO_BIG);
	ws_reader_reset(&r);
	evbuffer_drain(in, evbuffer_get_length(in));

	/* The fragments' sum counts. */
	ws_write_masked_frame(in, WS_OP_BINARY, 0, buf, 60, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 0, buf, 40, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 1, buf, 1, mask);
	ck_assert_int_eq(rd(&r, in, 100, &m, &cc), -1);
	ck_assert_int_eq(cc, WS_CLOSE_TOO_BIG);
	ws_reader_reset(&r);
	evbuffer_drain(in, evbuffer_get_length(in));

	/* A control frame does not count against the message. */
	ws_write_masked_frame(in, WS_OP_BINARY, 0, buf, 100, mask);
	ws_write_masked_frame(in, WS_OP_PING, 1, buf, 125, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 1, "", 0, mask);
	ck_assert_int_eq(rd(&r, in, 100, &m, &cc), 2);
	ck_assert_int_eq(rd(&r, in, 100, &m, &cc), 1);
	ck_assert_uint_eq(m.len, 100);
	ws_reader_reset(&r);
	evbuffer_free(in);
	evbuffer_free(tmp);
}
END_TEST

START_TEST(test_protocol_errors)
{
	uint8_t b[300];
	struct evbuffer *in = evbuffer_new();
	size_t n;

	/* Unmasked client frame. */
	expect_error("\x82\x03"
	             "abc",
	             5, 4096, WS_CLOSE_PROTOCOL);
	/* Reserved opcodes, data and control. */
	expect_error("\x83\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	expect_error("\x87\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	expect_error("\x8b\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	expect_error("\x8f\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	/* RSV1, RSV2, RSV3. */
	expect_error("\xc2\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	expect_error("\xa2\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	expect_error("\x92\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	/* Fragmented control frame. */
	expect_error("\x09\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	expect_error("\x08\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	/* Control frame > 125 bytes, judged on its first two bytes. */
	expect_error("\x89\xfe", 2, 4096, WS_CLOSE_PROTOCOL);
	memset(b, 'p', sizeof(b));
	ws_write_masked_frame(in, WS_OP_PING, 1, b, 126, mask);
	n = evbuffer_remove(in, b, sizeof(b));
	expect_error(b, n, 4096, WS_CLOSE_PROTOCOL);
	/* Continuation with no message; a new message inside one. */
	expect_error("\x80\x80\x00\x00\x00\x00", 6, 4096, WS_CLOSE_PROTOCOL);
	expect_error("\x02\x80\x00\x00\x00\x00"
	             "\x82\x80\x00\x00\x00\x00",
	             12, 4096, WS_CLOSE_PROTOCOL);
	/* 64-bit length with the top bit set. */
	expect_error("\x82\xff\x80\x00\x00\x00\x00\x00\x00\x00", 10, SIZE_MAX,
	             WS_CLOSE_PROTOCOL);
	/* Huge but legal 64-bit length: too big, not a protocol error. */
	expect_error("\x82\xff\x7f\xff\xff\xff\xff\xff\xff\xff", 10, SIZE_MAX,
	             WS_CLOSE_TOO_BIG);
	evbuffer_free(in);
}
END_TEST

static void
expect_masked(int op, int fin, const void *data, size_t n, int want_rc,
              int want_cc)
{
	struct evbuffer *in = evbuffer_new();
	struct ws_reader r;
	struct ws_message m;
	int cc;

	ws_reader_init(&r);
	ws_write_masked_frame(in, op, fin, data, n, mask);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), want_rc);
	if (want_rc == -1)
		ck_assert_int_eq(cc, want_cc);
	ws_reader_reset(&r);
	evbuffer_free(in);
}

START_TEST(test_utf8)
{
	struct evbuffer *in = evbuffer_new();
	struct ws_reader r;
	struct ws_message m;
	int cc;

	expect_masked(WS_OP_TEXT, 1, "plain", 5, 1, 0);
	expect_masked(WS_OP_TEXT, 1, "\xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9",
	              12, 1, 0);
	expect_masked(WS_OP_TEXT, 1, "\xc0\xaf", 2, -1, WS_CLOSE_INVALID_DATA);
	expect_masked(WS_OP_TEXT, 1, "\xe0\x80\xaf", 3, -1,
	              WS_CLOSE_INVALID_DATA);
	expect_masked(WS_OP_TEXT, 1, "\xed\xa0\x80", 3, -1,
	              WS_CLOSE_INVALID_DATA);
	expect_masked(WS_OP_TEXT, 1, "\xf4\x90\x80\x80", 4, -1,
	              WS_CLOSE_INVALID_DATA);
	expect_masked(WS_OP_TEXT, 1, "\xe2\x82", 2, -1, WS_CLOSE_INVALID_DATA);
	expect_masked(WS_OP_TEXT, 1, "\xff", 1, -1, WS_CLOSE_INVALID_DATA);
	expect_masked(WS_OP_TEXT, 1, "a\x80", 2, -1, WS_CLOSE_INVALID_DATA);
	/* Binary is never checked. */
	expect_masked(WS_OP_BINARY, 1, "\xff\xc0", 2, 1, 0);

	/* A code point split across fragments is fine once assembled. */
	ws_reader_init(&r);
	ws_write_masked_frame(in, WS_OP_TEXT, 0, "\xe2\x82", 2, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 1, "\xac", 1, mask);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 1);
	ck_assert_uint_eq(m.len, 3);
	ws_message_done(&r, in, &m);
	ws_write_masked_frame(in, WS_OP_TEXT, 0, "\xe2\x82", 2, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 1, "x", 1, mask);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), -1);
	ck_assert_int_eq(cc, WS_CLOSE_INVALID_DATA);
	ws_reader_reset(&r);
	evbuffer_free(in);
}
END_TEST

START_TEST(test_ping_pong)
{
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	struct ws_reader r;
	struct ws_message m;
	uint8_t b[200], p[125];
	int cc;

	memset(p, 'q', sizeof(p));
	ws_reader_init(&r);
	ws_write_masked_frame(in, WS_OP_PING, 1, p, sizeof(p), mask);
	ck_assert_int_eq(rd(&r, in, 16, &m, &cc), 2);
	ck_assert_int_eq(m.opcode, WS_OP_PING);
	ck_assert_uint_eq(m.len, 125);
	ck_assert_int_eq(ws_control_reply(out, &m), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 127);
	evbuffer_remove(out, b, sizeof(b));
	ck_assert_int_eq(b[0], 0x8a);
	ck_assert_int_eq(b[1], 125);
	ck_assert_mem_eq(b + 2, p, 125);
	ws_message_done(&r, in, &m);

	ws_write_masked_frame(in, WS_OP_PING, 1, "", 0, mask);
	ck_assert_int_eq(rd(&r, in, 16, &m, &cc), 2);
	ck_assert_int_eq(ws_control_reply(out, &m), 0);
	evbuffer_remove(out, b, sizeof(b));
	ck_assert_mem_eq(b, "\x8a\x00", 2);

	/* An unsolicited pong is delivered and needs no answer. */
	ws_write_masked_frame(in, WS_OP_PONG, 1, "hb", 2, mask);
	ck_assert_int_eq(rd(&r, in, 16, &m, &cc), 2);
	ck_assert_int_eq(m.opcode, WS_OP_PONG);
	ck_assert_mem_eq(m.data, "hb", 2);
	ck_assert_int_eq(ws_control_reply(out, &m), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 0);
	ws_message_done(&r, in, &m);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	ws_reader_reset(&r);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

START_TEST(test_close)
{
	struct evbuffer *in = evbuffer_new(), *out = evbuffer_new();
	struct ws_reader r;
	struct ws_message m;
	uint8_t b[200];
	char longr[200];
	int cc;

	ws_reader_init(&r);
	ws_write_masked_frame(in, WS_OP_CLOSE, 1,
	                      "\x03\xe9"
	                      "bye",
	                      5, mask);
	ws_write_masked_frame(in, WS_OP_BINARY, 1, "late", 4, mask);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 2);
	ck_assert_int_eq(m.opcode, WS_OP_CLOSE);
	ck_assert_int_eq(m.close_code, 1001);
	ck_assert_uint_eq(m.len, 3);
	ck_assert_mem_eq(m.data, "bye", 3);
	ck_assert_int_eq(ws_control_reply(out, &m), 0);
	evbuffer_remove(out, b, sizeof(b));
	ck_assert_mem_eq(b, "\x88\x02\x03\xe9", 4);
	/* Nothing is read after a close. */
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 0);
	ws_reader_reset(&r);
	evbuffer_drain(in, evbuffer_get_length(in));

	/* No code: 1005 internally, an empty close back. */
	ws_write_masked_frame(in, WS_OP_CLOSE, 1, "", 0, mask);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 2);
	ck_assert_int_eq(m.close_code, WS_CLOSE_NO_STATUS);
	ck_assert_int_eq(ws_control_reply(out, &m), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 2);
	evbuffer_remove(out, b, sizeof(b));
	ck_assert_mem_eq(b, "\x88\x00", 2);
	ws_reader_reset(&r);
	evbuffer_drain(in, evbuffer_get_length(in));

	/* A close ends a fragmented message and frees it. */
	ws_write_masked_frame(in, WS_OP_BINARY, 0, "abc", 3, mask);
	ws_write_masked_frame(in, WS_OP_CLOSE, 1, "\x0b\xb8", 2, mask);
	ck_assert_int_eq(rd(&r, in, 4096, &m, &cc), 2);
	ck_assert_int_eq(m.close_code, 3000);
	ck_assert_ptr_null(r.partial);
	ws_reader_reset(&r);
	evbuffer_drain(in, evbuffer_get_length(in));

	/* Bad close payloads. */
	expect_masked(WS_OP_CLOSE, 1, "\x03", 1, -1, WS_CLOSE_PROTOCOL);
	expect_masked(WS_OP_CLOSE, 1, "\x03\xed", 2, -1, WS_CLOSE_PROTOCOL);
	expect_masked(WS_OP_CLOSE, 1, "\x03\xee", 2, -1, WS_CLOSE_PROTOCOL);
	expect_masked(WS_OP_CLOSE, 1, "\x03\xe7", 2, -1, WS_CLOSE_PROTOCOL);
	expect_masked(WS_OP_CLOSE, 1, "\x07\xd0", 2, -1, WS_CLOSE_PROTOCOL);
	expect_masked(WS_OP_CLOSE, 1, "\x13\x88", 2, -1, WS_CLOSE_PROTOCOL);
	expect_masked(WS_OP_CLOSE, 1, "\x03\xe8\xff", 3, -1,
	              WS_CLOSE_INVALID_DATA);
	expect_masked(WS_OP_CLOSE, 1, "\x0f\x9f", 2, 2, 0); /* 3999 */
	expect_masked(WS_OP_CLOSE, 1, "\x03\xf3", 2, 2, 0); /* 1011 */

	/* ws_write_close: code and reason, truncated to 125 bytes. */
	ck_assert_int_eq(ws_write_close(out, 1002, "bad frame"), 0);
	evbuffer_remove(out, b, sizeof(b));
	ck_assert_mem_eq(b,
	                 "\x88\x0b\x03\xea"
	                 "bad frame",
	                 13);
	memset(longr, 'r', sizeof(longr) - 1);
	longr[sizeof(longr) - 1] = '\0';
	ck_assert_int_eq(ws_write_close(out, 1000, longr), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 127);
	evbuffer_remove(out, b, sizeof(b));
	ck_assert_int_eq(b[1], 125);
	ck_assert_int_eq(ws_write_close(out, 0, "ignored"), 0);
	ck_assert_uint_eq(evbuffer_get_length(out), 2);
	evbuffer_free(in);
	evbuffer_free(out);
}
END_TEST

/* A stream of frames of every kind, and what the reader must deliver. */
static void
build_stream(struct evbuffer *in)
{
	static uint8_t big[70000];
	size_t i;

	for (i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i ^ (i >> 8));
	ws_write_masked_frame(in, WS_OP_BINARY, 1, "one", 3, mask);
	ws_write_masked_frame(in, WS_OP_TEXT, 1, "two", 3, mask);
	ws_write_masked_frame(in, WS_OP_PING, 1, "3", 1, mask);
	ws_write_masked_frame(in, WS_OP_BINARY, 0, big, 200, mask);
	ws_write_masked_frame(in, WS_OP_PONG, 1, "", 0, mask);
	ws_write_masked_frame(in, WS_OP_CONT, 1, big + 200, 1000, mask);
	ws_write_masked_frame(in, WS_OP_BINARY, 1, big, sizeof(big), mask);
	ws_write_masked_frame(in, WS_OP_BINARY, 1, "", 0, mask);
	ws_write_masked_frame(in, WS_OP_CLOSE, 1, "\x03\xe8", 2, mask);
}

static void
check_stream(struct ws_message *got, size_t n)
{
	static const int ops[] = {WS_OP_BINARY, WS_OP_TEXT,   WS_OP_PING,
	                          WS_OP_PONG,   WS_OP_BINARY, WS_OP_BINARY,
	                          WS_OP_BINARY, WS_OP_CLOSE};
	static const size_t lens[] = {3, 3, 1, 0, 1200, 70000, 0, 0};
	size_t i;

	ck_assert_uint_eq(n, 8);
	for (i = 0; i < n; i++) {
		ck_assert_msg(got[i].opcode == ops[i], "msg %zu opcode %d", i,
		              got[i].opcode);
		ck_assert_msg(got[i].len == lens[i], "msg %zu len %zu", i,
		              got[i].len);
	}
	ck_assert_int_eq(got[7].close_code, 1000);
}

START_TEST(test_many_in_one_buffer)
{
	struct evbuffer *in = evbuffer_new();
	struct ws_reader r;
	struct ws_message m, got[16];
	size_t n = 0;
	int rc, cc;

	build_stream(in);
	ws_reader_init(&r);
	while ((rc = rd(&r, in, 100000, &m, &cc)) > 0) {
		ck_assert_uint_lt(n, 16);
		if (m.opcode == WS_OP_BINARY && m.len == 3)
			ck_assert_mem_eq(m.data, "one", 3);
		if (m.len == 1200)
			ck_assert_int_eq(m.data[1100], (uint8_t)(1100 ^ 4));
		got[n++] = m;
	}
	ck_assert_int_eq(rc, 0);
	check_stream(got, n);
	ck_assert_uint_eq(evbuffer_get_length(in), 0);
	ws_reader_reset(&r);
	evbuffer_free(in);
}
END_TEST

START_TEST(test_byte_at_a_time)
{
	struct evbuffer *src = evbuffer_new(), *in = evbuffer_new();
	struct ws_reader r;
	struct ws_message m, got[16];
	size_t n = 0, max_in = 0;
	uint8_t byte;
	int rc, cc;

	build_stream(src);
	ws_reader_init(&r);
	while (evbuffer_remove(src, &byte, 1) == 1) {
		evbuffer_add(in, &byte, 1);
		while ((rc = rd(&r, in, 100000, &m, &cc)) > 0) {
			ck_assert_uint_lt(n, 16);
			got[n++] = m;
		}
		ck_assert_int_eq(rc, 0);
		if (evbuffer_get_length(in) > max_in)
			max_in = evbuffer_get_length(in);
	}
	check_stream(got, n);
	/* Only one frame at a time was ever waiting. */
	ck_assert_uint_le(max_in, 70000 + WS_FRAME_HEADER_MAX);
	ws_reader_reset(&r);
	evbuffer_free(src);
	evbuffer_free(in);
}
END_TEST

static Suite *
ws_suite(void)
{
	Suite *s = suite_create("ws");
	TCase *tc = tcase_create("handshake");

	tcase_add_test(tc, test_accept_key_rfc);
	tcase_add_test(tc, test_handshake_good);
	tcase_add_test(tc, test_handshake_byte_at_a_time);
	tcase_add_test(tc, test_handshake_lf_only_and_query);
	tcase_add_loop_test(tc, test_handshake_rejects, 0,
	                    sizeof(rejects) / sizeof(rejects[0]));
	tcase_add_test(tc, test_handshake_early_reject);
	tcase_add_test(tc, test_handshake_too_large);
	tcase_add_test(tc, test_handshake_reject_response);
	tcase_add_test(tc, test_client_side);
	suite_add_tcase(s, tc);

	tc = tcase_create("frames");
	tcase_add_test(tc, test_reader_is_small);
	tcase_add_loop_test(tc, test_frame_round_trip, 0,
	                    sizeof(sizes) / sizeof(sizes[0]));
	tcase_add_test(tc, test_frame_header_bytes);
	tcase_add_test(tc, test_fragmented);
	tcase_add_test(tc, test_max_message);
	tcase_add_test(tc, test_protocol_errors);
	tcase_add_test(tc, test_utf8);
	tcase_add_test(tc, test_ping_pong);
	tcase_add_test(tc, test_close);
	tcase_add_test(tc, test_many_in_one_buffer);
	tcase_add_test(tc, test_byte_at_a_time);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(ws_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
