/* wm_detect.c — finding a watermark without a model, from the temporal
 * statistics of luma planes sampled across the video (wmark.h).
 *
 * The cue: a mark's edges stay put while the picture under and around it
 * changes. Over a window of samples, the mean frame M keeps an edge that is
 * in every sample at full strength, while the edges of moving content average
 * away; so at a mark's edge |grad M| is about the mean of |grad I| (ratio
 * near 1), elsewhere much less. Windows of WIN samples, half overlapping,
 * find edges of marks that stay for a while. The cue needs the scene to
 * move: near-black samples are left out, a window whose brightness changes
 * (a fade: every edge of the scene stays where it is) is skipped, an edge
 * counts only where the scene moved around it in that window (temporal std
 * with each sample brought to the window's brightness), and only where that
 * held in two windows or more (a still moment of the scene is not a mark);
 * a group of them spanning much of the frame (a slow scene, maybe with a
 * mark in it) keeps only the edges that stay over all those samples. Those
 * edges, grouped into connected candidates, are then checked sample by
 * sample (are this frame's
 * edges strong right on the candidate's edges, compared with the pixels
 * around them? a mark's edge may flip sign as the picture behind it
 * changes, its place does not) to get the runs of
 * samples where each mark is present; a mark that changes corner is two
 * candidates with their own runs. Each run's mask is rebuilt from its own
 * samples: the closed edge set with its holes filled (the flat inside of a
 * logo); the caller adds its margin. Candidates whose surroundings do not change
 * over time are dropped: on a static background a logo cannot be told from
 * the scene by this cue (callers then pass boxes).
 *
 * All buffers are at sample resolution; nothing here keeps state. */
#include "img/wmark.h"
#include "util/err.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WIN 12                  /* samples per detection window */
#define EDGE_T 14.0             /* |grad M| of a mark's edge, 8-bit levels per pixel, at sensitivity 1 (finding it;
                                   its mask takes edges down to half that, around what was found) */
#define RATIO_T 0.5             /* |grad M| / mean |grad I| for an edge that stays */
#define PRESENT_T 1.5           /* a sample has the mark when its edges on the mark's are this much stronger than nearby */
#define RING_CHANGE_T 5.0       /* median temporal std just outside a mark: the scene must move there (a still object
                                   beside something that moves reaches about 5) */
#define RING_REL 0.6            /* ... or this share of the scene's activity (the frame's median of the motion
                                   measure below), if less: a dark or washed-out scene changes less everywhere */
#define RING_MIN_T 3.0          /* ... but never below this (sensor noise alone reaches 2.5) */
#define COHERENCE_T 0.75        /* a candidate whose edges all run one way (the structure tensor's coherence of
                                   the mean frame over its edges above this) is a straight edge of the scene
                                   that a pan along it leaves in place, not a mark: text and logos have edges
                                   of every direction */
#define MIN_EDGE_PX 10
#define DARK_T 28.0             /* a sample darker than this on average (black, a fade's start) says nothing */
#define FADE_T 0.2              /* a window whose samples' mean luma spans more than this share is a fade */
#define MOVE_T 1.5              /* an edge stays only where the scene around it moved: mean gain-normalised
                                   temporal std over the 9x9 box around it, levels */
#define MOVE_R 4

int ki_wm_samples_add(ki_wm_samples *s, const uint8_t *plane, int ls, int fw, int fh, int64_t frame) {
  if (s->scale < 1) s->scale = 1;
  int w = fw / s->scale, h = fh / s->scale;
  if (s->n == 0) { s->w = w; s->h = h; }
  if (w != s->w || h != s->h || w < 1 || h < 1) return KILN_EINVAL;
  if (s->n == s->cap) {
    int nc = s->cap ? 2 * s->cap : 32;
    uint8_t **ny = realloc(s->y, (size_t)nc * sizeof *ny);
    if (!ny) return KILN_ENOMEM;
    s->y = ny;
    int64_t *nf = realloc(s->frame, (size_t)nc * sizeof *nf);
    if (!nf) return KILN_ENOMEM;
    s->frame = nf;
    s->cap = nc;
  }
  uint8_t *d = malloc((size_t)w * h);
  if (!d) return KILN_ENOMEM;
  int k = s->scale;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int sum = 0;
      for (int j = 0; j < k; j++)
        for (int i = 0; i < k; i++) sum += plane[(size_t)(y * k + j) * ls + x * k + i];
      d[(size_t)y * w + x] = (uint8_t)((sum + k * k / 2) / (k * k));
    }
  s->y[s->n] = d;
  s->frame[s->n] = frame;
  s->n++;
  return 0;
}

void ki_wm_samples_release(ki_wm_samples *s) {
  for (int i = 0; i < s->n; i++) free(s->y[i]);
  free(s->y);
  free(s->frame);
  memset(s, 0, sizeof *s);
}

void ki_wm_found_free(ki_wm_found *f, int n) {
  for (int i = 0; f && i < n; i++) free(f[i].mask);
  free(f);
}

/* Square dilation (dil = 1) or erosion of a 0/1 mask, radius r, separable. */
static int morph(uint8_t *m, int w, int h, int r, int dil) {
  if (r <= 0) return 0;
  uint8_t *t = malloc((size_t)w * h);
  if (!t) return KILN_ENOMEM;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int v = dil ? 0 : 1;
      for (int i = x - r; i <= x + r; i++) {
        int xi = i < 0 ? 0 : i >= w ? w - 1 : i;
        if (dil) v |= m[(size_t)y * w + xi];
        else v &= m[(size_t)y * w + xi];
      }
      t[(size_t)y * w + x] = (uint8_t)v;
    }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int v = dil ? 0 : 1;
      for (int j = y - r; j <= y + r; j++) {
        int yj = j < 0 ? 0 : j >= h ? h - 1 : j;
        if (dil) v |= t[(size_t)yj * w + x];
        else v &= t[(size_t)yj * w + x];
      }
      m[(size_t)y * w + x] = (uint8_t)v;
    }
  free(t);
  return 0;
}

/* Fills the holes of mask m (w x h): pixels not reachable from the border
 * through unmasked pixels. Sides flagged in `open` (1 left, 2 top, 4 right,
 * 8 bottom) are where flooding starts; the others are walls (the frame's
 * edge, which a logo may touch). */
static int fill_holes(uint8_t *m, int w, int h, int open) {
  uint8_t *seen = calloc((size_t)w * h, 1);
  int *stack = malloc((size_t)w * h * sizeof *stack);
  if (!seen || !stack) { free(seen); free(stack); return KILN_ENOMEM; }
  int sp = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int edge = ((open & 1) && x == 0) || ((open & 2) && y == 0) || ((open & 4) && x == w - 1) ||
                 ((open & 8) && y == h - 1);
      size_t p = (size_t)y * w + x;
      if (edge && !m[p] && !seen[p]) { seen[p] = 1; stack[sp++] = (int)p; }
    }
  while (sp > 0) {
    int p = stack[--sp], x = p % w, y = p / w;
    const int nb[4][2] = {{1, 0}, {-1, 0}, {0, 1}, {0, -1}};
    for (int k = 0; k < 4; k++) {
      int nx = x + nb[k][0], ny = y + nb[k][1];
      if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
      size_t q = (size_t)ny * w + nx;
      if (!m[q] && !seen[q]) { seen[q] = 1; stack[sp++] = (int)q; }
    }
  }
  for (size_t p = 0; p < (size_t)w * h; p++)
    if (!m[p] && !seen[p]) m[p] = 1;
  free(seen);
  free(stack);
  return 0;
}

/* Mean, mean gradient magnitude and temporal std over samples idx[0..n) in
 * the rectangle (x0, y0, w, h) of the sample plane. Gradients are central
 * differences (half of |dx| + |dy|), zero on the plane's border. */
static void window_stats(const ki_wm_samples *s, const int *idx, int n, int x0, int y0, int w, int h, float *M,
                         float *G, float *V) {
  size_t np = (size_t)w * h;
  memset(M, 0, np * sizeof *M);
  memset(G, 0, np * sizeof *G);
  if (V) memset(V, 0, np * sizeof *V);
  int W = s->w, H = s->h;
  for (int k = 0; k < n; k++) {
    const uint8_t *I = s->y[idx[k]];
    for (int y = 0; y < h; y++) {
      int gy0 = y0 + y;
      const uint8_t *row = I + (size_t)gy0 * W;
      for (int x = 0; x < w; x++) {
        int gx0 = x0 + x;
        float v = row[gx0];
        size_t p = (size_t)y * w + x;
        M[p] += v;
        if (V) V[p] += v * v;
        if (gx0 > 0 && gx0 < W - 1 && gy0 > 0 && gy0 < H - 1) {
          int dx = row[gx0 + 1] - row[gx0 - 1], dy = row[gx0 + W] - row[gx0 - W];
          G[p] += 0.5f * (float)(abs(dx) + abs(dy));
        }
      }
    }
  }
  for (size_t p = 0; p < np; p++) {
    M[p] /= (float)n;
    G[p] /= (float)n;
    if (V) {
      float var = V[p] / (float)n - M[p] * M[p];
      V[p] = var > 0 ? sqrtf(var) : 0;
    }
  }
}

/* Edges of M (w x h) that stay: 1 where |grad M| > et and the ratio holds. */
static void static_edges(const float *M, const float *G, int w, int h, double et, double rt, uint8_t *E) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t p = (size_t)y * w + x;
      E[p] = 0;
      if (x == 0 || y == 0 || x == w - 1 || y == h - 1) continue;
      float gm = 0.5f * (fabsf(M[p + 1] - M[p - 1]) + fabsf(M[p + w] - M[p - w]));
      if (gm > et && gm > rt * (G[p] + 2.0f)) E[p] = 1;
    }
}

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Rebuilds the mask of one run from its samples; appends it to *out if the
 * scene around it changes. bx..bh: the candidate's box at sample resolution;
 * lab/cid: the candidate's pixels (dilated) in the full plane. */
static int refine_run(const ki_wm_samples *s, const int *idx, int n, int bx, int by, int bw, int bh,
                      const int *lab, int cid, double et, double ring_t, int first, int last, double presence,
                      ki_wm_found **out, int *nout, int *cap) {
  size_t np = (size_t)bw * bh;
  float *M = malloc(np * sizeof *M), *G = malloc(np * sizeof *G), *V = malloc(np * sizeof *V), *ring = NULL;
  uint8_t *E = malloc(np), *D = malloc(np);
  int r = KILN_ENOMEM, nring = 0;
  if (!M || !G || !V || !E || !D) goto fail;
  window_stats(s, idx, n, bx, by, bw, bh, M, G, V);
  static_edges(M, G, bw, bh, et * 0.5, RATIO_T + 0.1, E);
  int ne = 0;
  (void)lab;
  (void)cid;
  for (size_t p = 0; p < np; p++) ne += E[p];
  r = 0;
  if (ne < MIN_EDGE_PX) goto fail;
  {   /* edges of every direction, not one straight edge the scene slides along */
    double sxx = 0, syy = 0, sxy = 0;
    for (int y = 1; y < bh - 1; y++)
      for (int x = 1; x < bw - 1; x++) {
        size_t p = (size_t)y * bw + x;
        if (!E[p]) continue;
        double gx = 0.5 * (M[p + 1] - M[p - 1]), gy = 0.5 * (M[p + bw] - M[p - bw]);
        sxx += gx * gx;
        syy += gy * gy;
        sxy += gx * gy;
      }
    double tr = sxx + syy, det = sqrt((sxx - syy) * (sxx - syy) + 4 * sxy * sxy);
    double coh = tr > 0 ? det / tr : 1;
      if (coh > COHERENCE_T) goto fail;
  }
  /* the scene must change just outside the mark */
  memcpy(D, E, np);
  if ((r = morph(D, bw, bh, 3, 1)) < 0) goto fail;
  ring = malloc(np * sizeof *ring);
  if (!ring) { r = KILN_ENOMEM; goto fail; }
  {   /* outside the mark: not inside its edges either (an opaque logo's still inside is not the scene) */
    uint8_t *F = malloc(np);
    if (!F) { r = KILN_ENOMEM; goto fail; }
    memcpy(F, D, np);
    if ((r = fill_holes(F, bw, bh, 15)) < 0) { free(F); goto fail; }
    for (size_t p = 0; p < np; p++)
      if (!F[p]) ring[nring++] = V[p];
    free(F);
    if (nring < 8) {   /* a box too tight to have an outside: the pixels off the edges, as they are */
      nring = 0;
      for (size_t p = 0; p < np; p++)
        if (!D[p]) ring[nring++] = V[p];
    }
  }
  r = 0;
  if (nring < 8) goto fail;
  qsort(ring, (size_t)nring, sizeof *ring, cmp_float);
  if (ring[nring / 2] < ring_t) goto fail;
  /* the still inside of an opaque mark: next to its edges, unchanging while the ring changes */
  {
    float still = ring[nring / 2] * 0.12f;   /* much stiller than the scene around it */
    if (still < 1.0f) still = 1.0f;
    if (still > 6.0f) still = 6.0f;
    uint8_t *in = malloc(np);
    if (!in) { r = KILN_ENOMEM; goto fail; }
    memcpy(in, E, np);
    if ((r = morph(in, bw, bh, 2, 1)) < 0) { free(in); goto fail; }
    int reach = (bw < bh ? bw : bh) / 3;   /* grow from the edges through still pixels, not far */
    for (int pass = 0; pass < reach; pass++) {
      int grew = 0;
      for (int y = 1; y < bh - 1; y++)
        for (int x = 1; x < bw - 1; x++) {
          size_t p = (size_t)y * bw + x;
          if (in[p] || V[p] >= still) continue;
          if (in[p - 1] || in[p + 1] || in[p - bw] || in[p + bw]) { in[p] = 1; grew = 1; }
        }
      if (!grew) break;
    }
    for (size_t p = 0; p < np; p++)
      if (in[p] && V[p] < still) E[p] = 1;
    free(in);
  }
  /* close and fill the holes (the flat inside of a logo) */
  if ((r = morph(E, bw, bh, 2, 1)) < 0 || (r = morph(E, bw, bh, 2, 0)) < 0) goto fail;
  int open = (bx > 0 ? 1 : 0) | (by > 0 ? 2 : 0) | (bx + bw < s->w ? 4 : 0) | (by + bh < s->h ? 8 : 0);
  if ((r = fill_holes(E, bw, bh, open)) < 0) goto fail;
  int x0 = bw, y0 = bh, x1 = -1, y1 = -1;
  for (int y = 0; y < bh; y++)
    for (int x = 0; x < bw; x++)
      if (E[(size_t)y * bw + x]) {
        if (x < x0) x0 = x;
        if (x > x1) x1 = x;
        if (y < y0) y0 = y;
        if (y > y1) y1 = y;
      }
  if (x1 < 0) goto fail;
  {   /* a "mark" over a quarter of the frame, or spanning most of it both ways, is a still part
       of the scene (or a fade: edges that stay while every value changes) */
    long area = 0;
    for (size_t p = 0; p < np; p++) area += E[p];
    if (area > (long)s->w * s->h / 4) goto fail;
    if (x1 - x0 + 1 > s->w * 6 / 10 && y1 - y0 + 1 > s->h * 6 / 10) goto fail;
  }
  if (*nout == *cap) {
    int nc = *cap ? *cap * 2 : 8;
    ki_wm_found *nf = realloc(*out, (size_t)nc * sizeof *nf);
    if (!nf) { r = KILN_ENOMEM; goto fail; }
    *out = nf;
    *cap = nc;
  }
  ki_wm_found *f = &(*out)[*nout];
  f->x = bx + x0; f->y = by + y0; f->w = x1 - x0 + 1; f->h = y1 - y0 + 1;
  f->mask = malloc((size_t)f->w * f->h);
  if (!f->mask) { r = KILN_ENOMEM; goto fail; }
  for (int y = 0; y < f->h; y++) memcpy(f->mask + (size_t)y * f->w, E + (size_t)(y0 + y) * bw + x0, (size_t)f->w);
  f->first = first;
  f->last = last;
  f->presence = presence;
  (*nout)++;
  r = 0;
fail:
  free(M); free(G); free(V); free(E); free(D); free(ring);
  return r;
}

/* The samples of window [a, a + win) that can tell a mark from the scene:
 * not near black. Returns their count (in idx), or 0 when the window is a
 * fade (their brightness changes by more than FADE_T: every edge of a fading
 * scene stays where it is, like a mark's). */
static int window_idx(const double *mean, int a, int win, int *idx) {
  int n = 0;
  double lo = 1e9, hi = 0;
  for (int k = a; k < a + win; k++) {
    if (mean[k] < DARK_T) continue;
    idx[n++] = k;
    if (mean[k] < lo) lo = mean[k];
    if (mean[k] > hi) hi = mean[k];
  }
  if (n < 3 || n < win / 2) return 0;
  if (hi - lo > FADE_T * hi) return 0;
  return n;
}

/* How much the scene moved around each pixel over samples idx[0..n): the
 * temporal std of luma with each sample scaled to the window's mean
 * brightness (so a change of light is not motion), averaged over the
 * (2*MOVE_R+1)^2 box around the pixel. L: W*H; t: W*H scratch. */
static void window_motion(const ki_wm_samples *s, const int *idx, int n, const double *mean, float *L, float *t) {
  int W = s->w, H = s->h, R = MOVE_R;
  size_t np = (size_t)W * H;
  double g = 0;
  for (int k = 0; k < n; k++) g += mean[idx[k]];
  g /= n;
  memset(L, 0, np * sizeof *L);
  memset(t, 0, np * sizeof *t);
  for (int k = 0; k < n; k++) {
    const uint8_t *I = s->y[idx[k]];
    float gk = (float)(g / mean[idx[k]]);
    for (size_t p = 0; p < np; p++) {
      float v = I[p] * gk;
      L[p] += v;
      t[p] += v * v;
    }
  }
  for (size_t p = 0; p < np; p++) {
    float m = L[p] / (float)n, var = t[p] / (float)n - m * m;
    L[p] = var > 0 ? sqrtf(var) : 0;
  }
  ki_box_mean(L, t, W, H, R);
}

/* Labels id the 8-connected group of in's pixels from p0 (lab < 0: not
 * labelled yet; stack: room for w*h). Returns how many of the group's pixels
 * are set in `count` (NULL: all of them) and their box x0, y0, x1, y1 in b
 * (x1 < 0 when none). */
static int flood8(const uint8_t *in, int *lab, int *stack, int W, int H, size_t p0, int id, const uint8_t *count, int b[4]) {
  int sp = 0, n = 0;
  b[0] = W; b[1] = H; b[2] = -1; b[3] = -1;
  lab[p0] = id;
  stack[sp++] = (int)p0;
  while (sp > 0) {
    int p = stack[--sp], x = p % W, y = p / W;
    if (!count || count[p]) {
      n++;
      if (x < b[0]) b[0] = x;
      if (x > b[2]) b[2] = x;
      if (y < b[1]) b[1] = y;
      if (y > b[3]) b[3] = y;
    }
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++) {
        int nx = x + dx, ny = y + dy;
        if (nx < 0 || ny < 0 || nx >= W || ny >= H) continue;
        size_t q = (size_t)ny * W + nx;
        if (in[q] && lab[q] < 0) { lab[q] = id; stack[sp++] = (int)q; }
      }
  }
  return n;
}

int ki_wm_detect(const ki_wm_samples *s, const ki_wm_hint *hint, ki_wm_found **out, int *nout) {
  *out = NULL;
  *nout = 0;
  int K = s->n, W = s->w, H = s->h, cap = 0, r = KILN_ENOMEM;
  if (K < 3) return 0;                             /* nothing moves in fewer frames */
  double sens = hint && hint->sensitivity > 0 ? hint->sensitivity : 1;
  double et = EDGE_T / sens, rt = RATIO_T / (sens > 1 ? sqrt(sens) : 1);
  size_t np = (size_t)W * H;
  float *M = malloc(np * sizeof *M), *G = malloc(np * sizeof *G), *best = calloc(np, sizeof *best);
  uint8_t *E = malloc(np), *any = calloc(np, 1), *dil = malloc(np), *allow = NULL;
  int16_t *bestwin = malloc(np * sizeof *bestwin);
  int *lab = malloc(np * sizeof *lab), *idx = malloc((size_t)K * sizeof *idx), *stack = malloc(np * sizeof *stack);
  float *pres = malloc((size_t)K * sizeof *pres);
  float *gxr = NULL, *gyr = NULL, *L = malloc(np * sizeof *L), *Lt = malloc(np * sizeof *Lt);
  double *mean = malloc((size_t)K * sizeof *mean);
  uint8_t *votes = calloc(np, 1), *used = calloc((size_t)K, 1);
  if (!M || !G || !best || !E || !any || !dil || !bestwin || !lab || !idx || !stack || !pres || !L || !Lt || !mean || !votes || !used)
    goto fail;
  for (int k = 0; k < K; k++) {
    double sum = 0;
    for (size_t p = 0; p < np; p++) sum += s->y[k][p];
    mean[k] = sum / (double)np;
  }
  if (hint && hint->rects && hint->nrects > 0) {
    if (!(allow = calloc(np, 1))) goto fail;
    for (int i = 0; i < hint->nrects; i++)
      for (int y = hint->rects[i][1]; y < hint->rects[i][1] + hint->rects[i][3]; y++)
        for (int x = hint->rects[i][0]; x < hint->rects[i][0] + hint->rects[i][2]; x++)
          if (x >= 0 && y >= 0 && x < W && y < H) allow[(size_t)y * W + x] = 1;
  }
  /* 1. windows: the edges that stay while the scene around them moves, in
   * windows that are not fades; kept where that held in two windows or more
   * (one still moment of the scene is not a mark) when there are enough */
  int win = K < WIN ? K : WIN, step = win / 2 > 0 ? win / 2 : 1, nwin = 0;
  double act_sum = 0;
  int act_n = 0;
  for (int a = 0;; a += step) {
    if (a + win > K) a = K - win;
    int n = window_idx(mean, a, win, idx);
    if (n > 0) {
      window_stats(s, idx, n, 0, 0, W, H, M, G, NULL);
      static_edges(M, G, W, H, et, rt, E);
      window_motion(s, idx, n, mean, L, Lt);
      {   /* the scene's activity: the median of L over the frame, every 4th pixel */
        size_t nl = 0;
        for (size_t p = 0; p < np; p += 4) Lt[nl++] = L[p];
        qsort(Lt, nl, sizeof *Lt, cmp_float);
        act_sum += Lt[nl / 2];
        act_n++;
      }
      for (int k = 0; k < n; k++) used[idx[k]] = 1;
      for (size_t p = 0; p < np; p++) {
        if (!E[p] || (allow && !allow[p]) || L[p] < MOVE_T) continue;
        float gm = G[p];
        if (!votes[p] || gm > best[p]) { best[p] = gm; bestwin[p] = (int16_t)a; }
        if (votes[p] < 255) votes[p]++;
      }
      nwin++;
    }
    if (a + win >= K) break;
  }
  {
    int need = nwin >= 4 ? 2 : 1;
    for (size_t p = 0; p < np; p++) any[p] = votes[p] >= need;
  }
  /* a group of those edges over much of the frame is the scene moving slowly (a mark may be merged
   * with it): of its edges, keep those that stay over all the samples the windows used (a mark there
   * the whole time does; a slow scene's edges do not) */
  {
    memcpy(dil, any, np);
    if ((r = morph(dil, W, H, 2, 1)) < 0) goto fail;
    r = KILN_ENOMEM;
    memset(E, 0, np);
    for (size_t p = 0; p < np; p++) lab[p] = -1;
    int big = 0;
    for (size_t p0 = 0; p0 < np; p0++) {
      if (!dil[p0] || lab[p0] >= 0) continue;
      int gb[4];
      flood8(dil, lab, stack, W, H, p0, (int)p0, NULL, gb);
      int x0 = gb[0], y0 = gb[1], x1 = gb[2], y1 = gb[3];
      if ((long)(x1 - x0 + 1) * (y1 - y0 + 1) <= (long)np / 6) continue;
      big = 1;
      for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
          if (lab[(size_t)y * W + x] == (int)p0) E[(size_t)y * W + x] = 1;
    }
    int nu = 0;
    for (int k = 0; k < K; k++)
      if (used[k]) idx[nu++] = k;
    if (big && nu >= 3) {
      window_stats(s, idx, nu, 0, 0, W, H, M, G, NULL);
      static_edges(M, G, W, H, et, rt, votes);
      for (size_t p = 0; p < np; p++)
        if (E[p] && !votes[p]) any[p] = 0;
    }
  }
  /* the ring around a mark must move like the scene does: RING_CHANGE_T on a scene of
   * ordinary contrast, less on a dark or washed-out one (its every change is smaller) */
  double activity = act_n ? act_sum / act_n : 0;
  double ring_t = RING_REL * activity < RING_CHANGE_T ? RING_REL * activity : RING_CHANGE_T;
  if (ring_t < RING_MIN_T) ring_t = RING_MIN_T;
  /* 2. candidates: connected groups of those edges (joined over 2 pixels) */
  memcpy(dil, any, np);
  if ((r = morph(dil, W, H, 2, 1)) < 0) goto fail;
  r = KILN_ENOMEM;
  for (size_t p = 0; p < np; p++) lab[p] = -1;
  int ncand = 0;
  for (size_t p0 = 0; p0 < np; p0++) {
    if (!dil[p0] || lab[p0] >= 0) continue;
    int cid = ncand++, cb[4];
    int ne = flood8(dil, lab, stack, W, H, p0, cid, any, cb);
    int x0 = cb[0], y0 = cb[1], x1 = cb[2], y1 = cb[3];
    if (ne < MIN_EDGE_PX) continue;
    /* the window where most of its edges were strongest: its mean is the reference */
    int votes_best = -1, ref = 0;
    for (int a = 0; a < K; a += step) {
      int v = 0;
      for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
          size_t q = (size_t)y * W + x;
          if (any[q] && lab[q] == cid && bestwin[q] == a) v++;
        }
      if (v > votes_best) { votes_best = v; ref = a; }
    }
    {   /* the last window may start off the step grid */
      int a = K - win, v = 0;
      for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
          size_t q = (size_t)y * W + x;
          if (any[q] && lab[q] == cid && bestwin[q] == a) v++;
        }
      if (v > votes_best) ref = a;
    }
    int pad = 4;
    int bx = x0 - pad < 0 ? 0 : x0 - pad, by = y0 - pad < 0 ? 0 : y0 - pad;
    int bw = (x1 + pad >= W ? W - 1 : x1 + pad) - bx + 1, bh = (y1 + pad >= H ? H - 1 : y1 + pad) - by + 1;
    size_t bn = (size_t)bw * bh;
    float *Mr = malloc(bn * sizeof *Mr), *Gr = malloc(bn * sizeof *Gr);
    gxr = malloc(bn * sizeof *gxr);
    gyr = malloc(bn * sizeof *gyr);
    if (!Mr || !Gr || !gxr || !gyr) { free(Mr); free(Gr); goto fail; }
    int nref = window_idx(mean, ref, win, idx);
    if (nref == 0) {
      nref = win;
      for (int k = 0; k < win; k++) idx[k] = ref + k;
    }
    window_stats(s, idx, nref, bx, by, bw, bh, Mr, Gr, NULL);
    double den = 0;
    for (int y = 0; y < bh; y++)
      for (int x = 0; x < bw; x++) {
        size_t p = (size_t)y * bw + x, q = (size_t)(by + y) * W + bx + x;
        gxr[p] = gyr[p] = 0;
        if (!any[q] || lab[q] != cid || x == 0 || y == 0 || x == bw - 1 || y == bh - 1) continue;
        gxr[p] = Mr[p + 1] - Mr[p - 1];
        gyr[p] = Mr[p + bw] - Mr[p - bw];
        den += (double)gxr[p] * gxr[p] + (double)gyr[p] * gyr[p];
      }
    free(Mr);
    free(Gr);
    /* 3. presence sample by sample (see the file comment) */
    uint8_t *on = calloc(bn, 1), *near = calloc(bn, 1);
    if (!on || !near) { free(on); free(near); goto fail; }
    for (size_t p = 0; p < bn; p++) on[p] = gxr[p] != 0 || gyr[p] != 0;
    memcpy(near, on, bn);
    if (morph(near, bw, bh, 3, 1) < 0) { free(on); free(near); goto fail; }
    {
      uint8_t *core = malloc(bn);
      if (!core) { free(on); free(near); goto fail; }
      memcpy(core, on, bn);
      if (morph(core, bw, bh, 1, 1) < 0) { free(core); free(on); free(near); goto fail; }
      for (size_t p = 0; p < bn; p++) near[p] = near[p] && !core[p];
      free(core);
    }
    for (int k = 0; k < K; k++) {
      const uint8_t *I = s->y[k];
      double son = 0, snear = 0;
      long non = 0, nnear = 0;
      for (int y = 1; y < bh - 1; y++)
        for (int x = 1; x < bw - 1; x++) {
          size_t p = (size_t)y * bw + x;
          if (!on[p] && !near[p]) continue;
          int gx0 = bx + x, gy0 = by + y;
          if (gx0 < 1 || gy0 < 1 || gx0 >= W - 1 || gy0 >= H - 1) continue;
          const uint8_t *q = I + (size_t)gy0 * W + gx0;
          double g = 0.5 * (abs(q[1] - q[-1]) + abs(q[W] - q[-W]));
          if (on[p]) { son += g; non++; }
          else { snear += g; nnear++; }
        }
      double a = non ? son / non : 0, b = nnear ? snear / nnear : 0;
      pres[k] = (float)(a / (b + 2.0));
    }
    free(on);
    free(near);
    (void)den;
    free(gxr); free(gyr);
    gxr = gyr = NULL;
    /* 4. runs of present samples (one absent sample inside a run is bridged) */
    for (int k = 0; k < K;) {
      if (pres[k] < PRESENT_T) { k++; continue; }
      int first = k, last = k, n = 0;
      double psum = 0;
      for (int j = k; j < K; j++) {
        if (pres[j] >= PRESENT_T) { last = j; idx[n++] = j; psum += pres[j]; }
        else if (!(j + 1 < K && pres[j + 1] >= PRESENT_T)) break;
      }
      k = last + 1;
      if (n < 2 && K > 2) continue;
      if ((r = refine_run(s, idx, n, bx, by, bw, bh, lab, cid, et, ring_t, first, last, psum / n, out, nout, &cap)) < 0)
        goto fail;
      r = KILN_ENOMEM;
    }
  }
  r = 0;
fail:
  free(M); free(G); free(best); free(E); free(any); free(dil); free(allow); free(bestwin); free(lab); free(idx);
  free(stack); free(pres); free(gxr); free(gyr); free(L); free(Lt); free(mean); free(votes); free(used);
  if (r < 0) { ki_wm_found_free(*out, *nout); *out = NULL; *nout = 0; }
  return r;
}
