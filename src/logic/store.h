/*
 * store: imgate-logic's one Redis connection (async hiredis with the
 * libevent adapter, on the daemon's loop).
 *
 * It connects in the background and reconnects with exponential backoff
 * and jitter whenever Redis goes away. While it is down, store_command
 * fails at once, so callers answer errors quickly instead of queueing. A
 * watchdog drops the connection when commands stay unanswered longer than
 * the timeout (a hung or stopped server): their callbacks then run with
 * reply NULL. On every connect it sends AUTH and SELECT when configured and
 * loads the Lua scripts it was given, before any other command.
 */
#ifndef IMGATE_LOGIC_STORE_H
#define IMGATE_LOGIC_STORE_H

#include <stddef.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>

struct store;

struct store_opts {
	const char *host;
	int port;
	const char *password; /* "" or NULL = no AUTH */
	int db;
	long timeout_ms; /* connect, and replies to pending commands */
	long backoff_min_ms;
	long backoff_max_ms;
};

/* A Lua script: source given, sha filled by store_new. */
struct store_script {
	const char *src;
	char sha[41];
};

/*
 * Called exactly once per accepted command: reply is the reply (possibly
 * REDIS_REPLY_ERROR), or NULL when the connection failed, timed out or the
 * store is being freed.
 */
typedef void (*store_cb)(const redisReply *reply, void *arg);

/*
 * Inside a store_cb called with reply NULL: 1 when the command had been
 * written whole to Redis before the connection went away, so Redis may
 * have run it (or may still run it, if it was only stalled): its outcome
 * is unknown. 0 when it certainly never reached Redis. 0 outside such a
 * callback.
 */
int store_reply_unknown(const struct store *st);

/* Status changes, for logging and metrics: up 1 connected, 0 lost. */
typedef void (*store_status_cb)(int up, const char *why, void *arg);

/* scripts: NULL-terminated array, kept by reference. */
struct store *store_new(struct event_base *base, const struct store_opts *o,
                        struct store_script **scripts, store_status_cb scb,
                        void *sarg, char *err, size_t errlen);
void store_free(struct store *st);

/* Reconnect to new settings (config reload). */
int store_set_opts(struct store *st, const struct store_opts *o);

int store_connected(const struct store *st);

/*
 * Send a command. 0: cb will be called exactly once. -1: not connected
 * (cb is never called).
 */
int store_command(struct store *st, store_cb cb, void *arg, int argc,
                  const char **argv, const size_t *argvlen);

/* EVALSHA script with nkeys keys followed by args (argc in total). */
int store_eval(struct store *st, const struct store_script *s, store_cb cb,
               void *arg, int nkeys, int argc, const char **argv,
               const size_t *argvlen);

#endif
