/*
 * logic: types shared by the parts of imgate-logic, goim's "logic" and
 * "job" in one stateless daemon.
 *
 *   main.c      options, daemonizing, pid file, signals, reload
 *   conf.c      imgate-logic.conf (INI, libinih)
 *   auth.c      Connect tokens: goim's JSON token, or a JWT (HS256)
 *   chanseq.c   the per-channel seq stamped on envelopes
 *   store.c     the Redis connection: async hiredis on the daemon's loop,
 *               reconnect with backoff, a watchdog for a hung server, Lua
 *               scripts loaded on every connect
 *   session.c   the Redis key layout and every operation on it
 *   online.c    the cluster-wide room counts, cached
 *   svc.c       the msgpack-rpc methods comets call
 *   api.c       the goim HTTP API, /metrics and /healthz
 *   webhook.c   upstream client messages (Receive) to the business server
 */
#ifndef IMGATE_LOGIC_H
#define IMGATE_LOGIC_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>

#include "common/log.h"

#define LOGIC_HOST_MAX   256
#define LOGIC_NAME_MAX   64
#define LOGIC_SECRET_MAX 1024
#define LOGIC_URL_MAX    1024

struct logic_conf {
	char path[PATH_MAX];

	/* [server] */
	char pid_file[PATH_MAX];
	char log_target[PATH_MAX];
	enum log_level log_level;

	/* [rpc] */
	char rpc_host[LOGIC_HOST_MAX];
	int rpc_port;
	size_t rpc_max_message;

	/* [http] */
	char http_host[LOGIC_HOST_MAX];
	int http_port;
	size_t http_max_body;
	long http_timeout_ms;
	long max_targets;                  /* keys or mids in one push */
	char push_token[LOGIC_SECRET_MAX]; /* bearer token; "" = none */
	char cors_origin[LOGIC_HOST_MAX];  /* "" = off, "*" or one origin */

	/* [redis] */
	char redis_host[LOGIC_HOST_MAX];
	int redis_port;
	char redis_password[LOGIC_SECRET_MAX];
	int redis_db;
	char prefix[LOGIC_NAME_MAX];
	long redis_timeout_ms;
	long redis_backoff_min_ms;
	long redis_backoff_max_ms;

	/* [session] */
	long heartbeat_timeout_ms; /* returned by Connect */
	long session_ttl_ms;
	long online_ttl_ms;   /* room counts and node entries */
	long online_cache_ms; /* how long a cluster-wide sum is reused */

	/* [auth] */
	char jwt_secret[LOGIC_SECRET_MAX];
	char jwt_secret_file[PATH_MAX];
	size_t jwt_secret_len; /* of the secret in use, from either source */
	long jwt_leeway_ms;

	/* [node] what Nodes and /goim/nodes/weighted tell clients */
	char node_domain[LOGIC_HOST_MAX];
	int node_tcp_port;
	int node_ws_port;
	int node_wss_port;
	long node_heartbeat_ms; /* how often clients send op 2 */
	int node_heartbeat_max;
	long backoff_max_delay;
	long backoff_base_delay;
	double backoff_factor;
	double backoff_jitter;

	/* [demo] the browser demo at /demo/ */
	char demo_dir[PATH_MAX];         /* "" = not served */
	char demo_ws_url[LOGIC_URL_MAX]; /* "" = the page picks its host */
	size_t demo_max_file;

	/* [webhook] */
	char receive_url[LOGIC_URL_MAX]; /* "" = log upstream messages */
	long webhook_timeout_ms;
	long webhook_max_inflight;
};

void logic_conf_defaults(struct logic_conf *c);

/*
 * Load path over the defaults and check the result (including reading
 * jwt_secret_file). 0, or -1 with err naming the file, line and setting.
 */
int logic_conf_load(const char *path, struct logic_conf *c, char *err,
                    size_t errlen);

/* Counters for /metrics. One process, one thread: plain integers. */
enum api_route {
	ROUTE_PUSH_KEYS = 0,
	ROUTE_PUSH_MIDS,
	ROUTE_PUSH_ROOM,
	ROUTE_PUSH_ALL,
	ROUTE_ONLINE_TOP,
	ROUTE_ONLINE_ROOM,
	ROUTE_ONLINE_TOTAL,
	ROUTE_NODES_WEIGHTED,
	ROUTE_NODES_INSTANCES,
	ROUTE_METRICS,
	ROUTE_HEALTHZ,
	ROUTE_DEMO,
	ROUTE_OTHER,
	ROUTE__COUNT
};

/*
 * The "code" of an HTTP answer. -500 and -504 differ in what a sender may
 * do next: -500 means the push certainly was not published (Redis not
 * connected, the PUBLISH never written), so sending it again is safe.
 * -504 means a PUBLISH was written to Redis but no reply came (Redis
 * stalled or the connection dropped): Redis may have run it, or may still
 * run it when it wakes up, so the push may have been delivered and
 * sending it again may deliver it twice.
 */
enum api_code {
	CODE_OK = 0,
	CODE_BAD_REQUEST,  /* -400 */
	CODE_UNAUTHORIZED, /* -401 */
	CODE_SERVER_ERROR, /* -500 */
	CODE_NOT_FOUND,    /* -404 */
	CODE_TIMEOUT,      /* -504 */
	CODE__COUNT
};

enum svc_method {
	METHOD_CONNECT = 0,
	METHOD_DISCONNECT,
	METHOD_HEARTBEAT,
	METHOD_RENEW_ONLINE,
	METHOD_RECEIVE,
	METHOD_NODES,
	METHOD_PING,
	METHOD_UNKNOWN,
	METHOD__COUNT
};

struct logic_metrics {
	uint64_t http[ROUTE__COUNT][CODE__COUNT];
	uint64_t pushes[3];        /* by envelope type */
	uint64_t published[3];     /* envelopes published, by type */
	uint64_t publish_failures; /* PUBLISH that certainly failed */
	uint64_t publish_unknown;  /* PUBLISH written, never answered */
	/* PUBLISH answered "0 receivers", by push route (keys mids room all) */
	uint64_t publish_no_subscriber[ROUTE_PUSH_ALL + 1];
	uint64_t push_keys_unknown; /* keys or mids with no session */
	uint64_t rpc_calls[METHOD__COUNT];
	uint64_t rpc_errors[METHOD__COUNT];
	uint64_t auth_failures;
	uint64_t redis_reconnects;
	uint64_t redis_errors;
	uint64_t webhook_ok;
	uint64_t webhook_failures;
	uint64_t webhook_dropped; /* over webhook_max_inflight */
};

struct store;
struct api;
struct svc;
struct webhook;
struct online;
struct chanseq;

/* The daemon: one event loop, one process. */
struct logic {
	struct event_base *base;
	struct logic_conf *conf; /* current; replaced on reload */
	struct store *store;
	struct api *api;
	struct svc *svc;
	struct webhook *webhook;
	struct online *online;
	struct logic_metrics metrics;
	uint64_t publish_seq;
	uint64_t src;            /* envelopes' "src": random, non-zero */
	struct chanseq *chanseq; /* envelopes' "seq" per channel */
};

/* Wall clock in ms since the epoch. */
uint64_t logic_now_ms(void);

/* A unique id for an envelope: pid, time and a sequence mixed. */
uint64_t logic_next_id(struct logic *l);

/* A random non-zero "src" for this process's envelopes. */
uint64_t logic_new_src(void);

#endif
