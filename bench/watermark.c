/* bench/watermark.c — remove_watermark against FFmpeg's delogo and
 * removelogo on watermarked clips whose clean original is known
 * (tests/wm_synth.c). Prints tables; asserts nothing.
 *
 * For each clip: the watermarked input (H.264 crf 12, near-lossless), then
 *   kiln        remove_watermark with automatic detection (prepare + run, in process)
 *   delogo      ffmpeg -vf delogo given the true box (one per time segment)
 *   removelogo  ffmpeg -vf removelogo given the true mask (alpha > 0.05) as a PGM
 *   input       the unprocessed input
 * all encoded with libx264 -preset veryfast -crf 18. Measures: in-mask luma
 * PSNR over every frame (the mark's pixels, alpha > 0.05), SSIM over the
 * mark's box (8x8 windows), flicker (mean |change of the output inside the
 * mask from frame to frame - the clean clip's change|, levels), end-to-end
 * fps, and for kiln the detection recall and the mask's area over the mark's.
 *
 * usage: bench_watermark [KILN_SAMPLES dir] (Megamind.avi is used when there) */
#include "wm_synth.h"

#include "fn/fn.h"
#include "media/media.h"
#include "util/json.h"

#include <libavutil/log.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAXSEG 4

typedef struct bclip {
  const char *name;
  int w, h, frames;
  AVFrame **src;                /* real clip frames, or NULL: the panning scene */
  ws_layer seg[MAXSEG];         /* the mark of each segment */
  int nseg, seg_frames;         /* segment k covers frames [k*seg_frames, (k+1)*seg_frames) (nseg 1: all) */
} bclip;

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static const ws_layer *layer_at(const bclip *c, int n) {
  int k = c->nseg > 1 ? (n / c->seg_frames) % c->nseg : 0;
  return &c->seg[k];
}

static void clean_frame(const bclip *c, AVFrame *f, int n) {
  if (c->src) av_frame_copy(f, c->src[n]);
  else ws_scene(f, n);
}

static int write_input(const bclip *c, const char *path) {
  kiln_err e = {0};
  /* near-lossless H.264, as uploads are (a lossless input would mostly measure decoding) */
  km_enc_opts o = {.width = c->w, .height = c->h, .fps = {25, 1}, .crf = 12, .preset = "veryfast", .gop = 50};
  km_writer *w = NULL;
  if (km_writer_open(&w, path, path, &o, NULL, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return -1; }
  AVFrame *f = km_frame_new(c->w, c->h);
  int r = 0;
  for (int n = 0; n < c->frames && r == 0; n++) {
    clean_frame(c, f, n);
    ws_apply(layer_at(c, n), f);
    r = km_writer_write(w, f, &e);
  }
  if (r == 0) r = km_writer_finish(w, &e);
  av_frame_free(&f);
  km_writer_free(w);
  return r;
}

static void bbox(const ws_layer *l, int *x0, int *y0, int *x1, int *y1) { ws_bbox(l, 0.05f, x0, y0, x1, y1); }

static int sh(const char *cmd) {
  int r = system(cmd);
  return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

#define ENC "-c:v libx264 -preset veryfast -crf 18 -pix_fmt yuv420p"

static double run_delogo(const bclip *c, const char *in, const char *out) {
  char vf[2048] = "", cmd[4096];
  for (int k = 0; k < c->nseg; k++) {
    int x0, y0, x1, y1;
    bbox(&c->seg[k], &x0, &y0, &x1, &y1);
    if (x0 < 1) x0 = 1;                            /* delogo wants the box inside the frame */
    if (y0 < 1) y0 = 1;
    if (x1 > c->w - 2) x1 = c->w - 2;
    if (y1 > c->h - 2) y1 = c->h - 2;
    size_t l = strlen(vf);
    if (c->nseg > 1)
      snprintf(vf + l, sizeof vf - l, "%sdelogo=x=%d:y=%d:w=%d:h=%d:enable='between(n,%d,%d)'", k ? "," : "", x0, y0,
               x1 - x0 + 1, y1 - y0 + 1, k * c->seg_frames, (k + 1) * c->seg_frames - 1);
    else snprintf(vf + l, sizeof vf - l, "delogo=x=%d:y=%d:w=%d:h=%d", x0, y0, x1 - x0 + 1, y1 - y0 + 1);
  }
  snprintf(cmd, sizeof cmd, "ffmpeg -v error -nostdin -y -i %s -vf \"%s\" " ENC " %s", in, vf, out);
  double t0 = now_s();
  return sh(cmd) == 0 ? now_s() - t0 : -1;
}

static int write_pgm(const ws_layer *l, const char *path) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fprintf(f, "P5\n%d %d\n255\n", l->w, l->h);
  for (size_t p = 0; p < (size_t)l->w * l->h; p++) fputc(l->a[p] > 0.05f ? 255 : 0, f);
  fclose(f);
  return 0;
}

static double run_removelogo(const bclip *c, const char *in, const char *out, const char *dir) {
  char vf[4096] = "", cmd[8192];
  for (int k = 0; k < c->nseg; k++) {
    char pgm[1024];
    snprintf(pgm, sizeof pgm, "%s/mask-%p-%d.pgm", dir, (const void *)c, k);
    write_pgm(&c->seg[k], pgm);
    size_t l = strlen(vf);
    if (c->nseg > 1)
      snprintf(vf + l, sizeof vf - l, "%sremovelogo=f=%s:enable='between(n,%d,%d)'", k ? "," : "", pgm, k * c->seg_frames,
               (k + 1) * c->seg_frames - 1);
    else snprintf(vf + l, sizeof vf - l, "removelogo=f=%s", pgm);
  }
  snprintf(cmd, sizeof cmd, "ffmpeg -v error -nostdin -y -i %s -vf \"%s\" " ENC " %s", in, vf, out);
  double t0 = now_s();
  return sh(cmd) == 0 ? now_s() - t0 : -1;
}

static double run_input(const char *in, const char *out) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd, "ffmpeg -v error -nostdin -y -i %s " ENC " %s", in, out);
  double t0 = now_s();
  return sh(cmd) == 0 ? now_s() - t0 : -1;
}

/* The true mask (alpha > 0.05) as base64 PNG, for WM_TRUE_MASK runs: kiln given what removelogo is given. */
static char *true_mask_b64(const bclip *c, const char *dir) {
  km_image im = {0};
  char png[1200];
  snprintf(png, sizeof png, "%s/truemask.png", dir);
  if (km_image_alloc(&im, c->w, c->h) < 0) return NULL;
  for (size_t p = 0; p < (size_t)c->w * c->h; p++) memset(im.rgb + 3 * p, c->seg[0].a[p] > 0.05f ? 255 : 0, 3);
  char *b = ws_png_b64(&im, png);
  km_image_release(&im);
  return b;
}

static double run_kiln(const bclip *c, const char *dir, const char *in, const char *out, json_t **det) {
  const kf_desc *fn = kf_find("remove_watermark");
  kiln_err e = {0};
  json_t *raw = json_pack("{s:i, s:s}", "crf", 18, "preset", "veryfast"), *p = NULL, *add = NULL;
  const char *extra = getenv("WM_PARAMS");        /* e.g. '{"temporal": false}': more parameters for kiln's side */
  json_t *x = extra ? json_loads(extra, 0, NULL) : NULL;
  if (extra && !json_is_object(x)) { fprintf(stderr, "WM_PARAMS is not a JSON object\n"); json_decref(x); json_decref(raw); return -1; }
  if (x) json_object_update(raw, x);
  json_decref(x);
  if (getenv("WM_TRUE_MASK") && c->nseg == 1) {   /* kiln given the true mask instead of detecting it */
    char *b = true_mask_b64(c, dir);
    if (b) json_object_set_new(raw, "mask", json_string(b));
    free(b);
  }
  double t0 = now_s();
  if (kf_validate(fn, raw, &p, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return -1; }
  json_decref(raw);
  kf_task t = {.input = in, .output = out, .params = p, .start = 0, .end = -1};
  if (fn->prepare(NULL, &t, &add, &e) < 0) { fprintf(stderr, "kiln: %s\n", e.msg); json_decref(p); return -1; }
  json_object_update(p, add);
  *det = json_incref(json_object_get(add, "detected"));
  json_decref(add);
  kf_result res;
  memset(&res, 0, sizeof res);
  int r = fn->run(NULL, &t, &res, &e);
  json_decref(res.info);
  json_decref(p);
  if (r < 0) { fprintf(stderr, "kiln: %s\n", e.msg); return -1; }
  return now_s() - t0;
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

typedef struct metrics { double psnr, ssim, flicker, recall, area; } metrics;

static int measure(const bclip *c, const char *out, const json_t *det, metrics *m) {
  memset(m, 0, sizeof *m);
  km_decoder *d = NULL;
  kiln_err e = {0};
  if (km_decoder_open(&d, out, NULL, 0, -1, 0, &e) < 0) { fprintf(stderr, "%s\n", e.msg); return -1; }
  AVFrame *clean = km_frame_new(c->w, c->h), *prev_clean = km_frame_new(c->w, c->h), *prev = NULL;
  uint8_t *mk = det ? malloc((size_t)c->w * c->h) : NULL;
  ws_err er = {0};
  double ssim = 0, flick = 0, hit = 0, mark = 0, area = 0;
  long nflick = 0;
  int n = 0;
  for (;; n++) {
    AVFrame *f = NULL;
    km_frame_info fi;
    if (km_decoder_read(d, &f, &fi, &e) <= 0) break;
    const ws_layer *L = layer_at(c, n);
    clean_frame(c, clean, n);
    ws_err_add(&er, L, f, clean);
    int x0, y0, x1, y1;
    bbox(L, &x0, &y0, &x1, &y1);
    ssim += ssim_box(f, clean, x0, y0, x1, y1);
    if (prev && layer_at(c, n - 1) == L) {
      for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
          if (L->a[(size_t)y * c->w + x] <= 0.05f) continue;
          double dout = (double)f->data[0][(size_t)y * f->linesize[0] + x] - prev->data[0][(size_t)y * prev->linesize[0] + x];
          double dcl = (double)clean->data[0][(size_t)y * clean->linesize[0] + x] - prev_clean->data[0][(size_t)y * prev_clean->linesize[0] + x];
          flick += fabs(dout - dcl);
          nflick++;
        }
    }
    if (mk) {
      ws_mask_at(det, n, c->w, c->h, mk);
      double rc, ar;
      ws_recall(L, mk, &rc, &ar);
      double fm = 0;
      for (size_t p = 0; p < (size_t)c->w * c->h; p++) fm += L->a[p] > 0.05f;
      hit += rc * fm;
      mark += fm;
      area += ar * fm;
    }
    av_frame_free(&prev);
    prev = f;
    av_frame_copy(prev_clean, clean);
  }
  m->psnr = ws_err_psnr(&er);
  m->ssim = n ? ssim / n : 0;
  m->flicker = nflick ? flick / nflick : 0;
  m->recall = mark > 0 ? hit / mark : 0;
  m->area = mark > 0 ? area / mark : 0;
  av_frame_free(&prev);
  av_frame_free(&clean);
  av_frame_free(&prev_clean);
  free(mk);
  km_decoder_free(d);
  return n == c->frames ? 0 : -1;
}

int main(int argc, char **argv) {
  av_log_set_level(AV_LOG_QUIET);
  char dir[] = "/tmp/kiln-bench-wm-XXXXXX";
  if (!mkdtemp(dir)) return 1;
  static const uint8_t white[3] = {235, 128, 128}, orange[3] = {150, 60, 190}, blue[3] = {80, 200, 100};
  bclip clips[6];
  int nc = 0;
  const int W = 640, H = 360, N = 250;
  {
    bclip *c = &clips[nc++];
    memset(c, 0, sizeof *c);
    *c = (bclip){"pan, opaque logo", W, H, N, NULL, {{0}}, 1, N};
    ws_layer_init(&c->seg[0], W, H);
    ws_opaque_logo(&c->seg[0], W - 130, H - 76, 56, orange);
  }
  {
    bclip *c = &clips[nc++];
    *c = (bclip){"pan, 50% logo", W, H, N, NULL, {{0}}, 1, N};
    ws_layer_init(&c->seg[0], W, H);
    ws_translucent_logo(&c->seg[0], 20, 18, 72, 0.5, white);
  }
  {
    bclip *c = &clips[nc++];
    *c = (bclip){"pan, text + shadow", W, H, N, NULL, {{0}}, 1, N};
    ws_layer_init(&c->seg[0], W, H);
    ws_text(&c->seg[0], 20, H - 50, 4, "KILN", white, 1);
  }
  {
    bclip *c = &clips[nc++];
    *c = (bclip){"pan, mark moves every 3 s", W, H, 225, NULL, {{0}}, 3, 75};
    for (int k = 0; k < 3; k++) ws_layer_init(&c->seg[k], W, H);
    ws_text(&c->seg[0], 16, 14, 4, "WM", white, 1);
    ws_text(&c->seg[1], W - 70, H - 46, 4, "WM", white, 1);
    ws_text(&c->seg[2], W - 70, 14, 4, "WM", white, 1);
  }
  char mm[1024];
  const char *sd = argc > 1 ? argv[1] : getenv("KILN_SAMPLES");
  if (sd) snprintf(mm, sizeof mm, "%s/Megamind.avi", sd);
  else snprintf(mm, sizeof mm, "%s/.cache/kiln/samples/Megamind.avi", getenv("HOME") ? getenv("HOME") : "/");
  struct stat sb;
  AVFrame **mmf = NULL;
  int mmn = 0, mmw = 0, mmh = 0;
  if (stat(mm, &sb) == 0) {
    km_decoder *d = NULL;
    kiln_err e = {0};
    if (km_decoder_open(&d, mm, NULL, 0, -1, 0, &e) == 0) {
      mmf = calloc(400, sizeof *mmf);
      AVFrame *f;
      km_frame_info fi;
      while (mmn < 400 && km_decoder_read(d, &f, &fi, &e) > 0) { mmf[mmn++] = f; mmw = f->width & ~1; mmh = f->height & ~1; }
      km_decoder_free(d);
    }
    bclip *c = &clips[nc++];
    *c = (bclip){"Megamind, opaque logo", mmw, mmh, mmn, mmf, {{0}}, 1, mmn};
    ws_layer_init(&c->seg[0], mmw, mmh);
    ws_opaque_logo(&c->seg[0], mmw - 120, mmh - 70, 48, blue);
    c = &clips[nc++];
    *c = (bclip){"Megamind, text + shadow", mmw, mmh, mmn, mmf, {{0}}, 1, mmn};
    ws_layer_init(&c->seg[0], mmw, mmh);
    ws_text(&c->seg[0], mmw / 2 - 60, mmh * 7 / 10, 4, "KILN", white, 1);
  }
  printf("| clip | method | in-mask PSNR dB | SSIM (box) | flicker | fps | recall | mask/mark |\n");
  printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  double sum_k = 0, sum_r = 0, sum_fk = 0, sum_fd = 0;
  int nsum = 0;
  const char *only = getenv("WM_ONLY");          /* e.g. "0,4": just those clips */
  for (int i = 0; i < nc; i++) {
    bclip *c = &clips[i];
    char key[8];
    snprintf(key, sizeof key, "%d", i);
    if (only && !strstr(only, key)) continue;
    char in[1200], out[1200];
    snprintf(in, sizeof in, "%s/in%d.mkv", dir, i);
    if (write_input(c, in) < 0) { fprintf(stderr, "cannot write %s\n", in); continue; }
    const char *names[4] = {"kiln (detects)", "delogo (true box)", "removelogo (true mask)", "input"};
    double psnr[4] = {0}, fps[4] = {0};
    for (int m = 0; m < 4; m++) {
      snprintf(out, sizeof out, "%s/out%d-%d.mp4", dir, i, m);
      json_t *det = NULL;
      double t = m == 0 ? run_kiln(c, dir, in, out, &det) : m == 1 ? run_delogo(c, in, out) : m == 2 ? run_removelogo(c, in, out, dir)
                                                                             : run_input(in, out);
      metrics me;
      if (t < 0 || measure(c, out, det, &me) < 0) {
        printf("| %s | %s | failed | | | | | |\n", c->name, names[m]);
        json_decref(det);
        continue;
      }
      psnr[m] = me.psnr;
      fps[m] = c->frames / t;
      if (m == 0)
        printf("| %s | %s | %.2f | %.3f | %.2f | %.0f | %.4f | %.2fx |\n", c->name, names[m], me.psnr, me.ssim, me.flicker,
               fps[m], me.recall, me.area);
      else printf("| %s | %s | %.2f | %.3f | %.2f | %.0f | | |\n", c->name, names[m], me.psnr, me.ssim, me.flicker, fps[m]);
      fflush(stdout);
      json_decref(det);
    }
    if (psnr[0] > 0 && psnr[2] > 0) {
      sum_k += psnr[0]; sum_r += psnr[2]; sum_fk += fps[0]; sum_fd += fps[1];
      nsum++;
    }
  }
  if (nsum)
    printf("\nmean over %d clips: kiln %.2f dB vs removelogo %.2f dB (%+.2f dB); kiln %.0f fps vs delogo %.0f fps (%.2fx)\n", nsum,
           sum_k / nsum, sum_r / nsum, (sum_k - sum_r) / nsum, sum_fk / nsum, sum_fd / nsum, sum_fk / sum_fd);
  char cmd[1200];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (!getenv("WM_KEEP")) sh(cmd);
  else fprintf(stderr, "kept %s\n", dir);
  return 0;
}
