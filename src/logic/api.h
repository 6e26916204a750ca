/*
 * api: the goim HTTP API on libevent's evhttp.
 *
 *   POST /goim/push/keys?operation=&keys=...    body = message
 *   POST /goim/push/mids?operation=&mids=...
 *   POST /goim/push/room?operation=&type=&room=
 *   POST /goim/push/all?operation=&speed=
 *   GET  /goim/online/top?type=&limit=
 *   GET  /goim/online/room?type=&rooms=...
 *   GET  /goim/online/total
 *   GET  /goim/nodes/weighted?platform=
 *   GET  /goim/nodes/instances
 *   GET  /metrics   (Prometheus text)
 *   GET  /healthz   (200 "ok" while Redis answers, 503 otherwise)
 *
 * Lists are repeated parameters; keys and mids may also be comma-separated.
 * Answers are {"code":0,"message":"","data":...} with HTTP 200, code -400
 * for bad requests and -500 when Redis fails, like goim; -504 (HTTP 200)
 * when a PUBLISH was written but never answered, so the push may have
 * been delivered (see enum api_code); -401 (HTTP 401) when push_token is
 * set and the bearer token is wrong, -404 (HTTP 404) for unknown paths.
 */
#ifndef IMGATE_LOGIC_API_H
#define IMGATE_LOGIC_API_H

#include <stddef.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "logic/logic.h"

struct api *api_new(struct logic *l, char *err, size_t errlen);
void api_free(struct api *a);

/* Apply the limits of a new l->conf (the listener stays). */
void api_reload(struct api *a);

/*
 * goim's NodesReply built from a session_nodes reply (NULL or an error:
 * the configured domain only). Shared with the Nodes rpc method.
 */
json_t *api_nodes_reply(struct logic *l, const redisReply *r);

#endif
