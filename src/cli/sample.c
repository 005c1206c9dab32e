/* sample.c — `kiln sample PATTERN OUT`: generated test media whose content
 * is known (see media/testsrc.c). Used by scripts/samples and the tests. */
#include "cli/cli.h"
#include "media/media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double num(const char *s) {
  char *end;
  double v = strtod(s, &end);
  return *s && !*end ? v : -1;
}

static const char *USAGE =
    "kiln sample coords|bars OUT [--size WxH] [--fps N] [--seconds S] [--tone HZ] [--lossless] [--gop N] [--rotate 0|90|180|270]";

int kc_sample(int argc, char **argv) {
  kiln_err e = {0};
  km_testsrc t = {.pattern = KM_PATTERN_COORDS, .width = 640, .height = 360, .fps = {30, 1}, .frames = 60};
  double seconds = 2;
  const char *pat = NULL, *out = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--size") && v) {
      if (sscanf(v, "%dx%d", &t.width, &t.height) != 2 || t.width < 2 || t.height < 2 || (t.width | t.height) & 1) {
        kiln_fail(&e, KILN_EUSAGE, "--size must be WxH with even numbers, got '%s'", v);
        return kc_report(&e, USAGE);
      }
      i++;
    } else if (!strcmp(a, "--fps") && v) { t.fps = av_d2q(num(v), 100000); i++; }
    else if (!strcmp(a, "--seconds") && v) { seconds = num(v); i++; }
    else if (!strcmp(a, "--tone") && v) { t.tone_hz = num(v); i++; }
    else if (!strcmp(a, "--gop") && v) { t.gop = (int)num(v); i++; }
    else if (!strcmp(a, "--rotate") && v) { t.rotation_meta = (int)num(v); i++; }
    else if (!strcmp(a, "--lossless")) t.lossless = 1;
    else if (a[0] == '-') { kiln_fail(&e, KILN_EUSAGE, "unknown or incomplete option '%s' for sample", a); return kc_report(&e, USAGE); }
    else if (!pat) pat = a;
    else if (!out) out = a;
  }
  if (!pat || !out) { kiln_fail(&e, KILN_EUSAGE, "sample needs a PATTERN and an OUT file"); return kc_report(&e, USAGE); }
  if (!strcmp(pat, "coords")) t.pattern = KM_PATTERN_COORDS;
  else if (!strcmp(pat, "bars")) t.pattern = KM_PATTERN_BARS;
  else { kiln_fail(&e, KILN_EUSAGE, "unknown pattern '%s' (coords, bars)", pat); return kc_report(&e, USAGE); }
  if (t.gop < 0 || t.tone_hz < 0 || (t.rotation_meta != 0 && t.rotation_meta != 90 && t.rotation_meta != 180 && t.rotation_meta != 270)) {
    kiln_fail(&e, KILN_EUSAGE, "--gop, --tone must be >= 0 and --rotate one of 0, 90, 180, 270");
    return kc_report(&e, USAGE);
  }
  if (t.fps.num <= 0 || seconds <= 0) { kiln_fail(&e, KILN_EUSAGE, "--fps and --seconds must be positive"); return kc_report(&e, USAGE); }
  t.frames = (int64_t)(seconds * av_q2d(t.fps) + 0.5);
  if (km_testsrc_write(out, &t, &e) < 0) return kc_report(&e, USAGE);
  return 0;
}
