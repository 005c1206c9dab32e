/* wmark.h — watermark kernels without a model: detection from temporal
 * statistics of sampled frames (wm_detect.c), blend estimation and the fill
 * of a marked region: blend inversion, temporal fill from earlier frames
 * under global motion, harmonic spatial fill, seamless border correction,
 * blur (wm_fill.c).
 *
 * Coordinates are luma pixels of the full frame unless said otherwise.
 * Detection works on luma planes sampled across the video, possibly
 * downscaled (ki_wm_samples.scale): the masks it returns are at that
 * resolution and the caller maps them to the frame. Everything here is
 * independent of jobs and files. */
#ifndef KILN_IMG_WMARK_H
#define KILN_IMG_WMARK_H

#include <libavutil/frame.h>
#include <stdint.h>

/* ---- detection ---------------------------------------------------------- */

/* Luma of frames sampled across a video, at w x h (the frame divided by
 * scale). y[i] (w*h bytes, owned) is source frame frame[i]; frames ascend. */
typedef struct ki_wm_samples {
  int w, h, scale;
  int n, cap;
  uint8_t **y;
  int64_t *frame;
} ki_wm_samples;

/* Appends a copy of plane (linesize ls, full-size fw x fh) averaged down by
 * s->scale. Returns 0 or KILN_ENOMEM. */
int ki_wm_samples_add(ki_wm_samples *s, const uint8_t *plane, int ls, int fw, int fh, int64_t frame);
void ki_wm_samples_release(ki_wm_samples *s);

typedef struct ki_wm_found {
  int x, y, w, h;               /* bounding box at sample resolution */
  uint8_t *mask;                /* w*h, 1 inside the mark (owned) */
  int first, last;              /* sample indices of a run where the mark is present */
  double presence;              /* mean presence score over the run (1: every edge of the mark is there) */
} ki_wm_found;

typedef struct ki_wm_hint {
  const int (*rects)[4];        /* x, y, w, h at sample resolution: marks are looked for only here; NULL: anywhere */
  int nrects;
  double sensitivity;           /* 1 = default thresholds; > 1 finds fainter marks (and more false ones) */
} ki_wm_hint;

/* Finds marks: pixels whose edges stay put while the content around them
 * changes. Each mark that appears, moves or leaves makes one entry per run of
 * samples it is present in (*out owned: ki_wm_found_free). */
int ki_wm_detect(const ki_wm_samples *s, const ki_wm_hint *hint, ki_wm_found **out, int *nout);
void ki_wm_found_free(ki_wm_found *f, int n);

/* ---- a region to remove, at full resolution ------------------------------ */

typedef struct ki_wm_region {
  int x, y, w, h;               /* bounding box, even x, y, w, h, inside the frame */
  uint8_t *mask;                /* w*h: 1 to remove (owned) */
  int64_t start, end;           /* source frames [start, end) it is on */
  int64_t sure_start, sure_end; /* [first, last] sampled frame seen with it (blend estimates use only these) */
  /* Blend estimate (NULL: none, inpaint everything): the mark is
   * I = a*L + (1-a)*B; alpha[w*h], al[0] = a*L for Y (w*h), al[1], al[2] for U
   * and V (w/2*h/2, alpha averaged over each chroma sample's 4 luma pixels). */
  float *alpha;
  float *al[3];
  int translucent;              /* a quarter of its pixels or more are neither clear nor opaque */
} ki_wm_region;

void ki_wm_region_release(ki_wm_region *r);

/* Estimates alpha and a*L of region r from n full-resolution crops of it
 * taken from frames it is on: crop[i][p] is plane p (0: Y w*h, 1-2: chroma
 * w/2*h/2) of a rectangle of r's box grown by `margin` luma pixels on every
 * side ((w+2m) x (h+2m), m even). Background statistics come from the ring
 * just outside the mask. Sets r->alpha and r->al (left NULL when there are
 * too few crops or the background never changes) and r->translucent. An
 * opaque mark keeps its map too: its clear pixels (the mask's margin) are
 * then kept and only its opaque ones filled. Returns 0 or KILN_ENOMEM. */
int ki_wm_estimate(ki_wm_region *r, uint8_t *const (*crop)[3], int n, int margin);

/* Harmonic fill: every pixel of v (w x h, stride w) with known[p] == 0 gets
 * the solution of Laplace's equation with the known pixels as boundary
 * (coarse to fine). Pixels with no known pixel anywhere are left as is. */
void ki_harmonic_fill(float *v, const uint8_t *known, int w, int h);

/* Box mean of radius r over v (w x h, stride w) in place, separable, each
 * window cut to the plane (its mean over the pixels inside); tmp: w*h floats. */
void ki_box_mean(float *v, float *tmp, int w, int h, int r);

/* ---- the per-frame removal ---------------------------------------------- */

typedef enum { KI_WM_INPAINT = 0, KI_WM_BLUR } ki_wm_mode;

/* Frames seen in order, for the temporal fill: the last 2*KI_WM_HISTORY
 * frames behind the current one and up to 2*KI_WM_AHEAD ahead of it (those
 * the caller pushed), every other one kept, with the global motion between
 * frames. The caller may push up to KI_WM_SLACK frames further ahead (they
 * are kept, not used yet). One stream of frames per state: one thread may
 * push (ki_wm_push) while others remove (ki_wm_frame), each its own frame,
 * all within KI_WM_SPAN frames of each other; a frame's result does not
 * depend on which thread removes it, or when. */
#define KI_WM_HISTORY 24
#define KI_WM_AHEAD 16
#define KI_WM_SLACK 64
#define KI_WM_SPAN 32
typedef struct ki_wm_state ki_wm_state;

int ki_wm_state_new(ki_wm_state **out, int w, int h);
void ki_wm_state_free(ki_wm_state *st);

typedef struct ki_wm_frame_stats {
  int64_t px_masked, px_inverted, px_temporal, px_spatial;
} ki_wm_frame_stats;

/* Pushes frame `index` (frame numbers ascending; one already pushed is
 * ignored) with the regions on it, ahead of the frame being removed, so the
 * temporal fill can use later frames too (those up to 2*KI_WM_AHEAD past
 * the frame removed; the caller pushes at most 2*KI_WM_AHEAD + KI_WM_SLACK
 * past the one it removes next). Returns 0 or KILN_ENOMEM. */
int ki_wm_push(ki_wm_state *st, const AVFrame *f, int64_t index, const ki_wm_region *const *r, int n);

/* Writes out = in (frame `index`, after any removed before it) with the
 * regions r[0..n) removed (the caller passes those on this frame), using
 * the frames remembered behind it and pushed ahead of it (in itself is
 * pushed when it was not). `temporal` 0 turns the temporal fill off. */
int ki_wm_frame(ki_wm_state *st, int64_t index, const AVFrame *in, AVFrame *out, const ki_wm_region *const *r, int n,
                ki_wm_mode mode, int temporal, ki_wm_frame_stats *fs);

#endif
