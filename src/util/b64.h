/* b64.h — standard base64 (OpenSSL's EVP block coder underneath): the
 * HTTP API's inline video bytes, remove_watermark's masks in JSON. */
#ifndef KILN_B64_H
#define KILN_B64_H

#include <stddef.h>
#include <stdint.h>

/* The base64 of n bytes, padded, NUL-terminated (malloc'd), or NULL (out of memory). */
char *ku_b64_encode(const void *p, size_t n);

/* Decodes the first n characters of in (padding optional; whitespace and
 * other characters refused) into a new buffer of *outn bytes (malloc'd, at
 * least 1 byte). Returns 0, or -1 when in is not base64 or memory ran out. */
int ku_b64_decode(const char *in, size_t n, uint8_t **out, size_t *outn);

#endif
