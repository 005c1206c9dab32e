/* bench/watermark.c — remove_watermark on the generated cases of
 * tests/wm_cases.c (80 with a mark: 20 to tune on, 60 only evaluated; 6
 * with none), against FFmpeg's delogo and removelogo given the truth.
 * Prints a row per case; with WM_JSON, bench/watermark_summary.py makes the
 * summary tables (mean, median, worst per set). Asserts nothing (the floors
 * are in tests/test_watermark.c).
 *
 * For each case: the watermarked input and the clean clip (H.264 crf 12,
 * near-lossless, as uploads are), then
 *   kiln         remove_watermark detecting the mark itself (prepare + run, in process)
 *   kiln+mask    remove_watermark given the true mask (the union over the clip of
 *                the mark's pixels, alpha > 0.05)
 *   removelogo   ffmpeg -vf removelogo given the true mask (per position for a jumping
 *                mark; the union for a drifting one)
 *   delogo       ffmpeg -vf delogo given the true box (likewise)
 *   input        the input untouched
 *   clean        the clean clip (what a perfect remover would give)
 * each encoded with libx264 -preset veryfast -crf 18. Measures against the
 * clean original, over every frame: in-mask luma PSNR (the mark's pixels,
 * alpha > 0.05), SSIM over the mark's box; the ghost (below); for kiln the
 * detection recall (share of the mark's pixels inside its mask), the mask's
 * area over the mark's, and false regions (regions that never touch the
 * mark); fps end to end for kiln and delogo.
 *
 * The ghost: the residual (output - clean) averaged over the clip in the
 * mark's own coordinates (it follows a moving mark), then fitted by the
 * mark's shape through their gradients: k = <grad R, grad A> / |grad A|^2,
 * in levels at full alpha. A leftover mark gives k > 0, an over-corrected
 * one (a dark ghost of a white text) k < 0; noise and compression average
 * away (the clean clip's |k| is the floor). Also printed: the correlation
 * of grad R with grad A.
 *
 * usage: bench_watermark [samples dir]
 *   WM_SET=tune|eval|all|nomark (all: default), WM_ONLY=3,17 (those ids),
 *   WM_SHARD=k/n (every n-th case from k: run n processes side by side),
 *   WM_JSON=path (one JSON object per case), WM_PARAMS='{...}' (more kiln
 *   params), WM_SHOW=id (writes docs/watermark-case-<id>.png: input | kiln |
 *   removelogo | clean, the mark's surroundings at its worst frame),
 *   WM_METHODS=01 (run only those methods, by number as listed above) with
 *   WM_REF=path (an earlier WM_JSON: the figures of methods not run are taken
 *   from it, for quicker runs while only kiln changes). */
#include "wm_cases.h"

#include "fn/fn.h"
#include "media/media.h"
#include "util/json.h"

#include <libavutil/log.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { M_KILN, M_KILN_MASK, M_REMOVELOGO, M_DELOGO, M_INPUT, M_CLEAN, NM };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int sh(const char *cmd) {
  int r = system(cmd);
  return WIFEXITED(r) ? WEXITSTATUS(r) : -1;
}

#define ENC "-c:v libx264 -preset veryfast -crf 18 -pix_fmt yuv420p"

/* Time segments over which the mark stands still: [seg_start[k], seg_start[k+1]). Drifting: one, the union. */
static int segments(const wc_case *c, int *start) {
  if (c->moving != 1) { start[0] = 0; start[1] = c->frames; return 1; }
  int n = 0;
  for (int s = 0; s < c->frames; s += c->seg_frames) start[n++] = s;
  start[n] = c->frames;
  return n;
}

static void mask_bbox(const uint8_t *m, int *x0, int *y0, int *x1, int *y1) {
  *x0 = WC_W; *y0 = WC_H; *x1 = -1; *y1 = -1;
  for (int y = 0; y < WC_H; y++)
    for (int x = 0; x < WC_W; x++)
      if (m[(size_t)y * WC_W + x]) {
        if (x < *x0) *x0 = x;
        if (x > *x1) *x1 = x;
        if (y < *y0) *y0 = y;
        if (y > *y1) *y1 = y;
      }
}

static int write_pgm(const uint8_t *m, const char *path) {
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fprintf(f, "P5\n%d %d\n255\n", WC_W, WC_H);
  for (size_t p = 0; p < (size_t)WC_W * WC_H; p++) fputc(m[p] ? 255 : 0, f);
  fclose(f);
  return 0;
}

static double run_ffmpeg(wc_case *c, int method, const char *in, const char *out, const char *dir) {
  char vf[8192] = "", cmd[12000];
  int st[64];
  int ns = segments(c, st);
  uint8_t *m = malloc((size_t)WC_W * WC_H);
  for (int k = 0; k < ns && m; k++) {
    wc_mask_over(c, st[k], st[k + 1], m);
    size_t l = strlen(vf);
    char en[128] = "";
    if (ns > 1) snprintf(en, sizeof en, ":enable='between(n,%d,%d)'", st[k], st[k + 1] - 1);
    if (method == M_REMOVELOGO) {
      char pgm[1024];
      snprintf(pgm, sizeof pgm, "%s/mask-%d.pgm", dir, k);
      write_pgm(m, pgm);
      snprintf(vf + l, sizeof vf - l, "%sremovelogo=f=%s%s", k ? "," : "", pgm, en);
    } else {
      int x0, y0, x1, y1;
      mask_bbox(m, &x0, &y0, &x1, &y1);
      if (x0 < 1) x0 = 1;                            /* delogo wants the box inside the frame */
      if (y0 < 1) y0 = 1;
      if (x1 > WC_W - 2) x1 = WC_W - 2;
      if (y1 > WC_H - 2) y1 = WC_H - 2;
      snprintf(vf + l, sizeof vf - l, "%sdelogo=x=%d:y=%d:w=%d:h=%d%s", k ? "," : "", x0, y0, x1 - x0 + 1, y1 - y0 + 1, en);
    }
  }
  free(m);
  if (method == M_INPUT || method == M_CLEAN) snprintf(cmd, sizeof cmd, "ffmpeg -v error -nostdin -y -i %s " ENC " %s", in, out);
  else snprintf(cmd, sizeof cmd, "ffmpeg -v error -nostdin -y -i %s -vf \"%s\" " ENC " %s", in, vf, out);
  double t0 = now_s();
  return sh(cmd) == 0 ? now_s() - t0 : -1;
}

static char *mask_png_b64(const uint8_t *m, const char *dir) {
  km_image im = {0};
  char png[1200];
  snprintf(png, sizeof png, "%s/truemask.png", dir);
  if (km_image_alloc(&im, WC_W, WC_H) < 0) return NULL;
  for (size_t p = 0; p < (size_t)WC_W * WC_H; p++) memset(im.rgb + 3 * p, m[p] ? 255 : 0, 3);
  char *b = ws_png_b64(&im, png);
  km_image_release(&im);
  return b;
}

static double run_kiln(wc_case *c, const char *dir, const char *in, const char *out, int true_mask, json_t **det) {
  const kf_desc *fn = kf_find("remove_watermark");
  kiln_err e = {0};
  json_t *raw = json_pack("{s:i, s:s}", "crf", 18, "preset", "veryfast"), *p = NULL, *add = NULL;
  const char *extra = getenv("WM_PARAMS");
  json_t *x = extra ? json_loads(extra, 0, NULL) : NULL;
  if (extra && !json_is_object(x)) { fprintf(stderr, "WM_PARAMS is not a JSON object\n"); json_decref(x); json_decref(raw); return -1; }
  if (x) json_object_update(raw, x);
  json_decref(x);
  if (true_mask) {
    uint8_t *m = malloc((size_t)WC_W * WC_H);
    if (m) wc_mask_over(c, 0, c->frames, m);
    char *b = m ? mask_png_b64(m, dir) : NULL;
    if (b) json_object_set_new(raw, "mask", json_string(b));
    free(b);
    free(m);
  }
  double t0 = now_s();
  if (kf_validate(fn, raw, &p, &e) < 0) { fprintf(stderr, "%s\n", e.msg); json_decref(raw); return -1; }
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

static void show(wc_case *c, const char *dir, int frame) {
  int x0, y0, x1, y1;
  const ws_layer *L = wc_layer(c, frame);
  ws_bbox(L, 0.05f, &x0, &y0, &x1, &y1);
  int cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, w = (x1 - x0 + 1) + 48, h = (y1 - y0 + 1) + 48;
  w = (w + 1) & ~1;
  h = (h + 1) & ~1;
  int x = cx - w / 2, y = cy - h / 2;
  x = x < 0 ? 0 : x + w > WC_W ? WC_W - w : x;
  y = y < 0 ? 0 : y + h > WC_H ? WC_H - h : y;
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "ffmpeg -v error -nostdin -y -i %s/in.mkv -i %s/out-%d.mp4 -i %s/out-%d.mp4 -i %s/clean.mkv -filter_complex "
           "\"[0:v]select=eq(n\\,%d),crop=%d:%d:%d:%d,scale=iw*2:ih*2:flags=neighbor[a];"
           "[1:v]select=eq(n\\,%d),crop=%d:%d:%d:%d,scale=iw*2:ih*2:flags=neighbor[b];"
           "[2:v]select=eq(n\\,%d),crop=%d:%d:%d:%d,scale=iw*2:ih*2:flags=neighbor[c];"
           "[3:v]select=eq(n\\,%d),crop=%d:%d:%d:%d,scale=iw*2:ih*2:flags=neighbor[d];"
           "[a][b][c][d]hstack=inputs=4\" -frames:v 1 docs/watermark-case-%d.png",
           dir, dir, getenv("WM_SHOW_M") ? atoi(getenv("WM_SHOW_M")) : M_KILN, dir, M_REMOVELOGO, dir, frame, w, h, x, y, frame, w, h, x, y, frame, w, h, x, y, frame, w, h, x, y, c->id);
  if (sh(cmd) == 0) fprintf(stderr, "wrote docs/watermark-case-%d.png (frame %d)\n", c->id, frame);
}

int main(int argc, char **argv) {
  av_log_set_level(AV_LOG_QUIET);
  const char *samples = argc > 1 ? argv[1] : NULL;
  const char *set = getenv("WM_SET") ? getenv("WM_SET") : "all", *only = getenv("WM_ONLY"), *shard = getenv("WM_SHARD");
  const char *jpath = getenv("WM_JSON"), *showid = getenv("WM_SHOW");
  int sk = 0, sn = 1;
  if (shard && sscanf(shard, "%d/%d", &sk, &sn) != 2) { fprintf(stderr, "WM_SHARD is k/n\n"); return 2; }
  FILE *jf = jpath ? fopen(jpath, "a") : NULL;
  json_t *refs = json_array();
  FILE *rf = getenv("WM_REF") ? fopen(getenv("WM_REF"), "r") : NULL;
  for (char line[8192]; rf && fgets(line, sizeof line, rf);) {
    json_t *o = json_loads(line, 0, NULL);
    if (o) json_array_append_new(refs, o);
  }
  if (rf) fclose(rf);
  int ids[WC_CASES + WC_NOMARK], nid = 0;
  for (int i = 0; i < WC_CASES; i++)
    if (!strcmp(set, "all") || (!strcmp(set, "tune") && i % 4 == 0) || (!strcmp(set, "eval") && i % 4 != 0)) ids[nid++] = i;
  if (!strcmp(set, "all") || !strcmp(set, "nomark"))
    for (int i = 0; i < WC_NOMARK; i++) ids[nid++] = WC_NOMARK0 + i;
  int k_seen = 0;
  printf("| id | set | case | kiln dB | +mask dB | removelogo dB | delogo dB | input dB | kiln - removelogo | kiln ghost | recall | mask/mark | false |\n");
  printf("| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  fflush(stdout);
  for (int ii = 0; ii < nid; ii++) {
    int id = ids[ii];
    char key[16];
    snprintf(key, sizeof key, ",%d,", id);
    if (only) {
      char o[512];
      snprintf(o, sizeof o, ",%s,", only);
      if (!strstr(o, key)) continue;
    }
    if (k_seen++ % sn != sk) continue;
    wc_case c;
    if (wc_make(id, samples, &c) < 0 || wc_keep(&c) < 0) { printf("| %d | | cannot build the case | | | | | | | | | | |\n", id); continue; }
    char dir[] = "/tmp/kiln-bench-wm-XXXXXX";
    if (!mkdtemp(dir)) return 1;
    char in[1200], cl[1200], out[1200];
    snprintf(in, sizeof in, "%s/in.mkv", dir);
    snprintf(cl, sizeof cl, "%s/clean.mkv", dir);
    if (wc_write(&c, in, 1) < 0 || wc_write(&c, cl, 0) < 0) { fprintf(stderr, "cannot write the clips of case %d\n", id); wc_release(&c); continue; }
    wc_metrics me[NM];
    int ok[NM] = {0};
    const char *methods = getenv("WM_METHODS");
    const json_t *ref = NULL;
    for (size_t k = 0; k < json_array_size(refs); k++)
      if (kj_num(json_array_get(refs, k), "id", -1) == id) ref = json_array_get(refs, k);
    double tk = 0, td = 0;
    for (int m = 0; m < NM; m++) {
      if (!c.has_mark && m != M_KILN) continue;
      char mk[8];
      snprintf(mk, sizeof mk, "m%d", m);
      if (methods && !strchr(methods, '0' + m)) {
        const json_t *rm = json_object_get(ref, mk);
        if (rm) {
          memset(&me[m], 0, sizeof me[m]);
          me[m].psnr = kj_num(rm, "psnr", 0);
          me[m].ssim = kj_num(rm, "ssim", 0);
          me[m].ghost = kj_num(rm, "ghost", 0);
          ok[m] = 1;
          if (m == M_DELOGO) td = kj_num(ref, "delogo_s", 0);
        }
        continue;
      }
      snprintf(out, sizeof out, "%s/out-%d.mp4", dir, m);
      json_t *dj = NULL;
      double t = m == M_KILN || m == M_KILN_MASK ? run_kiln(&c, dir, in, out, m == M_KILN_MASK, &dj)
                                                 : run_ffmpeg(&c, m, m == M_CLEAN ? cl : in, out, dir);
      ok[m] = t >= 0 && wc_measure(&c, out, m == M_KILN ? dj : NULL, &me[m]) == 0;
      if (m == M_KILN) tk = t;
      if (m == M_DELOGO) td = t;
      json_decref(dj);
    }
    if (!c.has_mark) {
      printf("| %d | no mark | %s | | | | | | | | | | %d |\n", id, c.name, ok[M_KILN] ? me[M_KILN].false_regions : -1);
      if (jf) fprintf(jf, "{\"id\":%d,\"set\":\"nomark\",\"false_regions\":%d}\n", id, ok[M_KILN] ? me[M_KILN].false_regions : -1);
    } else {
      double margin = ok[M_KILN] && ok[M_REMOVELOGO] ? me[M_KILN].psnr - me[M_REMOVELOGO].psnr : 0;
#define P(m) (ok[m] ? me[m].psnr : 0.0)
      printf("| %d | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f | %+.2f | %+.2f | %.3f | %.2fx | %d |\n", id, c.tune ? "tune" : "eval",
             c.name, P(M_KILN), P(M_KILN_MASK), P(M_REMOVELOGO), P(M_DELOGO), P(M_INPUT), margin, ok[M_KILN] ? me[M_KILN].ghost : 0,
             ok[M_KILN] ? me[M_KILN].recall : 0, ok[M_KILN] ? me[M_KILN].area : 0, ok[M_KILN] ? me[M_KILN].false_regions : -1);
      if (jf) {
        fprintf(jf, "{\"id\":%d,\"set\":\"%s\",\"name\":", id, c.tune ? "tune" : "eval");
        json_t *nm = json_string(c.name);
        char *ns = json_dumps(nm, JSON_ENCODE_ANY);
        fprintf(jf, "%s", ns);
        free(ns);
        json_decref(nm);
        for (int m = 0; m < NM; m++)
          if (ok[m])
            fprintf(jf, ",\"m%d\":{\"psnr\":%.3f,\"ssim\":%.4f,\"ghost\":%.3f,\"gcorr\":%.3f,\"worst_frame\":%d}", m, me[m].psnr, me[m].ssim,
                    me[m].ghost, me[m].gcorr, me[m].worst_frame);
        if (ok[M_KILN])
          fprintf(jf, ",\"recall\":%.4f,\"area\":%.3f,\"false_regions\":%d,\"regions\":%d,\"kiln_s\":%.3f,\"delogo_s\":%.3f", me[M_KILN].recall,
                  me[M_KILN].area, me[M_KILN].false_regions, me[M_KILN].regions, tk, td);
        fprintf(jf, "}\n");
        fflush(jf);
      }
      if (showid && atoi(showid) == id && ok[M_KILN]) show(&c, dir, me[getenv("WM_SHOW_M") ? atoi(getenv("WM_SHOW_M")) : M_KILN].worst_frame);
    }
    fflush(stdout);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (!getenv("WM_KEEP")) sh(cmd);
    else fprintf(stderr, "kept %s\n", dir);
    wc_release(&c);
  }
  if (!jf) fprintf(stderr, "the summary tables (mean, median, worst per set): run with WM_JSON=path, then bench/watermark_summary.py path\n");
  if (jf) fclose(jf);
  json_decref(refs);
  return 0;
}
