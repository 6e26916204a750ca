/* Check suite for logic/auth: goim JSON tokens and HS256 JWTs. */
#include "config.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>

#include "logic/auth.h"

#define NOW     1700000000
#define SECRET  "s3cret-for-tests"
#define SECRET2 "another-secret"

static int
parse(const char *tok, const char *secret, struct auth_result *r, char *err)
{
	return auth_token_parse(tok, strlen(tok), secret,
	                        secret != NULL ? strlen(secret) : 0, 30, NOW, r,
	                        err, 160);
}

START_TEST(goim_token)
{
	struct auth_result r;
	char err[160];

	ck_assert_int_eq(
	    parse("{\"mid\":123,\"key\":\"k-1\",\"room_id\":\"live://1000\","
	          "\"platform\":\"web\",\"accepts\":[1000,1001,-3]}",
	          NULL, &r, err),
	    0);
	ck_assert(r.mid == 123);
	ck_assert_str_eq(r.key, "k-1");
	ck_assert_str_eq(r.room_id, "live://1000");
	ck_assert_str_eq(r.platform, "web");
	ck_assert_uint_eq(r.naccepts, 3);
	ck_assert_int_eq(r.accepts[0], 1000);
	ck_assert_int_eq(r.accepts[2], -3);
}
END_TEST

START_TEST(empty_key_gets_uuid)
{
	struct auth_result r, r2;
	char err[160];

	ck_assert_int_eq(parse("{\"mid\":0,\"key\":\"\"}", NULL, &r, err), 0);
	ck_assert_uint_eq(strlen(r.key), 36);
	ck_assert(r.key[8] == '-' && r.key[13] == '-');
	ck_assert_str_eq(r.room_id, "");
	ck_assert_uint_eq(r.naccepts, 0);
	ck_assert_int_eq(parse("{\"mid\":0}", NULL, &r2, err), 0);
	ck_assert_uint_eq(strlen(r2.key), 36);
	ck_assert_str_ne(r.key, r2.key);
}
END_TEST

START_TEST(goim_token_invalid)
{
	static const char *const bad[] = {
	    "",
	    "not json",
	    "[1,2]",
	    "{\"key\":\"k\"}",                  /* no mid */
	    "{\"mid\":\"12\"}",                 /* mid as string */
	    "{\"mid\":1.5}",                    /* mid as real */
	    "{\"mid\":1,\"key\":5}",            /* key not a string */
	    "{\"mid\":1,\"room_id\":[]}",       /* room not a string */
	    "{\"mid\":1,\"accepts\":\"1000\"}", /* accepts not an array */
	    "{\"mid\":1,\"accepts\":[\"1\"]}",  /* accept not an int */
	    "{\"mid\":1,\"accepts\":[4294967296]}",
	    "{\"mid\":1,\"key\":\"a\\nb\"}",     /* control character */
	    "{\"mid\":1,\"key\":\"a\\u0000b\"}", /* NUL */
	    "{\"mid\":1,\"mid\":2}",             /* duplicate */
	};
	struct auth_result r;
	char err[160];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(parse(bad[i], NULL, &r, err) == -1, "accepted %s",
		              bad[i]);
		ck_assert(err[0] != '\0');
	}
}
END_TEST

START_TEST(sizes)
{
	struct auth_result r;
	char err[160], tok[AUTH_TOKEN_MAX + 64];
	char key[AUTH_KEY_MAX + 1];
	size_t n;

	/* The longest key and room that fit, then one byte more. */
	memset(key, 'k', AUTH_KEY_MAX - 1);
	key[AUTH_KEY_MAX - 1] = '\0';
	snprintf(tok, sizeof(tok), "{\"mid\":1,\"key\":\"%s\"}", key);
	ck_assert_int_eq(parse(tok, NULL, &r, err), 0);
	ck_assert_uint_eq(strlen(r.key), AUTH_KEY_MAX - 1);
	snprintf(tok, sizeof(tok), "{\"mid\":1,\"key\":\"%sk\"}", key);
	ck_assert_int_eq(parse(tok, NULL, &r, err), -1);
	snprintf(tok, sizeof(tok), "{\"mid\":1,\"room_id\":\"%s\"}", key);
	ck_assert_int_eq(parse(tok, NULL, &r, err), 0);
	snprintf(tok, sizeof(tok), "{\"mid\":1,\"room_id\":\"%sr\"}", key);
	ck_assert_int_eq(parse(tok, NULL, &r, err), -1);

	/* AUTH_ACCEPTS_MAX accepts, then one more. */
	n = (size_t)snprintf(tok, sizeof(tok), "{\"mid\":1,\"accepts\":[");
	for (int i = 0; i < AUTH_ACCEPTS_MAX; i++)
		n += (size_t)snprintf(tok + n, sizeof(tok) - n, "%s%d",
		                      i ? "," : "", i);
	snprintf(tok + n, sizeof(tok) - n, "]}");
	ck_assert_int_eq(parse(tok, NULL, &r, err), 0);
	ck_assert_uint_eq(r.naccepts, AUTH_ACCEPTS_MAX);
	snprintf(tok + n, sizeof(tok) - n, ",99]}");
	ck_assert_int_eq(parse(tok, NULL, &r, err), -1);

	/* A token over AUTH_TOKEN_MAX is refused before parsing. */
	memset(tok, ' ', AUTH_TOKEN_MAX + 1);
	memcpy(tok, "{\"mid\":1}", 9);
	ck_assert_int_eq(auth_token_parse(tok, AUTH_TOKEN_MAX + 1, NULL, 0, 0,
	                                  NOW, &r, err, sizeof(err)),
	                 -1);
	ck_assert_int_eq(auth_token_parse(tok, AUTH_TOKEN_MAX, NULL, 0, 0, NOW,
	                                  &r, err, sizeof(err)),
	                 0);
}
END_TEST

/*
 * A NUL byte anywhere is refused: jansson stops at one and would take
 * what precedes it for the whole token.
 */
START_TEST(nul_bytes)
{
	static const struct {
		const char *tok;
		size_t len;
	} raw[] = {
	    {"{\"mid\":1\0}", 10}, {"{\"mid\":7}\0{\"mid\":8}", 19}, {"\0", 1},
	    {"{\"mid\":1}\0", 10}, {" \0{\"mid\":1}", 11},
	};
	struct auth_result r;
	char err[160];

	for (size_t i = 0; i < sizeof(raw) / sizeof(raw[0]); i++) {
		err[0] = '\0';
		ck_assert_msg(auth_token_parse(raw[i].tok, raw[i].len, NULL, 0,
		                               30, NOW, &r, err,
		                               sizeof(err)) == -1,
		              "token %zu accepted", i);
		ck_assert_msg(strncmp(err, "bad token", 9) == 0, "%zu: %s", i,
		              err);
		/* The same with a secret (a JWT cannot have one either). */
		ck_assert_int_eq(auth_token_parse(raw[i].tok, raw[i].len,
		                                  SECRET, strlen(SECRET), 30,
		                                  NOW, &r, err, sizeof(err)),
		                 -1);
		ck_assert_msg(strncmp(err, "bad token", 9) == 0, "%zu: %s", i,
		              err);
	}
	/* Without the NUL the same bytes are a good token. */
	ck_assert_int_eq(auth_token_parse("{\"mid\":1}", 9, NULL, 0, 30, NOW,
	                                  &r, err, sizeof(err)),
	                 0);

	/* Escaped NULs and control characters in the string fields. */
	ck_assert_int_eq(
	    parse("{\"mid\":1,\"key\":\"a\\u0000b\"}", NULL, &r, err), -1);
	ck_assert_int_eq(parse("{\"mid\":1,\"room_id\":\"live://1\\u0000x\"}",
	                       NULL, &r, err),
	                 -1);
	ck_assert_int_eq(
	    parse("{\"mid\":1,\"platform\":\"\\u0000\"}", NULL, &r, err), -1);
	ck_assert_int_eq(parse("{\"mid\":1,\"key\":\"a\\nb\"}", NULL, &r, err),
	                 -1);
	ck_assert_int_eq(
	    parse("{\"mid\":1,\"key\":\"a\\u007fb\"}", NULL, &r, err), -1);
	/* The platform has its own limit. */
	ck_assert_int_eq(
	    parse(
	        "{\"mid\":1,\"platform\":\"0123456789012345678901234567890\"}",
	        NULL, &r, err),
	    0);
	ck_assert_uint_eq(strlen(r.platform), AUTH_PLATFORM_MAX - 1);
	ck_assert_int_eq(
	    parse(
	        "{\"mid\":1,\"platform\":\"01234567890123456789012345678901\"}",
	        NULL, &r, err),
	    -1);
}
END_TEST

/* A JWT with alg, signed with secret, carrying the given claims. */
static char *
make_jwt(jwt_alg_t alg, const char *secret, long exp, long nbf, const char *key)
{
	jwt_t *jwt;
	char *s;

	ck_assert_int_eq(jwt_new(&jwt), 0);
	ck_assert_int_eq(
	    jwt_add_grants_json(jwt, "{\"mid\":42,\"room_id\":\"live://7\","
	                             "\"platform\":\"ios\",\"accepts\":[5]}"),
	    0);
	if (key != NULL)
		jwt_add_grant(jwt, "key", key);
	if (exp != 0)
		jwt_add_grant_int(jwt, "exp", exp);
	if (nbf != 0)
		jwt_add_grant_int(jwt, "nbf", nbf);
	ck_assert_int_eq(jwt_set_alg(jwt, alg, (const unsigned char *)secret,
	                             secret != NULL ? (int)strlen(secret) : 0),
	                 0);
	s = jwt_encode_str(jwt);
	ck_assert_ptr_nonnull(s);
	jwt_free(jwt);
	return s;
}

START_TEST(jwt_valid)
{
	struct auth_result r;
	char err[160], *t;

	t = make_jwt(JWT_ALG_HS256, SECRET, NOW + 60, NOW - 10, "dev-1");
	ck_assert_msg(parse(t, SECRET, &r, err) == 0, "%s", err);
	ck_assert(r.mid == 42);
	ck_assert_str_eq(r.key, "dev-1");
	ck_assert_str_eq(r.room_id, "live://7");
	ck_assert_str_eq(r.platform, "ios");
	ck_assert_uint_eq(r.naccepts, 1);
	ck_assert_int_eq(r.accepts[0], 5);
	free(t);

	/* No exp at all is accepted; expired within the leeway too. */
	t = make_jwt(JWT_ALG_HS256, SECRET, 0, 0, NULL);
	ck_assert_int_eq(parse(t, SECRET, &r, err), 0);
	ck_assert_uint_eq(strlen(r.key), 36);
	free(t);
	t = make_jwt(JWT_ALG_HS256, SECRET, NOW - 20, 0, "k");
	ck_assert_int_eq(parse(t, SECRET, &r, err), 0);
	free(t);
}
END_TEST

START_TEST(jwt_refused)
{
	struct auth_result r;
	char err[160], *t, *dot;

	t = make_jwt(JWT_ALG_HS256, SECRET, NOW - 31, 0, "k");
	ck_assert_int_eq(parse(t, SECRET, &r, err), -1);
	ck_assert_str_eq(err, "token expired");
	free(t);

	t = make_jwt(JWT_ALG_HS256, SECRET, 0, NOW + 3600, "k");
	ck_assert_int_eq(parse(t, SECRET, &r, err), -1);
	ck_assert_str_eq(err, "token not valid yet");
	free(t);

	t = make_jwt(JWT_ALG_HS256, SECRET2, NOW + 60, 0, "k");
	ck_assert_int_eq(parse(t, SECRET, &r, err), -1);
	free(t);

	t = make_jwt(JWT_ALG_HS512, SECRET, NOW + 60, 0, "k");
	ck_assert_int_eq(parse(t, SECRET, &r, err), -1);
	free(t);

	/* alg none, no signature. */
	t = make_jwt(JWT_ALG_NONE, NULL, NOW + 60, 0, "k");
	ck_assert_int_eq(parse(t, SECRET, &r, err), -1);
	free(t);

	/* Tampered payload: flip a character of the claims. */
	t = make_jwt(JWT_ALG_HS256, SECRET, NOW + 60, 0, "k");
	dot = strchr(t, '.');
	ck_assert_ptr_nonnull(dot);
	dot[3] = dot[3] == 'A' ? 'B' : 'A';
	ck_assert_int_eq(parse(t, SECRET, &r, err), -1);
	free(t);

	/* Signature stripped. */
	t = make_jwt(JWT_ALG_HS256, SECRET, NOW + 60, 0, "k");
	*strrchr(t, '.') = '\0';
	ck_assert_int_eq(parse(t, SECRET, &r, err), -1);
	free(t);

	/* A goim JSON token when JWTs are required. */
	ck_assert_int_eq(parse("{\"mid\":1}", SECRET, &r, err), -1);
	ck_assert_int_eq(parse("a.b.c", SECRET, &r, err), -1);
	ck_assert_int_eq(auth_token_parse("a.b\0.c", 6, SECRET, strlen(SECRET),
	                                  0, NOW, &r, err, sizeof(err)),
	                 -1);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("auth");
	TCase *tc = tcase_create("tokens");
	SRunner *sr;
	int failed;

	tcase_add_test(tc, goim_token);
	tcase_add_test(tc, empty_key_gets_uuid);
	tcase_add_test(tc, goim_token_invalid);
	tcase_add_test(tc, sizes);
	tcase_add_test(tc, nul_bytes);
	tcase_add_test(tc, jwt_valid);
	tcase_add_test(tc, jwt_refused);
	suite_add_tcase(s, tc);
	sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
