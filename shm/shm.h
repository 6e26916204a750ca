/*
 * shm: the comet node's shared-memory segment.
 *
 * One named POSIX shm segment per comet node holds the node-wide truth:
 * which connections (Channels) exist, keyed by their session key; how many
 * members each room has on each worker; each worker's slot (pid, state,
 * counters, kick mailbox). Every worker writes it; imgate-shm reads it.
 *
 * Layout rules:
 *  - The segment starts with a header (magic, version, geometry, offsets).
 *    It holds offsets, never pointers: each process maps it where it likes.
 *  - The table is split into buckets. A Channel lives in the bucket
 *    hash(key) % buckets, a Room in hash(room) % buckets. Each bucket has a
 *    process-shared robust mutex for writers and a sequence counter (odd
 *    while a write is in progress) so readers never block writers: they
 *    copy, then retry if the sequence moved.
 *  - Memory follows use, not capacity: a bucket keeps its records packed
 *    at the front of its pool, found through a small hash index of 4-byte
 *    cells. Only the pages holding records (and the index) become
 *    resident, so a table can be sized generously: an unused slot costs
 *    address space and 4 bytes of index.
 *  - A writer holds at most one bucket lock at a time and never does I/O
 *    under it. A process that dies holding a lock leaves it EOWNERDEAD; the
 *    next locker repairs the bucket (drops torn records, rebuilds the
 *    index from the pool) and marks the mutex consistent.
 *  - A full table refuses the insert (-1, errno ENOSPC); it never corrupts.
 *
 * This is a library: functions return 0 / -1 (errno set) or fill an error
 * buffer; they never log or exit.
 */
#ifndef IMGATE_SHM_H
#define IMGATE_SHM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAGIC   "IMGATESH"
#define SHM_VERSION 4

#define SHM_KEY_MAX     64  /* bytes of a session key, NUL included */
#define SHM_ROOM_MAX    64  /* bytes of a room id, NUL included */
#define SHM_REMOTE_MAX  48  /* "ip:port" of the client */
#define SHM_ACCEPTS_MAX 16  /* ops a connection watches */
#define SHM_KICK_MAX    256 /* pending kicks per worker (a power of two) */

/*
 * Geometry: fixed at creation; changing it needs a restart. Keys do not
 * spread evenly and probing slows as a bucket fills, so plan for buckets x
 * channels_per_bucket at about 1.5 x the connections expected (a full
 * bucket refuses while others have room). Resident memory grows with the
 * records held (each bucket's high-water mark), not with these sizes.
 */
struct shm_geometry {
	uint32_t buckets;
	uint32_t channels_per_bucket;
	uint32_t rooms_per_bucket;
	uint32_t max_workers;
};

/* A registered connection. */
struct shm_channel {
	char key[SHM_KEY_MAX];
	char room[SHM_ROOM_MAX]; /* "" when in no room */
	char remote[SHM_REMOTE_MAX];
	int64_t mid;
	uint64_t connected_ms; /* wall clock, ms since the epoch */
	uint64_t heartbeat_ms; /* last heartbeat seen, same clock */
	uint32_t conn_id;      /* worker-local id of the connection */
	uint16_t worker;
	uint16_t naccepts;
	int32_t accepts[SHM_ACCEPTS_MAX];
};

/* A room as readers see it. */
struct shm_room {
	char name[SHM_ROOM_MAX];
	uint32_t online;         /* members on this node, all workers */
	uint32_t cluster_online; /* cluster-wide count from logic, 0 unknown */
	/*
	 * Members per worker (nworkers = max_workers entries). Only set by
	 * shm_each_room, and only valid during the callback.
	 */
	uint32_t nworkers;
	const uint32_t *workers;
};

enum shm_worker_state {
	SHM_WORKER_FREE = 0,
	SHM_WORKER_STARTING,
	SHM_WORKER_RUNNING,
	SHM_WORKER_DRAINING,
	SHM_WORKER_DEAD, /* exited; master has not reclaimed it yet */
};

/*
 * Per-worker counters. Each is written only by the worker that owns the
 * slot (relaxed atomic adds), and summed on read by whoever reports them:
 * no lock, no shared cache line between writers.
 */
enum shm_counter {
	SHM_C_CONN_ACCEPTED = 0,
	SHM_C_CONN_CLOSED,
	SHM_C_CONN_CURRENT, /* gauge: open connections */
	SHM_C_CONN_REFUSED_LIMIT,
	SHM_C_ACCEPT_PAUSED, /* times accept was paused (limit, EMFILE) */
	SHM_C_AUTH_OK,
	SHM_C_AUTH_FAIL,
	SHM_C_HANDSHAKE_TIMEOUT,
	SHM_C_HEARTBEAT_TIMEOUT,
	SHM_C_BAD_FRAME,
	SHM_C_TABLE_FULL,
	SHM_C_KICKED, /* replaced by a newer connection with the same key */
	SHM_C_BYTES_IN,
	SHM_C_BYTES_OUT,
	SHM_C_FRAMES_IN,
	SHM_C_FRAMES_OUT,
	SHM_C_PUSH_KEY,       /* key push messages received from Redis */
	SHM_C_PUSH_ROOM,      /* room push messages received */
	SHM_C_PUSH_ALL,       /* broadcast messages received */
	SHM_C_DELIVERED,      /* frames queued to a client */
	SHM_C_DROP_NO_KEY,    /* key push for a key no worker holds */
	SHM_C_DROP_NOT_WATCH, /* recipient does not watch the op */
	SHM_C_DROP_SLOW,      /* recipient over its output bound */
	SHM_C_DROP_BAD_ENVELOPE,
	SHM_C_SLOW_DISCONNECT,
	SHM_C_RPC_CALLS,
	SHM_C_RPC_ERRORS,
	SHM_C_REDIS_RECONNECTS,
	/*
	 * Pushes published to a channel this worker subscribes to that never
	 * reached it (a jump in the envelopes' seq, e.g. across a Redis
	 * reconnect). Per worker: a loss on a channel every worker
	 * subscribes to counts once for each worker that missed it.
	 */
	SHM_C_DROP_GAP,
	SHM_C__COUNT
};

/* "conn_accepted", ... for metrics and imgate-shm; NULL if out of range. */
const char *shm_counter_name(enum shm_counter c);

struct shm_worker {
	pid_t pid;
	uint32_t state;      /* enum shm_worker_state */
	uint32_t generation; /* bumped every time the slot is (re)used */
	uint64_t started_ms;
	/*
	 * CLOCK_MONOTONIC ms when the worker's loop last showed it was turning
	 * (its housekeeping timer, a connection read, a push chunk): the
	 * master's watchdog reads it to find a worker that no longer runs its
	 * loop (stopped, or spinning inside one callback).
	 */
	uint64_t alive_ms;
	uint64_t counters[SHM_C__COUNT];
};

struct shm_seg; /* process-local handle */

/* Bytes a segment of this geometry needs; 0 if g is out of bounds. */
size_t shm_seg_size(const struct shm_geometry *g);

/*
 * Check g against the library's bounds (every field >= 1, buckets <= 2^20,
 * slots per bucket <= 65536, max_workers <= 4096). 0, or -1 with err.
 */
int shm_geometry_check(const struct shm_geometry *g, char *err, size_t errlen);

/*
 * Create the segment name (POSIX shm name, "/imgate-comet" style), sized for
 * g, zeroed, locks initialised. A stale segment of the same name (left by a
 * killed master) is replaced; one whose master is still alive is not
 * (EBUSY). The caller's pid is recorded as the master. Returns 0 and *out,
 * or -1 with err filled and errno set.
 */
int shm_seg_create(const char *name, const struct shm_geometry *g,
                   struct shm_seg **out, char *err, size_t errlen);

/*
 * Attach to an existing segment. readonly maps it PROT_READ (imgate-shm).
 * Fails with a clear message when no segment exists or its magic or
 * version differs.
 */
int shm_seg_attach(const char *name, int readonly, struct shm_seg **out,
                   char *err, size_t errlen);

/* Unmap; the segment itself stays. shm_seg_detach(NULL) is a no-op. */
void shm_seg_detach(struct shm_seg *seg);

/* Remove the name (master, at exit). 0 or -1. */
int shm_seg_unlink(const char *name);

const struct shm_geometry *shm_seg_geometry(const struct shm_seg *seg);

/* Pid of the master that created the segment, and its creation time. */
pid_t shm_seg_master_pid(const struct shm_seg *seg);
uint64_t shm_seg_created_ms(const struct shm_seg *seg);
/*
 * 1 if the master process still exists, else 0. On Linux its start time is
 * compared too, so a pid reused by another process does not count.
 */
int shm_seg_master_alive(const struct shm_seg *seg);
/* Bytes mapped; the name it was created or attached with. */
size_t shm_seg_bytes(const struct shm_seg *seg);
const char *shm_seg_name(const struct shm_seg *seg);
/*
 * Channels and rooms in use, summed over the buckets' counters without
 * locking (a gauge for /metrics; exact when no write is in progress).
 */
void shm_seg_usage(const struct shm_seg *seg, uint64_t *channels,
                   uint64_t *rooms);

/*
 * Channels. put registers c; if c->key is already registered (on any
 * worker), the old record is replaced and copied to *replaced (may be NULL)
 * and 1 is returned, so the caller can tell the old owner to close it
 * (compare replaced->worker and conn_id: re-putting one's own connection
 * also returns 1). 0 = inserted, -1 = bucket full (ENOSPC), key empty or
 * key/room/remote too long, naccepts or worker out of range (EINVAL),
 * read-only mapping (EROFS).
 */
int shm_channel_put(struct shm_seg *seg, const struct shm_channel *c,
                    struct shm_channel *replaced);

/*
 * Compare-and-delete: removes key only if it is still owned by
 * (worker, conn_id). 0 deleted, 1 not there or owned by someone else,
 * -1 on a read-only mapping (EROFS).
 */
int shm_channel_del(struct shm_seg *seg, const char *key, uint16_t worker,
                    uint32_t conn_id);

/*
 * Lock-free consistent read. 0 found, 1 not found. If a writer keeps the
 * bucket busy (or died in the middle of a write) past a bounded number of
 * retries, a writable mapping takes the lock (repairing the bucket) and a
 * read-only one returns -1 with errno EAGAIN.
 */
int shm_channel_get(const struct shm_seg *seg, const char *key,
                    struct shm_channel *out);

/*
 * Update fields of a channel owned by (worker, conn_id). 0, or 1 if not
 * owned; -1 (EINVAL) for a room too long or naccepts > SHM_ACCEPTS_MAX.
 * set_room changes the record only: room counts are shm_room_add's.
 */
int shm_channel_set_room(struct shm_seg *seg, const char *key, uint16_t worker,
                         uint32_t conn_id, const char *room);
int shm_channel_set_accepts(struct shm_seg *seg, const char *key,
                            uint16_t worker, uint32_t conn_id,
                            const int32_t *accepts, uint16_t naccepts);
int shm_channel_touch(struct shm_seg *seg, const char *key, uint16_t worker,
                      uint32_t conn_id, uint64_t heartbeat_ms);

/*
 * Rooms. add changes worker's member count of room by delta (+1 join,
 * -1 leave); a room whose counts all reach 0 is removed. -1 = bucket full
 * (ENOSPC), leaving an unknown room or going below 0 (ERANGE, nothing
 * changed), bad name or worker (EINVAL).
 */
int shm_room_add(struct shm_seg *seg, const char *room, uint16_t worker,
                 int delta);

/* Members on this node (all workers); 0 for an unknown room. */
uint32_t shm_room_online(const struct shm_seg *seg, const char *room);

/*
 * The cluster-wide count logic reported (RenewOnline); 0 when unknown.
 * set: 0, or 1 when the room has no member on this node (not recorded).
 */
int shm_room_set_cluster(struct shm_seg *seg, const char *room,
                         uint32_t online);
uint32_t shm_room_cluster(const struct shm_seg *seg, const char *room);

/*
 * Worker slots. shm_worker_slot returns the slot (NULL if id is out of
 * range or the mapping is read-only); its counters are written by the owner
 * only, with shm_counter_add. The master sets pid/state.
 */
struct shm_worker *shm_worker_slot(struct shm_seg *seg, uint32_t id);
const struct shm_worker *shm_worker_slot_ro(const struct shm_seg *seg,
                                            uint32_t id);
void shm_counter_add(struct shm_worker *w, enum shm_counter c, int64_t delta);
/* Sum of counter c over all slots (for /metrics). */
uint64_t shm_counter_sum(const struct shm_seg *seg, enum shm_counter c);
/*
 * Copy slot id field by field with atomic loads (readers: the fields are
 * individually exact, the copy as a whole is not a transaction). 0, or -1
 * (EINVAL) if id is out of range.
 */
int shm_worker_snapshot(const struct shm_seg *seg, uint32_t id,
                        struct shm_worker *out);

/*
 * Drop every channel and room count owned by worker (the master, after
 * that worker died), empty its kick mailbox and zero its conn_current
 * gauge; its other counters stay, so node-wide sums never go backwards.
 * Takes each bucket lock in turn (repairing any the worker left held).
 * Returns the number of channels removed.
 */
size_t shm_worker_reclaim(struct shm_seg *seg, uint16_t worker);

/*
 * Kick mailbox: ask worker to close its connection conn_id (its key was
 * taken over by a newer connection). 0 queued, -1 mailbox full (ENOSPC;
 * the owner also notices at its next heartbeat check) or bad worker
 * (EINVAL). take drains up to max ids, oldest first.
 */
int shm_worker_kick(struct shm_seg *seg, uint16_t worker, uint32_t conn_id);
size_t shm_worker_take_kicks(struct shm_seg *seg, uint16_t worker,
                             uint32_t *ids, size_t max);

/*
 * Snapshots for readers. Each callback sees a consistent copy of one
 * record (taken under the bucket's sequence counter); return non-zero from
 * the callback to stop. These never take a lock. Each bucket is copied
 * whole, so the records of one bucket form a consistent set. They return
 * the number of buckets skipped because a writer kept them busy past a
 * bounded number of retries (or died mid-write and nobody has repaired the
 * bucket yet); on allocation failure every bucket counts as skipped.
 */
typedef int (*shm_channel_fn)(const struct shm_channel *c, void *arg);
typedef int (*shm_room_fn)(const struct shm_room *r, void *arg);
size_t shm_each_channel(const struct shm_seg *seg, shm_channel_fn fn,
                        void *arg);
size_t shm_each_room(const struct shm_seg *seg, shm_room_fn fn, void *arg);

#endif
