/* winograd.c — 3x3, stride-1, undilated, ungrouped convolutions by
 * Winograd's minimal filtering (Lavin & Gray, "Fast Algorithms for
 * Convolutional Neural Networks", 2015), for the executor (net.c):
 * F(6x6, 3x3) by default, F(4x4, 3x3) with KILN_NN_WINOGRAD=4.
 *
 * Each m x m block of output pixels ("tile", m = 6 or 4) is computed from
 * the n x n input patch under it (n = m + 2): V = Bt d B per input
 * channel, U = G g Gt per (output, input) channel pair (once per layer, at
 * first use), then for each of the n * n transformed positions xi a matrix
 * product M[xi] = V[xi] (tiles x C) . U[xi] (C x K), and Y = At M A per
 * tile and output channel, with the bias and the activation (ReLU, leaky
 * ReLU, or a following PReLU that net.c fuses in) applied before the
 * store. F(6x6) takes 64 multiplies per tile and channel pair for 36
 * outputs where the direct convolution takes 324 (5.1x fewer; F(4x4): 36
 * for 16, 4x). Its transforms use the points 0, +-1, +-2, +-1/2: the error
 * grows with the tile (about 2e-5 against 9e-6 for F(4x4) on the video
 * model's output), far inside the 1e-3 the models are held to.
 *
 * Work is split in blocks of NB tiles; a block's V and M stay in the cache
 * of the thread that owns it (per-thread scratch, grown once and reused for
 * every layer and frame). The blocks are shared out to a thread pool with
 * an atomic counter. The product is an AVX2/FMA kernel of 6 tiles x 16
 * output channels when the CPU has them, else portable C of the same shape;
 * the transforms are GCC vector-extension C compiled for both. Channels are
 * padded with zeros to multiples of 8 (inputs) and 16 (outputs), so any C
 * and K work.
 *
 * Invariants: U for a layer depends only on its weights (not the input
 * size); every output element is written exactly once; results equal the
 * direct path's within float rounding (tests/test_nn.c checks 1e-5 for both
 * tile sizes and both kernels, tests/nn_compare.sh the real weights against
 * PyTorch). */
#include "nn/net.h"
#include "util/pool.h"

#include <immintrin.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define NB 12                   /* tiles per block: a multiple of the kernel's 6 rows */
/* Floats between one xi's matrix and the next in a block's V and M: a
 * cache line more than the matrix, so the n * n do not fall on the same L1
 * sets (NB * 64 floats is a multiple of 4 KiB's aliasing stride). */
#define VS(cp) ((size_t)NB * (cp) + 16)
#define MAXTHR 64

typedef struct kn_wino_layer {
  const kn_layer *l;
  int c, k, cp, kp;             /* channels in/out, and padded to 8 / 16 */
  int m;                        /* output tile side: 4 or 6 (n = m + 2 transformed points) */
  float *u;                     /* [n * n][cp][kp] */
  float *bias;                  /* [kp] (zeros without one) */
} kn_wino_layer;

typedef struct wino_scratch {
  float *v, *m, *patch;         /* [n * n][VS(cp)], [n * n][VS(kp)], [n * n][cp] */
  size_t vcap, mcap, pcap;      /* floats allocated */
} wino_scratch;

struct kn_wino {
  kn_wino_layer *ls;
  int n, cap;
  kp_pool *pool;                /* NULL: one thread */
  int nthr;
  wino_scratch s[MAXTHR];
  int avx2;
  int m;                        /* the tile side for new layers: 6 (default) or 4 (KILN_NN_WINOGRAD=4) */
  int asked;                    /* kn_wino_new's threads argument */
};

kn_wino *kn_wino_new(int threads) {
  kn_wino *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->asked = threads;
  const char *env = getenv("KILN_NN_THREADS");
  if (threads <= 0 && env) threads = (int)strtol(env, NULL, 10);
  w->nthr = threads > 0 ? threads : kp_ncpu();
  if (w->nthr > MAXTHR) w->nthr = MAXTHR;
  if (w->nthr > 1 && !(w->pool = kp_pool_new(w->nthr))) { free(w); return NULL; }
  __builtin_cpu_init();
  w->avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && !getenv("KILN_NN_NO_AVX2");
  const char *m = getenv("KILN_NN_WINOGRAD");
  w->m = m && !strcmp(m, "4") ? 4 : 6;
  return w;
}

void kn_wino_free(kn_wino *w) {
  if (!w) return;
  if (w->pool) kp_pool_free(w->pool);
  for (int i = 0; i < w->n; i++) { free(w->ls[i].u); free(w->ls[i].bias); }
  for (int i = 0; i < MAXTHR; i++) { free(w->s[i].v); free(w->s[i].m); free(w->s[i].patch); }
  free(w->ls);
  free(w);
}

int kn_wino_asked(const kn_wino *w) { return w->asked; }

int kn_wino_shape(const kn_layer *l, const kn_tensor *x, int *oh, int *ow) {
  if (strcmp(l->type, "Convolution")) return 0;
  int kw = (int)kn_param(l, 1, 0), kh = (int)kn_param(l, 11, (float)kw);
  int dw = (int)kn_param(l, 2, 1), dh = (int)kn_param(l, 12, (float)dw), sw = (int)kn_param(l, 3, 1),
      sh = (int)kn_param(l, 13, (float)sw);
  int pl = (int)kn_param(l, 4, 0), pt = (int)kn_param(l, 14, (float)pl), pr = (int)kn_param(l, 15, (float)pl),
      pb = (int)kn_param(l, 16, (float)pt);
  int oc = (int)kn_param(l, 0, 0), act = (int)kn_param(l, 9, 0);
  if (kw != 3 || kh != 3 || dw != 1 || dh != 1 || sw != 1 || sh != 1 || pl < 0 || pt < 0 || pr < 0 || pb < 0 || pl > 2 ||
      pt > 2 || pr > 2 || pb > 2 || act > 2 || oc < 1 || (int64_t)oc * x->c * 9 != l->nweight)
    return 0;
  *oh = x->h + pt + pb - 2;
  *ow = x->w + pl + pr - 2;
  return *oh >= 1 && *ow >= 1;
}

/* U = G g Gt for every (k, c), in double; G's rows are the points 0, -1, 1,
 * -1/2 and 1/2 scaled, and infinity. */
static kn_wino_layer *layer_for(kn_wino *w, const kn_layer *l, int c, kiln_err *e) {
  for (int i = 0; i < w->n; i++)
    if (w->ls[i].l == l && w->ls[i].c == c) return &w->ls[i];
  if (w->n == w->cap) {
    int cap = w->cap ? 2 * w->cap : 32;
    kn_wino_layer *nl = realloc(w->ls, (size_t)cap * sizeof *nl);
    if (!nl) { kiln_fail(e, KILN_ENOMEM, "out of memory"); return NULL; }
    w->ls = nl;
    w->cap = cap;
  }
  /* G for F(4x4, 3x3) (points 0, +-1, +-2 and infinity) and F(6x6, 3x3)
   * (0, +-1, +-2, +-1/2, infinity), scaled to match the At below. */
  static const double G4[6][3] = {{1.0 / 4, 0, 0},          {-1.0 / 6, -1.0 / 6, -1.0 / 6}, {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                  {1.0 / 24, 1.0 / 12, 1.0 / 6}, {1.0 / 24, -1.0 / 12, 1.0 / 6}, {0, 0, 1}};
  static const double G6[8][3] = {{1, 0, 0},
                                  {-2.0 / 9, -2.0 / 9, -2.0 / 9},
                                  {-2.0 / 9, 2.0 / 9, -2.0 / 9},
                                  {1.0 / 90, 1.0 / 45, 2.0 / 45},
                                  {1.0 / 90, -1.0 / 45, 2.0 / 45},
                                  {1.0 / 45, 1.0 / 90, 1.0 / 180},
                                  {1.0 / 45, -1.0 / 90, 1.0 / 180},
                                  {0, 0, 1}};
  kn_wino_layer *L = &w->ls[w->n];
  L->l = l;
  L->c = c;
  L->m = w->m;
  int n = L->m + 2;
  const double(*G)[3] = L->m == 4 ? G4 : G6;
  L->k = (int)kn_param(l, 0, 0);
  L->cp = (c + 7) / 8 * 8;
  L->kp = (L->k + 15) / 16 * 16;
  L->u = calloc((size_t)n * n * L->cp * L->kp, sizeof *L->u);
  L->bias = calloc((size_t)L->kp, sizeof *L->bias);
  if (!L->u || !L->bias) {
    free(L->u);
    free(L->bias);
    kiln_fail(e, KILN_ENOMEM, "out of memory");
    return NULL;
  }
  for (int k = 0; k < L->k; k++) {
    if (l->bias) L->bias[k] = l->bias[k];
    for (int ci = 0; ci < c; ci++) {
      const float *g = l->weight + ((size_t)k * c + ci) * 9;
      double t[8][3];                                   /* G g */
      for (int i = 0; i < n; i++)
        for (int j = 0; j < 3; j++) t[i][j] = G[i][0] * g[0 * 3 + j] + G[i][1] * g[1 * 3 + j] + G[i][2] * g[2 * 3 + j];
      for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
          L->u[((size_t)(i * n + j) * L->cp + ci) * L->kp + k] = (float)(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
    }
  }
  w->n++;
  return L;
}

typedef struct wino_job {
  kn_wino *w;
  const kn_wino_layer *L;
  const kn_tensor *x;
  kn_tensor *y;
  const float *slope;           /* [kp]: negative values are multiplied by it */
  int pt, pl, tw, ntiles, nblocks;
  atomic_int next;
  int tid_next;
} wino_job;

/* Eight channels at once, in GCC's vector extension (one AVX register, or
 * two SSE ones in the portable build); loads and stores need no alignment. */
typedef float v8 __attribute__((vector_size(32), aligned(4)));
typedef int v8i __attribute__((vector_size(32), aligned(4)));

/* The 1-D transforms, 8 channels at a time: Bt for F(4x4) (6 values to 6),
 * At for F(4x4) (6 to 4, each plus add), Bt for F(6x6) (8 to 8). Each 2-D
 * transform is one of them down the columns, then along the rows. */
static inline __attribute__((always_inline)) void bt6(const v8 d[6], v8 o[6]) {
  o[0] = 4 * d[0] - 5 * d[2] + d[4];
  o[1] = -4 * (d[1] + d[2]) + d[3] + d[4];
  o[2] = 4 * (d[1] - d[2]) - d[3] + d[4];
  o[3] = 2 * (d[3] - d[1]) - d[2] + d[4];
  o[4] = 2 * (d[1] - d[3]) - d[2] + d[4];
  o[5] = 4 * d[1] - 5 * d[3] + d[5];
}

static inline __attribute__((always_inline)) void at6(const v8 m[6], v8 add, v8 o[4]) {
  v8 a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
  o[0] = m[0] + a + c + add;
  o[1] = b + 2 * d + add;
  o[2] = a + 4 * c + add;
  o[3] = b + 8 * d + m[5] + add;
}

static inline __attribute__((always_inline)) void bt8(const v8 d[8], v8 o[8]) {
  v8 a = d[2] + d[6] - 4.25f * d[4], b = d[1] + d[5] - 4.25f * d[3];
  v8 c = 0.25f * d[2] - 1.25f * d[4] + d[6], e = 0.5f * d[1] - 2.5f * d[3] + 2 * d[5];
  v8 f = 4 * d[2] - 5 * d[4] + d[6], g = 2 * d[1] - 2.5f * d[3] + 0.5f * d[5];
  o[0] = d[0] - d[6] + 5.25f * (d[4] - d[2]);
  o[1] = a + b;
  o[2] = a - b;
  o[3] = c + e;
  o[4] = c - e;
  o[5] = f + g;
  o[6] = f - g;
  o[7] = d[7] - d[1] + 5.25f * (d[3] - d[5]);
}

/* *o = x < 0 ? x * slope : x, lane by lane (through a pointer: a vector
 * return value would change the ABI between the AVX2 and portable builds). */
static inline __attribute__((always_inline)) void leaky(v8 *o, const v8 *x, const v8 *slope) {
  v8 zero = {0};
  v8i neg = *x < zero;                                    /* -1 where negative */
  *o = (v8)(((v8i)(*x * *slope) & neg) | ((v8i)*x & ~neg));
}

/* Bt d B over an n x n patch (n = 6 or 8) for 8 channels; the patch's
 * (r, q) is at p[r * rs + q * cs], v gets v[xi * vs]. */
static inline __attribute__((always_inline)) void in_tf(int n, const float *p, size_t rs, size_t cs, float *v, size_t vs) {
  v8 t[8][8], d[8], o[8];                                 /* t[j][i]: column j's i-th value */
  for (int j = 0; j < n; j++) {
    for (int r = 0; r < n; r++) d[r] = *(const v8 *)(p + j * cs + r * rs);
    if (n == 6) bt6(d, t[j]);
    else bt8(d, t[j]);
  }
  for (int i = 0; i < n; i++) {
    for (int j = 0; j < n; j++) d[j] = t[j][i];
    if (n == 6) bt6(d, o);
    else bt8(d, o);
    for (int q = 0; q < n; q++) *(v8 *)(v + (i * n + q) * vs) = o[q];
  }
}

/* At m A for F(4x4, 3x3) and 8 output channels, then the bias and the
 * negative slope; m is m[xi * ms]; o gets [16]. */
static inline __attribute__((always_inline)) void out_tf8(const float *m, size_t ms, const float *bias, const float *slope,
                                                          v8 o[16]) {
  v8 t[6][4], r[6], y[4], zero = {0};                    /* t[j][i]: column j's i-th value */
  for (int j = 0; j < 6; j++) {
    for (int i = 0; i < 6; i++) r[i] = *(const v8 *)(m + (i * 6 + j) * ms);
    at6(r, zero, t[j]);
  }
  v8 bi = *(const v8 *)bias, sl = *(const v8 *)slope;
  for (int i = 0; i < 4; i++) {
    for (int j = 0; j < 6; j++) r[j] = t[j][i];
    at6(r, bi, y);
    for (int q = 0; q < 4; q++) leaky(&o[i * 4 + q], &y[q], &sl);
  }
}

/* At r for F(6x6, 3x3): the 8 values r[0..7] to 6 in y, each plus add. */
static inline __attribute__((always_inline)) void at8(const v8 r[8], v8 add, v8 y[6]) {
  v8 a1 = r[1] + r[2], b1 = r[1] - r[2], a2 = r[3] + r[4], b2 = r[3] - r[4], a3 = r[5] + r[6], b3 = r[5] - r[6];
  y[0] = r[0] + a1 + a2 + 32 * a3 + add;
  y[1] = b1 + 2 * b2 + 16 * b3 + add;
  y[2] = a1 + 4 * a2 + 8 * a3 + add;
  y[3] = b1 + 8 * b2 + 4 * b3 + add;
  y[4] = a1 + 16 * a2 + 2 * a3 + add;
  y[5] = b1 + 32 * b2 + b3 + r[7] + add;
}

/* At m A for F(6x6, 3x3), then the bias and the negative slope; o gets [36]. */
static inline __attribute__((always_inline)) void out_tf8_6(const float *m, size_t ms, const float *bias, const float *slope,
                                                            v8 o[36]) {
  v8 t[8][6], zero = {0};                         /* t[j][i]: column j's i-th value */
  for (int j = 0; j < 8; j++) {
    v8 r[8];
    for (int i = 0; i < 8; i++) r[i] = *(const v8 *)(m + (i * 8 + j) * ms);
    at8(r, zero, t[j]);
  }
  v8 bi = *(const v8 *)bias, sl = *(const v8 *)slope;
  for (int i = 0; i < 6; i++) {
    v8 r[8], y[6];
    for (int j = 0; j < 8; j++) r[j] = t[j][i];
    at8(r, bi, y);
    for (int q = 0; q < 6; q++) leaky(&o[i * 6 + q], &y[q], &sl);
  }
}

/* M = V . U for one xi: v [NB][cp], u [cp][kp], m [NB][kp]; nb a multiple of 6. */
__attribute__((target("avx2,fma"))) static void gemm_avx2(const float *v, const float *u, float *m, int nb, int cp, int kp) {
  for (int k = 0; k < kp; k += 16)
    for (int t = 0; t < nb; t += 6) {
      __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
             c40 = c00, c41 = c00, c50 = c00, c51 = c00;
      const float *a = v + (size_t)t * cp, *b = u + k;
      for (int i = 0; i < cp; i++, b += kp) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8), x;
        x = _mm256_broadcast_ss(a + i);
        c00 = _mm256_fmadd_ps(x, b0, c00);
        c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a + cp + i);
        c10 = _mm256_fmadd_ps(x, b0, c10);
        c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a + 2 * cp + i);
        c20 = _mm256_fmadd_ps(x, b0, c20);
        c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a + 3 * cp + i);
        c30 = _mm256_fmadd_ps(x, b0, c30);
        c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a + 4 * cp + i);
        c40 = _mm256_fmadd_ps(x, b0, c40);
        c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a + 5 * cp + i);
        c50 = _mm256_fmadd_ps(x, b0, c50);
        c51 = _mm256_fmadd_ps(x, b1, c51);
      }
      float *o = m + (size_t)t * kp + k;
      _mm256_storeu_ps(o, c00);
      _mm256_storeu_ps(o + 8, c01);
      _mm256_storeu_ps(o + kp, c10);
      _mm256_storeu_ps(o + kp + 8, c11);
      _mm256_storeu_ps(o + 2 * kp, c20);
      _mm256_storeu_ps(o + 2 * kp + 8, c21);
      _mm256_storeu_ps(o + 3 * kp, c30);
      _mm256_storeu_ps(o + 3 * kp + 8, c31);
      _mm256_storeu_ps(o + 4 * kp, c40);
      _mm256_storeu_ps(o + 4 * kp + 8, c41);
      _mm256_storeu_ps(o + 5 * kp, c50);
      _mm256_storeu_ps(o + 5 * kp + 8, c51);
    }
}

static inline __attribute__((always_inline)) void gemm_c(const float *v, const float *u, float *m, int nb, int cp, int kp) {
  for (int k = 0; k < kp; k += 16)
    for (int t = 0; t < nb; t += 6) {
      float acc[6][16] = {{0}};
      const float *b = u + k;
      for (int i = 0; i < cp; i++, b += kp)
        for (int r = 0; r < 6; r++) {
          float a = v[(size_t)(t + r) * cp + i];
          for (int q = 0; q < 16; q++) acc[r][q] += a * b[q];
        }
      for (int r = 0; r < 6; r++) memcpy(m + (size_t)(t + r) * kp + k, acc[r], sizeof acc[r]);
    }
}

/* One block of tiles: gather and transform the inputs, the n * n
 * products, and the output transform with bias and activation. */
static inline __attribute__((always_inline)) void block(wino_job *j, wino_scratch *s, int b, int avx2) {
  const kn_wino_layer *L = j->L;
  const kn_tensor *x = j->x;
  kn_tensor *y = j->y;
  int cp = L->cp, kp = L->kp, c = L->c, k = L->k, tm = L->m, n = tm + 2, nx = n * n;
  int t0 = b * NB, nt = j->ntiles - t0 < NB ? j->ntiles - t0 : NB, nb = (nt + 5) / 6 * 6;
  for (int t = 0; t < nb; t++) {
    int ty = (t0 + t) / j->tw, tx = (t0 + t) % j->tw, iy0 = ty * tm - j->pt, ix0 = tx * tm - j->pl;
    const float *p = s->patch;
    size_t rs = (size_t)n * cp, cs = (size_t)cp;
    if (t < nt && c == cp && iy0 >= 0 && ix0 >= 0 && iy0 + n <= x->h && ix0 + n <= x->w) {
      p = x->d + ((size_t)iy0 * x->w + ix0) * c;          /* inside the frame: read it in place */
      rs = (size_t)x->w * c;
    } else if (t < nt) {
      for (int r = 0; r < n; r++)
        for (int q = 0; q < n; q++) {
          int iy = iy0 + r, ix = ix0 + q;
          float *d = s->patch + (r * n + q) * cp;
          if (iy < 0 || iy >= x->h || ix < 0 || ix >= x->w) {
            memset(d, 0, (size_t)cp * sizeof *d);
          } else {
            memcpy(d, x->d + ((size_t)iy * x->w + ix) * c, (size_t)c * sizeof *d);
            if (cp > c) memset(d + c, 0, (size_t)(cp - c) * sizeof *d);
          }
        }
    } else {
      memset(s->patch, 0, (size_t)nx * cp * sizeof *s->patch);
    }
    for (int q = 0; q < cp; q += 8) {
      if (n == 6) in_tf(6, p + q, rs, cs, s->v + (size_t)t * cp + q, VS(cp));   /* constant n: unrolled */
      else in_tf(8, p + q, rs, cs, s->v + (size_t)t * cp + q, VS(cp));
    }
  }
  for (int xi = 0; xi < nx; xi++) {
    const float *v = s->v + (size_t)xi * VS(cp), *u = L->u + (size_t)xi * cp * kp;
    float *m = s->m + (size_t)xi * VS(kp);
    if (avx2) gemm_avx2(v, u, m, nb, cp, kp);
    else gemm_c(v, u, m, nb, cp, kp);
  }
  for (int t = 0; t < nt; t++) {
    int ty = (t0 + t) / j->tw, tx = (t0 + t) % j->tw;
    for (int q0 = 0; q0 < k; q0 += 8) {
      v8 o[36];
      if (tm == 4) out_tf8(s->m + (size_t)t * kp + q0, VS(kp), L->bias + q0, j->slope + q0, o);
      else out_tf8_6(s->m + (size_t)t * kp + q0, VS(kp), L->bias + q0, j->slope + q0, o);
      int nq = k - q0 < 8 ? k - q0 : 8;
      for (int i = 0; i < tm; i++) {
        int oy = ty * tm + i;
        if (oy >= y->h) break;
        float *row = y->d + ((size_t)oy * y->w + tx * tm) * k + q0;
        for (int jj = 0; jj < tm && tx * tm + jj < y->w; jj++, row += k) {
          if (nq == 8) *(v8 *)row = o[i * tm + jj];
          else memcpy(row, &o[i * tm + jj], (size_t)nq * sizeof(float));
        }
      }
    }
  }
}

__attribute__((target("avx2,fma"))) static void block_avx2(wino_job *j, wino_scratch *s, int b) { block(j, s, b, 1); }
static void block_c(wino_job *j, wino_scratch *s, int b) { block(j, s, b, 0); }

static void run_blocks(wino_job *j, int tid) {
  wino_scratch *s = &j->w->s[tid];
  for (int b; (b = atomic_fetch_add(&j->next, 1)) < j->nblocks;) {
    if (j->w->avx2) block_avx2(j, s, b);
    else block_c(j, s, b);
  }
}

typedef struct wino_arg {
  wino_job *j;
  int tid;
} wino_arg;

static void task(void *a) {
  wino_arg *wa = a;
  run_blocks(wa->j, wa->tid);
}

static int grow(float **p, size_t *cap, size_t n) {
  if (*cap >= n) return 0;
  float *q = aligned_alloc(64, (n * sizeof *q + 63) / 64 * 64);
  if (!q) return -1;
  free(*p);
  *p = q;
  *cap = n;
  return 0;
}

int kn_wino_conv(kn_wino *w, const kn_layer *l, const kn_tensor *x, const float *slope, int nslope, kn_tensor *y,
                 kiln_err *e) {
  int oh, ow;
  if (!kn_wino_shape(l, x, &oh, &ow) || y->h != oh || y->w != ow || y->c != (int)kn_param(l, 0, 0))
    return kiln_fail(e, KILN_EINTERNAL, "layer '%s' is not a Winograd convolution for this input", l->name);
  const kn_wino_layer *L = layer_for(w, l, x->c, e);
  if (!L) return KILN_ENOMEM;
  float *sl = malloc((size_t)L->kp * sizeof *sl);
  if (!sl) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int act = (int)kn_param(l, 9, 0);
  const kn_param_kv *ap = kn_param_array(l, 10);
  for (int q = 0; q < L->kp; q++)
    sl[q] = slope ? slope[nslope == 1 ? 0 : q < L->k ? q : 0] : act == 1 ? 0 : act == 2 ? (ap && ap->n ? ap->v[0] : 0) : 1;
  int nthr = w->nthr;
  for (int t = 0; t < nthr; t++)
    if (grow(&w->s[t].v, &w->s[t].vcap, 64 * VS(L->cp)) < 0 || grow(&w->s[t].m, &w->s[t].mcap, 64 * VS(L->kp)) < 0 ||
        grow(&w->s[t].patch, &w->s[t].pcap, (size_t)64 * L->cp) < 0) {
      free(sl);
      return kiln_fail(e, KILN_ENOMEM, "out of memory");
    }
  int pl = (int)kn_param(l, 4, 0), pt = (int)kn_param(l, 14, (float)pl);
  wino_job j = {.w = w, .L = L, .x = x, .y = y, .slope = sl, .pt = pt, .pl = pl, .tw = (ow + L->m - 1) / L->m};
  j.ntiles = j.tw * ((oh + L->m - 1) / L->m);
  j.nblocks = (j.ntiles + NB - 1) / NB;
  atomic_init(&j.next, 0);
  if (!w->pool || j.nblocks < 2) {
    run_blocks(&j, 0);
  } else {
    wino_arg args[MAXTHR];
    int r = 0;
    for (int t = 0; t < nthr && r == 0; t++) {
      args[t] = (wino_arg){&j, t};
      r = kp_pool_submit(w->pool, task, &args[t]);
    }
    kp_pool_wait(w->pool);
    if (r < 0) run_blocks(&j, 0);                      /* a task not submitted: finish the blocks here */
  }
  free(sl);
  return 0;
}
