/* decode.c — frame-exact decoding of a frame range [start, end).
 *
 * Constant-rate sources seek to the keyframe at or before `start` and decode
 * and drop up to it; each frame's index comes from its timestamp. Variable-
 * rate sources (and start == 0) decode from the beginning and count frames,
 * which is exact whatever the timestamps do. Frames come out YUV420P, even-
 * sized and upright (display-matrix rotation applied, like ffmpeg's
 * autorotate). A decode error, or a stream that ends before the frame count
 * its index promised, is reported as KILN_ECORRUPT naming the frame; a
 * frame over the pixel budget (limits.c) as KILN_ETOOBIG before it is
 * converted, and the decoder itself is held to it (max_pixels). */
#include "media/media.h"
#include "media/media_int.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct km_decoder {
  char path[1024];
  km_probe probe;
  AVFormatContext *fc;
  AVCodecContext *cc;
  AVStream *st;
  int vi;
  int64_t start, end;
  int64_t counter;              /* next index when counting */
  int by_timestamp;             /* index from pts (after a seek) */
  double stream_start;
  AVPacket *pkt;
  AVFrame *raw;
  struct SwsContext *sws;
  int sws_w, sws_h, sws_fmt;
  int eof_sent, done;
  int64_t returned;             /* frames handed out */
  int64_t last_index;
};

AVFrame *km_frame_new(int w, int h) {
  AVFrame *f = av_frame_alloc();
  if (!f) return NULL;
  f->format = AV_PIX_FMT_YUV420P;
  f->width = w;
  f->height = h;
  if (av_frame_get_buffer(f, 64) < 0) av_frame_free(&f);
  return f;
}

const km_probe *km_decoder_probe(const km_decoder *d) { return &d->probe; }

int km_decoder_open(km_decoder **out, const char *path, const km_probe *probe, int64_t start, int64_t end,
                    int threads, kiln_err *e) {
  km_decoder *d = calloc(1, sizeof *d);
  if (!d) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  char eb[128];
  int r = 0;
  if (probe) d->probe = *probe;
  else if ((r = km_probe_file(path, &d->probe, e)) < 0) goto fail;
  if (!d->probe.has_video) {
    r = kiln_fail(e, KILN_ENOFRAMES, "input '%s' has no video stream (%s)", path,
                  d->probe.n_audio ? "it holds audio only" : "no streams FFmpeg can decode");
    goto fail;
  }
  snprintf(d->path, sizeof d->path, "%s", path);
  r = km_open_input2(&d->fc, path, 1, e);
  if (r < 0) goto fail;
  d->vi = av_find_best_stream(d->fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  d->st = d->fc->streams[d->vi];
  for (unsigned i = 0; i < d->fc->nb_streams; i++)
    if ((int)i != d->vi) d->fc->streams[i]->discard = AVDISCARD_ALL;
  const AVCodec *codec = avcodec_find_decoder(d->st->codecpar->codec_id);
  if (!codec) {
    r = kiln_fail(e, KILN_ENOTMEDIA, "input '%s': no decoder for video codec %s", path,
                  avcodec_get_name(d->st->codecpar->codec_id));
    goto fail;
  }
  d->cc = avcodec_alloc_context3(codec);
  if (!d->cc || avcodec_parameters_to_context(d->cc, d->st->codecpar) < 0) {
    r = kiln_fail(e, KILN_ENOMEM, "out of memory");
    goto fail;
  }
  d->cc->pkt_timebase = d->st->time_base;
  d->cc->thread_count = threads > 0 ? threads : 0;
  d->cc->err_recognition |= AV_EF_EXPLODE;
  d->cc->max_pixels = km_decoder_max_pixels();    /* the decoder refuses a larger picture before allocating it */
  if ((r = avcodec_open2(d->cc, codec, NULL)) < 0) {   /* the input's codec parameters are at fault, or memory */
    r = kiln_fail(e, r == AVERROR(ENOMEM) ? KILN_ENOMEM : KILN_ENOTMEDIA, "input '%s': cannot open the %s decoder (%s)",
                  path, codec->name, kiln_averr(r, eb, sizeof eb));
    goto fail;
  }
  d->pkt = av_packet_alloc();
  d->raw = av_frame_alloc();
  if (!d->pkt || !d->raw) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto fail; }
  d->start = start < 0 ? 0 : start;
  d->end = end;
  d->stream_start = d->probe.start_time;
  d->last_index = -1;
  if (d->start > 0 && !d->probe.vfr) {
    int64_t ts = (int64_t)llround((d->start / d->probe.fps) / av_q2d(d->st->time_base));
    ts += llround(d->stream_start / av_q2d(d->st->time_base));
    if (av_seek_frame(d->fc, d->vi, ts, AVSEEK_FLAG_BACKWARD) >= 0) {
      avcodec_flush_buffers(d->cc);
      d->by_timestamp = 1;
    }
  }
  *out = d;
  return 0;
fail:
  km_decoder_free(d);
  return r;
}

/* Converts the decoded frame to an upright, even-sized YUV420P frame. */
static int to_output(km_decoder *d, AVFrame **res, kiln_err *e) {
  AVFrame *src = d->raw;
  /* Always the probed size: a stream whose size changes mid-way (joined
   * clips) is scaled back, so every frame matches what kernels expect. */
  int w = (d->probe.coded_width > 0 ? d->probe.coded_width : src->width) & ~1;
  int h = (d->probe.coded_height > 0 ? d->probe.coded_height : src->height) & ~1;
  AVFrame *conv = NULL;
  if (src->format == AV_PIX_FMT_YUV420P && w == src->width && h == src->height) {
    conv = av_frame_clone(src);
  } else {
    if (!d->sws || d->sws_w != src->width || d->sws_h != src->height || d->sws_fmt != src->format) {
      sws_freeContext(d->sws);
      d->sws = sws_getContext(src->width, src->height, src->format, w, h, AV_PIX_FMT_YUV420P,
                              SWS_BICUBIC | SWS_ACCURATE_RND, NULL, NULL, NULL);
      d->sws_w = src->width; d->sws_h = src->height; d->sws_fmt = src->format;
      if (!d->sws) return kiln_fail(e, KILN_ECODEC, "cannot convert pixel format of '%s'", d->path);
    }
    conv = km_frame_new(w, h);
    if (conv) sws_scale(d->sws, (const uint8_t *const *)src->data, src->linesize, 0, src->height,
                        conv->data, conv->linesize);
  }
  if (!conv) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int rot = d->probe.rotation;
  if (rot == 0) { *res = conv; return 0; }
  int ow = rot == 180 ? w : h, oh = rot == 180 ? h : w;
  AVFrame *o = km_frame_new(ow, oh);
  if (!o) { av_frame_free(&conv); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  for (int p = 0; p < 3; p++) {
    int sh = p ? 1 : 0;
    int sw_ = w >> sh, sh_ = h >> sh;     /* source plane size */
    const uint8_t *s = conv->data[p];
    int sl = conv->linesize[p], dl = o->linesize[p];
    uint8_t *dst = o->data[p];
    for (int y = 0; y < sh_; y++) {
      const uint8_t *row = s + (size_t)y * sl;
      for (int x = 0; x < sw_; x++) {
        int dx, dy;
        if (rot == 90) { dx = sh_ - 1 - y; dy = x; }            /* clockwise */
        else if (rot == 270) { dx = y; dy = sw_ - 1 - x; }      /* counter-clockwise */
        else { dx = sw_ - 1 - x; dy = sh_ - 1 - y; }
        dst[(size_t)dy * dl + dx] = row[x];
      }
    }
  }
  av_frame_free(&conv);
  *res = o;
  return 0;
}

int km_decoder_read(km_decoder *d, AVFrame **frame, km_frame_info *info, kiln_err *e) {
  char eb[128];
  *frame = NULL;
  while (!d->done) {
    int r = avcodec_receive_frame(d->cc, d->raw);
    if (r == 0) {
      int64_t ts = d->raw->best_effort_timestamp;
      double t = ts != AV_NOPTS_VALUE ? ts * av_q2d(d->st->time_base) - d->stream_start
                                      : (double)d->counter / d->probe.fps;
      int64_t idx = d->by_timestamp ? llround(t * d->probe.fps) : d->counter;
      if (d->by_timestamp && idx <= d->last_index) idx = d->last_index + 1;
      d->counter = idx + 1;
      d->last_index = idx;
      if (idx < d->start) { av_frame_unref(d->raw); continue; }
      if (d->end >= 0 && idx >= d->end) { av_frame_unref(d->raw); d->done = 1; break; }
      info->src_index = idx;
      info->src_time = t;
      info->src_duration = d->raw->pkt_duration > 0 ? d->raw->pkt_duration * av_q2d(d->st->time_base)
                                                     : 1.0 / d->probe.fps;
      if ((r = km_check_pixels(d->raw->width, d->raw->height, 0, e, "frame %lld of input '%s'", (long long)idx,
                               d->path)) < 0) {   /* before converting it: a stream whose size changes */
        av_frame_unref(d->raw);
        return r;
      }
      r = to_output(d, frame, e);
      av_frame_unref(d->raw);
      if (r < 0) return r;
      d->returned++;
      return 1;
    }
    if (r == AVERROR_EOF) { d->done = 1; break; }
    if (r == AVERROR(ENOMEM))
      return kiln_fail(e, KILN_ENOMEM, "out of memory decoding input '%s' near frame %lld", d->path, (long long)d->counter);
    if (r != AVERROR(EAGAIN))
      return kiln_fail(e, KILN_ECORRUPT, "input '%s' is corrupt: decoding failed near frame %lld (%s)",
                       d->path, (long long)d->counter, kiln_averr(r, eb, sizeof eb));
    if (d->eof_sent) { d->done = 1; break; }
    r = av_read_frame(d->fc, d->pkt);
    if (r == AVERROR_EOF) {
      avcodec_send_packet(d->cc, NULL);
      d->eof_sent = 1;
      continue;
    }
    if (r == AVERROR(ENOMEM))
      return kiln_fail(e, KILN_ENOMEM, "out of memory reading input '%s' near frame %lld", d->path, (long long)d->counter);
    if (r < 0)
      return kiln_fail(e, KILN_ECORRUPT, "input '%s' is corrupt or truncated: reading failed near frame %lld (%s)",
                       d->path, (long long)d->counter, kiln_averr(r, eb, sizeof eb));
    if (d->pkt->stream_index == d->vi) {
      r = avcodec_send_packet(d->cc, d->pkt);
      if (r == AVERROR(ENOMEM)) {
        av_packet_unref(d->pkt);
        return kiln_fail(e, KILN_ENOMEM, "out of memory decoding input '%s' near frame %lld", d->path, (long long)d->counter);
      }
      if (r < 0 && r != AVERROR(EAGAIN)) {
        av_packet_unref(d->pkt);
        return kiln_fail(e, KILN_ECORRUPT, "input '%s' is corrupt: bad video data near frame %lld (%s)",
                         d->path, (long long)d->counter, kiln_averr(r, eb, sizeof eb));
      }
    }
    av_packet_unref(d->pkt);
  }
  /* End of stream: a container index that promised more frames than arrived
   * means the file was cut short. */
  int64_t want_end = d->end >= 0 ? d->end : d->probe.frames;
  if (d->probe.frames_exact && !d->probe.vfr && d->last_index + 1 < want_end && d->returned + d->start < want_end &&
      d->last_index + 1 < d->probe.frames)
    return kiln_fail(e, KILN_ECORRUPT, "input '%s' is truncated: its index lists %lld frames but the data ends after frame %lld",
                     d->path, (long long)d->probe.frames, (long long)d->last_index + 1);
  return 0;
}

void km_decoder_free(km_decoder *d) {
  if (!d) return;
  avcodec_free_context(&d->cc);
  avformat_close_input(&d->fc);
  av_packet_free(&d->pkt);
  av_frame_free(&d->raw);
  sws_freeContext(d->sws);
  free(d);
}
