/* resample.c — separable resampling of a fractional source rectangle.
 *
 * For each output coordinate i the source centre is x + (i + 0.5)·s − 0.5
 * (s = source/output size), and the taps are a triangle of radius max(1, s)
 * around it, normalised to 1<<14. A vertical pass filters the needed source
 * columns of one output row into 8.6 fixed point (int16), then a horizontal
 * pass makes the row (SSE2 for the two-tap case). Linear ramps come out
 * exact (up to rounding). */
#include "img/img.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
  for (int i = 0; i < out; i++) {
    double c = x + (i + 0.5) * s - 0.5;
    int f = (int)floor(c - r) + 1;
    double sum = 0;                 /* first pass: the total, so any shrink factor works */
    for (int k = 0; k < t->n; k++) {
      double d = fabs(f + k - c) / r;
      sum += d < 1 ? 1 - d : 0;
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
      double d = fabs(f + k - c) / r;
      int q = (int)lrint((d < 1 ? 1 - d : 0) / sum * 16384.0);
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

/* Horizontal pass with two taps (enlarging): out[i] = w0·r[f] + w1·r[f+1].
 * With SSE2 (every x86-64) eight outputs at a time: the four (r[f], r[f+1])
 * pairs of each half are loaded as 32-bit words, and pmaddwd multiplies them
 * by the (w0, w1) pairs that make_taps stores side by side. */
#if defined(__SSE2__)
/* row[f] and row[f + 1] as one 32-bit word (alignment-safe). */
static inline int32_t pair(const int16_t *row, int f) {
  int32_t v;
  memcpy(&v, row + f, sizeof v);
  return v;
}
#endif

static void hpass2(const int16_t *row, const taps *tx, uint8_t *d, int dw) {
  int i = 0;
#if defined(__SSE2__)
  const __m128i round = _mm_set1_epi32(1 << 19);
  for (; i + 8 <= dw; i += 8) {
    const int *f = tx->first + i;
    __m128i p0 = _mm_set_epi32(pair(row, f[3]), pair(row, f[2]), pair(row, f[1]), pair(row, f[0]));
    __m128i p1 = _mm_set_epi32(pair(row, f[7]), pair(row, f[6]), pair(row, f[5]), pair(row, f[4]));
    __m128i w0 = _mm_loadu_si128((const __m128i *)(tx->w + 2 * (size_t)i));
    __m128i w1 = _mm_loadu_si128((const __m128i *)(tx->w + 2 * (size_t)i + 8));
    __m128i a0 = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(p0, w0), round), 20);
    __m128i a1 = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(p1, w1), round), 20);
    __m128i v = _mm_packus_epi16(_mm_packs_epi32(a0, a1), _mm_setzero_si128());
    _mm_storel_epi64((__m128i *)(d + i), v);
  }
#endif
  for (; i < dw; i++) {
    const int16_t *w = tx->w + 2 * (size_t)i;
    const int16_t *r = row + tx->first[i];
    int v = (w[0] * r[0] + w[1] * r[1] + (1 << 19)) >> 20;
    d[i] = (uint8_t)(v > 255 ? 255 : v);
  }
}

static int scale_plane(const uint8_t *src, int sl, int sw, int sh, double x, double y, double w, double h,
                       uint8_t *dst, int dl, int dw, int dh) {
  taps tx = {0}, ty = {0};
  int32_t *acc = NULL;
  int16_t *row = NULL;
  int r = KILN_ENOMEM;
  if (make_taps(&tx, x, w, dw, sw) < 0 || make_taps(&ty, y, h, dh, sh) < 0) goto out;
  int xmin = tx.first[0], xmax = tx.first[dw - 1] + tx.n;
  if (xmax > sw) xmax = sw;
  acc = malloc(sizeof(int32_t) * (size_t)sw);
  row = calloc((size_t)sw + (size_t)tx.n + 2, sizeof(int16_t));   /* taps never weigh past sw */
  if (!acc || !row) goto out;
  for (int j = 0; j < dh; j++) {
    /* vertical pass: the needed source columns of this output row, 8.6 fixed point */
    const int16_t *wy = ty.w + (size_t)j * ty.n;
    const uint8_t *s0 = src + (size_t)ty.first[j] * sl;
    if (ty.n == 2 && ty.first[j] + 1 < sh) {   /* enlarging: one fused pass */
      const uint8_t *restrict sa = s0, *restrict sb = s0 + sl;
      int16_t *restrict rw = row;
      int32_t w0 = wy[0], w1 = wy[1];
      for (int i = xmin; i < xmax; i++) rw[i] = (int16_t)((w0 * sa[i] + w1 * sb[i] + 128) >> 8);
      goto horizontal;
    }
    {
      const uint8_t *restrict s = s0;
      int32_t *restrict a = acc;
      int32_t w0 = wy[0];
      for (int i = xmin; i < xmax; i++) a[i] = w0 * s[i];
    }
    for (int k = 1; k < ty.n; k++) {
      int32_t wk = wy[k];
      if (!wk || ty.first[j] + k >= sh) continue;
      const uint8_t *restrict s = s0 + (size_t)k * sl;
      int32_t *restrict a = acc;
      for (int i = xmin; i < xmax; i++) a[i] += wk * s[i];
    }
    {
      const int32_t *restrict a = acc;
      int16_t *restrict rw = row;
      for (int i = xmin; i < xmax; i++) rw[i] = (int16_t)((a[i] + 128) >> 8);   /* 8.14 -> 8.6 */
    }
  horizontal:;
    /* horizontal pass: weights >= 0 sum to 1<<14, values < 1<<14: fits */
    uint8_t *d = dst + (size_t)j * dl;
    if (tx.n == 2) {
      hpass2(row, &tx, d, dw);
    } else {
      for (int i = 0; i < dw; i++) {
        const int16_t *wx = tx.w + (size_t)i * tx.n;
        const int16_t *rr = row + tx.first[i];
        int32_t sum = 1 << 19;
        for (int k = 0; k < tx.n; k++) sum += wx[k] * rr[k];
        int v = sum >> 20;
        d[i] = (uint8_t)(v > 255 ? 255 : v);
      }
    }
  }
  r = 0;
out:
  free(acc);
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
