/* tile.c — tiled runs of a net (see tile.h). The input is cut into a grid
 * of tile x tile cells (the last row and column take what is left); each
 * cell is run with up to `overlap` neighbouring pixels on every side (never
 * outside the image: at the border the net's own zero padding is the same
 * as in a whole run), and the cell's part of the output is copied into
 * place. The net's oneDNN primitives are cached per input size, so a grid
 * costs at most four primitive sets (inner, right, bottom, corner cells). */
#include "nn/tile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int is_conv(const kn_layer *l) {
  return !strcmp(l->type, "Convolution") || !strcmp(l->type, "ConvolutionDepthWise");
}

int kn_net_radius(const kn_net *n) {
  int r = 0, stride = 1;
  for (int i = 0; i < n->g.nlayers; i++) {
    const kn_layer *l = &n->g.layers[i];
    if (is_conv(l)) {
      int kw = (int)kn_param(l, 1, 1), kh = (int)kn_param(l, 11, (float)kw);
      int dw = (int)kn_param(l, 2, 1), dh = (int)kn_param(l, 12, (float)dw);
      int k = kw > kh ? kw : kh, d = dw > dh ? dw : dh;
      r += stride * ((d * (k - 1) + 1) / 2);
      int sw = (int)kn_param(l, 3, 1), sh = (int)kn_param(l, 13, (float)sw);
      stride *= sw > sh ? sw : sh;
    } else if (!strcmp(l->type, "Interp") && kn_param(l, 0, 1) != 1) {
      r += 2 * stride;
    }
  }
  return r;
}

size_t kn_net_bytes_per_pixel(const kn_net *n, int scale) {
  int maxc = 3;
  for (int i = 0; i < n->g.nlayers; i++) {
    const kn_layer *l = &n->g.layers[i];
    if (is_conv(l) && (int)kn_param(l, 0, 0) > maxc) maxc = (int)kn_param(l, 0, 0);
  }
  /* three blobs of the widest layer alive at once (a layer's input, its
   * output, a skip), the input, and the output with its last two steps */
  return sizeof(float) * ((size_t)3 * maxc + 3 + (size_t)3 * 3 * scale * scale);
}

int kn_tile_auto(const kn_net *n, int scale, int overlap, int w, int h, size_t cap) {
  size_t bpp = kn_net_bytes_per_pixel(n, scale);
  if ((size_t)w * h * bpp <= cap) return 0;
  int side = (int)floor(sqrt((double)cap / (double)bpp)) - 2 * overlap;
  return side < 16 ? 16 : side;
}

/* Copies rows [y0, y0 + th) and columns [x0, x0 + tw) of in into t. */
static int crop(const kn_tensor *in, int x0, int y0, int tw, int th, kn_tensor *t) {
  if (kn_tensor_alloc(t, th, tw, in->c) < 0) return -1;
  for (int y = 0; y < th; y++)
    memcpy(t->d + (size_t)y * tw * in->c, in->d + ((size_t)(y0 + y) * in->w + x0) * in->c, sizeof(float) * tw * in->c);
  return 0;
}

int kn_net_run_tiled(kn_net *n, const kn_tensor *in, int tile, int overlap, kn_tensor *out, kiln_err *e) {
  memset(out, 0, sizeof *out);
  if (tile <= 0 || (tile >= in->w && tile >= in->h)) return kn_net_run(n, in, out, e);
  if (overlap < 0) overlap = 0;
  kn_tensor t = {0}, y = {0};
  int r = 0, s = 0, c = 0;
  for (int y0 = 0; y0 < in->h; y0 += tile) {
    for (int x0 = 0; x0 < in->w; x0 += tile) {
      int x1 = x0 + tile < in->w ? x0 + tile : in->w, y1 = y0 + tile < in->h ? y0 + tile : in->h;
      int ex0 = x0 - overlap > 0 ? x0 - overlap : 0, ey0 = y0 - overlap > 0 ? y0 - overlap : 0;
      int ex1 = x1 + overlap < in->w ? x1 + overlap : in->w, ey1 = y1 + overlap < in->h ? y1 + overlap : in->h;
      if (crop(in, ex0, ey0, ex1 - ex0, ey1 - ey0, &t) < 0) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
      if ((r = kn_net_run(n, &t, &y, e)) < 0) goto done;
      int ts = y.w / t.w;
      if (ts < 1 || y.w != t.w * ts || y.h != t.h * ts || (s && (ts != s || y.c != c))) {
        r = kiln_fail(e, KILN_EINVAL, "the model turns a %dx%d tile into %dx%dx%d: tiling needs one whole scale for every tile",
                      t.w, t.h, y.w, y.h, y.c);
        goto done;
      }
      if (!s) {
        s = ts;
        c = y.c;
        if (kn_tensor_alloc(out, in->h * s, in->w * s, c) < 0) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
      }
      size_t row = sizeof(float) * (size_t)(x1 - x0) * s * c;
      for (int oy = y0 * s; oy < y1 * s; oy++)
        memcpy(out->d + ((size_t)oy * out->w + (size_t)x0 * s) * c,
               y.d + ((size_t)(oy - ey0 * s) * y.w + (size_t)(x0 - ex0) * s) * c, row);
      kn_tensor_free(&t);
      kn_tensor_free(&y);
    }
  }
done:
  kn_tensor_free(&t);
  kn_tensor_free(&y);
  if (r < 0) kn_tensor_free(out);
  return r;
}
