#include "config.h"

#include <stdint.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

#include "logic/logic.h"

uint64_t
logic_now_ms(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

/*
 * seed ^ (seq * odd constant) is a bijection of seq, so ids never repeat
 * within a process; the random seed keeps logic nodes apart.
 */
uint64_t
logic_next_id(struct logic *l)
{
	static uint64_t seed;
	static int seeded;

	if (!seeded) {
		if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) !=
		    (ssize_t)sizeof(seed))
			seed = logic_now_ms() ^ ((uint64_t)getpid() << 40);
		seeded = 1;
	}
	return seed ^ (++l->publish_seq * 0x9e3779b97f4a7c15ULL);
}

uint64_t
logic_new_src(void)
{
	uint64_t v = 0;

	/* Two logic processes must not share a src: their seqs would mix. */
	while (v == 0) {
		if (getrandom(&v, sizeof(v), 0) != (ssize_t)sizeof(v)) {
			struct timeval tv;

			gettimeofday(&tv, NULL);
			v = ((uint64_t)tv.tv_sec << 32) ^
			    ((uint64_t)tv.tv_usec << 12) ^ (uint64_t)getpid();
		}
	}
	return v;
}
