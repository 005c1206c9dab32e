/* probe.c — what a media file holds: container, video size, rotation, frame
 * rate (and whether it varies), frame count, audio streams.
 *
 * Frame counts are exact when cheap: read from the container's index when
 * it has one and the rate is constant, otherwise counted by demuxing (no
 * decoding) for files up to KM_PROBE_SCAN_MAX bytes (env KILN_PROBE_SCAN_MAX
 * overrides); above that they are estimated from duration x fps and marked
 * frames_exact = 0. Every input is held to the pixel budget when opened
 * (km_open_input2, limits.c): what its header declares, then what FFmpeg's
 * stream analysis (whose decoders may decode nothing larger) finds. An input
 * is one file: a demuxer that would open any other file or URL (an HLS or
 * DASH playlist, an image sequence) is refused it (input_only). */
#include "media/media.h"
#include "media/media_int.h"

#include <errno.h>
#include <libavformat/avformat.h>
#include <libavutil/display.h>
#include <libavutil/pixdesc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KM_PROBE_SCAN_MAX (1024LL * 1024 * 1024)

/* Containers whose header alone describes every stream fully (sizes, codec
 * configuration, timestamps): reading on to guess stream info is wasted. */
static int header_is_complete(const AVFormatContext *fc) {
  const char *n = fc->iformat->name;
  if (!strstr(n, "mp4") && !strstr(n, "matroska")) return 0;
  for (unsigned i = 0; i < fc->nb_streams; i++) {
    const AVCodecParameters *cp = fc->streams[i]->codecpar;
    if (cp->codec_id == AV_CODEC_ID_NONE) return 0;
    if (cp->codec_type == AVMEDIA_TYPE_VIDEO && (cp->width <= 0 || cp->height <= 0)) return 0;
    if (cp->codec_type == AVMEDIA_TYPE_AUDIO && (cp->sample_rate <= 0 || cp->ch_layout.nb_channels <= 0)) return 0;
  }
  return 1;
}

static int is_image_demuxer(const AVFormatContext *fc) {
  const char *n = fc->iformat->name;
  size_t l = strlen(n);
  return !strcmp(n, "image2") || (l > 5 && !strcmp(n + l - 5, "_pipe"));
}

/* KILN_ETOOBIG when a video stream's frames (attached cover pictures aside:
 * never decoded) are over the input pixel budget. declared: before
 * find_stream_info, so a still picture's header is read here. */
static int check_sizes(const AVFormatContext *fc, const char *path, int declared, kiln_err *e) {
  for (unsigned i = 0; i < fc->nb_streams; i++) {
    const AVStream *st = fc->streams[i];
    const AVCodecParameters *cp = st->codecpar;
    if (cp->codec_type != AVMEDIA_TYPE_VIDEO || (st->disposition & AV_DISPOSITION_ATTACHED_PIC)) continue;
    int r = km_check_pixels(cp->width, cp->height, 0, e,
                            declared ? "the frame size that input '%s' declares in its header" : "a frame of input '%s'", path);
    if (r < 0) return r;
  }
  int w, h;
  if (declared && is_image_demuxer(fc) && km_image_header_size(path, &w, &h) == 0)
    return km_check_pixels(w, h, 0, e, "the picture in input '%s'", path);
  return 0;
}

int km_open_input(AVFormatContext **out, const char *path, kiln_err *e) {
  return km_open_input2(out, path, 0, e);
}

/* FFmpeg's own opener, the same for every context (taken from a fresh one once). */
static int (*default_io_open)(struct AVFormatContext *, AVIOContext **, const char *, int, AVDictionary **);
static void take_default_io_open(void) {
  AVFormatContext *fc = avformat_alloc_context();
  if (fc) default_io_open = fc->io_open;
  avformat_free_context(fc);
}

/* Every file a demuxer opens goes through here: only the input itself
 * (s->url, which avformat_open_input sets before it opens anything) is
 * allowed, again and again (image2 opens it per packet). Without this an
 * uploaded .m3u8 naming "/any/local/file.mp4" or "http://10.0.0.1/..." made
 * kiln read that file or fetch that URL as the job's input, and a key like
 * "a%d.png" read a0.png, a1.png... (found probing arbitrary bytes for
 * tests/fuzz/fuzz_probe). */
static int input_only(struct AVFormatContext *s, AVIOContext **pb, const char *url, int flags, AVDictionary **options) {
  if (!s->url || !default_io_open || strcmp(url, s->url) != 0) return AVERROR(EPERM);
  return default_io_open(s, pb, url, flags, options);
}

/* Demuxers whose input names other files (HLS and DASH playlists, ffconcat
 * scripts) are stopped at their first read, before their header is parsed:
 * FFmpeg asks the interrupt callback before every read. Besides reading
 * what they name (concat opens it in contexts of its own, past input_only),
 * a live playlist whose segments cannot be opened made FFmpeg wait for new
 * ones forever, in the planner's thread of `kiln serve` too (fuzz_probe). */
static __thread char refused_format[32];         /* for the message: which one (its context is gone by then) */
static int refuse_references(void *arg) {        /* arg: the context; its I/O copies this, so it lives as long */
  const AVFormatContext *fc = arg;
  const char *n = fc->iformat ? fc->iformat->name : "";
  if (strcmp(n, "hls") && strcmp(n, "dash") && strcmp(n, "concat")) return 0;
  snprintf(refused_format, sizeof refused_format, "%s", n);
  return 1;
}

int km_open_input2(AVFormatContext **out, const char *path, int quick, kiln_err *e) {
  struct stat sb;
  if (stat(path, &sb) != 0)
    return kiln_fail(e, errno == ENOENT ? KILN_ENOENT : KILN_EIO, "cannot open input '%s': %s", path,
                     strerror(errno));
  if (S_ISDIR(sb.st_mode)) return kiln_fail(e, KILN_EINVAL, "input '%s' is a directory, not a media file", path);
  if (sb.st_size == 0) return kiln_fail(e, KILN_ENOTMEDIA, "input '%s' is empty (0 bytes), not a media file", path);
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, take_default_io_open);
  AVFormatContext *fc = avformat_alloc_context();
  if (!fc) return kiln_fail(e, KILN_ENOMEM, "out of memory");
  fc->io_open = input_only;
  fc->interrupt_callback = (AVIOInterruptCB){refuse_references, fc};
  refused_format[0] = 0;
  int r = avformat_open_input(&fc, path, NULL, NULL);   /* frees fc when it fails */
  char eb[128];
  if (r < 0 && refused_format[0])
    return kiln_fail(e, KILN_ENOTMEDIA, "input '%s' is a %s playlist or script naming other files; kiln reads one media file",
                     path, refused_format);
  if (r < 0)
    return kiln_fail(e, KILN_ENOTMEDIA, "input '%s' is not a media file FFmpeg can read (%s)", path,
                     kiln_averr(r, eb, sizeof eb));
  if (!strcmp(fc->iformat->name, "tty")) {        /* FFmpeg renders any text file as "ANSI art" video */
    avformat_close_input(&fc);
    return kiln_fail(e, KILN_ENOTMEDIA, "input '%s' is a text file, not a media file", path);
  }
  /* The pixel budget, before anything is decoded: the sizes the header
   * declares (a still picture's only in its own header: FFmpeg would decode
   * it to learn them), then, with find_stream_info's decoders held to the
   * budget (they decode a frame to fill in what the header lacks), the
   * sizes found. */
  if ((r = check_sizes(fc, path, 1, e)) < 0) { avformat_close_input(&fc); return r; }
  if (quick && header_is_complete(fc)) r = 0;
  else {
    AVDictionary **opts = fc->nb_streams ? calloc(fc->nb_streams, sizeof *opts) : NULL;
    for (unsigned i = 0; opts && i < fc->nb_streams; i++) av_dict_set_int(&opts[i], "max_pixels", km_decoder_max_pixels(), 0);
    r = avformat_find_stream_info(fc, opts);
    for (unsigned i = 0; opts && i < fc->nb_streams; i++) av_dict_free(&opts[i]);
    free(opts);
  }
  if (r < 0) {
    avformat_close_input(&fc);
    return kiln_fail(e, KILN_ENOTMEDIA, "input '%s' could not be read as media (%s)", path,
                     kiln_averr(r, eb, sizeof eb));
  }
  if ((r = check_sizes(fc, path, 0, e)) < 0) { avformat_close_input(&fc); return r; }
  *out = fc;
  return 0;
}

int km_stream_rotation(const AVStream *st) {
  const uint8_t *m = av_stream_get_side_data(st, AV_PKT_DATA_DISPLAYMATRIX, NULL);
  if (!m) return 0;
  double theta = -av_display_rotation_get((const int32_t *)m);
  if (isnan(theta)) return 0;
  theta -= 360 * floor(theta / 360 + 0.9 / 360);
  int r = (int)lround(theta / 90.0) * 90 % 360;
  return r < 0 ? r + 360 : r;
}

double km_stream_start(const AVStream *st) {
  return st->start_time != AV_NOPTS_VALUE ? st->start_time * av_q2d(st->time_base) : 0.0;
}

static void scan_frames(AVFormatContext *fc, int vi, km_probe *p) {
  AVStream *st = fc->streams[vi];
  for (unsigned i = 0; i < fc->nb_streams; i++)
    if ((int)i != vi) fc->streams[i]->discard = AVDISCARD_ALL;
  AVPacket *pkt = av_packet_alloc();
  int64_t n = 0, prev = AV_NOPTS_VALUE, dmin = INT64_MAX, dmax = 0, last_end = AV_NOPTS_VALUE;
  int ok = 1;
  while (pkt) {
    int r = av_read_frame(fc, pkt);
    if (r == AVERROR_EOF) break;
    if (r < 0) { ok = 0; break; }
    if (pkt->stream_index == vi) {
      n++;
      int64_t ts = pkt->pts != AV_NOPTS_VALUE ? pkt->pts : pkt->dts;
      if (ts != AV_NOPTS_VALUE) {
        int64_t end = ts + (pkt->duration > 0 ? pkt->duration : 0);
        if (last_end == AV_NOPTS_VALUE || end > last_end) last_end = end;
        if (pkt->dts != AV_NOPTS_VALUE && prev != AV_NOPTS_VALUE) {
          int64_t d = pkt->dts - prev;
          if (d > 0) { if (d < dmin) dmin = d; if (d > dmax) dmax = d; }
        }
        prev = pkt->dts;
      }
    }
    av_packet_unref(pkt);
  }
  av_packet_free(&pkt);
  if (!ok) return;                /* leave the estimate; decoding will report the damage */
  p->frames = n;
  p->frames_exact = 1;
  if (dmax > 0 && dmin != INT64_MAX && (double)(dmax - dmin) > 0.1 * (double)dmin) p->vfr = 1;
  if (last_end != AV_NOPTS_VALUE && p->vfr) {
    double start = km_stream_start(st);
    p->duration = last_end * av_q2d(st->time_base) - start;
  }
}

int km_probe_file(const char *path, km_probe *p, kiln_err *e) {
  memset(p, 0, sizeof *p);
  AVFormatContext *fc = NULL;
  int r = km_open_input(&fc, path, e);
  if (r < 0) return r;
  snprintf(p->container, sizeof p->container, "%s", fc->iformat->name);
  p->duration = fc->duration != AV_NOPTS_VALUE ? fc->duration / (double)AV_TIME_BASE : -1;
  p->bit_rate = fc->bit_rate;
  int vi = av_find_best_stream(fc, AVMEDIA_TYPE_VIDEO, -1, -1, NULL, 0);
  for (unsigned i = 0; i < fc->nb_streams && p->n_audio < KM_MAX_AUDIO; i++) {
    AVStream *st = fc->streams[i];
    if (st->codecpar->codec_type != AVMEDIA_TYPE_AUDIO) continue;
    km_audio_info *a = &p->audio[p->n_audio++];
    snprintf(a->codec, sizeof a->codec, "%s", avcodec_get_name(st->codecpar->codec_id));
    a->sample_rate = st->codecpar->sample_rate;
    a->channels = st->codecpar->ch_layout.nb_channels;
    a->duration = st->duration != AV_NOPTS_VALUE ? st->duration * av_q2d(st->time_base) : p->duration;
  }
  if (vi >= 0 && (fc->streams[vi]->disposition & AV_DISPOSITION_ATTACHED_PIC)) vi = -1;
  if (vi >= 0) {
    AVStream *st = fc->streams[vi];
    AVCodecParameters *cp = st->codecpar;
    p->has_video = 1;
    p->start_time = km_stream_start(st);
    snprintf(p->vcodec, sizeof p->vcodec, "%s", avcodec_get_name(cp->codec_id));
    const char *pf = av_get_pix_fmt_name(cp->format);
    snprintf(p->pix_fmt, sizeof p->pix_fmt, "%s", pf ? pf : "unknown");
    p->coded_width = cp->width;
    p->coded_height = cp->height;
    p->rotation = km_stream_rotation(st);
    int swap = p->rotation == 90 || p->rotation == 270;
    p->width = swap ? cp->height : cp->width;
    p->height = swap ? cp->width : cp->height;
    AVRational avg = st->avg_frame_rate, rr = st->r_frame_rate;
    AVRational q = avg.num > 0 && avg.den > 0 ? avg : rr;
    if (q.num <= 0 || q.den <= 0) q = (AVRational){25, 1};
    p->fps_q = q;
    p->fps = av_q2d(q);
    if (rr.num > 0 && avg.num > 0 && fabs(av_q2d(rr) - av_q2d(avg)) > 0.01 * av_q2d(avg)) p->vfr = 1;
    if (st->duration != AV_NOPTS_VALUE && st->duration > 0)
      p->duration = st->duration * av_q2d(st->time_base);
    if (st->nb_frames > 0 && !p->vfr) {
      p->frames = st->nb_frames;
      p->frames_exact = 1;
    } else {
      p->frames = p->duration > 0 ? llround(p->duration * p->fps) : 0;
      p->frames_exact = 0;
      struct stat sb;
      const char *lim = getenv("KILN_PROBE_SCAN_MAX");   /* bytes; for tests and very slow storage */
      long long max = lim ? strtoll(lim, NULL, 10) : KM_PROBE_SCAN_MAX;
      if (stat(path, &sb) == 0 && sb.st_size <= max) scan_frames(fc, vi, p);
    }
    if (p->frames_exact && !p->vfr && p->frames > 0) {
      /* constant rate: the exact count gives the video's exact duration (the
       * file's may be longer, e.g. audio that runs on) */
      p->duration = p->frames / p->fps;
    }
  }
  avformat_close_input(&fc);
  return 0;
}
