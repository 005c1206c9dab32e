/* run.c — `kiln run FN INPUT -o OUTPUT`: one function, locally, no server.
 * Parameters come from --params FILE then --param k=v (later wins), are
 * validated against the function's table, and the function runs with a
 * progress display. SIGINT/SIGTERM cancel cleanly: the partial output is
 * removed. Frames are held to the pixel budget (media/limits.c):
 * --max-pixels / --max-output-pixels, else $KILN_MAX_PIXELS /
 * $KILN_MAX_OUTPUT_PIXELS, else 8192x8192. */
#include "cli/cli.h"
#include "fn/fn.h"
#include "util/json.h"
#include "util/log.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static volatile int g_cancel;
static void on_signal(int sig) { (void)sig; g_cancel = 1; }

static const char *USAGE =
    "kiln run FN INPUT -o OUTPUT [--param KEY=VALUE]... [--params FILE] [--frames A:B] [--json] [--threads N] [--quiet]\n"
    "         [--max-pixels N|WxH] [--max-output-pixels N|WxH]";

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) return -1;
  *out = v;
  return 0;
}

static void print_error_json(const kiln_err *e) {
  json_t *o = json_pack("{s:b, s:{s:s, s:s, s:s}}", "ok", 0, "error", "code", kiln_errname(e->code), "class",
                        kiln_errclass(e->code), "message", e->msg);
  kj_print(o);
  json_decref(o);
}

int kc_run(int argc, char **argv) {
  const char *fname = NULL, *input = NULL, *output = NULL;
  int as_json = 0, quiet = 0;
  long threads = 0;
  long long out_a = 0, out_b = 0;
  kiln_err e = {0};
  json_t *params = NULL;
  kf_result res;
  memset(&res, 0, sizeof res);
  kc_params kp = {0};
  int r = 0;

  if (kc_params_init(&kp, argc) < 0) { r = kiln_fail(&e, KILN_ENOMEM, "out of memory"); goto done; }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int k = kc_params_opt(&kp, argc, argv, &i, &e);
    if (k < 0) { r = k; goto done; }
    if (k) continue;
    if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      if (++i >= argc) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs a file name", a); goto done; }
      output = argv[i];
    } else if (!strcmp(a, "--frames")) {
      char *end;
      if (++i >= argc || (out_a = strtoll(argv[i], &end, 10)) < 0 || *end != ':' ||
          (out_b = strtoll(end + 1, &end, 10)) <= out_a || *end) {
        r = kiln_fail(&e, KILN_EUSAGE, "--frames needs A:B, output frames A up to (not including) B");
        goto done;
      }
    } else if (!strcmp(a, "--json")) {
      as_json = 1;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      quiet = 1;
    } else if (!strcmp(a, "--max-pixels") || !strcmp(a, "--max-output-pixels")) {
      int64_t n = i + 1 < argc ? km_parse_pixels(argv[i + 1]) : -1;
      if (n < 0) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs a pixel count: N or WxH (0: no limit)", a); goto done; }
      i++;
      km_limits l = *km_limits_get();             /* the default, or $KILN_MAX_PIXELS / $KILN_MAX_OUTPUT_PIXELS */
      if (!strcmp(a, "--max-pixels")) { l.max_pixels = n; snprintf(l.name, sizeof l.name, "--max-pixels"); }
      else { l.max_out_pixels = n; snprintf(l.out_name, sizeof l.out_name, "--max-output-pixels"); }
      km_limits_set(&l);
    } else if (!strcmp(a, "--threads")) {
      if (++i >= argc || parse_int(argv[i], 1, 256, &threads) < 0) {
        r = kiln_fail(&e, KILN_EUSAGE, "--threads needs a number from 1 to 256");
        goto done;
      }
    } else if (a[0] == '-' && a[1]) {
      r = kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for run", a);
      goto done;
    } else if (!fname) fname = a;
    else if (!input) input = a;
    else { r = kiln_fail(&e, KILN_EUSAGE, "unexpected argument '%s'", a); goto done; }
  }
  if ((r = kc_params_finish(&kp, &e)) < 0) goto done;
  if (!fname) { r = kiln_fail(&e, KILN_EUSAGE, "which function? (see `kiln functions`)"); goto done; }
  const kf_desc *fn = kf_find(fname);
  if (!fn) {
    char list[256] = "";
    const kf_desc *const *reg = kf_registry();
    for (int i = 0; reg[i]; i++) {
      size_t l = strlen(list);
      snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", reg[i]->name);
    }
    r = kiln_fail(&e, KILN_EUSAGE, "unknown function '%s' (known: %s)", fname, list);
    goto done;
  }
  if (fn->no_input && input && !output) { output = input; input = NULL; }   /* kiln run noop OUT.json */
  if (fn->no_input && input) { r = kiln_fail(&e, KILN_EUSAGE, "%s takes no input file", fname); goto done; }
  if (!input && !fn->no_input) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs an INPUT file", fname); goto done; }
  if (!output) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs an output file: -o OUTPUT", fname); goto done; }
  struct stat si, so;
  if (input && stat(input, &si) == 0 && stat(output, &so) == 0 && si.st_dev == so.st_dev && si.st_ino == so.st_ino) {
    r = kiln_fail(&e, KILN_EUSAGE, "the output '%s' is the input; choose another name", output);
    goto done;
  }
  if ((r = kf_validate(fn, kp.raw, &params, &e)) < 0) goto done;

  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  void *state = NULL;
  if (fn->enter && (r = fn->enter(&state, &e)) < 0) goto done;
  kc_progress pg;
  kc_progress_init(&pg, fn->name, quiet || as_json);
  kf_task task = {.input = input, .output = output, .params = params, .start = 0, .end = -1, .out_start = out_a,
                  .out_end = out_b,
                  .threads = (int)threads, .progress = kc_progress_cb, .progress_arg = &pg,
                  .cancel = &g_cancel};
  memset(&res, 0, sizeof res);
  r = fn->run(state, &task, &res, &e);
  kc_progress_end(&pg, res.stats.frames_out, r == 0);
  if (fn->exit) fn->exit(state);
  if (r < 0) goto done;
  const km_pipeline_stats *st = &res.stats;
  if (as_json && st->out_w == 0) {                /* not a video (noop's JSON) */
    json_t *o = json_pack("{s:b, s:s, s:s, s:I, s:f}", "ok", 1, "function", fn->name, "output", output, "frames",
                          (json_int_t)st->frames_out, "seconds", st->seconds);
    kj_print(o);
    json_decref(o);
  } else if (as_json) {
    json_t *o = json_pack("{s:b, s:s, s:s?, s:s, s:I, s:I, s:f, s:f, s:i, s:i, s:f, s:f, s:s}", "ok", 1, "function",
                          fn->name, "input", input, "output", output, "frames", (json_int_t)st->frames_out,
                          "frames_in", (json_int_t)st->frames_in, "seconds", st->seconds, "fps", st->fps, "width",
                          st->out_w, "height", st->out_h, "out_fps", av_q2d(st->out_fps), "duration",
                          st->out_duration, "audio", st->audio);
    if (res.info) json_object_update_missing(o, res.info);   /* the function's own figures */
    kj_print(o);
    json_decref(o);
  } else if (!quiet && st->out_w == 0) {
    klog(KLOG_INFO, "%s: wrote %s: %lld frames (%.2f s)", fn->name, output, (long long)st->frames_out, st->seconds);
  } else if (!quiet && st->out_fps.num == 0) {    /* a still image (upscale's PNG) */
    klog(KLOG_INFO, "%s: wrote %s: a %dx%d picture (%.2f s)", fn->name, output, st->out_w, st->out_h, st->seconds);
  } else if (!quiet) {
    klog(KLOG_INFO, "%s: wrote %s: %lld frames, %dx%d at %.3g fps, %.2f s, audio %s (%.1f s, %.1f fps)",
            fn->name, output, (long long)st->frames_out, st->out_w, st->out_h, av_q2d(st->out_fps),
            st->out_duration, st->audio, st->seconds, st->fps);
  }
done:
  json_decref(res.info);
  kc_params_release(&kp);
  json_decref(params);
  if (r < 0) {
    if (as_json) print_error_json(&e);
    return kc_report(&e, USAGE);
  }
  return 0;
}
