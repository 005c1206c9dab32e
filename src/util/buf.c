/* buf.c — the growing buffer of buf.h: doubles its capacity as it fills. */
#include "util/buf.h"

#include <stdlib.h>
#include <string.h>

void kbuf_add(kbuf *b, const void *s, size_t n) {
  if (b->oom) return;
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return; }
    b->p = p;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

void kbuf_str(kbuf *b, const char *s) { kbuf_add(b, s, strlen(s)); }
