/* nn_run.c — runs an ncnn model with kiln's executor on a tensor file (a
 * "H W C" line, then float32 HxWxC) and writes the output the same way:
 * the C side of tests/nn_compare.sh. With KILN_NN_REPEAT=N it runs N times
 * and prints each run's milliseconds on stderr (bench/upscale.py);
 * KILN_NN_PATH=direct|dnnl|winograd|fast picks the convolution path
 * (default fast; KILN_NN_DIRECT=1 is direct).
 * usage: nn_run PARAM BIN IN OUT */
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "nn/net.h"

int main(int argc, char **argv) {
  if (argc != 5) { fprintf(stderr, "usage: nn_run PARAM BIN IN OUT\n"); return 2; }
  kn_net n;
  kiln_err e = {0};
  kn_tensor in = {0}, out = {0};
  int h, w, c;
  FILE *f = fopen(argv[3], "rb");
  if (!f || fscanf(f, "%d %d %d", &h, &w, &c) != 3 || fgetc(f) != '\n' || kn_tensor_alloc(&in, h, w, c) < 0 ||
      fread(in.d, sizeof(float), (size_t)h * w * c, f) != (size_t)h * w * c) {
    fprintf(stderr, "nn_run: cannot read %s\n", argv[3]);
    return 1;
  }
  fclose(f);
  const char *direct = getenv("KILN_NN_DIRECT"), *pname = getenv("KILN_NN_PATH");
  const char *rep = getenv("KILN_NN_REPEAT");
  int repeat = rep ? (int)strtol(rep, NULL, 10) : 1;
  int path = direct && *direct == '1' ? KN_PATH_DIRECT : pname ? kn_net_path_named(pname) : KN_PATH_FAST;
  if (path < 0) { fprintf(stderr, "nn_run: KILN_NN_PATH is direct, dnnl, winograd or fast\n"); return 2; }
  if (kn_net_load(&n, argv[1], argv[2], &e) < 0 || kn_net_set_path(&n, path) < 0) {
    fprintf(stderr, "nn_run: %s\n", e.msg);
    return 1;
  }
  for (int i = 0; i < (repeat > 0 ? repeat : 1); i++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    kn_tensor_free(&out);
    if (kn_net_run(&n, &in, &out, &e) < 0) {
      fprintf(stderr, "nn_run: %s\n", e.msg);
      return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rep) fprintf(stderr, "run %d: %.1f ms\n", i + 1, (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
  }
  if (rep) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "peak rss: %ld KiB\n", ru.ru_maxrss);
  }
  f = fopen(argv[4], "wb");
  fprintf(f, "%d %d %d\n", out.h, out.w, out.c);
  fwrite(out.d, sizeof(float), (size_t)out.h * out.w * out.c, f);
  fclose(f);
  kn_tensor_free(&in);
  kn_tensor_free(&out);
  kn_net_free(&n);
  return 0;
}
