/*
 * conf: value parsers shared by both daemons' INI configs (read with
 * libinih). Each returns 0 and stores the value, or -1 and leaves *out
 * untouched, so a config loader can refuse a file with a precise message.
 */
#ifndef IMGATE_CONF_H
#define IMGATE_CONF_H

#include <stddef.h>

/* yes/no, on/off, true/false, 1/0. */
int conf_parse_bool(const char *v, int *out);

/* A decimal integer in [min, max]. */
int conf_parse_long(const char *v, long min, long max, long *out);

/* A duration: "250ms", "5s", "2m", "1h"; a bare number means seconds. */
int conf_parse_duration_ms(const char *v, long *out_ms);

/* A size: "4096", "64k", "16m", "1g" (powers of 1024). */
int conf_parse_size(const char *v, size_t *out);

/*
 * An address "host:port", ":port" (all interfaces) or "[v6]:port".
 * host receives "" for ":port". Port must be 1..65535.
 */
int conf_parse_addr(const char *v, char *host, size_t hostlen, int *port);

#endif
