/* net.c — the direct CPU executor for ncnn graphs (see net.h). Parameter
 * ids follow ncnn's layer definitions: Convolution 0=num_output 1=kernel_w
 * 11=kernel_h 2/12=dilation 3/13=stride 4/14/15/16=pad left/top/right/bottom
 * (-233: same) 5=bias 6=weight size 7=groups (DepthWise) 9=activation
 * (1 relu, 2 leaky relu with 10[0], 3 clip 10[0..1], 4 sigmoid); ReLU
 * 0=slope; PReLU 0=slopes; BinaryOp 0=op (add sub mul div max min pow rsub
 * rdiv) 1=with_scalar 2=scalar; Eltwise 0=op (prod sum max) 1=coeffs;
 * Interp 0=type (1 nearest, 2 bilinear) 1/2=h/w scale 3/4=out h/w;
 * PixelShuffle 0=factor (PyTorch's channel order); Concat 0=axis (channels).
 *
 * A model is untrusted input (tests/fuzz/fuzz_ncnn.c): kn_net_load checks
 * every layer against the table `specs` (inputs and outputs, whole-number
 * parameters in range) and the graph (one Input, each blob made once and
 * before it is read) before the .bin is read, and the weight counts
 * against the kernels after; a run checks every tensor it makes against
 * the net's max_floats before allocating it, so no size computed below
 * can overflow. */
#include "nn/net.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int kn_tensor_alloc(kn_tensor *t, int h, int w, int c) {
  t->h = h;
  t->w = w;
  t->c = c;
  t->d = calloc((size_t)h * w * c, sizeof *t->d);
  return t->d ? 0 : -1;
}

void kn_tensor_free(kn_tensor *t) {
  free(t->d);
  t->d = NULL;
}

void kn_net_free(kn_net *n) {
  kn_dnnl_free(n->dnnl);
  n->dnnl = NULL;
  kn_wino_free(n->wino);
  n->wino = NULL;
  for (int i = 0; i < n->nspare; i++) free(n->spare[i].d);
  free(n->spare);
  n->spare = NULL;
  n->nspare = n->spare_cap = 0;
  kn_graph_release(&n->g);
  free(n->last_use);
  n->last_use = NULL;
}

/* What the executor accepts of each layer type: inputs, outputs, and the
 * parameters it reads as whole numbers (in [lo, hi], or -233, "same", for a
 * pad). Others (floats: slopes, scales, coefficients) only need to be
 * finite, which the reader makes sure of. */
#define KN_MAX_KERNEL 64
#define KN_MAX_PAD 1024
#define KN_MAX_CHANNELS 65536
typedef struct pspec { int id, lo, hi, same; } pspec;
typedef struct lspec { const char *type; int nin_lo, nin_hi, nout_lo, nout_hi; pspec p[16]; } lspec;
#define PEND {-1, 0, 0, 0}
#define CONV_PARAMS                                                                                                  \
  {0, 1, KN_MAX_CHANNELS, 0}, {1, 1, KN_MAX_KERNEL, 0}, {11, 1, KN_MAX_KERNEL, 0}, {2, 1, KN_MAX_KERNEL, 0},          \
      {12, 1, KN_MAX_KERNEL, 0}, {3, 1, KN_MAX_KERNEL, 0}, {13, 1, KN_MAX_KERNEL, 0}, {4, 0, KN_MAX_PAD, 1},          \
      {14, 0, KN_MAX_PAD, 1}, {15, 0, KN_MAX_PAD, 1}, {16, 0, KN_MAX_PAD, 1}, {5, 0, 1, 0}, {9, 0, 4, 0}
static const lspec specs[] = {
    {"Input", 0, 0, 1, 1, {PEND}},
    {"Split", 1, 1, 1, KN_MAX_IO, {PEND}},
    {"Convolution", 1, 1, 1, 1, {CONV_PARAMS, PEND}},
    {"ConvolutionDepthWise", 1, 1, 1, 1, {CONV_PARAMS, {7, 1, KN_MAX_CHANNELS, 0}, PEND}},
    {"PReLU", 1, 1, 1, 1, {{0, 1, KN_MAX_CHANNELS, 0}, PEND}},
    {"ReLU", 1, 1, 1, 1, {PEND}},
    {"BinaryOp", 1, 2, 1, 1, {{0, 0, 8, 0}, {1, 0, 1, 0}, PEND}},
    {"Eltwise", 1, KN_MAX_IO, 1, 1, {{0, 0, 2, 0}, PEND}},
    {"Concat", 1, KN_MAX_IO, 1, 1, {{0, 0, 0, 0}, PEND}},
    {"Interp", 1, 1, 1, 1, {{0, 1, 3, 0}, {3, 0, 1 << 20, 0}, {4, 0, 1 << 20, 0}, PEND}},
    {"PixelShuffle", 1, 1, 1, 1, {{0, 1, 16, 0}, PEND}},
};

static int check_layer(const kn_layer *l, const char *param, kiln_err *e) {
  const lspec *sp = NULL;
  for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
    if (!strcmp(specs[i].type, l->type)) sp = &specs[i];
  if (!sp) return kiln_fail(e, KILN_EINVAL, "%s: layer '%s' has type '%s', which kiln does not implement", param, l->name, l->type);
  if (l->nin < sp->nin_lo || l->nin > sp->nin_hi || l->nout < sp->nout_lo || l->nout > sp->nout_hi)
    return kiln_fail(e, KILN_ECORRUPT, "%s: layer '%s' (%s) has %d inputs and %d outputs; it takes %d to %d and makes %d to %d",
                     param, l->name, l->type, l->nin, l->nout, sp->nin_lo, sp->nin_hi, sp->nout_lo, sp->nout_hi);
  for (const pspec *ps = sp->p; ps->id >= 0; ps++) {
    const kn_param_kv *kv = kn_param_array(l, ps->id);
    if (!kv) continue;
    double v = kv->n > 0 ? kv->v[0] : 0;
    if (kv->array || kv->n != 1 || !((v >= ps->lo && v <= ps->hi && v == floor(v)) || (ps->same && v == -233)))
      return kiln_fail(e, KILN_ECORRUPT, "%s: layer '%s' (%s): parameter %d is %s%g; kiln takes a whole number from %d to %d%s",
                       param, l->name, l->type, ps->id, kv->array ? "an array, " : "", v, ps->lo, ps->hi,
                       ps->same ? " or -233 (same)" : "");
  }
  if ((!strcmp(l->type, "Convolution") || !strcmp(l->type, "ConvolutionDepthWise")) && kn_param(l, 4, 0) != -233 &&
      kn_param(l, 14, 0) != -233 && (kn_param(l, 15, 0) == -233 || kn_param(l, 16, 0) == -233))
    return kiln_fail(e, KILN_ECORRUPT, "%s: layer '%s': padding -233 (same) is given by parameter 4 or 14, not 15 or 16 alone",
                     param, l->name);
  return 0;
}

/* After the .bin: a convolution's weights fill whole kernels of its outputs (the inputs per group are what is left). */
static int check_weights(const kn_layer *l, const char *param, kiln_err *e) {
  if (strcmp(l->type, "Convolution") && strcmp(l->type, "ConvolutionDepthWise")) return 0;
  int64_t oc = (int64_t)kn_param(l, 0, 0), kw = (int64_t)kn_param(l, 1, 0), kh = (int64_t)kn_param(l, 11, (float)kw);
  int64_t groups = l->type[11] == 'D' ? (int64_t)kn_param(l, 7, 1) : 1;
  if (oc < 1 || kw < 1 || kh < 1 || l->nweight % (oc * kh * kw) || oc % groups ||
      l->nweight / (oc * kh * kw) * groups > KN_MAX_CHANNELS)
    return kiln_fail(e, KILN_ECORRUPT, "%s: layer '%s': %lld weights do not fit %lld outputs of %lldx%lld kernels in %lld groups",
                     param, l->name, (long long)l->nweight, (long long)oc, (long long)kw, (long long)kh, (long long)groups);
  return 0;
}

int kn_net_load(kn_net *n, const char *param, const char *bin, kiln_err *e) {
  memset(n, 0, sizeof *n);
  int r = kn_ncnn_parse(param, &n->g, e);
  for (int i = 0; r == 0 && i < n->g.nlayers; i++) r = check_layer(&n->g.layers[i], param, e);
  if (r == 0) r = kn_ncnn_load_bin(&n->g, bin, e);
  for (int i = 0; r == 0 && i < n->g.nlayers; i++) r = check_weights(&n->g.layers[i], param, e);
  if (r < 0) { kn_net_free(n); return r; }
  n->last_use = malloc((size_t)n->g.nblobs * sizeof *n->last_use);
  int *made = calloc((size_t)n->g.nblobs, sizeof *made), inputs = 0;
  if (!n->last_use || !made) { free(made); kn_net_free(n); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  for (int b = 0; b < n->g.nblobs; b++) n->last_use[b] = -1;
  n->in_blob = n->out_blob = -1;
  for (int i = 0; r == 0 && i < n->g.nlayers; i++) {
    const kn_layer *l = &n->g.layers[i];
    for (int k = 0; r == 0 && k < l->nin; k++) {
      if (!made[l->in[k]])
        r = kiln_fail(e, KILN_ECORRUPT, "%s: layer '%s' reads blob '%s' before any layer makes it", param, l->name,
                      n->g.blobs[l->in[k]]);
      n->last_use[l->in[k]] = i;
    }
    for (int k = 0; r == 0 && k < l->nout; k++) {
      if (made[l->out[k]])
        r = kiln_fail(e, KILN_ECORRUPT, "%s: blob '%s' is made twice (by layers '%s' and '%s')", param, n->g.blobs[l->out[k]],
                      n->g.layers[made[l->out[k]] - 1].name, l->name);
      made[l->out[k]] = i + 1;
    }
    if (!strcmp(l->type, "Input")) { inputs++; n->in_blob = l->out[0]; }
  }
  for (int b = 0; b < n->g.nblobs; b++)
    if (made[b] && n->last_use[b] < 0) n->out_blob = b;     /* made and never read: the output */
  free(made);
  if (r == 0 && (inputs != 1 || n->out_blob < 0 || n->out_blob == n->in_blob))
    r = kiln_fail(e, KILN_ECORRUPT, "%s: the model has %d Input layers (one is needed) or no output blob", param, inputs);
  if (r < 0) kn_net_free(n);
  return r;
}

/* 0 if a layer may make an h x w x c tensor (each at least 1, h*w*c within the net's limit). */
static int size_ok(const kn_net *net, const kn_layer *l, int64_t h, int64_t w, int64_t c, kiln_err *e) {
  int64_t lim = net->max_floats > 0 ? net->max_floats : KN_MAX_FLOATS;
  if (h >= 1 && w >= 1 && c >= 1 && h <= lim && w <= lim && c <= lim && h * w <= lim && h * w * c <= lim) return 0;
  if (h < 1 || w < 1 || c < 1)
    return kiln_fail(e, KILN_EINVAL, "layer '%s' would make an empty %lldx%lldx%lld tensor (an input smaller than a kernel,"
                     " or a size of 0)", l->name, (long long)h, (long long)w, (long long)c);
  return kiln_fail(e, KILN_EINVAL, "layer '%s' would make a %lldx%lldx%lld tensor, over the limit of %lld values", l->name,
                   (long long)h, (long long)w, (long long)c, (long long)lim);
}

/* A convolution on x: its geometry, with "same" padding resolved (int64: nothing overflows). */
typedef struct conv_geom { int64_t oc, kw, kh, dw, dh, sw, sh, pl, pt, pr, pb, groups, oh, ow; } conv_geom;
static void conv_geometry(const kn_layer *l, const kn_tensor *x, int depthwise, conv_geom *g) {
  g->oc = (int64_t)kn_param(l, 0, 0), g->kw = (int64_t)kn_param(l, 1, 0), g->kh = (int64_t)kn_param(l, 11, (float)g->kw);
  g->dw = (int64_t)kn_param(l, 2, 1), g->dh = (int64_t)kn_param(l, 12, (float)g->dw), g->sw = (int64_t)kn_param(l, 3, 1),
  g->sh = (int64_t)kn_param(l, 13, (float)g->sw);
  g->pl = (int64_t)kn_param(l, 4, 0), g->pt = (int64_t)kn_param(l, 14, (float)g->pl), g->pr = (int64_t)kn_param(l, 15, (float)g->pl),
  g->pb = (int64_t)kn_param(l, 16, (float)g->pt);
  g->groups = depthwise ? (int64_t)kn_param(l, 7, 1) : 1;
  if (g->pl == -233 || g->pt == -233) {          /* SAME */
    int64_t ph = ((x->h + g->sh - 1) / g->sh - 1) * g->sh + (g->kh - 1) * g->dh + 1 - x->h,
            pw = ((x->w + g->sw - 1) / g->sw - 1) * g->sw + (g->kw - 1) * g->dw + 1 - x->w;
    g->pt = ph > 0 ? ph / 2 : 0, g->pb = ph > 0 ? ph - g->pt : 0, g->pl = pw > 0 ? pw / 2 : 0, g->pr = pw > 0 ? pw - g->pl : 0;
  }
  int64_t eh = x->h + g->pt + g->pb - ((g->kh - 1) * g->dh + 1), ew = x->w + g->pl + g->pr - ((g->kw - 1) * g->dw + 1);
  g->oh = eh < 0 ? 0 : eh / g->sh + 1;
  g->ow = ew < 0 ? 0 : ew / g->sw + 1;
}

static float act(float v, int type, const kn_param_kv *ap) {
  switch (type) {
  case 1: return v > 0 ? v : 0;
  case 2: return v > 0 ? v : v * (ap && ap->n > 0 ? ap->v[0] : 0);
  case 3: {                                      /* clip to [10[0], 10[1]] (0 when not given) */
    float lo = ap && ap->n > 0 ? ap->v[0] : 0, hi = ap && ap->n > 1 ? ap->v[1] : 0;
    return v < lo ? lo : v > hi ? hi : v;
  }
  case 4: return 1 / (1 + expf(-v));
  default: return v;
  }
}

static int conv(const kn_layer *l, const kn_tensor *x, kn_tensor *y, int depthwise, kiln_err *e) {
  conv_geom G;
  conv_geometry(l, x, depthwise, &G);
  int oc = (int)G.oc, kw = (int)G.kw, kh = (int)G.kh, dw = (int)G.dw, dh = (int)G.dh, sw = (int)G.sw, sh = (int)G.sh;
  int pl = (int)G.pl, pt = (int)G.pt, groups = (int)G.groups;
  if (oc < 1 || kw < 1 || kh < 1 || groups < 1 || x->c % groups || oc % groups ||
      (int64_t)oc * (x->c / groups) * kh * kw != l->nweight)
    return kiln_fail(e, KILN_ECORRUPT, "layer '%s': %d weights do not fit %d outputs, %d inputs, %dx%d kernel, %d groups",
                     l->name, (int)l->nweight, oc, x->c, kw, kh, groups);
  int oh = (int)G.oh, ow = (int)G.ow;             /* run_layer checked them (size_ok) */
  if (oh < 1 || ow < 1) return kiln_fail(e, KILN_EINVAL, "layer '%s': the input is smaller than the kernel", l->name);
  if (kn_tensor_alloc(y, oh, ow, oc) < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int icg = x->c / groups, ocg = oc / groups, at = (int)kn_param(l, 9, 0);
  const kn_param_kv *ap = kn_param_array(l, 10);
  for (int oy = 0; oy < oh; oy++)
    for (int ox = 0; ox < ow; ox++)
      for (int o = 0; o < oc; o++) {
        int g = o / ocg;
        double s = l->bias ? l->bias[o] : 0;
        const float *wt = l->weight + (size_t)o * icg * kh * kw;
        for (int ky = 0; ky < kh; ky++) {
          int iy = oy * sh - pt + ky * dh;
          if (iy < 0 || iy >= x->h) continue;
          for (int kx = 0; kx < kw; kx++) {
            int ix = ox * sw - pl + kx * dw;
            if (ix < 0 || ix >= x->w) continue;
            const float *px = x->d + ((size_t)iy * x->w + ix) * x->c + (size_t)g * icg;
            for (int ic = 0; ic < icg; ic++) s += (double)wt[((size_t)ic * kh + ky) * kw + kx] * px[ic];
          }
        }
        y->d[((size_t)oy * ow + ox) * oc + o] = act((float)s, at, ap);
      }
  return 0;
}

static float binop(int op, float a, float b) {
  switch (op) {
  case 0: return a + b;
  case 1: return a - b;
  case 2: return a * b;
  case 3: return a / b;
  case 4: return a > b ? a : b;
  case 5: return a < b ? a : b;
  case 6: return powf(a, b);
  case 7: return b - a;
  case 8: return b / a;
  default: return a;
  }
}

/* Keys' cubic with a = -0.75 (ncnn's and PyTorch's bicubic). */
static void cubic_w(float t, float w[4]) {
  const float a = -0.75f;
  float x0 = t + 1, x1 = t, x2 = 1 - t, x3 = 2 - t;
  w[0] = ((a * x0 - 5 * a) * x0 + 8 * a) * x0 - 4 * a;
  w[1] = ((a + 2) * x1 - (a + 3)) * x1 * x1 + 1;
  w[2] = ((a + 2) * x2 - (a + 3)) * x2 * x2 + 1;
  w[3] = ((a * x3 - 5 * a) * x3 + 8 * a) * x3 - 4 * a;
}

static float sample_cubic(const kn_tensor *x, int c, float fy, float fx) {
  fy -= 0.5f;                                     /* half-pixel centres; taps clamped at the edges */
  fx -= 0.5f;
  int y0 = (int)floorf(fy), x0 = (int)floorf(fx);
  float wy[4], wx[4], acc = 0;
  cubic_w(fy - y0, wy);
  cubic_w(fx - x0, wx);
  for (int i = 0; i < 4; i++) {
    int yy = y0 - 1 + i;
    yy = yy < 0 ? 0 : yy >= x->h ? x->h - 1 : yy;
    float row = 0;
    for (int k = 0; k < 4; k++) {
      int xx = x0 - 1 + k;
      xx = xx < 0 ? 0 : xx >= x->w ? x->w - 1 : xx;
      row += wx[k] * x->d[((size_t)yy * x->w + xx) * x->c + c];
    }
    acc += wy[i] * row;
  }
  return acc;
}

static float sample(const kn_tensor *x, int c, float fy, float fx, int bilinear) {
  if (bilinear == 3) return sample_cubic(x, c, fy, fx);
  if (!bilinear) {
    int y = (int)floorf(fy), xx = (int)floorf(fx);
    if (y >= x->h) y = x->h - 1;
    if (xx >= x->w) xx = x->w - 1;
    return x->d[((size_t)y * x->w + xx) * x->c + c];
  }
  fy = fy - 0.5f < 0 ? 0 : fy - 0.5f;             /* half-pixel centres, edges clamped */
  fx = fx - 0.5f < 0 ? 0 : fx - 0.5f;
  int y0 = (int)fy, x0 = (int)fx, y1 = y0 + 1 < x->h ? y0 + 1 : y0, x1 = x0 + 1 < x->w ? x0 + 1 : x0;
  float ay = fy - y0, ax = fx - x0;
  const float *d = x->d;
  float a = d[((size_t)y0 * x->w + x0) * x->c + c], b = d[((size_t)y0 * x->w + x1) * x->c + c];
  float cc = d[((size_t)y1 * x->w + x0) * x->c + c], dd = d[((size_t)y1 * x->w + x1) * x->c + c];
  return (a * (1 - ax) + b * ax) * (1 - ay) + (cc * (1 - ax) + dd * ax) * ay;
}

int kn_net_set_path(kn_net *n, int path) {
  if (!(path & KN_PATH_DNNL)) { kn_dnnl_free(n->dnnl); n->dnnl = NULL; }
  if (!(path & KN_PATH_WINOGRAD)) { kn_wino_free(n->wino); n->wino = NULL; }
  if ((path & KN_PATH_DNNL) && !n->dnnl && !(n->dnnl = kn_dnnl_new())) return -1;
  if ((path & KN_PATH_WINOGRAD) && !n->wino && !(n->wino = kn_wino_new(0))) return -1;
  return 0;
}

int kn_net_path_named(const char *name) {
  static const char *names[] = {"direct", "dnnl", "winograd", "fast"};
  for (int i = 0; i < 4; i++)
    if (!strcmp(name, names[i])) return i;
  return -1;
}

int kn_net_set_threads(kn_net *n, int threads) {
  if (!n->wino || kn_wino_asked(n->wino) == threads) return 0;
  kn_wino_free(n->wino);
  n->wino = kn_wino_new(threads);
  return n->wino ? 0 : -1;
}

int kn_net_use_dnnl(kn_net *n, int on) { return kn_net_set_path(n, on ? KN_PATH_FAST : KN_PATH_DIRECT); }

/* A blob's buffer: the smallest spare that holds it, else a new one. Every
 * layer writes all of its output, so nothing is cleared. */
static int blob_alloc(kn_net *net, kn_tensor *t, int h, int w, int c) {
  size_t n = (size_t)h * w * c, best = (size_t)-1;
  int at = -1;
  for (int i = 0; i < net->nspare; i++)
    if (net->spare[i].n >= n && net->spare[i].n < best) best = net->spare[i].n, at = i;
  t->h = h;
  t->w = w;
  t->c = c;
  if (at >= 0) {
    t->d = net->spare[at].d;
    net->spare[at] = net->spare[--net->nspare];
    return 0;
  }
  t->d = malloc((n ? n : 1) * sizeof *t->d);
  return t->d ? 0 : -1;
}

/* Gives a blob's buffer back to the spares (or frees it if they cannot grow). */
static void blob_release(kn_net *net, kn_tensor *t) {
  if (!t->d) return;
  if (net->nspare == net->spare_cap) {
    int cap = net->spare_cap ? 2 * net->spare_cap : 8;
    kn_spare *ns = realloc(net->spare, (size_t)cap * sizeof *ns);
    if (!ns) { kn_tensor_free(t); return; }
    net->spare = ns;
    net->spare_cap = cap;
  }
  net->spare[net->nspare++] = (kn_spare){t->d, (size_t)t->h * t->w * t->c};
  t->d = NULL;
}

#define ALLOC(t, h, w, c)                                                                                              \
  do {                                                                                                                 \
    int64_t h_ = (h), w_ = (w), c_ = (c);                                                                              \
    int r_ = size_ok(net, l, h_, w_, c_, e);                                                                           \
    if (r_ < 0) return r_;                                                                                             \
    if (blob_alloc(net, (t), (int)h_, (int)w_, (int)c_) < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory");         \
  } while (0)

/* One layer: its inputs from blobs, its outputs into blobs. With prelu (a
 * PReLU that reads only this convolution's output) as fused, the convolution
 * applies it and writes the PReLU's output blob instead. */
static int run_layer(kn_net *net, const kn_layer *l, const kn_layer *fused, kn_tensor *blobs, kiln_err *e) {
  const kn_tensor *x = l->nin > 0 ? &blobs[l->in[0]] : NULL;
  kn_tensor *y = l->nout > 0 ? &blobs[l->out[0]] : NULL;
  int wh, ww;
  if (net->wino && x && x->d && kn_wino_shape(l, x, &wh, &ww)) {
    if (fused) y = &blobs[fused->out[0]];
    ALLOC(y, wh, ww, (int)kn_param(l, 0, 0));
    return kn_wino_conv(net->wino, l, x, fused ? fused->slope : NULL, fused ? (int)fused->nslope : 0, y, e);
  }
  if (x && !x->d) return kiln_fail(e, KILN_EINTERNAL, "layer '%s' reads a blob that was not made", l->name);
  if (!strcmp(l->type, "Input")) return 0;
  if (!strcmp(l->type, "Split")) {
    for (int k = 0; k < l->nout; k++) {
      ALLOC(&blobs[l->out[k]], x->h, x->w, x->c);
      memcpy(blobs[l->out[k]].d, x->d, (size_t)x->h * x->w * x->c * sizeof *x->d);
    }
    return 0;
  }
  if (!strcmp(l->type, "Convolution") || !strcmp(l->type, "ConvolutionDepthWise")) {
    conv_geom G;
    conv_geometry(l, x, l->type[11] == 'D', &G);
    int r = size_ok(net, l, G.oh, G.ow, G.oc, e);
    if (r < 0) return r;
  }
  if (net->dnnl && (!strcmp(l->type, "Convolution") || !strcmp(l->type, "ConvolutionDepthWise"))) {
    int r = kn_dnnl_conv(net->dnnl, l, x, y, e);
    if (r <= 0) return r;                          /* else: not one oneDNN takes; the direct path below */
  }
  if (!strcmp(l->type, "Convolution")) return conv(l, x, y, 0, e);
  if (!strcmp(l->type, "ConvolutionDepthWise")) return conv(l, x, y, 1, e);
  size_t n = x ? (size_t)x->h * x->w * x->c : 0;
  if (!strcmp(l->type, "ReLU") || !strcmp(l->type, "PReLU")) {
    ALLOC(y, x->h, x->w, x->c);
    int prelu = l->type[0] == 'P';
    float slope = prelu ? 0 : kn_param(l, 0, 0);
    if (prelu && l->nslope != 1 && l->nslope != x->c)
      return kiln_fail(e, KILN_ECORRUPT, "layer '%s': %d slopes for %d channels", l->name, (int)l->nslope, x->c);
    for (size_t i = 0; i < n; i++) {
      float s = prelu ? l->slope[l->nslope == 1 ? 0 : i % (size_t)x->c] : slope;
      y->d[i] = x->d[i] > 0 ? x->d[i] : x->d[i] * s;
    }
    return 0;
  }
  if (!strcmp(l->type, "BinaryOp") || !strcmp(l->type, "Eltwise")) {
    ALLOC(y, x->h, x->w, x->c);
    int op = (int)kn_param(l, 0, 0);
    if (l->type[0] == 'B' && kn_param(l, 1, 0) != 0) {   /* with a scalar */
      float b = kn_param(l, 2, 0);
      for (size_t i = 0; i < n; i++) y->d[i] = binop(op, x->d[i], b);
      return 0;
    }
    const kn_param_kv *co = l->type[0] == 'E' ? kn_param_array(l, 1) : NULL;
    if (l->nin == 2 && !co && (l->type[0] == 'B' ? op == 0 : op == 1)) {   /* a plain sum, the common case */
      const float *a = x->d, *b = blobs[l->in[1]].d;
      if (blobs[l->in[1]].h == x->h && blobs[l->in[1]].w == x->w && blobs[l->in[1]].c == x->c) {
        for (size_t i = 0; i < n; i++) y->d[i] = a[i] + b[i];
        return 0;
      }
    }
    for (int k = 1; k < l->nin; k++) {
      const kn_tensor *z = &blobs[l->in[k]];
      if (z->h != x->h || z->w != x->w || z->c != x->c)
        return kiln_fail(e, KILN_EINVAL, "layer '%s': inputs of %dx%dx%d and %dx%dx%d (kiln does not broadcast)", l->name,
                         x->h, x->w, x->c, z->h, z->w, z->c);
    }
    for (size_t i = 0; i < n; i++) {
      float acc = x->d[i] * (co && co->n > 0 ? co->v[0] : 1);
      for (int k = 1; k < l->nin; k++) {
        float v = blobs[l->in[k]].d[i] * (co && co->n > k ? co->v[k] : 1);
        acc = l->type[0] == 'B' ? binop(op, acc, v) : op == 0 ? acc * v : op == 2 ? (acc > v ? acc : v) : acc + v;
      }
      y->d[i] = acc;
    }
    return 0;
  }
  if (!strcmp(l->type, "Interp")) {
    int64_t oh = (int64_t)kn_param(l, 3, 0), ow = (int64_t)kn_param(l, 4, 0);   /* whole, checked at load */
    float fh = roundf(x->h * kn_param(l, 1, 1)), fw = roundf(x->w * kn_param(l, 2, 1));   /* scales: finite */
    if (oh <= 0) oh = fh >= 1 && fh <= 1e12f ? (int64_t)fh : 0;
    if (ow <= 0) ow = fw >= 1 && fw <= 1e12f ? (int64_t)fw : 0;
    ALLOC(y, oh, ow, x->c);
    int type = (int)kn_param(l, 0, 1), bil = type == 2 ? 1 : type == 3 ? 3 : 0;
    float ry = (float)x->h / oh, rx = (float)x->w / ow;
    if (!bil) {                                   /* nearest: whole pixels copied, source columns found once */
      int *sx = malloc((size_t)ow * sizeof *sx);
      if (!sx) return kiln_fail(e, KILN_ENOMEM, "out of memory");
      for (int ox = 0; ox < ow; ox++) {
        int v = (int)floorf(ox * rx);
        sx[ox] = v >= x->w ? x->w - 1 : v;
      }
      for (int oy = 0; oy < oh; oy++) {
        int sy = (int)floorf(oy * ry);
        if (sy >= x->h) sy = x->h - 1;
        const float *src = x->d + (size_t)sy * x->w * x->c;
        float *dst = y->d + (size_t)oy * ow * x->c;
        for (int ox = 0; ox < ow; ox++, dst += x->c) memcpy(dst, src + (size_t)sx[ox] * x->c, (size_t)x->c * sizeof *dst);
      }
      free(sx);
      return 0;
    }
    for (int oy = 0; oy < oh; oy++)
      for (int ox = 0; ox < ow; ox++)
        for (int c = 0; c < x->c; c++)
          y->d[((size_t)oy * ow + ox) * x->c + c] =
              sample(x, c, bil ? (oy + 0.5f) * ry : oy * ry, bil ? (ox + 0.5f) * rx : ox * rx, bil);
    return 0;
  }
  if (!strcmp(l->type, "PixelShuffle")) {
    int r = (int)kn_param(l, 0, 1);
    if (r < 1 || x->c % (r * r)) return kiln_fail(e, KILN_ECORRUPT, "layer '%s': %d channels do not shuffle by %d", l->name, x->c, r);
    int oc = x->c / (r * r);
    ALLOC(y, (int64_t)x->h * r, (int64_t)x->w * r, oc);
    for (int iy = 0; iy < x->h; iy++)             /* output row iy * r + i, in output order */
      for (int i = 0; i < r; i++) {
        float *dst = y->d + (size_t)(iy * r + i) * y->w * oc;
        const float *src = x->d + (size_t)iy * x->w * x->c + (size_t)i * r;
        for (int ix = 0; ix < x->w; ix++, src += x->c)
          for (int j = 0; j < r; j++)
            for (int o = 0; o < oc; o++) *dst++ = src[(size_t)o * r * r + j];
      }
    return 0;
  }
  if (!strcmp(l->type, "Concat")) {
    if (kn_param(l, 0, 0) != 0) return kiln_fail(e, KILN_EINVAL, "layer '%s': kiln concatenates channels only", l->name);
    int64_t tc = 0;
    for (int k = 0; k < l->nin; k++) {
      const kn_tensor *z = &blobs[l->in[k]];
      if (z->h != x->h || z->w != x->w)
        return kiln_fail(e, KILN_EINVAL, "layer '%s': inputs of %dx%d and %dx%d (kiln concatenates channels of one size)", l->name,
                         x->h, x->w, z->h, z->w);
      tc += z->c;
    }
    ALLOC(y, x->h, x->w, tc);
    for (size_t p = 0; p < (size_t)x->h * x->w; p++)
      for (int k = 0, at = 0; k < l->nin; at += blobs[l->in[k]].c, k++)
        memcpy(y->d + p * tc + at, blobs[l->in[k]].d + p * blobs[l->in[k]].c, (size_t)blobs[l->in[k]].c * sizeof(float));
    return 0;
  }
  return kiln_fail(e, KILN_EINVAL, "layer '%s' has type '%s', which kiln does not implement", l->name, l->type);
}

/* The PReLU after layer i that Winograd can apply in its store: it reads
 * only layer i's output, nothing else does, and its slopes fit. */
static const kn_layer *fusable_prelu(const kn_net *n, int i) {
  const kn_layer *l = &n->g.layers[i], *p = i + 1 < n->g.nlayers ? &n->g.layers[i + 1] : NULL;
  if (!n->wino || !p || strcmp(p->type, "PReLU") || p->nin != 1 || p->nout != 1 || l->nout != 1 || p->in[0] != l->out[0] ||
      n->last_use[l->out[0]] != i + 1 || kn_param(l, 9, 0) != 0 || !p->slope ||
      (p->nslope != 1 && p->nslope != (int64_t)kn_param(l, 0, 0)))
    return NULL;
  return p;
}

int kn_net_run(kn_net *n, const kn_tensor *in, kn_tensor *out, kiln_err *e) {
  kn_tensor *blobs = calloc((size_t)n->g.nblobs, sizeof *blobs);
  if (!blobs) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int r = blob_alloc(n, &blobs[n->in_blob], in->h, in->w, in->c) < 0 ? kiln_fail(e, KILN_ENOMEM, "out of memory") : 0;
  if (r == 0) memcpy(blobs[n->in_blob].d, in->d, (size_t)in->h * in->w * in->c * sizeof *in->d);
  for (int i = 0; r == 0 && i < n->g.nlayers; i++) {
    const kn_layer *l = &n->g.layers[i], *p = NULL;
    int oh, ow;
    if (l->nin > 0 && blobs[l->in[0]].d && kn_wino_shape(l, &blobs[l->in[0]], &oh, &ow)) p = fusable_prelu(n, i);
    r = run_layer(n, l, p, blobs, e);
    for (int k = 0; r == 0 && k < l->nin; k++)   /* a blob no later layer reads goes back to the spares */
      if (n->last_use[l->in[k]] == i) blob_release(n, &blobs[l->in[k]]);
    if (p) i++;                                   /* the PReLU is done */
  }
  if (r == 0) {
    *out = blobs[n->out_blob];
    blobs[n->out_blob].d = NULL;
  }
  for (int b = 0; b < n->g.nblobs; b++) blob_release(n, &blobs[b]);
  free(blobs);
  return r;
}
