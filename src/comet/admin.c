/*
 * admin: the master's HTTP listener (evhttp on the master's loop):
 * /metrics in Prometheus text, summed from the workers' shm counters, and
 * /healthz. Reading shm never takes a lock, so a scrape cannot stall a
 * worker.
 */
#include "config.h"

#include <inttypes.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "comet/master.h"

/* Counters that are gauges rather than running totals. */
static int
counter_is_gauge(enum shm_counter c)
{
	return c == SHM_C_CONN_CURRENT;
}

/* Per-worker series are worth their lines for these. */
static int
counter_per_worker(enum shm_counter c)
{
	return c == SHM_C_CONN_CURRENT || c == SHM_C_CONN_ACCEPTED ||
	       c == SHM_C_BYTES_IN || c == SHM_C_BYTES_OUT ||
	       c == SHM_C_DELIVERED || c == SHM_C_ACCEPT_PAUSED;
}

static void
metric(struct evbuffer *b, const char *name, const char *type, const char *help,
       uint64_t v)
{
	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n",
	                    name, help, name, type, name, v);
}

static void
metrics(struct master *m, struct evbuffer *b)
{
	uint64_t channels = 0, rooms = 0;
	int alive, c;
	uint32_t i;

	master_healthy(m, &alive);
	metric(b, "imgate_comet_workers", "gauge", "Workers configured.",
	       (uint64_t)m->nworkers);
	metric(b, "imgate_comet_workers_alive", "gauge",
	       "Workers running, accepting and responsive.", (uint64_t)alive);
	metric(b, "imgate_comet_worker_respawns_total", "counter",
	       "Workers respawned after dying.", m->respawns);
	metric(b, "imgate_comet_reloads_total", "counter",
	       "Config reloads applied.", m->reloads);
	metric(b, "imgate_comet_reload_failures_total", "counter",
	       "Config reloads refused.", m->reload_failures);
	metric(b, "imgate_comet_worker_watchdog_kills_total", "counter",
	       "Workers killed for an unresponsive loop ([server] "
	       "worker_timeout).",
	       m->watchdog_kills);
	metric(b, "imgate_comet_config_generation", "gauge",
	       "Generation of the running config.", m->generation);
	metric(b, "imgate_comet_capacity_connections", "gauge",
	       "Node capacity: workers x per-worker connection limit.",
	       (uint64_t)m->capacity);
	metric(b, "imgate_comet_worker_connection_limit", "gauge",
	       "Connection limit of one worker.", (uint64_t)m->per_worker);
	metric(b, "imgate_comet_max_connections", "gauge",
	       "Configured node connection limit (0 = capacity).",
	       (uint64_t)m->conf->max_connections);
	evbuffer_add_printf(b, "# HELP imgate_comet_worker_running 1 when the "
	                       "worker runs and accepts.\n"
	                       "# TYPE imgate_comet_worker_running gauge\n");
	for (i = 0; i < (uint32_t)m->nworkers; i++) {
		const struct shm_worker *s = shm_worker_slot_ro(m->shm, i);

		evbuffer_add_printf(
		    b, "imgate_comet_worker_running{worker=\"%u\"} %d\n", i,
		    m->w[i].pid != 0 &&
		        __atomic_load_n(&s->state, __ATOMIC_ACQUIRE) ==
		            SHM_WORKER_RUNNING);
	}
	shm_seg_usage(m->shm, &channels, &rooms);
	metric(b, "imgate_comet_channels", "gauge",
	       "Channels registered in shm.", channels);
	metric(b, "imgate_comet_rooms", "gauge", "Rooms with members here.",
	       rooms);

	for (c = 0; c < SHM_C__COUNT; c++) {
		const char *name = shm_counter_name((enum shm_counter)c);
		int gauge = counter_is_gauge((enum shm_counter)c);

		if (name == NULL)
			continue;
		evbuffer_add_printf(b, "# TYPE imgate_comet_%s%s %s\n", name,
		                    gauge ? "" : "_total",
		                    gauge ? "gauge" : "counter");
		evbuffer_add_printf(
		    b, "imgate_comet_%s%s %" PRIu64 "\n", name,
		    gauge ? "" : "_total",
		    shm_counter_sum(m->shm, (enum shm_counter)c));
		if (!counter_per_worker((enum shm_counter)c))
			continue;
		evbuffer_add_printf(b, "# TYPE imgate_comet_worker_%s%s %s\n",
		                    name, gauge ? "" : "_total",
		                    gauge ? "gauge" : "counter");
		for (i = 0; i < (uint32_t)m->nworkers; i++) {
			const struct shm_worker *s =
			    shm_worker_slot_ro(m->shm, i);

			evbuffer_add_printf(
			    b,
			    "imgate_comet_worker_%s%s{worker=\"%u\"} %" PRIu64
			    "\n",
			    name, gauge ? "" : "_total", i,
			    __atomic_load_n(&s->counters[c], __ATOMIC_RELAXED));
		}
	}
}

static void
admin_cb(struct evhttp_request *req, void *arg)
{
	struct master *m = arg;
	const char *path =
	    evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
	struct evbuffer *b = evbuffer_new();
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	int alive, code = 200;
	const char *reason = "OK";

	if (b == NULL) {
		evhttp_send_error(req, 500, NULL);
		return;
	}
	if (path == NULL)
		path = "/";
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		code = 405;
		reason = "Method Not Allowed";
		evhttp_add_header(h, "Allow", "GET, HEAD");
		evbuffer_add_printf(b, "method not allowed\n");
	} else if (strcmp(path, "/metrics") == 0) {
		evhttp_add_header(h, "Content-Type",
		                  "text/plain; version=0.0.4; charset=utf-8");
		metrics(m, b);
	} else if (strcmp(path, "/healthz") == 0) {
		evhttp_add_header(h, "Content-Type", "text/plain");
		if (master_healthy(m, &alive)) {
			evbuffer_add_printf(b, "ok: %d/%d workers\n", alive,
			                    m->nworkers);
		} else {
			code = 503;
			reason = "Service Unavailable";
			evbuffer_add_printf(b, "%s: %d/%d workers\n",
			                    m->stopping ? "stopping"
			                                : "degraded",
			                    alive, m->nworkers);
		}
	} else {
		code = 404;
		reason = "Not Found";
		evbuffer_add_printf(b, "not found; try /metrics or /healthz\n");
	}
	evhttp_send_reply(req, code, reason, b);
	evbuffer_free(b);
}

int
admin_bind(struct master *m)
{
	const struct comet_addr *a = &m->conf->admin;
	struct evhttp_bound_socket *s;
	char where[COMET_HOST_MAX + 16];

	if (m->http == NULL) {
		m->http = evhttp_new(m->base);
		if (m->http == NULL) {
			log_error("evhttp_new failed");
			return -1;
		}
		/* Scrapers send tiny requests; nothing big is accepted. */
		evhttp_set_max_headers_size(m->http, 8192);
		evhttp_set_max_body_size(m->http, 0);
		evhttp_set_timeout(m->http, 10);
		evhttp_set_gencb(m->http, admin_cb, m);
	}
	if (a->port == 0) {
		if (m->http_sock != NULL)
			evhttp_del_accept_socket(m->http, m->http_sock);
		m->http_sock = NULL;
		return 0;
	}
	s = evhttp_bind_socket_with_handle(
	    m->http, a->host[0] != '\0' ? a->host : "0.0.0.0",
	    (ev_uint16_t)a->port);
	if (s == NULL) {
		log_error("admin listener %s: cannot bind",
		          listener_addr_str(a, where, sizeof(where)));
		return -1;
	}
	evutil_make_socket_closeonexec(evhttp_bound_socket_get_fd(s));
	if (m->http_sock != NULL)
		evhttp_del_accept_socket(m->http, m->http_sock);
	m->http_sock = s;
	log_notice("admin listening on http://%s/",
	           listener_addr_str(a, where, sizeof(where)));
	return 0;
}

void
admin_free(struct master *m)
{
	if (m->http != NULL)
		evhttp_free(m->http);
	m->http = NULL;
	m->http_sock = NULL;
}
