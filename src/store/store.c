/* store.c — the backend-independent half of the store: key validation,
 * dispatch to the backend vtable, and presigned URLs (HMAC-SHA256 from
 * OpenSSL's libcrypto over "METHOD\nKEY\nEXPIRES"). */
#include "store/store_int.h"
#include "util/fs.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ks_key_check(const char *key, kiln_err *e) {
  if (!key || !*key) return kiln_fail(e, KILN_EINVAL, "object key is empty");
  size_t n = strlen(key);
  if (n > KS_KEY_MAX) return kiln_fail(e, KILN_EINVAL, "object key is %zu bytes; the limit is %d", n, KS_KEY_MAX);
  if (key[0] == '/') return kiln_fail(e, KILN_EINVAL, "object key '%s' must not start with '/'", KILN_CLIP(key, 80));
  if (key[n - 1] == '/') return kiln_fail(e, KILN_EINVAL, "object key '%s' must not end with '/'", KILN_CLIP(key, 80));
  for (size_t i = 0; i < n;) {
    if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f || key[i] == '\\')
      return kiln_fail(e, KILN_EINVAL, "object key '%s' holds a control character or backslash at byte %zu", KILN_CLIP(key, 80), i);
    size_t k = kiln_utf8_seq((const unsigned char *)key + i, n - i);
    if (k == 0) return kiln_fail(e, KILN_EINVAL, "object key '%s' is not valid UTF-8 at byte %zu", KILN_CLIP(key, 80), i);
    i += k;
  }
  const char *seg = key;
  while (seg) {
    const char *end = strchr(seg, '/');
    size_t len = end ? (size_t)(end - seg) : strlen(seg);
    if (len > KS_SEGMENT_MAX)
      return kiln_fail(e, KILN_EINVAL, "object key segment '%s' is %zu bytes; the limit is %d", KILN_CLIP(seg, 40), len,
                       KS_SEGMENT_MAX);
    if (len == 0) return kiln_fail(e, KILN_EINVAL, "object key '%s' has an empty segment ('//')", KILN_CLIP(key, 80));
    if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
      return kiln_fail(e, KILN_EINVAL, "object key '%s' must not contain '.' or '..' segments", KILN_CLIP(key, 80));
    seg = end ? end + 1 : NULL;
  }
  return 0;
}

void ks_close(ks_store *s) {
  if (!s) return;
  s->be->close(s);
  OPENSSL_cleanse(s->secret, sizeof s->secret);
  free(s);
}

int ks_put_begin(ks_store *s, const char *key, ks_put **out, kiln_err *e) {
  int r = ks_key_check(key, e);
  return r < 0 ? r : s->be->put_begin(s, key, out, e);
}
int ks_put_write(ks_put *p, const void *buf, size_t n, kiln_err *e) { return p->s->be->put_write(p, buf, n, e); }
int ks_put_commit(ks_put *p, kiln_err *e) { return p->s->be->put_commit(p, e); }
void ks_put_abort(ks_put *p) { if (p) p->s->be->put_abort(p); }

int ks_get_open(ks_store *s, const char *key, int64_t off, int64_t len, ks_get **out, kiln_err *e) {
  int r = ks_key_check(key, e);
  if (r < 0) return r;
  if (off < 0) return kiln_fail(e, KILN_EINVAL, "range start %lld is negative", (long long)off);
  return s->be->get_open(s, key, off, len, out, e);
}
ssize_t ks_get_read(ks_get *g, void *buf, size_t n, kiln_err *e) { return g->s->be->get_read(g, buf, n, e); }
void ks_get_close(ks_get *g) { if (g) g->s->be->get_close(g); }

int ks_stat_key(ks_store *s, const char *key, ks_stat *st, kiln_err *e) {
  int r = ks_key_check(key, e);
  return r < 0 ? r : s->be->stat(s, key, st, e);
}
int ks_delete(ks_store *s, const char *key, kiln_err *e) {
  int r = ks_key_check(key, e);
  return r < 0 ? r : s->be->del(s, key, e);
}
int ks_rename(ks_store *s, const char *from, const char *to, kiln_err *e) {
  int r = ks_key_check(from, e);
  if (r == 0) r = ks_key_check(to, e);
  return r < 0 ? r : s->be->rename(s, from, to, e);
}
int ks_local_path(ks_store *s, const char *key, char *out, size_t n, kiln_err *e) {
  int r = ks_key_check(key, e);
  if (r < 0) return r;
  if (!s->be->local_path) return kiln_fail(e, KILN_EINVAL, "the %s store has no local files", s->be->name);
  return s->be->local_path(s, key, out, n, e);
}

int ks_put_file(ks_store *s, const char *key, const char *path, kiln_err *e) {
  int r = ks_key_check(key, e);
  if (r < 0) return r;
  if (s->be->put_file && (r = s->be->put_file(s, key, path, e)) != KILN_EINVAL) return r;
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_fail(e, KILN_EIO, "cannot read '%s'", path);
  ks_put *p = NULL;
  if ((r = ks_put_begin(s, key, &p, e)) < 0) { fclose(f); return r; }
  char buf[65536];
  size_t got;
  while (r == 0 && (got = fread(buf, 1, sizeof buf, f)) > 0) r = ks_put_write(p, buf, got, e);
  if (r == 0 && ferror(f)) r = kiln_fail(e, KILN_EIO, "reading '%s' failed", path);
  fclose(f);
  if (r < 0) { ks_put_abort(p); return r; }
  if ((r = ks_put_commit(p, e)) == 0) remove(path);
  return r;
}

int ks_scratch_dir(ks_store *s, char *out, size_t n, kiln_err *e) {
  if (s->be->scratch_dir) return s->be->scratch_dir(s, out, n, e);
  const char *t = getenv("TMPDIR");
  snprintf(out, n, "%s", t && *t ? t : "/tmp");
  return 0;
}

int ks_sweep(ks_store *s) { return s->be->sweep ? s->be->sweep(s) : 0; }

int ks_list(ks_store *s, const char *prefix, ks_list_cb cb, void *arg, kiln_err *e) {
  return s->be->list(s, prefix ? prefix : "", cb, arg, e);
}

static int sign(ks_store *s, const char *method, const char *key, int64_t expires, char hex[65], kiln_err *e) {
  char msg[KS_KEY_MAX + 64];
  int n = snprintf(msg, sizeof msg, "%s\n%s\n%lld", method, key, (long long)expires);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int maclen = 0;
  if (!HMAC(EVP_sha256(), s->secret, (int)s->secret_len, (const unsigned char *)msg, (size_t)n, mac, &maclen))
    return kiln_fail(e, KILN_EINTERNAL, "HMAC-SHA256 failed");
  kiln_hex(mac, maclen < 32 ? maclen : 32, hex);
  return 0;
}

static int method_ok(const char *m) { return !strcmp(m, "GET") || !strcmp(m, "PUT"); }

int ks_presign(ks_store *s, const char *method, const char *key, int64_t expires, char *out, size_t n, kiln_err *e) {
  if (!method_ok(method)) return kiln_fail(e, KILN_EINVAL, "presign method must be GET or PUT, got '%s'", method);
  int r = ks_key_check(key, e);
  if (r < 0) return r;
  char hex[65];
  if ((r = sign(s, method, key, expires, hex, e)) < 0) return r;
  if ((size_t)snprintf(out, n, "/v1/objects/%s?method=%s&expires=%lld&sig=%s", key, method, (long long)expires, hex) >= n)
    return kiln_fail(e, KILN_EINVAL, "presigned URL does not fit in %zu bytes", n);
  return 0;
}

int ks_presign_verify(ks_store *s, const char *method, const char *key, int64_t expires, const char *sig,
                      int64_t now, kiln_err *e) {
  if (!method_ok(method)) return kiln_fail(e, KILN_EINVAL, "presigned URL method must be GET or PUT");
  int r = ks_key_check(key, e);
  if (r < 0) return r;
  char hex[65];
  if ((r = sign(s, method, key, expires, hex, e)) < 0) return r;
  if (!sig || strlen(sig) != 64 || CRYPTO_memcmp(hex, sig, 64) != 0)
    return kiln_fail(e, KILN_EINVAL, "presigned URL signature does not match (wrong key, method or expiry)");
  if (now >= expires)   /* now - expires in unsigned arithmetic: it cannot overflow */
    return kiln_fail(e, KILN_EINVAL, "presigned URL expired %llu s ago", (unsigned long long)((uint64_t)now - (uint64_t)expires));
  return 0;
}

/* 1*DIGIT at p into *v (saturating at INT64_MAX), *end after it; 0 when p
 * holds no digit. No sign, no white space: strtoll's leniency is not HTTP's. */
static int dec_digits(const char *p, const char **end, int64_t *v) {
  const char *s = p;
  int64_t x = 0;
  for (; *p >= '0' && *p <= '9'; p++) {
    int d = *p - '0';
    x = x > (INT64_MAX - d) / 10 ? INT64_MAX : x * 10 + d;
  }
  *end = p;
  *v = x;
  return p > s;
}

/* RFC 9110's byte-range-spec / suffix-range-spec, one of them. */
int ks_range_parse(const char *h, int64_t size, int64_t *off, int64_t *len) {
  if (strncmp(h, "bytes=", 6) != 0) return -1;
  const char *p = h + 6, *end;
  int64_t a, b;
  if (*p == '-') {                                 /* the last a bytes */
    if (!dec_digits(p + 1, &end, &a) || *end || a == 0 || size <= 0) return -1;
    if (a > size) a = size;
    *off = size - a;
    *len = a;
    return 0;
  }
  if (!dec_digits(p, &end, &a) || *end != '-' || a >= size) return -1;
  b = size - 1;
  if (end[1]) {
    if (!dec_digits(end + 1, &end, &b) || *end || b < a) return -1;
    if (b > size - 1) b = size - 1;
  }
  *off = a;
  *len = b - a + 1;
  return 0;
}

int ks_presign_check(ks_store *s, const char *method, const char *key, const char *qmethod, const char *qexpires,
                     const char *qsig, int64_t now, kiln_err *e) {
  if (!qmethod || !qexpires || !qsig)
    return kiln_fail(e, KILN_EINVAL, "a presigned URL needs method, expires and sig in its query");
  if (strcmp(qmethod, method) != 0)
    return kiln_fail(e, KILN_EINVAL, "presigned URL is for %s, not %s", KILN_CLIP(qmethod, 16), method);
  /* expires as ks_presign writes it: decimal digits, no sign, space or leading zero (one URL, one spelling) */
  const char *end;
  int64_t ex;
  if (!dec_digits(qexpires, &end, &ex) || *end || (qexpires[0] == '0' && qexpires[1]) || ex == INT64_MAX)
    return kiln_fail(e, KILN_EINVAL, "presigned URL's expires '%s' is not a time in unix seconds", KILN_CLIP(qexpires, 24));
  return ks_presign_verify(s, qmethod, key, ex, qsig, now, e);
}
