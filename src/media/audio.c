/* audio.c — the source's audio, carried into the output once.
 *
 * Two modes. "copy": packets are stream-copied, retimed so that the video's
 * first frame is t = 0, and those starting at or after the video's end are
 * dropped (so audio and video durations agree to within one audio packet).
 * "aac": used when the timeline trims or changes speed, or the container
 * cannot hold the codec. Decoded audio goes through one libavfilter graph per
 * timeline piece (atrim, atempo with pitch kept, aformat), the graphs are run
 * one after another so memory stays bounded, and the joined samples are
 * re-framed through a FIFO and encoded to AAC; the sample count is capped at
 * the video's end. Output timestamps count samples, so pieces join with no gap. */
#include "media/media.h"
#include "media/media_int.h"

#include <libavcodec/avcodec.h>
#include <libavfilter/avfilter.h>
#include <libavfilter/buffersink.h>
#include <libavfilter/buffersrc.h>
#include <libavutil/audio_fifo.h>
#include <libavutil/channel_layout.h>
#include <libavutil/opt.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

struct km_asrc {
  int copy;
  AVFormatContext *ic;
  AVStream *ist, *ost;
  int ai;
  double video_start;
  AVPacket *pkt;
  int have_pending, in_eof;
  /* aac mode */
  AVCodecContext *dec, *enc;
  AVFrame *frame;
  km_piece pieces[2 * KM_MAX_SEGMENTS + 2];
  int npieces, cur;
  AVFilterGraph *graph;
  AVFilterContext *bsrc, *bsink;
  AVAudioFifo *fifo;
  int64_t samples_out;
  int64_t written;              /* samples put into the FIFO so far */
  int64_t piece_cap;            /* written may not pass this in the open piece; -1: no limit */
  int flushed;
};

const char *km_asrc_mode(const km_asrc *a) { return !a ? "none" : a->copy ? "copy" : "aac"; }

static int write_pkt(km_asrc *a, AVFormatContext *oc, AVPacket *p, AVRational tb, kiln_err *e) {
  char eb[128];
  p->stream_index = a->ost->index;
  av_packet_rescale_ts(p, tb, a->ost->time_base);
  int r = av_interleaved_write_frame(oc, p);
  if (r < 0) return kiln_fail(e, KILN_EIO, "writing audio failed (%s)", kiln_averr(r, eb, sizeof eb));
  return 0;
}

/* ---- copy mode ---- */

static double pkt_time(const km_asrc *a, const AVPacket *p) {
  int64_t ts = p->pts != AV_NOPTS_VALUE ? p->pts : p->dts;
  return ts == AV_NOPTS_VALUE ? 0 : ts * av_q2d(a->ist->time_base) - a->video_start;
}

static int copy_until(km_asrc *a, AVFormatContext *oc, double t, double t_end, kiln_err *e) {
  int64_t shift = (int64_t)llround(a->video_start / av_q2d(a->ist->time_base));
  for (;;) {
    if (!a->have_pending) {
      if (a->in_eof) return 0;
      int r = av_read_frame(a->ic, a->pkt);
      if (r < 0) { a->in_eof = 1; return 0; }  /* damage in audio only ends the audio */
      if (a->pkt->stream_index != a->ai) { av_packet_unref(a->pkt); continue; }
      a->have_pending = 1;
    }
    double pt = pkt_time(a, a->pkt);
    double dur = a->pkt->duration * av_q2d(a->ist->time_base);
    if (pt >= t) return 0;
    a->have_pending = 0;
    if (pt >= t_end || pt + dur <= 0) { av_packet_unref(a->pkt); continue; }
    if (a->pkt->pts != AV_NOPTS_VALUE) a->pkt->pts -= shift;
    if (a->pkt->dts != AV_NOPTS_VALUE) a->pkt->dts -= shift;
    a->pkt->pos = -1;
    int r = write_pkt(a, oc, a->pkt, a->ist->time_base, e);
    av_packet_unref(a->pkt);
    if (r < 0) return r;
  }
}

/* ---- aac mode ---- */

static int build_graph(km_asrc *a, const km_piece *pc, const AVFrame *f, kiln_err *e) {
  char args[512], desc[1024], layout[128], eb[128];
  avfilter_graph_free(&a->graph);
  a->graph = avfilter_graph_alloc();
  if (!a->graph) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  /* from the frame itself: SBR or a mid-stream change may differ from the header */
  AVChannelLayout cl;
  memset(&cl, 0, sizeof cl);
  if (f->ch_layout.nb_channels > 0 && f->ch_layout.order != AV_CHANNEL_ORDER_UNSPEC) av_channel_layout_copy(&cl, &f->ch_layout);
  else av_channel_layout_default(&cl, f->ch_layout.nb_channels > 0 ? f->ch_layout.nb_channels : a->dec->ch_layout.nb_channels);
  av_channel_layout_describe(&cl, layout, sizeof layout);
  av_channel_layout_uninit(&cl);
  snprintf(args, sizeof args, "time_base=%d/%d:sample_rate=%d:sample_fmt=%s:channel_layout=%s",
           a->ist->time_base.num, a->ist->time_base.den, f->sample_rate,
           av_get_sample_fmt_name((enum AVSampleFormat)f->format), layout);
  int r = avfilter_graph_create_filter(&a->bsrc, avfilter_get_by_name("abuffer"), "in", args, NULL, a->graph);
  if (r >= 0) r = avfilter_graph_create_filter(&a->bsink, avfilter_get_by_name("abuffersink"), "out", NULL, NULL, a->graph);
  if (r < 0) return kiln_fail(e, KILN_EINTERNAL, "audio filter set-up failed (%s)", kiln_averr(r, eb, sizeof eb));

  size_t n = 0;
  if (isfinite(pc->end)) n += (size_t)snprintf(desc + n, sizeof desc - n, "atrim=start=%.6f:end=%.6f", pc->start, pc->end);
  else n += (size_t)snprintf(desc + n, sizeof desc - n, "atrim=start=%.6f", pc->start);
  /* the piece's time from 0; audio that starts late (or has a hole) gets
   * silence in its place instead of sliding earlier */
  n += (size_t)snprintf(desc + n, sizeof desc - n, ",asetpts=PTS-%.6f/TB,aresample=async=1:first_pts=0", pc->start);
  double s = pc->speed;
  while (s < 0.5 - 1e-9) { n += (size_t)snprintf(desc + n, sizeof desc - n, ",atempo=0.5"); s /= 0.5; }
  while (s > 2.0 + 1e-9) { n += (size_t)snprintf(desc + n, sizeof desc - n, ",atempo=2.0"); s /= 2.0; }
  if (fabs(s - 1.0) > 1e-9) n += (size_t)snprintf(desc + n, sizeof desc - n, ",atempo=%.6f", s);
  char enc_layout[128];
  av_channel_layout_describe(&a->enc->ch_layout, enc_layout, sizeof enc_layout);
  snprintf(desc + n, sizeof desc - n, ",aformat=sample_fmts=%s:sample_rates=%d:channel_layouts=%s",
           av_get_sample_fmt_name(a->enc->sample_fmt), a->enc->sample_rate, enc_layout);

  AVFilterInOut *outs = avfilter_inout_alloc(), *ins = avfilter_inout_alloc();
  if (!outs || !ins) { avfilter_inout_free(&outs); avfilter_inout_free(&ins); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  outs->name = av_strdup("in"); outs->filter_ctx = a->bsrc; outs->pad_idx = 0; outs->next = NULL;
  ins->name = av_strdup("out"); ins->filter_ctx = a->bsink; ins->pad_idx = 0; ins->next = NULL;
  r = avfilter_graph_parse_ptr(a->graph, desc, &ins, &outs, NULL);
  avfilter_inout_free(&ins);
  avfilter_inout_free(&outs);
  if (r >= 0) r = avfilter_graph_config(a->graph, NULL);
  if (r < 0) return kiln_fail(e, KILN_EINTERNAL, "audio filter '%s' failed (%s)", desc, kiln_averr(r, eb, sizeof eb));
  return 0;
}

static int pad_silence(km_asrc *a, int64_t n, kiln_err *e);

static int drain_sink(km_asrc *a, kiln_err *e) {
  for (;;) {
    int r = av_buffersink_get_frame(a->bsink, a->frame);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
    if (r < 0) return kiln_fail(e, KILN_EINTERNAL, "audio filter failed");
    int n = a->frame->nb_samples;
    if (a->piece_cap >= 0 && a->written + n > a->piece_cap) n = (int)(a->piece_cap - a->written);
    r = n > 0 ? av_audio_fifo_write(a->fifo, (void **)a->frame->extended_data, n) : 0;
    av_frame_unref(a->frame);
    if (r > 0) a->written += r;
    if (r < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory (audio)");
  }
}

/* Writes n samples of silence into the FIFO. */
static int pad_silence(km_asrc *a, int64_t n, kiln_err *e) {
  while (n > 0) {
    int k = n > 4096 ? 4096 : (int)n;
    AVFrame *f = av_frame_alloc();
    if (!f) return kiln_fail(e, KILN_ENOMEM, "out of memory");
    f->nb_samples = k;
    f->format = a->enc->sample_fmt;
    av_channel_layout_copy(&f->ch_layout, &a->enc->ch_layout);
    if (av_frame_get_buffer(f, 0) < 0) { av_frame_free(&f); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
    av_samples_set_silence(f->extended_data, 0, k, a->enc->ch_layout.nb_channels, a->enc->sample_fmt);
    int r = av_audio_fifo_write(a->fifo, (void **)f->extended_data, k);
    av_frame_free(&f);
    if (r < 0) return kiln_fail(e, KILN_ENOMEM, "out of memory (audio)");
    a->written += k;
    n -= k;
  }
  return 0;
}

/* Sets the sample budget of piece i: the output time where it ends, in
 * samples, so that every piece lasts exactly (end - start) / speed. */
static void open_piece(km_asrc *a, int i) {
  double tau = 0;
  for (int k = 0; k <= i && k < a->npieces; k++) tau += (a->pieces[k].end - a->pieces[k].start) / a->pieces[k].speed;
  a->piece_cap = i < a->npieces && isfinite(tau) ? (int64_t)llround(tau * a->enc->sample_rate) : -1;
}

/* Closes the open piece: flush its graph, then pad it to its exact length. */
static int close_piece(km_asrc *a, kiln_err *e) {
  if (av_buffersrc_add_frame_flags(a->bsrc, NULL, 0) < 0) return kiln_fail(e, KILN_EINTERNAL, "audio filter failed");
  int r = drain_sink(a, e);
  if (r < 0) return r;
  avfilter_graph_free(&a->graph);
  if (a->piece_cap >= 0 && a->written < a->piece_cap) return pad_silence(a, a->piece_cap - a->written, e);
  return 0;
}

/* Feeds one decoded frame (pts already shifted to video time) to the graphs
 * of every piece it overlaps, closing pieces it runs past. */
static int feed_frame(km_asrc *a, AVFrame *f, kiln_err *e) {
  double tb = av_q2d(a->ist->time_base);
  double t0 = f->pts * tb, t1 = t0 + (double)f->nb_samples / f->sample_rate;
  while (a->cur < a->npieces) {
    const km_piece *pc = &a->pieces[a->cur];
    if (t1 <= pc->start) return 0;
    if (!a->graph) {
      int r = build_graph(a, pc, f, e);
      if (r < 0) return r;
      open_piece(a, a->cur);
    }
    if (t0 < pc->end) {
      int r = av_buffersrc_write_frame(a->bsrc, f);
      if (r < 0) return kiln_fail(e, KILN_EINTERNAL, "audio filter rejected a frame");
      if ((r = drain_sink(a, e)) < 0) return r;
    }
    if (t1 < pc->end) return 0;
    /* this piece is complete: flush it and move on */
    int r = close_piece(a, e);
    if (r < 0) return r;
    a->cur++;
  }
  return 0;
}

static int decode_more(km_asrc *a, kiln_err *e) {
  int64_t shift = (int64_t)llround(a->video_start / av_q2d(a->ist->time_base));
  for (;;) {
    int r = avcodec_receive_frame(a->dec, a->frame);
    if (r == 0) {
      int64_t ts = a->frame->best_effort_timestamp;
      a->frame->pts = (ts == AV_NOPTS_VALUE ? 0 : ts) - shift;
      AVFrame *f = av_frame_clone(a->frame);
      av_frame_unref(a->frame);
      if (!f) return kiln_fail(e, KILN_ENOMEM, "out of memory");
      r = feed_frame(a, f, e);
      av_frame_free(&f);
      if (r >= 0 && a->cur >= a->npieces) a->in_eof = 1;   /* past the last piece: stop reading */
      return r < 0 ? r : 1;
    }
    if (r == AVERROR_EOF) {
      /* close whatever piece is open: the audio ended inside it */
      if (a->graph && a->cur < a->npieces && (r = close_piece(a, e)) < 0) return r;
      a->cur = a->npieces;
      a->in_eof = 1;
      return 0;
    }
    if (r != AVERROR(EAGAIN)) { a->in_eof = 1; return 0; }
    r = av_read_frame(a->ic, a->pkt);
    if (r < 0) { avcodec_send_packet(a->dec, NULL); continue; }
    if (a->pkt->stream_index == a->ai) avcodec_send_packet(a->dec, a->pkt);  /* bad audio packets are skipped */
    av_packet_unref(a->pkt);
  }
}

static int encode_frame(km_asrc *a, AVFormatContext *oc, AVFrame *f, kiln_err *e) {
  char eb[128];
  int r = avcodec_send_frame(a->enc, f);
  if (r < 0) return kiln_fail(e, KILN_ECODEC, "audio encoder failed (%s)", kiln_averr(r, eb, sizeof eb));
  for (;;) {
    r = avcodec_receive_packet(a->enc, a->pkt);
    if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return 0;
    if (r < 0) return kiln_fail(e, KILN_ECODEC, "audio encoder failed (%s)", kiln_averr(r, eb, sizeof eb));
    r = write_pkt(a, oc, a->pkt, a->enc->time_base, e);
    av_packet_unref(a->pkt);
    if (r < 0) return r;
  }
}

/* Encodes n samples from the FIFO. */
static int emit(km_asrc *a, AVFormatContext *oc, int n, kiln_err *e) {
  AVFrame *f = av_frame_alloc();
  if (!f) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  f->nb_samples = n;
  f->format = a->enc->sample_fmt;
  f->sample_rate = a->enc->sample_rate;
  av_channel_layout_copy(&f->ch_layout, &a->enc->ch_layout);
  int r = av_frame_get_buffer(f, 0);
  if (r < 0) { av_frame_free(&f); return kiln_fail(e, KILN_ENOMEM, "out of memory"); }
  av_audio_fifo_read(a->fifo, (void **)f->data, n);
  f->pts = a->samples_out;
  a->samples_out += n;
  r = encode_frame(a, oc, f, e);
  av_frame_free(&f);
  return r;
}

static int aac_until(km_asrc *a, AVFormatContext *oc, double t, kiln_err *e) {
  int fs = a->enc->frame_size > 0 ? a->enc->frame_size : 1024;
  while ((double)a->samples_out / a->enc->sample_rate < t) {
    if (av_audio_fifo_size(a->fifo) >= fs) {
      int r = emit(a, oc, fs, e);
      if (r < 0) return r;
      continue;
    }
    if (a->in_eof) return 0;
    int r = decode_more(a, e);
    if (r < 0) return r;
  }
  return 0;
}

/* ---- public ---- */

int km_asrc_open(km_asrc **out, const char *path, const km_timeline *tl, double video_start,
                 AVFormatContext *oc, kiln_err *e) {
  *out = NULL;
  char eb[128];
  km_asrc *a = calloc(1, sizeof *a);
  if (!a) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  int r = km_open_input2(&a->ic, path, 1, e);
  if (r < 0) goto fail;
  a->ai = av_find_best_stream(a->ic, AVMEDIA_TYPE_AUDIO, -1, -1, NULL, 0);
  if (a->ai < 0) { km_asrc_free(a); return 0; }
  a->ist = a->ic->streams[a->ai];
  for (unsigned i = 0; i < a->ic->nb_streams; i++)
    if ((int)i != a->ai) a->ic->streams[i]->discard = AVDISCARD_ALL;
  a->video_start = video_start;
  a->pkt = av_packet_alloc();
  a->frame = av_frame_alloc();
  a->piece_cap = -1;
  if (!a->pkt || !a->frame) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto fail; }
  a->ost = avformat_new_stream(oc, NULL);
  if (!a->ost) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto fail; }

  a->copy = km_timeline_is_identity(tl) &&
            avformat_query_codec(oc->oformat, a->ist->codecpar->codec_id, FF_COMPLIANCE_NORMAL) == 1;
  if (a->copy) {
    if ((r = avcodec_parameters_copy(a->ost->codecpar, a->ist->codecpar)) < 0) goto averr;
    a->ost->codecpar->codec_tag = 0;
    a->ost->time_base = a->ist->time_base;
    *out = a;
    return 0;
  }
  const AVCodec *dc = avcodec_find_decoder(a->ist->codecpar->codec_id);
  const AVCodec *ec = avcodec_find_encoder(AV_CODEC_ID_AAC);
  if (!dc || !ec) {
    r = kiln_fail(e, KILN_ECODEC, "no decoder for the audio codec %s of '%s'",
                  avcodec_get_name(a->ist->codecpar->codec_id), path);
    goto fail;
  }
  a->dec = avcodec_alloc_context3(dc);
  a->enc = avcodec_alloc_context3(ec);
  if (!a->dec || !a->enc) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto fail; }
  avcodec_parameters_to_context(a->dec, a->ist->codecpar);
  a->dec->pkt_timebase = a->ist->time_base;
  if ((r = avcodec_open2(a->dec, dc, NULL)) < 0) goto averr;
  if (a->dec->ch_layout.order == AV_CHANNEL_ORDER_UNSPEC)
    av_channel_layout_default(&a->dec->ch_layout, a->dec->ch_layout.nb_channels);
  a->enc->sample_fmt = AV_SAMPLE_FMT_FLTP;
  a->enc->sample_rate = a->dec->sample_rate > 0 ? a->dec->sample_rate : 48000;
  if (a->dec->ch_layout.nb_channels <= 2) av_channel_layout_copy(&a->enc->ch_layout, &a->dec->ch_layout);
  else av_channel_layout_default(&a->enc->ch_layout, 2);
  a->enc->bit_rate = 64000 * a->enc->ch_layout.nb_channels;
  a->enc->time_base = (AVRational){1, a->enc->sample_rate};
  if (oc->oformat->flags & AVFMT_GLOBALHEADER) a->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if ((r = avcodec_open2(a->enc, ec, NULL)) < 0) goto averr;
  if ((r = avcodec_parameters_from_context(a->ost->codecpar, a->enc)) < 0) goto averr;
  a->ost->time_base = a->enc->time_base;
  a->fifo = av_audio_fifo_alloc(a->enc->sample_fmt, a->enc->ch_layout.nb_channels, 4096);
  if (!a->fifo) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto fail; }
  a->npieces = km_timeline_pieces(tl, INFINITY, a->pieces, (int)(sizeof a->pieces / sizeof a->pieces[0]));
  *out = a;
  return 0;
averr:
  r = kiln_fail(e, KILN_ECODEC, "audio set-up for '%s' failed (%s)", path, kiln_averr(r, eb, sizeof eb));
fail:
  km_asrc_free(a);
  return r;
}

int km_asrc_write_until(km_asrc *a, AVFormatContext *oc, double t, kiln_err *e) {
  if (!a) return 0;
  return a->copy ? copy_until(a, oc, t, INFINITY, e) : aac_until(a, oc, t, e);
}

int km_asrc_finish(km_asrc *a, AVFormatContext *oc, double t_end, kiln_err *e) {
  if (!a) return 0;
  if (a->copy) return copy_until(a, oc, t_end, t_end, e);
  int fs = a->enc->frame_size > 0 ? a->enc->frame_size : 1024;
  int64_t cap = (int64_t)llround(t_end * a->enc->sample_rate);
  while (!a->in_eof && av_audio_fifo_size(a->fifo) + a->samples_out < cap) {
    int r = decode_more(a, e);
    if (r < 0) return r;
  }
  /* a source whose audio ends before its video: pad, so durations agree */
  if (a->in_eof && av_audio_fifo_size(a->fifo) + a->samples_out < cap) {
    int r = pad_silence(a, cap - a->samples_out - av_audio_fifo_size(a->fifo), e);
    if (r < 0) return r;
  }
  while (a->samples_out < cap && av_audio_fifo_size(a->fifo) > 0) {
    int64_t left = cap - a->samples_out;
    int n = av_audio_fifo_size(a->fifo);
    if (n > fs) n = fs;
    if (n > left) n = (int)left;
    int r = emit(a, oc, n, e);
    if (r < 0) return r;
  }
  return encode_frame(a, oc, NULL, e);
}

void km_asrc_free(km_asrc *a) {
  if (!a) return;
  avformat_close_input(&a->ic);
  av_packet_free(&a->pkt);
  av_frame_free(&a->frame);
  avcodec_free_context(&a->dec);
  avcodec_free_context(&a->enc);
  avfilter_graph_free(&a->graph);
  if (a->fifo) av_audio_fifo_free(a->fifo);
  free(a);
}
