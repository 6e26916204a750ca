/*
 * imgate-shm: print a running comet's shared-memory state.
 *
 * It maps the segment read-only and reads it the way any lock-free reader
 * does (sequence counters, bounded retries), so it can neither block nor
 * change the gateway. Listings are streamed, never collected: a node with
 * a million channels costs this tool one bucket's worth of memory. Text
 * columns are sized in a first pass and printed in a second; a record that
 * changed between the passes can only make a column overflow.
 *
 * Exit status: 0, 1 when there is nothing (valid) to show or the master is
 * gone (the snapshot is still printed, after a warning), 2 on bad usage.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ini.h>
#include <jansson.h>

#include "shm/shm.h"

#define DEFAULT_CONF SYSCONFDIR "/imgate/imgate-comet.conf"
#define DEFAULT_NAME "/imgate-comet"

enum view { V_SUMMARY, V_WORKERS, V_CHANNELS, V_ROOMS, V_KEY, V_ROOM };

struct opts {
	const char *conf;
	const char *name;
	enum view view;
	const char *arg; /* KEY or ROOM */
	int json;
};

static const char *progname = "imgate-shm";

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: %s [-c FILE | -n NAME] [summary | workers | channels | "
	        "rooms |\n"
	        "                  key KEY | room ROOM] [--json]\n"
	        "  -c FILE   read the shm name from this imgate-comet config\n"
	        "            (default %s)\n"
	        "  -n NAME   attach to this POSIX shm name (default %s)\n"
	        "  -j, --json  print JSON instead of text\n"
	        "  -h        this help; -v  version\n",
	        progname, DEFAULT_CONF, DEFAULT_NAME);
}

/* --- finding the segment name --- */

struct conf_ctx {
	char name[256];
	int found;
};

static int
conf_handler(void *user, const char *section, const char *key,
             const char *value)
{
	struct conf_ctx *c = user;

	if (strcmp(section, "shm") == 0 && strcmp(key, "name") == 0 &&
	    strlen(value) < sizeof(c->name)) {
		snprintf(c->name, sizeof(c->name), "%s", value);
		c->found = 1;
	}
	return 1; /* the comet validates its config; we only need the name */
}

/*
 * The name from path's [shm] name, or the default. An explicit -c file
 * must be readable; the default one may be absent.
 */
static int
resolve_name(const char *path, int explicit, char *out, size_t outlen)
{
	struct conf_ctx c = {.found = 0};
	int r;

	errno = 0;
	r = ini_parse(path, conf_handler, &c);
	if (r == -1 && explicit) {
		fprintf(stderr, "%s: cannot read %s: %s\n", progname, path,
		        errno != 0 ? strerror(errno) : "open failed");
		return -1;
	}
	if (r > 0)
		fprintf(stderr,
		        "%s: warning: %s:%d: syntax error (using what could be "
		        "read)\n",
		        progname, path, r);
	snprintf(out, outlen, "%s", c.found ? c.name : DEFAULT_NAME);
	return 0;
}

/* --- formatting helpers --- */

static const char *
state_name(uint32_t s)
{
	static const char *const names[] = {"free", "starting", "running",
	                                    "draining", "dead"};

	return s < sizeof(names) / sizeof(names[0]) ? names[s] : "unknown";
}

static int
pid_alive(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* ISO 8601 UTC, second precision; "-" for 0. */
static const char *
fmt_time(uint64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms == 0 || gmtime_r(&t, &tm) == NULL)
		snprintf(buf, len, "-");
	else
		strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

static void
fmt_accepts(const struct shm_channel *c, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (int i = 0; i < c->naccepts && i < SHM_ACCEPTS_MAX; i++) {
		int n = snprintf(buf + off, len - off, "%s%" PRId32,
		                 i ? "," : "", c->accepts[i]);

		if (n < 0 || (size_t)n >= len - off)
			break;
		off += (size_t)n;
	}
	if (off == 0)
		snprintf(buf, len, "-");
}

/*
 * Keys and rooms come from clients: never send their control bytes to a
 * terminal. One byte out per byte in, so a buffer of the field's size does.
 */
static const char *
tsafe(const char *s, char *buf, size_t len)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < len; i++)
		buf[i] =
		    (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
	buf[i] = '\0';
	return buf;
}

/*
 * jansson takes UTF-8 only, and a key is whatever bytes the client chose:
 * show a byte that is not valid UTF-8 as the text \xHH instead.
 */
static json_t *
jstr(const char *s)
{
	char buf[SHM_ROOM_MAX * 4 + SHM_KEY_MAX * 4 + 1];
	json_t *j = json_string(s);
	size_t o = 0;

	if (j != NULL)
		return j;
	for (; *s != '\0' && o + 5 < sizeof(buf); s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x80)
			buf[o++] = (char)c;
		else
			o += (size_t)snprintf(buf + o, sizeof(buf) - o,
			                      "\\x%02x", c);
	}
	buf[o] = '\0';
	return json_string(buf);
}

static int
width(int cur, const char *s)
{
	int n = (int)strlen(s);

	return n > cur ? n : cur;
}

static json_t *
json_time(uint64_t ms)
{
	char buf[32];

	return ms == 0 ? json_null()
	               : json_string(fmt_time(ms, buf, sizeof(buf)));
}

/* Prints a finished JSON value and frees it. */
static void
json_print(json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(v);
}

/* --- the segment header --- */

static json_t *
header_json(const struct shm_seg *seg)
{
	const struct shm_geometry *g = shm_seg_geometry(seg);

	return json_pack(
	    "{s:s, s:i, s:I, s:{s:i, s:i, s:i, s:i}, s:{s:i, s:b}, s:I, s:o}",
	    "name", shm_seg_name(seg), "version", SHM_VERSION, "bytes",
	    (json_int_t)shm_seg_bytes(seg), "geometry", "buckets",
	    (int)g->buckets, "channels_per_bucket", (int)g->channels_per_bucket,
	    "rooms_per_bucket", (int)g->rooms_per_bucket, "max_workers",
	    (int)g->max_workers, "master", "pid", (int)shm_seg_master_pid(seg),
	    "alive", shm_seg_master_alive(seg), "created_ms",
	    (json_int_t)shm_seg_created_ms(seg), "created",
	    json_time(shm_seg_created_ms(seg)));
}

static void
header_text(const struct shm_seg *seg)
{
	const struct shm_geometry *g = shm_seg_geometry(seg);
	char buf[32];

	printf("segment   %s (%zu bytes, layout version %d)\n",
	       shm_seg_name(seg), shm_seg_bytes(seg), SHM_VERSION);
	printf("geometry  %u buckets x (%u channels + %u rooms), %u workers "
	       "max\n",
	       g->buckets, g->channels_per_bucket, g->rooms_per_bucket,
	       g->max_workers);
	printf("master    pid %ld (%s)\n", (long)shm_seg_master_pid(seg),
	       shm_seg_master_alive(seg) ? "running" : "not running");
	printf("created   %s\n",
	       fmt_time(shm_seg_created_ms(seg), buf, sizeof(buf)));
}

static void
skipped_warning(size_t skipped)
{
	if (skipped > 0)
		fprintf(stderr,
		        "%s: warning: %zu bucket(s) were being written for too "
		        "long and are not shown\n",
		        progname, skipped);
}

/* --- summary --- */

static int
view_summary(const struct shm_seg *seg, int json)
{
	const struct shm_geometry *g = shm_seg_geometry(seg);
	uint32_t states[SHM_WORKER_DEAD + 2] = {0};
	uint64_t nch, nrooms, sums[SHM_C__COUNT];

	shm_seg_usage(seg, &nch, &nrooms);
	for (uint32_t i = 0; i < g->max_workers; i++) {
		struct shm_worker w;

		shm_worker_snapshot(seg, i, &w);
		states[w.state <= SHM_WORKER_DEAD ? w.state
		                                  : SHM_WORKER_DEAD + 1]++;
	}
	for (int c = 0; c < SHM_C__COUNT; c++)
		sums[c] = shm_counter_sum(seg, (enum shm_counter)c);

	if (json) {
		json_t *root = json_object(), *ws = json_object(),
		       *cs = json_object();

		json_object_set_new(root, "segment", header_json(seg));
		json_object_set_new(
		    root, "channels",
		    json_pack("{s:I, s:I}", "used", (json_int_t)nch, "slots",
		              (json_int_t)g->buckets *
		                  (json_int_t)g->channels_per_bucket));
		json_object_set_new(
		    root, "rooms",
		    json_pack("{s:I, s:I}", "used", (json_int_t)nrooms, "slots",
		              (json_int_t)g->buckets *
		                  (json_int_t)g->rooms_per_bucket));
		for (uint32_t s = SHM_WORKER_STARTING; s <= SHM_WORKER_DEAD;
		     s++)
			json_object_set_new(ws, state_name(s),
			                    json_integer(states[s]));
		json_object_set_new(root, "workers", ws);
		for (int c = 0; c < SHM_C__COUNT; c++)
			json_object_set_new(
			    cs, shm_counter_name((enum shm_counter)c),
			    json_integer((json_int_t)sums[c]));
		json_object_set_new(root, "counters", cs);
		json_print(root);
		putchar('\n');
		return 0;
	}
	header_text(seg);
	printf("channels  %" PRIu64 " of %" PRIu64 " slots\n", nch,
	       (uint64_t)g->buckets * g->channels_per_bucket);
	printf("rooms     %" PRIu64 " of %" PRIu64 " slots\n", nrooms,
	       (uint64_t)g->buckets * g->rooms_per_bucket);
	printf("workers   %u running, %u starting, %u draining, %u dead\n",
	       states[SHM_WORKER_RUNNING], states[SHM_WORKER_STARTING],
	       states[SHM_WORKER_DRAINING], states[SHM_WORKER_DEAD]);
	printf("counters (all workers)\n");
	for (int c = 0; c < SHM_C__COUNT; c++)
		printf("  %-20s %" PRIu64 "\n",
		       shm_counter_name((enum shm_counter)c), sums[c]);
	return 0;
}

/* --- workers --- */

/*
 * How long ago the worker's loop last stamped its liveness (what the
 * master's watchdog reads), in ms; -1 when it is not running or never did.
 */
static int64_t
loop_age_ms(const struct shm_worker *w)
{
	struct timespec ts;
	uint64_t now;

	if (w->alive_ms == 0 ||
	    (w->state != SHM_WORKER_RUNNING && w->state != SHM_WORKER_DRAINING))
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	return now > w->alive_ms ? (int64_t)(now - w->alive_ms) : 0;
}

static uint64_t
drops(const struct shm_worker *w)
{
	return w->counters[SHM_C_DROP_NO_KEY] +
	       w->counters[SHM_C_DROP_NOT_WATCH] +
	       w->counters[SHM_C_DROP_SLOW] +
	       w->counters[SHM_C_DROP_BAD_ENVELOPE] +
	       w->counters[SHM_C_DROP_GAP];
}

static int
view_workers(const struct shm_seg *seg, int json)
{
	const struct shm_geometry *g = shm_seg_geometry(seg);
	json_t *arr = json ? json_array() : NULL;
	char buf[32];

	if (!json)
		printf("%4s %8s %-5s %-8s %7s %4s %-20s %8s %10s %12s %12s "
		       "%10s %8s\n",
		       "ID", "PID", "ALIVE", "STATE", "LOOP", "GEN", "STARTED",
		       "CONNS", "ACCEPTED", "BYTES_IN", "BYTES_OUT",
		       "DELIVERED", "DROPS");
	for (uint32_t i = 0; i < g->max_workers; i++) {
		struct shm_worker w;
		char age[16];
		int64_t age_ms;
		int alive;

		shm_worker_snapshot(seg, i, &w);
		/* A never-used slot has nothing to say. */
		if (w.state == SHM_WORKER_FREE && w.pid == 0 &&
		    w.generation == 0)
			continue;
		alive = pid_alive(w.pid);
		age_ms = loop_age_ms(&w);
		if (json) {
			json_t *cs = json_object();

			for (int c = 0; c < SHM_C__COUNT; c++)
				json_object_set_new(
				    cs, shm_counter_name((enum shm_counter)c),
				    json_integer((json_int_t)w.counters[c]));
			json_array_append_new(
			    arr,
			    json_pack(
			        "{s:i, s:i, s:b, s:s, s:o, s:i, s:I, "
			        "s:o, s:o}",
			        "id", (int)i, "pid", (int)w.pid, "alive", alive,
			        "state", state_name(w.state), "loop_age_ms",
			        age_ms < 0 ? json_null()
			                   : json_integer((json_int_t)age_ms),
			        "generation", (int)w.generation, "started_ms",
			        (json_int_t)w.started_ms, "started",
			        json_time(w.started_ms), "counters", cs));
			continue;
		}
		if (age_ms < 0)
			snprintf(age, sizeof(age), "-");
		else
			snprintf(age, sizeof(age), "%.1fs",
			         (double)age_ms / 1000);
		printf(
		    "%4u %8ld %-5s %-8s %7s %4u %-20s %8" PRIu64 " %10" PRIu64
		    " %12" PRIu64 " %12" PRIu64 " %10" PRIu64 " %8" PRIu64 "\n",
		    i, (long)w.pid, alive ? "yes" : "no", state_name(w.state),
		    age, w.generation, fmt_time(w.started_ms, buf, sizeof(buf)),
		    w.counters[SHM_C_CONN_CURRENT],
		    w.counters[SHM_C_CONN_ACCEPTED], w.counters[SHM_C_BYTES_IN],
		    w.counters[SHM_C_BYTES_OUT], w.counters[SHM_C_DELIVERED],
		    drops(&w));
	}
	if (json) {
		json_t *root = json_object();

		json_object_set_new(root, "segment", header_json(seg));
		json_object_set_new(root, "workers", arr);
		json_print(root);
		putchar('\n');
	}
	return 0;
}

/* --- channels --- */

struct chan_walk {
	const char *room; /* only members of this room, or NULL */
	int json;
	int measure; /* first pass: widths only */
	int first;
	size_t count;
	int w_key, w_mid, w_room, w_remote, w_accepts;
};

static json_t *
channel_json(const struct shm_channel *c)
{
	json_t *acc = json_array();
	char buf1[32], buf2[32];

	for (int i = 0; i < c->naccepts && i < SHM_ACCEPTS_MAX; i++)
		json_array_append_new(acc, json_integer(c->accepts[i]));
	return json_pack("{s:o, s:I, s:o, s:i, s:I, s:o, s:I, s:s, s:I, s:s, "
	                 "s:o}",
	                 "key", jstr(c->key), "mid", (json_int_t)c->mid, "room",
	                 jstr(c->room), "worker", (int)c->worker, "conn_id",
	                 (json_int_t)c->conn_id, "remote", jstr(c->remote),
	                 "connected_ms", (json_int_t)c->connected_ms,
	                 "connected", fmt_time(c->connected_ms, buf1, 32),
	                 "heartbeat_ms", (json_int_t)c->heartbeat_ms,
	                 "heartbeat", fmt_time(c->heartbeat_ms, buf2, 32),
	                 "accepts", acc);
}

static int
chan_row(const struct shm_channel *c, void *arg)
{
	struct chan_walk *cw = arg;
	char mid[24], acc[SHM_ACCEPTS_MAX * 12 + 1], t1[32], t2[32];
	char key[SHM_KEY_MAX], room[SHM_ROOM_MAX], remote[SHM_REMOTE_MAX];

	if (cw->room != NULL && strcmp(c->room, cw->room) != 0)
		return 0;
	cw->count++;
	snprintf(mid, sizeof(mid), "%" PRId64, c->mid);
	fmt_accepts(c, acc, sizeof(acc));
	tsafe(c->key, key, sizeof(key));
	tsafe(c->room[0] ? c->room : "-", room, sizeof(room));
	tsafe(c->remote, remote, sizeof(remote));
	if (cw->measure) {
		cw->w_key = width(cw->w_key, key);
		cw->w_mid = width(cw->w_mid, mid);
		cw->w_room = width(cw->w_room, room);
		cw->w_remote = width(cw->w_remote, remote);
		cw->w_accepts = width(cw->w_accepts, acc);
		return 0;
	}
	if (cw->json) {
		json_t *o = channel_json(c);

		fputs(cw->first ? "\n    " : ",\n    ", stdout);
		json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		cw->first = 0;
		return 0;
	}
	printf("%-*s %*s %-*s %6u %10u %-*s %-20s %-20s %s\n", cw->w_key, key,
	       cw->w_mid, mid, cw->w_room, room, c->worker, c->conn_id,
	       cw->w_remote, remote, fmt_time(c->connected_ms, t1, sizeof(t1)),
	       fmt_time(c->heartbeat_ms, t2, sizeof(t2)), acc);
	return 0;
}

/* Stream the channels (all, or one room's) as text rows or a JSON array. */
static size_t
list_channels(const struct shm_seg *seg, const char *room, int json,
              size_t *skipped)
{
	struct chan_walk cw = {.room = room,
	                       .json = json,
	                       .first = 1,
	                       .w_key = 3,
	                       .w_mid = 3,
	                       .w_room = 4,
	                       .w_remote = 6,
	                       .w_accepts = 7};

	if (!json) {
		cw.measure = 1;
		shm_each_channel(seg, chan_row, &cw);
		cw.measure = 0;
		cw.count = 0;
		printf("%-*s %*s %-*s %6s %10s %-*s %-20s %-20s %s\n", cw.w_key,
		       "KEY", cw.w_mid, "MID", cw.w_room, "ROOM", "WORKER",
		       "CONN", cw.w_remote, "REMOTE", "CONNECTED", "HEARTBEAT",
		       "ACCEPTS");
	} else {
		fputs("[", stdout);
	}
	*skipped = shm_each_channel(seg, chan_row, &cw);
	if (json)
		fputs(cw.first ? "]" : "\n  ]", stdout);
	return cw.count;
}

/* Print `{"segment": ..., "<name>": ` so a streamed array can follow. */
static void
json_open(const struct shm_seg *seg, const char *name)
{
	json_t *h = header_json(seg);
	char *s = json_dumps(h, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	char *p;

	json_decref(h);
	/* Indent the header one level to sit inside the outer object. */
	fputs("{\n  \"segment\": ", stdout);
	for (p = s; p != NULL && *p != '\0'; p++) {
		putchar(*p);
		if (*p == '\n')
			fputs("  ", stdout);
	}
	free(s);
	printf(",\n  \"%s\": ", name);
}

static int
view_channels(const struct shm_seg *seg, int json)
{
	size_t n, skipped;

	if (json)
		json_open(seg, "channels");
	n = list_channels(seg, NULL, json, &skipped);
	if (json)
		printf(",\n  \"count\": %zu,\n  \"skipped_buckets\": %zu\n}\n",
		       n, skipped);
	else
		printf("(%zu channels)\n", n);
	skipped_warning(skipped);
	return 0;
}

static int
view_key(const struct shm_seg *seg, const char *key, int json)
{
	struct shm_channel c;
	char buf[32], acc[SHM_ACCEPTS_MAX * 12 + 1], str[SHM_ROOM_MAX];
	int r = shm_channel_get(seg, key, &c);

	if (r == -1) {
		fprintf(stderr,
		        "%s: the bucket of key %s is being written for too "
		        "long; try again\n",
		        progname, key);
		return 1;
	}
	if (r == 1) {
		fprintf(stderr, "%s: no channel with key %s on this node\n",
		        progname, key);
		return 1;
	}
	if (json) {
		json_t *root = json_object();

		json_object_set_new(root, "segment", header_json(seg));
		json_object_set_new(root, "channel", channel_json(&c));
		json_print(root);
		putchar('\n');
		return 0;
	}
	fmt_accepts(&c, acc, sizeof(acc));
	printf("key        %s\n", tsafe(c.key, str, sizeof(str)));
	printf("mid        %" PRId64 "\n", c.mid);
	printf("room       %s\n",
	       tsafe(c.room[0] ? c.room : "-", str, sizeof(str)));
	printf("worker     %u\n", c.worker);
	printf("conn id    %u\n", c.conn_id);
	printf("remote     %s\n", tsafe(c.remote, str, sizeof(str)));
	printf("connected  %s\n", fmt_time(c.connected_ms, buf, sizeof(buf)));
	printf("heartbeat  %s\n", fmt_time(c.heartbeat_ms, buf, sizeof(buf)));
	printf("accepts    %s\n", acc);
	return 0;
}

/* --- rooms --- */

struct room_walk {
	const char *only; /* one room, or NULL */
	int json;
	int measure;
	int first;
	size_t count;
	int w_name;
	json_t *found; /* view_room: the matching room */
	uint32_t found_online;
};

static json_t *
room_json(const struct shm_room *r)
{
	json_t *per = json_object();
	char id[16];

	for (uint32_t w = 0; w < r->nworkers; w++) {
		if (r->workers[w] == 0)
			continue;
		snprintf(id, sizeof(id), "%u", w);
		json_object_set_new(per, id, json_integer(r->workers[w]));
	}
	return json_pack("{s:o, s:I, s:I, s:o}", "name", jstr(r->name),
	                 "online", (json_int_t)r->online, "cluster_online",
	                 (json_int_t)r->cluster_online, "workers", per);
}

static void
fmt_per_worker(const struct shm_room *r, char *buf, size_t len)
{
	size_t off = 0;

	buf[0] = '\0';
	for (uint32_t w = 0; w < r->nworkers; w++) {
		int n;

		if (r->workers[w] == 0)
			continue;
		n = snprintf(buf + off, len - off, "%s%u:%u", off ? " " : "", w,
		             r->workers[w]);
		if (n < 0 || (size_t)n >= len - off) {
			snprintf(buf + (len > 4 ? len - 4 : 0), 4, "...");
			break;
		}
		off += (size_t)n;
	}
}

static int
room_row(const struct shm_room *r, void *arg)
{
	struct room_walk *rw = arg;
	char per[512], name[SHM_ROOM_MAX];

	if (rw->only != NULL) {
		if (strcmp(r->name, rw->only) != 0)
			return 0;
		rw->found = room_json(r);
		rw->found_online = r->online;
		return 1;
	}
	rw->count++;
	tsafe(r->name, name, sizeof(name));
	if (rw->measure) {
		rw->w_name = width(rw->w_name, name);
		return 0;
	}
	if (rw->json) {
		json_t *o = room_json(r);

		fputs(rw->first ? "\n    " : ",\n    ", stdout);
		json_dumpf(o, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
		json_decref(o);
		rw->first = 0;
		return 0;
	}
	fmt_per_worker(r, per, sizeof(per));
	printf("%-*s %8u %8u  %s\n", rw->w_name, name, r->online,
	       r->cluster_online, per);
	return 0;
}

static int
view_rooms(const struct shm_seg *seg, int json)
{
	struct room_walk rw = {.json = json, .first = 1, .w_name = 4};
	size_t skipped;

	if (json) {
		json_open(seg, "rooms");
		fputs("[", stdout);
	} else {
		rw.measure = 1;
		shm_each_room(seg, room_row, &rw);
		rw.measure = 0;
		rw.count = 0;
		printf("%-*s %8s %8s  %s\n", rw.w_name, "ROOM", "ONLINE",
		       "CLUSTER", "PER WORKER (id:members)");
	}
	skipped = shm_each_room(seg, room_row, &rw);
	if (json)
		printf(
		    "%s,\n  \"count\": %zu,\n  \"skipped_buckets\": %zu\n}\n",
		    rw.first ? "]" : "\n  ]", rw.count, skipped);
	else
		printf("(%zu rooms)\n", rw.count);
	skipped_warning(skipped);
	return 0;
}

static int
view_room(const struct shm_seg *seg, const char *room, int json)
{
	struct room_walk rw = {.only = room};
	size_t n, skipped;

	skipped = shm_each_room(seg, room_row, &rw);
	if (rw.found == NULL) {
		fprintf(stderr, "%s: no room %s on this node\n", progname,
		        room);
		skipped_warning(skipped);
		return 1;
	}
	if (json) {
		char *s =
		    json_dumps(rw.found, JSON_COMPACT | JSON_PRESERVE_ORDER);

		json_open(seg, "room");
		printf("%s,\n  \"members\": ", s);
		free(s);
		n = list_channels(seg, room, 1, &skipped);
		printf(",\n  \"count\": %zu\n}\n", n);
	} else {
		json_t *per = json_object_get(rw.found, "workers");
		char name[SHM_ROOM_MAX];
		const char *id;
		json_t *v;

		printf("room       %s\n", tsafe(room, name, sizeof(name)));
		printf("online     %u (this node)\n", rw.found_online);
		printf("cluster    %" JSON_INTEGER_FORMAT "\n",
		       json_integer_value(
		           json_object_get(rw.found, "cluster_online")));
		printf("workers   ");
		json_object_foreach(per, id, v)
		{
			printf(" %s:%" JSON_INTEGER_FORMAT, id,
			       json_integer_value(v));
		}
		printf("\n\n");
		n = list_channels(seg, room, 0, &skipped);
		printf("(%zu channels in the room)\n", n);
	}
	json_decref(rw.found);
	skipped_warning(skipped);
	return 0;
}

/* --- main --- */

static int
parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"name", required_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'v'},
	    {NULL, 0, NULL, 0},
	};
	static const struct {
		const char *word;
		enum view view;
		int takes_arg;
	} views[] = {
	    {"summary", V_SUMMARY, 0},   {"workers", V_WORKERS, 0},
	    {"channels", V_CHANNELS, 0}, {"rooms", V_ROOMS, 0},
	    {"key", V_KEY, 1},           {"room", V_ROOM, 1},
	};
	int ch, rest;

	memset(o, 0, sizeof(*o));
	while ((ch = getopt_long(argc, argv, "c:n:jhv", longopts, NULL)) !=
	       -1) {
		switch (ch) {
		case 'c':
			o->conf = optarg;
			break;
		case 'n':
			o->name = optarg;
			break;
		case 'j':
			o->json = 1;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		case 'v':
			printf("%s %s\n", progname, PACKAGE_VERSION);
			exit(0);
		default:
			usage(stderr);
			return -1;
		}
	}
	if (o->conf != NULL && o->name != NULL) {
		fprintf(stderr, "%s: -c and -n exclude each other\n", progname);
		return -1;
	}
	rest = argc - optind;
	if (rest == 0)
		return 0;
	for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
		if (strcmp(argv[optind], views[i].word) != 0)
			continue;
		if (rest != 1 + views[i].takes_arg) {
			fprintf(stderr, "%s: %s takes %s\n", progname,
			        views[i].word,
			        views[i].takes_arg ? "one argument"
			                           : "no argument");
			return -1;
		}
		o->view = views[i].view;
		o->arg = views[i].takes_arg ? argv[optind + 1] : NULL;
		return 0;
	}
	fprintf(stderr, "%s: unknown view \"%s\"\n", progname, argv[optind]);
	usage(stderr);
	return -1;
}

int
main(int argc, char **argv)
{
	struct shm_seg *seg;
	struct opts o;
	char name[256], err[512];
	int rc, stale;

	if (parse_args(argc, argv, &o) == -1)
		return 2;
	if (o.name != NULL)
		snprintf(name, sizeof(name), "%s", o.name);
	else if (resolve_name(o.conf != NULL ? o.conf : DEFAULT_CONF,
	                      o.conf != NULL, name, sizeof(name)) == -1)
		return 1;
	if (shm_seg_attach(name, 1, &seg, err, sizeof(err)) == -1) {
		fprintf(stderr, "%s: %s\n", progname, err);
		return 1;
	}
	stale = !shm_seg_master_alive(seg);
	if (stale)
		fprintf(
		    stderr,
		    "%s: warning: master pid %ld of %s is not running: this "
		    "is what it left behind\n",
		    progname, (long)shm_seg_master_pid(seg), name);
	switch (o.view) {
	case V_SUMMARY:
		rc = view_summary(seg, o.json);
		break;
	case V_WORKERS:
		rc = view_workers(seg, o.json);
		break;
	case V_CHANNELS:
		rc = view_channels(seg, o.json);
		break;
	case V_ROOMS:
		rc = view_rooms(seg, o.json);
		break;
	case V_KEY:
		rc = view_key(seg, o.arg, o.json);
		break;
	case V_ROOM:
	default:
		rc = view_room(seg, o.arg, o.json);
		break;
	}
	shm_seg_detach(seg);
	if (fflush(stdout) == EOF || ferror(stdout)) {
		fprintf(stderr, "%s: write error: %s\n", progname,
		        strerror(errno));
		return 1;
	}
	return rc != 0 || stale ? 1 : 0;
}
