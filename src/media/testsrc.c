/* testsrc.c — generated test media whose content is known analytically.
 *
 * COORDS: luma is a sum of smooth waves that drift with the frame number (so
 * every frame differs and survives resampling), chroma U is a linear ramp
 * in x and V a linear ramp in y: any pixel of a processed frame says where
 * in the source it came from. BARS: colour bars that scroll, with the frame
 * number written as 16 binary blocks in the top-left corner. */
#include "media/media.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

double km_pattern_value(km_pattern p, int plane, double x, double y, int64_t n, int w, int h) {
  if (p == KM_PATTERN_COORDS) {
    if (plane == 1) return 16.0 + 224.0 * (x + 0.5) / w;
    if (plane == 2) return 16.0 + 224.0 * (y + 0.5) / h;
    return 128.0 + 55.0 * sin(2 * M_PI * (x + 1.5 * (double)n) / 53.0) * cos(2 * M_PI * y / 37.0) +
           25.0 * sin(2 * M_PI * (x + 2 * y) / 211.0);
  }
  /* bars */
  static const double bars[7][3] = {{180, 128, 128}, {168, 44, 136}, {145, 147, 44}, {133, 63, 52},
                                    {63, 193, 204}, {51, 109, 212}, {28, 212, 120}};
  int bw = w / 7 > 0 ? w / 7 : 1;
  int bx = (int)(((int64_t)x + 4 * n) / bw) % 7;
  if (plane == 0 && y < 16 && x < 16 * 16) {
    int bit = (int)(x / 16);
    return ((n >> (15 - bit)) & 1) ? 235 : 16;
  }
  return bars[bx][plane];
}

static int write_wav(const char *path, double hz, double seconds, kiln_err *e) {
  const int sr = 48000, ch = 2;
  int64_t ns = (int64_t)llround(seconds * sr);
  FILE *f = fopen(path, "wb");
  if (!f) return kiln_fail(e, KILN_EIO, "cannot write '%s'", path);
  uint32_t data = (uint32_t)(ns * ch * 2);
  uint8_t hdr[44];
  memcpy(hdr, "RIFF", 4);
  uint32_t v = 36 + data; memcpy(hdr + 4, &v, 4);
  memcpy(hdr + 8, "WAVEfmt ", 8);
  v = 16; memcpy(hdr + 16, &v, 4);
  uint16_t s16 = 1; memcpy(hdr + 20, &s16, 2);
  s16 = ch; memcpy(hdr + 22, &s16, 2);
  v = sr; memcpy(hdr + 24, &v, 4);
  v = sr * ch * 2; memcpy(hdr + 28, &v, 4);
  s16 = ch * 2; memcpy(hdr + 32, &s16, 2);
  s16 = 16; memcpy(hdr + 34, &s16, 2);
  memcpy(hdr + 36, "data", 4);
  memcpy(hdr + 40, &data, 4);
  fwrite(hdr, 1, sizeof hdr, f);
  for (int64_t i = 0; i < ns; i++) {
    int16_t s = (int16_t)lrint(12000 * sin(2 * M_PI * hz * (double)i / sr));
    int16_t fr[2] = {s, s};
    fwrite(fr, sizeof fr, 1, f);
  }
  return fclose(f) == 0 ? 0 : kiln_fail(e, KILN_EIO, "cannot write '%s'", path);
}

int km_testsrc_write(const char *path, const km_testsrc *t, kiln_err *e) {
  char wav[4096];
  snprintf(wav, sizeof wav, "%s.tone-%ld.wav", path, (long)getpid());
  km_audio_opts ao = {0};
  km_timeline_identity(&ao.tl);
  int r;
  if (t->tone_hz > 0) {
    if ((r = write_wav(wav, t->tone_hz, t->frames / av_q2d(t->fps), e)) < 0) return r;
    ao.path = wav;
  }
  km_enc_opts o = {.width = t->width, .height = t->height, .fps = t->fps, .crf = 18,
                   .lossless = t->lossless, .preset = "veryfast", .gop = t->gop,
                   .rotation_meta = t->rotation_meta};
  km_writer *w = NULL;
  AVFrame *f = NULL;
  if ((r = km_writer_open(&w, path, path, &o, &ao, e)) < 0) goto out;
  f = km_frame_new(t->width, t->height);
  if (!f) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto out; }
  for (int64_t n = 0; n < t->frames; n++) {
    for (int p = 0; p < 3; p++) {
      int pw = p ? t->width / 2 : t->width, ph = p ? t->height / 2 : t->height;
      for (int y = 0; y < ph; y++) {
        uint8_t *row = f->data[p] + (size_t)y * f->linesize[p];
        for (int x = 0; x < pw; x++) {
          double lx = p ? 2 * x + 0.5 : x, ly = p ? 2 * y + 0.5 : y;
          double v = km_pattern_value(t->pattern, p, lx, ly, n, t->width, t->height);
          row[x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lrint(v));
        }
      }
    }
    if ((r = km_writer_write(w, f, e)) < 0) goto out;
  }
  r = km_writer_finish(w, e);
out:
  av_frame_free(&f);
  km_writer_free(w);
  if (ao.path) unlink(wav);
  if (r < 0) unlink(path);
  return r;
}
