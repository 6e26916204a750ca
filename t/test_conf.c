/* check suite for src/common/conf: the config value parsers. */
#include "config.h"

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/conf.h"

START_TEST(test_bool)
{
	int v = -1;

	ck_assert_int_eq(conf_parse_bool("yes", &v), 0);
	ck_assert_int_eq(v, 1);
	ck_assert_int_eq(conf_parse_bool("Off", &v), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(conf_parse_bool("TRUE", &v), 0);
	ck_assert_int_eq(v, 1);
	ck_assert_int_eq(conf_parse_bool("0", &v), 0);
	ck_assert_int_eq(v, 0);
	v = 7;
	ck_assert_int_eq(conf_parse_bool("maybe", &v), -1);
	ck_assert_int_eq(conf_parse_bool("", &v), -1);
	ck_assert_int_eq(v, 7);
}
END_TEST

START_TEST(test_long)
{
	long v = 0;

	ck_assert_int_eq(conf_parse_long("42", 0, 100, &v), 0);
	ck_assert_int_eq(v, 42);
	ck_assert_int_eq(conf_parse_long(" 7 ", 0, 100, &v), 0);
	ck_assert_int_eq(v, 7);
	ck_assert_int_eq(conf_parse_long("-1", -5, 5, &v), 0);
	ck_assert_int_eq(v, -1);
	v = 3;
	ck_assert_int_eq(conf_parse_long("101", 0, 100, &v), -1);
	ck_assert_int_eq(conf_parse_long("-1", 0, 100, &v), -1);
	ck_assert_int_eq(conf_parse_long("12abc", 0, 100, &v), -1);
	ck_assert_int_eq(conf_parse_long("", 0, 100, &v), -1);
	ck_assert_int_eq(conf_parse_long("abc", 0, 100, &v), -1);
	ck_assert_int_eq(conf_parse_long("99999999999999999999999", 0, 100, &v),
	                 -1);
	ck_assert_int_eq(v, 3);
}
END_TEST

START_TEST(test_duration)
{
	long ms = 0;

	ck_assert_int_eq(conf_parse_duration_ms("5", &ms), 0);
	ck_assert_int_eq(ms, 5000);
	ck_assert_int_eq(conf_parse_duration_ms("5s", &ms), 0);
	ck_assert_int_eq(ms, 5000);
	ck_assert_int_eq(conf_parse_duration_ms("250ms", &ms), 0);
	ck_assert_int_eq(ms, 250);
	ck_assert_int_eq(conf_parse_duration_ms("2m", &ms), 0);
	ck_assert_int_eq(ms, 120000);
	ck_assert_int_eq(conf_parse_duration_ms("1h", &ms), 0);
	ck_assert_int_eq(ms, 3600000);
	ck_assert_int_eq(conf_parse_duration_ms("0", &ms), 0);
	ck_assert_int_eq(ms, 0);
	ms = 9;
	ck_assert_int_eq(conf_parse_duration_ms("-1s", &ms), -1);
	ck_assert_int_eq(conf_parse_duration_ms("5x", &ms), -1);
	ck_assert_int_eq(conf_parse_duration_ms("s", &ms), -1);
	ck_assert_int_eq(conf_parse_duration_ms("9223372036854775807h", &ms),
	                 -1);
	ck_assert_int_eq(ms, 9);
}
END_TEST

START_TEST(test_size)
{
	size_t n = 0;

	ck_assert_int_eq(conf_parse_size("4096", &n), 0);
	ck_assert_uint_eq(n, 4096);
	ck_assert_int_eq(conf_parse_size("64k", &n), 0);
	ck_assert_uint_eq(n, 65536);
	ck_assert_int_eq(conf_parse_size("16M", &n), 0);
	ck_assert_uint_eq(n, 16u << 20);
	ck_assert_int_eq(conf_parse_size("1g", &n), 0);
	ck_assert_uint_eq(n, 1u << 30);
	ck_assert_int_eq(conf_parse_size("256KiB", &n), 0);
	ck_assert_uint_eq(n, 256u << 10);
	ck_assert_int_eq(conf_parse_size("8kb", &n), 0);
	ck_assert_uint_eq(n, 8192);
	n = 1;
	ck_assert_int_eq(conf_parse_size("-1", &n), -1);
	ck_assert_int_eq(conf_parse_size("12q", &n), -1);
	ck_assert_int_eq(conf_parse_size("12kx", &n), -1);
	ck_assert_int_eq(conf_parse_size("", &n), -1);
	ck_assert_uint_eq(n, 1);
}
END_TEST

START_TEST(test_addr)
{
	char host[64];
	int port = 0;

	ck_assert_int_eq(
	    conf_parse_addr("127.0.0.1:3101", host, sizeof(host), &port), 0);
	ck_assert_str_eq(host, "127.0.0.1");
	ck_assert_int_eq(port, 3101);
	ck_assert_int_eq(conf_parse_addr(":3102", host, sizeof(host), &port),
	                 0);
	ck_assert_str_eq(host, "");
	ck_assert_int_eq(port, 3102);
	ck_assert_int_eq(
	    conf_parse_addr("[::1]:6379", host, sizeof(host), &port), 0);
	ck_assert_str_eq(host, "::1");
	ck_assert_int_eq(port, 6379);
	ck_assert_int_eq(
	    conf_parse_addr("localhost:80", host, sizeof(host), &port), 0);
	ck_assert_str_eq(host, "localhost");
	port = 5;
	ck_assert_int_eq(
	    conf_parse_addr("127.0.0.1", host, sizeof(host), &port), -1);
	ck_assert_int_eq(conf_parse_addr("h:0", host, sizeof(host), &port), -1);
	ck_assert_int_eq(conf_parse_addr("h:65536", host, sizeof(host), &port),
	                 -1);
	ck_assert_int_eq(conf_parse_addr("[::1:80", host, sizeof(host), &port),
	                 -1);
	ck_assert_int_eq(
	    conf_parse_addr("averyveryverylonghostname:1", host, 8, &port), -1);
	ck_assert_int_eq(port, 5);
}
END_TEST

static Suite *
conf_suite(void)
{
	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("parse");

	tcase_add_test(tc, test_bool);
	tcase_add_test(tc, test_long);
	tcase_add_test(tc, test_duration);
	tcase_add_test(tc, test_size);
	tcase_add_test(tc, test_addr);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(conf_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
