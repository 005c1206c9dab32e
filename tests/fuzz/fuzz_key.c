/* fuzz_key.c — object keys (ks_key_check, store/store.c) as a client sends
 * them in /v1/objects/{key} and in a job's "input": the verdict must match
 * an independent reading of the rule in store.h (1..1024 bytes, no leading
 * or trailing '/', segments of 1..255 bytes that are not '.' or '..', no
 * control character or backslash, valid UTF-8); a refusal's message must be
 * valid UTF-8; an accepted key must be one the local store can stat and
 * presign, and its presigned query must verify. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"
#include "store/store.h"

static ks_store *store;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  store = fz_store();
  return 0;
}

/* The rule, read independently of store.c (jansson decides UTF-8). */
static int key_ok(const char *k) {
  size_t n = strlen(k);
  if (n < 1 || n > KS_KEY_MAX || k[0] == '/' || k[n - 1] == '/') return 0;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)k[i] < 0x20 || k[i] == 0x7f || k[i] == '\\') return 0;
  json_t *j = json_string(k);
  if (!j) return 0;
  json_decref(j);
  size_t seg = 0;
  for (size_t i = 0; i <= n; i++) {
    if (i < n && k[i] != '/') { seg++; continue; }
    const char *s = k + i - seg;
    if (seg == 0 || seg > KS_SEGMENT_MAX || (seg == 1 && s[0] == '.') || (seg == 2 && s[0] == '.' && s[1] == '.')) return 0;
    seg = 0;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *k = fz_str(data, size);
  kiln_err e = {0};
  int r = ks_key_check(k, &e);
  fz_check_msg(r, &e, "ks_key_check");
  if ((r == 0) != key_ok(k)) fz_fail("ks_key_check says %d (%s) for a key the rule %s", r, e.msg, key_ok(k) ? "allows" : "refuses");
  if (r == 0) {
    ks_stat st;
    int s = ks_stat_key(store, k, &st, &e);
    fz_check_msg(s, &e, "ks_stat_key");
    if (s != KILN_ENOENT) fz_fail("ks_stat_key on an empty store: %d (%s)", s, e.msg);
    char url[2400];
    r = ks_presign(store, "GET", k, 2000000000, url, sizeof url, &e);
    if (r < 0) fz_fail("ks_presign refused a valid key: %s", e.msg);
    const char *sig = NULL;                       /* the last "&sig=": a key may hold the text too */
    for (const char *q = url; (q = strstr(q, "&sig=")); q++) sig = q;
    if (!sig || strncmp(url, "/v1/objects/", 12) || strncmp(url + 12, k, strlen(k))) fz_fail("presigned URL %s", url);
    r = ks_presign_check(store, "GET", k, "GET", "2000000000", sig + 5, 1000000000, &e);
    if (r < 0) fz_fail("a presigned URL of a valid key does not verify: %s", e.msg);
    r = ks_presign_check(store, "PUT", k, "GET", "2000000000", sig + 5, 1000000000, &e);
    if (r == 0) fz_fail("a GET URL verified for PUT");
  }
  free(k);
  return 0;
}
