/* writer.c — H.264 (libx264, yuv420p) encoding and muxing with the source's
 * audio carried once (see audio.c).
 *
 * The container is chosen from the final output name while the bytes go to a
 * temporary path (the caller renames it when everything succeeded). MP4/MOV
 * get +faststart so the index (moov) comes before the media data (mdat) and
 * browsers can start playing before the download ends. Frame n gets pts n in
 * a 1/fps time base, so output timestamps are exact and gap-free; audio is
 * interleaved up to each video packet's time so the muxer buffers little. */
#include "media/media.h"
#include "media/media_int.h"

#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/opt.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

struct km_writer {
  AVFormatContext *oc;
  AVCodecContext *enc;
  AVStream *vst;
  AVPacket *pkt;
  km_asrc *audio;
  int64_t frames;               /* frames given to the encoder */
  int64_t kept;                 /* frames in the window (the ones that go out) */
  int64_t gop;                  /* forced IDR at multiples of this output frame number; 0: x264 decides */
  int64_t first, keep_from, keep_to;
  int header_written;
};

int64_t km_writer_frames(const km_writer *w) { return w->keep_to > 0 ? w->kept : w->frames; }
const char *km_writer_audio_mode(const km_writer *w) { return km_asrc_mode(w->audio); }

int km_writer_open(km_writer **out, const char *path, const char *name_for_format,
                   const km_enc_opts *o, const km_audio_opts *a, kiln_err *e) {
  char eb[128];
  int r;
  km_writer *w = calloc(1, sizeof *w);
  if (!w) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  const AVOutputFormat *of = av_guess_format(NULL, name_for_format, NULL);
  if (!of) {
    r = kiln_fail(e, KILN_EINVAL, "cannot tell the container from the output name '%s'; use .mp4, .mov or .mkv",
                  name_for_format);
    goto fail;
  }
  if (avformat_query_codec(of, AV_CODEC_ID_H264, FF_COMPLIANCE_NORMAL) != 1) {
    r = kiln_fail(e, KILN_EINVAL, "the %s container of '%s' cannot hold H.264 video; use .mp4, .mov or .mkv",
                  of->name, name_for_format);
    goto fail;
  }
  if ((r = avformat_alloc_output_context2(&w->oc, of, NULL, path)) < 0) goto averr;
  const AVCodec *codec = avcodec_find_encoder_by_name("libx264");
  if (!codec) { r = kiln_fail(e, KILN_ECODEC, "this FFmpeg build has no libx264 encoder"); goto fail; }
  if (o->width < 2 || o->height < 2 || (o->width & 1) || (o->height & 1)) {
    r = kiln_fail(e, KILN_EINVAL, "output size %dx%d must be even and at least 2x2", o->width, o->height);
    goto fail;
  }
  w->enc = avcodec_alloc_context3(codec);
  w->vst = avformat_new_stream(w->oc, NULL);
  w->pkt = av_packet_alloc();
  if (!w->enc || !w->vst || !w->pkt) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto fail; }
  AVRational fps = o->fps.num > 0 ? o->fps : (AVRational){25, 1};
  w->enc->width = o->width;
  w->enc->height = o->height;
  w->enc->pix_fmt = AV_PIX_FMT_YUV420P;
  w->enc->time_base = av_inv_q(fps);
  w->enc->framerate = fps;
  w->enc->sample_aspect_ratio = (AVRational){1, 1};
  w->enc->thread_count = o->threads;
  w->first = o->first_index;
  w->keep_from = o->keep_to > 0 ? o->keep_from : 0;
  w->keep_to = o->keep_to;
  if (o->gop > 0) w->enc->gop_size = o->gop;
  else if (o->keyint_s > 0) {
    w->gop = lround(o->keyint_s * av_q2d(fps));
    if (w->gop < 1) w->gop = 1;
  }
  if (w->oc->oformat->flags & AVFMT_GLOBALHEADER) w->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  AVDictionary *opts = NULL;
  av_dict_set(&opts, "preset", o->preset && *o->preset ? o->preset : "veryfast", 0);
  if (w->gop) {                                   /* IDRs only where forced: at multiples of gop */
    av_dict_set(&opts, "x264-params", "keyint=infinite:scenecut=0", 0);
    av_dict_set(&opts, "forced-idr", "1", 0);
  }
  if (o->lossless) av_dict_set(&opts, "qp", "0", 0);
  else av_dict_set_int(&opts, "crf", o->crf, 0);
  r = avcodec_open2(w->enc, codec, &opts);
  av_dict_free(&opts);
  if (r < 0) goto averr;
  if ((r = avcodec_parameters_from_context(w->vst->codecpar, w->enc)) < 0) goto averr;
  w->vst->time_base = w->enc->time_base;
  w->vst->avg_frame_rate = fps;
  if (o->rotation_meta) {
    int32_t *m = (int32_t *)av_stream_new_side_data(w->vst, AV_PKT_DATA_DISPLAYMATRIX, 9 * sizeof(int32_t));
    if (m) av_display_rotation_set(m, (double)o->rotation_meta);  /* probes back as this many degrees clockwise */
  }
  if (a && a->path) {
    r = km_asrc_open(&w->audio, a->path, &a->tl, a->video_start, w->oc, e);
    if (r < 0) goto fail;
  }
  if ((r = avio_open(&w->oc->pb, path, AVIO_FLAG_WRITE)) < 0) {
    r = kiln_fail(e, KILN_EIO, "cannot write output '%s' (%s)", name_for_format, kiln_averr(r, eb, sizeof eb));
    goto fail;
  }
  AVDictionary *mopts = NULL;
  if (strstr(of->name, "mp4") || strstr(of->name, "mov")) av_dict_set(&mopts, "movflags", "+faststart", 0);
  r = avformat_write_header(w->oc, &mopts);
  av_dict_free(&mopts);
  if (r < 0) goto averr;
  w->header_written = 1;
  *out = w;
  return 0;
averr:
  r = kiln_fail(e, KILN_ECODEC, "cannot set up the output '%s' (%s)", name_for_format, kiln_averr(r, eb, sizeof eb));
fail:
  km_writer_free(w);
  return r;
}

static int drain(km_writer *w, kiln_err *e) {
  char eb[128];
  for (;;) {
    int r = avcodec_receive_packet(w->enc, w->pkt);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
    if (r < 0) return kiln_fail(e, KILN_ECODEC, "video encoder failed (%s)", kiln_averr(r, eb, sizeof eb));
    if (w->keep_to > 0) {                         /* a chunk: only its window, renumbered from 0 */
      int64_t n = w->first + w->pkt->pts;
      if (n < w->keep_from || n >= w->keep_to) { av_packet_unref(w->pkt); continue; }
      int64_t shift = w->keep_from - w->first;
      w->pkt->pts -= shift;
      w->pkt->dts -= shift;
    }
    double t = w->pkt->dts * av_q2d(w->enc->time_base);
    if ((r = km_asrc_write_until(w->audio, w->oc, t, e)) < 0) { av_packet_unref(w->pkt); return r; }
    w->pkt->stream_index = w->vst->index;
    av_packet_rescale_ts(w->pkt, w->enc->time_base, w->vst->time_base);
    r = av_interleaved_write_frame(w->oc, w->pkt);
    av_packet_unref(w->pkt);
    if (r < 0) return kiln_fail(e, KILN_EIO, "writing the output failed (%s)", kiln_averr(r, eb, sizeof eb));
  }
}

int km_writer_write(km_writer *w, const AVFrame *f, kiln_err *e) {
  char eb[128];
  AVFrame *c = av_frame_clone(f);
  if (!c) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  if (w->keep_to > 0 && w->first + w->frames >= w->keep_from && w->first + w->frames < w->keep_to) w->kept++;
  c->pts = w->frames++;
  c->pict_type = w->gop && (w->first + c->pts) % w->gop == 0 ? AV_PICTURE_TYPE_I : AV_PICTURE_TYPE_NONE;
  int r = avcodec_send_frame(w->enc, c);
  av_frame_free(&c);
  if (r < 0) return kiln_fail(e, KILN_ECODEC, "video encoder failed (%s)", kiln_averr(r, eb, sizeof eb));
  return drain(w, e);
}

int km_writer_finish(km_writer *w, kiln_err *e) {
  char eb[128];
  int r = avcodec_send_frame(w->enc, NULL);
  if (r < 0 && r != AVERROR_EOF) return kiln_fail(e, KILN_ECODEC, "video encoder failed (%s)", kiln_averr(r, eb, sizeof eb));
  if ((r = drain(w, e)) < 0) return r;
  double t_end = km_writer_frames(w) * av_q2d(w->enc->time_base);
  if ((r = km_asrc_finish(w->audio, w->oc, t_end, e)) < 0) return r;
  if ((r = av_write_trailer(w->oc)) < 0)
    return kiln_fail(e, KILN_EIO, "finishing the output failed (%s)", kiln_averr(r, eb, sizeof eb));
  w->header_written = 0;
  if ((r = avio_closep(&w->oc->pb)) < 0)
    return kiln_fail(e, KILN_EIO, "closing the output failed (%s)", kiln_averr(r, eb, sizeof eb));
  return 0;
}

void km_writer_free(km_writer *w) {
  if (!w) return;
  km_asrc_free(w->audio);
  avcodec_free_context(&w->enc);
  av_packet_free(&w->pkt);
  if (w->oc) {
    if (w->oc->pb) avio_closep(&w->oc->pb);
    avformat_free_context(w->oc);
  }
  free(w);
}
