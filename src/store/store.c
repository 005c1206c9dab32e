/* store.c — the backend-independent half of the store: key validation,
 * dispatch to the backend vtable, and presigned URLs (HMAC-SHA256 from
 * OpenSSL's libcrypto over "METHOD\nKEY\nEXPIRES"). */
#include "store/store_int.h"
#include "util/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
  if (s->be->presign) return s->be->presign(s, method, key, expires, out, n, e);
  char hex[65];
  if ((r = sign(s, method, key, expires, hex, e)) < 0) return r;
  if ((size_t)snprintf(out, n, "/v1/objects/%s?method=%s&expires=%lld&sig=%s", key, method, (long long)expires, hex) >= n)
    return kiln_fail(e, KILN_EINVAL, "presigned URL does not fit in %zu bytes", n);
  return 0;
}

int ks_presign_verify(ks_store *s, const char *method, const char *key, int64_t expires, const char *sig,
                      int64_t now, kiln_err *e) {
  if (s->be->presign)
    return kiln_fail(e, KILN_EINVAL, "this server's presigned URLs point at the %s bucket itself, not at /v1/objects", s->be->name);
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

int ks_open(ks_store **out, const char *url, const ks_options *o, kiln_err *e) {
  if (!url || !*url) return kiln_fail(e, KILN_EINVAL, "the store URL is empty");
  if (!strncmp(url, "s3://", 5)) return ks_open_s3(out, url, o, e);
  const char *path = !strncmp(url, "file://", 7) ? url + 7 : !strncmp(url, "file:", 5) ? url + 5 : url;
  if (strstr(url, "://") && strncmp(url, "file://", 7))
    return kiln_fail(e, KILN_EINVAL, "store URL '%s': kiln knows s3://BUCKET/PREFIX and local folders (file:PATH)",
                     KILN_CLIP(url, 120));
  if (!o || !o->secret) return kiln_fail(e, KILN_EINVAL, "a local store needs a secret for its presigned URLs");
  return ks_open_local(out, path, o->secret, o->secret_len, e);
}

const char *ks_backend_name(const ks_store *s) { return s->be->name; }

/* The fetch cache: removes the least recently used copies (mtime: set at
 * each use) until what is left is within max bytes. Links handed out keep
 * their bytes; a download in progress (.dl-*) is not counted or touched. */
static void cache_trim(const char *dir, int64_t max) {
  DIR *d = opendir(dir);
  if (!d) return;
  typedef struct ent { char name[80]; int64_t size; int64_t mtime; } ent;
  ent *v = NULL;
  size_t n = 0, cap = 0;
  int64_t total = 0;
  struct dirent *de;
  while ((de = readdir(d))) {
    struct stat sb;
    if (de->d_name[0] == '.' || strlen(de->d_name) >= sizeof v->name) continue;
    if (fstatat(dirfd(d), de->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode)) continue;
    if (n == cap) {
      size_t c = cap ? 2 * cap : 64;
      ent *t = realloc(v, c * sizeof *v);
      if (!t) break;
      v = t;
      cap = c;
    }
    snprintf(v[n].name, sizeof v[n].name, "%s", de->d_name);
    v[n].size = (int64_t)sb.st_size;
    v[n].mtime = (int64_t)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    total += v[n].size;
    n++;
  }
  while (total > max && n > 0) {                  /* the oldest out first */
    size_t old = 0;
    for (size_t i = 1; i < n; i++) if (v[i].mtime < v[old].mtime) old = i;
    if (unlinkat(dirfd(d), v[old].name, 0) == 0) total -= v[old].size;
    v[old] = v[--n];
  }
  free(v);
  closedir(d);
}

int ks_fetch(ks_store *s, const char *key, char *out, size_t n, int *linked, kiln_err *e) {
  *linked = 0;
  int r = ks_key_check(key, e);
  if (r < 0) return r;
  if (s->be->local_path) return s->be->local_path(s, key, out, n, e);
  if (!s->be->cache_dir || !s->be->version)
    return kiln_fail(e, KILN_EINVAL, "the %s store can neither read objects in place nor cache them", s->be->name);
  char tag[256] = "";
  ks_stat st;
  if ((r = s->be->version(s, key, tag, sizeof tag, &st, e)) < 0) return r;
  int64_t max = 0;
  const char *dir = s->be->cache_dir(s, &max);
  char id[KS_KEY_MAX + 400], name[65], cpath[1400], scratch[1200];
  snprintf(id, sizeof id, "%s\n%s\n%lld", key, tag, (long long)st.size);
  kiln_sha256_hex(id, strlen(id), name);
  snprintf(cpath, sizeof cpath, "%s/%s", dir, name);
  if ((r = ks_scratch_dir(s, scratch, sizeof scratch, e)) < 0) return r;
  int rounds = 0;
again:;
  struct stat sb;
  if (stat(cpath, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size == st.size) {
    utimensat(AT_FDCWD, cpath, NULL, 0);          /* used now: the last to be evicted */
  } else {
    char tmp[1400];
    snprintf(tmp, sizeof tmp, "%s/.dl-XXXXXX", dir);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) return kiln_fail(e, errno == ENOSPC ? KILN_ENOSPACE : KILN_EIO, "cannot write to the fetch cache '%s': %s", dir, strerror(errno));
    ks_get *g = NULL;
    r = ks_get_open(s, key, 0, -1, &g, e);
    char *b = r == 0 ? malloc(1 << 20) : NULL;
    if (r == 0 && !b) r = kiln_fail(e, KILN_ENOMEM, "out of memory");
    int64_t got = 0;
    ssize_t k;
    while (r == 0 && (k = ks_get_read(g, b, 1 << 20, e)) != 0) {
      if (k < 0) { r = (int)k; break; }
      for (ssize_t w = 0; w < k;) {
        ssize_t m = write(fd, b + w, (size_t)(k - w));
        if (m < 0 && errno == EINTR) continue;
        if (m < 0) { r = kiln_fail(e, errno == ENOSPC ? KILN_ENOSPACE : KILN_EIO, "writing to the fetch cache failed: %s", strerror(errno)); break; }
        w += m;
      }
      got += k;
    }
    free(b);
    ks_get_close(g);
    close(fd);
    if (r == 0 && got != st.size)
      r = kiln_fail(e, KILN_EIO, "object '%s' gave %lld of its %lld bytes", KILN_CLIP(key, 80), (long long)got, (long long)st.size);
    if (r == 0 && rename(tmp, cpath) != 0) r = kiln_fail(e, KILN_EIO, "cannot keep '%s' in the fetch cache: %s", KILN_CLIP(key, 80), strerror(errno));
    if (r < 0) { unlink(tmp); return r; }
  }
  /* the caller's link: <scratch>/in-XXXXXX-<the key's file name, its last 100 bytes> */
  const char *leaf = strrchr(key, '/');
  leaf = leaf ? leaf + 1 : key;
  size_t ll = strlen(leaf);
  if (ll > 100) {                                 /* keep the end (the extension), on a UTF-8 boundary */
    const char *p = leaf + ll - 100;
    while (*p && ((unsigned char)*p & 0xC0) == 0x80) p++;
    leaf = p;
  }
  for (int tries = 0;; tries++) {
    unsigned rnd = 0;
    RAND_bytes((unsigned char *)&rnd, sizeof rnd);
    if ((size_t)snprintf(out, n, "%s/in-%08x-%s", scratch, rnd, leaf) >= n)
      return kiln_fail(e, KILN_EINVAL, "the fetched file's path is too long");
    if (link(cpath, out) == 0) break;
    if (errno == ENOENT && ++rounds < 3) goto again;   /* evicted meanwhile: fetch it again */
    if (errno != EEXIST || tries == 8)
      return kiln_fail(e, KILN_EIO, "cannot link '%s' from the fetch cache into the scratch folder: %s", KILN_CLIP(key, 80), strerror(errno));
  }
  *linked = 1;
  cache_trim(dir, max);
  return 0;
}
