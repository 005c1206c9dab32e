/* net.h — running an ncnn model on the CPU (net.c): tensors are NHWC
 * float32 (batch 1), blobs live from the layer that makes them to the last
 * layer that reads them (then their memory is reused), and every layer is
 * computed directly in portable C. This is the reference path: the oneDNN
 * backend (issue #5) must give the same numbers; it is exact, not fast. */
#ifndef KILN_NET_H
#define KILN_NET_H

#include "nn/ncnn.h"

typedef struct kn_tensor {
  int h, w, c;
  float *d;                     /* h x w x c, owned */
} kn_tensor;

int kn_tensor_alloc(kn_tensor *t, int h, int w, int c);
void kn_tensor_free(kn_tensor *t);

/* The oneDNN convolution cache (dnnl.c): primitives per (layer, input size). */
typedef struct kn_dnnl kn_dnnl;
kn_dnnl *kn_dnnl_new(void);
void kn_dnnl_free(kn_dnnl *d);
/* 0 done, 1 not for oneDNN (the direct path does it), < 0 an error. */
int kn_dnnl_conv(kn_dnnl *d, const kn_layer *l, const kn_tensor *x, kn_tensor *y, kiln_err *e);

typedef struct kn_net {
  kn_graph g;
  kn_dnnl *dnnl;                /* NULL: the direct path for every layer */
  int in_blob, out_blob;        /* the Input layer's blob; the blob no layer reads */
  int *last_use;                /* per blob: the last layer that reads it */
} kn_net;

/* Reads param and bin, and checks that every layer's parameters are ones
 * this executor supports (a clear error naming the layer otherwise). */
int kn_net_load(kn_net *n, const char *param, const char *bin, kiln_err *e);
void kn_net_free(kn_net *n);
/* Runs the net on in (3 channels, [0,1]); *out is allocated. One thread
 * at a time per net (the oneDNN primitives are cached in it). */
int kn_net_run(kn_net *n, const kn_tensor *in, kn_tensor *out, kiln_err *e);
/* Turns the oneDNN path on (1) or off (0: the direct path, the reference). */
int kn_net_use_dnnl(kn_net *n, int on);

#endif
