/* auth.h — API tokens. A token is shown once, when created; kiln keeps only
 * its SHA-256 (hex) with a name, in HOME/tokens.json (mode 0600, written
 * atomically). Verification hashes the presented token and compares in
 * constant time. Tokens never go to logs or error messages. */
#ifndef KILN_AUTH_H
#define KILN_AUTH_H

#include <stddef.h>
#include "util/err.h"

#define KA_TOKEN_LEN 70         /* "kiln_" + 64 hex + NUL, rounded */

/* Creates a token named `name` (1..64 of [A-Za-z0-9._-], unique). */
int ka_token_create(const char *home, const char *name, char token[KA_TOKEN_LEN], kiln_err *e);
/* 0 if HOME/tokens.json is absent or well formed; KILN_EIO naming the file
 * and what is wrong with it otherwise (every ka_token_* call checks the same). */
int ka_token_file_check(const char *home, kiln_err *e);
/* 0 and the token's name if it is valid, else KILN_EINVAL ("invalid token"),
 * or KILN_EIO when the token file is damaged. */
int ka_token_verify(const char *home, const char *token, char *name, size_t n, kiln_err *e);
int ka_token_revoke(const char *home, const char *name, kiln_err *e);
/* Calls cb for each token's name and creation time (never its hash). */
int ka_token_list(const char *home, int (*cb)(void *arg, const char *name, long long created), void *arg, kiln_err *e);

#endif
