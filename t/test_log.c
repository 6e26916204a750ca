/* check suite for src/common/log: levels, line format, reopen, rate limit. */
#include "config.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"

static char path[64];

static void
setup(void)
{
	snprintf(path, sizeof(path), "/tmp/imgate-test-log-%ld",
	         (long)getpid());
	unlink(path);
}

static void
teardown(void)
{
	unlink(path);
}

static size_t
slurp(const char *p, char *buf, size_t len)
{
	FILE *f = fopen(p, "r");
	size_t n;

	if (f == NULL)
		return 0;
	n = fread(buf, 1, len - 1, f);
	buf[n] = '\0';
	fclose(f);
	return n;
}

START_TEST(test_level_parse)
{
	enum log_level l = LOG_LVL_ERROR;

	ck_assert_int_eq(log_level_parse("debug", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_DEBUG);
	ck_assert_int_eq(log_level_parse("WARNING", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_WARN);
	ck_assert_int_eq(log_level_parse("notice", &l), 0);
	ck_assert_int_eq(l, LOG_LVL_NOTICE);
	ck_assert_int_eq(log_level_parse("loud", &l), -1);
	ck_assert_int_eq(l, LOG_LVL_NOTICE);
}
END_TEST

START_TEST(test_file_lines)
{
	char err[256], buf[4096], pidw[64];

	ck_assert_int_eq(
	    log_open("imgate-test", path, LOG_LVL_INFO, err, sizeof(err)), 0);
	log_set_worker(3);
	log_info("hello %d", 42);
	log_debug("hidden %d", 1);
	log_set_worker(-1);
	log_error("master line");
	ck_assert_uint_gt(slurp(path, buf, sizeof(buf)), 0);
	snprintf(pidw, sizeof(pidw), "imgate-test[%ld] w3 info: hello 42\n",
	         (long)getpid());
	ck_assert_ptr_nonnull(strstr(buf, pidw));
	ck_assert_ptr_null(strstr(buf, "hidden"));
	snprintf(pidw, sizeof(pidw), "[%ld] - error: master line\n",
	         (long)getpid());
	ck_assert_ptr_nonnull(strstr(buf, pidw));
	/* A timestamp opens every line: "YYYY-MM-DD HH:MM:SS.mmm ". */
	ck_assert_int_eq(buf[4], '-');
	ck_assert_int_eq(buf[10], ' ');
	ck_assert_int_eq(buf[19], '.');
	log_open("imgate-test", "stderr", LOG_LVL_INFO, err, sizeof(err));
}
END_TEST

START_TEST(test_reopen)
{
	char err[256], buf[4096], moved[80];

	ck_assert_int_eq(
	    log_open("imgate-test", path, LOG_LVL_INFO, err, sizeof(err)), 0);
	log_info("before rotate");
	snprintf(moved, sizeof(moved), "%s.1", path);
	ck_assert_int_eq(rename(path, moved), 0);
	ck_assert_int_eq(log_reopen(), 0);
	log_info("after rotate");
	slurp(path, buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, "after rotate"));
	ck_assert_ptr_null(strstr(buf, "before rotate"));
	slurp(moved, buf, sizeof(buf));
	ck_assert_ptr_nonnull(strstr(buf, "before rotate"));
	unlink(moved);
	log_open("imgate-test", "stderr", LOG_LVL_INFO, err, sizeof(err));
}
END_TEST

START_TEST(test_open_fails)
{
	char err[256] = "";

	ck_assert_int_eq(log_open("imgate-test", "/nonexistent/dir/x.log",
	                          LOG_LVL_INFO, err, sizeof(err)),
	                 -1);
	ck_assert_ptr_nonnull(strstr(err, "/nonexistent/dir/x.log"));
}
END_TEST

/* Explicit clock: every branch of the limiter, counts exact. */
START_TEST(test_ratelimit_take)
{
	struct log_ratelimit rl = {.interval_ms = 1000};
	uint64_t n = 99;

	/* The first line passes whatever the clock says, even 0. */
	ck_assert_int_eq(log_ratelimit_take(&rl, 0, &n), 1);
	ck_assert_uint_eq(n, 0);
	for (int i = 0; i < 7; i++)
		ck_assert_int_eq(
		    log_ratelimit_take(&rl, 1 + (uint64_t)i * 100, &n), 0);
	ck_assert_uint_eq(rl.suppressed, 7);
	ck_assert_int_eq(log_ratelimit_take(&rl, 999, &n), 0);
	/* Exactly one interval later: through, with the 8 dropped. */
	n = 99;
	ck_assert_int_eq(log_ratelimit_take(&rl, 1000, &n), 1);
	ck_assert_uint_eq(n, 8);
	ck_assert_uint_eq(rl.suppressed, 0);
	/* Nothing dropped since: the next one says so. */
	ck_assert_int_eq(log_ratelimit_take(&rl, 5000, &n), 1);
	ck_assert_uint_eq(n, 0);
	/* A clock behind the last line does not hold lines back forever. */
	ck_assert_int_eq(log_ratelimit_take(&rl, 10, &n), 1);
	/* interval 0: no limit at all. */
	struct log_ratelimit none = {.interval_ms = 0};
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(log_ratelimit_take(&none, 42, &n), 1);
	ck_assert_uint_eq(n, 0);
}
END_TEST

static int
count(const char *hay, const char *needle)
{
	int n = 0;

	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

START_TEST(test_ratelimit_lines)
{
	struct log_ratelimit rl = {.interval_ms = 200},
	                     other = {.interval_ms = 200};
	char err[256], buf[8192];

	ck_assert_int_eq(
	    log_open("imgate-test", path, LOG_LVL_INFO, err, sizeof(err)), 0);
	/* Below the level: neither written nor counted. */
	log_msg_limited(&rl, LOG_LVL_DEBUG, "quiet %d", 0);
	ck_assert_int_eq(rl.primed, 0);
	for (int i = 0; i < 50; i++)
		log_msg_limited(&rl, LOG_LVL_INFO, "flood %d", i);
	/* Another kind has its own budget. */
	log_msg_limited(&other, LOG_LVL_WARN, "other kind");
	usleep(250 * 1000);
	log_msg_limited(&rl, LOG_LVL_INFO, "flood %d", 50);
	log_msg_limited(&rl, LOG_LVL_INFO, "flood %d", 51);
	log_open("imgate-test", "stderr", LOG_LVL_INFO, err, sizeof(err));
	ck_assert_uint_gt(slurp(path, buf, sizeof(buf)), 0);
	ck_assert_ptr_null(strstr(buf, "quiet"));
	ck_assert_int_eq(count(buf, "flood "), 2);
	ck_assert_ptr_nonnull(strstr(buf, "info: flood 0\n"));
	ck_assert_ptr_nonnull(
	    strstr(buf, "info: flood 50 (49 more suppressed)\n"));
	ck_assert_ptr_nonnull(strstr(buf, "warn: other kind\n"));
	ck_assert_uint_eq(rl.suppressed, 1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("log");
	SRunner *sr;
	int failed;

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_level_parse);
	tcase_add_test(tc, test_file_lines);
	tcase_add_test(tc, test_reopen);
	tcase_add_test(tc, test_open_fails);
	tcase_add_test(tc, test_ratelimit_take);
	tcase_add_test(tc, test_ratelimit_lines);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
