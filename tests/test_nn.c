/* test_nn.c — the ncnn .param reader: a model written by the test (the
 * shape of Real-ESRGAN's video model: Input, Split, Convolution, PReLU,
 * PixelShuffle, Interp, BinaryOp) is read with its blobs, layers and
 * parameters (scalars, floats, arrays); an unsupported layer type, a file
 * without the magic number and a truncated file are clear errors; the
 * executor matches the PyTorch golden fixture; tiled runs (nn/tile.h)
 * equal whole runs within 1e-4 for tile sizes that do and do not divide
 * the input, and a too small overlap is caught. `test_nn tile PARAM BIN
 * HxW TILE` does the tiled-vs-whole check on any model (tests/test_photos.sh
 * runs it on the real weights). */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>
#include <string.h>

#include "nn/ncnn.h"
#include "nn/net.h"
#include "nn/tile.h"
#include "t.h"
#include "tutil.h"

static const char *write_file(const char *name, const char *text) {
  const char *p = t_path(name);
  FILE *f = fopen(p, "w");
  fputs(text, f);
  fclose(f);
  return p;
}

static void test_parse(void) {
  static char path[1024];
  snprintf(path, sizeof path, "%s",
           write_file("m.param",
                      "7767517\n"
                      "8 9\n"
                      "Input            input.1   0 1 data\n"
                      "Split            split0    1 2 data a b\n"
                      "Convolution      Conv_0    1 1 a c0 0=64 1=3 4=1 5=1 6=1728\n"
                      "PReLU            PRelu_1   1 1 c0 p1 0=64\n"
                      "Convolution      Conv_2    1 1 p1 c2 0=48 1=3 4=1 5=1 6=27648\n"
                      "PixelShuffle     ps        1 1 c2 up 0=4\n"
                      "Interp           interp    1 1 b near 0=1 1=4.000000e+00 2=4.000000e+00\n"
                      "BinaryOp         add       2 1 up near out 0=0 -23303=3,1.5,2,-3\n"));
  kn_graph g;
  kiln_err e = {0};
  if (!CHECKV(kn_ncnn_parse(path, &g, &e) == 0, "%s", e.msg)) return;
  CHECK(g.nlayers == 8 && g.nblobs == 9, "8 layers and 9 blobs: %d, %d", g.nlayers, g.nblobs);
  const kn_layer *conv = &g.layers[2], *interp = &g.layers[6], *add = &g.layers[7];
  CHECK(!strcmp(conv->type, "Convolution") && !strcmp(conv->name, "Conv_0") && conv->nin == 1 && conv->nout == 1, "conv");
  CHECK(kn_param(conv, 0, 0) == 64 && kn_param(conv, 1, 0) == 3 && kn_param(conv, 6, 0) == 1728 && kn_param(conv, 9, -1) == -1,
        "conv params");
  CHECK(kn_param(interp, 1, 0) == 4.0f, "a float parameter");
  const kn_param_kv *arr = kn_param_array(add, 3);
  CHECK(arr && arr->array && arr->n == 3 && arr->v[0] == 1.5f && arr->v[2] == -3.0f, "an array parameter");
  CHECK(add->nin == 2 && !strcmp(g.blobs[add->in[0]], "up") && !strcmp(g.blobs[add->in[1]], "near") &&
            !strcmp(g.blobs[add->out[0]], "out"), "blobs by name");
  CHECK(g.layers[1].out[1] == interp->in[0], "Split's second output feeds Interp");
  kn_graph_release(&g);
}

static void test_errors(void) {
  kn_graph g;
  kiln_err e = {0};
  const char *p = write_file("u.param", "7767517\n2 2\nInput in 0 1 data\nDeconvolution up 1 1 data out 0=3\n");
  CHECK(kn_ncnn_parse(p, &g, &e) == KILN_EINVAL && strstr(e.msg, "'up'") && strstr(e.msg, "'Deconvolution'") &&
            strstr(e.msg, "u.param:4") && strstr(e.msg, "PixelShuffle"),
        "an unsupported layer names itself, its type, the file and line: %s", e.msg);
  p = write_file("x.param", "{\"not\": \"ncnn\"}\n");
  CHECK(kn_ncnn_parse(p, &g, &e) == KILN_ECORRUPT && strstr(e.msg, "7767517"), "no magic: %s", e.msg);
  p = write_file("t.param", "7767517\n3 3\nInput in 0 1 data\nReLU r 1 1 data x 0=0.1\n");
  CHECK(kn_ncnn_parse(p, &g, &e) == KILN_ECORRUPT && strstr(e.msg, "truncated"), "truncated: %s", e.msg);
  p = write_file("b.param", "7767517\n1 2\nConvolution c 1 1 a b 0=six\n");
  CHECK(kn_ncnn_parse(p, &g, &e) == KILN_ECORRUPT && strstr(e.msg, "0=six"), "a bad value: %s", e.msg);
  CHECK(kn_ncnn_parse(t_path("none.param"), &g, &e) == KILN_ENOENT, "missing: %s", e.msg);
}

/* A .bin written by the test: a 2x1x1x1 convolution with fp16 weights
 * (flag 0x01306B47, padded to 4 bytes) and a raw float32 bias, then a
 * PReLU's raw slopes; read back exactly; short, long and unknown-tag files
 * are errors. */
static void test_bin(void) {
  const char *pp = write_file("w.param",
                              "7767517\n3 3\nInput in 0 1 a\nConvolution c 1 1 a b 0=2 1=1 5=1 6=3\nPReLU p 1 1 b x 0=2\n");
  static char param[1024];
  snprintf(param, sizeof param, "%s", pp);
  const char *bp = t_path("w.bin");
  static char bin[1024];
  snprintf(bin, sizeof bin, "%s", bp);
  uint32_t tag = 0x01306B47;
  uint16_t w[4] = {0x3c00, 0xc000, 0x3555, 0};      /* 1.0, -2.0, ~0.3333, padding */
  float bias[2] = {0.5f, -0.25f}, slope[2] = {0.1f, 0.2f};
  FILE *f = fopen(bin, "wb");
  fwrite(&tag, 4, 1, f);
  fwrite(w, 2, 4, f);
  fwrite(bias, 4, 2, f);
  fwrite(slope, 4, 2, f);
  fclose(f);
  kn_graph g;
  kiln_err e = {0};
  if (!CHECKV(kn_ncnn_parse(param, &g, &e) == 0 && kn_ncnn_load_bin(&g, bin, &e) == 0, "%s", e.msg)) return;
  const kn_layer *c = &g.layers[1], *pr = &g.layers[2];
  CHECK(c->nweight == 3 && c->weight[0] == 1.0f && c->weight[1] == -2.0f && c->weight[2] > 0.3332f && c->weight[2] < 0.3334f,
        "fp16 weights widened: %f %f %f", c->weight[0], c->weight[1], c->weight[2]);
  CHECK(c->nbias == 2 && c->bias[0] == 0.5f && c->bias[1] == -0.25f, "raw bias");
  CHECK(pr->nslope == 2 && pr->slope[1] == 0.2f, "PReLU slopes");
  kn_graph_release(&g);
  f = fopen(bin, "ab");                           /* one byte too many */
  fputc(0, f);
  fclose(f);
  kn_ncnn_parse(param, &g, &e);
  CHECK(kn_ncnn_load_bin(&g, bin, &e) == KILN_ECORRUPT && strstr(e.msg, "longer"), "a long file: %s", e.msg);
  kn_graph_release(&g);
  if (truncate(bin, 4 + 8 + 4) != 0) {}           /* ends inside the bias */
  kn_ncnn_parse(param, &g, &e);
  CHECK(kn_ncnn_load_bin(&g, bin, &e) == KILN_ECORRUPT && strstr(e.msg, "truncated") && strstr(e.msg, "'c'"), "a short file: %s",
        e.msg);
  kn_graph_release(&g);
  f = fopen(bin, "wb");
  tag = 0x000D4B38;                               /* int8: not read */
  fwrite(&tag, 4, 1, f);
  fclose(f);
  kn_ncnn_parse(param, &g, &e);
  CHECK(kn_ncnn_load_bin(&g, bin, &e) == KILN_ECORRUPT && strstr(e.msg, "0x000d4b38"), "an unknown tag: %s", e.msg);
  kn_graph_release(&g);
}

/* Reads a tensor file: a "H W C" line, then float32 H x W x C. */
static int read_tensor(const char *path, kn_tensor *t) {
  FILE *f = fopen(path, "rb");
  int h, w, c;
  if (!f || fscanf(f, "%d %d %d", &h, &w, &c) != 3 || fgetc(f) != '\n' || kn_tensor_alloc(t, h, w, c) < 0) {
    if (f) fclose(f);
    return -1;
  }
  size_t n = (size_t)h * w * c, got = fread(t->d, sizeof *t->d, n, f);
  fclose(f);
  return got == n ? 0 : -1;
}

/* The golden fixture made by tests/nn_reference.py (PyTorch, its own ncnn
 * reader): a small SRVGGNetCompact-shaped model with fp16 weights; kiln's
 * output must match within 1e-3 (it does to ~1e-6). */
static void test_net_golden(void) {
  kn_net n;
  kiln_err e = {0};
  kn_tensor in = {0}, want = {0}, got = {0};
  if (!CHECKV(kn_net_load(&n, KILN_FIXTURES "/nn/tiny.param", KILN_FIXTURES "/nn/tiny.bin", &e) == 0, "%s", e.msg)) return;
  if (CHECKV(read_tensor(KILN_FIXTURES "/nn/tiny.in", &in) == 0 && read_tensor(KILN_FIXTURES "/nn/tiny.out", &want) == 0,
             "fixture tensors") &&
      CHECKV(kn_net_run(&n, &in, &got, &e) == 0, "%s", e.msg)) {
    CHECK(got.h == want.h && got.w == want.w && got.c == want.c && got.h == 2 * in.h, "output %dx%dx%d, reference %dx%dx%d",
          got.h, got.w, got.c, want.h, want.w, want.c);
    double worst = 0;
    for (size_t i = 0; got.h == want.h && got.w == want.w && i < (size_t)got.h * got.w * got.c; i++) {
      double d = got.d[i] - want.d[i];
      if (d < 0) d = -d;
      if (d > worst) worst = d;
    }
    CHECK(worst <= 1e-3, "max abs error %g against the PyTorch reference", worst);
    fprintf(stderr, "  direct path: max abs error against PyTorch %.3g\n", worst);
    /* the oneDNN path, twice (the second run reuses the cached primitives) */
    for (int pass = 0; pass < 2 && CHECKV(kn_net_use_dnnl(&n, 1) == 0, "oneDNN engine"); pass++) {
      kn_tensor d = {0};
      if (!CHECKV(kn_net_run(&n, &in, &d, &e) == 0, "%s", e.msg)) break;
      double wd = 0;
      for (size_t i = 0; d.h == want.h && d.w == want.w && i < (size_t)d.h * d.w * d.c; i++) {
        double v = d.d[i] - want.d[i];
        if (v < 0) v = -v;
        if (v > wd) wd = v;
      }
      CHECK(d.h == want.h && d.w == want.w && wd <= 1e-3, "fast path, run %d: max abs error %g", pass + 1, wd);
      if (pass) fprintf(stderr, "  fast path (Winograd + oneDNN): max abs error against PyTorch %.3g\n", wd);
      kn_tensor_free(&d);
    }
  }
  kn_tensor_free(&in);
  kn_tensor_free(&want);
  kn_tensor_free(&got);
  kn_net_free(&n);
}

static double max_diff(const kn_tensor *a, const kn_tensor *b) {
  if (a->h != b->h || a->w != b->w || a->c != b->c) return 1e30;
  double worst = 0;
  for (size_t i = 0; i < (size_t)a->h * a->w * a->c; i++) {
    double d = a->d[i] - b->d[i];
    if (d < 0) d = -d;
    if (d > worst) worst = d;
  }
  return worst;
}

/* A reproducible input in [0,1]. */
static void fill(kn_tensor *t, unsigned seed) {
  for (size_t i = 0; i < (size_t)t->h * t->w * t->c; i++) {
    seed = seed * 1103515245u + 12345u;
    t->d[i] = (float)((seed >> 8) & 0xffff) / 65535.0f;
  }
}

/* The worst difference between tiled runs (each tile size) and one whole run. */
static double tiled_vs_whole(kn_net *n, const kn_tensor *in, const int *tiles, int ntiles, int overlap, kiln_err *e) {
  kn_tensor whole = {0};
  double worst = -1;
  if (kn_net_run(n, in, &whole, e) < 0) return -1;
  for (int k = 0; k < ntiles; k++) {
    kn_tensor t = {0};
    if (kn_net_run_tiled(n, in, tiles[k], overlap, &t, e) < 0) { worst = -1; break; }
    double d = max_diff(&t, &whole);
    fprintf(stderr, "  tile %d, overlap %d: max abs difference from the whole run %.3g\n", tiles[k], overlap, d);
    if (d > worst) worst = d;
    kn_tensor_free(&t);
  }
  kn_tensor_free(&whole);
  return worst;
}

static void test_tiles(void) {
  kn_net n;
  kiln_err e = {0};
  if (!CHECKV(kn_net_load(&n, KILN_FIXTURES "/nn/tiny.param", KILN_FIXTURES "/nn/tiny.bin", &e) == 0, "%s", e.msg)) return;
  int ov = kn_net_radius(&n);
  CHECK(ov == 5, "five 3x3 convolutions: a receptive field radius of 5, got %d", ov);
  kn_tensor in = {0};
  if (!CHECKV(kn_tensor_alloc(&in, 29, 37, 3) == 0, "alloc")) { kn_net_free(&n); return; }
  fill(&in, 5);
  static const int tiles[] = {4, 7, 10, 16, 29, 36};   /* 7, 10, 16: leave a partial row and column */
  static const int paths[] = {KN_PATH_DIRECT, KN_PATH_DNNL, KN_PATH_FAST};
  for (int k = 0; k < 3; k++) {
    CHECK(kn_net_set_path(&n, paths[k]) == 0, "path %d", paths[k]);
    double d = tiled_vs_whole(&n, &in, tiles, (int)(sizeof tiles / sizeof *tiles), ov, &e);
    CHECK(d >= 0 && d <= 1e-4, "path %d: tiled = whole within 1e-4, got %g (%s)", paths[k], d, e.msg);
  }
  /* an overlap under the receptive field shows seams: the check can fail */
  static const int seven[] = {7};
  double d = tiled_vs_whole(&n, &in, seven, 1, 1, &e);
  CHECK(d > 1e-3, "overlap 1 < radius 5 must differ visibly, got %g", d);
  /* tile 0 or one covering the input: one whole run */
  kn_tensor a = {0}, b = {0};
  CHECK(kn_net_run_tiled(&n, &in, 0, ov, &a, &e) == 0 && kn_net_run(&n, &in, &b, &e) == 0 && max_diff(&a, &b) == 0,
        "tile 0 is the whole run");
  kn_tensor_free(&a);
  kn_tensor_free(&b);
  /* automatic tiles: none when the image fits, else a side that fits the cap */
  size_t bpp = kn_net_bytes_per_pixel(&n, 2);
  CHECK(bpp > 0 && kn_tile_auto(&n, 2, ov, 37, 29, bpp * 37 * 29) == 0, "a fitting image is not tiled");
  size_t cap = bpp * 40 * 40;
  int side = kn_tile_auto(&n, 2, ov, 400, 300, cap);
  CHECK(side >= 16 && (size_t)(side + 2 * ov) * (side + 2 * ov) * bpp <= cap, "an automatic tile of %d fits %zu bytes", side, cap);
  kn_tensor_free(&in);
  kn_net_free(&n);
}

/* test_nn tile PARAM BIN HxW TILE: tiled vs whole on a model (the path upscale uses). */
static int tile_main(char **argv) {
  kn_net n;
  kiln_err e = {0};
  int h = 0, w = 0, tile = (int)strtol(argv[5], NULL, 10);
  if (sscanf(argv[4], "%dx%d", &h, &w) != 2 || h < 1 || w < 1 || tile < 1) { fprintf(stderr, "usage: test_nn tile PARAM BIN HxW TILE\n"); return 2; }
  if (kn_net_load(&n, argv[2], argv[3], &e) < 0 || kn_net_use_dnnl(&n, 1) < 0) { fprintf(stderr, "test_nn: %s\n", e.msg); return 1; }
  kn_tensor in = {0};
  if (kn_tensor_alloc(&in, h, w, 3) < 0) return 1;
  fill(&in, 11);
  int tiles[] = {tile};
  double d = tiled_vs_whole(&n, &in, tiles, 1, kn_net_radius(&n), &e);
  printf("tiled (%d, overlap %d) vs whole on %dx%d: max abs difference %.3g\n", tile, kn_net_radius(&n), h, w, d);
  kn_tensor_free(&in);
  kn_net_free(&n);
  if (d < 0) { fprintf(stderr, "test_nn: %s\n", e.msg); return 1; }
  return d <= 1e-4 ? 0 : 1;
}

/* Winograd F(6x6, 3x3) and F(4x4, 3x3) (nn/winograd.c) against the direct path, on a model
 * the test writes: 13 -> 20 channels (neither a multiple of 8 or 16) with a
 * PReLU fused into the store, then 20 -> 16 with a fused leaky ReLU and
 * asymmetric padding, on sizes with partial tiles, a frame smaller than
 * one tile and one large enough for in-place reads; with the AVX2 kernel
 * and the portable one. */
static void test_winograd(void) {
  const char *pp = write_file("wg.param",
                              "7767517\n4 4\nInput in 0 1 data\n"
                              "Convolution c1 1 1 data a 0=20 1=3 4=1 5=1 6=2340\n"
                              "PReLU p 1 1 a b 0=20\n"
                              "Convolution c2 1 1 b out 0=16 1=3 4=1 14=2 15=0 16=0 5=1 6=2880 9=2 -23310=1,0.1\n");
  static char param[1024], bin[1024];
  snprintf(param, sizeof param, "%s", pp);
  snprintf(bin, sizeof bin, "%s", t_path("wg.bin"));
  FILE *f = fopen(bin, "wb");
  unsigned seed = 3;
  int counts[] = {-2340, 20, 20, -2880, 16};         /* negative: a flagged (float32) weight blob */
  for (int k = 0; k < 5; k++) {
    uint32_t tag = 0;
    if (counts[k] < 0) fwrite(&tag, 4, 1, f);
    for (int i = 0; i < (counts[k] < 0 ? -counts[k] : counts[k]); i++) {
      seed = seed * 1103515245u + 12345u;
      float v = ((float)((seed >> 8) & 0xffff) / 65535.0f - 0.5f) * (k == 2 ? 0.6f : 0.3f);
      fwrite(&v, 4, 1, f);
    }
  }
  fclose(f);
  static const int sizes[][2] = {{23, 31}, {4, 4}, {1, 2}, {5, 9}, {64, 40}, {13, 17}};
  for (int run = 0; run < 4; run++) {
    int avx2 = run < 2, tm = run % 2 ? 4 : 6;
    setenv("KILN_NN_WINOGRAD", tm == 4 ? "4" : "6", 1);
    if (!avx2) setenv("KILN_NN_NO_AVX2", "1", 1);
    kn_net wn, dn;
    kiln_err e = {0};
    if (!CHECKV(kn_net_load(&wn, param, bin, &e) == 0 && kn_net_load(&dn, param, bin, &e) == 0, "%s", e.msg)) return;
    CHECK(kn_net_set_path(&wn, KN_PATH_WINOGRAD) == 0 && kn_net_set_path(&dn, KN_PATH_DIRECT) == 0, "paths");
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
      kn_tensor in = {0}, a = {0}, b = {0};
      if (!CHECKV(kn_tensor_alloc(&in, sizes[s][0], sizes[s][1], 13) == 0, "alloc")) break;
      fill(&in, 9 + (unsigned)s);
      for (size_t i = 0; i < (size_t)in.h * in.w * in.c; i++) in.d[i] -= 0.5f;   /* negatives reach the PReLU */
      int ok = CHECKV(kn_net_run(&wn, &in, &a, &e) == 0 && kn_net_run(&dn, &in, &b, &e) == 0, "%s", e.msg);
      /* the second conv pads 2 rows on top and none below, 1 column on the left and none on the right */
      if (ok && CHECKV(a.h == in.h && a.w == in.w - 1 && a.c == 16 && b.h == a.h && b.w == a.w,
                      "output %dx%dx%d for %dx%d", a.h, a.w, a.c, in.h, in.w)) {
        double d = max_diff(&a, &b);
        CHECK(d <= 1e-5, "%s F(%dx%d,3x3) vs direct on %dx%d: max abs difference %g", avx2 ? "AVX2" : "portable", tm, tm, in.h,
              in.w, d);
      }
      kn_tensor_free(&in);
      kn_tensor_free(&a);
      kn_tensor_free(&b);
    }
    kn_net_free(&wn);
    kn_net_free(&dn);
  }
  unsetenv("KILN_NN_NO_AVX2");
  unsetenv("KILN_NN_WINOGRAD");
  /* the thread count changes who computes a block, never its numbers */
  kn_net n;
  kiln_err e = {0};
  kn_tensor in = {0}, one = {0}, three = {0};
  if (CHECKV(kn_net_load(&n, param, bin, &e) == 0 && kn_net_set_path(&n, KN_PATH_WINOGRAD) == 0, "%s", e.msg) &&
      CHECKV(kn_tensor_alloc(&in, 61, 47, 13) == 0, "alloc")) {
    fill(&in, 21);
    CHECK(kn_net_set_threads(&n, 1) == 0 && kn_net_run(&n, &in, &one, &e) == 0 && kn_net_set_threads(&n, 3) == 0 &&
              kn_net_run(&n, &in, &three, &e) == 0,
          "runs on 1 and 3 threads: %s", e.msg);
    CHECK(one.d && three.d && max_diff(&one, &three) == 0, "1 and 3 threads give the same output, differing by %g",
          one.d && three.d ? max_diff(&one, &three) : -1.0);
  }
  kn_tensor_free(&in);
  kn_tensor_free(&one);
  kn_tensor_free(&three);
  kn_net_free(&n);
}

/* ---- models as untrusted input (found by tests/fuzz/fuzz_ncnn.c) ------- */

/* Writes m.param (text) and m.bin (a float32 weights array with its tag, of nw values, then nraw raw floats), loads
 * them, and, when that works, runs a 5x7 picture of `channels` channels on `path`. Returns the first error. */
static int try_model(const char *text, int nw, int nraw, int channels, int path, kiln_err *e) {
  static char param[1024], bin[1024];
  snprintf(param, sizeof param, "%s", write_file("m.param", text));
  snprintf(bin, sizeof bin, "%s", t_path("m.bin"));
  FILE *f = fopen(bin, "wb");
  uint32_t tag = 0;
  if (nw > 0) fwrite(&tag, 4, 1, f);
  for (int i = 0; i < nw + nraw; i++) {
    float v = (float)(i % 7) / 7 - 0.5f;
    fwrite(&v, 4, 1, f);
  }
  fclose(f);
  kn_net n;
  int r = kn_net_load(&n, param, bin, e);
  if (r < 0) return r;
  kn_tensor in = {0}, out = {0};
  if (kn_net_set_path(&n, path) < 0 || kn_tensor_alloc(&in, 5, 7, channels) < 0) r = kiln_fail(e, KILN_EINTERNAL, "set-up");
  for (int i = 0; r == 0 && i < 5 * 7 * channels; i++) in.d[i] = (float)(i % 11) / 5 - 1;
  if (r == 0) r = kn_net_run(&n, &in, &out, e);
  kn_tensor_free(&in);
  kn_tensor_free(&out);
  kn_net_free(&n);
  return r;
}

#define HEAD "7767517\n"
static void test_model_checks(void) {
  kiln_err e = {0};
  struct { const char *what, *text; int nw, nraw, channels, path, code; const char *msg; } cases[] = {
      /* the signed overflow of issue 12 (h + pad in dnnl.c and the direct path) */
      {"a pad of 2^31-1", HEAD "2 2\nInput in 0 1 a\nConvolution c 1 1 a b 0=1 1=1 4=2147483647 6=3\n", 3, 0, 3, KN_PATH_FAST,
       KILN_ECORRUPT, "parameter 4 is"},
      /* counts against the file before allocating (was: malloc of 4e15 bytes) */
      {"a weight count the .bin cannot hold", HEAD "2 2\nInput in 0 1 a\nConvolution c 1 1 a b 0=1 1=1 6=1000000000000000\n", 3,
       0, 3, KN_PATH_DIRECT, KILN_ECORRUPT, "truncated"},
      /* (int64_t)1e30f was undefined behaviour */
      {"a weight count that is no integer", HEAD "2 2\nInput in 0 1 a\nConvolution c 1 1 a b 0=1 1=1 6=1e30\n", 3, 0, 3,
       KN_PATH_DIRECT, KILN_ECORRUPT, "not a count"},
      {"a PReLU slope count of 1e30", HEAD "2 2\nInput in 0 1 a\nPReLU p 1 1 a b 0=1e30\n", 0, 3, 3, KN_PATH_DIRECT, KILN_ECORRUPT,
       "parameter 0 is 1e+30"},
      /* -id overflowed for the smallest long; a huge id was taken as some array */
      {"a parameter id of -2^63", HEAD "2 2\nInput in 0 1 a\nReLU r 1 1 a b -9223372036854775808=0\n", 0, 0, 3, KN_PATH_DIRECT,
       KILN_ECORRUPT, "cannot read parameter"},
      {"a value that is not finite", HEAD "2 2\nInput in 0 1 a\nReLU r 1 1 a b 0=nan\n", 0, 0, 3, KN_PATH_DIRECT, KILN_ECORRUPT,
       "cannot read parameter"},
      {"a parameter given twice", HEAD "2 2\nInput in 0 1 a\nReLU r 1 1 a b 0=1 0=2\n", 0, 0, 3, KN_PATH_DIRECT, KILN_ECORRUPT,
       "twice"},
      /* graph shape: was a NULL dereference, a read of a blob never made, an in-place alias */
      {"a ReLU without input", HEAD "2 2\nInput in 0 1 a\nReLU r 0 1 b\n", 0, 0, 3, KN_PATH_DIRECT, KILN_ECORRUPT, "0 inputs"},
      {"a blob no layer makes", HEAD "2 3\nInput in 0 1 a\nBinaryOp add 2 1 a ghost out 0=0\n", 0, 0, 3, KN_PATH_DIRECT,
       KILN_ECORRUPT, "before any layer makes it"},
      {"a blob made twice", HEAD "3 2\nInput in 0 1 a\nReLU r 1 1 a b\nReLU s 1 1 b b\n", 0, 0, 3, KN_PATH_DIRECT, KILN_ECORRUPT,
       "made twice"},
      {"two Inputs", HEAD "3 3\nInput in 0 1 a\nInput in2 0 1 b\nBinaryOp add 2 1 a b out 0=0\n", 0, 0, 3, KN_PATH_DIRECT,
       KILN_ECORRUPT, "2 Input layers"},
      {"blob names over 63 bytes", HEAD "3 3\nInput in 0 1 "
       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1\nReLU r 1 1 "
       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa2 out\n", 0, 0, 3, KN_PATH_DIRECT,
       KILN_ECORRUPT, "longer than"},
      {"weights that fit no kernel", HEAD "2 2\nInput in 0 1 a\nConvolution c 1 1 a b 0=2 1=3 6=10\n", 10, 0, 3, KN_PATH_DIRECT,
       KILN_ECORRUPT, "do not fit"},
      /* at run time: was a heap read past the smaller input, and oneDNN reading 4 channels of weights made for 3 */
      {"a Concat of two sizes", HEAD "4 5\nInput in 0 1 a\nSplit s 1 2 a b c\nInterp i 1 1 c d 0=1 1=2 2=2\nConcat ct 2 1 b d out\n",
       0, 0, 3, KN_PATH_DIRECT, KILN_EINVAL, "one size"},
      {"oneDNN on other channels than the weights'", HEAD "2 2\nInput in 0 1 a\nConvolution c 1 1 a b 0=2 1=1 6=6\n", 6, 0, 4,
       KN_PATH_FAST, KILN_ECORRUPT, "do not fit"},
      /* (int)lroundf(5 * 1e9) wrapped around */
      {"an Interp to 5e9 rows", HEAD "2 2\nInput in 0 1 a\nInterp i 1 1 a b 0=1 1=1e9 2=1e9\n", 0, 0, 3, KN_PATH_DIRECT, KILN_EINVAL,
       "over the limit"},
      /* clip without its bounds dereferenced NULL for a negative value; now it clips to [0, 0] and runs */
      {"a clip activation without bounds", HEAD "2 2\nInput in 0 1 a\nConvolution c 1 1 a b 0=1 1=1 6=3 9=3\n", 3, 0, 3,
       KN_PATH_DIRECT, 0, NULL},
      {"the same, on the fast path", HEAD "2 2\nInput in 0 1 a\nConvolution c 1 1 a b 0=1 1=1 6=3 9=3\n", 3, 0, 3, KN_PATH_FAST,
       0, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    e.msg[0] = 0;
    int r = try_model(cases[i].text, cases[i].nw, cases[i].nraw, cases[i].channels, cases[i].path, &e);
    CHECK(r == cases[i].code && (!cases[i].msg || strstr(e.msg, cases[i].msg)), "%s: %d (%s)", cases[i].what, r, e.msg);
  }
  /* the .bin reader on its own (without kn_net_load's checks first): a slope count of 1e30 is no count */
  kn_graph g;
  const char *p = write_file("s.param", HEAD "2 2\nInput in 0 1 a\nPReLU p 1 1 a b 0=1e30\n");
  if (CHECKV(kn_ncnn_parse(p, &g, &e) == 0, "%s", e.msg)) {
    CHECK(kn_ncnn_load_bin(&g, t_path("m.bin"), &e) == KILN_ECORRUPT && strstr(e.msg, "not a count"), "%s", e.msg);
    kn_graph_release(&g);
  }
}

int main(int argc, char **argv) {
  if (argc == 6 && !strcmp(argv[1], "tile")) return tile_main(argv);
  T_RUN(test_tiles);
  T_RUN(test_winograd);
  T_RUN(test_net_golden);
  T_RUN(test_bin);
  T_RUN(test_parse);
  T_RUN(test_errors);
  T_RUN(test_model_checks);
  t_cleanup();
  return t_done();
}
