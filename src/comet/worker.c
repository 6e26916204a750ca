/*
 * worker: one imgate-comet worker process. It accepts from the listening
 * sockets the master bound, hands every client socket to the session
 * layer, and obeys its master over the control socketpair (reload, drain,
 * reopen logs). One process, one thread, one event base: the state below
 * is this process's own.
 */
#include "config.h"

#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/listener.h>

#include "comet/worker.h"

/* How long accepting stays paused before the worker looks again. */
#define PAUSE_MS 100

struct wlistener {
	uint32_t id;
	enum listener_kind kind;
	struct evconnlistener *lev;
};

static struct worker W;
static pid_t master_pid;
static uint32_t generation;
static struct wlistener wl[CTL_LSOCK_MAX];
static size_t nwl;
static int paused;
static int draining;
static struct event *resume_ev, *ctl_ev, *wake_ev, *hk_ev;
static struct event *sigterm_ev, *sigusr1_ev;
static int ctl_fd = -1;
static const int *wake_fds;
static size_t nwake;

static void drain_start(const char *why);

/*
 * The master's watchdog reads this: a loop that stops turning (SIGSTOP,
 * an endless loop, a blocking call) stops stamping and gets killed after
 * [server] worker_timeout.
 */
static void
heartbeat(void)
{
	__atomic_store_n(&W.slot->alive_ms, comet_mono_ms(), __ATOMIC_RELAXED);
}

void
worker_wake(uint16_t worker_id)
{
	uint64_t one = 1;

	if (wake_fds == NULL || worker_id >= nwake)
		return;
	/* EAGAIN means the counter is already huge: the target will wake. */
	if (write(wake_fds[worker_id], &one, sizeof(one)) == -1) {
	}
}

static void
listeners_enable(int on)
{
	for (size_t i = 0; i < nwl; i++) {
		if (on)
			evconnlistener_enable(wl[i].lev);
		else
			evconnlistener_disable(wl[i].lev);
	}
}

/*
 * Stop accepting for a moment: at the connection limit the kernel keeps
 * new clients in the backlog (or another worker takes them); on EMFILE an
 * enabled listener would wake the loop forever without progress.
 */
static void
accept_pause(const char *why)
{
	struct timeval tv = {0, PAUSE_MS * 1000};

	if (!paused) {
		paused = 1;
		listeners_enable(0);
		shm_counter_add(W.slot, SHM_C_ACCEPT_PAUSED, 1);
		log_info("accept paused: %s", why);
	}
	evtimer_add(resume_ev, &tv);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct timeval tv = {0, PAUSE_MS * 1000};

	if (draining || !paused)
		return;
	if ((long)sess_count(&W) >= W.max_conns) {
		evtimer_add(resume_ev, &tv);
		return;
	}
	paused = 0;
	listeners_enable(1);
	log_info("accept resumed");
}

static void
accept_cb(struct evconnlistener *lev, evutil_socket_t fd, struct sockaddr *sa,
          int salen, void *arg)
{
	struct wlistener *l = arg;

	if (draining) {
		evutil_closesocket(fd);
		return;
	}
	shm_counter_add(W.slot, SHM_C_CONN_ACCEPTED, 1);
	if ((long)sess_count(&W) >= W.max_conns) {
		/* Accepted in the same burst that reached the limit. */
		shm_counter_add(W.slot, SHM_C_CONN_REFUSED_LIMIT, 1);
		evutil_closesocket(fd);
		accept_pause("connection limit");
		return;
	}
	sess_accept(&W, fd, sa, (socklen_t)salen, l->kind);
	if ((long)sess_count(&W) >= W.max_conns)
		accept_pause("connection limit");
}

static void
accept_error_cb(struct evconnlistener *lev, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();

	if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
		accept_pause(evutil_socket_error_to_string(err));
		return;
	}
	log_warn("accept: %s", evutil_socket_error_to_string(err));
}

static int
listener_add(uint32_t id, enum listener_kind kind, int fd)
{
	struct wlistener *l;

	if (nwl >= CTL_LSOCK_MAX) {
		close(fd);
		return -1;
	}
	l = &wl[nwl];
	l->id = id;
	l->kind = kind;
	/* backlog 0: the master already called listen(). */
	l->lev = evconnlistener_new(
	    W.base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	    0, fd);
	if (l->lev == NULL) {
		log_error("evconnlistener_new: %s", strerror(errno));
		close(fd);
		return -1;
	}
	evconnlistener_set_error_cb(l->lev, accept_error_cb);
	if (paused || draining)
		evconnlistener_disable(l->lev);
	nwl++;
	return 0;
}

/*
 * The listener callbacks point into wl[], so removal frees the listener
 * and rebuilds the survivors' callback arguments.
 */
static void
listener_remove(size_t i)
{
	evconnlistener_free(wl[i].lev);
	memmove(&wl[i], &wl[i + 1], (nwl - i - 1) * sizeof(wl[0]));
	nwl--;
	for (size_t j = i; j < nwl; j++)
		evconnlistener_set_cb(wl[j].lev, accept_cb, &wl[j]);
}

static void
listeners_free(void)
{
	while (nwl > 0)
		listener_remove(nwl - 1);
}

static void
apply_reload(const struct ctl_msg *msg, const int *fds, size_t nfds)
{
	struct comet_conf *old = (struct comet_conf *)W.conf, *nc;
	char err[512];
	size_t i, j;

	nc = malloc(sizeof(*nc));
	if (nc == NULL) {
		log_error("reload: out of memory; keeping the old config");
		for (i = 0; i < nfds; i++)
			close(fds[i]);
		return;
	}
	*nc = msg->conf;
	if (strcmp(old->log_target, nc->log_target) != 0 &&
	    log_open("imgate-comet", nc->log_target, nc->log_level, err,
	             sizeof(err)) == -1)
		log_error("reload: log %s", err);
	log_set_level(nc->log_level);

	/* Listeners the master no longer sends are gone (or moved). */
	for (i = 0; i < nwl;) {
		for (j = 0; j < msg->nls; j++)
			if (msg->ls[j].id == wl[i].id)
				break;
		if (j == msg->nls) {
			log_info("stop accepting on listener %u",
			         (unsigned)wl[i].id);
			listener_remove(i);
		} else {
			i++;
		}
	}
	for (j = 0; j < msg->nls; j++) {
		for (i = 0; i < nwl; i++)
			if (wl[i].id == msg->ls[j].id)
				break;
		if (i < nwl || draining) {
			close(fds[j]);
			continue;
		}
		if (listener_add(msg->ls[j].id,
		                 (enum listener_kind)msg->ls[j].kind,
		                 fds[j]) == 0)
			log_info("accepting on new listener %u",
			         (unsigned)msg->ls[j].id);
	}

	W.conf = nc;
	W.max_conns = (long)msg->max_conns;
	generation = msg->generation;
	sess_reload(&W, old);
	free(old);
	/* The time a large reload took is not silence. */
	heartbeat();
	log_info("config generation %u applied (max %ld connections)",
	         (unsigned)generation, W.max_conns);
	if (paused && !draining)
		resume_cb(-1, 0, NULL);
}

static void
ctl_cb(evutil_socket_t fd, short what, void *arg)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_LSOCK_MAX)];
		struct cmsghdr align;
	} cbuf;
	struct ctl_msg *msg;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *cm;
	int fds[CTL_LSOCK_MAX];
	size_t nfds = 0, i;
	ssize_t n;

	msg = malloc(sizeof(*msg));
	if (msg == NULL) {
		log_error("control message: out of memory");
		return;
	}
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = msg;
	iov.iov_len = sizeof(*msg);
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = cbuf.buf;
	mh.msg_controllen = sizeof(cbuf.buf);
	n = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC);
	if (n == -1) {
		if (errno != EAGAIN && errno != EINTR) {
			log_error("control socket: %s", strerror(errno));
			drain_start("control socket failed");
		}
		free(msg);
		return;
	}
	if (n == 0) {
		free(msg);
		event_del(ctl_ev);
		drain_start("master exited");
		return;
	}
	for (cm = CMSG_FIRSTHDR(&mh); cm != NULL; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t cnt = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		for (i = 0; i < cnt && nfds < CTL_LSOCK_MAX; i++)
			memcpy(&fds[nfds++], CMSG_DATA(cm) + i * sizeof(int),
			       sizeof(int));
	}
	if ((size_t)n < CTL_HEAD_SIZE || (mh.msg_flags & MSG_CTRUNC) ||
	    (mh.msg_flags & MSG_TRUNC)) {
		log_error("control message: malformed (%zd bytes)", n);
		goto drop;
	}
	switch (msg->type) {
	case CTL_RELOAD:
		if ((size_t)n != sizeof(*msg) || msg->nls > CTL_LSOCK_MAX ||
		    msg->nls != nfds) {
			log_error("control message: bad reload (%zd bytes, "
			          "%zu fds)",
			          n, nfds);
			goto drop;
		}
		apply_reload(msg, fds, nfds);
		free(msg);
		return;
	case CTL_DRAIN:
		drain_start("master asked");
		break;
	case CTL_REOPEN:
		/* The master created the file for us first (master.c). */
		if (log_reopen() == 0)
			log_info("log file reopened");
		break;
	default:
		log_error("control message: unknown type %u",
		          (unsigned)msg->type);
		break;
	}
drop:
	for (i = 0; i < nfds; i++)
		close(fds[i]);
	free(msg);
}

static void
take_kicks(void)
{
	uint32_t ids[64];
	size_t n;

	while ((n = shm_worker_take_kicks(W.shm, W.id, ids, 64)) > 0) {
		for (size_t i = 0; i < n; i++)
			sess_kick(&W, ids[i]);
		if (n < 64)
			break;
	}
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	uint64_t v;

	if (read(fd, &v, sizeof(v)) == -1 && errno != EAGAIN)
		log_warn("wake eventfd: %s", strerror(errno));
	take_kicks();
}

/*
 * Once a second: the heartbeat, kicks that found the eventfd but not the
 * mailbox, and the master's death if the parent-death signal was missed
 * (it fires on the parent thread's exit, which could precede our prctl).
 */
static void
housekeeping_cb(evutil_socket_t fd, short what, void *arg)
{
	heartbeat();
	take_kicks();
	if (getppid() != master_pid)
		drain_start("master is gone");
}

static void
drain_done(struct worker *w)
{
	event_base_loopexit(W.base, NULL);
}

static void
drain_start(const char *why)
{
	if (draining)
		return;
	draining = 1;
	log_info("draining (%s): %zu connections", why, sess_count(&W));
	__atomic_store_n(&W.slot->state, SHM_WORKER_DRAINING, __ATOMIC_RELEASE);
	/* Closing our copies: the kernel routes new clients elsewhere. */
	listeners_free();
	if (resume_ev != NULL)
		evtimer_del(resume_ev);
	sess_drain(&W, drain_done);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	if (sig == SIGTERM)
		drain_start("SIGTERM");
	else if (sig == SIGUSR1 && log_reopen() == 0)
		log_info("log file reopened");
}

static void
drop_privileges(const struct worker_boot *b)
{
	if (initgroups(b->user, b->gid) == -1 || setgid(b->gid) == -1 ||
	    setuid(b->uid) == -1) {
		log_error("dropping privileges to %s: %s", b->user,
		          strerror(errno));
		exit(2);
	}
}

void
worker_run(const struct worker_boot *b)
{
	struct timeval hk = {COMET_HEARTBEAT_MS / 1000,
	                     (COMET_HEARTBEAT_MS % 1000) * 1000};
	struct comet_conf *conf;
	size_t i;

	log_set_worker(b->id);
	master_pid = b->master_pid;
	if (b->drop_privs)
		drop_privileges(b);
	/*
	 * Leave with the master: orphans would keep clients on a dead node.
	 * After the uid change, which clears the parent-death signal.
	 */
	if (prctl(PR_SET_PDEATHSIG, SIGTERM) == -1)
		log_warn("prctl(PR_SET_PDEATHSIG): %s", strerror(errno));
	if (getppid() != master_pid)
		exit(0);
	signal(SIGPIPE, SIG_IGN);
	/* The master coordinates: a terminal's ^C reaches the whole group. */
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);

	conf = malloc(sizeof(*conf));
	if (conf == NULL) {
		log_error("worker: out of memory");
		exit(1);
	}
	*conf = *b->conf;
	memset(&W, 0, sizeof(W));
	W.id = b->id;
	W.conf = conf;
	W.shm = b->shm;
	W.slot = shm_worker_slot(b->shm, b->id);
	W.max_conns = b->max_conns;
	generation = b->generation;
	wake_fds = b->wake_fds;
	nwake = b->nwake;
	ctl_fd = b->ctl_fd;
	if (W.slot == NULL) {
		log_error("worker %u: no shm slot", (unsigned)b->id);
		exit(2);
	}
	__atomic_store_n(&W.slot->pid, getpid(), __ATOMIC_RELAXED);

	W.base = event_base_new();
	if (W.base == NULL) {
		log_error("event_base_new failed");
		exit(1);
	}
	resume_ev = evtimer_new(W.base, resume_cb, NULL);
	ctl_ev = event_new(W.base, ctl_fd, EV_READ | EV_PERSIST, ctl_cb, NULL);
	wake_ev = event_new(W.base, wake_fds[W.id], EV_READ | EV_PERSIST,
	                    wake_cb, NULL);
	hk_ev = event_new(W.base, -1, EV_PERSIST, housekeeping_cb, NULL);
	sigterm_ev = evsignal_new(W.base, SIGTERM, signal_cb, NULL);
	sigusr1_ev = evsignal_new(W.base, SIGUSR1, signal_cb, NULL);
	if (resume_ev == NULL || ctl_ev == NULL || wake_ev == NULL ||
	    hk_ev == NULL || sigterm_ev == NULL || sigusr1_ev == NULL ||
	    event_add(ctl_ev, NULL) == -1 || event_add(wake_ev, NULL) == -1 ||
	    event_add(hk_ev, &hk) == -1 || event_add(sigterm_ev, NULL) == -1 ||
	    event_add(sigusr1_ev, NULL) == -1) {
		log_error("worker: cannot set up events");
		exit(1);
	}

	if (sess_init(&W) == -1)
		exit(1);
	for (i = 0; i < b->nls; i++)
		if (listener_add(b->ls[i].id, (enum listener_kind)b->ls[i].kind,
		                 b->ls_fd[i]) == -1)
			exit(1);
	heartbeat();
	__atomic_store_n(&W.slot->state, SHM_WORKER_RUNNING, __ATOMIC_RELEASE);
	log_info("worker running: %zu listeners, max %ld connections", nwl,
	         W.max_conns);

	event_base_dispatch(W.base);

	log_info("worker exiting");
	sess_free(&W);
	listeners_free();
	event_free(resume_ev);
	event_free(ctl_ev);
	event_free(wake_ev);
	event_free(hk_ev);
	event_free(sigterm_ev);
	event_free(sigusr1_ev);
	event_base_free(W.base);
	free((void *)W.conf);
	exit(0);
}
