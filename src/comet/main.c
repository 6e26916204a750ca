/*
 * imgate-comet: command line, config check, pid file, daemon mode; the
 * master does the rest (master.c).
 *
 * Exit status, as imgate-logic: 0 clean stop (or -t: the config is valid),
 * 1 a failure to start or run (pid file taken, cannot listen; -t: the
 * config is invalid), 2 a bad config or command line at start, which a
 * supervisor should not retry as it is.
 */
#include "config.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comet/master.h"
#include "common/daemon.h"

#define DEFAULT_CONF SYSCONFDIR "/imgate/imgate-comet.conf"

static void
usage(void)
{
	fprintf(stderr,
	        "usage: imgate-comet [-ftv] [-c file]\n"
	        "  -c file  config (default " DEFAULT_CONF ")\n"
	        "  -t       check the config and exit (0 valid, 1 invalid)\n"
	        "  -f       stay in the foreground\n"
	        "  -v       print the version and exit\n"
	        "exit status: 0 stopped cleanly, 1 failed to start or run, "
	        "2 bad config or usage\n");
	exit(DAEMON_EXIT_CONFIG);
}

int
main(int argc, char **argv)
{
	char path[PATH_MAX], err[1024];
	struct daemon_opts o;
	struct comet_conf *conf;
	int pid_fd, ready_fd = -1;

	if (daemon_getopt(argc, argv, "imgate-comet", DEFAULT_CONF, usage,
	                  &o) == -1)
		return o.status;
	if (o.operands != 0)
		usage();

	/* Reloads read the same file after chdir("/"). */
	if (realpath(o.conf, path) == NULL) {
		fprintf(stderr, "imgate-comet: %s: %s\n", o.conf,
		        strerror(errno));
		return o.check ? 1 : DAEMON_EXIT_CONFIG;
	}
	conf = malloc(sizeof(*conf));
	if (conf == NULL) {
		fprintf(stderr, "imgate-comet: out of memory\n");
		return 1;
	}
	comet_conf_defaults(conf);
	if (comet_conf_load(path, conf, err, sizeof(err)) == -1) {
		fprintf(stderr, "imgate-comet: %s\n", err);
		free(conf);
		return o.check ? 1 : DAEMON_EXIT_CONFIG;
	}
	if (o.check) {
		printf("ok\n");
		free(conf);
		return 0;
	}
	if (log_open("imgate-comet", conf->log_target, conf->log_level, err,
	             sizeof(err)) == -1) {
		/* The configured log cannot be written: a config error. */
		fprintf(stderr, "imgate-comet: log: %s\n", err);
		free(conf);
		return DAEMON_EXIT_CONFIG;
	}
	/*
	 * Before daemonizing, so "already running" reaches the terminal. A
	 * second master finds the file locked and stops before touching the
	 * listeners or the shm segment.
	 */
	pid_fd = daemon_pidfile_lock(conf->pid_file, err, sizeof(err));
	if (pid_fd == -1) {
		fprintf(stderr, "imgate-comet: %s\n", err);
		free(conf);
		return 1;
	}
	if (!o.foreground) {
		/* The master's pipe word: master_run() once workers run. */
		ready_fd = daemon_detach(
		    strcmp(conf->log_target, "stderr") == 0, err, sizeof(err));
		if (ready_fd == -1) {
			fprintf(stderr, "imgate-comet: %s\n", err);
			close(pid_fd);
			free(conf);
			return 1;
		}
		if (err[0] != '\0')
			log_warn("%s", err);
		umask(022);
	}
	return master_run(conf, pid_fd, ready_fd);
}
