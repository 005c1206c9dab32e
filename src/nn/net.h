/* net.h — running an ncnn model on the CPU (net.c): tensors are NHWC
 * float32 (batch 1), blobs live from the layer that makes them to the last
 * layer that reads them (then their buffer goes back to the net's spares
 * and the next layer reuses it, so a frame allocates nothing once the
 * first has run). Three paths compute the convolutions: the direct one in
 * portable C (the exact reference), oneDNN (dnnl.c), and Winograd F(4x4,
 * 3x3) (winograd.c) for 3x3 stride-1 convolutions with a following PReLU
 * fused in. The default, KN_PATH_FAST, is Winograd where it applies and
 * oneDNN for the rest. */
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

/* Winograd convolutions (winograd.c): transformed weights per layer,
 * per-thread scratch, a thread pool of `threads` (<= 0: $KILN_NN_THREADS,
 * else one per CPU). */
typedef struct kn_wino kn_wino;
kn_wino *kn_wino_new(int threads);
void kn_wino_free(kn_wino *w);
int kn_wino_asked(const kn_wino *w);   /* the threads it was made with */
/* 1 and the output size when layer l on x is one Winograd computes (3x3,
 * stride 1, no dilation or groups, padding <= 2, no activation but relu or
 * leaky relu), else 0. */
int kn_wino_shape(const kn_layer *l, const kn_tensor *x, int *oh, int *ow);
/* y (allocated by the caller at the kn_wino_shape size) = conv(x), then
 * the layer's activation, or, with slope, a PReLU of nslope slopes (1 or
 * one per output channel) instead. */
int kn_wino_conv(kn_wino *w, const kn_layer *l, const kn_tensor *x, const float *slope, int nslope, kn_tensor *y,
                 kiln_err *e);

enum { KN_PATH_DIRECT = 0, KN_PATH_DNNL = 1, KN_PATH_WINOGRAD = 2, KN_PATH_FAST = 3 };

typedef struct kn_spare {
  float *d;
  size_t n;                     /* floats */
} kn_spare;

typedef struct kn_net {
  kn_graph g;
  kn_dnnl *dnnl;                /* NULL: oneDNN off */
  kn_wino *wino;                /* NULL: Winograd off */
  int in_blob, out_blob;        /* the Input layer's blob; the blob no layer reads */
  int *last_use;                /* per blob: the last layer that reads it */
  kn_spare *spare;              /* buffers of freed blobs, reused by later ones */
  int nspare, spare_cap;
  int64_t max_floats;           /* the largest tensor a layer may make (0: KN_MAX_FLOATS); over it, a run fails */
} kn_net;

#define KN_MAX_FLOATS (1LL << 30) /* 4 GiB: a guard against sizes that overflow; memory_mb is the real bound */

/* Reads param and bin, and checks that every layer's parameters are ones
 * this executor supports (a clear error naming the layer otherwise): each
 * layer's inputs and outputs for its type, every blob made once and before
 * it is read, one Input, whole numbers in range where the executor needs
 * them (kernels, strides, pads, counts, factors, sizes), weight counts that
 * fit the kernel, all before the .bin is read. */
int kn_net_load(kn_net *n, const char *param, const char *bin, kiln_err *e);
void kn_net_free(kn_net *n);
/* Runs the net on in (3 channels, [0,1]); *out is allocated. One thread
 * at a time per net (the oneDNN primitives are cached in it). */
int kn_net_run(kn_net *n, const kn_tensor *in, kn_tensor *out, kiln_err *e);
/* Chooses the convolution paths: KN_PATH_DIRECT (the reference),
 * KN_PATH_DNNL, KN_PATH_WINOGRAD (3x3 convolutions; the rest direct), or
 * KN_PATH_FAST (both). A net starts on KN_PATH_DIRECT. 0, or -1 when an
 * engine cannot start. */
int kn_net_set_path(kn_net *n, int path);
/* The path by name ("direct", "dnnl", "winograd", "fast"), or -1. */
int kn_net_path_named(const char *name);
/* The Winograd path's threads (<= 0: $KILN_NN_THREADS, else one per CPU),
 * e.g. a worker's `cpus`; a change remakes its pool (the weights are
 * transformed again on the next run). 0, or -1 when it cannot start. */
int kn_net_set_threads(kn_net *n, int threads);
/* kn_net_set_path(n, on ? KN_PATH_FAST : KN_PATH_DIRECT). */
int kn_net_use_dnnl(kn_net *n, int on);

#endif
