/*
 * bench: the parts of imgate-bench that do not touch the network, kept in
 * a library so the check suite can drive them.
 *
 *   hist.c  a log-linear latency histogram (1.6% resolution) that merges
 *           across processes, and the counters every mode keeps
 *   rx.c    a streaming reader for what a server sends a client: goim
 *           frames on TCP, goim frames inside WebSocket messages, or plain
 *           WebSocket messages
 *   stats.c the RESULT line
 *
 * Timestamps: every message a publisher sends starts with its send time in
 * microseconds since the Unix epoch (CLOCK_REALTIME), as 1 to 19 ASCII
 * decimal digits, followed by anything that is not a digit (imgate-bench
 * pub pads with a space and 'x's) or by the end of the message. The same
 * text travels unchanged through goim pushes, nchan text frames and any
 * other peer.
 */
#ifndef IMGATE_BENCH_H
#define IMGATE_BENCH_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------- */
/* Latency histogram */

/*
 * Values below 128 have a bucket each; above, every power of two is cut
 * into 64 buckets, so a bucket is at most 1/64 of its value wide. 3776
 * buckets cover all of uint64_t: 30 KiB per histogram, one or two per
 * process whatever the number of connections.
 */
#define BENCH_HIST_SUB     64
#define BENCH_HIST_LINEAR  128
#define BENCH_HIST_BUCKETS (BENCH_HIST_LINEAR + 57 * BENCH_HIST_SUB)

struct bench_hist {
	uint64_t n;
	uint64_t min;
	uint64_t max;
	uint64_t sum;
	uint64_t b[BENCH_HIST_BUCKETS];
};

void bench_hist_init(struct bench_hist *h);
void bench_hist_add(struct bench_hist *h, uint64_t v);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from);
size_t bench_hist_index(uint64_t v);
/* The largest value that falls into bucket i. */
uint64_t bench_hist_bucket_high(size_t i);
/*
 * The value below which pct percent of the samples fall, as the upper
 * bound of its bucket (never above the largest sample); 0 when empty.
 */
uint64_t bench_hist_percentile(const struct bench_hist *h, double pct);

/* ---------------------------------------------------------------------- */
/* Counters */

enum bench_fail {
	BENCH_FAIL_REFUSED = 0, /* ECONNREFUSED */
	BENCH_FAIL_CONNECT,     /* any other connect error */
	BENCH_FAIL_ADDR,        /* EADDRNOTAVAIL, EADDRINUSE: out of ports */
	BENCH_FAIL_FD,          /* EMFILE, ENFILE, ENOBUFS, ENOMEM */
	BENCH_FAIL_TIMEOUT,     /* connect, upgrade or auth not done in time */
	BENCH_FAIL_HANDSHAKE,   /* WebSocket upgrade refused or malformed */
	BENCH_FAIL_AUTH,        /* closed or op 6 before the auth reply */
	BENCH_FAIL_CLOSED,      /* closed by the server once up */
	BENCH_FAIL_KICKED,      /* op 6 or a close frame once up */
	BENCH_FAIL_PROTO,       /* invalid frame from the server */
	BENCH_FAIL_WRITE,       /* a small write did not go out whole */
	BENCH_FAIL_HTTP,        /* pub: an answer other than 2xx */
	BENCH_FAIL__COUNT
};

const char *bench_fail_name(int reason);

struct bench_counters {
	uint64_t target;     /* connections (or messages) this run aims at */
	uint64_t started;    /* connect() issued */
	uint64_t up;         /* authenticated (or upgraded) right now */
	uint64_t up_total;   /* ever came up */
	uint64_t deliveries; /* pushes or messages received */
	uint64_t no_ts;      /* deliveries without a timestamp */
	uint64_t other_ops;  /* goim frames neither push nor reply */
	uint64_t hb_sent;
	uint64_t hb_replies;
	uint64_t bytes_in;
	uint64_t sent;    /* pub: requests sent */
	uint64_t ok;      /* pub: 2xx answers */
	uint64_t behind;  /* pub: sends due but no connection free */
	uint64_t settled; /* processes whose connect phase is over */
	uint64_t cpu_us;  /* user + system CPU of imgate-bench itself */
	/* Microseconds since the epoch; 0 = never. Merged as min / max. */
	uint64_t t_start;
	uint64_t t_first_up;
	uint64_t t_last_up;
	uint64_t t_first_delivery;
	uint64_t t_last_delivery;
	uint64_t fail[BENCH_FAIL__COUNT];
};

struct bench_stats {
	struct bench_counters c;
	struct bench_hist lat;     /* delivery (or request) latency, us */
	struct bench_hist connect; /* connect start to auth reply, us */
};

void bench_counters_merge(struct bench_counters *into,
                          const struct bench_counters *from);
void bench_stats_init(struct bench_stats *s);
void bench_stats_merge(struct bench_stats *into,
                       const struct bench_stats *from);
uint64_t bench_failures(const struct bench_counters *c);

/*
 * Format the final line:
 *
 *   RESULT mode=M conns=N deliveries=D rate=R p50_us=.. p90_us=.. p99_us=..
 *   max_us=.. failures=F connect_rate=.. connect_p50_us=.. connect_p99_us=..
 *   hb_sent=.. hb_replies=.. no_ts=.. sent=.. ok=.. behind=.. elapsed_s=..
 *   [fail_<reason>=n ...]
 *
 * rate: recv and ws, deliveries per second between the first and the
 * last delivery; pub, 2xx answers per second over elapsed; hold, the
 * connect+auth rate. Percentiles are of delivery latency (pub: of request
 * latency). Only reasons that occurred are listed. Returns the length
 * snprintf would have written.
 */
int bench_result_format(char *buf, size_t len, const char *mode,
                        const struct bench_stats *s, double elapsed_s);

/* ---------------------------------------------------------------------- */
/* What a server sends a client */

enum bench_rx_mode {
	BENCH_RX_GOIM_TCP = 0, /* goim frames back to back */
	BENCH_RX_GOIM_WS,      /* goim frames inside WebSocket messages */
	BENCH_RX_WS_PLAIN,     /* WebSocket messages, no framing inside */
};

enum bench_rx_kind {
	BENCH_RX_FRAME = 0, /* a goim frame (op 9 batches are opened) */
	BENCH_RX_MESSAGE,   /* a plain WebSocket text or binary message */
	BENCH_RX_PING,      /* a WebSocket ping: answer with a pong */
	BENCH_RX_CLOSE,     /* a WebSocket close frame */
};

struct bench_rx_ev {
	int kind;
	int32_t op; /* goim op, or the WebSocket opcode */
	int32_t seq;
	int16_t ver;
	uint32_t len;   /* body (or message) bytes */
	int has_ts;     /* the body started with a timestamp */
	uint64_t ts_us; /* that timestamp */
	uint32_t u32;   /* first 4 body bytes, big-endian, if there were 4 */
};

/* Return 0 to go on, -1 to stop reading (the connection is closing). */
typedef int (*bench_rx_cb)(void *arg, const struct bench_rx_ev *ev);

/*
 * A million of these must fit beside their sockets, so nothing is
 * buffered: only headers (up to 10 + 16 bytes) and the running parse of a
 * body's first bytes are kept, about 72 bytes.
 */
struct bench_rx {
	uint64_t ws_left; /* payload bytes of the current frame to come */
	uint64_t ts_val;
	uint32_t g_left;   /* goim body bytes to come */
	uint32_t max_body; /* goim body limit */
	uint32_t msg_len;  /* plain: bytes of the message so far */
	uint32_t u32;
	uint8_t mode;
	uint8_t ws_have; /* WebSocket header bytes collected */
	uint8_t ws_need;
	uint8_t ws_op;     /* opcode of the current frame */
	uint8_t ws_msg_op; /* opcode of the message in progress, 0 = none */
	uint8_t ws_fin;
	uint8_t g_have; /* goim header bytes collected; 16 = in the body */
	uint8_t ts_state;
	uint8_t ts_digits;
	uint8_t u32_have;
	uint8_t ws_hdr[10];
	uint8_t g_hdr[16];
};

void bench_rx_init(struct bench_rx *rx, int mode, uint32_t max_body);

/*
 * Feed bytes as they arrive, in pieces of any size. cb is called once per
 * complete frame or message. Returns 0, or -1 when the input is invalid
 * (*why set) or cb returned -1 (*why NULL).
 */
int bench_rx_feed(struct bench_rx *rx, const uint8_t *p, size_t n,
                  bench_rx_cb cb, void *arg, const char **why);

/*
 * The timestamp at the start of buf[0..len): 1 with *ts_us set, or 0.
 * The same rule as bench_rx applies to bodies.
 */
int bench_ts_parse(const void *buf, size_t len, uint64_t *ts_us);

/*
 * Fill buf with a message of exactly size bytes that starts with ts_us.
 * Returns size, or 0 when size cannot hold the digits and a space.
 */
size_t bench_ts_message(char *buf, size_t size, uint64_t ts_us);

/* CLOCK_REALTIME in microseconds. */
uint64_t bench_now_us(void);

#endif
