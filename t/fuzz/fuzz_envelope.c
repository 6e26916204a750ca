/* libFuzzer target for envelope_decode: any bytes, never a crash. */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	msgpack_unpacked scratch;
	struct envelope e;
	char err[128];

	msgpack_unpacked_init(&scratch);
	if (envelope_decode(data, size, &scratch, &e, err, sizeof(err)) == 0) {
		msgpack_sbuffer sb;
		struct envelope again;
		msgpack_unpacked s2;

		/* What decodes must re-encode and decode to the same. */
		msgpack_sbuffer_init(&sb);
		if (envelope_encode(&sb, &e) != 0)
			__builtin_trap();
		msgpack_unpacked_init(&s2);
		if (envelope_decode(sb.data, sb.size, &s2, &again, err,
		                    sizeof(err)) != 0 ||
		    again.type != e.type || again.operation != e.operation ||
		    again.nkeys != e.nkeys || again.msg_len != e.msg_len ||
		    again.id != e.id || again.ts != e.ts ||
		    again.src != e.src || again.seq != e.seq ||
		    (e.msg_len > 0 && memcmp(again.msg, e.msg, e.msg_len) != 0))
			__builtin_trap();
		msgpack_unpacked_destroy(&s2);
		msgpack_sbuffer_destroy(&sb);
	}
	msgpack_unpacked_destroy(&scratch);
	return 0;
}
