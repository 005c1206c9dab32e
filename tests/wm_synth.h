/* wm_synth.h — synthetic ground truth for remove_watermark (shared by
 * tests/test_watermark.c and bench/watermark.c): a panning procedural scene,
 * watermark layers with known alpha (an opaque logo, a 50% translucent
 * logo, white text with a shadow), drawn anti-aliased, blended onto frames,
 * and the measures: in-mask PSNR, recall of a mask, temporal flicker. */
#ifndef KILN_WM_SYNTH_H
#define KILN_WM_SYNTH_H

#include <jansson.h>
#include <libavutil/frame.h>
#include <stdint.h>

#include "media/media.h"

typedef struct ws_layer {
  int w, h;
  float *a;                     /* alpha per luma pixel, 0..1 */
  float *c[3];                  /* colour per luma pixel: Y, U, V */
} ws_layer;

int ws_layer_init(ws_layer *l, int w, int h);
void ws_layer_release(ws_layer *l);

/* Marks drawn into a layer (over what is there), anti-aliased by 4x4 supersampling. */
void ws_opaque_logo(ws_layer *l, double x, double y, double size, const uint8_t yuv[3]);
void ws_translucent_logo(ws_layer *l, double x, double y, double size, double alpha, const uint8_t yuv[3]);
void ws_text(ws_layer *l, double x, double y, double scale, const char *s, const uint8_t yuv[3], int shadow);

/* f (YUV420P) = frame n of the panning scene (moves ~1.4 px per frame). */
void ws_scene(AVFrame *f, int64_t n);
/* Blends the layer onto f in place. */
void ws_apply(const ws_layer *l, AVFrame *f);

/* The bounding box [x0, x1] x [y0, y1] of the layer's pixels with alpha > thr (x1 < 0: none). */
void ws_bbox(const ws_layer *l, float thr, int *x0, int *y0, int *x1, int *y1);

/* Accumulates luma squared error inside the layer's mark (alpha > 0.05). */
typedef struct ws_err { double se; int64_t n; } ws_err;
void ws_err_add(ws_err *e, const ws_layer *l, const AVFrame *a, const AVFrame *b);
double ws_err_psnr(const ws_err *e);

/* The share of the mark's pixels (alpha > 0.05) inside mask m (w*h), and
 * the mask's area over the mark's. */
void ws_recall(const ws_layer *l, const uint8_t *m, double *recall, double *area_ratio);

/* Decodes a base64 string of exactly n bytes into a new buffer, or NULL. */
uint8_t *ws_b64(const char *s, size_t n);

/* Writes im as a PNG at path and returns the file's base64 (malloc'd), or NULL. */
char *ws_png_b64(const km_image *im, const char *path);

/* m (w*h) = the union of the masks that remove_watermark's detection
 * (`det`: {"regions": [{x, y, w, h, start, end, mask}]}) holds for frame n. */
void ws_mask_at(const json_t *det, int n, int w, int h, uint8_t *m);

#endif
