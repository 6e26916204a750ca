#include "config.h"

#include <string.h>

#include "comet/gap.h"

void
gap_reset(struct gap *g)
{
	memset(g, 0, sizeof(*g));
}

uint64_t
gap_note(struct gap *g, uint64_t src, uint64_t seq)
{
	uint64_t missed = 0;
	unsigned i, pick = 0;

	if (src == 0 || seq == 0)
		return 0;
	g->tick++;
	for (i = 0; i < GAP_SRCS; i++)
		if (g->s[i].src == src)
			break;
	if (i < GAP_SRCS) {
		if (seq > g->s[i].last)
			missed = seq - g->s[i].last - 1;
		g->s[i].last = seq;
		g->s[i].seen = g->tick;
		return missed;
	}
	/* A src not seen yet: nothing is known of what preceded it. */
	for (i = 0; i < GAP_SRCS; i++) {
		if (g->s[i].src == 0) {
			pick = i;
			break;
		}
		if (g->s[i].seen < g->s[pick].seen)
			pick = i;
	}
	g->s[pick].src = src;
	g->s[pick].last = seq;
	g->s[pick].seen = g->tick;
	return 0;
}
