/*
 * rx: a streaming reader for what servers send imgate-bench's clients.
 *
 * Hand-written rather than proto_peek and ws_read_message: those read
 * whole frames out of a per-connection evbuffer, and wslay's frame context
 * carries a 4 KiB buffer; either would cost kilobytes per connection,
 * where a million connections leave room for about a hundred bytes. Only
 * headers are collected; bodies are looked at for their first bytes (the
 * timestamp, the heartbeat count) and skipped.
 */
#include <string.h>

#include "bench/bench.h"
#include "common/proto.h"
#include "common/ws.h"

enum {
	TS_DIGITS = 0, /* still reading digits */
	TS_DONE,       /* a non-digit ended them */
	TS_BAD,        /* too many digits to be a timestamp */
};

void
bench_rx_init(struct bench_rx *rx, int mode, uint32_t max_body)
{
	memset(rx, 0, sizeof(*rx));
	rx->mode = (uint8_t)mode;
	rx->max_body = max_body;
	rx->ws_need = 2;
}

static void
body_start(struct bench_rx *rx)
{
	rx->ts_val = 0;
	rx->ts_state = TS_DIGITS;
	rx->ts_digits = 0;
	rx->u32 = 0;
	rx->u32_have = 0;
}

static void
body_bytes(struct bench_rx *rx, const uint8_t *p, size_t n)
{
	size_t i;

	for (i = 0; i < n && rx->u32_have < 4; i++) {
		rx->u32 = rx->u32 << 8 | p[i];
		rx->u32_have++;
	}
	for (i = 0; i < n && rx->ts_state == TS_DIGITS; i++) {
		if (p[i] < '0' || p[i] > '9') {
			rx->ts_state = TS_DONE;
		} else if (rx->ts_digits == 19) {
			rx->ts_state = TS_BAD;
		} else {
			rx->ts_val = rx->ts_val * 10 + (uint64_t)(p[i] - '0');
			rx->ts_digits++;
		}
	}
}

static void
body_end(const struct bench_rx *rx, struct bench_rx_ev *ev)
{
	ev->has_ts = rx->ts_state != TS_BAD && rx->ts_digits > 0;
	ev->ts_us = ev->has_ts ? rx->ts_val : 0;
	ev->u32 = rx->u32_have == 4 ? rx->u32 : 0;
}

static int
goim_emit(struct bench_rx *rx, bench_rx_cb cb, void *arg, const char **why)
{
	struct bench_rx_ev ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = BENCH_RX_FRAME;
	ev.ver = (int16_t)(rx->g_hdr[6] << 8 | rx->g_hdr[7]);
	ev.op = (int32_t)proto_get_u32(rx->g_hdr + 8);
	ev.seq = (int32_t)proto_get_u32(rx->g_hdr + 12);
	ev.len = proto_get_u32(rx->g_hdr) - PROTO_HEADER_LEN;
	body_end(rx, &ev);
	rx->g_have = 0;
	if (cb(arg, &ev) == -1) {
		*why = NULL;
		return -1;
	}
	return 0;
}

/*
 * The header is judged here, not by proto_parse, because proto_parse only
 * reports a frame once its body is in memory; the checks are the same.
 */
static int
goim_header(struct bench_rx *rx, const char **why)
{
	uint32_t pack = proto_get_u32(rx->g_hdr);
	unsigned hlen = (unsigned)(rx->g_hdr[4] << 8 | rx->g_hdr[5]);
	int32_t op = (int32_t)proto_get_u32(rx->g_hdr + 8);

	if (hlen != PROTO_HEADER_LEN) {
		*why = "bad header length";
		return -1;
	}
	if (pack > (uint32_t)PROTO_MAX_PACK) {
		*why = "negative pack length";
		return -1;
	}
	if (pack < PROTO_HEADER_LEN) {
		*why = "short pack length";
		return -1;
	}
	/* A batch's inner frames are judged one by one instead. */
	if (op != PROTO_OP_RAW && pack - PROTO_HEADER_LEN > rx->max_body) {
		*why = "body too large";
		return -1;
	}
	return 0;
}

static int
goim_feed(struct bench_rx *rx, const uint8_t *p, size_t n, bench_rx_cb cb,
          void *arg, const char **why)
{
	size_t k;

	while (n > 0) {
		if (rx->g_have < PROTO_HEADER_LEN) {
			k = PROTO_HEADER_LEN - rx->g_have;
			if (k > n)
				k = n;
			memcpy(rx->g_hdr + rx->g_have, p, k);
			rx->g_have += (uint8_t)k;
			p += k;
			n -= k;
			if (rx->g_have < PROTO_HEADER_LEN)
				break;
			if (goim_header(rx, why) == -1)
				return -1;
			/*
			 * An op-9 batch (the outer header of a WebSocket
			 * message) is opened: its inner frames follow as if
			 * they had been sent alone, exactly filling it.
			 */
			if ((int32_t)proto_get_u32(rx->g_hdr + 8) ==
			    PROTO_OP_RAW) {
				rx->g_have = 0;
				continue;
			}
			rx->g_left =
			    proto_get_u32(rx->g_hdr) - PROTO_HEADER_LEN;
			body_start(rx);
			if (rx->g_left == 0 &&
			    goim_emit(rx, cb, arg, why) == -1)
				return -1;
			continue;
		}
		k = rx->g_left < n ? rx->g_left : n;
		if (rx->ts_state == TS_DIGITS || rx->u32_have < 4)
			body_bytes(rx, p, k);
		rx->g_left -= (uint32_t)k;
		p += k;
		n -= k;
		if (rx->g_left == 0 && goim_emit(rx, cb, arg, why) == -1)
			return -1;
	}
	return 0;
}

static int
ws_header(struct bench_rx *rx, const char **why)
{
	uint8_t b0 = rx->ws_hdr[0], b1 = rx->ws_hdr[1];
	uint8_t op = b0 & 0x0f, len7 = b1 & 0x7f;
	uint64_t len = 0;
	int i;

	if (rx->ws_have == 2) {
		if (b0 & 0x70) {
			*why = "reserved bits set";
			return -1;
		}
		if (b1 & 0x80) {
			*why = "masked frame from the server";
			return -1;
		}
		rx->ws_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
		if (rx->ws_need > 2)
			return 0;
	}
	if (len7 < 126) {
		len = len7;
	} else {
		for (i = 2; i < rx->ws_need; i++)
			len = len << 8 | rx->ws_hdr[i];
		if (len >> 63) {
			*why = "frame length overflow";
			return -1;
		}
	}
	switch (op) {
	case WS_OP_CONT:
		if (rx->ws_msg_op == 0) {
			*why = "continuation without a message";
			return -1;
		}
		break;
	case WS_OP_TEXT:
	case WS_OP_BINARY:
		if (rx->ws_msg_op != 0) {
			*why = "new message inside a fragmented one";
			return -1;
		}
		rx->ws_msg_op = op;
		rx->msg_len = 0;
		body_start(rx);
		break;
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		if (!(b0 & 0x80) || len > WS_CONTROL_MAX) {
			*why = "bad control frame";
			return -1;
		}
		break;
	default:
		*why = "unknown opcode";
		return -1;
	}
	rx->ws_op = op;
	rx->ws_fin = b0 >> 7;
	rx->ws_left = len;
	return 0;
}

static int
ws_frame_end(struct bench_rx *rx, bench_rx_cb cb, void *arg, const char **why)
{
	struct bench_rx_ev ev;

	rx->ws_have = 0;
	rx->ws_need = 2;
	memset(&ev, 0, sizeof(ev));
	switch (rx->ws_op) {
	case WS_OP_PING:
		ev.kind = BENCH_RX_PING;
		break;
	case WS_OP_CLOSE:
		ev.kind = BENCH_RX_CLOSE;
		break;
	case WS_OP_PONG:
		return 0;
	default:
		if (!rx->ws_fin)
			return 0;
		ev.op = rx->ws_msg_op;
		rx->ws_msg_op = 0;
		if (rx->mode == BENCH_RX_GOIM_WS) {
			/* One goim frame (or batch) per message. */
			if (rx->g_have != 0) {
				*why = "goim frame cut at a message end";
				return -1;
			}
			return 0;
		}
		ev.kind = BENCH_RX_MESSAGE;
		ev.len = rx->msg_len;
		body_end(rx, &ev);
		break;
	}
	ev.op = ev.kind == BENCH_RX_MESSAGE ? ev.op : rx->ws_op;
	if (cb(arg, &ev) == -1) {
		*why = NULL;
		return -1;
	}
	return 0;
}

int
bench_rx_feed(struct bench_rx *rx, const uint8_t *p, size_t n, bench_rx_cb cb,
              void *arg, const char **why)
{
	size_t k;

	if (rx->mode == BENCH_RX_GOIM_TCP)
		return goim_feed(rx, p, n, cb, arg, why);
	while (n > 0) {
		if (rx->ws_have < rx->ws_need) {
			k = (size_t)(rx->ws_need - rx->ws_have);
			if (k > n)
				k = n;
			memcpy(rx->ws_hdr + rx->ws_have, p, k);
			rx->ws_have += (uint8_t)k;
			p += k;
			n -= k;
			if (rx->ws_have < rx->ws_need)
				break;
			if (ws_header(rx, why) == -1)
				return -1;
			if (rx->ws_have < rx->ws_need)
				continue; /* an extended length follows */
			if (rx->ws_left == 0 &&
			    ws_frame_end(rx, cb, arg, why) == -1)
				return -1;
			continue;
		}
		k = rx->ws_left < n ? (size_t)rx->ws_left : n;
		if (rx->ws_op <= WS_OP_BINARY) {
			if (rx->mode == BENCH_RX_GOIM_WS) {
				if (goim_feed(rx, p, k, cb, arg, why) == -1)
					return -1;
			} else {
				if (rx->ts_state == TS_DIGITS ||
				    rx->u32_have < 4)
					body_bytes(rx, p, k);
				rx->msg_len = rx->msg_len + k > UINT32_MAX
				                  ? UINT32_MAX
				                  : rx->msg_len + (uint32_t)k;
			}
		}
		rx->ws_left -= k;
		p += k;
		n -= k;
		if (rx->ws_left == 0 && ws_frame_end(rx, cb, arg, why) == -1)
			return -1;
	}
	return 0;
}
