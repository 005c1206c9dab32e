/* wm_synth.c — see wm_synth.h. Everything is a pure function of its
 * arguments, so a test can rebuild the clean frame it compares against. */
#include "wm_synth.h"
#include "util/b64.h"
#include "util/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ws_layer_init(ws_layer *l, int w, int h) {
  memset(l, 0, sizeof *l);
  l->w = w;
  l->h = h;
  l->a = calloc((size_t)w * h, sizeof *l->a);
  for (int p = 0; p < 3; p++) l->c[p] = calloc((size_t)w * h, sizeof(float));
  return l->a && l->c[0] && l->c[1] && l->c[2] ? 0 : -1;
}

void ws_layer_release(ws_layer *l) {
  free(l->a);
  for (int p = 0; p < 3; p++) free(l->c[p]);
  memset(l, 0, sizeof *l);
}

typedef int (*inside_fn)(const void *arg, double x, double y);

/* Paints colour yuv at alpha `alpha` x coverage over the box (x0, y0, w, h). */
static void paint(ws_layer *l, int x0, int y0, int w, int h, inside_fn in, const void *arg, double alpha,
                  const uint8_t yuv[3]) {
  for (int y = y0; y < y0 + h; y++)
    for (int x = x0; x < x0 + w; x++) {
      if (x < 0 || y < 0 || x >= l->w || y >= l->h) continue;
      int c = 0;
      for (int j = 0; j < 4; j++)
        for (int i = 0; i < 4; i++) c += in(arg, x + (i + 0.5) / 4, y + (j + 0.5) / 4);
      if (!c) continue;
      double a = alpha * c / 16.0;
      size_t p = (size_t)y * l->w + x;
      /* "over": the new paint on top of what the layer has */
      double a0 = l->a[p], an = a + a0 * (1 - a);
      for (int k = 0; k < 3; k++) l->c[k][p] = (float)((yuv[k] * a + l->c[k][p] * a0 * (1 - a)) / an);
      l->a[p] = (float)an;
    }
}

typedef struct shape { double x, y, s; } shape;

static int in_opaque(const void *arg, double px, double py) {
  const shape *s = arg;
  double u = (px - s->x) / s->s, v = (py - s->y) / s->s;   /* a disc with a bar through it */
  double dx = u - 0.35, dy = v - 0.5;
  if (dx * dx + dy * dy < 0.35 * 0.35) return 1;
  return u >= 0.3 && u <= 1.6 && v >= 0.35 && v <= 0.65;
}

void ws_opaque_logo(ws_layer *l, double x, double y, double size, const uint8_t yuv[3]) {
  shape s = {x, y, size};
  paint(l, (int)x - 1, (int)y - 1, (int)(1.7 * size) + 3, (int)size + 3, in_opaque, &s, 1.0, yuv);
}

static int in_translucent(const void *arg, double px, double py) {
  const shape *s = arg;
  double u = (px - s->x) / s->s - 0.5, v = (py - s->y) / s->s - 0.5;   /* a ring around a diamond */
  double r = sqrt(u * u + v * v);
  if (r > 0.36 && r < 0.5) return 1;
  return fabs(u) + fabs(v) < 0.25;
}

void ws_translucent_logo(ws_layer *l, double x, double y, double size, double alpha, const uint8_t yuv[3]) {
  shape s = {x, y, size};
  paint(l, (int)x - 1, (int)y - 1, (int)size + 3, (int)size + 3, in_translucent, &s, alpha, yuv);
}

/* 5x7 glyphs for the few letters the tests write. */
static const char *glyph(char c) {
  switch (c) {
    case 'K': return "X...XX..X.X.X..XX...X.X..X..X.X...X";
    case 'I': return ".XXX...X....X....X....X....X...XXX.";
    case 'L': return "X....X....X....X....X....X....XXXXX";
    case 'N': return "X...XXX..XX.X.XX..XXX...XX...XX...X";
    case 'W': return "X...XX...XX...XX.X.XX.X.XX.X.X.X.X.";
    case 'M': return "X...XXX.XXX.X.XX.X.XX...XX...XX...X";
    case 'A': return ".XXX.X...XX...XXXXXXX...XX...XX...X";
    case 'O': return ".XXX.X...XX...XX...XX...XX...X.XXX.";
    case 'R': return "XXXX.X...XX...XXXXX.X.X..X..X.X...X";
    case 'S': return ".XXXXX....X.....XXX.....X....XXXXX.";
    default: return NULL;
  }
}

typedef struct text { double x, y, sc; const char *s; } text;

static int in_text(const void *arg, double px, double py) {
  const text *t = arg;
  double u = (px - t->x) / t->sc, v = (py - t->y) / t->sc;
  if (u < 0 || v < 0 || v >= 7) return 0;
  int ci = (int)(u / 6), gx = (int)u - ci * 6, gy = (int)v;
  if (ci >= (int)strlen(t->s) || gx >= 5) return 0;
  const char *g = glyph(t->s[ci]);
  return g && g[gy * 5 + gx] == 'X';
}

void ws_text(ws_layer *l, double x, double y, double scale, const char *s, const uint8_t yuv[3], int shadow) {
  int w = (int)(6 * scale * strlen(s)) + 4, h = (int)(7 * scale) + 4;
  if (shadow) {
    static const uint8_t black[3] = {16, 128, 128};
    text ts = {x + 2, y + 2, scale, s};
    paint(l, (int)x, (int)y, w + 2, h + 2, in_text, &ts, 0.6, black);
  }
  text t = {x, y, scale, s};
  paint(l, (int)x - 1, (int)y - 1, w, h, in_text, &t, 1.0, yuv);
}

static double scene_y(double X, double Y) {
  double v = 128 + 42 * sin(0.061 * X + 0.4 * sin(0.023 * Y)) + 30 * cos(0.047 * Y + 0.9) * sin(0.031 * X) +
             16 * sin(0.17 * (X + Y)) + 12 * sin(0.33 * X) * sin(0.29 * Y);
  return v < 16 ? 16 : v > 235 ? 235 : v;
}

void ws_scene(AVFrame *f, int64_t n) {
  double ox = 1.3 * n, oy = 0.55 * n;
  for (int y = 0; y < f->height; y++)
    for (int x = 0; x < f->width; x++)
      f->data[0][(size_t)y * f->linesize[0] + x] = (uint8_t)lrint(scene_y(x + ox, y + oy));
  for (int y = 0; y < f->height / 2; y++)
    for (int x = 0; x < f->width / 2; x++) {
      double X = 2 * x + 0.5 + ox, Y = 2 * y + 0.5 + oy;
      f->data[1][(size_t)y * f->linesize[1] + x] = (uint8_t)lrint(128 + 30 * sin(0.02 * X + 0.011 * Y));
      f->data[2][(size_t)y * f->linesize[2] + x] = (uint8_t)lrint(128 + 30 * cos(0.015 * Y - 0.021 * X));
    }
}

void ws_bbox(const ws_layer *l, float thr, int *x0, int *y0, int *x1, int *y1) {
  *x0 = l->w; *y0 = l->h; *x1 = -1; *y1 = -1;
  for (int y = 0; y < l->h; y++)
    for (int x = 0; x < l->w; x++)
      if (l->a[(size_t)y * l->w + x] > thr) {
        if (x < *x0) *x0 = x;
        if (x > *x1) *x1 = x;
        if (y < *y0) *y0 = y;
        if (y > *y1) *y1 = y;
      }
}

void ws_apply(const ws_layer *l, AVFrame *f) {
  for (int y = 0; y < l->h; y++)
    for (int x = 0; x < l->w; x++) {
      size_t p = (size_t)y * l->w + x;
      if (l->a[p] <= 0) continue;
      uint8_t *q = &f->data[0][(size_t)y * f->linesize[0] + x];
      *q = (uint8_t)lrint(l->a[p] * l->c[0][p] + (1 - l->a[p]) * *q);
    }
  for (int y = 0; y < l->h / 2; y++)
    for (int x = 0; x < l->w / 2; x++) {
      double a = 0, cu = 0, cv = 0;
      for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++) {
          size_t p = (size_t)(2 * y + j) * l->w + 2 * x + i;
          a += l->a[p];
          cu += l->a[p] * l->c[1][p];
          cv += l->a[p] * l->c[2][p];
        }
      if (a <= 0) continue;
      double am = a / 4;
      uint8_t *u = &f->data[1][(size_t)y * f->linesize[1] + x], *v = &f->data[2][(size_t)y * f->linesize[2] + x];
      *u = (uint8_t)lrint(am * (cu / a) + (1 - am) * *u);
      *v = (uint8_t)lrint(am * (cv / a) + (1 - am) * *v);
    }
}

void ws_err_add(ws_err *e, const ws_layer *l, const AVFrame *a, const AVFrame *b) {
  for (int y = 0; y < l->h; y++)
    for (int x = 0; x < l->w; x++) {
      if (l->a[(size_t)y * l->w + x] <= 0.05f) continue;
      double d = (double)a->data[0][(size_t)y * a->linesize[0] + x] - b->data[0][(size_t)y * b->linesize[0] + x];
      e->se += d * d;
      e->n++;
    }
}

double ws_err_psnr(const ws_err *e) {
  if (e->n == 0) return 0;
  double mse = e->se / (double)e->n;
  return mse <= 1e-10 ? 100 : 10 * log10(255.0 * 255.0 / mse);
}

void ws_recall(const ws_layer *l, const uint8_t *m, double *recall, double *area_ratio) {
  int64_t mark = 0, hit = 0, area = 0;
  for (size_t p = 0; p < (size_t)l->w * l->h; p++) {
    int in = l->a[p] > 0.05f;
    mark += in;
    hit += in && m[p];
    area += m[p] != 0;
  }
  *recall = mark ? (double)hit / (double)mark : 1;
  *area_ratio = mark ? (double)area / (double)mark : 0;
}

uint8_t *ws_b64(const char *s, size_t n) {
  uint8_t *b = NULL;
  size_t bn = 0;
  if (!s || ku_b64_decode(s, strlen(s), &b, &bn) < 0) return NULL;
  if (bn != n) { free(b); return NULL; }
  return b;
}

char *ws_png_b64(const km_image *im, const char *path) {
  kiln_err e = {0};
  if (km_image_write_png(path, im, &e) < 0) return NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  uint8_t *raw = n > 0 ? malloc((size_t)n) : NULL;
  char *b = raw && fread(raw, 1, (size_t)n, f) == (size_t)n ? ku_b64_encode(raw, (size_t)n) : NULL;
  fclose(f);
  free(raw);
  return b;
}

void ws_mask_at(const json_t *det, int n, int w, int h, uint8_t *m) {
  memset(m, 0, (size_t)w * h);
  const json_t *regs = json_object_get(det, "regions");
  for (size_t i = 0; i < json_array_size(regs); i++) {
    const json_t *g = json_array_get(regs, i);
    int x = (int)kj_num(g, "x", 0), y = (int)kj_num(g, "y", 0), rw = (int)kj_num(g, "w", 0), rh = (int)kj_num(g, "h", 0);
    if (n < kj_num(g, "start", 0) || n >= kj_num(g, "end", 0)) continue;
    uint8_t *b = ws_b64(json_string_value(json_object_get(g, "mask")), (size_t)rw * rh);
    if (!b) continue;
    for (int yy = 0; yy < rh; yy++)
      for (int xx = 0; xx < rw; xx++)
        if (b[(size_t)yy * rw + xx]) m[(size_t)(y + yy) * w + x + xx] = 1;
    free(b);
  }
}
