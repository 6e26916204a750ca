/*
 * log: the daemons' one way to say something. Lines go to stderr, a file
 * or syslog; every line carries a timestamp, the level, the pid and the
 * worker id (-1 = master, "-" printed) so a node's interleaved output can
 * be read back per process.
 *
 * Library layers (shm/, rpc/) never log: they fill an error buffer and the
 * daemon logs at the point of failure.
 */
#ifndef IMGATE_LOG_H
#define IMGATE_LOG_H

#include <stddef.h>

enum log_level {
	LOG_LVL_ERROR = 0,
	LOG_LVL_WARN,
	LOG_LVL_NOTICE,
	LOG_LVL_INFO,
	LOG_LVL_DEBUG,
};

/*
 * Open the log. target is "stderr", "syslog" or a file path (appended to).
 * ident names the program in syslog and in every line. Returns 0, or -1
 * with err filled; on failure the previous target stays in use.
 */
int log_open(const char *ident, const char *target, enum log_level level,
             char *err, size_t errlen);

/* Reopen a file target (SIGUSR1, after logrotate moved it). */
int log_reopen(void);

void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* The worker id printed on every line; -1 for the master. */
void log_set_worker(int worker_id);

/* Parse "error", "warn", "notice", "info", "debug". 0 or -1. */
int log_level_parse(const char *s, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Log at error level and exit with status 1. */
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));

#define log_error(...)  log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...)   log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_notice(...) log_msg(LOG_LVL_NOTICE, __VA_ARGS__)
#define log_info(...)   log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...)                                       \
	do {                                                 \
		if (log_get_level() >= LOG_LVL_DEBUG)        \
			log_msg(LOG_LVL_DEBUG, __VA_ARGS__); \
	} while (0)

#endif
