/* wm_fill.c — removing a located mark from frames (wmark.h): the blend
 * estimate, the harmonic fill, and the per-frame removal.
 *
 * Per frame and region, in order:
 *   1. temporal fill: the frames around this one (every other one,
 *      KI_WM_HISTORY behind and, those the caller pushed, KI_WM_AHEAD
 *      ahead) with the global translation between frames (SAD search at low
 *      resolution, refined at full resolution, sub-pixel by equiangular line fitting); each
 *      masked pixel takes the value the scene point had in the nearest
 *      frame in time where it was outside that frame's mask, the shift
 *      re-checked on the ring around the mask; the difference on that ring
 *      is spread over the filled pixels by a harmonic fill (a seamless,
 *      Poisson-like blend, so a change of light does not show as a seam);
 *      first, because another frame shows the scene itself, no estimate;
 *   2. blend inversion of what is left: where the estimated alpha is low
 *      enough to trust (a < INVERT_MAX), B = (I - a*L) / (1 - a); where a is
 *      about 0 (the mask's dilation) I is kept;
 *   3. spatial fill: what remains solves Laplace's equation with everything
 *      known around it as boundary (coarse to fine), which is smooth and so
 *      does not shimmer from frame to frame.
 * The state holds references to input frames (never written) and is used by
 * one stream of frames in order. */
#include "img/wmark.h"
#include "util/err.h"

#include <libavutil/frame.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define INVERT_MAX 0.72f        /* above this alpha, inverting amplifies noise more than filling costs */
#define ALPHA_NONE 0.04f        /* below this the pixel is not under the mark */
#define RING 6                  /* ring outside the mask used to check a temporal match, pixels */
#define RING_STEP 4             /* the ring check reads every 4th pixel each way */
#define BG_PASSES 16             /* blend estimate: most passes, each taking the mask's clear pixels found as known */
#define CLEAR_ALPHA 0.04f        /* ... the mask keeps what is near pixels of this alpha or more */
#define CLEAR_OFFSET 2.0f        /* ... a pixel is clear if its temporal mean is within this of the background's
                                    (levels; 8 took a faint mark's own pixels for clear: a white text at 33%
                                    over a bright scene is 7 levels off) */
#define CLEAR_SE 2.5f            /*     or within this many standard errors of a mean over the frames used, */
#define CLEAR_OFFSET_MAX 8.0f    /*     at most this, */
#define CLEAR_OFFSET_ALPHA 0.8f  /*     and its alpha below this (an opaque mark's colour can match the mean) */
#define KEEP_NEAR 2              /* ... and the mask then keeps what is this near the mark's pixels */
#define MATCH_MAD 5.0           /* mean abs luma difference on the ring for a temporal source to count (10 let
                                   mismatched sources through on dark or slowly changing scenes) */

void ki_wm_region_release(ki_wm_region *r) {
  free(r->mask);
  free(r->alpha);
  for (int i = 0; i < 3; i++) free(r->al[i]);
  memset(r, 0, sizeof *r);
}

/* ---- harmonic fill --------------------------------------------------- */

static void relax(float *v, const uint8_t *known, int w, int h, int iters) {
  size_t np = (size_t)w * h, n = 0;
  for (size_t p = 0; p < np; p++) n += !known[p];
  int *idx = malloc((n ? n : 1) * sizeof *idx);
  if (!idx) return;
  n = 0;
  for (size_t p = 0; p < np; p++)
    if (!known[p]) idx[n++] = (int)p;
  for (int it = 0; it < iters; it++)
    for (size_t i = 0; i < n; i++) {
      int p = idx[i], x = p % w, y = p / w;
      float s = 0;
      int c = 0;
      if (x > 0) { s += v[p - 1]; c++; }
      if (x < w - 1) { s += v[p + 1]; c++; }
      if (y > 0) { s += v[p - w]; c++; }
      if (y < h - 1) { s += v[p + w]; c++; }
      v[p] = s / (float)c;
    }
  free(idx);
}

void ki_harmonic_fill(float *v, const uint8_t *known, int w, int h) {
  size_t np = (size_t)w * h, nk = 0;
  double mean = 0;
  for (size_t p = 0; p < np; p++)
    if (known[p]) { nk++; mean += v[p]; }
  if (nk == 0 || nk == np) return;
  mean /= (double)nk;
  int cw = (w + 1) / 2, ch = (h + 1) / 2;
  float *cv = NULL;
  uint8_t *ck = NULL;
  if (w > 4 && h > 4 && (cv = malloc((size_t)cw * ch * sizeof *cv)) && (ck = malloc((size_t)cw * ch))) {
    for (int y = 0; y < ch; y++)
      for (int x = 0; x < cw; x++) {
        float s = 0;
        int n = 0;
        for (int j = 0; j < 2; j++)
          for (int i = 0; i < 2; i++) {
            int fx = 2 * x + i, fy = 2 * y + j;
            if (fx < w && fy < h && known[(size_t)fy * w + fx]) { s += v[(size_t)fy * w + fx]; n++; }
          }
        cv[(size_t)y * cw + x] = n ? s / (float)n : (float)mean;
        ck[(size_t)y * cw + x] = n > 0;
      }
    ki_harmonic_fill(cv, ck, cw, ch);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        if (!known[(size_t)y * w + x]) v[(size_t)y * w + x] = cv[(size_t)(y / 2) * cw + x / 2];
    relax(v, known, w, h, 8);
  } else {
    for (size_t p = 0; p < np; p++)
      if (!known[p]) v[p] = (float)mean;
    relax(v, known, w, h, 40);
  }
  free(cv);
  free(ck);
}

void ki_box_mean(float *v, float *tmp, int w, int h, int r) {
  for (int y = 0; y < h; y++) {                 /* rows into tmp */
    const float *row = v + (size_t)y * w;
    for (int x = 0; x < w; x++) {
      float sum = 0;
      int c = 0;
      for (int i = x - r; i <= x + r; i++)
        if (i >= 0 && i < w) { sum += row[i]; c++; }
      tmp[(size_t)y * w + x] = sum / (float)c;
    }
  }
  for (int y = 0; y < h; y++)                   /* columns back into v */
    for (int x = 0; x < w; x++) {
      float sum = 0;
      int c = 0;
      for (int j = y - r; j <= y + r; j++)
        if (j >= 0 && j < h) { sum += tmp[(size_t)j * w + x]; c++; }
      v[(size_t)y * w + x] = sum / (float)c;
    }
}

/* ---- blend estimate -------------------------------------------------- */

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Temporal mean and std of plane p of the crops (cw x ch). */
static void crop_stats(uint8_t *const (*crop)[3], int n, int p, int cw, int ch, float *mu, float *sd) {
  size_t np = (size_t)cw * ch;
  for (size_t q = 0; q < np; q++) {
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++) { double v = crop[i][p][q]; s += v; s2 += v * v; }
    double m = s / n, var = s2 / n - m * m;
    mu[q] = (float)m;
    if (sd) sd[q] = var > 0 ? (float)sqrt(var) : 0;
  }
}

int ki_wm_estimate(ki_wm_region *r, uint8_t *const (*crop)[3], int n, int margin) {
  if (n < 4) return 0;
  int m = margin, cw = r->w + 2 * m, ch = r->h + 2 * m;
  size_t np = (size_t)cw * ch;
  int ret = KILN_ENOMEM;
  float *mu = malloc(np * sizeof *mu), *sd = malloc(np * sizeof *sd), *muB = malloc(np * sizeof *muB),
        *sdB = malloc(np * sizeof *sdB), *a = calloc((size_t)r->w * r->h, sizeof *a), *mid = NULL;
  uint8_t *known = malloc(np);
  if (!mu || !sd || !muB || !sdB || !a || !known) goto fail;
  for (int y = 0; y < ch; y++)
    for (int x = 0; x < cw; x++) {
      int rx = x - m, ry = y - m;
      int in = rx >= 0 && ry >= 0 && rx < r->w && ry < r->h && r->mask[(size_t)ry * r->w + rx];
      known[(size_t)y * cw + x] = !in;
    }
  crop_stats(crop, n, 0, cw, ch, mu, sd);
  /* The background's statistics under the mask are interpolated from the
   * pixels known to be clear: at first the ring outside the mask; then the
   * mask's own pixels found clear too (alpha about 0, or a temporal mean no
   * different from the background's), which a coarse mask holds many of —
   * the holes of letters, the dilation — and which sit nearer the rest. */
  size_t nm = 0;
  for (int pass = 0, more = 1; pass < BG_PASSES && more; pass++) {   /* until a pass finds no more clear pixels */
    more = 0;
    memcpy(muB, mu, np * sizeof *mu);
    memcpy(sdB, sd, np * sizeof *sd);
    ki_harmonic_fill(muB, known, cw, ch);
    ki_harmonic_fill(sdB, known, cw, ch);
    nm = 0;
    for (int y = 0; y < r->h; y++)
      for (int x = 0; x < r->w; x++) {
        size_t q = (size_t)y * r->w + x, c = (size_t)(y + m) * cw + x + m;
        a[q] = 0;
        if (!r->mask[q] || known[c]) continue;
        float b = sdB[c];
        float one_a = b > 3 ? sd[c] / b : 0;   /* a still background tells nothing: treat as opaque */
        if (one_a > 1) one_a = 1;
        a[q] = 1 - one_a;
        /* the offset a clear pixel can show: the uncertainty of a mean over n frames, at least CLEAR_OFFSET */
        float off = CLEAR_SE * sd[c] / sqrtf((float)n);
        off = off < CLEAR_OFFSET ? CLEAR_OFFSET : off > CLEAR_OFFSET_MAX ? CLEAR_OFFSET_MAX : off;
        if (fabsf(mu[c] - muB[c]) < off && a[q] < CLEAR_OFFSET_ALPHA) {
          known[c] = 1;                         /* clear: the next pass interpolates from it too */
          a[q] = 0;
          more = 1;
        } else nm++;
      }
  }
  if (nm == 0) { ret = 0; goto fail; }
  /* a mark of one alpha (the usual case) gets that alpha exactly: the median of its mid-alpha pixels */
  mid = malloc(nm * sizeof *mid);
  if (!mid) goto fail;
  size_t nmid = 0;
  for (size_t q = 0; q < (size_t)r->w * r->h; q++)
    if (r->mask[q]) {
      if (a[q] > 0.15f && a[q] < 0.9f) mid[nmid++] = a[q];
    }
  r->translucent = nmid >= nm / 4 && nmid >= 8;
  if (r->translucent) {                          /* one alpha for the mark's mid pixels */
    qsort(mid, nmid, sizeof *mid, cmp_float);
    float med = mid[nmid / 2];
    for (size_t q = 0; q < (size_t)r->w * r->h; q++)
      if (r->mask[q] && fabsf(a[q] - med) < 0.15f) a[q] = med;
  }
  for (int p = 0; p < 3; p++) {
    int pw = p ? r->w / 2 : r->w, ph = p ? r->h / 2 : r->h, pm = p ? m / 2 : m;
    int pcw = p ? cw / 2 : cw, pch = p ? ch / 2 : ch;
    if (p) {
      crop_stats(crop, n, p, pcw, pch, mu, NULL);
      for (int y = 0; p == 1 && y < pch; y++)
        for (int x = 0; x < pcw; x++) {
          int k = 1;
          for (int j = 0; j < 2; j++)
            for (int i = 0; i < 2; i++) k &= known[(size_t)(2 * y + j) * cw + 2 * x + i];
          known[(size_t)y * pcw + x] = (uint8_t)k;   /* reuses the buffer: the luma map is no longer needed */
        }
      memcpy(muB, mu, (size_t)pcw * pch * sizeof *mu);
      ki_harmonic_fill(muB, known, pcw, pch);
    }
    float *al = malloc((size_t)pw * ph * sizeof *al);
    if (!al) goto fail;
    r->al[p] = al;
    for (int y = 0; y < ph; y++)
      for (int x = 0; x < pw; x++) {
        float av;
        if (p) av = 0.25f * (a[(size_t)(2 * y) * r->w + 2 * x] + a[(size_t)(2 * y) * r->w + 2 * x + 1] +
                             a[(size_t)(2 * y + 1) * r->w + 2 * x] + a[(size_t)(2 * y + 1) * r->w + 2 * x + 1]);
        else av = a[(size_t)y * r->w + x];
        size_t c = (size_t)(y + pm) * pcw + x + pm;
        al[(size_t)y * pw + x] = mu[c] - (1 - av) * muB[c];
      }
  }
  /* the mask keeps only what lies within KEEP_NEAR pixels of the mark's
   * pixels (not clear): a coarse mask shrinks to the mark at full resolution */
  for (int y = 0; y < r->h; y++)
    for (int x = 0; x < r->w; x++) {
      size_t q = (size_t)y * r->w + x;
      if (!r->mask[q]) continue;
      int near = 0;
      for (int j = y - KEEP_NEAR; j <= y + KEEP_NEAR && !near; j++)
        for (int i = x - KEEP_NEAR; i <= x + KEEP_NEAR && !near; i++)
          near = i >= 0 && j >= 0 && i < r->w && j < r->h && a[(size_t)j * r->w + i] >= CLEAR_ALPHA;
      known[q] = (uint8_t)near;                 /* reuses the buffer: the chroma maps are done */
    }
  for (size_t q = 0; q < (size_t)r->w * r->h; q++) r->mask[q] = r->mask[q] && known[q];
  r->alpha = a;
  a = NULL;
  ret = 0;
fail:
  if (ret < 0 || !r->alpha) {
    for (int p = 0; p < 3; p++) { free(r->al[p]); r->al[p] = NULL; }
  }
  free(mu); free(sd); free(muB); free(sdB); free(a); free(mid); free(known);
  return ret;
}

/* ---- the per-frame removal -------------------------------------------- */

#define MAXR 16                 /* regions remembered per history frame */
#define SEARCH_LR 8             /* motion search radius at low resolution, pixels */
#define CUT_MAD 15.0            /* mean abs luma difference at low resolution, after the motion, above which
                                   two frames are taken for a cut (within a shot: about 5 at most) */

typedef struct wm_hist {
  AVFrame *f;                   /* a reference to an input frame (never written); NULL: its position only */
  int64_t idx;                  /* its frame number */
  int64_t shot;                 /* frames of one shot (between cuts) share this */
  double px, py;                /* its position: I_t(x) ~ I_h(x + pos_t - pos_h) */
  const ki_wm_region *r[MAXR];
  int nr;
} wm_hist;

/* Frames remembered: KI_WM_HISTORY kept behind the current one and
 * KI_WM_AHEAD ahead of it, every other frame, with the positions of all,
 * and room for KI_WM_SLACK frames pushed further ahead (not used yet). */
#define NENT (2 * KI_WM_HISTORY + 2 * KI_WM_AHEAD + KI_WM_SLACK + KI_WM_SPAN + 4)

struct ki_wm_state {
  int w, h;
  int lf, lw, lh;               /* low-resolution factor and size for the motion search */
  uint8_t *lr_prev, *lr_cur, *lmask;
  AVFrame *prev;                /* the last frame pushed */
  wm_hist e[NENT];              /* e[(first + i) % NENT], i < ne: frame numbers ascending */
  int ne, first;
  int64_t npushed, shot;
  /* One thread may push (ki_wm_push: the motion, then the append) while
   * another removes (ki_wm_frame): push_mu serialises pushes; mu guards
   * ne, first and the entries' fields. An entry's frame and regions stay
   * put until the remover drops it as too old. */
  pthread_mutex_t push_mu, mu;
};

int ki_wm_state_new(ki_wm_state **out, int w, int h) {
  ki_wm_state *st = calloc(1, sizeof *st);
  if (!st) return KILN_ENOMEM;
  pthread_mutex_init(&st->push_mu, NULL);
  pthread_mutex_init(&st->mu, NULL);
  st->w = w;
  st->h = h;
  st->lf = w / 80 > 1 ? w / 80 : 1;
  st->lw = w / st->lf;
  st->lh = h / st->lf;
  size_t n = (size_t)st->lw * st->lh;
  st->lr_prev = malloc(n);
  st->lr_cur = malloc(n);
  st->lmask = malloc(n);
  if (!st->lr_prev || !st->lr_cur || !st->lmask) { ki_wm_state_free(st); return KILN_ENOMEM; }
  *out = st;
  return 0;
}

void ki_wm_state_free(ki_wm_state *st) {
  if (!st) return;
  for (int i = 0; i < NENT; i++) av_frame_free(&st->e[i].f);
  av_frame_free(&st->prev);
  free(st->lr_prev);
  free(st->lr_cur);
  free(st->lmask);
  pthread_mutex_destroy(&st->push_mu);
  pthread_mutex_destroy(&st->mu);
  free(st);
}

static wm_hist *ent(ki_wm_state *st, int i) { return &st->e[(st->first + i) % NENT]; }

static int in_region(const ki_wm_region *r, int x, int y) {
  if (x < r->x || y < r->y || x >= r->x + r->w || y >= r->y + r->h) return 0;
  return r->mask[(size_t)(y - r->y) * r->w + (x - r->x)];
}

static int in_any(const ki_wm_region *const *r, int n, int x, int y) {
  for (int i = 0; i < n; i++)
    if (in_region(r[i], x, y)) return 1;
  return 0;
}

/* Is the luma square [x0, x1] x [y0, y1] clear of every region (and in the frame)? */
static int clear_box(const ki_wm_region *const *r, int n, int x0, int y0, int x1, int y1, int w, int h) {
  if (x0 < 0 || y0 < 0 || x1 >= w || y1 >= h) return 0;
  for (int i = 0; i < n; i++) {
    const ki_wm_region *g = r[i];
    if (x1 < g->x || y1 < g->y || x0 >= g->x + g->w || y0 >= g->y + g->h) continue;
    for (int y = y0; y <= y1; y++)
      for (int x = x0; x <= x1; x++)
        if (in_region(g, x, y)) return 0;
  }
  return 1;
}

static float bilinear(const uint8_t *pl, int ls, int w, int h, double x, double y) {
  if (x < 0) x = 0;
  if (y < 0) y = 0;
  if (x > w - 1) x = w - 1;
  if (y > h - 1) y = h - 1;
  int x0 = (int)x, y0 = (int)y;
  int x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
  float fx = (float)(x - x0), fy = (float)(y - y0);
  const uint8_t *a = pl + (size_t)y0 * ls, *b = pl + (size_t)y1 * ls;
  return (1 - fy) * ((1 - fx) * a[x0] + fx * a[x1]) + fy * ((1 - fx) * b[x0] + fx * b[x1]);
}

/* The sub-pixel offset of a minimum of absolute differences from the costs
 * at -1, 0, +1: equiangular line fitting (a sum of absolute differences is
 * V-shaped about its minimum; a parabola's vertex is biased towards 0 there). */
static double subpixel(double sm, double s0, double sp) {
  double hi = sm > sp ? sm : sp;
  if (hi - s0 <= 1e-9) return 0;
  double o = 0.5 * (sm - sp) / (hi - s0);
  return o < -0.5 ? -0.5 : o > 0.5 ? 0.5 : o;
}

/* Mean abs difference of cur and prev (low resolution) at shift (dx, dy),
 * unmasked pixels, every step-th pixel each way. */
static double lr_sad_step(const ki_wm_state *st, int dx, int dy, int step) {
  int R = SEARCH_LR, w = st->lw, h = st->lh;
  double s = 0;
  long n = 0;
  for (int y = R; y < h - R; y += step)
    for (int x = R; x < w - R; x += step) {
      size_t p = (size_t)y * w + x;
      if (st->lmask[p]) continue;
      s += abs(st->lr_cur[p] - st->lr_prev[(size_t)(y + dy) * w + x + dx]);
      n++;
    }
  return n ? s / n : 1e9;
}

static double lr_sad(const ki_wm_state *st, int dx, int dy) { return lr_sad_step(st, dx, dy, 1); }

/* Full-resolution mean abs difference of luma at integer shift, every 4th
 * pixel, leaving out the marks (the low-resolution mask). */
static double fr_sad(const ki_wm_state *st, const AVFrame *cur, const AVFrame *prev, int dx, int dy) {
  int w = st->w, h = st->h, f = st->lf;
  int m = abs(dx) > abs(dy) ? abs(dx) + 1 : abs(dy) + 1;
  double s = 0;
  long n = 0;
  for (int y = m; y < h - m; y += 4) {
    const uint8_t *a = cur->data[0] + (size_t)y * cur->linesize[0], *b = prev->data[0] + (size_t)(y + dy) * prev->linesize[0] + dx;
    const uint8_t *lm = st->lmask + (size_t)(y / f < st->lh ? y / f : st->lh - 1) * st->lw;
    for (int x = m; x < w - m; x += 4) {
      if (lm[x / f < st->lw ? x / f : st->lw - 1]) continue;
      s += abs(a[x] - b[x]);
      n++;
    }
  }
  return n ? s / n : 1e9;
}

/* Global translation d with cur(x) ~ prev(x + d). */
static void motion(ki_wm_state *st, const AVFrame *in, const ki_wm_region *const *r, int nr, double *dx, double *dy,
                   double *mad) {
  int f = st->lf, w = st->lw, h = st->lh;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int s = 0;
      for (int j = 0; j < f; j++)
        for (int i = 0; i < f; i++) s += in->data[0][(size_t)(y * f + j) * in->linesize[0] + x * f + i];
      st->lr_cur[(size_t)y * w + x] = (uint8_t)(s / (f * f));
      st->lmask[(size_t)y * w + x] = (uint8_t)in_any(r, nr, x * f + f / 2, y * f + f / 2);
    }
  *dx = *dy = 0;
  *mad = 0;
  if (!st->prev || w <= 2 * SEARCH_LR + 4 || h <= 2 * SEARCH_LR + 4) return;
  double best = 1e18;
  int bx = 0, by = 0;
  for (int j = -SEARCH_LR; j <= SEARCH_LR; j++)      /* the search on every other pixel, then the best again on all */
    for (int i = -SEARCH_LR; i <= SEARCH_LR; i++) {
      double s = lr_sad_step(st, i, j, 2);
      if (s < best - 1e-9 || (fabs(s - best) < 1e-9 && abs(i) + abs(j) < abs(bx) + abs(by))) { best = s; bx = i; by = j; }
    }
  best = lr_sad(st, bx, by);
  *mad = best;
  if (f == 1) {
    double ox = abs(bx) < SEARCH_LR ? subpixel(lr_sad(st, bx - 1, by), best, lr_sad(st, bx + 1, by)) : 0;
    double oy = abs(by) < SEARCH_LR ? subpixel(lr_sad(st, bx, by - 1), best, lr_sad(st, bx, by + 1)) : 0;
    *dx = bx + ox;
    *dy = by + oy;
    return;
  }
  /* sub-pixel at low resolution, then +-1 pixel at full resolution around it */
  double ox = abs(bx) < SEARCH_LR ? subpixel(lr_sad(st, bx - 1, by), best, lr_sad(st, bx + 1, by)) : 0;
  double oy = abs(by) < SEARCH_LR ? subpixel(lr_sad(st, bx, by - 1), best, lr_sad(st, bx, by + 1)) : 0;
  int cx = (int)lround((bx + ox) * f), cy = (int)lround((by + oy) * f), rr = 1, fx = cx, fy = cy;
  best = 1e18;
  for (int j = cy - rr; j <= cy + rr; j++)
    for (int i = cx - rr; i <= cx + rr; i++) {
      double sd = fr_sad(st, in, st->prev, i, j);
      if (sd < best) { best = sd; fx = i; fy = j; }
    }
  *dx = fx + subpixel(fr_sad(st, in, st->prev, fx - 1, fy), best, fr_sad(st, in, st->prev, fx + 1, fy));
  *dy = fy + subpixel(fr_sad(st, in, st->prev, fx, fy - 1), best, fr_sad(st, in, st->prev, fx, fy + 1));
  (void)r;
  (void)nr;
}

typedef struct wm_src { const wm_hist *h; double dx, dy; int ok; } wm_src;   /* ok: 0 unchecked, 1 matches, -1 not */

/* Where the ring around region R is checked: the frame, the regions on it, the area. */
typedef struct wm_ring {
  const AVFrame *in;
  const ki_wm_region *R;
  const ki_wm_region *const *cur;
  int ncur, ax, ay, aw, ah;
  int (*pt)[2];                 /* the ring's pixels the check reads (every RING_STEP-th each way, outside every mark), n of them */
  int npt;
} wm_ring;

/* Lists the ring's pixels for check_source: every RING_STEP-th pixel each way of
 * the area, leaving out every region on this frame. pt: room for (aw/RING_STEP+1) x (ah/RING_STEP+1). */
static void ring_points(wm_ring *g) {
  g->npt = 0;
  for (int y = g->ay; y < g->ay + g->ah; y += RING_STEP)
    for (int x = g->ax; x < g->ax + g->aw; x += RING_STEP) {
      if (in_region(g->R, x, y) || in_any(g->cur, g->ncur, x, y)) continue;
      g->pt[g->npt][0] = x;
      g->pt[g->npt][1] = y;
      g->npt++;
    }
}

/* The remembered frames that show the scene under the mark elsewhere,
 * of the same shot, nearest in time first (the earlier one of two as near),
 * at the shift the global motion predicts (not checked yet). */
static int find_sources(ki_wm_state *st, const wm_hist *cur, wm_src *out) {
  int64_t index = cur->idx;
  double px = cur->px, py = cur->py;
  int n = 0;
  int64_t dt[NENT];
  for (int i = 0; i < st->ne; i++) {
    const wm_hist *h = ent(st, i);
    if (!h->f || h->idx == index || h->shot != cur->shot) continue;   /* across a cut it is another scene */
    /* pushed early, or kept for a slower thread: the result must not depend on it */
    if (h->idx > index + 2 * KI_WM_AHEAD || h->idx < index - 2 * KI_WM_HISTORY) continue;
    double dx = px - h->px, dy = py - h->py;
    if (fabs(dx) < 0.75 && fabs(dy) < 0.75) continue;   /* the mark hid the same scene there */
    int64_t d = h->idx < index ? 2 * (index - h->idx) : 2 * (h->idx - index) + 1;
    int k = n++;
    for (; k > 0 && dt[k - 1] > d; k--) { dt[k] = dt[k - 1]; out[k] = out[k - 1]; }
    dt[k] = d;
    out[k] = (wm_src){h, dx, dy, 0};
  }
  return n;
}

/* Mean abs luma difference on the ring between this frame and source h at
 * shift (sx, sy), or 1e18 when fewer than 12 ring pixels are visible there
 * or the mean is sure to be above lim (it stops early: lim * npt bounds the sum). */
static double ring_mad(const ki_wm_state *st, const wm_ring *g, const wm_hist *h, double sx, double sy, double lim) {
  double s = 0, smax = lim * g->npt;
  long cnt = 0;
  for (int i = 0; i < g->npt && s <= smax; i++) {
    int x = g->pt[i][0], y = g->pt[i][1];
    int qx = (int)floor(x + sx), qy = (int)floor(y + sy);
    if (!clear_box(h->r, h->nr, qx, qy, qx + 1, qy + 1, st->w, st->h)) continue;
    s += fabsf((float)g->in->data[0][(size_t)y * g->in->linesize[0] + x] -
               bilinear(h->f->data[0], h->f->linesize[0], st->w, st->h, x + sx, y + sy));
    cnt++;
  }
  return s <= smax && cnt >= 12 ? s / cnt : 1e18;
}

/* Checks a source on the ring around the mask, refining its shift by up to
 * a pixel, then to a quarter pixel (the motion between frames adds up over
 * many frames): sets sr->ok. */
static void check_source(const ki_wm_state *st, const wm_ring *g, wm_src *sr) {
  const wm_hist *h = sr->h;
  double best = 1e18, bdx = sr->dx, bdy = sr->dy;
  static const int off[5][2] = {{0, 0}, {-1, 0}, {1, 0}, {0, -1}, {0, 1}};
  for (int c = 0; c < 5; c++) {                  /* a good match where predicted needs no whole-pixel step */
    if (c == 1 && best <= MATCH_MAD / 2) break;
    double sx = sr->dx + off[c][0], sy = sr->dy + off[c][1];
    double d = ring_mad(st, g, h, sx, sy, best < 2 * MATCH_MAD ? best : 2 * MATCH_MAD);
    if (d < best) { best = d; bdx = sx; bdy = sy; }
  }
  if (best <= 2 * MATCH_MAD) {                   /* near a match: half a pixel each way, then the line fit */
    double lim = 4 * MATCH_MAD;
    double xm = ring_mad(st, g, h, bdx - 0.5, bdy, lim), xp = ring_mad(st, g, h, bdx + 0.5, bdy, lim);
    double ym = ring_mad(st, g, h, bdx, bdy - 0.5, lim), yp = ring_mad(st, g, h, bdx, bdy + 0.5, lim);
    double ox = xm < 1e17 && xp < 1e17 ? 0.5 * subpixel(xm, best, xp) : 0;
    double oy = ym < 1e17 && yp < 1e17 ? 0.5 * subpixel(ym, best, yp) : 0;
    if (ox != 0 || oy != 0) {
      double d = ring_mad(st, g, h, bdx + ox, bdy + oy, best);
      if (d < best) { best = d; bdx += ox; bdy += oy; }
    }
  }
  /* refined to about no shift, it would show the scene the mark hides here too */
  sr->ok = best <= MATCH_MAD && (fabs(bdx) >= 0.75 || fabs(bdy) >= 0.75) ? 1 : -1;
  sr->dx = bdx;
  sr->dy = bdy;
}

enum { S_KNOWN = 0, S_TODO, S_INVERTED, S_TEMPORAL, S_SPATIAL };

/* The blend estimate on region R's pixels still to do in plane p (box bx, by,
 * bw x bh of the plane, subsampling s): pixels with alpha below ALPHA_NONE
 * are not under the mark and are kept; with `invert`, those below
 * INVERT_MAX become B = (I - a*L) / (1 - a). */
static void invert_pixels(const ki_wm_region *R, int p, int s, int bx, int by, int bw, int bh, uint8_t *k, float *v, int invert,
                          ki_wm_frame_stats *fs) {
  int rw = R->w / s;
  for (int y = 0; y < bh; y++)
    for (int x = 0; x < bw; x++) {
      size_t q = (size_t)y * bw + x;
      if (k[q] != S_TODO) continue;
      int lx = (bx + x) - R->x / s, ly = (by + y) - R->y / s;
      if (lx < 0 || ly < 0 || lx >= rw || ly >= R->h / s) continue;
      float a;
      if (p) a = 0.25f * (R->alpha[(size_t)(2 * ly) * R->w + 2 * lx] + R->alpha[(size_t)(2 * ly) * R->w + 2 * lx + 1] +
                          R->alpha[(size_t)(2 * ly + 1) * R->w + 2 * lx] + R->alpha[(size_t)(2 * ly + 1) * R->w + 2 * lx + 1]);
      else a = R->alpha[(size_t)ly * R->w + lx];
      if (a >= INVERT_MAX || (a >= ALPHA_NONE && !invert)) continue;
      if (a >= ALPHA_NONE) v[q] = (v[q] - R->al[p][(size_t)ly * rw + lx]) / (1 - a);
      k[q] = S_INVERTED;
      if (p == 0 && fs) fs->px_inverted++;
    }
}

/* Removes region R from plane p of out. srcs: the temporal sources (luma shifts). */
static int fill_region_plane(const ki_wm_state *st, const AVFrame *in, AVFrame *out, int p, const ki_wm_region *R,
                             const wm_ring *g, wm_src *srcs, int nsrc, ki_wm_mode mode, ki_wm_frame_stats *fs) {
  int ax = g->ax, ay = g->ay, aw = g->aw, ah = g->ah;
  int s = p ? 2 : 1;
  int bx = ax / s, by = ay / s, bw = aw / s, bh = ah / s, pw = st->w / s, ph = st->h / s;
  size_t np = (size_t)bw * bh;
  float *v = malloc(np * sizeof *v), *d = NULL;
  uint8_t *k = malloc(np), *known = malloc(np);
  int8_t *from = malloc(np);
  int ret = KILN_ENOMEM;
  if (!v || !k || !known || !from) goto fail;
  const uint8_t *ip = out->data[p];             /* what earlier regions left (a copy of in before them) */
  int ils = out->linesize[p];
  size_t ntodo = 0;
  for (int y = 0; y < bh; y++)
    for (int x = 0; x < bw; x++) {
      size_t q = (size_t)y * bw + x;
      int X = (bx + x) * s, Y = (by + y) * s, m = 0;
      for (int j = 0; j < s; j++)
        for (int i = 0; i < s; i++) m |= in_region(R, X + i, Y + j);
      k[q] = m ? S_TODO : S_KNOWN;
      from[q] = -1;
      v[q] = ip[(size_t)(by + y) * ils + bx + x];
      ntodo += m;
    }
  if (p == 0 && fs) fs->px_masked += (int64_t)ntodo;
  if (mode == KI_WM_BLUR) {
    int rad = (R->w < R->h ? R->w : R->h) / (4 * s);
    if (rad < 3) rad = 3;
    float *t = malloc(np * sizeof *t);
    if (!t) goto fail;
    for (int pass = 0; pass < 3; pass++) ki_box_mean(v, t, bw, bh, rad);
    free(t);
  } else {
    /* 1. temporal: the scene point in another frame where the mark did not hide it */
    int todo_px = 0;
    for (size_t q = 0; q < np; q++) todo_px |= k[q] == S_TODO;
    for (int si = 0; todo_px && si < nsrc && si < 127; si++) {
      wm_src *sr = &srcs[si];
      if (p == 0 && sr->ok == 0) check_source(st, g, sr);   /* luma checks lazily; chroma follows luma */
      if (sr->ok != 1) continue;
      const AVFrame *hf = sr->h->f;
      double sx = sr->dx / s, sy = sr->dy / s;
      int left = 0;
      for (int y = 0; y < bh; y++)
        for (int x = 0; x < bw; x++) {
          size_t q = (size_t)y * bw + x;
          if (k[q] != S_TODO) continue;
          double qx = bx + x + sx, qy = by + y + sy;
          int lx = (int)floor(qx * s), ly = (int)floor(qy * s);
          if (!clear_box(sr->h->r, sr->h->nr, lx - (s - 1), ly - (s - 1), lx + s, ly + s, st->w, st->h)) { left = 1; continue; }
          v[q] = bilinear(hf->data[p], hf->linesize[p], pw, ph, qx, qy);
          k[q] = S_TEMPORAL;
          from[q] = (int8_t)si;
          if (p == 0 && fs) fs->px_temporal++;
        }
      if (!left) break;
    }
    /* seamless: the difference between the frame and its sources on the ring
     * around the mask (each ring pixel against the newest source that shows
     * it) spread over the temporally filled pixels by one harmonic fill */
    int any = 0;
    for (size_t q = 0; q < np; q++) any |= k[q] == S_TEMPORAL;
    if (any) {
      d = malloc(np * sizeof *d);
      if (!d) goto fail;
      for (int y = 0; y < bh; y++)
        for (int x = 0; x < bw; x++) {
          size_t q = (size_t)y * bw + x;
          known[q] = k[q] == S_KNOWN;
          d[q] = 0;
          if (k[q] != S_KNOWN) continue;
          for (int si = 0; si < nsrc && si < 127; si++) {
            const wm_src *sr = &srcs[si];
            if (sr->ok != 1) continue;
            double qx = bx + x + sr->dx / s, qy = by + y + sr->dy / s;
            int lx = (int)floor(qx * s), ly = (int)floor(qy * s);
            if (!clear_box(sr->h->r, sr->h->nr, lx, ly, lx + s, ly + s, st->w, st->h)) continue;
            d[q] = v[q] - bilinear(sr->h->f->data[p], sr->h->f->linesize[p], pw, ph, qx, qy);
            break;
          }
        }
      ki_harmonic_fill(d, known, bw, bh);
      for (size_t q = 0; q < np; q++)
        if (k[q] == S_TEMPORAL) v[q] += d[q];
      free(d);
      d = NULL;
    }
    /* 2. blend inversion where no other frame showed the scene: B = (I - a*L) / (1 - a) */
    if (R->alpha) invert_pixels(R, p, s, bx, by, bw, bh, k, v, 1, fs);
    /* 3. spatial */
    int todo = 0;
    for (size_t q = 0; q < np; q++) {
      known[q] = k[q] != S_TODO;
      todo |= !known[q];
    }
    if (todo) {
      ki_harmonic_fill(v, known, bw, bh);
      for (size_t q = 0; q < np; q++)
        if (k[q] == S_TODO) { k[q] = S_SPATIAL; if (p == 0 && fs) fs->px_spatial++; }
    }
  }
  uint8_t *op = out->data[p];
  int ols = out->linesize[p];
  for (int y = 0; y < bh; y++)
    for (int x = 0; x < bw; x++) {
      size_t q = (size_t)y * bw + x;
      if (k[q] == S_KNOWN) continue;
      float f = v[q] + 0.5f;
      op[(size_t)(by + y) * ols + bx + x] = (uint8_t)(f < 0 ? 0 : f > 255 ? 255 : f);
    }
  ret = 0;
fail:
  free(v); free(k); free(known); free(from); free(d);
  return ret;
}

static int push_locked(ki_wm_state *st, const AVFrame *f, int64_t index, const ki_wm_region *const *r, int n) {
  if (n > MAXR) n = MAXR;
  pthread_mutex_lock(&st->mu);
  int there = st->ne > 0 && ent(st, st->ne - 1)->idx >= index;
  pthread_mutex_unlock(&st->mu);
  if (there) return 0;                                           /* already there */
  double dx = 0, dy = 0, px = 0, py = 0, mad = 0;
  motion(st, f, r, n, &dx, &dy, &mad);                           /* unlocked: only pushes use its buffers */
  if (mad > CUT_MAD) {                                           /* a cut: the frames before show another scene */
    st->shot++;
    dx = dy = 0;
  }
  uint8_t *t = st->lr_prev;
  st->lr_prev = st->lr_cur;
  st->lr_cur = t;
  av_frame_free(&st->prev);
  if (!(st->prev = av_frame_clone(f))) return KILN_ENOMEM;
  AVFrame *keep = NULL;
  if (st->npushed % 2 == 0 && !(keep = av_frame_clone(f))) return KILN_ENOMEM;
  AVFrame *old = NULL;
  pthread_mutex_lock(&st->mu);
  if (st->ne == NENT) {                                          /* the caller ran too far ahead: forget the oldest */
    old = ent(st, 0)->f;
    ent(st, 0)->f = NULL;
    st->first = (st->first + 1) % NENT;
    st->ne--;
  }
  if (st->ne > 0) {
    px = ent(st, st->ne - 1)->px + dx;
    py = ent(st, st->ne - 1)->py + dy;
  }
  wm_hist *h = ent(st, st->ne);
  AVFrame *stale = h->f;
  h->f = keep;
  h->idx = index;
  h->shot = st->shot;
  h->px = px;
  h->py = py;
  h->nr = n;
  for (int i = 0; i < n; i++) h->r[i] = r[i];
  st->ne++;
  st->npushed++;
  pthread_mutex_unlock(&st->mu);
  av_frame_free(&old);
  av_frame_free(&stale);
  return 0;
}

int ki_wm_push(ki_wm_state *st, const AVFrame *f, int64_t index, const ki_wm_region *const *r, int n) {
  pthread_mutex_lock(&st->push_mu);
  int rc = push_locked(st, f, index, r, n);
  pthread_mutex_unlock(&st->push_mu);
  return rc;
}

int ki_wm_frame(ki_wm_state *st, int64_t index, const AVFrame *in, AVFrame *out, const ki_wm_region *const *r, int n,
                ki_wm_mode mode, int temporal, ki_wm_frame_stats *fs) {
  if (av_frame_copy(out, in) < 0) return KILN_EINTERNAL;
  if (n > MAXR) n = MAXR;
  int tf = temporal && mode == KI_WM_INPAINT;
  const wm_hist *cur = NULL;
  if (tf) {
    int rc = ki_wm_push(st, in, index, r, n);    /* a no-op when it was pushed ahead */
    if (rc < 0) return rc;
  }
  wm_src base[NENT], srcs[NENT];
  int nbase = 0;
  if (tf) {
    pthread_mutex_lock(&st->mu);
    /* too old to keep, even for a thread on a frame up to KI_WM_SPAN before this one */
    while (st->ne > 0 && ent(st, 0)->idx < index - 2 * KI_WM_HISTORY - KI_WM_SPAN) {
      av_frame_free(&ent(st, 0)->f);
      st->first = (st->first + 1) % NENT;
      st->ne--;
    }
    for (int i = 0; i < st->ne && !cur; i++)
      if (ent(st, i)->idx == index) cur = ent(st, i);
    if (cur) nbase = find_sources(st, cur, base);
    pthread_mutex_unlock(&st->mu);
  }
  for (int i = 0; i < n; i++) {
    const ki_wm_region *R = r[i];
    int gr = RING + 2;
    int ax = (R->x - gr) & ~1, ay = (R->y - gr) & ~1;
    if (ax < 0) ax = 0;
    if (ay < 0) ay = 0;
    int ex = (R->x + R->w + gr + 1) & ~1, ey = (R->y + R->h + gr + 1) & ~1;
    if (ex > st->w) ex = st->w;
    if (ey > st->h) ey = st->h;
    int nsrc = nbase;                            /* each region checks the sources afresh */
    memcpy(srcs, base, (size_t)nbase * sizeof *srcs);
    wm_ring g = {in, R, r, n, ax, ay, ex - ax, ey - ay, NULL, 0};
    if (nsrc > 0) {
      if (!(g.pt = malloc(((size_t)(g.aw / RING_STEP + 1) * (g.ah / RING_STEP + 1)) * sizeof *g.pt))) return KILN_ENOMEM;
      ring_points(&g);
    }
    for (int p = 0; p < 3; p++) {
      int rc = fill_region_plane(st, in, out, p, R, &g, srcs, nsrc, mode, fs);
      if (rc < 0) { free(g.pt); return rc; }
    }
    free(g.pt);
  }
  return 0;
}
