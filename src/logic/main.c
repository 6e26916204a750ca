/*
 * imgate-logic: options, daemonizing, pid file, signals and reload.
 *
 *   -c FILE  config (default SYSCONFDIR/imgate/imgate-logic.conf)
 *   -t       check the config, print the verdict, exit 0 or 1
 *   -f       stay in the foreground
 *   -v       print the version
 *
 * Exit status: 0 clean stop, 1 runtime failure (cannot listen, pid file
 * taken), 2 bad config at start (a supervisor should not respawn). The
 * listeners are bound and the pid file checked before daemonizing, and
 * the parent waits for the daemon to be ready, so without -f a failed
 * start is the exit status of the command that started it.
 * SIGHUP reloads the config (an invalid file is refused and logged, the
 * old config stays); SIGTERM/SIGINT stop; SIGUSR1 reopens the log file.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/daemon.h"
#include "logic/api.h"
#include "logic/chanseq.h"
#include "logic/logic.h"
#include "logic/online.h"
#include "logic/session.h"
#include "logic/store.h"
#include "logic/svc.h"
#include "logic/webhook.h"

#define DEFAULT_CONF SYSCONFDIR "/imgate/imgate-logic.conf"

/* Channels whose seq is remembered, and for how long after their last
 * push: enough for every busy room, bounded against a flood of names. */
#define CHANSEQ_MAX     (256u * 1024)
#define CHANSEQ_IDLE_MS (10u * 60 * 1000)

static void
usage(void)
{
	fprintf(stderr,
	        "usage: imgate-logic [-ftv] [-c file]\n"
	        "  -c file  config file (default %s)\n"
	        "  -t       check the config and exit\n"
	        "  -f       run in the foreground\n"
	        "  -v       print the version and exit\n",
	        DEFAULT_CONF);
}

static void
store_opts_from(const struct logic_conf *c, struct store_opts *o)
{
	o->host = c->redis_host;
	o->port = c->redis_port;
	o->password = c->redis_password;
	o->db = c->redis_db;
	o->timeout_ms = c->redis_timeout_ms;
	o->backoff_min_ms = c->redis_backoff_min_ms;
	o->backoff_max_ms = c->redis_backoff_max_ms;
}

static void
on_store_status(int up, const char *why, void *arg)
{
	struct logic *l = arg;

	if (up == 1) {
		if (strcmp(why, "reconnected") == 0)
			l->metrics.redis_reconnects++;
		log_notice("redis %s:%d %s", l->conf->redis_host,
		           l->conf->redis_port, why);
	} else {
		log_warn("redis %s:%d: %s", l->conf->redis_host,
		         l->conf->redis_port, why);
	}
}

static int
open_log(const struct logic_conf *c)
{
	char err[512];

	if (log_open("imgate-logic", c->log_target, c->log_level, err,
	             sizeof(err)) == -1) {
		log_error("log: %s", err);
		return -1;
	}
	return 0;
}

static void
reload(struct logic *l)
{
	struct logic_conf *nc = malloc(sizeof(*nc)), *old = l->conf;
	struct store_opts so;
	char err[1024];

	if (nc == NULL) {
		log_error("reload: out of memory");
		return;
	}
	if (logic_conf_load(old->path, nc, err, sizeof(err)) == -1) {
		log_error("reload refused, keeping the running config: %s",
		          err);
		free(nc);
		return;
	}
	/* Listeners and the pid file stay as they are until a restart. */
	if (strcmp(nc->rpc_host, old->rpc_host) != 0 ||
	    nc->rpc_port != old->rpc_port ||
	    strcmp(nc->http_host, old->http_host) != 0 ||
	    nc->http_port != old->http_port ||
	    nc->rpc_max_message != old->rpc_max_message ||
	    strcmp(nc->pid_file, old->pid_file) != 0)
		log_warn("reload: [rpc] listen, max_message, [http] listen "
		         "and pid_file need a restart; kept");
	memcpy(nc->rpc_host, old->rpc_host, sizeof(nc->rpc_host));
	nc->rpc_port = old->rpc_port;
	nc->rpc_max_message = old->rpc_max_message;
	memcpy(nc->http_host, old->http_host, sizeof(nc->http_host));
	nc->http_port = old->http_port;
	memcpy(nc->pid_file, old->pid_file, sizeof(nc->pid_file));

	l->conf = nc;
	if (strcmp(nc->log_target, old->log_target) != 0 ||
	    nc->log_level != old->log_level)
		open_log(nc);
	if (strcmp(nc->redis_host, old->redis_host) != 0 ||
	    nc->redis_port != old->redis_port ||
	    strcmp(nc->redis_password, old->redis_password) != 0 ||
	    nc->redis_db != old->redis_db ||
	    nc->redis_timeout_ms != old->redis_timeout_ms ||
	    nc->redis_backoff_min_ms != old->redis_backoff_min_ms ||
	    nc->redis_backoff_max_ms != old->redis_backoff_max_ms) {
		store_opts_from(nc, &so);
		store_set_opts(l->store, &so);
	}
	api_reload(l->api);
	webhook_reload(l->webhook);
	free(old);
	log_notice("config %s reloaded", nc->path);
}

static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct logic *l = arg;

	switch (sig) {
	case SIGHUP:
		reload(l);
		break;
	case SIGUSR1:
		log_reopen();
		break;
	default:
		log_notice("signal %d: stopping", (int)sig);
		event_base_loopexit(l->base, NULL);
	}
}

/*
 * A pid file that cannot be written (an unprivileged run with the default
 * path) is only warned about: 1 is returned and the daemon runs without
 * one.
 */
static int
write_pid(const char *path)
{
	char err[PATH_MAX + 128];
	int fd;

	if (path[0] == '\0')
		return 1;
	if ((fd = daemon_pidfile_open(path, err, sizeof(err))) == -1) {
		log_warn("%s; running without one", err);
		return 1;
	}
	if (daemon_pidfile_write(fd) == -1) {
		log_warn("pid file %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return 1;
	}
	close(fd);
	return 0;
}

/*
 * logic holds a connection per comet worker and per HTTP client: the
 * usual soft limit of 1024 descriptors is far too low for a busy node.
 */
static void
raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1) {
		log_warn("getrlimit(RLIMIT_NOFILE): %s; connections may be "
		         "refused early",
		         strerror(errno));
		return;
	}
	if (rl.rlim_cur >= rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1) {
		getrlimit(RLIMIT_NOFILE, &rl);
		log_warn("cannot raise the open files limit to its hard limit "
		         "(setrlimit RLIMIT_NOFILE: %s): staying at %llu, "
		         "connections beyond it will be refused",
		         strerror(errno), (unsigned long long)rl.rlim_cur);
	}
}

int
main(int argc, char **argv)
{
	const char *path;
	struct daemon_opts o;
	struct event *sigs[5] = {NULL};
	static const int signums[5] = {SIGHUP, SIGTERM, SIGINT, SIGUSR1, 0};
	struct logic l = {0};
	struct store_opts so;
	char err[1024], abspath[PATH_MAX];
	int rc = 1, pid_written = 0, ready_fd = -1;
	pid_t running;

	if (daemon_getopt(argc, argv, "imgate-logic", DEFAULT_CONF, usage,
	                  &o) == -1)
		return o.status;
	path = o.conf;
	/* Reloads after chdir("/") must find the same file. */
	if (realpath(path, abspath) != NULL)
		path = abspath;
	l.conf = malloc(sizeof(*l.conf));
	if (l.conf == NULL)
		return 1;
	if (logic_conf_load(path, l.conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "imgate-logic: %s\n", err);
		free(l.conf);
		return o.check ? 1 : DAEMON_EXIT_CONFIG;
	}
	if (o.check) {
		printf("imgate-logic: %s: ok\n", path);
		free(l.conf);
		return 0;
	}
	if (open_log(l.conf) == -1) {
		free(l.conf);
		return DAEMON_EXIT_CONFIG;
	}
	raise_nofile();
	signal(SIGPIPE, SIG_IGN);
	l.src = logic_new_src();
	l.chanseq = chanseq_new(CHANSEQ_MAX, CHANSEQ_IDLE_MS);
	l.base = event_base_new();
	if (l.chanseq == NULL || l.base == NULL) {
		log_error("%s failed",
		          l.base == NULL ? "event_base_new" : "out of memory");
		goto out;
	}
	/*
	 * Listen before going to the background, so that a taken port is
	 * the exit status of whoever started us, not a line in a log.
	 */
	l.api = api_new(&l, err, sizeof(err));
	if (l.api == NULL) {
		log_error("%s", err);
		goto out;
	}
	l.svc = svc_new(&l, err, sizeof(err));
	if (l.svc == NULL) {
		log_error("rpc listen %s:%d: %s", l.conf->rpc_host,
		          l.conf->rpc_port, err);
		goto out;
	}
	if (l.conf->pid_file[0] != '\0' &&
	    (running = daemon_pidfile_running(l.conf->pid_file)) != 0) {
		log_error("pid file %s: process %ld is running",
		          l.conf->pid_file, (long)running);
		goto out;
	}
	if (!o.foreground) {
		ready_fd =
		    daemon_detach(strcmp(l.conf->log_target, "stderr") == 0,
		                  err, sizeof(err));
		if (ready_fd == -1) {
			log_error("%s", err);
			goto out;
		}
		if (err[0] != '\0')
			log_warn("%s", err);
		/* The loop's kernel state belongs to the parent until now. */
		if (event_reinit(l.base) == -1) {
			log_error("event_reinit failed");
			goto out;
		}
	}
	switch (write_pid(l.conf->pid_file)) {
	case -1:
		goto out;
	case 0:
		pid_written = 1;
	}
	for (int i = 0; signums[i] != 0; i++) {
		sigs[i] = evsignal_new(l.base, signums[i], on_signal, &l);
		if (sigs[i] == NULL || evsignal_add(sigs[i], NULL) == -1) {
			log_error("evsignal_new failed");
			goto out;
		}
	}
	store_opts_from(l.conf, &so);
	l.store = store_new(l.base, &so, session_scripts, on_store_status, &l,
	                    err, sizeof(err));
	if (l.store == NULL) {
		log_error("redis: %s", err);
		goto out;
	}
	l.online = online_new(&l);
	if (l.online == NULL) {
		log_error("out of memory");
		goto out;
	}
	l.webhook = webhook_new(&l);
	if (l.webhook == NULL)
		goto out;
	log_notice("imgate-logic %s: rpc %s:%d, http %s:%d, redis %s:%d",
	           PACKAGE_VERSION, l.conf->rpc_host, l.conf->rpc_port,
	           l.conf->http_host, l.conf->http_port, l.conf->redis_host,
	           l.conf->redis_port);
	if (daemon_ready(&ready_fd, 0) == -1)
		log_warn("start-up pipe: %s", strerror(errno));
	event_base_dispatch(l.base);
	rc = 0;
out:
	/* A failure after detaching: the waiting parent exits 1. */
	daemon_ready(&ready_fd, rc);
	/* The store first: its callbacks answer requests the others own. */
	store_free(l.store);
	online_free(l.online);
	svc_free(l.svc);
	api_free(l.api);
	webhook_free(l.webhook);
	chanseq_free(l.chanseq);
	for (int i = 0; i < 5; i++)
		if (sigs[i] != NULL)
			event_free(sigs[i]);
	if (l.base != NULL)
		event_base_free(l.base);
	if (pid_written && l.conf->pid_file[0] != '\0')
		unlink(l.conf->pid_file);
	free(l.conf);
	log_notice("stopped");
	return rc;
}
