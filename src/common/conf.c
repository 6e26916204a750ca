#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/conf.h"

int
conf_parse_bool(const char *v, int *out)
{
	static const char *const yes[] = {"yes", "on", "true", "1"};
	static const char *const no[] = {"no", "off", "false", "0"};

	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(v, yes[i]) == 0) {
			*out = 1;
			return 0;
		}
		if (strcasecmp(v, no[i]) == 0) {
			*out = 0;
			return 0;
		}
	}
	return -1;
}

/* strtol with every failure mode turned into -1; *end is the suffix. */
static int
parse_number(const char *v, long *out, const char **end)
{
	char *e;
	long n;

	while (isspace((unsigned char)*v))
		v++;
	if (!isdigit((unsigned char)*v) && *v != '-')
		return -1;
	errno = 0;
	n = strtol(v, &e, 10);
	if (errno != 0 || e == v)
		return -1;
	while (isspace((unsigned char)*e))
		e++;
	*out = n;
	*end = e;
	return 0;
}

int
conf_parse_long(const char *v, long min, long max, long *out)
{
	const char *end;
	long n;

	if (parse_number(v, &n, &end) == -1 || *end != '\0' || n < min ||
	    n > max)
		return -1;
	*out = n;
	return 0;
}

int
conf_parse_duration_ms(const char *v, long *out_ms)
{
	const char *end;
	long n, mult;

	if (parse_number(v, &n, &end) == -1 || n < 0)
		return -1;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mult = 3600 * 1000;
	else
		return -1;
	if (n > LONG_MAX / mult)
		return -1;
	*out_ms = n * mult;
	return 0;
}

int
conf_parse_size(const char *v, size_t *out)
{
	const char *end;
	unsigned long long mult;
	long n;

	if (parse_number(v, &n, &end) == -1 || n < 0)
		return -1;
	switch (tolower((unsigned char)*end)) {
	case '\0':
		mult = 1;
		break;
	case 'k':
		mult = 1ULL << 10;
		break;
	case 'm':
		mult = 1ULL << 20;
		break;
	case 'g':
		mult = 1ULL << 30;
		break;
	default:
		return -1;
	}
	if (*end != '\0') {
		end++;
		if (tolower((unsigned char)*end) == 'b' ||
		    tolower((unsigned char)*end) == 'i')
			end++;
		if (tolower((unsigned char)*end) == 'b')
			end++;
		if (*end != '\0')
			return -1;
	}
	if ((unsigned long long)n > SIZE_MAX / mult)
		return -1;
	*out = (size_t)n * (size_t)mult;
	return 0;
}

int
conf_parse_addr(const char *v, char *host, size_t hostlen, int *port)
{
	const char *colon, *hs, *he;
	long p;

	if (v[0] == '[') {
		hs = v + 1;
		he = strchr(hs, ']');
		if (he == NULL || he[1] != ':')
			return -1;
		colon = he + 1;
	} else {
		colon = strrchr(v, ':');
		if (colon == NULL)
			return -1;
		hs = v;
		he = colon;
	}
	if (conf_parse_long(colon + 1, 1, 65535, &p) == -1)
		return -1;
	if ((size_t)(he - hs) >= hostlen)
		return -1;
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	*port = (int)p;
	return 0;
}
