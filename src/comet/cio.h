/*
 * cio: a client connection's byte transport.
 *
 * A plain socket (TCP, WebSocket) keeps nothing but its read event while
 * idle: input and output buffers and the write event exist only while
 * bytes are in flight. A bufferevent would keep two evbuffers, two events
 * and its rate-limit and locking fields, about 1 KB, for each of a
 * million connections that are idle nearly all the time. Output goes to
 * the socket at once when nothing is queued before it (no allocation, no
 * epoll change: the common case of a push or a heartbeat reply); the
 * rest waits in a buffer written at the end of the loop turn or when the
 * socket has room again, and the write event exists only then.
 *
 * WSS connections use bufferevent_openssl: OpenSSL's record layer needs
 * its buffering and the handshake's want-read/want-write state machine,
 * which that library already gets right.
 */
#ifndef IMGATE_COMET_CIO_H
#define IMGATE_COMET_CIO_H

#include <stddef.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <openssl/ssl.h>

struct cio;

/* What cio_handler.event reports. */
#define CIO_EOF     0x01 /* the peer closed */
#define CIO_ERROR   0x02 /* a socket or TLS error */
#define CIO_TIMEOUT 0x04 /* the read deadline passed */

struct cio_handler {
	/*
	 * Bytes arrived: in holds everything not consumed yet; consume what
	 * is used. The connection may be closed from here, never freed.
	 */
	void (*input)(struct cio *io, struct evbuffer *in);
	/* CIO_EOF, CIO_ERROR or CIO_TIMEOUT; the handler may free io's owner.
	 */
	void (*event)(struct cio *io, int what);
};

/* One per worker loop. */
struct cio_loop {
	struct event_base *base;
	const struct cio_handler *h;
	struct evbuffer *scratch; /* input of a connection with none kept */
	size_t input_bound;       /* buffered input that stops reading */
};

struct cio {
	struct cio_loop *loop;
	struct bufferevent *bev; /* TLS; NULL for a plain socket */
	struct event *rev;       /* plain: reading */
	struct event *wev;       /* plain: while output is pending */
	struct evbuffer *in;     /* plain: a partial frame kept */
	struct evbuffer *out;    /* plain: output not written yet */
	evutil_socket_t fd;
	uint16_t flags; /* CIO_F_* (cio.c) */
};

int cio_loop_init(struct cio_loop *l, struct event_base *base,
                  const struct cio_handler *h, size_t input_bound);
void cio_loop_release(struct cio_loop *l);

/*
 * Take fd (closed by cio_close from then on, also when this fails):
 * a plain socket, or with ssl (owned from then on) a TLS server side.
 * Reading starts without a deadline. 0, or -1 when out of memory.
 */
int cio_open(struct cio *io, struct cio_loop *l, evutil_socket_t fd, SSL *ssl);
/* Free everything and close the socket; unwritten output is dropped. */
void cio_close(struct cio *io);

/*
 * Send len bytes: written at once when nothing is queued before them (no
 * allocation at all on that path), what the socket does not take is
 * queued. cio_send copies; cio_send_ref keeps data by reference until
 * cleanup(data, len, arg), which is called exactly once, at once when
 * nothing had to be kept. 0, or -1 when out of memory (nothing queued,
 * cleanup not called). A socket error is reported later, as CIO_ERROR.
 */
int cio_send(struct cio *io, const void *data, size_t len);
int cio_send_ref(struct cio *io, const void *data, size_t len,
                 evbuffer_ref_cleanup_cb cleanup, void *arg);

/*
 * The buffer to append output to, for encoders that write to evbuffers;
 * it is written at the end of this loop turn. NULL when out of memory.
 */
struct evbuffer *cio_output(struct cio *io);
size_t cio_output_length(const struct cio *io);

/*
 * Read, with deadline (NULL: none) restarted by every read: its expiry
 * is CIO_TIMEOUT. Input kept from before is handed over again first.
 */
void cio_read_start(struct cio *io, const struct timeval *deadline);
void cio_read_stop(struct cio *io);

/*
 * The end: write what is queued, then (plain sockets) half-close and
 * discard input until the peer closes, which is reported as CIO_EOF.
 * Reading a closing connection's input would reset it and could lose the
 * last frames sent. Returns 1 when there is nothing to wait for (TLS with
 * its output written): the caller frees at once.
 */
int cio_finish(struct cio *io);

evutil_socket_t cio_fd(const struct cio *io);

#endif
