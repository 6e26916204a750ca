/*
 * worker: one imgate-comet worker process, and the messages the master
 * sends it over its control socketpair (SOCK_SEQPACKET: one message per
 * send, listener fds attached with SCM_RIGHTS).
 */
#ifndef IMGATE_COMET_WORKER_H
#define IMGATE_COMET_WORKER_H

#include <stdint.h>
#include <sys/types.h>

#include "comet/comet.h"

enum ctl_type {
	CTL_RELOAD = 1, /* new config and listener set */
	CTL_DRAIN,      /* close connections gracefully and exit 0 */
	CTL_REOPEN,     /* reopen log files */
};

/* Listener sockets one worker uses: at most one per kind. */
#define CTL_LSOCK_MAX LISTENER__COUNT

struct ctl_lsock {
	uint32_t id;
	uint32_t kind;
};

/*
 * The fixed head is all CTL_DRAIN and CTL_REOPEN carry; CTL_RELOAD adds the
 * config. Both ends are the same binary, so the struct is sent as is.
 */
struct ctl_msg {
	uint32_t type;
	uint32_t generation;
	int64_t max_conns;
	uint32_t nls;
	struct ctl_lsock ls[CTL_LSOCK_MAX]; /* fds in the same order */
	struct comet_conf conf;
};

#define CTL_HEAD_SIZE offsetof(struct ctl_msg, conf)

/* Everything a freshly forked worker starts from. */
struct worker_boot {
	uint16_t id;
	pid_t master_pid;
	const struct comet_conf *conf;
	uint32_t generation;
	struct shm_seg *shm;
	int ctl_fd;
	const int *wake_fds; /* one per shm worker slot */
	size_t nwake;
	int ls_fd[CTL_LSOCK_MAX];
	struct ctl_lsock ls[CTL_LSOCK_MAX];
	size_t nls;
	long max_conns;
	int drop_privs;
	uid_t uid;
	gid_t gid;
	const char *user;
};

/* Run the worker; never returns. Exit 0 after a drain, 2 on a fatal setup
 * error the master must not retry, 1 on other failures. */
void worker_run(const struct worker_boot *b) __attribute__((noreturn));

#endif
