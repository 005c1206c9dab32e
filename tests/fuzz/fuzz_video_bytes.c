/* fuzz_video_bytes.c — job bodies as POST /v1/functions/{name}/spawn takes
 * them, above all the flat form hosted platforms' clients send,
 * {"video_bytes": BASE64, PARAM: VALUE, ...} (api/jobs.c's submit: JSON,
 * the flat form's rewrite, plan, webhook, params through kf_validate,
 * input as a key or inline base64, util/b64.c's decoder, the store, the
 * queue), on a real server on loopback (fz_server.c). The first byte picks
 * the function; the rest is the body. The answer must be 202 (queued) or a
 * 4xx naming what is wrong, never a 5xx. The base64 decoder is also checked
 * on its own: what it accepts has the length its characters carry and
 * round-trips. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fn/fn.h"
#include "fz.h"
#include "util/b64.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  fz_server_start();
  return 0;
}

/* Whatever the decoder accepts: as many bytes as its characters carry
 * (6 bits each, padding aside), and those bytes round-trip. */
static void check_b64(const char *s) {
  uint8_t *raw = NULL, *back = NULL;
  size_t n = 0, l = strlen(s), m = 0;
  if (ku_b64_decode(s, l, &raw, &n) < 0) return;
  size_t k = l;
  while (k > 0 && s[k - 1] == '=') k--;
  if (n != k * 6 / 8) fz_fail("base64 of %zu characters ('%.100s') decoded to %zu bytes", k, s, n);
  char *again = ku_b64_encode(raw, n);
  if (!again) abort();
  if (ku_b64_decode(again, strlen(again), &back, &m) < 0 || m != n || memcmp(back, raw, n))
    fz_fail("%zu bytes do not round-trip through base64", n);
  free(back);
  free(again);
  free(raw);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return -1;
  const kf_desc *const *reg = kf_registry();
  int nfn = 0;
  while (reg[nfn]) nfn++;
  const kf_desc *fn = reg[data[0] % nfn];
  json_t *j = json_loadb((const char *)data + 1, size - 1, 0, NULL);
  const char *vb = json_string_value(json_object_get(j, "video_bytes"));
  if (vb) check_b64(vb);
  json_decref(j);
  size_t cap = size + 512;
  char *req = malloc(cap);
  int h = snprintf(req, cap,
                   "POST /v1/functions/%s/spawn HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer %s\r\n"
                   "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                   fn->name, fz_token(), size - 1);
  memcpy(req + h, data + 1, size - 1);
  const char *body = NULL;
  int st = fz_http(req, (size_t)h + size - 1, &body);
  if (st >= 500 || st == 0) fz_fail("answered %d to a %s body of %zu bytes: %.300s", st, fn->name, size - 1, body);
  if (st != 202 && (st < 400 || st > 499)) fz_fail("answered %d to a %s body: %.300s", st, fn->name, body);
  free(req);
  fz_server_sweep();
  return 0;
}
