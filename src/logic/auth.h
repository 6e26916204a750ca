/*
 * auth: turn the body of a client's op-7 auth frame into a session.
 *
 * Without a secret the token is goim's JSON:
 *   {"mid":123,"key":"","room_id":"live://1000","platform":"web",
 *    "accepts":[1000,1001]}
 * With a secret it must be a JWT signed with HS256 whose claims carry the
 * same fields; "exp" and "nbf" are enforced when present (with leeway),
 * anything but HS256 (including "none") is refused.
 *
 * Only mid is required. An empty or absent key gets a fresh UUID. Sizes
 * are bounded so the result fits the comet's shm entries.
 */
#ifndef IMGATE_LOGIC_AUTH_H
#define IMGATE_LOGIC_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKEN_MAX    4096
#define AUTH_KEY_MAX      64 /* NUL included: the comet's SHM_KEY_MAX */
#define AUTH_ROOM_MAX     64 /* NUL included: the comet's SHM_ROOM_MAX */
#define AUTH_PLATFORM_MAX 32
#define AUTH_ACCEPTS_MAX  64

struct auth_result {
	int64_t mid;
	char key[AUTH_KEY_MAX];
	char room_id[AUTH_ROOM_MAX];
	char platform[AUTH_PLATFORM_MAX];
	int32_t accepts[AUTH_ACCEPTS_MAX];
	size_t naccepts;
};

/*
 * Check token and fill *out. secret_len 0 means goim JSON tokens. now_s is
 * the current time (seconds since the epoch) for exp/nbf. 0, or -1 with
 * the reason (safe to show the comet) in err.
 */
int auth_token_parse(const void *token, size_t len, const char *secret,
                     size_t secret_len, long leeway_s, int64_t now_s,
                     struct auth_result *out, char *err, size_t errlen);

#endif
