/*
 * shm_test: hooks into libimgate-shm for its tests only. They let a test
 * reproduce what a crashing worker leaves behind (a held lock, a write
 * half done) and verify a bucket's invariants. Nothing outside t/ uses
 * them.
 */
#ifndef IMGATE_SHM_TEST_H
#define IMGATE_SHM_TEST_H

#include <stddef.h>
#include <stdint.h>

#include "shm/shm.h"

/* The bucket a channel key or room name hashes to. */
uint32_t shm_test_bucket_of(const struct shm_seg *seg, const char *name);

/* The index cell where a channel key's probe starts in its bucket. */
uint32_t shm_test_home_of(const struct shm_seg *seg, const char *key);

/* Take bucket b's lock and return holding it (-1 on error). */
int shm_test_lock_bucket(struct shm_seg *seg, uint32_t b);

/*
 * Take the lock of key's bucket and start writing key's record the way
 * shm_channel_put does, then stop half-way: the sequence is odd, the
 * bucket dirty, the slot marked as being written and half filled. The
 * caller is expected to die without unlocking.
 */
int shm_test_torn_put(struct shm_seg *seg, const char *key);

/*
 * Start deleting key (owner not checked) and stop right after the pool's
 * last record was copied over key's record, before the index is fixed, as
 * a writer killed there leaves it: that record is in two entries. Returns
 * 1 (stopped after the move, lock held), 0 (key's record is the last one:
 * nothing to move, nothing done, lock released) or -1 (key absent).
 */
int shm_test_torn_del(struct shm_seg *seg, const char *key);

/* Overwrite the recorded master pid (its recorded start time stays). */
void shm_test_set_master_pid(struct shm_seg *seg, pid_t pid);

/* Overwrite the header's version (to test attach refusing it). */
void shm_test_set_version(struct shm_seg *seg, uint32_t version);

/*
 * Check bucket b without locking (call it when no writer runs): counts
 * are within the pools, every record in use is whole and reachable through
 * the index, no key twice, no index cell besides theirs, room totals
 * equal their per-worker sums and are > 0. 0, or -1
 * with err describing the first violation.
 */
int shm_test_check_bucket(const struct shm_seg *seg, uint32_t b, char *err,
                          size_t errlen);

/* Times bucket b's lock was found with a dead owner. */
uint32_t shm_test_bucket_recoveries(const struct shm_seg *seg, uint32_t b);

#endif
