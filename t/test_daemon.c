/*
 * check suite for src/common/daemon: the shared command line, detaching
 * with the start-up pipe (the exit status the starting command sees) and
 * pid files (locking, stale files, the pid a file names).
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/daemon.h"

static char dir[64];

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/imgate-test-daemon-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
}

static void
teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

static int usage_calls;

static void
count_usage(void)
{
	usage_calls++;
}

/* daemon_getopt's answer: 0 (run), else 100 + the exit status it gave. */
static int
parse(struct daemon_opts *o, int argc, ...)
{
	static char *argv[16];
	va_list ap;

	ck_assert_int_lt(argc, 16);
	va_start(ap, argc);
	for (int i = 0; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	optind = 0; /* glibc: start over */
	opterr = 0;
	if (daemon_getopt(argc, argv, "imgate-x", "/etc/x.conf", count_usage,
	                  o) == 0)
		return 0;
	return 100 + o->status;
}

START_TEST(test_getopt)
{
	struct daemon_opts o;

	ck_assert_int_eq(parse(&o, 1, "x"), 0);
	ck_assert_str_eq(o.conf, "/etc/x.conf");
	ck_assert_int_eq(o.check + o.foreground + o.operands, 0);

	ck_assert_int_eq(parse(&o, 5, "x", "-c", "a.conf", "-f", "-t"), 0);
	ck_assert_str_eq(o.conf, "a.conf");
	ck_assert_int_eq(o.check, 1);
	ck_assert_int_eq(o.foreground, 1);
	ck_assert_int_eq(o.operands, 0);

	ck_assert_int_eq(parse(&o, 4, "x", "-ft", "extra", "more"), 0);
	ck_assert_int_eq(o.operands, 2);
	ck_assert_int_eq(usage_calls, 0);

	/* -v stops the parse: what follows it is not looked at. */
	ck_assert_int_eq(parse(&o, 3, "x", "-v", "-q"), 100);
	ck_assert_int_eq(usage_calls, 0);
	ck_assert_int_eq(parse(&o, 3, "x", "-q", "-v"),
	                 100 + DAEMON_EXIT_CONFIG);
	ck_assert_int_eq(usage_calls, 1);
	ck_assert_int_eq(parse(&o, 2, "x", "-h"), 100 + DAEMON_EXIT_CONFIG);
	ck_assert_int_eq(parse(&o, 2, "x", "-c"), 100 + DAEMON_EXIT_CONFIG);
	ck_assert_int_eq(usage_calls, 3);
}
END_TEST

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

enum word { SAY_READY, SAY_CONFIG, SAY_FAILED, SAY_NOTHING };

/*
 * Start a process that detaches; its daemon checks its surroundings,
 * reports them on a pipe, waits 200 ms and then says `word`. Returns the
 * exit status of the starting process, *took how long it ran.
 */
static int
detach_and(enum word word, double *took, char *report, size_t replen)
{
	int rep[2], status;
	double t0 = now_s();
	ssize_t n;
	pid_t pid;

	ck_assert_int_eq(pipe(rep), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		char err[256], cwd[64], line[512], devnull[64];
		struct stat a, b;
		int fd;

		close(rep[0]);
		fd = daemon_detach(0, err, sizeof(err));
		/* Only the daemon gets here. */
		if (fd == -1)
			_exit(99);
		if (getcwd(cwd, sizeof(cwd)) == NULL)
			snprintf(cwd, sizeof(cwd), "?");
		snprintf(devnull, sizeof(devnull), "%s",
		         fstat(STDIN_FILENO, &a) == 0 &&
		                 stat("/dev/null", &b) == 0 &&
		                 a.st_rdev == b.st_rdev
		             ? "null"
		             : "other");
		snprintf(line, sizeof(line), "sid=%d cwd=%s stdin=%s err=%s",
		         getsid(0) == getpid(), cwd, devnull, err);
		if (write(rep[1], line, strlen(line)) < 0)
			_exit(98);
		close(rep[1]);
		usleep(200 * 1000);
		switch (word) {
		case SAY_READY:
			daemon_ready(&fd, 0);
			break;
		case SAY_CONFIG:
			daemon_ready(&fd, DAEMON_EXIT_CONFIG);
			break;
		case SAY_FAILED:
			daemon_ready(&fd, 1);
			break;
		case SAY_NOTHING:
			break;
		}
		if (fd != -1)
			_exit(97);
		_exit(0);
	}
	close(rep[1]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	*took = now_s() - t0;
	n = read(rep[0], report, replen - 1);
	report[n > 0 ? n : 0] = '\0';
	close(rep[0]);
	ck_assert(WIFEXITED(status));
	return WEXITSTATUS(status);
}

START_TEST(test_detach)
{
	static const struct {
		enum word word;
		int status;
	} cases[] = {
	    {SAY_READY, 0},
	    {SAY_CONFIG, DAEMON_EXIT_CONFIG},
	    {SAY_FAILED, 1},
	    {SAY_NOTHING, 1},
	};
	char report[256];
	double took;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ck_assert_int_eq(
		    detach_and(cases[i].word, &took, report, sizeof(report)),
		    cases[i].status);
		/* The starter waited for the word, not just for the fork. */
		ck_assert_msg(took >= 0.15, "case %zu: took %.3f s", i, took);
		ck_assert_str_eq(report, "sid=1 cwd=/ stdin=null err=");
	}
}
END_TEST

START_TEST(test_ready_foreground)
{
	int fd = -1;

	ck_assert_int_eq(daemon_ready(&fd, 0), 0);
	ck_assert_int_eq(daemon_ready(&fd, 1), 0);
	ck_assert_int_eq(fd, -1);
}
END_TEST

START_TEST(test_ready_parent_gone)
{
	int p[2];

	ck_assert_int_eq(pipe(p), 0);
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	ck_assert_int_eq(daemon_ready(&p[1], 0), -1);
	ck_assert_int_eq(errno, EPIPE);
	ck_assert_int_eq(p[1], -1);
}
END_TEST

static char *
slurp(const char *path)
{
	static char buf[128];
	ssize_t n;
	int fd = open(path, O_RDONLY);

	ck_assert_int_ne(fd, -1);
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

START_TEST(test_pidfile_lock)
{
	char path[128], err[256], want[256], mine[32];
	int fd, fd2;

	/* Directories that do not exist yet are made. */
	snprintf(path, sizeof(path), "%s/run/imgate/x.pid", dir);
	fd = daemon_pidfile_lock(path, err, sizeof(err));
	ck_assert_msg(fd != -1, "%s", err);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ck_assert_int_eq(daemon_pidfile_write(fd), 0);
	snprintf(mine, sizeof(mine), "%ld\n", (long)getpid());
	ck_assert_str_eq(slurp(path), mine);

	/* Held: refused, naming the holder; the file is left as it was. */
	fd2 = daemon_pidfile_lock(path, err, sizeof(err));
	ck_assert_int_eq(fd2, -1);
	snprintf(want, sizeof(want), "already running (pid %ld holds %s)",
	         (long)getpid(), path);
	ck_assert_str_eq(err, want);
	ck_assert_str_eq(slurp(path), mine);

	/* Longer content is replaced, not overwritten in place. */
	ck_assert_int_eq(pwrite(fd, "123456789012\n", 13, 0), 13);
	ck_assert_int_eq(daemon_pidfile_write(fd), 0);
	ck_assert_str_eq(slurp(path), mine);

	/* Released (as by a killed daemon): the stale file is taken. */
	close(fd);
	fd2 = daemon_pidfile_lock(path, err, sizeof(err));
	ck_assert_int_ne(fd2, -1);
	close(fd2);

	/* A holder whose file names no pid. */
	snprintf(path, sizeof(path), "%s/empty.pid", dir);
	fd = daemon_pidfile_lock(path, err, sizeof(err));
	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(daemon_pidfile_lock(path, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "already running (pid ? holds %s)", path);
	ck_assert_str_eq(err, want);
	close(fd);
}
END_TEST

START_TEST(test_pidfile_open_fails)
{
	char path[128], err[512];

	/* A directory in the way is a file: the mkdir failure is named. */
	snprintf(path, sizeof(path), "%s/file", dir);
	close(open(path, O_WRONLY | O_CREAT, 0644));
	snprintf(path, sizeof(path), "%s/file/sub/x.pid", dir);
	ck_assert_int_eq(daemon_pidfile_open(path, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "pid file "));
	ck_assert_ptr_nonnull(strstr(err, path));
	ck_assert_ptr_nonnull(strstr(err, "(mkdir "));
	ck_assert_int_eq(daemon_pidfile_lock(path, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "Not a directory"));

	/* Only the file cannot be opened (a directory): no mkdir part. */
	ck_assert_int_eq(daemon_pidfile_open(dir, err, sizeof(err)), -1);
	ck_assert_ptr_nonnull(strstr(err, "Is a directory"));
	ck_assert_ptr_null(strstr(err, "mkdir"));
}
END_TEST

static void
put(const char *path, const char *text)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

START_TEST(test_pidfile_running)
{
	char path[128], text[32];
	pid_t child;
	int status;

	snprintf(path, sizeof(path), "%s/r.pid", dir);
	ck_assert_int_eq(daemon_pidfile_running(path), 0); /* no file */
	ck_assert_int_eq(daemon_pidfile_running(""), 0);
	put(path, "");
	ck_assert_int_eq(daemon_pidfile_running(path), 0);
	put(path, "not a pid\n");
	ck_assert_int_eq(daemon_pidfile_running(path), 0);
	put(path, "0\n");
	ck_assert_int_eq(daemon_pidfile_running(path), 0);
	put(path, "-1\n");
	ck_assert_int_eq(daemon_pidfile_running(path), 0);
	put(path, "99999999999999999999\n");
	ck_assert_int_eq(daemon_pidfile_running(path), 0);
	/* This process: a restart reading its own file. */
	snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	put(path, text);
	ck_assert_int_eq(daemon_pidfile_running(path), 0);

	child = fork();
	ck_assert_int_ne(child, -1);
	if (child == 0) {
		pause();
		_exit(0);
	}
	snprintf(text, sizeof(text), "%ld", (long)child); /* no newline */
	put(path, text);
	ck_assert_int_eq(daemon_pidfile_running(path), child);
	kill(child, SIGKILL);
	ck_assert_int_eq(waitpid(child, &status, 0), child);
	/* Stale: the process is gone. */
	ck_assert_int_eq(daemon_pidfile_running(path), 0);
}
END_TEST

static Suite *
daemon_suite(void)
{
	Suite *s = suite_create("daemon");
	TCase *tc = tcase_create("daemon");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_getopt);
	tcase_add_test(tc, test_detach);
	tcase_add_test(tc, test_ready_foreground);
	tcase_add_test(tc, test_ready_parent_gone);
	tcase_add_test(tc, test_pidfile_lock);
	tcase_add_test(tc, test_pidfile_open_fails);
	tcase_add_test(tc, test_pidfile_running);
	tcase_set_timeout(tc, 20);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(daemon_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
