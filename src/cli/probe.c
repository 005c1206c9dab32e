/* probe.c — `kiln probe FILE [--json]`: what a media file holds. */
#include "cli/cli.h"
#include "media/media.h"
#include "util/json.h"

#include <stdio.h>
#include <string.h>

static const char *USAGE = "kiln probe FILE [--json]";

int kc_probe(int argc, char **argv) {
  const char *path = NULL;
  int as_json = 0;
  kiln_err e = {0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) as_json = 1;
    else if (argv[i][0] == '-' && argv[i][1]) { kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for probe", argv[i]); return kc_report(&e, USAGE); }
    else if (!path) path = argv[i];
    else { kiln_fail(&e, KILN_EUSAGE, "unexpected argument '%s'", argv[i]); return kc_report(&e, USAGE); }
  }
  if (!path) { kiln_fail(&e, KILN_EUSAGE, "probe needs a FILE"); return kc_report(&e, USAGE); }
  km_probe p;
  if (km_probe_file(path, &p, &e) < 0) return kc_report(&e, USAGE);
  if (as_json) {
    json_t *o = json_pack("{s:s, s:s, s:f, s:b}", "file", path, "container", p.container, "duration", p.duration,
                          "has_video", p.has_video);
    if (p.has_video) {
      json_object_set_new(o, "video",
                          json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:s, s:b, s:I, s:b}", "codec", p.vcodec,
                                    "width", p.width, "height", p.height, "coded_width", p.coded_width,
                                    "coded_height", p.coded_height, "rotation", p.rotation, "pix_fmt", p.pix_fmt,
                                    "fps", p.fps, "fps_rational",
                                    "", "vfr", p.vfr, "frames", (json_int_t)p.frames, "frames_exact",
                                    p.frames_exact));
      char q[32];
      snprintf(q, sizeof q, "%d/%d", p.fps_q.num, p.fps_q.den);
      json_object_set_new(json_object_get(o, "video"), "fps_rational", json_string(q));
    }
    json_t *au = json_array();
    for (int i = 0; i < p.n_audio; i++)
      json_array_append_new(au, json_pack("{s:s, s:i, s:i, s:f}", "codec", p.audio[i].codec, "sample_rate",
                                          p.audio[i].sample_rate, "channels", p.audio[i].channels, "duration",
                                          p.audio[i].duration));
    json_object_set_new(o, "audio", au);
    kj_print(o);
    json_decref(o);
    return 0;
  }
  printf("file:       %s\ncontainer:  %s\nduration:   %.3f s\n", path, p.container, p.duration);
  if (p.has_video) {
    printf("video:      %s %dx%d %s", p.vcodec, p.width, p.height, p.pix_fmt);
    if (p.rotation) printf(" (stored %dx%d, rotated %d°)", p.coded_width, p.coded_height, p.rotation);
    printf("\nfps:        %.3f (%d/%d)%s\nframes:     %lld%s\n", p.fps, p.fps_q.num, p.fps_q.den,
           p.vfr ? ", variable frame rate" : "", (long long)p.frames, p.frames_exact ? "" : " (estimated)");
  } else {
    printf("video:      none\n");
  }
  for (int i = 0; i < p.n_audio; i++)
    printf("audio #%d:   %s %d Hz, %d channel%s, %.3f s\n", i, p.audio[i].codec, p.audio[i].sample_rate,
           p.audio[i].channels, p.audio[i].channels == 1 ? "" : "s", p.audio[i].duration);
  if (!p.n_audio) printf("audio:      none\n");
  return 0;
}
