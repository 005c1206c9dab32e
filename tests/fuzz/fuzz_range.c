/* fuzz_range.c — the Range header of GET /v1/objects/{key}
 * (ks_range_parse, store/store.c). The first byte picks the object's size
 * (a table of edge sizes, or the next 8 bytes); the rest is the header's
 * value. An accepted range must lie inside the object, and the verdict
 * must match RFC 9110's grammar for one range: "bytes=" then FIRST "-"
 * [LAST] or "-" SUFFIX, digits only, FIRST < size, LAST >= FIRST (clamped
 * to the end), SUFFIX > 0 on a non-empty object. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"
#include "store/store.h"

static int digits(const char *p, const char **end) {
  const char *s = p;
  while (*p >= '0' && *p <= '9') p++;
  *end = p;
  return p > s;
}

/* -1: unsatisfiable; else *off, *len by the grammar (values saturate). */
static int oracle(const char *h, int64_t size, int64_t *off, int64_t *len) {
  if (strncmp(h, "bytes=", 6)) return -1;
  const char *p = h + 6, *end;
  if (*p == '-') {
    if (!digits(p + 1, &end) || *end) return -1;
    errno = 0;
    long long n = strtoll(p + 1, NULL, 10);     /* saturates at LLONG_MAX */
    if (n == 0 || size == 0) return -1;
    if (n > size) n = size;
    *off = size - n, *len = n;
    return 0;
  }
  if (!digits(p, &end) || *end != '-') return -1;
  long long a = strtoll(p, NULL, 10);
  const char *q = end + 1;
  long long b = size - 1;
  if (*q) {
    if (!digits(q, &end) || *end) return -1;
    b = strtoll(q, NULL, 10);
    if (b < a) return -1;
    if (b > size - 1) b = size - 1;
  }
  if (a >= size) return -1;
  *off = a, *len = b - a + 1;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  if (n < 1) return 0;
  static const int64_t sizes[] = {0, 1, 2, 10, 1000, 1 << 20, INT64_MAX, INT64_MAX - 1};
  int64_t size;
  size_t at = 1;
  if (data[0] < 8) size = sizes[data[0]];
  else {
    if (n < 9) return 0;
    uint64_t u;
    memcpy(&u, data + 1, 8);
    size = (int64_t)(u & (uint64_t)INT64_MAX);
    at = 9;
  }
  char *h = fz_str(data + at, n - at);
  int64_t off = -7, len = -7, o2 = -7, l2 = -7;
  int r = ks_range_parse(h, size, &off, &len);
  int w = oracle(h, size, &o2, &l2);
  if (r == 0 && (off < 0 || len < 1 || off > size - len))
    fz_fail("range '%s' of an object of %lld bytes gave offset %lld length %lld", h, (long long)size, (long long)off, (long long)len);
  if ((r == 0) != (w == 0))
    fz_fail("range '%s' of an object of %lld bytes: parser says %d, the grammar %d", h, (long long)size, r, w);
  if (r == 0 && (off != o2 || len != l2))
    fz_fail("range '%s' of %lld bytes: %lld+%lld, the grammar says %lld+%lld", h, (long long)size, (long long)off,
            (long long)len, (long long)o2, (long long)l2);
  free(h);
  return 0;
}
