/* ncnn.c — the `.param` reader (see ncnn.h). The format (ncnn's own docs,
 * "param and model file structure"): a magic number 7767517, then
 * "LAYERS BLOBS", then one line per layer:
 *   TYPE NAME NIN NOUT IN_BLOB... OUT_BLOB... ID=VALUE...
 * where a VALUE is an integer or a float, and an array parameter is
 * written with id -23300-ID as "-233ID=N,V1,...,VN". Blob names are
 * interned in order of first appearance.
 *
 * Both files are untrusted (tests/fuzz/fuzz_ncnn.c): every number is read
 * whole (no wrap-around), ids are 0..KN_MAX_ID, values finite, names fit
 * their fields, and nothing is allocated for a count before the file is
 * known to hold it (the layer and blob tables grow as lines come; a
 * weight array is allocated only once the .bin's remaining length covers
 * it). What the counts mean for the executor is net.c's to check. */
#include "nn/ncnn.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

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

/* The blob's index, interned if new; -1 when cap blobs are taken, -2 when
 * the name does not fit, -3 out of memory. */
static int blob_index(kn_graph *g, int *alloc, int cap, const char *name) {
  if (strlen(name) >= sizeof g->blobs[0]) return -2;
  for (int i = 0; i < g->nblobs; i++)
    if (!strcmp(g->blobs[i], name)) return i;
  if (g->nblobs >= cap) return -1;
  if (g->nblobs == *alloc) {                       /* grown as names come, not by the count line 2 claims */
    int na = *alloc ? 2 * *alloc : 64;
    char(*nb)[64] = realloc(g->blobs, (size_t)na * sizeof *nb);
    if (!nb) return -3;
    g->blobs = nb;
    *alloc = na;
  }
  snprintf(g->blobs[g->nblobs], sizeof g->blobs[0], "%s", name);
  return g->nblobs++;
}

/* A whole decimal integer in [lo, hi] (tok is one token). */
static int int_tok(const char *tok, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = tok ? strtol(tok, &end, 10) : 0;
  if (!tok || end == tok || *end || errno || v < lo || v > hi) return -1;
  *out = v;
  return 0;
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

/* A finite float at v; *end after it. */
static int float_at(const char *v, char **end, float *out) {
  float f = strtof(v, end);
  if (*end == v || !isfinite(f)) return -1;
  *out = f;
  return 0;
}

/* Parses "ID=VALUE" or "-233ID=N,V,..." into kv: ID 0..KN_MAX_ID, values
 * finite, N no more than the text can hold. */
static int parse_kv(const char *tok, kn_param_kv *kv) {
  char *end;
  memset(kv, 0, sizeof *kv);
  errno = 0;
  long id = strtol(tok, &end, 10);
  if (end == tok || *end != '=' || errno) return -1;
  const char *v = end + 1;
  if (id <= -23300) {
    if (id < -23300 - KN_MAX_ID) return -1;
    kv->id = (int)(-23300 - id);
    kv->array = 1;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (end == v || errno || n < 0 || (size_t)n > strlen(end) / 2) return -1;   /* each value takes ",V" at least */
    kv->n = (int)n;
    kv->v = calloc(n ? (size_t)n : 1, sizeof *kv->v);
    if (!kv->v) return -1;
    for (long i = 0; i < n; i++) {
      if (*end != ',') return -1;
      if (float_at(end + 1, &end, &kv->v[i]) < 0) return -1;
    }
    return *end ? -1 : 0;
  }
  if (id < 0 || id > KN_MAX_ID) return -1;
  kv->id = (int)id;
  kv->n = 1;
  kv->v = calloc(1, sizeof *kv->v);
  if (!kv->v) return -1;
  return float_at(v, &end, &kv->v[0]) < 0 || *end ? -1 : 0;
}

/* The next line into line (n bytes): 1, 0 at the end, -1 when it is longer than the buffer. */
static int next_line(FILE *f, char *line, size_t n) {
  if (!fgets(line, (int)n, f)) return 0;
  size_t l = strlen(line);
  if (l == n - 1 && line[l - 1] != '\n' && !feof(f)) return -1;
  return 1;
}

int kn_ncnn_parse(const char *path, kn_graph *g, kiln_err *e) {
  memset(g, 0, sizeof *g);
  FILE *f = fopen(path, "r");
  if (!f) return kiln_fail(e, errno == ENOENT ? KILN_ENOENT : KILN_EIO, "cannot open model '%s': %s", path, strerror(errno));
  char line[1 << 16];
  long magic = 0, nl = 0, nb = 0;
  int r = 0, lalloc = 0, balloc = 0, lineno = 2;
  char *save = NULL;
  if (next_line(f, line, sizeof line) != 1 || int_tok(strtok_r(line, " \t\r\n", &save), 0, LONG_MAX, &magic) < 0 ||
      magic != 7767517 || strtok_r(NULL, " \t\r\n", &save)) {
    fclose(f);
    return kiln_fail(e, KILN_ECORRUPT, "'%s' is not an ncnn .param file (no magic number 7767517 at its start)", path);
  }
  save = NULL;
  if (next_line(f, line, sizeof line) != 1 || int_tok(strtok_r(line, " \t\r\n", &save), 1, 100000, &nl) < 0 ||
      int_tok(strtok_r(NULL, " \t\r\n", &save), 1, 100000, &nb) < 0 || strtok_r(NULL, " \t\r\n", &save)) {
    fclose(f);
    return kiln_fail(e, KILN_ECORRUPT, "'%s': bad layer and blob counts on line 2 (two numbers from 1 to 100000)", path);
  }
  while (r == 0 && g->nlayers < nl) {
    int got = next_line(f, line, sizeof line);
    lineno++;
    if (got < 0) { r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: the line is longer than %zu bytes", path, lineno, sizeof line - 2); break; }
    if (got == 0) break;
    save = NULL;
    char *tok = strtok_r(line, " \t\r\n", &save);
    if (!tok) continue;                          /* a blank line */
    if (g->nlayers == lalloc) {                  /* grown as lines come, not by the count line 2 claims */
      int na = lalloc ? 2 * lalloc : 16;
      kn_layer *nls = realloc(g->layers, (size_t)na * sizeof *nls);
      if (!nls) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); break; }
      g->layers = nls;
      lalloc = na;
    }
    kn_layer *l = &g->layers[g->nlayers];
    memset(l, 0, sizeof *l);
    snprintf(l->type, sizeof l->type, "%s", tok);
    char *name = strtok_r(NULL, " \t\r\n", &save), *ni = strtok_r(NULL, " \t\r\n", &save),
         *no = strtok_r(NULL, " \t\r\n", &save);
    if (!name || !ni || !no) { r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: a layer line needs TYPE NAME NIN NOUT", path, lineno); break; }
    snprintf(l->name, sizeof l->name, "%s", name);
    long vin, vout;
    if (int_tok(ni, 0, KN_MAX_IO, &vin) < 0 || int_tok(no, 0, KN_MAX_IO, &vout) < 0) {
      r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s' has %s inputs and %s outputs (0 to %d each)", path, lineno, name,
                    KILN_CLIP(ni, 20), KILN_CLIP(no, 20), KN_MAX_IO);
      break;
    }
    l->nin = (int)vin;
    l->nout = (int)vout;
    int known = 0;
    for (int i = 0; supported[i]; i++) known |= !strcmp(supported[i], tok);
    if (!known) {
      r = kiln_fail(e, KILN_EINVAL, "%s:%d: layer '%s' has type '%s', which kiln does not implement (it does: %s)", path,
                    lineno, name, KILN_CLIP(tok, 40), kn_supported_layers());
      break;
    }
    g->nlayers++;                                /* from here kn_graph_release frees what the layer holds */
    for (int i = 0; r == 0 && i < l->nin + l->nout; i++) {
      char *b = strtok_r(NULL, " \t\r\n", &save);
      int idx = b ? blob_index(g, &balloc, (int)nb, b) : -1;
      if (idx == -2) r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s': blob name '%s' is longer than %zu bytes", path, lineno,
                                   name, KILN_CLIP(b, 40), sizeof g->blobs[0] - 1);
      else if (idx == -3) r = kiln_fail(e, KILN_ENOMEM, "out of memory");
      else if (idx < 0) r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s' lists fewer blobs than it says, or more than %ld in all",
                                      path, lineno, name, nb);
      else if (i < l->nin) l->in[i] = idx;
      else l->out[i - l->nin] = idx;
    }
    while (r == 0 && (tok = strtok_r(NULL, " \t\r\n", &save))) {
      if (l->np >= KN_MAX_PARAMS) { r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s' has too many parameters", path, lineno, name); break; }
      if (parse_kv(tok, &l->p[l->np]) < 0) {
        free(l->p[l->np].v);
        r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s': cannot read parameter '%s' (ID=VALUE, ID 0 to %d, a finite number)",
                      path, lineno, name, KILN_CLIP(tok, 40), KN_MAX_ID);
        break;
      }
      for (int k = 0; k < l->np; k++)
        if (l->p[k].id == l->p[l->np].id) {
          r = kiln_fail(e, KILN_ECORRUPT, "%s:%d: layer '%s' gives parameter %d twice", path, lineno, name, l->p[k].id);
          free(l->p[l->np].v);
          break;
        }
      if (r == 0) l->np++;
    }
  }
  fclose(f);
  if (r == 0 && g->nlayers < nl)
    r = kiln_fail(e, KILN_ECORRUPT, "'%s' is truncated: it says %ld layers and has %d", path, nl, g->nlayers);
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

typedef struct binr { FILE *f; const char *path; const char *layer; kiln_err *e; int64_t left; } binr;

static int truncated(binr *b) {
  return kiln_fail(b->e, KILN_ECORRUPT, "weight file '%s' is truncated (it ends inside the weights of layer '%s')", b->path,
                   b->layer);
}

static int read_exact(binr *b, void *p, size_t n) {
  if ((int64_t)n > b->left || fread(p, 1, n, b->f) != n) return truncated(b);
  b->left -= (int64_t)n;
  return 0;
}

/* n values of elem bytes each: what is left of the file must hold them (checked before any allocation). */
static int fits(binr *b, int64_t n, int64_t elem) { return n >= 0 && n <= b->left / elem ? 0 : truncated(b); }

static int read_raw(binr *b, float **out, int64_t n) {
  int r = fits(b, n, sizeof **out);
  if (r < 0) return r;
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
  if ((r = fits(b, n, sizeof(uint16_t))) < 0) return r;
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

/* Parameter id of l as a count: a whole number from 1 (0 with zero_ok) up to
 * what the file could hold, else a message naming the layer. */
static int count_param(binr *b, const kn_layer *l, int id, float def, int zero_ok, int64_t *out) {
  double v = kn_param(l, id, def);
  if (!(v >= (zero_ok ? 0 : 1) && v <= 1e15 && v == floor(v)))
    return kiln_fail(b->e, KILN_ECORRUPT, "layer '%s': parameter %d is %g, not a count of weights", l->name, id, v);
  *out = (int64_t)v;
  return 0;
}

int kn_ncnn_load_bin(kn_graph *g, const char *path, kiln_err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_fail(e, errno == ENOENT ? KILN_ENOENT : KILN_EIO, "cannot open weight file '%s': %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(f);
    return kiln_fail(e, KILN_EIO, "weight file '%s' is not a regular file", path);
  }
  binr b = {f, path, "", e, (int64_t)sb.st_size};
  int r = 0;
  for (int i = 0; r == 0 && i < g->nlayers; i++) {
    kn_layer *l = &g->layers[i];
    b.layer = l->name;
    if (!strcmp(l->type, "Convolution") || !strcmp(l->type, "ConvolutionDepthWise")) {
      if (kn_param(l, 6, 0) == 0) { r = kiln_fail(e, KILN_ECORRUPT, "layer '%s' gives no weight size (parameter 6)", l->name); break; }
      if ((r = count_param(&b, l, 6, 0, 0, &l->nweight)) < 0) break;
      r = read_flagged(&b, &l->weight, l->nweight);
      if (r == 0 && kn_param(l, 5, 0) != 0 && (r = count_param(&b, l, 0, 0, 0, &l->nbias)) == 0)
        r = read_raw(&b, &l->bias, l->nbias);
    } else if (!strcmp(l->type, "PReLU")) {
      if ((r = count_param(&b, l, 0, 1, 0, &l->nslope)) == 0) r = read_raw(&b, &l->slope, l->nslope);
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
