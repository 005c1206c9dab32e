/* fuzz_ncnn.c — ncnn models (nn/ncnn.c's .param reader and .bin weight
 * reader, nn/net.c's checks and executor, nn/dnnl.c and nn/winograd.c): the
 * input is a flags byte, the .param text, a NUL byte, and the .bin bytes
 * (no NUL: an empty .bin). Both are written to files and loaded as the
 * upscale function loads a model (kn_net_load). A model that loads is run
 * on a small 7x5 RGB picture on the direct path, and with flag bit 0 on the
 * fast one (oneDNN + Winograd, one thread) too, with tensors limited to 64K
 * values (kn_net.max_floats) so that runs stay short: every count, size and
 * shape in the files must be checked before it is used, and the whole
 * output must be readable at the size the executor says. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"
#include "nn/net.h"

static char param[4200], bin[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  setenv("KILN_NN_THREADS", "1", 1);
  snprintf(param, sizeof param, "%s/m.param", fz_scratch());
  snprintf(bin, sizeof bin, "%s/m.bin", fz_scratch());
  return 0;
}

static void run(kn_net *n, int path) {
  if (kn_net_set_path(n, path) < 0) fz_fail("cannot start path %d", path);
  kn_tensor in, out = {0};
  if (kn_tensor_alloc(&in, 5, 7, 3) < 0) abort();
  for (int i = 0; i < 5 * 7 * 3; i++) in.d[i] = (float)((i * 37) % 101) / 100.0f;
  kiln_err e = {0};
  int r = kn_net_run(n, &in, &out, &e);
  fz_check_msg(r, &e, "kn_net_run");
  if (r == 0) {
    if (out.h < 1 || out.w < 1 || out.c < 1 || !out.d) fz_fail("an output of %dx%dx%d", out.h, out.w, out.c);
    volatile float acc = 0;                       /* ASan: every element is inside the buffer */
    for (size_t i = 0; i < (size_t)out.h * out.w * out.c; i++) acc += out.d[i];
    (void)acc;
  }
  kn_tensor_free(&out);
  kn_tensor_free(&in);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return -1;
  const uint8_t *p = data + 1, *nul = memchr(p, 0, size - 1);
  size_t plen = nul ? (size_t)(nul - p) : size - 1;
  fz_write(param, p, plen);
  fz_write(bin, nul ? nul + 1 : p, nul ? size - 1 - plen - 1 : 0);
  kn_net n;
  kiln_err e = {0};
  int r = kn_net_load(&n, param, bin, &e);
  fz_check_msg(r, &e, "kn_net_load");
  if (r == 0) {
    n.max_floats = 1 << 16;                       /* small tensors: a fuzzed net's run stays quick */
    run(&n, KN_PATH_DIRECT);
    if (data[0] & 1) run(&n, KN_PATH_FAST);
    kn_net_free(&n);
  }
  return 0;
}
