/*
 * session: sessions, online counts and the comet node list in Redis.
 * The key layout is documented at the top of session.c.
 *
 * Every function sends one command or script through the store and
 * returns 0 (cb will be called once with the reply or NULL) or -1 when
 * Redis is down or an argument is unusable (cb is never called).
 */
#ifndef IMGATE_LOGIC_SESSION_H
#define IMGATE_LOGIC_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "logic/logic.h"
#include "logic/store.h"

/* The Lua scripts, NULL-terminated, for store_new. */
extern struct store_script *session_scripts[];

/* Map key (and mid, unless 0) to server. Reply: integer 1. */
int session_add(struct logic *l, int64_t mid, const char *key, size_t keylen,
                const char *server, size_t serverlen, store_cb cb, void *arg);

/*
 * Delete the mappings that still point at server. Reply: integer 1 if
 * something was deleted, 0 otherwise.
 */
int session_del(struct logic *l, int64_t mid, const char *key, size_t keylen,
                const char *server, size_t serverlen, store_cb cb, void *arg);

/*
 * Renew the TTLs of a session that points at server, or restore it if it
 * expired. Reply: integer 1, or 0 when key now belongs to another server.
 */
int session_touch(struct logic *l, int64_t mid, const char *key, size_t keylen,
                  const char *server, size_t serverlen, store_cb cb, void *arg);

/* One room count reported by a comet. */
struct session_room {
	const char *room;
	size_t len;
	int64_t count;
};

/*
 * Replace server's room counts, register or refresh the node (info is a
 * JSON object), drop nodes that stopped renewing. Reply: flat array
 * room, count, ... of the cluster-wide counts.
 */
int session_renew_online(struct logic *l, const char *server, size_t serverlen,
                         const char *info, const struct session_room *rooms,
                         size_t nrooms, store_cb cb, void *arg);

/* Cluster-wide room counts. Reply: flat array room, count, ... */
int session_online(struct logic *l, store_cb cb, void *arg);

/* Live nodes. Reply: flat array server, info JSON, ... */
int session_nodes(struct logic *l, store_cb cb, void *arg);

/* Servers holding keys. Reply: array, one str or nil per key. */
int session_servers_by_keys(struct logic *l, const char *const *keys,
                            const size_t *lens, size_t n, store_cb cb,
                            void *arg);

/*
 * Live sessions of mids. Reply: flat array of triples: the 1-based index
 * of the mid in mids (integer), key, server.
 */
int session_keys_by_mids(struct logic *l, const int64_t *mids, size_t n,
                         store_cb cb, void *arg);

/* PUBLISH. Reply: integer (receivers). */
int session_publish(struct logic *l, const char *channel, const void *data,
                    size_t len, store_cb cb, void *arg);

#endif
