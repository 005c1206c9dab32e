/* yaml.c — reads a YAML file (libyaml's document API) into a jansson tree,
 * so that config files are checked by the same JSON helpers as everything
 * else. Mappings become objects (keys must be scalars), sequences arrays;
 * a plain scalar is null/true/false, an integer or a number when it reads
 * as one, else a string; a quoted scalar is always a string. Errors name
 * the file, line and column. */
#include "util/json.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static json_t *scalar(const yaml_node_t *n) {
  const char *s = (const char *)n->data.scalar.value;
  if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return json_string(s);
  if (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL")) return json_null();
  if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE")) return json_true();
  if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE")) return json_false();
  char *end;
  errno = 0;
  long long i = strtoll(s, &end, 10);
  if (!*end && errno == 0) return json_integer(i);
  double d = strtod(s, &end);
  if (!*end && isfinite(d)) return json_real(d);
  return json_string(s);
}

static json_t *convert(yaml_document_t *doc, yaml_node_t *n, const char *path, kiln_err *e, int depth) {
  if (!n) return json_null();
  if (depth > 64) { kiln_fail(e, KILN_EPARAM, "%s: nested too deeply", path); return NULL; }
  switch (n->type) {
  case YAML_SCALAR_NODE:
    return scalar(n);
  case YAML_SEQUENCE_NODE: {
    json_t *a = json_array();
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
      json_t *v = convert(doc, yaml_document_get_node(doc, *it), path, e, depth + 1);
      if (!v) { json_decref(a); return NULL; }
      json_array_append_new(a, v);
    }
    return a;
  }
  case YAML_MAPPING_NODE: {
    json_t *o = json_object();
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
      yaml_node_t *k = yaml_document_get_node(doc, p->key);
      if (!k || k->type != YAML_SCALAR_NODE) {
        kiln_fail(e, KILN_EPARAM, "%s:%zu: mapping keys must be plain words", path, k ? k->start_mark.line + 1 : 0);
        json_decref(o);
        return NULL;
      }
      json_t *v = convert(doc, yaml_document_get_node(doc, p->value), path, e, depth + 1);
      if (!v) { json_decref(o); return NULL; }
      json_object_set_new(o, (const char *)k->data.scalar.value, v);
    }
    return o;
  }
  default:
    return json_null();
  }
}

int kj_load_yaml(const char *path, json_t **out, kiln_err *e) {
  FILE *f = fopen(path, "rb");
  if (!f) return kiln_fail(e, KILN_ENOENT, "cannot open '%s': %s", path, strerror(errno));
  yaml_parser_t p;
  yaml_document_t doc;
  yaml_parser_initialize(&p);
  yaml_parser_set_input_file(&p, f);
  int r = 0;
  if (!yaml_parser_load(&p, &doc)) {
    r = kiln_fail(e, KILN_EPARAM, "%s:%zu:%zu: not valid YAML: %s", path, p.problem_mark.line + 1,
                  p.problem_mark.column + 1, p.problem ? p.problem : "parse error");
  } else {
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    json_t *j = root ? convert(&doc, root, path, e, 0) : json_object();
    if (!j) r = e->code ? e->code : KILN_EPARAM;
    else *out = j;
    yaml_document_delete(&doc);
  }
  yaml_parser_delete(&p);
  fclose(f);
  return r;
}
