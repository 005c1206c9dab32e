/* fs.h — small file-system and byte helpers shared by the store, the queue,
 * the token file and KILN_HOME. */
#ifndef KILN_FS_H
#define KILN_FS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/err.h"

/* Makes every missing folder above the last '/' of path (so "a/b/c.txt"
 * makes a/ and a/b/; "a/b/" makes a/b). Existing folders are fine. */
int kiln_mkdirs(const char *path, mode_t mode, kiln_err *e);

/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void kiln_hex(const uint8_t *bytes, size_t n, char *out);
/* Lower-case hex SHA-256 of n bytes (token hashes, SigV4, the fetch cache's names). */
void kiln_sha256_hex(const void *p, size_t n, char out[65]);

#endif
