/* fuzz_image.c — still pictures as upscale and overlay read them
 * (km_image_read, media/image.c: FFmpeg's demuxers and decoders, then
 * kiln's conversion to RGB24 and its EXIF orientation): the input is the
 * file. A picture that decodes must have its w x h x 3 bytes all readable,
 * and must resize (km_image_resize) to a small size. Messages are valid
 * UTF-8. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fz.h"
#include "media/media.h"

static char path[4200];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc; (void)argv;
  setenv("AV_LOG_FORCE_NOCOLOR", "1", 1);
  snprintf(path, sizeof path, "%s/in", fz_scratch());
  return 0;
}

extern void av_log_set_level(int);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  av_log_set_level(-8);                           /* AV_LOG_QUIET */
  fz_write(path, data, size);
  km_image im, sm = {0};
  kiln_err e = {0};
  int r = km_image_read(path, &im, &e);
  fz_check_msg(r, &e, "km_image_read");
  if (r == 0) {
    if (im.w < 1 || im.h < 1 || !im.rgb) fz_fail("a picture of %dx%d", im.w, im.h);
    volatile unsigned acc = 0;
    for (size_t i = 0; i < (size_t)im.w * im.h * 3; i++) acc += im.rgb[i];
    (void)acc;
    r = km_image_resize(&im, &sm, 9, 7, &e);
    fz_check_msg(r, &e, "km_image_resize");
    km_image_release(&sm);
    km_image_release(&im);
  }
  return 0;
}
