/*
 * push: a worker's Redis subscriber and push delivery.
 *
 * Each worker holds its own async hiredis connection (libevent adapter)
 * subscribed to the node channel (key pushes), the broadcast channel, and
 * the channel of every room in which it has a member. It reconnects with
 * backoff and resubscribes to all of them. Envelopes are decoded with
 * envelope_decode; each message is framed once per worker (goim frame, and
 * WebSocket frame) and queued by reference to its recipients. Room messages
 * arriving in one loop turn (or within batch_window_ms) go out as one op-9
 * batch per connection.
 */
#ifndef IMGATE_COMET_PUSH_H
#define IMGATE_COMET_PUSH_H

#include <stddef.h>

#include "comet/comet.h"

struct sess_worker;
struct push;
struct room;

struct push *push_new(struct sess_worker *sw, char *err, size_t errlen);
void push_free(struct push *p);
/* The config changed: reconnect when the Redis address or prefix moved. */
void push_reload(struct push *p, const struct comet_conf *old);

/* Room hooks (room_set callbacks): first local member, last one gone. */
void push_room_first(struct room *r, void *arg);
void push_room_last(struct room *r, void *arg);

/*
 * Frame one goim message for delivery: *tcp the goim frame, *ws the same
 * as one WebSocket binary message. 0, or -1 (out of memory).
 */
struct sbuf;
int push_frame(int32_t op, const void *body, size_t len, struct sbuf **tcp,
               struct sbuf **ws);

/* Deliver a decoded envelope (exposed for tests). */
struct envelope;
void push_deliver(struct push *p, const struct envelope *e);

#endif
