/*
 * svc: the msgpack-rpc methods comets call (goim's Logic service).
 * Params are one map in the params array; results are maps.
 *
 *   Connect     {server, cookie, token}
 *               -> {mid, key, room_id, platform, accepts, heartbeat}
 *               heartbeat: the server-side timeout in seconds the comet
 *               applies to the connection (heartbeat_timeout)
 *   Disconnect  {mid, key, server} -> {has}
 *   Heartbeat   {mid, key, server} -> {has} (false: the key moved to
 *               another server)
 *   RenewOnline {server, room_count: {room: n}, and optionally addrs:
 *               [host], tcp_port, ws_port, wss_port, conn_count,
 *               ip_count} -> {all_room_count: {room: n}}
 *   Receive     {mid, key, op, body} -> {}
 *   Nodes       {platform, client_ip} -> goim's NodesReply
 *   Ping        {} -> {}
 * Errors are strings: "bad params: ...", "auth: ...", "redis unavailable",
 * "redis error", "unknown method".
 */
#ifndef IMGATE_LOGIC_SVC_H
#define IMGATE_LOGIC_SVC_H

#include <stddef.h>

#include "logic/logic.h"

struct svc *svc_new(struct logic *l, char *err, size_t errlen);
void svc_free(struct svc *s);

/* The bound port (useful with port 0). */
int svc_port(const struct svc *s);

#endif
