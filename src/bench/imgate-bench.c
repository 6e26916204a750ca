/*
 * imgate-bench: load client for imgate and its peers. See imgate-bench(1).
 *
 * One process runs one libevent loop over a flat array of connections,
 * each a struct event and a streaming reader (about 220 bytes); one timer
 * per process paces connects, sends heartbeats and checks deadlines, so
 * no connection owns a buffer or a timer. With -p the work is split over
 * forked processes (the fd limit is per process) that report their
 * counters every second and their histograms at the end through a pipe.
 */
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <netdb.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "bench/bench.h"
#include "common/proto.h"
#include "common/ws.h"

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define TICK_MS       100
#define PUB_TICK_MS   2
#define READ_MAX      65536
#define HS_MAX_HEADER 4096
#define RX_MAX_BODY   (16u << 20)
#define AUTH_BODY_MAX 512
#define MSG_SIZE_MAX  (1 << 20)
#define PATH_LEN      1024

enum mode { MODE_HOLD, MODE_RECV, MODE_PUB, MODE_WS };
static const char *const mode_names[] = {"hold", "recv", "pub", "ws"};

enum conn_state {
	ST_IDLE = 0,   /* not started */
	ST_CONNECTING, /* connect() in flight */
	ST_UPGRADE,    /* WebSocket upgrade sent, 101 awaited */
	ST_AUTH,       /* op 7 sent, op 8 awaited */
	ST_UP,
	ST_DEAD,
};

struct opts {
	enum mode mode;
	char host[256];
	int port;
	int ws; /* goim over WebSocket */
	char path[PATH_LEN];
	long conns;
	long rooms;
	double duration;
	double hb_interval;
	long procs;
	long srcaddrs;
	struct in_addr src_base;
	double connect_rate;
	long inflight;
	double timeout;
	long long mid_base;
	char key_prefix[64];
	char room_prefix[64];
	int op;
	/* pub */
	double pub_rate;
	long msg_size;
	long long messages;
	char pub_type[16];
	char room[128];
	char keys[1024];
	char ready_file[PATH_LEN];
	int quiet;
};

/* Alive only between connect and the 101: freed once upgraded. */
struct upgrade {
	struct evbuffer *in;
	char key[WS_KEY_LEN + 1];
};

struct conn {
	struct event ev;
	struct bench_rx rx;
	struct upgrade *up;
	uint64_t t0;  /* connect start, us */
	uint32_t idx; /* global index across processes */
	uint8_t state;
};

struct pub_conn {
	struct evhttp_connection *hc;
	uint64_t t_sent;
	int busy;
};

/* One worker per process: its state is the process's. */
static struct {
	struct event_base *base;
	struct conn *conns;
	long n;           /* connections of this process */
	long first;       /* global index of conns[0] */
	long next;        /* next one to start */
	long inflight;    /* connecting, upgrading or authenticating */
	long settled;     /* conns[0..settled) are past authentication */
	uint64_t hb_slot; /* last heartbeat slot served (wall clock) */
	struct pub_conn *pubs;
	long npubs;
	long pub_rr;
	uint64_t pub_scheduled;
	double pub_rate;
	uint64_t pub_limit;
	int report_fd; /* -1: print progress ourselves */
	struct bench_stats st;
	struct bench_counters prev;
	uint64_t t_start;
	uint64_t t_settled;
	uint64_t t_end;
	uint64_t tick;
	struct evbuffer *scratch;
	struct sockaddr_in dst;
	uint64_t rng;
} W;

static struct opts O;
static uint8_t rbuf[READ_MAX];

static void conn_fail(struct conn *c, int reason);

static void
usage(FILE *f)
{
	fprintf(
	    f, "usage: imgate-bench hold|recv|pub|ws [options]\n"
	       "  -H host -P port -t tcp|ws -u path -n conns -r rooms\n"
	       "  -d seconds -i heartbeat_s -p procs -S srcaddrs -B first_src\n"
	       "  -c connects_per_s -C max_inflight -T timeout_s -m mid_base\n"
	       "  -K key_prefix -o op -R msgs_per_s -s msg_size -N messages\n"
	       "  --type room|keys|mids|all --room R --keys k1,k2\n"
	       "  --room-prefix live:// --ready-file FILE -q\n"
	       "see imgate-bench(1)\n");
}

static void __attribute__((format(printf, 1, 2), noreturn))
die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "imgate-bench: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static uint32_t
rng_next(void)
{
	/* xorshift64*: masks only need to vary, not to be secret. */
	W.rng ^= W.rng >> 12;
	W.rng ^= W.rng << 25;
	W.rng ^= W.rng >> 27;
	return (uint32_t)((W.rng * 2685821657736338717ull) >> 32);
}

/*
 * The first "%d" in tmpl becomes n; no other conversion is looked at, so a
 * path given on the command line is never a format string.
 */
static void
path_for(char *out, size_t len, const char *tmpl, long n)
{
	const char *p = strstr(tmpl, "%d");

	if (p == NULL) {
		snprintf(out, len, "%s", tmpl);
		return;
	}
	snprintf(out, len, "%.*s%ld%s", (int)(p - tmpl), tmpl, n, p + 2);
}

/* ---------------------------------------------------------------------- */
/* Sending */

/* Small frames only, on a socket with an empty send buffer: all or fail. */
static int
conn_write(struct conn *c, const void *buf, size_t len)
{
	ssize_t n = send(event_get_fd(&c->ev), buf, len, MSG_NOSIGNAL);

	if (n == (ssize_t)len)
		return 0;
	conn_fail(c, BENCH_FAIL_WRITE);
	return -1;
}

static int
conn_send_ws(struct conn *c, int opcode, const void *data, size_t len)
{
	uint32_t r = rng_next();
	uint8_t mask[4];
	size_t n;
	uint8_t *p;

	memcpy(mask, &r, sizeof(mask));
	evbuffer_drain(W.scratch, evbuffer_get_length(W.scratch));
	if (ws_write_masked_frame(W.scratch, opcode, 1, data, len, mask) ==
	    -1) {
		conn_fail(c, BENCH_FAIL_WRITE);
		return -1;
	}
	n = evbuffer_get_length(W.scratch);
	p = evbuffer_pullup(W.scratch, (ev_ssize_t)n);
	return conn_write(c, p, n);
}

static int
conn_send_goim(struct conn *c, int op, int seq, const void *body, size_t len)
{
	uint8_t buf[PROTO_HEADER_LEN + AUTH_BODY_MAX];

	if (len > AUTH_BODY_MAX) {
		conn_fail(c, BENCH_FAIL_WRITE);
		return -1;
	}
	proto_header_write(buf, len, 1, op, seq);
	if (len > 0)
		memcpy(buf + PROTO_HEADER_LEN, body, len);
	if (O.ws)
		return conn_send_ws(c, WS_OP_BINARY, buf,
		                    PROTO_HEADER_LEN + len);
	return conn_write(c, buf, PROTO_HEADER_LEN + len);
}

static int
conn_send_auth(struct conn *c)
{
	char body[AUTH_BODY_MAX], key[128];
	int n;

	if (O.key_prefix[0] != '\0')
		snprintf(key, sizeof(key), "%s%u", O.key_prefix, c->idx);
	else
		key[0] = '\0';
	n = snprintf(body, sizeof(body),
	             "{\"mid\":%lld,\"key\":\"%s\",\"room_id\":\"%s%ld\","
	             "\"platform\":\"bench\",\"accepts\":[%d]}",
	             O.mid_base + c->idx, key, O.room_prefix,
	             (long)(c->idx % O.rooms), O.op);
	if (n < 0 || n >= (int)sizeof(body)) {
		conn_fail(c, BENCH_FAIL_WRITE);
		return -1;
	}
	c->state = ST_AUTH;
	return conn_send_goim(c, PROTO_OP_AUTH, 1, body, (size_t)n);
}

/* ---------------------------------------------------------------------- */
/* Connection life */

static void
conn_close(struct conn *c)
{
	int fd = event_get_fd(&c->ev);

	if (c->state == ST_IDLE || c->state == ST_DEAD)
		return;
	event_del(&c->ev);
	if (fd != -1)
		close(fd);
	if (c->up != NULL) {
		evbuffer_free(c->up->in);
		free(c->up);
		c->up = NULL;
	}
	if (c->state == ST_UP) {
		W.st.c.up--;
	} else {
		W.inflight--;
	}
	c->state = ST_DEAD;
}

static void
conn_fail(struct conn *c, int reason)
{
	if (c->state == ST_IDLE || c->state == ST_DEAD)
		return;
	W.st.c.fail[reason]++;
	conn_close(c);
}

static void
conn_is_up(struct conn *c, uint64_t now)
{
	c->state = ST_UP;
	W.inflight--;
	W.st.c.up++;
	W.st.c.up_total++;
	if (W.st.c.t_first_up == 0)
		W.st.c.t_first_up = now;
	W.st.c.t_last_up = now;
	bench_hist_add(&W.st.connect, now - c->t0);
}

static void
delivery(const struct bench_rx_ev *ev)
{
	uint64_t now = bench_now_us();

	W.st.c.deliveries++;
	if (W.st.c.t_first_delivery == 0)
		W.st.c.t_first_delivery = now;
	W.st.c.t_last_delivery = now;
	if (!ev->has_ts) {
		W.st.c.no_ts++;
		return;
	}
	/* A clock step backwards must not show as a huge latency. */
	bench_hist_add(&W.st.lat, now > ev->ts_us ? now - ev->ts_us : 0);
}

static int
on_rx(void *arg, const struct bench_rx_ev *ev)
{
	struct conn *c = arg;

	switch (ev->kind) {
	case BENCH_RX_PING:
		return conn_send_ws(c, WS_OP_PONG, NULL, 0);
	case BENCH_RX_CLOSE:
		conn_fail(c, c->state == ST_UP ? BENCH_FAIL_KICKED
		                               : BENCH_FAIL_AUTH);
		return -1;
	case BENCH_RX_MESSAGE:
		if (c->state == ST_UP)
			delivery(ev);
		return 0;
	default:
		break;
	}
	switch (ev->op) {
	case PROTO_OP_AUTH_REPLY:
		if (c->state == ST_AUTH)
			conn_is_up(c, bench_now_us());
		return 0;
	case PROTO_OP_HEARTBEAT_REPLY:
		W.st.c.hb_replies++;
		return 0;
	case PROTO_OP_DISCONNECT_REPLY:
		conn_fail(c, c->state == ST_UP ? BENCH_FAIL_KICKED
		                               : BENCH_FAIL_AUTH);
		return -1;
	default:
		break;
	}
	/* goim's own ops stop at 17; anything above is a business push. */
	if (ev->op > PROTO_OP_UNSUB_REPLY && c->state == ST_UP)
		delivery(ev);
	else
		W.st.c.other_ops++;
	return 0;
}

static void
conn_feed(struct conn *c, const uint8_t *p, size_t n)
{
	const char *why = NULL;

	if (bench_rx_feed(&c->rx, p, n, on_rx, c, &why) == -1 && why != NULL)
		conn_fail(c, BENCH_FAIL_PROTO);
}

static void
on_upgrade_data(struct conn *c, const uint8_t *p, size_t n)
{
	struct evbuffer *in;
	const char *why;
	int rc, got;

	if (evbuffer_add(c->up->in, p, n) == -1) {
		conn_fail(c, BENCH_FAIL_FD);
		return;
	}
	rc = ws_client_response(c->up->in, HS_MAX_HEADER, c->up->key, &why);
	if (rc == 0)
		return;
	if (rc == -1) {
		conn_fail(c, BENCH_FAIL_HANDSHAKE);
		return;
	}
	/* Frames that came with the 101 go to the reader. */
	in = c->up->in;
	free(c->up);
	c->up = NULL;
	if (O.mode == MODE_WS) {
		conn_is_up(c, bench_now_us());
	} else if (conn_send_auth(c) == -1) {
		evbuffer_free(in);
		return;
	}
	/* p is rbuf, already copied into in: rbuf can be reused. */
	while (c->state != ST_DEAD &&
	       (got = evbuffer_remove(in, rbuf, sizeof(rbuf))) > 0)
		conn_feed(c, rbuf, (size_t)got);
	evbuffer_free(in);
}

static void
on_read(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	ssize_t n;

	n = recv(fd, rbuf, sizeof(rbuf), 0);
	if (n > 0) {
		W.st.c.bytes_in += (uint64_t)n;
		if (c->state == ST_UPGRADE)
			on_upgrade_data(c, rbuf, (size_t)n);
		else
			conn_feed(c, rbuf, (size_t)n);
		return;
	}
	if (n == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	switch (c->state) {
	case ST_UPGRADE:
		conn_fail(c, BENCH_FAIL_HANDSHAKE);
		break;
	case ST_AUTH:
		conn_fail(c, BENCH_FAIL_AUTH);
		break;
	default:
		conn_fail(c, BENCH_FAIL_CLOSED);
		break;
	}
}

static int
fail_reason(int err)
{
	switch (err) {
	case ECONNREFUSED:
		return BENCH_FAIL_REFUSED;
	case EADDRNOTAVAIL:
	case EADDRINUSE:
		return BENCH_FAIL_ADDR;
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
		return BENCH_FAIL_FD;
	case ETIMEDOUT:
		return BENCH_FAIL_TIMEOUT;
	default:
		return BENCH_FAIL_CONNECT;
	}
}

static void
on_connected(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	int err = 0, one = 1;
	socklen_t len = sizeof(err);
	char hostport[300], path[PATH_LEN + 24];

	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
		err = errno;
	if (err != 0) {
		conn_fail(c, fail_reason(err));
		return;
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	event_assign(&c->ev, W.base, fd, EV_READ | EV_PERSIST, on_read, c);
	if (event_add(&c->ev, NULL) == -1) {
		conn_fail(c, BENCH_FAIL_FD);
		return;
	}
	if (O.ws || O.mode == MODE_WS) {
		c->state = ST_UPGRADE;
		c->up = calloc(1, sizeof(*c->up));
		if (c->up == NULL || (c->up->in = evbuffer_new()) == NULL ||
		    ws_client_key(c->up->key) == -1) {
			conn_fail(c, BENCH_FAIL_FD);
			return;
		}
		snprintf(hostport, sizeof(hostport), "%s:%d", O.host, O.port);
		path_for(path, sizeof(path), O.path, c->idx % O.rooms);
		evbuffer_drain(W.scratch, evbuffer_get_length(W.scratch));
		if (ws_client_request(W.scratch, hostport, path, c->up->key) ==
		    -1) {
			conn_fail(c, BENCH_FAIL_FD);
			return;
		}
		len = (socklen_t)evbuffer_get_length(W.scratch);
		conn_write(c, evbuffer_pullup(W.scratch, len), len);
		return;
	}
	conn_send_auth(c);
}

static void
conn_start(struct conn *c)
{
	struct sockaddr_in src;
	int fd, one = 1;

	c->t0 = bench_now_us();
	c->state = ST_CONNECTING;
	W.inflight++;
	W.st.c.started++;
	bench_rx_init(&c->rx,
	              O.mode == MODE_WS ? BENCH_RX_WS_PLAIN
	              : O.ws            ? BENCH_RX_GOIM_WS
	                                : BENCH_RX_GOIM_TCP,
	              RX_MAX_BODY);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		W.inflight--;
		c->state = ST_DEAD;
		W.st.c.fail[fail_reason(errno)]++;
		return;
	}
	event_assign(&c->ev, W.base, fd, EV_WRITE, on_connected, c);
	if (O.srcaddrs > 0) {
		/*
		 * Leave the port to connect(): bound early, every source
		 * address would be limited to ip_local_port_range whatever
		 * the destination.
		 */
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one,
		           sizeof(one));
		memset(&src, 0, sizeof(src));
		src.sin_family = AF_INET;
		src.sin_addr.s_addr = htonl(ntohl(O.src_base.s_addr) +
		                            (uint32_t)(c->idx % O.srcaddrs));
		if (bind(fd, (struct sockaddr *)&src, sizeof(src)) == -1) {
			conn_fail(c, fail_reason(errno));
			return;
		}
	}
	if (connect(fd, (struct sockaddr *)&W.dst, sizeof(W.dst)) == -1 &&
	    errno != EINPROGRESS) {
		conn_fail(c, fail_reason(errno));
		return;
	}
	if (event_add(&c->ev, NULL) == -1)
		conn_fail(c, BENCH_FAIL_FD);
}

/* ---------------------------------------------------------------------- */
/* Reporting */

enum { REC_PROGRESS = 1, REC_FINAL = 2 };

struct rec_header {
	uint32_t type;
	uint32_t len;
};

static void
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* the parent is gone: nobody to tell */
		p += n;
		len -= (size_t)n;
	}
}

static void
send_record(int type, const void *payload, size_t len)
{
	struct rec_header h = {(uint32_t)type, (uint32_t)len};

	write_all(W.report_fd, &h, sizeof(h));
	write_all(W.report_fd, payload, len);
}

static void
write_ready_file(void)
{
	FILE *f;

	if (O.ready_file[0] == '\0')
		return;
	f = fopen(O.ready_file, "w");
	if (f == NULL) {
		fprintf(stderr, "imgate-bench: %s: %s\n", O.ready_file,
		        strerror(errno));
		return;
	}
	fprintf(f, "ready\n");
	fclose(f);
}

static void
print_progress(const struct bench_counters *now,
               const struct bench_counters *prev, double t)
{
	if (O.quiet)
		return;
	if (O.mode == MODE_PUB) {
		fprintf(stderr,
		        "[%6.1fs] sent=%llu (+%llu/s) ok=%llu behind=%llu "
		        "fail=%llu\n",
		        t, (unsigned long long)now->sent,
		        (unsigned long long)(now->sent - prev->sent),
		        (unsigned long long)now->ok,
		        (unsigned long long)now->behind,
		        (unsigned long long)bench_failures(now));
		return;
	}
	fprintf(stderr,
	        "[%6.1fs] up=%llu/%llu (+%llu/s) fail=%llu deliveries=%llu "
	        "(+%llu/s) hb=%llu/%llu\n",
	        t, (unsigned long long)now->up, (unsigned long long)now->target,
	        (unsigned long long)(now->up_total - prev->up_total),
	        (unsigned long long)bench_failures(now),
	        (unsigned long long)now->deliveries,
	        (unsigned long long)(now->deliveries - prev->deliveries),
	        (unsigned long long)now->hb_replies,
	        (unsigned long long)now->hb_sent);
}

static void
progress(uint64_t now)
{
	if (W.report_fd != -1) {
		send_record(REC_PROGRESS, &W.st.c, sizeof(W.st.c));
		return;
	}
	print_progress(&W.st.c, &W.prev, (double)(now - W.t_start) / 1e6);
	W.prev = W.st.c;
}

/* ---------------------------------------------------------------------- */
/* The tick: connect pacing, deadlines, heartbeats */

static void
start_connections(uint64_t now)
{
	long budget = W.n - W.next;
	long room = O.inflight - W.inflight;
	long due;

	if (O.connect_rate > 0) {
		due = (long)(O.connect_rate * (double)(now - W.t_start) / 1e6) +
		      1 - W.next;
		if (due < budget)
			budget = due;
	}
	if (room < budget)
		budget = room;
	while (budget-- > 0 && W.next < W.n)
		conn_start(&W.conns[W.next++]);
}

static void
check_deadlines(uint64_t now)
{
	uint64_t limit = (uint64_t)(O.timeout * 1e6);
	long i;

	if (W.inflight == 0)
		return;
	/*
	 * Connections start in order and mostly finish in order: the scan
	 * starts past the settled front, or a million connections would be
	 * walked ten times a second.
	 */
	while (W.settled < W.next &&
	       (W.conns[W.settled].state < ST_CONNECTING ||
	        W.conns[W.settled].state > ST_AUTH))
		W.settled++;
	for (i = W.settled; i < W.next; i++) {
		struct conn *c = &W.conns[i];

		/* t0 may be later than now: started during this tick. */
		if (c->state >= ST_CONNECTING && c->state <= ST_AUTH &&
		    now > c->t0 && now - c->t0 > limit)
			conn_fail(c, BENCH_FAIL_TIMEOUT);
	}
}

static void
send_heartbeats(uint64_t now)
{
	uint64_t slot = now / (TICK_MS * 1000), s;
	long period, i;

	if (O.hb_interval <= 0 || O.mode == MODE_WS)
		return;
	period = (long)(O.hb_interval * 1000 / TICK_MS);
	if (period < 1)
		period = 1;
	if (W.hb_slot == 0 || slot - W.hb_slot > (uint64_t)period)
		W.hb_slot = slot - 1;
	/*
	 * Spread over the interval: each slot of TICK_MS wall-clock time
	 * takes one residue class. Slots are wall-clock time, not ticks: a
	 * process short of CPU runs late ticks, and counting ticks would
	 * stretch the interval past the server's heartbeat deadline.
	 */
	for (s = W.hb_slot + 1; s <= slot; s++) {
		for (i = (long)((s + (uint64_t)W.first) % (uint64_t)period);
		     i < W.n; i += period) {
			struct conn *c = &W.conns[i];

			if (c->state != ST_UP)
				continue;
			W.st.c.hb_sent++;
			conn_send_goim(c, PROTO_OP_HEARTBEAT,
			               (int)(s & 0x7fffffff), NULL, 0);
		}
	}
	W.hb_slot = slot;
}

static void
worker_stop(void)
{
	W.t_end = bench_now_us();
	event_base_loopbreak(W.base);
}

static void
on_tick(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = bench_now_us();

	W.tick++;
	start_connections(now);
	check_deadlines(now);
	send_heartbeats(now);
	if (!W.st.c.settled && W.next == W.n && W.inflight == 0) {
		W.st.c.settled = 1;
		W.t_settled = now;
		if (W.report_fd == -1)
			write_ready_file();
		progress(now);
	} else if (W.tick % (1000 / TICK_MS) == 0) {
		progress(now);
	}
	if (W.st.c.settled && O.duration > 0 &&
	    (double)(now - W.t_settled) >= O.duration * 1e6)
		worker_stop();
}

/* ---------------------------------------------------------------------- */
/* pub: the HTTP push API (or any POST endpoint) on keep-alive connections */

static void
pub_done(struct evhttp_request *req, void *arg)
{
	struct pub_conn *pc = arg;
	uint64_t now = bench_now_us();
	int code = req != NULL ? evhttp_request_get_response_code(req) : 0;

	pc->busy = 0;
	if (code >= 200 && code < 300) {
		W.st.c.ok++;
		bench_hist_add(&W.st.lat, now - pc->t_sent);
	} else if (code == 0) {
		W.st.c.fail[BENCH_FAIL_CONNECT]++;
	} else {
		W.st.c.fail[BENCH_FAIL_HTTP]++;
	}
}

static void
pub_uri(char *out, size_t len, uint64_t k)
{
	char tmpl[PATH_LEN], *p, *keys;
	long room = O.rooms > 0 ? (long)(k % (uint64_t)O.rooms) : 0;

	if (O.path[0] != '\0') {
		path_for(out, len, O.path, room);
		return;
	}
	if (strcmp(O.pub_type, "room") == 0) {
		if (O.rooms > 1)
			snprintf(tmpl, sizeof(tmpl), "%ld", room);
		else
			snprintf(tmpl, sizeof(tmpl), "%s", O.room);
		snprintf(out, len,
		         "/goim/push/room?operation=%d&type=live&room=%s", O.op,
		         tmpl);
	} else if (strcmp(O.pub_type, "all") == 0) {
		snprintf(out, len, "/goim/push/all?operation=%d&speed=0", O.op);
	} else {
		/* keys or mids, as goim names them: keys=a&keys=b */
		snprintf(out, len, "/goim/push/%s?operation=%d", O.pub_type,
		         O.op);
		keys = strdup(O.keys);
		if (keys == NULL)
			return;
		for (p = strtok(keys, ","); p != NULL; p = strtok(NULL, ","))
			snprintf(out + strlen(out), len - strlen(out), "&%s=%s",
			         O.pub_type, p);
		free(keys);
	}
}

static void
pub_send(struct pub_conn *pc, uint64_t now)
{
	static char body[MSG_SIZE_MAX];
	char uri[PATH_LEN + 2048], host[300];
	struct evhttp_request *req;
	struct evkeyvalq *h;
	size_t len;

	req = evhttp_request_new(pub_done, pc);
	if (req == NULL) {
		W.st.c.fail[BENCH_FAIL_FD]++;
		return;
	}
	pub_uri(uri, sizeof(uri), W.st.c.sent);
	snprintf(host, sizeof(host), "%s:%d", O.host, O.port);
	h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Host", host);
	evhttp_add_header(h, "Content-Type", "text/plain");
	len = bench_ts_message(body, (size_t)O.msg_size, now);
	evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	pc->t_sent = now;
	pc->busy = 1;
	W.st.c.sent++;
	/* On failure evhttp has freed req and called pub_done. */
	evhttp_make_request(pc->hc, req, EVHTTP_REQ_POST, uri);
}

static void
on_pub_tick(evutil_socket_t fd, short what, void *arg)
{
	uint64_t now = bench_now_us(), due;
	double elapsed;
	long tries;

	if (W.pub_limit > 0 && W.pub_scheduled >= W.pub_limit)
		goto done;
	elapsed = (double)(now - W.t_start) / 1e6;
	/* Past the duration nothing more falls due: answers are awaited. */
	if (O.duration > 0 && elapsed > O.duration)
		elapsed = O.duration;
	due = (uint64_t)(W.pub_rate * elapsed) + 1;
	if (W.pub_limit > 0 && due > W.pub_limit)
		due = W.pub_limit;
	while (W.pub_scheduled < due) {
		/* One request in flight per connection: keep-alive, no
		 * pipelining. */
		for (tries = 0; tries < W.npubs; tries++) {
			struct pub_conn *pc = &W.pubs[W.pub_rr++ % W.npubs];

			if (!pc->busy) {
				pub_send(pc, now);
				break;
			}
		}
		if (tries == W.npubs)
			W.st.c.behind++;
		W.pub_scheduled++;
	}
done:
	if (W.tick++ % (1000 / PUB_TICK_MS) == 0 && W.tick > 1)
		progress(now);
	if ((O.duration > 0 && (double)(now - W.t_start) >= O.duration * 1e6) ||
	    (W.pub_limit > 0 && W.pub_scheduled >= W.pub_limit)) {
		long i;

		for (i = 0; i < W.npubs && !W.pubs[i].busy; i++)
			;
		/* Let answers in flight come back, for at most the timeout. */
		if (i == W.npubs ||
		    (double)(now - W.t_start) >= (O.duration + O.timeout) * 1e6)
			worker_stop();
		W.t_end = now;
	}
}

/* CPU this process has used, user and system. */
static uint64_t
cpu_used_us(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) == -1)
		return 0;
	return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
	       (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

/* ---------------------------------------------------------------------- */
/* One process's share */

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	worker_stop();
}

static void
worker_run(long first, long n, double pub_rate, uint64_t pub_limit,
           int report_fd)
{
	struct event *tick, *sigterm, *sigint;
	struct timeval tv = {0, TICK_MS * 1000};
	long i;

	W.base = event_base_new();
	W.scratch = evbuffer_new();
	if (W.base == NULL || W.scratch == NULL)
		die("out of memory");
	W.report_fd = report_fd;
	W.first = first;
	W.n = n;
	W.rng =
	    ((uint64_t)getpid() << 32) ^ bench_now_us() ^ 0x9e3779b97f4a7c15ull;
	bench_stats_init(&W.st);
	W.t_start = bench_now_us();
	W.st.c.t_start = W.t_start;
	if (O.mode == MODE_PUB) {
		W.pub_rate = pub_rate;
		W.pub_limit = pub_limit;
		W.npubs = n;
		W.pubs = calloc((size_t)n, sizeof(*W.pubs));
		if (W.pubs == NULL)
			die("out of memory");
		for (i = 0; i < n; i++) {
			W.pubs[i].hc = evhttp_connection_base_new(
			    W.base, NULL, O.host, (unsigned short)O.port);
			if (W.pubs[i].hc == NULL)
				die("evhttp_connection_base_new failed");
			evhttp_connection_set_timeout(W.pubs[i].hc,
			                              (int)(O.timeout + 0.999));
		}
		W.st.c.target = pub_limit;
		W.st.c.settled = 1;
		tv.tv_usec = PUB_TICK_MS * 1000;
		tick = event_new(W.base, -1, EV_PERSIST, on_pub_tick, NULL);
	} else {
		W.conns = calloc((size_t)n, sizeof(*W.conns));
		if (W.conns == NULL && n > 0)
			die("out of memory for %ld connections", n);
		for (i = 0; i < n; i++)
			W.conns[i].idx = (uint32_t)(first + i);
		W.st.c.target = (uint64_t)n;
		tick = event_new(W.base, -1, EV_PERSIST, on_tick, NULL);
	}
	sigterm = evsignal_new(W.base, SIGTERM, on_signal, NULL);
	sigint = evsignal_new(W.base, SIGINT, on_signal, NULL);
	if (tick == NULL || sigterm == NULL || sigint == NULL ||
	    event_add(tick, &tv) == -1 || event_add(sigterm, NULL) == -1 ||
	    event_add(sigint, NULL) == -1)
		die("cannot set up the event loop");
	if (O.mode != MODE_PUB)
		start_connections(W.t_start);
	event_base_dispatch(W.base);
	if (W.t_end == 0)
		W.t_end = bench_now_us();
	event_free(tick);
	event_free(sigterm);
	event_free(sigint);
	for (i = 0; W.conns != NULL && i < n; i++)
		if (W.conns[i].state != ST_IDLE &&
		    W.conns[i].state != ST_DEAD) {
			int was_up = W.conns[i].state == ST_UP;

			conn_close(&W.conns[i]);
			/* Still up at the end: that is the figure to report. */
			if (was_up)
				W.st.c.up++;
		}
	for (i = 0; W.pubs != NULL && i < W.npubs; i++)
		evhttp_connection_free(W.pubs[i].hc);
	if (O.mode == MODE_PUB)
		W.st.c.up = (uint64_t)W.npubs;
	W.st.c.cpu_us = cpu_used_us();
	free(W.conns);
	free(W.pubs);
	evbuffer_free(W.scratch);
	event_base_free(W.base);
}

static void
print_result(const struct bench_stats *st, double elapsed)
{
	char line[2048];

	bench_result_format(line, sizeof(line), mode_names[O.mode], st,
	                    elapsed);
	printf("%s\n", line);
	fflush(stdout);
}

/* ---------------------------------------------------------------------- */
/* The parent of -p processes */

struct child {
	pid_t pid;
	int fd;
	struct event *ev;
	struct evbuffer *in;
	struct bench_counters last;
	int done;
};

static struct {
	struct event_base *base;
	struct child *kids;
	long nkids;
	long alive;
	struct bench_stats total;
	struct bench_counters prev;
	uint64_t t_start;
	int ready;
} P;

static void
parent_check_done(void)
{
	if (P.alive == 0)
		event_base_loopbreak(P.base);
}

static void
on_child(evutil_socket_t fd, short what, void *arg)
{
	struct child *k = arg;
	struct rec_header h;
	int n = evbuffer_read(k->in, fd, 65536);

	while (evbuffer_get_length(k->in) >= sizeof(h)) {
		evbuffer_copyout(k->in, &h, sizeof(h));
		if (evbuffer_get_length(k->in) < sizeof(h) + h.len)
			break;
		evbuffer_drain(k->in, sizeof(h));
		if (h.type == REC_PROGRESS && h.len == sizeof(k->last)) {
			evbuffer_remove(k->in, &k->last, sizeof(k->last));
		} else if (h.type == REC_FINAL &&
		           h.len == sizeof(struct bench_stats)) {
			struct bench_stats *s = malloc(sizeof(*s));

			if (s == NULL)
				die("out of memory");
			evbuffer_remove(k->in, s, sizeof(*s));
			bench_stats_merge(&P.total, s);
			k->last = s->c;
			k->done = 1;
			free(s);
		} else {
			evbuffer_drain(k->in, h.len);
		}
	}
	if (n <= 0 && !(n == -1 && errno == EAGAIN)) {
		event_del(k->ev);
		close(k->fd);
		k->fd = -1;
		P.alive--;
		parent_check_done();
	}
}

static void
on_parent_tick(evutil_socket_t fd, short what, void *arg)
{
	struct bench_counters sum;
	long i;

	memset(&sum, 0, sizeof(sum));
	for (i = 0; i < P.nkids; i++)
		bench_counters_merge(&sum, &P.kids[i].last);
	print_progress(&sum, &P.prev,
	               (double)(bench_now_us() - P.t_start) / 1e6);
	P.prev = sum;
	if (!P.ready && sum.settled == (uint64_t)P.nkids) {
		P.ready = 1;
		write_ready_file();
	}
}

static void
on_parent_signal(evutil_socket_t sig, short what, void *arg)
{
	long i;

	for (i = 0; i < P.nkids; i++)
		if (P.kids[i].pid > 0)
			kill(P.kids[i].pid, SIGTERM);
}

static void
run_children(void)
{
	struct event *tick, *sigterm, *sigint;
	struct timeval tv = {1, 0};
	long i, j, per, rest, first = 0;
	uint64_t end;
	int fds[2];

	P.nkids = O.procs;
	P.kids = calloc((size_t)P.nkids, sizeof(*P.kids));
	if (P.kids == NULL)
		die("out of memory");
	per = O.conns / O.procs;
	rest = O.conns % O.procs;
	fflush(NULL);
	for (i = 0; i < P.nkids; i++) {
		long n = per + (i < rest ? 1 : 0);
		uint64_t limit = 0;

		if (O.mode == MODE_PUB) {
			n = n > 0 ? n : 1;
			if (O.messages > 0)
				limit = (uint64_t)(O.messages / O.procs +
				                   (i < O.messages % O.procs));
		}
		if (pipe2(fds, O_CLOEXEC) == -1)
			die("pipe: %s", strerror(errno));
		P.kids[i].pid = fork();
		if (P.kids[i].pid == -1)
			die("fork: %s", strerror(errno));
		if (P.kids[i].pid == 0) {
			close(fds[0]);
			O.connect_rate /= (double)O.procs;
			for (j = 0; j < i; j++)
				close(P.kids[j].fd);
			worker_run(first, n, O.pub_rate / (double)O.procs,
			           limit, fds[1]);
			W.st.c.t_start = W.t_start;
			send_record(REC_FINAL, &W.st, sizeof(W.st));
			_exit(0);
		}
		close(fds[1]);
		P.kids[i].fd = fds[0];
		first += n;
	}
	P.base = event_base_new();
	if (P.base == NULL)
		die("out of memory");
	P.t_start = bench_now_us();
	bench_stats_init(&P.total);
	for (i = 0; i < P.nkids; i++) {
		struct child *k = &P.kids[i];

		evutil_make_socket_nonblocking(k->fd);
		k->in = evbuffer_new();
		k->ev =
		    event_new(P.base, k->fd, EV_READ | EV_PERSIST, on_child, k);
		if (k->in == NULL || k->ev == NULL ||
		    event_add(k->ev, NULL) == -1)
			die("cannot watch child %ld", i);
	}
	P.alive = P.nkids;
	tick = event_new(P.base, -1, EV_PERSIST, on_parent_tick, NULL);
	sigterm = evsignal_new(P.base, SIGTERM, on_parent_signal, NULL);
	sigint = evsignal_new(P.base, SIGINT, on_parent_signal, NULL);
	if (tick == NULL || sigterm == NULL || sigint == NULL ||
	    event_add(tick, &tv) == -1 || event_add(sigterm, NULL) == -1 ||
	    event_add(sigint, NULL) == -1)
		die("cannot set up the event loop");
	event_base_dispatch(P.base);
	end = bench_now_us();
	for (i = 0; i < P.nkids; i++) {
		int status;

		waitpid(P.kids[i].pid, &status, 0);
		if (!P.kids[i].done)
			fprintf(stderr,
			        "imgate-bench: process %ld sent no "
			        "result\n",
			        (long)P.kids[i].pid);
		evbuffer_free(P.kids[i].in);
		event_free(P.kids[i].ev);
	}
	/* The children counted themselves; add what the parent used. */
	P.total.c.cpu_us += cpu_used_us();
	print_result(&P.total, (double)(end - P.t_start) / 1e6);
	event_free(tick);
	event_free(sigterm);
	event_free(sigint);
	event_base_free(P.base);
	free(P.kids);
}

/* ---------------------------------------------------------------------- */
/* Options */

static double
opt_double(const char *name, const char *v, double min, double max)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || d < min || d > max)
		die("%s: expected a number in [%g, %g], got \"%s\"", name, min,
		    max, v);
	return d;
}

static long long
opt_long(const char *name, const char *v, long long min, long long max)
{
	char *end;
	long long n;

	errno = 0;
	n = strtoll(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < min || n > max)
		die("%s: expected an integer in [%lld, %lld], got \"%s\"", name,
		    min, max, v);
	return n;
}

static void
opt_str(char *dst, size_t len, const char *name, const char *v)
{
	if (strlen(v) >= len)
		die("%s: too long", name);
	memcpy(dst, v, strlen(v) + 1);
}

enum {
	OPT_TYPE = 256,
	OPT_ROOM,
	OPT_KEYS,
	OPT_ROOM_PREFIX,
	OPT_READY,
};

static void
parse_options(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'P'},
	    {"transport", required_argument, NULL, 't'},
	    {"path", required_argument, NULL, 'u'},
	    {"conns", required_argument, NULL, 'n'},
	    {"rooms", required_argument, NULL, 'r'},
	    {"duration", required_argument, NULL, 'd'},
	    {"heartbeat", required_argument, NULL, 'i'},
	    {"procs", required_argument, NULL, 'p'},
	    {"src-addrs", required_argument, NULL, 'S'},
	    {"src-first", required_argument, NULL, 'B'},
	    {"connect-rate", required_argument, NULL, 'c'},
	    {"inflight", required_argument, NULL, 'C'},
	    {"timeout", required_argument, NULL, 'T'},
	    {"mid", required_argument, NULL, 'm'},
	    {"key-prefix", required_argument, NULL, 'K'},
	    {"op", required_argument, NULL, 'o'},
	    {"rate", required_argument, NULL, 'R'},
	    {"size", required_argument, NULL, 's'},
	    {"messages", required_argument, NULL, 'N'},
	    {"type", required_argument, NULL, OPT_TYPE},
	    {"room", required_argument, NULL, OPT_ROOM},
	    {"keys", required_argument, NULL, OPT_KEYS},
	    {"room-prefix", required_argument, NULL, OPT_ROOM_PREFIX},
	    {"ready-file", required_argument, NULL, OPT_READY},
	    {"quiet", no_argument, NULL, 'q'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch, port_set = 0, rooms_set = 0, conns_set = 0;
	long i;

	if (argc < 2 || argv[1][0] == '-') {
		usage(argc < 2 ? stderr : stdout);
		exit(argc < 2 ? 2 : 0);
	}
	for (i = 0; i < 4; i++)
		if (strcmp(argv[1], mode_names[i]) == 0)
			break;
	if (i == 4)
		die("unknown mode \"%s\" (hold, recv, pub or ws)", argv[1]);
	O.mode = (enum mode)i;
	snprintf(O.host, sizeof(O.host), "127.0.0.1");
	O.conns = 1000;
	O.rooms = 1;
	O.hb_interval = 30;
	O.procs = 1;
	inet_pton(AF_INET, "127.0.0.2", &O.src_base);
	O.inflight = 1000;
	O.timeout = 10;
	O.mid_base = 1;
	snprintf(O.room_prefix, sizeof(O.room_prefix), "live://");
	O.op = 1000;
	O.pub_rate = 10;
	O.msg_size = 64;
	snprintf(O.pub_type, sizeof(O.pub_type), "room");
	snprintf(O.room, sizeof(O.room), "0");
	optind = 2;
	while ((ch = getopt_long(argc, argv,
	                         "H:P:t:u:n:r:d:i:p:S:B:c:C:T:m:K:o:R:s:N:qh",
	                         longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			opt_str(O.host, sizeof(O.host), "-H", optarg);
			break;
		case 'P':
			O.port = (int)opt_long("-P", optarg, 1, 65535);
			port_set = 1;
			break;
		case 't':
			if (strcmp(optarg, "tcp") == 0)
				O.ws = 0;
			else if (strcmp(optarg, "ws") == 0)
				O.ws = 1;
			else
				die("-t: tcp or ws");
			break;
		case 'u':
			if (optarg[0] != '/')
				die("-u: a path starts with /");
			opt_str(O.path, sizeof(O.path), "-u", optarg);
			break;
		case 'n':
			O.conns = (long)opt_long("-n", optarg, 0, 100000000);
			conns_set = 1;
			break;
		case 'r':
			O.rooms = (long)opt_long("-r", optarg, 1, 100000000);
			rooms_set = 1;
			break;
		case 'd':
			O.duration = opt_double("-d", optarg, 0, 1e7);
			break;
		case 'i':
			O.hb_interval = opt_double("-i", optarg, 0, 1e6);
			break;
		case 'p':
			O.procs = (long)opt_long("-p", optarg, 1, 4096);
			break;
		case 'S':
			O.srcaddrs = (long)opt_long("-S", optarg, 0, 1 << 24);
			break;
		case 'B':
			if (inet_pton(AF_INET, optarg, &O.src_base) != 1)
				die("-B: an IPv4 address");
			break;
		case 'c':
			O.connect_rate = opt_double("-c", optarg, 0, 1e9);
			break;
		case 'C':
			O.inflight = (long)opt_long("-C", optarg, 1, 10000000);
			break;
		case 'T':
			O.timeout = opt_double("-T", optarg, 0.001, 1e6);
			break;
		case 'm':
			O.mid_base = opt_long("-m", optarg, 0, INT64_MAX / 2);
			break;
		case 'K':
			opt_str(O.key_prefix, sizeof(O.key_prefix), "-K",
			        optarg);
			break;
		case 'o':
			O.op = (int)opt_long("-o", optarg, 18, INT32_MAX);
			break;
		case 'R':
			O.pub_rate = opt_double("-R", optarg, 0.001, 1e9);
			break;
		case 's':
			O.msg_size =
			    (long)opt_long("-s", optarg, 21, MSG_SIZE_MAX);
			break;
		case 'N':
			O.messages = opt_long("-N", optarg, 0, INT64_MAX / 2);
			break;
		case OPT_TYPE:
			if (strcmp(optarg, "room") != 0 &&
			    strcmp(optarg, "keys") != 0 &&
			    strcmp(optarg, "mids") != 0 &&
			    strcmp(optarg, "all") != 0)
				die("--type: room, keys, mids or all");
			opt_str(O.pub_type, sizeof(O.pub_type), "--type",
			        optarg);
			break;
		case OPT_ROOM:
			opt_str(O.room, sizeof(O.room), "--room", optarg);
			break;
		case OPT_KEYS:
			opt_str(O.keys, sizeof(O.keys), "--keys", optarg);
			break;
		case OPT_ROOM_PREFIX:
			opt_str(O.room_prefix, sizeof(O.room_prefix),
			        "--room-prefix", optarg);
			break;
		case OPT_READY:
			opt_str(O.ready_file, sizeof(O.ready_file),
			        "--ready-file", optarg);
			break;
		case 'q':
			O.quiet = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind != argc)
		die("unexpected argument \"%s\"", argv[optind]);
	if (!port_set)
		O.port = O.mode == MODE_PUB  ? 3111
		         : O.mode == MODE_WS ? 80
		         : O.ws              ? 3102
		                             : 3101;
	if (O.mode == MODE_PUB) {
		if (!conns_set)
			O.conns = 4;
		if (!rooms_set)
			O.rooms = 0;
		if (O.conns < 1)
			die("-n: pub needs at least one connection");
		if (O.procs > O.conns)
			O.procs = O.conns;
		if ((strcmp(O.pub_type, "keys") == 0 ||
		     strcmp(O.pub_type, "mids") == 0) &&
		    O.keys[0] == '\0' && O.path[0] == '\0')
			die("--type %s needs --keys", O.pub_type);
	} else if (O.path[0] == '\0') {
		if (O.mode == MODE_WS)
			die("ws: -u path is required (e.g. /sub/%%d)");
		snprintf(O.path, sizeof(O.path), "/sub");
	}
	if (O.mode == MODE_HOLD && O.duration == 0 && O.hb_interval == 0)
		O.hb_interval = 30;
	if (O.mode != MODE_PUB && O.procs > O.conns && O.conns > 0)
		O.procs = O.conns;
}

/* The fd limit is per process: take all of it, then check the share fits. */
static void
raise_nofile(void)
{
	struct rlimit rl;
	long per;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1)
		die("getrlimit: %s", strerror(errno));
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			die("setrlimit: %s", strerror(errno));
	}
	if (O.mode == MODE_PUB)
		return;
	per = (O.conns + O.procs - 1) / O.procs;
	if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)per + 32 > rl.rlim_cur)
		die("%ld connections per process exceed the fd limit %llu: "
		    "raise -p to at least %llu",
		    per, (unsigned long long)rl.rlim_cur,
		    (unsigned long long)((O.conns + (long)rl.rlim_cur - 33) /
		                         ((long)rl.rlim_cur - 32)));
}

int
main(int argc, char **argv)
{
	struct addrinfo hints, *res;
	int rc;

	parse_options(argc, argv);
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_INET;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(O.host, NULL, &hints, &res);
	if (rc != 0)
		die("%s: %s", O.host, gai_strerror(rc));
	memcpy(&W.dst, res->ai_addr, sizeof(W.dst));
	W.dst.sin_port = htons((uint16_t)O.port);
	freeaddrinfo(res);
	if (O.procs > 1) {
		run_children();
		return 0;
	}
	worker_run(0, O.conns, O.pub_rate, (uint64_t)O.messages, -1);
	print_result(&W.st, (double)(W.t_end - W.t_start) / 1e6);
	return 0;
}
