/* fuzz_presign.c — the query of a presigned URL (?method=&expires=&sig=)
 * as GET/PUT /v1/objects/{key} checks it (ks_presign_check, store.c). The
 * input is up to five lines: the request's method, the key, and the
 * query's method, expires and sig (a missing line is a missing member); a
 * sig of "@" is replaced by the right signature for that method, key and
 * expires, so the fuzzer also explores URLs kiln issued. Accepted must mean:
 * the methods are equal and GET or PUT, the key is valid, expires is
 * written as kiln writes it (decimal, nothing around it) and is after now,
 * and the signature is the one ks_presign makes. Messages are valid UTF-8. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"
#include "store/store.h"

#define NOW 1900000000LL

static ks_store *store;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  store = fz_store();
  return 0;
}

/* The signature ks_presign puts in a URL for (method, key, expires), or "" when it refuses. */
static void sig_for(const char *method, const char *key, long long expires, char out[80]) {
  char url[2400];
  kiln_err e = {0};
  out[0] = 0;
  if (ks_presign(store, method, key, expires, url, sizeof url, &e) < 0) return;
  const char *s = strstr(url, "&sig=");
  if (s) snprintf(out, 80, "%s", s + 5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n) {
  char *buf = fz_str(data, n), *f[5] = {0};
  int nf = 0;
  for (char *p = buf; nf < 5; nf++) {
    f[nf] = p;
    char *nl = strchr(p, '\n');
    if (!nl) { nf++; break; }
    *nl = 0;
    p = nl + 1;
  }
  const char *method = f[0] ? f[0] : "GET", *key = f[1] ? f[1] : "fuzz/a";
  char good[80] = "";
  if (f[2] && f[3]) sig_for(f[2], key, strtoll(f[3], NULL, 10), good);
  const char *sig = f[4] && !strcmp(f[4], "@") ? good : f[4];
  kiln_err e = {0};
  int r = ks_presign_check(store, method, key, f[2], f[3], sig, NOW, &e);
  fz_check_msg(r, &e, "ks_presign_check");
  if (r == 0) {
    char canon[32];
    long long ex = f[3] ? strtoll(f[3], NULL, 10) : 0;
    snprintf(canon, sizeof canon, "%lld", ex);
    if (!f[2] || strcmp(f[2], method) || (strcmp(method, "GET") && strcmp(method, "PUT")))
      fz_fail("accepted for %s a URL whose method is %s", method, f[2] ? f[2] : "(none)");
    if (ks_key_check(key, &e) < 0) fz_fail("accepted an invalid key: %s", e.msg);
    if (!f[3] || strcmp(f[3], canon)) fz_fail("accepted expires='%s', which kiln would write '%s'", f[3] ? f[3] : "(none)", canon);
    if (ex <= NOW) fz_fail("accepted a URL that expired at %lld (now %lld)", ex, NOW);
    if (!good[0] || !sig || strcmp(sig, good)) fz_fail("accepted signature '%s' (kiln's is '%s')", sig ? sig : "(none)", good);
  }
  free(buf);
  return 0;
}
