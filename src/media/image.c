/* image.c — still images: the first picture of a PNG/JPEG (or any single
 * image FFmpeg's image2 demuxer reads) decoded to packed RGB24, resized
 * with swscale, and written as a PNG with libavcodec's png encoder.
 *
 * Invariants: a km_image's pixels are w x h x 3 bytes, rows packed (no
 * padding), owned by the image (km_image_release). A PNG is written under a
 * temporary name next to the output (".NAME.part-PID") and renamed only when
 * every byte is on disk: the output is there whole or not at all. Alpha is
 * dropped (the colour channels are kept as they are, not composited). A
 * picture is turned upright as its EXIF orientation says (as the ffmpeg CLI
 * does), so what is read is what a viewer shows. Pictures over the pixel
 * budget (limits.c) are refused before they are decoded. */
#include "media/media.h"
#include "media/media_int.h"

#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/opt.h>
#include <math.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int km_probe_is_image(const km_probe *p) {
  if (!p->has_video || p->frames > 1) return 0;
  size_t n = strlen(p->container);
  return !strcmp(p->container, "image2") || (n > 5 && !strcmp(p->container + n - 5, "_pipe"));
}

int km_image_alloc(km_image *im, int w, int h) {
  im->w = w;
  im->h = h;
  im->rgb = w > 0 && h > 0 ? malloc((size_t)w * h * 3) : NULL;
  return im->rgb ? 0 : -1;
}

void km_image_release(km_image *im) {
  free(im->rgb);
  im->rgb = NULL;
  im->w = im->h = 0;
}

/* Converts (and scales) a decoded frame into im (already allocated), with
 * the frame's chroma siting (JPEG's is centred, not swscale's default) and
 * range, as FFmpeg's scale filter does. */
static int frame_to_rgb(const AVFrame *f, km_image *im) {
  struct SwsContext *s = sws_alloc_context();
  if (!s) return -1;
  av_opt_set_int(s, "srcw", f->width, 0);
  av_opt_set_int(s, "srch", f->height, 0);
  av_opt_set_int(s, "src_format", f->format, 0);
  av_opt_set_int(s, "dstw", im->w, 0);
  av_opt_set_int(s, "dsth", im->h, 0);
  av_opt_set_int(s, "dst_format", AV_PIX_FMT_RGB24, 0);
  av_opt_set_int(s, "sws_flags", SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, 0);
  if (f->color_range == AVCOL_RANGE_JPEG) av_opt_set_int(s, "src_range", 1, 0);
  av_opt_set_int(s, "dst_range", 1, 0);
  int x, y;
  if (f->chroma_location != AVCHROMA_LOC_UNSPECIFIED && avcodec_enum_to_chroma_pos(&x, &y, f->chroma_location) == 0) {
    av_opt_set_int(s, "src_h_chr_pos", x, 0);
    av_opt_set_int(s, "src_v_chr_pos", y, 0);
  }
  if (sws_init_context(s, NULL, NULL) < 0) { sws_freeContext(s); return -1; }
  uint8_t *dst[4] = {im->rgb};
  int ls[4] = {im->w * 3};
  sws_scale(s, (const uint8_t *const *)f->data, f->linesize, 0, f->height, dst, ls);
  sws_freeContext(s);
  return 0;
}

/* Turns im upright as its frame's display matrix (a JPEG's EXIF
 * orientation) says, the way the ffmpeg CLI's autorotation does: a quarter
 * turn either way (with a flip when the matrix mirrors), a half turn as a
 * horizontal and/or vertical flip, or a vertical flip alone. Other angles
 * are left as stored. Returns -1 when out of memory. */
enum { OR_NONE, OR_CLOCK, OR_CCLOCK, OR_TRANSPOSE, OR_ANTITRANSPOSE, OR_FLIPS };
static int orient(const AVFrame *f, km_image *im) {
  const AVFrameSideData *sd = av_frame_get_side_data(f, AV_FRAME_DATA_DISPLAYMATRIX);
  if (!sd || sd->size < 9 * sizeof(int32_t)) return 0;
  const int32_t *m = (const int32_t *)sd->data;
  double theta = -round(av_display_rotation_get(m));
  if (isnan(theta)) return 0;
  theta -= 360 * floor(theta / 360 + 0.9 / 360);
  int mode = OR_NONE, hf = 0, vf = 0;
  if (fabs(theta - 90) < 1) mode = m[3] > 0 ? OR_TRANSPOSE : OR_CLOCK;
  else if (fabs(theta - 270) < 1) mode = m[3] < 0 ? OR_ANTITRANSPOSE : OR_CCLOCK;
  else if (fabs(theta - 180) < 1) { mode = OR_FLIPS; hf = m[0] < 0; vf = m[4] < 0; }
  else if (fabs(theta) < 1 && m[4] < 0) { mode = OR_FLIPS; vf = 1; }
  if (mode == OR_NONE || (mode == OR_FLIPS && !hf && !vf)) return 0;
  int w = im->w, h = im->h, turn = mode != OR_FLIPS;
  km_image o;
  if (km_image_alloc(&o, turn ? h : w, turn ? w : h) < 0) return -1;
  for (int y = 0; y < o.h; y++)
    for (int x = 0; x < o.w; x++) {
      int sx, sy;
      switch (mode) {
      case OR_CLOCK: sx = y; sy = h - 1 - x; break;
      case OR_CCLOCK: sx = w - 1 - y; sy = x; break;
      case OR_TRANSPOSE: sx = y; sy = x; break;
      case OR_ANTITRANSPOSE: sx = w - 1 - y; sy = h - 1 - x; break;
      default: sx = hf ? w - 1 - x : x; sy = vf ? h - 1 - y : y; break;
      }
      memcpy(o.rgb + ((size_t)y * o.w + x) * 3, im->rgb + ((size_t)sy * w + sx) * 3, 3);
    }
  km_image_release(im);
  *im = o;
  return 0;
}

int km_image_read(const char *path, km_image *im, kiln_err *e) {
  memset(im, 0, sizeof *im);
  AVFormatContext *fc = NULL;
  AVCodecContext *cc = NULL;
  AVPacket *pkt = NULL;
  AVFrame *f = NULL;
  char eb[128];
  int r = km_open_input(&fc, path, e), got = 0;
  if (r < 0) return r;
  int vi = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  if (vi < 0) { r = kiln_fail(e, KILN_ENOFRAMES, "input '%s' holds no picture", path); goto done; }
  const AVCodec *dec = avcodec_find_decoder(fc->streams[vi]->codecpar->codec_id);
  if (!dec) { r = kiln_fail(e, KILN_ENOTMEDIA, "input '%s': no decoder for its picture", path); goto done; }
  if (!(cc = avcodec_alloc_context3(dec)) || !(pkt = av_packet_alloc()) || !(f = av_frame_alloc())) {
    r = kiln_fail(e, KILN_ENOMEM, "out of memory");
    goto done;
  }
  cc->max_pixels = km_decoder_max_pixels();        /* km_open_input checked the header; this, what decoding finds */
  if ((r = avcodec_parameters_to_context(cc, fc->streams[vi]->codecpar)) < 0 || (r = avcodec_open2(cc, dec, NULL)) < 0) {
    r = kiln_fail(e, KILN_ENOTMEDIA, "input '%s': cannot open its decoder (%s)", path, kiln_averr(r, eb, sizeof eb));
    goto done;
  }
  int eof = 0;
  while (!got) {
    if (!eof) {
      r = av_read_frame(fc, pkt);
      if (r == AVERROR_EOF) { eof = 1; avcodec_send_packet(cc, NULL); }
      else if (r < 0) { r = kiln_fail(e, KILN_ECORRUPT, "input '%s' is damaged (%s)", path, kiln_averr(r, eb, sizeof eb)); goto done; }
      else {
        int s = pkt->stream_index == vi ? avcodec_send_packet(cc, pkt) : 0;
        av_packet_unref(pkt);
        if (s == AVERROR(ENOMEM)) { r = kiln_fail(e, KILN_ENOMEM, "out of memory decoding input '%s'", path); goto done; }
        if (s < 0 && s != AVERROR(EAGAIN)) {
          r = kiln_fail(e, KILN_ECORRUPT, "input '%s' is damaged: its picture does not decode (%s)", path,
                        kiln_averr(s, eb, sizeof eb));
          goto done;
        }
      }
    }
    r = avcodec_receive_frame(cc, f);
    if (r == 0) got = 1;
    else if (r == AVERROR(EAGAIN) && !eof) continue;
    else if (r == AVERROR(ENOMEM)) { r = kiln_fail(e, KILN_ENOMEM, "out of memory decoding input '%s'", path); goto done; }
    else {
      r = kiln_fail(e, KILN_ECORRUPT, "input '%s' is damaged: its picture does not decode (%s)", path,
                    r == AVERROR_EOF || r == AVERROR(EAGAIN) ? "no picture in the file" : kiln_averr(r, eb, sizeof eb));
      goto done;
    }
  }
  if (f->width <= 0 || f->height <= 0) { r = kiln_fail(e, KILN_ECORRUPT, "input '%s' has an empty picture", path); goto done; }
  if ((r = km_check_pixels(f->width, f->height, 0, e, "the picture in input '%s'", path)) < 0) goto done;
  if (km_image_alloc(im, f->width, f->height) < 0 || frame_to_rgb(f, im) < 0 || orient(f, im) < 0) {
    km_image_release(im);
    r = kiln_fail(e, KILN_ENOMEM, "out of memory");
    goto done;
  }
  r = 0;
done:
  av_frame_free(&f);
  av_packet_free(&pkt);
  avcodec_free_context(&cc);
  avformat_close_input(&fc);
  return r;
}

int km_image_resize(const km_image *in, km_image *out, int w, int h, kiln_err *e) {
  if (km_image_alloc(out, w, h) < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  struct SwsContext *s = sws_getContext(in->w, in->h, AV_PIX_FMT_RGB24, w, h, AV_PIX_FMT_RGB24,
                                        SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
  if (!s) { km_image_release(out); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  const uint8_t *src[4] = {in->rgb};
  int sls[4] = {in->w * 3}, dls[4] = {w * 3};
  uint8_t *dst[4] = {out->rgb};
  sws_scale(s, src, sls, 0, in->h, dst, dls);
  sws_freeContext(s);
  return 0;
}

int km_image_write_png(const char *path, const km_image *im, kiln_err *e) {
  char tmp[4200], eb[128];
  const char *slash = strrchr(path, '/');
  if (slash) snprintf(tmp, sizeof tmp, "%.*s/.%s.part-%ld", (int)(slash - path), path, slash + 1, (long)getpid());
  else snprintf(tmp, sizeof tmp, ".%s.part-%ld", path, (long)getpid());
  const AVCodec *enc = avcodec_find_encoder(AV_CODEC_ID_PNG);
  AVCodecContext *cc = NULL;
  AVPacket *pkt = NULL;
  AVFrame *f = NULL;
  FILE *out = NULL;
  int r;
  if (!enc) return kiln_fail(e, KILN_EINTERNAL, "this FFmpeg has no PNG encoder");
  if (!(cc = avcodec_alloc_context3(enc)) || !(pkt = av_packet_alloc()) || !(f = av_frame_alloc())) {
    r = kiln_fail(e, KILN_ENOMEM, "out of memory");
    goto done;
  }
  cc->width = im->w;
  cc->height = im->h;
  cc->pix_fmt = AV_PIX_FMT_RGB24;
  cc->time_base = (AVRational){1, 1};
  if ((r = avcodec_open2(cc, enc, NULL)) < 0) {
    r = kiln_fail(e, KILN_EINTERNAL, "cannot open the PNG encoder for %dx%d (%s)", im->w, im->h, kiln_averr(r, eb, sizeof eb));
    goto done;
  }
  f->width = im->w;
  f->height = im->h;
  f->format = AV_PIX_FMT_RGB24;
  f->data[0] = im->rgb;                           /* borrowed: the encoder copies nothing it keeps */
  f->linesize[0] = im->w * 3;
  f->pts = 0;
  if ((r = avcodec_send_frame(cc, f)) < 0 || (r = avcodec_send_frame(cc, NULL)) < 0 ||
      (r = avcodec_receive_packet(cc, pkt)) < 0) {
    r = kiln_fail(e, KILN_EINTERNAL, "the PNG encoder failed on %dx%d (%s)", im->w, im->h, kiln_averr(r, eb, sizeof eb));
    goto done;
  }
  if (!(out = fopen(tmp, "wb"))) {
    r = kiln_fail(e, KILN_EIO, "cannot write output '%s': %s", path, strerror(errno));
    goto done;
  }
  if (fwrite(pkt->data, 1, (size_t)pkt->size, out) != (size_t)pkt->size || fflush(out) != 0) {
    r = kiln_fail(e, KILN_EIO, "cannot write output '%s': %s", path, strerror(errno));
    goto done;
  }
  int fc = fclose(out);
  out = NULL;
  if (fc != 0) { r = kiln_fail(e, KILN_EIO, "cannot write output '%s': %s", path, strerror(errno)); goto done; }
  if (rename(tmp, path) != 0) {
    r = kiln_fail(e, KILN_EIO, "cannot move the finished output to '%s': %s", path, strerror(errno));
    goto done;
  }
  r = 0;
done:
  if (out) fclose(out);
  if (r < 0) unlink(tmp);
  av_frame_free(&f);
  av_packet_free(&pkt);
  avcodec_free_context(&cc);
  return r;
}
