/* dnnl.c — convolution on oneDNN for the executor (net.c): one primitive
 * per (layer, input size and channels), made on first use and reused for
 * every later frame of that size, with the weights reordered once into the layout the
 * primitive wants, bias and the layer's activation (relu, leaky relu)
 * fused. Tensors stay NHWC float32. A primitive is made only for weights
 * that are exactly this input's (outputs x channels x kernel). */
#include "nn/net.h"

#include <oneapi/dnnl/dnnl.h>
#include <stdlib.h>
#include <string.h>

typedef struct kn_conv_prim {
  const kn_layer *l;
  int h, w, ic;
  dnnl_primitive_t prim;
  dnnl_memory_t wmem, bmem;
  dnnl_memory_desc_t src_md, dst_md;
  int oh, ow;
} kn_conv_prim;

struct kn_dnnl {
  dnnl_engine_t eng;
  dnnl_stream_t st;
  kn_conv_prim *p;
  int n, cap;
};

kn_dnnl *kn_dnnl_new(void) {
  kn_dnnl *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  if (dnnl_engine_create(&d->eng, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&d->st, d->eng, dnnl_stream_default_flags) != dnnl_success) {
    if (d->eng) dnnl_engine_destroy(d->eng);
    free(d);
    return NULL;
  }
  return d;
}

void kn_dnnl_free(kn_dnnl *d) {
  if (!d) return;
  for (int i = 0; i < d->n; i++) {
    dnnl_primitive_destroy(d->p[i].prim);
    dnnl_memory_destroy(d->p[i].wmem);
    if (d->p[i].bmem) dnnl_memory_destroy(d->p[i].bmem);
  }
  free(d->p);
  dnnl_stream_destroy(d->st);
  dnnl_engine_destroy(d->eng);
  free(d);
}

#define OK(x) ((x) == dnnl_success)

static kn_conv_prim *make(kn_dnnl *d, const kn_layer *l, int h, int w, int ic, kiln_err *e) {
  int oc = (int)kn_param(l, 0, 0), kw = (int)kn_param(l, 1, 0), kh = (int)kn_param(l, 11, (float)kw);
  int dw = (int)kn_param(l, 2, 1), dh = (int)kn_param(l, 12, (float)dw), sw = (int)kn_param(l, 3, 1),
      sh = (int)kn_param(l, 13, (float)sw);
  int pl = (int)kn_param(l, 4, 0), pt = (int)kn_param(l, 14, (float)pl), pr = (int)kn_param(l, 15, (float)pl),
      pb = (int)kn_param(l, 16, (float)pt);
  int groups = !strcmp(l->type, "ConvolutionDepthWise") ? (int)kn_param(l, 7, 1) : 1;
  if (pl == -233 || pt == -233 || groups != 1) return NULL;   /* the direct path handles these */
  if ((int64_t)oc * ic * kh * kw != l->nweight) return NULL;   /* not this input's weights: the direct path says so */
  int oh = (h + pt + pb - ((kh - 1) * dh + 1)) / sh + 1, ow = (w + pl + pr - ((kw - 1) * dw + 1)) / sw + 1;
  if (d->n == d->cap) {
    int cap = d->cap ? 2 * d->cap : 32;
    kn_conv_prim *np = realloc(d->p, (size_t)cap * sizeof *np);
    if (!np) { kiln_fail(e, KILN_ENOMEM, "out of memory"); return NULL; }
    d->p = np;
    d->cap = cap;
  }
  kn_conv_prim *c = &d->p[d->n];
  memset(c, 0, sizeof *c);
  c->l = l;
  c->h = h;
  c->w = w;
  c->ic = ic;
  c->oh = oh;
  c->ow = ow;
  dnnl_dims_t sd = {1, ic, h, w}, wd = {oc, ic, kh, kw}, bd = {oc}, dd = {1, oc, oh, ow};
  dnnl_dims_t strides = {sh, sw}, dil = {dh - 1, dw - 1}, padl = {pt, pl}, padr = {pb, pr};
  dnnl_memory_desc_t w_any, w_user, b_md;
  dnnl_convolution_desc_t cd;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_primitive_desc_t pd = NULL;
  int ok = OK(dnnl_memory_desc_init_by_tag(&c->src_md, 4, sd, dnnl_f32, dnnl_nhwc)) &&
           OK(dnnl_memory_desc_init_by_tag(&c->dst_md, 4, dd, dnnl_f32, dnnl_nhwc)) &&
           OK(dnnl_memory_desc_init_by_tag(&w_any, 4, wd, dnnl_f32, dnnl_format_tag_any)) &&
           OK(dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw)) &&
           OK(dnnl_memory_desc_init_by_tag(&b_md, 1, bd, dnnl_f32, dnnl_x)) &&
           OK(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference, dnnl_convolution_auto, &c->src_md,
                                                         &w_any, l->bias ? &b_md : NULL, &c->dst_md, strides, dil, padl,
                                                         padr)) &&
           OK(dnnl_primitive_attr_create(&attr)) && OK(dnnl_post_ops_create(&po));
  int act = (int)kn_param(l, 9, 0);
  const kn_param_kv *ap = kn_param_array(l, 10);
  if (ok && act == 1) ok = OK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0, 0));
  else if (ok && act == 2) ok = OK(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, ap && ap->n ? ap->v[0] : 0, 0));
  else if (ok && act != 0) ok = 0;                /* clip, sigmoid: the direct path */
  ok = ok && OK(dnnl_primitive_attr_set_post_ops(attr, po)) && OK(dnnl_primitive_desc_create(&pd, &cd, attr, d->eng, NULL));
  if (po) dnnl_post_ops_destroy(po);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) { if (pd) dnnl_primitive_desc_destroy(pd); return NULL; }
  const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  dnnl_memory_t user = NULL;
  dnnl_primitive_desc_t rpd = NULL;
  dnnl_primitive_t reorder = NULL;
  ok = OK(dnnl_memory_create(&user, &w_user, d->eng, l->weight)) && OK(dnnl_memory_create(&c->wmem, wq, d->eng, DNNL_MEMORY_ALLOCATE)) &&
       OK(dnnl_reorder_primitive_desc_create(&rpd, &w_user, d->eng, wq, d->eng, NULL)) &&
       OK(dnnl_primitive_create(&reorder, rpd));
  if (ok) {
    dnnl_exec_arg_t ra[2] = {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, c->wmem}};
    ok = OK(dnnl_primitive_execute(reorder, d->st, 2, ra)) && OK(dnnl_stream_wait(d->st));
  }
  if (reorder) dnnl_primitive_destroy(reorder);
  if (rpd) dnnl_primitive_desc_destroy(rpd);
  if (user) dnnl_memory_destroy(user);
  if (ok && l->bias) ok = OK(dnnl_memory_create(&c->bmem, &b_md, d->eng, l->bias));
  ok = ok && OK(dnnl_primitive_create(&c->prim, pd));
  dnnl_primitive_desc_destroy(pd);
  if (!ok) {
    if (c->wmem) dnnl_memory_destroy(c->wmem);
    if (c->bmem) dnnl_memory_destroy(c->bmem);
    return NULL;
  }
  d->n++;
  return c;
}

int kn_dnnl_conv(kn_dnnl *d, const kn_layer *l, const kn_tensor *x, kn_tensor *y, kiln_err *e) {
  kn_conv_prim *c = NULL;
  for (int i = 0; i < d->n && !c; i++)
    if (d->p[i].l == l && d->p[i].h == x->h && d->p[i].w == x->w && d->p[i].ic == x->c) c = &d->p[i];
  if (!c && !(c = make(d, l, x->h, x->w, x->c, e))) return 1;   /* not for oneDNN: the direct path */
  int oc = (int)kn_param(l, 0, 0);
  if (kn_tensor_alloc(y, c->oh, c->ow, oc) < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  dnnl_memory_t src = NULL, dst = NULL;
  int ok = OK(dnnl_memory_create(&src, &c->src_md, d->eng, x->d)) && OK(dnnl_memory_create(&dst, &c->dst_md, d->eng, y->d));
  if (ok) {
    dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, c->wmem}, {DNNL_ARG_DST, dst}, {DNNL_ARG_BIAS, c->bmem}};
    ok = OK(dnnl_primitive_execute(c->prim, d->st, c->bmem ? 4 : 3, a)) && OK(dnnl_stream_wait(d->st));
  }
  if (src) dnnl_memory_destroy(src);
  if (dst) dnnl_memory_destroy(dst);
  if (!ok) { kn_tensor_free(y); return kiln_fail(e, KILN_EINTERNAL, "layer '%s': oneDNN convolution failed", l->name); }
  return 0;
}
