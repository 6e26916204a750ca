/*
 * ws: RFC 6455 over libevent evbuffers. See ws.h for the contracts.
 *
 * Why the frame decoder is written here rather than taken from libwslay:
 * wslay's frame context carries a 4 KB input buffer and its event context
 * about 13 KB per connection (measured with wslay 1.1.1), and both pull
 * bytes through a recv callback into their own buffers. imgate holds a
 * million mostly idle connections whose input already sits in a libevent
 * evbuffer, so the decoder works in place on that buffer and keeps 16
 * bytes per connection. The framing itself is small and fully specified.
 */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/util.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "common/ws.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ws_reader.flags */
#define WS_READER_ASSEMBLED 0x01 /* the delivered message lives in partial */
#define WS_READER_CLOSED    0x02 /* a close was delivered: read no more */

/* What an empty assembled message points at. */
static uint8_t ws_empty[1];

/* The longest method we bother to read before calling it "not GET". */
#define WS_METHOD_MAX 8

/* -------------------------------------------------------------------------
 * HTTP head scanning, shared by the server and client sides
 */

/*
 * Find the blank line that ends an HTTP head in p[0..n). Returns the
 * head's length including that line, or 0 when it is not there yet;
 * *scanned remembers where to resume so a head arriving byte by byte is
 * searched once, not once per byte.
 */
static size_t
http_head_end(const char *p, size_t n, uint32_t *scanned)
{
	size_t i;

	for (i = *scanned; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 >= n)
			break;
		if (p[i + 1] == '\n')
			return i + 2;
		if (p[i + 1] == '\r') {
			if (i + 2 >= n)
				break;
			if (p[i + 2] == '\n')
				return i + 3;
		}
	}
	*scanned = (uint32_t)i;
	return 0;
}

struct http_cursor {
	const char *pos;
	const char *end;
};

/*
 * The next line of a head found by http_head_end, without its CR LF.
 * Returns 1 (a line), 0 (the blank line: the end) or -1 (a control
 * character inside the line).
 */
static int
http_next_line(struct http_cursor *c, const char **line, size_t *len)
{
	const char *nl, *s;
	size_t n, i;

	nl = memchr(c->pos, '\n', (size_t)(c->end - c->pos));
	if (nl == NULL)
		return 0; /* cannot happen within a found head */
	s = c->pos;
	n = (size_t)(nl - s);
	c->pos = nl + 1;
	if (n > 0 && s[n - 1] == '\r')
		n--;
	for (i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];

		if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
			return -1;
	}
	*line = s;
	*len = n;
	return n > 0;
}

static int
http_tchar(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
	    (c >= 'A' && c <= 'Z'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int
http_ows(char c)
{
	return c == ' ' || c == '\t';
}

static void
http_trim(const char **s, size_t *n)
{
	while (*n > 0 && http_ows(**s)) {
		(*s)++;
		(*n)--;
	}
	while (*n > 0 && http_ows((*s)[*n - 1]))
		(*n)--;
}

/* Split "Name: value"; -1 for a folded line, no colon or a bad name. */
static int
http_split_header(const char *line, size_t len, const char **name, size_t *nlen,
                  const char **val, size_t *vlen)
{
	const char *colon;
	size_t i;

	colon = memchr(line, ':', len);
	if (colon == NULL || colon == line)
		return -1;
	for (i = 0; line + i < colon; i++)
		if (!http_tchar((unsigned char)line[i]))
			return -1;
	*name = line;
	*nlen = (size_t)(colon - line);
	*val = colon + 1;
	*vlen = len - *nlen - 1;
	http_trim(val, vlen);
	return 0;
}

static int
http_is(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);

	return n == l && evutil_ascii_strncasecmp(s, lit, l) == 0;
}

/* Does a comma-separated list contain tok (case-insensitive)? */
static int
http_list_has(const char *v, size_t n, const char *tok)
{
	const char *end = v + n, *comma, *e;
	size_t len;

	while (v < end) {
		comma = memchr(v, ',', (size_t)(end - v));
		e = comma != NULL ? comma : end;
		len = (size_t)(e - v);
		http_trim(&v, &len);
		if (http_is(v, len, tok))
			return 1;
		v = comma != NULL ? comma + 1 : end;
	}
	return 0;
}

/*
 * Keep addr when it is an IPv4 or IPv6 literal: the value ends up in logs
 * and the shm channel table, so anything else a client wrote is dropped.
 */
static void
http_keep_ip(const char *v, size_t n, char *out, size_t outlen)
{
	char tmp[WS_ADDR_MAX];
	unsigned char bin[16];

	if (n == 0 || n >= sizeof(tmp) || n >= outlen)
		return;
	memcpy(tmp, v, n);
	tmp[n] = '\0';
	if (inet_pton(AF_INET, tmp, bin) != 1 &&
	    inet_pton(AF_INET6, tmp, bin) != 1)
		return;
	memcpy(out, tmp, n + 1);
}

/* -------------------------------------------------------------------------
 * Upgrade request
 */

void
ws_handshake_init(struct ws_handshake *hs)
{
	memset(hs, 0, sizeof(*hs));
}

static int
reject(int code, const char *reason, int *status, const char **why)
{
	*status = code;
	*why = reason;
	return -1;
}

/*
 * Check the method as soon as its bytes are there, so a client speaking
 * another protocol (a goim TCP client on the WebSocket port) is refused
 * on its first packet. 0 (fine so far) or -1.
 */
static int
ws_check_method(const char *p, size_t n, int *status, const char **why)
{
	size_t i;

	for (i = 0; i < n && p[i] != ' '; i++) {
		if (!http_tchar((unsigned char)p[i]))
			return reject(400, "malformed request line", status,
			              why);
		if (i >= WS_METHOD_MAX)
			return reject(405, "method not allowed", status, why);
	}
	if (i == n)
		return 0;
	if (i == 0)
		return reject(400, "malformed request line", status, why);
	if (i != 3 || memcmp(p, "GET", 3) != 0)
		return reject(405, "method not allowed", status, why);
	return 0;
}

/* "GET target HTTP/1.1", method already checked. */
static int
ws_check_request_line(const char *l, size_t n, const char *path, int *status,
                      const char **why)
{
	const char *target, *sp, *end = l + n;
	size_t tlen, plen = strlen(path);

	if (n < 4 || memcmp(l, "GET ", 4) != 0)
		return reject(400, "malformed request line", status, why);
	target = l + 4;
	sp = memchr(target, ' ', (size_t)(end - target));
	if (sp == NULL || sp == target)
		return reject(400, "malformed request line", status, why);
	tlen = (size_t)(sp - target);
	if ((size_t)(end - sp - 1) != 8 || memcmp(sp + 1, "HTTP/1.1", 8) != 0)
		return reject(400, "HTTP/1.1 required", status, why);
	if (tlen < plen || memcmp(target, path, plen) != 0 ||
	    (tlen > plen && target[plen] != '?'))
		return reject(404, "not found", status, why);
	return 0;
}

/* A Sec-WebSocket-Key must be the base64 of exactly 16 bytes. */
static int
ws_key_valid(const char *v, size_t n)
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	                          "abcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i;

	if (n != WS_KEY_LEN || v[22] != '=' || v[23] != '=')
		return 0;
	for (i = 0; i < 22; i++)
		if (v[i] == '\0' || strchr(b64, v[i]) == NULL)
			return 0;
	return 1;
}

int
ws_handshake_parse(struct evbuffer *in, size_t max_header, const char *path,
                   struct ws_handshake *hs, int *status, const char **why)
{
	struct http_cursor c;
	const char *p, *line, *name, *val;
	size_t len, n, head, llen, nlen, vlen;
	char xff[WS_ADDR_MAX] = "";
	int host = 0, upgrade = 0, connection = 0, version = 0, key = 0, rc;

	if (max_header > UINT32_MAX)
		max_header = UINT32_MAX;
	len = evbuffer_get_length(in);
	if (len == 0)
		return 0;
	n = len < max_header ? len : max_header;
	if (n == 0)
		return reject(431, "request header too large", status, why);
	p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
	if (p == NULL)
		return reject(500, "out of memory", status, why);
	if (ws_check_method(p, n, status, why) == -1)
		return -1;
	head = http_head_end(p, n, &hs->scanned);
	if (head == 0) {
		if (len >= max_header)
			return reject(431, "request header too large", status,
			              why);
		return 0;
	}

	c.pos = p;
	c.end = p + head;
	if (http_next_line(&c, &line, &llen) != 1)
		return reject(400, "malformed request line", status, why);
	if (ws_check_request_line(line, llen, path, status, why) == -1)
		return -1;
	hs->key[0] = '\0';
	hs->addr[0] = '\0';
	while ((rc = http_next_line(&c, &line, &llen)) == 1) {
		if (http_ows(line[0]) ||
		    http_split_header(line, llen, &name, &nlen, &val, &vlen) ==
		        -1)
			return reject(400, "malformed header", status, why);
		if (http_is(name, nlen, "Host")) {
			if (host++ > 0)
				return reject(400, "duplicate Host", status,
				              why);
		} else if (http_is(name, nlen, "Upgrade")) {
			upgrade |= http_list_has(val, vlen, "websocket");
		} else if (http_is(name, nlen, "Connection")) {
			connection |= http_list_has(val, vlen, "upgrade");
		} else if (http_is(name, nlen, "Sec-WebSocket-Version")) {
			if (vlen != 2 || memcmp(val, "13", 2) != 0)
				return reject(426, "WebSocket version 13 only",
				              status, why);
			version = 1;
		} else if (http_is(name, nlen, "Sec-WebSocket-Key")) {
			if (key++ > 0)
				return reject(400,
				              "duplicate Sec-WebSocket-Key",
				              status, why);
			if (!ws_key_valid(val, vlen))
				return reject(400, "bad Sec-WebSocket-Key",
				              status, why);
			memcpy(hs->key, val, WS_KEY_LEN);
			hs->key[WS_KEY_LEN] = '\0';
		} else if (http_is(name, nlen, "X-Real-IP")) {
			http_keep_ip(val, vlen, hs->addr, sizeof(hs->addr));
		} else if (http_is(name, nlen, "X-Forwarded-For") &&
		           xff[0] == '\0') {
			const char *comma = memchr(val, ',', vlen);

			if (comma != NULL) {
				vlen = (size_t)(comma - val);
				http_trim(&val, &vlen);
			}
			http_keep_ip(val, vlen, xff, sizeof(xff));
		}
	}
	if (rc == -1)
		return reject(400, "malformed header", status, why);
	if (!host)
		return reject(400, "missing Host", status, why);
	if (!upgrade)
		return reject(400, "not a WebSocket upgrade", status, why);
	if (!connection)
		return reject(400, "Connection: upgrade missing", status, why);
	if (!version)
		return reject(426, "WebSocket version 13 only", status, why);
	if (!key)
		return reject(400, "missing Sec-WebSocket-Key", status, why);
	if (hs->addr[0] == '\0')
		memcpy(hs->addr, xff, sizeof(xff));
	evbuffer_drain(in, head);
	return 1;
}

int
ws_accept_key(const char *key, char accept[WS_ACCEPT_LEN + 1])
{
	char buf[128];
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	size_t klen = strlen(key);

	if (klen + sizeof(WS_GUID) > sizeof(buf))
		return -1;
	memcpy(buf, key, klen);
	memcpy(buf + klen, WS_GUID, sizeof(WS_GUID) - 1);
	if (EVP_Digest(buf, klen + sizeof(WS_GUID) - 1, md, &mdlen, EVP_sha1(),
	               NULL) != 1 ||
	    mdlen != 20)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)accept, md, 20) != WS_ACCEPT_LEN)
		return -1;
	return 0;
}

int
ws_handshake_accept(struct evbuffer *out, const struct ws_handshake *hs)
{
	char accept[WS_ACCEPT_LEN + 1];

	if (ws_accept_key(hs->key, accept) == -1)
		return -1;
	if (evbuffer_add_printf(out,
	                        "HTTP/1.1 101 Switching Protocols\r\n"
	                        "Upgrade: websocket\r\n"
	                        "Connection: Upgrade\r\n"
	                        "Sec-WebSocket-Accept: %s\r\n"
	                        "\r\n",
	                        accept) < 0)
		return -1;
	return 0;
}

static const char *
http_reason(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 426:
		return "Upgrade Required";
	case 431:
		return "Request Header Fields Too Large";
	case 500:
		return "Internal Server Error";
	default:
		return "Error";
	}
}

int
ws_handshake_reject(struct evbuffer *out, int status, const char *why)
{
	const char *extra = "";

	if (why == NULL)
		why = http_reason(status);
	if (status == 405)
		extra = "Allow: GET\r\n";
	else if (status == 426)
		extra = "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n";
	if (evbuffer_add_printf(out,
	                        "HTTP/1.1 %d %s\r\n"
	                        "Connection: close\r\n"
	                        "Content-Type: text/plain\r\n"
	                        "Content-Length: %zu\r\n"
	                        "%s"
	                        "\r\n"
	                        "%s\n",
	                        status, http_reason(status), strlen(why) + 1,
	                        extra, why) < 0)
		return -1;
	return 0;
}

/* -------------------------------------------------------------------------
 * Client frames
 */

/*
 * Strict UTF-8 (no overlongs, no surrogates, nothing above U+10FFFF), as
 * RFC 6455 8.1 requires of text messages and close reasons. Written here
 * because none of the project's libraries exports a validator.
 */
static int
ws_utf8_valid(const uint8_t *s, size_t n)
{
	size_t i = 0, need, k;
	uint32_t cp;

	while (i < n) {
		uint8_t ch = s[i];

		if (ch < 0x80) {
			i++;
			continue;
		}
		if (ch >= 0xc2 && ch <= 0xdf) {
			need = 1;
			cp = ch & 0x1f;
		} else if ((ch & 0xf0) == 0xe0) {
			need = 2;
			cp = ch & 0x0f;
		} else if (ch >= 0xf0 && ch <= 0xf4) {
			need = 3;
			cp = ch & 0x07;
		} else {
			return 0;
		}
		if (n - i - 1 < need)
			return 0;
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (need == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
			return 0;
		if (need == 3 && (cp < 0x10000 || cp > 0x10ffff))
			return 0;
		i += need + 1;
	}
	return 1;
}

/* Codes a peer may send (RFC 6455 7.4 and the IANA registry). */
static int
ws_close_code_valid(int code)
{
	if (code >= 1000 && code <= 1003)
		return 1;
	if (code >= 1007 && code <= 1014)
		return 1;
	return code >= 3000 && code <= 4999;
}

static void
ws_unmask(uint8_t *p, size_t n, const uint8_t mask[4])
{
	size_t i;

	for (i = 0; i < n; i++)
		p[i] ^= mask[i & 3];
}

void
ws_reader_init(struct ws_reader *r)
{
	memset(r, 0, sizeof(*r));
}

void
ws_reader_reset(struct ws_reader *r)
{
	if (r->partial != NULL)
		evbuffer_free(r->partial);
	ws_reader_init(r);
}

/* Release what the last call delivered. */
static void
ws_reader_settle(struct ws_reader *r, struct evbuffer *in)
{
	if (r->pending > 0) {
		evbuffer_drain(in, r->pending);
		r->pending = 0;
	}
	if (r->flags & WS_READER_ASSEMBLED) {
		evbuffer_free(r->partial);
		r->partial = NULL;
		r->flags &= ~WS_READER_ASSEMBLED;
	}
}

void
ws_message_done(struct ws_reader *r, struct evbuffer *in, struct ws_message *m)
{
	ws_reader_settle(r, in);
	if (m != NULL) {
		m->data = NULL;
		m->len = 0;
	}
}

static int
fail(int code, const char *reason, int *close_code, const char **why)
{
	*close_code = code;
	*why = reason;
	return -1;
}

int
ws_read_message(struct ws_reader *r, struct evbuffer *in, size_t max_message,
                struct ws_message *m, int *close_code, const char **why)
{
	uint8_t h[WS_FRAME_HEADER_MAX], *p, *payload;
	size_t avail, hlen, have;
	uint64_t plen;
	int fin, op, i;

	ws_reader_settle(r, in);
	if (r->flags & WS_READER_CLOSED)
		return 0;
	if (max_message > WS_MESSAGE_LIMIT)
		max_message = WS_MESSAGE_LIMIT;
	for (;;) {
		avail = evbuffer_get_length(in);
		if (avail < 2)
			return 0;
		if (evbuffer_copyout(in, h,
		                     avail < sizeof(h) ? avail : sizeof(h)) < 2)
			return 0;
		fin = (h[0] & 0x80) != 0;
		op = h[0] & 0x0f;
		if (h[0] & 0x70)
			return fail(WS_CLOSE_PROTOCOL, "reserved bits set",
			            close_code, why);
		switch (op) {
		case WS_OP_CONT:
		case WS_OP_TEXT:
		case WS_OP_BINARY:
			break;
		case WS_OP_CLOSE:
		case WS_OP_PING:
		case WS_OP_PONG:
			if (!fin)
				return fail(WS_CLOSE_PROTOCOL,
				            "fragmented control frame",
				            close_code, why);
			if ((h[1] & 0x7f) > WS_CONTROL_MAX)
				return fail(WS_CLOSE_PROTOCOL,
				            "control frame too long",
				            close_code, why);
			break;
		default:
			return fail(WS_CLOSE_PROTOCOL, "unknown opcode",
			            close_code, why);
		}
		if (!(h[1] & 0x80))
			return fail(WS_CLOSE_PROTOCOL,
			            "client frame not masked", close_code, why);
		if (op == WS_OP_CONT && r->partial == NULL)
			return fail(WS_CLOSE_PROTOCOL,
			            "continuation without a message",
			            close_code, why);
		if ((op == WS_OP_TEXT || op == WS_OP_BINARY) &&
		    r->partial != NULL)
			return fail(WS_CLOSE_PROTOCOL,
			            "new message inside a fragmented one",
			            close_code, why);

		plen = h[1] & 0x7f;
		hlen = 2;
		if (plen == 126) {
			if (avail < 4)
				return 0;
			plen = (uint64_t)h[2] << 8 | h[3];
			hlen = 4;
		} else if (plen == 127) {
			if (avail < 10)
				return 0;
			if (h[2] & 0x80)
				return fail(WS_CLOSE_PROTOCOL,
				            "length top bit set", close_code,
				            why);
			plen = 0;
			for (i = 2; i < 10; i++)
				plen = plen << 8 | h[i];
			hlen = 10;
		}
		/* Refuse an oversized message before buffering any of it. */
		if (op != WS_OP_CLOSE && op != WS_OP_PING && op != WS_OP_PONG) {
			have = r->partial != NULL
			           ? evbuffer_get_length(r->partial)
			           : 0;
			if (plen > max_message - have)
				return fail(WS_CLOSE_TOO_BIG, "message too big",
				            close_code, why);
		}
		hlen += 4; /* the mask */
		if (avail < hlen || avail - hlen < plen)
			return 0;

		p = evbuffer_pullup(in, (ev_ssize_t)(hlen + plen));
		if (p == NULL)
			return fail(WS_CLOSE_INTERNAL, "out of memory",
			            close_code, why);
		payload = p + hlen;
		ws_unmask(payload, (size_t)plen, payload - 4);

		if (op == WS_OP_CLOSE || op == WS_OP_PING || op == WS_OP_PONG) {
			m->opcode = op;
			m->data = payload;
			m->len = (size_t)plen;
			m->close_code = 0;
			if (op == WS_OP_CLOSE) {
				if (plen == 1)
					return fail(WS_CLOSE_PROTOCOL,
					            "close payload of one byte",
					            close_code, why);
				m->close_code = WS_CLOSE_NO_STATUS;
				if (plen >= 2) {
					m->close_code =
					    payload[0] << 8 | payload[1];
					if (!ws_close_code_valid(m->close_code))
						return fail(
						    WS_CLOSE_PROTOCOL,
						    "invalid close code",
						    close_code, why);
					if (!ws_utf8_valid(payload + 2,
					                   (size_t)plen - 2))
						return fail(
						    WS_CLOSE_INVALID_DATA,
						    "close reason not UTF-8",
						    close_code, why);
					m->data = payload + 2;
					m->len = (size_t)plen - 2;
				}
				/* The message in flight will never end. */
				if (r->partial != NULL) {
					evbuffer_free(r->partial);
					r->partial = NULL;
				}
				r->flags |= WS_READER_CLOSED;
			}
			r->pending = (uint32_t)(hlen + plen);
			return 2;
		}

		if (fin && op != WS_OP_CONT) {
			if (op == WS_OP_TEXT &&
			    !ws_utf8_valid(payload, (size_t)plen))
				return fail(WS_CLOSE_INVALID_DATA,
				            "text not UTF-8", close_code, why);
			m->opcode = op;
			m->data = payload;
			m->len = (size_t)plen;
			m->close_code = 0;
			r->pending = (uint32_t)(hlen + plen);
			return 1;
		}

		/* A fragment: move its payload aside and look further. */
		if (op != WS_OP_CONT) {
			r->partial = evbuffer_new();
			if (r->partial == NULL)
				return fail(WS_CLOSE_INTERNAL, "out of memory",
				            close_code, why);
			r->partial_op = (uint8_t)op;
		}
		if (plen > 0 &&
		    evbuffer_add(r->partial, payload, (size_t)plen) == -1)
			return fail(WS_CLOSE_INTERNAL, "out of memory",
			            close_code, why);
		evbuffer_drain(in, hlen + plen);
		if (!fin)
			continue;

		have = evbuffer_get_length(r->partial);
		/* pullup of an empty buffer is NULL; data is never NULL. */
		p = have > 0 ? evbuffer_pullup(r->partial, -1) : ws_empty;
		if (p == NULL)
			return fail(WS_CLOSE_INTERNAL, "out of memory",
			            close_code, why);
		if (r->partial_op == WS_OP_TEXT && !ws_utf8_valid(p, have))
			return fail(WS_CLOSE_INVALID_DATA, "text not UTF-8",
			            close_code, why);
		m->opcode = r->partial_op;
		m->data = p;
		m->len = have;
		m->close_code = 0;
		r->flags |= WS_READER_ASSEMBLED;
		return 1;
	}
}

int
ws_control_reply(struct evbuffer *out, const struct ws_message *m)
{
	switch (m->opcode) {
	case WS_OP_PING:
		return ws_write_frame(out, WS_OP_PONG, m->data, m->len);
	case WS_OP_CLOSE:
		return ws_write_close(out, m->close_code, NULL);
	default:
		return 0;
	}
}

/* -------------------------------------------------------------------------
 * Server frames
 */

size_t
ws_frame_header(uint8_t out[10], int opcode, uint64_t payload_len)
{
	int i;

	out[0] = 0x80 | (opcode & 0x0f);
	if (payload_len < 126) {
		out[1] = (uint8_t)payload_len;
		return 2;
	}
	if (payload_len <= 0xffff) {
		out[1] = 126;
		out[2] = (uint8_t)(payload_len >> 8);
		out[3] = (uint8_t)payload_len;
		return 4;
	}
	out[1] = 127;
	for (i = 0; i < 8; i++)
		out[2 + i] = (uint8_t)(payload_len >> (56 - 8 * i));
	return 10;
}

int
ws_write_frame(struct evbuffer *out, int opcode, const void *data, size_t len)
{
	uint8_t h[10];
	size_t hlen;

	hlen = ws_frame_header(h, opcode, len);
	if (evbuffer_add(out, h, hlen) == -1)
		return -1;
	if (len > 0 && evbuffer_add(out, data, len) == -1)
		return -1;
	return 0;
}

int
ws_write_close(struct evbuffer *out, int code, const char *reason)
{
	uint8_t b[WS_CONTROL_MAX];
	size_t n = 0, rlen;

	if (code != 0 && code != WS_CLOSE_NO_STATUS) {
		b[0] = (uint8_t)(code >> 8);
		b[1] = (uint8_t)code;
		n = 2;
		if (reason != NULL) {
			rlen = strlen(reason);
			if (rlen > sizeof(b) - 2)
				rlen = sizeof(b) - 2;
			memcpy(b + 2, reason, rlen);
			n += rlen;
		}
	}
	return ws_write_frame(out, WS_OP_CLOSE, b, n);
}

/* -------------------------------------------------------------------------
 * Client side
 */

int
ws_write_masked_frame(struct evbuffer *out, int opcode, int fin,
                      const void *data, size_t len, const uint8_t mask[4])
{
	struct evbuffer_iovec v;
	uint8_t *p;
	size_t hlen;

	if (evbuffer_reserve_space(out, (ev_ssize_t)(len + 14), &v, 1) < 1)
		return -1;
	p = v.iov_base;
	hlen = ws_frame_header(p, opcode, len);
	if (!fin)
		p[0] &= 0x7f;
	p[1] |= 0x80;
	memcpy(p + hlen, mask, 4);
	hlen += 4;
	if (len > 0)
		memcpy(p + hlen, data, len);
	ws_unmask(p + hlen, len, mask);
	v.iov_len = hlen + len;
	return evbuffer_commit_space(out, &v, 1);
}

int
ws_client_key(char key[WS_KEY_LEN + 1])
{
	unsigned char raw[16];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)key, raw, sizeof(raw)) !=
	    WS_KEY_LEN)
		return -1;
	return 0;
}

int
ws_client_request(struct evbuffer *out, const char *host, const char *path,
                  const char *key)
{
	if (evbuffer_add_printf(out,
	                        "GET %s HTTP/1.1\r\n"
	                        "Host: %s\r\n"
	                        "Upgrade: websocket\r\n"
	                        "Connection: Upgrade\r\n"
	                        "Sec-WebSocket-Key: %s\r\n"
	                        "Sec-WebSocket-Version: 13\r\n"
	                        "\r\n",
	                        path, host, key) < 0)
		return -1;
	return 0;
}

int
ws_client_response(struct evbuffer *in, size_t max_header, const char *key,
                   const char **why)
{
	struct http_cursor c;
	const char *p, *line, *name, *val;
	char accept[WS_ACCEPT_LEN + 1];
	size_t len, n, head, llen, nlen, vlen;
	uint32_t scanned = 0;
	int upgrade = 0, connection = 0, accepted = 0, rc;

	if (max_header > UINT32_MAX)
		max_header = UINT32_MAX;
	len = evbuffer_get_length(in);
	n = len < max_header ? len : max_header;
	if (n == 0) {
		if (len == 0)
			return 0;
		*why = "response header too large";
		return -1;
	}
	p = (const char *)evbuffer_pullup(in, (ev_ssize_t)n);
	if (p == NULL) {
		*why = "out of memory";
		return -1;
	}
	head = http_head_end(p, n, &scanned);
	if (head == 0) {
		if (len < max_header)
			return 0;
		*why = "response header too large";
		return -1;
	}
	if (ws_accept_key(key, accept) == -1) {
		*why = "bad key";
		return -1;
	}
	c.pos = p;
	c.end = p + head;
	if (http_next_line(&c, &line, &llen) != 1 || llen < 12 ||
	    memcmp(line, "HTTP/1.1 101", 12) != 0 ||
	    (llen > 12 && line[12] != ' ')) {
		*why = "not 101 Switching Protocols";
		return -1;
	}
	while ((rc = http_next_line(&c, &line, &llen)) == 1) {
		if (http_ows(line[0]) ||
		    http_split_header(line, llen, &name, &nlen, &val, &vlen) ==
		        -1) {
			*why = "malformed header";
			return -1;
		}
		if (http_is(name, nlen, "Upgrade"))
			upgrade |= http_list_has(val, vlen, "websocket");
		else if (http_is(name, nlen, "Connection"))
			connection |= http_list_has(val, vlen, "upgrade");
		else if (http_is(name, nlen, "Sec-WebSocket-Accept"))
			accepted = vlen == WS_ACCEPT_LEN &&
			           memcmp(val, accept, WS_ACCEPT_LEN) == 0;
	}
	if (rc == -1) {
		*why = "malformed header";
		return -1;
	}
	if (!upgrade || !connection) {
		*why = "missing Upgrade or Connection";
		return -1;
	}
	if (!accepted) {
		*why = "wrong Sec-WebSocket-Accept";
		return -1;
	}
	evbuffer_drain(in, head);
	return 1;
}
