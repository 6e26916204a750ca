/* Socket and buffer helpers shared by the rpc server and client. */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "rpc/rpc_int.h"

int
rpc_evbuffer_put(struct evbuffer *out, const void *head, size_t headlen,
                 const void *body, size_t bodylen)
{
	/*
	 * Room first: after a successful expand both adds land in the space
	 * it reserved and cannot fail half way. Should one fail anyway the
	 * caller treats the stream as broken and closes it.
	 */
	if (evbuffer_expand(out, headlen + bodylen) == -1)
		return -1;
	if (evbuffer_add(out, head, headlen) == -1)
		return -1;
	if (bodylen > 0 && evbuffer_add(out, body, bodylen) == -1)
		return -1;
	return 0;
}

void
rpc_sock_tune(int fd)
{
	int one = 1;

	/* Best effort: a socket that refuses still works, only slower. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void
rpc_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN];

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "?");
	}
}
