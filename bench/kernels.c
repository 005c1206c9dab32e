/* kernels.c — per-frame cost of kiln's pixel kernels at 1080p, against
 * swscale doing the nearest equivalent work in the same run (bicubic
 * scale of an integer crop, the `ffmpeg -vf crop,scale` path). One thread;
 * median of the rounds. Prints a markdown table. */
#include <libswscale/swscale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "img/img.h"
#include "media/media.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

#define ROUNDS 9
#define ITERS 20

int main(void) {
  AVFrame *src = km_frame_new(1920, 1080), *dst = km_frame_new(810, 1440), *same = km_frame_new(1920, 1080);
  for (int p = 0; p < 3; p++) {
    int w = p ? 960 : 1920, h = p ? 540 : 1080;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        src->data[p][y * src->linesize[p] + x] =
            (uint8_t)km_pattern_value(KM_PATTERN_COORDS, p, p ? 2 * x + .5 : x, p ? 2 * y + .5 : y, 0, 1920, 1080);
  }
  struct SwsContext *sws = sws_getContext(608, 1080, AV_PIX_FMT_YUV420P, 810, 1440, AV_PIX_FMT_YUV420P, SWS_BICUBIC,
                                          NULL, NULL, NULL);
  ki_spot spot = {.cx = 900, .cy = 500, .rx = 140, .ry = 240, .dim = 0.6, .ring_width = 6, .ring_yuv = {200, 20, 150}};
  const char *names[] = {"ki_crop_scale 608x1080 (sub-pixel) -> 810x1440", "swscale bicubic 608x1080 -> 810x1440",
                         "ki_spotlight 1920x1080"};
  printf("| kernel (one thread) | ms per frame |\n|---|---|\n");
  for (int k = 0; k < 3; k++) {
    double t[ROUNDS];
    for (int r = 0; r < ROUNDS; r++) {
      double t0 = now();
      for (int i = 0; i < ITERS; i++) {
        if (k == 0) ki_crop_scale(src, 300.25 + i, 0, 608, 1080, dst);
        else if (k == 1) {
          const uint8_t *planes[3] = {src->data[0] + 300 + i, src->data[1] + 150 + i / 2, src->data[2] + 150 + i / 2};
          sws_scale(sws, planes, src->linesize, 0, 1080, dst->data, dst->linesize);
        } else ki_spotlight(src, same, &spot);
      }
      t[r] = (now() - t0) / ITERS * 1000;
    }
    qsort(t, ROUNDS, sizeof t[0], cmp);
    printf("| %s | %.2f |\n", names[k], t[ROUNDS / 2]);
  }
  sws_freeContext(sws);
  av_frame_free(&src);
  av_frame_free(&dst);
  av_frame_free(&same);
  return 0;
}
