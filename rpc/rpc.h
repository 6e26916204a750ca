/*
 * rpc: msgpack-rpc over TCP on libevent, server and client. The wire
 * format and the map helpers are in rpc_codec.h (included).
 *
 * Both sides run in one event loop thread and never block: the server
 * hands each request to a handler that replies whenever it likes (now, or
 * later from another event), the client calls back when the response, a
 * timeout or a disconnection ends the call.
 *
 * The process must ignore SIGPIPE (the daemons do): a peer that goes away
 * while a reply is being written must cost an EPIPE, not the process.
 *
 * This is a library: functions return 0 / -1 or fill an error buffer;
 * they never log or exit.
 */
#ifndef IMGATE_RPC_H
#define IMGATE_RPC_H

#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "rpc/rpc_codec.h"

/* Server. */

struct rpc_server;
struct rpc_call; /* one inbound request awaiting its reply */

/*
 * A request (call != NULL) or a notification (call == NULL). method is
 * NOT NUL-terminated; method and params are valid only during the
 * callback. A request must be answered with rpc_call_reply exactly once,
 * now or later.
 */
typedef void (*rpc_handler_fn)(struct rpc_call *call, const char *method,
                               size_t method_len, const msgpack_object *params,
                               void *arg);

/*
 * Listen on host:port (host NULL or "" = all interfaces, port 0 = an
 * ephemeral port, see rpc_server_port). limits may be NULL (defaults).
 * NULL with err filled on failure.
 */
struct rpc_server *rpc_server_new(struct event_base *base, const char *host,
                                  int port, const struct rpc_limits *limits,
                                  rpc_handler_fn handler, void *arg, char *err,
                                  size_t errlen);

/*
 * Close the listener and every connection. Calls still pending stay
 * valid: answer them as usual, their replies are dropped.
 */
void rpc_server_free(struct rpc_server *srv);

/* The bound port. */
int rpc_server_port(const struct rpc_server *srv);

/* Open connections. */
size_t rpc_server_connections(const struct rpc_server *srv);

/*
 * Answer call and free it. error != NULL sends that error string and a nil
 * result; otherwise result is one packed msgpack object (result_len > 0;
 * NULL/0 sends nil). If the connection closed meanwhile the reply is
 * dropped. 0 queued, -1 dropped (the call is freed either way).
 */
int rpc_call_reply(struct rpc_call *call, const char *error, const void *result,
                   size_t result_len);

/* "ip:port" of the caller. */
const char *rpc_call_peer(const struct rpc_call *call);

/* The request's msgid (for logs). */
uint32_t rpc_call_msgid(const struct rpc_call *call);

/* Client. */

/*
 * Zero fields take defaults: connect 3 s, call 5 s, backoff 100 ms to 5 s,
 * max_pending 65536, limits as RPC_LIMITS_DEFAULT (max_output bounds the
 * unsent request bytes).
 */
struct rpc_client_opts {
	const char *host;
	int port;
	long connect_timeout_ms;
	long call_timeout_ms;
	long backoff_min_ms;
	long backoff_max_ms;
	size_t max_pending;
	struct rpc_limits limits;
};

enum rpc_status {
	RPC_OK = 0,   /* result set, error NULL */
	RPC_EREMOTE,  /* the server answered an error: error and result set */
	RPC_ETIMEOUT, /* no answer within call_timeout_ms */
	RPC_ECONN,    /* the connection broke before the answer */
	RPC_ESHUTDOWN /* rpc_client_free */
};

/* "ok", "remote error", ...; never NULL. */
const char *rpc_status_str(enum rpc_status st);

/* error and result are NULL unless st says otherwise; valid only here. */
typedef void (*rpc_result_fn)(enum rpc_status st, const msgpack_object *error,
                              const msgpack_object *result, void *arg);

struct rpc_client;

/*
 * Create a client; it connects in the background and keeps reconnecting
 * with exponential backoff and jitter. A host name (not an address) is
 * resolved with a blocking lookup at each connect. NULL with err filled.
 */
struct rpc_client *rpc_client_new(struct event_base *base,
                                  const struct rpc_client_opts *opts, char *err,
                                  size_t errlen);

/*
 * Pending callbacks get RPC_ESHUTDOWN. May be called from a result
 * callback; the client is then released when that callback returns.
 */
void rpc_client_free(struct rpc_client *c);

/*
 * Send a request; params is one packed msgpack array. 0: sent, cb will be
 * called exactly once (unless cancelled), never from inside this call.
 * -1: not connected, too many pending or output full; cb is never called.
 */
int rpc_client_call(struct rpc_client *c, const char *method,
                    const void *params, size_t params_len, rpc_result_fn cb,
                    void *arg, uint32_t *msgid_out);

/* Forget a pending call: its callback will not be called. */
void rpc_client_cancel(struct rpc_client *c, uint32_t msgid);

/* Send a notification. 0 sent, -1 not connected or output full. */
int rpc_client_notify(struct rpc_client *c, const char *method,
                      const void *params, size_t len);

int rpc_client_connected(const struct rpc_client *c);

/* Calls waiting for their answer. */
size_t rpc_client_pending(const struct rpc_client *c);

/*
 * Point the client at a new address (config reload). A different address
 * drops the current connection (pending calls get RPC_ECONN) and connects
 * at once; the same address changes nothing. 0, or -1 (allocation).
 */
int rpc_client_set_target(struct rpc_client *c, const char *host, int port);

#endif
