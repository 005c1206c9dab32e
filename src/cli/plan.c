/* plan.c — `kiln plan FN [INPUT]`: what the planner would do with a job —
 * the predicted wall time, speedup, resource-seconds and cost for each
 * chunk count, and the one it picks for the objective, with why. Uses the
 * cost model kiln serve has learned in $KILN_HOME (or the defaults). */
#include "cli/cli.h"
#include "engine/planner.h"
#include "util/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "kiln plan FN [INPUT] [--param KEY=VALUE]... [--params FILE] [--objective balanced|time|cost|deadline=S|budget=USD] "
    "[--json]";

int kc_plan(int argc, char **argv) {
  kiln_err e = {0};
  const char *fname = NULL, *input = NULL, *objective = NULL;
  int as_json = 0, r = 0;
  json_t *params = NULL;
  kc_params kp = {0};
  ke_config cfg;
  int have_cfg = 0;
  kq *q = NULL;
  if (kc_params_init(&kp, argc) < 0) { r = kiln_fail(&e, KILN_ENOMEM, "out of memory"); goto done; }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int k = kc_params_opt(&kp, argc, argv, &i, &e);
    if (k < 0) { r = k; goto done; }
    if (k) continue;
    if (!strcmp(a, "--objective") && i + 1 >= argc) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs a value", a); goto done; }
    if (!strcmp(a, "--objective")) objective = argv[++i];
    else if (!strcmp(a, "--json")) as_json = 1;
    else if (a[0] == '-' && a[1]) { r = kiln_fail(&e, KILN_EUSAGE, "unknown option '%s' for plan", a); goto done; }
    else if (!fname) fname = a;
    else if (!input) input = a;
    else { r = kiln_fail(&e, KILN_EUSAGE, "unexpected argument '%s'", a); goto done; }
  }
  if (!fname) { r = kiln_fail(&e, KILN_EUSAGE, "which function? (see `kiln functions`)"); goto done; }
  const kf_desc *fn = kf_find(fname);
  if (!fn) { r = kiln_fail(&e, KILN_EUSAGE, "unknown function '%s' (see `kiln functions`)", fname); goto done; }
  if (!fn->no_input && !input) { r = kiln_fail(&e, KILN_EUSAGE, "%s needs an INPUT file to plan for", fname); goto done; }
  if (fn->no_input && input) { r = kiln_fail(&e, KILN_EUSAGE, "%s takes no input file", fname); goto done; }
  if ((r = ke_objective_check(objective, &e)) < 0) { e.code = KILN_EUSAGE; r = KILN_EUSAGE; goto done; }
  if ((r = kc_params_finish(&kp, &e)) < 0 || (r = kf_validate(fn, kp.raw, &params, &e)) < 0) goto done;
  if ((r = ke_config_load(&cfg, NULL, &e)) < 0) goto done;
  have_cfg = 1;
  kiln_err qe = {0};
  if (ke_open_queue(&cfg, 0, &q, &qe) < 0) q = NULL;   /* no database yet: the defaults */
  const ke_fnconf *fc = ke_fn(&cfg, fname);
  ke_plan p;
  kf_shape sh;
  if ((r = ke_plan_job(&cfg, q, fc, params, input, objective, 0, &p, &sh, &e)) < 0) goto done;
  if (as_json) {
    json_t *o = ke_plan_json(&p);
    ke_model m;
    if (q) ke_model_load(q, fc, &m, &qe);
    else ke_model_defaults(fn, &m);
    json_object_set_new(o, "model", ke_model_json(&m));
    kj_print(o);
    json_decref(o);
  } else {
    ke_plan_print(&p, stdout);
  }
done:
  kq_close(q);
  if (have_cfg) ke_config_release(&cfg);
  kc_params_release(&kp);
  json_decref(params);
  return r < 0 ? kc_report(&e, USAGE) : 0;
}
