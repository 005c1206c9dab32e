/* functions.c — `kiln functions [NAME] [--json]`, generated from the
 * function registry's parameter tables. */
#include "cli/cli.h"
#include "fn/fn.h"
#include "util/json.h"

#include <stdio.h>
#include <string.h>

static const char *USAGE = "kiln functions [NAME] [--json]";

int kc_functions(int argc, char **argv) {
  const char *name = NULL;
  int as_json = 0;
  kiln_err e = {0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--json")) as_json = 1;
    else if (argv[i][0] == '-') { kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for functions", argv[i]); return kc_report(&e, USAGE); }
    else name = argv[i];
  }
  const kf_desc *const *reg = kf_registry();
  if (name) {
    const kf_desc *fn = kf_find(name);
    if (!fn) { kiln_fail(&e, KILN_EUSAGE, "unknown function '%s'", name); return kc_report(&e, USAGE); }
    if (as_json) { json_t *o = kf_describe(fn); kj_print(o); json_decref(o); }
    else kf_print_help(fn, stdout);
    return 0;
  }
  if (as_json) {
    json_t *a = json_array();
    for (int i = 0; reg[i]; i++) json_array_append_new(a, kf_describe(reg[i]));
    kj_print(a);
    json_decref(a);
    return 0;
  }
  for (int i = 0; reg[i]; i++) printf("%-18s %s\n", reg[i]->name, reg[i]->summary);
  printf("\n`kiln functions NAME` lists a function's parameters.\n");
  return 0;
}
