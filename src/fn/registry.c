/* registry.c — the one list of functions. Add a function by writing its
 * descriptor in its own file and listing it here. */
#include "fn/fn.h"

#include <string.h>

extern const kf_desc kf_reframe;
extern const kf_desc kf_overlay;
extern const kf_desc kf_noop;

static const kf_desc *const registry[] = {&kf_reframe, &kf_overlay, &kf_noop, NULL};

const kf_desc *const *kf_registry(void) { return registry; }

const kf_desc *kf_find(const char *name) {
  for (int i = 0; registry[i]; i++)
    if (strcmp(registry[i]->name, name) == 0) return registry[i];
  return NULL;
}
