/* webhook: upstream client messages to the business server (webhook.c). */
#ifndef IMGATE_LOGIC_WEBHOOK_H
#define IMGATE_LOGIC_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "logic/logic.h"

/* NULL on failure (logged). */
struct webhook *webhook_new(struct logic *l);
void webhook_free(struct webhook *w);

/* Follow a new l->conf. 0 or -1 (logged). */
int webhook_reload(struct webhook *w);

/* Forward (or log) one message; never blocks, never fails the caller. */
void webhook_receive(struct webhook *w, int64_t mid, const char *key,
                     size_t keylen, int32_t op, const void *body, size_t len);

#endif
