/*
 * webhook: upstream client messages (rpc Receive) to the business server.
 *
 * Each message is one HTTP POST to receive_url with the query
 * mid=<mid>&key=<key>&op=<op> appended and the client's body as the
 * request body (application/octet-stream). Messages are sent on one
 * keep-alive connection; at most webhook_max_inflight wait for an answer,
 * beyond that they are dropped and counted. Without a receive_url each
 * message is logged.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "logic/webhook.h"

struct webhook {
	struct logic *l;
	struct evhttp_connection *conn;
	char url[LOGIC_URL_MAX];
	char host[LOGIC_HOST_MAX];
	char path[LOGIC_URL_MAX];
	int port;
	long inflight;
};

static void
on_done(struct evhttp_request *req, void *arg)
{
	struct webhook *w = arg;
	int code = req != NULL ? evhttp_request_get_response_code(req) : 0;

	w->inflight--;
	if (code >= 200 && code < 300) {
		w->l->metrics.webhook_ok++;
	} else {
		w->l->metrics.webhook_failures++;
		log_warn("webhook %s: %s", w->url,
		         code == 0 ? "no answer" : "answered an error");
	}
}

static int
setup(struct webhook *w)
{
	const struct logic_conf *c = w->l->conf;
	struct evhttp_uri *u;
	const char *host, *path, *query;

	if (w->conn != NULL && strcmp(w->url, c->receive_url) == 0) {
		evhttp_connection_set_timeout(
		    w->conn, (int)((c->webhook_timeout_ms + 999) / 1000));
		return 0;
	}
	if (w->conn != NULL) {
		/* Its queued requests go without their callbacks. */
		evhttp_connection_free(w->conn);
		w->conn = NULL;
		w->inflight = 0;
	}
	snprintf(w->url, sizeof(w->url), "%s", c->receive_url);
	if (w->url[0] == '\0')
		return 0;
	u = evhttp_uri_parse(w->url);
	if (u == NULL || (host = evhttp_uri_get_host(u)) == NULL) {
		log_error("webhook: cannot parse receive_url %s", w->url);
		if (u != NULL)
			evhttp_uri_free(u);
		return -1;
	}
	path = evhttp_uri_get_path(u);
	query = evhttp_uri_get_query(u);
	snprintf(w->host, sizeof(w->host), "%s", host);
	w->port = evhttp_uri_get_port(u) > 0 ? evhttp_uri_get_port(u) : 80;
	snprintf(w->path, sizeof(w->path), "%s%s%s%s",
	         path != NULL && *path != '\0' ? path : "/",
	         query != NULL ? "?" : "", query != NULL ? query : "",
	         query != NULL ? "&" : "?");
	evhttp_uri_free(u);
	w->conn = evhttp_connection_base_new(w->l->base, NULL, w->host,
	                                     (ev_uint16_t)w->port);
	if (w->conn == NULL) {
		log_error("webhook: evhttp_connection_base_new %s failed",
		          w->url);
		return -1;
	}
	evhttp_connection_set_timeout(
	    w->conn, (int)((c->webhook_timeout_ms + 999) / 1000));
	evhttp_connection_set_retries(w->conn, 1);
	return 0;
}

struct webhook *
webhook_new(struct logic *l)
{
	struct webhook *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->l = l;
	if (setup(w) == -1) {
		webhook_free(w);
		return NULL;
	}
	return w;
}

int
webhook_reload(struct webhook *w)
{
	return setup(w);
}

void
webhook_free(struct webhook *w)
{
	if (w == NULL)
		return;
	if (w->conn != NULL)
		evhttp_connection_free(w->conn);
	free(w);
}

void
webhook_receive(struct webhook *w, int64_t mid, const char *key, size_t keylen,
                int32_t op, const void *body, size_t len)
{
	struct evhttp_request *req;
	char *ekey, *uri = NULL;

	if (w->conn == NULL) {
		log_info("receive mid=%" PRId64 " key=%.*s op=%" PRId32
		         " body=%zu bytes",
		         mid, (int)keylen, key, op, len);
		return;
	}
	if (w->inflight >= w->l->conf->webhook_max_inflight) {
		w->l->metrics.webhook_dropped++;
		return;
	}
	ekey = evhttp_uriencode(key, (ev_ssize_t)keylen, 0);
	req = evhttp_request_new(on_done, w);
	if (ekey == NULL || req == NULL ||
	    asprintf(&uri, "%smid=%" PRId64 "&key=%s&op=%" PRId32, w->path, mid,
	             ekey, op) == -1) {
		free(ekey);
		if (req != NULL)
			evhttp_request_free(req);
		w->l->metrics.webhook_failures++;
		return;
	}
	free(ekey);
	evhttp_add_header(evhttp_request_get_output_headers(req), "Host",
	                  w->host);
	evhttp_add_header(evhttp_request_get_output_headers(req),
	                  "Content-Type", "application/octet-stream");
	evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
	/* On failure libevent frees req itself. */
	if (evhttp_make_request(w->conn, req, EVHTTP_REQ_POST, uri) == -1)
		w->l->metrics.webhook_failures++;
	else
		w->inflight++;
	free(uri);
}
