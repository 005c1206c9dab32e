/* img.h — pixel kernels on YUV420P AVFrames: resampling a sub-pixel crop
 * rectangle, the spotlight (dim outside an ellipse, anti-aliased ring),
 * colour conversion, and quality metrics. Kernels are pure functions of
 * their inputs: safe to run on many frames at once from many threads. */
#ifndef KILN_IMG_H
#define KILN_IMG_H

#include <libavutil/frame.h>
#include <stdint.h>

/* Resamples the rectangle (x, y, w, h) of src, in luma pixels and fractional,
 * to fill dst at dst's size. A triangle filter that widens with the scale
 * factor, so it interpolates when enlarging and averages when shrinking.
 * Samples outside src repeat the edge. Returns 0 or KILN_ENOMEM. */
int ki_crop_scale(const AVFrame *src, double x, double y, double w, double h, AVFrame *dst);

typedef struct ki_spot {
  double cx, cy, rx, ry;        /* ellipse, luma pixels */
  double dim;                   /* 0: no dimming outside, 1: black */
  double ring_width;            /* pixels; 0: no ring */
  uint8_t ring_yuv[3];
} ki_spot;

/* dst = src with everything outside the ellipse dimmed and a ring drawn
 * just outside its edge; edges are anti-aliased over one pixel. */
void ki_spotlight(const AVFrame *src, AVFrame *dst, const ki_spot *s);

/* 8-bit RGB to limited-range YUV: BT.709 when hd, else BT.601. */
void ki_rgb_to_yuv(const uint8_t rgb[3], int hd, uint8_t yuv[3]);
/* Parses "#RRGGBB" / "RRGGBB" or a few names (white, black, yellow, red,
 * green, blue, cyan, magenta, orange). Returns 0 or -1. */
int ki_parse_color(const char *s, uint8_t rgb[3]);

/* Mean squared error and PSNR (dB, 8-bit peak; 100 for identical planes). */
double ki_mse(const uint8_t *a, int la, const uint8_t *b, int lb, int w, int h);
double ki_psnr(double mse);

#endif
