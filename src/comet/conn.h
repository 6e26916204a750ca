/*
 * conn: the session layer's per-worker state and one client connection.
 *
 * A connection is a small non-blocking state machine on its worker's loop:
 *
 *   CONN_WS_HANDSHAKE  (WebSocket, WSS) reading the HTTP upgrade request
 *   CONN_WAIT_AUTH     waiting for op 7 within handshake_timeout
 *   CONN_CONNECTING    logic Connect in flight (cancelled if the client goes)
 *   CONN_ACTIVE        authenticated: in shm, in its room; the read deadline
 *                      is the heartbeat deadline
 *   CONN_CLOSING       op 6 sent, reading stopped; released by the reaper,
 *                      freed when the output drained or the linger expired
 *
 * A close never frees anything synchronously: the connection is queued for
 * the reaper (a deferred event), so room and connection walks in progress
 * never see memory disappear under them.
 */
#ifndef IMGATE_COMET_CONN_H
#define IMGATE_COMET_CONN_H

#include <sys/queue.h>

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "comet/cio.h"
#include "comet/comet.h"
#include "comet/htab.h"
#include "comet/room.h"
#include "common/ws.h"

struct logic;
struct push;

/*
 * A refcounted, immutable buffer shared by every recipient of a push.
 * Small ones come from per-worker free lists (push.c).
 */
struct sbuf {
	uint32_t refs;
	uint32_t len;
	uint32_t cls; /* free-list class, or past the last for malloc */
	uint8_t data[];
};

struct sbuf *sbuf_new(size_t len);
void sbuf_ref(struct sbuf *b);
void sbuf_unref(struct sbuf *b);
/* Free the buffers kept on the free lists (at exit), and count them. */
void sbuf_pool_drain(void);
size_t sbuf_pool_count(void);

enum conn_state {
	CONN_WS_HANDSHAKE = 0,
	CONN_WAIT_AUTH,
	CONN_CONNECTING,
	CONN_ACTIVE,
	CONN_CLOSING,
};

struct conn {
	LIST_ENTRY(conn) all;    /* every connection of the worker */
	struct htab_node by_id;  /* sess_worker.by_id */
	struct htab_node by_key; /* sess_worker.by_key, when active */
	struct room_member room; /* local room membership */
	struct conn *dead_next;  /* reaper queue */
	struct sess_worker *sw;
	struct cio io;
	struct event *timer; /* handshake deadline until authenticated; the
	                        linger deadline once closing */
	union {
		struct ws_handshake *hs; /* during the WebSocket upgrade */
		struct sbuf *token; /* op 7 body while logic is not reachable */
	} u;
	char *fwd;           /* X-Real-IP / X-Forwarded-For, if any */
	char *key;           /* session key from logic (malloc) */
	struct ws_reader ws; /* WebSocket frame reader, once upgraded */
	int64_t mid;
	uint64_t logic_hb_ms; /* last logic Heartbeat sent, or when the wait
	                         for logic began (monotonic ms) */
	uint32_t id;
	struct logic_ticket *ticket; /* Connect in flight */
	uint32_t hb_ms;              /* heartbeat timeout logic returned */
	int32_t auth_seq;            /* op 7 seq, echoed by op 8 */
	int16_t auth_ver;
	uint16_t flags; /* CONN_F_* */
	uint8_t state;  /* enum conn_state */
	uint8_t kind;   /* enum listener_kind */
	uint8_t naccepts;
	int32_t accepts[SHM_ACCEPTS_MAX];
};

#define CONN_F_RPC_PENDING 0x01  /* ticket is a live Connect call */
#define CONN_F_REPLACED    0x02  /* key taken over: no logic Disconnect */
#define CONN_F_TRACE       0x04  /* mid is in trace_mids */
#define CONN_F_RELEASED    0x08  /* shm, room, logic already released */
#define CONN_F_WS          0x10  /* frames go out WebSocket-framed */
#define CONN_F_QUEUED      0x20  /* on the reaper queue */
#define CONN_F_SHM_ROOM    0x40  /* counted in its room's shm count */
#define CONN_F_WS_CLOSED   0x80  /* a WebSocket close frame was sent */
#define CONN_F_IO_DEAD     0x100 /* peer gone or socket error */
#define CONN_F_KEYED       0x200 /* in sess_worker.by_key */
#define CONN_F_SSL         0x400 /* WSS */
#define CONN_F_WAITING     0x800 /* on the wait list for logic */

LIST_HEAD(conn_list, conn);

#define SESS_HB_CACHE 8

struct sess_worker {
	struct worker *w;
	struct conn_list conns;
	size_t nconns;
	struct htab by_id;
	struct htab by_key;
	uint32_t next_id;
	struct room_set rooms;
	struct logic *logic;
	struct push *push;
	SSL_CTX *tls;
	struct cio_loop cio;
	struct conn *dead; /* reaper queue */
	struct event *reaper;
	struct conn *waiting; /* op 7 received while logic is unreachable */
	struct event *retry;
	struct event *resync;
	const struct timeval *hs_tv; /* common timeout: handshake */
	const struct timeval *linger_tv;
	struct {
		uint32_t ms;
		const struct timeval *tv;
	} hb_tv[SESS_HB_CACHE]; /* common timeouts per heartbeat duration */
	int64_t *trace;
	size_t ntrace;
	void (*drain_done)(struct worker *w);
	int draining;
	size_t disconnects_pending;
};

/* Milliseconds of the monotonic clock, and of the wall clock. */
uint64_t sess_mono_ms(void);
uint64_t sess_wall_ms(void);

/* Connection lookups: NULL when none. */
struct conn *conn_by_id(struct sess_worker *sw, uint32_t id);
struct conn *conn_by_key(struct sess_worker *sw, const char *key);

/* 1 if c watches op (goim's accepts). */
int conn_watches(const struct conn *c, int32_t op);

/*
 * Queue a shared buffer holding nframes goim frames (by reference) to c's
 * output. 0 queued; -1 when c is closing or went over output_limit (it is
 * then closed as "slow" and the drop counted).
 */
int conn_send_shared(struct conn *c, struct sbuf *b, unsigned nframes);

/*
 * Close c on purpose: op 6 with reason (NULL: none), stop reading, and
 * queue the release. counter (SHM_C__COUNT for none) is incremented.
 */
void conn_close(struct conn *c, const char *reason, enum shm_counter counter);

/*
 * Redis came back after an outage: its session records may be gone, so
 * renew every session of this worker with logic (shortly, in one sweep).
 */
void sess_resync(struct sess_worker *sw);

/* The logic Disconnect of a closing connection has been answered. */
void sess_disconnect_done(struct sess_worker *sw);

void sess_count_add(struct sess_worker *sw, enum shm_counter c, int64_t d);

/*
 * Stamp the worker's liveness for the master's watchdog from the loop's
 * callbacks, not only from its 1 s timer: a worker short of CPU (a
 * million connections on CPUs shared by a hundred processes) turns its
 * loop slowly but is not hung, and must not be killed as if it were.
 * A loop stuck inside one callback still stops stamping.
 */
void sess_alive(struct sess_worker *sw);

#define conn_trace(c, fmt, ...)                                           \
	do {                                                              \
		if ((c)->flags & CONN_F_TRACE)                            \
			log_notice("trace mid=%lld key=%s conn=%u: " fmt, \
			           (long long)(c)->mid,                   \
			           (c)->key ? (c)->key : "-", (c)->id,    \
			           ##__VA_ARGS__);                        \
	} while (0)

#endif
