/*
 * proto: goim v2 frames. See proto.h for the wire layout and the rules.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/proto.h"

#define OFF_PACK   0
#define OFF_HEADER 4
#define OFF_VER    6
#define OFF_OP     8
#define OFF_SEQ    12

static uint16_t
get_u16(const uint8_t *b)
{
	uint16_t v;

	memcpy(&v, b, sizeof(v));
	return ntohs(v);
}

uint32_t
proto_get_u32(const uint8_t b[4])
{
	uint32_t v;

	memcpy(&v, b, sizeof(v));
	return ntohl(v);
}

void
proto_put_u32(uint8_t b[4], uint32_t v)
{
	v = htonl(v);
	memcpy(b, &v, sizeof(v));
}

static void
put_u16(uint8_t *b, uint16_t v)
{
	v = htons(v);
	memcpy(b, &v, sizeof(v));
}

static int32_t
to_s32(uint32_t v)
{
	return v > INT32_MAX ? (int32_t)(v - INT32_MAX - 1) + INT32_MIN
	                     : (int32_t)v;
}

/*
 * Judge a header and fill everything but f->body. Signed fields are
 * converted through their unsigned wire form so no implementation-defined
 * narrowing depends on the peer's bytes.
 */
static int
header_check(const uint8_t *h, size_t max_body, struct proto_frame *f,
             const char **why)
{
	uint32_t pack = proto_get_u32(h + OFF_PACK);
	uint16_t hlen = get_u16(h + OFF_HEADER);
	uint16_t ver = get_u16(h + OFF_VER);
	uint32_t op = proto_get_u32(h + OFF_OP);
	uint32_t seq = proto_get_u32(h + OFF_SEQ);
	const char *reason;

	if (hlen != PROTO_HEADER_LEN) {
		reason = "bad header length";
		goto bad;
	}
	if (pack > (uint32_t)INT32_MAX) {
		reason = "negative pack length";
		goto bad;
	}
	if (pack < PROTO_HEADER_LEN) {
		reason = "short pack length";
		goto bad;
	}
	if ((size_t)(pack - PROTO_HEADER_LEN) > max_body) {
		reason = "body too large";
		goto bad;
	}
	f->pack_len = pack;
	f->ver =
	    ver > INT16_MAX ? (int16_t)(ver - 32768) + INT16_MIN : (int16_t)ver;
	f->op = to_s32(op);
	f->seq = to_s32(seq);
	f->body = NULL;
	f->body_len = pack - PROTO_HEADER_LEN;
	return 0;
bad:
	if (why != NULL)
		*why = reason;
	return -1;
}

int
proto_parse(const void *buf, size_t len, size_t max_body, struct proto_frame *f,
            const char **why)
{
	const uint8_t *p = buf;

	if (len < PROTO_HEADER_LEN)
		return 0;
	if (header_check(p, max_body, f, why) == -1)
		return -1;
	if (len < f->pack_len)
		return 0;
	f->body = p + PROTO_HEADER_LEN;
	return 1;
}

int
proto_peek(struct evbuffer *in, size_t max_body, struct proto_frame *f,
           const char **why)
{
	uint8_t hdr[PROTO_HEADER_LEN];
	unsigned char *p;

	if (evbuffer_get_length(in) < PROTO_HEADER_LEN)
		return 0;
	if (evbuffer_copyout(in, hdr, sizeof(hdr)) != (ev_ssize_t)sizeof(hdr))
		return 0;
	if (header_check(hdr, max_body, f, why) == -1)
		return -1;
	if (evbuffer_get_length(in) < f->pack_len)
		return 0;
	/* Only now, with the whole frame present, is it made contiguous. */
	p = evbuffer_pullup(in, (ev_ssize_t)f->pack_len);
	if (p == NULL) {
		if (why != NULL)
			*why = "out of memory";
		return -1;
	}
	f->body = p + PROTO_HEADER_LEN;
	return 1;
}

void
proto_consume(struct evbuffer *in, const struct proto_frame *f)
{
	evbuffer_drain(in, f->pack_len);
}

void
proto_header_write(uint8_t hdr[PROTO_HEADER_LEN], size_t body_len, int ver,
                   int op, int seq)
{
	proto_put_u32(hdr + OFF_PACK, (uint32_t)(body_len + PROTO_HEADER_LEN));
	put_u16(hdr + OFF_HEADER, PROTO_HEADER_LEN);
	put_u16(hdr + OFF_VER, (uint16_t)ver);
	proto_put_u32(hdr + OFF_OP, (uint32_t)op);
	proto_put_u32(hdr + OFF_SEQ, (uint32_t)seq);
}

int
proto_encode(struct evbuffer *out, int ver, int op, int seq, const void *body,
             size_t len)
{
	struct evbuffer_iovec v;

	if (len > PROTO_MAX_BODY)
		return -1;
	/*
	 * One contiguous reservation, committed at once: out gets the whole
	 * frame or nothing, never a header without its body.
	 */
	if (evbuffer_reserve_space(out, (ev_ssize_t)(PROTO_HEADER_LEN + len),
	                           &v, 1) != 1)
		return -1;
	proto_header_write(v.iov_base, len, ver, op, seq);
	if (len > 0)
		memcpy((uint8_t *)v.iov_base + PROTO_HEADER_LEN, body, len);
	v.iov_len = PROTO_HEADER_LEN + len;
	return evbuffer_commit_space(out, &v, 1) == 0 ? 0 : -1;
}

void
proto_batch_header(uint8_t hdr[PROTO_HEADER_LEN], size_t inner_len, int ver,
                   int seq)
{
	proto_header_write(hdr, inner_len, ver, PROTO_OP_RAW, seq);
}

void
proto_iter_init(struct proto_iter *it, const void *body, size_t len,
                size_t max_body)
{
	it->p = body;
	it->left = body == NULL ? 0 : len;
	it->max_body = max_body;
}

int
proto_iter_next(struct proto_iter *it, struct proto_frame *f, const char **why)
{
	int rc;

	if (it->left == 0)
		return 0;
	rc = proto_parse(it->p, it->left, it->max_body, f, why);
	if (rc == 0) {
		if (why != NULL)
			*why = "truncated frame";
		rc = -1;
	}
	/* Not advanced on -1: later calls must not resync on garbage. */
	if (rc == -1)
		return -1;
	it->p += f->pack_len;
	it->left -= f->pack_len;
	return 1;
}

static int
is_blank(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/*
 * Hand-written rather than strtol: the body is not NUL-terminated, and
 * strtol would also accept leading newlines, a '+' sign and silently clamp
 * on overflow, none of which a goim op list contains.
 */
int
proto_parse_ops(const uint8_t *body, size_t len, int32_t *ops, size_t max,
                size_t *n)
{
	size_t i = 0, count = 0;

	*n = 0;
	while (i < len) {
		int64_t v = 0;
		int neg = 0, digits = 0;

		while (i < len && is_blank(body[i]))
			i++;
		if (i < len && body[i] == '-') {
			neg = 1;
			i++;
		}
		while (i < len && body[i] >= '0' && body[i] <= '9') {
			v = v * 10 + (body[i] - '0');
			if (v > (int64_t)INT32_MAX + neg)
				return -1;
			digits++;
			i++;
		}
		while (i < len && is_blank(body[i]))
			i++;
		if (i < len && body[i] != ',')
			return -1;
		if (digits == 0) {
			if (neg)
				return -1;
		} else {
			if (count == max)
				return -1;
			ops[count++] = (int32_t)(neg ? -v : v);
		}
		i++; /* the comma, or past the end */
	}
	*n = count;
	return 0;
}
