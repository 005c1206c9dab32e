/* wm_cases.h — the remove_watermark benchmark's cases, generated from a seed
 * per case (shared by bench/watermark.c and tests/test_watermark.c).
 *
 * A case is a scene x a mark, both drawn from the case's seed:
 *   scenes  procedural pans (random textures, speeds, directions), pans and
 *           zooms over opencv-doc's photos, opencv-doc's clips (vtest,
 *           Megamind, tree), still shots of a photo (sensor noise only, or a
 *           ball rolling across), each possibly made dark or bright, faded in
 *           or out, or cut to a second scene;
 *   marks   text in one of DejaVu's faces (rendered by FFmpeg's drawtext, so
 *           by FreeType), 16-64 px, plain, with a shadow, an outline or both;
 *           logos of five shapes; opacity 0.2-1.0; white, black or a colour;
 *           in a corner or the centre; static, jumping between 2-3 places
 *           (as Sora's does) or drifting slowly.
 * Cases 0..WC_CASES-1 carry a mark; case id % 4 == 0 is the tuning set, the
 * rest (60) are only evaluated. Cases WC_NOMARK0.. are scenes with no mark
 * (any region found there is false). Everything is 640x360 at 25 fps. */
#ifndef KILN_WM_CASES_H
#define KILN_WM_CASES_H

#include "wm_synth.h"

#include <jansson.h>
#include <libavutil/frame.h>
#include <stdint.h>

#define WC_W 640
#define WC_H 360
#define WC_CASES 80
#define WC_NOMARK0 1000
#define WC_NOMARK 6
#define WC_MAXPOS 4

typedef struct wc_scene wc_scene;

typedef struct wc_case {
  int id, tune, frames;
  char name[160];               /* what it is, in words */
  char scene_name[80], mark_name[96];
  wc_scene *scene;
  int has_mark;
  ws_layer patch;               /* the mark at (0,0), its own size */
  int moving;                   /* 0 static, 1 jumping, 2 drifting */
  int npos, seg_frames;         /* jumping: position k = (n / seg_frames) % npos */
  int px[WC_MAXPOS], py[WC_MAXPOS];
  double dx, dy;                /* drifting: position (px[0] + n*dx, py[0] + n*dy) */
  ws_layer cur;                 /* the full-frame layer of the position last asked for */
  int cur_x, cur_y;
  ws_layer none;                /* an empty full-frame layer */
  AVFrame **cache;              /* clean frames kept by wc_keep (NULL: drawn each time) */
} wc_case;

/* Builds case id (0..WC_CASES-1, or WC_NOMARK0 + k) from the samples folder
 * (opencv-doc's clips and photos; NULL: $KILN_SAMPLES, else the cache).
 * Returns 0, or -1 with a message on stderr (a sample or a font missing). */
int wc_make(int id, const char *samples, wc_case *c);
void wc_release(wc_case *c);

/* Keeps every clean frame in memory (about 50 MB) so wc_clean only copies. */
int wc_keep(wc_case *c);
/* The clean frame n (YUV420P, WC_W x WC_H). */
void wc_clean(const wc_case *c, AVFrame *f, int n);
/* The mark's full-frame layer on frame n (owned by c, valid until the next call). */
const ws_layer *wc_layer(wc_case *c, int n);
/* The mark's position on frame n. */
void wc_pos(const wc_case *c, int n, int *x, int *y);
/* m (WC_W*WC_H) = the union over frames [a, b) of the mark's pixels (alpha > 0.05). */
void wc_mask_over(wc_case *c, int a, int b, uint8_t *m);

/* Writes the case as the benchmark's input (marked) or its clean original:
 * H.264 crf 12, near-lossless, as uploads are. Returns 0 or -1. */
int wc_write(wc_case *c, const char *path, int marked);

/* An output scored against the clean original, over every frame. */
typedef struct wc_metrics {
  double psnr;                  /* in-mask luma PSNR (the mark's pixels, alpha > 0.05) */
  double ssim;                  /* SSIM over the mark's box, 8x8 windows */
  double ghost;                 /* the mark-shaped part of the residual, levels at full alpha: the residual
                                   averaged in the mark's own coordinates, fitted by the mark's alpha through
                                   their gradients (> 0: the mark is left; < 0: over-corrected, a ghost) */
  double gcorr;                 /* the correlation of those gradients */
  double recall, area;          /* with det: share of the mark's pixels in the mask, mask area / mark area */
  double worst_frame_psnr;
  int worst_frame, false_regions, regions;   /* false: det's regions that never touch the mark */
} wc_metrics;

/* Scores the video at out; det (remove_watermark's `detected`, or NULL) adds
 * recall, area and false regions. Returns 0, or -1 if out is short or unreadable. */
int wc_measure(wc_case *c, const char *out, const json_t *det, wc_metrics *m);

#endif
