/*
 * master: the imgate-comet master process. It owns the config, the
 * listening sockets, the shm segment and the workers' wake-up eventfds,
 * forks the workers and supervises them from one libevent loop (signals
 * arrive as evsignal events: the handlers themselves only set flags).
 */
#ifndef IMGATE_COMET_MASTER_H
#define IMGATE_COMET_MASTER_H

#include <stdint.h>
#include <sys/types.h>

#include <event2/event.h>
#include <event2/http.h>

#include "comet/comet.h"

/* A listening socket the master bound. */
struct lsock {
	uint32_t id; /* unique for the master's life: workers match on it */
	enum listener_kind kind;
	int worker; /* -1: shared by every worker; else its reuseport socket */
	struct comet_addr addr;
	int fd;
};

/* The master's view of one worker slot. */
struct wproc {
	pid_t pid;      /* 0 = not running */
	int ctl;        /* master's end of the control socketpair, or -1 */
	int retiring;   /* told to drain; do not respawn */
	int no_respawn; /* exited with status 2 */
	int fails;      /* consecutive early deaths, for the backoff */
	int hung;       /* SIGKILLed by the watchdog, not reaped yet */
	uint64_t started_ms;
	uint64_t started_mono; /* comet_mono_ms() at fork */
	struct event *respawn_ev;
	struct event *kill_ev; /* SIGKILL when a drain takes too long */
};

struct master {
	struct comet_conf *conf; /* running config (heap) */
	uint32_t generation;     /* bumped on every applied reload */
	struct event_base *base;
	struct shm_seg *shm;
	uint32_t max_workers; /* slots in shm, fixed at start */
	int nworkers;         /* workers that should run */
	struct wproc *w;      /* [max_workers] */
	int *wake_fds;        /* eventfd per slot [max_workers] */

	struct lsock *ls;
	size_t nls;
	uint32_t next_lsock_id;

	struct evhttp *http;
	struct evhttp_bound_socket *http_sock;
	struct comet_addr http_addr;

	struct event *sig_ev[6];
	struct event *watchdog_ev; /* once a second: hung workers */
	int pid_fd;                /* locked pid file, or -1 */
	int ready_fd;              /* daemon readiness pipe, or -1 */
	int stopping;
	int exit_code;

	long fd_limit;   /* RLIMIT_NOFILE after raising it */
	long per_worker; /* connection limit of one worker */
	long capacity;   /* nworkers x per_worker */

	int drop_privs; /* workers setuid to uid/gid after fork */
	uid_t uid;
	gid_t gid;

	uint64_t respawns, reloads, reload_failures, watchdog_kills;
};

/*
 * Run the master with conf (ownership passes); pid_fd is the locked pid
 * file, ready_fd a pipe to write one byte to once workers run (daemon
 * mode) or -1. Returns the process exit code.
 */
int master_run(struct comet_conf *conf, int pid_fd, int ready_fd);

/* The worker count conf asks for (workers = 0: one per CPU). */
int master_conf_workers(const struct comet_conf *conf);

/* listeners.c: bind and listen on a, non-blocking, close-on-exec. */
int listener_bind(const struct comet_addr *a, int reuseport, char *err,
                  size_t errlen);
/* "host:port" ("*:port" for all interfaces) into buf. */
const char *listener_addr_str(const struct comet_addr *a, char *buf,
                              size_t len);
extern const char *const listener_kind_names[LISTENER__COUNT];

/* admin.c: (re)bind the admin HTTP listener to m->conf->admin. */
int admin_bind(struct master *m);
void admin_free(struct master *m);
/*
 * Every configured worker runs and its loop turns (for /healthz); *alive
 * counts those that do.
 */
int master_healthy(const struct master *m, int *alive);

uint64_t comet_now_ms(void);

#endif
