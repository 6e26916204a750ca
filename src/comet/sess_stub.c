/*
 * A session layer that refuses every client: lets the master and worker
 * processes be built and exercised before (or without) the real one.
 */
#include "config.h"

#include <unistd.h>

#include "comet/comet.h"

int
sess_init(struct worker *w)
{
	return 0;
}

void
sess_accept(struct worker *w, evutil_socket_t fd, const struct sockaddr *sa,
            socklen_t salen, enum listener_kind kind)
{
	close(fd);
}

void
sess_kick(struct worker *w, uint32_t conn_id)
{
}

void
sess_reload(struct worker *w, const struct comet_conf *old)
{
}

size_t
sess_count(const struct worker *w)
{
	return 0;
}

void
sess_drain(struct worker *w, void (*done)(struct worker *w))
{
	done(w);
}

void
sess_free(struct worker *w)
{
}
