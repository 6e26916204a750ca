/*
 * mpscan: a msgpack framing scanner, run over bytes before msgpack-c
 * sees them.
 *
 * msgpack-c allocates the storage of an array or map as soon as it reads
 * the container's header, sized by the count the peer declared: five
 * bytes (0xdd ff ff ff ff) ask for ~100 GB. It has no size limit of its
 * own either. The scanner reads only headers and lengths, never values:
 * it tracks how many elements the open containers still owe and refuses
 * a header whose counts or lengths could not fit in max_message bytes
 * (each element costs at least one byte), and containers nested deeper
 * than max_depth. It takes bytes as they come, in pieces of any size, and
 * says where each message ends. Hand-written because msgpack-c offers no
 * hook between reading a header and allocating for it.
 *
 * No allocation, no dependency; the caller words the errors.
 */
#ifndef IMGATE_MPSCAN_H
#define IMGATE_MPSCAN_H

#include <stddef.h>
#include <stdint.h>

#define MPSCAN_DEPTH_MAX 64

/*
 * An empty array or map counts as a level of nesting, as msgpack-c's own
 * stack counts it. Without it only containers with elements nest.
 */
#define MPSCAN_EMPTY_NESTS 0x1

enum mpscan_error {
	MPSCAN_OK = 0,
	MPSCAN_BAD_BYTE,      /* 0xc1, never used: byte */
	MPSCAN_TOO_DEEP,      /* a container beyond max_depth */
	MPSCAN_BIG_CONTAINER, /* size: the elements it declared (2n: map) */
	MPSCAN_BIG_VALUE,     /* size: the bytes a str/bin/ext... declared */
	MPSCAN_BIG_HEAD,      /* no room left for a length field */
};

struct mpscan {
	uint64_t max_message;
	unsigned max_depth;
	int flags;

	/* Set when mpscan_feed returns -1; the scanner then stays dead. */
	enum mpscan_error error;
	uint8_t byte;
	uint64_t size;

	/* Where the scan is: see mpscan.c. */
	int state;
	int head_kind;
	unsigned head_need;  /* length bytes still to read */
	unsigned head_extra; /* payload bytes beyond the length (ext) */
	uint32_t head_val;
	uint64_t skip;        /* bytes still to skip */
	uint64_t msg_bytes;   /* bytes of the current message so far */
	uint64_t outstanding; /* elements open containers still owe */
	unsigned sp;
	uint64_t stack[MPSCAN_DEPTH_MAX]; /* elements not yet started */
};

/* max_depth is capped at MPSCAN_DEPTH_MAX; flags: MPSCAN_EMPTY_NESTS. */
void mpscan_init(struct mpscan *s, uint64_t max_message, unsigned max_depth,
                 int flags);

/*
 * Scan len bytes at p up to the end of the first message that ends in
 * them: 1 with *used the bytes up to that end (feed the rest again for
 * the next message); 0 when all len bytes were scanned and no message
 * ended (*used = len); -1 when the bytes break a limit or are not msgpack
 * (s->error says how), and every later call fails.
 */
int mpscan_feed(struct mpscan *s, const void *p, size_t len, size_t *used);

/* Whether a message has begun and not ended. */
int mpscan_in_message(const struct mpscan *s);

#endif
