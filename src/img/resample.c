/* resample.c — separable resampling of a fractional source rectangle.
 *
 * For each output coordinate i the source centre is x + (i + 0.5)·s − 0.5
 * (s = source/output size), and the taps are a triangle of radius max(1, s)
 * around it, normalised to 1<<14. A vertical pass filters the needed source
 * columns of one output row into 16.8 fixed point, then a horizontal pass
 * makes the row. Linear ramps come out exact (up to rounding). */
#include "img/img.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct taps {
  int n;                        /* taps per output sample */
  int *first;                   /* first source index per output sample */
  int16_t *w;                   /* n weights per output sample */
} taps;

static int make_taps(taps *t, double x, double len, int out, int src_size) {
  double s = len / out, r = s > 1 ? s : 1;
  t->n = (int)ceil(2 * r);     /* integers strictly within (c - r, c + r) */
  if (t->n < 1) t->n = 1;
  t->first = malloc(sizeof(int) * (size_t)out);
  t->w = malloc(sizeof(int16_t) * (size_t)out * (size_t)t->n);
  if (!t->first || !t->w) return KILN_ENOMEM;
  double wf[64];
  for (int i = 0; i < out; i++) {
    double c = x + (i + 0.5) * s - 0.5;
    int f = (int)floor(c - r) + 1;
    double sum = 0;
    for (int k = 0; k < t->n; k++) {
      double d = fabs(f + k - c) / r;
      wf[k] = d < 1 ? 1 - d : 0;
      sum += wf[k];
    }
    /* clamp taps into the source, folding weight onto the edge samples */
    int16_t *w = t->w + (size_t)i * t->n;
    int lo = f, acc = 0;
    if (lo < 0) lo = 0;
    if (lo > src_size - t->n) lo = src_size - t->n;
    if (lo < 0) lo = 0;
    memset(w, 0, sizeof(int16_t) * (size_t)t->n);
    for (int k = 0; k < t->n; k++) {
      int si = f + k;
      if (si < 0) si = 0;
      if (si > src_size - 1) si = src_size - 1;
      int j = si - lo;
      if (j < 0) j = 0;
      if (j > t->n - 1) j = t->n - 1;
      int q = (int)lrint(wf[k] / sum * 16384.0);
      w[j] = (int16_t)(w[j] + q);
      acc += q;
    }
    /* put the rounding remainder on the largest weight */
    int best = 0;
    for (int k = 1; k < t->n; k++) if (w[k] > w[best]) best = k;
    w[best] = (int16_t)(w[best] + (16384 - acc));
    t->first[i] = lo;
  }
  return 0;
}

static void free_taps(taps *t) { free(t->first); free(t->w); }

static int scale_plane(const uint8_t *src, int sl, int sw, int sh, double x, double y, double w, double h,
                       uint8_t *dst, int dl, int dw, int dh) {
  taps tx = {0}, ty = {0};
  int32_t *row = NULL;
  int r = KILN_ENOMEM;
  if (make_taps(&tx, x, w, dw, sw) < 0 || make_taps(&ty, y, h, dh, sh) < 0) goto out;
  int xmin = tx.first[0], xmax = tx.first[dw - 1] + tx.n;
  if (xmax > sw) xmax = sw;
  row = calloc((size_t)sw + (size_t)tx.n, sizeof(int32_t));  /* taps never weigh past sw */
  if (!row) goto out;
  for (int j = 0; j < dh; j++) {
    const int16_t *wy = ty.w + (size_t)j * ty.n;
    const uint8_t *s0 = src + (size_t)ty.first[j] * sl;
    {
      const uint8_t *restrict s = s0;
      int32_t *restrict rw = row;
      int32_t w0 = wy[0];
      for (int i = xmin; i < xmax; i++) rw[i] = w0 * s[i];
    }
    for (int k = 1; k < ty.n; k++) {
      int32_t wk = wy[k];
      if (!wk || ty.first[j] + k >= sh) continue;
      const uint8_t *restrict s = s0 + (size_t)k * sl;
      int32_t *restrict rw = row;
      for (int i = xmin; i < xmax; i++) rw[i] += wk * s[i];
    }
    for (int i = xmin; i < xmax; i++) row[i] = (row[i] + 32) >> 6;   /* 8.14 -> 8.8 */
    /* weights are >= 0 and sum to 1<<14, row values are < 1<<16: the
     * sums fit in 31 bits */
    uint8_t *d = dst + (size_t)j * dl;
    if (tx.n == 2) {                      /* enlarging: two taps */
      for (int i = 0; i < dw; i++) {
        const int16_t *wx = tx.w + (size_t)i * 2;
        const int32_t *rr = row + tx.first[i];
        int32_t acc = wx[0] * rr[0] + wx[1] * rr[1];
        d[i] = (uint8_t)((acc + (1 << 21)) >> 22);
      }
    } else {
      for (int i = 0; i < dw; i++) {
        const int16_t *wx = tx.w + (size_t)i * tx.n;
        const int32_t *rr = row + tx.first[i];
        int32_t acc = 0;
        for (int k = 0; k < tx.n; k++) acc += wx[k] * rr[k];
        int v = (acc + (1 << 21)) >> 22;
        d[i] = (uint8_t)(v > 255 ? 255 : v);
      }
    }
  }
  r = 0;
out:
  free(row);
  free_taps(&tx);
  free_taps(&ty);
  return r;
}

int ki_crop_scale(const AVFrame *src, double x, double y, double w, double h, AVFrame *dst) {
  int r = scale_plane(src->data[0], src->linesize[0], src->width, src->height, x, y, w, h,
                      dst->data[0], dst->linesize[0], dst->width, dst->height);
  for (int p = 1; p < 3 && r == 0; p++)
    r = scale_plane(src->data[p], src->linesize[p], src->width / 2, src->height / 2, x / 2, y / 2, w / 2, h / 2,
                    dst->data[p], dst->linesize[p], dst->width / 2, dst->height / 2);
  return r;
}
