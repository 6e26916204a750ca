/*
 * tls: the server-side OpenSSL context for the WSS listener, built from the
 * certificate chain and key files named in the config. A reload builds a
 * new context and swaps it in only when it loaded cleanly; connections
 * already established keep the context they started with (SSL objects hold
 * their own reference).
 */
#ifndef IMGATE_COMET_TLS_H
#define IMGATE_COMET_TLS_H

#include <stddef.h>

#include <openssl/ssl.h>

/* A new context, or NULL with err filled (the OpenSSL reason included). */
SSL_CTX *tls_ctx_new(const char *cert_file, const char *key_file, char *err,
                     size_t errlen);

/* A new SSL for one accepted connection; NULL on failure. */
SSL *tls_ssl_new(SSL_CTX *ctx);

#endif
