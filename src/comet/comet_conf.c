/*
 * imgate-comet.conf: INI read with libinih, values with common/conf.h.
 *
 * Every key is known: an unknown section or key, a key set twice or an
 * overlong line is an error naming file:line and the key, because a typo
 * that silently falls back to a default is worse than a refusal.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "comet/comet.h"
#include "common/conf.h"

enum key_type {
	K_STR,      /* char[] of size len */
	K_INT,      /* int in [min, max] */
	K_LONG,     /* long in [min, max] */
	K_U32,      /* uint32_t in [min, max] */
	K_BOOL,     /* int 0/1 */
	K_DURATION, /* long ms in [min, max] */
	K_SIZE,     /* size_t in [min, max] */
	K_ADDR,     /* struct comet_addr; "off" disables it when min == 0 */
	K_LOGLEVEL, /* enum log_level */
	K_MIDS,     /* comma-separated int64 list into char[] */
};

struct conf_key {
	const char *section;
	const char *name;
	enum key_type type;
	size_t off;
	size_t len; /* K_STR, K_MIDS: buffer size */
	long min, max;
};

#define OFF(f) offsetof(struct comet_conf, f)
#define STR(s, n, f)                                                           \
	{                                                                      \
		s, n, K_STR, OFF(f), sizeof(((struct comet_conf *)0)->f), 0, 0 \
	}

static const struct conf_key conf_keys[] = {
    STR("server", "id", server_id),
    {"server", "workers", K_INT, OFF(workers), 0, 0, 65535},
    {"server", "max_connections", K_LONG, OFF(max_connections), 0, 0,
     100000000},
    {"server", "worker_connections", K_LONG, OFF(worker_connections), 0, 0,
     10000000},
    STR("server", "pid_file", pid_file),
    STR("server", "user", user),
    STR("server", "log", log_target),
    {"server", "log_level", K_LOGLEVEL, OFF(log_level), 0, 0, 0},
    {"server", "drain_timeout", K_DURATION, OFF(drain_timeout_ms), 0, 0,
     3600 * 1000},
    {"server", "worker_timeout", K_DURATION, OFF(worker_timeout_ms), 0, 0,
     3600 * 1000},
    {"server", "reuseport", K_BOOL, OFF(reuseport), 0, 0, 1},

    {"listen", "tcp", K_ADDR, OFF(listen[LISTENER_TCP]), 0, 0, 0},
    {"listen", "ws", K_ADDR, OFF(listen[LISTENER_WS]), 0, 0, 0},
    {"listen", "wss", K_ADDR, OFF(listen[LISTENER_WSS]), 0, 0, 0},
    {"listen", "admin", K_ADDR, OFF(admin), 0, 0, 0},
    STR("listen", "ws_path", ws_path),
    STR("listen", "tls_cert", tls_cert),
    STR("listen", "tls_key", tls_key),

    {"protocol", "handshake_timeout", K_DURATION, OFF(handshake_timeout_ms), 0,
     100, 3600 * 1000},
    {"protocol", "heartbeat_timeout", K_DURATION, OFF(heartbeat_timeout_ms), 0,
     1000, 24 * 3600 * 1000},
    {"protocol", "max_body", K_SIZE, OFF(max_body), 0, 16, 16 << 20},
    {"protocol", "max_ws_message", K_SIZE, OFF(max_ws_message), 0, 32,
     16 << 20},
    {"protocol", "max_http_header", K_SIZE, OFF(max_http_header), 0, 512,
     1 << 20},
    {"protocol", "output_limit", K_SIZE, OFF(output_limit), 0, 4096, 1L << 30},
    {"protocol", "sndbuf", K_SIZE, OFF(sndbuf), 0, 0, 64 << 20},

    STR("shm", "name", shm_name),
    {"shm", "buckets", K_U32, OFF(shm.buckets), 0, 1, 1 << 20},
    {"shm", "channels_per_bucket", K_U32, OFF(shm.channels_per_bucket), 0, 1,
     1 << 16},
    {"shm", "rooms_per_bucket", K_U32, OFF(shm.rooms_per_bucket), 0, 1,
     1 << 16},
    /* Worker ids are uint16_t in shm records. */
    {"shm", "max_workers", K_U32, OFF(shm.max_workers), 0, 1, 4096},

    {"logic", "addr", K_ADDR, OFF(logic), 0, 1, 0},
    {"logic", "rpc_timeout", K_DURATION, OFF(rpc_timeout_ms), 0, 10,
     600 * 1000},
    {"logic", "renew_interval", K_DURATION, OFF(renew_interval_ms), 0, 1000,
     3600 * 1000},

    {"redis", "addr", K_ADDR, OFF(redis), 0, 1, 0},
    STR("redis", "password", redis_password),
    STR("redis", "channel_prefix", channel_prefix),

    {"push", "batch_window", K_DURATION, OFF(batch_window_ms), 0, 0, 10 * 1000},

    {"trace", "mids", K_MIDS, OFF(trace_mids),
     sizeof(((struct comet_conf *)0)->trace_mids), 0, 0},
};

#define NKEYS (sizeof(conf_keys) / sizeof(conf_keys[0]))

static const char *const conf_sections[] = {
    "server", "listen", "protocol", "shm", "logic", "redis", "push", "trace",
};

void
comet_conf_defaults(struct comet_conf *c)
{
	memset(c, 0, sizeof(*c));
	if (gethostname(c->server_id, sizeof(c->server_id)) == -1 ||
	    c->server_id[0] == '\0')
		snprintf(c->server_id, sizeof(c->server_id), "comet");
	c->server_id[sizeof(c->server_id) - 1] = '\0';
	c->workers = 0;
	c->max_connections = 0;
	c->worker_connections = 0;
	snprintf(c->pid_file, sizeof(c->pid_file), "%s",
	         RUNSTATEDIR "/imgate/imgate-comet.pid");
	snprintf(c->log_target, sizeof(c->log_target), "stderr");
	c->log_level = LOG_LVL_INFO;
	c->drain_timeout_ms = 10 * 1000;
	c->worker_timeout_ms = 10 * 1000;
	c->reuseport = 0;

	c->listen[LISTENER_TCP].port = 3101;
	c->listen[LISTENER_WS].port = 3102;
	c->listen[LISTENER_WSS].port = 0; /* needs tls_cert and tls_key */
	snprintf(c->admin.host, sizeof(c->admin.host), "127.0.0.1");
	c->admin.port = 3109;
	snprintf(c->ws_path, sizeof(c->ws_path), "/sub");

	c->handshake_timeout_ms = 8 * 1000;
	c->heartbeat_timeout_ms = 4 * 60 * 1000;
	c->max_body = 4096;
	c->max_ws_message = 16 * 1024;
	c->max_http_header = 8 * 1024;
	c->output_limit = 256 * 1024;
	c->sndbuf = 64 * 1024;

	snprintf(c->shm_name, sizeof(c->shm_name), "/imgate-comet");
	c->shm.buckets = 256;
	c->shm.channels_per_bucket = 256;
	c->shm.rooms_per_bucket = 64;
	c->shm.max_workers = 128;

	snprintf(c->logic.host, sizeof(c->logic.host), "127.0.0.1");
	c->logic.port = 3119;
	c->rpc_timeout_ms = 5 * 1000;
	c->renew_interval_ms = 10 * 1000;

	snprintf(c->redis.host, sizeof(c->redis.host), "127.0.0.1");
	c->redis.port = 6379;
	snprintf(c->channel_prefix, sizeof(c->channel_prefix), "imgate");

	c->batch_window_ms = 0;
}

struct load_state {
	struct comet_conf *c;
	const char *path;
	FILE *fp;
	int line; /* line the reader returned last */
	int seen[NKEYS];
	char *err;
	size_t errlen;
	int failed;
};

static void load_error(struct load_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
load_error(struct load_state *st, const char *fmt, ...)
{
	va_list ap;
	int n;

	/* The first error is the one worth reading; later ones may follow it.
	 */
	if (st->failed)
		return;
	st->failed = 1;
	/* Line 0: a cross-key check on a key left at its default. */
	if (st->line > 0)
		n = snprintf(st->err, st->errlen, "%s:%d: ", st->path,
		             st->line);
	else
		n = snprintf(st->err, st->errlen, "%s: ", st->path);
	if (n < 0 || (size_t)n >= st->errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(st->err + n, st->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static int
known_section(const char *s, size_t len)
{
	for (size_t i = 0; i < sizeof(conf_sections) / sizeof(conf_sections[0]);
	     i++)
		if (strlen(conf_sections[i]) == len &&
		    strncmp(conf_sections[i], s, len) == 0)
			return 1;
	return 0;
}

/*
 * inih's reader hook: counts lines (the packaged inih passes no line number
 * to the handler), rejects lines longer than inih's buffer (it would split
 * them silently) and checks section names (inih reports a section only
 * through the keys in it, so an empty misspelt section would pass).
 */
static char *
conf_reader(char *str, int num, void *arg)
{
	struct load_state *st = arg;
	const char *p, *e;
	size_t len;

	if (st->failed)
		return NULL;
	if (fgets(str, num, st->fp) == NULL)
		return NULL;
	st->line++;
	len = strlen(str);
	if (len > 0 && str[len - 1] != '\n' && !feof(st->fp)) {
		load_error(st, "line longer than %d bytes", num - 2);
		return NULL;
	}
	p = str;
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '[') {
		p++;
		e = strchr(p, ']');
		if (e == NULL) {
			load_error(st, "section header without ']'");
			return NULL;
		}
		if (!known_section(p, (size_t)(e - p))) {
			load_error(st, "unknown section [%.*s]", (int)(e - p),
			           p);
			return NULL;
		}
	}
	return str;
}

static int
parse_mids(const char *v, char *out, size_t outlen)
{
	const char *p = v;
	char *end;

	if (strlen(v) >= outlen)
		return -1;
	while (*p != '\0') {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		errno = 0;
		(void)strtoll(p, &end, 10);
		if (errno != 0 || end == p)
			return -1;
		p = end;
		while (isspace((unsigned char)*p))
			p++;
		if (*p == ',')
			p++;
		else if (*p != '\0')
			return -1;
	}
	snprintf(out, outlen, "%s", v);
	return 0;
}

static int
set_value(const struct conf_key *k, void *field, const char *v)
{
	long l;
	size_t sz;
	struct comet_addr *a;

	switch (k->type) {
	case K_STR:
		if (strlen(v) >= k->len)
			return -1;
		snprintf(field, k->len, "%s", v);
		return 0;
	case K_INT:
		if (conf_parse_long(v, k->min, k->max, &l) == -1)
			return -1;
		*(int *)field = (int)l;
		return 0;
	case K_LONG:
		if (conf_parse_long(v, k->min, k->max, &l) == -1)
			return -1;
		*(long *)field = l;
		return 0;
	case K_U32:
		if (conf_parse_long(v, k->min, k->max, &l) == -1)
			return -1;
		*(uint32_t *)field = (uint32_t)l;
		return 0;
	case K_BOOL:
		return conf_parse_bool(v, field);
	case K_DURATION:
		if (conf_parse_duration_ms(v, &l) == -1 || l < k->min ||
		    l > k->max)
			return -1;
		*(long *)field = l;
		return 0;
	case K_SIZE:
		if (conf_parse_size(v, &sz) == -1 || sz < (size_t)k->min ||
		    sz > (size_t)k->max)
			return -1;
		*(size_t *)field = sz;
		return 0;
	case K_ADDR:
		a = field;
		if (k->min == 0 && (strcmp(v, "off") == 0 || v[0] == '\0')) {
			a->host[0] = '\0';
			a->port = 0;
			return 0;
		}
		return conf_parse_addr(v, a->host, sizeof(a->host), &a->port);
	case K_LOGLEVEL:
		return log_level_parse(v, field);
	case K_MIDS:
		return parse_mids(v, field, k->len);
	}
	return -1;
}

static const char *
expect(const struct conf_key *k)
{
	switch (k->type) {
	case K_STR:
		return "a string too long";
	case K_INT:
	case K_LONG:
	case K_U32:
		return "an integer out of range";
	case K_BOOL:
		return "not yes/no";
	case K_DURATION:
		return "a duration (250ms, 5s, 2m) out of range or malformed";
	case K_SIZE:
		return "a size (4096, 64k, 16m) out of range or malformed";
	case K_ADDR:
		return k->min == 0 ? "not host:port, :port or off"
		                   : "not host:port";
	case K_LOGLEVEL:
		return "not error, warn, notice, info or debug";
	case K_MIDS:
		return "not a comma-separated list of integers";
	}
	return "invalid";
}

static int
conf_handler(void *arg, const char *section, const char *name,
             const char *value)
{
	struct load_state *st = arg;

	for (size_t i = 0; i < NKEYS; i++) {
		const struct conf_key *k = &conf_keys[i];

		if (strcmp(k->section, section) != 0 ||
		    strcmp(k->name, name) != 0)
			continue;
		if (st->seen[i]) {
			load_error(st, "[%s] %s set twice", section, name);
			return 0;
		}
		st->seen[i] = st->line;
		if (set_value(k, (char *)st->c + k->off, value) == -1) {
			load_error(st, "[%s] %s = \"%s\": %s", section, name,
			           value, expect(k));
			return 0;
		}
		return 1;
	}
	if (section[0] == '\0')
		load_error(st, "%s: setting outside any section", name);
	else
		load_error(st, "[%s] %s: unknown setting", section, name);
	return 0;
}

/* The line a key was set on, for cross-key errors; 0 when defaulted. */
static int
key_line(const struct load_state *st, const char *section, const char *name)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(conf_keys[i].section, section) == 0 &&
		    strcmp(conf_keys[i].name, name) == 0)
			return st->seen[i];
	return 0;
}

static void check_error(struct load_state *st, const char *section,
                        const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void
check_error(struct load_state *st, const char *section, const char *name,
            const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	st->line = key_line(st, section, name);
	load_error(st, "[%s] %s: %s", section, name, msg);
}

/* Checks that involve more than one value or the file system. */
static void
conf_check(struct load_state *st)
{
	struct comet_conf *c = st->c;
	char msg[256];
	const char *n;

	if (c->server_id[0] == '\0')
		check_error(st, "server", "id", "must not be empty");
	for (n = c->server_id; *n != '\0'; n++)
		if (!isalnum((unsigned char)*n) && strchr("-_.:", *n) == NULL) {
			check_error(st, "server", "id",
			            "only letters, digits and -_.: (it names "
			            "Redis channels)");
			break;
		}
	if (c->workers > 0 && (uint32_t)c->workers > c->shm.max_workers)
		check_error(st, "server", "workers",
		            "%d exceeds [shm] max_workers = %u", c->workers,
		            c->shm.max_workers);
	/* Workers stamp their heartbeat once a second: leave them a second
	 * of slack before the watchdog calls them hung. */
	if (c->worker_timeout_ms != 0 &&
	    c->worker_timeout_ms < COMET_WORKER_TIMEOUT_MIN_MS)
		check_error(st, "server", "worker_timeout",
		            "must be 0 (off) or at least %d ms",
		            COMET_WORKER_TIMEOUT_MIN_MS);
	if (c->pid_file[0] != '/')
		check_error(st, "server", "pid_file",
		            "must be an absolute path");
	if (c->log_target[0] == '\0')
		check_error(st, "server", "log",
		            "must be stderr, syslog or a file path");
	if (c->ws_path[0] != '/')
		check_error(st, "listen", "ws_path", "must start with '/'");
	if (c->listen[LISTENER_TCP].port == 0 &&
	    c->listen[LISTENER_WS].port == 0 &&
	    c->listen[LISTENER_WSS].port == 0)
		check_error(st, "listen", "tcp",
		            "every client listener (tcp, ws, wss) is off");
	if (c->listen[LISTENER_WSS].port != 0) {
		if (c->tls_cert[0] == '\0')
			check_error(st, "listen", "tls_cert",
			            "wss is on but no certificate is set");
		else if (access(c->tls_cert, R_OK) == -1)
			check_error(st, "listen", "tls_cert", "%s: %s",
			            c->tls_cert, strerror(errno));
		if (c->tls_key[0] == '\0')
			check_error(st, "listen", "tls_key",
			            "wss is on but no key is set");
		else if (access(c->tls_key, R_OK) == -1)
			check_error(st, "listen", "tls_key", "%s: %s",
			            c->tls_key, strerror(errno));
	}
	for (int i = 0; i < LISTENER__COUNT; i++) {
		static const char *const names[] = {"tcp", "ws", "wss"};

		for (int j = i + 1; j < LISTENER__COUNT; j++)
			if (c->listen[i].port != 0 &&
			    c->listen[i].port == c->listen[j].port &&
			    strcmp(c->listen[i].host, c->listen[j].host) == 0)
				check_error(st, "listen", names[j],
				            "same address as %s", names[i]);
		if (c->admin.port != 0 && c->admin.port == c->listen[i].port &&
		    strcmp(c->admin.host, c->listen[i].host) == 0)
			check_error(st, "listen", "admin", "same address as %s",
			            names[i]);
	}
	if (c->max_ws_message < c->max_body + 16)
		check_error(st, "protocol", "max_ws_message",
		            "must hold a frame of max_body + 16 bytes");
	if (c->shm_name[0] != '/' || c->shm_name[1] == '\0' ||
	    strchr(c->shm_name + 1, '/') != NULL)
		check_error(st, "shm", "name",
		            "must be '/' followed by a name without '/'");
	if (shm_geometry_check(&c->shm, msg, sizeof(msg)) == -1)
		check_error(st, "shm", "buckets", "%s", msg);
	if (c->channel_prefix[0] == '\0')
		check_error(st, "redis", "channel_prefix", "must not be empty");
	if (c->heartbeat_timeout_ms < c->renew_interval_ms)
		check_error(st, "logic", "renew_interval",
		            "longer than [protocol] heartbeat_timeout");
}

int
comet_conf_load(const char *path, struct comet_conf *c, char *err,
                size_t errlen)
{
	struct load_state st;
	int rc;

	memset(&st, 0, sizeof(st));
	st.c = c;
	st.path = path;
	st.err = err;
	st.errlen = errlen;
	if (strlen(path) >= sizeof(c->path)) {
		snprintf(err, errlen, "%s: path too long", path);
		return -1;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	st.fp = fopen(path, "re");
	if (st.fp == NULL) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	rc = ini_parse_stream(conf_reader, &st, conf_handler, &st);
	if (!st.failed && ferror(st.fp)) {
		snprintf(err, errlen, "%s: read error", path);
		st.failed = 1;
	}
	fclose(st.fp);
	if (!st.failed && rc != 0) {
		/* A syntax error inih found itself (no '=' or ']'). */
		st.line = rc;
		load_error(&st, "syntax error (expected key = value)");
	}
	if (!st.failed)
		conf_check(&st);
	return st.failed ? -1 : 0;
}
