#include "config.h"

#include <string.h>

#include "common/mpscan.h"

enum scan_state {
	SCAN_TYPE = 0, /* expecting the first byte of a value */
	SCAN_HEAD,     /* reading a length field */
	SCAN_SKIP,     /* skipping fixed bytes or a payload */
	SCAN_DEAD,
};

enum head_kind {
	HEAD_RAW = 0, /* str, bin, ext: the length counts payload bytes */
	HEAD_ARRAY,
	HEAD_MAP,
};

void
mpscan_init(struct mpscan *s, uint64_t max_message, unsigned max_depth,
            int flags)
{
	memset(s, 0, offsetof(struct mpscan, stack));
	s->max_message = max_message;
	s->max_depth =
	    max_depth > MPSCAN_DEPTH_MAX ? MPSCAN_DEPTH_MAX : max_depth;
	s->flags = flags;
	s->state = SCAN_TYPE;
}

int
mpscan_in_message(const struct mpscan *s)
{
	return s->msg_bytes > 0;
}

static int
fail(struct mpscan *s, enum mpscan_error e, uint64_t size)
{
	s->error = e;
	s->size = size;
	s->state = SCAN_DEAD;
	return -1;
}

/*
 * Whether the current message can still take more bytes: what it has so
 * far plus one byte per element still owed stays within max_message. The
 * scanner keeps that sum within the limit, so it cannot overflow.
 */
static int
fits(const struct mpscan *s, uint64_t more)
{
	uint64_t used = s->msg_bytes + s->outstanding;

	return used <= s->max_message && more <= s->max_message - used;
}

/* A value ended: close every container whose last element it was. 1 when
 * that ended the message. */
static int
value_done(struct mpscan *s)
{
	while (s->sp > 0 && s->stack[s->sp - 1] == 0)
		s->sp--;
	if (s->sp > 0)
		return 0;
	s->msg_bytes = 0;
	return 1;
}

static int
open_container(struct mpscan *s, uint64_t count)
{
	if ((count > 0 || (s->flags & MPSCAN_EMPTY_NESTS)) &&
	    s->sp + 1 > s->max_depth)
		return fail(s, MPSCAN_TOO_DEEP, 0);
	if (!fits(s, count))
		return fail(s, MPSCAN_BIG_CONTAINER, count);
	if (count == 0)
		return value_done(s);
	s->stack[s->sp++] = count;
	s->outstanding += count;
	return 0;
}

static int
start_skip(struct mpscan *s, uint64_t n)
{
	if (!fits(s, n))
		return fail(s, MPSCAN_BIG_VALUE, n);
	if (n == 0)
		return value_done(s);
	s->skip = n;
	s->state = SCAN_SKIP;
	return 0;
}

static int
start_head(struct mpscan *s, enum head_kind kind, unsigned lenbytes,
           unsigned extra)
{
	if (!fits(s, lenbytes + extra))
		return fail(s, MPSCAN_BIG_HEAD, lenbytes + extra);
	s->head_kind = kind;
	s->head_need = lenbytes;
	s->head_extra = extra;
	s->head_val = 0;
	s->state = SCAN_HEAD;
	return 0;
}

static int
head_done(struct mpscan *s)
{
	s->state = SCAN_TYPE;
	switch (s->head_kind) {
	case HEAD_RAW:
		return start_skip(s, (uint64_t)s->head_val + s->head_extra);
	case HEAD_ARRAY:
		return open_container(s, s->head_val);
	default: /* HEAD_MAP */
		return open_container(s, (uint64_t)s->head_val * 2);
	}
}

/* The first byte b of a value: -1, or 1 when it ended the message. */
static int
scan_type(struct mpscan *s, uint8_t b)
{
	if (s->sp > 0) {
		s->stack[s->sp - 1]--;
		s->outstanding--;
	}
	if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
		return value_done(s);
	if (b >= 0x80 && b <= 0x8f)
		return open_container(s, (uint64_t)(b & 0x0f) * 2);
	if (b >= 0x90 && b <= 0x9f)
		return open_container(s, b & 0x0f);
	if (b >= 0xa0 && b <= 0xbf)
		return start_skip(s, b & 0x1f);
	switch (b) {
	case 0xc4: /* bin 8, 16, 32 */
	case 0xd9: /* str 8, 16, 32 */
		return start_head(s, HEAD_RAW, 1, 0);
	case 0xc5:
	case 0xda:
		return start_head(s, HEAD_RAW, 2, 0);
	case 0xc6:
	case 0xdb:
		return start_head(s, HEAD_RAW, 4, 0);
	case 0xc7: /* ext 8, 16, 32: length, then a type byte */
		return start_head(s, HEAD_RAW, 1, 1);
	case 0xc8:
		return start_head(s, HEAD_RAW, 2, 1);
	case 0xc9:
		return start_head(s, HEAD_RAW, 4, 1);
	case 0xca: /* float 32, 64 */
		return start_skip(s, 4);
	case 0xcb:
		return start_skip(s, 8);
	case 0xcc: /* uint, int 8..64 */
	case 0xd0:
		return start_skip(s, 1);
	case 0xcd:
	case 0xd1:
		return start_skip(s, 2);
	case 0xce:
	case 0xd2:
		return start_skip(s, 4);
	case 0xcf:
	case 0xd3:
		return start_skip(s, 8);
	case 0xd4: /* fixext 1..16: type byte + data */
		return start_skip(s, 2);
	case 0xd5:
		return start_skip(s, 3);
	case 0xd6:
		return start_skip(s, 5);
	case 0xd7:
		return start_skip(s, 9);
	case 0xd8:
		return start_skip(s, 17);
	case 0xdc: /* array 16, 32 */
		return start_head(s, HEAD_ARRAY, 2, 0);
	case 0xdd:
		return start_head(s, HEAD_ARRAY, 4, 0);
	case 0xde: /* map 16, 32 */
		return start_head(s, HEAD_MAP, 2, 0);
	case 0xdf:
		return start_head(s, HEAD_MAP, 4, 0);
	}
	s->byte = b;
	return fail(s, MPSCAN_BAD_BYTE, 0);
}

int
mpscan_feed(struct mpscan *s, const void *data, size_t len, size_t *used)
{
	const uint8_t *p = data;
	size_t i = 0;
	int r = 0;

	*used = 0;
	if (s->state == SCAN_DEAD)
		return -1;
	while (i < len && r == 0) {
		switch (s->state) {
		case SCAN_TYPE:
			s->msg_bytes++;
			r = scan_type(s, p[i++]);
			break;
		case SCAN_HEAD:
			s->msg_bytes++;
			s->head_val = s->head_val << 8 | p[i++];
			if (--s->head_need == 0)
				r = head_done(s);
			break;
		case SCAN_SKIP: {
			size_t n = len - i;

			if (n > s->skip)
				n = (size_t)s->skip;
			i += n;
			s->msg_bytes += n;
			s->skip -= n;
			if (s->skip == 0) {
				s->state = SCAN_TYPE;
				r = value_done(s);
			}
			break;
		}
		}
	}
	*used = i;
	return r;
}
