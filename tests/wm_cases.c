/* wm_cases.c — see wm_cases.h. A case is a pure function of its id (and of
 * the sample files and fonts it reads), so the benchmark and the tests can
 * rebuild the clean frame under the mark at any time. */
#include "wm_cases.h"

#include "img/img.h"
#include "media/media.h"
#include "util/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a seeded generator (splitmix64) -------------------------------------- */

typedef struct rng { uint64_t s; } rng;

static uint64_t next(rng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
static double uni(rng *r, double a, double b) { return a + (b - a) * (double)(next(r) >> 11) / 9007199254740992.0; }
static int pick(rng *r, int n) { return (int)(next(r) % (uint64_t)n); }

static uint32_t hash3(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t h = a * 0x9e3779b1u ^ b * 0x85ebca77u ^ c * 0xc2b2ae3du;
  h ^= h >> 15; h *= 0x2c1b3c6du; h ^= h >> 12; h *= 0x297a2d39u; h ^= h >> 15;
  return h;
}

/* ---- scenes --------------------------------------------------------------- */

enum { SC_PROC, SC_PHOTO_PAN, SC_CLIP, SC_STILL, SC_STILL_BALL };

struct wc_scene {
  int kind;
  double f[8], amp[4], vx, vy, ph;   /* SC_PROC */
  AVFrame *photo;                    /* SC_PHOTO_PAN, SC_STILL*: the photo, full size */
  double cx0, cy0, cx1, cy1, cw0, cw1;   /* the window's centre and width, first -> last frame */
  AVFrame **clip;                    /* SC_CLIP: frames already at WC_W x WC_H */
  int nclip;
  double noise;                      /* sensor noise (std, levels) */
  double bx, by, bvx, bvy, br;       /* SC_STILL_BALL */
  uint8_t ball[3];
  int tone;                          /* 0, 1 dark, 2 bright */
  int fade;                          /* 0, 1 in from black, 2 out to black */
  wc_scene *cut;                     /* from frame cut_at on, this scene instead */
  int cut_at, frames;
};

static const char *photos[] = {"messi5.jpg", "baboon.jpg", "fruits.jpg", "building.jpg"};
static const char *clips[] = {"vtest.avi", "Megamind.avi", "tree.avi"};

static void samples_dir(const char *samples, char *out, size_t n) {
  const char *e = getenv("KILN_SAMPLES"), *home = getenv("HOME");
  if (samples) snprintf(out, n, "%s", samples);
  else if (e && *e) snprintf(out, n, "%s", e);
  else snprintf(out, n, "%s/.cache/kiln/samples", home ? home : "/");
}

static AVFrame *load_photo(const char *dir, const char *name) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  km_image im = {0};
  kiln_err e = {0};
  if (km_image_read(path, &im, &e) < 0) { fprintf(stderr, "wm_cases: %s\n", e.msg); return NULL; }
  int w = im.w & ~1, h = im.h & ~1;
  AVFrame *f = km_frame_new(w, h);
  if (!f) { km_image_release(&im); return NULL; }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t yuv[3];
      ki_rgb_to_yuv(im.rgb + 3 * ((size_t)y * im.w + x), 0, yuv);
      f->data[0][(size_t)y * f->linesize[0] + x] = yuv[0];
    }
  for (int y = 0; y < h / 2; y++)
    for (int x = 0; x < w / 2; x++) {
      int su = 0, sv = 0;
      for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++) {
          uint8_t yuv[3];
          ki_rgb_to_yuv(im.rgb + 3 * ((size_t)(2 * y + j) * im.w + 2 * x + i), 0, yuv);
          su += yuv[1];
          sv += yuv[2];
        }
      f->data[1][(size_t)y * f->linesize[1] + x] = (uint8_t)((su + 2) / 4);
      f->data[2][(size_t)y * f->linesize[2] + x] = (uint8_t)((sv + 2) / 4);
    }
  km_image_release(&im);
  return f;
}

/* Frames [off, off + n) of a clip, each cropped to 16:9 and scaled to WC_W x WC_H. */
static AVFrame **load_clip(const char *dir, const char *name, int off, int n, int *got) {
  char path[1200];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  km_decoder *d = NULL;
  kiln_err e = {0};
  *got = 0;
  if (km_decoder_open(&d, path, NULL, 0, -1, 0, &e) < 0) { fprintf(stderr, "wm_cases: %s\n", e.msg); return NULL; }
  AVFrame **v = calloc((size_t)n, sizeof *v);
  for (int i = 0; v && *got < n; i++) {
    AVFrame *f = NULL;
    km_frame_info fi;
    if (km_decoder_read(d, &f, &fi, &e) <= 0) break;
    if (i >= off) {
      double ch = f->width * 9.0 / 16.0;
      if (ch > f->height) ch = f->height;
      AVFrame *o = km_frame_new(WC_W, WC_H);
      if (o) ki_crop_scale(f, 0, (f->height - ch) / 2, f->width, ch, o);
      v[(*got)++] = o;
    }
    av_frame_free(&f);
  }
  km_decoder_free(d);
  return v;
}

/* frames that decode (tree.avi declares 444, 68 decode) */
static int clip_frames(int which) { return which == 0 ? 795 : which == 1 ? 270 : 68; }

static void scene_free(wc_scene *s) {
  if (!s) return;
  av_frame_free(&s->photo);
  for (int i = 0; i < s->nclip; i++) av_frame_free(&s->clip[i]);
  free(s->clip);
  scene_free(s->cut);
  free(s);
}

static wc_scene *scene_new(rng *r, const char *dir, int frames, int kind, char *name, size_t nn) {
  wc_scene *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->kind = kind;
  s->frames = frames;
  if (kind == SC_PROC) {
    for (int i = 0; i < 8; i++) s->f[i] = uni(r, 0.012, 0.2);
    for (int i = 0; i < 4; i++) s->amp[i] = uni(r, 8, 40);
    double sp = uni(r, 0.4, 3.0), an = uni(r, 0, 2 * M_PI);
    s->vx = sp * cos(an);
    s->vy = sp * sin(an);
    s->ph = uni(r, 0, 6.28);
    snprintf(name, nn, "procedural pan %.1f px/frame", sp);
  } else if (kind == SC_CLIP) {
    int which = pick(r, 3);
    int off = pick(r, clip_frames(which) - frames > 0 ? clip_frames(which) - frames : 1);
    int want = frames < clip_frames(which) ? frames : clip_frames(which);   /* a short clip plays back and forth */
    s->clip = load_clip(dir, clips[which], off, want, &s->nclip);
    if (!s->clip || s->nclip < want) {
      fprintf(stderr, "wm_cases: %s/%s gives %d of the %d frames needed (run scripts/samples)\n", dir, clips[which], s->nclip,
              want);
      scene_free(s);
      return NULL;
    }
    snprintf(name, nn, "%s from frame %d", clips[which], off);
  } else {
    int which = pick(r, 4);
    s->photo = load_photo(dir, photos[which]);
    if (!s->photo) { scene_free(s); return NULL; }
    double pw = s->photo->width, ph = s->photo->height, aspect = 16.0 / 9.0;
    double wmax = pw < ph * aspect ? pw : ph * aspect;
    if (kind == SC_PHOTO_PAN) {
      s->cw0 = wmax * uni(r, 0.55, 0.85);
      s->cw1 = uni(r, 0, 1) < 0.4 ? s->cw0 * uni(r, 0.75, 1.25) : s->cw0;   /* some zoom */
      if (s->cw1 > wmax) s->cw1 = wmax;
      double m0x = s->cw0 / 2, m0y = s->cw0 / aspect / 2, m1x = s->cw1 / 2, m1y = s->cw1 / aspect / 2;
      s->cx0 = uni(r, m0x, pw - m0x); s->cy0 = uni(r, m0y, ph - m0y);
      s->cx1 = uni(r, m1x, pw - m1x); s->cy1 = uni(r, m1y, ph - m1y);
      snprintf(name, nn, "%s pan%s", photos[which], s->cw1 != s->cw0 ? " + zoom" : "");
    } else {
      s->cw0 = s->cw1 = wmax * uni(r, 0.6, 1.0);
      s->cx0 = s->cx1 = uni(r, s->cw0 / 2, pw - s->cw0 / 2);
      s->cy0 = s->cy1 = uni(r, s->cw0 / aspect / 2, ph - s->cw0 / aspect / 2);
      s->noise = uni(r, 0.8, 2.5);
      if (kind == SC_STILL_BALL) {
        s->br = uni(r, 10, 28);
        s->bx = uni(r, 40, WC_W - 40); s->by = uni(r, 40, WC_H - 40);
        double sp = uni(r, 2, 6), an = uni(r, 0, 2 * M_PI);
        s->bvx = sp * cos(an); s->bvy = sp * sin(an);
        uint8_t rgb[3] = {(uint8_t)pick(r, 256), (uint8_t)pick(r, 256), (uint8_t)pick(r, 256)};
        ki_rgb_to_yuv(rgb, 0, s->ball);
      }
      snprintf(name, nn, "still %s, noise %.1f%s", photos[which], s->noise, kind == SC_STILL_BALL ? ", a ball rolls" : "");
    }
  }
  return s;
}

static double proc_y(const wc_scene *s, double X, double Y) {
  double v = 128 + s->amp[0] * sin(s->f[0] * X + 0.4 * sin(s->f[1] * Y)) + s->amp[1] * cos(s->f[2] * Y + s->ph) * sin(s->f[3] * X) +
             s->amp[2] * sin(s->f[4] * (X + Y)) + s->amp[3] * sin(s->f[5] * X) * sin(s->f[6] * Y);
  return v < 16 ? 16 : v > 235 ? 235 : v;
}

static void ball_at(const wc_scene *s, int n, double *x, double *y) {
  /* bounces off the frame's edges */
  double W2 = WC_W - 2 * s->br, H2 = WC_H - 2 * s->br;
  double px = fmod(fabs(s->bx - s->br + n * s->bvx), 2 * W2), py = fmod(fabs(s->by - s->br + n * s->bvy), 2 * H2);
  if (px > W2) px = 2 * W2 - px;
  if (py > H2) py = 2 * H2 - py;
  *x = px + s->br;
  *y = py + s->br;
}

static void scene_frame(const wc_scene *s, AVFrame *f, int n) {
  if (s->cut && n >= s->cut_at) { scene_frame(s->cut, f, n - s->cut_at); return; }
  if (s->kind == SC_PROC) {
    double ox = s->vx * n, oy = s->vy * n;
    for (int y = 0; y < WC_H; y++)
      for (int x = 0; x < WC_W; x++) f->data[0][(size_t)y * f->linesize[0] + x] = (uint8_t)lrint(proc_y(s, x + ox, y + oy));
    for (int y = 0; y < WC_H / 2; y++)
      for (int x = 0; x < WC_W / 2; x++) {
        double X = 2 * x + 0.5 + ox, Y = 2 * y + 0.5 + oy;
        f->data[1][(size_t)y * f->linesize[1] + x] = (uint8_t)lrint(128 + 30 * sin(s->f[7] * 0.2 * X + 0.011 * Y));
        f->data[2][(size_t)y * f->linesize[2] + x] = (uint8_t)lrint(128 + 30 * cos(0.015 * Y - s->f[7] * 0.15 * X));
      }
  } else if (s->kind == SC_CLIP) {
    int k = s->nclip > 1 ? n % (2 * s->nclip - 2) : 0;
    av_frame_copy(f, s->clip[k < s->nclip ? k : 2 * s->nclip - 2 - k]);
  } else {
    double t = s->frames > 1 ? (double)n / (s->frames - 1) : 0;
    double cw = s->cw0 + (s->cw1 - s->cw0) * t, ch = cw * 9.0 / 16.0;
    double cx = s->cx0 + (s->cx1 - s->cx0) * t, cy = s->cy0 + (s->cy1 - s->cy0) * t;
    ki_crop_scale(s->photo, cx - cw / 2, cy - ch / 2, cw, ch, f);
  }
  if (s->kind == SC_STILL_BALL) {
    double bx, by;
    ball_at(s, n, &bx, &by);
    for (int y = (int)(by - s->br - 2); y <= (int)(by + s->br + 2); y++)
      for (int x = (int)(bx - s->br - 2); x <= (int)(bx + s->br + 2); x++) {
        if (x < 0 || y < 0 || x >= WC_W || y >= WC_H) continue;
        double d = sqrt((x + 0.5 - bx) * (x + 0.5 - bx) + (y + 0.5 - by) * (y + 0.5 - by)), a = s->br + 0.5 - d;
        a = a < 0 ? 0 : a > 1 ? 1 : a;
        if (a <= 0) continue;
        uint8_t *p = &f->data[0][(size_t)y * f->linesize[0] + x];
        *p = (uint8_t)lrint(a * s->ball[0] + (1 - a) * *p);
        if (!(x & 1) && !(y & 1)) {
          f->data[1][(size_t)(y / 2) * f->linesize[1] + x / 2] = (uint8_t)lrint(a * s->ball[1] + (1 - a) * f->data[1][(size_t)(y / 2) * f->linesize[1] + x / 2]);
          f->data[2][(size_t)(y / 2) * f->linesize[2] + x / 2] = (uint8_t)lrint(a * s->ball[2] + (1 - a) * f->data[2][(size_t)(y / 2) * f->linesize[2] + x / 2]);
        }
      }
  }
  if (s->noise > 0)
    for (int y = 0; y < WC_H; y++)
      for (int x = 0; x < WC_W; x++) {
        uint32_t h = hash3((uint32_t)n, (uint32_t)x, (uint32_t)y);
        /* a sum of two uniforms: std = noise */
        double u = ((h & 0xffff) + (h >> 16)) / 65535.0 - 1.0;
        uint8_t *p = &f->data[0][(size_t)y * f->linesize[0] + x];
        int v = (int)lrint(*p + u * s->noise * 2.449);
        *p = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
  if (s->tone || s->fade) {
    double k = 1;
    if (s->fade == 1) k = n < 40 ? n / 40.0 : 1;
    if (s->fade == 2) k = n >= s->frames - 40 ? (s->frames - 1 - n) / 40.0 : 1;
    for (int y = 0; y < WC_H; y++)
      for (int x = 0; x < WC_W; x++) {
        uint8_t *p = &f->data[0][(size_t)y * f->linesize[0] + x];
        double v = *p;
        if (s->tone == 1) v = 16 + (v - 16) * 0.3;
        if (s->tone == 2) v = 235 - (235 - v) * 0.35;
        v = 16 + (v - 16) * k;
        *p = (uint8_t)lrint(v);
      }
    double kc = (s->tone == 1 ? 0.5 : s->tone == 2 ? 0.6 : 1) * k;
    for (int p = 1; p < 3; p++)
      for (int y = 0; y < WC_H / 2; y++)
        for (int x = 0; x < WC_W / 2; x++) {
          uint8_t *q = &f->data[p][(size_t)y * f->linesize[p] + x];
          *q = (uint8_t)lrint(128 + (*q - 128) * kc);
        }
  }
}

/* ---- marks ---------------------------------------------------------------- */

typedef struct cov { int w, h; float *v; } cov;

static void cov_free(cov *c) { free(c->v); c->v = NULL; }

static const char *fonts[] = {
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",          "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",         "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",      "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Oblique.ttf",  "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
};
static const char *words[] = {"KILN",    "@studio.cam", "SAMPLE", "Sora",      "demo only", "tiktok @maya",
                              "PREVIEW", "© 2026 Ace",  "CapCut", "watermark", "veo",       "stock 4471"};

/* The coverage of a text in a font at a size, by FFmpeg's drawtext (FreeType), cropped to its ink. */
static int render_text(const char *font, const char *text, int size, cov *out) {
  char dir[] = "/tmp/kiln-wmtext-XXXXXX";
  if (!mkdtemp(dir)) return -1;
  char tf[128], rf[128], cmd[2048];
  snprintf(tf, sizeof tf, "%s/t.txt", dir);
  snprintf(rf, sizeof rf, "%s/t.gray", dir);
  FILE *f = fopen(tf, "w");
  if (!f) return -1;
  fputs(text, f);
  fclose(f);
  int cw = (int)(size * 0.75 * (strlen(text) + 2)) + 32, ch = size * 2 + 32;
  cw = (cw + 1) & ~1;
  ch = (ch + 1) & ~1;
  snprintf(cmd, sizeof cmd,
           "ffmpeg -v error -nostdin -y -f lavfi -i color=c=black:s=%dx%d:d=1,format=gray "
           "-vf \"drawtext=fontfile=%s:textfile=%s:fontsize=%d:fontcolor=white:x=16:y=16\" -frames:v 1 -f rawvideo -pix_fmt gray %s",
           cw, ch, font, tf, size, rf);
  int r = system(cmd);
  uint8_t *g = malloc((size_t)cw * ch);
  f = r == 0 ? fopen(rf, "rb") : NULL;
  size_t got = f && g ? fread(g, 1, (size_t)cw * ch, f) : 0;
  if (f) fclose(f);
  unlink(tf);
  unlink(rf);
  rmdir(dir);
  if (got != (size_t)cw * ch) { free(g); fprintf(stderr, "wm_cases: drawtext with %s failed\n", font); return -1; }
  int lo = g[0], hi = lo, x0 = cw, y0 = ch, x1 = -1, y1 = -1;
  for (size_t p = 0; p < (size_t)cw * ch; p++) hi = g[p] > hi ? g[p] : hi;
  for (int y = 0; y < ch; y++)
    for (int x = 0; x < cw; x++)
      if (g[(size_t)y * cw + x] > lo) {
        x0 = x < x0 ? x : x0; x1 = x > x1 ? x : x1;
        y0 = y < y0 ? y : y0; y1 = y > y1 ? y : y1;
      }
  if (x1 < 0 || hi <= lo) { free(g); return -1; }
  out->w = x1 - x0 + 1;
  out->h = y1 - y0 + 1;
  out->v = calloc((size_t)out->w * out->h, sizeof(float));
  for (int y = 0; y < out->h; y++)
    for (int x = 0; x < out->w; x++)
      out->v[(size_t)y * out->w + x] = (float)(g[(size_t)(y + y0) * cw + x + x0] - lo) / (float)(255 - lo);
  free(g);
  return 0;
}

static double sd_seg(double px, double py, double ax, double ay, double bx, double by) {
  double dx = bx - ax, dy = by - ay, t = ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy);
  t = t < 0 ? 0 : t > 1 ? 1 : t;
  double ex = px - ax - t * dx, ey = py - ay - t * dy;
  return sqrt(ex * ex + ey * ey);
}

/* Logo shapes in units of the logo's height (u in [0, aspect], v in [0, 1]). */
static int in_logo(int shape, double u, double v) {
  double cx = u - 0.5, cy = v - 0.5, r = sqrt(cx * cx + cy * cy);
  switch (shape) {
    case 0: {   /* a disc with a bar through it (aspect 1.7) */
      double dx = u - 0.35, dy = v - 0.5;
      if (dx * dx + dy * dy < 0.35 * 0.35) return 1;
      return u >= 0.3 && u <= 1.6 && v >= 0.35 && v <= 0.65;
    }
    case 1: return (r > 0.36 && r < 0.5) || fabs(cx) + fabs(cy) < 0.25;   /* a ring around a diamond */
    case 2: {   /* a rounded square with a play triangle cut out */
      double qx = fabs(cx) - 0.32, qy = fabs(cy) - 0.32;
      double out = sqrt((qx > 0 ? qx * qx : 0) + (qy > 0 ? qy * qy : 0));
      if (out > 0.16) return 0;
      int tri = u > 0.38 && u < 0.72 && fabs(cy) < (0.72 - u) * 0.55;
      return !tri;
    }
    case 3: {   /* a five-pointed star */
      double a = atan2(cy, cx) + M_PI / 2, k = fmod(a + 20 * M_PI, 2 * M_PI / 5) - M_PI / 5;
      double rr = 0.5 * cos(M_PI / 5) / cos(fabs(k) * 0.62 + 0.0) * 0.9;
      return r < (0.2 + 0.3 * pow(fabs(cos(2.5 * a)), 3)) || r < rr * 0.45;
    }
    default: {   /* a hexagon outline with a bar: an emblem */
      double hx = fabs(cx), hy = fabs(cy), d = hx * 0.866 + hy * 0.5 > hy ? hx * 0.866 + hy * 0.5 : hy;
      if (d < 0.45 && d > 0.33) return 1;
      return sd_seg(u, v, 0.3, 0.5, 0.7, 0.5) < 0.07;
    }
  }
}

static void render_logo(int shape, int size, cov *out) {
  double aspect = shape == 0 ? 1.7 : 1.0;
  out->w = (int)ceil(size * aspect) + 2;
  out->h = size + 2;
  out->v = calloc((size_t)out->w * out->h, sizeof(float));
  for (int y = 0; y < out->h; y++)
    for (int x = 0; x < out->w; x++) {
      int c = 0;
      for (int j = 0; j < 4; j++)
        for (int i = 0; i < 4; i++) c += in_logo(shape, (x - 1 + (i + 0.5) / 4) / size, (y - 1 + (j + 0.5) / 4) / size);
      out->v[(size_t)y * out->w + x] = c / 16.0f;
    }
}

/* "over": paints coverage c (at ox, oy in the layer) in colour yuv at alpha a. */
static void over(ws_layer *l, const cov *c, int ox, int oy, double a, const uint8_t yuv[3]) {
  for (int y = 0; y < c->h; y++)
    for (int x = 0; x < c->w; x++) {
      int X = x + ox, Y = y + oy;
      if (X < 0 || Y < 0 || X >= l->w || Y >= l->h) continue;
      double s = a * c->v[(size_t)y * c->w + x];
      if (s <= 0) continue;
      size_t p = (size_t)Y * l->w + X;
      double a0 = l->a[p], an = s + a0 * (1 - s);
      for (int k = 0; k < 3; k++) l->c[k][p] = (float)((yuv[k] * s + l->c[k][p] * a0 * (1 - s)) / an);
      l->a[p] = (float)an;
    }
}

/* The coverage grown by radius rad (max over a disc) or blurred (box of radius rad). */
static void cov_grow(const cov *in, cov *out, int rad, int blur) {
  out->w = in->w + 2 * rad;
  out->h = in->h + 2 * rad;
  out->v = calloc((size_t)out->w * out->h, sizeof(float));
  for (int y = 0; y < out->h; y++)
    for (int x = 0; x < out->w; x++) {
      double m = 0, s = 0;
      int n = 0;
      for (int j = -rad; j <= rad; j++)
        for (int i = -rad; i <= rad; i++) {
          int X = x - rad + i, Y = y - rad + j;
          double v = X >= 0 && Y >= 0 && X < in->w && Y < in->h ? in->v[(size_t)Y * in->w + X] : 0;
          n++;
          s += v;
          if (i * i + j * j <= rad * rad + rad && v > m) m = v;
        }
      out->v[(size_t)y * out->w + x] = (float)(blur ? s / n : m);
    }
}

static void rand_colour(rng *r, uint8_t yuv[3], char *name, size_t nn) {
  int k = pick(r, 10);
  if (k < 5) { yuv[0] = 235; yuv[1] = yuv[2] = 128; snprintf(name, nn, "white"); }
  else if (k < 7) { yuv[0] = 16; yuv[1] = yuv[2] = 128; snprintf(name, nn, "black"); }
  else {
    uint8_t rgb[3];
    double h = uni(r, 0, 6);
    for (int i = 0; i < 3; i++) {
      double d = fabs(fmod(h + 6 - 2 * i, 6) - 3) - 1;   /* a saturated hue */
      rgb[i] = (uint8_t)lrint(255 * (d < 0 ? 0 : d > 1 ? 1 : d));
    }
    ki_rgb_to_yuv(rgb, 0, yuv);
    snprintf(name, nn, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
  }
}

static int make_mark(rng *r, wc_case *c) {
  uint8_t col[3];
  char cname[16];
  rand_colour(r, col, cname, sizeof cname);
  double opacity = uni(r, 0, 1) < 0.25 ? 1.0 : uni(r, 0.2, 1.0);
  int text = uni(r, 0, 1) < 0.6;
  cov body = {0}, shadow = {0}, outline = {0};
  int style = 0, pad = 0, sx = 0, sy = 0;
  static const uint8_t black[3] = {16, 128, 128}, white[3] = {235, 128, 128};
  const uint8_t *dark = col[0] > 60 ? black : white;   /* shadows and outlines contrast with the body */
  if (text) {
    const char *font = fonts[pick(r, (int)(sizeof fonts / sizeof *fonts))];
    const char *word = words[pick(r, (int)(sizeof words / sizeof *words))];
    int size = 16 + pick(r, 49);
    style = pick(r, 4);   /* 0 plain, 1 shadow, 2 outline, 3 both */
    if (access(font, R_OK) != 0) { fprintf(stderr, "wm_cases: no font %s (scripts/deps installs fonts-dejavu-core)\n", font); return -1; }
    if (render_text(font, word, size, &body) < 0) return -1;
    const char *fn = strrchr(font, '/') + 1;
    snprintf(c->mark_name, sizeof c->mark_name, "text '%s' %s %dpx%s, %s, %.0f%%", word, fn, size,
             style == 1 ? " + shadow" : style == 2 ? " + outline" : style == 3 ? " + outline + shadow" : "", cname, 100 * opacity);
  } else {
    int shape = pick(r, 5), size = 24 + pick(r, 73);
    style = uni(r, 0, 1) < 0.3 ? 1 : 0;
    render_logo(shape, size, &body);
    static const char *sn[] = {"disc+bar", "ring+diamond", "play badge", "star", "hexagon emblem"};
    snprintf(c->mark_name, sizeof c->mark_name, "logo %s %dpx%s, %s, %.0f%%", sn[shape], size, style == 1 ? " + shadow" : "", cname,
             100 * opacity);
  }
  int orad = 1 + (body.h > 40);
  if (style & 2) cov_grow(&body, &outline, orad, 0);
  if (style & 1) {
    cov_grow(&body, &shadow, 1, 1);
    sx = 1 + pick(r, 3);
    sy = 1 + pick(r, 3);
  }
  pad = (style & 2 ? orad : 0) + (style & 1 ? sx + sy + 2 : 0) + 2;
  if (ws_layer_init(&c->patch, body.w + 2 * pad, body.h + 2 * pad) < 0) return -1;
  if (style & 1) over(&c->patch, &shadow, pad - 1 + sx, pad - 1 + sy, uni(r, 0.45, 0.8), black);
  if (style & 2) over(&c->patch, &outline, pad - orad, pad - orad, 1.0, dark);
  over(&c->patch, &body, pad, pad, 1.0, col);
  for (size_t p = 0; p < (size_t)c->patch.w * c->patch.h; p++) c->patch.a[p] *= (float)opacity;
  cov_free(&body);
  cov_free(&shadow);
  cov_free(&outline);

  /* where, and how it moves */
  int pw = c->patch.w, ph = c->patch.h;
  int corner[5][2];
  for (int k = 0; k < 5; k++) {
    int m = 6 + pick(r, 28);
    corner[k][0] = k == 4 ? (WC_W - pw) / 2 + pick(r, 81) - 40 : (k & 1) ? WC_W - pw - m : m;
    corner[k][1] = k == 4 ? (WC_H - ph) / 2 + pick(r, 61) - 30 : (k & 2) ? WC_H - ph - m : m;
  }
  double mv = uni(r, 0, 1);
  static const char *cn[] = {"top left", "top right", "bottom left", "bottom right", "centre"};
  if (mv < 0.6) {
    int k = pick(r, 5);
    c->npos = 1;
    c->px[0] = corner[k][0];
    c->py[0] = corner[k][1];
    snprintf(c->name + strlen(c->name), sizeof c->name - strlen(c->name), "%s", cn[k]);
  } else if (mv < 0.85) {
    c->moving = 1;
    c->npos = 2 + pick(r, 2);
    c->seg_frames = 50 + pick(r, 26);
    int used = 0;
    for (int i = 0; i < c->npos; i++) {
      int k;
      do k = pick(r, 5); while (used & (1 << k));
      used |= 1 << k;
      c->px[i] = corner[k][0];
      c->py[i] = corner[k][1];
    }
    snprintf(c->name + strlen(c->name), sizeof c->name - strlen(c->name), "jumps between %d places every %d frames", c->npos,
             c->seg_frames);
  } else {
    c->moving = 2;
    c->npos = 1;
    int k = pick(r, 5);
    double sp = uni(r, 0.08, 0.3), an = uni(r, 0, 2 * M_PI);
    c->dx = sp * cos(an);
    c->dy = sp * sin(an);
    /* keep it inside the frame over the whole clip */
    double ex = c->dx * c->frames, ey = c->dy * c->frames;
    c->px[0] = corner[k][0] - (int)(ex > 0 && corner[k][0] + pw + ex > WC_W ? ex : 0) - (int)(ex < 0 && corner[k][0] + ex < 0 ? ex : 0);
    c->py[0] = corner[k][1] - (int)(ey > 0 && corner[k][1] + ph + ey > WC_H ? ey : 0) - (int)(ey < 0 && corner[k][1] + ey < 0 ? ey : 0);
    snprintf(c->name + strlen(c->name), sizeof c->name - strlen(c->name), "drifts %.2f px/frame from the %s", sp, cn[k]);
  }
  return 0;
}

/* ---- cases ---------------------------------------------------------------- */

int wc_make(int id, const char *samples, wc_case *c) {
  memset(c, 0, sizeof *c);
  c->id = id;
  c->tune = id < WC_CASES && id % 4 == 0;
  c->frames = 150;
  c->cur_x = c->cur_y = -100000;
  char dir[1024];
  samples_dir(samples, dir, sizeof dir);
  rng r = {0x6b696c6e00000000ull + (uint64_t)id * 7919};
  for (int i = 0; i < 4; i++) next(&r);
  /* the scene: kinds weighted towards the real ones */
  static const int kinds[] = {SC_PROC, SC_PROC, SC_PHOTO_PAN, SC_PHOTO_PAN, SC_PHOTO_PAN, SC_CLIP, SC_CLIP, SC_CLIP, SC_STILL, SC_STILL_BALL};
  int kind = kinds[pick(&r, 10)];
  char sn[80] = "";
  c->scene = scene_new(&r, dir, c->frames, kind, sn, sizeof sn);
  if (!c->scene) return -1;
  double m = uni(&r, 0, 1);
  const char *mod = "";
  if (m < 0.12) { c->scene->tone = 1; mod = ", dark"; }
  else if (m < 0.22) { c->scene->tone = 2; mod = ", bright"; }
  else if (m < 0.30) { c->scene->fade = 1; mod = ", fades in"; }
  else if (m < 0.36) { c->scene->fade = 2; mod = ", fades out"; }
  else if (m < 0.48) {
    char sn2[80];
    c->scene->cut_at = 50 + pick(&r, 51);
    static const int ck[] = {SC_PROC, SC_PHOTO_PAN, SC_CLIP};
    c->scene->cut = scene_new(&r, dir, c->frames - c->scene->cut_at, ck[pick(&r, 3)], sn2, sizeof sn2);
    if (!c->scene->cut) { wc_release(c); return -1; }
    snprintf(c->scene_name, sizeof c->scene_name, "%.30s, cut at %d to %.30s", sn, c->scene->cut_at, sn2);
  }
  if (!c->scene->cut) snprintf(c->scene_name, sizeof c->scene_name, "%s%s", sn, mod);
  if (ws_layer_init(&c->none, WC_W, WC_H) < 0 || ws_layer_init(&c->cur, WC_W, WC_H) < 0) { wc_release(c); return -1; }
  c->has_mark = id < WC_CASES;
  if (c->has_mark && make_mark(&r, c) < 0) { wc_release(c); return -1; }
  char where[160];
  snprintf(where, sizeof where, "%s", c->name);
  if (c->has_mark) snprintf(c->name, sizeof c->name, "%s; %s; %s", c->scene_name, c->mark_name, where);
  else snprintf(c->name, sizeof c->name, "%s; no mark", c->scene_name);
  return 0;
}

int wc_keep(wc_case *c) {
  if (c->cache) return 0;
  AVFrame **v = calloc((size_t)c->frames, sizeof *v);
  if (!v) return -1;
  for (int n = 0; n < c->frames; n++) {
    if (!(v[n] = km_frame_new(WC_W, WC_H))) {
      for (int i = 0; i < n; i++) av_frame_free(&v[i]);
      free(v);
      return -1;
    }
    scene_frame(c->scene, v[n], n);
  }
  c->cache = v;
  return 0;
}

void wc_release(wc_case *c) {
  for (int n = 0; c->cache && n < c->frames; n++) av_frame_free(&c->cache[n]);
  free(c->cache);
  scene_free(c->scene);
  ws_layer_release(&c->patch);
  ws_layer_release(&c->cur);
  ws_layer_release(&c->none);
  memset(c, 0, sizeof *c);
}

void wc_clean(const wc_case *c, AVFrame *f, int n) {
  if (c->cache && n >= 0 && n < c->frames) av_frame_copy(f, c->cache[n]);
  else scene_frame(c->scene, f, n);
}

void wc_pos(const wc_case *c, int n, int *x, int *y) {
  if (c->moving == 1) {
    int k = (n / c->seg_frames) % c->npos;
    *x = c->px[k];
    *y = c->py[k];
  } else if (c->moving == 2) {
    *x = c->px[0] + (int)lrint(n * c->dx);
    *y = c->py[0] + (int)lrint(n * c->dy);
  } else {
    *x = c->px[0];
    *y = c->py[0];
  }
}

const ws_layer *wc_layer(wc_case *c, int n) {
  if (!c->has_mark) return &c->none;
  int x, y;
  wc_pos(c, n, &x, &y);
  if (x == c->cur_x && y == c->cur_y) return &c->cur;
  ws_layer *l = &c->cur;
  memset(l->a, 0, (size_t)WC_W * WC_H * sizeof(float));
  for (int j = 0; j < c->patch.h; j++)
    for (int i = 0; i < c->patch.w; i++) {
      int X = x + i, Y = y + j;
      if (X < 0 || Y < 0 || X >= WC_W || Y >= WC_H) continue;
      size_t p = (size_t)Y * WC_W + X, q = (size_t)j * c->patch.w + i;
      l->a[p] = c->patch.a[q];
      for (int k = 0; k < 3; k++) l->c[k][p] = c->patch.c[k][q];
    }
  c->cur_x = x;
  c->cur_y = y;
  return l;
}

void wc_mask_over(wc_case *c, int a, int b, uint8_t *m) {
  memset(m, 0, (size_t)WC_W * WC_H);
  for (int n = a; n < b; n++) {
    const ws_layer *l = wc_layer(c, n);
    for (size_t p = 0; p < (size_t)WC_W * WC_H; p++) m[p] |= l->a[p] > 0.05f;
  }
}

/* ---- scoring ------------------------------------------------------------- */

int wc_write(wc_case *c, const char *path, int marked) {
  kiln_err e = {0};
  km_enc_opts o = {.width = WC_W, .height = WC_H, .fps = {25, 1}, .crf = 12, .preset = "veryfast", .gop = 50};
  km_writer *w = NULL;
  if (km_writer_open(&w, path, path, &o, NULL, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return -1; }
  AVFrame *f = km_frame_new(WC_W, WC_H);
  int r = 0;
  for (int n = 0; n < c->frames && r == 0; n++) {
    wc_clean(c, f, n);
    if (marked) ws_apply(wc_layer(c, n), f);
    r = km_writer_write(w, f, &e);
  }
  if (r == 0) r = km_writer_finish(w, &e);
  av_frame_free(&f);
  km_writer_free(w);
  return r;
}

/* SSIM of luma over the box (x0..x1, y0..y1), mean over 8x8 windows, step 4. */
static double ssim_box(const AVFrame *a, const AVFrame *b, int x0, int y0, int x1, int y1) {
  const double C1 = 6.5025, C2 = 58.5225;
  double sum = 0;
  int n = 0;
  for (int y = y0; y + 8 <= y1 + 1; y += 4)
    for (int x = x0; x + 8 <= x1 + 1; x += 4) {
      double ma = 0, mb = 0, va = 0, vb = 0, cab = 0;
      for (int j = 0; j < 8; j++)
        for (int i = 0; i < 8; i++) {
          double p = a->data[0][(size_t)(y + j) * a->linesize[0] + x + i], q = b->data[0][(size_t)(y + j) * b->linesize[0] + x + i];
          ma += p; mb += q; va += p * p; vb += q * q; cab += p * q;
        }
      ma /= 64; mb /= 64;
      va = va / 64 - ma * ma; vb = vb / 64 - mb * mb; cab = cab / 64 - ma * mb;
      sum += ((2 * ma * mb + C1) * (2 * cab + C2)) / ((ma * ma + mb * mb + C1) * (va + vb + C2));
      n++;
    }
  return n ? sum / n : 1;
}


/* Regions of det that never touch the mark (its pixels grown by 4). */
static void count_false(wc_case *c, const json_t *det, int *nfalse, int *nreg) {
  const json_t *regs = json_object_get(det, "regions");
  *nreg = (int)json_array_size(regs);
  *nfalse = 0;
  for (size_t i = 0; i < json_array_size(regs); i++) {
    const json_t *g = json_array_get(regs, i);
    int x = (int)kj_num(g, "x", 0), y = (int)kj_num(g, "y", 0), w = (int)kj_num(g, "w", 0), h = (int)kj_num(g, "h", 0);
    int s = (int)kj_num(g, "start", 0), en = (int)kj_num(g, "end", 0), touch = 0;
    uint8_t *b = ws_b64(json_string_value(json_object_get(g, "mask")), (size_t)w * h);
    for (int n = s; n < en && n < c->frames && !touch && b && c->has_mark; n += 5) {
      const ws_layer *l = wc_layer(c, n);
      for (int yy = 0; yy < h && !touch; yy++)
        for (int xx = 0; xx < w && !touch; xx++) {
          if (!b[(size_t)yy * w + xx]) continue;
          for (int j = -4; j <= 4 && !touch; j++)
            for (int k = -4; k <= 4 && !touch; k++) {
              int X = x + xx + k, Y = y + yy + j;
              if (X >= 0 && Y >= 0 && X < WC_W && Y < WC_H && l->a[(size_t)Y * WC_W + X] > 0.05f) touch = 1;
            }
        }
    }
    free(b);
    *nfalse += !touch;
  }
}

int wc_measure(wc_case *c, const char *out, const json_t *det, wc_metrics *m) {
  memset(m, 0, sizeof *m);
  m->worst_frame_psnr = 1e9;
  km_decoder *d = NULL;
  kiln_err e = {0};
  if (km_decoder_open(&d, out, NULL, 0, -1, 0, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return -1; }
  AVFrame *clean = km_frame_new(WC_W, WC_H);
  uint8_t *mk = det ? malloc((size_t)WC_W * WC_H) : NULL;
  int pw = c->patch.w, ph = c->patch.h;
  double *R = calloc((size_t)(pw ? pw : 1) * (ph ? ph : 1), sizeof(double));
  int *Rn = calloc((size_t)(pw ? pw : 1) * (ph ? ph : 1), sizeof(int));
  ws_err er = {0};
  double ssim = 0, hit = 0, mark = 0, area = 0;
  int n = 0;
  for (;; n++) {
    AVFrame *f = NULL;
    km_frame_info fi;
    if (km_decoder_read(d, &f, &fi, &e) <= 0) break;
    if (n >= c->frames) { av_frame_free(&f); continue; }
    wc_clean(c, clean, n);
    if (c->has_mark) {
      const ws_layer *L = wc_layer(c, n);
      ws_err fe = {0};
      ws_err_add(&fe, L, f, clean);
      er.se += fe.se;
      er.n += fe.n;
      double fp = ws_err_psnr(&fe);
      if (fe.n && fp < m->worst_frame_psnr) { m->worst_frame_psnr = fp; m->worst_frame = n; }
      int x0, y0, x1, y1;
      ws_bbox(L, 0.05f, &x0, &y0, &x1, &y1);
      if (x1 >= 0) ssim += ssim_box(f, clean, x0, y0, x1, y1);
      int px, py;
      wc_pos(c, n, &px, &py);
      for (int j = 0; j < ph; j++)
        for (int i = 0; i < pw; i++) {
          int X = px + i, Y = py + j;
          if (X < 0 || Y < 0 || X >= WC_W || Y >= WC_H) continue;
          R[(size_t)j * pw + i] += (double)f->data[0][(size_t)Y * f->linesize[0] + X] - clean->data[0][(size_t)Y * clean->linesize[0] + X];
          Rn[(size_t)j * pw + i]++;
        }
      if (mk) {
        ws_mask_at(det, n, WC_W, WC_H, mk);
        double rc, ar, fm = 0;
        ws_recall(L, mk, &rc, &ar);
        for (size_t p = 0; p < (size_t)WC_W * WC_H; p++) fm += L->a[p] > 0.05f;
        hit += rc * fm;
        mark += fm;
        area += ar * fm;
      }
    }
    av_frame_free(&f);
  }
  if (c->has_mark) {
    double sra = 0, saa = 0, srr = 0;
    for (int j = 0; j + 1 < ph; j++)
      for (int i = 0; i + 1 < pw; i++) {
        size_t p = (size_t)j * pw + i;
        if (!Rn[p] || !Rn[p + 1] || !Rn[p + pw]) continue;
        double r0 = R[p] / Rn[p], rx = R[p + 1] / Rn[p + 1] - r0, ry = R[p + pw] / Rn[p + pw] - r0;
        double ax = c->patch.a[p + 1] - c->patch.a[p], ay = c->patch.a[p + pw] - c->patch.a[p];
        sra += rx * ax + ry * ay;
        saa += ax * ax + ay * ay;
        srr += rx * rx + ry * ry;
      }
    m->ghost = saa > 0 ? sra / saa : 0;
    m->gcorr = saa > 0 && srr > 0 ? sra / sqrt(saa * srr) : 0;
  }
  m->psnr = ws_err_psnr(&er);
  m->ssim = n ? ssim / n : 0;
  m->recall = mark > 0 ? hit / mark : 0;
  m->area = mark > 0 ? area / mark : 0;
  if (det) count_false(c, det, &m->false_regions, &m->regions);
  av_frame_free(&clean);
  free(mk);
  free(R);
  free(Rn);
  km_decoder_free(d);
  return n == c->frames ? 0 : -1;
}

