/*
 * gap: push loss accounting for one subscribed Redis channel.
 *
 * Redis pub/sub drops what is published while a subscriber is away
 * (reconnecting, not yet resubscribed), and tells nobody. imgate-logic
 * stamps every envelope with its process's random id ("src") and a
 * sequence number per channel and src ("seq", from 1); a subscriber that
 * remembers the last seq of each src sees a loss as a jump.
 *
 * A few srcs are remembered per channel (one per logic process publishing
 * to it); the least recently seen is replaced by a new one. A seq at or
 * below the last one means that logic restarted or forgot the channel:
 * the count starts again from it. Envelopes without src or seq (older or
 * third-party publishers) are not accounted.
 * Not thread-safe: a worker is one thread.
 */
#ifndef IMGATE_COMET_GAP_H
#define IMGATE_COMET_GAP_H

#include <stdint.h>

#define GAP_SRCS 4

struct gap {
	struct {
		uint64_t src; /* 0 = free slot */
		uint64_t last;
		uint64_t seen; /* tick of the last message, for replacement */
	} s[GAP_SRCS];
	uint64_t tick;
};

/* Forget every src (zeroed memory is an empty struct gap too). */
void gap_reset(struct gap *g);

/*
 * Account one message of src with seq: the number of messages of src
 * missed right before it (0 for the next in line, a first sighting, a
 * reset, or src or seq 0).
 */
uint64_t gap_note(struct gap *g, uint64_t src, uint64_t seq);

#endif
