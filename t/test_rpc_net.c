/*
 * check suite for rpc/ server and client over real sockets on 127.0.0.1,
 * one event loop per test.
 */
#include "config.h"

#include <check.h>
#include <signal.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>

#include "rpc/rpc.h"

#define MAX_HELD 256

/* The test server: echo, error, hang (held), later (held, timer reply). */
struct srv_state {
	struct event_base *base;
	struct rpc_server *srv;
	struct rpc_call *held[MAX_HELD];
	int64_t held_val[MAX_HELD];
	int nheld;
	int max_held;
	int notifies;
	int calls;
	int auto_reply; /* reply to held calls from a timer */
	struct event *tick;
};

struct result {
	int called;
	enum rpc_status st;
	int64_t val;    /* result, when an int */
	char err[64];   /* error, when a str */
	int64_t expect; /* what the result should be */
};

static struct event_base *base;
static struct srv_state S;

static void
pack_int_result(int64_t v, msgpack_sbuffer *sb)
{
	msgpack_packer pk;

	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_int64(&pk, v);
}

static void
reply_held(struct srv_state *s)
{
	msgpack_sbuffer sb;

	/* Newest first: replies go out in the reverse order of requests. */
	while (s->nheld > 0) {
		s->nheld--;
		pack_int_result(s->held_val[s->nheld], &sb);
		rpc_call_reply(s->held[s->nheld], NULL, sb.data, sb.size);
		msgpack_sbuffer_destroy(&sb);
	}
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	if (S.auto_reply)
		reply_held(&S);
}

static int
method_is(const char *m, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(m, s, n) == 0;
}

static void
handler(struct rpc_call *call, const char *method, size_t len,
        const msgpack_object *params, void *arg)
{
	struct srv_state *s = arg;
	msgpack_sbuffer sb;
	msgpack_packer pk;

	if (call == NULL) {
		s->notifies++;
		return;
	}
	s->calls++;
	ck_assert_ptr_nonnull(strstr(rpc_call_peer(call), "127.0.0.1:"));
	if (method_is(method, len, "echo")) {
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		msgpack_pack_object(&pk, params->via.array.ptr[0]);
		ck_assert_int_eq(rpc_call_reply(call, NULL, sb.data, sb.size),
		                 0);
		msgpack_sbuffer_destroy(&sb);
	} else if (method_is(method, len, "error")) {
		ck_assert_int_eq(rpc_call_reply(call, "boom", NULL, 0), 0);
	} else {
		ck_assert_int_lt(s->nheld, MAX_HELD);
		s->held[s->nheld] = call;
		s->held_val[s->nheld] =
		    params->via.array.size > 0 &&
		            params->via.array.ptr[0].type ==
		                MSGPACK_OBJECT_POSITIVE_INTEGER
		        ? (int64_t)params->via.array.ptr[0].via.u64
		        : -1;
		s->nheld++;
		if (s->nheld > s->max_held)
			s->max_held = s->nheld;
	}
}

static void
server_start(int port, const struct rpc_limits *lim)
{
	char err[256];

	S.srv = rpc_server_new(base, "127.0.0.1", port, lim, handler, &S, err,
	                       sizeof(err));
	ck_assert_msg(S.srv != NULL, "%s", err);
}

static void
setup(void)
{
	struct timeval tv = {0, 10000};

	base = event_base_new();
	memset(&S, 0, sizeof(S));
	S.base = base;
	S.tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
	event_add(S.tick, &tv);
}

static void
teardown(void)
{
	/* Answer what is still held so nothing leaks. */
	S.auto_reply = 1;
	reply_held(&S);
	rpc_server_free(S.srv);
	event_free(S.tick);
	event_base_free(base);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	*(int *)arg = 1;
}

/* Run the loop until *flag or ms pass; returns *flag. */
static int
run_until(const int *flag, long ms)
{
	int expired = 0;
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	struct event *ev = evtimer_new(base, deadline_cb, &expired);

	evtimer_add(ev, &tv);
	while (!*flag && !expired)
		event_base_loop(base, EVLOOP_ONCE);
	event_free(ev);
	return *flag;
}

static void
run_for(long ms)
{
	int never = 0;

	run_until(&never, ms);
}

static struct rpc_client *
client_new(int port, long call_timeout_ms)
{
	struct rpc_client_opts o = {
	    .host = "127.0.0.1",
	    .port = port,
	    .connect_timeout_ms = 1000,
	    .call_timeout_ms = call_timeout_ms,
	    .backoff_min_ms = 20,
	    .backoff_max_ms = 100,
	};
	char err[256];
	struct rpc_client *c = rpc_client_new(base, &o, err, sizeof(err));

	ck_assert_msg(c != NULL, "%s", err);
	return c;
}

static void
wait_connected(struct rpc_client *c)
{
	for (int i = 0; i < 200 && !rpc_client_connected(c); i++)
		run_for(10);
	ck_assert(rpc_client_connected(c));
}

static void
result_cb(enum rpc_status st, const msgpack_object *error,
          const msgpack_object *result, void *arg)
{
	struct result *r = arg;

	r->called++;
	r->st = st;
	if (st == RPC_OK) {
		ck_assert_ptr_null(error);
		ck_assert_ptr_nonnull(result);
		if (result->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			r->val = (int64_t)result->via.u64;
	} else if (st == RPC_EREMOTE) {
		ck_assert_ptr_nonnull(error);
		if (error->type == MSGPACK_OBJECT_STR)
			snprintf(r->err, sizeof(r->err), "%.*s",
			         (int)error->via.str.size, error->via.str.ptr);
		ck_assert_int_eq(result->type, MSGPACK_OBJECT_NIL);
	} else {
		ck_assert_ptr_null(error);
		ck_assert_ptr_null(result);
	}
}

/* Pack [v] into sb. */
static void
params_int(msgpack_sbuffer *sb, int64_t v)
{
	msgpack_packer pk;

	msgpack_sbuffer_init(sb);
	msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 1);
	msgpack_pack_int64(&pk, v);
}

static int
call_int(struct rpc_client *c, const char *method, int64_t v, struct result *r,
         uint32_t *id)
{
	msgpack_sbuffer sb;
	int ret;

	params_int(&sb, v);
	ret = rpc_client_call(c, method, sb.data, sb.size, result_cb, r, id);
	msgpack_sbuffer_destroy(&sb);
	return ret;
}

/* A port nothing listens on (bound, then closed). */
static int
dead_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (void *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (void *)&sa, &len), 0);
	close(fd);
	return ntohs(sa.sin_port);
}

START_TEST(test_echo)
{
	struct rpc_client *c;
	struct result r = {0}, e = {0};
	msgpack_sbuffer sb;
	msgpack_packer pk;

	server_start(0, NULL);
	ck_assert_int_gt(rpc_server_port(S.srv), 0);
	c = client_new(rpc_server_port(S.srv), 2000);
	wait_connected(c);
	ck_assert_uint_eq(rpc_server_connections(S.srv), 1);

	ck_assert_int_eq(call_int(c, "echo", 42, &r, NULL), 0);
	ck_assert_int_eq(r.called, 0); /* never from inside the call */
	ck_assert(run_until(&r.called, 2000));
	ck_assert_int_eq(r.st, RPC_OK);
	ck_assert_int_eq(r.val, 42);

	ck_assert_int_eq(call_int(c, "error", 1, &e, NULL), 0);
	ck_assert(run_until(&e.called, 2000));
	ck_assert_int_eq(e.st, RPC_EREMOTE);
	ck_assert_str_eq(e.err, "boom");

	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 0);
	ck_assert_int_eq(rpc_client_notify(c, "Ping", sb.data, sb.size), 0);
	msgpack_sbuffer_destroy(&sb);
	for (int i = 0; i < 100 && S.notifies == 0; i++)
		run_for(10);
	ck_assert_int_eq(S.notifies, 1);
	ck_assert_int_eq(r.called + e.called, 2); /* exactly once each */
	ck_assert_uint_eq(rpc_client_pending(c), 0);
	rpc_client_free(c);
}
END_TEST

START_TEST(test_out_of_order)
{
	enum { N = 200 };
	struct rpc_client *c;
	struct result r[N];
	int done = 0;

	server_start(0, NULL);
	c = client_new(rpc_server_port(S.srv), 5000);
	wait_connected(c);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(call_int(c, "later", i, &r[i], NULL), 0);
	ck_assert_uint_eq(rpc_client_pending(c), N);
	/* Hold every call, then answer all at once, newest first. */
	for (int i = 0; i < 300 && S.nheld < N; i++)
		run_for(10);
	ck_assert_int_eq(S.nheld, N);
	S.auto_reply = 1;
	for (int i = 0; i < 300 && !done; i++) {
		run_for(10);
		done = 1;
		for (int j = 0; j < N; j++)
			done &= r[j].called == 1;
	}
	ck_assert(done);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(r[i].st, RPC_OK);
		ck_assert_int_eq(r[i].val, i);
	}
	ck_assert_uint_eq(rpc_client_pending(c), 0);
	rpc_client_free(c);
}
END_TEST

START_TEST(test_inflight_bound)
{
	enum { N = 50 };
	struct rpc_limits lim = {.max_inflight = 4};
	struct rpc_client *c;
	struct result r[N];
	int done = 0;

	server_start(0, &lim);
	S.auto_reply = 1;
	c = client_new(rpc_server_port(S.srv), 5000);
	wait_connected(c);
	memset(r, 0, sizeof(r));
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(call_int(c, "later", i, &r[i], NULL), 0);
	for (int i = 0; i < 500 && !done; i++) {
		run_for(10);
		done = 1;
		for (int j = 0; j < N; j++)
			done &= r[j].called == 1 && r[j].val == j;
	}
	ck_assert(done);
	/* The server stopped reading at 4 unanswered calls. */
	ck_assert_int_eq(S.max_held, 4);
	rpc_client_free(c);
}
END_TEST

START_TEST(test_timeout)
{
	struct rpc_client *c;
	struct result r = {0};

	server_start(0, NULL);
	c = client_new(rpc_server_port(S.srv), 100);
	wait_connected(c);
	ck_assert_int_eq(call_int(c, "hang", 7, &r, NULL), 0);
	ck_assert(run_until(&r.called, 2000));
	ck_assert_int_eq(r.st, RPC_ETIMEOUT);
	ck_assert_uint_eq(rpc_client_pending(c), 0);
	/* The late answer is ignored: no second callback. */
	ck_assert_int_eq(S.nheld, 1);
	reply_held(&S);
	run_for(100);
	ck_assert_int_eq(r.called, 1);
	ck_assert(rpc_client_connected(c));
	rpc_client_free(c);
}
END_TEST

START_TEST(test_server_down)
{
	struct rpc_client *c;
	struct result r = {0}, r2 = {0};

	c = client_new(dead_port(), 2000);
	run_for(200);
	ck_assert(!rpc_client_connected(c));
	ck_assert_int_eq(call_int(c, "echo", 1, &r, NULL), -1);
	run_for(50);
	ck_assert_int_eq(r.called, 0);
	rpc_client_free(c);

	/* Pending calls fail with RPC_ECONN when the server goes away. */
	server_start(0, NULL);
	c = client_new(rpc_server_port(S.srv), 5000);
	wait_connected(c);
	ck_assert_int_eq(call_int(c, "hang", 1, &r, NULL), 0);
	ck_assert_int_eq(call_int(c, "hang", 2, &r2, NULL), 0);
	for (int i = 0; i < 100 && S.nheld < 2; i++)
		run_for(10);
	rpc_server_free(S.srv);
	S.srv = NULL;
	ck_assert(run_until(&r2.called, 2000));
	ck_assert(run_until(&r.called, 2000));
	ck_assert_int_eq(r.st, RPC_ECONN);
	ck_assert_int_eq(r2.st, RPC_ECONN);
	ck_assert(!rpc_client_connected(c));
	ck_assert_int_eq(call_int(c, "echo", 1, &r, NULL), -1);
	/* The held calls outlive their server: replies are dropped. */
	ck_assert_int_eq(rpc_call_reply(S.held[0], NULL, NULL, 0), -1);
	ck_assert_int_eq(rpc_call_reply(S.held[1], "x", NULL, 0), -1);
	S.nheld = 0;
	rpc_client_free(c);
}
END_TEST

START_TEST(test_reconnect)
{
	struct rpc_client *c;
	struct result r = {0};
	int port;

	server_start(0, NULL);
	port = rpc_server_port(S.srv);
	c = client_new(port, 2000);
	wait_connected(c);
	rpc_server_free(S.srv);
	S.srv = NULL;
	for (int i = 0; i < 100 && rpc_client_connected(c); i++)
		run_for(10);
	ck_assert(!rpc_client_connected(c));
	run_for(200); /* a few failed attempts */
	server_start(port, NULL);
	wait_connected(c);
	ck_assert_int_eq(call_int(c, "echo", 5, &r, NULL), 0);
	ck_assert(run_until(&r.called, 2000));
	ck_assert_int_eq(r.st, RPC_OK);
	ck_assert_int_eq(r.val, 5);
	rpc_client_free(c);
}
END_TEST

START_TEST(test_cancel)
{
	struct rpc_client *c;
	struct result r = {0}, r2 = {0};
	uint32_t id, id2;

	server_start(0, NULL);
	c = client_new(rpc_server_port(S.srv), 150);
	wait_connected(c);
	ck_assert_int_eq(call_int(c, "hang", 1, &r, &id), 0);
	ck_assert_int_eq(call_int(c, "later", 2, &r2, &id2), 0);
	ck_assert_uint_ne(id, id2);
	rpc_client_cancel(c, id);
	rpc_client_cancel(c, 12345); /* unknown: nothing happens */
	ck_assert_uint_eq(rpc_client_pending(c), 1);
	for (int i = 0; i < 100 && S.nheld < 2; i++)
		run_for(10);
	reply_held(&S); /* both answered; only the second is waited for */
	ck_assert(run_until(&r2.called, 2000));
	run_for(300); /* past the call timeout, too */
	ck_assert_int_eq(r.called, 0);
	ck_assert_int_eq(r2.called, 1);
	ck_assert_int_eq(r2.val, 2);
	rpc_client_free(c);
}
END_TEST

START_TEST(test_reply_after_disconnect)
{
	struct rpc_client *c;
	struct result r = {0};
	msgpack_sbuffer sb;

	server_start(0, NULL);
	c = client_new(rpc_server_port(S.srv), 5000);
	wait_connected(c);
	ck_assert_int_eq(call_int(c, "hang", 1, &r, NULL), 0);
	for (int i = 0; i < 100 && S.nheld < 1; i++)
		run_for(10);
	ck_assert_int_eq(S.nheld, 1);
	rpc_client_free(c);
	ck_assert_int_eq(r.called, 1);
	ck_assert_int_eq(r.st, RPC_ESHUTDOWN);
	for (int i = 0; i < 100 && rpc_server_connections(S.srv) > 0; i++)
		run_for(10);
	ck_assert_uint_eq(rpc_server_connections(S.srv), 0);
	pack_int_result(9, &sb);
	ck_assert_int_eq(rpc_call_reply(S.held[0], NULL, sb.data, sb.size), -1);
	msgpack_sbuffer_destroy(&sb);
	S.nheld = 0;
	run_for(20);
}
END_TEST

struct raw {
	int closed;
};

static void
raw_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct raw *raw = arg;

	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
		raw->closed = 1;
}

/* Connect a raw socket, send bytes, wait for the server to close it. */
static void
raw_send_expect_close(const char *bytes, size_t len)
{
	struct raw raw = {0};
	struct bufferevent *bev;
	struct sockaddr_in sa = {.sin_family = AF_INET};

	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(bev, NULL, NULL, raw_event_cb, &raw);
	bufferevent_enable(bev, EV_READ);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(rpc_server_port(S.srv));
	ck_assert_int_eq(
	    bufferevent_socket_connect(bev, (void *)&sa, sizeof(sa)), 0);
	bufferevent_write(bev, bytes, len);
	ck_assert(run_until(&raw.closed, 2000));
	bufferevent_free(bev);
}

START_TEST(test_garbage)
{
	static const char garbage[] = "\xc1GET / HTTP/1.0\r\n\r\n";
	struct rpc_client *c;
	struct result r = {0};

	server_start(0, NULL);
	c = client_new(rpc_server_port(S.srv), 2000);
	wait_connected(c);

	/* Not msgpack; msgpack but not a message; a 4 GB array header. */
	raw_send_expect_close(garbage, sizeof(garbage) - 1);
	raw_send_expect_close("\x05", 1);
	raw_send_expect_close("\x94\x00\x01\xa1m\xdd\xff\xff\xff\xff", 10);

	/* Only those connections went; the rpc client still works. */
	ck_assert_uint_eq(rpc_server_connections(S.srv), 1);
	ck_assert(rpc_client_connected(c));
	ck_assert_int_eq(call_int(c, "echo", 3, &r, NULL), 0);
	ck_assert(run_until(&r.called, 2000));
	ck_assert_int_eq(r.val, 3);
	ck_assert_int_eq(S.calls, 1);
	rpc_client_free(c);
}
END_TEST

/*
 * A peer that sends requests but never reads its replies: the server must
 * stop reading it once max_output bytes wait, and carry on once it reads.
 */
START_TEST(test_output_bound)
{
	enum { N = 4000, SZ = 4096 };
	struct rpc_limits lim = {.max_output = 256 * 1024};
	struct raw raw = {0};
	struct bufferevent *bev;
	struct sockaddr_in sa = {.sin_family = AF_INET};
	msgpack_sbuffer sb;
	msgpack_packer pk;
	char *blob = calloc(1, SZ);
	size_t got = 0, want = 0;

	server_start(0, &lim);
	bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(bev, NULL, NULL, raw_event_cb, &raw);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	sa.sin_port = htons(rpc_server_port(S.srv));
	ck_assert_int_eq(
	    bufferevent_socket_connect(bev, (void *)&sa, sizeof(sa)), 0);
	for (int i = 0; i < N; i++) {
		msgpack_sbuffer_init(&sb);
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		rpc_pack_request_head(&pk, (uint32_t)i, "echo");
		msgpack_pack_array(&pk, 1);
		msgpack_pack_bin(&pk, SZ);
		msgpack_pack_bin_body(&pk, blob, SZ);
		bufferevent_write(bev, sb.data, sb.size);
		/* The reply: [1, msgid, nil, bin] */
		want += sb.size - 6 + 1;
		msgpack_sbuffer_destroy(&sb);
	}
	free(blob);
	run_for(500);
	/* Kernel buffers take some, the bound the rest: not all served. */
	ck_assert_int_gt(S.calls, 0);
	ck_assert_int_lt(S.calls, N);
	bufferevent_enable(bev, EV_READ);
	for (int i = 0; i < 1000 && got < want && !raw.closed; i++) {
		run_for(10);
		got += evbuffer_get_length(bufferevent_get_input(bev));
		evbuffer_drain(bufferevent_get_input(bev), (size_t)-1);
	}
	ck_assert_int_eq(S.calls, N);
	ck_assert_uint_eq(got, want);
	ck_assert_int_eq(raw.closed, 0);
	bufferevent_free(bev);
}
END_TEST

/* Free the client from inside a result callback. */
static struct rpc_client *free_me;
static int free_calls;

static void
free_cb(enum rpc_status st, const msgpack_object *error,
        const msgpack_object *result, void *arg)
{
	struct result *r = arg;

	r->called++;
	r->st = st;
	free_calls++;
	if (free_me != NULL) {
		struct rpc_client *c = free_me;

		free_me = NULL;
		rpc_client_free(c);
		/* Still safe to use during the callback. */
		if (result != NULL &&
		    result->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
			r->val = (int64_t)result->via.u64;
	}
}

START_TEST(test_free_in_callback)
{
	struct rpc_client *c;
	struct result r = {0}, r2 = {0};
	msgpack_sbuffer sb;

	server_start(0, NULL);
	c = client_new(rpc_server_port(S.srv), 2000);
	wait_connected(c);
	params_int(&sb, 11);
	ck_assert_int_eq(
	    rpc_client_call(c, "echo", sb.data, sb.size, free_cb, &r, NULL), 0);
	ck_assert_int_eq(
	    rpc_client_call(c, "hang", sb.data, sb.size, free_cb, &r2, NULL),
	    0);
	msgpack_sbuffer_destroy(&sb);
	free_me = c;
	ck_assert(run_until(&r.called, 2000));
	ck_assert_int_eq(r.st, RPC_OK);
	ck_assert_int_eq(r.val, 11);
	ck_assert_int_eq(r2.called, 1);
	ck_assert_int_eq(r2.st, RPC_ESHUTDOWN);
	ck_assert_int_eq(free_calls, 2);
	run_for(50);
}
END_TEST

START_TEST(test_set_target)
{
	struct rpc_server *a;
	struct rpc_client *c;
	struct result r = {0}, r2 = {0};
	int calls_a;

	server_start(0, NULL);
	a = S.srv;
	c = client_new(rpc_server_port(a), 2000);
	wait_connected(c);
	ck_assert_int_eq(call_int(c, "hang", 1, &r, NULL), 0);
	for (int i = 0; i < 100 && S.nheld < 1; i++)
		run_for(10);
	calls_a = S.calls;
	/* Same address: nothing changes. */
	ck_assert_int_eq(
	    rpc_client_set_target(c, "127.0.0.1", rpc_server_port(a)), 0);
	ck_assert(rpc_client_connected(c));
	ck_assert_int_eq(r.called, 0);

	server_start(0, NULL); /* S.srv is now b */
	ck_assert_int_eq(
	    rpc_client_set_target(c, "127.0.0.1", rpc_server_port(S.srv)), 0);
	ck_assert_int_eq(r.called, 1);
	ck_assert_int_eq(r.st, RPC_ECONN);
	wait_connected(c);
	for (int i = 0; i < 100 && rpc_server_connections(a) > 0; i++)
		run_for(10);
	ck_assert_uint_eq(rpc_server_connections(a), 0);
	ck_assert_uint_eq(rpc_server_connections(S.srv), 1);
	ck_assert_int_eq(call_int(c, "echo", 8, &r2, NULL), 0);
	ck_assert(run_until(&r2.called, 2000));
	ck_assert_int_eq(r2.val, 8);
	ck_assert_int_eq(S.calls, calls_a + 1);
	ck_assert_int_eq(rpc_client_set_target(c, "", 1), -1);
	rpc_client_free(c);
	rpc_server_free(a);
}
END_TEST

START_TEST(test_max_pending)
{
	struct rpc_client_opts o = {.host = "127.0.0.1", .max_pending = 2};
	struct rpc_client *c;
	struct result r[3];
	char err[128];

	memset(r, 0, sizeof(r));
	server_start(0, NULL);
	o.port = rpc_server_port(S.srv);
	c = rpc_client_new(base, &o, err, sizeof(err));
	ck_assert_ptr_nonnull(c);
	wait_connected(c);
	ck_assert_int_eq(call_int(c, "hang", 0, &r[0], NULL), 0);
	ck_assert_int_eq(call_int(c, "hang", 1, &r[1], NULL), 0);
	ck_assert_int_eq(call_int(c, "hang", 2, &r[2], NULL), -1);
	rpc_client_free(c);
	ck_assert_int_eq(r[0].st, RPC_ESHUTDOWN);
	ck_assert_int_eq(r[1].called, 1);
	ck_assert_int_eq(r[2].called, 0);

	/* Bad options are refused. */
	o.port = 0;
	ck_assert_ptr_null(rpc_client_new(base, &o, err, sizeof(err)));
	ck_assert_ptr_null(rpc_server_new(base, "127.0.0.1", 70000, NULL,
	                                  handler, &S, err, sizeof(err)));
	ck_assert_ptr_null(rpc_server_new(base, "127.0.0.1", -1, NULL, handler,
	                                  &S, err, sizeof(err)));
	rpc_client_free(NULL);
	rpc_server_free(NULL);
}
END_TEST

static Suite *
rpc_net_suite(void)
{
	Suite *s = suite_create("rpc_net");
	TCase *tc = tcase_create("net");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_echo);
	tcase_add_test(tc, test_out_of_order);
	tcase_add_test(tc, test_inflight_bound);
	tcase_add_test(tc, test_timeout);
	tcase_add_test(tc, test_server_down);
	tcase_add_test(tc, test_reconnect);
	tcase_add_test(tc, test_cancel);
	tcase_add_test(tc, test_reply_after_disconnect);
	tcase_add_test(tc, test_garbage);
	tcase_add_test(tc, test_output_bound);
	tcase_add_test(tc, test_free_in_callback);
	tcase_add_test(tc, test_set_target);
	tcase_add_test(tc, test_max_pending);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(rpc_net_suite());
	int failed;

	signal(SIGPIPE, SIG_IGN);

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
