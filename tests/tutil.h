/* tutil.h — media helpers for tests: a scratch folder, decoding a whole
 * file into memory (small test clips only), checking the output container. */
#ifndef KILN_TUTIL_H
#define KILN_TUTIL_H

#include <stdint.h>
#include "media/media.h"

/* A fresh folder under $TMPDIR (or /tmp), removed by t_cleanup(). */
const char *t_dir(void);
void t_cleanup(void);
/* path inside t_dir(), in a static rotating buffer. */
const char *t_path(const char *name);

typedef struct t_video {
  int n, w, h;
  AVFrame **f;
  km_frame_info *info;
} t_video;

/* Decodes frames [start, end) of path; returns 0 or a kiln error code. */
int t_decode(const char *path, int64_t start, int64_t end, t_video *v);
void t_video_free(t_video *v);

/* The packets of a file's first stream of `type` (AVMEDIA_TYPE_*): their
 * count, and hashes over their data and over their timestamps (pts, dts,
 * duration in the stream's time base, then in seconds x 1e6). 0 or -1. */
typedef struct t_packets { int64_t n, bytes; uint64_t data_hash, ts_hash; } t_packets;
int t_packets_of(const char *path, int type, t_packets *out);

/* 1 if the file's top-level 'moov' box comes before 'mdat'. */
int t_moov_first(const char *path);
/* 1 if path names anything (file, folder, link), without following a link. */
int t_file_exists(const char *path);
/* Number of directory entries in t_dir() whose name contains s. */
int t_count_files(const char *s);
/* Inputs for the pixel budget, made here (never committed): a w x h PNG of
 * one colour (1 bit per pixel: 16000x16000 is ~60 KB, and 32 MB in memory
 * while it is encoded); a PNG's IHDR size rewritten (its CRC recomputed);
 * the width/height of an mp4's first visual sample description (stsd's
 * avc1) rewritten. 0 or -1. */
int t_png_solid(const char *path, int w, int h);
int t_png_set_size(const char *path, uint32_t w, uint32_t h);
int t_mp4_set_size(const char *path, int w, int h);
/* A small grey JPEG whose frame header (SOF0) then claims w x h. */
int t_jpeg_claiming(const char *path, int w, int h);
/* The process's peak resident memory (VmHWM), in KiB. */
long t_vm_hwm_kb(void);

/* Luma PSNR of frame f against the expected plane function. */
double t_psnr_plane(const AVFrame *f, int plane, double (*expect)(void *, int, int, int), void *arg);

#endif
