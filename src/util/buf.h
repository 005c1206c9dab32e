/* buf.h — a growing byte buffer, always NUL-terminated (util/buf.c). A
 * failed allocation sets oom and makes every later add a no-op, so a
 * builder checks once at the end. Zero-initialise; free(b.p) when done. */
#ifndef KILN_BUF_H
#define KILN_BUF_H

#include <stddef.h>

typedef struct kbuf {
  char *p;
  size_t n, cap;
  int oom;
} kbuf;

void kbuf_add(kbuf *b, const void *s, size_t n);
void kbuf_str(kbuf *b, const char *s);

#endif
