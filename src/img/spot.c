/* spot.c — the highlight spotlight: the ellipse kept as it is, everything
 * else dimmed, and a ring just outside the edge.
 *
 * Coverage uses the distance to the ellipse along the ray from its centre,
 * |p|·(d − 1)/d with d the normalised radius: exact for circles and close
 * for ellipses, enough for a one-pixel anti-aliased edge. Per row, only the
 * columns near the edge get that computation: those certainly inside are
 * copied and those certainly outside dimmed by a vectorised fixed-point run. */
#include "img/img.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdio.h>

static inline double clamp01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }

/* d[i] = mid + (s[i] - mid) * k, in 8.8 fixed point; vectorises. */
static void dim_run(const uint8_t *restrict s, uint8_t *restrict d, int n, int K, int B) {
  for (int i = 0; i < n; i++) d[i] = (uint8_t)((s[i] * K + B) >> 8);
}

static void spot_plane(const uint8_t *src, int sl, uint8_t *dst, int dl, int w, int h, int chroma,
                       const ki_spot *s, uint8_t ring) {
  double k = 1.0 - s->dim;
  double mid = chroma ? 128.0 : 16.0;
  int K = (int)lrint(k * 256), B = (int)lrint(mid * (256 - K)) + 128;
  double sc = chroma ? 2.0 : 1.0, off = chroma ? 0.5 : 0.0;
  double rmin = s->rx < s->ry ? s->rx : s->ry;
  double rw = s->ring_width;
  /* Every point inside the ellipse lies at least rmin·(1 − d) from its edge
   * along the ray from the centre (d = normalised radius), so d < d_in is
   * fully inside (no blend, no ring) and d > d_out fully outside. */
  double d_in = 1 - 0.5 / rmin, d_out = 1 + (rw + 1) / rmin;
  for (int j = 0; j < h; j++) {
    const uint8_t *sr = src + (size_t)j * sl;
    uint8_t *dr = dst + (size_t)j * dl;
    double py = j * sc + off - s->cy, ny = py / s->ry;
    double span_out = d_out * d_out - ny * ny;
    if (span_out <= 0) { dim_run(sr, dr, w, K, B); continue; }
    /* columns (in this plane) that may need the full computation */
    double xo = s->rx * sqrt(span_out);
    int a0 = (int)floor((s->cx - xo - off) / sc) - 1, a1 = (int)ceil((s->cx + xo - off) / sc) + 1;
    if (a0 < 0) a0 = 0;
    if (a1 > w) a1 = w;
    if (a0 >= a1) { dim_run(sr, dr, w, K, B); continue; }
    dim_run(sr, dr, a0, K, B);
    dim_run(sr + a1, dr + a1, w - a1, K, B);
    /* columns certainly inside: copied */
    int c0 = a1, c1 = a1;
    double span_in = d_in > 0 ? d_in * d_in - ny * ny : -1;
    if (span_in > 0) {
      double xi = s->rx * sqrt(span_in);
      c0 = (int)ceil((s->cx - xi - off) / sc) + 1;
      c1 = (int)floor((s->cx + xi - off) / sc) - 1;
      if (c0 < a0) c0 = a0;
      if (c1 > a1) c1 = a1;
      if (c0 >= c1) c0 = c1 = a1;
      else memcpy(dr + c0, sr + c0, (size_t)(c1 - c0));
    }
    for (int i = a0; i < a1; i++) {
      if (i == c0) { i = c1 - 1; continue; }
      double px = i * sc + off - s->cx;
      double nx = px / s->rx;
      double d = sqrt(nx * nx + ny * ny);
      double sd = d > 1e-9 ? sqrt(px * px + py * py) * (d - 1) / d : -rmin;
      double a_in = clamp01(0.5 - sd);
      int dimmed = (sr[i] * K + B) >> 8;
      double v = sr[i] * a_in + dimmed * (1 - a_in);
      if (rw > 0) {
        double a_r = clamp01(rw / 2 + 0.5 - fabs(sd - rw / 2));
        v = v * (1 - a_r) + ring * a_r;
      }
      dr[i] = (uint8_t)lrint(v);
    }
  }
}

void ki_spotlight(const AVFrame *src, AVFrame *dst, const ki_spot *s) {
  spot_plane(src->data[0], src->linesize[0], dst->data[0], dst->linesize[0], src->width, src->height, 0, s,
             s->ring_yuv[0]);
  for (int p = 1; p < 3; p++)
    spot_plane(src->data[p], src->linesize[p], dst->data[p], dst->linesize[p], src->width / 2, src->height / 2, 1,
               s, s->ring_yuv[p]);
}

void ki_rgb_to_yuv(const uint8_t rgb[3], int hd, uint8_t yuv[3]) {
  double kr = hd ? 0.2126 : 0.299, kb = hd ? 0.0722 : 0.114, kg = 1 - kr - kb;
  double r = rgb[0] / 255.0, g = rgb[1] / 255.0, b = rgb[2] / 255.0;
  double y = kr * r + kg * g + kb * b;
  double u = (b - y) / (2 * (1 - kb)), v = (r - y) / (2 * (1 - kr));
  yuv[0] = (uint8_t)lrint(16 + 219 * y);
  yuv[1] = (uint8_t)lrint(128 + 224 * u);
  yuv[2] = (uint8_t)lrint(128 + 224 * v);
}

int ki_parse_color(const char *s, uint8_t rgb[3]) {
  static const struct { const char *name; uint8_t c[3]; } named[] = {
      {"white", {255, 255, 255}}, {"black", {0, 0, 0}},   {"yellow", {255, 212, 0}},
      {"red", {230, 30, 40}},     {"green", {40, 200, 60}}, {"blue", {30, 90, 230}},
      {"cyan", {0, 220, 230}},    {"magenta", {230, 0, 200}}, {"orange", {255, 140, 0}}};
  for (size_t i = 0; i < sizeof named / sizeof named[0]; i++)
    if (strcasecmp(s, named[i].name) == 0) { memcpy(rgb, named[i].c, 3); return 0; }
  if (*s == '#') s++;
  if (strlen(s) != 6) return -1;
  unsigned v[3];
  for (int i = 0; i < 3; i++) {
    char hex[3] = {s[2 * i], s[2 * i + 1], 0};
    char *end;
    unsigned long x = strtoul(hex, &end, 16);
    if (*end) return -1;
    v[i] = (unsigned)x;
  }
  for (int i = 0; i < 3; i++) rgb[i] = (uint8_t)v[i];
  return 0;
}

double ki_mse(const uint8_t *a, int la, const uint8_t *b, int lb, int w, int h) {
  double sum = 0;
  for (int y = 0; y < h; y++) {
    const uint8_t *ra = a + (size_t)y * la, *rb = b + (size_t)y * lb;
    for (int x = 0; x < w; x++) {
      double d = (double)ra[x] - rb[x];
      sum += d * d;
    }
  }
  return sum / ((double)w * h);
}

double ki_psnr(double mse) {
  return mse <= 1e-10 ? 100.0 : 10.0 * log10(255.0 * 255.0 / mse);
}
