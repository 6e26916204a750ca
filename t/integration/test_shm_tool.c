/*
 * Integration test for imgate-shm: build a segment with known records
 * through libimgate-shm, run the real imgate-shm binary on it in every
 * view, text and JSON, and check what it prints and how it exits. The
 * binary is ./imgate-shm (make check runs in the build directory) or
 * $IMGATE_SHM.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <check.h>
#include <jansson.h>

#include "shm/shm.h"
#include "shm/shm_test.h"
#include "t/lib/shmtest.h"

#define NCHANNELS 10

static char name[64];
static pid_t runner_pid;
static struct shm_seg *seg;
static const struct shm_geometry geom = {8, 16, 8, 4};

struct run {
	int status; /* exit code, or 128 + signal */
	char *out;
	char *err;
};

static char *
slurp(int fd)
{
	size_t len = 0, cap = 4096;
	char *buf = malloc(cap);
	ssize_t n;

	ck_assert_ptr_nonnull(buf);
	lseek(fd, 0, SEEK_SET);
	while ((n = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 2) {
			cap *= 2;
			buf = realloc(buf, cap);
			ck_assert_ptr_nonnull(buf);
		}
	}
	buf[len] = '\0';
	close(fd);
	return buf;
}

static int
tmpfd(void)
{
	char path[] = "/tmp/imgate-shm-tool-XXXXXX";
	int fd = mkstemp(path);

	ck_assert_int_ne(fd, -1);
	unlink(path);
	return fd;
}

/* Run imgate-shm with a NULL-terminated argument list. */
static struct run
run_tool(const char *arg, ...)
{
	const char *bin = getenv("IMGATE_SHM");
	const char *argv[16];
	struct run r;
	int ofd = tmpfd(), efd = tmpfd(), n = 0, status;
	va_list ap;
	pid_t pid;

	if (bin == NULL)
		bin = "./imgate-shm";
	argv[n++] = bin;
	va_start(ap, arg);
	for (const char *a = arg; a != NULL && n < 15; a = va_arg(ap, char *))
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;

	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		dup2(ofd, STDOUT_FILENO);
		dup2(efd, STDERR_FILENO);
		alarm(10); /* it must never hang */
		execv(bin, (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", bin, strerror(errno));
		_exit(127);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	r.status =
	    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	r.out = slurp(ofd);
	r.err = slurp(efd);
	return r;
}

static void
run_free(struct run *r)
{
	free(r->out);
	free(r->err);
}

static json_t *
parse_json(const char *text)
{
	json_error_t e;
	json_t *j = json_loads(text, 0, &e);

	ck_assert_msg(j != NULL, "bad JSON at line %d: %s\n%s", e.line, e.text,
	              text);
	return j;
}

/* Also let python's json.tool accept it, when python is there. */
static void
python_json_ok(const char *text)
{
	const char *py = "/usr/bin/python3";
	int in[2], status;
	pid_t pid;

	if (access(py, X_OK) != 0)
		return;
	ck_assert_int_eq(pipe(in), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);

		dup2(in[0], STDIN_FILENO);
		dup2(devnull, STDOUT_FILENO);
		close(in[1]);
		execl(py, py, "-m", "json.tool", (char *)NULL);
		_exit(127);
	}
	close(in[0]);
	ck_assert_int_eq(write(in[1], text, strlen(text)),
	                 (ssize_t)strlen(text));
	close(in[1]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "python3 -m json.tool refused:\n%s", text);
}

static void
chan_make(struct shm_channel *c, int i)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->key, sizeof(c->key), "key-%02d", i);
	if (i < 5)
		snprintf(c->room, sizeof(c->room), "live://1000");
	else if (i < 8)
		snprintf(c->room, sizeof(c->room), "live://2000");
	snprintf(c->remote, sizeof(c->remote), "127.0.0.1:%d", 40000 + i);
	c->mid = 100 + i;
	c->connected_ms = 1764100000000ULL + (uint64_t)i * 1000;
	c->heartbeat_ms = c->connected_ms + 30000;
	c->conn_id = (uint32_t)(1000 + i);
	c->worker = (uint16_t)(i % 3);
	c->naccepts = 2;
	c->accepts[0] = 1000;
	c->accepts[1] = 1001 + i;
}

static void
setup(void)
{
	char err[256];
	struct shm_channel c;

	snprintf(name, sizeof(name), "/imgate-itest-%ld-%ld", (long)runner_pid,
	         (long)getpid());
	if (shm_seg_create(name, &geom, &seg, err, sizeof(err)) == -1)
		ck_abort_msg("create: %s", err);
	for (int i = 0; i < NCHANNELS; i++) {
		chan_make(&c, i);
		ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
		if (c.room[0] != '\0')
			ck_assert_int_eq(shm_room_add(seg, c.room, c.worker, 1),
			                 0);
	}
	ck_assert_int_eq(shm_room_set_cluster(seg, "live://1000", 4242), 0);
	for (uint32_t w = 0; w < 3; w++) {
		struct shm_worker *s = shm_worker_slot(seg, w);

		s->pid = getpid();
		s->state = SHM_WORKER_RUNNING;
		s->generation = 1;
		s->started_ms = 1764100000000ULL;
		/* Worker 1's loop last turned 5 s ago; worker 2's never. */
		if (w < 2) {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			s->alive_ms = (uint64_t)ts.tv_sec * 1000 +
			              (uint64_t)ts.tv_nsec / 1000000 - 5000 * w;
		}
		shm_counter_add(s, SHM_C_CONN_ACCEPTED, 10 + w);
		shm_counter_add(s, SHM_C_CONN_CURRENT, 3);
		shm_counter_add(s, SHM_C_DROP_SLOW, 1);
		shm_counter_add(s, SHM_C_DROP_GAP, 2 * (w + 1));
	}
}

static void
teardown(void)
{
	shm_seg_detach(seg);
	shm_seg_unlink(name);
}

static int
count_lines(const char *s)
{
	int n = 0;

	for (; *s != '\0'; s++)
		n += *s == '\n';
	return n;
}

START_TEST(test_summary)
{
	struct run r = run_tool("-n", name, NULL);
	char want[128];
	json_t *j;

	ck_assert_msg(r.status == 0, "status %d: %s", r.status, r.err);
	ck_assert_ptr_nonnull(strstr(r.out, "channels  10 of 128 slots"));
	ck_assert_ptr_nonnull(strstr(r.out, "rooms     2 of 64 slots"));
	ck_assert_ptr_nonnull(strstr(r.out, "workers   3 running"));
	snprintf(want, sizeof(want), "master    pid %ld (running)",
	         (long)getpid());
	ck_assert_ptr_nonnull(strstr(r.out, want));
	ck_assert_ptr_nonnull(strstr(r.out, "conn_accepted        33"));
	/* Pushes lost on the way from Redis, summed over the workers. */
	ck_assert_ptr_nonnull(strstr(r.out, "drop_gap             12\n"));
	ck_assert_str_eq(r.err, "");
	run_free(&r);

	r = run_tool("-n", name, "summary", "--json", NULL);
	ck_assert_int_eq(r.status, 0);
	python_json_ok(r.out);
	j = parse_json(r.out);
	ck_assert_str_eq(json_string_value(json_object_get(
	                     json_object_get(j, "segment"), "name")),
	                 name);
	ck_assert_int_eq(json_integer_value(json_object_get(
	                     json_object_get(j, "channels"), "used")),
	                 NCHANNELS);
	ck_assert_int_eq(json_integer_value(json_object_get(
	                     json_object_get(j, "counters"), "conn_current")),
	                 9);
	ck_assert_int_eq(json_integer_value(json_object_get(
	                     json_object_get(j, "counters"), "drop_gap")),
	                 12);
	ck_assert(json_is_true(json_object_get(
	    json_object_get(json_object_get(j, "segment"), "master"),
	    "alive")));
	json_decref(j);
	run_free(&r);
}
END_TEST

START_TEST(test_workers)
{
	struct run r = run_tool("-n", name, "workers", NULL);
	json_t *j, *ws;

	ck_assert_int_eq(r.status, 0);
	ck_assert_int_eq(count_lines(r.out), 1 + 3);
	ck_assert_ptr_nonnull(strstr(r.out, "running"));
	/* DROPS, the last column, sums every reason: 1 slow + 2 (w + 1) gap. */
	for (int i = 0; i < 3; i++) {
		char want[32];

		snprintf(want, sizeof(want), " %d\n", 1 + 2 * (i + 1));
		ck_assert_msg(strstr(r.out, want) != NULL, "no \"%s\" in %s",
		              want, r.out);
	}
	ck_assert_ptr_nonnull(strstr(r.out, "2025-11-25T"));
	/* LOOP: how long ago each loop stamped its liveness. */
	{
		const char *line = strchr(r.out, '\n');
		char loop[16];
		unsigned id;
		double age;

		for (int i = 0; i < 3 && line != NULL; i++) {
			ck_assert_int_eq(
			    sscanf(line + 1, "%u %*d %*s %*s %15s", &id, loop),
			    2);
			ck_assert_uint_eq(id, (unsigned)i);
			if (i == 2)
				ck_assert_str_eq(loop, "-");
			else {
				ck_assert_int_eq(sscanf(loop, "%lfs", &age), 1);
				ck_assert(age >= 5.0 * i && age < 5.0 * i + 3);
			}
			line = strchr(line + 1, '\n');
		}
	}
	run_free(&r);

	r = run_tool("-n", name, "--json", "workers", NULL);
	ck_assert_int_eq(r.status, 0);
	python_json_ok(r.out);
	j = parse_json(r.out);
	ws = json_object_get(j, "workers");
	ck_assert_int_eq(json_array_size(ws), 3);
	for (int i = 0; i < 3; i++) {
		json_t *w = json_array_get(ws, (size_t)i);

		ck_assert_int_eq(json_integer_value(json_object_get(w, "id")),
		                 i);
		ck_assert_int_eq(json_integer_value(json_object_get(w, "pid")),
		                 getpid());
		ck_assert_str_eq(json_string_value(json_object_get(w, "state")),
		                 "running");
		if (i < 2) {
			json_int_t age = json_integer_value(
			    json_object_get(w, "loop_age_ms"));

			ck_assert_int_ge(age, 5000 * i);
			ck_assert_int_lt(age, 5000 * i + 3000);
		} else
			ck_assert(
			    json_is_null(json_object_get(w, "loop_age_ms")));
		ck_assert_int_eq(
		    json_integer_value(json_object_get(
		        json_object_get(w, "counters"), "conn_accepted")),
		    10 + i);
		ck_assert_int_eq(
		    json_integer_value(json_object_get(
		        json_object_get(w, "counters"), "drop_gap")),
		    2 * (i + 1));
	}
	json_decref(j);
	run_free(&r);
}
END_TEST

START_TEST(test_channels)
{
	struct run r = run_tool("-n", name, "channels", NULL);
	json_t *j, *cs;
	int seen[NCHANNELS] = {0};

	ck_assert_int_eq(r.status, 0);
	/* Header, one line per channel, the count. */
	ck_assert_int_eq(count_lines(r.out), 1 + NCHANNELS + 1);
	ck_assert_ptr_nonnull(strstr(r.out, "(10 channels)"));
	ck_assert_ptr_nonnull(strstr(r.out, "127.0.0.1:40003"));
	ck_assert_ptr_nonnull(strstr(r.out, "1000,1004"));
	run_free(&r);

	r = run_tool("--json", "-n", name, "channels", NULL);
	ck_assert_int_eq(r.status, 0);
	python_json_ok(r.out);
	j = parse_json(r.out);
	cs = json_object_get(j, "channels");
	ck_assert_int_eq(json_array_size(cs), NCHANNELS);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "count")),
	                 NCHANNELS);
	ck_assert_int_eq(
	    json_integer_value(json_object_get(j, "skipped_buckets")), 0);
	for (size_t i = 0; i < json_array_size(cs); i++) {
		json_t *c = json_array_get(cs, i);
		struct shm_channel want;
		int k;

		ck_assert_int_eq(
		    sscanf(json_string_value(json_object_get(c, "key")),
		           "key-%d", &k),
		    1);
		ck_assert(k >= 0 && k < NCHANNELS && !seen[k]);
		seen[k] = 1;
		chan_make(&want, k);
		ck_assert_int_eq(json_integer_value(json_object_get(c, "mid")),
		                 want.mid);
		ck_assert_str_eq(json_string_value(json_object_get(c, "room")),
		                 want.room);
		ck_assert_int_eq(
		    json_integer_value(json_object_get(c, "worker")),
		    want.worker);
		ck_assert_int_eq(
		    json_integer_value(json_object_get(c, "conn_id")),
		    want.conn_id);
		ck_assert_str_eq(
		    json_string_value(json_object_get(c, "remote")),
		    want.remote);
		ck_assert_int_eq(json_array_size(json_object_get(c, "accepts")),
		                 2);
	}
	json_decref(j);
	run_free(&r);
}
END_TEST

START_TEST(test_rooms)
{
	struct run r = run_tool("-n", name, "rooms", NULL);
	json_t *j, *rs;

	ck_assert_int_eq(r.status, 0);
	ck_assert_int_eq(count_lines(r.out), 1 + 2 + 1);
	/* 5 members on workers 0,1,2,0,1; logic said 4242 cluster-wide. */
	ck_assert_ptr_nonnull(strstr(r.out, "4242"));
	ck_assert_ptr_nonnull(strstr(r.out, "0:2 1:2 2:1"));
	run_free(&r);

	r = run_tool("-n", name, "rooms", "-j", NULL);
	ck_assert_int_eq(r.status, 0);
	python_json_ok(r.out);
	j = parse_json(r.out);
	rs = json_object_get(j, "rooms");
	ck_assert_int_eq(json_array_size(rs), 2);
	for (size_t i = 0; i < 2; i++) {
		json_t *o = json_array_get(rs, i);
		const char *n = json_string_value(json_object_get(o, "name"));
		int big = strcmp(n, "live://1000") == 0;

		ck_assert(big || strcmp(n, "live://2000") == 0);
		ck_assert_int_eq(
		    json_integer_value(json_object_get(o, "online")),
		    big ? 5 : 3);
		ck_assert_int_eq(
		    json_integer_value(json_object_get(o, "cluster_online")),
		    big ? 4242 : 0);
	}
	json_decref(j);
	run_free(&r);
}
END_TEST

START_TEST(test_key_and_room)
{
	struct run r = run_tool("-n", name, "key", "key-03", NULL);
	json_t *j;

	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "mid        103\n"));
	ck_assert_ptr_nonnull(strstr(r.out, "room       live://1000\n"));
	ck_assert_ptr_nonnull(strstr(r.out, "conn id    1003\n"));
	run_free(&r);

	r = run_tool("-n", name, "key", "key-09", "--json", NULL);
	ck_assert_int_eq(r.status, 0);
	python_json_ok(r.out);
	j = parse_json(r.out);
	ck_assert_str_eq(json_string_value(json_object_get(
	                     json_object_get(j, "channel"), "key")),
	                 "key-09");
	ck_assert_str_eq(json_string_value(json_object_get(
	                     json_object_get(j, "channel"), "room")),
	                 "");
	json_decref(j);
	run_free(&r);

	r = run_tool("-n", name, "key", "nobody", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "no channel with key nobody"));
	ck_assert_str_eq(r.out, "");
	run_free(&r);

	r = run_tool("-n", name, "room", "live://2000", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "online     3"));
	ck_assert_ptr_nonnull(strstr(r.out, "(3 channels in the room)"));
	ck_assert_ptr_nonnull(strstr(r.out, "key-05"));
	ck_assert_ptr_null(strstr(r.out, "key-04"));
	run_free(&r);

	r = run_tool("-n", name, "--json", "room", "live://1000", NULL);
	ck_assert_int_eq(r.status, 0);
	python_json_ok(r.out);
	j = parse_json(r.out);
	ck_assert_int_eq(json_integer_value(json_object_get(
	                     json_object_get(j, "room"), "online")),
	                 5);
	ck_assert_int_eq(json_array_size(json_object_get(j, "members")), 5);
	ck_assert_int_eq(
	    json_integer_value(json_object_get(
	        json_object_get(json_object_get(j, "room"), "workers"), "2")),
	    1);
	json_decref(j);
	run_free(&r);

	r = run_tool("-n", name, "room", "live://none", "--json", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "no room live://none"));
	run_free(&r);
}
END_TEST

START_TEST(test_config_file)
{
	char path[] = "/tmp/imgate-shm-conf-XXXXXX";
	int fd = mkstemp(path);
	struct run r;
	FILE *f;

	ck_assert_int_ne(fd, -1);
	f = fdopen(fd, "w");
	fprintf(f, "[server]\nworkers = 2\n\n[shm]\nbuckets = 8\nname = %s\n",
	        name);
	fclose(f);
	r = run_tool("-c", path, "summary", NULL);
	ck_assert_msg(r.status == 0, "%s", r.err);
	ck_assert_ptr_nonnull(strstr(r.out, name));
	run_free(&r);

	/* No [shm] name: the default name is used. */
	f = fopen(path, "w");
	fprintf(f, "[server]\nworkers = 2\n");
	fclose(f);
	r = run_tool("-c", path, NULL);
	if (r.status == 1)
		ck_assert_ptr_nonnull(strstr(r.err, "/imgate-comet"));
	else
		ck_assert_ptr_nonnull(strstr(r.out, "/imgate-comet"));
	run_free(&r);
	unlink(path);

	r = run_tool("-c", path, NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "cannot read"));
	run_free(&r);
}
END_TEST

/* Keys and rooms are client bytes: any of them, and still valid output. */
START_TEST(test_hostile_strings)
{
	struct shm_channel c;
	struct run r;
	json_t *j, *cs;
	int found = 0;

	chan_make(&c, 0);
	snprintf(c.key, sizeof(c.key), "evil-\xff\x1b[2J");
	snprintf(c.room, sizeof(c.room), "r\xc3\x28\x07");
	ck_assert_int_eq(shm_channel_put(seg, &c, NULL), 0);
	ck_assert_int_eq(shm_room_add(seg, c.room, 0, 1), 0);

	r = run_tool("-n", name, "channels", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_null(strchr(r.out, '\x1b'));
	ck_assert_ptr_null(strchr(r.out, '\x07'));
	ck_assert_ptr_nonnull(strstr(r.out, "evil-\xff?[2J"));
	run_free(&r);

	r = run_tool("-n", name, "rooms", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_null(strchr(r.out, '\x07'));
	run_free(&r);

	r = run_tool("-n", name, "channels", "--json", NULL);
	ck_assert_int_eq(r.status, 0);
	python_json_ok(r.out);
	j = parse_json(r.out);
	cs = json_object_get(j, "channels");
	ck_assert_int_eq(json_array_size(cs), NCHANNELS + 1);
	for (size_t i = 0; i < json_array_size(cs); i++) {
		json_t *o = json_array_get(cs, i);
		const char *k = json_string_value(json_object_get(o, "key"));

		if (strcmp(k, "evil-\\xff\x1b[2J") != 0)
			continue;
		found = 1;
		ck_assert_str_eq(json_string_value(json_object_get(o, "room")),
		                 "r\\xc3(\x07");
	}
	ck_assert(found);
	json_decref(j);
	run_free(&r);

	r = run_tool("-n", name, "rooms", "--json", NULL);
	ck_assert_int_eq(r.status, 0);
	python_json_ok(r.out);
	j = parse_json(r.out);
	ck_assert_int_eq(json_array_size(json_object_get(j, "rooms")), 3);
	json_decref(j);
	run_free(&r);
}
END_TEST

START_TEST(test_missing_and_bad)
{
	char other[80];
	struct run r;

	snprintf(other, sizeof(other), "%s-missing", name);
	r = run_tool("-n", other, NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "no shm segment"));
	ck_assert_ptr_nonnull(strstr(r.err, "is imgate-comet running"));
	ck_assert_str_eq(r.out, "");
	run_free(&r);

	r = run_tool("-n", "no-slash", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "bad shm name"));
	run_free(&r);

	shm_test_set_version(seg, SHM_VERSION + 7);
	r = run_tool("-n", name, "channels", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "version"));
	ck_assert_str_eq(r.out, "");
	run_free(&r);
	shm_test_set_version(seg, SHM_VERSION);
}
END_TEST

START_TEST(test_usage)
{
	struct run r = run_tool("-n", name, "bogus", NULL);

	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "unknown view"));
	run_free(&r);
	r = run_tool("-n", name, "key", NULL);
	ck_assert_int_eq(r.status, 2);
	run_free(&r);
	r = run_tool("-n", name, "rooms", "extra", NULL);
	ck_assert_int_eq(r.status, 2);
	run_free(&r);
	r = run_tool("-n", name, "-c", "/dev/null", NULL);
	ck_assert_int_eq(r.status, 2);
	ck_assert_ptr_nonnull(strstr(r.err, "exclude"));
	run_free(&r);
	r = run_tool("--bogus", NULL);
	ck_assert_int_eq(r.status, 2);
	run_free(&r);
	r = run_tool("-h", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, "usage:"));
	run_free(&r);
	r = run_tool("-v", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.out, PACKAGE_VERSION));
	run_free(&r);
}
END_TEST

START_TEST(test_master_gone)
{
	char other[80];
	struct run r;
	int status;
	pid_t pid;

	snprintf(other, sizeof(other), "%s-stale", name);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		struct shm_seg *s;
		struct shm_channel c;

		if (shm_seg_create(other, &geom, &s, NULL, 0) == -1)
			_exit(1);
		chan_make(&c, 1);
		_exit(shm_channel_put(s, &c, NULL) == 0 ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	/* Printed anyway (a post-mortem), with a warning and status 1. */
	r = run_tool("-n", other, "channels", NULL);
	shm_seg_unlink(other);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "not running"));
	ck_assert_ptr_nonnull(strstr(r.out, "key-01"));
	run_free(&r);
}
END_TEST

static int
torn_then_die(void)
{
	return shm_test_torn_put(seg, "key-04");
}

START_TEST(test_dead_writer_does_not_block)
{
	struct run r;
	json_t *j;
	int status;
	pid_t pid = fork();

	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		if (torn_then_die() == -1)
			_exit(1);
		raise(SIGKILL);
		_exit(2);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status));

	/* One bucket can't be read; the rest are printed, with a warning. */
	r = run_tool("-n", name, "channels", "--json", NULL);
	ck_assert_int_eq(r.status, 0);
	ck_assert_ptr_nonnull(strstr(r.err, "not shown"));
	j = parse_json(r.out);
	ck_assert_int_eq(
	    json_integer_value(json_object_get(j, "skipped_buckets")), 1);
	ck_assert_int_lt(json_array_size(json_object_get(j, "channels")),
	                 NCHANNELS);
	json_decref(j);
	run_free(&r);

	r = run_tool("-n", name, "key", "key-04", NULL);
	ck_assert_int_eq(r.status, 1);
	ck_assert_ptr_nonnull(strstr(r.err, "try again"));
	run_free(&r);

	/* The next writer repairs the bucket; the tool sees it whole. */
	ck_assert_int_eq(
	    shm_test_lock_bucket(seg, shm_test_bucket_of(seg, "key-04")), 0);
	r = run_tool("-n", name, "channels", "--json", NULL);
	ck_assert_int_eq(r.status, 0);
	j = parse_json(r.out);
	ck_assert_int_eq(
	    json_integer_value(json_object_get(j, "skipped_buckets")), 0);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "count")),
	                 NCHANNELS - 1);
	json_decref(j);
	run_free(&r);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("imgate-shm");
	TCase *tc = tcase_create("tool");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_summary);
	tcase_add_test(tc, test_workers);
	tcase_add_test(tc, test_channels);
	tcase_add_test(tc, test_rooms);
	tcase_add_test(tc, test_key_and_room);
	tcase_add_test(tc, test_config_file);
	tcase_add_test(tc, test_hostile_strings);
	tcase_add_test(tc, test_missing_and_bad);
	tcase_add_test(tc, test_usage);
	tcase_add_test(tc, test_master_gone);
	tcase_add_test(tc, test_dead_writer_does_not_block);
	suite_add_tcase(s, tc);
	/* Segment names carry it: see shmtest.h. */
	runner_pid = getpid();
	return shmtest_run(s, "imgate-itest");
}
