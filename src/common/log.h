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
#include <stdint.h>

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

/*
 * A rate limit for lines a peer can trigger at will (one per bad frame, per
 * refused connection...): at most one line per interval_ms; the lines
 * dropped in between are counted and the next line emitted says how many.
 * One per kind of line, zero-initialised apart from interval_ms; a process
 * (a worker) keeps its own. Counters elsewhere stay exact: this only
 * spares the log.
 */
struct log_ratelimit {
	uint64_t interval_ms;
	uint64_t last_ms;    /* monotonic ms of the last line emitted */
	uint64_t suppressed; /* lines dropped since */
	int primed;          /* a line was emitted already */
};

/*
 * At now_ms (monotonic): 1 if a line may go out, with *suppressed set to
 * the lines dropped since the previous one (and the count reset); 0 if it
 * is dropped (and counted).
 */
int log_ratelimit_take(struct log_ratelimit *rl, uint64_t now_ms,
                       uint64_t *suppressed);

/*
 * log_msg through rl, on CLOCK_MONOTONIC: a line that gets through carries
 * " (N more suppressed)" when lines were dropped before it. A line below
 * the log level neither goes out nor touches rl.
 */
void log_msg_limited(struct log_ratelimit *rl, enum log_level level,
                     const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

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
