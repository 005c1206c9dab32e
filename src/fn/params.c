/* params.c — the one validator behind every function's parameters.
 *
 * Walks the kf_param table: rejects unknown names (listing the known ones),
 * checks types, ranges and choices, recurses into objects and arrays of
 * objects, and fills defaults. Messages name the full path of the field. */
#include "fn/fn.h"
#include "img/img.h"
#include "util/json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

const char *const kf_x264_presets[] = {"ultrafast", "superfast", "veryfast", "faster", "fast",
                                       "medium",    "slow",      "slower",   "veryslow", NULL};

static const char *type_word(kf_type t) {
  switch (t) {
    case KF_INT: return "an integer";
    case KF_NUM: return "a number";
    case KF_BOOL: return "true or false";
    case KF_STR: return "a string";
    case KF_COLOR: return "a colour (\"#RRGGBB\" or a name)";
    case KF_OBJ: return "an object";
    case KF_ARR: return "an array";
  }
  return "a value";
}

static int check_table(const char *fn, const kf_param *tab, const json_t *in, json_t *out, const char *path,
                       kiln_err *e);

static void join_path(char *buf, size_t n, const char *path, const char *name) {
  if (*path) snprintf(buf, n, "%s.%s", path, name);
  else snprintf(buf, n, "%s", name);
}

static int check_value(const char *fn, const kf_param *p, const json_t *v, json_t **res, const char *where,
                       kiln_err *e) {
  char got[96];
  kj_describe(v, got, sizeof got);
  switch (p->type) {
    case KF_INT:
      if (!json_is_integer(v) && !(json_is_real(v) && json_real_value(v) == floor(json_real_value(v))))
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be an integer, got %s", fn, where, got);
      /* fall through */
    case KF_NUM: {
      if (!json_is_number(v))
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be a number, got %s", fn, where, got);
      double x = json_number_value(v);
      if (!isfinite(x)) return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be finite", fn, where);
      if (p->ranged && (x < p->min || x > p->max))
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be between %g and %g, got %s", fn, where, p->min,
                         p->max, got);
      *res = p->type == KF_INT ? json_integer((json_int_t)llround(x)) : json_real(x);
      return 0;
    }
    case KF_BOOL:
      if (!json_is_boolean(v))
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be true or false, got %s", fn, where, got);
      *res = json_incref((json_t *)v);
      return 0;
    case KF_STR:
    case KF_COLOR:
      if (!json_is_string(v))
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be %s, got %s", fn, where, type_word(p->type), got);
      if (p->type == KF_COLOR) {
        uint8_t rgb[3];
        if (ki_parse_color(json_string_value(v), rgb) < 0)
          return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be a colour like \"#FFD400\" or \"yellow\", got %s",
                           fn, where, got);
      }
      if (p->choices) {
        int ok = 0;
        char list[256] = "";
        for (int i = 0; p->choices[i]; i++) {
          if (strcmp(p->choices[i], json_string_value(v)) == 0) ok = 1;
          size_t l = strlen(list);
          snprintf(list + l, sizeof list - l, "%s%s", i ? ", " : "", p->choices[i]);
        }
        if (!ok) return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be one of %s, got %s", fn, where, list, got);
      }
      *res = json_incref((json_t *)v);
      return 0;
    case KF_OBJ: {
      if (!json_is_object(v))
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be an object, got %s", fn, where, got);
      if (!p->fields) { *res = json_deep_copy(v); return 0; }   /* free-form (checked by its user) */
      json_t *o = json_object();
      int r = check_table(fn, p->fields, v, o, where, e);
      if (r < 0) { json_decref(o); return r; }
      *res = o;
      return 0;
    }
    case KF_ARR: {
      if (!json_is_array(v))
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be an array of objects, got %s", fn, where, got);
      size_t n = json_array_size(v);
      if (p->ranged && (n < p->min || n > p->max))
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must have between %g and %g entries, got %zu", fn, where,
                         p->min, p->max, n);
      json_t *a = json_array();
      for (size_t i = 0; i < n; i++) {
        char sub[256];
        snprintf(sub, sizeof sub, "%s[%zu]", where, i);
        const json_t *el = json_array_get(v, i);
        if (!json_is_object(el)) {
          kj_describe(el, got, sizeof got);
          json_decref(a);
          return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' must be an object, got %s", fn, sub, got);
        }
        json_t *o = json_object();
        int r = check_table(fn, p->fields, el, o, sub, e);
        if (r < 0) { json_decref(o); json_decref(a); return r; }
        json_array_append_new(a, o);
      }
      *res = a;
      return 0;
    }
  }
  return kiln_fail(e, KILN_EINTERNAL, "bad parameter table for %s", fn);
}

static int check_table(const char *fn, const kf_param *tab, const json_t *in, json_t *out, const char *path,
                       kiln_err *e) {
  const char *key;
  json_t *v;
  json_object_foreach((json_t *)in, key, v) {
    int known = 0;
    for (const kf_param *p = tab; p->name; p++)
      if (strcmp(p->name, key) == 0) known = 1;
    if (!known) {
      char list[512] = "", where[256];
      for (const kf_param *p = tab; p->name; p++) {
        size_t l = strlen(list);
        snprintf(list + l, sizeof list - l, "%s%s", p == tab ? "" : ", ", p->name);
      }
      join_path(where, sizeof where, path, key);
      return kiln_fail(e, KILN_EPARAM, "%s: unknown parameter '%s' (known%s%s: %s)", fn, where, *path ? " in " : "",
                       path, list);
    }
  }
  for (const kf_param *p = tab; p->name; p++) {
    char where[256];
    join_path(where, sizeof where, path, p->name);
    json_t *val = json_object_get(in, p->name);
    if (val && json_is_null(val)) val = NULL;
    json_t *res = NULL;
    if (!val) {
      if (p->required)
        return kiln_fail(e, KILN_EPARAM, "%s: parameter '%s' is required (%s)", fn, where, p->help);
      if (!p->def) continue;
      /* a default goes through the same check as a given value: one normal form (a number's 2 and 2.0 alike) */
      json_t *d = json_loads(p->def, JSON_DECODE_ANY, NULL);
      int r = d ? check_value(fn, p, d, &res, where, e) : -1;
      json_decref(d);
      if (r < 0) return kiln_fail(e, KILN_EINTERNAL, "%s: bad default for '%s'", fn, where);
      json_object_set_new(out, p->name, res);
      continue;
    }
    int r = check_value(fn, p, val, &res, where, e);
    if (r < 0) return r;
    json_object_set_new(out, p->name, res);
  }
  return 0;
}

int kf_validate(const kf_desc *fn, const json_t *in, json_t **out, kiln_err *e) {
  if (in && !json_is_object(in))
    return kiln_fail(e, KILN_EPARAM, "%s: parameters must be a JSON object", fn->name);
  json_t *empty = json_object(), *o = json_object();
  int r = check_table(fn->name, fn->params, in ? in : empty, o, "", e);
  json_decref(empty);
  if (r < 0) { json_decref(o); return r; }
  *out = o;
  return 0;
}

static json_t *describe_table(const kf_param *tab) {
  json_t *arr = json_array();
  for (const kf_param *p = tab; p->name; p++) {
    json_t *o = json_pack("{s:s, s:s, s:s, s:b}", "name", p->name, "type", type_word(p->type), "help", p->help,
                          "required", p->required);
    if (p->def) json_object_set_new(o, "default", json_loads(p->def, JSON_DECODE_ANY, NULL));
    if (p->ranged) {
      json_object_set_new(o, "min", json_real(p->min));
      json_object_set_new(o, "max", json_real(p->max));
    }
    if (p->choices) {
      json_t *c = json_array();
      for (int i = 0; p->choices[i]; i++) json_array_append_new(c, json_string(p->choices[i]));
      json_object_set_new(o, "choices", c);
    }
    if (p->fields) json_object_set_new(o, "fields", describe_table(p->fields));
    json_array_append_new(arr, o);
  }
  return arr;
}

json_t *kf_describe(const kf_desc *fn) {
  json_t *o = json_pack("{s:s, s:s, s:b, s:f}", "name", fn->name, "summary", fn->summary, "chunkable", fn->chunkable,
                        "cost_ms_per_mpixel", fn->cost_ms_per_mpixel);
  json_object_set_new(o, "params", describe_table(fn->params));
  json_object_set_new(o, "input", json_boolean(!fn->no_input));
  json_object_set_new(o, "output", json_string(fn->out_ext ? fn->out_ext : "mp4"));
  json_object_set_new(o, "resources", kf_resources_json(&fn->res));
  return o;
}

json_t *kf_resources_json(const kf_resources *r) {
  return json_pack("{s:s?, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}", "gpu", r->gpu, "cpus", r->cpus > 0 ? r->cpus : 1,
                   "max_chunks", r->max_chunks > 0 ? r->max_chunks : r->max_workers,
                   "memory_mb", r->memory_mb, "timeout_s", r->timeout_s, "retries", r->retries, "idle_timeout_s",
                   r->idle_timeout_s, "min_workers", r->min_workers, "max_workers", r->max_workers, "concurrency",
                   r->concurrency);
}

static void print_table(FILE *f, const kf_param *tab, int indent) {
  for (const kf_param *p = tab; p->name; p++) {
    char range[96] = "";
    if (p->ranged) snprintf(range, sizeof range, p->type == KF_ARR ? ", %g..%g entries" : ", %g..%g", p->min, p->max);
    fprintf(f, "%*s%-12s %s%s%s%s%s\n%*s%s\n", indent, "", p->name, type_word(p->type), range,
            p->required ? ", required" : "", p->def ? ", default " : "", p->def ? p->def : "", indent + 13, "",
            p->help);
    if (p->fields) print_table(f, p->fields, indent + 4);
  }
}

void kf_print_help(const kf_desc *fn, void *file) {
  FILE *f = file;
  fprintf(f, "%s — %s\n\nparameters:\n", fn->name, fn->summary);
  print_table(f, fn->params, 2);
}

void kf_enc_from_params(const json_t *p, km_enc_opts *o) {
  o->crf = (int)kj_num(p, "crf", 20);
  o->preset = kj_str(p, "preset", "veryfast");
  o->lossless = json_is_true(json_object_get(p, "lossless"));
  o->keyint_s = kj_num(p, "keyint", 2);
}

static void md_rows(FILE *f, const kf_param *tab, const char *prefix) {
  for (const kf_param *p = tab; p->name; p++) {
    char name[128], range[96] = "";
    snprintf(name, sizeof name, "%s%s", prefix, p->name);
    if (p->ranged) snprintf(range, sizeof range, p->type == KF_ARR ? "%g–%g entries" : "%g – %g", p->min, p->max);
    if (p->choices) {
      size_t l = 0;
      for (int i = 0; p->choices[i]; i++) l += (size_t)snprintf(range + l, sizeof range - l, "%s%s", i ? ", " : "", p->choices[i]);
    }
    fprintf(f, "| `%s` | %s | %s | %s | %s |\n", name, type_word(p->type), p->required ? "required" : p->def ? p->def : "—",
            range, p->help);
    if (p->fields) {
      char sub[128];
      snprintf(sub, sizeof sub, "%s%s%s.", prefix, p->name, p->type == KF_ARR ? "[]" : "");
      md_rows(f, p->fields, sub);
    }
  }
}

void kf_print_markdown(const kf_desc *fn, void *file) {
  FILE *f = file;
  fprintf(f, "## %s\n\n%s.\n\n%s\n\n", fn->name, fn->summary, fn->doc ? fn->doc : "");
  fprintf(f, "| parameter | type | default | range | meaning |\n| --- | --- | --- | --- | --- |\n");
  md_rows(f, fn->params, "");
  char cls[64];
  if (fn->res.gpu) snprintf(cls, sizeof cls, "GPU %s", fn->res.gpu);
  else snprintf(cls, sizeof cls, "%d CPU core%s", fn->res.cpus > 1 ? fn->res.cpus : 1, fn->res.cpus > 1 ? "s" : "");
  fprintf(f, "\nResources: %s, %d MB, timeout %d s, %d retries, idle timeout %d s, %d–%d workers%s.\n\n",
          cls, fn->res.memory_mb, fn->res.timeout_s, fn->res.retries,
          fn->res.idle_timeout_s, fn->res.min_workers, fn->res.max_workers,
          fn->chunkable ? "; chunkable (frame-parallel)" : "");
}

int kf_check_remote(const kf_desc *fn, const json_t *params, kiln_err *e) {
  for (const kf_param *p = fn->params; p && p->name; p++) {
    if (!p->name_only) continue;
    const char *v = json_string_value(json_object_get(params, p->name));
    if (!v) continue;
    size_t n = strlen(v);
    int ok = n >= 1 && n <= 63 && v[0] != '.';
    for (size_t i = 0; ok && i < n; i++)
      ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= '0' && v[i] <= '9') || v[i] == '.' ||
           v[i] == '_' || v[i] == '-';
    if (!ok)
      return kiln_fail(e, KILN_EPARAM,
                       "'%s' must be a model name from `kiln models list` (GET /v1/functions/%s shows the default): "
                       "letters, digits, '.', '_' and '-'; files by path are accepted only by `kiln run` on the server",
                       p->name, fn->name);
  }
  return 0;
}
