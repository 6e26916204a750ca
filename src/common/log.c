#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

enum log_target { TARGET_STDERR, TARGET_FILE, TARGET_SYSLOG };

static enum log_target log_target = TARGET_STDERR;
static enum log_level log_level = LOG_LVL_INFO;
static int log_fd = STDERR_FILENO;
static int log_worker = -1;
static char log_ident[32] = "imgate";
static char log_path[256];

static const char *const level_names[] = {"error", "warn", "notice", "info",
                                          "debug"};
static const int level_syslog[] = {LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO,
                                   LOG_DEBUG};

int
log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]);
	     i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = LOG_LVL_WARN;
		return 0;
	}
	return -1;
}

static int
open_file(const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);

	if (fd == -1)
		snprintf(err, errlen, "open %s: %s", path, strerror(errno));
	return fd;
}

int
log_open(const char *ident, const char *target, enum log_level level, char *err,
         size_t errlen)
{
	int fd;

	if (strcmp(target, "stderr") == 0) {
		fd = STDERR_FILENO;
	} else if (strcmp(target, "syslog") == 0) {
		fd = -1;
	} else {
		if (strlen(target) >= sizeof(log_path)) {
			snprintf(err, errlen, "log path too long: %s", target);
			return -1;
		}
		fd = open_file(target, err, errlen);
		if (fd == -1)
			return -1;
	}
	if (log_target == TARGET_FILE && log_fd != fd)
		close(log_fd);
	if (log_target == TARGET_SYSLOG)
		closelog();

	snprintf(log_ident, sizeof(log_ident), "%s", ident);
	log_level = level;
	if (fd == -1) {
		log_target = TARGET_SYSLOG;
		log_fd = -1;
		openlog(log_ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
	} else if (fd == STDERR_FILENO) {
		log_target = TARGET_STDERR;
		log_fd = fd;
	} else {
		log_target = TARGET_FILE;
		log_fd = fd;
		snprintf(log_path, sizeof(log_path), "%s", target);
	}
	return 0;
}

int
log_reopen(void)
{
	char err[512];
	int fd;

	if (log_target != TARGET_FILE)
		return 0;
	fd = open_file(log_path, err, sizeof(err));
	if (fd == -1) {
		log_error("log reopen: %s", err);
		return -1;
	}
	/* dup2 keeps the descriptor number: no window where lines are lost. */
	if (dup2(fd, log_fd) == -1) {
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

void
log_set_worker(int worker_id)
{
	log_worker = worker_id;
}

static void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048], wid[16];
	struct timeval tv;
	struct tm tm;
	size_t n;
	int len;

	if (level > log_level)
		return;
	if (log_worker >= 0)
		snprintf(wid, sizeof(wid), "w%d", log_worker);
	else
		snprintf(wid, sizeof(wid), "-");

	if (log_target == TARGET_SYSLOG) {
		len = snprintf(line, sizeof(line), "[%s] %s ", wid,
		               level_names[level]);
		vsnprintf(line + len, sizeof(line) - (size_t)len, fmt, ap);
		syslog(level_syslog[level], "%s", line);
		return;
	}

	gettimeofday(&tv, NULL);
	localtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	len = snprintf(line + n, sizeof(line) - n,
	               ".%03ld %s[%ld] %s %s: ", (long)tv.tv_usec / 1000,
	               log_ident, (long)getpid(), wid, level_names[level]);
	n += (size_t)len;
	len = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	if (len < 0)
		return;
	n += (size_t)len;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line: lines from many processes never interleave. */
	if (write(log_fd, line, n) == -1) {
		/* Nowhere left to report it. */
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

int
log_ratelimit_take(struct log_ratelimit *rl, uint64_t now_ms,
                   uint64_t *suppressed)
{
	/* A clock that went back (it cannot, on CLOCK_MONOTONIC) passes. */
	if (rl->primed && now_ms >= rl->last_ms &&
	    now_ms - rl->last_ms < rl->interval_ms) {
		rl->suppressed++;
		return 0;
	}
	rl->primed = 1;
	rl->last_ms = now_ms;
	*suppressed = rl->suppressed;
	rl->suppressed = 0;
	return 1;
}

void
log_msg_limited(struct log_ratelimit *rl, enum log_level level, const char *fmt,
                ...)
{
	struct timespec ts;
	uint64_t dropped;
	char text[1536];
	va_list ap;

	if (level > log_level)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (!log_ratelimit_take(
	        rl, (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000,
	        &dropped))
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (dropped > 0)
		log_msg(level, "%s (%llu more suppressed)", text,
		        (unsigned long long)dropped);
	else
		log_msg(level, "%s", text);
}

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_ERROR, fmt, ap);
	va_end(ap);
	exit(1);
}
