/* test_nn.c — the ncnn .param reader: a model written by the test (the
 * shape of Real-ESRGAN's video model: Input, Split, Convolution, PReLU,
 * PixelShuffle, Interp, BinaryOp) is read with its blobs, layers and
 * parameters (scalars, floats, arrays); an unsupported layer type, a file
 * without the magic number and a truncated file are clear errors. */
#include <stdio.h>
#include <string.h>

#include "nn/ncnn.h"
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

int main(void) {
  T_RUN(test_parse);
  T_RUN(test_errors);
  t_cleanup();
  return t_done();
}
