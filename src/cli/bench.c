/* bench.c — `kiln bench calibrate FN [INPUT]`: measures the cost model's
 * parameters for FN on this machine by running it in-process (a whole run,
 * a quarter-length chunk, two chunks and their join) and stores them where
 * kiln serve's planner reads them ($KILN_HOME). Without INPUT a video
 * function runs on a generated 1280x720 clip. */
#include "cli/cli.h"
#include "engine/planner.h"
#include "util/json.h"
#include "util/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *USAGE = "kiln bench calibrate FN [INPUT] [--param KEY=VALUE]... [--params FILE] [--json]";

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Runs fn on [a, b) of the output (0, 0: all) into out; returns ms or < 0. */
static double timed(const kf_desc *fn, void *state, const char *in, const char *out, const json_t *p, int64_t a,
                    int64_t b, int threads, kf_result *res, kiln_err *e) {
  kf_task t = {.input = in, .output = out, .params = p, .start = 0, .end = -1, .out_start = a, .out_end = b,
               .threads = threads};
  memset(res, 0, sizeof *res);
  double t0 = now_ms();
  int r = fn->run(state, &t, res, e);
  return r < 0 ? r : now_ms() - t0;
}

static int64_t file_size(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 ? sb.st_size : 0;
}

static int calibrate(int argc, char **argv) {
  kiln_err e = {0};
  const char *fname = NULL, *input = NULL;
  int as_json = 0, r = 0;
  json_t *params = NULL;
  kc_params kp = {0};
  ke_config cfg;
  int have_cfg = 0;
  kq *q = NULL;
  void *state = NULL;
  const kf_desc *fn = NULL;
  char dir[] = "/tmp/kiln-calibrate-XXXXXX", gen[256], out[4][256];
  int made_dir = 0;
  if (kc_params_init(&kp, argc) < 0) { r = kiln_fail(&e, KILN_ENOMEM, "out of memory"); goto done; }
  for (int i = 2; i < argc; i++) {
    const char *a = argv[i];
    int k = kc_params_opt(&kp, argc, argv, &i, &e);
    if (k < 0) { r = k; goto done; }
    if (k) continue;
    if (!strcmp(a, "--json")) as_json = 1;
    else if (a[0] == '-') { r = kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for bench calibrate", a); goto done; }
    else if (!fname) fname = a;
    else if (!input) input = a;
    else { r = kiln_fail(&e, KILN_EUSAGE, "unexpected argument '%s'", a); goto done; }
  }
  if (!fname) { r = kiln_fail(&e, KILN_EUSAGE, "which function? (see `kiln functions`)"); goto done; }
  fn = kf_find(fname);
  if (!fn || !fn->chunkable || !fn->shape) {
    r = kiln_fail(&e, KILN_EUSAGE, "'%s' is not a function that can be split into chunks (see `kiln functions`)", fname);
    goto done;
  }
  if (fn->no_input && input) { r = kiln_fail(&e, KILN_EUSAGE, "%s takes no input file", fname); goto done; }
  if ((r = kc_params_finish(&kp, &e)) < 0 || (r = kf_validate(fn, kp.raw, &params, &e)) < 0) goto done;
  if ((r = ke_config_load(&cfg, NULL, &e)) < 0) goto done;
  have_cfg = 1;
  if ((r = ke_open_queue(&cfg, 0, &q, &e)) < 0) goto done;
  if (!mkdtemp(dir)) { r = kiln_fail(&e, KILN_EIO, "cannot make a scratch folder"); goto done; }
  made_dir = 1;
  const char *ext = fn->out_ext ? fn->out_ext : "mp4";
  for (int i = 0; i < 4; i++) snprintf(out[i], sizeof out[i], "%s/out%d.%s", dir, i, ext);
  if (!fn->no_input && !input) {
    snprintf(gen, sizeof gen, "%s/clip.mp4", dir);
    km_testsrc ts = {.pattern = KM_PATTERN_COORDS, .width = 1280, .height = 720, .fps = {30, 1}, .frames = 240,
                     .tone_hz = 440};
    klog(KLOG_INFO, "calibrate: generating a 1280x720 clip of 240 frames");
    if ((r = km_testsrc_write(gen, &ts, &e)) < 0) goto done;
    input = gen;
  }
  const ke_fnconf *fc = ke_fn(&cfg, fname);
  kf_shape sh;
  km_probe pr;
  if ((r = kf_shape_of(fn, params, fn->no_input ? NULL : input, &sh, &pr, &e)) < 0) goto done;
  if (sh.frames < 8) { r = kiln_fail(&e, KILN_EINVAL, "the input makes %lld frames; calibrating needs 8 or more", (long long)sh.frames); goto done; }
  if (fn->enter && (r = fn->enter(&state, &e)) < 0) goto done;
  int threads = fc->res.cpus;
  int64_t starts[3];
  int n2 = ke_chunk_ranges(sh.frames, sh.gop, 2, starts);
  int64_t q4[5];
  int n4 = ke_chunk_ranges(sh.frames, sh.gop, 4, q4);
  int64_t part = n4 > 1 ? q4[1] : sh.frames;    /* a quarter, at a keyframe */
  kf_result res;
  klog(KLOG_INFO, "calibrate %s: %lld frames whole, %lld as a chunk, %d chunks and a join", fname, (long long)sh.frames,
       (long long)part, n2);
  double t_whole = timed(fn, state, input, out[0], params, 0, 0, threads, &res, &e);
  if (t_whole < 0) { r = (int)t_whole; goto done; }
  int64_t bytes = file_size(out[0]);
  double t_part = timed(fn, state, input, out[1], params, 0, part < sh.frames ? part : 0, threads, &res, &e);
  if (t_part < 0) { r = (int)t_part; goto done; }
  ke_model m;
  ke_model_load(q, fc, &m, &e);
  double mpix = (double)sh.width * sh.height / 1e6;
  m.sw = m.sx = m.sy = m.sxx = m.sxy = 0;          /* calibration replaces what was learned */
  m.tasks = 0;
  ke_model_task(&m, sh.frames, mpix, t_whole, bytes);
  if (part < sh.frames) ke_model_task(&m, part, mpix, t_part, file_size(out[1]));
  double t_join = -1;
  if (n2 == 2) {                                   /* two chunks and their join */
    if ((r = (int)timed(fn, state, input, out[1], params, starts[0], starts[1], threads, &res, &e)) < 0) goto done;
    if ((r = (int)timed(fn, state, input, out[2], params, starts[1], starts[2], threads, &res, &e)) < 0) goto done;
    const kf_desc *join = NULL;
    for (const kf_desc *const *d = kf_registry_all(); *d; d++)
      if (!strcmp((*d)->name, "join")) join = *d;
    const char *chunks[2] = {out[1], out[2]};
    json_t *jp = json_pack("{s:s, s:O}", "fn", fname, "params", params);
    kf_task jt = {.input = fn->no_input ? NULL : input, .inputs = sh.width ? chunks : NULL, .ninputs = sh.width ? 2 : 0,
                  .output = out[3], .params = jp, .end = -1};
    double t0 = now_ms();
    r = join->run(NULL, &jt, &res, &e);
    t_join = now_ms() - t0;
    json_decref(jp);
    if (r < 0) goto done;
    m.joins = 0;
    ke_model_join(&m, (double)file_size(out[3]) / 1e6, t_join);
  }
  if ((r = ke_model_save(q, fc, &m, &e)) < 0) goto done;
  json_t *o = json_pack("{s:s, s:I, s:f, s:f, s:f, s:f, s:o}", "fn", fname, "frames", (json_int_t)sh.frames, "whole_ms",
                        t_whole, "chunk_ms", t_part, "chunk_frames", (double)part, "join_ms", t_join, "model",
                        ke_model_json(&m));
  if (as_json) kj_print(o);
  else
    printf("%s on this machine: %lld frames whole in %.0f ms, %lld frames in %.0f ms, a join of 2 chunks in %.0f ms\n"
           "model stored in %s: %.3f ms per frame (at %.2f Mpixel), %.0f ms per task, join %.0f ms + %.1f ms/MB\n",
           fname, (long long)sh.frames, t_whole, (long long)part, t_part, t_join, cfg.home, m.frame_ms, m.frame_mpix,
           m.task_ms, m.join_ms, m.join_ms_per_mb);
  json_decref(o);
done:
  if (fn && fn->exit && state) fn->exit(state);
  if (made_dir) {
    for (int i = 0; i < 4; i++) unlink(out[i]);
    char p[300];
    snprintf(p, sizeof p, "%s/clip.mp4", dir);
    unlink(p);
    rmdir(dir);
  }
  kq_close(q);
  if (have_cfg) ke_config_release(&cfg);
  kc_params_release(&kp);
  json_decref(params);
  return r < 0 ? kc_report(&e, USAGE) : 0;
}

int kc_bench(int argc, char **argv) {
  kiln_err e = {0};
  if (argc < 2 || strcmp(argv[1], "calibrate") != 0) {
    kiln_fail(&e, KILN_EUSAGE, "kiln bench has one subcommand: calibrate");
    return kc_report(&e, USAGE);
  }
  return calibrate(argc, argv);
}
