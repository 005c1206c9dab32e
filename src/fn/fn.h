/* fn.h — the function descriptor and registry (see DESIGN.md, "Key
 * interfaces"). Each function is a const kf_desc in its own file, listed
 * once in registry.c, like FFmpeg's AVFilter or Redis's command table. The
 * parameter table drives validation (params.c), `kiln functions` and the
 * docs. A function knows nothing of HTTP or queues: it gets a task (input,
 * output, validated params, frame range) and runs it. */
#ifndef KILN_FN_H
#define KILN_FN_H

#include <jansson.h>
#include <stdint.h>

#include "media/media.h"
#include "util/err.h"

typedef enum { KF_INT = 1, KF_NUM, KF_BOOL, KF_STR, KF_COLOR, KF_OBJ, KF_ARR } kf_type;

typedef struct kf_param {
  const char *name;
  kf_type type;
  const char *def;              /* default as JSON text; NULL: optional without default */
  int required;
  int ranged;                   /* min/max apply (numbers; for arrays: element count) */
  double min, max;
  const char *const *choices;   /* KF_STR: allowed values, NULL-terminated */
  const struct kf_param *fields;/* KF_OBJ: members; KF_ARR: members of each element object */
  const char *help;
  int name_only;                /* KF_STR: over the API only a catalog name ([A-Za-z0-9._-], no leading '.');
                                   a path to files is for the local CLI (`kiln run`) alone */
} kf_param;

typedef struct kf_resources {
  const char *gpu;              /* GPU class, or NULL for CPU only */
  int memory_mb;
  int timeout_s;
  int retries;
  int idle_timeout_s;
  int min_workers, max_workers;
  int concurrency;
  int cpus;                     /* CPU cores one worker uses (its threads; billed as such); 0 = 1 */
  int max_chunks;               /* most chunks the planner may split a job into; 0 = max_workers; 1 = never split */
} kf_resources;

typedef struct kf_task {
  const char *input, *output;
  const char *const *inputs;    /* join: the chunk files in order (ninputs), besides input (the source) */
  int ninputs;
  const json_t *params;         /* validated, defaults filled (borrowed) */
  int64_t start, end;           /* source frame range; end < 0: to the end */
  int64_t out_start, out_end;   /* a chunk: output frames [out_start, out_end) of the whole run (0, 0: all) */
  int threads;                  /* 0: one per CPU */
  km_progress_fn progress;
  void *progress_arg;
  volatile int *cancel;
  int memory_mb;                /* the worker's memory limit (its resources' memory_mb, enforced); 0: the descriptor's */
} kf_task;

/* What a run of a function on an input will make (for planning and joining
 * chunks): its timeline, frame rate and size, and so its frame count. */
typedef struct kf_shape {
  km_timeline tl;               /* trim and speed; identity for most functions */
  AVRational fps;               /* output frame rate */
  int width, height;            /* output size; 0 for outputs that are not video */
  int64_t frames;               /* output frames */
  int audio;                    /* the output carries the source's audio */
  double frame_ms;              /* per-frame time its params fix (noop's ms_per_frame), else 0 */
  int64_t gop;                  /* chunks start at multiples of this many output frames (keyframes); 1: anywhere */
  int64_t overlap;              /* frames a chunk encodes besides its own (encoder warm-up and lookahead) */
} kf_shape;

typedef struct kf_result {
  km_pipeline_stats stats;
  int no_output;                /* the run wrote no output file (its stats are the result) */
  json_t *info;                 /* NULL, or an object the function adds to the result's stats (owned by the
                                   result: whoever fills kf_result json_decref's it) */
} kf_result;

typedef struct kf_desc {
  const char *name;
  const char *summary;
  const char *doc;              /* a paragraph for docs/functions.md (markdown) */
  const kf_param *params;       /* terminated by an entry with name == NULL */
  kf_resources res;
  int (*enter)(void **state, kiln_err *e);   /* once per worker (model load); may be NULL */
  void (*exit)(void *state);
  int (*run)(void *state, const kf_task *t, kf_result *res, kiln_err *e);
  int chunkable;                /* frame-parallel: may be split into output frame ranges */
  /* Once per job, before a chunkable job is split (may be NULL): looks at
   * the whole input (t->input; t->params validated) and returns in *add a
   * new object whose members the engine adds to the params of every chunk
   * and of the join, so work that needs the whole video (remove_watermark's
   * detection) is done once and every chunk gets the same answer. The
   * members must be parameters of fn's own table. A run given no such
   * member does the work itself, so an unsplit job needs no prepare. */
  int (*prepare)(void *state, const kf_task *t, json_t **add, kiln_err *e);
  /* A chunked job's own figures for the join's stats (as kf_result.info of
   * an unsplit run), from the params the join is given (they hold what
   * prepare added) and the input's probe; NULL when none (may be NULL). */
  json_t *(*join_info)(const json_t *params, const km_probe *pr);
  /* Fills s for validated params on a probed input (pr: NULL for a function
   * without input). Needed by chunkable functions. */
  int (*shape)(const json_t *params, const km_probe *pr, kf_shape *s, kiln_err *e);
  int internal;                 /* the engine's own (join): not listed, not callable over HTTP */
  int no_input;                 /* takes no input file (synthetic functions) */
  const char *out_ext;          /* extension of the output object ("mp4" when NULL) */
  /* The output's extension for this input file when it depends on the
   * input (upscale: "png" for a still image), or NULL for out_ext. The
   * worker asks it for a whole job before naming the output. */
  const char *(*out_ext_for)(const char *input);
  double cost_ms_per_mpixel;    /* planner hint: kernel time per output megapixel on one CPU core */
} kf_desc;

/* NULL-terminated list of the public functions; _all adds the internal ones. */
const kf_desc *const *kf_registry(void);
const kf_desc *const *kf_registry_all(void);
const kf_desc *kf_find(const char *name);

/* Validates `in` (an object, may be NULL) against fn's parameter table and
 * returns a new object with defaults filled in. The message names the field
 * (with its path, e.g. "crop[2].w") and the rule it broke. */
int kf_validate(const kf_desc *fn, const json_t *in, json_t **out, kiln_err *e);
/* For params that arrive over the API (validated already): fails on a
 * name_only parameter whose value is not a plain name (a path, "..", ...),
 * naming the parameter, never echoing its value. */
int kf_check_remote(const kf_desc *fn, const json_t *params, kiln_err *e);

/* The parameter table as JSON (for `kiln functions --json` and the docs). */
json_t *kf_describe(const kf_desc *fn);
json_t *kf_resources_json(const kf_resources *r);
/* Writes the human description of fn's parameters to f. */
void kf_print_help(const kf_desc *fn, void *file);
/* Writes fn's section of docs/functions.md (markdown) to f. */
void kf_print_markdown(const kf_desc *fn, void *file);

/* fn's shape for params on input (probed here; NULL for no input). */
int kf_shape_of(const kf_desc *fn, const json_t *params, const char *input, kf_shape *s, km_probe *pr, kiln_err *e);

/* Shared by video functions: encoder settings from validated params. */
void kf_enc_from_params(const json_t *p, km_enc_opts *o);
/* The table entries every video function takes (crf, preset, audio). */
#define KF_VIDEO_PARAMS                                                                                   \
  {"crf", KF_INT, "20", 0, 1, 0, 51, NULL, NULL, "x264 constant rate factor: lower is better quality and bigger"}, \
  {"preset", KF_STR, "\"veryfast\"", 0, 0, 0, 0, kf_x264_presets, NULL, "x264 speed/size trade-off"},            \
  {"lossless", KF_BOOL, "false", 0, 0, 0, 0, NULL, NULL, "encode losslessly (x264 qp 0); large files"},          \
  {"audio", KF_BOOL, "true", 0, 0, 0, 0, NULL, NULL, "keep the source's audio (cut and retimed with the video)"}, \
  {"keyint", KF_NUM, "2", 0, 1, 0.04, 60, NULL, NULL, "a keyframe every this many seconds, exactly (chunks are cut at keyframes)"}

extern const char *const kf_x264_presets[];

#endif
