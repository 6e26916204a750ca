/*
 * cio: a client connection's byte transport; see cio.h.
 */
#include "config.h"

#include <sys/socket.h>

#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include <event2/bufferevent_ssl.h>

#include "comet/cio.h"

#define CIO_F_READING  0x01 /* the read event is wanted */
#define CIO_F_FULL     0x02 /* reading paused: input_bound reached */
#define CIO_F_FLUSHING 0x04 /* the write event is active or added */
#define CIO_F_FINISH   0x08 /* cio_finish: half-close once written */
#define CIO_F_DISCARD  0x10 /* half-closed: input is thrown away */
#define CIO_F_DEAD     0x20 /* socket error: no more I/O */

/* One read's worth: a goim heartbeat is 16 bytes, a frame rarely 4 KB. */
#define CIO_READ_MAX 16384

static void cio_read_cb(evutil_socket_t fd, short what, void *arg);
static void cio_write_cb(evutil_socket_t fd, short what, void *arg);
static void cio_tls_read_cb(struct bufferevent *bev, void *arg);
static void cio_tls_write_cb(struct bufferevent *bev, void *arg);
static void cio_tls_event_cb(struct bufferevent *bev, short what, void *arg);

int
cio_loop_init(struct cio_loop *l, struct event_base *base,
              const struct cio_handler *h, size_t input_bound)
{
	l->base = base;
	l->h = h;
	l->input_bound = input_bound;
	l->scratch = evbuffer_new();
	return l->scratch != NULL ? 0 : -1;
}

void
cio_loop_release(struct cio_loop *l)
{
	if (l->scratch != NULL)
		evbuffer_free(l->scratch);
	l->scratch = NULL;
}

int
cio_open(struct cio *io, struct cio_loop *l, evutil_socket_t fd, SSL *ssl)
{
	io->loop = l;
	io->fd = fd;
	io->flags = CIO_F_READING;
	if (ssl != NULL) {
		io->bev = bufferevent_openssl_socket_new(
		    l->base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
		    BEV_OPT_CLOSE_ON_FREE);
		if (io->bev == NULL) {
			SSL_free(ssl);
			evutil_closesocket(fd);
			return -1;
		}
		/* Browsers often close without a close_notify. */
		bufferevent_openssl_set_allow_dirty_shutdown(io->bev, 1);
		bufferevent_setcb(io->bev, cio_tls_read_cb, cio_tls_write_cb,
		                  cio_tls_event_cb, io);
		bufferevent_setwatermark(io->bev, EV_READ, 0, l->input_bound);
		bufferevent_enable(io->bev, EV_READ | EV_WRITE);
		return 0;
	}
	io->rev = event_new(l->base, fd, EV_READ | EV_PERSIST, cio_read_cb, io);
	if (io->rev == NULL || event_add(io->rev, NULL) == -1) {
		if (io->rev != NULL)
			event_free(io->rev);
		io->rev = NULL;
		evutil_closesocket(fd);
		return -1;
	}
	return 0;
}

void
cio_close(struct cio *io)
{
	if (io->bev != NULL) {
		bufferevent_free(io->bev);
		io->bev = NULL;
		return;
	}
	if (io->rev != NULL)
		event_free(io->rev);
	if (io->wev != NULL)
		event_free(io->wev);
	if (io->in != NULL)
		evbuffer_free(io->in);
	if (io->out != NULL)
		evbuffer_free(io->out);
	io->rev = io->wev = NULL;
	io->in = io->out = NULL;
	evutil_closesocket(io->fd);
	io->fd = -1;
}

evutil_socket_t
cio_fd(const struct cio *io)
{
	return io->fd;
}

/* Plain sockets: reading ------------------------------------------------ */

/* Arm the read event, or pause it while input is full or unwanted. */
static void
cio_read_arm(struct cio *io)
{
	if ((io->flags & (CIO_F_READING | CIO_F_FULL | CIO_F_DEAD)) ==
	    CIO_F_READING)
		event_add(io->rev, NULL);
	else
		event_del(io->rev);
}

/*
 * Keep what the handler left of in: the worker's scratch buffer is shared,
 * so a partial frame moves to a buffer of the connection's own.
 */
static void
cio_keep_input(struct cio *io, struct evbuffer *in)
{
	struct cio_loop *l = io->loop;
	size_t len = evbuffer_get_length(in);

	if (in == l->scratch && len > 0) {
		if ((io->in = evbuffer_new()) == NULL ||
		    evbuffer_add_buffer(io->in, in) == -1) {
			/* Out of memory: the stream is broken. */
			evbuffer_drain(in, len);
			io->flags |= CIO_F_DEAD;
			return;
		}
	} else if (in == io->in && len == 0) {
		evbuffer_free(io->in);
		io->in = NULL;
	}
	if (io->in != NULL && evbuffer_get_length(io->in) >= l->input_bound)
		io->flags |= CIO_F_FULL;
}

static void
cio_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cio *io = arg;
	struct cio_loop *l = io->loop;
	struct evbuffer *in = io->in != NULL ? io->in : l->scratch;
	size_t room;
	int n = 1, err = 0;

	if (what & EV_TIMEOUT) {
		l->h->event(io, CIO_TIMEOUT);
		return;
	}
	room = l->input_bound > evbuffer_get_length(in)
	           ? l->input_bound - evbuffer_get_length(in)
	           : 0;
	if (room > CIO_READ_MAX)
		room = CIO_READ_MAX;
	/* room 0: activated only to hand over input kept from before. */
	if (room > 0 && (n = evbuffer_read(in, fd, (int)room)) == -1) {
		err = errno;
		if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
			err = 0;
	}
	if (io->flags & CIO_F_DISCARD)
		evbuffer_drain(in, evbuffer_get_length(in));
	else if (evbuffer_get_length(in) > 0)
		l->h->input(io, in);
	cio_keep_input(io, in);
	if (n == 0 || err != 0 || (io->flags & CIO_F_DEAD)) {
		io->flags |= CIO_F_DEAD;
		event_del(io->rev);
		l->h->event(io, n == 0 ? CIO_EOF : CIO_ERROR);
		return;
	}
	cio_read_arm(io);
}

void
cio_read_start(struct cio *io, const struct timeval *deadline)
{
	if (io->bev != NULL) {
		bufferevent_set_timeouts(io->bev, deadline, NULL);
		bufferevent_enable(io->bev, EV_READ);
		if (evbuffer_get_length(bufferevent_get_input(io->bev)) > 0)
			bufferevent_trigger(io->bev, EV_READ,
			                    BEV_TRIG_IGNORE_WATERMARKS |
			                        BEV_TRIG_DEFER_CALLBACKS);
		return;
	}
	if (io->flags & CIO_F_DEAD)
		return;
	io->flags |= CIO_F_READING;
	io->flags &= ~CIO_F_FULL;
	/*
	 * A persistent event keeps its timeout across event_add(NULL):
	 * event_remove_timer is what clears it.
	 */
	if (deadline != NULL)
		event_add(io->rev, deadline);
	else {
		event_remove_timer(io->rev);
		event_add(io->rev, NULL);
	}
	/* Input that waited (a frame behind op 7) is handed over next. */
	if (io->in != NULL)
		event_active(io->rev, EV_READ, 0);
}

void
cio_read_stop(struct cio *io)
{
	if (io->bev != NULL) {
		bufferevent_disable(io->bev, EV_READ);
		bufferevent_set_timeouts(io->bev, NULL, NULL);
		return;
	}
	io->flags &= ~CIO_F_READING;
	event_remove_timer(io->rev);
	event_del(io->rev);
}

/* Plain sockets: writing ------------------------------------------------ */

/* Output written: half-close if finishing, and wait for the peer's FIN. */
static void
cio_written(struct cio *io)
{
	if (io->out != NULL) {
		evbuffer_free(io->out);
		io->out = NULL;
	}
	if (io->wev != NULL) {
		event_free(io->wev);
		io->wev = NULL;
	}
	io->flags &= ~CIO_F_FLUSHING;
	if ((io->flags & (CIO_F_FINISH | CIO_F_DISCARD | CIO_F_DEAD)) ==
	    CIO_F_FINISH) {
		shutdown(io->fd, SHUT_WR);
		io->flags |= CIO_F_DISCARD;
		cio_read_start(io, NULL);
	}
}

static void
cio_write_cb(evutil_socket_t fd, short what, void *arg)
{
	struct cio *io = arg;
	int n;

	while (io->out != NULL && evbuffer_get_length(io->out) > 0) {
		if ((n = evbuffer_write(io->out, fd)) > 0)
			continue;
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK ||
		                errno == EINTR)) {
			/* The socket is full: wait until it is not. */
			if (!event_pending(io->wev, EV_WRITE, NULL))
				event_add(io->wev, NULL);
			return;
		}
		/* Dropping the buffer gives back what it referenced. */
		io->flags |= CIO_F_DEAD;
		cio_written(io);
		event_del(io->rev);
		io->loop->h->event(io, CIO_ERROR);
		return;
	}
	cio_written(io);
}

/* Nothing queued: the socket may take the bytes now. */
static int
cio_can_send_now(const struct cio *io)
{
	return io->bev == NULL && !(io->flags & CIO_F_DEAD) &&
	       (io->out == NULL || evbuffer_get_length(io->out) == 0);
}

/*
 * Write what the socket takes now: the count written, 0 when none (full,
 * or an error the write event will see again and report).
 */
static size_t
cio_write_now(struct cio *io, const void *data, size_t len)
{
	ssize_t n = write(io->fd, data, len);

	return n > 0 ? (size_t)n : 0;
}

int
cio_send(struct cio *io, const void *data, size_t len)
{
	struct evbuffer *out;
	size_t n = 0;

	if (cio_can_send_now(io) && (n = cio_write_now(io, data, len)) == len)
		return 0;
	if ((out = cio_output(io)) == NULL)
		return -1;
	return evbuffer_add(out, (const uint8_t *)data + n, len - n);
}

int
cio_send_ref(struct cio *io, const void *data, size_t len,
             evbuffer_ref_cleanup_cb cleanup, void *arg)
{
	struct evbuffer *out;
	size_t n = 0;

	if (cio_can_send_now(io) && (n = cio_write_now(io, data, len)) == len) {
		cleanup(data, len, arg);
		return 0;
	}
	if ((out = cio_output(io)) == NULL)
		return -1;
	return evbuffer_add_reference(out, (const uint8_t *)data + n, len - n,
	                              cleanup, arg);
}

struct evbuffer *
cio_output(struct cio *io)
{
	if (io->bev != NULL)
		return bufferevent_get_output(io->bev);
	if (io->out == NULL && (io->out = evbuffer_new()) == NULL)
		return NULL;
	if (io->flags & CIO_F_FLUSHING)
		return io->out;
	if (io->wev == NULL &&
	    (io->wev = event_new(io->loop->base, io->fd, EV_WRITE | EV_PERSIST,
	                         cio_write_cb, io)) == NULL)
		return NULL;
	/* Written at the end of this loop turn, all frames in one writev. */
	event_active(io->wev, EV_WRITE, 0);
	io->flags |= CIO_F_FLUSHING;
	return io->out;
}

size_t
cio_output_length(const struct cio *io)
{
	if (io->bev != NULL)
		return evbuffer_get_length(bufferevent_get_output(io->bev));
	return io->out != NULL ? evbuffer_get_length(io->out) : 0;
}

int
cio_finish(struct cio *io)
{
	if (io->bev != NULL) {
		if (cio_output_length(io) == 0)
			return 1;
		io->flags |= CIO_F_FINISH;
		bufferevent_enable(io->bev, EV_WRITE);
		return 0;
	}
	cio_read_stop(io);
	io->flags |= CIO_F_FINISH;
	if (io->flags & CIO_F_DEAD)
		return 1;
	if (!(io->flags & CIO_F_FLUSHING))
		cio_written(io);
	return 0;
}

/* TLS: a bufferevent does the work -------------------------------------- */

static void
cio_tls_read_cb(struct bufferevent *bev, void *arg)
{
	struct cio *io = arg;

	io->loop->h->input(io, bufferevent_get_input(bev));
}

static void
cio_tls_write_cb(struct bufferevent *bev, void *arg)
{
	struct cio *io = arg;

	/* Everything of a finishing connection is written: it is over. */
	if ((io->flags & CIO_F_FINISH) &&
	    evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		io->loop->h->event(io, CIO_EOF);
}

static void
cio_tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct cio *io = arg;

	if (what & BEV_EVENT_TIMEOUT)
		io->loop->h->event(io, CIO_TIMEOUT);
	else if (what & BEV_EVENT_EOF)
		io->loop->h->event(io, CIO_EOF);
	else if (what & BEV_EVENT_ERROR)
		io->loop->h->event(io, CIO_ERROR);
}
