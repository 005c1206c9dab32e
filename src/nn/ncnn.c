/* ncnn.c — the `.param` reader (see ncnn.h). The format (ncnn's own docs,
 * "param and model file structure"): a magic number 7767517, then
 * "LAYERS BLOBS", then one line per layer:
 *   TYPE NAME NIN NOUT IN_BLOB... OUT_BLOB... ID=VALUE...
 * where a VALUE is an integer or a float, and an array parameter is
 * written with id -23300-ID as "-233ID=N,V1,...,VN". Blob names are
 * interned in order of first appearance. */
#include "nn/ncnn.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const supported[] = {"Input",  "Split",   "Convolution", "ConvolutionDepthWise", "PReLU",      "ReLU",
                                        "BinaryOp", "Eltwise", "Concat",      "Interp",               "PixelShuffle", NULL};

const char *kn_supported_layers(void) {
  return "Input, Split, Convolution, ConvolutionDepthWise, PReLU, ReLU, BinaryOp, Eltwise, Concat, Interp, PixelShuffle";
}

void kn_graph_release(kn_graph *g) {
  if (!g) return;
  for (int i = 0; i < g->nlayers; i++) {
    for (int k = 0; k < g->layers[i].np; k++) free(g->layers[i].p[k].v);
    free(g->layers[i].weight);
    free(g->layers[i].bias);
    free(g->layers[i].slope);
  }
  free(g->layers);
  free(g->blobs);
  memset(g, 0, sizeof *g);
}

static int blob_index(kn_graph *g, int cap, const char *name) {
  for (int i = 0; i < g->nblobs; i++)
    if (!strcmp(g->blobs[i], name)) return i;
  if (g->nblobs >= cap) return -1;
  snprintf(g->blobs[g->nblobs], sizeof g->blobs[0], "%s", name);
  return g->nblobs++;
}

float kn_param(const kn_layer *l, int id, float def) {
  for (int i = 0; i < l->np; i++)
    if (l->p[i].id == id && l->p[i].n > 0) return l->p[i].v[0];
  return def;
}

const kn_param_kv *kn_param_array(const kn_layer *l, int id) {
  for (int i = 0; i < l->np; i++)
    if (l->p[i].id == id) return &l->p[i];
  return NULL;
}

/* Parses "ID=VALUE" or "-233ID=N,V,..." into kv. */
static int parse_kv(const char *tok, kn_param_kv *kv) {
  char *end;
  long id = strtol(tok, &end, 10);
  if (end == tok || *end != '=') return -1;
  const char *v = end + 1;
  memset(kv, 0, sizeof *kv);
  if (id <= -23300) {
    kv->id = (int)(-id - 23300);
    kv->array = 1;
    long n = strtol(v, &end, 10);
    if (end == v || n < 0 || n > 1 << 20) return -1;
    kv->n = (int)n;
    kv->v = calloc(n ? (size_t)n : 1, sizeof *kv->v);
    if (!kv->v) return -1;
    for (long i = 0; i < n; i++) {
      if (*end != ',') return -1;
      v = end + 1;
      kv->v[i] = strtof(v, &end);
      if (end == v) return -1;
    }
    return *end ? -1 : 0;
  }
  kv->id = (int)id;
  kv->n = 1;
  kv->v = calloc(1, sizeof *kv->v);
  if (!kv->v) return -1;
  kv->v[0] = strtof(v, &end);
  return end == v || *end ? -1 : 0;
}

int kn_ncnn_parse(const char *path, kn_graph *g, kiln_err *e) {
  memset(g, 0, sizeof *g);
  FILE *f = fopen(path, "r");
  if (!f) return kiln_fail(e, errno == ENOENT ? KILN_ENOENT : KILN_EIO, "cannot open model '%s': %s", path, strerror(errno));
  int magic = 0, nl = 0, nb = 0, r = 0;
  if (fscanf(f, "%d", &magic) != 1 || magic != 7767517) {
    fclose(f);
    return kiln_fail(e, KILN_ECORRUPT, "'%s' is not an ncnn .param file (no magic number 7767517 at its start)", path);
  }
  if (fscanf(f, "%d %d", &nl, &nb) != 2 || nl < 1 || nb < 1 || nl > 100000 || nb > 100000) {
    fclose(f);
    return kiln_fail(e, KILN_ECORRUPT, "'%s': bad layer and blob counts on line 2", path);
  }
  g->layers = calloc((size_t)nl, sizeof *g->layers);
  g->blobs = calloc((size_t)nb, sizeof *g->blobs);
  if (!g->layers || !g->blobs) { fclose(f); kn_graph_release(g); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  char line[1 << 16];
  fgets(line, sizeof line, f);                   /* the rest of line 2 */
  int lineno = 2;
  while (r == 0 && g->nlayers < nl && fgets(line, sizeof line, f)) {
    lineno++;
    char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
    if (!tok) continue;                          /* a blank line */
    kn_layer *l = &g->layers[g->nlayers];
    snprintf(l->type, sizeof l->type, "%s", tok);
    char *name = strtok_r(NULL, " \t\r\n", &save), *ni = strtok_r(NULL, " \t\r\n", &save),
         *no = strtok_r(NULL, " \t\r\n", &save);
    if (!name || !ni || !no) { r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: a layer line needs TYPE NAME NIN NOUT", path, lineno); break; }
    snprintf(l->name, sizeof l->name, "%s", name);
    l->nin = (int)strtol(ni, NULL, 10);
    l->nout = (int)strtol(no, NULL, 10);
    if (l->nin < 0 || l->nin > KN_MAX_IO || l->nout < 0 || l->nout > KN_MAX_IO) {
      r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s' has %s inputs and %s outputs (0 to %d each)", path, lineno, name,
                    ni, no, KN_MAX_IO);
      break;
    }
    int known = 0;
    for (int i = 0; supported[i]; i++) known |= !strcmp(supported[i], l->type);
    if (!known) {
      r = kiln_fail(e, KILN_EINVAL, "%s:%d: layer '%s' has type '%s', which kiln does not implement (it does: %s)", path,
                    lineno, name, l->type, kn_supported_layers());
      break;
    }
    for (int i = 0; r == 0 && i < l->nin + l->nout; i++) {
      char *b = strtok_r(NULL, " \t\r\n", &save);
      int idx = b ? blob_index(g, nb, b) : -1;
      if (idx < 0) r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s' lists fewer blobs than it says, or more than %d in all",
                                 path, lineno, name, nb);
      else if (i < l->nin) l->in[i] = idx;
      else l->out[i - l->nin] = idx;
    }
    while (r == 0 && (tok = strtok_r(NULL, " \t\r\n", &save))) {
      if (l->np >= KN_MAX_PARAMS) { r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s' has too many parameters", path, lineno, name); break; }
      if (parse_kv(tok, &l->p[l->np]) < 0) {
        free(l->p[l->np].v);
        r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s': cannot read parameter '%.40s'", path, lineno, name, tok);
        break;
      }
      l->np++;
    }
    g->nlayers++;
  }
  fclose(f);
  if (r == 0 && g->nlayers < nl)
    r = kiln_fail(e, KILN_ECORRUPT, "'%s' is truncated: it says %d layers and has %d", path, nl, g->nlayers);
  if (r < 0) kn_graph_release(g);
  return r;
}

/* ---- the .bin ----------------------------------------------------------
 * ncnn's ModelBin: a "flagged" array starts with a 4-byte tag — 0x01306B47:
 * fp16 values follow (padded to 4 bytes); 0: float32 values follow — and a
 * "raw" array is float32 values without a tag. Convolution stores its
 * weights flagged and its bias raw; PReLU its slopes raw. */

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) bits = sign;
    else {                                         /* subnormal: normalise */
      exp = 127 - 15 + 1;
      while (!(man & 0x400)) { man <<= 1; exp--; }
      bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    }
  } else if (exp == 31) bits = sign | 0x7f800000 | (man << 13);
  else bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

typedef struct binr { FILE *f; const char *path; const char *layer; kiln_err *e; } binr;

static int read_exact(binr *b, void *p, size_t n) {
  if (fread(p, 1, n, b->f) != n)
    return kiln_fail(b->e, KILN_ECORRUPT, "weight file '%s' is truncated (it ends inside the weights of layer '%s')",
                     b->path, b->layer);
  return 0;
}

static int read_raw(binr *b, float **out, int64_t n) {
  *out = malloc((size_t)(n > 0 ? n : 1) * sizeof **out);
  if (!*out) return kiln_fail(b->e, KILN_ENOMEM, "out of memory");
  return read_exact(b, *out, (size_t)n * sizeof **out);
}

static int read_flagged(binr *b, float **out, int64_t n) {
  uint32_t tag;
  int r = read_exact(b, &tag, sizeof tag);
  if (r < 0) return r;
  if (tag == 0) return read_raw(b, out, n);
  if (tag != 0x01306B47)
    return kiln_fail(b->e, KILN_ECORRUPT, "weight file '%s': layer '%s' has weights of a kind kiln does not read (tag 0x%08x;"
                     " fp16 and float32 are)", b->path, b->layer, tag);
  uint16_t *h = malloc((size_t)(n > 0 ? n : 1) * sizeof *h);
  *out = malloc((size_t)(n > 0 ? n : 1) * sizeof **out);
  if (!h || !*out) { free(h); return kiln_fail(b->e, KILN_ENOMEM, "out of memory"); }
  r = read_exact(b, h, (size_t)n * sizeof *h);
  for (int64_t i = 0; r == 0 && i < n; i++) (*out)[i] = half_to_float(h[i]);
  free(h);
  if (r == 0 && (n * 2) % 4) {                   /* padded to 4 bytes */
    uint16_t pad;
    r = read_exact(b, &pad, sizeof pad);
  }
  return r;
}

int kn_ncnn_load_bin(kn_graph *g, const char *path, kiln_err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_fail(e, errno == ENOENT ? KILN_ENOENT : KILN_EIO, "cannot open weight file '%s': %s", path, strerror(errno));
  binr b = {f, path, "", e};
  int r = 0;
  for (int i = 0; r == 0 && i < g->nlayers; i++) {
    kn_layer *l = &g->layers[i];
    b.layer = l->name;
    if (!strcmp(l->type, "Convolution") || !strcmp(l->type, "ConvolutionDepthWise")) {
      l->nweight = (int64_t)kn_param(l, 6, 0);
      if (l->nweight <= 0) { r = kiln_fail(e, KILN_ECORRUPT, "layer '%s' gives no weight size (parameter 6)", l->name); break; }
      r = read_flagged(&b, &l->weight, l->nweight);
      if (r == 0 && kn_param(l, 5, 0) != 0) {
        l->nbias = (int64_t)kn_param(l, 0, 0);
        r = read_raw(&b, &l->bias, l->nbias);
      }
    } else if (!strcmp(l->type, "PReLU")) {
      l->nslope = (int64_t)kn_param(l, 0, 1);
      r = read_raw(&b, &l->slope, l->nslope);
    }
  }
  if (r == 0) {
    char extra;
    if (fread(&extra, 1, 1, f) == 1)
      r = kiln_fail(e, KILN_ECORRUPT, "weight file '%s' is longer than its model's layers use: not the weights of this .param",
                    path);
  }
  fclose(f);
  return r;
}
