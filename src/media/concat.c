/* concat.c — the join of a chunked job: the chunks' video, stream-copied
 * one after another into one file, and the source's audio muxed once.
 *
 * Every chunk was encoded with the same settings from its own first frame
 * (an IDR), so the H.264 parameter sets agree and the packets can follow
 * one another as they are: packet timestamps are moved by the frames
 * before the chunk, which keeps pts 0..N-1 and the decode order exactly as
 * one encoder would have made them (each chunk's dts run in step with its
 * pts, shifted by the same B-frame delay). The audio goes through the same
 * code as an unchunked run (audio.c: copied, or cut and retimed per
 * timeline piece and encoded once), written up to each video packet's time,
 * so no audio is cut at a chunk boundary. The output is written to a
 * temporary name and renamed when complete. */
#include "media/media.h"
#include "media/media_int.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int km_concat(const char *const *chunks, int n, const char *output, const km_audio_opts *a, AVRational fps,
              km_concat_stats *st, kiln_err *e) {
  char eb[128], tmp[4200];
  int r = 0;
  AVFormatContext *oc = NULL, *ic = NULL;
  AVPacket *pkt = av_packet_alloc();
  km_asrc *audio = NULL;
  AVStream *ovs = NULL;
  int64_t offset = 0, frames = 0;
  AVRational ftb = av_inv_q(fps);               /* one frame */
  const char *slash = strrchr(output, '/');
  if (slash) snprintf(tmp, sizeof tmp, "%.*s/.%s.part-%ld", (int)(slash - output), output, slash + 1, (long)getpid());
  else snprintf(tmp, sizeof tmp, ".%s.part-%ld", output, (long)getpid());
  if (!pkt) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  if (n < 1) { r = kiln_fail(e, KILN_EINVAL, "nothing to join"); goto done; }
  if (st) memset(st, 0, sizeof *st);
  const AVOutputFormat *of = av_guess_format(NULL, output, NULL);
  if (!of) { r = kiln_fail(e, KILN_EINVAL, "cannot tell the container from the output name '%s'", output); goto done; }
  if ((r = avformat_alloc_output_context2(&oc, of, NULL, tmp)) < 0) goto averr;
  for (int k = 0; k < n; k++) {
    /* the chunks are kiln's own files: a problem with one is internal (retried), not the user's input */
    if ((r = km_open_input2(&ic, chunks[k], 1, e)) < 0) { r = kiln_fail(e, KILN_EINTERNAL, "chunk %d cannot be read", k); goto done; }
    int vi = av_find_best_stream(ic, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
    if (vi < 0) { r = kiln_fail(e, KILN_EINTERNAL, "chunk %d has no video", k); goto done; }
    AVStream *ist = ic->streams[vi];
    if (k == 0) {
      ovs = avformat_new_stream(oc, NULL);
      if (!ovs) { r = kiln_fail(e, KILN_ENOMEM, "out of memory"); goto done; }
      if ((r = avcodec_parameters_copy(ovs->codecpar, ist->codecpar)) < 0) goto averr;
      ovs->codecpar->codec_tag = 0;
      ovs->time_base = ftb;
      ovs->avg_frame_rate = fps;
      if (a && a->path && (r = km_asrc_open(&audio, a->path, &a->tl, a->video_start, oc, e)) < 0) goto done;
      if ((r = avio_open(&oc->pb, tmp, AVIO_FLAG_WRITE)) < 0) {
        r = kiln_fail(e, KILN_EIO, "cannot write '%s' (%s)", output, kiln_averr(r, eb, sizeof eb));
        goto done;
      }
      AVDictionary *mo = NULL;
      if (strstr(of->name, "mp4") || strstr(of->name, "mov")) av_dict_set(&mo, "movflags", "+faststart", 0);
      r = avformat_write_header(oc, &mo);
      av_dict_free(&mo);
      if (r < 0) goto averr;
    } else if (ist->codecpar->width != ovs->codecpar->width || ist->codecpar->height != ovs->codecpar->height ||
               ist->codecpar->codec_id != ovs->codecpar->codec_id) {
      r = kiln_fail(e, KILN_EINTERNAL, "chunk %d is %dx%d, chunk 0 is %dx%d: they were not made with the same settings", k,
                    ist->codecpar->width, ist->codecpar->height, ovs->codecpar->width, ovs->codecpar->height);
      goto done;
    }
    int64_t count = 0;
    while ((r = av_read_frame(ic, pkt)) >= 0) {
      if (pkt->stream_index != vi) { av_packet_unref(pkt); continue; }
      /* chunk timestamps in frames, moved past the chunks before */
      int64_t pts = pkt->pts == AV_NOPTS_VALUE ? AV_NOPTS_VALUE : av_rescale_q(pkt->pts, ist->time_base, ftb) + offset;
      int64_t dts = pkt->dts == AV_NOPTS_VALUE ? AV_NOPTS_VALUE : av_rescale_q(pkt->dts, ist->time_base, ftb) + offset;
      if ((r = km_asrc_write_until(audio, oc, (double)(dts == AV_NOPTS_VALUE ? pts : dts) / av_q2d(fps), e)) < 0) {
        av_packet_unref(pkt);
        goto done;
      }
      pkt->pts = pts;
      pkt->dts = dts;
      pkt->duration = 1;
      pkt->stream_index = ovs->index;
      pkt->pos = -1;
      av_packet_rescale_ts(pkt, ftb, ovs->time_base);
      r = av_interleaved_write_frame(oc, pkt);
      av_packet_unref(pkt);
      if (r < 0) { r = kiln_fail(e, KILN_EIO, "writing '%s' failed (%s)", output, kiln_averr(r, eb, sizeof eb)); goto done; }
      count++;
    }
    if (r != AVERROR_EOF) {
      r = kiln_fail(e, KILN_EINTERNAL, "chunk %d could not be read to its end (%s)", k, kiln_averr(r, eb, sizeof eb));
      goto done;
    }
    r = 0;
    avformat_close_input(&ic);
    offset += count;
    frames += count;
  }
  if ((r = km_asrc_finish(audio, oc, (double)frames / av_q2d(fps), e)) < 0) goto done;
  if ((r = av_write_trailer(oc)) < 0) goto averr;
  if ((r = avio_closep(&oc->pb)) < 0) goto averr;
  if (rename(tmp, output) != 0) {
    r = kiln_fail(e, KILN_EIO, "cannot move the joined output to '%s': %s", output, strerror(errno));
    goto done;
  }
  if (st) {
    st->frames = frames;
    st->duration = (double)frames / av_q2d(fps);
    snprintf(st->audio, sizeof st->audio, "%s", km_asrc_mode(audio));
  }
  r = 0;
  goto done;
averr:
  r = kiln_fail(e, KILN_ECODEC, "joining into '%s' failed (%s)", output, kiln_averr(r, eb, sizeof eb));
done:
  avformat_close_input(&ic);
  km_asrc_free(audio);
  if (oc) {
    if (oc->pb) avio_closep(&oc->pb);
    avformat_free_context(oc);
  }
  av_packet_free(&pkt);
  if (r < 0) unlink(tmp);
  return r;
}
