#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ini.h>

#include "common/conf.h"
#include "logic/logic.h"

void
logic_conf_defaults(struct logic_conf *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->pid_file, sizeof(c->pid_file), "%s",
	         RUNSTATEDIR "/imgate/imgate-logic.pid");
	snprintf(c->log_target, sizeof(c->log_target), "stderr");
	c->log_level = LOG_LVL_INFO;

	snprintf(c->rpc_host, sizeof(c->rpc_host), "127.0.0.1");
	c->rpc_port = 3119;
	c->rpc_max_message = 1024 * 1024;

	snprintf(c->http_host, sizeof(c->http_host), "127.0.0.1");
	c->http_port = 3111;
	c->http_max_body = 64 * 1024;
	c->http_timeout_ms = 10000;
	c->max_targets = 10000;

	snprintf(c->redis_host, sizeof(c->redis_host), "127.0.0.1");
	c->redis_port = 6379;
	snprintf(c->prefix, sizeof(c->prefix), "imgate");
	c->redis_timeout_ms = 2000;
	c->redis_backoff_min_ms = 100;
	c->redis_backoff_max_ms = 5000;

	c->heartbeat_timeout_ms = 90 * 1000;
	c->session_ttl_ms = 1800 * 1000;
	c->online_ttl_ms = 60 * 1000;
	c->online_cache_ms = 1000;

	c->jwt_leeway_ms = 30 * 1000;

	snprintf(c->node_domain, sizeof(c->node_domain), "127.0.0.1");
	c->node_tcp_port = 3101;
	c->node_ws_port = 3102;
	c->node_wss_port = 3103;
	c->node_heartbeat_ms = 30 * 1000;
	c->node_heartbeat_max = 3;
	c->backoff_max_delay = 300;
	c->backoff_base_delay = 3;
	c->backoff_factor = 1.8;
	c->backoff_jitter = 0.3;

	c->demo_max_file = 1024 * 1024;

	c->webhook_timeout_ms = 5000;
	c->webhook_max_inflight = 1024;
}

/* More than the settings handle() knows. */
#define SEEN_MAX 96

struct load_state {
	struct logic_conf *c;
	char msg[256];
	char first[300]; /* inih goes on after an error; report the first */
	/* "section\nname" of every setting read so far */
	char *seen[SEEN_MAX];
	size_t nseen;
};

/*
 * 0 the first time section/name is read, -1 after (a key set twice is
 * refused: whichever value was meant, the other silently loses).
 */
static int
first_time(struct load_state *st, const char *section, const char *name)
{
	size_t sl = strlen(section), nl = strlen(name);
	char *k;

	for (size_t i = 0; i < st->nseen; i++) {
		k = st->seen[i];
		if (strncmp(k, section, sl) == 0 && k[sl] == '\n' &&
		    strcmp(k + sl + 1, name) == 0) {
			snprintf(st->msg, sizeof(st->msg), "set twice");
			return -1;
		}
	}
	if (st->nseen >= SEEN_MAX) {
		snprintf(st->msg, sizeof(st->msg), "too many settings");
		return -1;
	}
	k = malloc(sl + nl + 2);
	if (k == NULL) {
		snprintf(st->msg, sizeof(st->msg), "out of memory");
		return -1;
	}
	memcpy(k, section, sl);
	k[sl] = '\n';
	memcpy(k + sl + 1, name, nl + 1);
	st->seen[st->nseen++] = k;
	return 0;
}

static int
set_str(char *dst, size_t dstlen, const char *v, struct load_state *st)
{
	if (strlen(v) >= dstlen) {
		snprintf(st->msg, sizeof(st->msg),
		         "value longer than %zu bytes", dstlen - 1);
		return -1;
	}
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

static int
set_addr(char *host, int *port, const char *v, struct load_state *st)
{
	if (conf_parse_addr(v, host, LOGIC_HOST_MAX, port) == -1) {
		snprintf(st->msg, sizeof(st->msg),
		         "not an address host:port: \"%s\"", v);
		return -1;
	}
	return 0;
}

static int
set_ms(long *out, const char *v, long min, struct load_state *st)
{
	if (conf_parse_duration_ms(v, out) == -1 || *out < min) {
		snprintf(st->msg, sizeof(st->msg),
		         "not a duration of at least %ldms: \"%s\"", min, v);
		return -1;
	}
	return 0;
}

static int
set_long(long *out, const char *v, long min, long max, struct load_state *st)
{
	if (conf_parse_long(v, min, max, out) == -1) {
		snprintf(st->msg, sizeof(st->msg),
		         "not an integer in [%ld, %ld]: \"%s\"", min, max, v);
		return -1;
	}
	return 0;
}

static int
set_int(int *out, const char *v, long min, long max, struct load_state *st)
{
	long n;

	if (set_long(&n, v, min, max, st) == -1)
		return -1;
	*out = (int)n;
	return 0;
}

static int
set_size(size_t *out, const char *v, size_t min, size_t max,
         struct load_state *st)
{
	if (conf_parse_size(v, out) == -1 || *out < min || *out > max) {
		snprintf(st->msg, sizeof(st->msg),
		         "not a size in [%zu, %zu]: \"%s\"", min, max, v);
		return -1;
	}
	return 0;
}

static int
set_double(double *out, const char *v, double min, double max,
           struct load_state *st)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !(d >= min && d <= max)) {
		snprintf(st->msg, sizeof(st->msg),
		         "not a number in [%g, %g]: \"%s\"", min, max, v);
		return -1;
	}
	*out = d;
	return 0;
}

/*
 * cors_origin goes into a response header as is: "", "*" or a scheme and
 * host made of printable characters without spaces.
 */
static int
origin_ok(const char *v)
{
	if (*v == '\0' || strcmp(v, "*") == 0)
		return 1;
	if (strncmp(v, "http://", 7) != 0 && strncmp(v, "https://", 8) != 0)
		return 0;
	for (const unsigned char *p = (const unsigned char *)v; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f)
			return 0;
	return 1;
}

#define IS(s, n) (strcmp(section, s) == 0 && strcmp(name, n) == 0)

/* inih handler: 1 to go on, 0 to stop with st->msg. */
static int
handle(void *user, const char *section, const char *name, const char *v)
{
	struct load_state *st = user;
	struct logic_conf *c = st->c;
	int r;

	if (st->first[0] != '\0')
		return 0;
	if (IS("server", "pid_file"))
		r = set_str(c->pid_file, sizeof(c->pid_file), v, st);
	else if (IS("server", "log"))
		r = set_str(c->log_target, sizeof(c->log_target), v, st);
	else if (IS("server", "log_level")) {
		r = log_level_parse(v, &c->log_level);
		if (r == -1)
			snprintf(st->msg, sizeof(st->msg),
			         "unknown log level \"%s\"", v);
	} else if (IS("rpc", "listen"))
		r = set_addr(c->rpc_host, &c->rpc_port, v, st);
	else if (IS("rpc", "max_message"))
		r = set_size(&c->rpc_max_message, v, 4096, 64u << 20, st);
	else if (IS("http", "listen"))
		r = set_addr(c->http_host, &c->http_port, v, st);
	else if (IS("http", "max_body"))
		r = set_size(&c->http_max_body, v, 1, 4u << 20, st);
	else if (IS("http", "timeout"))
		r = set_ms(&c->http_timeout_ms, v, 100, st);
	else if (IS("http", "max_targets"))
		r = set_long(&c->max_targets, v, 1, 100000, st);
	else if (IS("http", "push_token"))
		r = set_str(c->push_token, sizeof(c->push_token), v, st);
	else if (IS("http", "cors_origin")) {
		r = set_str(c->cors_origin, sizeof(c->cors_origin), v, st);
		if (r == 0 && !origin_ok(v)) {
			snprintf(st->msg, sizeof(st->msg),
			         "not empty, \"*\" or an http(s):// origin");
			r = -1;
		}
	} else if (IS("redis", "address"))
		r = set_addr(c->redis_host, &c->redis_port, v, st);
	else if (IS("redis", "password"))
		r = set_str(c->redis_password, sizeof(c->redis_password), v,
		            st);
	else if (IS("redis", "db"))
		r = set_int(&c->redis_db, v, 0, 65535, st);
	else if (IS("redis", "prefix")) {
		r = set_str(c->prefix, sizeof(c->prefix), v, st);
		if (r == 0 && (*v == '\0' || strpbrk(v, " \t\r\n") != NULL)) {
			snprintf(st->msg, sizeof(st->msg),
			         "prefix must be non-empty without spaces");
			r = -1;
		}
	} else if (IS("redis", "timeout"))
		r = set_ms(&c->redis_timeout_ms, v, 10, st);
	else if (IS("redis", "backoff_min"))
		r = set_ms(&c->redis_backoff_min_ms, v, 1, st);
	else if (IS("redis", "backoff_max"))
		r = set_ms(&c->redis_backoff_max_ms, v, 1, st);
	else if (IS("session", "heartbeat_timeout"))
		r = set_ms(&c->heartbeat_timeout_ms, v, 1000, st);
	else if (IS("session", "session_ttl"))
		r = set_ms(&c->session_ttl_ms, v, 1000, st);
	else if (IS("session", "online_ttl"))
		r = set_ms(&c->online_ttl_ms, v, 1000, st);
	else if (IS("session", "online_cache"))
		r = set_ms(&c->online_cache_ms, v, 0, st);
	else if (IS("auth", "jwt_secret"))
		r = set_str(c->jwt_secret, sizeof(c->jwt_secret), v, st);
	else if (IS("auth", "jwt_secret_file"))
		r = set_str(c->jwt_secret_file, sizeof(c->jwt_secret_file), v,
		            st);
	else if (IS("auth", "jwt_leeway"))
		r = set_ms(&c->jwt_leeway_ms, v, 0, st);
	else if (IS("node", "domain"))
		r = set_str(c->node_domain, sizeof(c->node_domain), v, st);
	else if (IS("node", "tcp_port"))
		r = set_int(&c->node_tcp_port, v, 0, 65535, st);
	else if (IS("node", "ws_port"))
		r = set_int(&c->node_ws_port, v, 0, 65535, st);
	else if (IS("node", "wss_port"))
		r = set_int(&c->node_wss_port, v, 0, 65535, st);
	else if (IS("node", "heartbeat"))
		r = set_ms(&c->node_heartbeat_ms, v, 1000, st);
	else if (IS("node", "heartbeat_max"))
		r = set_int(&c->node_heartbeat_max, v, 1, 100, st);
	else if (IS("node", "backoff_max_delay"))
		r = set_long(&c->backoff_max_delay, v, 0, 86400, st);
	else if (IS("node", "backoff_base_delay"))
		r = set_long(&c->backoff_base_delay, v, 0, 86400, st);
	else if (IS("node", "backoff_factor"))
		r = set_double(&c->backoff_factor, v, 1.0, 100.0, st);
	else if (IS("node", "backoff_jitter"))
		r = set_double(&c->backoff_jitter, v, 0.0, 1.0, st);
	else if (IS("demo", "dir"))
		r = set_str(c->demo_dir, sizeof(c->demo_dir), v, st);
	else if (IS("demo", "ws_url")) {
		r = set_str(c->demo_ws_url, sizeof(c->demo_ws_url), v, st);
		if (r == 0 && *v != '\0' && strncmp(v, "ws://", 5) != 0 &&
		    strncmp(v, "wss://", 6) != 0) {
			snprintf(st->msg, sizeof(st->msg),
			         "ws_url must be a ws:// or wss:// URL");
			r = -1;
		}
	} else if (IS("demo", "max_file"))
		r = set_size(&c->demo_max_file, v, 1, 64u << 20, st);
	else if (IS("webhook", "receive_url")) {
		r = set_str(c->receive_url, sizeof(c->receive_url), v, st);
		if (r == 0 && *v != '\0' && strncmp(v, "http://", 7) != 0) {
			snprintf(st->msg, sizeof(st->msg),
			         "receive_url must be an http:// URL");
			r = -1;
		}
	} else if (IS("webhook", "timeout"))
		r = set_ms(&c->webhook_timeout_ms, v, 100, st);
	else if (IS("webhook", "max_inflight"))
		r = set_long(&c->webhook_max_inflight, v, 1, 1000000, st);
	else {
		snprintf(st->msg, sizeof(st->msg), "unknown setting [%s] %s",
		         section, name);
		r = -1;
	}
	/* Known settings only, so seen[] is bounded by their number. */
	if (r == 0)
		r = first_time(st, section, name);
	/* Name the setting: inih only gives us the line number. */
	if (r == -1 && st->first[0] == '\0') {
		if (strncmp(st->msg, "unknown setting", 15) == 0)
			snprintf(st->first, sizeof(st->first), "%s", st->msg);
		else
			snprintf(st->first, sizeof(st->first), "[%s] %s: %s",
			         section, name, st->msg);
	}
	return r == 0;
}

static int
read_secret_file(struct logic_conf *c, char *err, size_t errlen)
{
	ssize_t n;
	int fd;

	fd = open(c->jwt_secret_file, O_RDONLY | O_CLOEXEC);
	if (fd == -1) {
		snprintf(err, errlen, "%s: jwt_secret_file %s: %s", c->path,
		         c->jwt_secret_file, strerror(errno));
		return -1;
	}
	n = read(fd, c->jwt_secret, sizeof(c->jwt_secret));
	close(fd);
	if (n < 0 || (size_t)n >= sizeof(c->jwt_secret)) {
		snprintf(err, errlen, "%s: jwt_secret_file %s: %s", c->path,
		         c->jwt_secret_file,
		         n < 0 ? strerror(errno) : "larger than 1023 bytes");
		return -1;
	}
	/* A trailing newline from an editor is not part of the secret. */
	while (n > 0 &&
	       (c->jwt_secret[n - 1] == '\n' || c->jwt_secret[n - 1] == '\r'))
		n--;
	c->jwt_secret[n] = '\0';
	c->jwt_secret_len = (size_t)n;
	if (n == 0) {
		snprintf(err, errlen, "%s: jwt_secret_file %s is empty",
		         c->path, c->jwt_secret_file);
		return -1;
	}
	return 0;
}

static int
check(struct logic_conf *c, char *err, size_t errlen)
{
	if (c->jwt_secret[0] != '\0' && c->jwt_secret_file[0] != '\0') {
		snprintf(err, errlen,
		         "%s: [auth] jwt_secret and jwt_secret_file are "
		         "exclusive",
		         c->path);
		return -1;
	}
	if (c->jwt_secret_file[0] != '\0') {
		if (read_secret_file(c, err, errlen) == -1)
			return -1;
	} else {
		c->jwt_secret_len = strlen(c->jwt_secret);
	}
	/* A session must survive a comet's renewal period several times. */
	if (c->session_ttl_ms < 2 * c->heartbeat_timeout_ms) {
		snprintf(err, errlen,
		         "%s: [session] session_ttl must be at least twice "
		         "heartbeat_timeout",
		         c->path);
		return -1;
	}
	if (c->redis_backoff_min_ms > c->redis_backoff_max_ms) {
		snprintf(err, errlen,
		         "%s: [redis] backoff_min is above backoff_max",
		         c->path);
		return -1;
	}
	return 0;
}

int
logic_conf_load(const char *path, struct logic_conf *c, char *err,
                size_t errlen)
{
	struct load_state st = {.c = c};
	int line;

	logic_conf_defaults(c);
	if (strlen(path) >= sizeof(c->path)) {
		snprintf(err, errlen, "config path too long");
		return -1;
	}
	snprintf(c->path, sizeof(c->path), "%s", path);
	line = ini_parse(path, handle, &st);
	for (size_t i = 0; i < st.nseen; i++)
		free(st.seen[i]);
	if (line == -1) {
		snprintf(err, errlen, "%s: cannot open: %s", path,
		         strerror(errno));
		return -1;
	}
	if (line == -2) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	if (line > 0) {
		snprintf(err, errlen, "%s:%d: %s", path, line,
		         st.first[0] != '\0' ? st.first : "syntax error");
		return -1;
	}
	return check(c, err, errlen);
}
