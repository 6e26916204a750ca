/*
 * libFuzzer target: the WebSocket upgrade parser. The input is fed whole
 * and byte by byte; both must reach the same verdict, and whatever is
 * accepted or refused must produce a well-formed answer.
 */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "common/ws.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_INPUT 8192

static int
parse(struct evbuffer *in, size_t max_header, struct ws_handshake *hs,
      int *status)
{
	const char *why = NULL;
	int rc;

	rc = ws_handshake_parse(in, max_header, "/sub", hs, status, &why);
	if (rc == -1 && (why == NULL || *status < 400 || *status > 599))
		abort();
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct evbuffer *whole, *step, *out;
	struct ws_handshake hs1, hs2;
	size_t max_header, i;
	int rc1, rc2 = 0, st1 = 0, st2 = 0;

	if (size < 1 || size > MAX_INPUT)
		return 0;
	/* The first byte picks the header limit: small ones reach 431. */
	max_header = data[0] < 128 ? (size_t)data[0] * 4 : 4096;
	data++;
	size--;

	whole = evbuffer_new();
	step = evbuffer_new();
	out = evbuffer_new();
	if (whole == NULL || step == NULL || out == NULL)
		abort();
	evbuffer_add(whole, data, size);
	ws_handshake_init(&hs1);
	rc1 = parse(whole, max_header, &hs1, &st1);

	ws_handshake_init(&hs2);
	for (i = 0; i < size; i++) {
		evbuffer_add(step, data + i, 1);
		rc2 = parse(step, max_header, &hs2, &st2);
		if (rc2 != 0)
			break;
	}
	if (rc1 != rc2 || (rc1 == -1 && st1 != st2))
		abort();
	if (rc1 == 1) {
		if (strcmp(hs1.key, hs2.key) != 0 ||
		    strcmp(hs1.addr, hs2.addr) != 0 ||
		    strlen(hs1.key) != WS_KEY_LEN ||
		    evbuffer_get_length(whole) != size - (i + 1) ||
		    evbuffer_get_length(step) != 0)
			abort();
		if (ws_handshake_accept(out, &hs1) != 0)
			abort();
	} else if (rc1 == -1) {
		if (ws_handshake_reject(out, st1, "refused") != 0)
			abort();
	}
	evbuffer_free(whole);
	evbuffer_free(step);
	evbuffer_free(out);
	return 0;
}
