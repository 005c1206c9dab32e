/* media_int.h — helpers shared inside src/media only. */
#ifndef KILN_MEDIA_INT_H
#define KILN_MEDIA_INT_H

#include <libavformat/avformat.h>
#include "util/err.h"

/* Opens and reads stream info; errors name the file (ENOENT, ENOTMEDIA). */
int km_open_input(AVFormatContext **out, const char *path, kiln_err *e);
/* The same, but when quick and the container's header describes every
 * stream (MP4/MOV, Matroska), skips avformat_find_stream_info (which decodes
 * frames): for readers of a file that has already been probed. */
int km_open_input2(AVFormatContext **out, const char *path, int quick, kiln_err *e);
/* Clockwise degrees (0/90/180/270) that make the stream upright. */
int km_stream_rotation(const AVStream *st);
/* Seconds of the stream's first timestamp (0 if unknown). */
double km_stream_start(const AVStream *st);

#endif

/* ---- the original audio, cut and retimed like the video (audio.c) ---- */
typedef struct km_asrc km_asrc;
struct km_timeline;
/* Adds an audio stream to oc for the first audio stream of `path`: stream
 * copy when the timeline is the identity and oc's container accepts the
 * codec, else decode → cut/atempo per piece → AAC. *out is NULL (and 0 is
 * returned) when the source has no audio. Call before avformat_write_header. */
int km_asrc_open(km_asrc **out, const char *path, const struct km_timeline *tl, double video_start,
                 AVFormatContext *oc, kiln_err *e);
/* Writes audio whose output time is before t (seconds). */
int km_asrc_write_until(km_asrc *a, AVFormatContext *oc, double t, kiln_err *e);
/* Writes the rest of the audio up to t_end (the video's end) and flushes. */
int km_asrc_finish(km_asrc *a, AVFormatContext *oc, double t_end, kiln_err *e);
const char *km_asrc_mode(const km_asrc *a);
void km_asrc_free(km_asrc *a);

/* ---- the pixel budget's helpers (limits.c) ---- */
/* The input budget as libavcodec's max_pixels option (at most INT_MAX). */
int64_t km_decoder_max_pixels(void);
/* The size a still picture's header declares (PNG, JPEG, GIF, BMP), read
 * without decoding; -1 when path is none of those or its header is cut. */
int km_image_header_size(const char *path, int *w, int *h);
