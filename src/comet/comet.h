/*
 * comet: types shared by the parts of imgate-comet.
 *
 *   main.c, master.c   the master: config, listeners, shm, supervision,
 *                      signals, admin HTTP listener
 *   comet_conf.c       imgate-comet.conf (INI, libinih)
 *   worker.c           a worker process: its event base, accepting from
 *                      the inherited listeners, signals from the master,
 *                      the kick mailbox; hands every accepted socket to
 *                      the session layer
 *   session layer      conn.c (one client connection's state machine over
 *                      TCP, WebSocket, WSS), push.c (Redis subscriber and
 *                      delivery), room.c (worker-local room member lists),
 *                      logic.c (the msgpack-rpc client to imgate-logic)
 *
 * worker.c calls the session layer only through the sess_* hooks below.
 */
#ifndef IMGATE_COMET_H
#define IMGATE_COMET_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <event2/event.h>
#include <event2/util.h>

#include "common/log.h"
#include "shm/shm.h"

#define COMET_HOST_MAX 256
#define COMET_NAME_MAX 64
/* Workers stamp their shm heartbeat every COMET_HEARTBEAT_MS. */
#define COMET_HEARTBEAT_MS 1000
/* The smallest [server] worker_timeout: two heartbeats. */
#define COMET_WORKER_TIMEOUT_MIN_MS (2 * COMET_HEARTBEAT_MS)

enum listener_kind {
	LISTENER_TCP = 0,
	LISTENER_WS,
	LISTENER_WSS,
	LISTENER__COUNT
};

struct comet_addr {
	char host[COMET_HOST_MAX]; /* "" = all interfaces */
	int port;                  /* 0 = disabled */
};

/*
 * The whole of imgate-comet.conf. A reload builds a new one and swaps it
 * in; what cannot change live (shm geometry, shm name) is compared and
 * logged as needing a restart.
 */
struct comet_conf {
	char path[PATH_MAX];

	/* [server] */
	char server_id[COMET_NAME_MAX]; /* node id; default: hostname */
	int workers;                    /* 0 = one per CPU */
	long max_connections;    /* node-wide; 0 = workers x per-worker */
	long worker_connections; /* per worker; 0 = from RLIMIT_NOFILE */
	char pid_file[PATH_MAX];
	char user[COMET_NAME_MAX]; /* drop to it after binding; "" = stay */
	char log_target[PATH_MAX]; /* stderr | syslog | file path */
	enum log_level log_level;
	long drain_timeout_ms;
	long worker_timeout_ms; /* watchdog: a loop silent this long is
	                           killed; 0 = off */
	int reuseport; /* one SO_REUSEPORT socket per worker and listener */

	/* [listen] */
	struct comet_addr listen[LISTENER__COUNT];
	struct comet_addr admin;
	char ws_path[COMET_NAME_MAX]; /* "/sub" */
	char tls_cert[PATH_MAX];
	char tls_key[PATH_MAX];

	/* [protocol] */
	long handshake_timeout_ms; /* until op 7 arrives and is answered */
	long heartbeat_timeout_ms; /* used when logic returns none */
	size_t max_body;           /* inbound goim body, default 4096 */
	size_t max_ws_message;     /* inbound WebSocket message */
	size_t max_http_header;    /* WebSocket upgrade request */
	size_t output_limit;       /* unsent bytes before "slow" */
	size_t sndbuf;             /* SO_SNDBUF of clients, 0: kernel's */

	/* [shm] */
	char shm_name[COMET_NAME_MAX];
	struct shm_geometry shm;

	/* [logic] */
	struct comet_addr logic;
	long rpc_timeout_ms;
	long renew_interval_ms; /* RenewOnline period */

	/* [redis] */
	struct comet_addr redis;
	char redis_password[128];
	char channel_prefix[COMET_NAME_MAX]; /* "imgate" */

	/* [push] */
	long batch_window_ms; /* 0 = batch within one loop turn only */

	/* [trace] */
	char trace_mids[1024]; /* comma-separated mids logged step by step */
};

/* Fill c with every default. */
void comet_conf_defaults(struct comet_conf *c);

/*
 * Load path over the defaults. 0, or -1 with err naming the file, line and
 * setting. On failure *c is unspecified: load into a scratch copy.
 */
int comet_conf_load(const char *path, struct comet_conf *c, char *err,
                    size_t errlen);

struct sess_worker; /* the session layer's per-worker state */

/* One worker process. */
struct worker {
	uint16_t id;
	struct event_base *base;
	const struct comet_conf *conf; /* current; replaced on reload */
	struct shm_seg *shm;
	struct shm_worker *slot;
	long max_conns; /* this worker's connection limit */
	struct sess_worker *sess;
};

/*
 * Session-layer hooks, called by worker.c in the worker process.
 *
 * sess_init: after the event base exists; start the logic client, the
 *   Redis subscriber and timers. 0, or -1 (logged) and the worker exits.
 * sess_accept: a new client socket (non-blocking) from listener kind;
 *   ownership of fd passes to the session layer.
 * sess_kick: close connection conn_id (its key moved to a newer one).
 * sess_reload: the config changed (w->conf is the new one, old the old).
 * sess_count: open connections (for accept back-pressure).
 * sess_drain: SIGTERM: send op 6 to every client, Disconnect them from
 *   logic, close them; done() is called when nothing is left in flight.
 * sess_free: release everything (after the loop has stopped).
 *
 * w->conf is the worker's own copy: on reload worker.c installs the new one,
 * calls sess_reload and then frees the old one, so keep no pointer into it.
 * Counters: worker.c counts at accept level (SHM_C_CONN_ACCEPTED,
 * SHM_C_CONN_REFUSED_LIMIT, SHM_C_ACCEPT_PAUSED); the session layer counts
 * the rest (SHM_C_CONN_CURRENT, SHM_C_CONN_CLOSED, ...). The master zeroes
 * SHM_C_CONN_CURRENT of a dead worker. worker.c pauses accepting while
 * sess_count() >= w->max_conns and looks again every 100 ms.
 */
int sess_init(struct worker *w);
void sess_accept(struct worker *w, evutil_socket_t fd,
                 const struct sockaddr *sa, socklen_t salen,
                 enum listener_kind kind);
void sess_kick(struct worker *w, uint32_t conn_id);
void sess_reload(struct worker *w, const struct comet_conf *old);
size_t sess_count(const struct worker *w);
void sess_drain(struct worker *w, void (*done)(struct worker *w));
void sess_free(struct worker *w);

/* CLOCK_MONOTONIC in ms: the clock of the workers' heartbeat in shm. */
uint64_t comet_mono_ms(void);

/*
 * Provided by worker.c for the session layer: wake worker id so it reads
 * its kick mailbox in shm (after shm_worker_kick). Safe to call for any id.
 */
void worker_wake(uint16_t worker_id);

#endif
