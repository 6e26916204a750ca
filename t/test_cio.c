/*
 * check suite: cio, a client connection's byte transport over a plain
 * socket (socketpairs here): direct sends, the queue when the socket is
 * full, buffers that exist only while bytes are in flight, kept partial
 * input, the input bound, the read deadline, and the half-closing finish.
 */
#include "config.h"

#include <sys/socket.h>

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comet/cio.h"

static struct event_base *base;
static struct cio_loop loop;
static struct cio io;
static int peer; /* the client's end */

/* What the handler saw. */
static size_t got_bytes;
static size_t consume_min; /* consume only whole "frames" of this size */
static int events_seen;
static int n_input;

static void
on_input(struct cio *c, struct evbuffer *in)
{
	size_t len = evbuffer_get_length(in);

	ck_assert_ptr_eq(c, &io);
	n_input++;
	if (consume_min > 0)
		len -= len % consume_min;
	got_bytes += len;
	evbuffer_drain(in, len);
}

static void
on_event(struct cio *c, int what)
{
	ck_assert_ptr_eq(c, &io);
	events_seen |= what;
}

static const struct cio_handler handler = {on_input, on_event};

static void
run_ms(int ms)
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

	event_base_loopexit(base, &tv);
	event_base_dispatch(base);
}

static void
setup(void)
{
	int sv[2], small = 4096;

	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_int_eq(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
	ck_assert_int_eq(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
	/* Small kernel buffers: the socket fills after a few KB. */
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(sv[1], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	base = event_base_new();
	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(cio_loop_init(&loop, base, &handler, 1024), 0);
	memset(&io, 0, sizeof(io));
	ck_assert_int_eq(cio_open(&io, &loop, sv[0], NULL), 0);
	peer = sv[1];
	got_bytes = consume_min = 0;
	events_seen = n_input = 0;
}

static void
teardown(void)
{
	if (io.loop != NULL)
		cio_close(&io);
	cio_loop_release(&loop);
	event_base_free(base);
	if (peer != -1)
		close(peer);
}

/* Read what the peer has; the count. */
static size_t
peer_drain(void)
{
	char buf[65536];
	size_t total = 0;
	ssize_t n;

	while ((n = read(peer, buf, sizeof(buf))) > 0)
		total += (size_t)n;
	return total;
}

static int cleanups;

static void
count_cleanup(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	(void)arg;
	cleanups++;
}

static void
free_cleanup(const void *data, size_t len, void *arg)
{
	(void)data;
	(void)len;
	cleanups++;
	free(arg);
}

START_TEST(test_send_direct_allocates_nothing)
{
	static const char msg[] = "hello";

	cleanups = 0;
	ck_assert_int_eq(cio_send(&io, msg, 5), 0);
	ck_assert_int_eq(cio_send_ref(&io, msg, 5, count_cleanup, NULL), 0);
	/* Written at once: no buffer, no write event, reference given back. */
	ck_assert_ptr_null(io.out);
	ck_assert_ptr_null(io.wev);
	ck_assert_int_eq(cleanups, 1);
	ck_assert_uint_eq(cio_output_length(&io), 0);
	ck_assert_uint_eq(peer_drain(), 10);
}
END_TEST

START_TEST(test_full_socket_queues_in_order)
{
	enum { CHUNK = 1000, N = 200 };
	char buf[CHUNK], rd[CHUNK], *copy;
	size_t total = 0, want = 0;
	ssize_t n;
	int i, k;

	cleanups = 0;
	copy = malloc(CHUNK);
	memset(copy, 'a', CHUNK);
	ck_assert_int_eq(cio_send_ref(&io, copy, CHUNK, free_cleanup, copy), 0);
	/* Later ones go through the queue once the socket is full. */
	for (i = 1; i < N; i++) {
		memset(buf, 'a' + i % 26, sizeof(buf));
		ck_assert_int_eq(cio_send(&io, buf, CHUNK), 0);
	}
	ck_assert_uint_gt(cio_output_length(&io), 0);
	ck_assert_ptr_nonnull(io.out);
	ck_assert_ptr_nonnull(io.wev);
	/* The peer reads everything, in order, as the loop writes. */
	want = (size_t)N * CHUNK;
	for (k = 0; k < 500 && total < want; k++) {
		run_ms(1);
		while ((n = read(peer, rd, sizeof(rd))) > 0) {
			for (i = 0; i < n; i++)
				ck_assert_int_eq(
				    rd[i],
				    'a' + (int)(((total + (size_t)i) / CHUNK) %
				                26));
			total += (size_t)n;
		}
	}
	ck_assert_uint_eq(total, want);
	run_ms(1);
	/* Drained: the buffer and the write event are gone again. */
	ck_assert_ptr_null(io.out);
	ck_assert_ptr_null(io.wev);
	ck_assert_int_eq(cleanups, 1);
	ck_assert_int_eq(events_seen, 0);
}
END_TEST

START_TEST(test_partial_input_kept_then_freed)
{
	consume_min = 10;
	ck_assert_int_eq(write(peer, "0123456789abc", 13), 13);
	run_ms(10);
	/* One whole "frame" consumed; 3 bytes kept in a buffer of its own. */
	ck_assert_uint_eq(got_bytes, 10);
	ck_assert_ptr_nonnull(io.in);
	ck_assert_uint_eq(evbuffer_get_length(io.in), 3);
	ck_assert_int_eq(write(peer, "defghij", 7), 7);
	run_ms(10);
	ck_assert_uint_eq(got_bytes, 20);
	ck_assert_ptr_null(io.in);
	/* Nothing kept in the worker's shared scratch buffer either. */
	ck_assert_uint_eq(evbuffer_get_length(loop.scratch), 0);
}
END_TEST

START_TEST(test_input_bound_pauses_reading)
{
	char buf[3000];
	int calls;

	consume_min = 100000; /* consumes nothing: a handler that waits */
	memset(buf, 'x', sizeof(buf));
	ck_assert_int_eq(write(peer, buf, sizeof(buf)), (ssize_t)sizeof(buf));
	run_ms(20);
	/* Reading stops at the bound (1024), the rest stays in the kernel. */
	ck_assert_ptr_nonnull(io.in);
	ck_assert_uint_ge(evbuffer_get_length(io.in), 1024);
	ck_assert_uint_lt(evbuffer_get_length(io.in), sizeof(buf));
	calls = n_input;
	run_ms(20);
	ck_assert_int_eq(n_input, calls);
	/* Started again: the kept input is handed over first, then the rest. */
	consume_min = 1;
	cio_read_start(&io, NULL);
	run_ms(20);
	ck_assert_uint_eq(got_bytes, sizeof(buf));
	ck_assert_ptr_null(io.in);
}
END_TEST

START_TEST(test_read_deadline)
{
	struct timeval tv = {0, 300000};

	cio_read_start(&io, &tv);
	run_ms(150);
	ck_assert_int_eq(write(peer, "x", 1), 1);
	run_ms(200);
	/* 350 ms in, but a read at 150 ms restarted the deadline. */
	ck_assert_int_eq(events_seen, 0);
	run_ms(400);
	ck_assert_int_eq(events_seen, CIO_TIMEOUT);
	/* No deadline any more once started without one. */
	events_seen = 0;
	cio_read_start(&io, NULL);
	run_ms(500);
	ck_assert_int_eq(events_seen, 0);
}
END_TEST

START_TEST(test_eof_and_error)
{
	ck_assert_int_eq(write(peer, "bye", 3), 3);
	shutdown(peer, SHUT_WR);
	run_ms(10);
	ck_assert_uint_eq(got_bytes, 3);
	ck_assert_int_eq(events_seen, CIO_EOF);
}
END_TEST

START_TEST(test_finish_flushes_then_half_closes)
{
	enum { N = 50000 };
	char *big = malloc(N), buf[4096];
	size_t total = 0;
	ssize_t n;
	int k;

	memset(big, 'z', N);
	ck_assert_int_eq(cio_send(&io, big, N), 0);
	free(big);
	ck_assert_uint_gt(cio_output_length(&io), 0);
	cio_read_stop(&io);
	ck_assert_int_eq(cio_finish(&io), 0);
	/* Everything arrives, then the end of the stream. */
	for (k = 0; k < 500; k++) {
		run_ms(1);
		n = read(peer, buf, sizeof(buf));
		if (n == 0)
			break;
		if (n > 0)
			total += (size_t)n;
	}
	ck_assert_uint_eq(total, N);
	ck_assert_int_eq(n, 0);
	/* Input after the finish is thrown away, the peer's close reported. */
	ck_assert_int_eq(write(peer, "late", 4), 4);
	run_ms(10);
	ck_assert_uint_eq(got_bytes, 0);
	ck_assert_int_eq(events_seen, 0);
	close(peer);
	peer = -1;
	run_ms(10);
	ck_assert_int_eq(events_seen, CIO_EOF);
}
END_TEST

START_TEST(test_finish_with_nothing_queued)
{
	char c;

	ck_assert_int_eq(cio_finish(&io), 0);
	run_ms(5);
	ck_assert_int_eq(read(peer, &c, 1), 0);
	shutdown(peer, SHUT_WR);
	run_ms(10);
	ck_assert_int_eq(events_seen, CIO_EOF);
}
END_TEST

START_TEST(test_write_error_reported)
{
	char buf[1000];

	memset(buf, 'e', sizeof(buf));
	close(peer);
	peer = -1;
	/* The direct write fails: queued, and the error comes from the loop. */
	ck_assert_int_eq(cio_send(&io, buf, sizeof(buf)), 0);
	run_ms(10);
	ck_assert(events_seen & (CIO_ERROR | CIO_EOF));
	ck_assert_ptr_null(io.out);
}
END_TEST

static Suite *
cio_suite(void)
{
	Suite *s = suite_create("cio");
	TCase *tc = tcase_create("plain");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_send_direct_allocates_nothing);
	tcase_add_test(tc, test_full_socket_queues_in_order);
	tcase_add_test(tc, test_partial_input_kept_then_freed);
	tcase_add_test(tc, test_input_bound_pauses_reading);
	tcase_add_test(tc, test_read_deadline);
	tcase_add_test(tc, test_eof_and_error);
	tcase_add_test(tc, test_finish_flushes_then_half_closes);
	tcase_add_test(tc, test_finish_with_nothing_queued);
	tcase_add_test(tc, test_write_error_reported);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(cio_suite());
	int failed;

	/* As in a worker: a write to a closed peer is an error, not death. */
	signal(SIGPIPE, SIG_IGN);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
