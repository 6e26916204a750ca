#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/daemon.h"

/*
 * The start-up pipe carries one byte: '1' when the daemon is ready, else
 * the digit of the exit status it failed with. '1' is taken by "ready",
 * so a failure with status 1 is told by closing the pipe without a word.
 */
#define READY_BYTE '1'

int
daemon_getopt(int argc, char **argv, const char *prog, const char *defconf,
              void (*usage)(void), struct daemon_opts *o)
{
	int ch;

	memset(o, 0, sizeof(*o));
	o->conf = defconf;
	while ((ch = getopt(argc, argv, "c:ftvh")) != -1) {
		switch (ch) {
		case 'c':
			o->conf = optarg;
			break;
		case 'f':
			o->foreground = 1;
			break;
		case 't':
			o->check = 1;
			break;
		case 'v':
			printf("%s %s\n", prog, PACKAGE_VERSION);
			o->status = 0;
			return -1;
		default:
			usage();
			o->status = DAEMON_EXIT_CONFIG;
			return -1;
		}
	}
	o->operands = argc - optind;
	return 0;
}

/* The parent's side: wait for the child's word, exit with its status. */
static void __attribute__((noreturn)) wait_ready(int fd)
{
	ssize_t r;
	char c = 0;

	do
		r = read(fd, &c, 1);
	while (r == -1 && errno == EINTR);
	/* _exit: stdio buffers and atexit handlers are the child's now. */
	if (r == 1 && c == READY_BYTE)
		_exit(0);
	_exit(r == 1 && c >= '2' && c <= '9' ? c - '0' : 1);
}

int
daemon_detach(int keep_stderr, char *err, size_t errlen)
{
	int p[2], fd;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) == -1) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	pid = fork();
	if (pid == -1) {
		snprintf(err, errlen, "fork: %s", strerror(errno));
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid > 0) {
		close(p[1]);
		wait_ready(p[0]);
	}
	close(p[0]);
	err[0] = '\0';
	if (setsid() == -1)
		snprintf(err, errlen, "setsid: %s", strerror(errno));
	if (chdir("/") == -1)
		snprintf(err, errlen, "chdir /: %s", strerror(errno));
	/* Not close-on-exec: it may land on 0, 1 or 2 and stay there. */
	fd = open("/dev/null", O_RDWR);
	if (fd != -1) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		if (!keep_stderr)
			dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
	return p[1];
}

int
daemon_ready(int *fd, int status)
{
	char c = status == 0 ? READY_BYTE : (char)('0' + status);
	int rc = 0, saved;

	if (*fd == -1)
		return 0;
	if ((status == 0 || (status >= 2 && status <= 9)) &&
	    write(*fd, &c, 1) != 1)
		rc = -1;
	saved = errno;
	close(*fd);
	*fd = -1;
	errno = saved;
	return rc;
}

/* mkdir -p of path's directories; the first failure goes to err. */
static void
make_dirs(const char *path, char *err, size_t errlen)
{
	char dir[PATH_MAX], *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	for (slash = strchr(dir + 1, '/'); slash != NULL;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
			snprintf(err, errlen, "mkdir %s: %s", dir,
			         strerror(errno));
			return;
		}
		*slash = '/';
	}
}

int
daemon_pidfile_open(const char *path, char *err, size_t errlen)
{
	char why[PATH_MAX + 64] = "";
	int fd;

	make_dirs(path, why, sizeof(why));
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd == -1) {
		int e = errno;

		/* A directory that could not be made is the cause. */
		snprintf(err, errlen, "pid file %s: %s%s%s%s", path,
		         strerror(e), why[0] != '\0' ? " (" : "", why,
		         why[0] != '\0' ? ")" : "");
		errno = e;
	}
	return fd;
}

/* The pid at the start of the open pid file, or 0. */
static long
read_pid(int fd)
{
	char buf[32];
	ssize_t n;
	long pid;

	n = pread(fd, buf, sizeof(buf) - 1, 0);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	pid = strtol(buf, NULL, 10);
	return pid > 0 && pid <= INT_MAX ? pid : 0;
}

int
daemon_pidfile_lock(const char *path, char *err, size_t errlen)
{
	char holder[32] = "?";
	long pid;
	int fd;

	if ((fd = daemon_pidfile_open(path, err, errlen)) == -1)
		return -1;
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		if ((pid = read_pid(fd)) > 0)
			snprintf(holder, sizeof(holder), "%ld", pid);
		snprintf(err, errlen, "already running (pid %s holds %s)",
		         holder, path);
		close(fd);
		return -1;
	}
	return fd;
}

int
daemon_pidfile_write(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -1;
	return 0;
}

pid_t
daemon_pidfile_running(const char *path)
{
	long pid;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	pid = read_pid(fd);
	close(fd);
	if (pid > 0 && pid != (long)getpid() &&
	    (kill((pid_t)pid, 0) == 0 || errno == EPERM))
		return (pid_t)pid;
	return 0;
}
