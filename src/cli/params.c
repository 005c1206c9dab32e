/* params.c — the parameter flags every command that runs a function takes
 * (run, submit, plan, bench calibrate): --param KEY=VALUE (repeatable; a
 * dotted KEY sets a nested member) and --params FILE.json. The file is read
 * as it comes; the --param values are applied after all of them, so
 * --param wins whatever the order. */
#include "cli/cli.h"
#include "util/json.h"

#include <stdlib.h>
#include <string.h>

int kc_params_init(kc_params *p, int argc) {
  p->raw = json_object();
  p->kvs = calloc((size_t)(argc > 0 ? argc : 1), sizeof *p->kvs);
  p->nkv = 0;
  return p->raw && p->kvs ? 0 : -1;
}

int kc_params_opt(kc_params *p, int argc, char **argv, int *i, kiln_err *e) {
  const char *a = argv[*i];
  if (!strcmp(a, "--param") || !strcmp(a, "-p")) {
    if (++*i >= argc) return kiln_fail(e, KILN_EUSAGE, "--param needs KEY=VALUE");
    p->kvs[p->nkv++] = argv[*i];
    return 1;
  }
  if (!strcmp(a, "--params")) {
    if (++*i >= argc) return kiln_fail(e, KILN_EUSAGE, "--params needs a JSON file");
    int r = kj_update_from_file(p->raw, argv[*i], e);
    return r < 0 ? r : 1;
  }
  return 0;
}

int kc_params_finish(kc_params *p, kiln_err *e) {
  for (int k = 0; k < p->nkv; k++) {
    int r = kj_set_kv(p->raw, p->kvs[k], e);
    if (r < 0) return r;
  }
  return 0;
}

void kc_params_release(kc_params *p) {
  json_decref(p->raw);
  free(p->kvs);
  p->raw = NULL;
  p->kvs = NULL;
}
