/* net.c — the direct CPU executor for ncnn graphs (see net.h). Parameter
 * ids follow ncnn's layer definitions: Convolution 0=num_output 1=kernel_w
 * 11=kernel_h 2/12=dilation 3/13=stride 4/14/15/16=pad left/top/right/bottom
 * (-233: same) 5=bias 6=weight size 7=groups (DepthWise) 9=activation
 * (1 relu, 2 leaky relu with 10[0], 3 clip 10[0..1], 4 sigmoid); ReLU
 * 0=slope; PReLU 0=slopes; BinaryOp 0=op (add sub mul div max min pow rsub
 * rdiv) 1=with_scalar 2=scalar; Eltwise 0=op (prod sum max) 1=coeffs;
 * Interp 0=type (1 nearest, 2 bilinear) 1/2=h/w scale 3/4=out h/w;
 * PixelShuffle 0=factor (PyTorch's channel order); Concat 0=axis (channels). */
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

int kn_net_load(kn_net *n, const char *param, const char *bin, kiln_err *e) {
  memset(n, 0, sizeof *n);
  int r = kn_ncnn_parse(param, &n->g, e);
  if (r == 0) r = kn_ncnn_load_bin(&n->g, bin, e);
  if (r < 0) { kn_net_free(n); return r; }
  n->last_use = malloc((size_t)n->g.nblobs * sizeof *n->last_use);
  int *made = calloc((size_t)n->g.nblobs, sizeof *made);
  if (!n->last_use || !made) { free(made); kn_net_free(n); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  for (int b = 0; b < n->g.nblobs; b++) n->last_use[b] = -1;
  n->in_blob = n->out_blob = -1;
  for (int i = 0; i < n->g.nlayers; i++) {
    const kn_layer *l = &n->g.layers[i];
    for (int k = 0; k < l->nin; k++) n->last_use[l->in[k]] = i;
    for (int k = 0; k < l->nout; k++) made[l->out[k]] = 1;
    if (!strcmp(l->type, "Input") && l->nout == 1) n->in_blob = l->out[0];
    if ((!strcmp(l->type, "Convolution") || !strcmp(l->type, "ConvolutionDepthWise")) && kn_param(l, 9, 0) > 4)
      r = kiln_fail(e, KILN_EINVAL, "%s: layer '%s' uses activation type %g, which kiln does not implement", param, l->name,
                    kn_param(l, 9, 0));
    if (!strcmp(l->type, "Interp") && (kn_param(l, 0, 0) < 1 || kn_param(l, 0, 0) > 3))
      r = kiln_fail(e, KILN_EINVAL, "%s: layer '%s' resizes with type %g (kiln does nearest, bilinear and bicubic)", param,
                    l->name, kn_param(l, 0, 0));
  }
  for (int b = 0; b < n->g.nblobs; b++)
    if (made[b] && n->last_use[b] < 0) n->out_blob = b;     /* made and never read: the output */
  free(made);
  if (r == 0 && (n->in_blob < 0 || n->out_blob < 0))
    r = kiln_fail(e, KILN_ECORRUPT, "%s: the model has no Input layer or no output blob", param);
  if (r < 0) kn_net_free(n);
  return r;
}

static float act(float v, int type, const kn_param_kv *ap) {
  switch (type) {
  case 1: return v > 0 ? v : 0;
  case 2: return v > 0 ? v : v * (ap && ap->n > 0 ? ap->v[0] : 0);
  case 3: return v < (ap && ap->n > 0 ? ap->v[0] : 0) ? ap->v[0] : v > (ap && ap->n > 1 ? ap->v[1] : 0) ? ap->v[1] : v;
  case 4: return 1 / (1 + expf(-v));
  default: return v;
  }
}

static int conv(const kn_layer *l, const kn_tensor *x, kn_tensor *y, int depthwise, kiln_err *e) {
  int oc = (int)kn_param(l, 0, 0), kw = (int)kn_param(l, 1, 0), kh = (int)kn_param(l, 11, (float)kw);
  int dw = (int)kn_param(l, 2, 1), dh = (int)kn_param(l, 12, (float)dw), sw = (int)kn_param(l, 3, 1),
      sh = (int)kn_param(l, 13, (float)sw);
  int pl = (int)kn_param(l, 4, 0), pt = (int)kn_param(l, 14, (float)pl), pr = (int)kn_param(l, 15, (float)pl),
      pb = (int)kn_param(l, 16, (float)pt);
  int groups = depthwise ? (int)kn_param(l, 7, 1) : 1;
  if (pl == -233 || pt == -233) {                /* SAME */
    int ph = ((x->h + sh - 1) / sh - 1) * sh + (kh - 1) * dh + 1 - x->h, pw = ((x->w + sw - 1) / sw - 1) * sw + (kw - 1) * dw + 1 - x->w;
    pt = ph > 0 ? ph / 2 : 0, pb = ph > 0 ? ph - pt : 0, pl = pw > 0 ? pw / 2 : 0, pr = pw > 0 ? pw - pl : 0;
  }
  if (oc < 1 || kw < 1 || kh < 1 || groups < 1 || x->c % groups || oc % groups ||
      (int64_t)oc * (x->c / groups) * kh * kw != l->nweight)
    return kiln_fail(e, KILN_ECORRUPT, "layer '%s': %d weights do not fit %d outputs, %d inputs, %dx%d kernel, %d groups",
                     l->name, (int)l->nweight, oc, x->c, kw, kh, groups);
  int oh = (x->h + pt + pb - ((kh - 1) * dh + 1)) / sh + 1, ow = (x->w + pl + pr - ((kw - 1) * dw + 1)) / sw + 1;
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
    if (blob_alloc(net, (t), (h), (w), (c)) < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory");                     \
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
    int oh = (int)kn_param(l, 3, 0), ow = (int)kn_param(l, 4, 0);
    if (oh <= 0) oh = (int)lroundf(x->h * kn_param(l, 1, 1));
    if (ow <= 0) ow = (int)lroundf(x->w * kn_param(l, 2, 1));
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
    ALLOC(y, x->h * r, x->w * r, oc);
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
    int tc = 0;
    for (int k = 0; k < l->nin; k++) tc += blobs[l->in[k]].c;
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
