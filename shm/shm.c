/*
 * shm: the segment layout, its robust locks and the bucket tables.
 *
 * Segment:  [header][worker slots x max_workers]
 *           [bucket headers x buckets: mutex, seq, dirty, counts]
 *           [channel index x buckets][room index x buckets]
 *           [channel pool x buckets][room pool x buckets]
 *
 * Each table of a bucket (its channels, its rooms) is two parts: an index
 * of 4-byte cells, open addressing with linear probing from a home cell
 * taken from the hash's high bits and backward-shift deletion (no
 * tombstones, so chains never grow with churn), and a dense pool of
 * records filled from the front, entries[0..count). A cell holds the entry
 * number + 1 (0 = free) and a few more hash bits, so most probes never
 * read a record. An insert appends at entries[count]; a delete moves the
 * last record into the hole and repoints that record's cell.
 *
 * Why: records land where count says, not where their hash says, so the
 * pages a table touches follow the records it holds, not its capacity. A
 * node sized for a million connections that holds fifty thousand has the
 * memory of fifty thousand records plus 4 bytes per slot of index; with
 * records at random slots every page of the table became resident. Pool
 * pages once touched stay resident (shm is not given back), so memory
 * follows the high-water mark of each bucket.
 *
 * Crash safety. A writer makes the sequence odd and sets the bucket's
 * dirty flag before touching the table, marks a record ENTRY_WRITING
 * before filling it and ENTRY_USED last. A writer that dies leaves the
 * robust mutex EOWNERDEAD; the next locker sees dirty (or an odd sequence)
 * and rebuilds the table from its pool: it keeps the records of
 * entries[0..count) that are ENTRY_USED and hashed as they read, drops the
 * second copy of a record a delete had moved but not yet unindexed, closes
 * the gaps, and indexes what is left from scratch. The index is derived
 * data, so nothing a writer left half done in it matters.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "shm/shm.h"
#include "shm/shm_test.h"

#define ENTRY_FREE    0
#define ENTRY_USED    1
#define ENTRY_WRITING 2

#define CACHELINE 64
/*
 * Regions start on a page so that an index of a whole number of pages
 * shares none with its neighbours. A constant, not sysconf(): every
 * process must compute the same layout.
 */
#define REGION_ALIGN 4096

/* Far above any real node, low enough that no size computation wraps. */
#define GEOM_BUCKETS_MAX (1u << 20)
#define GEOM_SLOTS_MAX   (1u << 16)
#define GEOM_WORKERS_MAX 4096u

/*
 * An index cell: entry number + 1 in the low CELL_ENTRY_BITS (0 = free
 * cell), the top bits of the record's hash above them.
 */
#define CELL_ENTRY_BITS 17
#define CELL_ENTRY_MASK ((1u << CELL_ENTRY_BITS) - 1)
#define CELL_TAG_BITS   (32 - CELL_ENTRY_BITS)

#if GEOM_SLOTS_MAX > CELL_ENTRY_MASK
#error "an index cell must hold every entry number + 1"
#endif

/*
 * Lock-free readers retry this many times (spinning, then yielding)
 * before they give up on a bucket: a writer holds a bucket for a few
 * microseconds, so only a dead or descheduled writer gets that far.
 */
#define READ_TRIES 2000
#define READ_SPINS 64

#if SHM_KICK_MAX & (SHM_KICK_MAX - 1)
#error "SHM_KICK_MAX must be a power of two (ring indices wrap at 2^32)"
#endif

/*
 * The first 12 bytes (magic, version) stay where they are in every
 * version, so any later reader can tell which version it is looking at.
 */
struct shm_header {
	char magic[8];
	uint32_t version;
	uint32_t header_size;
	uint64_t seg_size;
	struct shm_geometry geom;
	/*
	 * The layout the creator computed: an attacher built with other
	 * structure sizes (another platform or libc) refuses rather than
	 * misreads.
	 */
	uint32_t mutex_size;
	uint32_t channel_size;
	uint64_t worker_stride;
	uint64_t workers_off;
	uint64_t buckets_off;
	uint64_t bucket_stride;
	uint64_t chan_index_off;
	uint64_t room_index_off;
	uint64_t chan_pool_off;
	uint64_t room_pool_off;
	uint64_t chan_entry_size;
	uint64_t room_entry_size;
	int32_t master_pid;
	uint32_t pad;
	uint64_t created_ms;
	/*
	 * The master's start time in clock ticks since boot (/proc), 0 if
	 * unknown: with the pid it names one process, so a pid reused after
	 * the master died is not mistaken for it.
	 */
	uint64_t master_start;
};

/* Common head of both record kinds, so the table code is shared. */
struct entry_head {
	uint32_t state;
	uint32_t aux;
	uint64_t hash;
};

struct chan_entry {
	uint32_t state;
	uint32_t pad;
	uint64_t hash;
	struct shm_channel c;
};

struct room_entry {
	uint32_t state;
	uint32_t online; /* sum of counts[] */
	uint64_t hash;
	uint32_t cluster_online;
	uint32_t pad;
	char name[SHM_ROOM_MAX];
	uint32_t counts[]; /* max_workers entries */
};

/*
 * Bucket headers are packed one per cache line, apart from the tables: a
 * table's pages then hold records only.
 */
struct bucket_hdr {
	pthread_mutex_t mtx;
	uint32_t seq;        /* odd while a write is in progress */
	uint32_t dirty;      /* set before a write, cleared after */
	uint32_t nchannels;  /* channel pool entries in use */
	uint32_t nrooms;     /* room pool entries in use */
	uint32_t recoveries; /* times the lock was found owner-dead */
} __attribute__((aligned(CACHELINE)));

struct kick_box {
	pthread_mutex_t mtx;
	uint32_t head; /* next to take */
	uint32_t tail; /* next to fill; tail - head = pending */
	uint32_t ids[SHM_KICK_MAX];
};

/*
 * One cache line boundary before the counters' owner and the mailbox the
 * other workers write, and between consecutive slots.
 */
struct worker_slot {
	struct shm_worker w;
	struct kick_box kick __attribute__((aligned(CACHELINE)));
} __attribute__((aligned(CACHELINE)));

struct layout {
	size_t workers_off;
	size_t worker_stride;
	size_t buckets_off;
	size_t bucket_stride;
	size_t chan_index_off; /* buckets x channels_per_bucket cells */
	size_t room_index_off; /* buckets x rooms_per_bucket cells */
	size_t chan_pool_off;  /* buckets x channels_per_bucket entries */
	size_t room_pool_off;  /* buckets x rooms_per_bucket entries */
	size_t chan_entry_size;
	size_t room_entry_size;
	size_t seg_size;
};

struct shm_seg {
	unsigned char *base;
	size_t size;
	int readonly;
	struct shm_geometry g; /* validated copy: never re-read from shm */
	struct layout l;
	char name[NAME_MAX + 1];
};

/* A table of one bucket: its index, its pool and the pool's count. */
struct tab {
	uint32_t *cells;
	unsigned char *pool;
	uint32_t *count; /* the bucket's nchannels or nrooms */
	size_t stride;   /* bytes of an entry */
	uint32_t n;      /* entries in the pool, and cells in the index */
	size_t key_off;  /* offset of the NUL-terminated key in an entry */
	size_t key_max;
	int rooms; /* room entries carry counts to validate */
	uint32_t nworkers;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static size_t
round_up(size_t x, size_t a)
{
	return (x + a - 1) / a * a;
}

/* 1 if s holds a NUL-terminated, non-empty string within max bytes. */
static int
str_ok(const char *s, size_t max)
{
	return s[0] != '\0' && memchr(s, '\0', max) != NULL;
}

static uint64_t
hash_str(const char *s)
{
	return XXH3_64bits(s, strlen(s));
}

static int
geometry_check(const struct shm_geometry *g, char *err, size_t errlen)
{
	if (g->buckets < 1 || g->buckets > GEOM_BUCKETS_MAX) {
		set_err(err, errlen, "buckets %u out of range 1..%u",
		        g->buckets, GEOM_BUCKETS_MAX);
		return -1;
	}
	if (g->channels_per_bucket < 1 ||
	    g->channels_per_bucket > GEOM_SLOTS_MAX) {
		set_err(err, errlen,
		        "channels per bucket %u out of range 1..%u",
		        g->channels_per_bucket, GEOM_SLOTS_MAX);
		return -1;
	}
	if (g->rooms_per_bucket < 1 || g->rooms_per_bucket > GEOM_SLOTS_MAX) {
		set_err(err, errlen, "rooms per bucket %u out of range 1..%u",
		        g->rooms_per_bucket, GEOM_SLOTS_MAX);
		return -1;
	}
	if (g->max_workers < 1 || g->max_workers > GEOM_WORKERS_MAX) {
		set_err(err, errlen, "max workers %u out of range 1..%u",
		        g->max_workers, GEOM_WORKERS_MAX);
		return -1;
	}
	return 0;
}

int
shm_geometry_check(const struct shm_geometry *g, char *err, size_t errlen)
{
	return geometry_check(g, err, errlen);
}

/*
 * Place a region of a x b items of each bytes at the next aligned offset
 * from *off: *at is where it starts, *off moves past it. -1 on overflow.
 */
static int
region(size_t *off, size_t align, size_t a, size_t b, size_t each, size_t *at)
{
	size_t items, len;

	*at = round_up(*off, align);
	if (*at < *off || __builtin_mul_overflow(a, b, &items) ||
	    __builtin_mul_overflow(items, each, &len) ||
	    __builtin_add_overflow(*at, len, off))
		return -1;
	return 0;
}

/*
 * With the bounds above the largest segment is about 2^20 buckets of
 * 2^16 x 16 KB room entries, 2^60 bytes: it fits size_t on 64-bit hosts,
 * but the arithmetic is checked anyway so a 32-bit build refuses instead
 * of wrapping.
 */
static int
layout_compute(const struct shm_geometry *g, struct layout *l)
{
	size_t off;

	if (geometry_check(g, NULL, 0) == -1)
		return -1;
	memset(l, 0, sizeof(*l));
	l->workers_off = round_up(sizeof(struct shm_header), CACHELINE);
	l->worker_stride = sizeof(struct worker_slot);
	l->bucket_stride = sizeof(struct bucket_hdr);
	l->chan_entry_size = sizeof(struct chan_entry);
	l->room_entry_size =
	    round_up(sizeof(struct room_entry) +
	                 (size_t)g->max_workers * sizeof(uint32_t),
	             8);
	off = l->workers_off + (size_t)g->max_workers * l->worker_stride;
	if (region(&off, CACHELINE, g->buckets, 1, l->bucket_stride,
	           &l->buckets_off) == -1 ||
	    region(&off, REGION_ALIGN, g->buckets, g->channels_per_bucket,
	           sizeof(uint32_t), &l->chan_index_off) == -1 ||
	    region(&off, REGION_ALIGN, g->buckets, g->rooms_per_bucket,
	           sizeof(uint32_t), &l->room_index_off) == -1 ||
	    region(&off, REGION_ALIGN, g->buckets, g->channels_per_bucket,
	           l->chan_entry_size, &l->chan_pool_off) == -1 ||
	    region(&off, REGION_ALIGN, g->buckets, g->rooms_per_bucket,
	           l->room_entry_size, &l->room_pool_off) == -1)
		return -1;
	l->seg_size = off;
	return 0;
}

size_t
shm_seg_size(const struct shm_geometry *g)
{
	struct layout l;

	if (layout_compute(g, &l) == -1)
		return 0;
	return l.seg_size;
}

static int
name_check(const char *name, char *err, size_t errlen)
{
	size_t len = name == NULL ? 0 : strlen(name);

	if (len < 2 || name[0] != '/' || strchr(name + 1, '/') != NULL ||
	    len > NAME_MAX) {
		set_err(
		    err, errlen,
		    "bad shm name \"%s\": want \"/name\" (one leading slash, "
		    "no other, at most %d bytes)",
		    name == NULL ? "" : name, NAME_MAX);
		errno = EINVAL;
		return -1;
	}
	return 0;
}

static struct shm_header *
header(const struct shm_seg *seg)
{
	return (struct shm_header *)seg->base;
}

static struct worker_slot *
wslot(const struct shm_seg *seg, uint32_t id)
{
	return (struct worker_slot *)(seg->base + seg->l.workers_off +
	                              (size_t)id * seg->l.worker_stride);
}

static struct bucket_hdr *
bucket_at(const struct shm_seg *seg, uint32_t i)
{
	return (struct bucket_hdr *)(seg->base + seg->l.buckets_off +
	                             (size_t)i * seg->l.bucket_stride);
}

static uint32_t
bucket_index(const struct shm_seg *seg, uint64_t h)
{
	return (uint32_t)(h % seg->g.buckets);
}

static uint32_t
bucket_no(const struct shm_seg *seg, const struct bucket_hdr *b)
{
	return (uint32_t)(((const unsigned char *)b - seg->base -
	                   seg->l.buckets_off) /
	                  seg->l.bucket_stride);
}

static void
chan_tab(const struct shm_seg *seg, const struct bucket_hdr *b, struct tab *t)
{
	size_t first = (size_t)bucket_no(seg, b) * seg->g.channels_per_bucket;

	t->cells = (uint32_t *)(seg->base + seg->l.chan_index_off) + first;
	t->pool =
	    seg->base + seg->l.chan_pool_off + first * seg->l.chan_entry_size;
	/* Writable only through a writable mapping: the locked paths. */
	t->count = (uint32_t *)&b->nchannels;
	t->stride = seg->l.chan_entry_size;
	t->n = seg->g.channels_per_bucket;
	t->key_off = offsetof(struct chan_entry, c.key);
	t->key_max = SHM_KEY_MAX;
	t->rooms = 0;
	t->nworkers = seg->g.max_workers;
}

static void
room_tab(const struct shm_seg *seg, const struct bucket_hdr *b, struct tab *t)
{
	size_t first = (size_t)bucket_no(seg, b) * seg->g.rooms_per_bucket;

	t->cells = (uint32_t *)(seg->base + seg->l.room_index_off) + first;
	t->pool =
	    seg->base + seg->l.room_pool_off + first * seg->l.room_entry_size;
	t->count = (uint32_t *)&b->nrooms;
	t->stride = seg->l.room_entry_size;
	t->n = seg->g.rooms_per_bucket;
	t->key_off = offsetof(struct room_entry, name);
	t->key_max = SHM_ROOM_MAX;
	t->rooms = 1;
	t->nworkers = seg->g.max_workers;
}

static struct entry_head *
tab_entry(const struct tab *t, uint32_t e)
{
	return (struct entry_head *)(t->pool + (size_t)e * t->stride);
}

static const char *
entry_key(const struct tab *t, const struct entry_head *s)
{
	return (const char *)s + t->key_off;
}

/* Entries in use; never past the pool, whatever a torn write left. */
static uint32_t
tab_count(const struct tab *t)
{
	uint32_t c = __atomic_load_n(t->count, __ATOMIC_RELAXED);

	return c < t->n ? c : t->n;
}

static uint32_t
home_of(uint64_t h, uint32_t n)
{
	/* The low bits chose the bucket; the high bits place the cell. */
	return (uint32_t)((h >> 32) % n);
}

/* The hash bits a cell keeps: the top ones, which home_of mixes least. */
static uint32_t
cell_tag(uint64_t h)
{
	return (uint32_t)(h >> (64 - CELL_TAG_BITS));
}

static uint32_t
cell_make(uint64_t h, uint32_t e)
{
	return cell_tag(h) << CELL_ENTRY_BITS | (e + 1);
}

/* The entry a used cell names (past the pool if the cell is torn). */
static uint32_t
cell_entry(uint32_t c)
{
	return (c & CELL_ENTRY_MASK) - 1;
}

static uint32_t
cell_load(const struct tab *t, uint32_t i)
{
	return __atomic_load_n(&t->cells[i], __ATOMIC_RELAXED);
}

static void
cell_store(const struct tab *t, uint32_t i, uint32_t c)
{
	__atomic_store_n(&t->cells[i], c, __ATOMIC_RELAXED);
}

/*
 * Probe the index for key. 1: found, with *cell and *entry. 0: absent,
 * *cell the free cell that ended the chain (UINT32_MAX if none). Safe on a
 * table being written concurrently (every read is bounded, every entry
 * number checked against the pool); the result is then meaningless and
 * the caller's sequence check discards it.
 */
static int
tab_find(const struct tab *t, const char *key, uint64_t h, uint32_t *cell,
         uint32_t *entry)
{
	uint32_t home = home_of(h, t->n), tag = cell_tag(h);

	*cell = UINT32_MAX;
	for (uint32_t step = 0; step < t->n; step++) {
		uint32_t i = (home + step) % t->n, c = cell_load(t, i), e;
		const struct entry_head *s;

		if (c == 0) {
			*cell = i;
			return 0;
		}
		if (c >> CELL_ENTRY_BITS != tag || (e = cell_entry(c)) >= t->n)
			continue;
		s = tab_entry(t, e);
		if (s->hash == h &&
		    strncmp(entry_key(t, s), key, t->key_max) == 0) {
			*cell = i;
			*entry = e;
			return 1;
		}
	}
	return 0;
}

/* Start writing entry s: repair ignores it until entry_commit_locked. */
static void
entry_begin_locked(struct entry_head *s)
{
	__atomic_store_n(&s->state, ENTRY_WRITING, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
entry_commit_locked(struct entry_head *s)
{
	__atomic_store_n(&s->state, ENTRY_USED, __ATOMIC_RELEASE);
}

/*
 * Index entries[count], just written, at cell (free, from tab_find), and
 * count it. Lock held, write begun.
 */
static void
tab_append_locked(const struct tab *t, uint32_t cell, uint64_t h)
{
	uint32_t e = *t->count;

	__atomic_store_n(t->count, e + 1, __ATOMIC_RELEASE);
	cell_store(t, cell, cell_make(h, e));
}

/*
 * Copy entry src over dst, dst's state last: src's state, so a copy of a
 * torn record stays torn. Lock held, write begun.
 */
static void
tab_move_locked(const struct tab *t, uint32_t dst, uint32_t src)
{
	struct entry_head *d = tab_entry(t, dst);
	const struct entry_head *s = tab_entry(t, src);
	uint32_t state = s->state;

	entry_begin_locked(d);
	memcpy((unsigned char *)d + sizeof(d->state),
	       (const unsigned char *)s + sizeof(s->state),
	       t->stride - sizeof(d->state));
	__atomic_store_n(&d->state, state, __ATOMIC_RELEASE);
}

/* 1 if cyclic position x lies in (from, to]. */
static int
cyc_between(uint32_t from, uint32_t x, uint32_t to, uint32_t n)
{
	uint32_t dx = (x + n - from) % n, dt = (to + n - from) % n;

	return dx != 0 && dx <= dt;
}

/* Backward-shift deletion of index cell i. Lock held, write begun. */
static void
cells_remove_locked(const struct tab *t, uint32_t i)
{
	uint32_t hole = i;

	for (uint32_t step = 1; step < t->n; step++) {
		uint32_t j = (i + step) % t->n, c = cell_load(t, j);

		if (c == 0)
			break;
		if (!cyc_between(
		        hole, home_of(tab_entry(t, cell_entry(c))->hash, t->n),
		        j, t->n)) {
			cell_store(t, hole, c);
			hole = j;
		}
	}
	cell_store(t, hole, 0);
}

/*
 * Delete the record at entry e, indexed at cell i. The pool stays dense:
 * the last record moves into e and its cell is repointed (found by
 * probing from its home for the cell naming the last entry). Lock held,
 * write begun.
 */
static void
tab_remove_locked(const struct tab *t, uint32_t i, uint32_t e)
{
	uint32_t last = *t->count - 1;

	if (e != last) {
		uint64_t h;
		uint32_t home;

		tab_move_locked(t, e, last);
		h = tab_entry(t, e)->hash;
		home = home_of(h, t->n);
		for (uint32_t step = 0; step < t->n; step++) {
			uint32_t j = (home + step) % t->n;
			uint32_t c = cell_load(t, j);

			if (c != 0 && cell_entry(c) == last) {
				cell_store(t, j, cell_make(h, e));
				break;
			}
		}
	}
	__atomic_store_n(&tab_entry(t, last)->state, ENTRY_FREE,
	                 __ATOMIC_RELAXED);
	__atomic_store_n(t->count, last, __ATOMIC_RELEASE);
	cells_remove_locked(t, i);
}

static uint64_t
room_sum(const struct room_entry *r, uint32_t nworkers)
{
	uint64_t sum = 0;

	for (uint32_t w = 0; w < nworkers; w++)
		sum += r->counts[w];
	return sum;
}

/* A record worth keeping after a crash: complete, and hashed as it reads. */
static int
entry_valid(const struct tab *t, const struct entry_head *s)
{
	const char *key = entry_key(t, s);

	if (s->state != ENTRY_USED || !str_ok(key, t->key_max) ||
	    hash_str(key) != s->hash)
		return 0;
	if (t->rooms) {
		uint64_t sum =
		    room_sum((const struct room_entry *)s, t->nworkers);

		return sum > 0 && sum <= UINT32_MAX;
	} else {
		const struct shm_channel *c =
		    &((const struct chan_entry *)s)->c;

		return memchr(c->room, '\0', SHM_ROOM_MAX) != NULL &&
		       memchr(c->remote, '\0', SHM_REMOTE_MAX) != NULL &&
		       c->naccepts <= SHM_ACCEPTS_MAX &&
		       c->worker < t->nworkers;
	}
}

/*
 * Rebuild a table after a writer died in it. Runs under the lock with the
 * write begun, so readers retry meanwhile. Only entries[0..count) are
 * read: the pages past the pool's front are never touched. A repair
 * killed in turn leaves dirty set, and the next one starts over from
 * whatever this one left, which is again a pool to rebuild from.
 */
static void
tab_repair_locked(const struct tab *t)
{
	uint32_t count = tab_count(t), cell, e;

	memset(t->cells, 0, (size_t)t->n * sizeof(*t->cells));
	for (uint32_t i = 0; i < count;) {
		struct entry_head *s = tab_entry(t, i);

		/*
		 * Torn, or the second copy of a record that a delete moved
		 * and died before unindexing: fill the hole from the end
		 * and look at i again.
		 */
		if (!entry_valid(t, s) ||
		    tab_find(t, entry_key(t, s), s->hash, &cell, &e)) {
			count--;
			if (i != count)
				tab_move_locked(t, i, count);
			__atomic_store_n(&tab_entry(t, count)->state,
			                 ENTRY_FREE, __ATOMIC_RELAXED);
			continue;
		}
		if (t->rooms)
			((struct room_entry *)s)->online = (uint32_t)room_sum(
			    (struct room_entry *)s, t->nworkers);
		/* Fewer than n cells are used: the probe found a free one. */
		cell_store(t, cell, cell_make(s->hash, i));
		i++;
	}
	__atomic_store_n(t->count, count, __ATOMIC_RELEASE);
}

static void
write_begin_locked(struct bucket_hdr *b)
{
	uint32_t s = __atomic_load_n(&b->seq, __ATOMIC_RELAXED);

	/* Still odd if a dead writer left it so: keep readers away. */
	if ((s & 1) == 0)
		__atomic_store_n(&b->seq, s + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&b->dirty, 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
write_end_locked(struct bucket_hdr *b)
{
	uint32_t s = __atomic_load_n(&b->seq, __ATOMIC_RELAXED);

	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&b->dirty, 0, __ATOMIC_RELAXED);
	__atomic_store_n(&b->seq, s + 1, __ATOMIC_RELEASE);
}

static void
bucket_repair_locked(struct shm_seg *seg, struct bucket_hdr *b)
{
	struct tab t;

	write_begin_locked(b);
	chan_tab(seg, b, &t);
	tab_repair_locked(&t);
	room_tab(seg, b, &t);
	tab_repair_locked(&t);
	write_end_locked(b);
}

/*
 * Lock a bucket for writing. The previous owner may have died holding
 * it: repair what it may have left half done, then mark the lock usable.
 */
static int
bucket_lock(struct shm_seg *seg, struct bucket_hdr *b)
{
	int r;

	if (seg->readonly) {
		errno = EROFS;
		return -1;
	}
	r = pthread_mutex_lock(&b->mtx);
	if (r == EOWNERDEAD) {
		if (b->dirty || (b->seq & 1))
			bucket_repair_locked(seg, b);
		b->recoveries++;
		r = pthread_mutex_consistent(&b->mtx);
	}
	if (r != 0) {
		errno = r;
		return -1;
	}
	return 0;
}

static void
bucket_unlock(struct bucket_hdr *b)
{
	pthread_mutex_unlock(&b->mtx);
}

static void
cpu_relax(unsigned tries)
{
	if (tries < READ_SPINS) {
#if defined(__x86_64__) || defined(__i386__)
		__builtin_ia32_pause();
#endif
	} else {
		sched_yield();
	}
}

static int
read_begin(const struct bucket_hdr *b, uint32_t *seq)
{
	*seq = __atomic_load_n(&b->seq, __ATOMIC_ACQUIRE);
	return (*seq & 1) == 0;
}

static int
read_valid(const struct bucket_hdr *b, uint32_t seq)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(&b->seq, __ATOMIC_RELAXED) == seq;
}

/*
 * The lock-free reader: run read(ctx) over bucket b until it ran with no
 * write in between. 0, or -1 if writers kept the bucket busy past
 * READ_TRIES. read may see a table torn by a writer: it must stay within
 * the table whatever it finds, and what it got counts only on 0.
 */
static int
bucket_read(const struct bucket_hdr *b, void (*read)(void *ctx), void *ctx)
{
	uint32_t seq;

	for (unsigned tries = 0; tries < READ_TRIES; tries++) {
		if (!read_begin(b, &seq)) {
			cpu_relax(tries);
			continue;
		}
		read(ctx);
		if (read_valid(b, seq))
			return 0;
		cpu_relax(tries);
	}
	return -1;
}

/* 1 if pid is (still) a process, as far as we can tell. */
static int
pid_alive(pid_t pid)
{
	if (pid <= 0)
		return 0;
	return kill(pid, 0) == 0 || errno == EPERM;
}

/*
 * Start time of pid in clock ticks since boot (field 22 of
 * /proc/<pid>/stat), or 0 when it cannot be read. The command name
 * (field 2) may hold spaces and parentheses: parse after its last ')'.
 */
static uint64_t
proc_start_ticks(pid_t pid)
{
	char path[64], buf[1024], *p;
	unsigned long long ticks;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	if ((p = strrchr(buf, ')')) == NULL)
		return 0;
	/* Fields 3..21 precede the start time. */
	for (int field = 3; field <= 22; field++) {
		p = strchr(p, ' ');
		if (p == NULL)
			return 0;
		p++;
	}
	if (sscanf(p, "%llu", &ticks) != 1)
		return 0;
	return ticks;
}

static int
master_alive(const struct shm_header *h)
{
	uint64_t recorded = h->master_start, now;

	if (!pid_alive(h->master_pid))
		return 0;
	if (recorded != 0 && (now = proc_start_ticks(h->master_pid)) != 0 &&
	    now != recorded)
		return 0; /* the pid now belongs to another process */
	return 1;
}

/* Refuse to replace a segment whose master is still running. */
static int
check_not_live(const char *name, char *err, size_t errlen)
{
	struct shm_seg *old;
	pid_t pid;
	int alive;

	if (shm_seg_attach(name, 1, &old, NULL, 0) == -1)
		return 0; /* missing, foreign or unreadable: replaceable */
	pid = shm_seg_master_pid(old);
	alive = master_alive(header(old));
	shm_seg_detach(old);
	if (pid != getpid() && alive) {
		set_err(err, errlen,
		        "shm segment %s belongs to a running master (pid %ld)",
		        name, (long)pid);
		errno = EBUSY;
		return -1;
	}
	return 0;
}

int
shm_seg_create(const char *name, const struct shm_geometry *g,
               struct shm_seg **out, char *err, size_t errlen)
{
	pthread_mutexattr_t attr;
	struct shm_seg *seg = NULL;
	struct shm_header *h;
	struct layout l;
	int fd = -1, r, saved;

	*out = NULL;
	if (name_check(name, err, errlen) == -1)
		return -1;
	if (geometry_check(g, err, errlen) == -1) {
		errno = EINVAL;
		return -1;
	}
	if (layout_compute(g, &l) == -1) {
		set_err(err, errlen, "shm geometry too large for this host");
		errno = EINVAL;
		return -1;
	}
	if (check_not_live(name, err, errlen) == -1)
		return -1;
	if ((seg = calloc(1, sizeof(*seg))) == NULL) {
		set_err(err, errlen, "out of memory");
		return -1;
	}
	/* A stale segment may have another size or owner: start afresh. */
	if (shm_unlink(name) == -1 && errno != ENOENT) {
		set_err(err, errlen, "shm_unlink %s: %s", name,
		        strerror(errno));
		goto err;
	}
	fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
	if (fd == -1) {
		set_err(err, errlen, "shm_open %s: %s", name, strerror(errno));
		goto err;
	}
	if (ftruncate(fd, (off_t)l.seg_size) == -1) {
		set_err(err, errlen, "ftruncate %s to %zu bytes: %s", name,
		        l.seg_size, strerror(errno));
		goto err_unlink;
	}
	seg->base =
	    mmap(NULL, l.seg_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (seg->base == MAP_FAILED) {
		seg->base = NULL;
		set_err(err, errlen, "mmap %s (%zu bytes): %s", name,
		        l.seg_size, strerror(errno));
		goto err_unlink;
	}
	close(fd);
	fd = -1;
	seg->size = l.seg_size;
	seg->g = *g;
	seg->l = l;
	snprintf(seg->name, sizeof(seg->name), "%s", name);

	if ((r = pthread_mutexattr_init(&attr)) != 0 ||
	    (r = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED)) !=
	        0 ||
	    (r = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST)) !=
	        0) {
		errno = r;
		set_err(err, errlen, "pthread_mutexattr: %s", strerror(r));
		goto err_unlink;
	}
	for (uint32_t i = 0; i < g->buckets && r == 0; i++)
		r = pthread_mutex_init(&bucket_at(seg, i)->mtx, &attr);
	for (uint32_t i = 0; i < g->max_workers && r == 0; i++)
		r = pthread_mutex_init(&wslot(seg, i)->kick.mtx, &attr);
	pthread_mutexattr_destroy(&attr);
	if (r != 0) {
		errno = r;
		set_err(err, errlen, "pthread_mutex_init: %s", strerror(r));
		goto err_unlink;
	}

	h = header(seg);
	h->version = SHM_VERSION;
	h->header_size = sizeof(*h);
	h->seg_size = l.seg_size;
	h->geom = *g;
	h->mutex_size = sizeof(pthread_mutex_t);
	h->channel_size = sizeof(struct shm_channel);
	h->worker_stride = l.worker_stride;
	h->workers_off = l.workers_off;
	h->buckets_off = l.buckets_off;
	h->bucket_stride = l.bucket_stride;
	h->chan_index_off = l.chan_index_off;
	h->room_index_off = l.room_index_off;
	h->chan_pool_off = l.chan_pool_off;
	h->room_pool_off = l.room_pool_off;
	h->chan_entry_size = l.chan_entry_size;
	h->room_entry_size = l.room_entry_size;
	h->master_pid = getpid();
	h->created_ms = now_ms();
	h->master_start = proc_start_ticks(getpid());
	/* Magic last: an attacher never sees a half-initialised segment. */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	memcpy(h->magic, SHM_MAGIC, sizeof(h->magic));
	*out = seg;
	return 0;

err_unlink:
	saved = errno;
	shm_unlink(name);
	errno = saved;
err:
	saved = errno;
	if (fd != -1)
		close(fd);
	if (seg->base != NULL)
		munmap(seg->base, l.seg_size);
	free(seg);
	errno = saved;
	return -1;
}

int
shm_seg_attach(const char *name, int readonly, struct shm_seg **out, char *err,
               size_t errlen)
{
	static const char zero[8];
	struct shm_seg *seg = NULL;
	const struct shm_header *h;
	struct stat st;
	struct layout l;
	int fd, saved;

	*out = NULL;
	if (name_check(name, err, errlen) == -1)
		return -1;
	fd = shm_open(name, (readonly ? O_RDONLY : O_RDWR) | O_CLOEXEC, 0);
	if (fd == -1) {
		if (errno == ENOENT)
			set_err(err, errlen,
			        "no shm segment %s (is imgate-comet running?)",
			        name);
		else
			set_err(err, errlen, "shm_open %s: %s", name,
			        strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		set_err(err, errlen, "fstat %s: %s", name, strerror(errno));
		goto err;
	}
	if ((size_t)st.st_size < sizeof(struct shm_header)) {
		set_err(err, errlen,
		        "shm segment %s is %lld bytes: not an imgate segment",
		        name, (long long)st.st_size);
		errno = EINVAL;
		goto err;
	}
	if ((seg = calloc(1, sizeof(*seg))) == NULL) {
		set_err(err, errlen, "out of memory");
		goto err;
	}
	seg->size = (size_t)st.st_size;
	seg->readonly = readonly != 0;
	seg->base =
	    mmap(NULL, seg->size, readonly ? PROT_READ : PROT_READ | PROT_WRITE,
	         MAP_SHARED, fd, 0);
	if (seg->base == MAP_FAILED) {
		seg->base = NULL;
		set_err(err, errlen, "mmap %s: %s", name, strerror(errno));
		goto err;
	}
	close(fd);
	fd = -1;
	snprintf(seg->name, sizeof(seg->name), "%s", name);

	h = header(seg);
	errno = EINVAL;
	if (memcmp(h->magic, zero, sizeof(zero)) == 0) {
		set_err(err, errlen,
		        "shm segment %s is not initialised (being created, or "
		        "its creator died)",
		        name);
		goto err;
	}
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	if (memcmp(h->magic, SHM_MAGIC, sizeof(h->magic)) != 0) {
		set_err(err, errlen, "shm segment %s is not an imgate segment",
		        name);
		goto err;
	}
	if (h->version != SHM_VERSION) {
		set_err(err, errlen,
		        "shm segment %s has layout version %u; this program "
		        "reads version %u (mixed releases?)",
		        name, h->version, SHM_VERSION);
		goto err;
	}
	seg->g = h->geom;
	if (layout_compute(&seg->g, &l) == -1 ||
	    h->header_size != sizeof(struct shm_header) ||
	    h->mutex_size != sizeof(pthread_mutex_t) ||
	    h->channel_size != sizeof(struct shm_channel) ||
	    h->worker_stride != l.worker_stride ||
	    h->workers_off != l.workers_off ||
	    h->buckets_off != l.buckets_off ||
	    h->bucket_stride != l.bucket_stride ||
	    h->chan_index_off != l.chan_index_off ||
	    h->room_index_off != l.room_index_off ||
	    h->chan_pool_off != l.chan_pool_off ||
	    h->room_pool_off != l.room_pool_off ||
	    h->chan_entry_size != l.chan_entry_size ||
	    h->room_entry_size != l.room_entry_size ||
	    h->seg_size != l.seg_size) {
		set_err(err, errlen,
		        "shm segment %s has a layout this build does not "
		        "share (other platform or build)",
		        name);
		goto err;
	}
	if (l.seg_size > seg->size) {
		set_err(err, errlen,
		        "shm segment %s is truncated (%zu of %zu bytes)", name,
		        seg->size, l.seg_size);
		goto err;
	}
	seg->l = l;
	*out = seg;
	return 0;

err:
	saved = errno;
	if (fd != -1)
		close(fd);
	if (seg != NULL && seg->base != NULL)
		munmap(seg->base, seg->size);
	free(seg);
	errno = saved;
	return -1;
}

void
shm_seg_detach(struct shm_seg *seg)
{
	if (seg == NULL)
		return;
	munmap(seg->base, seg->size);
	free(seg);
}

int
shm_seg_unlink(const char *name)
{
	if (name_check(name, NULL, 0) == -1)
		return -1;
	return shm_unlink(name);
}

const struct shm_geometry *
shm_seg_geometry(const struct shm_seg *seg)
{
	return &seg->g;
}

pid_t
shm_seg_master_pid(const struct shm_seg *seg)
{
	return header(seg)->master_pid;
}

uint64_t
shm_seg_created_ms(const struct shm_seg *seg)
{
	return header(seg)->created_ms;
}

int
shm_seg_master_alive(const struct shm_seg *seg)
{
	return master_alive(header(seg));
}

size_t
shm_seg_bytes(const struct shm_seg *seg)
{
	return seg->size;
}

const char *
shm_seg_name(const struct shm_seg *seg)
{
	return seg->name;
}

void
shm_seg_usage(const struct shm_seg *seg, uint64_t *channels, uint64_t *rooms)
{
	uint64_t c = 0, r = 0;

	for (uint32_t i = 0; i < seg->g.buckets; i++) {
		const struct bucket_hdr *b = bucket_at(seg, i);

		c += __atomic_load_n(&b->nchannels, __ATOMIC_RELAXED);
		r += __atomic_load_n(&b->nrooms, __ATOMIC_RELAXED);
	}
	if (channels != NULL)
		*channels = c;
	if (rooms != NULL)
		*rooms = r;
}

/* --- channels --- */

static int
channel_valid(const struct shm_seg *seg, const struct shm_channel *c)
{
	return str_ok(c->key, SHM_KEY_MAX) &&
	       memchr(c->room, '\0', SHM_ROOM_MAX) != NULL &&
	       memchr(c->remote, '\0', SHM_REMOTE_MAX) != NULL &&
	       c->naccepts <= SHM_ACCEPTS_MAX && c->worker < seg->g.max_workers;
}

static struct chan_entry *
chan_at(const struct tab *t, uint32_t e)
{
	return (struct chan_entry *)tab_entry(t, e);
}

static struct room_entry *
room_at(const struct tab *t, uint32_t e)
{
	return (struct room_entry *)tab_entry(t, e);
}

/*
 * Lock key's bucket and look key up: 1 found (*cell, *entry), 0 absent
 * (*cell free or UINT32_MAX), -1 lock failed. Returns holding the lock
 * unless -1.
 */
static int
chan_lock_find(struct shm_seg *seg, const char *key, struct bucket_hdr **bp,
               struct tab *t, uint32_t *cell, uint32_t *entry, uint64_t *hp)
{
	uint64_t h = hash_str(key);
	struct bucket_hdr *b = bucket_at(seg, bucket_index(seg, h));

	if (bucket_lock(seg, b) == -1)
		return -1;
	chan_tab(seg, b, t);
	*bp = b;
	*hp = h;
	return tab_find(t, key, h, cell, entry);
}

int
shm_channel_put(struct shm_seg *seg, const struct shm_channel *c,
                struct shm_channel *replaced)
{
	struct bucket_hdr *b;
	struct chan_entry *s;
	struct tab t;
	uint32_t cell, e;
	uint64_t h;
	int found;

	if (!channel_valid(seg, c)) {
		errno = EINVAL;
		return -1;
	}
	if ((found = chan_lock_find(seg, c->key, &b, &t, &cell, &e, &h)) == -1)
		return -1;
	if (!found && (*t.count >= t.n || cell == UINT32_MAX)) {
		bucket_unlock(b);
		errno = ENOSPC;
		return -1;
	}
	if (!found)
		e = *t.count;
	s = chan_at(&t, e);
	if (found && replaced != NULL)
		*replaced = s->c;
	write_begin_locked(b);
	entry_begin_locked((struct entry_head *)s);
	s->hash = h;
	s->c = *c;
	entry_commit_locked((struct entry_head *)s);
	if (!found)
		tab_append_locked(&t, cell, h);
	write_end_locked(b);
	bucket_unlock(b);
	return found;
}

int
shm_channel_del(struct shm_seg *seg, const char *key, uint16_t worker,
                uint32_t conn_id)
{
	struct bucket_hdr *b;
	struct chan_entry *s;
	struct tab t;
	uint32_t cell, e;
	uint64_t h;
	int found;

	if (!str_ok(key, SHM_KEY_MAX))
		return 1;
	if ((found = chan_lock_find(seg, key, &b, &t, &cell, &e, &h)) == -1)
		return -1;
	s = found ? chan_at(&t, e) : NULL;
	if (s == NULL || s->c.worker != worker || s->c.conn_id != conn_id) {
		bucket_unlock(b);
		return 1;
	}
	write_begin_locked(b);
	tab_remove_locked(&t, cell, e);
	write_end_locked(b);
	bucket_unlock(b);
	return 0;
}

static int
chan_get_locked_path(const struct shm_seg *cseg, const char *key,
                     struct shm_channel *out)
{
	/* The segment is writable here: cseg is const only for readers. */
	struct shm_seg *seg = (struct shm_seg *)cseg;
	struct bucket_hdr *b;
	struct tab t;
	uint32_t cell, e;
	uint64_t h;
	int found;

	if ((found = chan_lock_find(seg, key, &b, &t, &cell, &e, &h)) == -1)
		return -1;
	if (found)
		*out = chan_at(&t, e)->c;
	bucket_unlock(b);
	return found ? 0 : 1;
}

struct tab_lookup {
	const struct tab *t;
	const char *key;
	uint64_t h;
	void *out;
	size_t len;
	int found;
};

static void
tab_lookup_read(void *ctx)
{
	struct tab_lookup *l = ctx;
	uint32_t cell, e;

	l->found = tab_find(l->t, l->key, l->h, &cell, &e);
	if (l->found)
		memcpy(l->out, tab_entry(l->t, e), l->len);
}

/*
 * Lock-free lookup of key (hash h) in t, a table of bucket b: the first
 * len bytes of its entry into out. 1 found, 0 not, -1 if writers kept the
 * bucket busy.
 */
static int
bucket_lookup(const struct bucket_hdr *b, const struct tab *t, const char *key,
              uint64_t h, void *out, size_t len)
{
	struct tab_lookup l = {t, key, h, out, len, 0};

	if (bucket_read(b, tab_lookup_read, &l) == -1)
		return -1;
	return l.found;
}

int
shm_channel_get(const struct shm_seg *seg, const char *key,
                struct shm_channel *out)
{
	const struct bucket_hdr *b;
	struct chan_entry entry;
	struct tab t;
	uint64_t h;

	if (!str_ok(key, SHM_KEY_MAX))
		return 1;
	h = hash_str(key);
	b = bucket_at(seg, bucket_index(seg, h));
	chan_tab(seg, b, &t);
	switch (bucket_lookup(b, &t, key, h, &entry, sizeof(entry))) {
	case 1:
		*out = entry.c;
		return 0;
	case 0:
		return 1;
	}
	if (!seg->readonly)
		return chan_get_locked_path(seg, key, out);
	errno = EAGAIN;
	return -1;
}

/* Lock key's bucket and find a channel owned by (worker, conn_id). */
static struct chan_entry *
chan_owned_locked(struct shm_seg *seg, const char *key, uint16_t worker,
                  uint32_t conn_id, struct bucket_hdr **bp, int *err)
{
	struct chan_entry *s;
	struct tab t;
	uint32_t cell, e;
	uint64_t h;
	int found;

	*err = 0;
	if (!str_ok(key, SHM_KEY_MAX))
		return NULL;
	if ((found = chan_lock_find(seg, key, bp, &t, &cell, &e, &h)) == -1) {
		*err = 1;
		return NULL;
	}
	s = found ? chan_at(&t, e) : NULL;
	if (s == NULL || s->c.worker != worker || s->c.conn_id != conn_id) {
		bucket_unlock(*bp);
		return NULL;
	}
	return s;
}

int
shm_channel_set_room(struct shm_seg *seg, const char *key, uint16_t worker,
                     uint32_t conn_id, const char *room)
{
	struct bucket_hdr *b;
	struct chan_entry *s;
	size_t len = room == NULL ? 0 : strnlen(room, SHM_ROOM_MAX);
	int err;

	if (len >= SHM_ROOM_MAX) {
		errno = EINVAL;
		return -1;
	}
	if ((s = chan_owned_locked(seg, key, worker, conn_id, &b, &err)) ==
	    NULL)
		return err ? -1 : 1;
	write_begin_locked(b);
	memset(s->c.room, 0, sizeof(s->c.room));
	if (len > 0)
		memcpy(s->c.room, room, len);
	write_end_locked(b);
	bucket_unlock(b);
	return 0;
}

int
shm_channel_set_accepts(struct shm_seg *seg, const char *key, uint16_t worker,
                        uint32_t conn_id, const int32_t *accepts,
                        uint16_t naccepts)
{
	struct bucket_hdr *b;
	struct chan_entry *s;
	int err;

	if (naccepts > SHM_ACCEPTS_MAX || (naccepts > 0 && accepts == NULL)) {
		errno = EINVAL;
		return -1;
	}
	if ((s = chan_owned_locked(seg, key, worker, conn_id, &b, &err)) ==
	    NULL)
		return err ? -1 : 1;
	write_begin_locked(b);
	memset(s->c.accepts, 0, sizeof(s->c.accepts));
	if (naccepts > 0)
		memcpy(s->c.accepts, accepts, naccepts * sizeof(*accepts));
	s->c.naccepts = naccepts;
	write_end_locked(b);
	bucket_unlock(b);
	return 0;
}

int
shm_channel_touch(struct shm_seg *seg, const char *key, uint16_t worker,
                  uint32_t conn_id, uint64_t heartbeat_ms)
{
	struct bucket_hdr *b;
	struct chan_entry *s;
	int err;

	if ((s = chan_owned_locked(seg, key, worker, conn_id, &b, &err)) ==
	    NULL)
		return err ? -1 : 1;
	write_begin_locked(b);
	s->c.heartbeat_ms = heartbeat_ms;
	write_end_locked(b);
	bucket_unlock(b);
	return 0;
}

/* --- rooms --- */

int
shm_room_add(struct shm_seg *seg, const char *room, uint16_t worker, int delta)
{
	struct bucket_hdr *b;
	struct room_entry *r;
	struct tab t;
	uint32_t cell, e;
	uint64_t h;
	int64_t cur;

	if (room == NULL || !str_ok(room, SHM_ROOM_MAX) ||
	    worker >= seg->g.max_workers) {
		errno = EINVAL;
		return -1;
	}
	if (delta == 0)
		return 0;
	h = hash_str(room);
	b = bucket_at(seg, bucket_index(seg, h));
	if (bucket_lock(seg, b) == -1)
		return -1;
	room_tab(seg, b, &t);
	if (!tab_find(&t, room, h, &cell, &e)) {
		if (delta < 0) {
			bucket_unlock(b);
			errno = ERANGE;
			return -1;
		}
		if (*t.count >= t.n || cell == UINT32_MAX) {
			bucket_unlock(b);
			errno = ENOSPC;
			return -1;
		}
		r = room_at(&t, *t.count);
		write_begin_locked(b);
		entry_begin_locked((struct entry_head *)r);
		memset((unsigned char *)r + sizeof(r->state), 0,
		       t.stride - sizeof(r->state));
		r->hash = h;
		memcpy(r->name, room, strlen(room) + 1);
		r->counts[worker] = (uint32_t)delta;
		r->online = (uint32_t)delta;
		entry_commit_locked((struct entry_head *)r);
		tab_append_locked(&t, cell, h);
		write_end_locked(b);
		bucket_unlock(b);
		return 0;
	}
	r = room_at(&t, e);
	cur = (int64_t)r->counts[worker] + delta;
	if (cur < 0 || (int64_t)r->online + delta > UINT32_MAX) {
		bucket_unlock(b);
		errno = ERANGE;
		return -1;
	}
	write_begin_locked(b);
	r->counts[worker] = (uint32_t)cur;
	r->online = (uint32_t)((int64_t)r->online + delta);
	if (r->online == 0)
		tab_remove_locked(&t, cell, e);
	write_end_locked(b);
	bucket_unlock(b);
	return 0;
}

/* room_read's way out when a dead writer left the bucket odd: repair. */
static int
room_read_locked(const struct shm_seg *cseg, const char *room, uint64_t h,
                 uint32_t *online, uint32_t *cluster)
{
	/* The segment is writable here: cseg is const only for readers. */
	struct shm_seg *seg = (struct shm_seg *)cseg;
	struct bucket_hdr *b = bucket_at(seg, bucket_index(seg, h));
	uint32_t cell, e;
	struct tab t;
	int found;

	if (bucket_lock(seg, b) == -1)
		return -1;
	room_tab(seg, b, &t);
	if ((found = tab_find(&t, room, h, &cell, &e))) {
		const struct room_entry *r = room_at(&t, e);

		*online = r->online;
		*cluster = r->cluster_online;
	}
	bucket_unlock(b);
	return found ? 0 : 1;
}

/* Lock-free read of one room's totals; 1 if the room is unknown. */
static int
room_read(const struct shm_seg *seg, const char *room, uint32_t *online,
          uint32_t *cluster)
{
	const struct bucket_hdr *b;
	struct room_entry entry;
	struct tab t;
	uint64_t h;

	if (room == NULL || !str_ok(room, SHM_ROOM_MAX))
		return 1;
	h = hash_str(room);
	b = bucket_at(seg, bucket_index(seg, h));
	room_tab(seg, b, &t);
	/* The totals only: the entry up to its name. */
	switch (bucket_lookup(b, &t, room, h, &entry,
	                      offsetof(struct room_entry, name))) {
	case 1:
		*online = entry.online;
		*cluster = entry.cluster_online;
		return 0;
	case 0:
		*online = 0;
		*cluster = 0;
		return 1;
	}
	if (!seg->readonly)
		return room_read_locked(seg, room, h, online, cluster);
	return -1;
}

uint32_t
shm_room_online(const struct shm_seg *seg, const char *room)
{
	uint32_t o = 0, c = 0;

	if (room_read(seg, room, &o, &c) != 0)
		return 0;
	return o;
}

uint32_t
shm_room_cluster(const struct shm_seg *seg, const char *room)
{
	uint32_t o = 0, c = 0;

	if (room_read(seg, room, &o, &c) != 0)
		return 0;
	return c;
}

int
shm_room_set_cluster(struct shm_seg *seg, const char *room, uint32_t online)
{
	struct bucket_hdr *b;
	struct tab t;
	uint32_t cell, e;
	uint64_t h;

	if (room == NULL || !str_ok(room, SHM_ROOM_MAX)) {
		errno = EINVAL;
		return -1;
	}
	h = hash_str(room);
	b = bucket_at(seg, bucket_index(seg, h));
	if (bucket_lock(seg, b) == -1)
		return -1;
	room_tab(seg, b, &t);
	if (!tab_find(&t, room, h, &cell, &e)) {
		bucket_unlock(b);
		return 1;
	}
	write_begin_locked(b);
	room_at(&t, e)->cluster_online = online;
	write_end_locked(b);
	bucket_unlock(b);
	return 0;
}

/* --- workers --- */

static const char *const counter_names[SHM_C__COUNT] = {
    [SHM_C_CONN_ACCEPTED] = "conn_accepted",
    [SHM_C_CONN_CLOSED] = "conn_closed",
    [SHM_C_CONN_CURRENT] = "conn_current",
    [SHM_C_CONN_REFUSED_LIMIT] = "conn_refused_limit",
    [SHM_C_ACCEPT_PAUSED] = "accept_paused",
    [SHM_C_AUTH_OK] = "auth_ok",
    [SHM_C_AUTH_FAIL] = "auth_fail",
    [SHM_C_HANDSHAKE_TIMEOUT] = "handshake_timeout",
    [SHM_C_HEARTBEAT_TIMEOUT] = "heartbeat_timeout",
    [SHM_C_BAD_FRAME] = "bad_frame",
    [SHM_C_TABLE_FULL] = "table_full",
    [SHM_C_KICKED] = "kicked",
    [SHM_C_BYTES_IN] = "bytes_in",
    [SHM_C_BYTES_OUT] = "bytes_out",
    [SHM_C_FRAMES_IN] = "frames_in",
    [SHM_C_FRAMES_OUT] = "frames_out",
    [SHM_C_PUSH_KEY] = "push_key",
    [SHM_C_PUSH_ROOM] = "push_room",
    [SHM_C_PUSH_ALL] = "push_all",
    [SHM_C_DELIVERED] = "delivered",
    [SHM_C_DROP_NO_KEY] = "drop_no_key",
    [SHM_C_DROP_NOT_WATCH] = "drop_not_watch",
    [SHM_C_DROP_SLOW] = "drop_slow",
    [SHM_C_DROP_BAD_ENVELOPE] = "drop_bad_envelope",
    [SHM_C_SLOW_DISCONNECT] = "slow_disconnect",
    [SHM_C_RPC_CALLS] = "rpc_calls",
    [SHM_C_RPC_ERRORS] = "rpc_errors",
    [SHM_C_REDIS_RECONNECTS] = "redis_reconnects",
    [SHM_C_DROP_GAP] = "drop_gap",
};

const char *
shm_counter_name(enum shm_counter c)
{
	if ((unsigned)c >= SHM_C__COUNT)
		return NULL;
	return counter_names[c];
}

struct shm_worker *
shm_worker_slot(struct shm_seg *seg, uint32_t id)
{
	if (id >= seg->g.max_workers || seg->readonly)
		return NULL;
	return &wslot(seg, id)->w;
}

const struct shm_worker *
shm_worker_slot_ro(const struct shm_seg *seg, uint32_t id)
{
	if (id >= seg->g.max_workers)
		return NULL;
	return &wslot(seg, id)->w;
}

void
shm_counter_add(struct shm_worker *w, enum shm_counter c, int64_t delta)
{
	if (w == NULL || (unsigned)c >= SHM_C__COUNT)
		return;
	/* Two's complement: a negative delta wraps back down a gauge. */
	__atomic_fetch_add(&w->counters[c], (uint64_t)delta, __ATOMIC_RELAXED);
}

uint64_t
shm_counter_sum(const struct shm_seg *seg, enum shm_counter c)
{
	uint64_t sum = 0;

	if ((unsigned)c >= SHM_C__COUNT)
		return 0;
	for (uint32_t i = 0; i < seg->g.max_workers; i++)
		sum += __atomic_load_n(&wslot(seg, i)->w.counters[c],
		                       __ATOMIC_RELAXED);
	return sum;
}

int
shm_worker_snapshot(const struct shm_seg *seg, uint32_t id,
                    struct shm_worker *out)
{
	const struct shm_worker *w;

	if (id >= seg->g.max_workers) {
		errno = EINVAL;
		return -1;
	}
	w = &wslot(seg, id)->w;
	memset(out, 0, sizeof(*out));
	out->pid = __atomic_load_n(&w->pid, __ATOMIC_RELAXED);
	out->state = __atomic_load_n(&w->state, __ATOMIC_RELAXED);
	out->generation = __atomic_load_n(&w->generation, __ATOMIC_RELAXED);
	out->started_ms = __atomic_load_n(&w->started_ms, __ATOMIC_RELAXED);
	out->alive_ms = __atomic_load_n(&w->alive_ms, __ATOMIC_RELAXED);
	for (int c = 0; c < SHM_C__COUNT; c++)
		out->counters[c] =
		    __atomic_load_n(&w->counters[c], __ATOMIC_RELAXED);
	return 0;
}

static int
kick_lock(struct kick_box *k)
{
	int r = pthread_mutex_lock(&k->mtx);

	if (r == EOWNERDEAD) {
		/* The ring is two counters: only an impossible gap is torn. */
		if (k->tail - k->head > SHM_KICK_MAX)
			k->head = k->tail;
		r = pthread_mutex_consistent(&k->mtx);
	}
	if (r != 0) {
		errno = r;
		return -1;
	}
	return 0;
}

int
shm_worker_kick(struct shm_seg *seg, uint16_t worker, uint32_t conn_id)
{
	struct kick_box *k;

	if (worker >= seg->g.max_workers) {
		errno = EINVAL;
		return -1;
	}
	if (seg->readonly) {
		errno = EROFS;
		return -1;
	}
	k = &wslot(seg, worker)->kick;
	if (kick_lock(k) == -1)
		return -1;
	if (k->tail - k->head >= SHM_KICK_MAX) {
		pthread_mutex_unlock(&k->mtx);
		errno = ENOSPC;
		return -1;
	}
	k->ids[k->tail % SHM_KICK_MAX] = conn_id;
	k->tail++;
	pthread_mutex_unlock(&k->mtx);
	return 0;
}

size_t
shm_worker_take_kicks(struct shm_seg *seg, uint16_t worker, uint32_t *ids,
                      size_t max)
{
	struct kick_box *k;
	size_t n = 0;

	if (worker >= seg->g.max_workers || seg->readonly || max == 0)
		return 0;
	k = &wslot(seg, worker)->kick;
	if (kick_lock(k) == -1)
		return 0;
	while (n < max && k->head != k->tail) {
		ids[n++] = k->ids[k->head % SHM_KICK_MAX];
		k->head++;
	}
	pthread_mutex_unlock(&k->mtx);
	return n;
}

size_t
shm_worker_reclaim(struct shm_seg *seg, uint16_t worker)
{
	struct kick_box *k;
	size_t removed = 0;

	if (worker >= seg->g.max_workers || seg->readonly)
		return 0;
	for (uint32_t i = 0; i < seg->g.buckets; i++) {
		struct bucket_hdr *b = bucket_at(seg, i);
		uint32_t cell, e;
		struct tab t;
		int begun = 0;

		if (bucket_lock(seg, b) == -1)
			continue;
		/* A removal moves the last record into j: look at j again. */
		chan_tab(seg, b, &t);
		for (uint32_t j = 0; j < *t.count;) {
			struct chan_entry *s = chan_at(&t, j);

			if (s->c.worker != worker ||
			    !tab_find(&t, s->c.key, s->hash, &cell, &e) ||
			    e != j) {
				j++;
				continue;
			}
			if (!begun++)
				write_begin_locked(b);
			tab_remove_locked(&t, cell, j);
			removed++;
		}
		room_tab(seg, b, &t);
		for (uint32_t j = 0; j < *t.count;) {
			struct room_entry *r = room_at(&t, j);

			if (r->counts[worker] == 0) {
				j++;
				continue;
			}
			if (!begun++)
				write_begin_locked(b);
			r->online -= r->counts[worker];
			r->counts[worker] = 0;
			if (r->online != 0 ||
			    !tab_find(&t, r->name, r->hash, &cell, &e) ||
			    e != j)
				j++;
			else
				tab_remove_locked(&t, cell, j);
		}
		if (begun)
			write_end_locked(b);
		bucket_unlock(b);
	}
	k = &wslot(seg, worker)->kick;
	if (kick_lock(k) == 0) {
		k->head = k->tail;
		pthread_mutex_unlock(&k->mtx);
	}
	__atomic_store_n(&wslot(seg, worker)->w.counters[SHM_C_CONN_CURRENT], 0,
	                 __ATOMIC_RELAXED);
	return removed;
}

/* --- snapshots --- */

struct bucket_copy {
	const struct tab *t;
	void *buf;
	uint32_t n; /* entries copied */
};

static void
bucket_copy_read(void *ctx)
{
	struct bucket_copy *c = ctx;

	/* The used front of the pool only: its tail was never touched. */
	c->n = tab_count(c->t);
	memcpy(c->buf, c->t->pool, (size_t)c->n * c->t->stride);
}

/*
 * Call visit(entry, ctx) for every record of one table of each bucket (the
 * channels, or the rooms), on a copy taken under the bucket's sequence
 * counter; the visitor may change the copy. A visit returning nonzero
 * ends the walk. Returns the buckets skipped because writers kept them
 * busy (every one when out of memory).
 */
static size_t
bucket_walk(const struct shm_seg *seg, int rooms,
            int (*visit)(void *entry, void *ctx), void *ctx)
{
	size_t skipped = 0,
	       stride = rooms ? seg->l.room_entry_size : seg->l.chan_entry_size;
	uint32_t n =
	    rooms ? seg->g.rooms_per_bucket : seg->g.channels_per_bucket;
	unsigned char *buf;

	if ((buf = malloc((size_t)n * stride)) == NULL)
		return seg->g.buckets;
	for (uint32_t i = 0; i < seg->g.buckets; i++) {
		const struct bucket_hdr *b = bucket_at(seg, i);
		struct bucket_copy c = {NULL, buf, 0};
		struct tab t;

		if (rooms)
			room_tab(seg, b, &t);
		else
			chan_tab(seg, b, &t);
		c.t = &t;
		if (bucket_read(b, bucket_copy_read, &c) == -1) {
			skipped++;
			continue;
		}
		for (uint32_t j = 0; j < c.n; j++) {
			struct entry_head *s =
			    (struct entry_head *)(buf + j * stride);

			if (s->state == ENTRY_USED && visit(s, ctx) != 0)
				goto out;
		}
	}
out:
	free(buf);
	return skipped;
}

struct each_channel {
	shm_channel_fn fn;
	void *arg;
};

static int
each_channel_visit(void *entry, void *ctx)
{
	struct chan_entry *s = entry;
	const struct each_channel *e = ctx;

	/* A consistent copy of valid writes: belt and braces. */
	s->c.key[SHM_KEY_MAX - 1] = '\0';
	s->c.room[SHM_ROOM_MAX - 1] = '\0';
	s->c.remote[SHM_REMOTE_MAX - 1] = '\0';
	if (s->c.naccepts > SHM_ACCEPTS_MAX)
		s->c.naccepts = SHM_ACCEPTS_MAX;
	return e->fn(&s->c, e->arg);
}

size_t
shm_each_channel(const struct shm_seg *seg, shm_channel_fn fn, void *arg)
{
	struct each_channel e = {fn, arg};

	return bucket_walk(seg, 0, each_channel_visit, &e);
}

struct each_room {
	shm_room_fn fn;
	void *arg;
	uint32_t nworkers;
};

static int
each_room_visit(void *entry, void *ctx)
{
	struct room_entry *s = entry;
	const struct each_room *e = ctx;
	struct shm_room r;

	memcpy(r.name, s->name, sizeof(r.name));
	r.name[SHM_ROOM_MAX - 1] = '\0';
	r.online = s->online;
	r.cluster_online = s->cluster_online;
	r.nworkers = e->nworkers;
	r.workers = s->counts;
	return e->fn(&r, e->arg);
}

size_t
shm_each_room(const struct shm_seg *seg, shm_room_fn fn, void *arg)
{
	struct each_room e = {fn, arg, seg->g.max_workers};

	return bucket_walk(seg, 1, each_room_visit, &e);
}

/* --- test hooks (shm/shm_test.h) --- */

uint32_t
shm_test_bucket_of(const struct shm_seg *seg, const char *name)
{
	return bucket_index(seg, hash_str(name));
}

uint32_t
shm_test_home_of(const struct shm_seg *seg, const char *key)
{
	return home_of(hash_str(key), seg->g.channels_per_bucket);
}

int
shm_test_lock_bucket(struct shm_seg *seg, uint32_t b)
{
	if (b >= seg->g.buckets) {
		errno = EINVAL;
		return -1;
	}
	return bucket_lock(seg, bucket_at(seg, b));
}

int
shm_test_torn_put(struct shm_seg *seg, const char *key)
{
	struct bucket_hdr *b;
	struct chan_entry *s;
	struct tab t;
	uint32_t cell, e;
	uint64_t h;
	int found;

	if ((found = chan_lock_find(seg, key, &b, &t, &cell, &e, &h)) == -1)
		return -1;
	if (!found && *t.count >= t.n) {
		bucket_unlock(b);
		errno = ENOSPC;
		return -1;
	}
	s = chan_at(&t, found ? e : *t.count);
	write_begin_locked(b);
	entry_begin_locked((struct entry_head *)s);
	s->hash = h;
	/* Half a key and nothing else, as a writer killed mid-copy leaves. */
	memset(&s->c, 0x5a, sizeof(s->c));
	memcpy(s->c.key, key, strlen(key) / 2);
	return 0;
}

int
shm_test_torn_del(struct shm_seg *seg, const char *key)
{
	struct bucket_hdr *b;
	struct tab t;
	uint32_t cell, e;
	uint64_t h;
	int found;

	if ((found = chan_lock_find(seg, key, &b, &t, &cell, &e, &h)) == -1)
		return -1;
	if (!found) {
		bucket_unlock(b);
		return -1;
	}
	if (e == *t.count - 1) {
		bucket_unlock(b);
		return 0;
	}
	write_begin_locked(b);
	tab_move_locked(&t, e, *t.count - 1);
	return 1;
}

void
shm_test_set_master_pid(struct shm_seg *seg, pid_t pid)
{
	header(seg)->master_pid = pid;
}

void
shm_test_set_version(struct shm_seg *seg, uint32_t version)
{
	header(seg)->version = version;
}

uint32_t
shm_test_bucket_recoveries(const struct shm_seg *seg, uint32_t b)
{
	return b < seg->g.buckets ? bucket_at(seg, b)->recoveries : 0;
}

static int
tab_check(const struct tab *t, const char *what, char *err, size_t errlen)
{
	uint32_t count = *t->count, used = 0;

	if (count > t->n) {
		set_err(err, errlen, "%s: count %u over %u entries", what,
		        count, t->n);
		return -1;
	}
	for (uint32_t i = 0; i < count; i++) {
		const struct entry_head *s = tab_entry(t, i);
		uint32_t cell, e;

		if (!entry_valid(t, s)) {
			set_err(err, errlen, "%s entry %u invalid", what, i);
			return -1;
		}
		if (t->rooms &&
		    ((const struct room_entry *)s)->online !=
		        room_sum((const struct room_entry *)s, t->nworkers)) {
			set_err(err, errlen, "%s entry %u: total != sum", what,
			        i);
			return -1;
		}
		/* Reachable from its home, and the first match: no gap,
		 * no duplicate. */
		if (!tab_find(t, entry_key(t, s), s->hash, &cell, &e) ||
		    e != i) {
			set_err(err, errlen,
			        "%s entry %u (\"%s\") not found through the "
			        "index",
			        what, i, entry_key(t, s));
			return -1;
		}
	}
	for (uint32_t i = 0; i < t->n; i++) {
		uint32_t c = t->cells[i];

		if (c == 0)
			continue;
		used++;
		if (cell_entry(c) >= count) {
			set_err(err, errlen, "%s cell %u names entry %u of %u",
			        what, i, cell_entry(c), count);
			return -1;
		}
		if (c >> CELL_ENTRY_BITS !=
		    cell_tag(tab_entry(t, cell_entry(c))->hash)) {
			set_err(err, errlen, "%s cell %u: hash bits differ",
			        what, i);
			return -1;
		}
	}
	/* Each entry has its own cell (above): no cell besides. */
	if (used != count) {
		set_err(err, errlen, "%s: %u cells used, count says %u", what,
		        used, count);
		return -1;
	}
	return 0;
}

int
shm_test_check_bucket(const struct shm_seg *seg, uint32_t bi, char *err,
                      size_t errlen)
{
	const struct bucket_hdr *b;
	struct tab t;

	if (bi >= seg->g.buckets) {
		set_err(err, errlen, "no bucket %u", bi);
		return -1;
	}
	b = bucket_at(seg, bi);
	if ((b->seq & 1) || b->dirty) {
		set_err(err, errlen, "write in progress");
		return -1;
	}
	chan_tab(seg, b, &t);
	if (tab_check(&t, "channel", err, errlen) == -1)
		return -1;
	room_tab(seg, b, &t);
	return tab_check(&t, "room", err, errlen);
}
