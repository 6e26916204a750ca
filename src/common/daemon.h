/*
 * daemon: how imgate-comet and imgate-logic start: their common command
 * line, detaching with a start-up pipe so that a failed start is the exit
 * status of the command that started it, and pid files.
 *
 * Nothing here logs or exits (but the parent side of daemon_detach):
 * functions fill an error buffer and each program says it in its words.
 */
#ifndef IMGATE_DAEMON_H
#define IMGATE_DAEMON_H

#include <stddef.h>
#include <sys/types.h>

/* A bad config or command line at start: a supervisor should not retry. */
#define DAEMON_EXIT_CONFIG 2

struct daemon_opts {
	const char *conf; /* -c file, else the default given */
	int check;        /* -t: check the config and exit */
	int foreground;   /* -f */
	int operands;     /* arguments left after the options */
	int status;       /* daemon_getopt returned -1: exit with it */
};

/*
 * Parse -c file, -f, -t, -v and -h into *o (conf starts as defconf). 0:
 * run. -1: exit now with o->status, 0 once -v printed "<prog> <version>"
 * (parsing stops there), DAEMON_EXIT_CONFIG once usage() was called for
 * -h or a bad option (after getopt(3) said what was wrong).
 */
int daemon_getopt(int argc, char **argv, const char *prog, const char *defconf,
                  void (*usage)(void), struct daemon_opts *o);

/*
 * Fork into the background. The parent does not return: it waits until
 * the child tells daemon_ready how its start went and exits with that
 * status (1 when the child ends without a word). The child runs in a new
 * session, in "/", with stdin, stdout and (unless keep_stderr) stderr on
 * /dev/null; it gets the pipe's end to give daemon_ready, and err empty
 * or naming what did not work (setsid, chdir: not fatal). -1 with err
 * filled when the pipe or the fork failed: nothing happened.
 */
int daemon_detach(int keep_stderr, char *err, size_t errlen);

/*
 * Tell the parent waiting in daemon_detach that the start went well
 * (status 0) or the exit status it failed with, once: *fd is closed and
 * set to -1; with *fd == -1 (in the foreground) nothing happens. -1 with
 * errno when the word could not be written.
 */
int daemon_ready(int *fd, int status);

/*
 * Open the pid file read-write, creating it (0644) and its missing
 * directories (0755). The descriptor (close-on-exec), or -1 with err
 * filled.
 */
int daemon_pidfile_open(const char *path, char *err, size_t errlen);

/*
 * Open and lock the pid file for the process's whole life: the lock
 * belongs to the open file, so it survives daemon_detach's fork, and a
 * file left by a killed daemon is not locked, so it never blocks a start.
 * The descriptor, or -1 with err filled ("already running (pid N holds
 * path)" when another process holds it).
 */
int daemon_pidfile_lock(const char *path, char *err, size_t errlen);

/* Replace the pid file's content with this process's pid. 0, or -1. */
int daemon_pidfile_write(int fd);

/*
 * The pid named in the pid file at path when it is a live process other
 * than this one; 0 when there is none (no file, no pid, or a stale file
 * naming a process that is gone).
 */
pid_t daemon_pidfile_running(const char *path);

#endif
