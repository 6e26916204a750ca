/*
 * htab: an intrusive chained hash table for a worker's local indexes
 * (connections by id and by key, rooms by name).
 *
 * Hand-written because none of the project's libraries offers a hash map
 * for C structs, and an intrusive one costs each entry two words instead of
 * a separate allocation. The caller embeds a struct htab_node, computes the
 * hash (xxhash) and compares keys itself while walking a chain.
 * Not thread-safe: a worker is one thread.
 */
#ifndef IMGATE_COMET_HTAB_H
#define IMGATE_COMET_HTAB_H

#include <stddef.h>
#include <stdint.h>

struct htab_node {
	struct htab_node *next;
	uint64_t hash;
};

struct htab {
	struct htab_node **slots;
	size_t nslots; /* a power of two, or 0 before the first insert */
	size_t count;
};

void htab_init(struct htab *t);
/* Frees the slot array only; entries belong to the caller. */
void htab_release(struct htab *t);
/* 0, or -1 when growing the slot array failed (the entry is still added). */
int htab_insert(struct htab *t, struct htab_node *n, uint64_t hash);
void htab_remove(struct htab *t, struct htab_node *n);
/* First node of the chain that may hold hash; walk with htab_next. */
struct htab_node *htab_first(const struct htab *t, uint64_t hash);
struct htab_node *htab_next(const struct htab_node *n, uint64_t hash);

uint64_t htab_hash_str(const char *s, size_t len);
uint64_t htab_hash_u32(uint32_t v);

#define htab_entry(ptr, type, member) \
	((type *)(void *)((char *)(ptr)-offsetof(type, member)))

#endif
