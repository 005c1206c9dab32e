/* peak.c — this CPU's practical float32 peak for bench/upscale.py: the best
 * of 5 runs of a large oneDNN SGEMM (N x N x N, 2 N^3 FLOPs), on one thread
 * and on all of them (OMP_NUM_THREADS is read by oneDNN's OpenMP runtime,
 * so the caller runs this twice). usage: bench_peak [N]   prints "GFLOPS x" */
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  long n = argc > 1 ? strtol(argv[1], NULL, 10) : 2048;
  if (n < 64 || n > 8192) { fprintf(stderr, "usage: bench_peak [N in 64..8192]\n"); return 2; }
  float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n), *c = malloc(sizeof(float) * n * n);
  if (!a || !b || !c) { fprintf(stderr, "bench_peak: out of memory\n"); return 1; }
  for (long i = 0; i < n * n; i++) a[i] = 1e-3f * (float)(i % 7), b[i] = 1e-3f * (float)(i % 5), c[i] = 0;
  double best = 1e30;
  for (int r = 0; r < 6; r++) {                    /* the first run warms up and is not counted */
    double t = now();
    if (dnnl_sgemm('N', 'N', n, n, n, 1.0f, a, n, b, n, 0.0f, c, n) != dnnl_success) { fprintf(stderr, "bench_peak: sgemm failed\n"); return 1; }
    t = now() - t;
    if (r && t < best) best = t;
  }
  printf("GFLOPS %.1f\n", 2.0 * n * n * n / best / 1e9);
  free(a);
  free(b);
  free(c);
  return 0;
}
