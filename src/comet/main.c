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
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "comet/master.h"

#define DEFAULT_CONF SYSCONFDIR "/imgate/imgate-comet.conf"

#define EXIT_CONFIG 2

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
	exit(EXIT_CONFIG);
}

/*
 * Lock the pid file for the master's whole life: a second master finds it
 * locked and stops before touching the listeners or the shm segment. A
 * file left by a killed master is not locked, so it never blocks a start.
 */
static int
pid_file_lock(const char *path)
{
	char buf[32] = "", dir[PATH_MAX], *slash;
	ssize_t n;
	int fd;

	/* The default lives in a directory of its own (/run/imgate). */
	snprintf(dir, sizeof(dir), "%s", path);
	for (slash = strchr(dir + 1, '/'); slash != NULL;
	     slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST) {
			fprintf(stderr, "imgate-comet: mkdir %s: %s\n", dir,
			        strerror(errno));
			break;
		}
		*slash = '/';
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (fd == -1) {
		fprintf(stderr, "imgate-comet: pid file %s: %s\n", path,
		        strerror(errno));
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) == -1) {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		fprintf(stderr,
		        "imgate-comet: already running (pid %s holds %s)\n",
		        buf[0] != '\0' ? buf : "?", path);
		close(fd);
		return -1;
	}
	return fd;
}

/*
 * Fork into the background. The parent waits until the master reports
 * that its workers run (one byte on the pipe) so that a failed start is
 * an exit status, not a line in a log nobody reads yet.
 */
static int
daemonize(int keep_stderr)
{
	int p[2], fd;
	pid_t pid;
	ssize_t r;
	char c = 0;

	if (pipe2(p, O_CLOEXEC) == -1) {
		perror("imgate-comet: pipe");
		exit(1);
	}
	pid = fork();
	if (pid == -1) {
		perror("imgate-comet: fork");
		exit(1);
	}
	if (pid > 0) {
		/* '1' ready; else the master's exit status, as a digit. */
		close(p[1]);
		do
			r = read(p[0], &c, 1);
		while (r == -1 && errno == EINTR);
		if (r == 1 && c == '1')
			exit(0);
		exit(r == 1 && c == '0' + EXIT_CONFIG ? EXIT_CONFIG : 1);
	}
	close(p[0]);
	if (setsid() == -1)
		perror("imgate-comet: setsid");
	if (chdir("/") == -1)
		perror("imgate-comet: chdir /");
	umask(022);
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
main(int argc, char **argv)
{
	const char *conf_arg = DEFAULT_CONF;
	char path[PATH_MAX], err[1024];
	struct comet_conf *conf;
	int ch, check = 0, foreground = 0, pid_fd, ready_fd = -1;

	while ((ch = getopt(argc, argv, "c:ftvh")) != -1) {
		switch (ch) {
		case 'c':
			conf_arg = optarg;
			break;
		case 'f':
			foreground = 1;
			break;
		case 't':
			check = 1;
			break;
		case 'v':
			printf("imgate-comet " PACKAGE_VERSION "\n");
			return 0;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	/* Reloads read the same file after chdir("/"). */
	if (realpath(conf_arg, path) == NULL) {
		fprintf(stderr, "imgate-comet: %s: %s\n", conf_arg,
		        strerror(errno));
		return check ? 1 : EXIT_CONFIG;
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
		return check ? 1 : EXIT_CONFIG;
	}
	if (check) {
		printf("ok\n");
		free(conf);
		return 0;
	}
	if (log_open("imgate-comet", conf->log_target, conf->log_level, err,
	             sizeof(err)) == -1) {
		/* The configured log cannot be written: a config error. */
		fprintf(stderr, "imgate-comet: log: %s\n", err);
		free(conf);
		return EXIT_CONFIG;
	}
	/* Before daemonizing, so "already running" reaches the terminal;
	 * the lock belongs to the open file and survives the fork. */
	pid_fd = pid_file_lock(conf->pid_file);
	if (pid_fd == -1) {
		free(conf);
		return 1;
	}
	if (!foreground)
		ready_fd = daemonize(strcmp(conf->log_target, "stderr") == 0);
	return master_run(conf, pid_fd, ready_fd);
}
