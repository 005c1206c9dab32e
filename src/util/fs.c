/* fs.c — see fs.h. */
#include "util/fs.h"

#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

int kiln_mkdirs(const char *path, mode_t mode, kiln_err *e) {
  char p[4096];
  if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p) return kiln_fail(e, KILN_EINVAL, "path is too long: '%.80s...'", path);
  for (char *c = p + 1; *c; c++) {
    if (*c != '/') continue;
    *c = 0;
    if (mkdir(p, mode) != 0 && errno != EEXIST)
      return kiln_fail(e, KILN_EIO, "cannot create folder '%s': %s", p, strerror(errno));
    *c = '/';
  }
  return 0;
}

void kiln_hex(const uint8_t *bytes, size_t n, char *out) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  out[2 * n] = 0;
}

void kiln_sha256_hex(const void *p, size_t n, char out[65]) {
  unsigned char d[SHA256_DIGEST_LENGTH];
  SHA256(p, n, d);
  kiln_hex(d, sizeof d, out);
}
