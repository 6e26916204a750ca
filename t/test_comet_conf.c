/*
 * imgate-comet.conf loader: defaults, every setting, every refusal names
 * the file, the line and the key.
 */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comet/comet.h"

static char tmpdir[] = "/tmp/test_comet_conf.XXXXXX";
static char path[256];
static char err[1024];

static void
setup(void)
{
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
	snprintf(path, sizeof(path), "%s/c.conf", tmpdir);
	err[0] = '\0';
}

static void
teardown(void)
{
	char f[300];

	snprintf(f, sizeof(f), "%s/cert.pem", tmpdir);
	unlink(f);
	snprintf(f, sizeof(f), "%s/key.pem", tmpdir);
	unlink(f);
	unlink(path);
	rmdir(tmpdir);
	strcpy(tmpdir, "/tmp/test_comet_conf.XXXXXX");
}

static void
write_file(const char *text)
{
	FILE *fp = fopen(path, "w");

	ck_assert_ptr_nonnull(fp);
	fputs(text, fp);
	fclose(fp);
}

static int
load(const char *text, struct comet_conf *c)
{
	write_file(text);
	comet_conf_defaults(c);
	return comet_conf_load(path, c, err, sizeof(err));
}

/* The load fails and err holds file:line and each of the needles. */
static void
refused(const char *text, int line, const char *needle)
{
	struct comet_conf c;
	char where[300];

	ck_assert_msg(load(text, &c) == -1, "accepted: %s", text);
	if (line > 0)
		snprintf(where, sizeof(where), "%s:%d: ", path, line);
	else
		snprintf(where, sizeof(where), "%s: ", path);
	ck_assert_msg(strncmp(err, where, strlen(where)) == 0,
	              "error \"%s\" does not start with \"%s\"", err, where);
	ck_assert_msg(strstr(err, needle) != NULL,
	              "error \"%s\" does not name \"%s\"", err, needle);
}

START_TEST(test_defaults)
{
	struct comet_conf c;

	comet_conf_defaults(&c);
	ck_assert_str_ne(c.server_id, "");
	ck_assert_int_eq(c.workers, 0);
	ck_assert_int_eq(c.max_connections, 0);
	ck_assert_int_eq(c.worker_connections, 0);
	ck_assert_str_eq(c.log_target, "stderr");
	ck_assert_int_eq(c.log_level, LOG_LVL_INFO);
	ck_assert_int_eq(c.drain_timeout_ms, 10000);
	ck_assert_int_eq(c.worker_timeout_ms, 10000);
	ck_assert_int_eq(c.reuseport, 0);
	ck_assert_int_eq(c.listen[LISTENER_TCP].port, 3101);
	ck_assert_str_eq(c.listen[LISTENER_TCP].host, "");
	ck_assert_int_eq(c.listen[LISTENER_WS].port, 3102);
	ck_assert_int_eq(c.listen[LISTENER_WSS].port, 0);
	ck_assert_str_eq(c.admin.host, "127.0.0.1");
	ck_assert_int_eq(c.admin.port, 3109);
	ck_assert_str_eq(c.ws_path, "/sub");
	ck_assert_int_eq(c.handshake_timeout_ms, 8000);
	ck_assert_int_eq(c.heartbeat_timeout_ms, 240000);
	ck_assert_uint_eq(c.max_body, 4096);
	ck_assert_uint_eq(c.max_ws_message, 16384);
	ck_assert_uint_eq(c.max_http_header, 8192);
	ck_assert_uint_eq(c.output_limit, 256 * 1024);
	ck_assert_str_eq(c.shm_name, "/imgate-comet");
	ck_assert_uint_eq(c.shm.buckets, 256);
	ck_assert_uint_eq(c.shm.channels_per_bucket, 256);
	ck_assert_uint_eq(c.shm.rooms_per_bucket, 64);
	ck_assert_uint_eq(c.shm.max_workers, 128);
	ck_assert_str_eq(c.logic.host, "127.0.0.1");
	ck_assert_int_eq(c.logic.port, 3119);
	ck_assert_int_eq(c.rpc_timeout_ms, 5000);
	ck_assert_int_eq(c.renew_interval_ms, 10000);
	ck_assert_str_eq(c.redis.host, "127.0.0.1");
	ck_assert_int_eq(c.redis.port, 6379);
	ck_assert_str_eq(c.redis_password, "");
	ck_assert_str_eq(c.channel_prefix, "imgate");
	ck_assert_int_eq(c.batch_window_ms, 0);
	ck_assert_str_eq(c.trace_mids, "");
}
END_TEST

START_TEST(test_empty_file_is_defaults)
{
	struct comet_conf c, d;

	ck_assert_int_eq(load("# nothing\n\n; nothing either\n", &c), 0);
	comet_conf_defaults(&d);
	ck_assert_str_eq(c.path, path);
	memcpy(d.path, c.path, sizeof(d.path));
	ck_assert(memcmp(&c, &d, sizeof(c)) == 0);
}
END_TEST

START_TEST(test_every_setting)
{
	struct comet_conf c;
	char text[4096], cert[300], key[300];

	snprintf(cert, sizeof(cert), "%s/cert.pem", tmpdir);
	snprintf(key, sizeof(key), "%s/key.pem", tmpdir);
	fclose(fopen(cert, "w"));
	fclose(fopen(key, "w"));
	snprintf(text, sizeof(text),
	         "[server]\n"
	         "id = node-7\n"
	         "workers = 6\n"
	         "max_connections = 100000\n"
	         "worker_connections = 19000\n"
	         "pid_file = /tmp/x.pid\n"
	         "user = nobody\n"
	         "log = /tmp/x.log\n"
	         "log_level = debug\n"
	         "drain_timeout = 2500ms\n"
	         "worker_timeout = 3s\n"
	         "reuseport = yes\n"
	         "[listen]\n"
	         "tcp = 127.0.0.1:4101\n"
	         "ws = [::1]:4102\n"
	         "wss = :4103\n"
	         "admin = off\n"
	         "ws_path = /ws\n"
	         "tls_cert = %s\n"
	         "tls_key = %s\n"
	         "[protocol]\n"
	         "handshake_timeout = 3s\n"
	         "heartbeat_timeout = 5m\n"
	         "max_body = 8k\n"
	         "max_ws_message = 64k\n"
	         "max_http_header = 4k\n"
	         "output_limit = 1m\n"
	         "[shm]\n"
	         "name = /imgate-test\n"
	         "buckets = 64\n"
	         "channels_per_bucket = 32\n"
	         "rooms_per_bucket = 8\n"
	         "max_workers = 16\n"
	         "[logic]\n"
	         "addr = 10.0.0.1:3119\n"
	         "rpc_timeout = 750ms\n"
	         "renew_interval = 20s\n"
	         "[redis]\n"
	         "addr = redis.local:6380\n"
	         "password = s3cret\n"
	         "channel_prefix = im\n"
	         "[push]\n"
	         "batch_window = 5ms\n"
	         "[trace]\n"
	         "mids = 1, 22,-3\n",
	         cert, key);
	ck_assert_msg(load(text, &c) == 0, "%s", err);
	ck_assert_str_eq(c.server_id, "node-7");
	ck_assert_int_eq(c.workers, 6);
	ck_assert_int_eq(c.max_connections, 100000);
	ck_assert_int_eq(c.worker_connections, 19000);
	ck_assert_str_eq(c.pid_file, "/tmp/x.pid");
	ck_assert_str_eq(c.user, "nobody");
	ck_assert_str_eq(c.log_target, "/tmp/x.log");
	ck_assert_int_eq(c.log_level, LOG_LVL_DEBUG);
	ck_assert_int_eq(c.drain_timeout_ms, 2500);
	ck_assert_int_eq(c.worker_timeout_ms, 3000);
	ck_assert_int_eq(c.reuseport, 1);
	ck_assert_str_eq(c.listen[LISTENER_TCP].host, "127.0.0.1");
	ck_assert_int_eq(c.listen[LISTENER_TCP].port, 4101);
	ck_assert_str_eq(c.listen[LISTENER_WS].host, "::1");
	ck_assert_int_eq(c.listen[LISTENER_WS].port, 4102);
	ck_assert_str_eq(c.listen[LISTENER_WSS].host, "");
	ck_assert_int_eq(c.listen[LISTENER_WSS].port, 4103);
	ck_assert_int_eq(c.admin.port, 0);
	ck_assert_str_eq(c.ws_path, "/ws");
	ck_assert_str_eq(c.tls_cert, cert);
	ck_assert_str_eq(c.tls_key, key);
	ck_assert_int_eq(c.handshake_timeout_ms, 3000);
	ck_assert_int_eq(c.heartbeat_timeout_ms, 300000);
	ck_assert_uint_eq(c.max_body, 8192);
	ck_assert_uint_eq(c.max_ws_message, 65536);
	ck_assert_uint_eq(c.max_http_header, 4096);
	ck_assert_uint_eq(c.output_limit, 1 << 20);
	ck_assert_str_eq(c.shm_name, "/imgate-test");
	ck_assert_uint_eq(c.shm.buckets, 64);
	ck_assert_uint_eq(c.shm.channels_per_bucket, 32);
	ck_assert_uint_eq(c.shm.rooms_per_bucket, 8);
	ck_assert_uint_eq(c.shm.max_workers, 16);
	ck_assert_str_eq(c.logic.host, "10.0.0.1");
	ck_assert_int_eq(c.logic.port, 3119);
	ck_assert_int_eq(c.rpc_timeout_ms, 750);
	ck_assert_int_eq(c.renew_interval_ms, 20000);
	ck_assert_str_eq(c.redis.host, "redis.local");
	ck_assert_int_eq(c.redis.port, 6380);
	ck_assert_str_eq(c.redis_password, "s3cret");
	ck_assert_str_eq(c.channel_prefix, "im");
	ck_assert_int_eq(c.batch_window_ms, 5);
	ck_assert_str_eq(c.trace_mids, "1, 22,-3");
}
END_TEST

START_TEST(test_comments_and_spacing)
{
	struct comet_conf c;

	ck_assert_int_eq(load("  [server]  ; a comment\n"
	                      "# full line\n"
	                      "workers=3 ; inline\n"
	                      "\n"
	                      "[listen]\n"
	                      "ws = off\n",
	                      &c),
	                 0);
	ck_assert_int_eq(c.workers, 3);
	ck_assert_int_eq(c.listen[LISTENER_WS].port, 0);
}
END_TEST

START_TEST(test_unknown_key)
{
	refused("[server]\nworkers = 2\nworker = 3\n", 3,
	        "[server] worker: unknown setting");
	refused("[protocol]\nmax_bdy = 10\n", 2, "max_bdy");
}
END_TEST

START_TEST(test_unknown_section)
{
	refused("[server]\nworkers = 2\n\n[sever]\n", 4,
	        "unknown section [sever]");
	refused("[server\n", 1, "']'");
}
END_TEST

START_TEST(test_key_outside_section)
{
	refused("workers = 2\n", 1, "outside any section");
}
END_TEST

START_TEST(test_set_twice)
{
	refused("[server]\nworkers = 2\n[listen]\ntcp = :1\n[server]\n"
	        "workers = 3\n",
	        6, "workers set twice");
}
END_TEST

START_TEST(test_syntax_error)
{
	refused("[server]\nworkers = 2\njust words\n", 3, "syntax error");
}
END_TEST

START_TEST(test_long_line)
{
	char text[600];

	snprintf(text, sizeof(text), "[trace]\nmids = %0400d\n", 1);
	refused(text, 2, "longer than");
}
END_TEST

/* Every typed key refuses a bad value and names itself. */
START_TEST(test_bad_values)
{
	static const struct {
		const char *text;
		const char *needle;
	} cases[] = {
	    {"[server]\nworkers = -1\n", "[server] workers = \"-1\""},
	    {"[server]\nworkers = 70000\n", "workers"},
	    {"[server]\nworkers = two\n", "an integer"},
	    {"[server]\nmax_connections = 1e6\n", "max_connections"},
	    {"[server]\nworker_connections = -5\n", "worker_connections"},
	    {"[server]\nlog_level = loud\n", "log_level"},
	    {"[server]\ndrain_timeout = 5 parsecs\n", "drain_timeout"},
	    {"[server]\ndrain_timeout = 2h\n", "out of range"},
	    {"[server]\nworker_timeout = soon\n", "[server] worker_timeout"},
	    {"[server]\nworker_timeout = 2h\n", "out of range"},
	    {"[server]\nworker_timeout = -1s\n", "worker_timeout"},
	    {"[server]\nreuseport = maybe\n", "reuseport"},
	    {"[listen]\ntcp = 3101\n", "[listen] tcp"},
	    {"[listen]\nws = :70000\n", "[listen] ws"},
	    {"[listen]\nadmin = [::1:3109\n", "admin"},
	    {"[protocol]\nhandshake_timeout = 10ms\n", "handshake_timeout"},
	    {"[protocol]\nheartbeat_timeout = x\n", "heartbeat_timeout"},
	    {"[protocol]\nmax_body = 4q\n", "max_body"},
	    {"[protocol]\nmax_body = 1g\n", "max_body"},
	    {"[protocol]\nmax_ws_message = 1\n", "max_ws_message"},
	    {"[protocol]\nmax_http_header = 10\n", "max_http_header"},
	    {"[protocol]\noutput_limit = 100\n", "output_limit"},
	    {"[shm]\nbuckets = 0\n", "buckets"},
	    {"[shm]\nchannels_per_bucket = 100000\n", "channels_per_bucket"},
	    {"[shm]\nrooms_per_bucket = 0\n", "rooms_per_bucket"},
	    {"[shm]\nmax_workers = 5000\n", "max_workers"},
	    {"[logic]\naddr = off\n", "[logic] addr"},
	    {"[logic]\nrpc_timeout = 1ms\n", "rpc_timeout"},
	    {"[logic]\nrenew_interval = 10ms\n", "renew_interval"},
	    {"[redis]\naddr = localhost\n", "[redis] addr"},
	    {"[push]\nbatch_window = 1m\n", "batch_window"},
	    {"[trace]\nmids = 1,two\n", "[trace] mids"},
	    {"[trace]\nmids = 1;2\n", "[trace] mids"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		refused(cases[i].text, 2, cases[i].needle);
}
END_TEST

START_TEST(test_string_too_long)
{
	char text[400], id[COMET_NAME_MAX + 2];

	memset(id, 'a', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	snprintf(text, sizeof(text), "[server]\nid = %s\n", id);
	refused(text, 2, "[server] id");
}
END_TEST

/* Checks across keys point at the line of the key at fault. */
START_TEST(test_cross_checks)
{
	refused("[shm]\nmax_workers = 4\n[server]\nworkers = 8\n", 4,
	        "[server] workers: 8 exceeds [shm] max_workers = 4");
	refused("[server]\n\npid_file = run/x.pid\n", 3, "pid_file");
	refused("[server]\nid = a b\n", 2, "[server] id");
	refused("[listen]\nws_path = sub\n", 2, "ws_path");
	refused("[listen]\ntcp = off\nws = off\n", 2, "every client listener");
	refused("[server]\n[ server ]\n", 2, "unknown section [ server ]");
	refused("[listen]\nwss = :3103\n", 0, "tls_cert");
	refused("[listen]\nwss = :3103\ntls_cert = /nonexistent/c.pem\n"
	        "tls_key = /nonexistent/k.pem\n",
	        3, "/nonexistent/c.pem");
	refused("[listen]\ntcp = :5000\nws = :5000\n", 3,
	        "[listen] ws: same address as tcp");
	refused("[listen]\nadmin = 127.0.0.1:5000\ntcp = 127.0.0.1:5000\n", 2,
	        "[listen] admin: same address as tcp");
	refused("[protocol]\nmax_body = 64k\n", 0, "max_ws_message");
	refused("[shm]\nname = imgate\n", 2, "[shm] name");
	refused("[shm]\nname = /a/b\n", 2, "[shm] name");
	refused("[redis]\nchannel_prefix =\n", 2, "channel_prefix");
	refused("[protocol]\nheartbeat_timeout = 5s\n", 0, "renew_interval");
	/* Workers stamp once a second: less than two would kill them all. */
	refused("[server]\n\nworker_timeout = 1500ms\n", 3,
	        "[server] worker_timeout: must be 0 (off) or at least 2000 ms");
	refused("[server]\nworker_timeout = 1\n", 2, "worker_timeout");
}
END_TEST

/* worker_timeout: 0 turns the watchdog off; two heartbeats is the floor. */
START_TEST(test_worker_timeout)
{
	struct comet_conf c;

	ck_assert_msg(load("[server]\nworker_timeout = 0\n", &c) == 0, "%s",
	              err);
	ck_assert_int_eq(c.worker_timeout_ms, 0);
	ck_assert_msg(load("[server]\nworker_timeout = 2s\n", &c) == 0, "%s",
	              err);
	ck_assert_int_eq(c.worker_timeout_ms, 2000);
	ck_assert_msg(load("[server]\nworker_timeout = 1h\n", &c) == 0, "%s",
	              err);
	ck_assert_int_eq(c.worker_timeout_ms, 3600 * 1000);
	ck_assert_int_eq(load("[server]\nworker_timeout = 1999ms\n", &c), -1);
}
END_TEST

START_TEST(test_missing_file)
{
	struct comet_conf c;

	comet_conf_defaults(&c);
	ck_assert_int_eq(
	    comet_conf_load("/nonexistent/imgate.conf", &c, err, sizeof(err)),
	    -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/imgate.conf"));
	ck_assert_ptr_nonnull(strstr(err, "No such file"));
}
END_TEST

/* The shipped sample must load as is. */
START_TEST(test_sample_config)
{
	struct comet_conf c;

	comet_conf_defaults(&c);
	ck_assert_msg(comet_conf_load(SRCDIR "/etc/imgate-comet.conf", &c, err,
	                              sizeof(err)) == 0,
	              "%s", err);
}
END_TEST

static Suite *
comet_conf_suite(void)
{
	Suite *s = suite_create("comet_conf");
	TCase *tc = tcase_create("load");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_empty_file_is_defaults);
	tcase_add_test(tc, test_every_setting);
	tcase_add_test(tc, test_comments_and_spacing);
	tcase_add_test(tc, test_unknown_key);
	tcase_add_test(tc, test_unknown_section);
	tcase_add_test(tc, test_key_outside_section);
	tcase_add_test(tc, test_set_twice);
	tcase_add_test(tc, test_syntax_error);
	tcase_add_test(tc, test_long_line);
	tcase_add_test(tc, test_bad_values);
	tcase_add_test(tc, test_string_too_long);
	tcase_add_test(tc, test_cross_checks);
	tcase_add_test(tc, test_worker_timeout);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_sample_config);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(comet_conf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
