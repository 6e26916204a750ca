/*
 * master: supervision of the imgate-comet workers.
 *
 * The master binds, creates and forks; then it only reacts: a child died
 * (reclaim its shm entries, respawn with backoff), SIGHUP (reload), SIGTERM
 * or SIGINT (drain and stop), SIGUSR1 (reopen logs), and admin HTTP
 * requests. Workers hear from it over a SOCK_SEQPACKET socketpair each.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "comet/master.h"
#include "common/daemon.h"
#include "comet/worker.h"

/* File descriptors a worker needs besides its clients: logic and Redis
 * connections, log, control socket, event base, and some slack. */
#define WORKER_FD_RESERVE 64
/* A worker that dies younger than this counts as crashing in a loop. */
#define EARLY_DEATH_MS   10000
#define BACKOFF_FIRST_MS 200
#define BACKOFF_MAX_MS   30000

static struct master M;

uint64_t
comet_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t
comet_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int
master_conf_workers(const struct comet_conf *conf)
{
	long n = conf->workers;

	if (n <= 0) {
		n = sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1)
			n = 1;
	}
	if (n > (long)conf->shm.max_workers)
		n = conf->shm.max_workers;
	return (int)n;
}

/* Connection limit of one worker and the node's capacity. */
static void
compute_capacity(struct master *m, int announce)
{
	const struct comet_conf *c = m->conf;
	long fit, per;

	fit = m->fd_limit - (long)m->max_workers - LISTENER__COUNT -
	      WORKER_FD_RESERVE;
	if (fit < 1)
		fit = 1;
	per = fit;
	if (c->worker_connections > 0) {
		per = c->worker_connections;
		if (per > fit) {
			log_warn("worker_connections = %ld exceeds what "
			         "RLIMIT_NOFILE (%ld) allows: using %ld",
			         per, m->fd_limit, fit);
			per = fit;
		}
	}
	m->per_worker = per;
	m->capacity = per * m->nworkers;
	if (!announce)
		return;
	log_notice("node capacity: %d workers x %ld connections = %ld",
	           m->nworkers, per, m->capacity);
	if (c->max_connections > m->capacity)
		log_warn("max_connections = %ld exceeds the node capacity %ld: "
		         "add workers",
		         c->max_connections, m->capacity);
}

/* This worker's share of the node limit, within its own fd budget. */
static long
worker_max_conns(const struct master *m)
{
	long per = m->per_worker, share;

	if (m->conf->max_connections > 0) {
		share =
		    (m->conf->max_connections + m->nworkers - 1) / m->nworkers;
		if (share < per)
			per = share;
	}
	return per;
}

static int
addr_eq(const struct comet_addr *a, const struct comet_addr *b)
{
	return a->port == b->port && strcmp(a->host, b->host) == 0;
}

/*
 * Make the bound sockets match conf with nworkers workers: keep what is
 * unchanged, bind what is new, and only when every bind succeeded close
 * what is gone. On failure nothing changed.
 */
static int
listeners_sync(struct master *m, const struct comet_conf *c, int nworkers,
               char *err, size_t errlen)
{
	struct lsock *nl, *o;
	size_t nn = 0, cap, i, j;
	int per_worker = c->reuseport, k, w, nw;

	cap = (size_t)LISTENER__COUNT * (size_t)(per_worker ? nworkers : 1);
	nl = calloc(cap > 0 ? cap : 1, sizeof(*nl));
	if (nl == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (k = 0; k < LISTENER__COUNT; k++) {
		if (c->listen[k].port == 0)
			continue;
		nw = per_worker ? nworkers : 1;
		for (w = 0; w < nw; w++) {
			struct lsock *n = &nl[nn];

			n->kind = (enum listener_kind)k;
			n->worker = per_worker ? w : -1;
			n->addr = c->listen[k];
			n->fd = -1;
			for (i = 0; i < m->nls; i++) {
				o = &m->ls[i];
				if (o->kind == n->kind &&
				    o->worker == n->worker &&
				    addr_eq(&o->addr, &n->addr)) {
					*n = *o;
					break;
				}
			}
			if (n->fd == -1) {
				n->fd = listener_bind(&n->addr, per_worker, err,
				                      errlen);
				if (n->fd == -1)
					goto fail;
				n->id = ++m->next_lsock_id;
			}
			nn++;
		}
	}
	for (i = 0; i < m->nls; i++) {
		for (j = 0; j < nn; j++)
			if (nl[j].id == m->ls[i].id)
				break;
		if (j == nn)
			close(m->ls[i].fd);
	}
	free(m->ls);
	m->ls = nl;
	m->nls = nn;
	return 0;
fail:
	/* Close only what this call bound. */
	for (j = 0; j < nn; j++) {
		for (i = 0; i < m->nls; i++)
			if (m->ls[i].id == nl[j].id)
				break;
		if (i == m->nls)
			close(nl[j].fd);
	}
	free(nl);
	return -1;
}

static void
listeners_close(struct master *m)
{
	for (size_t i = 0; i < m->nls; i++)
		close(m->ls[i].fd);
	free(m->ls);
	m->ls = NULL;
	m->nls = 0;
}

static void
listeners_log(const struct master *m)
{
	char a[COMET_HOST_MAX + 16];

	for (int k = 0; k < LISTENER__COUNT; k++)
		if (m->conf->listen[k].port != 0)
			log_notice("listening on %s (%s%s)",
			           listener_addr_str(&m->conf->listen[k], a,
			                             sizeof(a)),
			           listener_kind_names[k],
			           m->conf->reuseport ? ", reuseport" : "");
}

/* The listeners worker id accepts from; returns how many. */
static size_t
listeners_for(const struct master *m, int id, struct ctl_lsock *ls, int *fds)
{
	size_t n = 0;

	for (size_t i = 0; i < m->nls && n < CTL_LSOCK_MAX; i++) {
		if (m->ls[i].worker != -1 && m->ls[i].worker != id)
			continue;
		ls[n].id = m->ls[i].id;
		ls[n].kind = m->ls[i].kind;
		fds[n] = m->ls[i].fd;
		n++;
	}
	return n;
}

static int
ctl_send(struct master *m, int id, enum ctl_type type)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * CTL_LSOCK_MAX)];
		struct cmsghdr align;
	} cbuf;
	struct wproc *wp = &m->w[id];
	struct ctl_msg *msg;
	struct msghdr mh;
	struct iovec iov;
	struct cmsghdr *cm;
	int fds[CTL_LSOCK_MAX];
	size_t nfds = 0;
	ssize_t n;

	if (wp->pid == 0 || wp->ctl == -1)
		return -1;
	msg = calloc(1, sizeof(*msg));
	if (msg == NULL)
		return -1;
	msg->type = type;
	msg->generation = m->generation;
	msg->max_conns = worker_max_conns(m);
	memset(&mh, 0, sizeof(mh));
	iov.iov_base = msg;
	iov.iov_len = CTL_HEAD_SIZE;
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (type == CTL_RELOAD) {
		msg->conf = *m->conf;
		nfds = listeners_for(m, id, msg->ls, fds);
		msg->nls = (uint32_t)nfds;
		iov.iov_len = sizeof(*msg);
		if (nfds > 0) {
			memset(&cbuf, 0, sizeof(cbuf));
			mh.msg_control = cbuf.buf;
			mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
			memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
		}
	}
	n = sendmsg(wp->ctl, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
	free(msg);
	if (n == -1) {
		log_warn("worker %d (pid %d): control message: %s", id,
		         (int)wp->pid, strerror(errno));
		return -1;
	}
	return 0;
}

static void
worker_slot_reset(struct master *m, int id)
{
	struct shm_worker *s = shm_worker_slot(m->shm, (uint32_t)id);

	__atomic_store_n(&s->pid, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&s->state, SHM_WORKER_FREE, __ATOMIC_RELEASE);
}

/*
 * In the child: the master's admin HTTP connections must be let go without
 * evhttp_free's shutdown(), which would cut the master's own copy of the
 * socket mid-reply. The master holds no other connected TCP socket, so
 * every one found is an admin connection: /dev/null takes its place and
 * evhttp then closes that instead.
 */
static void
child_detach_admin_conns(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int null, fd, v;
	socklen_t len;
	struct stat st;

	if (d == NULL)
		return;
	null = open("/dev/null", O_RDWR | O_CLOEXEC);
	while (null != -1 && (e = readdir(d)) != NULL) {
		fd = atoi(e->d_name);
		if (fd <= STDERR_FILENO || fd == dirfd(d) || fd == null ||
		    fstat(fd, &st) == -1 || !S_ISSOCK(st.st_mode))
			continue;
		len = sizeof(v);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &len) == -1 ||
		    (v != AF_INET && v != AF_INET6))
			continue;
		len = sizeof(v);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) == -1 ||
		    v != 0)
			continue;
		dup2(null, fd);
	}
	if (null != -1)
		close(null);
	closedir(d);
}

/*
 * In the child, right after fork: drop what belongs to the master (its
 * event base, admin listener, other workers' sockets) and run the worker.
 */
static void __attribute__((noreturn))
child_start(struct master *m, int id, int ctl_fd)
{
	struct worker_boot b;
	sigset_t none;
	size_t i;

	memset(&b, 0, sizeof(b));
	b.id = (uint16_t)id;
	b.master_pid = getppid();
	b.conf = m->conf;
	b.generation = m->generation;
	b.shm = m->shm;
	b.ctl_fd = ctl_fd;
	b.wake_fds = m->wake_fds;
	b.nwake = m->max_workers;
	b.nls = listeners_for(m, id, b.ls, b.ls_fd);
	b.max_conns = worker_max_conns(m);
	b.drop_privs = m->drop_privs;
	b.uid = m->uid;
	b.gid = m->gid;
	b.user = m->conf->user;

	for (i = 0; i < m->max_workers; i++)
		if (m->w[i].ctl != -1)
			close(m->w[i].ctl);
	for (i = 0; i < m->nls; i++) {
		if (m->ls[i].worker != -1 && m->ls[i].worker != id)
			close(m->ls[i].fd);
	}
	if (m->pid_fd != -1)
		close(m->pid_fd);
	if (m->ready_fd != -1)
		close(m->ready_fd);
	/*
	 * The epoll instance is shared with the master until reinit: freeing
	 * events before it would unregister the master's descriptors.
	 */
	if (event_reinit(m->base) == -1)
		_exit(1);
	/* After reinit, which would re-add /dev/null to epoll and fail. */
	child_detach_admin_conns();
	admin_free(m);
	for (i = 0; i < sizeof(m->sig_ev) / sizeof(m->sig_ev[0]); i++)
		if (m->sig_ev[i] != NULL)
			event_free(m->sig_ev[i]);
	for (i = 0; i < m->max_workers; i++) {
		if (m->w[i].respawn_ev != NULL)
			event_free(m->w[i].respawn_ev);
		if (m->w[i].kill_ev != NULL)
			event_free(m->w[i].kill_ev);
	}
	if (m->watchdog_ev != NULL)
		event_free(m->watchdog_ev);
	event_base_free(m->base);
	signal(SIGINT, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	worker_run(&b);
}

static int
spawn(struct master *m, int id)
{
	struct wproc *wp = &m->w[id];
	struct shm_worker *slot = shm_worker_slot(m->shm, (uint32_t)id);
	int sv[2], sndbuf = 4 * (int)sizeof(struct ctl_msg);
	sigset_t all, old;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC,
	               0, sv) == -1) {
		log_error("worker %d: socketpair: %s", id, strerror(errno));
		return -1;
	}
	if (setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) ==
	    -1)
		log_warn("worker %d: SO_SNDBUF: %s", id, strerror(errno));
	/* Before fork: the child may mark itself running before we return. */
	__atomic_store_n(&slot->pid, 0, __ATOMIC_RELAXED);
	slot->generation++;
	slot->started_ms = comet_now_ms();
	__atomic_store_n(&slot->alive_ms, comet_mono_ms(), __ATOMIC_RELAXED);
	__atomic_store_n(&slot->state, SHM_WORKER_STARTING, __ATOMIC_RELEASE);

	/* No signal may reach the master's handlers from inside the child. */
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0) {
		close(sv[0]);
		child_start(m, id, sv[1]);
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	close(sv[1]);
	if (pid == -1) {
		log_error("worker %d: fork: %s", id, strerror(errno));
		close(sv[0]);
		__atomic_store_n(&slot->state, SHM_WORKER_FREE,
		                 __ATOMIC_RELEASE);
		return -1;
	}
	__atomic_store_n(&slot->pid, pid, __ATOMIC_RELAXED);
	wp->pid = pid;
	wp->ctl = sv[0];
	wp->retiring = 0;
	wp->hung = 0;
	wp->started_ms = comet_now_ms();
	wp->started_mono = comet_mono_ms();
	log_info("worker %d started: pid %d", id, (int)pid);
	return 0;
}

static void
respawn_cb(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = &M;
	int id = (int)(intptr_t)arg;
	struct timeval retry = {1, 0};

	if (m->stopping || id >= m->nworkers || m->w[id].pid != 0)
		return;
	m->respawns++;
	if (spawn(m, id) == -1)
		evtimer_add(m->w[id].respawn_ev, &retry);
}

static void
kill_cb(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = &M;
	int id = (int)(intptr_t)arg;

	if (m->w[id].pid == 0)
		return;
	log_warn("worker %d (pid %d) did not drain within %ld ms: SIGKILL", id,
	         (int)m->w[id].pid, m->conf->drain_timeout_ms);
	kill(m->w[id].pid, SIGKILL);
}

/* Ask worker id to drain and exit; SIGKILL it after drain_timeout. */
static void
worker_retire(struct master *m, int id)
{
	struct wproc *wp = &m->w[id];
	struct timeval tv;

	evtimer_del(wp->respawn_ev);
	if (wp->pid == 0)
		return;
	wp->retiring = 1;
	if (ctl_send(m, id, CTL_DRAIN) == -1)
		kill(wp->pid, SIGTERM);
	tv.tv_sec = m->conf->drain_timeout_ms / 1000;
	tv.tv_usec = (m->conf->drain_timeout_ms % 1000) * 1000;
	evtimer_add(wp->kill_ev, &tv);
}

static int
workers_alive(const struct master *m)
{
	int n = 0;

	for (uint32_t i = 0; i < m->max_workers; i++)
		if (m->w[i].pid != 0)
			n++;
	return n;
}

/*
 * How long worker id's loop has been silent past [server] worker_timeout,
 * in ms, or 0 if it is not (or the watchdog is off). A starting worker has
 * had no loop yet: it is judged from its fork. A draining one is not
 * judged here: the drain timeout kills it if it takes too long.
 */
static uint64_t
worker_silent_ms(const struct master *m, int id, uint64_t now)
{
	const struct wproc *wp = &m->w[id];
	const struct shm_worker *s = shm_worker_slot_ro(m->shm, (uint32_t)id);
	uint64_t since;
	uint32_t state;

	if (m->conf->worker_timeout_ms <= 0 || m->stopping || wp->pid == 0 ||
	    wp->retiring)
		return 0;
	state = __atomic_load_n(&s->state, __ATOMIC_ACQUIRE);
	if (state == SHM_WORKER_RUNNING)
		since = __atomic_load_n(&s->alive_ms, __ATOMIC_RELAXED);
	else if (state == SHM_WORKER_STARTING)
		since = wp->started_mono;
	else
		return 0;
	if (now <= since || now - since <= (uint64_t)m->conf->worker_timeout_ms)
		return 0;
	return now - since;
}

/*
 * The watchdog, once a second: a worker whose loop stopped turning still
 * holds its clients and its shm entries while serving nobody; killing it
 * sends it down the normal death path (reclaim, respawn with backoff) and
 * its clients reconnect elsewhere.
 */
static void
watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	struct master *m = arg;
	uint64_t mono = comet_mono_ms(), silent;

	for (uint32_t i = 0; i < m->max_workers; i++) {
		struct wproc *wp = &m->w[i];

		if (wp->hung ||
		    (silent = worker_silent_ms(m, (int)i, mono)) == 0)
			continue;
		log_error(
		    "worker %u pid %d unresponsive for %llu.%llus: killing",
		    (unsigned)i, (int)wp->pid,
		    (unsigned long long)(silent / 1000),
		    (unsigned long long)(silent % 1000 / 100));
		if (kill(wp->pid, SIGKILL) == -1) {
			log_error("worker %u: kill(%d, SIGKILL): %s",
			          (unsigned)i, (int)wp->pid, strerror(errno));
			continue;
		}
		wp->hung = 1;
		m->watchdog_kills++;
	}
}

int
master_healthy(const struct master *m, int *alive)
{
	uint64_t mono = comet_mono_ms();
	int ok = !m->stopping;

	*alive = 0;
	for (int i = 0; i < m->nworkers; i++) {
		const struct shm_worker *s =
		    shm_worker_slot_ro(m->shm, (uint32_t)i);

		if (m->w[i].pid != 0 && !m->w[i].hung &&
		    __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) ==
		        SHM_WORKER_RUNNING &&
		    worker_silent_ms(m, i, mono) == 0)
			(*alive)++;
		else
			ok = 0;
	}
	return ok;
}

static void
reap_one(struct master *m, int id, int status)
{
	struct wproc *wp = &m->w[id];
	struct timeval tv;
	size_t reclaimed;
	uint64_t lived = comet_now_ms() - wp->started_ms;
	long delay;
	int quiet = m->stopping || wp->retiring;
	char how[96];

	if (WIFEXITED(status))
		snprintf(how, sizeof(how), "exited with status %d",
		         WEXITSTATUS(status));
	else if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "killed by signal %d (%s)%s",
		         WTERMSIG(status), strsignal(WTERMSIG(status)),
		         WCOREDUMP(status) ? ", core dumped" : "");
	else
		snprintf(how, sizeof(how), "stopped (status 0x%x)", status);
	if (quiet && WIFEXITED(status) && WEXITSTATUS(status) == 0)
		log_info("worker %d (pid %d) %s", id, (int)wp->pid, how);
	else
		log_error("worker %d (pid %d) %s after %llu ms", id,
		          (int)wp->pid, how, (unsigned long long)lived);

	__atomic_store_n(&shm_worker_slot(m->shm, (uint32_t)id)->state,
	                 SHM_WORKER_DEAD, __ATOMIC_RELEASE);
	reclaimed = shm_worker_reclaim(m->shm, (uint16_t)id);
	if (reclaimed > 0)
		log_notice("worker %d: reclaimed %zu channels", id, reclaimed);
	worker_slot_reset(m, id);
	wp->pid = 0;
	wp->hung = 0;
	if (wp->ctl != -1)
		close(wp->ctl);
	wp->ctl = -1;
	evtimer_del(wp->kill_ev);

	if (m->stopping)
		return;
	if (wp->retiring || id >= m->nworkers) {
		wp->retiring = 0;
		return;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 2) {
		wp->no_respawn = 1;
		log_error("worker %d: fatal setup error (status 2): not "
		          "respawning it until a reload",
		          id);
		return;
	}
	wp->fails = lived < EARLY_DEATH_MS ? wp->fails + 1 : 0;
	if (wp->fails == 0) {
		m->respawns++;
		if (spawn(m, id) == 0)
			return;
		delay = 1000;
	} else {
		delay = BACKOFF_FIRST_MS;
		for (int i = 1; i < wp->fails && delay < BACKOFF_MAX_MS; i++)
			delay *= 2;
		if (delay > BACKOFF_MAX_MS)
			delay = BACKOFF_MAX_MS;
	}
	log_notice("worker %d: respawning in %ld ms (%d early deaths in a row)",
	           id, delay, wp->fails);
	tv.tv_sec = delay / 1000;
	tv.tv_usec = (delay % 1000) * 1000;
	evtimer_add(wp->respawn_ev, &tv);
}

static void
reap(struct master *m)
{
	pid_t pid;
	int status;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (uint32_t i = 0; i < m->max_workers; i++) {
			if (m->w[i].pid == pid) {
				reap_one(m, (int)i, status);
				break;
			}
		}
	}
	if (m->stopping && workers_alive(m) == 0)
		event_base_loopbreak(m->base);
}

static void
stop(struct master *m, int sig)
{
	if (m->stopping) {
		log_warn("%s again: killing the workers now", strsignal(sig));
		for (uint32_t i = 0; i < m->max_workers; i++)
			if (m->w[i].pid != 0)
				kill(m->w[i].pid, SIGKILL);
		return;
	}
	m->stopping = 1;
	log_notice("%s: draining %d workers (at most %ld ms)", strsignal(sig),
	           workers_alive(m), m->conf->drain_timeout_ms);
	/* Workers close their copies as they drain; nobody accepts after. */
	listeners_close(m);
	for (uint32_t i = 0; i < m->max_workers; i++) {
		evtimer_del(m->w[i].respawn_ev);
		worker_retire(m, (int)i);
	}
	if (workers_alive(m) == 0)
		event_base_loopbreak(m->base);
}

/*
 * The workers run as [server] user and open the log file by name again on
 * SIGUSR1 and on a reload; a file the master (root) just created would be
 * root's and refuse them (EACCES). So the master creates it first and gives
 * it to that user; a file already the user's (logrotate's "create") stays
 * as it is. Not following a symlink: root must not chown where it points.
 */
static void
master_log_grant(const struct master *m, const char *target)
{
	struct stat st;
	int fd;

	if (!m->drop_privs || strcmp(target, "stderr") == 0 ||
	    strcmp(target, "syslog") == 0)
		return;
	fd = open(target,
	          O_WRONLY | O_APPEND | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1) {
		log_warn("log %s: %s: workers may not reopen it", target,
		         strerror(errno));
		return;
	}
	if (fstat(fd, &st) == -1)
		log_warn("log %s: fstat: %s", target, strerror(errno));
	else if (S_ISREG(st.st_mode) && st.st_uid != m->uid &&
	         fchown(fd, m->uid, m->gid) == -1)
		log_warn("log %s: fchown to %s: %s: workers may not reopen it",
		         target, m->conf->user, strerror(errno));
	close(fd);
}

/*
 * A reload applies what it can: restart-only settings keep their running
 * value (with a log line), everything else takes effect, and the workers
 * get the new config and listener set without losing a connection.
 */
static void
reload(struct master *m)
{
	struct comet_conf *nc, *old = m->conf;
	char err[1024], a[COMET_HOST_MAX + 16];
	int nw, old_nw = m->nworkers, i;

	log_notice("SIGHUP: reloading %s", old->path);
	nc = malloc(sizeof(*nc));
	if (nc == NULL) {
		log_error("reload refused: out of memory");
		m->reload_failures++;
		return;
	}
	comet_conf_defaults(nc);
	if (comet_conf_load(old->path, nc, err, sizeof(err)) == -1) {
		log_error("reload refused: %s; the running config stays", err);
		m->reload_failures++;
		free(nc);
		return;
	}
	if (strcmp(nc->shm_name, old->shm_name) != 0 ||
	    memcmp(&nc->shm, &old->shm, sizeof(nc->shm)) != 0) {
		log_warn("reload: [shm] settings changed: they need a restart; "
		         "keeping %s with the running geometry",
		         old->shm_name);
		memcpy(nc->shm_name, old->shm_name, sizeof(nc->shm_name));
		nc->shm = old->shm;
	}
	if (nc->reuseport != old->reuseport) {
		log_warn("reload: [server] reuseport changed: needs a restart");
		nc->reuseport = old->reuseport;
	}
	if (strcmp(nc->pid_file, old->pid_file) != 0) {
		log_warn("reload: [server] pid_file changed: needs a restart");
		memcpy(nc->pid_file, old->pid_file, sizeof(nc->pid_file));
	}
	if (strcmp(nc->user, old->user) != 0) {
		log_warn("reload: [server] user changed: needs a restart");
		memcpy(nc->user, old->user, sizeof(nc->user));
	}
	if (nc->workers > 0 && (uint32_t)nc->workers > m->max_workers) {
		log_error("reload refused: workers = %d exceeds the running "
		          "[shm] max_workers = %u; the running config stays",
		          nc->workers, m->max_workers);
		m->reload_failures++;
		free(nc);
		return;
	}
	nw = master_conf_workers(nc);
	if (listeners_sync(m, nc, nw, err, sizeof(err)) == -1) {
		log_error("reload refused: cannot listen on %s; the running "
		          "config stays",
		          err);
		m->reload_failures++;
		free(nc);
		return;
	}
	if (strcmp(nc->log_target, old->log_target) != 0 &&
	    log_open("imgate-comet", nc->log_target, nc->log_level, err,
	             sizeof(err)) == -1) {
		log_error("reload: log: %s; logging stays on %s", err,
		          old->log_target);
		memcpy(nc->log_target, old->log_target, sizeof(nc->log_target));
	}
	log_set_level(nc->log_level);
	/* Before the workers get the new config and open the new target. */
	if (strcmp(nc->log_target, old->log_target) != 0)
		master_log_grant(m, nc->log_target);

	m->conf = nc;
	if (!addr_eq(&nc->admin, &old->admin) && admin_bind(m) == -1) {
		log_error("reload: admin listener stays on %s",
		          listener_addr_str(&old->admin, a, sizeof(a)));
		nc->admin = old->admin;
	}
	if (nc->worker_timeout_ms != old->worker_timeout_ms)
		log_notice("worker_timeout: %ld ms -> %ld ms%s",
		           old->worker_timeout_ms, nc->worker_timeout_ms,
		           nc->worker_timeout_ms == 0 ? " (watchdog off)" : "");
	m->generation++;
	m->reloads++;
	m->nworkers = nw;
	compute_capacity(m, 1);
	for (i = 0; i < LISTENER__COUNT; i++)
		if (!addr_eq(&nc->listen[i], &old->listen[i])) {
			if (old->listen[i].port != 0)
				log_notice("%s listener %s closed",
				           listener_kind_names[i],
				           listener_addr_str(&old->listen[i], a,
				                             sizeof(a)));
			if (nc->listen[i].port != 0)
				log_notice("%s listener %s added",
				           listener_kind_names[i],
				           listener_addr_str(&nc->listen[i], a,
				                             sizeof(a)));
		}

	for (i = 0; i < (int)m->max_workers; i++) {
		struct wproc *wp = &m->w[i];

		if (i < nw) {
			wp->no_respawn = 0;
			if (wp->pid != 0 && wp->retiring)
				/* Still draining: respawned when it exits. */
				wp->retiring = 0;
			else if (wp->pid != 0)
				ctl_send(m, i, CTL_RELOAD);
			else if (!evtimer_pending(wp->respawn_ev, NULL)) {
				wp->fails = 0;
				spawn(m, i);
			}
		} else if (i < old_nw || wp->pid != 0) {
			if (wp->pid != 0 && !wp->retiring)
				worker_retire(m, i);
			evtimer_del(wp->respawn_ev);
		}
	}
	if (nw != old_nw)
		log_notice("workers: %d -> %d", old_nw, nw);
	log_notice("reload applied: generation %u", (unsigned)m->generation);
	free(old);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct master *m = arg;

	switch (sig) {
	case SIGCHLD:
		reap(m);
		break;
	case SIGHUP:
		if (!m->stopping)
			reload(m);
		break;
	case SIGTERM:
	case SIGINT:
	case SIGQUIT:
		stop(m, (int)sig);
		break;
	case SIGUSR1:
		log_notice("SIGUSR1: reopening logs");
		/* First, so the file exists and is theirs when they open it. */
		if (log_reopen() == 0)
			log_info("log file reopened");
		master_log_grant(m, m->conf->log_target);
		for (uint32_t i = 0; i < m->max_workers; i++)
			if (m->w[i].pid != 0)
				ctl_send(m, (int)i, CTL_REOPEN);
		break;
	}
}

static void
raise_nofile(struct master *m)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
		m->fd_limit = 1024;
		return;
	}
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
			log_warn("setrlimit(RLIMIT_NOFILE, %llu): %s",
			         (unsigned long long)rl.rlim_max,
			         strerror(errno));
			rl.rlim_cur = was;
		}
	}
	m->fd_limit = rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > 1 << 30
	                  ? 1 << 30
	                  : (long)rl.rlim_cur;
}

static int
write_pid(int fd)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());

	if (ftruncate(fd, 0) == -1 || pwrite(fd, buf, (size_t)n, 0) != n)
		return -1;
	return 0;
}

static int
setup_user(struct master *m)
{
	struct passwd *pw;

	if (m->conf->user[0] == '\0')
		return 0;
	if (geteuid() != 0) {
		log_info("user = %s ignored: not started as root",
		         m->conf->user);
		return 0;
	}
	pw = getpwnam(m->conf->user);
	if (pw == NULL) {
		log_error("user %s: no such user", m->conf->user);
		return -1;
	}
	m->drop_privs = 1;
	m->uid = pw->pw_uid;
	m->gid = pw->pw_gid;
	return 0;
}

static void
master_cleanup(struct master *m)
{
	size_t i;

	admin_free(m);
	for (i = 0; i < sizeof(m->sig_ev) / sizeof(m->sig_ev[0]); i++)
		if (m->sig_ev[i] != NULL)
			event_free(m->sig_ev[i]);
	if (m->watchdog_ev != NULL)
		event_free(m->watchdog_ev);
	if (m->w != NULL) {
		for (i = 0; i < m->max_workers; i++) {
			if (m->w[i].respawn_ev != NULL)
				event_free(m->w[i].respawn_ev);
			if (m->w[i].kill_ev != NULL)
				event_free(m->w[i].kill_ev);
			if (m->w[i].ctl != -1)
				close(m->w[i].ctl);
		}
	}
	if (m->wake_fds != NULL)
		for (i = 0; i < m->max_workers; i++)
			if (m->wake_fds[i] != -1)
				close(m->wake_fds[i]);
	listeners_close(m);
	if (m->base != NULL)
		event_base_free(m->base);
	if (m->shm != NULL) {
		shm_seg_detach(m->shm);
		if (shm_seg_unlink(m->conf->shm_name) == -1)
			log_warn("unlink shm %s: %s", m->conf->shm_name,
			         strerror(errno));
	}
	if (m->pid_fd != -1) {
		unlink(m->conf->pid_file);
		close(m->pid_fd);
	}
	free(m->w);
	free(m->wake_fds);
	free(m->conf);
}

int
master_run(struct comet_conf *conf, int pid_fd, int ready_fd)
{
	static const int sigs[] = {SIGCHLD, SIGHUP,  SIGTERM,
	                           SIGINT,  SIGQUIT, SIGUSR1};
	struct timeval watchdog_tv = {1, 0};
	struct master *m = &M;
	char err[512];
	uint32_t i;
	int rc = 1;

	memset(m, 0, sizeof(*m));
	m->conf = conf;
	m->pid_fd = pid_fd;
	m->ready_fd = ready_fd;
	m->max_workers = conf->shm.max_workers;
	m->nworkers = master_conf_workers(conf);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile(m);

	m->w = calloc(m->max_workers, sizeof(*m->w));
	m->wake_fds = calloc(m->max_workers, sizeof(*m->wake_fds));
	if (m->w == NULL || m->wake_fds == NULL) {
		log_error("out of memory");
		goto fail;
	}
	for (i = 0; i < m->max_workers; i++) {
		m->w[i].ctl = -1;
		m->wake_fds[i] = -1;
	}
	if (setup_user(m) == -1) {
		/* An unknown user is a config error. */
		rc = 2;
		goto fail;
	}
	master_log_grant(m, conf->log_target);

	/* It refuses a segment whose master still runs (EBUSY). */
	if (shm_seg_create(conf->shm_name, &conf->shm, &m->shm, err,
	                   sizeof(err)) == -1) {
		log_error("shm: %s", err);
		goto fail;
	}
	if (m->drop_privs) {
		char path[128];

		/* So imgate-shm run as that user can read the segment. */
		snprintf(path, sizeof(path), "/dev/shm%s", conf->shm_name);
		if (chown(path, m->uid, m->gid) == -1)
			log_warn("chown %s: %s", path, strerror(errno));
	}
	if (listeners_sync(m, conf, m->nworkers, err, sizeof(err)) == -1) {
		log_error("cannot listen on %s", err);
		goto fail;
	}
	/* Created before any fork so every worker can wake every other. */
	for (i = 0; i < m->max_workers; i++) {
		m->wake_fds[i] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (m->wake_fds[i] == -1) {
			log_error("eventfd: %s", strerror(errno));
			goto fail;
		}
	}

	m->base = event_base_new();
	if (m->base == NULL) {
		log_error("event_base_new failed");
		goto fail;
	}
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		m->sig_ev[i] = evsignal_new(m->base, sigs[i], signal_cb, m);
		if (m->sig_ev[i] == NULL ||
		    event_add(m->sig_ev[i], NULL) == -1) {
			log_error("cannot watch signal %d", sigs[i]);
			goto fail;
		}
	}
	for (i = 0; i < m->max_workers; i++) {
		m->w[i].respawn_ev =
		    evtimer_new(m->base, respawn_cb, (void *)(intptr_t)i);
		m->w[i].kill_ev =
		    evtimer_new(m->base, kill_cb, (void *)(intptr_t)i);
		if (m->w[i].respawn_ev == NULL || m->w[i].kill_ev == NULL) {
			log_error("out of memory");
			goto fail;
		}
	}
	/* Always ticking: a reload may turn the watchdog on or off. */
	m->watchdog_ev = event_new(m->base, -1, EV_PERSIST, watchdog_cb, m);
	if (m->watchdog_ev == NULL ||
	    event_add(m->watchdog_ev, &watchdog_tv) == -1) {
		log_error("cannot start the watchdog timer");
		goto fail;
	}
	if (m->conf->admin.port != 0 && admin_bind(m) == -1)
		goto fail;
	if (pid_fd != -1 && write_pid(pid_fd) == -1) {
		log_error("pid file %s: %s", conf->pid_file, strerror(errno));
		goto fail;
	}

	listeners_log(m);
	compute_capacity(m, 1);
	for (i = 0; i < (uint32_t)m->nworkers; i++)
		if (spawn(m, (int)i) == -1)
			goto fail;
	log_notice("imgate-comet " PACKAGE_VERSION " running: pid %d, %d "
	           "workers, shm %s",
	           (int)getpid(), m->nworkers, conf->shm_name);
	/* The parent may be gone: nothing to tell then. */
	(void)daemon_ready(&m->ready_fd, 0);

	event_base_dispatch(m->base);

	log_notice("stopped");
	master_cleanup(m);
	return m->exit_code;
fail:
	for (i = 0; m->w != NULL && i < m->max_workers; i++)
		if (m->w[i].pid != 0)
			kill(m->w[i].pid, SIGKILL);
	while (wait(NULL) > 0)
		;
	/*
	 * A daemon's parent waits on the pipe: tell it the exit status once
	 * the pid file and the shm segment are gone.
	 */
	ready_fd = m->ready_fd;
	m->ready_fd = -1;
	master_cleanup(m);
	(void)daemon_ready(&ready_fd, rc);
	return rc;
}
