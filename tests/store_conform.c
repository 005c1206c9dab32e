/* store_conform.c — one conformance suite for every store backend, run on
 * the store a URL names (tests/test_s3.py runs it on moto's S3 and on a
 * local folder):
 *
 *   store_conform URL CACHE_DIR
 *
 * Streaming put/get with ranges, overwrite, aborted puts invisible,
 * objects larger than one part (multipart, read back in pieces), stat,
 * delete, rename (plain and, with KILN_TEST_COPY_MAX small, as a multipart
 * copy), list with a prefix over more than one page, the fetch cache
 * (a link per call, one download per version, a new version fetched
 * again, eviction under the bound keeps links handed out) and presigned
 * URLs (the URL is printed for the caller to fetch with an HTTP client).
 * Local: KILN_TEST_SECRET signs presigned URLs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/sigv4.h"
#include "store/store.h"
#include "t.h"

static const char *URL, *CACHE;
static ks_store *S;

static int put(const char *key, const void *data, size_t n, size_t step, kiln_err *e) {
  ks_put *p;
  int r = ks_put_begin(S, key, &p, e);
  for (size_t at = 0; r == 0 && at < n; at += step) r = ks_put_write(p, (const char *)data + at, n - at < step ? n - at : step, e);
  if (r < 0) { ks_put_abort(p); return r; }
  return ks_put_commit(p, e);
}

/* Reads [off, off+len) of key in reads of `step` bytes into out (cap); *got its length. */
static int get(const char *key, int64_t off, int64_t len, char *out, size_t cap, size_t step, size_t *got, kiln_err *e) {
  ks_get *g;
  int r = ks_get_open(S, key, off, len, &g, e);
  if (r < 0) return r;
  size_t n = 0;
  ssize_t k;
  while (n < cap && (k = ks_get_read(g, out + n, cap - n < step ? cap - n : step, e)) > 0) n += (size_t)k;
  ks_get_close(g);
  *got = n;
  return k < 0 ? (int)k : 0;
}

static void test_put_get(void) {
  kiln_err e = {0};
  char b[256];
  size_t n;
  const char *msg = "hello, streaming world";
  CHECK(put("c/1/in.bin", msg, strlen(msg), 5, &e) == 0, "%s", e.msg);
  CHECK(get("c/1/in.bin", 0, -1, b, sizeof b, 3, &n, &e) == 0 && n == 22 && !memcmp(b, msg, 22), "whole: %.*s", (int)n, b);
  CHECK(get("c/1/in.bin", 7, 9, b, sizeof b, 3, &n, &e) == 0 && n == 9 && !memcmp(b, "streaming", 9), "range: %.*s", (int)n, b);
  CHECK(get("c/1/in.bin", 16, 1000, b, sizeof b, 64, &n, &e) == 0 && n == 6 && !memcmp(b, " world", 6), "to the end: %.*s", (int)n, b);
  CHECK(get("c/1/in.bin", 22, -1, b, sizeof b, 64, &n, &e) == KILN_EINVAL && strstr(e.msg, "22"), "past the end: %s", e.msg);
  CHECK(get("c/1/none", 0, -1, b, sizeof b, 64, &n, &e) == KILN_ENOENT && strstr(e.msg, "c/1/none"), "missing: %s", e.msg);
  ks_stat st;
  CHECK(ks_stat_key(S, "c/1/in.bin", &st, &e) == 0 && st.size == 22 && st.mtime > 1600000000, "stat %lld %lld", (long long)st.size,
        (long long)st.mtime);
  CHECK(put("c/1/in.bin", "v2", 2, 1, &e) == 0, "%s", e.msg);
  CHECK(get("c/1/in.bin", 0, -1, b, sizeof b, 64, &n, &e) == 0 && n == 2 && !memcmp(b, "v2", 2), "overwritten: %.*s", (int)n, b);
  CHECK(put("c/1/empty", "", 0, 1, &e) == 0, "%s", e.msg);
  CHECK(ks_stat_key(S, "c/1/empty", &st, &e) == 0 && st.size == 0, "empty object: %s", e.msg);
  CHECK(get("c/1/empty", 0, -1, b, sizeof b, 64, &n, &e) == 0 && n == 0, "empty read: %s", e.msg);
  const char *odd = "c/ü and spaces/a+b=c&d%20;(x)~!.txt";
  if (!getenv("KILN_TEST_PLAIN")) {             /* see tests/test_s3.py: moto's checker and encoded paths */
    CHECK(put(odd, "odd", 3, 3, &e) == 0, "%s", e.msg);
    CHECK(get(odd, 0, -1, b, sizeof b, 64, &n, &e) == 0 && n == 3, "an odd key read back: %s", e.msg);
  }
  ks_put *p;
  CHECK(ks_put_begin(S, "c/1/partial", &p, &e) == 0, "%s", e.msg);
  ks_put_write(p, "half", 4, &e);
  CHECK(ks_stat_key(S, "c/1/partial", &st, &e) == KILN_ENOENT, "invisible before commit");
  ks_put_abort(p);
  CHECK(ks_stat_key(S, "c/1/partial", &st, &e) == KILN_ENOENT, "nothing after abort");
  CHECK(ks_put_begin(S, "../x", &p, &e) == KILN_EINVAL, "keys are checked");
}

static uint8_t *pattern(size_t n, uint32_t seed) {
  uint8_t *b = malloc(n);
  for (size_t i = 0; b && i < n; i++) { seed = seed * 1664525u + 1013904223u; b[i] = (uint8_t)(seed >> 24); }
  return b;
}

/* 21 MB: three parts of 8 MiB (the last short) written in odd steps, read back whole and in ranges. */
static void test_large(void) {
  kiln_err e = {0};
  size_t n = 21u << 20;
  uint8_t *d = pattern(n, 7), *b = malloc(n + 16);
  if (!d || !b) { CHECK(0, "out of memory"); free(d); free(b); return; }
  ks_put *p;
  CHECK(ks_put_begin(S, "c/big/part.bin", &p, &e) == 0, "%s", e.msg);
  ks_put_write(p, d, 3u << 20, &e);
  ks_stat st;
  CHECK(ks_stat_key(S, "c/big/part.bin", &st, &e) == KILN_ENOENT, "a multipart object is invisible until committed");
  ks_put_abort(p);
  CHECK(ks_stat_key(S, "c/big/part.bin", &st, &e) == KILN_ENOENT, "aborted multipart leaves nothing");
  CHECK(put("c/big/obj.bin", d, n, 1000003, &e) == 0, "%s", e.msg);
  size_t got = 0;
  CHECK(get("c/big/obj.bin", 0, -1, (char *)b, n + 16, 65536, &got, &e) == 0 && got == n && !memcmp(b, d, n),
        "read back %zu of %zu bytes: %s", got, n, e.msg);
  CHECK(get("c/big/obj.bin", 9000000, 5000000, (char *)b, n, 12345, &got, &e) == 0 && got == 5000000 && !memcmp(b, d + 9000000, got),
        "a range across parts: %zu", got);
  st.size = -1;
  CHECK(ks_stat_key(S, "c/big/obj.bin", &st, &e) == 0 && st.size == (int64_t)n, "stat %lld: %s", (long long)st.size, e.msg);
  /* rename: a multipart copy when KILN_TEST_COPY_MAX is below the size */
  CHECK(ks_rename(S, "c/big/obj.bin", "c/big/moved.bin", &e) == 0, "%s", e.msg);
  CHECK(ks_stat_key(S, "c/big/obj.bin", &st, &e) == KILN_ENOENT, "the old key is gone");
  CHECK(get("c/big/moved.bin", 0, -1, (char *)b, n + 16, 1 << 20, &got, &e) == 0 && got == n && !memcmp(b, d, n), "moved intact");
  CHECK(ks_delete(S, "c/big/moved.bin", &e) == 0, "%s", e.msg);
  free(d);
  free(b);
}

static int collect(void *arg, const char *key, const ks_stat *st) {
  int *n = arg;
  char want[64];
  snprintf(want, sizeof want, "c/list/k%04d", *n);
  if (strcmp(key, want) != 0 || st->size != 1) { fprintf(stderr, "  list: %s (%lld), wanted %s\n", key, (long long)st->size, want); *n = -100000; }
  (*n)++;
  return 0;
}
static int first_two(void *arg, const char *key, const ks_stat *st) {
  (void)key; (void)st;
  return ++*(int *)arg == 2;
}

static void test_rename_delete_list(void) {
  kiln_err e = {0};
  CHECK(put("c/r/a.tmp", "aaa", 3, 3, &e) == 0, "%s", e.msg);
  CHECK(ks_rename(S, "c/r/a.tmp", "c/r/a", &e) == 0, "%s", e.msg);
  ks_stat st;
  CHECK(ks_stat_key(S, "c/r/a", &st, &e) == 0 && st.size == 3, "renamed");
  CHECK(ks_stat_key(S, "c/r/a.tmp", &st, &e) == KILN_ENOENT, "from is gone");
  CHECK(ks_rename(S, "c/r/missing", "c/r/x", &e) == KILN_ENOENT, "rename of a missing key: %s", e.msg);
  CHECK(ks_delete(S, "c/r/a", &e) == 0, "%s", e.msg);
  CHECK(ks_delete(S, "c/r/a", &e) == KILN_ENOENT, "double delete: %s", e.msg);
  if (getenv("KILN_TEST_PLAIN")) return;        /* a listing's prefix= holds '/': run without signature checks */
  /* more than one page of ListObjectsV2 (1000 keys) */
  int nkeys = atoi(getenv("KILN_TEST_LIST_KEYS") ? getenv("KILN_TEST_LIST_KEYS") : "1010");
  int bad = 0;
  for (int i = 0; i < nkeys && !bad; i++) {
    char k[64];
    snprintf(k, sizeof k, "c/list/k%04d", i);
    if (put(k, "x", 1, 1, &e) < 0) bad = 1;
  }
  CHECK(!bad, "%s", e.msg);
  CHECK(put("c/listx", "y", 1, 1, &e) == 0, "%s", e.msg);
  int n = 0;
  CHECK(ks_list(S, "c/list/", collect, &n, &e) == 0 && n == nkeys, "listed %d of %d in order: %s", n, nkeys, e.msg);
  n = 0;
  CHECK(ks_list(S, "c/list/", first_two, &n, &e) == 0 && n == 2, "a callback stops the listing");
}

static void test_fetch(void) {
  kiln_err e = {0};
  CHECK(put("c/f/clip.mp4", "version one", 11, 4, &e) == 0, "%s", e.msg);
  char a[2048], b[2048];
  int la = 0, lb = 0;
  CHECK(ks_fetch(S, "c/f/clip.mp4", a, sizeof a, &la, &e) == 0, "%s", e.msg);
  CHECK(ks_fetch(S, "c/f/clip.mp4", b, sizeof b, &lb, &e) == 0, "%s", e.msg);
  struct stat sa, sb;
  CHECK(stat(a, &sa) == 0 && sa.st_size == 11, "fetched: %s", a);
  CHECK(strlen(a) > 4 && !strcmp(a + strlen(a) - 4, ".mp4"), "the key's extension is kept: %s", a);
  int local = !strcmp(ks_backend_name(S), "local");
  if (local) {
    CHECK(!la && !strcmp(a, b), "a local store hands out the object itself");
  } else {
    CHECK(la && lb && strcmp(a, b) != 0, "a link per call");
    CHECK(stat(b, &sb) == 0 && sa.st_ino == sb.st_ino, "both links to one cached copy (one download)");
    /* a new version of the object is a new copy; the old link keeps the old bytes */
    CHECK(put("c/f/clip.mp4", "version two!", 12, 12, &e) == 0, "%s", e.msg);
    char c[2048];
    int lc = 0;
    CHECK(ks_fetch(S, "c/f/clip.mp4", c, sizeof c, &lc, &e) == 0, "%s", e.msg);
    struct stat sc;
    CHECK(stat(c, &sc) == 0 && sc.st_size == 12 && sc.st_ino != sa.st_ino, "the new version fetched");
    CHECK(stat(a, &sa) == 0 && sa.st_size == 11, "an old link keeps its bytes");
    /* the cache bound (KILN_TEST_CACHE_MAX, 1 MB): 3 objects of 600 KB leave at most one copy, links intact */
    uint8_t *d = pattern(600000, 3);
    char l[3][2048];
    int ll[3];
    for (int i = 0; i < 3; i++) {
      char k[64];
      snprintf(k, sizeof k, "c/f/big%d.bin", i);
      CHECK(put(k, d, 600000, 600000, &e) == 0, "%s", e.msg);
      CHECK(ks_fetch(S, k, l[i], sizeof l[i], &ll[i], &e) == 0, "%s", e.msg);
    }
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/objects", CACHE);
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "du -sb --apparent-size '%s' | cut -f1", dir);
    FILE *f = popen(cmd, "r");
    long long used = -1;
    if (f) { if (fscanf(f, "%lld", &used) != 1) used = -1; pclose(f); }
    CHECK(used >= 0 && used <= 1000000, "the cache holds %lld bytes over a bound of 1000000", used);
    for (int i = 0; i < 3; i++) CHECK(stat(l[i], &sb) == 0 && sb.st_size == 600000, "link %d intact after eviction", i);
    for (int i = 0; i < 3; i++) unlink(l[i]);
    free(d);
    unlink(c);
  }
  if (la) unlink(a);
  if (lb) unlink(b);
  CHECK(ks_fetch(S, "c/f/none.mp4", a, sizeof a, &la, &e) == KILN_ENOENT, "a missing object: %s", e.msg);
}

static void test_presign(void) {
  kiln_err e = {0};
  CHECK(put("c/p/out.txt", "presigned bytes", 15, 15, &e) == 0, "%s", e.msg);
  char url[4096];
  CHECK(ks_presign(S, "GET", "c/p/out.txt", (int64_t)time(NULL) + 600, url, sizeof url, &e) == 0, "%s", e.msg);
  printf("PRESIGNED_GET %s\n", url);
  CHECK(ks_presign(S, "PUT", "c/p/up.txt", (int64_t)time(NULL) + 600, url, sizeof url, &e) == 0, "%s", e.msg);
  printf("PRESIGNED_PUT %s\n", url);
  CHECK(ks_presign(S, "DELETE", "c/p/out.txt", (int64_t)time(NULL) + 600, url, sizeof url, &e) == KILN_EINVAL, "GET or PUT only");
  fflush(stdout);
}

int main(int argc, char **argv) {
  if (argc != 3) { fprintf(stderr, "usage: store_conform URL CACHE_DIR\n"); return 2; }
  URL = argv[1];
  CACHE = argv[2];
  const char *secret = getenv("KILN_TEST_SECRET") ? getenv("KILN_TEST_SECRET") : "conformance-secret";
  ks_options o = {.secret = (const uint8_t *)secret, .secret_len = strlen(secret), .endpoint = getenv("KILN_TEST_ENDPOINT"),
                  .region = getenv("KILN_TEST_REGION"), .cache_dir = CACHE,
                  .cache_max_bytes = 1000000,
                  .copy_max = getenv("KILN_TEST_COPY_MAX") ? atoll(getenv("KILN_TEST_COPY_MAX")) : 0,
                  .tries = getenv("KILN_TEST_TRIES") ? atoi(getenv("KILN_TEST_TRIES")) : 0,
                  .backoff_ms = getenv("KILN_TEST_BACKOFF_MS") ? atoi(getenv("KILN_TEST_BACKOFF_MS")) : 0};
  kiln_err e = {0};
  if (ks_open(&S, URL, &o, &e) < 0) {
    printf("OPEN_FAILED %s\n", e.msg);
    return 3;
  }
  if (argc == 3 && getenv("KILN_TEST_ONLY_OPEN")) { ks_close(S); return 0; }
  T_RUN(test_put_get);
  T_RUN(test_large);
  T_RUN(test_rename_delete_list);
  T_RUN(test_fetch);
  T_RUN(test_presign);
  ks_close(S);
  return t_done();
}
