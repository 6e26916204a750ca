/*
 * logic: a worker's msgpack-rpc client to imgate-logic (goim's Connect,
 * Disconnect, Heartbeat, Receive and RenewOnline), and on worker 0 the
 * periodic RenewOnline that reports the node's room counts and stores the
 * cluster-wide counts logic answers in shm.
 */
#ifndef IMGATE_COMET_LOGIC_H
#define IMGATE_COMET_LOGIC_H

#include <stddef.h>
#include <stdint.h>

#include "comet/comet.h"

struct sess_worker;
struct logic;

struct logic_auth {
	int64_t mid;
	const char *key;
	size_t key_len;
	const char *room;
	size_t room_len;
	int32_t accepts[SHM_ACCEPTS_MAX];
	size_t naccepts;
	uint32_t heartbeat_ms; /* 0 = logic gave none */
};

enum logic_status {
	LOGIC_OK = 0,
	LOGIC_REFUSED,     /* logic answered with an error: auth failed */
	LOGIC_UNAVAILABLE, /* not connected, timeout, shutdown */
	LOGIC_BAD_REPLY,   /* a result we cannot use */
};

/*
 * The answer to logic_connect: a is valid only during the call, reason is
 * a short static string, arg is what logic_connect was given.
 */
typedef void (*logic_connect_fn)(enum logic_status st, const char *reason,
                                 const struct logic_auth *a, void *arg);

/* connect_cb receives every Connect answer of this worker. */
struct logic *logic_new(struct sess_worker *sw, logic_connect_fn connect_cb,
                        char *err, size_t errlen);
void logic_free(struct logic *lg);
/* The config changed: new address, timeouts, renew period. */
void logic_reload(struct logic *lg, const struct comet_conf *old);

/*
 * Connect: a ticket (connect_cb follows once with arg, unless abandoned),
 * or NULL when logic is not reachable right now (connect_cb never follows).
 */
struct logic_ticket;
struct logic_ticket *logic_connect(struct logic *lg, const void *token,
                                   size_t token_len, void *arg);
/*
 * The connection behind ticket is gone: connect_cb will not be called; a
 * session logic still grants is disconnected again unless its key is
 * registered on this node by then. The ticket is freed by the answer.
 */
void logic_abandon(struct logic_ticket *t);
/* Whether the rpc connection to logic is up. */
int logic_connected(const struct logic *lg);

/*
 * Fire-and-forget calls. logic_disconnect returns 0 when the call was sent
 * (sess_disconnect_done follows its answer) or -1.
 */
int logic_disconnect(struct logic *lg, int64_t mid, const char *key);
int logic_heartbeat(struct logic *lg, int64_t mid, const char *key);
int logic_receive(struct logic *lg, int64_t mid, const char *key, int32_t op,
                  const void *body, size_t len);

#endif
