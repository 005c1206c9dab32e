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

typedef struct kn_net {
  kn_graph g;
  int in_blob, out_blob;        /* the Input layer's blob; the blob no layer reads */
  int *last_use;                /* per blob: the last layer that reads it */
} kn_net;

/* Reads param and bin, and checks that every layer's parameters are ones
 * this executor supports (a clear error naming the layer otherwise). */
int kn_net_load(kn_net *n, const char *param, const char *bin, kiln_err *e);
void kn_net_free(kn_net *n);
/* Runs the net on in (3 channels, [0,1]); *out is allocated. */
int kn_net_run(const kn_net *n, const kn_tensor *in, kn_tensor *out, kiln_err *e);

#endif
