/*
 * chanseq: the "seq" imgate-logic stamps on its envelopes, one counter per
 * Redis channel (see common/envelope.h).
 *
 * Counters of channels not published to for idle_ms are forgotten, and
 * beyond max channels the least recently used one is: a forgotten channel
 * starts again at 1, which subscribers take for a publisher restart, so
 * memory stays bounded at no cost but a missed gap right at that moment.
 */
#ifndef IMGATE_LOGIC_CHANSEQ_H
#define IMGATE_LOGIC_CHANSEQ_H

#include <stddef.h>
#include <stdint.h>

struct chanseq;

struct chanseq *chanseq_new(size_t max, uint64_t idle_ms);
void chanseq_free(struct chanseq *cs);

/*
 * The next seq for channel (1 for a channel not known), counted as used at
 * now_ms. 0 only when out of memory: the envelope then goes without seq.
 */
uint64_t chanseq_next(struct chanseq *cs, const char *channel, size_t len,
                      uint64_t now_ms);

/*
 * Give back the seq chanseq_next just returned for channel, when the
 * PUBLISH it was for never left this process: a subscriber would count it
 * as a message Redis dropped.
 */
void chanseq_undo(struct chanseq *cs, const char *channel, size_t len,
                  uint64_t seq);

/* Channels remembered. */
size_t chanseq_count(const struct chanseq *cs);

#endif
