/* ncnn.h — reading ncnn's `.param` model description (ncnn.c): the layers,
 * their blobs (named tensors) and parameters, checked against the layer
 * types kiln's inference core implements. The weights (`.bin`) are read by
 * the layers that own them, in file order (see kn_bin_*). */
#ifndef KILN_NCNN_H
#define KILN_NCNN_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

#define KN_MAX_IO 8
#define KN_MAX_PARAMS 24
#define KN_MAX_ID 99             /* parameter ids read: ncnn's layers use 0..31 */

typedef struct kn_param_kv {
  int id;                       /* ncnn parameter id; arrays are stored under their own id (not -23300 - id) */
  int array;                    /* 1: an array of n values */
  int n;
  float *v;                     /* values (owned by the graph) */
} kn_param_kv;

typedef struct kn_layer {
  char type[32], name[64];
  int nin, nout;
  int in[KN_MAX_IO], out[KN_MAX_IO];   /* blob indices */
  int np;
  kn_param_kv p[KN_MAX_PARAMS];
  /* weights from the .bin (kn_ncnn_load_bin), float32, owned */
  float *weight;                /* Convolution(DepthWise): out x in/groups x kh x kw, ncnn's order */
  float *bias;                  /* its bias, or NULL */
  float *slope;                 /* PReLU: one per channel (or one for all) */
  int64_t nweight, nbias, nslope;
} kn_layer;

typedef struct kn_graph {
  kn_layer *layers;
  int nlayers;
  char (*blobs)[64];
  int nblobs;
} kn_graph;

/* Parses path; every layer type must be one kiln implements (the message
 * names the layer, its type and the file otherwise). */
int kn_ncnn_parse(const char *path, kn_graph *g, kiln_err *e);
void kn_graph_release(kn_graph *g);
/* Reads the weights of every layer that has some from the .bin, in layer
 * order (fp16 widened to float32 on load). The file must be used exactly:
 * a short or long file is a clear error naming it. Every count (weight
 * size, outputs, slopes) must be a whole number the file holds before
 * anything is allocated for it. */
int kn_ncnn_load_bin(kn_graph *g, const char *path, kiln_err *e);
/* A parameter's value (its first for an array), or def when absent. */
float kn_param(const kn_layer *l, int id, float def);
const kn_param_kv *kn_param_array(const kn_layer *l, int id);
/* The layer types kiln implements, comma-separated. */
const char *kn_supported_layers(void);

#endif
