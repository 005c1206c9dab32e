/* json.c — see json.h. */
#include "util/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kj_load_file(const char *path, json_t **out, kiln_err *e) {
  json_error_t je;
  json_t *v = json_load_file(path, 0, &je);
  if (!v) {
    if (je.line < 0 || je.position == 0)
      return kiln_fail(e, KILN_EPARAM, "cannot read params file '%s': %s", path, je.text);
    return kiln_fail(e, KILN_EPARAM, "params file '%s' is not valid JSON (line %d, column %d): %s",
                     path, je.line, je.column, je.text);
  }
  *out = v;
  return 0;
}

int kj_set_kv(json_t *obj, const char *kv, kiln_err *e) {
  const char *eq = strchr(kv, '=');
  if (!eq || eq == kv)
    return kiln_fail(e, KILN_EUSAGE, "--param expects KEY=VALUE, got '%s'", kv);
  char key[256];
  size_t klen = (size_t)(eq - kv);
  if (klen >= sizeof key) return kiln_fail(e, KILN_EUSAGE, "--param key is too long");
  memcpy(key, kv, klen);
  key[klen] = 0;
  const char *val = eq + 1;
  json_t *v = json_loads(val, JSON_DECODE_ANY, NULL);
  if (!v) v = json_string(val);
  if (!v) return kiln_fail(e, KILN_EPARAM, "--param %s: value is not valid UTF-8", key);

  json_t *cur = obj;
  char *save = NULL, *part = strtok_r(key, ".", &save);
  while (part) {
    char *next = strtok_r(NULL, ".", &save);
    if (!next) { json_object_set_new(cur, part, v); return 0; }
    json_t *child = json_object_get(cur, part);
    if (!json_is_object(child)) {
      child = json_object();
      json_object_set_new(cur, part, child);
    }
    cur = child;
    part = next;
  }
  json_decref(v);
  return kiln_fail(e, KILN_EUSAGE, "--param key '%.*s' is empty", (int)klen, kv);
}

void kj_describe(const json_t *v, char *buf, size_t n) {
  switch (json_typeof(v)) {
    case JSON_STRING: snprintf(buf, n, "the string \"%s\"", KILN_CLIP(json_string_value(v), 40)); break;
    case JSON_INTEGER: snprintf(buf, n, "%lld", (long long)json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, n, "%g", json_real_value(v)); break;
    case JSON_TRUE: snprintf(buf, n, "true"); break;
    case JSON_FALSE: snprintf(buf, n, "false"); break;
    case JSON_NULL: snprintf(buf, n, "null"); break;
    case JSON_ARRAY: snprintf(buf, n, "an array"); break;
    case JSON_OBJECT: snprintf(buf, n, "an object"); break;
  }
}

double kj_num(const json_t *obj, const char *key, double def) {
  json_t *v = json_object_get(obj, key);
  return json_is_number(v) ? json_number_value(v) : def;
}

const char *kj_str(const json_t *obj, const char *key, const char *def) {
  json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : def;
}

void kj_print(const json_t *v) {
  char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
  if (s) { fputs(s, stdout); fputc('\n', stdout); free(s); }
}

int kj_update_from_file(json_t *obj, const char *path, kiln_err *e) {
  json_t *f = NULL;
  int r = kj_load_file(path, &f, e);
  if (r < 0) return r;
  if (!json_is_object(f)) {
    json_decref(f);
    return kiln_fail(e, KILN_EPARAM, "params file '%s' must hold a JSON object", path);
  }
  json_object_update(obj, f);
  json_decref(f);
  return 0;
}
