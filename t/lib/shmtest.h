/*
 * shmtest: what the shm check suites share. A failed assertion ends a
 * test's process without its teardown, so each runner names its segments
 * "/<stem>-<runner pid>-..." and removes what is left once all ran.
 */
#ifndef IMGATE_T_SHMTEST_H
#define IMGATE_T_SHMTEST_H

#include <check.h>

/*
 * Run suite s (ownership passes), then unlink every shm segment named
 * "/<stem>-<this process's pid>-*". EXIT_SUCCESS when every test passed,
 * else EXIT_FAILURE.
 */
int shmtest_run(Suite *s, const char *stem);

/* Unlink every shm segment named "/<prefix>*" (Linux: under /dev/shm). */
void shmtest_unlink_prefix(const char *prefix);

#endif
