/*
 * listeners: the master binds every client listening socket itself, before
 * forking, so workers inherit them and a respawned worker finds them ready.
 */
#include "config.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "comet/master.h"

/* The kernel caps it at net.core.somaxconn. */
#define LISTEN_BACKLOG 4096

const char *const listener_kind_names[LISTENER__COUNT] = {"tcp", "ws", "wss"};

const char *
listener_addr_str(const struct comet_addr *a, char *buf, size_t len)
{
	if (a->host[0] == '\0')
		snprintf(buf, len, "*:%d", a->port);
	else if (strchr(a->host, ':') != NULL)
		snprintf(buf, len, "[%s]:%d", a->host, a->port);
	else
		snprintf(buf, len, "%s:%d", a->host, a->port);
	return buf;
}

static int
bind_family(const struct comet_addr *a, int family, int reuseport, char *err,
            size_t errlen)
{
	struct addrinfo hints, *res, *ai;
	char port[16], where[COMET_HOST_MAX + 16];
	int fd = -1, on = 1, off = 0, rc, saved = 0;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", a->port);
	listener_addr_str(a, where, sizeof(where));
	rc = getaddrinfo(a->host[0] != '\0' ? a->host : NULL, port, &hints,
	                 &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", where, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family,
		            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		            ai->ai_protocol);
		if (fd == -1) {
			saved = errno;
			continue;
		}
		/* A restart must not wait for TIME_WAIT sockets to expire. */
		/* ":port" on an IPv6 socket also takes IPv4 clients. */
		if (ai->ai_family == AF_INET6 && a->host[0] == '\0' &&
		    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off,
		               sizeof(off)) == -1) {
			saved = errno;
			close(fd);
			fd = -1;
			continue;
		}
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) ==
		        -1 ||
		    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on,
		                             sizeof(on)) == -1) ||
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == -1 ||
		    listen(fd, LISTEN_BACKLOG) == -1) {
			saved = errno;
			close(fd);
			fd = -1;
			continue;
		}
		break;
	}
	freeaddrinfo(res);
	if (fd == -1)
		snprintf(err, errlen, "%s: %s", where, strerror(saved));
	return fd;
}

int
listener_bind(const struct comet_addr *a, int reuseport, char *err,
              size_t errlen)
{
	int fd;

	if (a->host[0] != '\0')
		return bind_family(a, AF_UNSPEC, reuseport, err, errlen);
	/* All interfaces: dual-stack where the host has IPv6, else IPv4. */
	fd = bind_family(a, AF_INET6, reuseport, err, errlen);
	if (fd == -1)
		fd = bind_family(a, AF_INET, reuseport, err, errlen);
	return fd;
}
