/* json.h — small jansson helpers shared by the CLI, the parameter validator
 * and the tests. Returned json_t references are new (caller decrefs) unless
 * the comment says "borrowed". */
#ifndef KILN_JSON_H
#define KILN_JSON_H

#include <jansson.h>
#include "util/err.h"

/* Reads and parses a JSON file; on failure writes "FILE:LINE:COL: reason". */
int kj_load_file(const char *path, json_t **out, kiln_err *e);
/* Reads a YAML file into a JSON tree (plain scalars typed, quoted ones strings). */
int kj_load_yaml(const char *path, json_t **out, kiln_err *e);
/* Merges the JSON object in file path into obj (a params file); the
 * message names the file when it is not a JSON object. */
int kj_update_from_file(json_t *obj, const char *path, kiln_err *e);
/* Parses "k=v" where v is JSON if it parses as JSON, else a string; k may be
 * dotted ("trim.start=2") to set a nested member. Sets into obj. */
int kj_set_kv(json_t *obj, const char *kv, kiln_err *e);
/* Describes a value for an error message: "the string \"abc\"", "3.5", ... */
void kj_describe(const json_t *v, char *buf, size_t n);
/* A number member (integer or real) or def when absent. Borrowed obj. */
double kj_num(const json_t *obj, const char *key, double def);
const char *kj_str(const json_t *obj, const char *key, const char *def);
/* Prints v to stdout, indented, followed by a newline. */
void kj_print(const json_t *v);

#endif
