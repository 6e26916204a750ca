#include "config.h"

#include <stdlib.h>

#include <xxhash.h>

#include "comet/htab.h"

#define HTAB_MIN_SLOTS 64

void
htab_init(struct htab *t)
{
	t->slots = NULL;
	t->nslots = 0;
	t->count = 0;
}

void
htab_release(struct htab *t)
{
	free(t->slots);
	htab_init(t);
}

static int
htab_grow(struct htab *t)
{
	struct htab_node **ns, *n, *next;
	size_t nn, i, j;

	nn = t->nslots ? t->nslots * 2 : HTAB_MIN_SLOTS;
	if ((ns = calloc(nn, sizeof(*ns))) == NULL)
		return -1;
	for (i = 0; i < t->nslots; i++) {
		for (n = t->slots[i]; n != NULL; n = next) {
			next = n->next;
			j = n->hash & (nn - 1);
			n->next = ns[j];
			ns[j] = n;
		}
	}
	free(t->slots);
	t->slots = ns;
	t->nslots = nn;
	return 0;
}

int
htab_insert(struct htab *t, struct htab_node *n, uint64_t hash)
{
	size_t i;
	int rc = 0;

	/* Grow at load 1; a failed grow only makes chains longer. */
	if (t->count >= t->nslots && htab_grow(t) == -1) {
		if (t->nslots == 0)
			return -1;
		rc = -1;
	}
	n->hash = hash;
	i = hash & (t->nslots - 1);
	n->next = t->slots[i];
	t->slots[i] = n;
	t->count++;
	return rc;
}

void
htab_remove(struct htab *t, struct htab_node *n)
{
	struct htab_node **pp;

	if (t->nslots == 0)
		return;
	for (pp = &t->slots[n->hash & (t->nslots - 1)]; *pp != NULL;
	     pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			n->next = NULL;
			t->count--;
			return;
		}
	}
}

struct htab_node *
htab_first(const struct htab *t, uint64_t hash)
{
	struct htab_node *n;

	if (t->nslots == 0)
		return NULL;
	for (n = t->slots[hash & (t->nslots - 1)]; n != NULL; n = n->next)
		if (n->hash == hash)
			return n;
	return NULL;
}

struct htab_node *
htab_next(const struct htab_node *n, uint64_t hash)
{
	for (n = n->next; n != NULL; n = n->next)
		if (n->hash == hash)
			return (struct htab_node *)n;
	return NULL;
}

uint64_t
htab_hash_str(const char *s, size_t len)
{
	return XXH3_64bits(s, len);
}

uint64_t
htab_hash_u32(uint32_t v)
{
	return XXH3_64bits(&v, sizeof(v));
}
