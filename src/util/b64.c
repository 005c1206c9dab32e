/* b64.c — base64 over OpenSSL's EVP_EncodeBlock / EVP_DecodeBlock, which
 * want whole 4-character groups and count padding as zero bytes. */
#include "util/b64.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

char *ku_b64_encode(const void *p, size_t n) {
  char *t = malloc(4 * ((n + 2) / 3) + 1);
  if (t) EVP_EncodeBlock((unsigned char *)t, p, (int)n);
  return t;
}

int ku_b64_decode(const char *in, size_t n, uint8_t **out, size_t *outn) {
  while (n > 0 && in[n - 1] == '=') n--;
  size_t full = (n + 3) / 4 * 4;
  char *pad = malloc(full + 1);
  uint8_t *buf = malloc(full / 4 * 3 + 1);
  if (!pad || !buf) { free(pad); free(buf); return -1; }
  memcpy(pad, in, n);
  memset(pad + n, '=', full - n);
  int len = full ? EVP_DecodeBlock(buf, (unsigned char *)pad, (int)full) : 0;
  free(pad);
  if (len < 0 || n % 4 == 1) { free(buf); return -1; }
  *outn = (size_t)len - (full - n);               /* the padding's zero bytes */
  *out = buf;
  return 0;
}
