/* Check suite for logic/conf: imgate-logic.conf loading and checks. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "logic/logic.h"

static char path[64];
static char secret_path[64];

static void
setup(void)
{
	int fd;

	snprintf(path, sizeof(path), "/tmp/test_logic_conf.XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ne(fd, -1);
	close(fd);
	snprintf(secret_path, sizeof(secret_path),
	         "/tmp/test_logic_secret.XXXXXX");
	fd = mkstemp(secret_path);
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, "file-secret\n", 12), 12);
	close(fd);
}

static void
teardown(void)
{
	unlink(path);
	unlink(secret_path);
}

static int
load(const char *text, struct logic_conf *c, char *err)
{
	FILE *f = fopen(path, "w");

	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
	return logic_conf_load(path, c, err, 512);
}

START_TEST(defaults)
{
	struct logic_conf c;
	char err[512];

	ck_assert_int_eq(load("", &c, err), 0);
	ck_assert_int_eq(c.rpc_port, 3119);
	ck_assert_int_eq(c.http_port, 3111);
	ck_assert_int_eq(c.redis_port, 6379);
	ck_assert_str_eq(c.prefix, "imgate");
	ck_assert_int_eq(c.heartbeat_timeout_ms, 90000);
	ck_assert_int_eq(c.session_ttl_ms, 1800000);
	ck_assert_int_eq(c.online_cache_ms, 1000);
	ck_assert_uint_eq(c.jwt_secret_len, 0);
	ck_assert_str_eq(c.path, path);
}
END_TEST

START_TEST(every_section)
{
	struct logic_conf c;
	char err[512];

	ck_assert_msg(
	    load("[server]\nlog = stderr\nlog_level = debug\npid_file =\n"
	         "[rpc]\nlisten = 0.0.0.0:4000\nmax_message = 2m\n"
	         "[http]\nlisten = :4001\nmax_body = 1k\ntimeout = 3s\n"
	         "max_targets = 5\npush_token = tok\n"
	         "[redis]\naddress = [::1]:7000\npassword = pw\ndb = 3\n"
	         "prefix = im2\ntimeout = 500ms\nbackoff_min = 50ms\n"
	         "backoff_max = 1s\n"
	         "[session]\nheartbeat_timeout = 1m\nsession_ttl = 10m\n"
	         "online_ttl = 20s\nonline_cache = 0\n"
	         "[auth]\njwt_secret = abc\njwt_leeway = 0\n"
	         "[node]\ndomain = im.example.com\ntcp_port = 1\n"
	         "ws_port = 2\nwss_port = 0\nheartbeat = 10s\n"
	         "heartbeat_max = 5\nbackoff_factor = 2.5\n"
	         "backoff_jitter = 0.1\nbackoff_max_delay = 60\n"
	         "backoff_base_delay = 1\n"
	         "[webhook]\nreceive_url = http://127.0.0.1:9/up\n"
	         "timeout = 2s\nmax_inflight = 10\n",
	         &c, err) == 0,
	    "%s", err);
	ck_assert_int_eq(c.log_level, LOG_LVL_DEBUG);
	ck_assert_str_eq(c.pid_file, "");
	ck_assert_str_eq(c.rpc_host, "0.0.0.0");
	ck_assert_int_eq(c.rpc_port, 4000);
	ck_assert_uint_eq(c.rpc_max_message, 2u << 20);
	ck_assert_str_eq(c.http_host, "");
	ck_assert_uint_eq(c.http_max_body, 1024);
	ck_assert_int_eq(c.max_targets, 5);
	ck_assert_str_eq(c.push_token, "tok");
	ck_assert_str_eq(c.redis_host, "::1");
	ck_assert_int_eq(c.redis_port, 7000);
	ck_assert_int_eq(c.redis_db, 3);
	ck_assert_str_eq(c.prefix, "im2");
	ck_assert_int_eq(c.redis_timeout_ms, 500);
	ck_assert_int_eq(c.heartbeat_timeout_ms, 60000);
	ck_assert_int_eq(c.online_ttl_ms, 20000);
	ck_assert_int_eq(c.online_cache_ms, 0);
	ck_assert_uint_eq(c.jwt_secret_len, 3);
	ck_assert_str_eq(c.node_domain, "im.example.com");
	ck_assert_int_eq(c.node_heartbeat_max, 5);
	ck_assert(c.backoff_factor == 2.5);
	ck_assert_str_eq(c.receive_url, "http://127.0.0.1:9/up");
	ck_assert_int_eq(c.webhook_max_inflight, 10);
}
END_TEST

START_TEST(secret_file)
{
	struct logic_conf c;
	char err[512], text[160];

	snprintf(text, sizeof(text), "[auth]\njwt_secret_file = %s\n",
	         secret_path);
	ck_assert_msg(load(text, &c, err) == 0, "%s", err);
	ck_assert_str_eq(c.jwt_secret, "file-secret");
	ck_assert_uint_eq(c.jwt_secret_len, 11);

	snprintf(text, sizeof(text),
	         "[auth]\njwt_secret = x\njwt_secret_file = %s\n", secret_path);
	ck_assert_int_eq(load(text, &c, err), -1);
	ck_assert_ptr_nonnull(strstr(err, "exclusive"));

	ck_assert_int_eq(
	    load("[auth]\njwt_secret_file = /nonexistent/secret\n", &c, err),
	    -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/secret"));
}
END_TEST

START_TEST(errors_name_line_and_setting)
{
	static const struct {
		const char *text;
		const char *want;
	} cases[] = {
	    {"[rpc]\nlisten = nope\n", ":2: [rpc] listen"},
	    {"[http]\n\nmax_body = lots\n", ":3: [http] max_body"},
	    {"[redis]\nprefix = a b\n", "[redis] prefix"},
	    {"[redis]\ndb = -1\n", "[redis] db"},
	    {"[server]\nlog_level = loud\n", "[server] log_level"},
	    {"[session]\nsession_ttl = 1m\n", "twice"},
	    {"[redis]\nbackoff_min = 10s\nbackoff_max = 1s\n", "backoff_min"},
	    {"[node]\nbackoff_jitter = 2\n", "[node] backoff_jitter"},
	    {"[webhook]\nreceive_url = ftp://x\n", "http://"},
	    {"[nope]\nx = 1\n", ":2: unknown setting [nope] x"},
	    {"garbage line\n", ":1:"},
	    /* A key set twice: whichever was meant, the other would lose. */
	    {"[rpc]\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\n",
	     ":3: [rpc] listen: set twice"},
	    {"[http]\nmax_body = 1k\n[rpc]\nlisten = :1\n[http]\n"
	     "max_body = 1k\n",
	     ":6: [http] max_body: set twice"},
	    {"[auth]\njwt_secret = a\n\n; again\njwt_secret = a\n",
	     ":5: [auth] jwt_secret: set twice"},
	    /* The first error is reported, not a later one. */
	    {"[http]\ntimeout = x\n[rpc]\nlisten = y\n", ":2: [http] timeout"},
	};
	struct logic_conf c;
	char err[512];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(load(cases[i].text, &c, err) == -1, "case %zu",
		              i);
		ck_assert_msg(strstr(err, cases[i].want) != NULL,
		              "case %zu: \"%s\" lacks \"%s\"", i, err,
		              cases[i].want);
	}
	/* The same name in two sections is two settings. */
	ck_assert_int_eq(load("[rpc]\nlisten = 127.0.0.1:1\n[http]\nlisten = "
	                      "127.0.0.1:2\ntimeout = 5s\n[webhook]\n"
	                      "timeout = 1s\n",
	                      &c, err),
	                 0);
	ck_assert_int_eq(c.rpc_port, 1);
	ck_assert_int_eq(c.http_port, 2);
	ck_assert_int_eq(c.webhook_timeout_ms, 1000);
	ck_assert_int_eq(
	    logic_conf_load("/nonexistent/x.conf", &c, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "cannot open"));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("logic_conf");
	TCase *tc = tcase_create("load");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, defaults);
	tcase_add_test(tc, every_section);
	tcase_add_test(tc, secret_file);
	tcase_add_test(tc, errors_name_line_and_setting);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
