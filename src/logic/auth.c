#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <jwt.h>
#include <uuid/uuid.h>

#include "logic/auth.h"

static int
copy_field(json_t *claims, const char *name, char *dst, size_t dstlen,
           char *err, size_t errlen)
{
	json_t *v = json_object_get(claims, name);
	const char *s;
	size_t n;

	dst[0] = '\0';
	if (v == NULL || json_is_null(v))
		return 0;
	if (!json_is_string(v)) {
		snprintf(err, errlen, "%s is not a string", name);
		return -1;
	}
	s = json_string_value(v);
	n = json_string_length(v);
	if (n >= dstlen || strlen(s) != n) {
		snprintf(err, errlen, "%s is longer than %zu bytes or has NUL",
		         name, dstlen - 1);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) {
			snprintf(err, errlen, "%s has a control character",
			         name);
			return -1;
		}
	}
	memcpy(dst, s, n + 1);
	return 0;
}

/* exp/nbf may be integers or reals (RFC 7519 NumericDate). */
static int
numeric_date(json_t *claims, const char *name, int64_t *out, char *err,
             size_t errlen)
{
	json_t *v = json_object_get(claims, name);

	if (v == NULL)
		return 0;
	if (json_is_integer(v))
		*out = json_integer_value(v);
	else if (json_is_real(v) && json_real_value(v) > -9e18 &&
	         json_real_value(v) < 9e18)
		*out = (int64_t)json_real_value(v);
	else {
		snprintf(err, errlen, "%s is not a NumericDate", name);
		return -1;
	}
	return 1;
}

static int
from_claims(json_t *claims, int jwt, long leeway_s, int64_t now_s,
            struct auth_result *out, char *err, size_t errlen)
{
	json_t *v, *a;
	int64_t t;
	size_t i;
	int r;

	if (!json_is_object(claims)) {
		snprintf(err, errlen, "token is not a JSON object");
		return -1;
	}
	if (jwt) {
		r = numeric_date(claims, "exp", &t, err, errlen);
		if (r == -1)
			return -1;
		if (r == 1 && now_s > t + leeway_s) {
			snprintf(err, errlen, "token expired");
			return -1;
		}
		r = numeric_date(claims, "nbf", &t, err, errlen);
		if (r == -1)
			return -1;
		if (r == 1 && now_s + leeway_s < t) {
			snprintf(err, errlen, "token not valid yet");
			return -1;
		}
	}
	v = json_object_get(claims, "mid");
	if (!json_is_integer(v)) {
		snprintf(err, errlen, "mid missing or not an integer");
		return -1;
	}
	out->mid = json_integer_value(v);
	if (copy_field(claims, "key", out->key, sizeof(out->key), err,
	               errlen) == -1 ||
	    copy_field(claims, "room_id", out->room_id, sizeof(out->room_id),
	               err, errlen) == -1 ||
	    copy_field(claims, "platform", out->platform, sizeof(out->platform),
	               err, errlen) == -1)
		return -1;
	out->naccepts = 0;
	a = json_object_get(claims, "accepts");
	if (a != NULL && !json_is_null(a)) {
		if (!json_is_array(a)) {
			snprintf(err, errlen, "accepts is not an array");
			return -1;
		}
		if (json_array_size(a) > AUTH_ACCEPTS_MAX) {
			snprintf(err, errlen, "more than %d accepts",
			         AUTH_ACCEPTS_MAX);
			return -1;
		}
		json_array_foreach(a, i, v)
		{
			json_int_t op;

			if (!json_is_integer(v)) {
				snprintf(err, errlen,
				         "accepts[%zu] is not an integer", i);
				return -1;
			}
			op = json_integer_value(v);
			if (op < INT32_MIN || op > INT32_MAX) {
				snprintf(err, errlen,
				         "accepts[%zu] out of range", i);
				return -1;
			}
			out->accepts[out->naccepts++] = (int32_t)op;
		}
	}
	if (out->key[0] == '\0') {
		uuid_t u;

		uuid_generate_random(u);
		uuid_unparse_lower(u, out->key);
	}
	return 0;
}

static json_t *
jwt_claims(const char *token, const char *secret, size_t secret_len, char *err,
           size_t errlen)
{
	json_error_t jerr;
	json_t *claims;
	jwt_t *jwt = NULL;
	char *grants;

	if (secret_len > INT32_MAX) {
		snprintf(err, errlen, "secret too long");
		return NULL;
	}
	/* libjwt checks the signature when given a key. */
	if (jwt_decode(&jwt, token, (const unsigned char *)secret,
	               (int)secret_len) != 0 ||
	    jwt == NULL) {
		snprintf(err, errlen, "invalid or badly signed JWT");
		return NULL;
	}
	if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
		jwt_free(jwt);
		snprintf(err, errlen, "JWT algorithm is not HS256");
		return NULL;
	}
	grants = jwt_get_grants_json(jwt, NULL);
	jwt_free(jwt);
	if (grants == NULL) {
		snprintf(err, errlen, "JWT without claims");
		return NULL;
	}
	claims = json_loads(grants, JSON_REJECT_DUPLICATES, &jerr);
	free(grants);
	if (claims == NULL)
		snprintf(err, errlen, "JWT claims are not JSON");
	return claims;
}

int
auth_token_parse(const void *token, size_t len, const char *secret,
                 size_t secret_len, long leeway_s, int64_t now_s,
                 struct auth_result *out, char *err, size_t errlen)
{
	json_error_t jerr;
	json_t *claims;
	char *tok;
	int r;

	memset(out, 0, sizeof(*out));
	if (len == 0 || len > AUTH_TOKEN_MAX) {
		snprintf(err, errlen, "token length %zu not in [1, %d]", len,
		         AUTH_TOKEN_MAX);
		return -1;
	}
	/*
	 * Neither a JSON text nor a JWT has a NUL byte; jansson would stop
	 * at one and take what precedes it for the whole token.
	 */
	if (memchr(token, '\0', len) != NULL) {
		snprintf(err, errlen, "bad token: it has a NUL byte");
		return -1;
	}
	if (secret_len > 0) {
		tok = malloc(len + 1);
		if (tok == NULL) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		memcpy(tok, token, len);
		tok[len] = '\0';
		claims = jwt_claims(tok, secret, secret_len, err, errlen);
		free(tok);
	} else {
		claims = json_loadb(token, len, JSON_REJECT_DUPLICATES, &jerr);
		if (claims == NULL)
			snprintf(err, errlen, "token is not JSON: %s",
			         jerr.text);
	}
	if (claims == NULL)
		return -1;
	r = from_claims(claims, secret_len > 0, leeway_s, now_s, out, err,
	                errlen);
	json_decref(claims);
	return r;
}
