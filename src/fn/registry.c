/* registry.c — the one list of functions. Add a function by writing its
 * descriptor in its own file and listing it here. Internal functions (the
 * engine's join) are in the full list only: not listed by `kiln functions`,
 * not found by kf_find, not callable over HTTP. */
#include "fn/fn.h"

#include <string.h>

extern const kf_desc kf_reframe;
extern const kf_desc kf_overlay;
extern const kf_desc kf_noop;
extern const kf_desc kf_join;
extern const kf_desc kf_upscale;
extern const kf_desc kf_remove_watermark;

static const kf_desc *const registry[] = {&kf_reframe, &kf_overlay, &kf_upscale, &kf_remove_watermark, &kf_noop, NULL};
static const kf_desc *const all[] = {&kf_reframe, &kf_overlay, &kf_upscale, &kf_remove_watermark, &kf_noop, &kf_join, NULL};

const kf_desc *const *kf_registry(void) { return registry; }
const kf_desc *const *kf_registry_all(void) { return all; }

const kf_desc *kf_find(const char *name) {
  for (int i = 0; registry[i]; i++)
    if (strcmp(registry[i]->name, name) == 0) return registry[i];
  return NULL;
}
