/* check suite for src/common/log: levels, line format, reopen. */
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
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
