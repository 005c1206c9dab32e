/* media.h — kiln's media layer on the FFmpeg libraries: probe, frame-exact
 * range decoding, timelines (trim and speed), H.264 encoding and muxing with
 * the original audio, and the streaming decode → kernel → encode pipeline.
 *
 * The media layer knows nothing of jobs, functions or HTTP: it moves frames.
 * All frames that cross this interface are AV_PIX_FMT_YUV420P, upright
 * (rotation metadata already applied), with even width and height.
 * Ownership: every *_open/_new has a matching *_free; AVFrames returned by
 * readers belong to the caller (av_frame_free). */
#ifndef KILN_MEDIA_H
#define KILN_MEDIA_H

#include <libavutil/frame.h>
#include <libavutil/rational.h>
#include <stdint.h>

#include "util/err.h"

/* ---- probe ------------------------------------------------------------ */

#define KM_MAX_AUDIO 8

typedef struct km_audio_info {
  char codec[32];
  int sample_rate, channels;
  double duration;              /* seconds, -1 if unknown */
} km_audio_info;

typedef struct km_probe {
  char container[64];           /* short demuxer name, e.g. "mov,mp4,m4a,3gp,3g2,mj2" */
  double duration;              /* seconds of the video stream (or file), -1 if unknown */
  int has_video;
  double start_time;            /* seconds of the video stream's first timestamp */
  int64_t frames;               /* video frame count */
  int frames_exact;             /* 1: counted or read from an index; 0: estimated */
  double fps;                   /* average frame rate */
  AVRational fps_q;             /* the same as a rational */
  int vfr;                      /* 1 if frame durations vary */
  int width, height;            /* as displayed (rotation applied) */
  int coded_width, coded_height;/* as stored */
  int rotation;                 /* clockwise degrees to display upright: 0, 90, 180, 270 */
  char pix_fmt[32];
  char vcodec[32];
  int64_t bit_rate;
  int n_audio;
  km_audio_info audio[KM_MAX_AUDIO];
} km_probe;

/* Fills *p for the media file at path. Errors: KILN_ENOENT (missing),
 * KILN_ENOTMEDIA (not a media file FFmpeg can read), KILN_ETOOBIG (its
 * video's frames, as its header declares them or as decoded, are over the
 * pixel budget: see km_limits). A file with no video stream probes fine
 * with has_video = 0. */
int km_probe_file(const char *path, km_probe *p, kiln_err *e);

/* ---- the decoded-pixel budget (limits.c) ------------------------------- */

/* The largest frames this process decodes and makes, in pixels (width x
 * height), checked before anything is allocated for a frame: every input
 * opened (the sizes its header declares — an mp4's sample description, a
 * PNG's IHDR — and those FFmpeg finds; probing decodes nothing larger),
 * every decoded frame (libavcodec's max_pixels too, so a decoder refuses a
 * larger picture before allocating it), and an output size before its
 * writer opens. Process-wide: set once, before threads start (a worker
 * serves one function: its function's limits). Until set, both are
 * KM_MAX_PIXELS_DEFAULT, or $KILN_MAX_PIXELS / $KILN_MAX_OUTPUT_PIXELS.
 * `name`/`out_name` say how a user changes each limit, for messages. */
#define KM_MAX_PIXELS_DEFAULT (8192LL * 8192)
typedef struct km_limits {
  int64_t max_pixels;           /* an input frame; 0: no limit */
  int64_t max_out_pixels;       /* an output frame; 0: no limit */
  char name[96], out_name[96];  /* e.g. "limits.max_pixels" */
} km_limits;
void km_limits_set(const km_limits *l);
/* The current limits (KM_MAX_PIXELS_DEFAULT for both until set). */
const km_limits *km_limits_get(void);
/* KILN_ETOOBIG (bad_input) when a w x h frame is over the input (out = 0)
 * or output (out = 1) budget; the message names what (e.g. "input 'a.png'
 * is a 16000x16000 picture"), the size and the limit. */
int km_check_pixels(int w, int h, int out, kiln_err *e, const char *what_fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Parses a pixel count: "N" or "WxH"; -1 if it is neither (or over 2^40). */
int64_t km_parse_pixels(const char *s);

/* ---- timeline: which source time appears at which output time ---------- */

#define KM_MAX_SEGMENTS 64

typedef struct km_speed_seg { double start, end, speed; } km_speed_seg;

typedef struct km_timeline {
  double start;                 /* source seconds where output begins (trim start) */
  double end;                   /* source seconds where it stops; <= 0: end of source */
  int nseg;                     /* speed segments, sorted, disjoint, in source seconds */
  km_speed_seg seg[KM_MAX_SEGMENTS];
} km_timeline;

/* A piece is a stretch of source time [start, end) played at one speed. */
typedef km_speed_seg km_piece;

void km_timeline_identity(km_timeline *tl);
int km_timeline_is_identity(const km_timeline *tl);
/* Checks ordering and bounds; message names the offending segment. */
int km_timeline_check(const km_timeline *tl, kiln_err *e);
/* The contiguous pieces that cover [tl->start, end) where end is tl->end or,
 * if unset, src_end (which may be INFINITY). Returns the count (<= max). */
int km_timeline_pieces(const km_timeline *tl, double src_end, km_piece *out, int max);
/* Output time of source time t (t clamped into the timeline). */
double km_timeline_to_out(const km_timeline *tl, double src_end, double t);
/* Source time shown at output time tau. */
double km_timeline_to_src(const km_timeline *tl, double src_end, double tau);
/* Output duration for a source that ends at src_end. */
double km_timeline_duration(const km_timeline *tl, double src_end);

/* ---- decoding a frame range ------------------------------------------- */

typedef struct km_decoder km_decoder;

typedef struct km_frame_info {
  int64_t src_index;            /* frame number in the source, from 0 */
  double src_time;              /* seconds from the video stream's start */
  double src_duration;          /* how long this frame is displayed in the source */
} km_frame_info;

/* Opens path and positions at frame `start`; frames [start, end) will be
 * returned (end < 0: until the end). Seeks to the keyframe before start and
 * decodes and drops, so the first frame returned is exactly `start`.
 * probe: the file's probe if the caller has it (saves reading the file
 * again), else NULL. threads: decoder threads, 0 = FFmpeg's choice. */
int km_decoder_open(km_decoder **out, const char *path, const km_probe *probe, int64_t start, int64_t end,
                    int threads, kiln_err *e);
/* Returns 1 and a new frame (caller frees) with its info, 0 at the end of the
 * range, or a negative code (KILN_ECORRUPT names the frame where it broke). */
int km_decoder_read(km_decoder *d, AVFrame **frame, km_frame_info *info, kiln_err *e);
const km_probe *km_decoder_probe(const km_decoder *d);
void km_decoder_free(km_decoder *d);

/* ---- encoding and muxing ---------------------------------------------- */

typedef struct km_enc_opts {
  int width, height;            /* even */
  AVRational fps;               /* output frame rate */
  int crf;                      /* 0..51; ignored when lossless */
  int lossless;                 /* x264 qp 0 (for tests and chunk identity) */
  const char *preset;           /* x264 preset, default "veryfast" */
  int threads;                  /* encoder threads, 0 = auto */
  int gop;                      /* keyframe interval in frames, 0 = x264 default */
  double keyint_s;              /* > 0 (and gop 0): an IDR exactly at every output frame that is a multiple
                                   of keyint_s seconds, none elsewhere (no scene-cut keyframes); with the
                                   window below, a chunk encodes its frames as the whole run does */
  /* A chunk's encode (see km_pipeline_cfg.out_start): the frames written are
   * output frames first_index.., encoded as in the whole run; only those in
   * [keep_from, keep_to) (output frame numbers) go out, renumbered from 0.
   * keep_to <= 0: all. The frames around the window only warm the encoder. */
  int64_t first_index, keep_from, keep_to;
  int rotation_meta;            /* write a display-matrix rotation (test media) */
} km_enc_opts;

typedef struct km_audio_opts {
  const char *path;             /* source of the original audio, NULL = none */
  km_timeline tl;               /* cut and retime like the video */
  double video_start;           /* source video stream start (seconds), for sync */
} km_audio_opts;

typedef struct km_writer km_writer;

/* Opens a writer whose container is chosen from `name_for_format` (the final
 * output name) and whose bytes go to `path` (usually a temporary name). */
int km_writer_open(km_writer **out, const char *path, const char *name_for_format,
                   const km_enc_opts *o, const km_audio_opts *a, kiln_err *e);
/* Encodes one frame; its pts is assigned by the writer (frame n at n/fps). */
int km_writer_write(km_writer *w, const AVFrame *f, kiln_err *e);
/* Flushes the encoder and the audio up to the video's end; writes the trailer. */
int km_writer_finish(km_writer *w, kiln_err *e);
int64_t km_writer_frames(const km_writer *w);
/* How the audio went out: "none", "copy" or "aac". */
const char *km_writer_audio_mode(const km_writer *w);
void km_writer_free(km_writer *w);

/* The join of a chunked run (concat.c): the chunks' video packets one after
 * another, stream-copied, timestamps continued (fps: the chunks' frame
 * rate); the audio of a->path (if any) cut and retimed by a->tl exactly as
 * an unchunked run does, muxed once. The output is complete or absent. */
typedef struct km_concat_stats {
  int64_t frames;
  double duration;
  char audio[8];                /* "none", "copy", "aac" */
} km_concat_stats;
int km_concat(const char *const *chunks, int n, const char *output, const km_audio_opts *a, AVRational fps,
              km_concat_stats *st, kiln_err *e);

/* A new YUV420P frame of w x h (even), or NULL. */
AVFrame *km_frame_new(int w, int h);

/* ---- the streaming pipeline ------------------------------------------- */

typedef struct km_kinfo {
  km_frame_info src;            /* the source frame shown */
  int64_t out_index;            /* output frame number */
  double out_time;              /* output seconds */
} km_kinfo;

/* A kernel writes `out` (already allocated at the output size) from `in`.
 * It runs on a pool thread, several frames at once: it must only read ctx. */
typedef int (*km_kernel_fn)(const void *ctx, const km_kinfo *ki, const AVFrame *in,
                            AVFrame *out, kiln_err *e);

typedef void (*km_progress_fn)(void *arg, int64_t frames_done, int64_t frames_total);

/* Sees each source frame as it is decoded, in order, on the decode thread,
 * `lookahead` source frames before the kernel gets it (a kernel that uses
 * later frames: remove_watermark's temporal fill). Returns 0 or an error. */
typedef int (*km_see_fn)(const void *ctx, const AVFrame *f, const km_frame_info *fi, kiln_err *e);

typedef struct km_pipeline_cfg {
  const char *input, *output;   /* output is written to a temporary name, renamed at the end */
  const km_probe *probe;        /* the input's probe, if the caller has one (else NULL) */
  int64_t start, end;           /* source frame range; end < 0: to the end */
  km_timeline tl;               /* trim and speed (source seconds) */
  /* A chunk: only output frames [out_start, out_end) of the whole run
   * (out_end <= 0: to the end), each exactly as the whole run makes it; the
   * decoder starts at the source frame the first one needs; no audio (the
   * join adds it once). Both 0: the whole run. */
  int64_t out_start, out_end;
  AVRational out_fps;           /* 0/0: the source frame rate */
  int out_w, out_h;             /* 0: the source size */
  km_enc_opts enc;              /* width/height/fps filled in by the pipeline */
  int keep_audio;               /* mux the source's audio, cut like the video */
  int threads;                  /* decoder and encoder threads, 0 = one per CPU */
  int kernel_threads;           /* kernel threads; 0 = half of `threads` (at least 1), enough
                                   for a kernel much cheaper than the encoder */
  km_kernel_fn kernel;          /* NULL: copy frames */
  const void *kctx;
  km_see_fn see;                /* NULL: none; else called with kctx on every source frame decoded */
  int lookahead;                /* with `see`: source frames decoded (and seen) ahead of the one the kernel gets */
  km_progress_fn progress;
  void *progress_arg;
  volatile int *cancel;         /* set non-zero to stop; the run returns KILN_ECANCELLED */
} km_pipeline_cfg;

typedef struct km_pipeline_stats {
  int64_t frames_in, frames_out;
  double seconds, fps;
  int out_w, out_h;
  AVRational out_fps;
  double out_duration;
  char audio[8];                /* "none", "copy", "aac" */
} km_pipeline_stats;

int km_pipeline_run(const km_pipeline_cfg *c, km_pipeline_stats *st, kiln_err *e);

/* Number of output frames the pipeline will produce for a probed input
 * (exact for constant-frame-rate inputs with an exact frame count). */
int64_t km_pipeline_expected_frames(const km_probe *p, const km_timeline *tl, AVRational out_fps);

/* A lossy chunk is encoded from KM_CHUNK_WARMUP frames before its start
 * and km_x264_lookahead(preset) + 4 frames past its end (see pipeline.c). */
#define KM_CHUNK_WARMUP 48
int km_x264_lookahead(const char *preset);

/* ---- still images (image.c) ------------------------------------------ */

/* A picture as packed RGB24: w x h x 3 bytes, rows without padding (owned). */
typedef struct km_image {
  int w, h;
  uint8_t *rgb;
} km_image;

/* 1 if the probed file is a single still picture (the image2 demuxer or a
 * *_pipe image demuxer: PNG, JPEG, ...), not a video. */
int km_probe_is_image(const km_probe *p);
/* Allocates w x h pixels (uninitialised); -1 when out of memory. */
int km_image_alloc(km_image *im, int w, int h);
void km_image_release(km_image *im);
/* Decodes the first picture of path into *im (allocated; release it).
 * Errors name the file: KILN_ENOENT, KILN_ENOTMEDIA, KILN_ECORRUPT. */
int km_image_read(const char *path, km_image *im, kiln_err *e);
/* *out = in resized to w x h (bicubic; allocated, release it). */
int km_image_resize(const km_image *in, km_image *out, int w, int h, kiln_err *e);
/* Writes im as a PNG at path: under a temporary name, then renamed, so path
 * is complete or untouched (nothing left behind on failure). */
int km_image_write_png(const char *path, const km_image *im, kiln_err *e);

/* ---- generated test media -------------------------------------------- */

typedef enum {
  KM_PATTERN_COORDS = 0,        /* Y: smooth waves; U encodes x, V encodes y */
  KM_PATTERN_BARS,              /* moving colour bars with a frame counter */
} km_pattern;

typedef struct km_testsrc {
  km_pattern pattern;
  int width, height;
  AVRational fps;
  int64_t frames;
  double tone_hz;               /* > 0: add a sine tone */
  int lossless;
  int gop;
  int rotation_meta;            /* display-matrix rotation written to the file */
} km_testsrc;

/* The pattern's value at (x, y) of frame n, for plane 0 (Y), 1 (U), 2 (V);
 * (x, y) are in luma pixel units (pixel centres at integers) for every
 * plane: chroma sample (i, j) of a 4:2:0 frame sits at (2i + 0.5, 2j + 0.5).
 * The tone, if any, is written as PCM and carried by the container's rule
 * (copied into .mov/.mkv, AAC in .mp4). */
double km_pattern_value(km_pattern p, int plane, double x, double y, int64_t n, int w, int h);
/* Writes a test clip to path. */
int km_testsrc_write(const char *path, const km_testsrc *t, kiln_err *e);

#endif
