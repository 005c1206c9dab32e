/* fuzz_params.c — job parameters through the one validator (kf_validate,
 * fn/params.c) for every registered function, internal ones included: the
 * first byte picks the function, the rest is the JSON of "params". A
 * refusal's message must be valid UTF-8; what is accepted must validate
 * again to itself (defaults filled once, numbers normalised once), and must
 * be something the function's own code takes without a crash: its shape
 * (the planner's view: sizes, timeline, frame count) on a typical 1080p
 * probe, and for functions with crop keyframes, their resolution. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "fn/common.h"
#include "fn/fn.h"
#include "fz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return -1;
  const kf_desc *const *reg = kf_registry_all();
  int nfn = 0;
  while (reg[nfn]) nfn++;
  const kf_desc *fn = reg[data[0] % nfn];
  json_t *in = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
  if (!in && size > 1) return -1;                 /* not JSON: json_loadb's business, not kiln's */
  json_t *out = NULL, *again = NULL;
  kiln_err e = {0};
  int r = kf_validate(fn, in, &out, &e);
  fz_check_msg(r, &e, "kf_validate");
  if (r == 0) {
    if (!json_is_object(out)) fz_fail("%s: validated params are not an object", fn->name);
    int r2 = kf_validate(fn, out, &again, &e);
    if (r2 < 0) fz_fail("%s: validated params fail validation: %s", fn->name, e.msg);
    if (!json_equal(out, again)) {
      char *a = json_dumps(out, JSON_SORT_KEYS), *b = json_dumps(again, JSON_SORT_KEYS);
      fz_fail("%s: validating twice changes the params:\n%s\n%s", fn->name, a, b);
    }
    km_probe pr;
    memset(&pr, 0, sizeof pr);
    snprintf(pr.container, sizeof pr.container, "mov,mp4,m4a,3gp,3g2,mj2");
    pr.has_video = 1;
    pr.width = pr.coded_width = 1920;
    pr.height = pr.coded_height = 1080;
    pr.fps = 30;
    pr.fps_q = (AVRational){30, 1};
    pr.frames = 300;
    pr.frames_exact = 1;
    pr.duration = 10;
    pr.n_audio = 1;
    if (fn->shape) {
      kf_shape s;
      r = fn->shape(out, fn->no_input ? NULL : &pr, &s, &e);
      fz_check_msg(r, &e, "shape");
      if (r == 0 && json_object_get(out, "crop") && s.width > 0 && s.height > 0) {
        kf_key *keys = NULL;
        int nkeys = 0;
        r = kf_crop_keys(fn->name, out, &pr, s.width, s.height, &keys, &nkeys, &e);
        fz_check_msg(r, &e, "kf_crop_keys");
        free(keys);
      }
    }
  }
  json_decref(again);
  json_decref(out);
  json_decref(in);
  return 0;
}
