/* common.h — helpers shared by the functions in src/fn (not by callers). */
#ifndef KILN_FN_COMMON_H
#define KILN_FN_COMMON_H

#include "fn/fn.h"

#define KF_KEY_VALUES 4
typedef struct kf_key {
  double t;                     /* frame number or seconds: the function decides */
  double v[KF_KEY_VALUES];
} kf_key;

void kf_keys_sort(kf_key *k, int n);
/* Linear interpolation between keyframes; held before the first and after
 * the last. n >= 1. */
void kf_keys_at(const kf_key *k, int n, double t, double out[KF_KEY_VALUES]);

/* Crop keyframes {frame|time, x, y, w, h} (the table reframe and upscale
 * share), resolved against the probed source for an output of ow x oh:
 * w/h default to the full height at the output's aspect, no crop at all to
 * a centred one; *keys (t in source seconds, v = x, y, w, h; owned) sorted.
 * Messages name fn and the keyframe. */
extern const kf_param kf_crop_fields[];
int kf_crop_keys(const char *fn, const json_t *p, const km_probe *pr, int ow, int oh, kf_key **keys, int *nkeys, kiln_err *e);

/* Probes the task's input; KILN_ENOFRAMES (naming it) if it has no video. */
int kf_probe_video(const kf_task *t, km_probe *pr, kiln_err *e);

/* The shape of a function whose output is its input's frames, changed in
 * place (overlay, remove_watermark): the source's timeline, frame rate and
 * even size, and its audio unless params say "audio": false. */
int kf_shape_same(const json_t *p, const km_probe *pr, kf_shape *s, kiln_err *e);

/* Fills the task-independent part of a pipeline configuration: input and
 * output, frame range, encoder settings, audio, threads, progress, cancel. */
void kf_pipeline_from_task(const kf_task *t, const json_t *params, km_pipeline_cfg *c);

#endif
