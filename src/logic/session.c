/*
 * Redis key layout (P = the [redis] prefix, "imgate" by default):
 *
 *   P:key:<key>        string  server id holding the connection of <key>;
 *                              TTL session_ttl, renewed by Heartbeat
 *   P:mid:<mid>        hash    key -> server id, for every live key of
 *                              user <mid> (mid 0 = anonymous, not stored);
 *                              TTL session_ttl, renewed by Heartbeat
 *   P:online:<server>  hash    room -> members on that comet node; replaced
 *                              whole by each RenewOnline (emptied rooms
 *                              vanish); TTL online_ttl
 *   P:nodes            hash    server id -> JSON {server, addrs, tcp_port,
 *                              ws_port, wss_port, conn_count, ip_count,
 *                              updated (ms)}
 *   P:nodes:seen       zset    server id scored by its last RenewOnline
 *                              (ms); nodes older than online_ttl are
 *                              pruned from both on every read
 *
 * Pub/sub channels (see common/envelope.h): P:node:<server>, P:room:<room>,
 * P:all.
 *
 * Disconnect deletes a mapping only while it still names the disconnecting
 * server, in one Lua script, so that a reconnect of the same key to another
 * node is never undone by the old node's late Disconnect. Heartbeat renews
 * the same way and never steals a key that moved. The scripts touch keys
 * they compute from their arguments, so they need a single Redis (not
 * Cluster).
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "logic/session.h"

/* KEYS[1] P:key:k  KEYS[2] P:mid:m  ARGV server ttl key has_mid */
static struct store_script script_add = {
    .src = "redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
           "if ARGV[4] == '1' then\n"
           "  redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])\n"
           "  redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
           "end\n"
           "return 1\n"};

/* KEYS[1] P:key:k  KEYS[2] P:mid:m  ARGV server key has_mid */
static struct store_script script_del = {
    .src = "local has = 0\n"
           "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
           "  redis.call('DEL', KEYS[1]); has = 1\n"
           "end\n"
           "if ARGV[3] == '1' and\n"
           "   redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then\n"
           "  redis.call('HDEL', KEYS[2], ARGV[2]); has = 1\n"
           "end\n"
           "return has\n"};

/* KEYS[1] P:key:k  KEYS[2] P:mid:m  ARGV server ttl key has_mid */
static struct store_script script_touch = {
    .src = "local cur = redis.call('GET', KEYS[1])\n"
           "if cur == false then\n"
           "  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])\n"
           "elseif cur == ARGV[1] then\n"
           "  redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
           "else\n"
           "  return 0\n"
           "end\n"
           "if ARGV[4] == '1' then\n"
           "  local m = redis.call('HGET', KEYS[2], ARGV[3])\n"
           "  if m ~= ARGV[1] then\n"
           "    redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])\n"
           "  end\n"
           "  redis.call('EXPIRE', KEYS[2], ARGV[2])\n"
           "end\n"
           "return 1\n"};

/*
 * Shared by the online scripts: KEYS[1] P:nodes, KEYS[2] P:nodes:seen,
 * ARGV[1] P:online:, ARGV[2] now (ms), ARGV[3] online_ttl (ms).
 */
#define LUA_PRUNE                                                       \
	"local function prune()\n"                                      \
	"  local cut = tonumber(ARGV[2]) - tonumber(ARGV[3])\n"         \
	"  local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf',\n" \
	"                          '(' .. cut)\n"                       \
	"  for _, s in ipairs(dead) do\n"                               \
	"    redis.call('HDEL', KEYS[1], s)\n"                          \
	"    redis.call('ZREM', KEYS[2], s)\n"                          \
	"  end\n"                                                       \
	"end\n"

#define LUA_SUM                                                           \
	"local function sum()\n"                                          \
	"  local counts, order, out = {}, {}, {}\n"                       \
	"  for _, s in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do\n" \
	"    local h = redis.call('HGETALL', ARGV[1] .. s)\n"             \
	"    for i = 1, #h, 2 do\n"                                       \
	"      local r = h[i]\n"                                          \
	"      if counts[r] == nil then\n"                                \
	"        counts[r] = 0; order[#order + 1] = r\n"                  \
	"      end\n"                                                     \
	"      counts[r] = counts[r] + (tonumber(h[i + 1]) or 0)\n"       \
	"    end\n"                                                       \
	"  end\n"                                                         \
	"  for _, r in ipairs(order) do\n"                                \
	"    out[#out + 1] = r; out[#out + 1] = counts[r]\n"              \
	"  end\n"                                                         \
	"  return out\n"                                                  \
	"end\n"

/*
 * KEYS[1] P:nodes  KEYS[2] P:nodes:seen  KEYS[3] P:online:<server>
 * ARGV P:online: now ttl_ms server info ttl_s, then room, count pairs.
 */
static struct store_script script_renew = {
    .src = LUA_PRUNE "redis.call('DEL', KEYS[3])\n"
                     "for i = 7, #ARGV, 2 do\n"
                     "  if tonumber(ARGV[i + 1]) > 0 then\n"
                     "    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])\n"
                     "  end\n"
                     "end\n"
                     "redis.call('EXPIRE', KEYS[3], ARGV[6])\n"
                     "redis.call('HSET', KEYS[1], ARGV[4], ARGV[5])\n"
                     "redis.call('ZADD', KEYS[2], ARGV[2], ARGV[4])\n"
                     "prune()\n"
                     "return 1\n"};

/* KEYS[1] P:nodes  KEYS[2] P:nodes:seen  ARGV P:online: now ttl_ms */
static struct store_script script_online = {.src = LUA_PRUNE LUA_SUM
                                            "prune()\n"
                                            "return sum()\n"};

/* Same keys and args: the live nodes as server, info pairs. */
static struct store_script script_nodes = {
    .src = LUA_PRUNE "prune()\n"
                     "local out = {}\n"
                     "local h = redis.call('HGETALL', KEYS[1])\n"
                     "for i = 1, #h do out[#out + 1] = h[i] end\n"
                     "return out\n"};

/*
 * KEYS: P:mid:<mid>...  ARGV[1] P:key:
 * A key in a user's hash counts only while P:key:<key> still names the
 * same server: the per-key string is the truth, the hash an index whose
 * stale fields are dropped here.
 */
static struct store_script script_mids = {
    .src = "local out = {}\n"
           "for i = 1, #KEYS do\n"
           "  local h = redis.call('HGETALL', KEYS[i])\n"
           "  for j = 1, #h, 2 do\n"
           "    local cur = redis.call('GET', ARGV[1] .. h[j])\n"
           "    if cur == h[j + 1] then\n"
           "      out[#out + 1] = i; out[#out + 1] = h[j]\n"
           "      out[#out + 1] = h[j + 1]\n"
           "    else\n"
           "      redis.call('HDEL', KEYS[i], h[j])\n"
           "    end\n"
           "  end\n"
           "end\n"
           "return out\n"};

struct store_script *session_scripts[] = {
    &script_add,    &script_del,   &script_touch, &script_renew,
    &script_online, &script_nodes, &script_mids,  NULL};

#define NAME_MAX_LEN 512

static int
key_name(char *out, const struct logic *l, const char *kind, const char *s,
         size_t len)
{
	int n = snprintf(out, NAME_MAX_LEN, "%s:%s:%.*s", l->conf->prefix, kind,
	                 (int)len, s);

	return n < 0 || n >= NAME_MAX_LEN ? -1 : 0;
}

/* The script for add/del/touch: the same keys, similar arguments. */
static int
mapping(struct logic *l, const struct store_script *s, int with_ttl,
        int64_t mid, const char *key, size_t keylen, const char *server,
        size_t serverlen, store_cb cb, void *arg)
{
	char kname[NAME_MAX_LEN], mname[NAME_MAX_LEN], mids[32], ttl[32];
	const char *argv[6];
	size_t lens[6];
	int argc = 0;

	if (key_name(kname, l, "key", key, keylen) == -1)
		return -1;
	snprintf(mids, sizeof(mids), "%" PRId64, mid);
	if (key_name(mname, l, "mid", mids, strlen(mids)) == -1)
		return -1;
	snprintf(ttl, sizeof(ttl), "%ld",
	         (l->conf->session_ttl_ms + 999) / 1000);
	argv[argc] = kname;
	lens[argc++] = strlen(kname);
	argv[argc] = mname;
	lens[argc++] = strlen(mname);
	argv[argc] = server;
	lens[argc++] = serverlen;
	if (with_ttl) {
		argv[argc] = ttl;
		lens[argc++] = strlen(ttl);
	}
	argv[argc] = key;
	lens[argc++] = keylen;
	argv[argc] = mid != 0 ? "1" : "0";
	lens[argc++] = 1;
	return store_eval(l->store, s, cb, arg, 2, argc, argv, lens);
}

int
session_add(struct logic *l, int64_t mid, const char *key, size_t keylen,
            const char *server, size_t serverlen, store_cb cb, void *arg)
{
	return mapping(l, &script_add, 1, mid, key, keylen, server, serverlen,
	               cb, arg);
}

int
session_del(struct logic *l, int64_t mid, const char *key, size_t keylen,
            const char *server, size_t serverlen, store_cb cb, void *arg)
{
	return mapping(l, &script_del, 0, mid, key, keylen, server, serverlen,
	               cb, arg);
}

int
session_touch(struct logic *l, int64_t mid, const char *key, size_t keylen,
              const char *server, size_t serverlen, store_cb cb, void *arg)
{
	return mapping(l, &script_touch, 1, mid, key, keylen, server, serverlen,
	               cb, arg);
}

/* The fixed head of the online scripts: 2 keys, 3 args. */
struct online_head {
	char nodes[NAME_MAX_LEN], seen[NAME_MAX_LEN], oprefix[NAME_MAX_LEN];
	char now[32], ttl[32];
};

static void
online_head(struct logic *l, struct online_head *h, const char **argv,
            size_t *lens)
{
	snprintf(h->nodes, sizeof(h->nodes), "%s:nodes", l->conf->prefix);
	snprintf(h->seen, sizeof(h->seen), "%s:nodes:seen", l->conf->prefix);
	snprintf(h->oprefix, sizeof(h->oprefix), "%s:online:", l->conf->prefix);
	snprintf(h->now, sizeof(h->now), "%" PRIu64, logic_now_ms());
	snprintf(h->ttl, sizeof(h->ttl), "%ld", l->conf->online_ttl_ms);
	argv[0] = h->nodes;
	argv[1] = h->seen;
	argv[2] = h->oprefix;
	argv[3] = h->now;
	argv[4] = h->ttl;
	for (int i = 0; i < 5; i++)
		lens[i] = strlen(argv[i]);
}

int
session_renew_online(struct logic *l, const char *server, size_t serverlen,
                     const char *info, const struct session_room *rooms,
                     size_t nrooms, store_cb cb, void *arg)
{
	struct online_head h;
	char okey[NAME_MAX_LEN], ttls[32];
	const char **argv;
	size_t *lens, argc = 9 + 2 * nrooms;
	char *counts;
	int r;

	if (key_name(okey, l, "online", server, serverlen) == -1)
		return -1;
	argv = calloc(argc, sizeof(*argv));
	lens = calloc(argc, sizeof(*lens));
	counts = calloc(nrooms + 1, 24);
	if (argv == NULL || lens == NULL || counts == NULL) {
		r = -1;
		goto out;
	}
	/* Keys first: nodes, seen, online:<server>; then the args. */
	online_head(l, &h, argv, lens);
	argv[5] = argv[4];
	lens[5] = lens[4];
	argv[4] = argv[3];
	lens[4] = lens[3];
	argv[3] = argv[2];
	lens[3] = lens[2];
	argv[2] = okey;
	lens[2] = strlen(okey);
	argv[6] = server;
	lens[6] = serverlen;
	argv[7] = info;
	lens[7] = strlen(info);
	snprintf(ttls, sizeof(ttls), "%ld",
	         (l->conf->online_ttl_ms + 999) / 1000);
	argv[8] = ttls;
	lens[8] = strlen(ttls);
	for (size_t i = 0; i < nrooms; i++) {
		char *c = counts + 24 * i;

		snprintf(c, 24, "%" PRId64, rooms[i].count);
		argv[9 + 2 * i] = rooms[i].room;
		lens[9 + 2 * i] = rooms[i].len;
		argv[10 + 2 * i] = c;
		lens[10 + 2 * i] = strlen(c);
	}
	r = store_eval(l->store, &script_renew, cb, arg, 3, (int)argc, argv,
	               lens);
out:
	free(argv);
	free(lens);
	free(counts);
	return r;
}

/* A read-side online script: the fixed head and nothing else. */
static int
online_eval(struct logic *l, const struct store_script *script, store_cb cb,
            void *arg)
{
	struct online_head h;
	const char *argv[5];
	size_t lens[5];

	online_head(l, &h, argv, lens);
	return store_eval(l->store, script, cb, arg, 2, 5, argv, lens);
}

int
session_online(struct logic *l, store_cb cb, void *arg)
{
	return online_eval(l, &script_online, cb, arg);
}

int
session_nodes(struct logic *l, store_cb cb, void *arg)
{
	return online_eval(l, &script_nodes, cb, arg);
}

/* P:<kind>:<name> for each name (lens NULL: C strings); free_names. */
static char **
names(struct logic *l, const char *kind, const char *const *s,
      const size_t *lens, size_t n)
{
	char **out = calloc(n, sizeof(*out));

	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		int len = lens != NULL ? (int)lens[i] : (int)strlen(s[i]);

		if (asprintf(&out[i], "%s:%s:%.*s", l->conf->prefix, kind, len,
		             s[i]) == -1) {
			out[i] = NULL;
			for (size_t j = 0; j < i; j++)
				free(out[j]);
			free(out);
			return NULL;
		}
	}
	return out;
}

static void
free_names(char **v, size_t n)
{
	for (size_t i = 0; v != NULL && i < n; i++)
		free(v[i]);
	free(v);
}

int
session_servers_by_keys(struct logic *l, const char *const *keys,
                        const size_t *lens, size_t n, store_cb cb, void *arg)
{
	const char **argv;
	char **v;
	int r = -1;

	if (n == 0 || n > INT32_MAX - 1)
		return -1;
	v = names(l, "key", keys, lens, n);
	argv = calloc(n + 1, sizeof(*argv));
	if (v != NULL && argv != NULL) {
		argv[0] = "MGET";
		for (size_t i = 0; i < n; i++)
			argv[i + 1] = v[i];
		r = store_command(l->store, cb, arg, (int)n + 1, argv, NULL);
	}
	free(argv);
	free_names(v, n);
	return r;
}

int
session_keys_by_mids(struct logic *l, const int64_t *mids, size_t n,
                     store_cb cb, void *arg)
{
	char(*buf)[24];
	const char **s, **argv;
	size_t *lens;
	char **v = NULL;
	char kp[NAME_MAX_LEN];
	int r = -1;

	if (n == 0 || n > INT32_MAX - 2)
		return -1;
	buf = calloc(n, sizeof(*buf));
	s = calloc(n, sizeof(*s));
	lens = calloc(n, sizeof(*lens));
	argv = calloc(n + 1, sizeof(*argv));
	if (buf == NULL || s == NULL || lens == NULL || argv == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		snprintf(buf[i], sizeof(buf[i]), "%" PRId64, mids[i]);
		s[i] = buf[i];
		lens[i] = strlen(buf[i]);
	}
	v = names(l, "mid", s, lens, n);
	if (v == NULL)
		goto out;
	for (size_t i = 0; i < n; i++)
		argv[i] = v[i];
	snprintf(kp, sizeof(kp), "%s:key:", l->conf->prefix);
	argv[n] = kp;
	r = store_eval(l->store, &script_mids, cb, arg, (int)n, (int)n + 1,
	               argv, NULL);
out:
	free_names(v, n);
	free(buf);
	free(s);
	free(lens);
	free(argv);
	return r;
}

int
session_publish(struct logic *l, const char *channel, const void *data,
                size_t len, store_cb cb, void *arg)
{
	const char *argv[] = {"PUBLISH", channel, data};
	size_t lens[] = {7, strlen(channel), len};

	return store_command(l->store, cb, arg, 3, argv, lens);
}
