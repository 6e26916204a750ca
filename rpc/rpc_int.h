/* rpc: helpers shared by server.c and client.c; not part of the API. */
#ifndef IMGATE_RPC_INT_H
#define IMGATE_RPC_INT_H

#include <stddef.h>

#include <event2/buffer.h>

struct sockaddr;

/* snprintf into err when err != NULL (codec.c). */
void rpc_seterr(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The rest is in net.c. */

/*
 * Append head and body to out as one message. 0, or -1: the stream may
 * hold part of it, close the connection.
 */
int rpc_evbuffer_put(struct evbuffer *out, const void *head, size_t headlen,
                     const void *body, size_t bodylen);

/* TCP_NODELAY: requests and replies are small and latency matters. */
void rpc_sock_tune(int fd);

/* "ip:port" ("[ip]:port" for IPv6) of sa into buf. */
void rpc_format_addr(const struct sockaddr *sa, char *buf, size_t len);

#endif
